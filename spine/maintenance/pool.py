"""The worktree pool: succeeded lanes hand their worktree back, new lanes reuse one.

Checking out every file of a large repository is most of what a fresh ``git worktree add`` costs.
A pooled worktree already has the files; moving it to a new base rewrites only those that differ.

A pooled worktree waits in ``<worktree root>/.pool/<slot>`` with a detached HEAD. ``take`` locks a
slot, moves the worktree to the lane's base and cleans it (proving both, or discarding it), moves
the directory to the lane's path and creates the lane's branch there. From then on it is out
of the pool: no other lane can see it. The slot lock (an ``flock``, released by the kernel if the
process dies) covers the moments in between. ``give_back`` returns a worktree while the pool has
room; ``trim`` removes the surplus (``spine gc`` calls it). See docs/adr/0050-worktree-pool.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spine.base.errors import EnvironmentProblem
from spine.base.git import GitFailed, git
from spine.workspace.context import ExecutionContext


class NotPristine(EnvironmentProblem):
    """A pooled worktree could not be brought back to a clean state; it is discarded, never used."""


@dataclass(frozen=True)
class Taken:
    """A pooled worktree now at the lane's path, on the lane's branch."""

    path: Path
    slot: str
    cleaned: bool  # untracked or ignored files had to be removed
    seconds: float


def pooled_worktrees(ctx: ExecutionContext) -> list[Path]:
    """The worktrees waiting in the pool, most recently returned first."""
    root = ctx.pool_worktrees
    if not root.is_dir():
        return []
    slots = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(slots, key=lambda p: p.name, reverse=True)


def is_pooled(ctx: ExecutionContext, path: Path) -> bool:
    """True when ``path`` is a worktree waiting in the pool (``spine gc`` must leave it to ``trim``)."""
    return path.resolve().parent == ctx.pool_worktrees.resolve()


def take(ctx: ExecutionContext, dest: Path, branch: str, base_sha: str) -> Taken | None:
    """Move a pristine pooled worktree to ``dest`` on a new ``branch`` at ``base_sha``.

    Returns None when no pooled worktree can be used (the pool is empty, every slot is locked, or
    the branch exists already); the caller then creates a fresh worktree.
    """
    started = time.perf_counter()
    for slot_path in pooled_worktrees(ctx):
        with slot_lock(ctx, slot_path.name) as held:
            if not held or not (slot_path / ".git").is_file():
                continue  # another lane is taking it, or took it since we listed the pool
            try:
                cleaned = _make_pristine(ctx, slot_path, base_sha)
            except (GitFailed, NotPristine):
                _discard(ctx, slot_path)
                continue
            with _worktrees_lock(ctx):  # give_back removes empty run directories under this lock
                dest.parent.mkdir(parents=True, exist_ok=True)
                moved = git(
                    "worktree", "move", str(slot_path), str(dest), cwd=ctx.repo.primary_checkout, check=False
                )
            if moved.returncode != 0:
                continue  # e.g. another file system; the worktree stays pooled and pristine
            _lock_file(ctx, slot_path.name).unlink(missing_ok=True)
        # `switch -c` to the commit already checked out touches neither index nor files (`checkout -b`
        # would refresh the whole index).
        switched = git("switch", "-q", "-c", branch, cwd=dest, check=False)
        if switched.returncode != 0:
            # Most likely the branch exists (a lane being redone): hand the worktree back untouched
            # and let the caller reconcile the branch the way it does without a pool.
            if not give_back(ctx, dest):
                _discard(ctx, dest)
            return None
        return Taken(path=dest, slot=slot_path.name, cleaned=cleaned, seconds=time.perf_counter() - started)
    return None


def give_back(ctx: ExecutionContext, worktree: Path) -> bool:
    """Return a finished lane's worktree to the pool; False (and leave it in place) when the pool is full.

    The worktree's HEAD is detached, so the lane's branch is no longer checked out anywhere.
    Whatever the lane left behind is cleaned by the next ``take``, not here.
    """
    slot = f"{time.time_ns():x}-{secrets.token_hex(2)}"
    dest = ctx.pool_worktrees / slot
    with slot_lock(ctx, slot) as held:
        if not held:
            return False
        with _worktrees_lock(ctx):
            if len(pooled_worktrees(ctx)) >= ctx.config.pool.size:
                return False
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                git(
                    "update-ref",
                    "--no-deref",
                    "-m",
                    "spine: returned to the worktree pool",
                    "HEAD",
                    "HEAD",
                    cwd=worktree,
                )
                git("worktree", "move", str(worktree), str(dest), cwd=ctx.repo.primary_checkout)
            except GitFailed:
                return False  # a locked worktree, one with submodules: it stays where it is
            if worktree.parent.parent == ctx.workspace.worktree_root:
                with contextlib.suppress(OSError):  # the run's last lane worktree: leave no empty directory
                    worktree.parent.rmdir()
    return True


def surplus(ctx: ExecutionContext, keep: int | None = None) -> list[Path]:
    """The pooled worktrees beyond ``keep``, oldest last; all of them when the pool is switched off.

    ``keep`` defaults to the configured size.
    """
    if keep is None:
        keep = ctx.config.pool.size if ctx.config.pool.enabled else 0
    return pooled_worktrees(ctx)[max(0, keep) :]


def remove_pooled(ctx: ExecutionContext, path: Path) -> bool:
    """Remove one pooled worktree unless another process holds its slot; True if it was removed.

    A pooled worktree holds nothing of value (its lane's work is on the lane's branch), so it is
    removed as it is.
    """
    if not is_pooled(ctx, path):
        raise ValueError(f"{path} is not in the worktree pool")
    with slot_lock(ctx, path.name) as held:
        if not held or not path.exists():
            return False
        _discard(ctx, path)
    return True


def trim(ctx: ExecutionContext, keep: int | None = None) -> list[Path]:
    """Remove pooled worktrees beyond ``keep`` (default: the configured size, or 0 when the pool is
    off); the oldest go first and a slot another process holds is skipped. ``spine gc`` does this.

    Returns the removed paths.
    """
    removed = [path for path in surplus(ctx, keep) if remove_pooled(ctx, path)]
    if ctx.state.pool.is_dir():
        for lock in ctx.state.pool.glob("*.lock"):
            slot = lock.name.removesuffix(".lock")
            if not (ctx.pool_worktrees / slot).exists():
                with slot_lock(ctx, slot) as held:
                    if held:
                        lock.unlink(missing_ok=True)
    return removed


@contextlib.contextmanager
def slot_lock(ctx: ExecutionContext, slot: str) -> Iterator[bool]:
    """Try to lock one slot (a pooled worktree's directory name) without waiting; yields whether
    this process now holds it. While held, no other process takes, trims or discards that worktree."""
    ctx.state.pool.mkdir(parents=True, exist_ok=True)
    fd = os.open(_lock_file(ctx, slot), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = False
        else:
            held = True
        yield held
    finally:
        os.close(fd)  # closing releases the lock


# --- internals -----------------------------------------------------------------------------------


def _make_pristine(ctx: ExecutionContext, path: Path, base_sha: str) -> bool:
    """Bring ``path`` to ``base_sha`` with nothing else in it but the keep-list; True if files had
    to be removed. Raises ``NotPristine`` (or ``GitFailed``) when that cannot be shown.

    A forced checkout makes HEAD, index and every tracked file equal to the base (it exits non-zero
    otherwise), rewriting only the files whose stat data or content differs; ``clean`` removes every
    untracked and ignored file except the keep-list, by git's own pattern rules. When it removed
    anything, a dry run must then find nothing. See docs/adr/0050-worktree-pool.md.
    """
    if git("symbolic-ref", "-q", "HEAD", cwd=path, check=False).returncode == 0:
        # The pool leaves HEAD detached: a branch means someone used this worktree by hand.
        raise NotPristine(f"pooled worktree {path} has a branch checked out")
    excludes = [f"--exclude={pattern}" for pattern in ctx.config.pool.keep]
    git("checkout", "-q", "-f", "--detach", base_sha, cwd=path)
    clean = git("clean", "-ffdx", *excludes, cwd=path)
    removed = bool(clean.stdout.strip() or clean.stderr.strip())
    if removed and git("clean", "-n", "-ffdx", *excludes, cwd=path).stdout.strip():
        raise NotPristine(f"pooled worktree {path} still has untracked files after cleaning")
    return removed


def _discard(ctx: ExecutionContext, path: Path) -> None:
    """Remove a pooled worktree that must not be used (only ever one inside the pool)."""
    removed = git(
        "worktree", "remove", "--force", "--force", str(path), cwd=ctx.repo.primary_checkout, check=False
    )
    if removed.returncode != 0 and path.resolve().parent == ctx.pool_worktrees.resolve():
        shutil.rmtree(path, ignore_errors=True)
        git("worktree", "prune", cwd=ctx.repo.primary_checkout, check=False)
    _lock_file(ctx, path.name).unlink(missing_ok=True)


def _lock_file(ctx: ExecutionContext, slot: str) -> Path:
    return ctx.state.pool / f"{slot}.lock"


@contextlib.contextmanager
def _worktrees_lock(ctx: ExecutionContext) -> Iterator[None]:
    """The lock every change to the repository's list of worktrees is made under."""
    from filelock import FileLock

    ctx.state.locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(ctx.state.lock_file("worktrees")), timeout=120):
        yield
