"""A stand-in for the ``docker`` SDK with its real names: a scripted engine that runs nothing.

Containers, mounts, users, networks and the output race are tested against real engines (Docker, and
Podman through its compatible socket). The fake is for what only a fake can show: every SDK call the
adapter makes, with its parameters (checked against the installed SDK), an engine of any kind
(rootless Podman, rootless Docker) on any machine, and engine failures on demand: a missing image, an
engine that cannot start a container, an output stream that breaks or never ends, a ``wait`` that
answers without the real status. It also counts clients and attachments, so a test can see that each
one was closed.

Output behaves as the engines' does where it matters: it exists from the container's start, and an
attachment made after the start never gets what came before it (the race that lost lanes' output).

A test sets ``engine`` (a fresh ``Engine``) and, per container, ``Engine.next`` (a ``Script``).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.common import CallLog

log = CallLog()
_ids = itertools.count(1)


class errors:  # the SDK's module of that name
    class DockerException(Exception):
        pass

    class APIError(DockerException):
        pass

    class NotFound(APIError):
        pass

    class ImageNotFound(NotFound):
        pass


@dataclass
class Script:
    """What the next container does: its output, exit status and failures."""

    stdout: list[bytes] = field(default_factory=lambda: [b"out\n"])
    stderr: list[bytes] = field(default_factory=list)
    exit_code: int = 0
    wait_status: int | None = None  # what wait() answers, when it is not the exit code (Podman's -1)
    start_error: str | None = None
    create_error: str | None = None
    attach_error: str | None = None
    # The attachment's connection: cut (after this many bytes of frames), reset (an error after them),
    # or never closed by the engine after the last frame.
    cut_after: int | None = None
    reset_after: int | None = None
    never_ends: bool = False

    def frames(self) -> bytes:
        """The output as the engine sends it on an attachment: stdout and stderr frames in turn."""
        out = bytearray()
        for n in range(max(len(self.stdout), len(self.stderr))):
            for kind, frames in ((1, self.stdout), (2, self.stderr)):
                if n < len(frames):
                    out += bytes([kind, 0, 0, 0]) + len(frames[n]).to_bytes(4, "big") + frames[n]
        return bytes(out)


@dataclass
class Container:
    id: str
    image: str
    command: list[str]
    config: dict[str, Any]
    script: Script
    running: bool = False
    exited: bool = False
    removed: bool = False
    attached_late: bool = False  # attached after the start: what the start sent is gone
    changed: threading.Condition = field(default_factory=threading.Condition)

    def set_state(self, running: bool, exited: bool) -> None:
        with self.changed:
            self.running, self.exited = running, exited
            self.changed.notify_all()


@dataclass
class Engine:
    product: str = "Docker"
    version: str = "27.0.0"
    rootless: bool = False
    images: set[str] = field(default_factory=lambda: {"debian:bookworm-slim"})
    reachable: bool = True
    next: Script = field(default_factory=Script)
    containers: dict[str, Container] = field(default_factory=dict)
    open_clients: int = 0
    open_streams: int = 0

    def version_json(self) -> dict[str, Any]:
        name = "Podman Engine" if self.product == "Podman" else "Engine"
        return {
            "Version": self.version,
            "ApiVersion": "1.41",
            "Components": [{"Name": name, "Version": self.version}],
        }

    def info_json(self) -> dict[str, Any]:
        info: dict[str, Any] = {"SecurityOptions": ["name=seccomp,profile=default"]}
        if self.product == "Podman":
            info["Rootless"] = self.rootless
        elif self.rootless:
            info["SecurityOptions"].append("name=rootless")
        return info


engine = Engine()


def _engine() -> Engine:
    if not engine.reachable:
        raise errors.DockerException("Error while fetching server API version: connection refused")
    return engine


class Connection:
    """The raw connection of an attachment, as ``attach_socket`` returns it (a ``socket.SocketIO``
    over the socket, with the HTTP response it came from): the frames made from the container's
    start on, then the engine's close, or what the script says instead."""

    def __init__(self, container: Container) -> None:
        self._container = container
        self._sent = 0
        self._open = True
        self._shut = False
        self.timeout: float | None = 60.0
        self._sock = self
        self._response = self
        engine.open_streams += 1

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def recv(self, size: int) -> bytes:
        container, script = self._container, self._container.script
        with container.changed:
            # nothing before the start; an attachment made after it missed what the start sent
            while not self._shut and not container.running and not container.exited:
                container.changed.wait()
            if self._shut:
                return b""
            frames = script.frames()
            if self._sent == 0 and container.attached_late:
                return b""
            stop = len(frames)
            if script.cut_after is not None:
                stop = min(stop, script.cut_after)
            if script.reset_after is not None and self._sent >= script.reset_after:
                raise ConnectionResetError(104, "Connection reset by peer")
            if script.reset_after is not None:
                stop = min(stop, script.reset_after)
            if self._sent >= stop:
                while script.never_ends and not self._shut:
                    container.changed.wait()
                return b""
            chunk = frames[self._sent : min(stop, self._sent + size)]
            self._sent += len(chunk)
            return chunk

    def shutdown(self, how: int) -> None:
        with self._container.changed:
            self._shut = True
            self._container.changed.notify_all()

    def close(self) -> None:
        self.shutdown(0)
        if self._open:
            self._open = False
            engine.open_streams -= 1


