"""Progress of a run while it is driven: a live board on a terminal, plain appended lines otherwise.

Both are drive-loop listeners (``(lane, step, "start" | "done" | "halted")``), called from the lane
threads; they only read the run (and each lane's last output line, kept in memory by
``spine.lane.runtime.OutputLines``) and write to stderr, so stdout stays free for the summary or JSON.

The live board (``LiveProgress``) redraws in place, twice a second: one line per lane with its state
in words, the time it has taken, its current step and its last output line, under a run-level bar
(lanes done out of all, and how many did not succeed). It is plain ANSI: cursor up, erase line.
``PlainProgress`` appends one line per event that matters and nothing else: no colours, no cursor
movement, so a CI log or a file reads cleanly.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from typing import TextIO

import click

from spine.base.ids import format_duration
from spine.base.redact import redact_text
from spine.drive.scheduler import PSEUDO_STEPS, started
from spine.lane.outcome import classify
from spine.lane.runtime import OutputLines
from spine.model.result import LaneStatus
from spine.model.state import LaneState, RunState
from spine.views.status import parse_time

SPINNER = "|/-\\"
BAR_WIDTH = 24

STEP_WORDS = {
    "create_worktree": "creating the worktree",
    "setup": "setting up",
    "execute": "running the command",
    "commit": "committing",
    "validate": "running checks",
    "finalize": "writing the result",
}

STATE_COLORS = {
    "succeeded": "green",
    "failed": "red",
    "blocked": "magenta",
    "canceled": "yellow",
    "running": "cyan",
}

NOT_SUCCEEDED = (LaneStatus.FAILED, LaneStatus.BLOCKED, LaneStatus.CANCELED)


def under_ci() -> bool:
    """True when the ``CI`` variable says this runs under continuous integration."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


class Board:
    """What both views show, read from the run being driven: each lane's state in words, times, counts."""

    def __init__(self, run: RunState, lines: OutputLines | None = None) -> None:
        self.run = run
        self.lines = lines
        self.began = time.time()
        self._started: dict[str, float] = {}
        self._ended: dict[str, float] = {}
        for lane_id, lane in run.lanes.items():
            begun = parse_time(lane.facts.started_at)
            if begun is not None:
                self._started[lane_id] = begun.timestamp()

    def note(self, lane_id: str, step: str, what: str) -> None:
        """Record when a lane started and ended, as its events arrive."""
        now = time.time()
        if what == "start" and step not in PSEUDO_STEPS:
            self._started.setdefault(lane_id, now)
        if self.run.lanes[lane_id].complete:
            self._ended.setdefault(lane_id, now)

    def state(self, lane: LaneState) -> str:
        """The lane's state in words: planned, waiting, running, succeeded, failed, blocked, canceled."""
        if lane.complete:
            return lane.status.value
        if lane.current_step is not None and lane.current_step not in PSEUDO_STEPS:
            return "running"
        if started(lane):
            return "running"
        if any(not self.run.lanes[n].complete for n in _awaited(lane) if n in self.run.lanes):
            return "waiting"
        return "planned"

    def elapsed(self, lane_id: str) -> float | None:
        begun = self._started.get(lane_id)
        if begun is None:
            return None
        lane = self.run.lanes[lane_id]
        if lane.complete:
            end = self._ended.get(lane_id)
            if end is None:  # finished before this view started: the command's own duration
                ran = lane.facts.execute
                return ran.duration_seconds if ran else None
            return max(0.0, end - begun)
        return max(0.0, time.time() - begun)

    def step(self, lane: LaneState) -> str:
        """What a running lane is doing now, in words."""
        step = lane.current_step or lane.next_step or ""
        if step == "validate" and not lane.spec.checks:
            return "collecting artifacts"
        return STEP_WORDS.get(step, step.replace("_", " "))

    def detail(self, lane_id: str) -> str:
        """Why a lane is where it is: what it waits for, or why it did not succeed."""
        lane = self.run.lanes[lane_id]
        if lane.complete:
            if lane.status in NOT_SUCCEEDED:
                return classify(lane.facts, lane.spec).cause
            return ""
        waiting = [n for n in _awaited(lane) if n in self.run.lanes and not self.run.lanes[n].complete]
        if waiting and not started(lane):
            return f"for {', '.join(waiting)}"
        return ""

    def last_line(self, lane_id: str) -> str:
        line = self.lines.get(lane_id) if self.lines is not None else None
        return line or ""

    def counts(self) -> dict[str, int]:
        """Lanes per state word, plus ``done`` and ``total``."""
        counts: dict[str, int] = {"total": len(self.run.lanes), "done": 0}
        for lane in self.run.lanes.values():
            word = self.state(lane)
            counts[word] = counts.get(word, 0) + 1
            if lane.complete:
                counts["done"] += 1
        return counts

    def summary(self) -> str:
        """``3/8 lanes done, 1 failed, 2 running``: the run in one line of words."""
        counts = self.counts()
        parts = [f"{counts['done']}/{counts['total']} lanes done"]
        for word in ("failed", "blocked", "canceled", "running", "waiting"):
            if counts.get(word):
                parts.append(f"{counts[word]} {word}")
        return ", ".join(parts)


