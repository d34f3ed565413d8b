"""A lane never lies: after its command, spine checks the worktree, HEAD, processes and the commit.

Each test is a way a command can make a lane's result untrue, and asserts what is true afterwards:
the exact branch contents, the untouched primary checkout, the absent process, the run's state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import Spine, git, write_files


def run_lane(spine: Spine, repo: Path, *args: str, expect: int | None = 0, **kw: Any) -> dict[str, Any]:
    result: dict[str, Any] = spine.json("run", "--json", "-q", *args, cwd=repo, expect=expect, **kw)
    return result


def invariant(result: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [i for i in result["invariants"] if i["name"] == name]
    return found


def files_of(repo: Path, rev: str) -> list[str]:
    return git("ls-tree", "-r", "--name-only", rev, cwd=repo).split()


# --- 1. the worktree stops being the lane's ------------------------------------------------------


def test_a_command_that_deletes_its_git_file_fails_and_touches_nothing_outside_the_lane(
    spine: Spine, repo: Path
) -> None:
    write_files(repo, {".gitignore": "*.tmp\n.worktrees/\n", ".spine.yaml": "worktree_root: .worktrees\n"})
    git("add", ".gitignore", cwd=repo)
    git("commit", "-qm", "ignore worktrees", cwd=repo)
    (repo / "README.md").write_text("# demo\nan edit of the user's, not committed\n")
    main = git("rev-parse", "main", cwd=repo)

    result = run_lane(
        spine, repo, "--run-id", "r1", "--lane", "regen", "regenerate", "--", "rm", "-rf", ".git", expect=1
    )

    assert result["status"] == "failed" and result["failureKind"] == "violation"
    assert invariant(result, "worktree")["status"] == "violated"
    assert ".git file was removed" in result["summary"]
    assert result["commits"] == []
    # Nothing outside the lane changed: main, the primary checkout's HEAD, the user's edit, the lane branch.
    assert git("rev-parse", "main", cwd=repo) == main
    assert git("symbolic-ref", "HEAD", cwd=repo) == "refs/heads/main"
    assert git("diff", "--name-only", cwd=repo) == "README.md"  # still the user's unstaged edit
    assert git("diff", "--cached", "--name-only", cwd=repo) == ""
    assert "an edit of the user's" in (repo / "README.md").read_text()
    assert git("rev-parse", "spine/r1/regen", cwd=repo) == main
    # A failed lane's worktree is kept, never handed to the pool.
    assert not list((repo / ".worktrees").glob(".pool/*"))


def test_a_command_that_removes_its_own_worktree_is_told_apart_from_a_missing_git(
    spine: Spine, repo: Path
) -> None:
    result = run_lane(
        spine,
        repo,
        "self removal",
        "--",
        "sh",
        "-c",
        'git worktree remove --force "$SPINE_WORKTREE"',
        expect=1,
    )
    assert result["failureKind"] == "violation"
    assert "is gone" in invariant(result, "worktree")["detail"]
    assert "not installed" not in json.dumps(result)


# --- 2. HEAD leaves the lane branch -----------------------------------------------------------------


def test_work_committed_on_another_branch_is_followed_onto_the_lane_branch(spine: Spine, repo: Path) -> None:
    command = "git switch -qc topic && echo f > f.txt && git add f.txt && git commit -qm feat"
    result = run_lane(spine, repo, "--run-id", "r1", "--lane", "t", "topic work", "--", "sh", "-c", command)
    assert result["status"] == "succeeded"
    head = invariant(result, "head")
    assert head["status"] == "fixed" and "topic" in head["detail"]
    assert (
        git("rev-parse", "spine/r1/t", cwd=repo) == result["headSha"] == git("rev-parse", "topic", cwd=repo)
    )
    assert "f.txt" in files_of(repo, "spine/r1/t")
    # What the result reports is what promotion lands.
    promoted = spine("promote", "r1/t", "--strategy", "squash", cwd=repo)
    assert promoted.returncode == 0, promoted.stderr
    assert "f.txt" in files_of(repo, "main")


def test_a_detached_head_that_leaves_the_work_off_the_lane_branch_fails_and_says_where(
    spine: Spine, repo: Path
) -> None:
    base = git("rev-parse", "main", cwd=repo)
    command = "git checkout -q --detach HEAD~1 && echo change > d.txt && git add d.txt && git commit -qm off"
    result = run_lane(
        spine, repo, "--run-id", "r1", "--lane", "d", "detached", "--", "sh", "-c", command, expect=1
    )
    assert result["failureKind"] == "violation"
    head = invariant(result, "head")
    assert (
        head["status"] == "violated"
        and "detached" in head["detail"]
        and "the work is there" in head["detail"]
    )
    # The lane branch still holds its base, and the commit the result names is kept where it is (the
    # worktree of a failed lane stays, its HEAD on that commit).
    assert git("rev-parse", "spine/r1/d", cwd=repo) == base
    worktree = Path(result["worktreePath"])
    assert worktree.is_dir() and git("rev-parse", "HEAD", cwd=worktree) == result["headSha"]
    assert git("log", "-1", "--format=%s", result["headSha"], cwd=repo) == "off"


# --- 3. processes outlive the lane -------------------------------------------------------------------


BEAT = f"beat-{uuid.uuid4().hex[:10]}.log"  # unique: other processes on the machine may print "beat"
LOOP = f'setsid sh -c "while :; do date >> {BEAT}; sleep 0.2; done" </dev/null >/dev/null 2>&1 & sleep 0.5'


def _beats() -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if BEAT in line and "ps -eo" not in line]


def test_processes_a_command_leaves_behind_are_stopped_before_the_worktree_is_reused(
    spine: Spine, repo: Path
) -> None:
    result = run_lane(spine, repo, "--run-id", "r1", "--lane", "a", "beats", "--", "sh", "-c", LOOP)
    assert result["status"] == "succeeded"
    processes = invariant(result, "processes")
    assert processes["status"] == "fixed" and BEAT in processes["detail"]
    assert _beats() == []
    # The next lane takes the same worktree from the pool; nothing writes beat.log into it any more.
    unrelated = run_lane(
        spine,
        repo,
        "--run-id",
        "r2",
        "--lane",
        "b",
        "unrelated",
        "--",
        "sh",
        "-c",
        "sleep 0.6; echo b > b.txt",
    )
    assert unrelated["status"] == "succeeded"
    assert BEAT not in files_of(repo, "spine/r2/b")


def test_a_timeout_stops_descendants_that_left_the_group_and_ignore_sigterm(spine: Spine, repo: Path) -> None:
    marker = f"stubborn-{uuid.uuid4().hex[:10]}"
    stubborn = f'trap "" TERM; setsid sh -c "trap \\"\\" TERM; sleep 300" {marker} </dev/null >/dev/null 2>&1 & sleep 300'
    started = time.monotonic()
    result = run_lane(spine, repo, "--timeout", "2", "stubborn", "--", "sh", "-c", stubborn, expect=1)
    took = time.monotonic() - started
    assert result["failureKind"] == "timeout"
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert marker not in out
    # The limit plus the grace period SIGTERM gets, not the 5 s reader waits of a leaked pipe.
    assert result["durationSeconds"] < 2 + 3 + 2, took


# --- 4. what spine copied in or setup produced is not the lane's work ----------------------------------


def test_copied_and_setup_files_are_never_part_of_the_lanes_commit(spine: Spine, repo: Path) -> None:
    write_files(
        repo,
        {
            ".gitignore": "*.tmp\nenv/\n",
            ".worktreeinclude": ".env\n",
            ".spine.yaml": "setup:\n  commands:\n    - echo generated > setup-out.txt\n",
        },
    )
    git("add", ".gitignore", ".worktreeinclude", cwd=repo)
    git("commit", "-qm", "include .env", cwd=repo)
    (repo / ".env").write_text("GITHUB_TOKEN=ghp_notatoken1234567890\n")
    git("branch", "release", "main", cwd=repo)

    noop = run_lane(spine, repo, "--run-id", "r1", "--lane", "noop", "nothing", "--", "true")
    assert noop["commits"] == [] and "no changes" in noop["summary"]
    assert invariant(noop, "commit")["status"] == "fixed"
    assert ".env" in invariant(noop, "commit")["detail"]

    work = run_lane(spine, repo, "--run-id", "r2", "--lane", "w", "work", "--", "sh", "-c", "echo w > w.txt")
    assert sorted(files_of(repo, "spine/r2/w")) == sorted([*files_of(repo, "main"), "w.txt"])
    assert work["diffStat"]["filesChanged"] == 1
    assert spine("promote", "r2/w", "--into", "release", cwd=repo).returncode == 0
    assert ".env" not in files_of(repo, "release") and "setup-out.txt" not in files_of(repo, "release")


def test_a_command_that_commits_a_copied_private_file_fails_the_lane(spine: Spine, repo: Path) -> None:
    write_files(repo, {".worktreeinclude": ".env\n"})
    git("add", ".worktreeinclude", cwd=repo)
    git("commit", "-qm", "include .env", cwd=repo)
    (repo / ".env").write_text("API_TOKEN=abcdef123456\n")
    result = run_lane(spine, repo, "agent", "--", "sh", "-c", "git add -A && git commit -qm all", expect=1)
    assert result["failureKind"] == "violation"
    assert ".env" in invariant(result, "commit")["detail"]


# --- 6. copies keep what they copy -------------------------------------------------------------------


def test_symbolic_links_arrive_as_links_and_what_cannot_be_copied_is_reported(
    spine: Spine, repo: Path
) -> None:
    write_files(repo, {".worktreeinclude": "deps/\n", ".gitignore": "*.tmp\ndeps/\n"})
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "deps", cwd=repo)
    (repo / "deps" / "real").mkdir(parents=True)
    (repo / "deps" / "real" / "lib.txt").write_text("lib\n")
    os.symlink("real/lib.txt", repo / "deps" / "link.txt")
    os.symlink("real", repo / "deps" / "dirlink")
    result = run_lane(
        spine,
        repo,
        "--keep-worktree",
        "use deps",
        "--",
        "sh",
        "-c",
        "test -L deps/link.txt && test -L deps/dirlink && cat deps/dirlink/lib.txt > used.txt",
    )
    assert result["status"] == "succeeded", result["summary"]
    worktree = Path(result["worktreePath"])
    assert os.readlink(worktree / "deps" / "link.txt") == "real/lib.txt"
    assert os.readlink(worktree / "deps" / "dirlink") == "real"


def test_what_cannot_be_copied_is_reported_not_dropped(tmp_path: Path) -> None:
    from spine.workspace.worktrees import copy_included

    primary, worktree = tmp_path / "primary", tmp_path / "worktree"
    git("init", "-q", str(primary), cwd=tmp_path)
    write_files(primary, {".worktreeinclude": "cfg/\n.env\n", "cfg/a.txt": "a\n", ".env": "X=1\n"})
    write_files(worktree, {"cfg": "a file where the folder would go\n"})
    copied, problems = copy_included(primary, worktree, [])
    assert copied == [".env"]
    assert len(problems) == 1 and problems[0].startswith("cfg/a.txt: ")


# --- 7. recovery paths ------------------------------------------------------------------------------


def test_a_retry_after_the_worktree_folder_was_deleted_by_hand_runs(spine: Spine, repo: Path) -> None:
    import shutil

    failed = run_lane(
        spine,
        repo,
        "--run-id",
        "r1",
        "--lane",
        "x",
        "fails",
        "--",
        "sh",
        "-c",
        "echo p > p.txt; exit 1",
        expect=1,
    )
    shutil.rmtree(failed["worktreePath"])
    again = spine("resume", "r1", "--retry", cwd=repo)
    assert again.returncode == 1, again.stderr  # the command fails again, as it should
    assert "checked out at" not in again.stderr
    refs = git("for-each-ref", "--format=%(refname)", "refs/spine/attempts/r1/", cwd=repo).split()
    assert refs == ["refs/spine/attempts/r1/x/1"]
    assert git("show", "refs/spine/attempts/r1/x/1:p.txt", cwd=repo) == "p"
    status = spine.json("status", "r1", "--json", cwd=repo)
    assert status["state"] == "complete" and status["lanes"][0]["status"] == "failed"


def test_a_retry_refuses_a_locked_worktree_before_changing_anything(spine: Spine, repo: Path) -> None:
    failed = run_lane(
        spine,
        repo,
        "--run-id",
        "r1",
        "--lane",
        "x",
        "fails",
        "--",
        "sh",
        "-c",
        "echo p > p.txt; exit 1",
        expect=1,
    )
    worktree = Path(failed["worktreePath"])
    git("worktree", "lock", str(worktree), cwd=repo)
    refused = spine("resume", "r1", "--retry", cwd=repo)
    assert refused.returncode == 2 and "locked" in refused.stderr and "git worktree unlock" in refused.stderr
    assert (worktree / "p.txt").read_text() == "p\n"
    assert (repo / ".git" / "spine" / "runs" / "r1" / "lanes" / "x" / "result.json").is_file()
    assert git("for-each-ref", "refs/spine/attempts/", cwd=repo) == ""


def test_a_stale_index_lock_left_by_the_command_is_removed_and_said_so(spine: Spine, repo: Path) -> None:
    command = 'echo w > w.txt; touch "$(git rev-parse --git-dir)/index.lock"'
    result = run_lane(spine, repo, "locked index", "--", "sh", "-c", command)
    assert result["status"] == "succeeded"
    assert "stale index.lock" in invariant(result, "commit")["detail"]
    assert "w.txt" in files_of(repo, result["branch"])


def test_partial_work_is_committed_when_the_timebox_stops_a_command_holding_the_index_lock(
    spine: Spine, repo: Path
) -> None:
    command = 'echo partial > w.txt; touch "$(git rev-parse --git-dir)/index.lock"; sleep 60'
    result = run_lane(spine, repo, "--timeout", "1", "slow", "--", "sh", "-c", command, expect=1)
    assert result["failureKind"] == "timeout"
    assert git("show", f"{result['branch']}:w.txt", cwd=repo) == "partial"


def test_a_driver_killed_in_the_commit_step_leaves_a_lane_that_resume_finishes(
    spine: Spine, repo: Path
) -> None:
    proc = spine(
        "run",
        "--run-id",
        "r1",
        "--lane",
        "c",
        "crash",
        "--",
        "sh",
        "-c",
        "echo c > c.txt",
        cwd=repo,
        env={"SPINE_CRASH_AT": "commit:begin"},
    )
    assert proc.returncode == -9
    # What a SIGKILL during `git add -A` leaves behind.
    git_dir = Path(git("rev-parse", "--git-dir", cwd=repo / ".git" / "spine" / "worktrees" / "r1" / "c"))
    (git_dir / "index.lock").write_text("")
    resumed = spine("resume", "r1", "--json", cwd=repo)
    assert resumed.returncode == 0, resumed.stderr
    assert git("show", "spine/r1/c:c.txt", cwd=repo) == "c"


# --- 8. one promotion of a lane -----------------------------------------------------------------------


def test_two_promotions_started_at_once_land_the_lane_once(spine: Spine, repo: Path) -> None:
    run_lane(spine, repo, "--run-id", "r1", "--lane", "w", "work", "--", "sh", "-c", "echo w > w.txt")
    git("commit", "-q", "--allow-empty", "-m", "main moves on", cwd=repo)
    before = git("rev-parse", "main", cwd=repo)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "spine", "promote", "r1/w", "--strategy", "squash"],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert git("rev-list", "--count", f"{before}..main", cwd=repo) == "1"
    result = json.loads((repo / ".git" / "spine" / "runs" / "r1" / "lanes" / "w" / "result.json").read_text())
    assert result["promotion"]["targetAfter"] == git("rev-parse", "main", cwd=repo)
