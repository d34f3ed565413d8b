"""spine's benchmark suite: one command, every measurement next to a plain-git baseline from the same run.

    .venv/bin/python benchmarks/run.py                       # sizes 100, 5000, 50000; a few minutes
    .venv/bin/python benchmarks/run.py --sizes 5000 --repeat 9 --json before.json

For each repository size it generates a repository with real history (``repogen.py``, one
``git fast-import`` stream) and measures:

- one lane with the worktree pool switched off: ``spine run -- sh -c 'echo done > bench-output.txt'``
  against the same steps by hand (``git worktree add -b``, run the command, ``git add -A``,
  ``git commit``, write a JSON file);
- the same lane with the worktree pool (the default) against the reuse floor (the same lane in one
  reused worktree with plain git: force-checkout the base detached, clean, switch to a new branch,
  run, add, commit, JSON, detach), and the lane setup (the ``create_worktree`` step as recorded in
  run.json) against a fresh ``git worktree add``; by hand, pool off, pool on and the floor are
  interleaved sample by sample in an order that rotates each round;
- the git processes spine starts for one lane, counted by a ``git`` shim on PATH;
- the driver's peak memory (VmHWM of the spine process itself, not of the git processes it starts);
- a batch of 50 lanes with ``spine batch FILE --jobs 2``, pool off, against 50 by-hand lanes two at
  a time (on ``--batch-size`` only, default 5000; ``--batch-repeat`` samples, default 1), and the
  same batch with the worktree pool against the reuse floor in two reused worktrees;
- ``spine gate`` cold (``--no-cache``) against cached, and against a by-hand merge-and-check.

Start-up (``spine --help``, ``spine status``, ``spine show``) is measured once against
``python -c "import click"``. Commands that this spine does not have are reported as not available.
Medians, min/max and ratios are printed; ``--json`` saves them for comparison across commits.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import repogen

LANE_COMMAND = "echo done > bench-output.txt"
BATCH_LANES = 50

# Runs spine's CLI in this interpreter and writes the process's own peak RSS (KiB) to a file, so
# the driver's memory is measured without the git processes it starts. VmHWM, not ru_maxrss: Linux
# carries ru_maxrss across exec, so it would report the (large) benchmark process that started us.
MEMORY_WRAPPER = """
import atexit, sys
out = sys.argv[1]
def _peak():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(out, "w") as handle:
        handle.write(peak)
