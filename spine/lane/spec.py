"""One lane-spec resolver: what the user asked for, resolved against the configuration.

A ``LaneRequest`` holds what the user gave for one lane, from the command line (``spine run``), a
batch lane or both; with ``op`` it names an operator that brings the rest. ``resolve_lane_spec`` is
the only code that turns a request into the ``LaneSpec`` a run records: every setting can be given
every way, defaults are the same on every path, and ``LaneSpec.sources`` says where each value came
from (``flag``, ``batch lane``, ``operator``, ``.spine.yaml`` or ``default``). Values are checked here,
before anything is created: a bad one is a usage error (exit 2) naming where it was given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from spine.base.errors import UsageError
from spine.base.ids import check_id, id_problem, slugify
from spine.base.redact import MASK, looks_secret, register
from spine.model.config import CheckSpec, SpineConfig, check_name
from spine.model.state import LANE_BASE_PREFIX, LaneSpec

if TYPE_CHECKING:
    from spine.model.batch import BatchFile  # batch files only: its models are not built for `spine run`

Origin = Literal["flag", "batch lane"]


class LaneRequest(BaseModel):
    """What a user asked for one lane. A field that is not set was not given (``model_fields_set``);
    a timeout set to None was given as 'none' (no limit)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    objective: str | None = None
    command: list[str] | str | None = None
    op: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    mode: str | None = None
    base: str | None = None
    backend: str | None = None
    timeout: float | None = None
    idle_timeout: float | None = None
    stall_timeout: float | None = None
    env: dict[str, str] = Field(default_factory=dict)
    env_passthrough: list[str] = Field(default_factory=list)
    network: bool | None = None
    checks: list[CheckSpec | str] = Field(default_factory=list)
    artifacts: list[str] = Field(default_factory=list)
    needs: list[str] = Field(default_factory=list)
    commit_in_place: bool = False
    keep_worktree: bool = False
    checks_on_host: bool | None = None


class _Where:
    """Names the place a value was given, for error messages."""

    def __init__(self, origin: Origin, label: str | None) -> None:
        self.origin = origin
        self.label = label

    def __call__(self, field: str) -> str:
        flags = {
            "timeout": "--timeout",
            "idle_timeout": "--idle-timeout",
            "stall_timeout": "--stall-timeout",
            "env": "--env",
            "env_passthrough": "--pass-env",
            "checks": "--check",
            "artifacts": "--artifact",
            "objective": "the objective",
            "command": "the command",
            "base": "--base",
            "id": "--lane",
        }
        if self.origin == "flag":
            return flags.get(field, f"--{field.replace('_', '-')}")
        return f"{self.label}: key '{field}'"


