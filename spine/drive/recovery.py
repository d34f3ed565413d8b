"""What a driver finds when it takes over a run: stale steps, stray processes, cancel requests.

A driver that was killed leaves ``currentStep`` set in run.json and, if it was running a command, the
command's process group alive (commands run in their own session, so they outlive the driver). The
next driver holds the run's lock (``spine.base.liveness``), so anything recorded as in flight is stale: it
stops the stray group and redoes the step. A recorded PGID is only trusted when a process of that
group still carries the lane's ``SPINE_RUN_ID``/``SPINE_LANE_ID`` in its environment, so a recycled
PGID that now belongs to someone else is never signalled.

``spine cancel`` talks to a live driver through request files under the run directory
(``cancel-all`` and ``cancel/<lane>``); the driver polls them and records the cancel in run.json.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from spine.base.files import atomic_write_text
from spine.base.ids import now_iso
from spine.base.process import kill_group
from spine.workspace.context import ExecutionContext


def stop_stale_group(pgid: int | None, worktree: str | None) -> bool:
    """Stop a lane's process group left behind by a dead driver; True if there was one.

    The group is only signalled while a live member works inside the lane's worktree (the reaper's
    check), so a recycled group id that now belongs to another program is never touched.
    """
    if not pgid or not worktree:
        return False
    from spine.maintenance.reaper import (
        orphan_group_members,  # the /proc scanner, only when a lane was left running
    )

    if not orphan_group_members(pgid, Path(worktree)):
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
