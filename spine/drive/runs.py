"""Creating, driving and finding runs.

A run is created from resolved lane specs (``spine.lane.spec``): every lane's base ref and backend are
checked first, so nothing exists yet when one is wrong. Runs are listed in the order they were
created (an index appended at creation), not by the order of their ids, which a user may choose.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from spine.base.errors import ExitCode, UsageError
from spine.base.ids import check_id, now_iso
from spine.lane.spec import stored_form
from spine.model.result import LaneResult, LaneStatus
from spine.model.state import LaneSpec, LaneState, RunState
from spine.workspace.context import ExecutionContext
from spine.workspace.store import RunStore, driver_info, remember_finished

if TYPE_CHECKING:
    from spine.drive.loop import StepListener
    from spine.drive.scheduler import Scheduler
    from spine.lane.runtime import Echo, OutputLines


def create_run(
    ctx: ExecutionContext,
    run_id: str,
    specs: list[LaneSpec],
    kind: str = "run",
    *,
    jobs: int = 1,
    fail_fast: bool = False,
    source: str | None = None,
) -> tuple[RunStore, RunState]:
    """Record a new run with ``specs`` as its planned lanes; nothing else is created yet.

    Every lane's base ref is resolved first and all that do not resolve are reported at once
    (``source`` names the batch file in the message).
    """
    from spine.backends.registry import require_usable

    lanes: dict[str, LaneState] = {}
    given: dict[str, LaneSpec] = {}
    checked: set[str] = set()
    bases = _lane_bases(ctx, specs, source)
    for spec in specs:
        backend = spec.backend or ctx.backend
        if backend not in checked:
            require_usable(backend, ctx.config.backends.get(backend, {}))  # fail before anything exists
            checked.add(backend)
        base_ref, base_sha = ctx.refs.base_ref, ctx.refs.base_sha
        if spec.stacked_on is not None:
            # Resolved when the lane starts, from the head of the lane it is stacked on.
            base_ref = spec.base or base_ref
        elif spec.base and spec.base != base_ref:
            base_ref, base_sha = spec.base, bases[spec.base]
        stored = stored_form(spec)
        if stored is not spec:
            given[spec.id] = spec
        lanes[spec.id] = LaneState(spec=stored, backend=backend, base_ref=base_ref, base_sha=base_sha)
    run = RunState(
        run_id=run_id,
        created_at=now_iso(),
        kind=kind,
        jobs=max(1, jobs),
        fail_fast=fail_fast,
        base_ref=ctx.refs.base_ref,
        base_sha=ctx.refs.base_sha,
        target_ref=ctx.refs.target_ref,
        target_sha=ctx.refs.target_sha,
        lanes=lanes,
    )
    store = RunStore(ctx.state, run_id)
    store.create(run, given)
    _index(ctx, run)
    return store, run


def _lane_bases(ctx: ExecutionContext, specs: list[LaneSpec], source: str | None) -> dict[str, str]:
    """The commit of every lane's own base ref; one UsageError naming all that do not resolve."""
    shas: dict[str, str] = {}
    problems: list[UsageError] = []
    for spec in specs:
        if spec.stacked_on is not None or not spec.base or spec.base == ctx.refs.base_ref:
            continue
        where = f"lane {spec.id!r}" + (": key 'base'" if source else "")
        try:
            if spec.base not in shas:
                shas[spec.base] = ctx.git.require_commit(
                    spec.base, what="base ref", given_by=f"{source}: {where}" if source else where
                )
        except UsageError as exc:
            problems.append(exc)
    if problems:
        raise UsageError.of(problems)
    return shas


