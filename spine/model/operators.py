"""Operators: named, repeatable lane recipes declared under ``operators:`` in ``.spine.yaml``.

An operator has typed inputs (``{{name}}`` placeholders in its command, validated before anything runs
and shell-quoted when substituted), a command or steps, expected outputs, acceptance checks, a default
timebox, failure paths and extra evidence. Three invariants are enforced when the config loads: an
operator is legal in at least one mode, has at least one acceptance check, and has a timebox.
"""

import re
import shlex
import string
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from spine.base.errors import UsageError
from spine.base.ids import id_problem
from spine.model.modes import ConfigModel, EvidenceRule, Mode, ModeName
from spine.model.values import ArtifactGlob, Duration, EnvName, EnvValue

Timebox = Duration

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}

# Fields a failure path or next pointer template may use, e.g. "inspect {log}".
POINTER_FIELDS = frozenset(
    {
        "op",
        "mode",
        "run_id",
        "lane_id",
        "branch",
        "worktree",
        "log",
        "check",
        "missing",
        "timebox",
        "base_sha",
    }
)
FAILURE_KINDS = ("timeout", "stall", "command_failed", "check_failed", "missing_evidence", "setup_failed")


def _pointer_template(value: object) -> object:
    if not isinstance(value, str):
        return value  # None, or a wrong type the field's own check names
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError as exc:
        raise ValueError(f"not a valid template: {exc}") from exc
    unknown = names - POINTER_FIELDS
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(POINTER_FIELDS))}"
        )
    if "\n" in value.strip():
        raise ValueError("a next pointer is a single line")
    return value


PointerTemplate = Annotated[str | None, BeforeValidator(_pointer_template)]

# A bare acceptance check: a command, its first word the check's name.
NonBlankText = Annotated[str, WithJsonSchema({"type": "string", "pattern": r"\S"})]


class InputSpec(ConfigModel):
    """One typed input of an operator."""

    type: Literal["string", "int", "float", "bool", "path", "choice"] = Field(
        default="string", description="string, int, float, bool, path (relative, inside the repo) or choice"
    )
    description: str = Field(default="", description="what the input means")
    required: bool | None = Field(default=None, description="default: required when there is no default")
    default: str | int | float | bool | None = Field(default=None, description="value used when not given")
    choices: list[str] = Field(default_factory=list, description="the allowed values of a choice input")
    pattern: str | None = Field(default=None, description="regular expression the whole value must match")

    @model_validator(mode="after")
    def _consistent(self) -> "InputSpec":
        if self.type == "choice" and not self.choices:
            raise ValueError("a choice input needs 'choices', e.g. choices: [fast, full]")
        if self.choices and self.type != "choice":
            raise ValueError("'choices' only applies to type: choice")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"'pattern' is not a regular expression: {exc}") from exc
        if self.default is not None:
            problem = input_problem(self, _as_text(self.default))
            if problem:
                raise ValueError(f"the default {self.default!r} is invalid: {problem}")
        return self

    @property
    def is_required(self) -> bool:
        return self.required if self.required is not None else self.default is None


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def input_problem(spec: InputSpec, value: str) -> str | None:
    """Say why ``value`` is not valid for ``spec``, or return None."""
    kind = spec.type
    if kind == "int":
        try:
            int(value, 10)
        except ValueError:
            return "expected a whole number, e.g. 10"
    elif kind == "float":
        try:
            float(value)
        except ValueError:
            return "expected a number, e.g. 0.5"
    elif kind == "bool":
        if value.strip().lower() not in _TRUE | _FALSE:
            return "expected true or false"
    elif kind == "choice":
        if value not in spec.choices:
            return f"expected one of {', '.join(spec.choices)}"
    elif kind == "path":
        if not value.strip():
            return "expected a relative path, e.g. data/in.csv"
        pure = PurePosixPath(value)
        if pure.is_absolute() or ".." in pure.parts:
            return "expected a path inside the repository (relative, without '..')"
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
        return f"does not match the pattern {spec.pattern!r}"
    return None


