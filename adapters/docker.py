"""``docker``: lanes in a local container (``pip install 'git-spine[docker]'`` and a Docker engine).

The lane worktree is bind-mounted read-write at its own path (so its ``.git`` file still resolves),
the repository's git directory read-only, spine's state hidden behind a tmpfs. The container has no
network unless the lane allows it, no capabilities, ``no-new-privileges``, runs as your uid:gid
(files it writes are yours), and gets only the variables the lane declares. A timeout or cancel kills
the container, and with it every process in it. The image is the ``image`` setting.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from spine.backends.base import BASE_ENV, ExecResult, SandboxHandle, SandboxSpec, declared_env
from spine.base.errors import EnvironmentProblem
from spine.base.process import OutputSink, OutputTail, Timebox

DEFAULT_IMAGE = "debian:bookworm-slim"
GRACE = 3.0


class DockerSandbox:
    """A local Docker container: worktree bind-mounted, no network by default, killed on timeout."""

    name = "docker"
    in_place = False

    def __init__(self, settings: Mapping[str, Any] | None = None, *, sdk: ModuleType | None = None) -> None:
        self.settings = dict(settings or {})
        self._sdk = sdk
        self._client: Any = None

    def sdk(self) -> ModuleType:
        if self._sdk is None:
            self._sdk = importlib.import_module("docker")
        return self._sdk

    def client(self) -> Any:
        if self._client is None:
            self._client = self.sdk().from_env(timeout=int(self.settings.get("api_timeout", 60)))
        return self._client

    def unavailable_reason(self) -> str | None:
        if self._sdk is None and importlib.util.find_spec("docker") is None:
            return "the docker SDK is not installed: pip install 'git-spine[docker]'"
        if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
            return (
                "no Docker engine reachable: /var/run/docker.sock does not exist and DOCKER_HOST is not set"
            )
        try:
            self.client().ping()
        except Exception as exc:  # the SDK raises several kinds when no engine answers
            client, self._client = self._client, None
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
            return f"no Docker engine reachable ({type(exc).__name__}: {str(exc)[:160]}); start Docker or set DOCKER_HOST"
        return None

    def prepare(self, spec: SandboxSpec) -> SandboxHandle:
        handle = SandboxHandle(backend=self.name, worktree=spec.worktree)
        worktree = str(spec.worktree.resolve())
        volumes: dict[str, dict[str, str]] = {worktree: {"bind": worktree, "mode": "rw"}}
        tmpfs: dict[str, str] = {"/tmp": "", "/home": ""}
        if spec.git_dir is not None:
            git_dir = str(spec.git_dir.resolve())
            volumes[git_dir] = {"bind": git_dir, "mode": "ro"}
            if spec.state_dir is not None and spec.state_dir.is_dir():
                tmpfs[str(spec.state_dir.resolve())] = ""
        handle.data.update(
            spec=spec,
            options={
                "image": str(self.settings.get("image", DEFAULT_IMAGE)),
                "volumes": volumes,
                "tmpfs": tmpfs,
                "working_dir": worktree,
                "network_mode": "bridge" if spec.network else "none",
                "user": f"{os.getuid()}:{os.getgid()}",
                "cap_drop": ["ALL"],
                "security_opt": ["no-new-privileges"],
                "init": True,
                "detach": True,
                "labels": {"spine.run": spec.run_id, "spine.lane": spec.lane_id},
            },
        )
        return handle

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
        inside = declared_env(env, handle.data["spec"], keep=tuple(k for k in BASE_ENV if k != "PATH"))
        inside.update({"HOME": "/tmp", "TMPDIR": "/tmp"})
        started = time.monotonic()
        try:
            container = self.client().containers.create(
                command=list(argv), environment=inside, **handle.data["options"]
            )
        except Exception as exc:
            raise EnvironmentProblem(f"docker: cannot create the container: {exc}") from exc
        handle.data["container"] = container
        handle.provider_run_id = str(container.id)[:12]
        box = Timebox(timeout, idle_timeout, cancel, started)
        tail = OutputTail()

        def pump() -> None:
            stream = container.attach(stdout=True, stderr=True, stream=True, logs=True, demux=True)
            for out, err in stream:
                for name, chunk in (("stdout", out), ("stderr", err)):
                    if chunk:
                        box.activity()
                        tail.feed(chunk)
                        if on_output:
                            on_output(name, chunk)

        reader = threading.Thread(target=pump, name="docker-output", daemon=True)
        reader.start()
        container.start()
        status: dict[str, Any] = {}

        def waiter() -> None:
            with contextlib.suppress(Exception):
                status.update(container.wait())

        done = threading.Thread(target=waiter, name="docker-wait", daemon=True)
        done.start()
        try:
            while done.is_alive():
                done.join(0.05)
                if not done.is_alive():
                    break
                if box.expired():
                    # Killing the container ends every process in its PID namespace.
                    with contextlib.suppress(Exception):
                        container.kill()
                    break
        except BaseException:
            with contextlib.suppress(Exception):
                container.kill()
            raise
        done.join(GRACE * 4)
        reader.join(GRACE)
        code = status.get("StatusCode")
        return ExecResult(
            exit_code=int(code) if code is not None else None,
            timed_out=box.timed_out,
            canceled=box.canceled,
            duration=time.monotonic() - started,
            tail=tail.lines(),
        )

    def collect(self, handle: SandboxHandle) -> None:
        return None  # the worktree is bind-mounted: the changes are already there

    def teardown(self, handle: SandboxHandle) -> None:
        if handle.torn_down:
            return
        handle.torn_down = True
        container = handle.data.pop("container", None)
        if container is not None:
            with contextlib.suppress(Exception):
                container.remove(force=True)
