"""Time against output size: a command printing N MB, alone and under `spine run`, with and without
carriage returns (a progress bar redrawing one line), and the size of the state files it leaves.

Run: python benchmarks/output_size.py [--sizes 1 5 10 20] [--repeat 3]

The variants of one size are interleaved in rotating order (the machine is shared and noisy); each
row gives the median with min/max of the command alone (the floor) and under spine, their ratio,
and the largest of result.json and run.json. Linear handling shows as a difference (spine's own
start-up and lane work) that does not grow with the size, and state files that stay small.
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

PRINTER = r"""
import sys
size, sep = int(sys.argv[1]), sys.argv[2]
frame = ("x" * 99 + ("\r" if sep == "cr" else "\n")).encode()
out = sys.stdout.buffer
for _ in range(size // len(frame)):
    out.write(frame)
out.write(b"\ndone\n")
"""


def make_repo(root: Path) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    (root / "README").write_text("bench\n")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=root, check=True, env=env)


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def state_size(root: Path) -> int:
    runs = root / ".git" / "spine" / "runs"
    sizes = [p.stat().st_size for p in runs.rglob("*.json")] if runs.is_dir() else [0]
    return max(sizes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 5, 10, 20], help="megabytes of output")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{'MB':>4} {'sep':>4} {'alone s (min-max)':>20} {'spine s (min-max)':>20} {'spine - alone':>14}"
        f" {'largest state file':>19}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        make_repo(root)
        script = Path(tmp) / "printer.py"
        script.write_text(PRINTER)
        for mb in args.sizes:
            size = mb * 1_000_000
            for sep in ("nl", "cr"):
                command = [sys.executable, str(script), str(size), sep]
                spine = [
                    sys.executable,
                    "-m",
                    "spine",
                    "run",
                    "-q",
                    "--keep-worktree",
                    f"print {mb} MB",
                    "--",
                    *command,
                ]
                variants = {"alone": command, "spine": spine}
                times: dict[str, list[float]] = {"alone": [], "spine": []}
                order = list(variants)
                for round_ in range(args.repeat):
                    for name in order[round_ % 2 :] + order[: round_ % 2]:
                        times[name].append(timed(variants[name], root))
                largest = state_size(root)
                alone, under = (statistics.median(times[n]) for n in ("alone", "spine"))
                print(
                    f"{mb:>4} {sep:>4} {alone:>8.2f} ({min(times['alone']):.2f}-{max(times['alone']):.2f})"
                    f" {under:>8.2f} ({min(times['spine']):.2f}-{max(times['spine']):.2f})"
                    f" {under - alone:>12.2f} s {largest:>16,d} B"
                )


if __name__ == "__main__":
    main()
