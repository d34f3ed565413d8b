"""spine promote: land a lane on its target with each strategy, or refuse and change nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Spine, data_of, git, write_files


def run_lane(
    spine: Spine, repo: Path, command: str, run_id: str = "r1", lane: str = "work"
) -> dict[str, Any]:
    result = spine.json(
        "run",
        "add the work",
        "--run-id",
        run_id,
        "--lane",
        lane,
        "--json",
        "--",
        "sh",
        "-c",
        command,
        cwd=repo,
        expect=None,
    )
    return result  # type: ignore[no-any-return]


def main_moves_on(repo: Path) -> str:
    write_files(repo, {"main.txt": "main moved on\n"})
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "main moved on", cwd=repo)
    return git("rev-parse", "main", cwd=repo)


def result_of(repo: Path, run_id: str = "r1", lane: str = "work") -> dict[str, Any]:
    path = repo / ".git" / "spine" / "runs" / run_id / "lanes" / lane / "result.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def events_of(repo: Path, run_id: str = "r1") -> list[dict[str, Any]]:
    path = repo / ".git" / "spine" / "runs" / run_id / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


# A lane whose command commits once itself and leaves a second change for spine to commit.
TWO_COMMITS = "echo one > one.txt && git add one.txt && git commit -q -m 'first part' && echo two > two.txt"


@pytest.mark.parametrize("strategy", ["merge", "squash", "rebase", "ff-only"])
def test_each_strategy_lands_the_lane(repo: Path, spine: Spine, strategy: str) -> None:
    lane = run_lane(spine, repo, TWO_COMMITS)
    assert lane["status"] == "succeeded"
    assert "spine promote r1/work" in lane["nextAction"]
    lane_head = lane["headSha"]
    before = git("rev-parse", "main", cwd=repo) if strategy == "ff-only" else main_moves_on(repo)

    proc = spine("promote", "r1/work", "--strategy", strategy, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    after = git("rev-parse", "main", cwd=repo)
    assert after != before
    # The primary checkout has main checked out: it was updated in place and is clean.
    assert git("rev-parse", "HEAD", cwd=repo) == after
    assert git("status", "--porcelain", cwd=repo) == ""
    assert (repo / "one.txt").read_text() == "one\n" and (repo / "two.txt").read_text() == "two\n"

    parents = git("rev-list", "--parents", "-n", "1", "main", cwd=repo).split()[1:]
    new_commits = git("rev-list", "--reverse", f"{before}..main", cwd=repo).split()
    if strategy == "ff-only":
        assert after == lane_head
    elif strategy == "merge":
        assert parents == [before, lane_head]
        assert "Merge lane r1/work into main" in git("log", "-1", "--format=%B", "main", cwd=repo)
    elif strategy == "squash":
        assert parents == [before] and len(new_commits) == 1
        body = git("log", "-1", "--format=%B", "main", cwd=repo)
        assert body.startswith("add the work") and "* first part" in body and "Spine-Lane: work" in body
    else:  # rebase: both lane commits replayed on top of the moved main, history stays linear
        assert len(new_commits) == 2 and parents == [new_commits[0]]
        assert git("log", "-1", "--format=%s", new_commits[0], cwd=repo) == "first part"
        assert lane_head not in git("rev-list", "main", cwd=repo).split()  # replayed, not merged
        assert (repo / "main.txt").is_file()

    recorded = result_of(repo)["promotion"]
    assert recorded["strategy"] == strategy
    assert recorded["targetBefore"] == before and recorded["targetAfter"] == after
    assert recorded["laneHead"] == lane_head
    assert recorded["checkout"] == str(repo)
    assert "spine gc" in result_of(repo)["nextAction"]
    promoted = [e for e in events_of(repo) if e["event"] == "promoted"]
    assert len(promoted) == 1 and promoted[0]["after"] == after and promoted[0]["strategy"] == strategy


def test_target_not_checked_out_moves_only_the_ref(repo: Path, spine: Spine) -> None:
    git("branch", "release", cwd=repo)
    run_lane(spine, repo, "echo x > x.txt")
    git("checkout", "-q", "-b", "elsewhere", cwd=repo)
    write_files(repo, {"README.md": "local edit, not committed\n"})
    release_before = git("rev-parse", "release", cwd=repo)

    proc = spine("promote", "r1/work", "--into", "release", "--strategy", "squash", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "no checkout touched" in proc.stdout
    assert git("rev-parse", "release^", cwd=repo) == release_before
    assert git("show", "release:x.txt", cwd=repo) == "x"
    # The checkout we stand in is exactly as it was.
    assert git("symbolic-ref", "--short", "HEAD", cwd=repo) == "elsewhere"
    assert git("status", "--porcelain", cwd=repo) == "M README.md"
    assert not (repo / "x.txt").exists()
    assert result_of(repo)["promotion"]["checkout"] is None


def test_ff_only_refuses_when_the_target_moved_on(repo: Path, spine: Spine) -> None:
    run_lane(spine, repo, "echo x > x.txt")
    before = main_moves_on(repo)
    proc = spine("promote", "r1/work", "--strategy", "ff-only", cwd=repo)
    assert proc.returncode == 1
    assert "cannot be fast-forwarded" in proc.stderr and "--strategy rebase" in proc.stderr
    assert git("rev-parse", "main", cwd=repo) == before
    assert result_of(repo).get("promotion") is None


def test_refused_while_a_rebase_is_in_progress(repo: Path, spine: Spine) -> None:
    run_lane(spine, repo, "echo x > x.txt")
    git("checkout", "-q", "-b", "side", "main~1", cwd=repo)
    write_files(repo, {"README.md": "# side\n"})
    git("commit", "-q", "-am", "side readme", cwd=repo)
    git("checkout", "-q", "main", cwd=repo)
    write_files(repo, {"README.md": "# main\n"})
    git("commit", "-q", "-am", "main readme", cwd=repo)
    main_before = git("rev-parse", "main", cwd=repo)
    rebase = subprocess.run(["git", "rebase", "side"], cwd=repo, capture_output=True, text=True, check=False)
    assert rebase.returncode != 0 and (repo / ".git" / "rebase-merge").is_dir()

    proc = spine("promote", "r1/work", cwd=repo)
    assert proc.returncode == 1
    assert "a rebase is in progress" in proc.stderr and "nothing was changed" in proc.stderr
    assert git("rev-parse", "main", cwd=repo) == main_before
    assert (repo / ".git" / "rebase-merge").is_dir()
    assert result_of(repo).get("promotion") is None
    assert not [e for e in events_of(repo) if e["event"] == "promoted"]


def test_refused_when_uncommitted_changes_are_in_the_way(repo: Path, spine: Spine) -> None:
    run_lane(spine, repo, "echo lane > README.md && echo x > x.txt")
    main_before = git("rev-parse", "main", cwd=repo)
    write_files(repo, {"README.md": "my unsaved edit\n", "src/other.txt": "unrelated edit\n"})

    proc = spine("promote", "r1/work", cwd=repo)
    assert proc.returncode == 1
    assert "uncommitted changes to files the promotion would change: README.md" in proc.stderr
    assert "other.txt" not in proc.stderr
    assert git("rev-parse", "main", cwd=repo) == main_before
    assert (repo / "README.md").read_text() == "my unsaved edit\n"

    # Once the conflicting edit is out of the way, an unrelated one does not block and survives.
    git("checkout", "--", "README.md", cwd=repo)
    proc = spine("promote", "r1/work", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert (repo / "src" / "other.txt").read_text() == "unrelated edit\n"
    assert (repo / "README.md").read_text() == "lane\n"


def test_failed_lane_is_refused_unless_forced(repo: Path, spine: Spine) -> None:
    lane = run_lane(spine, repo, "echo half > half.txt; exit 3")
    assert lane["status"] == "failed"
    before = git("rev-parse", "main", cwd=repo)
    proc = spine("promote", "r1/work", cwd=repo)
    assert proc.returncode == 1
    assert "did not succeed (status: failed)" in proc.stderr and "--force" in proc.stderr
    assert git("rev-parse", "main", cwd=repo) == before

    proc = spine("promote", "r1/work", "--force", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert data_of(proc)["promotion"]["forced"] is True
    assert git("show", "main:half.txt", cwd=repo) == "half"


def test_gate_option_refuses_what_the_gate_rejects(repo: Path, spine: Spine) -> None:
    write_files(repo, {".spine.yaml": "gate:\n  checks:\n    - name: no-x\n      command: test ! -f x.txt\n"})
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "gate config", cwd=repo)
    run_lane(spine, repo, "echo x > x.txt", run_id="bad")
    run_lane(spine, repo, "echo y > y.txt", run_id="good")
    before = git("rev-parse", "main", cwd=repo)

    proc = spine("promote", "bad/work", "--gate", cwd=repo)
    assert proc.returncode == 1
    assert "the gate rejected the promotion" in proc.stderr and "no-x" in proc.stderr
    assert git("rev-parse", "main", cwd=repo) == before

    proc = spine("promote", "good/work", "--gate", "--strategy", "squash", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert result_of(repo, "good")["promotion"]["gate"] == "passed"


def test_promoting_twice_lands_once_and_an_unknown_lane_is_bad_input(repo: Path, spine: Spine) -> None:
    run_lane(spine, repo, "echo x > x.txt")
    main_moves_on(repo)
    assert spine("promote", "r1/work", "--strategy", "squash", cwd=repo).returncode == 0
    landed = git("rev-parse", "main", cwd=repo)
    again = spine("promote", "r1/work", "--strategy", "squash", cwd=repo)
    assert again.returncode == 0 and "already promoted onto main" in again.stdout
    assert git("rev-parse", "main", cwd=repo) == landed
    unknown = spine("promote", "r1/nope", cwd=repo)
    assert unknown.returncode == 2 and "has no lane 'nope'" in unknown.stderr


def test_the_hint_for_a_conflict_is_a_way_that_lands_the_lane(repo: Path, spine: Spine) -> None:
    run_lane(spine, repo, "echo lane > README.md")
    write_files(repo, {"README.md": "main's own edit\n"})
    git("commit", "-qam", "main edits the readme", cwd=repo)
    refused = spine("promote", "r1/work", "--strategy", "rebase", cwd=repo)
    assert refused.returncode == 1 and "README.md" in refused.stderr
    assert "--strategy merge" not in refused.stderr  # a merge would conflict the same way
    hint = refused.stderr.split("hint: ", 1)[1]
    assert "git switch spine/r1/work && git rebase main" in hint
    # Follow the hint: resolve on the lane branch, then land what was resolved.
    git("switch", "-q", "spine/r1/work", cwd=repo)
    subprocess.run(["git", "rebase", "main"], cwd=repo, capture_output=True, check=False)
    write_files(repo, {"README.md": "both\n"})
    git("add", "README.md", cwd=repo)
    subprocess.run(
        ["git", "-c", "core.editor=true", "rebase", "--continue"], cwd=repo, check=True, capture_output=True
    )
    git("switch", "-q", "main", cwd=repo)
    landed = spine("promote", "r1/work", "--force", "--gate", cwd=repo)
    assert landed.returncode == 0, landed.stderr
    assert git("show", "main:README.md", cwd=repo) == "both"