def _awaited(lane: LaneState) -> list[str]:
    """The lanes this lane waits for: those it needs, and (a lane with attempts) its attempts."""
    return [*lane.spec.needs, *lane.spec.attempts]


class PlainProgress:
    """One line per event that matters: a lane starts, runs its command, its checks, ends (and how).

    After each lane ends, a ``[run]`` line counts the lanes done. With ``heartbeat`` seconds, a lane
    still running after that long says so again (with its last output line), so a CI log shows that
    a slow run is alive.
    """

    def __init__(
        self,
        run: RunState,
        stream: TextIO | None = None,
        *,
        lines: OutputLines | None = None,
        heartbeat: float | None = 60.0,
    ) -> None:
        self.run = run
        self.board = Board(run, lines)
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if heartbeat:
            self._ticker = threading.Thread(target=self._beat, args=(heartbeat,), daemon=True)
            self._ticker.start()

    def __call__(self, lane_id: str, step: str, what: str) -> None:
        self.board.note(lane_id, step, what)
        lane = self.run.lanes[lane_id]
        lines: list[str] = []
        if what == "start" and step == "create_worktree":
            lines.append("started")
        elif what == "start" and step == "execute":
            lines.append("running the command")
        elif what == "start" and step == "validate" and lane.spec.checks:
            lines.append("running checks")
        elif what == "halted":
            halt = lane.facts.halt
            lines.append(f"step {step} could not run: {halt.error if halt else '?'}")
        elif what == "done" and step == "validate" and "validate" not in lane.steps_done:
            lines.append(f"checks failed; iteration {lane.iteration} of {lane.spec.iterations}")
        elif what == "done" and step == "compare" and lane.facts.attempts is not None:
            lines.append(f"compared its attempts: {lane.facts.attempts.pick.reason}")
        if what in ("done", "halted") and lane.complete and (what == "halted" or step == "finalize"):
            result = lane.facts.result
            cause = self.board.detail(lane_id) if what == "done" else ""
            if cause:
                lines.append(f"why: {cause}")
            lines.append(f"{lane.status.value}: {result.next_action if result else ''}")
        if not lines:
            return
        text = "".join(f"[{lane_id}] {line}\n" for line in lines)
        if lane.complete and lines[-1].startswith(lane.status.value):
            text += f"[run] {self.board.summary()}\n"
        self._write(text)

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            beats = []
            for lane_id, lane in self.run.lanes.items():
                if self.board.state(lane) != "running":
                    continue
                took = self.board.elapsed(lane_id)
                line = f"[{lane_id}] still {self.board.step(lane)}"
                if took is not None:
                    line += f" ({format_duration(took)} so far)"
                last = self.board.last_line(lane_id)
                beats.append(line + (f": {last}" if last else "") + "\n")
            if beats:
                self._write("".join(beats))

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write(redact_text(text))
            self.stream.flush()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)