atexit.register(_peak)
sys.argv = ["spine", *sys.argv[2:]]
from spine.cli import main
main()
"""


@dataclass
class Measure:
    """One measured quantity: its samples, and optionally the baseline it is compared with."""

    group: str
    name: str
    size: int | None
    samples: list[float] = field(default_factory=list)
    unit: str = "s"
    baseline: Measure | None = None
    note: str = ""
    target: float | None = None  # the ratio spine aims to stay under

    def stats(self) -> dict[str, float]:
        return {
            "median": statistics.median(self.samples),
            "min": min(self.samples),
            "max": max(self.samples),
        }

    @property
    def ratio(self) -> float | None:
        if not self.samples or self.baseline is None or not self.baseline.samples:
            return None
        base = statistics.median(self.baseline.samples)
        return statistics.median(self.samples) / base if base else None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"group": self.group, "name": self.name, "size": self.size, "unit": self.unit}
        if self.samples:
            data.update(self.stats())
            data["samples"] = [round(s, 6) for s in self.samples]
        else:
            data["available"] = False
        if self.baseline is not None:
            data["baseline"] = self.baseline.name
            data["ratio"] = self.ratio
        if self.target is not None:
            data["target"] = self.target
        if self.note:
            data["note"] = self.note
        return data


class Bench:
    """Shared state of one benchmark run: the environment, the spine to measure, the results."""

    def __init__(
        self, workdir: Path, repeat: int, spine_argv: list[str], python: str, batch_repeat: int = 1
    ) -> None:
        self.workdir = workdir
        self.repeat = repeat
        self.batch_repeat = batch_repeat
        self.spine_argv = spine_argv
        self.python = python
        self.results: list[Measure] = []
        self.notes: list[str] = []
        home = workdir / "home"
        home.mkdir()
        gitconfig = home / ".gitconfig"
        gitconfig.write_text(
            "[user]\n\tname = Bench\n\temail = bench@example.com\n[init]\n\tdefaultBranch = main\n"
            "[gc]\n\tauto = 0\n"
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "SPINE_"))}
        # An installed spine has compiled bytecode (pip writes it). With PYTHONDONTWRITEBYTECODE set
        # and spine installed editable, every start would compile spine's sources again (30-40 ms).
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env.update({"HOME": str(home), "GIT_CONFIG_GLOBAL": str(gitconfig), "GIT_CONFIG_NOSYSTEM": "1"})
        self._counter = 0

    # --- helpers ----------------------------------------------------------------------------

    def next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter:04d}"

    def add(self, measure: Measure) -> Measure:
        self.results.append(measure)
        return measure

    def run(
        self, argv: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=env or self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        return proc

    def timed(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
        started = time.perf_counter()
        self.run(argv, cwd, env)
        return time.perf_counter() - started

    def spine(self, *args: str) -> list[str]:
        return [*self.spine_argv, *args]

    def has_command(self, name: str, cwd: Path) -> bool:
        return self.run(self.spine(name, "--help"), cwd, check=False).returncode == 0

    def spine_with_memory(self, args: list[str], cwd: Path) -> tuple[float, float]:
        """Run spine; return (seconds, peak RSS of the spine process in MiB)."""
        fd, out = tempfile.mkstemp(dir=self.workdir, suffix=".rss")
        os.close(fd)
        try:
            took = self.timed([self.python, "-c", MEMORY_WRAPPER, out, *args], cwd)
            return took, int(Path(out).read_text() or 0) / 1024
        finally:
            os.unlink(out)

    def remove_worktrees(self, repo: Path) -> None:
        """Remove every linked worktree and the spine state; not timed."""
        listing = self.run(["git", "worktree", "list", "--porcelain"], repo).stdout
        for block in listing.split("\n\n")[1:]:
            line = block.splitlines()[0] if block.strip() else ""
            if line.startswith("worktree "):
                shutil.rmtree(line.removeprefix("worktree "), ignore_errors=True)
        self.run(["git", "worktree", "prune"], repo)
        shutil.rmtree(repo / ".git" / "spine", ignore_errors=True)
        # Write back what removing (and creating) thousands of files left dirty, so that the next
        # timed phase does not pay for the previous one's disk work.
        os.sync()


# --- by-hand baselines ------------------------------------------------------------------------


def lane_by_hand(
    bench: Bench,
    repo: Path,
    lane: str,
    env: dict[str, str] | None = None,
    add_lock: threading.Lock | None = None,
) -> dict[str, float]:
    """The steps of a lane done with plain git; returns the time of each step and the total.

    ``add_lock`` serialises ``git worktree add`` between parallel lanes, as spine does: two at once
    can fail ("failed to read .git/worktrees/<name>/commondir").
    """
    path = bench.workdir / "hand" / repo.name / lane
    path.parent.mkdir(parents=True, exist_ok=True)
    times = {}
    started = time.perf_counter()
    with add_lock or contextlib.nullcontext():
        times["worktree_add"] = bench.timed(
            ["git", "worktree", "add", "--quiet", "-b", f"hand/{lane}", str(path), "main"], repo, env
        )
    bench.run(["/bin/sh", "-c", LANE_COMMAND], path, env)
    bench.run(["git", "add", "-A"], path, env)
    bench.run(["git", "commit", "--quiet", "--no-verify", "-m", f"lane {lane}"], path, env)
    result = {"lane": lane, "status": "succeeded", "worktree": str(path), "branch": f"hand/{lane}"}
    (path.parent / f"{lane}.json").write_text(json.dumps(result) + "\n")
    times["total"] = time.perf_counter() - started
    return times


def spine_lane(bench: Bench, repo: Path, lane: str) -> tuple[float, float, dict[str, Any]]:
    """One ``spine run``; returns (seconds, peak MiB, the lane's state from run.json)."""
    took, peak = bench.spine_with_memory(
        [
            "run",
            "-q",
            "--lane",
            lane,
            "--run-id",
            lane,
            f"benchmark lane {lane}",
            "--",
            "sh",
            "-c",
            LANE_COMMAND,
        ],
        repo,
    )
    run = json.loads((repo / ".git" / "spine" / "runs" / lane / "run.json").read_text())
    return took, peak, run["lanes"][lane]


def write_pool_config(repo: Path, enabled: bool) -> None:
    """Say either way: the pool is on by default now, and was off before."""
    config = repo / ".spine.yaml"
    config.write_text(f"pool:\n  enabled: {'true' if enabled else 'false'}\n  size: 4\n")


def pool_supported(bench: Bench, repo: Path) -> bool:
    write_pool_config(repo, True)
    try:
        return bench.run(bench.spine("context"), repo, check=False).returncode == 0
    finally:
        write_pool_config(repo, False)


# --- the measurements -------------------------------------------------------------------------


def measure_lanes(bench: Bench, repo: Path, size: int) -> None:
    """By hand, pool off, pool on and the reuse floor, interleaved in an order that rotates each round."""
    hand = bench.add(Measure("lane", "by hand (worktree add, run, add, commit, JSON)", size))
    hand_add = bench.add(Measure("lane", "by hand: git worktree add alone", size))
    lane = bench.add(Measure("lane", "spine run, pool off", size, baseline=hand, target=1.10))
    memory = bench.add(Measure("memory", "spine run: driver peak RSS", size, unit="MiB"))
    setup_fresh = bench.add(
        Measure("lane", "spine run: create_worktree step (fresh)", size, baseline=hand_add)
    )
    write_pool_config(repo, False)
    lane_bench_warmup(bench, repo)
    pooled: Measure | None = None
    setup: Measure | None = None
    floor: Measure | None = None
    floor_wt = bench.workdir / "reuse" / f"{repo.name}-wt"
    if pool_supported(bench, repo):
        floor = bench.add(Measure("pool", "reuse floor (one reused worktree, plain git)", size))
        pooled = bench.add(Measure("pool", "spine run (pool)", size, baseline=floor, target=3.0))
        setup = bench.add(
            Measure(
                "pool", "lane setup from the pool (create_worktree)", size, baseline=hand_add, target=0.10
            )
        )
        bench.run(["git", "worktree", "add", "--quiet", "--detach", str(floor_wt), "main"], repo)
        lane_by_reuse(bench, floor_wt, bench.next_id("rw"))
        write_pool_config(repo, True)
        spine_lane(bench, repo, bench.next_id("w"))  # fills the pool
        write_pool_config(repo, False)
    else:
        bench.add(Measure("pool", "spine run (pool)", size, note="not available: no pool in this spine"))
    modes = ["hand", "plain", "pool", "floor"] if pooled is not None else ["hand", "plain"]
    for round_no in range(bench.repeat):
        for mode in modes[round_no % len(modes) :] + modes[: round_no % len(modes)]:
            if mode == "hand":
                times = lane_by_hand(bench, repo, bench.next_id("h"))
                hand.samples.append(times["total"])
                hand_add.samples.append(times["worktree_add"])
            elif mode == "floor" and floor is not None:
                floor.samples.append(lane_by_reuse(bench, floor_wt, bench.next_id("r")))
            elif mode == "plain":
                took, peak, state = spine_lane(bench, repo, bench.next_id("s"))
                lane.samples.append(took)
                memory.samples.append(peak)
                wt = state["facts"].get("create") or state["facts"].get("create_worktree") or {}
                if "seconds" in wt:
                    setup_fresh.samples.append(wt["seconds"])
            elif pooled is not None and setup is not None:
                write_pool_config(repo, True)
                try:
                    took, _, state = spine_lane(bench, repo, bench.next_id("p"))
                finally:
                    write_pool_config(repo, False)
                pooled.samples.append(took)
                wt = state["facts"].get("create") or state["facts"].get("create_worktree") or {}
                if wt.get("source") == "pool":
                    setup.samples.append(wt["seconds"])
    bench.remove_worktrees(repo)
    if setup is not None and not setup.samples:
        setup.note = "no lane took a pooled worktree"


def lane_by_reuse(bench: Bench, worktree: Path, lane: str, env: dict[str, str] | None = None) -> float:
    """The floor for a pooled lane: one lane in a reused worktree with plain git, as the pool reuses
    one (force-checkout the base detached, clean, new branch, run, add, commit, JSON, detach)."""
    started = time.perf_counter()
    bench.run(["git", "checkout", "-q", "-f", "--detach", "main"], worktree, env)
    bench.run(["git", "clean", "-q", "-ffdx"], worktree, env)
    bench.run(["git", "switch", "-q", "-c", f"reuse/{lane}"], worktree, env)
    bench.run(["/bin/sh", "-c", LANE_COMMAND], worktree, env)
    bench.run(["git", "add", "-A"], worktree, env)
    bench.run(["git", "commit", "--quiet", "--no-verify", "-m", f"lane {lane}"], worktree, env)
    result = {"lane": lane, "status": "succeeded", "worktree": str(worktree), "branch": f"reuse/{lane}"}
    (worktree.parent / f"{lane}.json").write_text(json.dumps(result) + "\n")
    bench.run(["git", "checkout", "-q", "--detach"], worktree, env)
    return time.perf_counter() - started


def lane_bench_warmup(bench: Bench, repo: Path) -> None:
    """One untimed lane each way, so that caches are warm for both."""
    lane_by_hand(bench, repo, bench.next_id("hw"))
    spine_lane(bench, repo, bench.next_id("sw"))


def count_git(bench: Bench, repo: Path, size: int) -> None:
    """Count the git processes of one lane with a ``git`` shim first on PATH."""
    real_git = shutil.which("git", path=bench.env.get("PATH"))
    if real_git is None:
        raise RuntimeError("git is not on PATH")
    shim_dir = bench.workdir / "git-shim"
    shim_dir.mkdir(exist_ok=True)
    shim = shim_dir / "git"
    # Logs the subcommand: the first argument that is neither an option nor the value of a `-c`.
    shim.write_text(
        '#!/bin/sh\nskip=\nfor a in "$@"; do\n'
        '  if [ -n "$skip" ]; then skip=; continue; fi\n'
        '  case "$a" in -c) skip=1 ;; -*) ;; *) printf "%s\\n" "$a" >> "$BENCH_GIT_LOG"; break ;; esac\n'
        f'done\nexec {real_git} "$@"\n'
    )
    shim.chmod(0o755)
    counts: dict[str, Counter[str]] = {}
    for who in ("by hand", "reuse floor", "spine run, pool off", "spine run (pool)"):
        if who == "spine run (pool)" and not pool_supported(bench, repo):
            continue
        log = bench.workdir / f"git-{who.replace(' ', '-')}.log"
        env = {**bench.env, "PATH": f"{shim_dir}:{bench.env.get('PATH', '')}", "BENCH_GIT_LOG": str(log)}
        if who == "by hand":
            log.write_text("")
            lane_by_hand(bench, repo, bench.next_id("hc"), env)
        elif who == "reuse floor":
            wt = bench.workdir / "reuse" / f"{repo.name}-count"
            bench.run(["git", "worktree", "add", "--quiet", "--detach", str(wt), "main"], repo)
            log.write_text("")
            lane_by_reuse(bench, wt, bench.next_id("rc"), env)
        else:
            write_pool_config(repo, who.endswith("(pool)"))
            try:
                if who.endswith("(pool)"):
                    spine_lane(bench, repo, bench.next_id("pw"))  # fill the pool
                log.write_text("")
                lane = bench.next_id("sc")
                bench.run(
                    bench.spine(
                        "run", "-q", "--lane", lane, "--run-id", lane, "count", "--", "sh", "-c", LANE_COMMAND
                    ),
                    repo,
                    env,
                )
            finally:
                write_pool_config(repo, False)
        counts[who] = Counter(log.read_text().split())
    bench.remove_worktrees(repo)
    for who, counter in counts.items():
        detail = ", ".join(f"{name} {n}" for name, n in sorted(counter.items()))
        measure = Measure("git", f"git processes per lane: {who}", size, unit="processes", note=detail)
        measure.samples.append(float(sum(counter.values())))
        bench.add(measure)


def measure_batch(bench: Bench, repo: Path, size: int) -> None:
    if not bench.has_command("batch", repo):
        bench.add(
            Measure(
                "batch",
                f"spine batch, pool off, {BATCH_LANES} lanes, --jobs 2",
                size,
                note="not available: no `spine batch`",
            )
        )
        return
    hand = bench.add(Measure("batch", f"by hand, {BATCH_LANES} lanes, 2 at a time", size))
    batch = bench.add(
        Measure(
            "batch", f"spine batch, pool off, {BATCH_LANES} lanes, --jobs 2", size, baseline=hand, target=1.10
        )
    )
    memory = bench.add(
        Measure("memory", f"spine batch ({BATCH_LANES} lanes): driver peak RSS", size, unit="MiB")
    )
    pooled: Measure | None = None
    floor: Measure | None = None
    if pool_supported(bench, repo):
        floor = bench.add(Measure("batch", f"reuse floor, {BATCH_LANES} lanes, two reused worktrees", size))
        pooled = bench.add(
            Measure(
                "batch",
                f"spine batch (pool), {BATCH_LANES} lanes, --jobs 2",
                size,
                baseline=floor,
                target=1.30,
            )
        )
    modes = ["hand", "plain", "pool", "floor"] if pooled is not None else ["hand", "plain"]
    for round_no in range(bench.batch_repeat):
        prefix = bench.next_id("b")
        # Rotate the order each round: on a shared disk, whoever goes first has it quietest.
        for mode in modes[round_no % len(modes) :] + modes[: round_no % len(modes)]:
            if mode == "hand":
                hand.samples.append(batch_by_hand(bench, repo, prefix))
            elif mode == "floor" and floor is not None:
                floor.samples.append(batch_by_reuse(bench, repo, prefix))
            else:
                took, peak = spine_batch(bench, repo, f"{prefix}-{mode}", pool=mode == "pool")
                if mode == "pool" and pooled is not None:
                    pooled.samples.append(took)
                else:
                    batch.samples.append(took)
                    memory.samples.append(peak)
            bench.remove_worktrees(repo)


def batch_by_hand(bench: Bench, repo: Path, prefix: str) -> float:
    """50 by-hand lanes, two at a time; returns the seconds they took."""
    add_lock = threading.Lock()
    names = [f"{prefix}-{i:02d}" for i in range(BATCH_LANES)]
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda name: lane_by_hand(bench, repo, name, add_lock=add_lock), names))
    return time.perf_counter() - started


