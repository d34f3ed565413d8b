"""What a lane wrote cannot drive the terminal spine prints on: escape sequences and control
characters in its output, file names and summaries are dropped from text output; colours stay."""

from __future__ import annotations

from pathlib import Path

import pytest

from spine.base.text import printable
from tests.conftest import Spine


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text\nand\ttabs", "plain text\nand\ttabs"),
        ("\x1b]0;pwned\x07title", "title"),  # OSC: set the window title
        ("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC 8 hyperlink, ST-terminated
        ("before\x1b[2J\x1b[Hafter", "beforeafter"),  # clear the screen, home the cursor
        ("failed\r\x1b[1Apassed", "failedpassed"),  # overwrite the line above
        ("\x1b[31mred\x1b[0m", "\x1b[31mred\x1b[0m"),  # a colour is harmless and kept
        ("bell\x07 nul\x00 del\x7f c1\x9b", "bell nul del c1"),
        ("\x1bPq#0;2;0;0;0\x1b\\sixel", "sixel"),  # DCS string
        ("unterminated \x1b]0;title", "unterminated "),
    ],
)
def test_printable(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_show_and_status_print_no_escape_from_the_lane(spine: Spine, repo: Path) -> None:
    script = r"printf 'x\033]0;pwned\007\033[2J\n' > \"$(printf 'evil\033[2Jname')\"; printf '\033]0;owned\007'; exit 1"
    proc = spine("run", "-q", "--run-id", "r", "escape", "--", "sh", "-c", script, cwd=repo)
    assert proc.returncode == 1
    for args in (
        ("show", "r/escape"),
        ("status", "r"),
        ("debug", "r/escape"),
        ("run", "-q", "x", "--", "true"),
    ):
        out = spine(*args, cwd=repo).stdout
        assert "\x1b]" not in out and "\x1b[2J" not in out and "\x07" not in out, args