def normalize_input(spec: InputSpec, value: str) -> str:
    """The canonical text of a valid value (bools become 'true'/'false', ints lose leading zeros)."""
    if spec.type == "bool":
        return "true" if value.strip().lower() in _TRUE else "false"
    if spec.type == "int":
        return str(int(value, 10))
    return value


def _acceptance_entry(value: object) -> object:
    # A bare string is a check command; its name is its first word.
    if isinstance(value, str):
        first = value.split()[0].rsplit("/", 1)[-1] if value.split() else "check"
        return {"name": first, "command": value}
    return value


def _int_list(value: object) -> object:
    return [value] if isinstance(value, int) and not isinstance(value, bool) else value


class AcceptanceCheck(ConfigModel):
    """A check that decides whether an operator's run counts: PASS, WARN or FAIL."""

    name: str = Field(min_length=1, description="short name shown in results, e.g. 'rows'")
    command: str = Field(
        min_length=1, description="shell command run in the worktree; {{input}} placeholders"
    )
    timeout: Timebox | None = Field(default=None, description="wall-clock limit for this check")
    expect_exit: Annotated[
        list[int],
        BeforeValidator(_int_list),
        WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}}]}),
    ] = Field(
        default_factory=lambda: [0], description="exit codes that count as PASS (a smoke run may expect 2)"
    )
    severity: Literal["fail", "warn"] = Field(
        default="fail", description="'warn': when it does not pass the verdict is WARN, not FAIL"
    )


class FailurePaths(ConfigModel):
    """The next pointer to record for each kind of failure; placeholders: see POINTER_FIELDS."""

    timeout: PointerTemplate = Field(default=None, description="the timebox ran out")
    stall: PointerTemplate = Field(
        default=None, description="no output and no file changes for the stall time"
    )
    command_failed: PointerTemplate = Field(default=None, description="the command exited non-zero")
    check_failed: PointerTemplate = Field(default=None, description="an acceptance check or a check failed")
    missing_evidence: PointerTemplate = Field(default=None, description="the mode's evidence is missing")
    setup_failed: PointerTemplate = Field(default=None, description="a setup command failed")

    def for_kind(self, kind: str) -> str | None:
        value: str | None = getattr(self, kind, None)
        return value


def _operator_id(info: ValidationInfo) -> str:
    return repr(info.data.get("id", "?"))


