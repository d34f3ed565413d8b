"""Writing state files so that readers never see half of one, and never a secret."""

import contextlib
import itertools
import json
import os
import re
import stat
import threading
from pathlib import Path

from spine.base.redact import redact_data, redact_text


def atomic_write_json(path: Path, text: str) -> None:
    """Write a JSON document atomically, with secrets masked in its text but never in its identifiers.

    ``text`` is the JSON as a model dumps it (``indent=2``); ids, refs and paths (``IDENTIFIER_KEYS``)
    are written as they are, because spine reads them back.
    """
    data = redact_data(json.loads(text))
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n", redact=False)


def atomic_write_text(path: Path, text: str, *, redact: bool = True, durable: bool = True) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new content, never a mix.

    The temporary file is named after the process and thread, not drawn by ``mkstemp``: only this
    thread of this process writes it, so a fixed name cannot collide, and it spares ``mkstemp``'s
    name search (a drive loop writes run.json a few hundred times). A writer killed mid-way leaves
    at most one such file per thread, which the next writer with that name overwrites. The data is
    fsynced before the rename: without it a power cut may leave an empty file behind the new name.
    ``durable=False`` skips the fsync for files whose loss in a power cut their readers survive (a
    killed writer still leaves the old or the new content: the kernel has the data before the
    rename). Every secret the process knows of is masked first (``spine.base.redact``).
    """
    if redact:
        text = redact_text(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_native_id()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            data = text.encode("utf-8")
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_regular(path: Path) -> tuple[os.stat_result, bytes | None] | None:
    """(status, bytes) of the file at ``path`` (links followed); bytes are None when it is not a
    regular file, which is never read (a FIFO a lane put where spine reads would block it forever).
    None when nothing can be opened there."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        return info, handle.read() if stat.S_ISREG(info.st_mode) else None


def write_new_file(path: Path, text: str) -> None:
    """Create the file ``path`` in a directory someone else controls (a lane's worktree) and write ``text``.

    Created with ``O_EXCL | O_NOFOLLOW``: whatever already stands at ``path`` (a file, a directory,
    a symlink a lane planted there) is neither followed nor replaced, and ``FileExistsError`` is
    raised. The text is written as given.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def inside(root: Path, rel: str) -> Path | None:
    """``root/rel`` when it is a regular file or directory reached without following any link and
    without leaving ``root``; None otherwise (a link a lane planted must never lead spine outside)."""
    if not rel or rel.startswith("/") or "\0" in rel:
        return None
    current = root
    for part in Path(rel).parts:
        if part in ("", ".", ".."):
            return None
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            return None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return None
    return current


def read_inside(root: Path, rel: str, limit: int = 64 << 20) -> bytes | None:
    """The bytes of regular file ``root/rel`` (see ``inside``), at most ``limit`` of them; None when
    it is not such a file. The final open refuses links too, so a swap after the check is caught."""
    path = inside(root, rel)
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(limit)
    finally:
        os.close(fd)


def glob_regex(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """A glob relative to a directory, as a regex over '/'-separated relative paths: ``*`` and ``?``
    stay within one path component, ``**`` spans any number of them, ``[...]`` is a character class."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", flags)


def glob_inside(root: Path, pattern: str) -> tuple[list[str], list[str]]:
    """(regular files, links) below ``root`` whose relative path matches ``pattern``, found without
    following any link: a link is listed as itself, never entered. ``.git`` is never looked into."""
    parts = Path(pattern).parts
    fixed = [p for p in itertools.takewhile(lambda part: not any(c in part for c in "*?["), parts[:-1])]
    start = root.joinpath(*fixed) if fixed else root
    if fixed and inside(root, "/".join(fixed)) is None:
        return [], ["/".join(fixed)] if os.path.lexists(start) else []
    regex = glob_regex(pattern)
    files: list[str] = []
    links: list[str] = []
    for current, dirs, names in os.walk(start, followlinks=False):
        here = Path(current)
        rel_here = here.relative_to(root).as_posix()
        prefix = "" if rel_here == "." else rel_here + "/"
        kept = []
        for name in dirs:
            if name == ".git":
                continue
            if os.path.islink(here / name):
                if regex.match(prefix + name) or "**" in pattern or pattern.count("/") > prefix.count("/"):
                    links.append(prefix + name)  # it, or something below it, could have matched
                continue
            kept.append(name)
        dirs[:] = kept
        for name in names:
            rel = prefix + name
            if name == ".git" or not regex.match(rel):
                continue
            if os.path.islink(here / name):
                links.append(rel)
            elif stat.S_ISREG(os.lstat(here / name).st_mode):
                files.append(rel)
    return sorted(files), sorted(links)
