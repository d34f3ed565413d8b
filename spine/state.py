"""Run state on disk: run.json (the loop's truth) and events.jsonl (an append-only journal).

Both live under ``<git-common-dir>/spine/runs/<run-id>/``. run.json is written atomically (temp file,
fsync, ``os.replace``); events are appended one JSON line at a time (flushed, not fsynced).
"""

import contextlib
import functools
import json
import os
import socket
import threading
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from spine.config import CheckSpec
from spine.errors import UsageError
from spine.result import LaneStatus

if TYPE_CHECKING:
    from spine.operators import OpBinding

LANE_BASE_PREFIX = "lane:"
"""A lane base of the form ``lane:ID`` starts the lane from lane ID's result (stacked lanes)."""

STEPS: tuple[str, ...] = ("create_worktree", "setup", "execute", "commit", "validate", "finalize")


def now_iso() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new content, never a mix.

    The temporary file is named after the process and thread, not drawn by ``mkstemp``: only this
    thread of this process writes it, so a fixed name cannot collide, and it spares ``mkstemp``'s
    name search (a drive loop writes run.json a few hundred times). A writer killed mid-way leaves
    at most one such file per thread, which the next writer with that name overwrites. The data is
    fsynced before the rename: without it a power cut may leave an empty file behind the new name.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_native_id()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            data = text.encode("utf-8")
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class LaneSpec(_Camel):
    """What a lane was asked to do; fixed once the run is created."""

    id: str
    objective: str
    command: list[str] | str = Field(description="argv list, or a string run by the shell")
    base: str | None = None
    backend: str | None = None
    timeout: float | None = None
    idle_timeout: float | None = None
    stall_timeout: float | None = None
    env: dict[str, str] = Field(default_factory=dict)
    env_passthrough: list[str] = Field(default_factory=list)
    network: bool | None = None
    checks: list[CheckSpec] = Field(default_factory=list)
    artifacts: list[str] = Field(default_factory=list)
    needs: list[str] = Field(default_factory=list)
    commit_in_place: bool = False
    keep_worktree: bool = Field(
        default=False, description="keep the worktree where it ran even when the pool would take it back"
    )
    op: dict[str, Any] | None = Field(
        default=None,
        description="the operator and mode the lane runs under (see docs/operators.md): an OpBinding as data",
    )

    @functools.cached_property
    def binding(self) -> "OpBinding | None":
        """``op`` as an OpBinding, validated on first use, so that plain lanes never build the operator models."""
        if self.op is None:
            return None
        from spine.operators import OpBinding

        return OpBinding.model_validate(self.op)

    @property
    def stacked_on(self) -> str | None:
        """The lane whose result this lane starts from (``base: lane:ID``), if any."""
        if self.base and self.base.startswith(LANE_BASE_PREFIX):
            return self.base.removeprefix(LANE_BASE_PREFIX)
        return None

    def argv(self) -> list[str]:
        if isinstance(self.command, str):
            return ["/bin/sh", "-c", self.command]
        return list(self.command)


class LaneState(_Camel):
    """A lane's progress through the steps, and the facts each finished step recorded."""

    spec: LaneSpec
    status: LaneStatus = LaneStatus.PLANNED
    steps_done: list[str] = Field(default_factory=list)
    current_step: str | None = None
    step_started_at: str | None = None
    backend: str
    base_ref: str
    base_sha: str
    branch: str | None = None
    worktree: str | None = None
    pgid: int | None = None
    facts: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None

    @property
    def next_step(self) -> str | None:
        for step in STEPS:
            if step not in self.steps_done:
                return step
        return None

    @property
    def complete(self) -> bool:
        return "finalize" in self.steps_done


class DriverInfo(_Camel):
    pid: int
    host: str
    started_at: str


class RunState(_Camel):
    """run.json: everything the drive loop needs to continue a run."""

    schema_version: int = 1
    run_id: str
    created_at: str
    kind: str = "run"
    base_ref: str
    base_sha: str
    target_ref: str
    target_sha: str
    jobs: int = 1
    fail_fast: bool = False
    driver: DriverInfo | None = None
    lanes: dict[str, LaneState]
    halted: bool = False


class RunStore:
    """Reads and writes one run's state files; safe to call from several lane threads."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.run_file = run_dir / "run.json"
        self.events_file = run_dir / "events.jsonl"
        self._lock = threading.Lock()
        self._events: TextIO | None = None

    def create(self, run: RunState) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise UsageError(f"run {run.run_id!r} already exists", "choose another run id") from None
        self.save(run)
        self.event("run-created", lanes=list(run.lanes))

    def load(self) -> RunState:
        try:
            text = self.run_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(
                f"no run {self.run_dir.name!r} in this repository", "list runs with `spine status`"
            ) from None
        return RunState.model_validate_json(text)

    def save(self, run: RunState) -> None:
        with self._lock:
            atomic_write_text(self.run_file, run.model_dump_json(by_alias=True, indent=2) + "\n")

    def event(self, kind: str, lane: str | None = None, **data: Any) -> None:
        """Append one line to events.jsonl.

        The file stays open for the store's life and each line is flushed to the kernel at once, so
        a killed driver loses no line; lines are not fsynced: nothing reads the journal back to
        decide anything (run.json is the loop's truth, and it is fsynced), and an fsync per line
        cost as much as the rest of recording a step.
        """
        record: dict[str, Any] = {"at": now_iso(), "event": kind}
        if lane is not None:
            record["lane"] = lane
        record.update(data)
        line = json.dumps(record, sort_keys=False) + "\n"
        with self._lock:
            if self._events is None:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self._events = open(self.events_file, "a", encoding="utf-8")  # noqa: SIM115
                weakref.finalize(self, self._events.close)
            self._events.write(line)
            self._events.flush()

    def close(self) -> None:
        """Close the journal (it reopens on the next event)."""
        with self._lock:
            if self._events is not None:
                self._events.close()
                self._events = None


def driver_info() -> DriverInfo:
    return DriverInfo(pid=os.getpid(), host=socket.gethostname(), started_at=now_iso())