class OperatorSpec(ConfigModel):
    """One operator under ``operators:``."""

    id: str = Field(description="stable id used with `spine run --op ID`, e.g. 'ingest-csv'")
    name: str = Field(min_length=1, description="human-readable name")
    description: str = Field(default="", description="purpose, in one sentence")
    modes: list[ModeName] = Field(
        default_factory=list,
        validate_default=True,
        description="modes in which the operator is legal: " + ", ".join(m.value for m in Mode),
    )
    inputs: dict[str, InputSpec] = Field(
        default_factory=dict, description="typed inputs, referenced as {{name}} in commands"
    )
    command: str | None = Field(default=None, description="shell command (or use steps)")
    steps: list[str] = Field(
        default_factory=list, description="shell commands run in order; the first failure stops"
    )
    outputs: list[ArtifactGlob] = Field(
        default_factory=list, description="artifact globs the operator is expected to produce"
    )
    acceptance: list[
        Annotated[
            AcceptanceCheck,
            BeforeValidator(_acceptance_entry, json_schema_input_type=NonBlankText | AcceptanceCheck),
        ]
    ] = Field(default_factory=list, validate_default=True, description="acceptance checks (at least one)")
    timebox: Timebox | None = Field(
        default=None, validate_default=True, description="default wall-clock limit, e.g. 10m (required)"
    )
    stall_timeout: Timebox | None = Field(
        default=None, description="stop the lane after this long without output and without file changes"
    )
    iterations: int | None = Field(
        default=None,
        ge=1,
        le=50,
        description="run the command again, with the failing checks' output, until its acceptance "
        "checks pass or it has run this many times (the repair loop; docs/attempts.md)",
    )
    failure_paths: FailurePaths = Field(default_factory=FailurePaths)
    evidence: list[EvidenceRule] = Field(
        default_factory=list, description="evidence required in addition to the mode's pattern"
    )
    next: PointerTemplate = Field(default=None, description="next pointer recorded when the run counts")
    env: dict[EnvName, EnvValue] = Field(
        default_factory=dict, description="extra environment variables (a number is taken as text)"
    )

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        problem = id_problem(value)
        if problem:
            raise ValueError(f"invalid operator id: {problem}; use something like 'ingest-csv'")
        return value

    @field_validator("modes")
    @classmethod
    def _legal_somewhere(cls, value: list[Mode], info: ValidationInfo) -> list[Mode]:
        if not value:
            raise ValueError(
                f"operator {_operator_id(info)} is legal in no mode; list at least one, "
                f"e.g. modes: [PIPELINE] (modes: {', '.join(m.value for m in Mode)})"
            )
        return list(dict.fromkeys(value))

    @field_validator("inputs")
    @classmethod
    def _input_names(cls, value: dict[str, InputSpec]) -> dict[str, InputSpec]:
        for name in value:
            if not _INPUT_NAME.match(name):
                raise ValueError(
                    f"input name {name!r} must be letters, digits and '_' (not starting with a digit)"
                )
        return value

    @field_validator("acceptance")
    @classmethod
    def _has_acceptance(cls, value: list[AcceptanceCheck], info: ValidationInfo) -> list[AcceptanceCheck]:
        if not value:
            raise ValueError(
                f"operator {_operator_id(info)} has no acceptance checks; add at least one, "
                "e.g. acceptance: [{name: tests, command: 'make test'}]"
            )
        seen: set[str] = set()
        for check in value:
            if check.name in seen:
                raise ValueError(f"two acceptance checks are named {check.name!r}; give each its own name")
            seen.add(check.name)
        return value

    @field_validator("timebox")
    @classmethod
    def _has_timebox(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None:
            raise ValueError(
                f"operator {_operator_id(info)} has no timebox; every operator needs a default timebox, e.g. timebox: 10m"
            )
        return value

    @model_validator(mode="after")
    def _command_and_placeholders(self) -> "OperatorSpec":
        if (self.command is None) == (not self.steps):
            raise ValueError(f"operator {self.id!r} needs exactly one of 'command' or 'steps'")
        texts = [self.command or "", *self.steps, *self.outputs, *(c.command for c in self.acceptance)]
        used = {name for text in texts for name in PLACEHOLDER.findall(text)}
        unknown = used - set(self.inputs)
        if unknown:
            raise ValueError(
                f"operator {self.id!r} uses {', '.join('{{' + n + '}}' for n in sorted(unknown))} "
                f"but declares no such input (inputs: {', '.join(self.inputs) or 'none'})"
            )
        return self

    def script(self, values: Mapping[str, str]) -> str:
        """The operator's command, or its steps as one shell script that stops at the first failure.

        Placeholders are replaced by the shell-quoted ``values`` (see ``resolve_inputs``).
        """
        if self.command is not None:
            return substitute(self.command, values, quote=True)
        lines = []
        total = len(self.steps)
        for n, raw in enumerate(self.steps, 1):
            step = substitute(raw, values, quote=True)
            first = step.strip().splitlines()[0] if step.strip() else ""
            label = shlex.quote(f"==> step {n}/{total}: {first}")
            failed = shlex.quote(f"spine: step {n}/{total} failed with exit ")
            lines.append(f"printf '%s\\n' {label}")
            lines.append(f'{{ {step}\n}} || {{ rc=$?; printf "%s%s\\n" {failed} "$rc" >&2; exit "$rc"; }}')
        return "\n".join(lines)


def resolve_inputs(op: OperatorSpec, given: Mapping[str, object]) -> dict[str, str]:
    """Validate ``given`` against the operator's inputs; return every input's canonical text.

    Raises UsageError naming the input, what was wrong and what is expected.
    """
    unknown = sorted(set(given) - set(op.inputs))
    if unknown:
        known = ", ".join(f"{n} ({s.type})" for n, s in op.inputs.items()) or "none"
        raise UsageError(
            f"operator {op.id!r} has no input {', '.join(repr(u) for u in unknown)}",
            f"its inputs: {known}; see `spine ops {op.id}`",
        )
    resolved: dict[str, str] = {}
    for name, spec in op.inputs.items():
        if name in given and given[name] is not None:
            value = _as_text(given[name])
        elif spec.default is not None:
            value = _as_text(spec.default)
        elif spec.is_required:
            raise UsageError(
                f"operator {op.id!r} needs input {name!r} ({spec.type})",
                f"pass it with --input {name}=VALUE" + (f" ({spec.description})" if spec.description else ""),
            )
        else:
            value = ""
        if value or spec.is_required or name in given:
            problem = input_problem(spec, value)
            if problem:
                raise UsageError(
                    f"operator {op.id!r}: input {name}={value!r} is invalid: {problem}",
                    f"see `spine ops {op.id}` for its inputs",
                )
        resolved[name] = normalize_input(spec, value) if value else value
    return resolved


def substitute(text: str, values: Mapping[str, str], *, quote: bool) -> str:
    """Replace ``{{name}}`` placeholders; ``quote`` shell-quotes each value (for commands)."""

    def repl(match: re.Match[str]) -> str:
        value = values[match.group(1)]
        return shlex.quote(value) if quote else value

    return PLACEHOLDER.sub(repl, text)


def parse_input_pairs(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """KEY=VALUE pairs from repeated --input options."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _INPUT_NAME.match(key):
            raise UsageError(f"--input {pair!r} is not NAME=VALUE", "e.g. --input source=data/in.csv")
        if key in out:
            raise UsageError(f"--input {key} is given twice", "give each input once")
        out[key] = value
    return out


class OpBinding(BaseModel):
    """What a lane carries when it runs in a mode: the resolved operator snapshot, frozen at run creation.

    Stored inside the lane spec in run.json, so ``spine resume`` grades the lane with the definitions
    it started with even if ``.spine.yaml`` changed meanwhile.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    operator: str | None = None
    mode: Mode | None = None
    mode_source: Literal["operator", "flag", "classifier"] = "operator"
    mode_reason: str = ""
    inputs: dict[str, str] = Field(default_factory=dict)
    acceptance: list[AcceptanceCheck] = Field(default_factory=list)
    evidence: list[EvidenceRule] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=list)
    failure_paths: FailurePaths = Field(default_factory=FailurePaths)
    next: str | None = None
    stop_rule: str | None = None
    env: dict[str, str] = Field(
        default_factory=dict, description="operator env, SPINE_INPUT_<NAME>, SPINE_OPERATOR, SPINE_MODE"
    )

    def as_data(self) -> dict[str, Any]:
        """The form stored in a lane spec (``LaneSpec.op``) and run.json."""
        return self.model_dump(mode="json", by_alias=True)


def pointer(template: str, fields: Mapping[str, Any]) -> str:
    """Fill a next-pointer template; unknown or missing fields stay as written. Always one line."""

    class _Keep(dict[str, Any]):
        def __missing__(self, key: str) -> str:
            return "{" + key + "}"

    try:
        text = string.Formatter().vformat(template, (), _Keep(fields))
    except (ValueError, IndexError, AttributeError):
        text = template
    return " ".join(text.split())
