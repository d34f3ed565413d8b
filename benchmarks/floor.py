"""spine against a fair floor: a plain-git script that reuses worktrees the way the pool does.

    .venv/bin/python benchmarks/floor.py                         # every goal below; 10-20 minutes
    .venv/bin/python benchmarks/floor.py --only lane,history --repeat 9
    .venv/bin/python benchmarks/floor.py --before /path/to/older/checkout --json floor.json

The floor for a pooled lane is ``floor.sh`` below, run in a worktree made once beforehand: force-check
out the base detached, clean, switch to a new branch, run the command, ``git add -A``, commit, write
a JSON file, detach again. A batch's floor is two such worktrees worked through two at a time. What
spine adds above that floor is its own cost.

Every variant of a comparison is timed in the same run, interleaved sample by sample in an order
that rotates each round (on a shared machine whoever goes first gets the quietest moment), each in
its own copy of the repository. ``--before DIR`` adds the spine whose ``spine`` package is in DIR
(run through ``PYTHONPATH``) as one more variant of every comparison, so that a before/after table
comes from one run. Medians, min/max and the ratio of medians to each floor are printed; ``--json``
saves them.

The goals (ratios of medians):

| measure | floor | goal |
|---|---|---|
| a batch of 50 lanes, ``--jobs 2``, 5,000 files | the reuse script, two worktrees | <= 1.3x |
| driver CPU per lane, 500-lane batch / 10-lane batch | — | <= 1.3x |
| a batch of 500 lanes, ``--jobs 2`` (``--big-size`` files) | the reuse script, two worktrees | <= 1.5x |
| ``spine gc --dry-run`` with 1,000 past runs | the same with 1 past run | <= 1.5x |
| ``spine status`` with 1,000 past runs | the same with 1 past run | <= 1.3x |
| ``spine run`` with 1,000 past runs | the same with 1 past run | — |
| one pooled lane, 5,000 files | the reuse script | <= 3x |
| ``spine gate``, cached answer | ``python -c "import click"`` | <= 2x |
| the driver's peak memory, 500-lane batch | — | <= 60 MiB |

The driver's CPU time and peak memory are its own (``time.process_time`` and VmHWM at exit), not
those of the git processes it starts. Past runs are made by running one real lane and copying its
state under 999 more run ids (with their branches), as that spine wrote it; a real ``spine gc`` runs
once before the timed ``--dry-run``s, as it would have on a repository that has been in use.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import repogen

LANE_COMMAND = "echo done > bench-output.txt"

FLOOR_SCRIPT = r"""#!/bin/sh
# The floor: lanes FIRST..LAST one after another in one reused worktree.
# usage: floor.sh WORKTREE BASE PREFIX FIRST LAST RESULTS
set -e
wt=$1 base=$2 prefix=$3 i=$4 last=$5 results=$6
while [ "$i" -le "$last" ]; do
  b="$prefix-$i"
  git -C "$wt" checkout -q -f --detach "$base"
  git -C "$wt" clean -q -ffdx
  git -C "$wt" switch -q -c "$b"
  (cd "$wt" && sh -c 'echo done > bench-output.txt')
  git -C "$wt" add -A
  git -C "$wt" commit -q --no-verify -m "lane $b"
  printf '{"lane":"%s","status":"succeeded","branch":"%s","worktree":"%s"}\n' "$b" "$b" "$wt" > "$results/$b.json"
  git -C "$wt" checkout -q --detach
  i=$((i + 1))
done
"""

# Runs spine's CLI in this interpreter and writes the process's own CPU seconds and peak RSS (KiB)
# to a file at exit: the driver's, without the git processes it starts.
DRIVER_WRAPPER = """
import atexit, sys, time
out = sys.argv[1]
def _report():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(out, "w") as handle:
        handle.write(f"{time.process_time()} {peak}")
