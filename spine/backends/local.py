"""The built-in backends: ``local-worktree`` (the default) and ``none``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from spine.backends.base import ExecResult, SandboxHandle, SandboxSpec
from spine.base.process import OutputSink, run_process


class LocalWorktree:
    """Run the command as a plain subprocess in the lane's own worktree."""

    name = "local-worktree"
    in_place = False
    isolates = False  # the command runs as you, on this machine: checks may as well run the same way

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.settings = dict(settings or {})

    def unavailable_reason(self) -> str | None:
        return None

    def prepare(self, spec: SandboxSpec) -> SandboxHandle:
        return SandboxHandle(backend=self.name, worktree=spec.worktree)

    def exec(
        self,
        handle: SandboxHandle,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        timeout: float | None,
        idle_timeout: float | None = None,
        on_output: OutputSink | None = None,
        cancel: threading.Event | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> ExecResult:
        return run_process(
            argv,
            cwd=handle.worktree,
            env=env,
            timeout=timeout,
            idle_timeout=idle_timeout,
            on_output=on_output,
            cancel=cancel,
            on_start=on_start,
            supervise=True,
        )

    def collect(self, handle: SandboxHandle) -> None:
        return None

    def teardown(self, handle: SandboxHandle) -> None:
        handle.torn_down = True


class NoIsolation(LocalWorktree):
    """Run in the invoking checkout itself: no worktree, no branch, no commit unless asked."""

    name = "none"
    in_place = True
