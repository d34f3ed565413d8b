"""Wall time of a batch of N lanes running `true` at --jobs J, against N single `spine run`s.

Also reports the batch driver's peak memory (max RSS of the `spine batch` process, from wait4).
Each measurement is taken in a fresh temporary repository; medians of --repeat rounds are printed.

    python benchmarks/batch_vs_runs.py --lanes 50 --jobs 2 --repeat 3
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


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    (repo / "README.md").write_text("bench\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True, env=env)
    return repo


def spine(*args: str, cwd: Path) -> tuple[float, int, int]:
    """Run spine; return (seconds, exit code, peak RSS in KiB of that process)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "spine", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, proc.returncode, usage.ru_maxrss


def one_round(lanes: int, jobs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp))
        batch = Path(tmp) / "lanes.json"
        batch.write_text(
            json.dumps(
                {
                    "lanes": [
                        {"id": f"l{i}", "objective": f"lane {i}", "command": ["true"]} for i in range(lanes)
                    ]
                }
            )
        )
        batch_time, code, rss = spine("batch", str(batch), "-j", str(jobs), cwd=repo)
        assert code == 0, "the batch failed"
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp))
        runs_time = 0.0
        for i in range(lanes):
            seconds, code, _ = spine("run", f"lane {i}", "--", "true", cwd=repo)
            assert code == 0, "a run failed"
            runs_time += seconds
    return {"batch": batch_time, "runs": runs_time, "rss_kib": rss}


def main() -> None:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # measure spine as installed: with bytecode
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lanes", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rounds = [one_round(args.lanes, args.jobs) for _ in range(args.repeat)]
    batch = statistics.median(r["batch"] for r in rounds)
    runs = statistics.median(r["runs"] for r in rounds)
    rss = statistics.median(r["rss_kib"] for r in rounds)
    print(f"{args.lanes} lanes of `true`, {args.repeat} rounds (medians):")
    print(
        f"  spine batch -j {args.jobs}:        {batch:6.2f} s  ({batch / args.lanes * 1000:.0f} ms per lane)"
    )
    print(f"  {args.lanes} x spine run (sum):  {runs:6.2f} s  ({runs / args.lanes * 1000:.0f} ms per lane)")
    print(f"  ratio runs / batch:       {runs / batch:6.2f}x")
    print(f"  batch driver peak RSS:    {rss / 1024:6.1f} MiB")


if __name__ == "__main__":
    main()
