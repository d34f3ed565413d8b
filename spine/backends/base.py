"""The sandbox port: what every isolation backend implements.

The lane code talks only to this Protocol. A backend prepares a sandbox for a lane worktree, runs a
command in it with streaming output and a timebox, brings the command's changes back into the
worktree, and tears down (idempotently, never raising). spine then commits in the worktree the same
way for every backend. See docs/backends.md for how to write one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from spine.base.process import OutputSink, ProcessOutcome

# Variables an isolating backend keeps from the lane environment without being asked: enough for a
# shell and a locale, nothing that identifies the user or carries credentials.
BASE_ENV: tuple[str, ...] = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TERM", "TZ")


@dataclass
class SandboxSpec:
    """What a lane asks of its sandbox.

    ``env_passthrough`` names the variables the lane declared (set in the configuration or on the
    command line, or listed to pass through from the invoking environment); isolating backends give
    the command only those, the ``SPINE_*`` variables and ``BASE_ENV``. ``git_dir`` is the
    repository's git common dir and ``state_dir`` spine's state under it, for backends that mount
    them. ``timeout`` is the lane's wall-clock timebox, so a remote sandbox can outlive it.
    """

    worktree: Path
    run_id: str
    lane_id: str
    network: bool = False
    env_passthrough: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    git_dir: Path | None = None
    state_dir: Path | None = None
    timeout: float | None = None


@dataclass
class SandboxHandle:
    """A prepared sandbox; ``data`` is the backend's own bookkeeping.

    ``provider_run_id`` is the provider's id of the sandbox (or container), recorded in the result.
    ``notices`` are lines spine writes into the lane log (e.g. an isolation the backend cannot give).
    """

    backend: str
    worktree: Path
    provider_run_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
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


def declared_env(env: Mapping[str, str], spec: SandboxSpec, keep: Iterable[str] = BASE_ENV) -> dict[str, str]:
    """The part of ``env`` an isolating backend passes in: ``keep``, ``SPINE_*`` and declared names."""
    allowed = {*keep, *spec.env_passthrough}
    return {k: v for k, v in env.items() if k in allowed or k.startswith("SPINE_")}


def describe(backend: Sandbox) -> str:
    """What a backend is, for listings: the first line of its docstring, unless the backend set a
    ``description`` of what it found (e.g. a cluster's size) while ``unavailable_reason`` ran."""
    found = getattr(backend, "description", None)
    if isinstance(found, str) and found:
        return found
    doc = (type(backend).__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""
