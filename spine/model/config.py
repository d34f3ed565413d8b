"""The ``.spine.yaml`` configuration: pydantic models, loading, and error messages a person can act on."""

import functools
import re
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from spine.base.errors import ConfigError
from spine.model.values import (
    ArtifactGlob,
    Duration,
    EnvName,
    EnvValue,
    RefName,
    empty_keys_in_schema,
    text_problems,
    without_empty_keys,
)

if TYPE_CHECKING:
    from spine.model.modes import Mode, ModeSettings
    from spine.model.operators import OperatorSpec

CONFIG_FILE = ".spine.yaml"

PickRule = Literal["smallest", "first", "fastest", "agreement"]
"""How a lane with attempts picks one (docs/attempts.md); every rule picks only an attempt that passed."""
PICK_RULES: tuple[str, ...] = ("smallest", "first", "fastest", "agreement")
MAX_ITERATIONS = 50
MAX_ATTEMPTS = 50

# Fields a commit message template may use.
COMMIT_TEMPLATE_FIELDS = frozenset(
    {"objective", "run_id", "lane_id", "branch", "base_ref", "base_sha", "backend"}
)


# Strict: a value of the wrong type is an error, never converted ("5" is not a number, "yes" is not a
# boolean), so `spine schema config` accepts exactly what spine does. Environment values are the one
# exception, in this file and in batch files alike: a number is taken as text (EnvValue).
STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)
# An empty key means its default (without_empty_keys): the schema says it may be null.
STRICT_SECTION = ConfigDict(extra="forbid", frozen=True, strict=True, json_schema_extra=empty_keys_in_schema)


class _Model(BaseModel):
    model_config = STRICT_SECTION

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        return without_empty_keys(cls, data)


class CheckSpec(_Model):
    """One check: a shell command run in the lane worktree after the command; exit 0 means passed."""

    name: str = Field(min_length=1, description="short name shown in results, e.g. 'tests'")
    command: str = Field(min_length=1, description="shell command run in the worktree")
    timeout: Duration | None = Field(default=None, description="wall-clock limit for this check")


class SetupConfig(_Model):
    """How a fresh lane worktree is prepared before the command runs."""

    copy_files: list[str] = Field(
        default_factory=list,
        alias="copy",
        description="gitignore-style patterns of untracked files copied from the primary checkout "
        "(added to those in .worktreeinclude), e.g. ['.env']",
    )
    commands: list[str] = Field(
        default_factory=list, description="shell commands run in the new worktree, in order"
    )
    submodules: Literal["skip", "update"] = Field(
        default="skip", description="'update' runs git submodule update --init --recursive in the worktree"
    )


MAX_TEMPLATE_WIDTH = 10_000


class CommitConfig(_Model):
    """How spine commits what a lane's command left behind."""

    message: str = Field(
        default="{objective}",
        description="commit message template; fields: " + ", ".join(sorted(COMMIT_TEMPLATE_FIELDS)),
    )
    author_name: str | None = Field(
        default=None, description="author name; default: your git identity, else 'spine'"
    )
    author_email: str | None = Field(default=None, description="author email; default: your git identity")

    @field_validator("message")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"not a valid template: {exc}") from exc
        names = {name for _, name, _, _ in parsed if name is not None}
        unknown = names - COMMIT_TEMPLATE_FIELDS
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(COMMIT_TEMPLATE_FIELDS))}"
            )
        if any(spec and "{" in spec for _, _, spec, _ in parsed):
            raise ValueError("a format spec may not hold a field (as in {objective:{branch}}); write it out")
        widths = [int(digits) for _, _, spec, _ in parsed if spec for digits in re.findall(r"\d+", spec)]
        if any(width > MAX_TEMPLATE_WIDTH for width in widths):
            raise ValueError(f"a width or precision above {MAX_TEMPLATE_WIDTH} makes no commit message")
        try:  # conversions ({objective!x}) and format specs ({objective:d}) fail only when formatted
            value.format(**{name: "text" for name in COMMIT_TEMPLATE_FIELDS})
        except (ValueError, KeyError, IndexError) as exc:
            raise ValueError(
                f"not a valid template: {exc}; fields are text, e.g. {{objective}}, {{objective!r}}, "
                "{objective:.50}"
            ) from None
        return value


class GateConfig(_Model):
    """Settings for ``spine gate``."""

    into: RefName | None = Field(
        default=None, description="branch the gate tests merging into; default: target"
    )
    checks: list[CheckSpec] = Field(default_factory=list, description="checks run on the merge result")


class PoolConfig(_Model):
    """The worktree pool: finished lanes hand their worktree back, new lanes reuse one."""

    enabled: bool = Field(
        default=True, description="reuse the worktrees of succeeded lanes instead of checking out anew"
    )
    size: int = Field(default=4, ge=1, le=64, description="most worktrees kept waiting in the pool")
    keep: list[str] = Field(
        default_factory=list,
        description="gitignore-style patterns of untracked files a pooled worktree keeps between lanes "
        "(dependency caches such as node_modules or .venv); everything else untracked is removed",
    )

    @field_validator("keep")
    @classmethod
    def _plain_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern.strip() or pattern.startswith("!"):
                raise ValueError(
                    f"{pattern!r} is not a pattern to keep; use e.g. 'node_modules/' or '.venv/'"
                )
            if pattern.strip("/") in (".git", ".") or ".." in pattern.split("/"):
                raise ValueError(f"{pattern!r} may not name .git or leave the worktree")
        return value