def batch_by_reuse(bench: Bench, repo: Path, prefix: str) -> float:
    """50 lanes of the reuse floor in two reused worktrees (made first, not timed), two at a time."""
    worktrees = [bench.workdir / "reuse" / f"{repo.name}-{prefix}-{i}" for i in range(2)]
    for wt in worktrees:
        bench.run(["git", "worktree", "add", "--quiet", "--detach", str(wt), "main"], repo)
    names = [f"{prefix}-{i:02d}" for i in range(BATCH_LANES)]

    def worker(k: int) -> None:
        for name in names[k::2]:
            lane_by_reuse(bench, worktrees[k], name)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(worker, range(2)))
    return time.perf_counter() - started


def spine_batch(bench: Bench, repo: Path, name: str, *, pool: bool) -> tuple[float, float]:
    """``spine batch`` of 50 lanes at ``--jobs 2``; returns (seconds, driver peak MiB)."""
    batch_file = bench.workdir / f"{name}.yaml"
    lines = ["lanes:"]
    for i in range(BATCH_LANES):
        lines += [
            f"  - id: lane-{i:02d}",
            f"    objective: {json.dumps(f'benchmark batch lane {i}')}",
            f"    command: {json.dumps(LANE_COMMAND)}",
        ]
    batch_file.write_text("\n".join(lines) + "\n")
    write_pool_config(repo, pool)
    try:
        return bench.spine_with_memory(["batch", str(batch_file), "--jobs", "2"], repo)
    finally:
        write_pool_config(repo, False)


