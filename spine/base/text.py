"""Text from a lane, made safe to print on a terminal.

A lane's output, its file names and its commit subjects reach ``spine show``, ``status``, ``debug``
and ``compare``. A terminal obeys escape sequences in them: change the window title, move the cursor,
clear the screen, rewrite what was printed above (a failed check shown as passed). ``printable``
keeps the text and spine's own colours (SGR sequences: ``ESC [ ... m``) and drops every other escape
sequence and control character but newline and tab.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

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
    text = mend(text)
    if "\x1b" not in text and not _CONTROL.search(text):
        return text  # the common case: nothing to do
    kept = _SEQUENCE.sub(lambda m: m.group(0) if _SGR.fullmatch(m.group(0)) else "", text)
    return _CONTROL.sub("", kept)


# Bytes that are not UTF-8 (a file or ref name, a commit message) reach spine as "surrogate escapes"
# (os.fsdecode, git output read with errors="surrogateescape"); no file or terminal can hold those.
_SURROGATE = re.compile("[\udc80-\udcff]")


def mend(value: Any) -> Any:
    """``value`` (a string, or JSON-like data holding strings) with each byte that was not UTF-8
    written as ``\\xNN``: ``"bad\\udcff.txt"`` -> ``"bad\\\\xff.txt"``; everything else unchanged."""
    if isinstance(value, str):
        if not _SURROGATE.search(value):
            return value
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, list):
        return [mend(item) for item in value]
    if isinstance(value, dict):
        return {mend(k): mend(v) for k, v in value.items()}
    return value


def is_text(name: str) -> bool:
    """True when ``name`` came from valid UTF-8 (holds no surrogate escapes)."""
    return not _SURROGATE.search(name)


def model_json(model: BaseModel, **options: Any) -> str:
    """``model.model_dump_json(by_alias=True, indent=2, **options)``, with names that were not UTF-8
    mended (``mend``) rather than failing to serialise."""
    try:
        return model.model_dump_json(by_alias=True, indent=2, **options)
    except PydanticSerializationError:
        data = mend(model.model_dump(mode="json", by_alias=True, **options))
        return json.dumps(data, indent=2, ensure_ascii=False)


# In a lane's live output: strings a terminal acts on outside the screen's text (OSC: window title,
# clipboard, hyperlinks; DCS, SOS, PM, APC) and private modes (the alternate screen); all else, colours,
# carriage returns and cursor moves of progress bars included, passes as the command wrote it.
_LIVE_DROP = re.compile(
    rb"\x1b(?:\][^\x07\x1b]*(?:\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\|\[\?[0-9;]*[hl])|\x9d[^\x07\x9c]*[\x07\x9c]"
)
# An escape sequence cut off at the end of a chunk: held back until the next chunk completes it.
_LIVE_OPEN = re.compile(rb"\x1b(?:\][^\x07\x1b]*\x1b?|[PX^_][^\x1b]*\x1b?|\[\??[0-9;]*)?$")
_LIVE_HOLD = 4096


class LiveFilter:
    """Makes a lane's output safe to show live on a terminal, chunk by chunk (``feed``/``flush``):
    drops what would act outside the screen's text (see ``_LIVE_DROP``), even when a sequence is split
    across chunks; a sequence held longer than 4 KiB is dropped as it is."""

    def __init__(self) -> None:
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._held + chunk
        self._held = b""
        match = _LIVE_OPEN.search(data, max(0, len(data) - _LIVE_HOLD))
        if match and match.group(0):
            data, self._held = data[: match.start()], data[match.start() :]
        return _LIVE_DROP.sub(b"", data)

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return _LIVE_DROP.sub(b"", held) if not _LIVE_OPEN.fullmatch(held) else b""
