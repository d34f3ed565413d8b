"""Cost of one stall-rule scan (``worktree_fingerprint``) on repositories of growing size.

Run: python benchmarks/stall_fingerprint.py [--files 1000 10000] [--repeat 15]

Prints, per repository size, the median time of one scan with a clean worktree and with 1% of the
files modified, and its ratio to the scan interval spine uses for that stall time (the share of one
core the watcher costs while a lane runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from spine.lane.stall import worktree_fingerprint


def make_repo(root: Path, files: int) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for i in range(files):
        path = root / f"d{i // 100:04d}" / f"f{i:06d}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"{i}\n")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "files"], cwd=root, check=True, env=env)


def median_scan(root: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        worktree_fingerprint(root)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(f"{'files':>7} {'clean ms':>9} {'1% dirty ms':>12} {'share of 1 core at 5m stall (5s scans)':>40}")
    for files in args.files:
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
            root = Path(tmp) / "repo"
            make_repo(root, files)
            clean = median_scan(root, args.repeat)
            for i in range(0, files, 100):
                (root / f"d{i // 100:04d}" / f"f{i:06d}.txt").write_text("changed\n")
            dirty = median_scan(root, args.repeat)
            share = dirty / 5.0
            print(f"{files:>7} {clean * 1000:>9.1f} {dirty * 1000:>12.1f} {share:>39.2%}")


if __name__ == "__main__":
    main()