def measure_gate(bench: Bench, repo: Path, size: int) -> None:
    name = "spine gate, cached verdict"
    if not bench.has_command("gate", repo):
        bench.add(Measure("gate", name, size, note="not available: no `spine gate`"))
        return
    # A branch with one commit to gate into main.
    branch_dir = bench.workdir / "gate-branch"
    bench.run(["git", "worktree", "add", "--quiet", "-b", "bench/gate", str(branch_dir), "main"], repo)
    (branch_dir / "gate-change.txt").write_text("gate\n")
    bench.run(["git", "add", "-A"], branch_dir)
    bench.run(["git", "commit", "--quiet", "-m", "gate change"], branch_dir)
    hand = bench.add(Measure("gate", "by hand: merge in a throwaway worktree, run the check", size))
    cold = bench.add(Measure("gate", "spine gate, cold (--no-cache)", size, baseline=hand))
    cached = bench.add(Measure("gate", name, size, baseline=cold))
    gate = ["gate", "bench/gate", "--into", "main", "--check", "true"]
    try:
        bench.run(bench.spine(*gate), repo)  # warm: the verdict is now cached
        for i in range(bench.repeat):
            path = bench.workdir / f"gate-hand-{i}"
            started = time.perf_counter()
            bench.run(["git", "worktree", "add", "--quiet", "--detach", str(path), "main"], repo)
            bench.run(["git", "merge", "--quiet", "--no-edit", "bench/gate"], path)
            bench.run(["/bin/sh", "-c", "true"], path)
            bench.run(["git", "worktree", "remove", "--force", str(path)], repo)
            hand.samples.append(time.perf_counter() - started)
            cold.samples.append(bench.timed(bench.spine(*gate, "--no-cache"), repo))
            cached.samples.append(bench.timed(bench.spine(*gate), repo))
    except RuntimeError as exc:
        for measure in (hand, cold, cached):
            measure.samples.clear()
            measure.note = f"not available: {exc}"
    bench.remove_worktrees(repo)


