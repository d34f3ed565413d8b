"""Crashes and takeovers: SIGKILL the driver at several points, resume, two drivers, cancel, SIGTERM."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from spine.base.process import group_alive
from tests.conftest import data_of
from tests.lanetool import (
    TOOL,
    git_lines,
    lane,
    result,
    run_json,
    runs_of,
    spine_popen,
    state_dir,
    wait_for,
    write_batch,
)


@pytest.fixture
def tool_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "marks"
    folder.mkdir()
    return folder


@pytest.fixture
def env(tool_dir: Path) -> dict[str, str]:
    return {"LANETOOL_DIR": str(tool_dir)}


def three_lanes(tmp_path: Path, a_actions: tuple[str, ...] = ()) -> Path:
    """a (optionally hanging once), b (independent), c (needs a); each writes and commits a file."""
    return write_batch(
        tmp_path / "lanes.json",
        [
            lane("a", "start", *a_actions, "write:a.txt", "end"),
            lane("b", "start", "write:b.txt", "end"),
            lane("c", "start", "write:c.txt", "end", needs=["a"]),
        ],
    )


def kill(proc: Any) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def assert_clean_and_complete(repo: Path, run_id: str, lanes: list[str]) -> None:
    """Every lane succeeded with one commit; one worktree and one branch per lane, nothing left over."""
    for lane_id in lanes:
        assert result(repo, run_id, lane_id)["status"] == "succeeded", result(repo, run_id, lane_id)
        assert git_lines(repo, "rev-list", f"main..spine/{run_id}/{lane_id}") != []
        commits = result(repo, run_id, lane_id)["commits"]
        assert len(commits) == 1 and commits[0]["madeBy"] == "spine", commits
    branches = git_lines(repo, "branch", "--list", "spine/*", "--format=%(refname:short)")
    assert sorted(branches) == sorted(f"spine/{run_id}/{lane_id}" for lane_id in lanes)
    listing = git_lines(repo, "worktree", "list", "--porcelain")
    assert not [line for line in listing if line.startswith(("prunable", "locked"))], listing
    paths = sorted(line.split(" ", 1)[1] for line in listing if line.startswith("worktree "))
    # A succeeded lane's worktree went back to the pool (default on) unless the pool was full; the
    # result says which. Pooled worktrees are the only others, each detached and clean of lane work.
    kept = [lane_id for lane_id in lanes if result(repo, run_id, lane_id)["worktreeKept"]]
    expected = [str(state_dir(repo) / "worktrees" / run_id / lane_id) for lane_id in kept]
    pool_root = state_dir(repo) / "worktrees" / ".pool"
    pooled = [p for p in paths if Path(p).parent == pool_root]
    assert sorted(p for p in paths if p not in pooled) == sorted([str(repo), *expected])
    assert len(pooled) <= min(4, len(lanes) - len(kept)) and (len(pooled) > 0) == (len(kept) < len(lanes))
    for slot in pooled:
        assert git_lines(Path(slot), "rev-parse", "--abbrev-ref", "HEAD") == ["HEAD"], slot  # detached
    run_worktrees = state_dir(repo) / "worktrees" / run_id
    left = sorted(p.name for p in run_worktrees.iterdir()) if run_worktrees.exists() else []
    assert left == sorted(kept)
    state = run_json(repo, run_id)
    assert all(ln["currentStep"] is None and ln["pgid"] is None for ln in state["lanes"].values())


@pytest.mark.parametrize(
    "crash_at",
    [
        "a/create_worktree:effects",  # worktree and branch made, not recorded
        "a/commit:effects",  # commit made, not recorded: redoing it must not commit twice
        "a/commit",  # between commit and result
        "a/validate:begin",
        "a/finalize:effects",  # result written, not recorded
    ],
)
def test_sigkill_at_a_step_then_resume(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str], tool_dir: Path, crash_at: str
) -> None:
    batch = three_lanes(tmp_path)
    # The driver SIGKILLs itself at the crash point: it must be a process of its own.
    proc = spine(
        "batch",
        str(batch),
        "-j",
        "1",
        "--run-id",
        "r",
        cwd=repo,
        env={**env, "SPINE_CRASH_AT": crash_at},
        subprocess=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert run_json(repo, "r")["lanes"]["a"]["stepsDone"] != list(
        ("create_worktree", "setup", "execute", "commit", "validate", "finalize")
    )
    ran_before = runs_of(tool_dir, "a")
    resumed = spine("resume", "r", "--json", cwd=repo, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert data_of(resumed)["counts"] == {"succeeded": 3}
    # The command ran exactly once if it had run before the crash, and never again.
    assert ran_before in (0, 1)
    assert runs_of(tool_dir, "a") == 1
    assert runs_of(tool_dir, "b") == 1 and runs_of(tool_dir, "c") == 1
    assert_clean_and_complete(repo, "r", ["a", "b", "c"])
    events = (state_dir(repo) / "runs/r/events.jsonl").read_text()
    caught_mid_step = ":" in crash_at
    assert ('"step-interrupted"' in events) == caught_mid_step


def test_sigkill_during_setup_then_resume(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str], tool_dir: Path
) -> None:
    setup = f"{sys.executable} {TOOL} hang-once:setup-$SPINE_LANE_ID"
    (repo / ".spine.yaml").write_text(f"setup:\n  commands:\n    - {json.dumps(setup)}\n")
    (tool_dir / "setup-c").write_text("c starts after the crash: its setup never hangs")
    driver = spine_popen("batch", str(three_lanes(tmp_path)), "-j", "2", "--run-id", "s", cwd=repo, env=env)
    wait_for(tool_dir / "setup-a")
    wait_for(tool_dir / "setup-b")
    kill(driver)
    stray = int((tool_dir / "setup-a").read_text())
    state = run_json(repo, "s")
    assert state["lanes"]["a"]["currentStep"] == "setup" and state["lanes"]["a"]["pgid"] == stray
    assert group_alive(stray)  # the dead driver's setup command is still running
    resumed = spine("resume", "s", cwd=repo, env=env)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert not group_alive(stray)
    assert [runs_of(tool_dir, x) for x in "abc"] == [1, 1, 1]
    assert_clean_and_complete(repo, "s", ["a", "b", "c"])


def test_sigkill_during_the_command_then_resume(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str], tool_dir: Path
) -> None:
    batch = three_lanes(tmp_path, ("hang-once:cmd-a",))
    driver = spine_popen("batch", str(batch), "-j", "2", "--run-id", "x", cwd=repo, env=env)
    wait_for(tool_dir / "cmd-a")
    # b's result file is written before its worktree goes back to the pool; wait until b is recorded.
    wait_for(state_dir(repo) / "runs/x/lanes/b/result.json")
    deadline = time.monotonic() + 60
    while run_json(repo, "x")["lanes"]["b"]["status"] != "succeeded":
        assert time.monotonic() < deadline, run_json(repo, "x")["lanes"]["b"]
        time.sleep(0.02)
    kill(driver)
    stray = int((tool_dir / "cmd-a").read_text())
    assert run_json(repo, "x")["lanes"]["a"]["pgid"] == stray

    status = spine.json("status", "x", "--json", cwd=repo)
    assert status["state"] == "interrupted"
    lanes = {entry["id"]: entry for entry in status["lanes"]}
    assert lanes["a"]["status"] == "interrupted" and "spine resume x" in lanes["a"]["nextAction"]
    assert lanes["b"]["status"] == "succeeded" and lanes["c"]["status"] == "planned"

    resumed = spine("resume", "x", cwd=repo, env=env)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert not group_alive(stray)
    # a was caught mid-command and ran again; b had its result and did not; c ran once.
    assert [runs_of(tool_dir, x) for x in "abc"] == [2, 1, 1]
    assert_clean_and_complete(repo, "x", ["a", "b", "c"])
    assert "nothing to resume" in spine("resume", "x", cwd=repo, env=env).stderr
    assert [runs_of(tool_dir, x) for x in "abc"] == [2, 1, 1]


def test_resume_keeps_commits_the_command_made_before_the_crash(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str], tool_dir: Path
) -> None:
    commit_first = "git add -A && (git diff --cached --quiet || git commit -qm 'work before the crash')"
    batch = write_batch(
        tmp_path / "lanes.json",
        [
            {
                "id": "a",
                "objective": "commit, then hang",
                "command": f"echo one > one.txt && {commit_first} && {sys.executable} {TOOL} hang-once:cmd-a write:two.txt",
            }
        ],
    )
    driver = spine_popen("batch", str(batch), "--run-id", "k", cwd=repo, env=env)
    wait_for(tool_dir / "cmd-a")
    kill(driver)
    assert git_lines(repo, "log", "--format=%s", "main..spine/k/a") == ["work before the crash"]
    resumed = spine("resume", "k", "--json", cwd=repo, env=env)
    assert resumed.returncode == 0, resumed.stderr
    subjects = git_lines(repo, "log", "--format=%s", "main..spine/k/a")
    assert subjects[-1] == "work before the crash" and len(subjects) == 2
    commits = result(repo, "k", "a")["commits"]
    assert [c["madeBy"] for c in commits] == ["command", "spine"]


def test_a_second_driver_is_refused(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str], tool_dir: Path
) -> None:
    batch = write_batch(
        tmp_path / "lanes.json", [lane("hold", "start", "wait:release", "end"), lane("next", needs=["hold"])]
    )
    driver = spine_popen("batch", str(batch), "--run-id", "busy", cwd=repo, env=env)
    try:
        wait_for(tool_dir / "hold.start")
        for args in (("resume", "busy"), ("step", "busy")):
            proc = spine(*args, cwd=repo, env=env)
            assert proc.returncode == 3, proc.stderr
            assert "run busy is being driven by another spine process" in proc.stderr
        view = spine.json("status", "busy", "--json", cwd=repo)
        assert view["driven"] is True and view["state"] == "running"
        assert {entry["id"]: entry["status"] for entry in view["lanes"]} == {
            "hold": "running",
            "next": "planned",
        }
    finally:
        (tool_dir / "release").write_text("go")
        _, err = driver.communicate(timeout=60)
    assert driver.returncode == 0, err
    assert runs_of(tool_dir, "hold") == 1


def test_cancel_a_lane_from_another_process(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str], tool_dir: Path
) -> None:
    batch = write_batch(
        tmp_path / "lanes.json",
        [
            lane("long", "start", "pid", "sleep:30", "end"),
            lane("after", "start", needs=["long"]),
            lane("free", "start", "wait:long.pgid", "write:free.txt", "end"),
        ],
    )
    driver = spine_popen("batch", str(batch), "-j", "2", "--run-id", "cx", "--json", cwd=repo, env=env)
    wait_for(tool_dir / "long.pgid")
    pgid = int((tool_dir / "long.pgid").read_text())
    wait_for(state_dir(repo) / "runs/cx/run.json")
    assert run_json(repo, "cx")["lanes"]["long"]["pgid"] == pgid
    canceled = spine("cancel", "cx", "long", cwd=repo, env=env)
    assert canceled.returncode == 0, canceled.stderr
    assert "long: canceled" in canceled.stdout
    out, err = driver.communicate(timeout=60)
    assert driver.returncode == 1, err
    assert not group_alive(pgid)
    assert not (tool_dir / "long.end").exists()
    lanes = {entry["id"]: entry for entry in json.loads(out)["data"]["lanes"]}
    assert lanes["long"]["status"] == "canceled"
    assert lanes["after"]["status"] == "blocked" and "lane long (canceled)" in lanes["after"]["nextAction"]
    assert lanes["free"]["status"] == "succeeded"


def test_cancel_with_no_driver_alive_stops_what_the_dead_driver_left(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str], tool_dir: Path
) -> None:
    driver = spine_popen(
        "batch", str(three_lanes(tmp_path, ("hang-once:cmd-a",))), "--run-id", "nd", cwd=repo, env=env
    )
    wait_for(tool_dir / "cmd-a")
    kill(driver)
    stray = int((tool_dir / "cmd-a").read_text())
    assert group_alive(stray)
    canceled = spine("cancel", "nd", cwd=repo, env=env)
    assert canceled.returncode == 0, canceled.stderr
    assert not group_alive(stray)
    view = spine.json("status", "nd", "--json", cwd=repo)
    assert view["state"] == "complete"
    assert {entry["id"]: entry["status"] for entry in view["lanes"]} == {
        "a": "canceled",
        "b": "canceled",
        "c": "canceled",
    }
    assert spine("resume", "nd", cwd=repo, env=env).returncode == 130
    assert [runs_of(tool_dir, x) for x in "abc"] == [1, 0, 0]
    # the canceled lane keeps its worktree and branch, registered once
    assert git_lines(repo, "branch", "--list", "spine/*", "--format=%(refname:short)") == ["spine/nd/a"]


def test_sigterm_cancels_running_lanes_and_resume_runs_the_rest(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str], tool_dir: Path
) -> None:
    batch = write_batch(
        tmp_path / "lanes.json",
        [lane("first", "start", "pid", "sleep:30", "end"), lane("second", "start", "write:s.txt")],
    )
    driver = spine_popen("batch", str(batch), "-j", "1", "--run-id", "term", cwd=repo, env=env)
    wait_for(tool_dir / "first.pgid")
    driver.send_signal(signal.SIGTERM)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err
    assert "spine resume term" in err
    state = run_json(repo, "term")
    assert state["lanes"]["first"]["status"] == "canceled"
    assert state["lanes"]["second"]["status"] == "planned" and state["halted"] is True
    resumed = spine("resume", "term", "--json", cwd=repo, env=env)
    assert resumed.returncode == 130  # one lane stays canceled
    assert data_of(resumed)["counts"] == {"succeeded": 1, "canceled": 1}
    assert runs_of(tool_dir, "first") == 1 and runs_of(tool_dir, "second") == 1


@pytest.mark.parametrize("leftover", ["locked-half-checkout", "unregistered-directory"])
def test_half_made_worktree_is_reconciled_not_duplicated(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str], tool_dir: Path, leftover: str
) -> None:
    batch = write_batch(
        tmp_path / "lanes.json", [lane("a", "start", "write:a.txt", "end", keep_worktree=True)]
    )
    crash = "a/create_worktree:effects" if leftover.startswith("locked") else "a/create_worktree:begin"
    proc = spine(
        "batch", str(batch), "--run-id", "h", cwd=repo, env={**env, "SPINE_CRASH_AT": crash}, subprocess=True
    )
    assert proc.returncode == -signal.SIGKILL
    path = state_dir(repo) / "worktrees/h/a"
    if leftover == "locked-half-checkout":
        # What `git worktree add` leaves when killed during its checkout: locked, files missing.
        git_lines(repo, "worktree", "lock", "--reason", "initializing", str(path))
        (path / "README.md").unlink()
    else:
        path.mkdir(parents=True)
        (path / "junk.txt").write_text("left by a crash")
    resumed = spine("resume", "h", cwd=repo, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert (path / "README.md").is_file() and not (path / "junk.txt").exists()
    assert_clean_and_complete(repo, "h", ["a"])
    assert result(repo, "h", "a")["diffStat"]["filesChanged"] == 1