atexit.register(_report)
sys.argv = ["spine", *sys.argv[2:]]
from spine.cli import main
main()
"""


@dataclass
class Measure:
    name: str
    samples: list[float] = field(default_factory=list)
    unit: str = "s"
    floor: Measure | None = None
    goal: float | None = None
    note: str = ""

    def median(self) -> float:
        return statistics.median(self.samples)

    def ratio(self) -> float | None:
        if not self.samples or self.floor is None or not self.floor.samples or not self.floor.median():
            return None
        return self.median() / self.floor.median()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "unit": self.unit, "note": self.note or None}
        if self.samples:
            data.update(median=self.median(), min=min(self.samples), max=max(self.samples))
            data["samples"] = [round(s, 6) for s in self.samples]
        if self.floor is not None:
            data.update(floor=self.floor.name, ratio=self.ratio())
        if self.goal is not None:
            data["goal"] = self.goal
        return data


@dataclass
class Variant:
    """One spine to measure: how to start it and the environment it needs."""

    label: str
    argv: list[str]
    env: dict[str, str]


class Bench:
    def __init__(self, workdir: Path, repeat: int, variants: list[Variant], python: str) -> None:
        self.workdir = workdir
        self.repeat = repeat
        self.variants = variants
        self.python = python
        self.results: list[Measure] = []
        self.script = workdir / "floor.sh"
        self.script.write_text(FLOOR_SCRIPT)
        self.script.chmod(0o755)
        self._n = 0

    def add(self, measure: Measure) -> Measure:
        self.results.append(measure)
        return measure

    def next_id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n:05d}"

    def run(self, argv: list[str], cwd: Path, env: dict[str, str], check: bool = True) -> str:
        proc = subprocess.run(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
        return proc.stdout

    def timed(self, argv: list[str], cwd: Path, env: dict[str, str], check: bool = True) -> float:
        started = time.perf_counter()
        self.run(argv, cwd, env, check)
        return time.perf_counter() - started

    def driver(self, variant: Variant, args: list[str], cwd: Path) -> tuple[float, float, float]:
        """Run spine; return (wall seconds, driver CPU seconds, driver peak MiB)."""
        fd, out = tempfile.mkstemp(dir=self.workdir, suffix=".driver")
        os.close(fd)
        try:
            took = self.timed([self.python, "-c", DRIVER_WRAPPER, out, *args], cwd, variant.env)
            cpu, peak = Path(out).read_text().split()
            return took, float(cpu), int(peak) / 1024
        finally:
            os.unlink(out)


def base_env(workdir: Path) -> dict[str, str]:
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(
        "[user]\n\tname = Bench\n\temail = bench@example.com\n[init]\n\tdefaultBranch = main\n[gc]\n\tauto = 0\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "SPINE_", "PYTHONPATH"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed spine runs from compiled bytecode
    env.update({"HOME": str(home), "GIT_CONFIG_GLOBAL": str(gitconfig), "GIT_CONFIG_NOSYSTEM": "1"})
    return env


def rotate(items: list[Any], n: int) -> list[Any]:
    k = n % len(items)
    return items[k:] + items[:k]


# --- repositories -------------------------------------------------------------------------------


def copy_repo(bench: Bench, source: Path, name: str, *, pool_size: int = 4) -> Path:
    dest = bench.workdir / name
    shutil.copytree(source, dest, symlinks=True)
    (dest / ".spine.yaml").write_text(f"pool:\n  enabled: true\n  size: {pool_size}\n")
    return dest


def floor_worktrees(bench: Bench, repo: Path, env: dict[str, str], count: int) -> list[Path]:
    """The floor's reused worktrees, made once (not timed)."""
    made = []
    for i in range(count):
        path = bench.workdir / f"{repo.name}-floor-wt{i}"
        bench.run(["git", "worktree", "add", "-q", "--detach", str(path), "main"], repo, env)
        made.append(path)
    return made


def floor_lanes(bench: Bench, repo: Path, worktrees: list[Path], lanes: int, env: dict[str, str]) -> float:
    """``lanes`` lanes of the floor script, split over ``worktrees`` working in parallel."""
    prefix = bench.next_id("floor")
    results = bench.workdir / "floor-results" / prefix
    results.mkdir(parents=True)
    share = [
        lanes // len(worktrees) + (1 if i < lanes % len(worktrees) else 0) for i in range(len(worktrees))
    ]
    jobs, first = [], 1
    for wt, n in zip(worktrees, share, strict=True):
        jobs.append(
            [str(bench.script), str(wt), "main", prefix, str(first), str(first + n - 1), str(results)]
        )
        first += n
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        list(pool.map(lambda argv: bench.run(argv, repo, env), jobs))
    took = time.perf_counter() - started
    shutil.rmtree(results)
    return took


