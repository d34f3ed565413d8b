"""Batch files: a top-level ``lanes:`` list, validated whole before anything is created.

A batch is read from YAML or JSON (``-`` for stdin) into pydantic models (unknown keys are errors),
then checked as a graph: ids that cannot be branch names, duplicate ids, ``needs`` naming no lane,
dependency cycles (named, e.g. ``a -> b -> a``), unknown backends. Every problem is reported at
once, as a usage error (exit 2), and nothing is created. See docs/batch.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from spine.base.errors import UsageError
from spine.base.ids import id_problem
from spine.model.attempts import AttemptEntry
from spine.model.config import (
    MAX_ATTEMPTS,
    MAX_ITERATIONS,
    STRICT,
    CheckSpec,
    PickRule,
    kind_of,
    problems_message,
    read_utf8,
    validation_problems,
    yaml_problem,
)
from spine.model.state import LANE_BASE_PREFIX
from spine.model.values import ArtifactGlob, Duration, EnvName, EnvValue, RefName, text_problems

HINT = "see docs/batch.md for the batch file format, or `spine schema batch`"


class BatchLane(BaseModel):
    """One lane of a batch file."""

    model_config = STRICT

    id: str = Field(description="lane id: becomes the branch spine/<run>/<id>; letters, digits, . _ -")
    objective: str | None = Field(
        default=None, description="what the lane should achieve, in a sentence; optional with `op`"
    )
    command: str | list[str] | None = Field(
        default=None, description="a string run by /bin/sh -c, or a list run as argv; or give `op`"
    )
    op: str | None = Field(
        default=None, description="id of an operator from .spine.yaml to run instead of a command"
    )
    inputs: dict[str, Any] = Field(default_factory=dict, description="the operator's inputs, by name")
    mode: str | None = Field(
        default=None,
        description="execution mode (or 'auto') whose evidence decides the lane; default: the operator's, or none",
    )
    base: RefName | None = Field(
        default=None,
        description="ref the lane starts from, or lane:ID to start from another lane's result; default: the run's base",
    )
    backend: str | None = Field(default=None, description="isolation backend; default: from .spine.yaml")
    timeout: Duration | None = Field(
        default=None, description="wall-clock limit; default: from .spine.yaml; null for none"
    )
    idle_timeout: Duration | None = Field(
        default=None, description="stop the command after this long without output"
    )
    stall_timeout: Duration | None = Field(
        default=None, description="stop the command after this long without output and without file changes"
    )
    env: dict[EnvName, EnvValue] = Field(
        default_factory=dict,
        description="extra environment variables (a number is taken as text: 1 is '1')",
    )
    checks: list[str | CheckSpec] = Field(
        default_factory=list, description="checks run after the command: shell commands or {name, command}"
    )
    artifacts: list[ArtifactGlob] = Field(
        default_factory=list, description="glob patterns (relative to the worktree) of files to keep"
    )
    needs: list[str] = Field(
        default_factory=list, description="ids of lanes that must succeed before this one starts"
    )
    keep_worktree: bool = Field(
        default=False,
        description="keep the lane's worktree after it succeeds instead of returning it to the worktree pool",
    )
    env_passthrough: list[EnvName] = Field(
        default_factory=list,
        description="names of variables passed from the invoking environment into an isolating backend",
    )
    network: bool | None = Field(
        default=None,
        description="allow network access in backends that can block it; default: from .spine.yaml",
    )
    commit_in_place: bool = Field(
        default=False, description="with the in-place backend (none), commit the changes in the checkout"
    )
    checks_on_host: bool | None = Field(
        default=None,
        description="run setup commands and checks on the host instead of in the lane's isolation; "
        "default: from .spine.yaml",
    )
    attempts: int | list[str | list[str] | AttemptEntry] | None = Field(
        default=None,
        description="best of N: a number of attempts of the lane's command, or a list of what each "
        "attempt runs (a command, or {op, inputs}); each attempt is a lane ID.N and the lane picks one",
    )
    iterations: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ITERATIONS,
        description="run the command again with the failing checks' output until they pass or it ran "
        "this many times; default: from .spine.yaml, else 1",
    )
    pick: PickRule | None = Field(
        default=None, description="how the lane picks one of its attempts; default: from .spine.yaml"
    )
    stop_on_pass: bool = Field(
        default=False, description="stop the other attempts once one passed every check"
    )

    @field_validator("attempts")
    @classmethod
    def _attempt_count(
        cls, value: int | list[str | list[str] | AttemptEntry] | None
    ) -> int | list[str | list[str] | AttemptEntry] | None:
        if isinstance(value, int) and not 1 <= value <= MAX_ATTEMPTS:
            raise ValueError(f"give a number of attempts from 1 to {MAX_ATTEMPTS}")
        if isinstance(value, list):
            if not value:
                raise ValueError("the list of attempts is empty")
            if len(value) > MAX_ATTEMPTS:
                raise ValueError(f"at most {MAX_ATTEMPTS} attempts")
            for entry in value:
                if (isinstance(entry, str) and not entry.strip()) or entry == []:
                    raise ValueError("an attempt's command is empty")
        return value

    @field_validator("command")
    @classmethod
    def _not_empty(cls, value: str | list[str] | None) -> str | list[str] | None:
        if (isinstance(value, str) and not value.strip()) or (isinstance(value, list) and not value):
            raise ValueError("the command is empty")
        return value

    @field_validator("objective")
    @classmethod
    def _objective_text(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("the objective is empty")
        return value.strip() if value is not None else None

    @property
    def stacked_on(self) -> str | None:
        """The lane this one starts from (``base: lane:ID``), if any."""
        if self.base and self.base.startswith(LANE_BASE_PREFIX):
            return self.base.removeprefix(LANE_BASE_PREFIX)
        return None

    @property
    def all_needs(self) -> list[str]:
        """``needs`` plus the lane it is stacked on: it cannot start before that one succeeded."""
        stacked = self.stacked_on
        return [*self.needs, stacked] if stacked and stacked not in self.needs else list(self.needs)

    @model_validator(mode="after")
    def _command_or_operator(self) -> BatchLane:
        if isinstance(self.attempts, list):
            if self.command is not None or self.op is not None:
                raise ValueError(
                    f"lane {self.id!r} lists what its attempts run under `attempts`; give no `command` or `op`"
                )
            if self.objective is None and any(
                not isinstance(e, AttemptEntry) or e.op is None for e in self.attempts
            ):
                raise ValueError(f"lane {self.id!r} needs an `objective`")
            return self
        if (self.pick is not None or self.stop_on_pass) and self.attempts is None:
            raise ValueError(f"lane {self.id!r}: `pick` and `stop_on_pass` only apply with `attempts`")
        if self.op is None:
            if self.command is None:
                raise ValueError(f"lane {self.id!r} needs a `command` (or an operator with `op`)")
            if self.objective is None:
                raise ValueError(f"lane {self.id!r} needs an `objective`")
        elif self.command is not None:
            raise ValueError(
                f"lane {self.id!r} gives both `command` and `op`; an operator brings its own command"
            )
        if self.inputs and self.op is None:
            raise ValueError(f"lane {self.id!r}: `inputs` only apply to operator lanes (`op`)")
        return self


class BatchFile(BaseModel):
    """A batch file: the lanes to run."""

    model_config = STRICT

    lanes: list[BatchLane] = Field(min_length=1, description="the lanes, in the order they are started")


def read_batch(source: str) -> tuple[str, Any]:
    """Read the batch at ``source`` (a path, or ``-`` for stdin); return (name for errors, data)."""
    if source == "-":
        name = "<stdin>"
        try:
            text = sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise UsageError(f"{name}: not valid UTF-8 text ({exc.reason})", "send UTF-8") from None
    else:
        name = source
        try:
            text = read_utf8(Path(source))
        except FileNotFoundError:
            raise UsageError(f"batch file {source} does not exist", "check the path") from None
        except ValueError as exc:
            raise UsageError(f"{name}: {exc}", "save the file as UTF-8") from None
        except OSError as exc:
            raise UsageError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if not text.strip():
        raise UsageError(f"{name}: the batch is empty", "list the lanes under a top-level `lanes:` key")
    if name.endswith(".json") or text.lstrip().startswith(("{", "[")):
        try:
            return name, json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
        except RecursionError:
            raise UsageError(f"{name}: invalid JSON: nested too deeply") from None
    import yaml

    try:
        return name, yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{name}: {yaml_problem(exc)}", "fix the syntax and try again") from None


def parse_batch(data: Any, source: str, backends: list[str] | None = None) -> BatchFile:
    """Validate ``data`` as a batch; raise one UsageError listing every problem."""
    if not isinstance(data, dict):
        raise UsageError(
            f"{source}: the top level must be a mapping with a `lanes:` list, not {kind_of(data)}",
            HINT,
        )
    batch: BatchFile | None = None
    problems: list[str] = []
    reported: set[str] = set()
    try:
        batch = BatchFile.model_validate(data)
    except ValidationError as exc:
        problems, reported = validation_problems(exc, BatchFile, data)
    problems += [
        f"key '{where}': {problem}"
        for loc, problem in text_problems(data)
        if (where := ".".join(map(str, loc)) or "(top level)") not in reported
    ]
    if batch is not None:
        problems += graph_problems(batch, backends)
    if problems:
        raise UsageError(problems_message(source, problems), HINT)
    assert batch is not None
    return batch


def graph_problems(batch: BatchFile, backends: list[str] | None = None) -> list[str]:
    """Everything wrong with the batch as a whole: ids, duplicates, needs, cycles, backends."""
    problems: list[str] = []
    positions: dict[str, list[int]] = {}
    for index, lane in enumerate(batch.lanes, 1):
        problem = id_problem(lane.id)
        if problem:
            problems.append(f"lane {index}: invalid lane id {lane.id!r}: {problem} (ids become branch names)")
        positions.setdefault(lane.id, []).append(index)
        if backends is not None and lane.backend is not None and lane.backend not in backends:
            problems.append(
                f"lane {lane.id!r}: unknown backend {lane.backend!r} (known: {', '.join(backends)})"
            )
    for lane_id, where in positions.items():
        if len(where) > 1:
            problems.append(
                f"lane id {lane_id!r} is used more than once (lanes {', '.join(map(str, where))})"
            )
    ids = set(positions)
    for lane in batch.lanes:
        for need in lane.all_needs:
            if need == lane.id:
                problems.append(f"lane {lane.id!r} needs itself")
            elif need not in ids:
                problems.append(f"lane {lane.id!r} needs {need!r}, which is not a lane of this batch")
    graph: dict[str, list[str]] = {}
    for lane in batch.lanes:
        graph.setdefault(lane.id, []).extend(n for n in lane.all_needs if n in ids and n != lane.id)
    cycle = find_cycle(graph)
    if cycle:
        problems.append(f"dependency cycle: {' -> '.join(cycle)}")
    return problems


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle in ``graph`` (lane -> lanes it needs) as a closed path, e.g. [a, b, a]; else None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None
