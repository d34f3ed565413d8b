"""The sandbox port: what every isolation backend implements.

The lane code talks only to this Protocol. A backend prepares a sandbox for a lane worktree, runs a
command in it with streaming output and a timebox, brings the command's changes back into the
worktree, and tears down (idempotently, never raising). spine then commits in the worktree the same
way for every backend. See docs/backends.md for how to write one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from spine.process import OutputSink, ProcessOutcome


@dataclass
class SandboxSpec:
    """What a lane asks of its sandbox."""

    worktree: Path
    run_id: str
    lane_id: str
    network: bool = True
    env_passthrough: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class SandboxHandle:
    """A prepared sandbox; ``data`` is the backend's own bookkeeping."""

    backend: str
    worktree: Path
    provider_run_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    torn_down: bool = False


ExecResult = ProcessOutcome


@runtime_checkable
class Sandbox(Protocol):
    """The port. ``in_place`` backends run in the invoking checkout instead of a lane worktree."""

    name: str
    in_place: bool

    def unavailable_reason(self) -> str | None:
        """None when usable here; otherwise why not (missing binary, extra or credentials)."""
        ...

    def prepare(self, spec: SandboxSpec) -> SandboxHandle:
        """Make the sandbox ready to run commands against ``spec.worktree``."""
        ...

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
        """Run ``argv`` (cwd: the worktree, as the sandbox sees it); enforce the timebox."""
        ...

    def collect(self, handle: SandboxHandle) -> None:
        """Bring the command's changes back into the local worktree (a no-op when shared)."""
        ...

    def teardown(self, handle: SandboxHandle) -> None:
        """Release everything ``prepare`` created. Idempotent; never raises."""
        ...
