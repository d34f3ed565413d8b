"""Run one command as its own process group: stdin closed, output streamed, time-boxed, killable.

The command gets a new session (and so a new process group); a timeout, an idle timeout, a cancel
request or Ctrl-C ends the whole group, first with SIGTERM and then, after a grace period, SIGKILL.
When the command exits by itself, whatever it left running in its group is killed too.

A process can leave its group (``setsid``) and its parent (a double fork). With ``supervise=True``
the command runs under ``spine.base.supervise``, a small subreaper that keeps every such process a
descendant and stops all of them when the command ends; ``ProcessOutcome.stopped`` lists them. Lane
commands, setup commands and checks run that way on the local backends.

Output is handled in time and memory linear in its size: the tail keeps the last lines only, a line
without a newline is cut at ``MAX_LINE`` characters, and a carriage return (a progress bar redrawing
itself) starts the line over instead of growing it.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from spine.base.redact import StreamRedactor, process_redactor

OutputSink = Callable[[str, bytes], None]
"""Called with ("stdout" | "stderr", chunk) for every chunk of output, from reader threads."""

TimeoutKind = Literal["wall", "idle"]

MAX_LINE = 2000
"""The most characters of one output line kept in a tail (the log keeps everything)."""

SUPERVISOR = str(Path(__file__).with_name("supervise.py"))


@dataclass
class ProcessOutcome:
    """What happened to a command."""

    exit_code: int | None
    timed_out: TimeoutKind | None = None
    canceled: bool = False
    duration: float = 0.0
    tail: list[str] = field(default_factory=list)
    # (pid, command line) of processes the command left behind, which the supervisor stopped.
    stopped: list[tuple[int, str]] = field(default_factory=list)
    # The supervisor itself was killed (not by spine): what the command started was not stopped.
    supervisor_lost: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.timed_out is None and not self.canceled


def last_frame(line: str) -> str:
    """What a terminal shows of ``line``: the text after its last carriage return, cut to MAX_LINE."""
    body = line.rstrip("\r")
    cut = body.rfind("\r")
    if cut >= 0:
        body = body[cut + 1 :]
    return body if len(body) <= MAX_LINE else body[:MAX_LINE] + " [...]"


class _Tail:
    """The last lines of combined output, for summaries and debug packets; bounded in memory."""

    def __init__(self, keep: int = 40) -> None:
        self._lines: deque[str] = deque(maxlen=keep)
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._lock = threading.Lock()

    def feed(self, chunk: bytes) -> None:
        with self._lock:
            text = self._decoder.decode(chunk)
            if "\n" not in text:
                self._partial = self._bounded(self._partial + text)
                return
            first, *middle, rest = text.split("\n")
            self._lines.append(last_frame(self._partial + first))
            self._lines.extend(last_frame(line) for line in middle[-(self._lines.maxlen or 1) :])
            self._partial = self._bounded(rest)

    @staticmethod
    def _bounded(partial: str) -> str:
        # Only the frame after the last carriage return can still show (a \r just before a \n
        # ends the line itself, so the frame before it is kept too).
        cut = partial.rstrip("\r").rfind("\r")
        if cut >= 0:
            partial = partial[cut + 1 :]
        return partial if len(partial) <= 2 * MAX_LINE else partial[:MAX_LINE]

    def lines(self) -> list[str]:
        with self._lock:
            out = list(self._lines)
            if self._partial.strip():
                out.append(last_frame(self._partial))
            return out[-self._lines.maxlen :] if self._lines.maxlen else out


OutputTail = _Tail


class Timebox:
    """The stop rules every runner enforces: a wall-clock limit, an idle limit and a cancel request.

    Runners call ``activity()`` on output and ``expired()`` in their wait loop; when it returns True,
    ``timed_out`` ("wall" or "idle") or ``canceled`` says why the command must stop.
    """

    def __init__(
        self,
        timeout: float | None,
        idle_timeout: float | None,
        cancel: threading.Event | None,
        started: float | None = None,
    ) -> None:
        self.started = time.monotonic() if started is None else started
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.cancel = cancel
        self.last_activity = self.started
        self.timed_out: TimeoutKind | None = None
        self.canceled = False

    def activity(self) -> None:
        self.last_activity = time.monotonic()

    def expired(self) -> bool:
        now = time.monotonic()
        if self.timeout is not None and now - self.started >= self.timeout:
            self.timed_out = "wall"
        elif self.idle_timeout is not None and now - self.last_activity >= self.idle_timeout:
            self.timed_out = "idle"
        elif self.cancel is not None and self.cancel.is_set():
            self.canceled = True
        return self.timed_out is not None or self.canceled


def kill_group(pgid: int, grace: float = 3.0, leader: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the process group, wait up to ``grace`` seconds, then SIGKILL what is left.

    ``leader`` is reaped while waiting, so that its zombie does not count as alive.
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if leader is not None:
            leader.poll()
        if not group_alive(pgid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process of the group exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc/self"):
        return True
    # Zombies still answer killpg(pgid, 0); an init that does not reap them would keep us waiting.
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != b"Z":
                return True
    return False


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float | None = None,
    idle_timeout: float | None = None,
    on_output: OutputSink | None = None,
    cancel: threading.Event | None = None,
    on_start: Callable[[int], None] | None = None,
    grace: float = 3.0,
    supervise: bool = False,
) -> ProcessOutcome:
    """Run ``argv`` in ``cwd`` and return its outcome; see the module docstring for the rules.

    ``on_start`` receives the process group id as soon as the command started (to record it for a
    ``spine cancel`` from another process). KeyboardInterrupt kills the group and is re-raised.
    ``supervise`` runs the command under the subreaper (``spine.base.supervise``).
    """
    started = time.monotonic()
    tail = _Tail()
    box = Timebox(timeout, idle_timeout, cancel, started)
    report: str | None = None
    full = list(argv)
    if supervise:
        fd, report = tempfile.mkstemp(prefix="spine-stopped-", suffix=".txt")
        os.close(fd)
        full = [sys.executable, "-I", "-S", SUPERVISOR, report, str(grace), "--", *full]
        # The supervisor gives the command ``grace`` to stop, then kills what is left itself.
        grace += 2.0
    try:
        proc = subprocess.Popen(
            full,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        _forget(report)
        line = f"spine: cannot start {argv[0]!r}: {exc.strerror or exc}"
        if on_output:
            on_output("stderr", (line + "\n").encode())
        return ProcessOutcome(exit_code=127, duration=time.monotonic() - started, tail=[line])
    pgid = proc.pid  # start_new_session makes the child the leader of its own group
    if on_start:
        on_start(pgid)

    sink_errors: list[BaseException] = []
    # The tail is redacted as a stream, so a secret that spans lines (a private key) is masked whole.
    secrets = process_redactor()
    tail_streams = {name: StreamRedactor(secrets) for name in ("stdout", "stderr")}

    def pump(stream_name: str, pipe: object) -> None:
        # The pipe is drained whatever happens to the output's consumer: a reader that stopped would
        # leave the command blocked on a full pipe until its timebox.
        fd = pipe.fileno()  # type: ignore[attr-defined]
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            box.activity()
            tail.feed(tail_streams[stream_name].feed(chunk))
            if on_output and not sink_errors:
                try:
                    on_output(stream_name, chunk)
                except Exception as exc:  # e.g. the log's disk is full: reported after the command ends
                    sink_errors.append(exc)

    readers = [
        threading.Thread(target=pump, args=("stdout", proc.stdout), daemon=True),
        threading.Thread(target=pump, args=("stderr", proc.stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()
    exited = _ExitWaiter(proc.pid)

    try:
        while proc.poll() is None:
            if box.expired():
                kill_group(pgid, grace, proc)
                _reap(proc)
                break
            exited.wait(0.05)
    except BaseException:
        # Ctrl-C may have landed inside Popen.poll(), which can leave Popen's internal wait lock
        # held; proc.wait() would then block forever. Reap with os.waitpid instead.
        kill_group(pgid, grace, proc)
        _reap(proc)
        raise
    finally:
        # Whatever the command left behind in its group goes too; then the pipes can close.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        for reader in readers:
            reader.join(timeout=5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        exited.close()

    for stream in tail_streams.values():
        tail.feed(stream.flush())
    if sink_errors:
        _forget(report)
        raise sink_errors[0]
    code = proc.returncode
    lost = supervise and code is not None and code < 0 and box.timed_out is None and not box.canceled
    if code is not None and code < 0:
        code = 128 + (-code)
    return ProcessOutcome(
        exit_code=code,
        timed_out=box.timed_out,
        canceled=box.canceled,
        duration=time.monotonic() - started,
        tail=tail.lines(),
        stopped=_read_stopped(report),
        supervisor_lost=lost,
    )


def _read_stopped(report: str | None) -> list[tuple[int, str]]:
    """The processes the supervisor reported stopping (and remove its report)."""
    if report is None:
        return []
    stopped = []
    try:
        with open(report, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                pid, _, text = line.rstrip("\n").partition("\t")
                if pid.isdigit():
                    stopped.append((int(pid), text))
    except OSError:
        pass
    _forget(report)
    return stopped


def _forget(path: str | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)


class _ExitWaiter:
    """Sleep until a child exits or a timeout passes, without polling: a pidfd where Linux has one."""

    def __init__(self, pid: int) -> None:
        self._fd: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            self._fd = os.pidfd_open(pid)

    def wait(self, timeout: float) -> None:
        if self._fd is None:
            time.sleep(timeout)
            return
        with contextlib.suppress(InterruptedError):
            select.select([self._fd], [], [], timeout)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Wait for ``proc`` and set its returncode, without Popen's internal lock."""
    if proc.returncode is not None:
        return
    try:
        _, status = os.waitpid(proc.pid, 0)
    except ChildProcessError:  # already reaped by Popen itself
        if proc.returncode is None:
            proc.returncode = -signal.SIGKILL
        return
    proc.returncode = os.waitstatus_to_exitcode(status)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C inside the block (the drive loop, a gate), so both stop cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: types.FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
