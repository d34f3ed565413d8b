"""The stall rule: stop a command that neither prints anything nor changes a file for a while.

``idle_timeout`` in the process runner watches output only; a code generator or a build can be
silent and busy. ``StallWatch`` also looks at the worktree: every few seconds it fingerprints
``git status`` (which files are changed or untracked, plus their size and mtime, plus HEAD), so any
write, new file or commit counts as progress. It stops the command through the cancel event every
backend already honours, and remembers that the stop was a stall rather than a cancel.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import types
from pathlib import Path

from spine.base.process import OutputSink
from spine.workspace.worktrees import LaneWorktree


def worktree_fingerprint(lane: LaneWorktree | Path) -> str:
    """A digest that changes whenever a file in the worktree is written, created, deleted or committed.

    ``git status`` runs through the worktree's registered git dir with programs switched off
    (``LaneWorktree.git``): the command is still running and may have rewritten its ``.git``. A bare
    path is taken as a checkout with its own ``.git`` directory.
    """
    if isinstance(lane, Path):
        lane = LaneWorktree(path=lane, git_dir=lane / ".git")
    worktree = lane.path
    proc = lane.git(
        "status",
        "--porcelain=v2",
        "--branch",
        "-z",
        "--untracked-files=all",
        "--ignore-submodules=all",
        check=False,
    )
    digest = hashlib.sha256(proc.stdout.encode("utf-8", "surrogateescape"))
    entries = proc.stdout.split("\0")
    skip_next = False
    for entry in entries:
        if skip_next:  # the original path of a rename
            skip_next = False
            continue
        path = _entry_path(entry)
        if entry.startswith("2 "):
            skip_next = True
        if path is None:
            continue
        try:
            st = os.lstat(worktree / path)
        except OSError:
            continue
        digest.update(f"\0{path}\0{st.st_size}\0{st.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _entry_path(entry: str) -> str | None:
    if entry.startswith("1 "):
        parts = entry.split(" ", 8)
    elif entry.startswith("2 "):
        parts = entry.split(" ", 9)
    elif entry.startswith("u "):
        parts = entry.split(" ", 10)
    elif entry.startswith(("? ", "! ")):
        return entry[2:]
    else:
        return None
    return parts[-1] if len(parts) > 1 else None


class StallWatch:
    """Watches output and worktree; sets ``stop`` when nothing happened for ``limit`` seconds.

    Pass ``stop`` to the backend as its cancel event and ``wrap(sink)`` as its output sink. A
    cancel of the lane (``cancel``) is forwarded to ``stop`` as well.
    """

    def __init__(
        self,
        worktree: LaneWorktree | Path,
        limit: float,
        cancel: threading.Event,
        interval: float | None = None,
    ) -> None:
        self.worktree = worktree
        self.limit = limit
        self.cancel = cancel
        self.interval = interval if interval is not None else max(0.2, min(limit / 4, 5.0))
        self.stop = threading.Event()
        self.stalled = False
        self._done = threading.Event()
        self._last_activity = time.monotonic()
        self._thread = threading.Thread(target=self._watch, name="spine-stall-watch", daemon=True)

    def wrap(self, sink: OutputSink | None) -> OutputSink:
        def on_output(stream: str, chunk: bytes) -> None:
            self._last_activity = time.monotonic()
            if sink is not None:
                sink(stream, chunk)

        return on_output

    def __enter__(self) -> StallWatch:
        self._last_activity = time.monotonic()
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        last = worktree_fingerprint(self.worktree)
        next_scan = time.monotonic() + self.interval
        # Wake often for a cancel, scan the worktree only every ``interval``.
        while not self._done.wait(min(0.1, self.interval)):
            if self.cancel.is_set():
                self.stop.set()
                return
            silent_for = time.monotonic() - self._last_activity
            # Scan on schedule, and always once more before declaring a stall.
            if time.monotonic() >= next_scan or silent_for >= self.limit:
                current = worktree_fingerprint(self.worktree)
                next_scan = time.monotonic() + self.interval
                if current != last:
                    last = current
                    self._last_activity = time.monotonic()
                    continue
            if silent_for >= self.limit:
                self.stalled = True
                self.stop.set()
                return
