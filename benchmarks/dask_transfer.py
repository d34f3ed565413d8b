"""What the dask backend sends per lane when lanes share a base, against the plain remote protocol.

    .venv/bin/python benchmarks/dask_transfer.py                     # 5,000 files, 2 rounds of 20 lanes
    .venv/bin/python benchmarks/dask_transfer.py --files 50000 --lanes 10

Generates a repository (``repogen.py``), starts a loopback cluster of ``--workers`` workers and
prepares ``--lanes`` lane worktrees on it at once (each with one untracked file of its own), then
a second round of as many lanes, as a later batch would (its lanes can reuse the first round's
copies from the workers' pools). For every lane it records the bytes spine sent (the base, when
that lane was the one to ship it, and the lane's own delta), whether its copy was reused and the
time ``prepare`` took; next to it, the bytes the plain remote protocol (``remote.py``: a tar of
every tracked and untracked file, per lane) would have sent.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import repogen  # noqa: E402
from spine.adapters.dask import DaskSandbox  # noqa: E402
from spine.adapters.remote import pack, tracked_and_untracked  # noqa: E402

from spine.backends.base import SandboxSpec  # noqa: E402
from tests.dask_cluster import DaskCluster  # noqa: E402


def mib(n: float) -> str:
    return f"{n / 2**20:8.2f} MiB"


def prepare_round(
    backend: DaskSandbox, repo: Path, root: Path, name: str, lanes: int
) -> list[dict[str, Any]]:
    """Prepare ``lanes`` fresh lane worktrees at once; what each sent and how long it took."""
    worktrees = []
    for i in range(lanes):
        path = root / f"{name}-{i}"
        subprocess.run(["git", "worktree", "add", "-q", "-b", f"{name}-{i}", str(path)], cwd=repo, check=True)
        (path / f"notes-{i}.txt").write_text(f"lane {i} of {name}\n")
        worktrees.append(path)
    rows: list[dict[str, Any]] = []
    lock = threading.Lock()

    def one(path: Path) -> None:
        spec = SandboxSpec(worktree=path, run_id=name, lane_id=path.name)
        started = time.perf_counter()
        handle = backend.prepare(spec)
        seconds = time.perf_counter() - started
        backend.teardown(handle)
        with lock:
            rows.append({**{k: handle.data[k] for k in ("worker", "base_sent_bytes", "delta_bytes", "copy_reused")},
                         "seconds": seconds, "path": path})  # fmt: skip

    threads = [threading.Thread(target=one, args=(path,)) for path in worktrees]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(rows) != lanes:
        raise SystemExit(f"{lanes - len(rows)} lanes failed to prepare")
    for row in rows:  # after the round, so that it does not slow the lanes measured
        row["plain_bytes"] = len(pack(row["path"], tracked_and_untracked(row["path"])))
    return rows


def report(name: str, rows: list[dict[str, Any]]) -> None:
    shipped = [r for r in rows if r["base_sent_bytes"]]
    sent = sum(r["base_sent_bytes"] + r["delta_bytes"] for r in rows)
    plain = sum(r["plain_bytes"] for r in rows)
    workers = {r["worker"] for r in rows}
    print(f"{name}: {len(rows)} lanes on {len(workers)} workers")
    print(
        f"  base shipments:           {len(shipped)} ({', '.join(mib(r['base_sent_bytes']).strip() for r in shipped) or '-'})"
    )
    print(f"  own files per lane:       {statistics.median(r['delta_bytes'] for r in rows):8.0f} B  (median)")
    print(f"  sent in all:              {mib(sent)}")
    print(f"  plain remote protocol:    {mib(plain)}  ({plain / max(sent, 1):.0f}x as much)")
    print(f"  copies reused from pools: {sum(r['copy_reused'] for r in rows)} of {len(rows)}")
    groups = {
        "lanes that shipped the base": shipped,
        "lanes with a new copy": [r for r in rows if not r["base_sent_bytes"] and not r["copy_reused"]],
        "lanes with a reused copy": [r for r in rows if r["copy_reused"]],
    }
    for label, group in groups.items():
        if group:
            times = [r["seconds"] for r in group]
            print(
                f"  prepare, {label + ':':28s} {statistics.median(times):6.2f} s (median, max {max(times):.2f})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--lanes", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spine-dask-transfer-") as tmp:
        root = Path(tmp)
        repo = repogen.generate(root / "repo", args.files)
        cluster = DaskCluster(root / "cluster", workers=args.workers, threads=args.lanes).start()
        try:
            backend = DaskSandbox({"scheduler": cluster.address})
            size = len(pack(repo, tracked_and_untracked(repo)))
            print(f"repository: {args.files} files, a tar of {mib(size).strip()}")
            report("first batch", prepare_round(backend, repo, root, "first", args.lanes))
            report("a later batch", prepare_round(backend, repo, root, "later", args.lanes))
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
