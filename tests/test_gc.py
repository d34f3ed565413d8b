"""spine gc: the one reaper cleans up finished and dead lanes and never loses uncommitted work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import Spine, data_of, git, write_files


def state(repo: Path) -> Path:
    return repo / ".git" / "spine"


def lane_worktree(repo: Path, run_id: str = "r1", lane: str = "work") -> Path:
    return state(repo) / "worktrees" / run_id / lane


def run_json(repo: Path, run_id: str = "r1") -> dict[str, Any]:
    from spine.workspace.context import StatePaths
    from spine.workspace.store import read_run

    return read_run(StatePaths(state(repo)), run_id).model_dump(by_alias=True, mode="json")


def recovery_refs(repo: Path) -> list[str]:
    return git("for-each-ref", "--format=%(refname)", "refs/spine/recovered/", cwd=repo).split()


def registered(repo: Path) -> list[str]:
    return [
        line.removeprefix("worktree ")
        for line in git("worktree", "list", "--porcelain", cwd=repo).splitlines()
        if line.startswith("worktree ")
    ]


def run_lane(spine: Spine, repo: Path, command: str, run_id: str = "r1", lane: str = "work") -> None:
    """Run one lane whose worktree stays where it ran, as a failed lane's does (or any, pool off)."""
    proc = spine(
        "run",
        "do the work",
        "--run-id",
        run_id,
        "--lane",
        lane,
        "--keep-worktree",
        "-q",
        "--",
        "sh",
        "-c",
        command,
        cwd=repo,
    )
    assert proc.returncode in (0, 1), proc.stderr


def group_alive(pgid: int) -> bool:
    from spine.base.process import group_alive as alive  # zombies do not count: init may not reap them here

    return alive(pgid)


def test_gc_after_a_killed_run_recovers_its_work_and_records_the_lanes(repo: Path, spine: Spine) -> None:
    wt = lane_worktree(repo)
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spine",
            "run",
            "slow work",
            "--run-id",
            "r1",
            "--lane",
            "work",
            "-q",
            "--",
            "sh",
            "-c",
            "echo partial > partial.txt; sleep 60",
        ],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not (wt / "partial.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (wt / "partial.txt").exists(), "the command never started"
    pgid = None
    while pgid is None and time.monotonic() < deadline:
        pgid = run_json(repo)["lanes"]["work"].get("pgid")
        time.sleep(0.05)
    assert pgid is not None
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=10)
    assert group_alive(pgid), "the lane's command outlives its killed driver"

    try:
        dry = spine("gc", "--dry-run", cwd=repo)
        assert dry.returncode == 0, dry.stderr
        assert f"would kill process process group {pgid}" in dry.stdout
        assert f"would remove lane-worktree {wt} (its driver is dead)" in dry.stdout
        assert wt.is_dir() and group_alive(pgid)  # a dry run changes nothing

        proc = spine("gc", cwd=repo)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert not group_alive(pgid), "gc left the dead driver's command running"
        assert f"stopped process group {pgid}" in proc.stdout
    finally:
        if group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
    assert not wt.exists()
    assert str(wt) not in registered(repo)
    refs = recovery_refs(repo)
    assert len(refs) == 1 and refs[0].startswith("refs/spine/recovered/r1/work-")
    assert git("show", f"{refs[0]}:partial.txt", cwd=repo) == "partial"
    assert "uncommitted work saved to refs/spine/recovered/r1/work-" in proc.stdout

    lane = run_json(repo)["lanes"]["work"]
    assert lane["status"] == "canceled"
    assert run_json(repo)["driver"] is None
    result = json.loads((state(repo) / "runs" / "r1" / "lanes" / "work" / "result.json").read_text())
    assert result["status"] == "canceled"
    assert "driver died during step execute" in result["summary"]
    assert refs[0] in result["nextAction"]
    # The lane branch had no commits of its own, so it is gone; a second gc finds nothing to do.
    assert git("branch", "--list", "spine/r1/work", cwd=repo) == ""
    assert spine("gc", cwd=repo).stdout.strip() == "nothing to clean up"


