"""What a driver finds when it takes over a run: stale steps, stray processes, cancel requests; and
the closing of a run whose driver died.

A driver that was killed leaves ``currentStep`` set in run.json and, if it was running a command, the
command's process group alive (commands run in their own session, so they outlive the driver). The
next driver holds the run's lock (``spine.base.liveness``), so anything recorded as in flight is stale:
it stops the stray group and redoes the step. A recorded PGID is only trusted while a process of that
group still works inside the lane's worktree, so a recycled PGID that now belongs to someone else is
never signalled.

``spine cancel`` talks to a live driver through request files under the run directory
(``cancel-all`` and ``cancel/<lane>``); the driver polls them and records the cancel in run.json.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from spine.base.files import atomic_write_json, atomic_write_text
from spine.base.ids import now_iso
from spine.base.process import kill_group
from spine.lane.outcome import classify
from spine.lane.render import Where, build_result
from spine.model.facts import DriverDied, ResultFacts
from spine.workspace.context import ExecutionContext, recovery_refs_pattern
from spine.workspace.store import RunStore
from spine.workspace.worktrees import group_members_inside


def stop_stale_group(pgid: int | None, worktree: str | None) -> bool:
    """Stop a lane's process group left behind by a dead driver; True if there was one.

    The group is only signalled while a live member works inside the lane's worktree, so a recycled
    group id that now belongs to another program is never touched.
    """
    if not pgid or not worktree:
        return False
    if not group_members_inside(pgid, Path(worktree)):
        return False
    kill_group(pgid, grace=2.0)
    return True


def request_cancel(ctx: ExecutionContext, run_id: str, lane_id: str | None) -> Path:
    """Leave a cancel request for the run's driver (every lane when ``lane_id`` is None)."""
    path = ctx.state.cancel_all_file(run_id) if lane_id is None else ctx.state.cancel_dir(run_id) / lane_id
    atomic_write_text(path, f"{now_iso()} pid {os.getpid()}\n")
    return path


def pending_cancel_requests(ctx: ExecutionContext, run_id: str) -> tuple[bool, list[str]]:
    """(whole run requested?, lanes requested) — reads only."""
    everything = ctx.state.cancel_all_file(run_id).is_file()
    folder = ctx.state.cancel_dir(run_id)
    lanes = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []
    return everything, lanes


def clear_cancel_requests(ctx: ExecutionContext, run_id: str, everything: bool, lanes: list[str]) -> None:
    """Remove requests once they are recorded in run.json."""
    with contextlib.suppress(FileNotFoundError):
        if everything:
            ctx.state.cancel_all_file(run_id).unlink()
    for lane_id in lanes:
        with contextlib.suppress(FileNotFoundError):
            (ctx.state.cancel_dir(run_id) / lane_id).unlink()


def close_dead_run(ctx: ExecutionContext, run_id: str, *, worktrees_removed: bool = True) -> str:
    """Give every unfinished lane of a run whose driver died its result: the outcome ``driver_died``.

    Called by ``spine gc`` once it removed the lanes' worktrees (their uncommitted work went to
    recovery refs first), so that a later ``spine resume`` does not try to continue in a worktree
    that is gone. The result is rendered from the lane's facts like any other.
    """
    store = RunStore(ctx.state, run_id)
    run = store.load()
    closed = []
    for lane_id, lane in run.lanes.items():
        if lane.complete:
            continue
        step = lane.current_step or lane.next_step or "?"
        label = f"{run_id}/{lane_id}"
        recovered = ctx.git.refs_matching(recovery_refs_pattern(label))
        lane.facts.driver_died = DriverDied(
            step=step, recovered_ref=recovered[-1] if recovered else None, worktree_removed=worktrees_removed
        )
        if lane.branch is not None and ctx.git.branch_sha(lane.branch) is None:
            lane.branch = None
        outcome = classify(lane.facts, lane.spec)
        where = Where(
            run_id=run_id,
            log_path=str(ctx.state.log_file(run_id, lane_id)),
            backend=lane.backend,
            target=run.target_ref,
        )
        result = build_result(lane, outcome, where).model_copy(
            update={"worktree_path": None if worktrees_removed else lane.worktree}
        )
        path = ctx.state.result_file(run_id, lane_id)
        atomic_write_json(path, result.to_json())
        lane.status = outcome.status
        lane.current_step = None
        lane.pgid = None
        if "finalize" not in lane.steps_done:
            lane.steps_done.append("finalize")
        lane.facts.result = ResultFacts(
            path=str(path), status=result.status.value, next_action=result.next_action
        )
        store.event("reaped", lane_id, step=step)
        closed.append(lane_id)
    run.driver = None
    run.halted = True
    store.save(run)
    return f"recorded {', '.join(closed) or 'no lanes'} as canceled (their driver died)"


def record_worktree_removed(ctx: ExecutionContext, run_id: str, lane_id: str, ref: str | None) -> None:
    """Say in the lane's result and debug packet that gc removed its worktree, and where its work went."""
    from spine.lane.debug import load_packet, render_markdown
    from spine.model.result import LaneResult

    path = ctx.state.result_file(run_id, lane_id)
    if not path.is_file():
        return
    result = LaneResult.model_validate_json(path.read_text(encoding="utf-8"))
    update = {"worktree_kept": False, "worktree_removed_at": now_iso(), "recovery_ref": ref}
    atomic_write_json(path, result.model_copy(update=update).to_json())
    debug = ctx.state.debug_file(run_id, lane_id)
    if debug.is_file():
        packet = load_packet(debug)
        context = packet.context.model_copy(update={"worktree": None, "recovery_ref": ref})
        packet = packet.model_copy(update={"context": context})
        atomic_write_json(debug, packet.to_json())
        atomic_write_text(ctx.state.debug_markdown(run_id, lane_id), render_markdown(packet))
