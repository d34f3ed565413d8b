"""What the command line does, as plain functions: for scripts and for the commands themselves.

Every function takes an ``ExecutionContext`` (``spine.api.context()`` resolves one) and returns the
same models the state and result files hold. Errors are ``spine.base.errors.SpineError`` subclasses
carrying the exit code the command line would end with: ``UsageError`` (2), ``EnvironmentProblem``
(3), ``PromoteRefused`` (1). See docs/api.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from spine.base.errors import UsageError
from spine.base.ids import check_id, new_run_id
from spine.drive.runs import create_run, drive_run, load_result, parse_ref
from spine.lane.spec import LaneRequest, batch_lane_specs, resolve_lane_specs
from spine.model.result import LaneResult
from spine.model.state import LaneSpec, RunState
from spine.workspace.context import ExecutionContext, resolve_context
from spine.workspace.store import RunStore

if TYPE_CHECKING:
    from spine.drive.attempts import Comparison
    from spine.drive.loop import StepListener
    from spine.lane.runtime import Echo

Listen = Callable[[RunState], "StepListener"]


def context(
    cwd: Path | str | None = None,
    *,
    base: str | None = None,
    target: str | None = None,
    backend: str | None = None,
) -> ExecutionContext:
    """The execution context of the repository at ``cwd`` (default: the working directory)."""
    return resolve_context(cwd, base=base, target=target, backend=backend)


def plan_lane(
    ctx: ExecutionContext, request: LaneRequest, *, run_id: str | None = None, jobs: int | None = None
) -> tuple[RunStore, RunState]:
    """Record a one-lane run for ``request`` without starting it (``spine step`` or ``resume`` drive it).

    A request with attempts records the lane and its attempts; ``jobs`` (default: all of them)
    says how many attempts run at once.
    """
    specs = resolve_lane_specs(request, ctx.config, origin="flag")
    for spec in specs:
        _refuse_in_place(ctx, spec)
    rid = check_id("run id", run_id) if run_id else new_run_id()
    attempts = len(specs[0].attempts)
    return create_run(ctx, rid, specs, kind="run", jobs=jobs or max(1, attempts))


def run_lane(
    ctx: ExecutionContext,
    request: LaneRequest,
    *,
    run_id: str | None = None,
    jobs: int | None = None,
    echo: Echo = "none",
    listen: Listen | None = None,
) -> tuple[RunState, LaneResult]:
    """Run one lane (with its attempts, if it has any) end to end; return its run and its result.

    Raises KeyboardInterrupt when interrupted (its lanes end canceled), ``RunBusy`` when another
    process drives the run.
    """
    store, run = plan_lane(ctx, request, run_id=run_id, jobs=jobs)
    run = drive_run(ctx, store, run, echo=echo, listen=listen)
    lane_id = next(iter(run.lanes))
    return run, load_result(ctx, run.run_id, lane_id)


def compare(ctx: ExecutionContext, run_id: str, lane_id: str) -> Comparison:
    """The attempts of lane RUN/LANE side by side: figures, pairwise agreement, the pick once made."""
    from spine.drive.attempts import comparison

    return comparison(ctx, RunStore(ctx.state, run_id).load(), lane_id)


def pick(ctx: ExecutionContext, run_id: str, lane_id: str, attempt: int) -> LaneResult:
    """Make attempt ``attempt`` the pick of lane RUN/LANE; return the lane's rewritten result."""
    from spine.drive.attempts import pick as pick_attempt

    return pick_attempt(ctx, run_id, lane_id, attempt)


def plan_batch(
    ctx: ExecutionContext,
    data: object,
    source: str,
    *,
    run_id: str | None = None,
    jobs: int = 1,
    fail_fast: bool = False,
) -> tuple[RunStore, RunState]:
    """Validate a batch (already parsed YAML/JSON data) and record its run; nothing starts yet."""
    from spine.base.backend_names import known_backend_names
    from spine.model.batch import parse_batch

    batch = parse_batch(data, source, known_backend_names())
    specs = batch_lane_specs(batch, ctx.config, source)
    for spec in specs:
        _refuse_in_place(ctx, spec)
    rid = check_id("run id", run_id) if run_id else new_run_id()
    return create_run(ctx, rid, specs, kind="batch", jobs=jobs, fail_fast=fail_fast)


