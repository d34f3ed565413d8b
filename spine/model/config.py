"""The ``.spine.yaml`` configuration: pydantic models, loading, and error messages a person can act on."""

import functools
import string
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from spine.base.errors import ConfigError
from spine.base.ids import parse_duration

if TYPE_CHECKING:
    from spine.model.modes import Mode, ModeSettings
    from spine.model.operators import OperatorSpec

CONFIG_FILE = ".spine.yaml"

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {
                    "type": "string",
                    "pattern": r"^\s*(\d+(\.\d+)?\s*h)?\s*(\d+(\.\d+)?\s*m)?\s*(\d+(\.\d+)?\s*s?)?\s*$",
                },
            ],
            "description": "seconds, or a duration such as 90s, 10m, 1h, 1h30m",
        }
    ),
]

# Fields a commit message template may use.
COMMIT_TEMPLATE_FIELDS = frozenset(
    {"objective", "run_id", "lane_id", "branch", "base_ref", "base_sha", "backend"}
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        """A key left empty in YAML (every entry commented out) means its default, not null."""
        if not isinstance(data, dict):
            return data
        cleaned = dict(data)
        for key, value in data.items():
            field = cls.model_fields.get(key) or next(
                (f for f in cls.model_fields.values() if f.alias == key), None
            )
            if value is None and field is not None and field.default_factory is not None:
                del cleaned[key]
        return cleaned


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

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


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
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid template: {exc}") from exc
        unknown = names - COMMIT_TEMPLATE_FIELDS
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(COMMIT_TEMPLATE_FIELDS))}"
            )
        return value


class GateConfig(_Model):
    """Settings for ``spine gate``."""

    into: str | None = Field(default=None, description="branch the gate tests merging into; default: target")
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

    base: str | None = Field(
        default=None, description="ref lanes start from; default: the primary checkout's HEAD"
    )
    target: str | None = Field(default=None, description="ref lanes are meant to land on; default: the base")
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
    env: dict[str, str] = Field(
        default_factory=dict, description="extra environment variables for the command"
    )
    env_passthrough: list[str] = Field(
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
    setup: SetupConfig = Field(default_factory=SetupConfig)
    commit: CommitConfig = Field(default_factory=CommitConfig)
    artifacts: list[str] = Field(
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
        model_config = ConfigDict(extra="forbid", frozen=True, title="SpineConfig")

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
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}", "fix the syntax and try again") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    if raw is None:
        return SpineConfig()
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, not a {type(raw).__name__}",
            "see .spine.yaml.example or `spine schema config`",
        )
    return validate_config(raw, str(path))


def validate_config(raw: dict[str, Any], source: str) -> SpineConfig:
    """Validate an already-parsed mapping, naming ``source`` in errors."""
    model = full_config_model() if raw.get("operators") or raw.get("modes") else SpineConfig
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, model), "see `spine schema config`") from exc


def format_validation_error(exc: ValidationError, source: str, model: type[BaseModel]) -> str:
    """Render pydantic errors as 'FILE: key a.b: problem (expected ...)' lines."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, err["loc"][:-1])
            msg = f"unknown key '{loc}'"
            if allowed:
                msg += f"; valid keys here: {', '.join(allowed)}"
        elif kind == "missing":
            msg = f"key '{loc}' is required"
        else:
            text = err["msg"].removeprefix("Value error, ")
            msg = f"key '{loc}': {text} (got {_short(err.get('input'))})"
        lines.append(msg)
    head = f"{source}: " if len(lines) == 1 else f"{source}: {len(lines)} problems:\n  - "
    return head + "\n  - ".join(lines)


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
