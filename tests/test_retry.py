"""`spine resume RUN --retry`: failed, blocked and canceled lanes run again; nothing of the first attempt is lost."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.conftest import Spine, git, write_files


def _result(repo: Path, run_id: str, lane: str) -> dict:
    return json.loads(
        (repo / ".git" / "spine" / "runs" / run_id / "lanes" / lane / "result.json").read_text()
    )


def _batch(repo: Path, spine: Spine) -> str:
    batch = repo.parent / "lanes.yaml"
    batch.write_text(
        "lanes:\n"
        "  - {id: a, objective: needs the fix, command: 'echo attempt > a.txt; test -f fixed.txt'}\n"
        "  - {id: b, objective: after a, command: 'echo b > b.txt', needs: [a]}\n"
        "  - {id: c, objective: independent, command: 'echo c > c.txt'}\n"
    )
    proc = spine("batch", str(batch), "--run-id", "r1", cwd=repo)
    assert proc.returncode == 1, proc.stderr
    assert [_result(repo, "r1", lane)["status"] for lane in "abc"] == ["failed", "blocked", "succeeded"]
    return "r1"


def test_retry_reruns_failed_and_blocked_lanes_from_the_current_base(spine: Spine, repo: Path) -> None:
    run_id = _batch(repo, spine)
    first_a = _result(repo, run_id, "a")
    c_before = _result(repo, run_id, "c")
    assert "spine resume r1 --retry" in _result(repo, run_id, "b")["nextAction"]
    write_files(repo, {"fixed.txt": "yes\n"})
    git("add", "fixed.txt", cwd=repo)
    git("commit", "-qm", "the fix", cwd=repo)

    proc = spine("resume", run_id, "--retry", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "retrying a, b" in proc.stderr
    a, b = _result(repo, run_id, "a"), _result(repo, run_id, "b")
    assert (a["status"], b["status"]) == ("succeeded", "succeeded")
    assert a["baseSha"] == git("rev-parse", "main", cwd=repo) != first_a["baseSha"]
    assert _result(repo, run_id, "c") == c_before  # a succeeded lane is never run again
    # The first attempt is kept: its result and log, and its branch head.
    archived = repo / ".git" / "spine" / "runs" / run_id / "attempts" / "a" / "1"
    assert json.loads((archived / "result.json").read_text()) == first_a
    assert (archived / "output.log").is_file()
    kept = git("rev-parse", f"refs/spine/attempts/{run_id}/a/1", cwd=repo)
    assert kept == first_a["headSha"]
    assert git("show", f"{kept}:a.txt", cwd=repo) == "attempt"
    assert git("branch", "--list", "spine/r1/a", cwd=repo)  # one branch per lane, the new attempt's
    worktrees = git("worktree", "list", "--porcelain", cwd=repo)
    assert not a["worktreeKept"]  # the retried lane succeeded: its worktree went back to the pool
    assert worktrees.count("worktrees/r1/a\n") == 0
    events = (repo / ".git" / "spine" / "runs" / run_id / "events.jsonl").read_text()
    assert '"event": "lane-retried"' in events


def test_retry_bad_input(spine: Spine, repo: Path) -> None:
    run_id = _batch(repo, spine)
    for args, words in [
        (["--retry", "--lane", "c"], "lane c succeeded"),
        (["--lane", "a"], "--lane only applies with --retry"),
        (["--retry", "--lane", "zz"], "has no lane 'zz'"),
    ]:
        proc = spine("resume", run_id, *args, cwd=repo)
        assert proc.returncode == 2 and words in proc.stderr, (args, proc.stderr)
    assert _result(repo, run_id, "a")["status"] == "failed"  # nothing was reset by a refused retry


def test_retry_of_a_fully_succeeded_run_is_refused(spine: Spine, repo: Path) -> None:
    assert spine("run", "--run-id", "ok1", "fine", "--", "true", cwd=repo).returncode == 0
    proc = spine("resume", "ok1", "--retry", cwd=repo)
    assert proc.returncode == 2 and "nothing to retry" in proc.stderr


def test_gc_deleting_an_old_run_drops_its_attempt_refs(spine: Spine, repo: Path) -> None:
    run_id = _batch(repo, spine)
    assert spine("resume", run_id, "--retry", cwd=repo).returncode == 1  # still failing: not fixed
    assert git("for-each-ref", f"refs/spine/attempts/{run_id}/", cwd=repo)
    time.sleep(1.0)  # older than a retention of 0.00001 days (0.86 s)
    proc = spine("gc", "--retention-days", "0.00001", "--prune-branches", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (repo / ".git" / "spine" / "runs" / run_id).exists()
    assert git("for-each-ref", f"refs/spine/attempts/{run_id}/", cwd=repo) == ""
