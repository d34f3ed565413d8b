"""``vercel-sandbox``: lanes in Vercel Sandbox microVMs (``pip install 'git-spine[vercel]'``).

Credentials are the SDK's own: ``VERCEL_OIDC_TOKEN`` (from ``vercel env pull``), or ``VERCEL_TOKEN``
with ``VERCEL_PROJECT_ID`` and ``VERCEL_TEAM_ID``. A Vercel sandbox stops after 5 minutes unless told
otherwise; spine sets ``execution_time_limit`` from the lane's timebox, extends it while the command
runs, and gives the command ``kill_after`` as the provider-side limit. Network is ``deny-all`` unless
the lane allows it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import posixpath
import threading
import time
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from spine.backends.base import SandboxSpec
from spine.base.process import OutputSink

from .remote import RemoteSandbox

SDK_MODULE = "vercel.sandbox.sync"


class _Stream:
    """A text stream the SDK writes output to, forwarded to spine's sink as it arrives."""

    def __init__(self, name: str, sink: OutputSink | None) -> None:
        self._name = name
        self._sink = sink

    def write(self, text: str) -> int:
        if self._sink and text:
            self._sink(self._name, text.encode())
        return len(text)

    def flush(self) -> None:
        return None

    def writable(self) -> bool:
        return True


class VercelDriver:
    """The remote primitives on ``vercel.sandbox.sync``."""

    def __init__(self, sdk: ModuleType, settings: Mapping[str, Any]) -> None:
        self._sdk = sdk
        self._settings = settings
        self._sandbox: Any = None
        self._processes: list[Any] = []
        self._lock = threading.Lock()
        self._expires = 0.0
        self.root = str(settings.get("root", "/tmp/spine"))

    def open(self, spec: SandboxSpec, lifetime: float) -> str:
        policy = self._sdk.NetworkPolicy.allow_all() if spec.network else self._sdk.NetworkPolicy.deny_all()
        image = self._settings.get("image")
        self._sandbox = self._sdk.create_sandbox(
            image=str(image) if image else None,
            execution_time_limit=lifetime,
            network_policy=policy,
            tags={"spine-run": spec.run_id, "spine-lane": spec.lane_id},
        )
        self._expires = time.monotonic() + lifetime
        self._sandbox.fs.mkdir(self.root, recursive=True)
        return str(self._sandbox.name)

    def write_file(self, path: str, data: bytes) -> None:
        self._sandbox.fs.mkdir(posixpath.dirname(path), recursive=True)
        self._sandbox.fs.write_bytes(path, data)

    def read_file(self, path: str) -> bytes:
        return bytes(self._sandbox.fs.read_bytes(path))

    def run(
        self, script: str, *, env: Mapping[str, str], timeout: float | None, on_output: OutputSink | None
    ) -> int | None:
        def started(process: Any) -> None:
            with self._lock:
                self._processes.append(process)

        completed = self._sandbox.run_process(
            "/bin/sh",
            ["-c", script],
            cwd=self.root,
            env=dict(env),
            kill_after=timeout,
            stdout=_Stream("stdout", on_output),
            stderr=_Stream("stderr", on_output),
            on_start=started,
        )
        return int(completed.returncode)

    def interrupt(self) -> None:
        with self._lock:
            processes = list(self._processes)
        for process in processes:
            if process.returncode is None:
                process.kill()

    def keepalive(self, seconds: float) -> None:
        if self._expires - time.monotonic() < seconds:
            self._sandbox.extend_execution_time_limit(seconds)
            self._expires += seconds

    def close(self) -> None:
        if self._sandbox is not None:
            sandbox, self._sandbox = self._sandbox, None
            try:
                sandbox.stop()
            finally:
                sandbox.destroy()


class VercelSandbox(RemoteSandbox):
    """Vercel Sandbox microVM (remote copy, binary patch back); needs the vercel extra and a token."""

    name = "vercel-sandbox"

    def __init__(self, settings: Mapping[str, Any] | None = None, *, sdk: ModuleType | None = None) -> None:
        super().__init__(settings)
        self._sdk = sdk

    def unavailable_reason(self) -> str | None:
        if self._sdk is None:
            try:
                found = importlib.util.find_spec(SDK_MODULE) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                return "the vercel SDK is not installed: pip install 'git-spine[vercel]'"
        env = os.environ
        if env.get("VERCEL_OIDC_TOKEN"):
            return None
        missing = [v for v in ("VERCEL_TOKEN", "VERCEL_PROJECT_ID", "VERCEL_TEAM_ID") if not env.get(v)]
        if missing:
            return f"no Vercel credentials: set VERCEL_OIDC_TOKEN, or {', '.join(missing)}"
        return None

    def sdk(self) -> ModuleType:
        if self._sdk is None:
            self._sdk = importlib.import_module(SDK_MODULE)
        return self._sdk

    def make_driver(self, spec: SandboxSpec) -> VercelDriver:
        return VercelDriver(self.sdk(), self.settings)
