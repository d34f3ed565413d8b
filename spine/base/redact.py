"""Keeping secrets out of logs and result files.

A variable whose name looks like it holds a credential (``*_TOKEN``, ``*_API_KEY``, ``*PASSWORD*``,
``*SECRET*``...) has its value replaced by ``[REDACTED]`` wherever spine writes what a command
printed: the lane log, the terminal echo, the output tail in run.json and the result file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

MASK = b"[REDACTED]"

SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSW(OR)?D|PASSPHRASE|CREDENTIAL|PRIVATE|AUTH(?!OR)|COOKIE|SESSION"
    r"|(^|_)(API|ACCESS|SIGNING|ENCRYPTION|MASTER)?_?KEYS?($|_)|APIKEY|ACCESSKEY|(^|_)PAT($|_)|(^|_)DSN($|_)",
    re.IGNORECASE,
)

# Values this short or this common would blank out ordinary output, and are no secret anyway.
MIN_SECRET_LENGTH = 6
_NOT_SECRETS = frozenset({"true", "false", "none", "null", "yes", "no"})


def looks_secret(name: str) -> bool:
    """True when a variable's name suggests it holds a token, key or password."""
    return bool(SECRET_NAME.search(name))


class Redactor:
    """Replaces known secret values in bytes and text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[bytes] = set()
        for value in secrets:
            if len(value) < MIN_SECRET_LENGTH or value.lower() in _NOT_SECRETS:
                continue
            forms.add(value.encode())
            forms.add(json.dumps(value)[1:-1].encode())  # as it appears inside a JSON string
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile(b"|".join(re.escape(s) for s in self._secrets)) if forms else None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Redactor:
        """A redactor for every variable of ``env`` whose name looks secret."""
        return cls(value for name, value in env.items() if looks_secret(name))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def redact(self, data: bytes) -> bytes:
        return self._pattern.sub(MASK, data) if self._pattern else data

    def redact_text(self, text: str) -> str:
        if not self._pattern:
            return text
        return self.redact(text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")

    def held_back(self, data: bytes) -> int:
        """How many trailing bytes of ``data`` could be the start of a secret split across chunks."""
        longest = 0
        for secret in self._secrets:
            for size in range(min(len(secret) - 1, len(data)), longest, -1):
                if data.endswith(secret[:size]):
                    longest = size
                    break
        return longest


class StreamRedactor:
    """Redacts a stream delivered in chunks, holding back only what might be a split secret."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        if not self._redactor:
            return chunk
        data = self._redactor.redact(self._pending + chunk)
        keep = self._redactor.held_back(data)
        self._pending = data[len(data) - keep :] if keep else b""
        return data[: len(data) - keep] if keep else data

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return self._redactor.redact(rest)