class GcConfig(_Model):
    """Settings for ``spine gc``."""

    retention_days: float | None = Field(
        default=30.0,
        gt=0,
        description="delete runs (state, worktrees, merged branches) older than this many days; null keeps them",
    )


_OPERATORS_HELP = "named lane recipes run with `spine run --op ID` (docs/operators.md)"
_MODES_HELP = "per-mode overrides of the evidence pattern, classifier keywords and stop rule"


class SpineConfig(_Model):
    """The whole ``.spine.yaml``."""

    base: RefName | None = Field(
        default=None, description="ref lanes start from; default: the primary checkout's HEAD"
    )
    target: RefName | None = Field(
        default=None, description="ref lanes are meant to land on; default: the base"
    )
    backend: str = Field(default="local-worktree", description="isolation backend (see `spine backends`)")
    worktree_root: str | None = Field(
        default=None,
        description="directory for lane worktrees; default: spine/worktrees in the repository's git directory",
    )
    timeout: Duration | None = Field(default=3600.0, description="wall-clock limit for a lane's command")
    idle_timeout: Duration | None = Field(
        default=None, description="stop a command that prints nothing this long"
    )
    stall_timeout: Duration | None = Field(
        default=None,
        description="stop a command that neither prints nor changes a file in its worktree this long",
    )
    env: dict[EnvName, EnvValue] = Field(
        default_factory=dict,
        description="extra environment variables for the command (a number is taken as text: 1 is '1')",
    )
    env_passthrough: list[EnvName] = Field(
        default_factory=list,
        description="names of variables passed from the invoking environment into isolating backends "
        "(bubblewrap, docker, remote sandboxes), which otherwise see only PATH, locale, SPINE_* and 'env'",
    )
    lock_timeout: Duration = Field(
        default=120.0,
        description="how long spine waits for a lock another spine process holds before giving up (exit 3)",
    )
    checks_on_host: bool = Field(
        default=False,
        description="run setup commands, checks and acceptance checks on the host even when the lane's backend "
        "isolates its command (bubblewrap, docker, remote sandboxes); by default they run in the same isolation",
    )
    network: bool = Field(
        default=False,
        description="allow network access in backends that can block it (bubblewrap, docker, e2b, vercel-sandbox)",
    )
    iterations: int = Field(
        default=1,
        ge=1,
        le=MAX_ITERATIONS,
        description="the most times a lane's command runs when its checks fail (the repair loop); "
        "1 runs it once",
    )
    pick: PickRule = Field(
        default="smallest",
        description="how a lane with attempts picks one: smallest (the smallest passing change), first "
        "(the first to pass), fastest (the quickest to pass), agreement (the passing change the other "
        "attempts agree with most)",
    )
    setup: SetupConfig = Field(default_factory=SetupConfig)
    commit: CommitConfig = Field(default_factory=CommitConfig)
    artifacts: list[ArtifactGlob] = Field(
        default_factory=list,
        description="glob patterns (relative to the worktree) of files kept as artifacts",
    )
    checks: list[CheckSpec] = Field(default_factory=list, description="checks run after every lane's command")
    gate: GateConfig = Field(default_factory=GateConfig)
    gc: GcConfig = Field(default_factory=GcConfig)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    backends: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-backend settings, keyed by backend name"
    )
    # Typed loosely here and exactly in full_config_model(), which validates any file that declares
    # operators or modes: building their models costs every command ~15 ms, and most repositories
    # declare none. Only empty values ever reach these two fields of this class.
    operators: list[Any] = Field(default_factory=list, description=_OPERATORS_HELP)
    modes: dict[Any, Any] = Field(default_factory=dict, description=_MODES_HELP)

    def operator(self, op_id: str) -> "OperatorSpec | None":
        """The operator with id ``op_id``, if configured."""
        found: OperatorSpec | None = next((op for op in self.operators if op.id == op_id), None)
        return found

    def mode_settings(self) -> "dict[Mode, ModeSettings]":
        return dict(self.modes)

    @field_validator("checks")
    @classmethod
    def _unique_check_names(cls, value: list[CheckSpec]) -> list[CheckSpec]:
        seen: set[str] = set()
        for check in value:
            if check.name in seen:
                raise ValueError(f"two checks are named {check.name!r}; give each check its own name")
            seen.add(check.name)
        return value


