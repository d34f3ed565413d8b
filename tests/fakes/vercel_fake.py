"""A stand-in for ``vercel.sandbox.sync`` with its real names and signatures; runs commands locally.

Like the real service, a sandbox without an ``execution_time_limit`` stops after 5 minutes.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TextIO

from tests.fakes.common import CallLog, LocalProcess

log = CallLog()
_ids = itertools.count(1)
live: dict[str, SyncSandbox] = {}


@dataclass(frozen=True)
class NetworkPolicy:
    mode: Literal["allow-all", "deny-all", "custom"]

    @classmethod
    def allow_all(cls) -> NetworkPolicy:
        return cls(mode="allow-all")

    @classmethod
    def deny_all(cls) -> NetworkPolicy:
        return cls(mode="deny-all")


@dataclass
class CompletedProcess:
    id: str
    name: str
    args: tuple[str, ...]
    cwd: str
    session_id: str
    started_at: int
    returncode: int
    stdout: str | None
    stderr: str | None


class SyncProcess:
    def __init__(self, process: LocalProcess) -> None:
        self._process = process
        self.returncode: int | None = None

    @log.recorded("SyncProcess.kill")
    def kill(self) -> None:
        self._process.kill()


class SyncSandboxFilesystem:
    @log.recorded("SyncSandboxFilesystem.mkdir")
    def mkdir(self, path: str | PurePosixPath, *, cwd: str | None = None, recursive: bool = True) -> None:
        Path(path).mkdir(parents=recursive, exist_ok=True)

    @log.recorded("SyncSandboxFilesystem.write_bytes")
    def write_bytes(
        self, path: str | PurePosixPath, data: bytes, *, cwd: str | None = None, mode: int | None = None
    ) -> None:
        Path(path).write_bytes(data)

    @log.recorded("SyncSandboxFilesystem.read_bytes")
    def read_bytes(self, path: str | PurePosixPath, *, cwd: str | None = None) -> bytes:
        return Path(path).read_bytes()


class SyncSandbox:
    def __init__(self, execution_time_limit: float) -> None:
        self.name = f"fake-vercel-{next(_ids)}"
        self.execution_time_limit = execution_time_limit
        self.fs = SyncSandboxFilesystem()
        self.stopped = self.destroyed = False
        live[self.name] = self

    @log.recorded("SyncSandbox.run_process")
    def run_process(
        self,
        command: str,
        args: Sequence[str] | None = None,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        sudo: bool = False,
        kill_after: float | timedelta | None = None,
        check: bool = False,
        stdout: TextIO | int | None = None,
        stderr: TextIO | int | None = None,
        capture_output: bool = False,
        input: str | bytes | None = None,
        on_start: Callable[[SyncProcess], None] | None = None,
    ) -> CompletedProcess:
        if self.stopped:
            raise RuntimeError("sandbox is stopped")
        for target in (stdout, stderr):
            if isinstance(target, int) or target is None:
                continue
            if not (callable(getattr(target, "write", None)) and callable(getattr(target, "flush", None))):
                raise TypeError("stdout must be a writable text stream or subprocess sentinel")

        def writer(target: Any) -> Callable[[bytes], None] | None:
            if target is None or target == subprocess.DEVNULL or isinstance(target, int):
                return None
            return lambda chunk: target.write(chunk.decode(errors="replace"))

        limit = kill_after.total_seconds() if isinstance(kill_after, timedelta) else kill_after
        process = LocalProcess(
            [command, *(args or [])],
            cwd=cwd or "/",
            env=env or {},
            on_stdout=writer(stdout),
            on_stderr=writer(stderr),
            timeout=limit,
        )
        handle = SyncProcess(process)
        if on_start:
            on_start(handle)
        code = process.wait()
        handle.returncode = code
        return CompletedProcess(
            id="cmd",
            name=command,
            args=tuple(args or ()),
            cwd=cwd or "/",
            session_id="s",
            started_at=0,
            returncode=code,
            stdout=None,
            stderr=None,
        )

    @log.recorded("SyncSandbox.extend_execution_time_limit")
    def extend_execution_time_limit(self, duration: float | timedelta | None) -> None:
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration or 0)
        self.execution_time_limit += seconds

    @log.recorded("SyncSandbox.stop")
    def stop(self) -> SyncSandbox:
        self.stopped = True
        return self

    @log.recorded("SyncSandbox.destroy")
    def destroy(self, *, delete_orphan_snapshots: bool = False) -> SyncSandbox:
        self.destroyed = True
        live.pop(self.name, None)
        return self


@log.recorded("create_sandbox")
def create_sandbox(
    *,
    name: str | None = None,
    image: str | None = None,
    execution_time_limit: float | timedelta | None = None,
    network_policy: NetworkPolicy | None = None,
    env: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    **private_parameters: Any,
) -> SyncSandbox:
    limit = (
        execution_time_limit.total_seconds()
        if isinstance(execution_time_limit, timedelta)
        else execution_time_limit
    )
    return SyncSandbox(float(limit) if limit is not None else 300.0)
