"""The one liveness check: is a run being driven, is a process alive.

A driver holds an exclusive ``flock`` on ``runs/<run-id>/driver.lock`` for as long as it drives the
run. The kernel releases it when the driver exits for any reason, SIGKILL included, so "is this run
being driven?" is answered by trying the lock, never by trusting a recorded PID. Every command that
needs to know (resume, status, cancel, gc) asks here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from spine.base.errors import EnvironmentProblem


class RunBusy(EnvironmentProblem):
    """Another process is driving the run."""


class DriverLock:
    """An exclusive, non-blocking lock on one run (or one gate); held while driving it.

    ``path`` is the lock file (``StatePaths.driver_lock``); its directory names the run.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``RunBusy`` naming the run."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunBusy(
                f"run {self.path.parent.name} is being driven by another spine process",
                f"watch it with `spine status {self.path.parent.name}`, or stop it with `spine cancel {self.path.parent.name}`",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DriverLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def run_is_driven(path: Path) -> bool:
    """True while some process (this one included) holds the driver lock ``path``. Writes nothing."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe lock, if we got it
    return False


def pid_alive(pid: int) -> bool:
    """True when a process with ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
