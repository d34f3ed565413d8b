"""``docker``: lanes in a local container (``pip install 'git-spine[docker]'`` and a Docker or Podman engine).

The lane worktree is bind-mounted read-write at its own path (so its ``.git`` file still resolves),
the repository's git directory read-only, spine's state hidden behind an empty tmpfs, the image's
own files read-only. The container has no network unless the lane allows it, no capabilities,
``no-new-privileges``, runs as your uid:gid (files it writes are yours), and gets only the variables
the lane declares; ``HOME`` and ``TMPDIR`` are a private tmpfs at /tmp that allows executing what is
put there. A timeout or cancel kills the container, and with it every process in it; the container
is removed when the command ends. The image is the ``image`` setting; it must already be in the
engine, which ``unavailable_reason`` checks, so a missing image stops a run before anything exists.

Output is never attached (attaching before the start races it and loses output): each stream's log
is followed once the container started, and read once more when it ended (see ``_FollowedLog``).
Podman is spoken to through its Docker-compatible socket (``podman system service``): tmpfs mounts
get ``notmpcopyup``, rootless Podman ``userns=keep-id``, lanes with network ``slirp4netns``.
See docs/backends.md and docs/adr/0066-docker-backend-on-real-engines.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
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
# How long the followed logs may take to end after the container did, before the rest is read whole.
FOLLOW_GRACE = 1.0
# How long a followed log may take to send its first byte before it is asked for again.
FOLLOW_TIMEOUT = 10
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
            # Read back after the start; json-file (k8s-file on Podman) keeps all of it until removal.
            "log_config": {"type": "json-file", "config": {}},
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
        # Log streams get a client of their own with a short wait for the first byte: Podman answers a
        # followed log only once there is a line to send, and a stream that waits is asked again.
        logs_client = self.connect(engine.api_version, timeout=FOLLOW_TIMEOUT)
        api = client.api
        cid: str | None = None
        try:
            cid = self._create(api, data, list(argv), inside)
            data["containers"].append(cid)
            handle.provider_run_id = cid[:12]
            self._engine_call("start the container", lambda: api.start(cid))
            code = self._run(api, logs_client.api, cid, box, tail, on_output)
        finally:
            if cid is not None:
                with contextlib.suppress(Exception):
                    api.remove_container(cid, force=True)
                    data["containers"].remove(cid)
            client.close()
            logs_client.close()
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
        self, api: Any, logs_api: Any, cid: str, box: Timebox, tail: OutputTail, on_output: OutputSink | None
    ) -> int | None:
        """Follow the started container's output and wait for it, within the timebox; its exit code."""
        status: dict[str, Any] = {}

        def wait() -> None:
            with contextlib.suppress(Exception):
                status.update(api.wait(cid))

        # Whole lines only, per stream: Podman's log also holds the pieces of a line written in parts
        # (a program's name, then its message), and a piece of stderr must not end up in the middle
        # of a line of stdout.
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

        streams = [_FollowedLog(logs_api, cid, name, deliver) for name in ("stdout", "stderr")]
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
            deadline = time.monotonic() + FOLLOW_GRACE
            for stream in streams:
                stream.finish(api, deadline)
            for name, held in pending.items():
                if held:  # the last line, without its newline
                    emit(name, bytes(held))
        code = status.get("StatusCode")
        if code is None or int(code) < 0:
            # wait() failed, or answered without the real status (seen on Podman): ask the container.
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


class _FollowedLog:
    """One output stream of a started container: followed live, then made complete from the log.

    A followed log replays the output from the start, so following it after the start loses nothing
    there. But the follow is not the record: Podman's ends early now and then when the container
    exits under load (the last lines, or all but the first, never come), sometimes never ends at
    all, and sends nothing, not even response headers, until the stream has a line (a follow that
    waits longer than its client's timeout is asked again). So once the container has ended,
    ``finish`` stops the follow and reads the stream's log once more, without following, delivering
    what the follow did not. Docker's follow is complete; the second read then delivers nothing.
    """

    def __init__(self, api: Any, cid: str, name: str, deliver: Callable[[str, bytes], None]) -> None:
        self.api, self.cid, self.name = api, cid, name
        self._deliver = deliver
        self._lock = threading.Lock()
        self._delivered = 0
        self._digest = hashlib.sha1(usedforsecurity=False)
        self._stream: Any = None
        self._over = threading.Event()  # the container ended: stop asking
        self._stopped = False  # finish() took over: deliver nothing more
        self.gap = False  # what the follow delivered is not how the whole log begins
        self._thread = threading.Thread(target=self._follow, name=f"docker-{name}", daemon=True)
        self._thread.start()

    def _select(self) -> dict[str, bool]:
        return {"stdout": self.name == "stdout", "stderr": self.name == "stderr"}

    def _follow(self) -> None:
        while True:
            try:
                stream = self.api.logs(self.cid, stream=True, follow=True, **self._select())
            except Exception:
                if self._over.wait(0.1):
                    return  # never answered: finish() reads the log
                continue  # nothing was delivered yet (no headers, no frames): ask again
            with self._lock:
                if self._stopped:
                    stream.close()
                    return
                self._stream = stream
            try:
                for chunk in stream:
                    with self._lock:
                        if self._stopped:
                            return
                        self._delivered += len(chunk)
                        self._digest.update(chunk)
                        self._deliver(self.name, chunk)
            except Exception:
                pass  # closed by finish(), or broken: finish() reads what is missing
            finally:
                stream.close()
            return

    def finish(self, api: Any, deadline: float) -> None:
        """Give the follow until ``deadline`` to end; then deliver what the log holds beyond it."""
        self._over.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._stopped = True
            stream, delivered, seen = self._stream, self._delivered, self._digest.digest()
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()  # a follow that never ended
        self._thread.join(0.5)
        if self._deliver_rest(api, delivered, seen):
            # Never seen so far; if it happens, the lane log says so and gets the stream in full.
            self.gap = True
            self._deliver(
                self.name,
                f"\n[spine: the engine's live log of {self.name} skipped output; all of it follows]\n".encode(),
            )
            self._deliver_rest(api, 0, None)

    def _deliver_rest(self, api: Any, delivered: int, seen: bytes | None) -> bool:
        """Read the stream's whole log and deliver it past ``delivered`` bytes; True if those differ from ``seen``."""
        try:
            whole = api.logs(self.cid, stream=True, follow=False, **self._select())
        except Exception:
            return False
        try:
            prefix, offset = hashlib.sha1(usedforsecurity=False), 0
            for frame in whole:
                if offset < delivered:
                    part = frame[: delivered - offset]
                    prefix.update(part)
                    offset += len(part)
                    frame = frame[len(part) :]
                    if offset == delivered and prefix.digest() != seen:
                        return True
                if frame:
                    offset += len(frame)
                    self._deliver(self.name, frame)
            return offset < delivered  # the log is shorter than what was followed
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                whole.close()
