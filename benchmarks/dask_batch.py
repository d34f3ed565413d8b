"""A batch of many long lanes on a Dask cluster on loopback, against one such lane (the floor).

    .venv/bin/python benchmarks/dask_batch.py                      # 100 lanes of 30 s at -j 100
    .venv/bin/python benchmarks/dask_batch.py --lanes 20 --seconds 5 --repeat 3

Starts a ``dask scheduler`` and ``--workers`` ``dask worker`` processes (``--threads`` threads each;
their threads must cover the lanes) on 127.0.0.1, then, per round and interleaved:

- the floor: a batch of one lane, ``sleep S`` then write a file, on the dask backend;
- the batch: ``--lanes`` such lanes at ``-j LANES``.

For each, the wall time of ``spine batch``, spine's local CPU time (user + system of the spine
process and the git processes it waited for, from ``wait4``), the driver's peak memory (VmHWM of
the spine process itself) and the CPU the scheduler and workers used (with the commands and git
they ran: on loopback they share this machine's cores with spine). Every lane's file is checked on its branch. Prints medians with
min/max, the ratio of the batch to the floor (goal: at most 1.3x) and CPU per lane (goal: under
0.2 s); ``--json FILE`` keeps the samples.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.dask_cluster import DaskCluster  # noqa: E402 - the same cluster the tests start

# Runs spine's CLI and writes the process's own peak RSS (KiB) to a file: ru_maxrss would carry the
# benchmark's own peak across exec.
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

IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def make_repo(root: Path, address: str) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    env = {**os.environ, **IDENTITY}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    for i in range(20):
        (repo / f"file{i:02d}.txt").write_text(f"file {i}\n" * 50)
    (repo / ".spine.yaml").write_text(f"backends:\n  dask:\n    scheduler: {address}\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True, env=env)
    return repo


def batch(repo: Path, lanes: int, seconds: float, backend: str = "dask") -> dict[str, float]:
    """One ``spine batch`` of ``lanes`` lanes at -j lanes; its wall time, CPU and peak memory."""
    spec = repo.parent / f"lanes-{lanes}-{time.monotonic_ns()}.json"
    command = f"sleep {seconds:g}; echo done > out-$SPINE_LANE_ID.txt"
    spec.write_text(
        json.dumps(
            {
                "lanes": [
                    {"id": f"l{i:03d}", "objective": f"lane {i}", "command": ["sh", "-c", command]}
                    for i in range(lanes)
                ]
            }
        )
    )
    peak_file, out_file, err_file = (repo.parent / name for name in ("peak", "out.json", "err.txt"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.perf_counter()
    with open(out_file, "wb") as out, open(err_file, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", MEMORY_WRAPPER, str(peak_file), "batch", str(spec), "-j", str(lanes),
             "--backend", backend, "--json"],
            cwd=repo,
            env={**env, **IDENTITY},
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        # wait4: the CPU time of spine and of every git process it waited for.
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"the batch failed (exit {proc.returncode}):\n{err_file.read_text()[-3000:]}")
    summary = json.loads(out_file.read_text())
    run_id = summary["runId"]
    for i in range(lanes):
        branch = f"spine/{run_id}/l{i:03d}"
        shown = subprocess.run(
            ["git", "show", f"{branch}:out-l{i:03d}.txt"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=False,
        )
        if shown.stdout.strip() != "done":
            raise SystemExit(f"lane l{i:03d}'s file is not on {branch}: {shown.stderr.strip()}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall": wall, "cpu": cpu, "rss_kib": float(peak_file.read_text())}


def cluster_cpu(cluster: DaskCluster) -> float:
    """CPU seconds the scheduler and workers used so far, with the commands and git they ran."""
    total = 0.0
    for proc in [cluster.scheduler, *cluster.workers.values()]:
        assert proc is not None
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def describe(samples: list[float], unit: str = "s") -> str:
    med = statistics.median(samples)
    return f"{med:8.2f} {unit}  (min {min(samples):.2f}, max {max(samples):.2f})"


VARIANTS = {
    "floor": "one lane on dask (the floor)",
    "batch": "the batch on dask",
    "local": "the batch on local-worktree",
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lanes", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="per worker (default: enough for the lanes)")
    parser.add_argument(
        "--local",
        action="store_true",
        help="also run the batch on local-worktree: what spine costs without dask",
    )
    parser.add_argument(
        "--worker-profiler",
        action="store_true",
        help="leave Dask's statistical profiler on in the workers (it samples every busy thread every 10 ms)",
    )
    parser.add_argument("--json", type=Path, help="save the samples here")
    args = parser.parse_args()
    threads = args.threads or -(-args.lanes // args.workers)
    variants = ["floor", "batch", *(["local"] if args.local else [])]
    rounds: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="spine-dask-bench-") as tmp:
        cluster = DaskCluster(Path(tmp) / "cluster", workers=args.workers, threads=threads)
        if not args.worker_profiler:
            cluster.env["DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"] = "False"
        cluster.start()
        try:
            for index in range(args.repeat):
                repo = make_repo(Path(tmp) / f"round{index}", cluster.address)
                order = variants if index % 2 == 0 else variants[::-1]
                measured: dict[str, dict[str, float]] = {}
                for variant in order:
                    lanes = 1 if variant == "floor" else args.lanes
                    backend = "local-worktree" if variant == "local" else "dask"
                    before = cluster_cpu(cluster)
                    measured[variant] = batch(repo, lanes, args.seconds, backend)
                    measured[variant]["cluster_cpu"] = cluster_cpu(cluster) - before
                rounds.append(measured)
                print(
                    f"round {index + 1}: "
                    + ", ".join(f"{v} {measured[v]['wall']:.2f} s" for v in variants)
                    + f"; dask CPU/lane {measured['batch']['cpu'] / args.lanes:.3f} s",
                    file=sys.stderr,
                )
        finally:
            cluster.stop()

    def samples(variant: str, key: str, per_lane: bool = False) -> list[float]:
        lanes = 1 if variant == "floor" else args.lanes
        return [r[variant][key] / (lanes if per_lane else 1) for r in rounds]

    print(
        f"{args.lanes} lanes of `sleep {args.seconds:g}` at -j {args.lanes}, dask on loopback "
        f"({args.workers} workers x {threads} threads, worker profiler "
        f"{'on' if args.worker_profiler else 'off'}), {args.repeat} rounds, medians (min, max):"
    )
    for variant in variants:
        print(f"  {VARIANTS[variant]:30s} {describe(samples(variant, 'wall'))}")
    ratio = [r["batch"]["wall"] / r["floor"]["wall"] for r in rounds]
    print(f"  {'dask batch / floor':30s} {describe(ratio, 'x')}   goal <= 1.3x")
    print(f"  {'spine CPU per lane, dask':30s} {describe(samples('batch', 'cpu', True))}   goal < 0.2 s")
    if args.local:
        print(f"  {'spine CPU per lane, local':30s} {describe(samples('local', 'cpu', True))}")
    print(f"  {'spine CPU, one-lane batch':30s} {describe(samples('floor', 'cpu'))}")
    print(f"  {'cluster CPU per lane, dask':30s} {describe(samples('batch', 'cluster_cpu', True))}")
    print(
        f"  {'driver peak memory, dask':30s} {describe([x / 1024 for x in samples('batch', 'rss_kib')], 'MiB')}"
    )
    if args.local:
        print(
            f"  {'driver peak memory, local':30s} {describe([x / 1024 for x in samples('local', 'rss_kib')], 'MiB')}"
        )
    print(
        f"  {'driver peak memory, one lane':30s} {describe([x / 1024 for x in samples('floor', 'rss_kib')], 'MiB')}"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"args": {**vars(args), "json": str(args.json)}, "rounds": rounds}, indent=2)
        )


if __name__ == "__main__":
    main()