def drive(
    ctx: ExecutionContext,
    run_id: str,
    *,
    jobs: int | None = None,
    echo: Echo = "none",
    listen: Listen | None = None,
    max_steps: int | None = None,
) -> RunState:
    """Drive run ``run_id`` until every lane has a result (or ``max_steps`` steps fired)."""
    store = RunStore(ctx.state, run_id)
    return drive_run(ctx, store, store.load(), jobs=jobs, echo=echo, listen=listen, max_steps=max_steps)


def retry(ctx: ExecutionContext, run_id: str, lanes: Sequence[str] = ()) -> list[str]:
    """Reset lanes that failed, were blocked or canceled (default: all such) as new attempts."""
    from spine.drive.retry import retry as retry_lanes

    _, retried = retry_lanes(ctx, RunStore(ctx.state, run_id), list(lanes))
    return retried


def load_run(ctx: ExecutionContext, ref: str | None = None) -> RunState:
    """The run ``ref`` names (``RUN``; default: the latest run)."""
    run_id, _ = parse_ref(ctx, ref)
    return RunStore(ctx.state, run_id).load()


def results(ctx: ExecutionContext, run_id: str) -> list[LaneResult]:
    """The result of every lane of a run that has one, in lane order."""
    run = RunStore(ctx.state, run_id).load()
    return [
        load_result(ctx, run_id, lane_id)
        for lane_id in run.lanes
        if ctx.state.result_file(run_id, lane_id).is_file()
    ]


def result(ctx: ExecutionContext, run_id: str, lane_id: str) -> LaneResult:
    """The result of lane RUN/LANE."""
    return load_result(ctx, run_id, lane_id)


def _refuse_in_place(ctx: ExecutionContext, spec: LaneSpec) -> None:
    """Attempts need worktrees of their own; an in-place repair loop needs --commit to see changes."""
    backend = spec.backend or ctx.backend
    wants = spec.attempt_of is not None or (spec.iterations > 1 and not spec.commit_in_place)
    if wants or spec.commit_in_place:
        from spine.backends.registry import load_backend

        if not load_backend(backend, ctx.config.backends.get(backend, {})).in_place:
            return
        if spec.attempt_of is not None:
            raise UsageError(
                f"backend {backend!r} runs in your checkout, so lane {spec.attempt_of} cannot have attempts "
                "side by side",
                "use a backend with worktrees (local-worktree, bubblewrap, ...) for --attempts",
            )
        if spec.iterations > 1 and not spec.commit_in_place:
            raise UsageError(
                f"backend {backend!r} runs in your checkout without committing, so a repair loop "
                "(--iterations) cannot tell what each pass changed",
                "add --commit, or use a backend with worktrees",
            )
    if spec.commit_in_place:
        _refuse_dirty_checkout(ctx, backend)


def _refuse_dirty_checkout(ctx: ExecutionContext, backend: str) -> None:
    """An in-place lane that commits must not sweep the user's own changes into its commit."""
    from spine.backends.registry import load_backend

    if not load_backend(backend, ctx.config.backends.get(backend, {})).in_place:
        return
    here = ctx.workspace.current_worktree
    from spine.base.git import git

    status = git("status", "--porcelain=v1", "--untracked-files=normal", "-z", cwd=here).stdout
    entries = [e[3:] for e in status.split("\0") if len(e) > 3]
    if entries:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise UsageError(
            f"{here} has uncommitted changes ({shown}); an in-place lane with --commit would commit them "
            "together with the command's work",
            "commit or stash them first (git stash -u), or run without --commit",
        )
