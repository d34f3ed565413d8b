"""How long a shell waits for spine's completions, against the floor of starting spine at all.

In a scratch repository with RUNS recorded runs of two lanes each, times (interleaved, REPEAT rounds)
``spine --version`` (the floor: the interpreter, click and spine's entry point) and the completion
requests a shell makes on TAB: run ids (``spine show <TAB>``), a run's lanes (``spine show RUN/<TAB>``)
and backend names (``spine run --backend <TAB>``). Prints median, min and max of each and its ratio
to the floor.

    python benchmarks/completion.py [--repeat 21] [--runs 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPINE = str(Path(sys.executable).with_name("spine"))


def make_repo(root: Path, runs: int) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    (root / "README.md").write_text("bench\n")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=root, check=True, env=env)
    lanes = root.parent / "lanes.yaml"
    lanes.write_text(
        "lanes:\n  - {id: one, objective: one, command: 'true'}\n"
        "  - {id: two, objective: two, command: 'true'}\n"
    )
    for n in range(runs):
        subprocess.run(
            [SPINE, "batch", str(lanes), "--plan", "--run-id", f"run-{n:03d}"],
            cwd=root,
            check=True,
            capture_output=True,
            env=env,
        )


def timed(repo: Path, line: str | None) -> float:
    env = dict(os.environ)
    args = [SPINE, "--version"]
    if line is not None:
        words = line.split(" ")
        env.update(_SPINE_COMPLETE="bash_complete", COMP_WORDS=line, COMP_CWORD=str(len(words) - 1))
        args = [SPINE]
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0 or (line is not None and not proc.stdout.strip()):
        raise SystemExit(f"{line!r}: exit {proc.returncode}, stdout {proc.stdout!r}, stderr {proc.stderr!r}")
    return elapsed


def main() -> None:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # measure spine as installed: with bytecode
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    variants: dict[str, str | None] = {
        "spine --version (floor)": None,
        "spine show <TAB>": "spine show ",
        "spine show run-007/<TAB>": "spine show run-007/",
        "spine run --backend <TAB>": "spine run --backend ",
    }
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        make_repo(repo, args.runs)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for line in variants.values():  # warm the caches once
            timed(repo, line)
        for _ in range(args.repeat):
            for name, line in variants.items():  # interleaved: a busy moment hits every variant alike
                times[name].append(timed(repo, line))
    floor = statistics.median(times["spine --version (floor)"])
    print(f"{args.runs} runs, {args.repeat} rounds")
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"  {name:28} median {median * 1000:6.0f} ms  min {min(values) * 1000:6.0f}  "
            f"max {max(values) * 1000:6.0f}  x{median / floor:.2f} of the floor (+{(median - floor) * 1000:.0f} ms)"
        )


if __name__ == "__main__":
    main()
