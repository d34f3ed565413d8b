"""Waiting for a lock without hanging and without hiding who holds it.

spine's file locks are ``filelock`` locks (an ``flock`` the kernel drops when the holder dies, so a
lock is never stale). ``hold`` waits for one up to a timeout; while held, a note beside the lock file
(``<lock>.holder``) says which process holds it and what for. When the wait runs out, ``LockTimeout``
(exit 3) names the lock and, from that note, its holder.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from spine.base.errors import EnvironmentProblem

DEFAULT_TIMEOUT = 120.0


class LockTimeout(EnvironmentProblem):
    """A lock was not free within its timeout. Exit 3."""


def holder_note(lock: Path) -> Path:
    return lock.with_name(lock.name + ".holder")


def describe_holder(lock: Path) -> str:
    """Who holds (or last held) ``lock``, as far as its note says."""
    try:
        text = holder_note(lock).read_text(encoding="utf-8").strip()
    except OSError:
        return "its holder is unknown"
    pid_text, _, rest = text.partition(" ")
    alive = False
    if pid_text.isdigit():
        try:
            os.kill(int(pid_text), 0)
            alive = True
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
    state = "" if alive else " (that process has exited; the lock is free again)"
    return f"held by process {pid_text}: {rest}{state}" if rest else f"held by process {pid_text}{state}"


@contextlib.contextmanager
def hold(lock: Path, purpose: str, timeout: float | None = None) -> Iterator[None]:
    """Hold the file lock ``lock`` for ``purpose`` (a few words shown to whoever waits for it).

    Raises ``LockTimeout`` naming the lock and its holder when it is not free within ``timeout``
    seconds (default: ``DEFAULT_TIMEOUT``).
    """
    from filelock import FileLock, Timeout  # imported on first use: most commands never lock

    wait = DEFAULT_TIMEOUT if timeout is None else timeout
    lock.parent.mkdir(parents=True, exist_ok=True)
    file_lock = FileLock(str(lock), timeout=wait)
    try:
        # Polled every 5 ms, not filelock's 50: lanes of a batch take this lock for a few
        # milliseconds each, and a waiter should not sleep ten times longer than the holder works.
        file_lock.acquire(poll_interval=0.005)
    except Timeout:
        raise LockTimeout(
            f"the lock {lock} was not free within {wait:g}s ({describe_holder(lock)})",
            "wait for that process to finish, or stop it; `lock_timeout` in .spine.yaml sets how long spine waits",
        ) from None
    try:
        with contextlib.suppress(OSError):
            argv = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv[:3]))
            holder_note(lock).write_text(
                f"{os.getpid()} {purpose} ({argv} on {socket.gethostname()})\n", encoding="utf-8"
            )
        yield
    finally:
        file_lock.release()
