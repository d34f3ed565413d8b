"""Creating, driving, finding and printing runs: the glue the commands share."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import click

from spine.base.errors import ExitCode, UsageError
from spine.base.ids import check_id, format_duration, now_iso
from spine.model.result import LaneResult, LaneStatus
from spine.model.state import LaneSpec, LaneState, RunState
from spine.workspace.context import ExecutionContext
from spine.workspace.store import RunStore, driver_info

if TYPE_CHECKING:
    from spine.drive.loop import StepListener
    from spine.drive.scheduler import Scheduler
    from spine.lane.steps import Echo


def create_run(
    ctx: ExecutionContext,
    run_id: str,
    specs: list[LaneSpec],
    kind: str = "run",
    *,
    jobs: int = 1,
    fail_fast: bool = False,
) -> tuple[RunStore, RunState]:
    """Record a new run with ``specs`` as its planned lanes; nothing else is created yet."""
    from spine.backends.registry import require_usable

    lanes: dict[str, LaneState] = {}
    for spec in specs:
        backend = spec.backend or ctx.backend
        require_usable(backend, ctx.config.backends.get(backend, {}))  # fail before anything exists
        base_ref, base_sha = ctx.refs.base_ref, ctx.refs.base_sha
        if spec.stacked_on is not None:
            # Resolved when the lane starts, from the head of the lane it is stacked on.
            base_ref = spec.base or base_ref
        elif spec.base and spec.base != base_ref:
            from spine.base.git import git

            probe = git(
                "rev-parse",
                "--verify",
                "-q",
                f"{spec.base}^{{commit}}",
                cwd=ctx.repo.primary_checkout,
                check=False,
            )
            if probe.returncode != 0:
                raise UsageError(
                    f"lane {spec.id!r}: unknown base ref {spec.base!r}",
                    "name an existing branch, tag or commit",
                )
            base_ref, base_sha = spec.base, probe.stdout.strip()
        lanes[spec.id] = LaneState(spec=spec, backend=backend, base_ref=base_ref, base_sha=base_sha)
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
    store = RunStore(ctx.state.run_dir(run_id))
    store.create(run)
    return store, run


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
) -> RunState:
    """Take the run's driver lock and drive it with its scheduler (or ``scheduler``); return it.

    Raises ``RunBusy`` (exit 3) when another process drives the run, and KeyboardInterrupt when
    interrupted. ``jobs`` overrides (and records) the run's parallelism; ``max_steps`` stops early.
    ``listen`` is given the run being driven and returns the listener for its step events.
    """
    from spine.base.liveness import DriverLock
    from spine.drive.loop import Driver, Interrupted
    from spine.drive.scheduler import scheduler_for

    with DriverLock(store.run_dir):
        run = store.load()  # another driver may have advanced it before we got the lock
        if jobs is not None:
            run.jobs = max(1, jobs)
        run.driver = driver_info()
        store.save(run)
        listener = listen(run) if listen else None
        driver = Driver(ctx, store, run, scheduler or scheduler_for(run), echo=echo, listener=listener)
        try:
            driver.drive(jobs=run.jobs, max_steps=max_steps)
        except Interrupted:
            raise KeyboardInterrupt from None
        finally:
            run.driver = None
            store.save(run)
    return run


def exit_code_for(statuses: Iterable[LaneStatus]) -> int:
    """0 when every lane succeeded, 1 when one failed or was blocked, 130 when lanes were canceled."""
    statuses = list(statuses)
    if all(s == LaneStatus.SUCCEEDED for s in statuses):
        return ExitCode.OK
    if any(s in (LaneStatus.FAILED, LaneStatus.BLOCKED) for s in statuses):
        return ExitCode.FAILED
    if any(s == LaneStatus.CANCELED for s in statuses):
        return ExitCode.INTERRUPTED
    return ExitCode.FAILED


def list_run_ids(ctx: ExecutionContext) -> list[str]:
    """Run ids, oldest first (ids sort by creation time)."""
    if not ctx.state.runs.is_dir():
        return []
    return sorted(p.name for p in ctx.state.runs.iterdir() if (p / "run.json").is_file())


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
        run = RunStore(ctx.state.run_dir(run_id)).load()
        if lane_id not in run.lanes:
            raise UsageError(f"run {run_id!r} has no lane {lane_id!r}", f"its lanes: {', '.join(run.lanes)}")
        raise UsageError(
            f"lane {run_id}/{lane_id} has no result yet (status: {run.lanes[lane_id].status.value})",
            f"it is still running or was interrupted; see `spine show {run_id}`",
        )
    return LaneResult.model_validate_json(path.read_text(encoding="utf-8"))


def _worktree_shown(result: LaneResult) -> str:
    if not result.worktree_kept:
        return "returned to the worktree pool; the work is on the branch"
    return result.worktree_path or "-"


def render_result(result: LaneResult, result_path: str | None = None) -> str:
    """A short human summary of one lane result."""
    head = f"lane {result.run_id}/{result.lane_id}: {result.status.value}"
    rows = [
        ("objective", result.objective),
        ("branch", result.branch or "-"),
        ("worktree", _worktree_shown(result)),
    ]
    if result.duration_seconds is not None:
        rows.append(("duration", format_duration(result.duration_seconds)))
    for check in result.validation:
        rows.append((f"check {check.name}", f"{check.status.value}: {check.summary}"))
    if result.mode:
        rows.append(("mode", f"{result.mode} ({result.mode_source})"))
    if result.operator:
        shown = ", ".join(f"{k}={v}" for k, v in (result.inputs or {}).items())
        rows.append(("operator", result.operator + (f" ({shown})" if shown else "")))
    for accepted in result.acceptance:
        rows.append((f"accept {accepted.name}", f"{accepted.verdict.value}: {accepted.summary}"))
    for item in result.evidence:
        state = "found" if item.found else ("MISSING" if item.required else "missing (optional)")
        rows.append((f"evidence {item.id}", f"{state}: {item.detail}"))
    if result.verdict:
        rows.append(("verdict", result.verdict.value))
    if result.artifacts:
        rows.append(("artifacts", ", ".join(a.path for a in result.artifacts)))
    rows += [("log", result.log_path)]
    if result_path:
        rows.append(("result", result_path))
    if result.debug_packet:
        rows.append(("debug", f"spine debug {result.run_id}/{result.lane_id}"))
    rows += [("summary", result.summary), ("next", result.next_action)]
    width = max(len(k) for k, _ in rows)
    return head + "\n" + "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def print_lane_result(ctx: ExecutionContext, run: RunState, lane_id: str, *, as_json: bool) -> LaneResult:
    result = load_result(ctx, run.run_id, lane_id)
    if as_json:
        click.echo(result.to_json(), nl=False)
    else:
        path = str(ctx.state.result_file(run.run_id, lane_id))
        color = {"succeeded": "green", "failed": "red", "canceled": "yellow"}.get(result.status.value)
        text = render_result(result, path)
        first, _, rest = text.partition("\n")
        click.echo(click.style(first, fg=color, bold=True) + "\n" + rest)
    return result