def batch_file(bench: Bench, lanes: int) -> Path:
    path = bench.workdir / f"batch-{lanes}.json"
    if not path.exists():
        spec = {
            "lanes": [
                {"id": f"lane-{i:03d}", "objective": f"lane {i}", "command": LANE_COMMAND}
                for i in range(lanes)
            ]
        }
        path.write_text(json.dumps(spec))
    return path


def spine_lane(bench: Bench, variant: Variant, repo: Path) -> float:
    lane = bench.next_id("l")
    args = ["run", "-q", "--lane", lane, "--run-id", lane, f"lane {lane}", "--", "sh", "-c", LANE_COMMAND]
    return bench.timed([*variant.argv, *args], repo, variant.env)


# --- the measurements ---------------------------------------------------------------------------


def measure_lane(bench: Bench, source: Path, size: int) -> None:
    env = base_env(bench.workdir)
    floor = bench.add(Measure(f"one lane, {size:,} files: the reuse script (floor)"))
    repos: dict[str, Path] = {"floor": copy_repo(bench, source, f"lane-floor-{size}")}
    (wt,) = floor_worktrees(bench, repos["floor"], env, 1)
    measures: dict[str, Measure] = {}
    for v in bench.variants:
        repos[v.label] = copy_repo(bench, source, f"lane-{v.label}-{size}")
        measures[v.label] = bench.add(
            Measure(f"one pooled lane, {size:,} files: spine run ({v.label})", floor=floor, goal=3.0)
        )
        spine_lane(bench, v, repos[v.label])  # fills the pool
        spine_lane(bench, v, repos[v.label])
    floor_lanes(bench, repos["floor"], [wt], 1, env)
    order = ["floor", *(v.label for v in bench.variants)]
    for round_no in range(bench.repeat):
        for who in rotate(order, round_no):
            if who == "floor":
                floor.samples.append(floor_lanes(bench, repos["floor"], [wt], 1, env))
            else:
                v = next(v for v in bench.variants if v.label == who)
                measures[who].samples.append(spine_lane(bench, v, repos[who]))


def measure_batches(
    bench: Bench, source: Path, lanes: int, size: int, goal: float, repeat: int
) -> dict[str, Measure]:
    """Batches of ``lanes`` lanes at ``--jobs 2`` against the floor with two worktrees; returns the
    driver CPU measures by variant."""
    env = base_env(bench.workdir)
    floor = bench.add(Measure(f"{lanes} lanes, {size:,} files, two at a time: the reuse script (floor)"))
    repos: dict[str, Path] = {"floor": copy_repo(bench, source, f"b{lanes}-floor")}
    worktrees = floor_worktrees(bench, repos["floor"], env, 2)
    walls: dict[str, Measure] = {}
    cpus: dict[str, Measure] = {}
    peaks: dict[str, Measure] = {}
    for v in bench.variants:
        repos[v.label] = copy_repo(bench, source, f"b{lanes}-{v.label}")
        walls[v.label] = bench.add(
            Measure(f"{lanes} lanes, {size:,} files: spine batch -j 2 ({v.label})", floor=floor, goal=goal)
        )
        cpus[v.label] = bench.add(Measure(f"{lanes} lanes: driver CPU per lane ({v.label})"))
        peaks[v.label] = bench.add(
            Measure(
                f"{lanes} lanes: driver peak memory ({v.label})",
                unit="MiB",
                goal=60.0 if lanes >= 500 else None,
            )
        )
        # Warm: the pool holds two worktrees, as the floor has its two.
        bench.run(
            [*v.argv, "batch", str(batch_file(bench, 2)), "--jobs", "2", "--run-id", bench.next_id("warm")],
            repos[v.label],
            v.env,
        )
    order = ["floor", *(v.label for v in bench.variants)]
    for round_no in range(repeat):
        for who in rotate(order, round_no):
            if who == "floor":
                floor.samples.append(floor_lanes(bench, repos["floor"], worktrees, lanes, env))
                continue
            v = next(v for v in bench.variants if v.label == who)
            args = ["batch", str(batch_file(bench, lanes)), "--jobs", "2", "--run-id", bench.next_id("b")]
            took, cpu, peak = bench.driver(v, [*args], repos[who])
            walls[who].samples.append(took)
            cpus[who].samples.append(cpu / lanes)
            peaks[who].samples.append(peak)
    return cpus