def _index(ctx: ExecutionContext, run: RunState) -> None:
    """Append the run to the creation-ordered index of runs (one O_APPEND write: whole or nothing)."""
    line = json.dumps({"runId": run.run_id, "createdAt": run.created_at}) + "\n"
    fd = os.open(ctx.state.run_index, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def drive_run(
    ctx: ExecutionContext,
    store: RunStore,
    run: RunState,
    *,
    jobs: int | None = None,
    echo: Echo = "raw",
    scheduler: Scheduler | None = None,
    listen: Callable[[RunState], StepListener] | None = None,
    max_steps: int | None = None,
    lines: OutputLines | None = None,
) -> RunState:
    """Take the run's driver lock and drive it with its scheduler (or ``scheduler``); return it.

    Raises ``RunBusy`` (exit 3) when another process drives the run, and KeyboardInterrupt when
    interrupted. ``jobs`` overrides (and records) the run's parallelism; ``max_steps`` stops early.
    ``listen`` is given the run being driven and returns the listener for its step events;
    ``lines``, when given, is kept up to date with each lane's last output line (for a live view).
    """
    from spine.drive.loop import Driver, Interrupted
    from spine.drive.scheduler import scheduler_for

    with store.driver_lock():
        run = store.load()  # another driver may have advanced it before we got the lock
        if jobs is not None:
            run.jobs = max(1, jobs)
        run.driver = driver_info()
        store.save(run)
        listener = listen(run) if listen else None
        driver = Driver(
            ctx, store, run, scheduler or scheduler_for(run), echo=echo, listener=listener, lines=lines
        )
        try:
            driver.drive(jobs=run.jobs, max_steps=max_steps)
        except Interrupted:
            raise KeyboardInterrupt from None
        finally:
            run.driver = None
            with contextlib.suppress(OSError):  # what could be written was; the error in flight says why
                store.save(run)
                if all(lane.complete for lane in run.lanes.values()):
                    remember_finished(ctx.state, run.run_id, finished_summary(run))
    return run


def counted_lanes(run: RunState) -> list[LaneState]:
    """The lanes a run's outcome is made of: every lane but the attempts of a lane with attempts
    (that lane speaks for them once it compared them; until then, they speak for themselves)."""
    decided = {lane_id for lane_id, lane in run.lanes.items() if lane.spec.is_group and lane.complete}
    return [
        lane
        for lane in run.lanes.values()
        if lane.spec.attempt_of not in decided or lane.spec.attempt_of is None
    ]


def finished_summary(run: RunState) -> dict[str, object]:
    """What ``spine status`` lists of a run whose every lane is complete, from its state alone."""
    counts: dict[str, int] = {}
    for lane in run.lanes.values():
        counts[lane.status.value] = counts.get(lane.status.value, 0) + 1
    return {
        "runId": run.run_id,
        "kind": run.kind,
        "createdAt": run.created_at,
        "state": "complete",
        "complete": True,
        "driven": False,
        "jobs": run.jobs,
        "failFast": run.fail_fast,
        "counts": counts,
        "exitCode": exit_code_for((lane.status for lane in run.lanes.values()), run),
        "laneCount": len(run.lanes),
    }


def exit_code_for(statuses: Iterable[LaneStatus], run: RunState | None = None) -> int:
    """0 when every lane succeeded; 3 when spine could not finish a lane because of the environment;
    1 when one failed or was blocked; 130 when lanes were canceled. With ``run``, the attempts of a
    lane with attempts are judged by that lane (``counted_lanes``), and ``statuses`` are its lanes'."""
    statuses = list(statuses) if run is None else [lane.status for lane in counted_lanes(run)]
    if all(s == LaneStatus.SUCCEEDED for s in statuses):
        return ExitCode.OK
    if run is not None and any(lane.facts.halt is not None for lane in counted_lanes(run)):
        return ExitCode.ENVIRONMENT
    if any(s in (LaneStatus.FAILED, LaneStatus.BLOCKED) for s in statuses):
        return ExitCode.FAILED
    if any(s == LaneStatus.CANCELED for s in statuses):
        return ExitCode.INTERRUPTED
    return ExitCode.FAILED


def list_run_ids(ctx: ExecutionContext) -> list[str]:
    """Run ids, oldest first, in the order the runs were created."""
    runs = ctx.state.runs
    if not runs.is_dir():
        return []
    present = {p.name for p in runs.iterdir() if not p.name.startswith(".") and (p / "run.json").is_file()}
    ordered: list[str] = []
    try:
        with open(ctx.state.run_index, encoding="utf-8") as handle:
            for line in handle:
                try:
                    run_id = json.loads(line).get("runId")
                except (ValueError, AttributeError):
                    continue
                if run_id in present and run_id not in ordered:
                    ordered.append(run_id)
    except OSError:
        pass
    rest = present.difference(ordered)
    if rest:  # runs an older spine made, without the index: ordered by when they were created
        ordered = sorted(ordered + list(rest), key=lambda rid: (_created_at(ctx, rid), rid))
    return ordered


def _created_at(ctx: ExecutionContext, run_id: str) -> str:
    try:
        with open(ctx.state.run_file(run_id), encoding="utf-8") as handle:
            return str(json.load(handle).get("createdAt", ""))
    except (OSError, ValueError):
        return ""


def parse_ref(ctx: ExecutionContext, ref: str | None) -> tuple[str, str | None]:
    """Parse ``RUN``, ``RUN/LANE`` or nothing (the latest run) into (run id, lane id or None)."""
    if not ref:
        runs = list_run_ids(ctx)
        if not runs:
            raise UsageError(
                "there are no runs in this repository yet", 'start one with: spine run "OBJECTIVE" -- COMMAND'
            )
        return runs[-1], None
    run_id, _, lane_id = ref.partition("/")
    check_id("run id", run_id)
    if lane_id:
        check_id("lane id", lane_id)
    if not ctx.state.run_file(run_id).is_file():
        raise UsageError(f"no run {run_id!r} in this repository", "list the runs with `spine status`")
    return run_id, lane_id or None


def load_result(ctx: ExecutionContext, run_id: str, lane_id: str) -> LaneResult:
    path = ctx.state.result_file(run_id, lane_id)
    if not path.is_file():
        run = RunStore(ctx.state, run_id).load()
        if lane_id not in run.lanes:
            raise UsageError(f"run {run_id!r} has no lane {lane_id!r}", f"its lanes: {', '.join(run.lanes)}")
        lane = run.lanes[lane_id]
        if lane.spec.is_group:
            unfinished = [a for a in lane.spec.attempts if not run.lanes[a].complete]
            raise UsageError(
                f"lane {run_id}/{lane_id} has no result yet: it compares its attempts once they all ended"
                + (f" ({', '.join(unfinished)} not yet)" if unfinished else ""),
                f"see them side by side so far with `spine compare {run_id}/{lane_id}`",
            )
        raise UsageError(
            f"lane {run_id}/{lane_id} has no result yet (status: {lane.status.value})",
            f"it is still running or was interrupted; see `spine show {run_id}`",
        )
    return LaneResult.model_validate_json(path.read_text(encoding="utf-8"))