def measure_startup(bench: Bench, repo: Path) -> None:
    runs = max(10, bench.repeat * 4)
    click = bench.add(Measure("start-up", 'python -c "import click"', None))
    spine_lane(bench, repo, bench.next_id("st"))  # so that status and show have a run to read
    for _ in range(3):
        bench.run([bench.python, "-c", "import click"], repo)
    commands: list[tuple[str, list[str], float | None]] = [
        ("spine --help", ["--help"], 1.3),
        ("spine status", ["status"], None),
        ("spine show", ["show"], None),
    ]
    measures = []
    for label, args, target in commands:
        if bench.run(bench.spine(*args), repo, check=False).returncode not in (0, 1):
            bench.add(Measure("start-up", label, None, note=f"not available: `{label}` failed here"))
            continue
        measures.append((bench.add(Measure("start-up", label, None, baseline=click, target=target)), args))
    for _ in range(runs):
        click.samples.append(bench.timed([bench.python, "-c", "import click"], repo))
        for measure, args in measures:
            started = time.perf_counter()
            bench.run(bench.spine(*args), repo, check=False)
            measure.samples.append(time.perf_counter() - started)


# --- output -----------------------------------------------------------------------------------


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.1f}ms" if value < 10 else f"{value:.2f}s"
    if unit == "MiB":
        return f"{value:.1f}MiB"
    return f"{value:g}"


