"""Run state on disk: run.json, one record per lane that changed since, and events.jsonl.

A run's state is run.json (the run's header and every lane) overlaid with the lane records in
``lane-state/LANE.jsonl``: while a run is driven, recording a lane's step appends that lane's whole
state as one line to its journal (``RunStore.save_lane``), so its cost does not grow with the number
of lanes; the last whole line of a journal is the lane's state. Saving the whole
run (``RunStore.save``: when a driver takes the run, recovers, records cancel requests and lets go)
rewrites run.json and then removes the lane records it absorbed, so a run nobody drives is one file.
A lane record is never older than run.json's entry for that lane, so the overlay is always right;
``read_run`` is the one way to read a run's state (docs/adr/0064-per-lane-state-records.md).

Every file is written atomically (temp file, fsync, ``os.replace``) with every secret masked; events
are appended one JSON line at a time (flushed, not fsynced). A new run appears whole: its directory
is assembled under a temporary name and renamed into place, so a failed create never leaves an empty
run directory that blocks its id. Reading checks the state version (``spine.model.state``): older
versions are converted, unknown fields are kept, a newer version is refused with exit 3.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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
from spine.base.redact import redact_data, redact_text
from spine.model.state import STATE_VERSION, DriverInfo, LaneSpec, RunState, upgrade
from spine.workspace.context import StatePaths

# How run.json of this state version starts (``_dump`` writes the version first).
_CURRENT = re.compile(rf'\{{\s*"schemaVersion":\s*{STATE_VERSION}\s*,')


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
        self._lane_records: set[str] = set()  # lanes with a record newer than run.json
        self._journals: dict[str, int] = {}  # open lane journals: lane id -> file descriptor
        weakref.finalize(self, _close_all, self._journals)
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
        """The run's state (``read_run``), with the secret values of specs this process was given."""
        run, records = _read(self.paths, self.run_id)
        with self._lock:
            self._lane_records.update(records)
        for lane_id, spec in self._given.items():
            if lane_id in run.lanes:
                run.lanes[lane_id].spec = spec
        return run

    def save(self, run: RunState) -> None:
        """Write the whole run to run.json, then drop the lane records it now holds."""
        with self._lock:  # dumped under the lock: no lane record lands between the dump and the unlink
            atomic_write_json(self.run_file, _dump(run))
            _close_all(self._journals)
            for lane_id in sorted(self._lane_records):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.paths.lane_state_file(self.run_id, lane_id))
            self._lane_records.clear()

    def save_lane(self, run: RunState, lane_id: str) -> None:
        """Record one lane's state: one line appended to that lane's journal, whatever the size of
        the run. One ``write`` on a file kept open: a killed driver leaves the line whole or torn,
        never an earlier line changed, and a reader takes the last whole line (ADR 0064)."""
        lane = run.lanes[lane_id]
        record = {
            "schemaVersion": STATE_VERSION,
            "runId": run.run_id,
            "lane": lane.model_dump(mode="json", by_alias=True),
        }
        line = (json.dumps(redact_data(record), separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            fd = self._journals.get(lane_id)
            if fd is None:
                path = self.paths.lane_state_file(self.run_id, lane_id)
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
                self._journals[lane_id] = fd
            self._lane_records.add(lane_id)
            written = 0
            while written < len(line):
                written += os.write(fd, line[written:])
            if lane.complete:  # a finished lane writes no more until the run is saved whole
                os.close(self._journals.pop(lane_id))

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


def read_run(paths: StatePaths, run_id: str) -> RunState:
    """The state of run ``run_id`` as its driver last recorded it: run.json overlaid with the lane
    records written since. Reads only, so it can be called at any time from any process (status,
    show, the report views); a run with no lane record costs one file read. Raises ``UsageError``
    (exit 2) when there is no such run and ``StateUnreadable``/``StateTooNew`` (exit 3) when its
    files cannot be read by this spine."""
    return _read(paths, run_id)[0]


def _read(paths: StatePaths, run_id: str) -> tuple[RunState, list[str]]:
    """(the run, the lanes whose record overlaid run.json)."""
    path = paths.run_file(run_id)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"no run {run_id!r} in this repository", "list runs with `spine status`") from None
    try:
        entries = [e for e in os.scandir(paths.lane_states_dir(run_id)) if not e.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        entries = []
    if not entries and _CURRENT.match(text):
        # The common case, one file of this version: pydantic parses the JSON itself, without
        # building the whole document as Python objects first (faster, and half the memory).
        try:
            return RunState.model_validate_json(text), []
        except ValidationError:
            pass  # not valid as it is: the path below says why
    data = _parse(text, path, "run")
    records: list[str] = []
    lanes = data.get("lanes")
    for entry in entries:
        if not entry.name.endswith(".jsonl"):
            continue
        lane_id = entry.name.removesuffix(".jsonl")
        try:
            with open(entry.path, "rb") as handle:
                record = _last_record(handle.read(), Path(entry.path))
        except FileNotFoundError:
            continue  # absorbed into run.json since the directory was listed: run.json has it
        if record is None:
            continue  # nothing whole in it: the lane is where run.json last had it
        if isinstance(lanes, dict) and lane_id in lanes and isinstance(record.get("lane"), dict):
            lanes[lane_id] = record["lane"]
            records.append(lane_id)
    return _validate(data, path), records


def _last_record(data: bytes, path: Path) -> dict[str, Any] | None:
    """The last whole line of a lane journal as a record, or None when it has none.

    A line without its newline was being written when the writer was killed, and a line that does
    not parse was torn by a power cut (the journal is not fsynced): the line before it is the
    lane's state, as it was before that save began."""
    lines = data.split(b"\n")
    for raw in reversed(lines[:-1]):  # what follows the last newline is never whole
        try:
            return _parse(raw.decode("utf-8"), path, "lane record")
        except (StateUnreadable, UnicodeDecodeError):
            continue
    return None


def _close_all(journals: dict[str, int]) -> None:
    for fd in journals.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    journals.clear()


def _parse(text: str, path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateUnreadable(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}): it was damaged",
            "restore it from a backup, or remove the run's directory to forget the run",
        ) from None
    if not isinstance(data, dict):
        raise StateUnreadable(
            f"{path} does not hold a {what}", "remove the run's directory to forget the run"
        )
    version = data.get("schemaVersion", 1)
    if not isinstance(version, int) or version > STATE_VERSION:
        raise StateTooNew(
            f"{path} was written by a newer spine (state version {version}); this spine reads versions up to {STATE_VERSION}",
            "upgrade spine (pip install -U git-spine) to work with this run",
        )
    return data


def _validate(data: dict[str, Any], path: Path) -> RunState:
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


# --- what is remembered of finished runs ------------------------------------------------------------


def file_stamp(path: Path) -> list[int] | None:
    """What tells one version of a state file from another: inode, modification time and size.

    Every whole save of run.json replaces it (a new inode), so a stamp that still matches means the
    run has not been saved since."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_mtime_ns, st.st_size]


def remember_finished(
    paths: StatePaths, run_id: str, summary: dict[str, Any], stamp: list[int] | None = None
) -> None:
    """Append the summary of a run whose every lane is complete, stamped with its run.json (as it is
    now, or ``stamp``: the run.json the summary was made from), so that listing runs need not read it
    again (``finished_summaries``). One O_APPEND write: whole or nothing."""
    stamp = stamp or file_stamp(paths.run_file(run_id))
    if stamp is None:
        return
    record = redact_data({"runId": run_id, "runJson": stamp, "summary": summary})
    line = json.dumps(record, separators=(",", ":")) + "\n"
    _append_line(paths.finished_runs, line)


def finished_summaries(paths: StatePaths) -> dict[str, tuple[list[int], dict[str, Any]]]:
    """run id -> (the stamp of run.json it was made from, the summary) for every run remembered as
    finished; the latest line of a run wins. The caller compares the stamp with run.json's now."""
    found: dict[str, tuple[list[int], dict[str, Any]]] = {}
    try:
        with open(paths.finished_runs, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                    found[record["runId"]] = (record["runJson"], record["summary"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line an older or interrupted writer left: not a summary
    except OSError:
        pass
    return found


def _append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
