"""Writing state files so that readers never see half of one, and never a secret."""

import contextlib
import os
import stat
import threading
from pathlib import Path

from spine.base.redact import redact_text


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
