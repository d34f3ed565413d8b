"""Where one ``spine run`` spends its time, from GIT_TRACE2 timestamps.

    .venv/bin/python benchmarks/lane_trace.py REPO [--runs 7] [-- SPINE_ARGV...]

Runs ``spine run -- sh -c 'echo done > bench-output.txt'`` in REPO (a repository whose pool is warm,
for a pooled lane) and splits each run's wall time into: process start to the first git process
(interpreter, imports, models, configuration), time inside git processes (and how many), Python
between git processes (including the command under its supervisor), and after the last git process.
Prints the run with the median total. Child processes of git (``maintenance run --auto``) are not
counted as spine's git processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path


def one(repo: Path, spine: list[str], n: int) -> tuple[float, float, float, float, float, int]:
    fd, trace = tempfile.mkstemp(suffix=".trace2")
    os.close(fd)
    env = {**os.environ, "GIT_TRACE2_EVENT": trace}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        started = time.time()
        subprocess.run(
            [*spine, "run", "-q", f"traced lane {n}", "--", "sh", "-c", "echo done > bench-output.txt"],
            cwd=repo,
            env=env,
            check=True,
            capture_output=True,
        )
        ended = time.time()
        spans: dict[str, list[float]] = {}
        for line in Path(trace).read_text().splitlines():
            event = json.loads(line)
            if "/" in event["sid"]:  # a process git itself started
                continue
            at = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
            if event["event"] == "start":
                spans[event["sid"]] = [at]
            elif event["event"] == "exit" and event["sid"] in spans:
                spans[event["sid"]].append(at)
    finally:
        os.unlink(trace)
    done = sorted((s[0], s[1]) for s in spans.values() if len(s) == 2)
    first, last = done[0][0], max(b for _, b in done)
    in_git = sum(b - a for a, b in done)
    return ended - started, first - started, in_git, (last - first) - in_git, ended - last, len(done)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("spine", nargs="*", help="how to start spine (default: this python -m spine)")
    args = parser.parse_args()
    spine = args.spine or [sys.executable, "-m", "spine"]
    results = sorted(one(args.repo, spine, n) for n in range(max(1, args.runs)))
    total, before, in_git, between, after, count = results[len(results) // 2]
    print(
        f"total {total * 1e3:.0f} ms | before the first git process {before * 1e3:.0f} ms | "
        f"in {count} git processes {in_git * 1e3:.0f} ms | between them {between * 1e3:.0f} ms | "
        f"after the last {after * 1e3:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
