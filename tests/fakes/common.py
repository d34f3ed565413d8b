"""Pieces the SDK fakes share: a record of every SDK call, and a local process that streams."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Call:
    name: str
    kwargs: dict[str, Any]
    args: tuple[Any, ...] = ()


@dataclass
class CallLog:
    """Every call the adapter made on the fake SDK, by the SDK's qualified name."""

    calls: list[Call] = field(default_factory=list)

    def record(self, qualname: str, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> None:
        self.calls.append(Call(qualname, dict(kwargs or {}), args))

    def recorded(self, qualname: str) -> Callable[[F], F]:
        """Record each call of the decorated SDK function with the keyword arguments the caller passed."""

        def decorate(fn: F) -> F:
            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                self.record(qualname, args, kwargs)
                return fn(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorate

    def named(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    def used(self) -> dict[str, set[str]]:
        """{qualified name: keyword parameters used}: what the signature check compares."""
        out: dict[str, set[str]] = {}
        for call in self.calls:
            out.setdefault(call.name, set()).update(call.kwargs)
        return out


class LocalProcess:
    """A command run by ``/bin/sh -c`` in its own process group, output delivered to callbacks."""

    def __init__(
        self,
        command: list[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        on_stdout: Callable[[bytes], None] | None,
        on_stderr: Callable[[bytes], None] | None,
        timeout: float | None = None,
    ) -> None:
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": cwd}
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env={**base, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, on_stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, on_stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self._timer = threading.Timer(timeout, self.kill) if timeout else None
        if self._timer:
            self._timer.start()

    @staticmethod
    def _pump(pipe: Any, sink: Callable[[bytes], None] | None) -> None:
        for chunk in iter(lambda: os.read(pipe.fileno(), 65536), b""):
            if sink:
                sink(chunk)

    def wait(self) -> int:
        code = self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        if self._timer:
            self._timer.cancel()
        return code if code >= 0 else 128 - code

    def kill(self) -> None:
        # A provider's kill ends the process, not necessarily its children; spine stops the group itself.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
