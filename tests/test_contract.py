"""One lane-spec resolver on every path, a versioned state format, and the error contract kept."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Spine, data_of, git, write_files

OPERATOR = """
operators:
  - id: touch
    name: Touch a file
    modes: [PIPELINE]
    command: echo done > out.txt
    outputs: [out.txt]
    acceptance: [{name: exists, command: test -f out.txt}]
    timebox: 5m
"""


def run_json(repo: Path, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((repo / ".git" / "spine" / "runs" / run_id / "run.json").read_text())
    return data


def spec_of(repo: Path, run_id: str, lane_id: str) -> dict[str, Any]:
    spec: dict[str, Any] = run_json(repo, run_id)["lanes"][lane_id]["spec"]
    return spec


# --- one resolver ------------------------------------------------------------------------------------


def test_an_operator_lane_keeps_network_pass_env_and_no_timeout(spine: Spine, repo: Path) -> None:
    write_files(repo, {".spine.yaml": OPERATOR})
    proc = spine(
        "run",
        "-q",
        "--run-id",
        "op",
        "--op",
        "touch",
        "--network",
        "--pass-env",
        "FOO",
        "--timeout",
        "none",
        "touch it",
        cwd=repo,
    )
    assert proc.returncode in (0, 1), proc.stderr  # graded on PIPELINE's evidence; the spec is the point
    spec = spec_of(repo, "op", "touch-it")
    assert spec["network"] is True and spec["envPassthrough"] == ["FOO"] and spec["timeout"] is None
    assert spec["sources"]["timeout"] == "flag" and spec["sources"]["network"] == "flag"


def test_a_batch_lane_can_set_every_lane_setting(spine: Spine, repo: Path) -> None:
    batch = repo.parent / "lanes.json"
    batch.write_text(
        json.dumps(
            {
                "lanes": [
                    {
                        "id": "a",
                        "objective": "a",
                        "command": "true",
                        "network": True,
                        "env_passthrough": ["FOO"],
                        "keep_worktree": True,
                        "timeout": None,
                        "checks_on_host": True,
                    },
                    {"id": "b", "objective": "b", "command": "true"},
                ]
            }
        )
    )
    proc = spine("batch", str(batch), "--run-id", "b1", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    a, b = spec_of(repo, "b1", "a"), spec_of(repo, "b1", "b")
    assert (a["network"], a["envPassthrough"], a["keepWorktree"], a["timeout"], a["checksOnHost"]) == (
        True,
        ["FOO"],
        True,
        None,
        True,
    )
    assert a["sources"]["timeout"] == "batch lane"
    # The defaults are the same as on the command line.
    assert (b["network"], b["timeout"], b["sources"]["timeout"]) == (False, 3600.0, "default")
    assert Path(run_json(repo, "b1")["lanes"]["a"]["worktree"]).is_dir()


def test_timeout_none_means_no_limit_on_every_path(spine: Spine, repo: Path) -> None:
    write_files(repo, {".spine.yaml": "timeout: 10m\n" + OPERATOR})
    assert (
        spine(
            "run", "-q", "--run-id", "r1", "--lane", "x", "--timeout", "none", "x", "--", "true", cwd=repo
        ).returncode
        == 0
    )
    assert spine(
        "run", "-q", "--run-id", "r2", "--op", "touch", "--timeout", "none", "y", cwd=repo
    ).returncode in (0, 1)
    batch = repo.parent / "lanes.yaml"
    batch.write_text("lanes:\n  - {id: z, objective: z, command: 'true', timeout: null}\n")
    assert spine("batch", str(batch), "--run-id", "r3", cwd=repo).returncode == 0
    assert [spec_of(repo, r, lane)["timeout"] for r, lane in (("r1", "x"), ("r2", "y"), ("r3", "z"))] == [
        None
    ] * 3


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--check", ""], "--check: the check command is empty"),
        (
            ["--artifact", "/etc/hostname"],
            "--artifact: invalid artifact glob '/etc/hostname': it is absolute",
        ),
        (["--artifact", ""], "--artifact: invalid artifact glob '': it is empty"),
        (["--artifact", "../up/*"], "leaves the worktree"),
        (["--env", "A=B=C", "--env", "1X=2"], "--env: '1X' is not a variable name"),
        (["--pass-env", "NO=PE"], "--pass-env: 'NO=PE' is not a variable name"),
        (["--base", "-x"], "invalid base ref"),
    ],
)
def test_bad_lane_settings_are_usage_errors_before_anything_exists(
    spine: Spine, repo: Path, args: list[str], says: str
) -> None:
    proc = spine("run", *args, "objective", "--", "true", cwd=repo)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr
    assert not (repo / ".git" / "spine" / "runs").exists() or not any(
        (repo / ".git" / "spine" / "runs").iterdir()
    )


def test_dash_dash_without_an_objective_says_so(spine: Spine, repo: Path) -> None:
    proc = spine("run", "--", "echo", "hi", cwd=repo)
    assert proc.returncode == 2 and "the objective is missing" in proc.stderr
    assert git("branch", "--list", "spine/*", cwd=repo) == ""


# --- the state format -----------------------------------------------------------------------------------


def test_state_from_a_newer_minor_version_is_read_and_a_newer_major_refused(spine: Spine, repo: Path) -> None:
    assert spine("run", "-q", "--run-id", "r1", "x", "--", "true", cwd=repo).returncode == 0
    path = repo / ".git" / "spine" / "runs" / "r1" / "run.json"
    data = json.loads(path.read_text())
    data["addedLater"] = {"by": "a newer spine"}
    data["lanes"]["x"]["facts"]["somethingNew"] = 1
    path.write_text(json.dumps(data))
    status = spine("status", "r1", "--json", cwd=repo)
    assert status.returncode == 0, status.stderr
    assert data_of(status)["lanes"][0]["status"] == "succeeded"
    data["schemaVersion"] = 99
    path.write_text(json.dumps(data))
    refused = spine("status", "r1", cwd=repo)
    assert refused.returncode == 3
    assert "newer spine (state version 99)" in refused.stderr and "upgrade spine" in refused.stderr


def test_state_of_the_previous_format_is_converted(spine: Spine, repo: Path) -> None:
    assert (
        spine("run", "-q", "--run-id", "r1", "x", "--", "sh", "-c", "echo x > x.txt", cwd=repo).returncode
        == 0
    )
    path = repo / ".git" / "spine" / "runs" / "r1" / "run.json"
    data = json.loads(path.read_text())
    lane = data["lanes"]["x"]
    lane["facts"] = {
        "create_worktree": {"source": "fresh", "seconds": 0.1},
        "execute": {"exitCode": 0, "durationSeconds": 1.0, "tail": []},
        "commit": {"commits": [], "headSha": None, "diffStat": None},
        "validate": [],
        "result": {"path": "x", "status": "succeeded", "nextAction": "n"},
    }
    lane["error"] = "step commit failed: boom"
    data["schemaVersion"] = 1
    path.write_text(json.dumps(data))
    view = data_of(spine("status", "r1", "--json", cwd=repo))
    assert view["lanes"][0]["status"] == "succeeded"


# --- the error contract -------------------------------------------------------------------------------


def test_a_held_worktrees_lock_makes_gc_exit_3_naming_it(spine: Spine, repo: Path) -> None:
    write_files(repo, {".spine.yaml": "lock_timeout: 1s\n"})
    lock = repo / ".git" / "spine" / "locks" / "worktrees.lock"
    lock.parent.mkdir(parents=True)
    (lock.parent / "worktrees.lock.holder").write_text(f"{os.getpid()} a test holding it\n")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        started = time.monotonic()
        proc = spine("gc", cwd=repo)
        took = time.monotonic() - started
    finally:
        os.close(fd)
    assert proc.returncode == 3
    assert (
        "worktrees.lock" in proc.stderr
        and "a test holding it" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    assert took < 30


def test_a_bug_inside_a_step_is_exit_4_with_a_crash_log_not_a_lane_failure(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from spine.cli import run_cli
    from spine.lane import steps

    def broken(rt: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(steps.STEP_FUNCTIONS, "setup", broken)
    monkeypatch.chdir(repo)
    code = run_cli(["run", "-q", "--run-id", "r1", "--lane", "x", "buggy", "--", "true"])
    err = capsys.readouterr().err
    assert code == 4 and "internal error" in err and "ZeroDivisionError" in err
    crash_log = Path(err.split("details: ")[1].split()[0])
    assert "ZeroDivisionError: a bug" in crash_log.read_text()
    lane = run_json(repo, "r1")["lanes"]["x"]
    assert (
        lane["status"] == "running" and lane["currentStep"] == "setup" and lane["facts"].get("halt") is None
    )
    assert not (repo / ".git" / "spine" / "runs" / "r1" / "lanes" / "x" / "result.json").exists()


def test_a_step_that_fails_for_the_environment_halts_its_lane_once_and_its_next_action_works(
    spine: Spine, repo: Path
) -> None:
    # The command leaves a lock on its own branch's ref: spine's commit cannot move the branch.
    command = 'echo x > x.txt; touch "$(git rev-parse --git-common-dir)/refs/heads/$SPINE_BRANCH.lock"'
    proc = spine(
        "run",
        "--json",
        "-q",
        "--run-id",
        "r1",
        "--lane",
        "x",
        "locked ref",
        "--",
        "sh",
        "-c",
        command,
        cwd=repo,
    )
    assert proc.returncode == 3, proc.stderr
    result = data_of(proc)
    assert result["status"] == "failed" and result["failureKind"] == "error"
    assert "step commit failed" in result["error"] and ".lock" in result["error"]
    packet = json.loads(Path(result["debugPacket"]).read_text())
    assert any("lock" in line for line in packet["symptom"]["errorDetail"])
    events = (repo / ".git" / "spine" / "runs" / "r1" / "events.jsonl").read_text()
    assert events.count('"step-halted"') == 1
    # The next action is a command that works once the cause is gone.
    next_action = result["nextAction"]
    assert "`spine resume r1 --retry --lane x`" in next_action
    (repo / ".git" / "refs" / "heads" / "spine" / "r1" / "x.lock").unlink()
    again = spine("resume", "r1", "--retry", "--lane", "x", cwd=repo)
    assert again.returncode == 3, again.stderr  # the command locks its ref again: the same halt
    (repo / ".git" / "refs" / "heads" / "spine" / "r1" / "x.lock").unlink()
