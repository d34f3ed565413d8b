"""Generate benchmark repositories quickly: every blob goes through one ``git fast-import`` stream.

A repository of N files gets a first commit with all of them and a few more commits that each
change about one percent of the files, so history, packs and the index look like a real project's.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

FILES_PER_DIR = 50
LATER_COMMITS = 4
IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def _path(i: int) -> str:
    top, rest = divmod(i // FILES_PER_DIR, 40)
    return f"src/pkg{top:03d}/mod{rest:02d}/file{i:06d}.txt"


def _content(rng: random.Random, i: int, version: int) -> bytes:
    words = " ".join(f"w{rng.randrange(10_000)}" for _ in range(rng.randrange(20, 60)))
    return f"file {i} version {version}\n{words}\n".encode()


def generate(root: Path, files: int, seed: int = 7) -> Path:
    """Create a repository with ``files`` tracked files and several commits at ``root``; return it."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=False)
    env = {**os.environ, **IDENTITY}
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True, env=env)
    chunks: list[bytes] = []
    mark = 0

    def blob(data: bytes) -> int:
        nonlocal mark
        mark += 1
        chunks.append(b"blob\nmark :%d\ndata %d\n%s\n" % (mark, len(data), data))
        return mark

    def commit(message: str, changes: list[tuple[str, int]], stamp: int) -> None:
        msg = message.encode()
        chunks.append(
            b"commit refs/heads/main\n"
            b"author Bench <bench@example.com> %d +0000\n"
            b"committer Bench <bench@example.com> %d +0000\n"
            b"data %d\n%s\n" % (stamp, stamp, len(msg), msg)
        )
        chunks.extend(b"M 100644 :%d %s\n" % (m, p.encode()) for p, m in changes)
        chunks.append(b"\n")

    stamp = 1_700_000_000
    readme = blob(b"# benchmark repository\n")
    ignore = blob(b"*.log\nbuild/\n")
    first = [("README.md", readme), (".gitignore", ignore)]
    first += [(_path(i), blob(_content(rng, i, 0))) for i in range(max(0, files - 2))]
    commit("initial import", first, stamp)
    for n in range(1, LATER_COMMITS + 1):
        picked = rng.sample(range(max(1, files - 2)), k=max(1, (files - 2) // 100))
        changes = [(_path(i), blob(_content(rng, i, n))) for i in sorted(picked)]
        commit(f"change {len(changes)} files (round {n})", changes, stamp + n * 3600)
    subprocess.run(["git", "fast-import", "--quiet"], cwd=root, input=b"".join(chunks), check=True, env=env)
    # Populate the primary checkout (one process, no per-file git add) and pack the history.
    subprocess.run(["git", "checkout", "-q", "-f", "main"], cwd=root, check=True, env=env)
    subprocess.run(
        ["git", "gc", "-q", "--aggressive" if files <= 1000 else "--auto"], cwd=root, check=True, env=env
    )
    return root