def resolve_lane_spec(
    request: LaneRequest, config: SpineConfig, *, origin: Origin, label: str | None = None
) -> LaneSpec:
    """The LaneSpec of ``request`` under ``config``; see the module docstring.

    ``label`` names a batch lane in errors (e.g. ``lanes.yaml: lane 'parser'``). Raises UsageError.
    """
    where = _Where(origin, label)
    given = request.model_fields_set
    sources: dict[str, str] = {}

    def pick(field: str, from_op: tuple[bool, Any] = (False, None)) -> Any:
        if field in given:
            sources[field] = origin
            return getattr(request, field)
        if from_op[0]:
            sources[field] = "operator"
            return from_op[1]
        if field in config.model_fields_set:
            sources[field] = ".spine.yaml"
        else:
            sources[field] = "default"
        return getattr(config, field)

    binding: dict[str, Any] | None = None
    op_checks: list[CheckSpec] = []
    if request.op is not None:
        if request.command is not None:
            raise UsageError(
                f"{where('command')}: an operator ({request.op!r}) brings its own command; give one or the other",
                f'run it as: spine run --op {request.op} --input NAME=VALUE "OBJECTIVE"',
            )
        op_spec = _operator_spec(request, config, where)
        objective = op_spec["objective"]
        command = op_spec["command"]
        binding = op_spec["binding"]
        sources.update(objective="operator" if "objective" not in given else origin, command="operator")
        timeout = pick("timeout", (True, op_spec["timebox"]))
        stall = pick("stall_timeout", (op_spec["stall_timeout"] is not None, op_spec["stall_timeout"]))
        outputs: list[str] = op_spec["outputs"]
    else:
        if request.inputs:
            raise UsageError("--input is given without --op", "inputs belong to an operator: add --op ID")
        objective = _objective(request.objective, where)
        if request.command is None or (isinstance(request.command, list) and not request.command):
            raise UsageError(
                "no command given",
                'put the command after --, e.g.: spine run "fix the parser" -- ./scripts/agent.sh --task parser',
            )
        command = _command(request.command, where)
        sources.update(objective=origin, command=origin)
        timeout = pick("timeout")
        stall = pick("stall_timeout")
        outputs = []
        if request.mode is not None:
            from spine.lane.binding import mode_binding  # the mode machinery, only for a lane with a mode

            binding = mode_binding(config, objective, request.mode).as_data()
            sources["mode"] = origin
    idle = pick("idle_timeout")
    for name, value in (("timeout", timeout), ("idle_timeout", idle), ("stall_timeout", stall)):
        _check_duration(value, where(name))
    lane_id = _lane_id(request, objective, where)
    env = _env(request.env, where("env"))
    passthrough = [_variable_name(n, where("env_passthrough")) for n in request.env_passthrough]
    network = pick("network")
    checks_on_host = pick("checks_on_host")
    taken = {c.name for c in config.checks}
    checks = [*op_checks, *(_check(c, taken, where("checks")) for c in request.checks)]
    artifacts = [
        *outputs,
        *(a for a in (_artifact(p, where("artifacts")) for p in request.artifacts) if a not in outputs),
    ]
    base = _base(request.base, where("base"))
    needs = list(dict.fromkeys(request.needs))
    for field in ("env", "env_passthrough", "checks", "artifacts", "needs", "base", "backend"):
        if field in given:
            sources[field] = origin
    if request.commit_in_place:
        sources["commit_in_place"] = origin
    if request.keep_worktree:
        sources["keep_worktree"] = origin
    if request.backend is not None:
        _backend_known(request.backend, where("backend"))
    return LaneSpec(
        id=lane_id,
        objective=objective,
        command=command,
        base=base,
        backend=request.backend,
        timeout=timeout,
        idle_timeout=idle,
        stall_timeout=stall,
        env=env,
        env_passthrough=passthrough,
        network=network,
        checks=checks,
        artifacts=artifacts,
        needs=needs,
        commit_in_place=request.commit_in_place,
        keep_worktree=request.keep_worktree,
        checks_on_host=checks_on_host,
        op=binding,
        sources=sources,
    )


def stored_form(spec: LaneSpec) -> LaneSpec:
    """The spec as run.json keeps it: the values of secret ``env`` entries replaced by the mask.

    The values are registered with the process redactor, so nothing this process writes shows them;
    the lane's command still gets them (``LaneRuntime.lane_env`` reads them from the environment).
    """
    secret = {k: v for k, v in spec.env.items() if looks_secret(k)}
    if not secret:
        return spec
    register(secret.values())
    return spec.model_copy(
        update={"env": {k: (MASK.decode() if k in secret else v) for k, v in spec.env.items()}}
    )


# --- values ----------------------------------------------------------------------------------------


def _text(value: str, what: str) -> str:
    if "\0" in value:
        raise UsageError(f"{what} contains a NUL character", "remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not valid UTF-8 text", "pass it as UTF-8") from None
    return value


def _objective(value: str | None, where: _Where) -> str:
    if value is None or not value.strip():
        raise UsageError(
            "the objective is empty", 'say what the lane should achieve: spine run "fix the parser" -- CMD'
        )
    return _text(value, where("objective")).strip()


def _command(value: list[str] | str, where: _Where) -> list[str] | str:
    if isinstance(value, str):
        if not value.strip():
            raise UsageError(f"{where('command')} is empty", "give the command to run")
        return _text(value, where("command"))
    return [_text(arg, where("command")) for arg in value]


def _lane_id(request: LaneRequest, objective: str, where: _Where) -> str:
    if request.id is not None:
        problem = id_problem(request.id)
        if problem:
            raise UsageError(
                f"{where('id')}: invalid lane id {request.id!r}: {problem}",
                "use something like 'fix-parser' or 'lane_2' (lane ids become branch names and paths)",
            )
        return request.id
    if request.op is not None and not (request.objective or "").strip():
        return check_id("lane id", request.op)
    return slugify(objective)


