"""Gate time on the same merged tree: cold (checks run, --retest) against cached.

Usage: python benchmarks/gate_cache.py [--runs 7] [--files 300]

Builds a throwaway repository (main and a feature branch that have both moved on, ``--files``
tracked files), then times ``spine gate feature --into main`` end to end as a subprocess, the way a
hook or CI job runs it. Prints the median of ``--runs`` runs for each case and the ratio.
Two check sets: a no-op check (what the gate itself costs) and a check that does some work.
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

CHECK_SETS = {
    "no-op check (true)": ["true"],
    "python compileall of the tree": [f"{sys.executable} -m compileall -q ."],
}


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_repo(root: Path, files: int) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    for i in range(files):
        (repo / f"mod_{i}.py").write_text(f"def f_{i}(x):\n    return x + {i}\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "initial", cwd=repo)
    git("checkout", "-q", "-b", "feature", cwd=repo)
    (repo / "feature.py").write_text("FEATURE = True\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "feature", cwd=repo)
    git("checkout", "-q", "main", cwd=repo)
    (repo / "main.py").write_text("MAIN = True\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "main moved", cwd=repo)
    return repo


def timed(repo: Path, args: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "spine", "gate", "feature", "--into", "main", "-q", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"gate failed: {proc.stdout}{proc.stderr}")
    return elapsed


def main() -> None:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # measure spine as installed: with bytecode
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--files", type=int, default=300)
    opts = parser.parse_args()
    env_home = tempfile.mkdtemp(prefix="spine-bench-home-")
    gitconfig = Path(env_home) / ".gitconfig"
    gitconfig.write_text("[user]\n\tname = Bench\n\temail = bench@example.com\n")
    os.environ.update({"HOME": env_home, "GIT_CONFIG_GLOBAL": str(gitconfig), "GIT_CONFIG_NOSYSTEM": "1"})
    with tempfile.TemporaryDirectory(prefix="spine-bench-") as tmp:
        repo = make_repo(Path(tmp), opts.files)
        print(f"repository: {opts.files + 2} files; {opts.runs} runs per case; medians")
        for label, checks in CHECK_SETS.items():
            check_args = [a for c in checks for a in ("--check", c)]
            timed(repo, check_args)  # warm the file cache and write the verdict
            cold = statistics.median(timed(repo, [*check_args, "--retest"]) for _ in range(opts.runs))
            cached = statistics.median(timed(repo, check_args) for _ in range(opts.runs))
            print(
                f"{label:32s} cold {cold * 1000:7.0f} ms  cached {cached * 1000:6.0f} ms  ratio {cold / cached:5.1f}x"
            )


if __name__ == "__main__":
    main()
