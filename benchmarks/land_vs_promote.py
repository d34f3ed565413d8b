"""Landing 20 independent lanes: ``spine land RUN`` against ``spine promote RUN/LANE --gate`` one by one.

Usage: python benchmarks/land_vs_promote.py [--samples 3] [--lanes 20] [--files 300]

One throwaway repository (``--files`` Python modules; the gate check byte-compiles the whole tree,
as a cheap test suite would touch it). Each sample runs two fresh batches of ``--lanes`` lanes that
each add one module, then lands one batch with ``spine land`` and the other by promoting its lanes
one after another with ``--gate`` (strategy merge for both), alternating which goes first. Every
gate is cold: each landing makes trees no gate saw before. The floor, measured in the same run after
each sample, is one cold ``spine gate`` of the target's tree: what any landing that tests the
result must pay at least once. Prints medians with min/max, the gate runs each way, and ratios.
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

CHECK = f"{sys.executable} -m compileall -q -j 1 ."


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def spine(*args: str, cwd: Path, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "spine", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode not in ok:
        raise SystemExit(f"spine {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


def make_repo(root: Path, files: int) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    for i in range(files):
        (repo / f"mod_{i:04d}.py").write_text(f"def f_{i}(x):\n    return x + {i}\n")
    (repo / ".spine.yaml").write_text(
        f"gate:\n  checks:\n    - name: compile\n      command: {json.dumps(CHECK)}\n"
    )
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "initial", cwd=repo)
    return repo


def make_run(repo: Path, run_id: str, lanes: int) -> list[str]:
    """A finished run of ``lanes`` lanes, each adding its own module."""
    ids = [f"l{k:02d}" for k in range(lanes)]
    batch = repo.parent / f"{run_id}.yaml"
    lines = ["lanes:"]
    for lane in ids:
        command = f"printf 'VALUE = 1\\n' > added_{run_id}_{lane}.py"
        lines.append(f"  - {{id: {lane}, objective: add a module, command: {json.dumps(command)}}}")
    batch.write_text("\n".join(lines) + "\n")
    spine("batch", str(batch), "--run-id", run_id, "-j", "2", cwd=repo)
    return ids


def land_all(repo: Path, run_id: str, lanes: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    spine("land", run_id, "-q", cwd=repo)
    elapsed = time.perf_counter() - started
    state = json.loads((repo / ".git" / "spine" / "runs" / run_id / "land.json").read_text())
    landed = [d for d in state["decisions"] if d["outcome"] == "landed"]
    if len(landed) != len(lanes):
        raise SystemExit(f"spine land landed {len(landed)} of {len(lanes)} lanes")
    return elapsed, int(state["gateRuns"])


def promote_each(repo: Path, run_id: str, lanes: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    for lane in lanes:
        spine("promote", f"{run_id}/{lane}", "--gate", cwd=repo)
    return time.perf_counter() - started, len(lanes)


def floor(repo: Path) -> float:
    started = time.perf_counter()
    spine("gate", "main", "--into", "main", "--retest", "-q", cwd=repo)
    return time.perf_counter() - started


def show(label: str, samples: list[float]) -> str:
    return (
        f"{label:34s} median {statistics.median(samples):7.2f} s  "
        f"(min {min(samples):.2f}, max {max(samples):.2f}, n={len(samples)})"
    )


def main() -> None:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # measure spine as installed: with bytecode
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--lanes", type=int, default=20)
    parser.add_argument("--files", type=int, default=300)
    opts = parser.parse_args()
    home = tempfile.mkdtemp(prefix="spine-bench-home-")
    gitconfig = Path(home) / ".gitconfig"
    gitconfig.write_text("[user]\n\tname = Bench\n\temail = bench@example.com\n")
    os.environ.update({"HOME": home, "GIT_CONFIG_GLOBAL": str(gitconfig), "GIT_CONFIG_NOSYSTEM": "1"})
    times: dict[str, list[float]] = {"land": [], "promote": [], "floor": []}
    gates: dict[str, list[int]] = {"land": [], "promote": []}
    with tempfile.TemporaryDirectory(prefix="spine-bench-") as tmp:
        repo = make_repo(Path(tmp), opts.files)
        print(
            f"{opts.lanes} independent lanes, {opts.files + 1}-file repository, gate check: compileall; "
            f"{opts.samples} samples, interleaved",
            flush=True,
        )
        for sample in range(opts.samples):
            order = ["land", "promote"] if sample % 2 == 0 else ["promote", "land"]
            for variant in order:
                run_id = f"s{sample}-{variant}"
                lanes = make_run(repo, run_id, opts.lanes)  # not timed
                elapsed, gate_runs = (land_all if variant == "land" else promote_each)(repo, run_id, lanes)
                times[variant].append(elapsed)
                gates[variant].append(gate_runs)
                print(
                    f"  sample {sample + 1} {variant:8s} {elapsed:6.2f} s, {gate_runs} gate runs", flush=True
                )
            times["floor"].append(floor(repo))
    print(show(f"spine land RUN ({opts.lanes} lanes)", times["land"]))
    print(show(f"spine promote --gate, {opts.lanes}x", times["promote"]))
    print(show("floor: one cold spine gate", times["floor"]))
    land, promote, one = (statistics.median(times[k]) for k in ("land", "promote", "floor"))
    print(
        f"gate runs: land {statistics.median(gates['land']):.0f}, promote one by one "
        f"{statistics.median(gates['promote']):.0f}"
    )
    print(f"promote one by one / land: {promote / land:5.1f}x")
    print(f"land / floor: {land / one:5.1f}x;  promote one by one / floor: {promote / one:5.1f}x")


if __name__ == "__main__":
    main()
