"""The progress of a driven run: a board redrawn in place on a terminal, plain lines anywhere else."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.lanetool import cmd, lane, write_batch


@pytest.fixture
def tool_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "marks"
    folder.mkdir()
    return folder


class Screen:
    """Just enough of a terminal to replay the board: text, CR, LF, cursor up, erase line/below.

    Replaying shows what a person sees at the end, so a board that appended instead of redrawing
    would leave more lines than it has rows.
    """

    CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")

    def __init__(self) -> None:
        self.lines: list[str] = [""]
        self.row = 0
        self.col = 0
        self.unknown: list[str] = []

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                match = self.CSI.match(text, i)
                if match is None:
                    self.unknown.append(repr(text[i : i + 8]))
                    i += 1
                    continue
                self._csi(match.group(1), match.group(2))
                i = match.end()
                continue
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.row += 1
                self.col = 0
                while len(self.lines) <= self.row:
                    self.lines.append("")
            else:
                line = self.lines[self.row].ljust(self.col)
                self.lines[self.row] = line[: self.col] + ch + line[self.col + 1 :]
                self.col += 1
            i += 1

    def _csi(self, arg: str, final: str) -> None:
        if final == "m" or arg in ("?25", "?25l", "?25h") or final in ("l", "h"):
            return  # colours and cursor visibility change nothing on the grid
        count = int(arg or 1) if arg.isdigit() or not arg else 1
        if final == "F":
            self.row, self.col = max(0, self.row - count), 0
        elif final == "K":
            self.lines[self.row] = ""
        elif final == "J":
            del self.lines[self.row + 1 :]
            self.lines[self.row] = self.lines[self.row][: self.col]
        else:
            self.unknown.append(f"CSI {arg}{final}")

    def text(self) -> list[str]:
        return [line.rstrip() for line in self.lines if line.strip()]


def run_on_a_terminal(
    args: list[str], cwd: Path, env: dict[str, str], until: list[str] | None = None, then: Any = None
) -> tuple[int, str, str]:
    """Run ``spine ARGS`` with stderr on a pseudo-terminal; when every text of ``until`` was drawn, call ``then``."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "spine", *args],
        cwd=cwd,
        # Not under CI unless the test says so: CI=true (as .ci/run sets it) asks for plain lines.
        env={**os.environ, "COLUMNS": "140", "LINES": "30", "CI": "", **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    seen = threading.Event()

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)
            drawn = b"".join(chunks).decode(errors="replace")
            if until and all(text in drawn for text in until):
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if until:
        assert seen.wait(60), (
            "the board never showed " + repr(until) + "\n" + b"".join(chunks).decode(errors="replace")
        )
        then()
    out, _ = proc.communicate(timeout=90)
    reader.join(timeout=5)
    os.close(master)
    return proc.returncode, out, b"".join(chunks).decode(errors="replace")


def test_the_board_redraws_lanes_in_words_with_their_step_and_last_line(
    repo: Path, tmp_path: Path, tool_dir: Path
) -> None:
    talk = cmd("wait:go", "write:a.txt")
    talker = f"echo 'compiling module 7 of 9' && {' '.join(talk)}"  # prints, then waits for the test
    batch = write_batch(
        tmp_path / "lanes.json",
        [
            {"id": "talker", "objective": "talk then work", "command": talker},
            lane("breaker", "exit:3"),
            lane("after", "write:b.txt", needs=["talker"]),
            lane("stuck", "write:c.txt", needs=["breaker"]),
        ],
    )
    env = {"LANETOOL_DIR": str(tool_dir)}
    code, out, drawn = run_on_a_terminal(
        ["batch", str(batch), "-j", "2"],
        repo,
        env,
        until=["running the command", "compiling module 7 of 9", "waiting"],
        then=lambda: (tool_dir / "go").write_text("go"),
    )
    assert code == 1, out
    # While it ran: the step in words, the lane's last output line, a dependent lane waiting for it.
    plain = re.sub(r"\x1b\[[0-9;]*m", "", drawn)
    assert re.search(
        r"talker\s+running\s+[\d.]+m?s\s+running the command\s+compiling module 7 of 9", plain
    ), plain
    assert "waiting" in drawn and "for talker" in drawn
    # Drawn in place: erase-line and cursor-up codes, and at the end one screen line per lane plus the bar.
    assert "\x1b[2K" in drawn and re.search(r"\x1b\[\d+F", drawn)
    screen = Screen()
    screen.feed(drawn.replace("\r\n", "\n"))
    assert not screen.unknown
    announced, *final = screen.text()
    assert announced.endswith("4 lanes, 2 at a time")
    assert len(final) == 5, final
    head, *rows = final
    assert "[########################]" in head and "4/4 lanes done, 1 failed, 1 blocked" in head
    states = {row.split()[0]: row.split()[1] for row in rows}
    assert states == {"talker": "succeeded", "breaker": "failed", "after": "succeeded", "stuck": "blocked"}
    breaker = next(row for row in rows if row.startswith("   breaker") or row.split()[0] == "breaker")
    assert "the command exited with code 3" in breaker
    stuck = next(row for row in rows if row.split()[0] == "stuck")
    assert "a lane it needs did not succeed: breaker failed" in stuck
    # No cryptic markers: every state is a word.
    assert not re.search(r"(^|\s)(ok|no|bl|cx)\s", "\n".join(rows))
    assert "[talker]" not in drawn  # no plain lines on a terminal
    assert drawn.endswith("\x1b[?25h")  # the cursor is shown again
    assert "2 succeeded, 1 failed, 1 blocked" in out  # the summary still goes to stdout


