"""Every output bounded, every error true, every next step one that works (the lane side)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Spine, git, write_files


def run_lane(spine: Spine, repo: Path, *args: str, expect: int | None = 0, **kw: Any) -> dict[str, Any]:
    result: dict[str, Any] = spine.json("run", "--json", "-q", *args, cwd=repo, expect=expect, **kw)
    return result


# --- unbounded work and state -------------------------------------------------------------------------


def test_a_progress_bar_of_megabytes_leaves_small_state_files(spine: Spine, repo: Path) -> None:
    # 4 MB of carriage-return frames and not one newline, then a last line.
    script = "import sys\nfor i in range(200000): sys.stdout.write(f'\\rprogress {i:>12}')\nprint()\nprint('done')\n"
    result = run_lane(
        spine, repo, "--run-id", "r1", "--lane", "bar", "progress", "--", sys.executable, "-c", script
    )
    assert result["status"] == "succeeded"
    assert result["outputTail"][-2:] == ["progress       199999", "done"]
    lane_dir = repo / ".git" / "spine" / "runs" / "r1" / "lanes" / "bar"
    assert (lane_dir / "result.json").stat().st_size < 16_000
    assert (repo / ".git" / "spine" / "runs" / "r1" / "run.json").stat().st_size < 16_000
    assert (lane_dir / "output.log").stat().st_size > 4_000_000  # the log keeps everything


def test_a_run_directory_left_empty_does_not_block_its_id(spine: Spine, repo: Path) -> None:
    (repo / ".git" / "spine" / "runs" / "r1").mkdir(parents=True)
    result = run_lane(spine, repo, "--run-id", "r1", "x", "--", "true")
    assert result["status"] == "succeeded"
    taken = spine("run", "--run-id", "r1", "again", "--", "true", cwd=repo)
    assert taken.returncode == 2 and "already exists" in taken.stderr


def _limited(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_state_directory_that_cannot_take_more_is_exit_3_and_state_every_command_reads(
    spine: Spine, repo: Path
) -> None:
    # Files may not grow past 20 kB: the lane's log cannot hold what the command prints.
    command = [
        sys.executable,
        "-m",
        "spine",
        "run",
        "--run-id",
        "r1",
        "--lane",
        "big",
        "big output",
        "--",
        sys.executable,
        "-c",
        "print('x' * 100 + '\\n' * 1, end='' ); [print('y' * 100) for _ in range(1000)]",
    ]
    proc = subprocess.run(
        command,
        cwd=repo,
        capture_output=True,
        text=True,
        preexec_fn=lambda: _limited(20_000),
        check=False,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "File too large" in proc.stdout + proc.stderr
    status = spine.json("status", "r1", "--json", cwd=repo)
    assert status["state"] == "complete"
    [lane] = status["lanes"]
    assert lane["status"] == "failed" and "File too large" in lane["summary"]
    assert "spine resume r1 --retry --lane big" in lane["nextAction"]
    # The next action works once the disk can take it.
    again = spine("resume", "r1", "--retry", "--lane", "big", cwd=repo)
    assert again.returncode == 0, again.stderr
    assert spine("gc", "--dry-run", cwd=repo).returncode == 0


# --- errors that say their cause -----------------------------------------------------------------------


def test_git_errors_keep_the_line_that_names_the_cause(spine: Spine, repo: Path) -> None:
    if shutil.which("git-lfs"):
        pytest.skip("git-lfs is installed here; this test needs it missing")
    git("config", "filter.lfs.clean", "git-lfs clean -- %f", cwd=repo)
    git("config", "filter.lfs.required", "true", cwd=repo)
    write_files(repo, {".gitattributes": "*.bin filter=lfs\n"})
    git("add", ".gitattributes", cwd=repo)
    git("commit", "-qm", "lfs", cwd=repo)
    result = run_lane(spine, repo, "lfs", "--", "sh", "-c", "echo data > a.bin", expect=3)
    assert result["failureKind"] == "error"
    assert "git-lfs: not found" in result["summary"]
    packet = json.loads(Path(result["debugPacket"]).read_text())
    assert any("git-lfs: not found" in line for line in packet["symptom"]["errorDetail"])


# --- next steps that work ------------------------------------------------------------------------------


def test_resume_of_a_run_with_canceled_lanes_says_how_to_run_them_again(spine: Spine, repo: Path) -> None:
    batch = repo.parent / "b.yaml"
    batch.write_text(
        "lanes:\n  - {id: a, objective: a, command: 'exit 1'}\n  - {id: b, objective: b, command: 'true'}\n"
    )
    proc = spine("batch", str(batch), "--run-id", "r1", "--fail-fast", cwd=repo)
    assert proc.returncode == 1
    resumed = spine("resume", "r1", cwd=repo)
    assert "spine resume r1 --retry" in resumed.stderr
    retried = spine("resume", "r1", "--retry", cwd=repo)
    assert "retrying a, b" in retried.stderr


def test_a_blocked_lane_has_the_log_its_result_names(spine: Spine, repo: Path) -> None:
    batch = repo.parent / "b.yaml"
    batch.write_text(
        "lanes:\n  - {id: a, objective: a, command: 'exit 1'}\n  - {id: b, objective: b, command: 'true', needs: [a]}\n"
    )
    assert spine("batch", str(batch), "--run-id", "r1", cwd=repo).returncode == 1
    result = json.loads((repo / ".git" / "spine" / "runs" / "r1" / "lanes" / "b" / "result.json").read_text())
    assert result["status"] == "blocked"
    assert "not started" in Path(result["logPath"]).read_text()


def test_after_gc_show_and_debug_name_the_recovery_ref_not_the_removed_worktree(
    spine: Spine, repo: Path
) -> None:
    failed = run_lane(
        spine, repo, "--run-id", "r1", "--lane", "x", "fails", "--", "sh", "-c", "exit 1", expect=1
    )
    worktree = Path(failed["worktreePath"])
    (worktree / "notes.txt").write_text("left behind\n")  # uncommitted work of the user's, in the lane
    assert spine("gc", cwd=repo).returncode == 0
    assert not worktree.exists()
    result = spine.json("show", "r1/x", "--json", cwd=repo)
    assert result["worktreeKept"] is False and result["recoveryRef"].startswith("refs/spine/recovered/r1/x-")
    shown = spine("show", "r1/x", cwd=repo).stdout
    assert result["recoveryRef"] in shown and str(worktree) not in shown
    debug = spine("debug", "r1/x", cwd=repo).stdout
    assert result["recoveryRef"] in debug
    assert git("show", f"{result['recoveryRef']}:notes.txt", cwd=repo) == "left behind"


def test_dash_c_of_a_missing_directory_is_bad_input(spine: Spine, repo: Path) -> None:
    proc = spine("-C", str(repo / "nope"), "status", cwd=repo)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert os.getcwd() != str(repo / "nope")
