"""``docker``: lanes in a local container (``pip install 'git-spine[docker]'`` and a Docker or Podman engine).

The lane worktree is bind-mounted read-write at its own path (so its ``.git`` file still resolves),
the repository's git directory read-only, spine's state hidden behind an empty tmpfs, the image's
own files read-only. The container has no network unless the lane allows it, no capabilities,
``no-new-privileges``, runs as your uid:gid (files it writes are yours), and gets only the variables
the lane declares; ``HOME`` and ``TMPDIR`` are a private tmpfs at /tmp that allows executing what is
put there. A timeout or cancel kills the container, and with it every process in it; the container
is removed when the command ends. The image is the ``image`` setting; it must already be in the
engine, which ``unavailable_reason`` checks, so a missing image stops a run before anything exists.

Output is attached to before the container starts, so none of it can be missed, and read until the
engine ends the stream after the last of it (see ``_Attachment``); the container's log is never read.
Podman is spoken to through its Docker-compatible socket (``podman system service``): tmpfs mounts
get ``notmpcopyup``, rootless Podman ``userns=keep-id``, lanes with network ``slirp4netns``.
See docs/backends.md and docs/adr/0066-docker-backend-on-real-engines.md.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from spine.backends.base import BASE_ENV, ExecResult, SandboxHandle, SandboxSpec, declared_env
from spine.base.errors import EnvironmentProblem
from spine.base.process import OutputSink, OutputTail, Timebox

DEFAULT_IMAGE = "debian:bookworm-slim"
DEFAULT_SOCKET = "/var/run/docker.sock"
# HOME and TMPDIR: an empty tmpfs that allows executing what the command puts there (a script, a venv).
SCRATCH = "/tmp"
GRACE = 3.0
# How long the engine may take to end the container's output stream after the container ended.
OUTPUT_GRACE = 10.0
# Output is passed on a line at a time, or in pieces of this size when a line is longer.
LINE_LIMIT = 65536
IMAGES_DOC = "docs/backends.md, docker backend, Images"

# What the engine says when it cannot start a container for reasons of its own set-up, and how to fix it.
ENGINE_HINTS = (
    (
        "error setting rlimit",
        "the engine cannot apply its default resource limits here (it lacks CAP_SYS_RESOURCE): "
        "set default_ulimits in its containers.conf (docs/backends.md, 'Podman')",
    ),
    (
        "container-init binary not found",
        "the engine has no init binary: install catatonit, or set init_path in containers.conf",
    ),
)


# A client needs an API version before it can ask the engine for one; this one is never sent.
PROBE_API_VERSION = "1.24"


@dataclass(frozen=True)
class Engine:
    """The engine behind the socket, as far as the backend needs to know it."""

    product: str  # "Docker" or "Podman"
    version: str
    api_version: str
    rootless: bool

    @property
    def podman(self) -> bool:
        return self.product == "Podman"

    def describe(self) -> str:
        return f"{'rootless ' if self.rootless else ''}{self.product} {self.version}"


# What answers at each address, once per process: {(SDK module id, address): Engine}.
ENGINES: dict[tuple[int, str], Engine] = {}
_ENGINES_LOCK = threading.Lock()


class DockerSandbox:
    """A local Docker or Podman container: worktree bind-mounted, no network by default, killed on timeout."""

    name = "docker"
    in_place = False

    def __init__(self, settings: Mapping[str, Any] | None = None, *, sdk: ModuleType | None = None) -> None:
        self.settings = dict(settings or {})
        self._sdk = sdk

    # --- the engine ---------------------------------------------------------------------------------

    def sdk(self) -> ModuleType:
        if self._sdk is None:
            self._sdk = importlib.import_module("docker")
        return self._sdk

    @property
    def image(self) -> str:
        return str(self.settings.get("image", DEFAULT_IMAGE))

    def host(self) -> str | None:
        """The engine's address: the ``host`` setting, else ``DOCKER_HOST``; None for the default socket."""
        return str(self.settings.get("host") or "") or os.environ.get("DOCKER_HOST") or None

    def where(self) -> str:
        return self.host() or f"unix://{DEFAULT_SOCKET}"

    def connect(self, version: str | None = None, timeout: int | None = None) -> Any:
        """A new client; the caller closes it. ``version`` skips asking the engine for its API version."""
        environment = dict(os.environ)
        host = self.host()
        if host:
            environment["DOCKER_HOST"] = host
        return self.sdk().from_env(
            version=version,
            timeout=timeout or int(self.settings.get("api_timeout", 60)),
            environment=environment,
        )

    def engine(self) -> Engine:
        """What answers at the engine's address; asked once per process, raises when nothing does.

        Podman answers ``/version`` and ``/info`` slowly (a third of a second each: it asks its
        runtime and conmon for their versions), and a run builds its backend more than once.
        """
        key = (id(self.sdk()), self.where())
        with _ENGINES_LOCK:
            found = ENGINES.get(key)
        if found is not None:
            return found
        # The API version comes from the unversioned /version; no client asks for it by itself.
        client = self.connect(PROBE_API_VERSION)
        try:
            version = client.version(api_version=False)
        finally:
            client.close()
        api_version = str(version.get("ApiVersion") or PROBE_API_VERSION)
        client = self.connect(api_version)
        try:
            info = client.info()
        finally:
            client.close()
        names = [str(c.get("Name", "")) for c in version.get("Components") or []]
        options = [str(o) for o in info.get("SecurityOptions") or []]
        found = Engine(
            product="Podman" if any("podman" in n.lower() for n in names) else "Docker",
            version=str(version.get("Version", "?")),
            api_version=api_version,
            rootless=bool(info.get("Rootless")) or any("name=rootless" in o for o in options),
        )
        with _ENGINES_LOCK:
            ENGINES[key] = found
        return found

    def unavailable_reason(self) -> str | None:
        if self._sdk is None and importlib.util.find_spec("docker") is None:
            return "the docker SDK is not installed: pip install 'git-spine[docker]'"
        if self.host() is None and not os.path.exists(DEFAULT_SOCKET):
            return (
                f"no container engine reachable: {DEFAULT_SOCKET} does not exist and DOCKER_HOST is not set; "
                "start Docker, or point DOCKER_HOST (or backends.docker.host) at an engine's socket"
            )
        try:
            engine = self.engine()
        except Exception as exc:  # the SDK raises several kinds when no engine answers
            return (
                f"no container engine answers at {self.where()} ({type(exc).__name__}: {str(exc)[:160]}); "
                "start Docker (or `podman system service`), or point DOCKER_HOST at a running engine"
            )
        return self._missing_image(engine)

    def _missing_image(self, engine: Engine) -> str | None:
        client = self.connect(engine.api_version)
        try:
            client.api.inspect_image(self.image)
        except self.sdk().errors.NotFound:  # ImageNotFound, or a 404 worded otherwise (Podman)
            pull = "podman pull" if engine.podman else "docker pull"
            return (
                f"image {self.image!r} is not in the {engine.describe()} engine at {self.where()}: "
                f"`{pull} {self.image}`, build one offline ({IMAGES_DOC}), "
                "or name another with backends.docker.image in .spine.yaml"
            )
        except Exception as exc:
            return f"cannot look up image {self.image!r} at {self.where()} ({type(exc).__name__}: {str(exc)[:160]})"
        finally:
            client.close()
        return None

    # --- the port -----------------------------------------------------------------------------------

    def prepare(self, spec: SandboxSpec) -> SandboxHandle:
        try:
            engine = self.engine()
        except Exception as exc:
            raise EnvironmentProblem(
                f"docker: no container engine answers at {self.where()}: {exc}",
                "start the engine, or point DOCKER_HOST at it",
            ) from exc
        handle = SandboxHandle(backend=self.name, worktree=spec.worktree)
        handle.data.update(spec=spec, engine=engine, containers=[], **self._container_options(spec, engine))
        return handle

    def _container_options(self, spec: SandboxSpec, engine: Engine) -> dict[str, Any]:
        """What every container of the lane is created with (apart from its command and environment)."""
        worktree = str(spec.worktree.resolve())
        binds: dict[str, dict[str, str]] = {worktree: {"bind": worktree, "mode": "rw"}}
        # Podman fills a tmpfs with what lies below it unless told not to: that would show what it hides.
        extra = ",notmpcopyup" if engine.podman else ""
        tmpfs = {SCRATCH: f"rw,exec,nosuid,nodev,mode=1777{extra}"}
        if spec.git_dir is not None:
            git_dir = str(spec.git_dir.resolve())
            binds[git_dir] = {"bind": git_dir, "mode": "ro"}
            if spec.state_dir is not None and spec.state_dir.is_dir():
                # Other lanes' worktrees, logs and runs: the lane's own worktree is mounted on top.
                tmpfs[str(spec.state_dir.resolve())] = f"rw,noexec,nosuid,nodev,mode=755{extra}"
        network = "none"
        if spec.network:
            network = str(self.settings.get("network_mode") or ("slirp4netns" if engine.podman else "bridge"))
        # Rootless Docker maps the container's root to you, and no other uid; elsewhere you are you.
        user = "0:0" if engine.rootless and not engine.podman else f"{os.getuid()}:{os.getgid()}"
        host = {
            "binds": binds,
            "tmpfs": tmpfs,
            "network_mode": network,
            "read_only": True,  # the image's files are not the lane's to change, even as root
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "init": True,
            # The output reaches spine through the attachment; the engine keeps no copy of it (and
            # whatever log driver it is configured with, which may be slow or remote, is not used).
            "log_config": {"type": "none", "config": {}},
        }
        return {
            "image": self.image,
            "user": user,
            "working_dir": worktree,
            "labels": {"spine.run": spec.run_id, "spine.lane": spec.lane_id},
            "host": host,
            # The Docker SDK accepts only "host" here; Podman's compatible API takes keep-id as well.
            "userns": "keep-id" if engine.podman and engine.rootless else None,
        }

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
        data = handle.data
        engine: Engine = data["engine"]
        inside = declared_env(env, data["spec"], keep=tuple(k for k in BASE_ENV if k != "PATH"))
        inside.update({"HOME": SCRATCH, "TMPDIR": SCRATCH})
        started = time.monotonic()
        box = Timebox(timeout, idle_timeout, cancel, started)
        tail = OutputTail()
        client = self.connect(engine.api_version)
        # The attachment holds its connection for the container's whole life: a client of its own.
        attach_client = self.connect(engine.api_version)
        api = client.api
        cid: str | None = None
        output: _Attachment | None = None
        try:
            cid = self._create(api, data, list(argv), inside)
            data["containers"].append(cid)
            handle.provider_run_id = cid[:12]
            output = self._engine_call("attach to the container", lambda: _Attachment(attach_client.api, cid))
            self._engine_call("start the container", lambda: api.start(cid))
            code = self._run(api, cid, output, box, tail, on_output)
        finally:
            if output is not None:
                output.close()
            if cid is not None:
                with contextlib.suppress(Exception):
                    api.remove_container(cid, force=True)
                    data["containers"].remove(cid)
            client.close()
            attach_client.close()
        return ExecResult(
            exit_code=code,
            timed_out=box.timed_out,
            canceled=box.canceled,
            duration=time.monotonic() - started,
            tail=tail.lines(),
        )

    def _create(self, api: Any, data: dict[str, Any], command: list[str], environment: dict[str, str]) -> str:
        host_config = api.create_host_config(**data["host"])
        if data["userns"]:
            host_config["UsernsMode"] = data["userns"]
        try:
            created = api.create_container(
                data["image"],
                command=command,
                entrypoint=[""],  # the command runs as given, whatever the image's ENTRYPOINT says
                environment=environment,
                user=data["user"],
                working_dir=data["working_dir"],
                labels=data["labels"],
                host_config=host_config,
                use_config_proxy=False,  # no proxy variables from ~/.docker/config.json leak in
            )
        except self.sdk().errors.NotFound as exc:
            raise EnvironmentProblem(
                f"docker: image {data['image']!r} is not in the engine at {self.where()}: "
                f"pull it or build one offline ({IMAGES_DOC})",
                f"pull it or build one offline ({IMAGES_DOC})",
            ) from exc
        except Exception as exc:
            raise self._problem("create the container", exc) from exc
        return str(created["Id"])

    def _engine_call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:
            raise self._problem(what, exc) from exc

    def _problem(self, what: str, exc: Exception) -> EnvironmentProblem:
        """The engine's error, and the fix when it is a known one: in the message too, because a
        lane records only the message of the error that stopped its step."""
        text = str(exc)
        hint = next((fix for needle, fix in ENGINE_HINTS if needle in text), None)
        message = f"docker: cannot {what} at {self.where()}: {text[:400]}"
        return EnvironmentProblem(f"{message}; {hint}" if hint else message, hint)

    def _run(
        self,
        api: Any,
        cid: str,
        output: _Attachment,
        box: Timebox,
        tail: OutputTail,
        on_output: OutputSink | None,
    ) -> int | None:
        """Pass on the started container's output and wait for it, within the timebox; its exit code."""
        status: dict[str, Any] = {}

        def wait() -> None:
            with contextlib.suppress(Exception):
                status.update(api.wait(cid))

        # Whole lines only, per stream: the engine passes output on as the command wrote it, and a
        # piece of a line on stderr (a program's name, then its message) must not end up in the
        # middle of a line of stdout in the tail, nor on its own line.
        pending = {"stdout": bytearray(), "stderr": bytearray()}

        def emit(name: str, data: bytes) -> None:
            tail.feed(data if data.endswith(b"\n") else data + b"\n")
            if on_output:
                on_output(name, data)

        def deliver(name: str, chunk: bytes) -> None:
            box.activity()
            held = pending[name]
            held += chunk
            end = held.rfind(b"\n") + 1 if len(held) <= LINE_LIMIT else len(held)
            if end:
                lines = bytes(held[:end])
                del held[:end]
                emit(name, lines)

        reader = threading.Thread(target=output.read, args=(deliver,), name="docker-output", daemon=True)
        reader.start()
        waiter = threading.Thread(target=wait, name="docker-wait", daemon=True)
        waiter.start()
        try:
            while waiter.is_alive():
                waiter.join(0.05)
                if waiter.is_alive() and box.expired():
                    # Killing the container ends every process in its PID namespace.
                    with contextlib.suppress(Exception):
                        api.kill(cid)
                    break
        except BaseException:
            with contextlib.suppress(Exception):
                api.kill(cid)
            raise
        finally:
            waiter.join(GRACE * 4)
            # The engine ends the attachment once it has passed on the last of the output, as the
            # container ends; it is stopped only if that does not come.
            reader.join(OUTPUT_GRACE)
            output.stop()
            reader.join(GRACE)
            for name, held in pending.items():
                if held:  # the last line, without its newline
                    emit(name, bytes(held))
            problem = output.problem()
            if problem:
                emit("stderr", f"[spine: {problem}; output may be missing]\n".encode())
        code = status.get("StatusCode")
        if code is None or int(code) < 0:
            # wait() failed, or answered without the real status: ask the container.
            with contextlib.suppress(Exception):
                state = api.inspect_container(cid)["State"]
                if not state.get("Running"):
                    code = state.get("ExitCode")
        return int(code) if code is not None and int(code) >= 0 else None

    def collect(self, handle: SandboxHandle) -> None:
        return None  # the worktree is bind-mounted: the changes are already there

    def teardown(self, handle: SandboxHandle) -> None:
        if handle.torn_down:
            return
        handle.torn_down = True
        left = list(handle.data.get("containers") or [])
        if not left:
            return
        engine: Engine = handle.data["engine"]
        with contextlib.suppress(Exception):
            client = self.connect(engine.api_version)
            try:
                for cid in left:
                    with contextlib.suppress(Exception):
                        client.api.remove_container(cid, force=True)
            finally:
                client.close()
        handle.data["containers"] = []


