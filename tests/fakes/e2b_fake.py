"""A stand-in for the ``e2b`` SDK (sync API) with its real names and signatures; runs commands locally.

The sandbox's file system is this machine's: tests point the adapter's ``root`` at a temporary
directory. Defaults mirror E2B's: a 60 s command timeout and a 300 s sandbox lifetime.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from tests.fakes.common import CallLog, LocalProcess

log = CallLog()
_ids = itertools.count(1)
live: dict[str, Sandbox] = {}


@dataclass
class CommandResult:
    stderr: str
    stdout: str
    exit_code: int
    error: str | None


class SandboxException(Exception):
    pass


@dataclass
class CommandExitException(SandboxException, CommandResult):  # type: ignore[misc]
    pass


class CommandHandle:
    """Output that arrives before ``wait`` is given its callbacks is held, as the SDK's event stream does."""

    def __init__(self) -> None:
        self._process: LocalProcess | None = None
        self._lock = threading.Lock()
        self._held: list[tuple[str, bytes]] = []
        self._sink: dict[str, Callable[[str], None] | None] = {}

    def deliver(self, stream: str, chunk: bytes) -> None:
        with self._lock:
            if stream not in self._sink:
                self._held.append((stream, chunk))
                return
            target = self._sink[stream]
        if target:
            target(chunk.decode(errors="replace"))

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @log.recorded("CommandHandle.wait")
    def wait(
        self,
        on_pty: Callable[[bytes], None] | None = None,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> CommandResult:
        with self._lock:
            self._sink = {"stdout": on_stdout, "stderr": on_stderr}
            held, self._held = self._held, []
        for stream, chunk in held:
            self.deliver(stream, chunk)
        assert self._process is not None
        code = self._process.wait()
        if code != 0:
            raise CommandExitException(stderr="", stdout="", exit_code=code, error=None)
        return CommandResult(stderr="", stdout="", exit_code=0, error=None)

    @log.recorded("CommandHandle.kill")
    def kill(self) -> bool:
        assert self._process is not None
        self._process.kill()
        return True


class Commands:
    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    @log.recorded("Commands.run")
    def run(
        self,
        cmd: str,
        background: bool | None = None,
        envs: dict[str, str] | None = None,
        user: str | None = None,
        cwd: str | None = None,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
        stdin: bool | None = None,
        timeout: float | None = 60,
        request_timeout: float | None = None,
    ) -> Any:
        self._sandbox._check_alive()
        handle = CommandHandle()
        if not background:
            handle._sink = {"stdout": on_stdout, "stderr": on_stderr}
        handle._process = LocalProcess(
            ["/bin/sh", "-c", cmd],
            cwd=cwd or "/",
            env=envs or {},
            on_stdout=lambda chunk: handle.deliver("stdout", chunk),
            on_stderr=lambda chunk: handle.deliver("stderr", chunk),
            timeout=timeout or None,  # 0 means no limit, as in the SDK
        )
        return handle if background else handle.wait(on_stdout=on_stdout, on_stderr=on_stderr)


class Filesystem:
    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    @log.recorded("Filesystem.write")
    def write(
        self,
        path: str,
        data: str | bytes | IO[Any] | Iterable[bytes],
        user: str | None = None,
        request_timeout: float | None = None,
    ) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data if isinstance(data, bytes) else str(data).encode())

    @log.recorded("Filesystem.read")
    def read(
        self,
        path: str,
        format: Literal["text", "bytes", "stream"] = "text",
        user: str | None = None,
        request_timeout: float | None = None,
    ) -> Any:
        data = Path(path).read_bytes()
        return bytearray(data) if format == "bytes" else data.decode()


class Sandbox:
    def __init__(self, timeout: int) -> None:
        self.sandbox_id = f"fake-e2b-{next(_ids)}"
        self.timeout = timeout
        self.killed = False
        self.commands = Commands(self)
        self.files = Filesystem(self)
        live[self.sandbox_id] = self

    @classmethod
    @log.recorded("Sandbox.create")
    def create(
        cls,
        template: str | None = None,
        timeout: int | None = None,
        metadata: dict[str, str] | None = None,
        envs: dict[str, str] | None = None,
        secure: bool | None = None,
        allow_internet_access: bool | None = None,
        **opts: Any,
    ) -> Sandbox:
        return cls(timeout if timeout is not None else 300)

    @log.recorded("Sandbox.set_timeout")
    def set_timeout(self, timeout: int, **opts: Any) -> None:
        self.timeout = timeout

    @log.recorded("Sandbox.kill")
    def kill(self, **opts: Any) -> bool:
        self.killed = True
        live.pop(self.sandbox_id, None)
        return True

    def _check_alive(self) -> None:
        if self.killed:
            raise SandboxException(f"sandbox {self.sandbox_id} was killed")
