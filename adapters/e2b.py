"""``e2b``: lanes in E2B cloud sandboxes (``pip install 'git-spine[e2b]'``, ``E2B_API_KEY``).

E2B's defaults would cut a lane short: a command's connection times out after 60 s and a sandbox
lives 5 minutes. spine passes its own timebox instead: the command timeout is the lane's timeout
(0, unlimited, when the lane has none) and the sandbox lives the timebox plus a margin, kept alive
while an unbounded lane runs. Network is blocked with ``allow_internet_access=False`` unless the lane
allows it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from spine.backends.base import SandboxSpec
from spine.base.process import OutputSink

from .remote import RemoteSandbox

CREDENTIAL_VARS = ("E2B_API_KEY",)


class E2BDriver:
    """The remote primitives on the ``e2b`` SDK (sync API)."""

    def __init__(self, sdk: ModuleType, settings: Mapping[str, Any]) -> None:
        self._sdk = sdk
        self._settings = settings
        self._sandbox: Any = None
        self._running: Any = None
        self._lock = threading.Lock()
        self.root = str(settings.get("root", "/home/user/.spine"))

    def open(self, spec: SandboxSpec, lifetime: float) -> str:
        template = self._settings.get("template")
        self._sandbox = self._sdk.Sandbox.create(
            template=str(template) if template else None,
            timeout=int(lifetime),
            metadata={"spine-run": spec.run_id, "spine-lane": spec.lane_id},
            allow_internet_access=spec.network,
        )
        return str(self._sandbox.sandbox_id)

    def write_file(self, path: str, data: bytes) -> None:
        self._sandbox.files.write(path, data)

    def read_file(self, path: str) -> bytes:
        return bytes(self._sandbox.files.read(path, format="bytes"))

    def run(
        self, script: str, *, env: Mapping[str, str], timeout: float | None, on_output: OutputSink | None
    ) -> int | None:
        handle = self._sandbox.commands.run(
            script,
            background=True,
            envs=dict(env),
            cwd=self.root,
            timeout=0 if timeout is None else timeout,  # 0: no limit; the SDK's default is 60 s
        )
        with self._lock:
            self._running = handle

        def out(stream: str) -> Any:
            return (lambda text: on_output(stream, text.encode())) if on_output else None

        try:
            result = handle.wait(on_stdout=out("stdout"), on_stderr=out("stderr"))
        except self._sdk.CommandExitException as exc:  # non-zero exit codes arrive as exceptions
            return int(exc.exit_code)
        finally:
            with self._lock:
                if self._running is handle:
                    self._running = None
        return int(result.exit_code)

    def interrupt(self) -> None:
        with self._lock:
            running = self._running
        if running is not None:
            running.kill()

    def keepalive(self, seconds: float) -> None:
        self._sandbox.set_timeout(int(seconds))

    def close(self) -> None:
        if self._sandbox is not None:
            sandbox, self._sandbox = self._sandbox, None
            sandbox.kill()


class E2BSandbox(RemoteSandbox):
    """E2B cloud sandbox (remote copy, binary patch back); needs the e2b extra and E2B_API_KEY."""

    name = "e2b"
    module = "e2b"

    def __init__(self, settings: Mapping[str, Any] | None = None, *, sdk: ModuleType | None = None) -> None:
        super().__init__(settings)
        self._sdk = sdk

    def unavailable_reason(self) -> str | None:
        if self._sdk is None and importlib.util.find_spec(self.module) is None:
            return f"the {self.module} SDK is not installed: pip install 'git-spine[e2b]'"
        if not any(os.environ.get(var) for var in CREDENTIAL_VARS):
            return "E2B_API_KEY is not set (create a key at e2b.dev and export it)"
        return None

    def sdk(self) -> ModuleType:
        if self._sdk is None:
            self._sdk = importlib.import_module(self.module)
        return self._sdk

    def make_driver(self, spec: SandboxSpec) -> E2BDriver:
        return E2BDriver(self.sdk(), self.settings)
