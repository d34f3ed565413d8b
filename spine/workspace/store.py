"""Run state on disk: run.json (the loop's truth) and events.jsonl (an append-only journal).

Both live in the run's directory of spine's state (``StatePaths.run_dir``). run.json is written
atomically (temp file, fsync, ``os.replace``) with every secret masked; events are appended one JSON
line at a time (flushed, not fsynced). A new run appears whole: its directory is assembled under a
temporary name and renamed into place, so a failed create never leaves an empty run directory that
blocks its id. Reading checks the state version (``spine.model.state``): older versions are
converted, unknown fields are kept, a newer version is refused with exit 3.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import weakref
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from spine.base.errors import EnvironmentProblem, UsageError
from spine.base.files import atomic_write_json
from spine.base.ids import now_iso
from spine.base.liveness import DriverLock
from spine.base.redact import redact_text
from spine.model.state import STATE_VERSION, DriverInfo, LaneSpec, RunState, upgrade
from spine.workspace.context import StatePaths


class StateTooNew(EnvironmentProblem):
    """run.json was written by a newer spine whose state format this one cannot read. Exit 3."""


class StateUnreadable(EnvironmentProblem):
    """run.json is not valid (damaged by hand or by a disk problem). Exit 3."""


class RunStore:
    """Reads and writes one run's state files; safe to call from several lane threads."""

    def __init__(self, paths: StatePaths, run_id: str) -> None:
        self.paths = paths
        self.run_id = run_id
        self.run_dir = paths.run_dir(run_id)
        self.run_file = paths.run_file(run_id)
        self.events_file = paths.events_file(run_id)
        self._lock = threading.Lock()
        self._events: TextIO | None = None
        # The specs as given, secrets included, of a run this process created: run.json holds them
        # masked, so a reload in this process puts them back (``spine.lane.spec.stored_form``).
        self._given: dict[str, LaneSpec] = {}

    def driver_lock(self) -> DriverLock:
        """The lock a driver of this run holds while it drives it."""
        return DriverLock(self.paths.driver_lock(self.run_id))

    def create(self, run: RunState, given: dict[str, LaneSpec] | None = None) -> None:
        """Record a new run; it appears under its id complete or not at all."""
        self._given = dict(given or {})
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise UsageError(f"run {run.run_id!r} already exists", "choose another run id")
        staging = self.paths.new_run_dir(run.run_id)
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir(parents=True)
            atomic_write_json(staging / self.run_file.name, _dump(run))
            try:
                os.rename(staging, self.run_dir)  # replaces an empty leftover directory, never a run
            except OSError:
                if self.run_dir.exists() and any(self.run_dir.iterdir()):
                    raise UsageError(f"run {run.run_id!r} already exists", "choose another run id") from None
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.event("run-created", lanes=list(run.lanes))

    def load(self) -> RunState:
        try:
            text = self.run_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(
                f"no run {self.run_id!r} in this repository", "list runs with `spine status`"
            ) from None
        run = parse_run(text, self.run_file)
        for lane_id, spec in self._given.items():
            if lane_id in run.lanes:
                run.lanes[lane_id].spec = spec
        return run

    def save(self, run: RunState) -> None:
        with self._lock:
            atomic_write_json(self.run_file, _dump(run))

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
        line = redact_text(json.dumps(record, sort_keys=False)) + "\n"
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


def _dump(run: RunState) -> str:
    return run.model_dump_json(by_alias=True, indent=2) + "\n"


def parse_run(text: str, path: Path) -> RunState:
    """run.json's text as a RunState, converted from an older state version; see the module docstring."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateUnreadable(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}): it was damaged",
            "restore it from a backup, or remove the run's directory to forget the run",
        ) from None
    if not isinstance(data, dict):
        raise StateUnreadable(f"{path} does not hold a run", "remove the run's directory to forget the run")
    version = data.get("schemaVersion", 1)
    if not isinstance(version, int) or version > STATE_VERSION:
        raise StateTooNew(
            f"{path} was written by a newer spine (state version {version}); this spine reads versions up to {STATE_VERSION}",
            "upgrade spine (pip install -U git-spine) to work with this run",
        )
    try:
        return RunState.model_validate(upgrade(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise StateUnreadable(
            f"{path} is not a valid run: {where}: {first['msg']}",
            "restore it from a backup, or remove the run's directory to forget the run",
        ) from None


def driver_info() -> DriverInfo:
    return DriverInfo(pid=os.getpid(), host=socket.gethostname(), started_at=now_iso())


def forget_empty_run_dirs(paths: StatePaths) -> list[str]:
    """Remove run directories that hold no run.json and nothing else (left by an older spine)."""
    removed: list[str] = []
    if not paths.runs.is_dir():
        return removed
    for entry in paths.runs.iterdir():
        if entry.is_dir() and not (entry / "run.json").exists():
            with contextlib.suppress(OSError):
                entry.rmdir()
                removed.append(entry.name)
    return removed