def make_history(bench: Bench, v: Variant, source: Path, runs: int, name: str) -> Path:
    """A repository with ``runs`` finished runs as ``v`` leaves them, then one real ``spine gc``."""
    repo = copy_repo(bench, source, name)
    template = "past00000"
    args = ["run", "-q", "--lane", "work", "--run-id", template, "past work", "--", "sh", "-c", LANE_COMMAND]
    bench.run([*v.argv, *args], repo, v.env)
    state = repo / ".git" / "spine"
    head = bench.run(["git", "rev-parse", f"refs/heads/spine/{template}/work"], repo, v.env).strip()
    created = json.loads((state / "run-index.jsonl").read_text().splitlines()[0])["createdAt"]
    refs, index = [], []
    finished = state / "finished-runs.jsonl"
    summary = finished.read_text().splitlines()[0] if finished.exists() else None
    for i in range(1, runs):
        run_id = f"past{i:05d}"
        dest = state / "runs" / run_id
        shutil.copytree(state / "runs" / template, dest)
        for path in dest.rglob("*.json*"):
            path.write_text(path.read_text().replace(template, run_id))
        refs.append(f"create refs/heads/spine/{run_id}/work {head}\n")
        index.append(json.dumps({"runId": run_id, "createdAt": created}) + "\n")
        if summary is not None:  # what its driver would have left: the summary, stamped with its run.json
            st = os.stat(dest / "run.json")
            record = json.loads(summary)
            record.update(runId=run_id, runJson=[st.st_ino, st.st_mtime_ns, st.st_size])
            record["summary"]["runId"] = run_id
            with finished.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
    subprocess.run(
        ["git", "update-ref", "--stdin"], cwd=repo, env=v.env, input="".join(refs), text=True, check=True
    )
    with (state / "run-index.jsonl").open("a") as handle:
        handle.writelines(index)
    bench.run([*v.argv, "gc"], repo, v.env)
    return repo


def measure_history(bench: Bench, source: Path, many: int) -> None:
    repos: dict[tuple[str, int], Path] = {}
    measures: dict[tuple[str, str, int], Measure] = {}
    for v in bench.variants:
        for runs in (1, many):
            repos[(v.label, runs)] = make_history(bench, v, source, runs, f"hist-{v.label}-{runs}")
        for what, goal in (("gc --dry-run", 1.5), ("status", 1.3), ("run", None)):
            one = bench.add(Measure(f"spine {what}, 1 past run ({v.label})"))
            measures[(v.label, what, 1)] = one
            measures[(v.label, what, many)] = bench.add(
                Measure(f"spine {what}, {many:,} past runs ({v.label})", floor=one, goal=goal)
            )
    keys = list(measures)
    for round_no in range(bench.repeat):
        for label, what, runs in rotate(keys, round_no):
            v = next(v for v in bench.variants if v.label == label)
            repo = repos[(label, runs)]
            if what == "run":
                took = spine_lane(bench, v, repo)
            else:
                took = bench.timed([*v.argv, *what.split()], repo, v.env)
            measures[(label, what, runs)].samples.append(took)


def measure_gate(bench: Bench, source: Path) -> None:
    env = base_env(bench.workdir)
    click = bench.add(Measure('python -c "import click" (floor)'))
    repo = copy_repo(bench, source, "gate")
    wt = bench.workdir / "gate-branch"
    bench.run(["git", "worktree", "add", "-q", "-b", "bench/gate", str(wt), "main"], repo, env)
    (wt / "gate-change.txt").write_text("gate\n")
    bench.run(["git", "add", "-A"], wt, env)
    bench.run(["git", "commit", "-q", "-m", "gate change"], wt, env)
    gate = ["gate", "bench/gate", "--into", "main", "--check", "true", "-q"]
    measures = {}
    for v in bench.variants:
        bench.run([*v.argv, *gate], repo, v.env)  # the verdict is cached from now on
        measures[v.label] = bench.add(
            Measure(f"spine gate, cached answer ({v.label})", floor=click, goal=2.0)
        )
    order = ["click", *measures]
    for round_no in range(max(bench.repeat, 10)):
        for who in rotate(order, round_no):
            if who == "click":
                click.samples.append(bench.timed([bench.python, "-c", "import click"], repo, env))
            else:
                v = next(v for v in bench.variants if v.label == who)
                measures[who].samples.append(bench.timed([*v.argv, *gate], repo, v.env))


