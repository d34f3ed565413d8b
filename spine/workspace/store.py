"""Run state on disk: run.json (the loop's truth) and events.jsonl (an append-only journal).

Both live under ``<git-common-dir>/spine/runs/<run-id>/``. run.json is written atomically (temp file,
fsync, ``os.replace``); events are appended one JSON line at a time (flushed, not fsynced).
"""

import json
import os
import socket
import threading
import weakref
from pathlib import Path
from typing import Any, TextIO

from spine.base.errors import UsageError
from spine.base.files import atomic_write_text
from spine.base.ids import now_iso
from spine.model.state import DriverInfo, RunState


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
