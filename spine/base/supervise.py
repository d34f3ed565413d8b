"""Run one command so that nothing it starts outlives it: a tiny supervisor process.

Started as ``python -I -S supervise.py REPORT GRACE -- ARGV...`` by ``spine.base.process`` (it imports
nothing of spine and as little of the standard library as it can, so it starts in a few
milliseconds). It makes itself a *child subreaper* (Linux
``prctl(PR_SET_CHILD_SUBREAPER)``), so every process the command starts stays its descendant even after
``setsid``, a double fork or the death of its parent. It runs the command and, when the command
exits (or a SIGTERM/SIGINT/SIGHUP asks the lane to stop), stops every descendant that is left:
SIGTERM first when asked to stop (the command gets ``GRACE`` seconds to clean up), then SIGSTOP and
SIGKILL, over and over until none is left. What it had to stop is written to REPORT, one
``PID<TAB>ARGV`` line each, and it exits with the command's exit status (128 + N for signal N).

Where there is no subreaper (not Linux) it still stops the command's process group.
"""

from __future__ import annotations

import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def _subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live (non-zombie) process we can see."""
    found: dict[int, int] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] in (b"Z", b"X"):
            continue
        found[int(name)] = int(fields[1])
    return found


def descendants(root: int) -> list[int]:
    """Every live descendant of ``root``."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out: list[int] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _argv_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()[:300] or "?"


_REAPED: dict[int, int] = {}
"""pid -> wait status of every child collected so far (the command's among them)."""


def _reap() -> None:
    """Collect every exited child without waiting, into ``_REAPED``."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _REAPED[pid] = status


def _no_children() -> bool:
    """True when this process has no child at all, living or exited. A subreaper's descendants are
    all below its children (an orphan is handed to it), so then it has no descendant either and
    nothing needs to be looked for in /proc."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return False


def _stop_all(me: int, seen: dict[int, str], gentle: float) -> None:
    """Stop every descendant of ``me``: SIGTERM and ``gentle`` seconds first (if > 0), then SIGKILL."""
    _reap()
    if _no_children():
        return  # the common case: the command exited and left nothing behind
    if gentle > 0:
        for pid in descendants(me):
            seen.setdefault(pid, _argv_of(pid))
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + gentle
        while time.monotonic() < deadline and descendants(me):
            _reap()
            time.sleep(0.02)
    for _ in range(200):
        alive = descendants(me)
        if not alive:
            break
        # Freeze first, so that nothing forks new children between the scan and the kill.
        for pid in alive:
            seen.setdefault(pid, _argv_of(pid))
            _signal(pid, signal.SIGSTOP)
        for pid in descendants(me):
            seen.setdefault(pid, _argv_of(pid))
            _signal(pid, signal.SIGKILL)
        time.sleep(0.005)
        _reap()
    _reap()


def _signal(pid: int, sig: int) -> None:
    # Not contextlib.suppress: importing contextlib is a third of this script's start-up.
    try:  # noqa: SIM105
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str]) -> int:
    report, grace_text, sep, *command = argv
    if sep != "--" or not command:
        print("usage: supervise.py REPORT GRACE -- ARGV...", file=sys.stderr)
        return 2
    grace = float(grace_text)
    me = os.getpid()
    is_reaper = _subreaper()
    # Signals are taken synchronously (sigtimedwait), never by a handler: no race with the wait.
    watched = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        child = os.fork()
    except OSError as exc:
        print(f"spine: cannot start {command[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127
    if child == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            os.write(2, f"spine: cannot start {command[0]!r}: {exc.strerror or exc}\n".encode())
            os._exit(127)
    status: int | None = None
    deadline: float | None = None
    seen: dict[int, str] = {}
    while status is None:
        _reap()
        status = _REAPED.get(child)
        if status is not None:
            break
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            _stop_all(me, seen, 0.0)  # the command too: it had its grace period
            _reap()
            status = _REAPED.get(child, 9)  # SIGKILLed, if its status went missing
            break
        info = signal.sigtimedwait(watched, 1.0 if deadline is None else deadline - now)
        if info is not None and info.si_signo != signal.SIGCHLD and deadline is None:
            # Asked to stop. The command's group got the signal from spine already; descendants that
            # left the group did not.
            deadline = time.monotonic() + grace
            for pid in descendants(me):
                _signal(pid, signal.SIGTERM)
    stopped = deadline is not None
    if is_reaper:
        # What is left after a stop request had its grace period already; after a normal exit it goes now.
        _stop_all(me, seen, 0.0)
    if seen and report != "-":
        try:
            with open(report, "w", encoding="utf-8") as handle:
                for pid, text in seen.items():
                    handle.write(f"{pid}\t{text}\n")
        except OSError:
            pass
    if status is None:
        return 137
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    code = os.WEXITSTATUS(status)
    return code if code or not stopped else 143


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