# --- output -------------------------------------------------------------------------------------


def fmt(value: float, unit: str) -> str:
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value * 1000:.1f} ms" if value < 10 else f"{value:.2f} s"


def report(results: list[Measure]) -> str:
    rows = [("measure", "median", "min", "max", "ratio to floor", "goal")]
    for m in results:
        if not m.samples:
            rows.append((m.name, m.note or "not measured", "", "", "", ""))
            continue
        ratio = m.ratio()
        rows.append(
            (
                m.name,
                fmt(m.median(), m.unit),
                fmt(min(m.samples), m.unit),
                fmt(max(m.samples), m.unit),
                f"{ratio:.2f}x" if ratio is not None else "",
                (f"<= {m.goal:g} MiB" if m.unit == "MiB" else f"<= {m.goal:g}x")
                if m.goal is not None
                else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--size", type=int, default=5000, help="files in the repository (default: %(default)s)"
    )
    parser.add_argument(
        "--big-size", type=int, default=100, help="files for the 500-lane batch (default: %(default)s)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="samples per measure (default: %(default)s)")
    parser.add_argument("--batch-repeat", type=int, default=3, help="samples of the 50-lane batch")
    parser.add_argument("--big-repeat", type=int, default=1, help="samples of the 10- and 500-lane batches")
    parser.add_argument(
        "--history", type=int, default=1000, help="past runs for gc and status (default: %(default)s)"
    )
    parser.add_argument(
        "--before", metavar="DIR", help="also measure the spine package in DIR (through PYTHONPATH)"
    )
    parser.add_argument(
        "--only", default="lane,batch,big,history,gate", help="parts to run (default: %(default)s)"
    )
    parser.add_argument("--json", dest="json_out", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--workdir", metavar="DIR", help="where repositories go (default: a temporary directory)"
    )
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    python = sys.executable
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="spine-floor-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = base_env(workdir)
    variants = []
    if args.before:
        before_env = {**env, "PYTHONPATH": str(Path(args.before).resolve())}
        variants.append(Variant("before", [python, "-m", "spine"], before_env))
    variants.append(Variant("after" if args.before else "spine", [python, "-m", "spine"], env))
    bench = Bench(workdir, max(1, args.repeat), variants, python)
    started = time.perf_counter()
    try:
        source = repogen.generate(workdir / f"source-{args.size}", args.size)
        small = (
            repogen.generate(workdir / f"source-{args.big_size}", args.big_size) if "big" in parts else None
        )
        if "gate" in parts:
            measure_gate(bench, source)
        if "lane" in parts:
            measure_lane(bench, source, args.size)
        if "history" in parts:
            measure_history(bench, source, args.history)
        if "batch" in parts:
            measure_batches(bench, source, 50, args.size, 1.3, args.batch_repeat)
        if small is not None:
            few = measure_batches(bench, small, 10, args.big_size, 1.5, args.big_repeat)
            many = measure_batches(bench, small, 500, args.big_size, 1.5, args.big_repeat)
            for v in variants:
                ratio = Measure(f"driver CPU per lane, 500 / 10 lanes ({v.label})", unit="x", goal=1.3)
                ratio.samples.append(many[v.label].median() / few[v.label].median())
                bench.add(ratio)
            for m in bench.results:  # only the 500-lane batch has a goal against its floor
                if m.name.startswith("10 lanes") and m.goal is not None:
                    m.goal = None
        print(f"took {time.perf_counter() - started:.0f} s", file=sys.stderr)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(bench.results))
    if args.json_out:
        payload = {
            "command": " ".join(["benchmarks/floor.py", *(argv if argv is not None else sys.argv[1:])]),
            "cpus": os.cpu_count(),
            "seconds": round(time.perf_counter() - started, 1),
            "results": [m.to_json() for m in bench.results],
        }
        Path(args.json_out).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
