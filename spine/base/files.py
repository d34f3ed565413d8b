"""Writing files so that readers never see half of one."""

import contextlib
import os
import threading
from pathlib import Path


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new content, never a mix.

    The temporary file is named after the process and thread, not drawn by ``mkstemp``: only this
    thread of this process writes it, so a fixed name cannot collide, and it spares ``mkstemp``'s
    name search (a drive loop writes run.json a few hundred times). A writer killed mid-way leaves
    at most one such file per thread, which the next writer with that name overwrites. The data is
    fsynced before the rename: without it a power cut may leave an empty file behind the new name.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_native_id()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            data = text.encode("utf-8")
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
