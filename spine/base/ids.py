"""Identifiers that become paths and branch names, and durations given on the command line."""

from __future__ import annotations

import math
import re
import secrets
import time
import unicodedata
from datetime import UTC, datetime

from spine.base.errors import UsageError

_ID = re.compile(r"^[A-Za-z0-9._-]+$")
_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*$"
)

LONGEST_DURATION = 366 * 24 * 3600.0


def id_problem(value: str) -> str | None:
    """Say why ``value`` cannot be a run or lane id, or return None when it can."""
    if not value:
        return "it is empty"
    if len(value) > 100:
        return "it is longer than 100 characters"
    if not _ID.match(value):
        return "it may only contain letters, digits, '.', '_' and '-'"
    if value.startswith((".", "-")):
        return "it may not start with '.' or '-'"
    if value.endswith((".lock", ".")):
        return "it may not end with '.lock' or '.'"
    if ".." in value:
        return "it may not contain '..'"
    return None


def check_id(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid id, else raise a UsageError naming ``kind``."""
    problem = id_problem(value)
    if problem:
        raise UsageError(
            f"invalid {kind} {value!r}: {problem}",
            f"use something like 'fix-parser' or 'lane_2' ({kind}s become branch names and paths)",
        )
    return value


def slugify(text: str, limit: int = 40) -> str:
    """Turn free text (an objective) into a valid lane id: lower case ASCII letters, digits and
    dashes, at most ``limit`` characters. Accented letters lose their accents (``café`` -> ``cafe``,
    ``straße`` -> ``strasse``); what has no ASCII form (emoji, other scripts) becomes a dash, and
    text with nothing left gives ``lane``."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    slug = re.sub(r"[^a-z0-9]+", "-", plain).strip("-")
    slug = slug[:limit].rstrip("-")
    return slug or "lane"


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus four hex digits, e.g. 20261121-193012-a3f9.

    The first two hex digits are the fraction of the second (in 1/256ths), so ids of runs started
    within the same second still sort by start time; the last two are random.
    """
    now = time.time()
    fraction = int((now % 1) * 256)
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f"-{fraction:02x}{secrets.token_hex(1)}"


def parse_duration(value: object) -> float:
    """Parse ``90``, ``90s``, ``10m``, ``1h`` or ``1h30m`` into seconds; anything else is a ValueError."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a duration such as 90, 90s, 10m or 1h30m, not {_kind(value)}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match or not any(match.groups()):
            raise ValueError(f"{value!r} is not a duration; use seconds or a unit, e.g. 90, 90s, 10m, 1h30m")
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a duration; give a finite number of seconds, e.g. 90 or 10m")
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    if seconds > LONGEST_DURATION:
        # Timers refuse much longer waits (threading.TIMEOUT_MAX): refuse them here, not mid-run.
        raise ValueError(f"{value!r} is longer than a year; give a shorter limit, or none for no limit")
    return seconds


def _kind(value: object) -> str:
    """How an error names a value of the wrong type: 'a list', 'a mapping', 'true'."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def format_duration(seconds: float) -> str:
    """Render seconds the way a person says them: 45s, 12m, 1h30m."""
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"


def now_iso() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
