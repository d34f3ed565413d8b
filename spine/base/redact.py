"""Keeping secrets out of everything spine writes or prints.

A secret is the value of a variable whose name looks like it holds a credential (``*_TOKEN``,
``*_API_KEY``, ``*PASSWORD*``, ``*SECRET*``...) in spine's environment or in the configuration, or a
value registered with ``register`` (a lane's ``--env`` values with such names). It is replaced by
``[REDACTED]`` wherever spine writes: every state file goes through ``spine.base.files``, which
redacts with ``process_redactor()``; lane output is redacted as it streams (``StreamRedactor``);
terminal messages and ``--json`` go through ``redact_text``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from collections.abc import Iterable, Mapping

MASK = b"[REDACTED]"

SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSW(OR)?D|PASSPHRASE|CREDENTIAL|PRIVATE|AUTH(?!OR)|COOKIE|SESSION_(KEY|ID)"
    r"|(^|_)(API|ACCESS|SIGNING|ENCRYPTION|MASTER)?_?KEYS?($|_)|APIKEY|ACCESSKEY|(^|_)PAT($|_)|(^|_)DSN($|_)",
    re.IGNORECASE,
)

# Names that match the pattern above but hold where something is, not a secret: a socket, a file,
# a directory, a process id, a desktop session's settings. Masking their values would mask paths.
NOT_SECRET_NAME = re.compile(
    r"(_SOCK|_SOCKET|_PID|_DIR|_PATH|_FILE|_HOME)$|^(XDG_|DBUS_|DESKTOP_|GNOME_|KDE_)|^XAUTHORITY$",
    re.IGNORECASE,
)

# Values this short or this common would blank out ordinary output, and are no secret anyway.
MIN_SECRET_LENGTH = 6
_NOT_SECRETS = frozenset({"true", "false", "none", "null", "yes", "no"})


@functools.lru_cache(maxsize=4096)
def looks_secret(name: str) -> bool:
    """True when a variable's name suggests it holds a token, key or password."""
    return bool(SECRET_NAME.search(name)) and not NOT_SECRET_NAME.search(name)


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


_registered: set[str] = set()
_cache: tuple[frozenset[str], Redactor] | None = None
_lock = threading.Lock()


def register(values: Iterable[str]) -> None:
    """Treat ``values`` as secrets in everything this process writes from now on."""
    with _lock:
        _registered.update(v for v in values if v)


def secret_values(env: Mapping[str, str] | None = None) -> frozenset[str]:
    """The secret values of ``env`` (default: this process's environment) plus the registered ones."""
    source = os.environ if env is None else env
    with _lock:
        found = set(_registered)
    found.update(value for name, value in source.items() if looks_secret(name))
    return frozenset(found)


def process_redactor() -> Redactor:
    """A redactor for every secret this process knows of now (rebuilt only when that set changes)."""
    global _cache
    values = secret_values()
    cached = _cache
    if cached is not None and cached[0] == values:
        return cached[1]
    redactor = Redactor(values)
    _cache = (values, redactor)
    return redactor


def redact_text(text: str) -> str:
    """``text`` with every secret this process knows of masked."""
    return process_redactor().redact_text(text)


# Keys whose values spine reads back as identifiers, refs or paths: never rewritten by redaction (a
# secret value that happens to equal part of one would otherwise corrupt the state).
IDENTIFIER_KEYS = frozenset(
    {
        "runId",
        "laneId",
        "id",
        "needs",
        "branch",
        "worktree",
        "worktreePath",
        "worktreeRoot",
        "logPath",
        "storedAt",
        "path",
        "paths",
        "resultPath",
        "debugPacket",
        "gitDir",
        "baseRef",
        "baseSha",
        "headSha",
        "sha",
        "targetRef",
        "targetSha",
        "stateDir",
        "recoveryRef",
        "recoveredRef",
        "laneHead",
        "targetBefore",
        "targetAfter",
        "checkout",
        "mergedTree",
        "mergeCommit",
        "revSha",
        "intoSha",
        "tree",
        "backend",
        "sandboxBackend",
        "step",
        "stepsDone",
        "currentStep",
        "status",
        "kind",
        "schemaVersion",
        "createdAt",
        "startedAt",
        "completedAt",
        "requestedAt",
        "stepStartedAt",
    }
)


def redact_data(data: object, redactor: Redactor | None = None) -> object:
    """``data`` (parsed JSON) with secrets masked in every string, except values under ``IDENTIFIER_KEYS``
    and mapping keys (lane ids)."""
    active = redactor if redactor is not None else process_redactor()
    if not active:
        return data

    def walk(value: object, key: str | None) -> object:
        if isinstance(value, str):
            return value if key in IDENTIFIER_KEYS else active.redact_text(value)
        if isinstance(value, list):
            return [walk(item, key) for item in value]
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        return value

    return walk(data, None)
