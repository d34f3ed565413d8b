"""Retrying lanes of a finished run: ``spine resume RUN --retry``.

A retried lane starts over as a new try: the head of its previous branch is kept under
``refs/spine/attempts/<run>/<lane>/<n>`` (and anything uncommitted in its worktree under a recovery
ref), its previous result, log and debug packet move to ``runs/<run>/attempts/<lane>/<n>/``, and it
starts again from the current tip of its base ref. Nothing the previous attempt produced is lost.
Lanes blocked behind a retried lane are retried with it.

Everything that could refuse is checked before anything changes (a locked worktree refuses the
retry); the git work comes before the state is reset, so a failure leaves the run as it was and
trying again reuses the same attempt number. A worktree git still lists but whose folder was
deleted by hand is simply forgotten.

A lane with attempts (best of N) is retried through its attempts: naming it retries those of its
attempts that did not succeed, and retrying any attempt makes the lane compare its attempts again.
Without ``--lane``, the attempts of a lane that succeeded are left alone.
"""

from __future__ import annotations

from spine.base.errors import UsageError
from spine.model.result import LaneStatus
from spine.model.state import LaneState, RunState
from spine.workspace import worktrees
from spine.workspace.context import ExecutionContext, attempt_ref, lane_branch
from spine.workspace.store import RunStore


def lanes_to_retry(run: RunState, wanted: list[str]) -> list[str]:
    """The lanes to retry: ``wanted`` (default: every finished lane that did not succeed) plus the
    finished, unsucceeded lanes that need them, in run order."""
    for lane_id in wanted:
        if lane_id not in run.lanes:
            raise UsageError(
                f"run {run.run_id} has no lane {lane_id!r}", f"its lanes: {', '.join(run.lanes)}"
            )
        lane = run.lanes[lane_id]
        if not lane.complete:
            raise UsageError(
                f"lane {lane_id} has not finished ({lane.status.value}); there is nothing to retry yet",
                f"continue the run with `spine resume {run.run_id}`",
            )
        if lane.status == LaneStatus.SUCCEEDED:
            raise UsageError(
                f"lane {lane_id} succeeded; there is nothing to retry",
                "retry a failed, blocked or canceled lane",
            )
        if lane.spec.is_group and all(
            run.lanes[a].status == LaneStatus.SUCCEEDED for a in lane.spec.attempts
        ):
            raise UsageError(
                f"every attempt of lane {lane_id} succeeded; there is nothing to retry",
                f"pick another attempt with `spine pick {run.run_id}/{lane_id} N`",
            )
    chosen = set(wanted) or {
        i
        for i, lane in run.lanes.items()
        if lane.complete and lane.status != LaneStatus.SUCCEEDED and not _settled_attempt(run, lane)
    }
    grew = True
    while grew:  # lanes blocked behind a retried lane come along
        grew = False
        for lane_id, lane in run.lanes.items():
            if lane_id in chosen or not lane.complete:
                continue
            group = run.lanes.get(lane.spec.attempt_of or "")
            comes = (
                # an attempt of a lane being retried, which did not succeed
                (lane.status != LaneStatus.SUCCEEDED and group is not None and group.spec.id in chosen)
                # a lane with attempts, one of which is retried: it compares them again
                or any(a in chosen for a in lane.spec.attempts)
                # a lane blocked behind a retried lane
                or (lane.status != LaneStatus.SUCCEEDED and any(need in chosen for need in lane.spec.needs))
            )
            if comes:
                chosen.add(lane_id)
                grew = True
    return [lane_id for lane_id in run.lanes if lane_id in chosen]


def _settled_attempt(run: RunState, lane: LaneState) -> bool:
    """An attempt of a lane with attempts that succeeded: the other attempts stay as they ended."""
    group = run.lanes.get(lane.spec.attempt_of or "")
    return group is not None and group.complete and group.status == LaneStatus.SUCCEEDED


def retry(ctx: ExecutionContext, store: RunStore, wanted: list[str]) -> tuple[RunState, list[str]]:
    """Reset the lanes to retry (under the run's driver lock) and return the run and their ids."""
    with store.driver_lock():
        run = store.load()
        lane_ids = lanes_to_retry(run, wanted)
        if not lane_ids:
            raise UsageError(f"every lane of run {run.run_id} succeeded; there is nothing to retry")
        for lane_id in lane_ids:
            _refuse_if_locked(ctx, run, lane_id)
        for lane_id in lane_ids:
            _reset(ctx, store, run, lane_id)
            store.save(run)
    return run, lane_ids


def _refuse_if_locked(ctx: ExecutionContext, run: RunState, lane_id: str) -> None:
    path = ctx.lane_worktree(run.run_id, lane_id)
    entry = worktrees.registered(ctx.git, path)
    if entry is not None and entry.locked:
        raise UsageError(
            f"the worktree of lane {run.run_id}/{lane_id} is locked ({entry.locked}); nothing was changed",
            f"unlock it with `git worktree unlock {path}` to retry the lane",
        )


def _reset(ctx: ExecutionContext, store: RunStore, run: RunState, lane_id: str) -> None:
    lane = run.lanes[lane_id]
    attempts = ctx.state.attempts_dir(run.run_id, lane_id)
    attempt = 1 + (sum(1 for p in attempts.iterdir() if p.name.isdigit()) if attempts.is_dir() else 0)
    kept = None
    branch = lane_branch(run.run_id, lane_id)
    repo = ctx.git
    if lane.branch == branch:  # a lane of its own; in-place lanes ran on the user's branch: leave that alone
        head = repo.branch_sha(branch)
        if head:
            kept = attempt_ref(run.run_id, lane_id, attempt)
            repo.run("update-ref", "-m", "spine: previous attempt of a retried lane", kept, head)
        path = ctx.lane_worktree(run.run_id, lane_id)
        if path.exists():
            with worktrees.worktrees_lock(ctx, f"retrying lane {run.run_id}/{lane_id}"):
                worktrees.recover_and_remove(ctx, path, head or lane.base_sha, f"{run.run_id}/{lane_id}")
        elif worktrees.registered(ctx.git, path) is not None:
            worktrees.remove(ctx, path)  # deleted by hand: only git's record of it is left
        if head:
            repo.run("update-ref", "-d", f"refs/heads/{branch}", head)
    lane_dir = ctx.state.lane_dir(run.run_id, lane_id)
    if lane_dir.exists():
        attempts.mkdir(parents=True, exist_ok=True)
        lane_dir.rename(ctx.state.attempt_dir(run.run_id, lane_id, attempt))
    if lane.spec.stacked_on is None:
        tip = repo.resolve_commit(lane.base_ref)
        if tip is not None:
            lane.base_sha = tip
    previous = lane.status.value
    run.lanes[lane_id] = LaneState(
        spec=lane.spec, backend=lane.backend, base_ref=lane.base_ref, base_sha=lane.base_sha
    )
    store.event("lane-retried", lane_id, attempt=attempt + 1, previous=previous, keptAt=kept)
