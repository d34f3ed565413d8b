"""Text from a lane, made safe to print on a terminal.

A lane's output, its file names and its commit subjects reach ``spine show``, ``status``, ``debug``
and ``compare``. A terminal obeys escape sequences in them: change the window title, move the cursor,
clear the screen, rewrite what was printed above (a failed check shown as passed). ``printable``
keeps the text and spine's own colours (SGR sequences: ``ESC [ ... m``) and drops every other escape
sequence and control character but newline and tab.
"""

from __future__ import annotations

import re

# ESC followed by: a CSI sequence (kept when it is SGR, ending in 'm'), an OSC string (ended by BEL or
# ST, or unterminated), or any other single character; then C0 controls but \t \n, DEL and C1 controls.
_SEQUENCE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[PX^_][^\x1b]*(?:\x1b\\)?|.?)", re.S
)
_SGR = re.compile(r"\x1b\[[0-9;]*m")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f\x80-\x9f]")  # ESC: handled above


def printable(text: str) -> str:
    """``text`` without escape sequences (but colours) and control characters (but newline and tab).

    A carriage return is dropped too: it would let a line overwrite the one before it.
    """
    if "\x1b" not in text and not _CONTROL.search(text):
        return text  # the common case: nothing to do
    kept = _SEQUENCE.sub(lambda m: m.group(0) if _SGR.fullmatch(m.group(0)) else "", text)
    return _CONTROL.sub("", kept)