def _check_duration(value: float | None, what: str) -> None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise UsageError(
            f"{what}: {value!r} is not a duration", "give seconds or e.g. 90s, 10m, 1h; 'none' for no limit"
        )


def _variable_name(name: str, what: str) -> str:
    if not name or "=" in name or "\0" in name or not name.replace("_", "a").isalnum() or name[0].isdigit():
        raise UsageError(
            f"{what}: {name!r} is not a variable name", "use letters, digits and underscores, e.g. API_TOKEN"
        )
    return name


def _env(env: Mapping[str, str], what: str) -> dict[str, str]:
    out = {}
    for key, value in env.items():
        _variable_name(key, what)
        if not isinstance(value, str):
            raise UsageError(f"{what}: the value of {key} must be text", f'quote it, e.g. {key}: "{value}"')
        out[key] = _text(value, f"{what}: the value of {key}")
    return out


def _check(check: CheckSpec | str, taken: set[str], what: str) -> CheckSpec:
    if isinstance(check, CheckSpec):
        _text(check.command, what)
        taken.add(check.name)
        return check
    if not check.strip():
        raise UsageError(
            f"{what}: the check command is empty", 'give a shell command, e.g. --check "make test"'
        )
    return CheckSpec(name=check_name(_text(check, what), taken), command=check)


def artifact_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be an artifact glob (relative to the worktree), or None."""
    if not pattern.strip():
        return "it is empty"
    if "\0" in pattern:
        return "it contains a NUL character"
    if pattern.startswith(("/", "~")):
        return "it is absolute; artifact globs are relative to the lane's worktree"
    if ".." in pattern.replace("\\", "/").split("/"):
        return "it leaves the worktree ('..')"
    return None


def _artifact(pattern: str, what: str) -> str:
    problem = artifact_problem(pattern)
    if problem:
        raise UsageError(
            f"{what}: invalid artifact glob {pattern!r}: {problem}", "e.g. --artifact 'reports/*.json'"
        )
    return pattern


def _base(base: str | None, what: str) -> str | None:
    if base is None:
        return None
    if not base.strip() or base.startswith("-") or "\0" in base:
        raise UsageError(f"{what}: invalid base ref {base!r}", "name a branch, tag or commit, or lane:ID")
    if base.startswith(LANE_BASE_PREFIX):
        check_id("lane id", base.removeprefix(LANE_BASE_PREFIX))
    return base


def _backend_known(name: str, what: str) -> None:
    from spine.base.backend_names import known_backend_names

    names = known_backend_names()
    if name not in names:
        raise UsageError(f"{what}: unknown backend {name!r}", f"known backends: {', '.join(names)}")


def _operator_spec(request: LaneRequest, config: SpineConfig, where: _Where) -> dict[str, Any]:
    from spine.lane.binding import operator_binding

    assert request.op is not None
    try:
        return operator_binding(
            config,
            request.op,
            request.inputs,
            objective=request.objective,
            mode=request.mode,
            origin=where.origin,
        )
    except UsageError as exc:
        if where.label is None:
            raise
        raise UsageError(f"{where.label}: {exc.message}", exc.hint) from None


def parse_env_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """KEY=VALUE pairs from repeated --env options; a usage error names a bad one."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--env: {pair!r} is not KEY=VALUE", "e.g. --env LOG_LEVEL=debug")
        env[_variable_name(key, "--env")] = value
    return env


def batch_lane_specs(batch: BatchFile, config: SpineConfig, source: str) -> list[LaneSpec]:
    """The LaneSpec of every lane of a validated batch file (``source`` names it in errors)."""
    specs = []
    for lane in batch.lanes:
        given = {
            name: getattr(lane, name) for name in lane.model_fields_set if name in LaneRequest.model_fields
        }
        given["id"] = lane.id
        given["needs"] = lane.all_needs
        request = LaneRequest(**given)
        specs.append(
            resolve_lane_spec(request, config, origin="batch lane", label=f"{source}: lane {lane.id!r}")
        )
    return specs
