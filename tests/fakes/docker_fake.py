"""A stand-in for the ``docker`` SDK with its real names: a scripted engine that runs nothing.

Containers, mounts, users, networks and the output race are tested against real engines (Docker, and
Podman through its compatible socket). The fake is for what only a fake can show: every SDK call the
adapter makes, with its parameters (checked against the installed SDK), an engine of any kind
(rootless Podman, rootless Docker) on any machine, and engine failures on demand: a missing image, an
engine that cannot start a container, a ``wait`` that answers without the real status. It also
counts clients and log streams, so a test can see that each one was closed.

A test sets ``engine`` (a fresh ``Engine``) and, per container, ``Engine.next`` (a ``Script``).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
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


class ReadTimeout(Exception):
    """What requests raises when the engine sends no response within the client's timeout."""


@dataclass
class Script:
    """What the next container does: its output frames, exit status and failures."""

    stdout: list[bytes] = field(default_factory=lambda: [b"out\n"])
    stderr: list[bytes] = field(default_factory=list)
    exit_code: int = 0
    wait_status: int | None = None  # what wait() answers, when it is not the exit code (Podman's -1)
    start_error: str | None = None
    create_error: str | None = None
    # Podman's habits with followed logs: ended early (after ``cut_after`` frames), never ended after
    # the container exited (after sending ``stalls_after`` frames), or never answered at all (no
    # headers until the client times out).
    ends_early: set[str] = field(default_factory=set)
    cut_after: int = 0
    never_ends: set[str] = field(default_factory=set)
    stalls_after: int = 0
    never_answers: set[str] = field(default_factory=set)
    skips_first: set[str] = field(default_factory=set)  # a follow that leaves out the first frame


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
        return {"Version": self.version, "ApiVersion": "1.41", "Components": [{"Name": name, "Version": self.version}]}

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


class CancellableStream:
    """A followed log: the scripted frames, then the end (or, if it ``stalls``, nothing until closed)."""

    def __init__(self, frames: list[bytes], stalls: bool) -> None:
        self._frames = iter(frames)
        self._stalls = stalls
        self._closed = threading.Event()
        engine.open_streams += 1

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if not self._closed.is_set():
            with contextlib.suppress(StopIteration):
                return next(self._frames)
            if self._stalls:
                self._closed.wait()
        raise StopIteration

    @log.recorded("CancellableStream.close")
    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
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
            raise errors.ImageNotFound(f"404 Client Error: Not Found (\"No such image: {image}\")")
        return {"Id": f"sha256:{abs(hash(image)):x}", "RepoTags": [image]}

    @log.recorded("APIClient.create_host_config")
    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return {"kwargs": kwargs}

    @log.recorded("APIClient.create_container")
    def create_container(self, image: str, command: Any = None, **kwargs: Any) -> dict[str, Any]:
        eng = _engine()
        script, eng.next = eng.next, Script()
        if image not in eng.images:
            raise errors.ImageNotFound(f"404 Client Error: Not Found (\"No such image: {image}\")")
        if script.create_error:
            raise errors.APIError(script.create_error)
        cid = f"{next(_ids):064x}"
        eng.containers[cid] = Container(cid, image, list(command or []), kwargs, script)
        return {"Id": cid, "Warnings": []}

    @log.recorded("APIClient.start")
    def start(self, container: str) -> None:
        found = self._get(container)
        if found.script.start_error:
            raise errors.APIError(found.script.start_error)
        found.running = True

    @log.recorded("APIClient.logs")
    def logs(self, container: str, **kwargs: Any) -> CancellableStream | bytes:
        found = self._get(container)
        script = found.script
        names = [n for n in ("stdout", "stderr") if kwargs.get(n)]
        frames = [frame for n in names for frame in getattr(script, n)]
        if not kwargs.get("stream"):
            return b"".join(frames)
        if not kwargs.get("follow"):
            return CancellableStream(frames, stalls=False)
        if set(names) & script.never_answers:
            time.sleep(0.05)
            raise ReadTimeout("UnixHTTPConnectionPool(host='localhost', port=None): Read timed out.")
        if set(names) & script.never_ends:
            return CancellableStream(frames[: script.stalls_after], stalls=True)
        if set(names) & script.skips_first:
            return CancellableStream(frames[1:], stalls=False)
        if set(names) & script.ends_early:
            return CancellableStream(frames[: script.cut_after], stalls=False)
        return CancellableStream(frames, stalls=False)

    @log.recorded("APIClient.wait")
    def wait(self, container: str) -> dict[str, Any]:
        found = self._get(container)
        found.running, found.exited = False, True
        status = found.script.exit_code if found.script.wait_status is None else found.script.wait_status
        return {"StatusCode": status, "Error": None}

    @log.recorded("APIClient.inspect_container")
    def inspect_container(self, container: str) -> dict[str, Any]:
        found = self._get(container)
        return {"Id": found.id, "State": {"Running": found.running, "ExitCode": found.script.exit_code}}

    @log.recorded("APIClient.kill")
    def kill(self, container: str) -> None:
        found = self._get(container)
        found.running, found.exited = False, True

    @log.recorded("APIClient.remove_container")
    def remove_container(self, container: str, **kwargs: Any) -> None:
        self._get(container).removed = True


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
