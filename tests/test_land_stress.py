"""SIGKILL ``spine land`` at random points, over and over, resuming after each: the target never
moves to a tree that did not pass the gate, and no lane ever lands twice.

Rounds of four lanes each: one lands, one conflicts with it, one breaks the checks, one lands after
them. Each attempt starts ``spine land`` as its own process and kills it after a random delay (or
at one of the queue's crash points around the move), then checks the invariants on the repository
itself: the target's reflog, the verdict cache, the landing commits on the first-parent line and
the lanes' results. The seed is printed on failure; SPINE_STRESS_SEED replays one.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Spine, git
from tests.landqueue import (
    imports_check,
    landed_lanes,
    make_repo,
    passing_trees,
    result_of,
    run_lanes,
    state_of,
)

KILLS = 22
CRASH_POINTS = ("before-move", "moved", "recording")


def round_lanes(n: int) -> dict[str, dict[str, str]]:
    return {
        f"r{n}a": {f"mod_{n}_a.py": "A = 1\n", f"conf_{n}.txt": "from a\n"},
        f"r{n}c": {f"conf_{n}.txt": "from c\n"},  # adds the same file as a: conflicts once a landed
        f"r{n}d": {f"mod_{n}_d.py": "raise SystemExit('d breaks the checks')\n"},
        f"r{n}e": {f"mod_{n}_e.py": "E = 1\n"},
    }


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def kill_hard(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL spine alone (freeze it first, so it starts nothing new), then let what it had started
    end by itself, as it would after a real crash."""
    os.kill(proc.pid, signal.SIGSTOP)
    orphans = children_of(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in orphans):
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (an ended orphan waits as a zombie until init reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def check_invariants(repo: Path, base: str, lanes_ever: set[str], note: str) -> None:
    passing = passing_trees(repo)
    reflog = git("reflog", "show", "--format=%H", "main", cwd=repo).split()
    moved_to = reflog[: reflog.index(base)]
    for commit in moved_to:
        tree = git("rev-parse", f"{commit}^{{tree}}", cwd=repo)
        assert tree in passing, (
            f"{note}: main moved to {commit[:12]}, whose tree {tree[:12]} never passed the gate"
        )
    landed = landed_lanes(repo)
    assert len(landed) == len(set(landed)), f"{note}: a lane landed twice: {landed}"
    for lane in lanes_ever:
        promotion = result_of(repo, lane, run_id=run_of(lane)).get("promotion")
        if promotion is not None:
            assert lane in landed, f"{note}: {lane} is recorded as landed but is not on main"


def run_of(lane: str) -> str:
    """The run of lane rNx: sN."""
    return f"s{lane[1:-1]}"


def test_sigkill_at_random_points_never_lands_untested_trees_or_twice(tmp_path: Path, spine: Spine) -> None:
    seed = int(os.environ.get("SPINE_STRESS_SEED") or time.time_ns() % 1_000_000)
    rng = random.Random(seed)
    repo = make_repo(tmp_path, check=f"{imports_check()} && sleep 0.15")
    base = git("rev-parse", "main", cwd=repo)
    kills = crash_points = rounds = 0
    lanes_ever: set[str] = set()
    current: str | None = None
    attempts = 0
    while kills < KILLS or current is not None:
        if current is None:
            rounds += 1
            lanes = round_lanes(rounds)
            current = f"s{rounds}"
            run_lanes(spine, repo, lanes, run_id=current)
            lanes_ever |= set(lanes)
        attempts += 1
        note = f"seed {seed}, attempt {attempts} (round {rounds}, {kills} kills so far)"
        env = dict(os.environ)
        # Every fourth attempt dies at a crash point around the move, the narrowest windows.
        crash = kills < KILLS and attempts % 4 == 0
        if crash:
            env["SPINE_CRASH_AT"] = f"land:{CRASH_POINTS[attempts // 4 % len(CRASH_POINTS)]}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "spine", "land", current, "-q"],
            cwd=repo,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            delay = rng.uniform(0.3, 1.8) if kills < KILLS and not crash else 60
            code = proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            kill_hard(proc)
            code = proc.wait()  # it may have ended by itself just before the kill
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        if code == -signal.SIGKILL:
            kills += 1
            crash_points += crash
        else:
            assert code == 1, f"{note}: spine land exited {code}: {stderr}"  # c and d are ejected
        check_invariants(repo, base, lanes_ever, note)
        land_file = repo / ".git" / "spine" / "runs" / current / "land.json"
        # Finished once its state says so: a kill may still land while it exits.
        if land_file.exists() and state_of(repo, current)["finishedAt"] is not None:
            state = state_of(repo, current)
            outcome = {d["laneId"]: (d["outcome"], d.get("kind")) for d in state["decisions"]}
            n = rounds
            assert outcome == {
                f"r{n}a": ("landed", None),
                f"r{n}c": ("ejected", "conflict"),
                f"r{n}d": ("ejected", "check-failed"),
                f"r{n}e": ("landed", None),
            }, note
            assert [lane for lane in landed_lanes(repo) if lane.startswith(f"r{n}")] == [
                f"r{n}a",
                f"r{n}e",
            ], note
            assert git("status", "--porcelain", cwd=repo) == "", note
            current = None
    assert kills >= KILLS, f"seed {seed}: {kills} kills"
