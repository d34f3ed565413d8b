"""The worktree pool's policy: how many pooled worktrees to keep, and trimming the rest.

Taking a worktree from the pool and giving one back are worktree operations
(``spine.workspace.worktrees.take`` / ``give_back``); this module only decides how many stay.
See docs/adr/0050-worktree-pool.md.
"""

from __future__ import annotations

from pathlib import Path

from spine.workspace.context import ExecutionContext
from spine.workspace.worktrees import forget_free_slot_locks, pooled, remove_pooled


def surplus(ctx: ExecutionContext, keep: int | None = None) -> list[Path]:
    """The pooled worktrees beyond ``keep``, oldest last; all of them when the pool is switched off.

    ``keep`` defaults to the configured size.
    """
    if keep is None:
        keep = ctx.config.pool.size if ctx.config.pool.enabled else 0
    return pooled(ctx)[max(0, keep) :]


def trim(ctx: ExecutionContext, keep: int | None = None) -> list[Path]:
    """Remove pooled worktrees beyond ``keep`` (default: the configured size, or 0 when the pool is
    off); the oldest go first and a slot another process holds is skipped. ``spine gc`` does this.

    Returns the removed paths.
    """
    removed = [path for path in surplus(ctx, keep) if remove_pooled(ctx, path)]
    forget_free_slot_locks(ctx)
    return removed