class APIClient:
    api_version = "1.41"

    def _get(self, cid: str) -> Container:
        found = _engine().containers.get(cid)
        if found is None or found.removed:
            raise errors.NotFound(f"404 Client Error: No such container: {cid}")
        return found

    @log.recorded("APIClient.inspect_image")
    def inspect_image(self, image: str) -> dict[str, Any]:
        if image not in _engine().images:
            raise errors.ImageNotFound(f'404 Client Error: Not Found ("No such image: {image}")')
        return {"Id": f"sha256:{abs(hash(image)):x}", "RepoTags": [image]}

    @log.recorded("APIClient.create_host_config")
    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return {"kwargs": kwargs}

    @log.recorded("APIClient.create_container")
    def create_container(self, image: str, command: Any = None, **kwargs: Any) -> dict[str, Any]:
        eng = _engine()
        script, eng.next = eng.next, Script()
        if image not in eng.images:
            raise errors.ImageNotFound(f'404 Client Error: Not Found ("No such image: {image}")')
        if script.create_error:
            raise errors.APIError(script.create_error)
        cid = f"{next(_ids):064x}"
        eng.containers[cid] = Container(cid, image, list(command or []), kwargs, script)
        return {"Id": cid, "Warnings": []}

    @log.recorded("APIClient.attach_socket")
    def attach_socket(
        self, container: str, params: dict[str, Any] | None = None, ws: bool = False
    ) -> Connection:
        found = self._get(container)
        if found.script.attach_error:
            raise errors.APIError(found.script.attach_error)
        if found.running or found.exited:
            found.attached_late = True
        return Connection(found)

    @log.recorded("APIClient.start")
    def start(self, container: str) -> None:
        found = self._get(container)
        if found.script.start_error:
            raise errors.APIError(found.script.start_error)
        found.set_state(running=True, exited=False)

    @log.recorded("APIClient.wait")
    def wait(self, container: str) -> dict[str, Any]:
        found = self._get(container)
        found.set_state(running=False, exited=True)
        status = found.script.exit_code if found.script.wait_status is None else found.script.wait_status
        return {"StatusCode": status, "Error": None}

    @log.recorded("APIClient.inspect_container")
    def inspect_container(self, container: str) -> dict[str, Any]:
        found = self._get(container)
        return {"Id": found.id, "State": {"Running": found.running, "ExitCode": found.script.exit_code}}

    @log.recorded("APIClient.kill")
    def kill(self, container: str) -> None:
        self._get(container).set_state(running=False, exited=True)

    @log.recorded("APIClient.remove_container")
    def remove_container(self, container: str, **kwargs: Any) -> None:
        found = self._get(container)
        found.removed = True
        found.set_state(running=False, exited=True)


class DockerClient:
    def __init__(self) -> None:
        self.api = APIClient()
        self._closed = False
        _engine().open_clients += 1

    @log.recorded("DockerClient.version")
    def version(self, api_version: bool = True) -> dict[str, Any]:
        return _engine().version_json()

    @log.recorded("DockerClient.info")
    def info(self) -> dict[str, Any]:
        return _engine().info_json()

    @log.recorded("DockerClient.close")
    def close(self) -> None:
        if not self._closed:
            self._closed = True
            engine.open_clients -= 1


@log.recorded("from_env")
def from_env(**kwargs: Any) -> DockerClient:
    return DockerClient()


def reset(**kwargs: Any) -> Engine:
    """A fresh engine (and call log) for a test."""
    global engine
    engine = Engine(**kwargs)
    log.calls.clear()
    return engine