def test_plain_lines_and_no_control_codes_when_not_a_terminal(
    spine: Any, repo: Path, tmp_path: Path, tool_dir: Path
) -> None:
    batch = write_batch(
        tmp_path / "lanes.json",
        [lane("one", "write:x.txt"), lane("two", "exit:2"), lane("three", "write:y.txt", needs=["one"])],
    )
    proc = spine(
        "batch",
        str(batch),
        "--run-id",
        "plainer",
        cwd=repo,
        env={"LANETOOL_DIR": str(tool_dir)},
        subprocess=True,
    )
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert "[one] started" in lines and "[one] running the command" in lines
    assert "[two] why: the command exited with code 2" in lines
    assert any(line.startswith("[two] failed: inspect the log") for line in lines)
    assert "[run] 3/3 lanes done, 1 failed" in lines
    assert any(re.fullmatch(r"\[run\] [12]/3 lanes done.*", line) for line in lines)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", proc.stderr)  # no escape or other control codes


def test_under_ci_a_terminal_gets_plain_lines(repo: Path, tmp_path: Path, tool_dir: Path) -> None:
    batch = write_batch(tmp_path / "lanes.json", [lane("solo", "write:x.txt")])
    code, _, drawn = run_on_a_terminal(
        ["batch", str(batch)], repo, {"LANETOOL_DIR": str(tool_dir), "CI": "true"}
    )
    assert code == 0
    assert "[solo] started" in drawn and "[run] 1/1 lanes done" in drawn
    assert "\x1b" not in drawn


def test_a_long_lane_says_it_is_alive_in_plain_lines(spine: Any, repo: Path) -> None:
    from spine import api
    from spine.lane.runtime import OutputLines
    from spine.lane.spec import LaneRequest
    from spine.views.progress import PlainProgress

    ctx = api.context(repo)
    _, run = api.plan_lane(ctx, LaneRequest(id="slow", objective="slow", command=["true"]))
    lane_state = run.lanes["slow"]
    lane_state.steps_done = ["create_worktree", "setup"]
    lane_state.current_step = "execute"
    lines = OutputLines()
    lines.feed("slow", b"warming up\nstep 3 of 10\r")
    stream = io.StringIO()
    progress = PlainProgress(run, stream, lines=lines, heartbeat=0.05)
    try:
        progress("slow", "execute", "start")
        deadline = time.monotonic() + 10
        while "still running the command" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        progress.close()
    text = stream.getvalue()
    assert "[slow] running the command" in text
    assert re.search(r"\[slow\] still running the command \([\d.]+s so far\): step 3 of 10", text), text


def test_the_last_line_is_bounded_plain_and_redacted(tmp_path: Path) -> None:
    from spine.base.redact import Redactor
    from spine.lane.runtime import LAST_LINE_CHARS, LaneOutput, OutputLines

    lines = OutputLines()
    assert lines.get("x") is None
    out = LaneOutput(tmp_path / "out.log", "x", "none", Redactor(["hunter2-secret-value"]), lines)
    for i in range(2000):
        out("stdout", f"line {i} of a long build\n".encode())
    assert lines.get("x") == "line 1999 of a long build"
    assert len(lines._tails["x"]) <= 1024  # kept in memory: a bounded tail, not the output
    out("stderr", b"\x1b[31mERROR\x1b[0m token=hunter2-secret-value\n\n   \n")
    assert lines.get("x") == "ERROR token=[REDACTED]"
    out("stdout", b"x" * 5000)
    shown = lines.get("x")
    assert shown is not None and len(shown) == LAST_LINE_CHARS
    out.close()
    assert "hunter2" not in (tmp_path / "out.log").read_text()