class _Attachment:
    """The container's output streams, attached to before it starts.

    The engine registers an attachment before it answers the request for it (Docker adds it to the
    container's output; Podman connects it to conmon, which reads the command's pipes), and the
    container has not started yet, so every byte the command writes arrives here, in order, in
    frames of an 8-byte header (stream, length) and the bytes. The engine closes the connection after
    the last of it, as the container ends: a close at a frame boundary is the whole output, anything
    else (a cut frame, a connection error, no close in time) is reported by ``problem``.

    The frames are read here rather than through the SDK's stream, which ends quietly on a connection
    error (and so cannot tell a cut stream from a complete one).
    """

    def __init__(self, api: Any, cid: str) -> None:
        params = {"stdout": 1, "stderr": 1, "stream": 1, "logs": 0}
        self._io = api.attach_socket(cid, params=params)  # returns once the engine answered
        self._response = getattr(self._io, "_response", None)
        self._sock = getattr(self._io, "_sock", self._io)
        # The client's timeout is for answers; a command may be silent for as long as it likes.
        self._sock.settimeout(None)
        self._stopped = False
        self._closed = False
        self._complete = False
        self._error: str | None = None

    def read(self, deliver: Callable[[str, bytes], None]) -> None:
        """Deliver each frame to ``deliver(stream name, bytes)`` until the engine closes the connection."""
        try:
            while True:
                header = self._exactly(8)
                if header is None:
                    self._complete = not self._stopped  # the engine's close, not ours
                    return
                kind, length = header[0], int.from_bytes(header[4:], "big")
                body = self._exactly(length) if length else b""
                if body is None:
                    raise ConnectionError(f"the engine ended the output in a frame of {length} bytes")
                if kind in (1, 2) and body:
                    deliver("stdout" if kind == 1 else "stderr", body)
        except Exception as exc:
            if not self._stopped:
                self._error = f"{type(exc).__name__}: {str(exc)[:200]}"

    def _exactly(self, size: int) -> bytes | None:
        """``size`` bytes; None at a clean end before the first of them."""
        data = bytearray()
        while len(data) < size:
            chunk = self._sock.recv(size - len(data))
            if not chunk:
                if not data:
                    return None
                raise ConnectionError(
                    f"the engine ended the output {len(data)} bytes into a {size}-byte read"
                )
            data += chunk
        return bytes(data)

    def problem(self) -> str | None:
        """Why the output may not be whole, or None when the engine ended it after the last frame."""
        if self._complete:
            return None
        if self._error:
            return f"the container's output stream broke ({self._error})"
        return "the engine did not end the container's output stream when the container ended"

    def stop(self) -> None:
        """End the connection: a read in progress returns, and no more is read."""
        self._stopped = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Release the connection (after ``stop`` and the reader's end: a socket closed under a
        reading thread may be reused by another before that thread's read runs)."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        with contextlib.suppress(Exception):
            self._io.close()
        if self._response is not None:
            with contextlib.suppress(Exception):
                self._response.close()
        with contextlib.suppress(OSError):
            self._sock.close()
