"""One lane-spec resolver: what the user asked for, resolved against the configuration.

A ``LaneRequest`` holds what the user gave for one lane, from the command line (``spine run``), a
batch lane or both; with ``op`` it names an operator that brings the rest. ``resolve_lane_spec`` is
the only code that turns a request into the ``LaneSpec`` a run records: every setting can be given
every way, defaults are the same on every path, and ``LaneSpec.sources`` says where each value came
from (``flag``, ``batch lane``, ``operator``, ``.spine.yaml`` or ``default``). Values are checked here,
before anything is created: a bad one is a usage error (exit 2) naming where it was given.

A request with attempts (``--attempts N``, ``--attempt-command``, a batch lane's ``attempts:``)
becomes several specs (``resolve_lane_specs``): one lane per attempt, ``LANE.1`` ... ``LANE.N``, each
resolved like any lane, and the lane ``LANE`` itself, which runs nothing and compares them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from spine.base.errors import UsageError
from spine.base.ids import check_id, id_problem, slugify
from spine.base.redact import MASK, looks_secret, register
from spine.model.config import MAX_ATTEMPTS, MAX_ITERATIONS, PICK_RULES, CheckSpec, SpineConfig, check_name
from spine.model.state import LANE_BASE_PREFIX, LaneSpec
from spine.model.values import artifact_problem, ref_problem, text_problem, variable_name_problem

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
    iterations: int | None = None
    attempts: int | None = None
    attempt_commands: list[Any] = Field(
        default_factory=list,
        description="what the attempts run, in turn: command strings, argv lists or {command | op, inputs, mode}",
    )
    pick: str | None = None
    stop_on_pass: bool = False


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
            "attempt_commands": "--attempt-command",
        }
        if self.origin == "flag":
            return flags.get(field, f"--{field.replace('_', '-')}")
        keys = {"attempt_commands": "attempts"}
        return f"{self.label}: key '{keys.get(field, field)}'"


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
        iterations = pick("iterations", (op_spec["iterations"] is not None, op_spec["iterations"]))
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
        iterations = pick("iterations")
        outputs = []
        if request.mode is not None:
            from spine.lane.binding import mode_binding  # the mode machinery, only for a lane with a mode

            binding = mode_binding(config, objective, request.mode).as_data()
            sources["mode"] = origin
    idle = pick("idle_timeout")
    for name, value in (("timeout", timeout), ("idle_timeout", idle), ("stall_timeout", stall)):
        _check_duration(value, where(name))
    _check_count(iterations, MAX_ITERATIONS, where("iterations"), "iterations")
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
        iterations=iterations,
    )


def resolve_lane_specs(
    request: LaneRequest, config: SpineConfig, *, origin: Origin, label: str | None = None
) -> list[LaneSpec]:
    """The specs of ``request``: one, or for a request with attempts the lane and its attempts.

    The lane ``LANE`` comes first and runs nothing: it compares its attempts ``LANE.1`` ...
    ``LANE.N`` once they all ended. Attempt N runs the Nth of the commands given (the command after
    ``--`` or the lane's ``command``/``op`` first, then each ``--attempt-command``), in turn when
    there are fewer commands than attempts. Raises UsageError.
    """
    where = _Where(origin, label)
    given = request.model_fields_set
    if request.attempts is None and not request.attempt_commands:
        if "pick" in given or request.stop_on_pass:
            raise UsageError(
                f"{where('pick') if 'pick' in given else where('stop_on_pass')} only applies to a lane with attempts",
                "give the number of attempts with --attempts N (or `attempts:` in a batch lane)",
            )
        return [resolve_lane_spec(request, config, origin=origin, label=label)]
    _check_count(request.attempts, MAX_ATTEMPTS, where("attempts"), "attempts")
    choices = _attempt_choices(request, where)
    count = request.attempts or len(choices)
    if request.attempts is not None and request.attempts < len(choices):
        raise UsageError(
            f"{where('attempts')}: {request.attempts} attempts, but {len(choices)} commands to run",
            "give at least as many attempts as commands, or leave the number out",
        )
    base = {name: getattr(request, name) for name in given if name not in _ATTEMPT_ONLY}
    if count == 1:  # one attempt is a lane like any other
        alone = {**base, **choices[0], **({"id": request.id} if "id" in given else {})}
        return [resolve_lane_spec(LaneRequest(**alone), config, origin=origin, label=label)]
    rule = request.pick if "pick" in given else config.pick
    if rule not in PICK_RULES:
        raise UsageError(
            f"{where('pick')}: unknown pick rule {rule!r}", f"pick rules: {', '.join(PICK_RULES)}"
        )
    own_id = {"id": request.id} if "id" in given else {}
    first = resolve_lane_spec(
        LaneRequest(**{**base, **choices[0], **own_id}), config, origin=origin, label=label
    )
    group = first.id
    specs = []
    for n in range(1, count + 1):
        lane_id = f"{group}.{n}"
        problem = id_problem(lane_id)
        if problem:
            raise UsageError(
                f"{where('id')}: the attempts of lane {group!r} would be named {lane_id!r}: {problem}",
                "choose a shorter lane id with --lane (or `id:` in a batch lane)",
            )
        choice = choices[(n - 1) % len(choices)]
        spec = resolve_lane_spec(
            LaneRequest(**{**base, **choice, "id": lane_id}), config, origin=origin, label=label
        )
        spec.sources["attempts"] = origin
        specs.append(spec.model_copy(update={"attempt_of": group, "attempt": n}))
    lane = LaneSpec(
        id=group,
        objective=first.objective,
        command=[],
        base=first.base,
        attempts=[s.id for s in specs],
        pick=rule,
        stop_on_pass=request.stop_on_pass,
        sources={
            "attempts": origin,
            "pick": origin
            if "pick" in given
            else (".spine.yaml" if "pick" in config.model_fields_set else "default"),
        },
    )
    return [lane, *specs]


_ATTEMPT_ONLY = {"attempts", "attempt_commands", "pick", "stop_on_pass", "id"}


def _attempt_choices(request: LaneRequest, where: _Where) -> list[dict[str, Any]]:
    """What each attempt runs, as LaneRequest fields: the lane's own command or operator first."""
    from pydantic import ValidationError

    from spine.model.attempts import attempt_entry  # its models only for a lane with attempts

    choices: list[dict[str, Any]] = []
    if request.command is not None or request.op is not None:
        own: dict[str, Any] = {"command": request.command, "op": request.op}
        if request.op is not None:
            own.update(inputs=request.inputs, mode=request.mode)
        choices.append(own)
    for index, value in enumerate(request.attempt_commands, 1):
        try:
            entry = attempt_entry(value)
        except (ValueError, ValidationError) as exc:
            text = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise UsageError(
                f"{where('attempt_commands')}: attempt {index}: {text.removeprefix('Value error, ')}",
                "give a command, or {op: ID, inputs: {...}}",
            ) from None
        if entry.command is not None:
            choices.append(
                {"command": entry.command, "op": None, "inputs": {}, "mode": entry.mode or request.mode}
            )
        else:
            choices.append(
                {"command": None, "op": entry.op, "inputs": dict(entry.inputs), "mode": entry.mode}
            )
    if not choices:
        raise UsageError(
            "no command given",
            'put the command after --, or give each attempt one: spine run --attempts 3 "OBJECTIVE" -- CMD',
        )
    return choices


def _check_count(value: int | None, most: int, what: str, noun: str) -> None:
    if value is not None and (isinstance(value, bool) or not 1 <= value <= most):
        raise UsageError(
            f"{what}: {value!r} is not a number of {noun}", f"give a whole number from 1 to {most}"
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
    problem = text_problem(value)
    if problem:
        hint = "remove it" if "NUL" in problem else "give it as UTF-8 text"
        raise UsageError(f"{what}: {problem}", hint)
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
    if variable_name_problem(name):
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
    problem = ref_problem(base)
    if problem:
        raise UsageError(
            f"{what}: invalid base ref {base!r}: {problem}", "name a branch, tag or commit, or lane:ID"
        )
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
    """The LaneSpec of every lane of a validated batch file (``source`` names it in errors); a lane
    with attempts gives several (``resolve_lane_specs``).

    Every lane is resolved before anything is reported: one UsageError lists the problems of all.
    """
    specs: list[LaneSpec] = []
    problems: list[str] = []
    hints: list[str] = []
    for lane in batch.lanes:
        given = {
            name: getattr(lane, name) for name in lane.model_fields_set if name in LaneRequest.model_fields
        }
        given["id"] = lane.id
        given["needs"] = lane.all_needs
        if isinstance(lane.attempts, list):
            given.pop("attempts")
            given["attempt_commands"] = [
                entry.model_dump(exclude_defaults=True) if isinstance(entry, BaseModel) else entry
                for entry in lane.attempts
            ]
        request = LaneRequest(**given)
        label = f"{source}: lane {lane.id!r}"
        try:
            specs += resolve_lane_specs(request, config, origin="batch lane", label=label)
        except UsageError as exc:
            message = exc.message if exc.message.startswith(label) else f"{label}: {exc.message}"
            problems.append(message.removeprefix(f"{source}: "))
            if exc.hint and exc.hint not in hints:
                hints.append(exc.hint)
    seen: dict[str, int] = {}
    for spec in specs:
        seen[spec.id] = seen.get(spec.id, 0) + 1
    for lane_id, n in seen.items():
        if n > 1:
            problems.append(
                f"lane id {lane_id!r} is used twice (an attempt of a lane with attempts is named LANE.N)"
            )
            if "rename one of the lanes" not in hints:
                hints.append("rename one of the lanes")
    if len(problems) == 1:
        raise UsageError(f"{source}: {problems[0]}", hints[0] if hints else None)
    if problems:
        raise UsageError(
            f"{source}: {len(problems)} problems:\n  - " + "\n  - ".join(problems), "; ".join(hints)
        )
    return specs
