"""Per-lane overhead of a backend relative to local-worktree, on the same lane.

Runs ``spine run --backend B "bench" -- true`` REPEAT times per backend in a scratch repository of
FILES small files and reports, per backend, the median wall-clock time of the whole ``spine run``
(the per-lane cost: worktree, sandbox setup, command, bringing changes back, commit, result) with
its difference and ratio to local-worktree, and the median duration of the command's run as the
backend reports it (for bubblewrap this includes building the namespaces).

    python benchmarks/backend_overhead.py [--repeat 11] [--files 200] [--backends local-worktree,bubblewrap,local-remote]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_repo(root: Path, files: int) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    for i in range(files):
        path = root / f"dir{i % 10}" / f"file{i}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"line {i}\n" * 20)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=root, check=True, env=env)


def one_lane(repo: Path, backend: str, n: int) -> tuple[float, float]:
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spine",
            "run",
            "--json",
            "-q",
            "--backend",
            backend,
            "--lane",
            f"b{n}",
            "bench",
            "--",
            "true",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    total = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{backend}: spine run failed ({proc.returncode}): {proc.stderr}")
    result = json.loads(proc.stdout)["data"]  # the result file, in spine's JSON envelope
    run_json = json.loads((Path(result["logPath"]).parents[2] / "run.json").read_text())
    return total, float(run_json["lanes"][f"b{n}"]["facts"]["execute"]["durationSeconds"])


def main() -> None:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # measure spine as installed: with bytecode
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--backends", default="local-worktree,bubblewrap,local-remote")
    args = parser.parse_args()
    backends = args.backends.split(",")
    with tempfile.TemporaryDirectory(prefix="spine-bench-") as tmp:
        repo = Path(tmp) / "repo"
        make_repo(repo, args.files)
        samples: dict[str, list[tuple[float, float]]] = {b: [] for b in backends}
        for n in range(args.repeat):  # interleaved, so drift in machine load hits every backend alike
            for backend in backends:
                samples[backend].append(one_lane(repo, backend, n * len(backends) + backends.index(backend)))
    base_total = statistics.median(t for t, _ in samples[backends[0]])
    base_exec = statistics.median(e for _, e in samples[backends[0]])
    print(f"{args.repeat} lanes per backend, {args.files} files, command `true`; medians in seconds")
    print(f"{'backend':16} {'spine run':>10} {'overhead':>9} {'ratio':>6}   {'execute':>8} {'overhead':>9}")
    for backend in backends:
        total = statistics.median(t for t, _ in samples[backend])
        execute = statistics.median(e for _, e in samples[backend])
        print(
            f"{backend:16} {total:10.3f} {total - base_total:+9.3f} {total / base_total:6.2f}   "
            f"{execute:8.3f} {execute - base_exec:+9.3f}"
        )


if __name__ == "__main__":
    main()