class LiveProgress:
    """The board redrawn in place: a run-level bar, then one line per lane (at most a screenful)."""

    def __init__(
        self,
        run: RunState,
        stream: TextIO | None = None,
        *,
        lines: OutputLines | None = None,
        interval: float = 0.5,
    ) -> None:
        self.run = run
        self.board = Board(run, lines)
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._drawn = 0
        self._frame = 0
        self._closed = False
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, args=(interval,), daemon=True)
        self._ticker.start()

    def __call__(self, lane_id: str, step: str, what: str) -> None:
        self.board.note(lane_id, step, what)
        with self._lock:
            self._draw()

    def _tick(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with self._lock:
                self._frame += 1
                self._draw()

    def head(self, columns: int) -> str:
        counts = self.board.counts()
        total = max(1, counts["total"])
        filled = round(BAR_WIDTH * counts["done"] / total)
        bad = sum(counts.get(word, 0) for word in ("failed", "blocked", "canceled"))
        bar = "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]"
        took = format_duration(time.time() - self.board.began)
        return _fit(
            [
                (f"run {self.run.run_id} ", {"bold": True}),
                (bar, {"fg": "red" if bad else "green"}),
                (f" {self.board.summary()} · {took}", {}),
            ],
            columns,
        )

    def row(self, lane_id: str, width: int, columns: int) -> str:
        lane = self.run.lanes[lane_id]
        state = self.board.state(lane)
        spin = SPINNER[self._frame % len(SPINNER)] if state == "running" else " "
        took = self.board.elapsed(lane_id)
        shown_took = format_duration(took) if took is not None else ""
        doing = self.board.step(lane) if state == "running" else self.board.detail(lane_id)
        last = self.board.last_line(lane_id) if state != "planned" and state != "waiting" else ""
        parts: list[tuple[str, dict[str, object]]] = [
            (f" {spin} {lane_id.ljust(width)}  ", {}),
            (state.ljust(10), {"fg": STATE_COLORS.get(state)}),
            (f" {shown_took:>6}", {}),
        ]
        if doing:
            parts.append((f"  {doing}", {}))
        if last:
            parts.append((f"  {last}", {"dim": True}))
        return _fit(parts, columns)

    def _draw(self) -> None:
        if self._closed:
            return
        columns, rows = _terminal_size(self.stream)
        ids = list(self.run.lanes)
        width = min(max((len(i) for i in ids), default=4), 30)
        room = max(3, rows - 2)
        if len(ids) <= room:
            shown = ids
        else:
            # The lanes at work first, then the ones that did not succeed, then the rest in order.
            def rank(lane_id: str) -> int:
                state = self.board.state(self.run.lanes[lane_id])
                return 0 if state == "running" else (1 if state in ("failed", "blocked") else 2)

            shown = sorted(ids, key=rank)[: room - 1]
        lines = [self.head(columns)] + [self.row(i, width, columns) for i in shown]
        if len(shown) < len(ids):
            lines.append(f"   ... and {len(ids) - len(shown)} more lanes")
        out = "\x1b[?25l" if not self._drawn else f"\x1b[{self._drawn}F"
        out += "".join(f"\x1b[2K{line}\n" for line in lines)
        if len(lines) < self._drawn:
            out += "\x1b[J"
        self._drawn = len(lines)
        self.stream.write(redact_text(out))
        self.stream.flush()

    def close(self) -> None:
        self._stop.set()
        self._ticker.join(timeout=2)
        with self._lock:
            self._draw()
            self._closed = True
            self.stream.write("\x1b[?25h")
            self.stream.flush()


def _terminal_size(stream: TextIO) -> tuple[int, int]:
    """(columns, lines) of the terminal ``stream`` is, with COLUMNS/LINES winning as in shutil."""
    fallback = shutil.get_terminal_size((100, 24))
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return fallback.columns, fallback.lines
    columns = int(os.environ.get("COLUMNS") or 0) or size.columns or fallback.columns
    rows = int(os.environ.get("LINES") or 0) or size.lines or fallback.lines
    return columns, rows


def _fit(parts: list[tuple[str, dict[str, object]]], columns: int) -> str:
    """Join styled parts, cut to fit ``columns - 1`` visible characters (a wrapped line breaks the redraw)."""
    room = max(10, columns - 1)
    out = []
    for text, style in parts:
        if room <= 0:
            break
        if len(text) > room:
            text = text[: max(0, room - 3)] + "..."
        room -= len(text)
        out.append(click.style(text, **style) if any(style.values()) else text)  # type: ignore[arg-type]
    return "".join(out)


def progress_for(
    run: RunState, live: bool | None = None, *, lines: OutputLines | None = None
) -> PlainProgress | LiveProgress:
    """The live board when stderr is a terminal and not under CI (or ``live`` says so), plain lines otherwise."""
    if live is None:
        live = sys.stderr.isatty() and not under_ci()
    return LiveProgress(run, lines=lines) if live else PlainProgress(run, lines=lines)