def test_gc_keeps_a_dirty_worktrees_changes_recoverable(repo: Path, spine: Spine) -> None:
    run_lane(spine, repo, "echo lane > lane.txt")
    wt = lane_worktree(repo)
    branch_tip = git("rev-parse", "spine/r1/work", cwd=repo)
    # Someone kept working in the lane worktree after the run finished.
    write_files(
        wt, {"lane.txt": "edited afterwards\n", "notes/new.md": "untracked\n", "junk.tmp": "ignored\n"}
    )
    (wt / "README.md").unlink()

    dry = spine("gc", "--dry-run", cwd=repo)
    assert f"would remove lane-worktree {wt} (its run finished)" in dry.stdout
    assert "keep     branch spine/r1/work" in dry.stdout
    assert (wt / "notes" / "new.md").exists() and recovery_refs(repo) == []

    proc = spine("gc", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert not wt.exists()
    (ref,) = recovery_refs(repo)
    assert git("rev-parse", f"{ref}^", cwd=repo) == branch_tip
    assert git("show", f"{ref}:lane.txt", cwd=repo) == "edited afterwards"
    assert git("show", f"{ref}:notes/new.md", cwd=repo) == "untracked"
    changed = git("diff", "--name-status", branch_tip, ref, cwd=repo).splitlines()
    assert sorted(changed) == [
        "A\tnotes/new.md",
        "D\tREADME.md",
        "M\tlane.txt",
    ]  # ignored junk.tmp is not work
    # The branch has commits main lacks: kept, with a reason, unless --prune-branches.
    assert git("rev-parse", "spine/r1/work", cwd=repo) == branch_tip
    assert "it has commits not in main" in proc.stdout
    pruned = spine("gc", "--prune-branches", cwd=repo)
    assert "deleted branch spine/r1/work" in pruned.stdout
    assert git("branch", "--list", "spine/r1/*", cwd=repo) == ""


def test_gc_removes_clean_finished_lanes_and_merged_branches(repo: Path, spine: Spine) -> None:
    run_lane(spine, repo, "true", run_id="nochange")
    run_lane(spine, repo, "echo x > x.txt", run_id="landed")
    assert spine("promote", "landed/work", "--strategy", "ff-only", cwd=repo).returncode == 0
    result = json.loads((state(repo) / "runs" / "nochange" / "lanes" / "work" / "result.json").read_text())
    assert "spine gc" in result["nextAction"]

    proc = spine("gc", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    done = {(f["kind"], f["subject"]): f for f in data_of(proc)["findings"]}
    assert done[("branch", "spine/nochange/work")]["action"] == "delete"
    assert done[("branch", "spine/landed/work")]["action"] == "delete"
    assert registered(repo) == [str(repo)]
    assert git("branch", "--list", "spine/*", cwd=repo) == ""
    assert recovery_refs(repo) == []


def test_gc_handles_what_git_and_spine_disagree_about(repo: Path, spine: Spine, tmp_path: Path) -> None:
    root = state(repo) / "worktrees"
    # A worktree git knows under spine's root that no run claims, with a change in it.
    ghost = root / "ghost-run" / "lane"
    git("worktree", "add", "-q", "--detach", str(ghost), "HEAD", cwd=repo)
    write_files(ghost, {"README.md": "changed in a ghost\n"})
    # A directory under spine's root that git does not know.
    stray = root / "stray-run" / "lane"
    write_files(stray, {"found.txt": "stray work\n"})
    # A gate worktree whose gate was killed, and a worktree of the user's, outside spine's root.
    gate_left = root / ".gate" / "abc-1-ffffff"
    git("worktree", "add", "-q", "--detach", str(gate_left), "HEAD", cwd=repo)
    mine = tmp_path / "my-own-worktree"
    git("worktree", "add", "-q", "-b", "mine", str(mine), cwd=repo)
    # A finished lane locked with `git worktree lock` is respected.
    run_lane(spine, repo, "echo x > x.txt", run_id="locked")
    git("worktree", "lock", "--reason", "still reading it", str(lane_worktree(repo, "locked")), cwd=repo)

    proc = spine("gc", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not ghost.exists() and not stray.exists() and not gate_left.exists()
    assert mine.is_dir() and str(mine) in registered(repo)
    assert lane_worktree(repo, "locked").is_dir()
    assert "still reading it" in proc.stdout
    contents = {git("rev-parse", "--symbolic-full-name", ref, cwd=repo): ref for ref in recovery_refs(repo)}
    ghost_ref = next(r for r in contents if "/orphan/" in r)
    stray_ref = next(r for r in contents if "/stray/" in r)
    assert git("show", f"{ghost_ref}:README.md", cwd=repo) == "changed in a ghost"
    assert git("show", f"{stray_ref}:found.txt", cwd=repo) == "stray work"


def test_gc_leaves_runs_being_driven_alone_and_deletes_expired_ones(repo: Path, spine: Spine) -> None:
    from spine.base.liveness import DriverLock

    run_lane(spine, repo, "echo x > x.txt", run_id="busy")
    run_lane(spine, repo, "true", run_id="old")
    with DriverLock(state(repo) / "runs" / "busy" / "driver.lock"):
        proc = spine("gc", cwd=repo)
    assert "skip     run busy: a spine process is driving it" in proc.stdout
    assert lane_worktree(repo, "busy").is_dir()

    run_file = state(repo) / "runs" / "old" / "run.json"
    data = json.loads(run_file.read_text())
    data["createdAt"] = "2000-01-01T00:00:00Z"
    run_file.write_text(json.dumps(data))
    proc = spine("gc", "--retention-days", "30", cwd=repo)
    assert not (state(repo) / "runs" / "old").exists()
    assert (state(repo) / "runs" / "busy").is_dir()  # finished but young: only its worktree went
    assert not lane_worktree(repo, "busy").exists()


def test_a_half_created_worktree_is_cleared_through_the_reaper(repo: Path, spine: Spine) -> None:
    leftover = lane_worktree(repo, "r1", "work")
    write_files(leftover, {"README.md": "# demo\n", "unexpected.txt": "keep me\n"})
    proc = spine(
        "run",
        "do the work",
        "--run-id",
        "r1",
        "--lane",
        "work",
        "--keep-worktree",
        "-q",
        "--",
        "true",
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stderr
    assert str(leftover) in registered(repo)
    (ref,) = recovery_refs(repo)
    assert ref.startswith("refs/spine/recovered/r1/work-")
    assert git("show", f"{ref}:unexpected.txt", cwd=repo) == "keep me"
    # Only what differs from the base was saved: files a half-finished checkout lacks are not "deleted".
    assert git("diff", "--name-status", "HEAD", ref, cwd=repo) == "A\tunexpected.txt"


def test_gc_started_inside_a_lane_worktree_does_not_remove_it(repo: Path, spine: Spine) -> None:
    run_lane(spine, repo, "echo x > x.txt")
    wt = lane_worktree(repo)
    proc = spine("gc", cwd=wt)
    assert proc.returncode == 0, proc.stderr
    assert "spine gc was started inside it" in proc.stdout
    assert wt.is_dir()
    assert spine("gc", cwd=repo).returncode == 0
    assert not wt.exists()


def _git_started(trace: Path) -> list[str]:
    """The git commands spine started, from a GIT_TRACE2_EVENT file (children of git left out)."""
    started = []
    for line in trace.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "start" and "/" not in event["sid"]:  # a child's sid is its parent's plus /...
            started.append(
                " ".join(a for a in event["argv"][1:] if not a.startswith(("--git-dir", "--work-tree")))
            )
    return started


def test_gc_remembers_runs_it_cleaned_and_starts_no_git_per_old_branch(
    repo: Path, spine: Spine, tmp_path: Path
) -> None:
    def finished_run(run_id: str) -> None:
        proc = spine(
            "run",
            "-q",
            "--run-id",
            run_id,
            "work",
            "--",
            "sh",
            "-c",
            f"echo {run_id} > {run_id}.txt",
            cwd=repo,
        )
        assert proc.returncode == 0, proc.stderr

    def dry_run_git(name: str) -> tuple[list[str], str]:
        trace = tmp_path / f"{name}.trace"
        proc = spine("gc", "--dry-run", cwd=repo, env={"GIT_TRACE2_EVENT": str(trace)})
        assert proc.returncode == 0, proc.stderr
        return _git_started(trace), proc.stdout

    finished_run("r1")
    (state(repo) / "finished-runs.jsonl").unlink()  # as an older spine leaves a finished run
    assert spine("gc", cwd=repo).returncode == 0
    summaries = (state(repo) / "finished-runs.jsonl").read_text().splitlines()
    assert [json.loads(line)["runId"] for line in summaries] == ["r1"]  # gc gave it one for status
    reaped = json.loads((state(repo) / "reaped-runs.json").read_text())
    assert (
        list(reaped["runs"]) == ["r1"] and reaped["runs"]["r1"]["lanes"]["work"]["branch"] == "spine/r1/work"
    )
    with_one, _ = dry_run_git("one")
    for run_id in ("r2", "r3", "r4"):
        finished_run(run_id)
    assert spine("gc", cwd=repo).returncode == 0
    with_four, listing = dry_run_git("four")
    assert sorted(with_four) == sorted(with_one)  # the same git processes with four past runs as with one
    assert any("for-each-ref" in cmd for cmd in with_one), with_one
    assert "keep     4 lane branches with commits not in their target (spine/r1/work," in listing
    kept = {
        f["subject"]: f["reason"]
        for f in spine.json("gc", "--dry-run", "--json", cwd=repo)["findings"]
        if f["kind"] == "branch" and f["action"] == "keep"
    }
    assert sorted(kept) == [f"spine/r{n}/work" for n in (1, 2, 3, 4)]
    assert all("commits not in main" in reason for reason in kept.values()), kept

    # What changes is seen: a branch that lands in the target, a run that is changed.
    git("merge", "-q", "--ff-only", "spine/r2/work", cwd=repo)
    run_file = state(repo) / "runs" / "r3" / "run.json"
    data = json.loads(run_file.read_text())
    data["lanes"]["work"]["branch"] = None  # as if the lane had made no branch of its own... yet one exists
    run_file.write_text(json.dumps(data))
    _, listing = dry_run_git("changed")
    assert "would delete branch spine/r2/work (everything on it is in main)" in listing
    assert "keep     branch spine/r3/work" in listing  # read again from its run.json, found by its name
    assert spine("gc", cwd=repo).returncode == 0
    assert git("branch", "--list", "spine/r2/work", cwd=repo) == ""


def test_unlanded_branches_are_one_line_once_there_are_many(spine: Spine, repo: Path, tmp_path: Path) -> None:
    def lanes(n: int, run_id: str) -> None:
        batch = tmp_path / f"{run_id}.yaml"
        batch.write_text(
            "lanes:\n"
            + "".join(
                f"  - {{id: l{i}, objective: o{i}, command: 'echo {i} > f{i}.txt'}}\n" for i in range(n)
            )
        )
        assert spine("batch", str(batch), "--run-id", run_id, cwd=repo).returncode == 0

    lanes(2, "few")
    out = spine("gc", cwd=repo).stdout
    assert (
        "keep     branch spine/few/l0: it has commits not in main; land it with `spine promote few/l0`" in out
    )
    lanes(3, "many")
    out = spine("gc", cwd=repo).stdout
    assert "keep     5 lane branches with commits not in their target (spine/few/l0, spine/few/l1," in out
    assert "keep     branch" not in out
    kept = [f for f in spine.json("gc", "--json", cwd=repo)["findings"] if f["action"] == "keep"]
    assert len(kept) == 5
