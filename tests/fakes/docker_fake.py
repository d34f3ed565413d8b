"""A stand-in for the ``docker`` SDK with its real names; runs the container's command locally.

No isolation is simulated: the fake checks the adapter's calls and runs its protocol (create,
attach, start, wait, kill, remove). Real containers are tested when an engine is reachable.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
from collections.abc import Iterator
from typing import Any

from tests.fakes.common import CallLog, LocalProcess

log = CallLog()
_ids = itertools.count(1)
live: dict[str, Container] = {}


class Container:
    def __init__(self, image: str, command: list[str], options: dict[str, Any]) -> None:
        self.id = f"{next(_ids):012d}fake"
        self.image = image
        self.command = command
        self.options = options
        self._chunks: queue.Queue[tuple[bytes | None, bytes | None] | None] = queue.Queue()
        self._process: LocalProcess | None = None
        live[self.id] = self

    @log.recorded("Container.attach")
    def attach(self, **kwargs: Any) -> Iterator[tuple[bytes | None, bytes | None]]:
        assert kwargs.get("stream") and kwargs.get("demux"), "the fake models attach(stream=True, demux=True)"

        def chunks() -> Iterator[tuple[bytes | None, bytes | None]]:
            while (item := self._chunks.get()) is not None:
                yield item

        return chunks()

    @log.recorded("Container.start")
    def start(self, **kwargs: Any) -> None:
        self._process = LocalProcess(
            self.command,
            cwd=self.options["working_dir"],
            env=self.options.get("environment") or {},
            on_stdout=lambda chunk: self._chunks.put((chunk, None)),
            on_stderr=lambda chunk: self._chunks.put((None, chunk)),
        )

    @log.recorded("Container.wait")
    def wait(self, **kwargs: Any) -> dict[str, Any]:
        assert self._process is not None
        code = self._process.wait()
        self._chunks.put(None)
        return {"StatusCode": code, "Error": None}

    @log.recorded("Container.kill")
    def kill(self, signal: str | int | None = None) -> None:
        if self._process is not None:
            import os
            import signal as signals

            # a container's kill ends everything in its PID namespace: here, the process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signals.SIGKILL)

    @log.recorded("Container.remove")
    def remove(self, **kwargs: Any) -> None:
        live.pop(self.id, None)


class ContainerCollection:
    @log.recorded("ContainerCollection.create")
    def create(self, image: str, command: Any = None, **kwargs: Any) -> Container:
        return Container(image, list(command or []), kwargs)


class DockerClient:
    def __init__(self, **kwargs: Any) -> None:
        self.containers = ContainerCollection()

    @log.recorded("DockerClient.ping")
    def ping(self) -> bool:
        return True


@log.recorded("from_env")
def from_env(**kwargs: Any) -> DockerClient:
    return DockerClient(**kwargs)