def report(results: list[Measure]) -> str:
    rows = [("group", "size", "measure", "median", "min", "max", "ratio", "vs baseline", "target")]
    for m in results:
        size = f"{m.size:,}" if m.size is not None else "-"
        if not m.samples:
            rows.append((m.group, size, m.name, m.note or "not available", "", "", "", "", ""))
            continue
        s = m.stats()
        ratio = f"{m.ratio:.2f}x" if m.ratio is not None else ""
        delta = ""
        if m.ratio is not None and m.baseline is not None and m.unit == "s":
            diff = s["median"] - statistics.median(m.baseline.samples)
            delta = ("+" if diff >= 0 else "-") + fmt(abs(diff), m.unit)
        target = f"<= {m.target:g}x" if m.target is not None else ""
        rows.append(
            (
                m.group,
                size,
                m.name,
                fmt(s["median"], m.unit),
                fmt(s["min"], m.unit),
                fmt(s["max"], m.unit),
                ratio,
                delta,
                target,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    details = [f"  {m.group}/{m.size}: {m.name}: {m.note}" for m in results if m.samples and m.note]
    if details:
        lines += ["", "notes:", *details]
    baselines = [
        f"  {m.name} ({m.group}/{m.size}) is compared with: {m.baseline.name}" for m in results if m.baseline
    ]
    return "\n".join([*lines, "", "ratios (median / median of the baseline):", *baselines])


def machine(bench: Bench) -> dict[str, Any]:
    git_version = subprocess.run(
        ["git", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    # The spine under test, which --spine or PYTHONPATH may point away from this checkout.
    where = bench.run(
        [bench.python, "-c", "import os, spine; print(os.path.dirname(os.path.dirname(spine.__file__)))"],
        bench.workdir,
        check=False,
    ).stdout.strip()
    commit = ""
    if where:
        commit = bench.run(["git", "rev-parse", "HEAD"], Path(where), check=False).stdout.strip()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "git": git_version,
        "cpus": os.cpu_count(),
        "spineSource": where or None,
        "spineCommit": commit or None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--sizes", default="100,5000,50000", help="repository sizes in files (default: %(default)s)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="samples per measure (default: %(default)s)")
    parser.add_argument(
        "--batch-size", type=int, default=5000, help="repository size for the batch (0: skip)"
    )
    parser.add_argument(
        "--batch-repeat", type=int, default=1, help="samples of each 50-lane batch (default: %(default)s)"
    )
    parser.add_argument("--json", dest="json_out", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--workdir", metavar="DIR", help="where repositories go (default: a temporary directory)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated repositories")
    parser.add_argument(
        "--spine",
        metavar="CMD",
        help="how to start spine (default: the spine script next to this python, else python -m spine)",
    )
    parser.add_argument(
        "--only",
        default="startup,lane,git,batch,gate",
        help="comma-separated parts to run (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    parts = set(args.only.split(","))
    python = sys.executable
    if args.spine:
        spine_argv = args.spine.split()
    else:
        script = Path(python).parent / "spine"
        spine_argv = [str(script)] if script.exists() else [python, "-m", "spine"]

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="spine-bench-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(workdir, max(1, args.repeat), spine_argv, python, max(1, args.batch_repeat))
    info = machine(bench)
    started = time.perf_counter()
    try:
        for size in sorted(set(sizes + ([args.batch_size] if args.batch_size and "batch" in parts else []))):
            t0 = time.perf_counter()
            repo = repogen.generate(workdir / f"repo-{size}", size)
            print(f"generated a {size:,}-file repository in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            if size in sizes and "lane" in parts:
                measure_lanes(bench, repo, size)
            if size in sizes and "git" in parts:
                count_git(bench, repo, size)
            if size == args.batch_size and "batch" in parts:
                measure_batch(bench, repo, size)
            if size == min(sizes) and "gate" in parts:
                measure_gate(bench, repo, size)
            if size == min(sizes) and "startup" in parts:
                measure_startup(bench, repo)
            if not args.keep:
                shutil.rmtree(repo, ignore_errors=True)
            print(f"  size {size:,} done after {time.perf_counter() - started:.0f}s", file=sys.stderr)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(bench.results))
    if args.json_out:
        payload = {
            "command": " ".join(
                [Path(python).name, "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]
            ),
            "machine": info,
            "repeat": bench.repeat,
            "seconds": round(time.perf_counter() - started, 1),
            "results": [m.to_json() for m in bench.results],
        }
        Path(args.json_out).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json_out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