@functools.cache
def full_config_model() -> type[SpineConfig]:
    """SpineConfig with its operators and modes typed exactly: the schema, and what validates them."""
    from spine.model.modes import ModeName, ModeSettings
    from spine.model.operators import OperatorSpec

    class FullSpineConfig(SpineConfig):
        model_config = ConfigDict(
            extra="forbid",
            frozen=True,
            strict=True,
            json_schema_extra=empty_keys_in_schema,
            title="SpineConfig",
        )

        operators: list[OperatorSpec] = Field(default_factory=list, description=_OPERATORS_HELP)
        modes: dict[ModeName, ModeSettings] = Field(default_factory=dict, description=_MODES_HELP)

        @field_validator("operators")
        @classmethod
        def _unique_operator_ids(cls, value: list[OperatorSpec]) -> list[OperatorSpec]:
            seen: set[str] = set()
            for op in value:
                if op.id in seen:
                    raise ValueError(f"two operators have the id {op.id!r}; give each operator its own id")
                seen.add(op.id)
            return value

    FullSpineConfig.__doc__ = SpineConfig.__doc__
    return FullSpineConfig


def load_config(path: Path) -> SpineConfig:
    """Read and validate ``path``; a missing file means all defaults."""
    if not path.is_file():
        return SpineConfig()
    import yaml  # slow-ish import, only when there is a file

    try:
        text = read_utf8(path)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {yaml_problem(exc)}", "fix the syntax and try again") from None
    except ValueError as exc:  # not UTF-8
        raise ConfigError(f"{path}: {exc}", "save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if raw is None:
        return SpineConfig()
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, not {kind_of(raw)}",
            "see .spine.yaml.example or `spine schema config`",
        )
    return validate_config(raw, str(path))


def read_utf8(path: Path) -> str:
    """The text of ``path``; a ValueError saying where when it is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ValueError(
            f"not valid UTF-8 text at line {line}, column {column} (byte 0x{data[exc.start]:02x})"
        ) from None


def yaml_problem(exc: Exception) -> str:
    """'invalid YAML at line L, column C: problem' for a PyYAML error."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"invalid YAML{where}: {problem}"


def validate_config(raw: dict[str, Any], source: str) -> SpineConfig:
    """Validate an already-parsed mapping, naming ``source`` in errors; every problem at once."""
    typed = bool(raw.get("operators") or raw.get("modes"))
    model = full_config_model() if typed else SpineConfig
    try:
        config = model.model_validate(raw)
        problems: list[str] = []
        reported: set[str] = set()
    except ValidationError as exc:
        problems, reported = validation_problems(exc, model, raw)
    problems += [
        f"key '{where}': {problem}"
        for loc, problem in text_problems(raw)
        if (where := _dotted(loc) or "(top level)") not in reported
    ]
    if problems:
        raise ConfigError(problems_message(source, problems), "see `spine schema config`")
    return config


def problems_message(source: str, problems: list[str]) -> str:
    """'SOURCE: problem', or 'SOURCE: N problems:' and one line each."""
    head = f"{source}: " if len(problems) == 1 else f"{source}: {len(problems)} problems:\n  - "
    return head + "\n  - ".join(problems)


def validation_problems(
    exc: ValidationError, model: type[BaseModel], data: Any = None
) -> tuple[list[str], set[str]]:
    """One line per pydantic error naming its key in ``data`` (the validated input), and the keys named."""
    lines = []
    keys: set[str] = set()
    for err in exc.errors():
        loc = tuple(err["loc"])
        kind = err["type"]
        mapping_key = bool(loc) and loc[-1] == "[key]"  # a key of a mapping is wrong: name the mapping
        loc = _in_data(data, loc[:-2] if mapping_key else loc)
        dotted = _dotted(loc) or "(top level)"
        keys.add(dotted)
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            msg = f"unknown key '{dotted}'"
            if allowed:
                msg += f"; valid keys here: {', '.join(allowed)}"
        elif kind == "missing":
            msg = f"key '{dotted}' is required"
        else:
            text = err["msg"].removeprefix("Value error, ")
            got = "" if mapping_key else f" (got {_short(err.get('input'))})"
            msg = f"key '{dotted}': {text}{got}"
        lines.append(msg)
    return lines, keys


def _in_data(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """``loc`` without the names pydantic adds for the members of a union ('str', 'CheckSpec',
    'function-after[...]'): the keys and indexes that lead through ``data`` are kept, and after them
    the names of fields (lower case, no brackets) that are not in ``data``."""
    kept = []
    current = data
    for part in loc:
        if (isinstance(current, dict) and part in current) or (
            isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        ):
            current = current[part]
        else:
            current = None
            if isinstance(part, str) and (
                _UNION_MEMBER.search(part) or part in ("str", "int", "float", "bool")
            ):
                continue
        kept.append(part)
    return tuple(kept)


_UNION_MEMBER = re.compile(r"[\[\]]|^[A-Z]")


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def kind_of(value: object) -> str:
    """How an error names the type of a value it did not expect: 'null', 'a list', 'a mapping'."""
    if value is None or isinstance(value, bool):
        return str(value).lower() if value is not None else "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part)) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(f.alias or name for name, f in current.model_fields.items())
    return []


def _model_in(annotation: Any) -> Any:
    """Find the BaseModel inside list[Model] / Model | None annotations."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def check_name(command: str, taken: set[str]) -> str:
    """A readable, unique name for a check given as a bare command."""
    base = command.split()[0].rsplit("/", 1)[-1] if command.split() else "check"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name
