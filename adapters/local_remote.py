"""``local-remote``: the remote base driven on this machine, in a private temporary directory.

It exercises the whole remote protocol for real (tar in, baseline commit, run, binary patch back,
``git apply``) without a provider account: useful to try the remote path, to measure its overhead,
and as the reference driver a new remote adapter is compared with. It isolates nothing beyond a
separate copy of the tree: the command runs as you, with network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spine.backends.base import SandboxSpec
from spine.base.process import OutputSink, run_process

from .remote import RemoteSandbox


class LocalDriver:
    """A "remote" sandbox that is a temporary directory and subprocesses on this machine."""

    def __init__(self, parent: str | None = None) -> None:
        self._parent = parent
        self._dir: str | None = None
        self._cancels: set[threading.Event] = set()
        self._lock = threading.Lock()
        self.root = ""

    def open(self, spec: SandboxSpec, lifetime: float) -> str:
        self._dir = tempfile.mkdtemp(prefix="spine-remote-", dir=self._parent)
        self.root = str(Path(self._dir).resolve())
        os.mkdir(f"{self.root}/home")
        return f"local-{Path(self.root).name}"

    def write_file(self, path: str, data: bytes) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)

    def read_file(self, path: str) -> bytes:
        return Path(path).read_bytes()

    def run(
        self, script: str, *, env: Mapping[str, str], timeout: float | None, on_output: OutputSink | None
    ) -> int | None:
        # The "remote machine's" own environment, then what the lane passes in.
        machine = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": f"{self.root}/home",
            "TMPDIR": tempfile.gettempdir(),
        }
        cancel = threading.Event()
        with self._lock:
            self._cancels.add(cancel)
        try:
            outcome = run_process(
                ["/bin/sh", "-c", script],
                cwd=Path(self.root),
                env={**machine, **env},
                timeout=timeout,
                on_output=on_output,
                cancel=cancel,
            )
        finally:
            with self._lock:
                self._cancels.discard(cancel)
        return outcome.exit_code

    def interrupt(self) -> None:
        with self._lock:
            for cancel in self._cancels:
                cancel.set()

    def keepalive(self, seconds: float) -> None:
        return None  # a directory does not expire

    def close(self) -> None:
        self.interrupt()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class LocalRemote(RemoteSandbox):
    """The remote protocol (tar in, binary patch back) run in a temporary directory here."""

    name = "local-remote"
    blocks_network = False

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(settings)

    def unavailable_reason(self) -> str | None:
        return None if shutil.which("git") and shutil.which("tar") else "needs git and tar on PATH"

    def make_driver(self, spec: SandboxSpec) -> LocalDriver:
        parent = self.settings.get("dir")
        return LocalDriver(str(parent) if parent else None)
