"""Progress of a run while it is driven: a live per-lane table on a terminal, plain lines otherwise.

Both are drive-loop listeners (``(lane, step, "start" | "done" | "halted")``), called from the lane
threads; they only read the run and write to stderr, so stdout stays free for the summary or JSON.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TextIO

import click

from spine.base.ids import format_duration
from spine.drive.scheduler import PSEUDO_STEPS
from spine.model.result import LaneStatus
from spine.model.state import RunState

SPINNER = "|/-\\"
MARKS = {
    LaneStatus.SUCCEEDED: ("ok", "green"),
    LaneStatus.FAILED: ("no", "red"),
    LaneStatus.BLOCKED: ("bl", "magenta"),
    LaneStatus.CANCELED: ("cx", "yellow"),
}


class PlainProgress:
    """One line per event that matters: a lane starts, its command runs, it ends (and how)."""

    def __init__(self, run: RunState, stream: TextIO | None = None) -> None:
        self.run = run
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def __call__(self, lane_id: str, step: str, what: str) -> None:
        lane = self.run.lanes[lane_id]
        line = None
        if what == "start" and step == "create_worktree":
            line = "started"
        elif what == "start" and step == "execute":
            line = "running the command"
        elif what == "start" and step == "validate" and lane.spec.checks:
            line = "running checks"
        elif what == "halted":
            halt = lane.facts.halt
            line = f"step {step} could not run: {halt.error if halt else '?'}"
        elif what == "done" and step == "validate" and "validate" not in lane.steps_done:
            line = f"checks failed; iteration {lane.iteration} of {lane.spec.iterations}"
        elif what == "done" and step == "compare" and lane.facts.attempts is not None:
            line = f"compared its attempts: {lane.facts.attempts.pick.reason}"
        elif what == "done" and step == "finalize":
            result = lane.facts.result
            line = f"{lane.status.value}: {result.next_action if result else ''}"
        if line is None or (what == "start" and step in PSEUDO_STEPS):
            return
        with self._lock:
            self.stream.write(f"[{lane_id}] {line}\n")
            self.stream.flush()

    def close(self) -> None:
        return None


class LiveProgress:
    """A table of lanes redrawn in place (at most a screenful; the rest are counted)."""

    def __init__(self, run: RunState, stream: TextIO | None = None, interval: float = 0.5) -> None:
        self.run = run
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._drawn = 0
        self._since: dict[str, float] = {}
        self._frame = 0
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, args=(interval,), daemon=True)
        self._ticker.start()

    def __call__(self, lane_id: str, step: str, what: str) -> None:
        with self._lock:
            self._since.setdefault(lane_id, time.monotonic())
            self._draw()

    def _tick(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with self._lock:
                self._frame += 1
                self._draw()

    def _row(self, lane_id: str, width: int) -> str:
        lane = self.run.lanes[lane_id]
        name = lane_id.ljust(width)
        if lane.complete:
            mark, color = MARKS.get(lane.status, ("  ", None))
            result = lane.facts.result
            took = lane.facts.execute.duration_seconds if lane.facts.execute else None
            text = f"{lane.status.value}" + (f" in {format_duration(took)}" if took is not None else "")
            note = result.next_action if result else ""
            return f" {click.style(mark, fg=color)} {name}  {text}  {click.style(note, dim=True)}"
        if lane.current_step is None and not lane.steps_done:
            waiting = [n for n in lane.spec.needs or lane.spec.attempts if not self.run.lanes[n].complete]
            return f" .. {name}  " + (f"waiting for {', '.join(waiting)}" if waiting else "planned")
        spin = " " + SPINNER[self._frame % len(SPINNER)]
        since = time.monotonic() - self._since.get(lane_id, time.monotonic())
        step = lane.current_step or lane.next_step or ""
        return f" {click.style(spin, fg='cyan')} {name}  {step.replace('_', ' ')}  {format_duration(since)}"

    def _draw(self) -> None:
        columns, rows = shutil.get_terminal_size((100, 24))
        ids = list(self.run.lanes)
        width = min(max((len(i) for i in ids), default=4), 30)
        room = max(3, rows - 2)
        active = [i for i in ids if not self.run.lanes[i].complete and self.run.lanes[i].steps_done]
        shown = ids if len(ids) <= room else (active + [i for i in ids if i not in active])[: room - 1]
        lines = [self._row(i, width) for i in shown]
        if len(shown) < len(ids):
            done = sum(1 for lane in self.run.lanes.values() if lane.complete)
            lines.append(f"    ... {len(ids) - len(shown)} more lanes; {done}/{len(ids)} done")
        out = f"\x1b[{self._drawn}F" if self._drawn else ""
        out += "".join(f"\x1b[2K{_clip(line, columns)}\n" for line in lines)
        if len(lines) < self._drawn:
            out += "\x1b[J"
        self._drawn = len(lines)
        self.stream.write(out)
        self.stream.flush()

    def close(self) -> None:
        self._stop.set()
        self._ticker.join(timeout=2)
        with self._lock:
            self._draw()


def _clip(line: str, columns: int) -> str:
    """Cut a line to the terminal width (a wrapped line would break the redraw)."""
    visible = click.unstyle(line)
    if len(visible) < columns:
        return line
    return visible[: max(0, columns - 4)] + "..."


def progress_for(run: RunState, live: bool | None = None) -> PlainProgress | LiveProgress:
    """Live progress when stderr is a terminal (or ``live`` says so), plain lines otherwise."""
    if live is None:
        live = sys.stderr.isatty()
    return LiveProgress(run) if live else PlainProgress(run)
