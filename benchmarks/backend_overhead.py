"""Per-lane overhead of a backend relative to local-worktree, on the same lane, in the same run.

Runs ``spine run --backend B "bench" -- true`` REPEAT times per variant in a scratch repository of
FILES small files, the variants interleaved, and reports per variant the median (with min and max)
wall-clock time of the whole ``spine run`` (the per-lane cost: worktree, sandbox setup, command,
bringing changes back, commit, result), its difference and ratio to the first variant (the floor,
local-worktree), and the median duration of the command's run as the backend reports it (for
bubblewrap this includes building the namespaces; for the container engines, creating, attaching
to, starting, waiting for and removing the container).

Variants are backend names, plus ``docker`` and ``podman`` for the docker backend on the engine at
``--docker-host`` (default: DOCKER_HOST) and at ``--podman-host`` (default: SPINE_TEST_PODMAN_HOST),
both with ``--image`` (default spine-test/debian:local, see .ci/images). .ci/engines starts both.

    python benchmarks/backend_overhead.py [--repeat 11] [--files 200] \\
        [--backends local-worktree,bubblewrap,local-remote,docker,podman]
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

ENGINES = ("docker", "podman")


def make_repo(root: Path, files: int, image: str) -> None:
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
    (root / ".gitignore").write_text(".spine.yaml\n")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=root, check=True, env=env)
    (root / ".spine.yaml").write_text(f"backends:\n  docker:\n    image: {image}\n")


def one_lane(repo: Path, variant: str, n: int, hosts: dict[str, str]) -> tuple[float, float]:
    backend, env = variant, dict(os.environ)
    if variant in ENGINES:
        backend, env["DOCKER_HOST"] = "docker", hosts[variant]
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
        env=env,
    )
    total = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{variant}: spine run failed ({proc.returncode}): {proc.stderr}")
    result = json.loads(proc.stdout)["data"]  # the result file, in spine's JSON envelope
    run_json = json.loads((Path(result["logPath"]).parents[2] / "run.json").read_text())
    return total, float(run_json["lanes"][f"b{n}"]["facts"]["execute"]["durationSeconds"])


def main() -> None:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # measure spine as installed: with bytecode
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--backends", default="local-worktree,bubblewrap,local-remote")
    parser.add_argument("--docker-host", default=os.environ.get("DOCKER_HOST", ""))
    parser.add_argument("--podman-host", default=os.environ.get("SPINE_TEST_PODMAN_HOST", ""))
    parser.add_argument("--image", default="spine-test/debian:local")
    args = parser.parse_args()
    variants = args.backends.split(",")
    hosts = {"docker": args.docker_host, "podman": args.podman_host}
    for engine in ENGINES:
        if engine in variants and not hosts[engine]:
            raise SystemExit(
                f"{engine}: no engine address; pass --{engine}-host (or start one with .ci/engines)"
            )
    with tempfile.TemporaryDirectory(prefix="spine-bench-") as tmp:
        repo = Path(tmp) / "repo"
        make_repo(repo, args.files, args.image)
        for variant in variants:  # one untimed lane each: image layers, page cache, bytecode
            one_lane(repo, variant, 10_000 + variants.index(variant), hosts)
        samples: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
        for n in range(args.repeat):  # interleaved, so drift in machine load hits every variant alike
            for variant in variants:
                samples[variant].append(
                    one_lane(repo, variant, n * len(variants) + variants.index(variant), hosts)
                )
    base_total = statistics.median(t for t, _ in samples[variants[0]])
    base_exec = statistics.median(e for _, e in samples[variants[0]])
    print(f"{args.repeat} lanes per variant, {args.files} files, command `true`; seconds, median [min-max]")
    print(f"{'variant':16} {'spine run':>22} {'overhead':>9} {'ratio':>6}   {'execute':>22} {'overhead':>9}")
    for variant in variants:
        totals = [t for t, _ in samples[variant]]
        executes = [e for _, e in samples[variant]]
        total, execute = statistics.median(totals), statistics.median(executes)
        print(
            f"{variant:16} {total:7.3f} [{min(totals):.3f}-{max(totals):.3f}] {total - base_total:+9.3f} "
            f"{total / base_total:6.2f}   {execute:7.3f} [{min(executes):.3f}-{max(executes):.3f}] "
            f"{execute - base_exec:+9.3f}"
        )


if __name__ == "__main__":
    main()
