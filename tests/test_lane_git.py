"""The lane's git work, kept lean: what it commits and how it tells its own commits from the command's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Spine, git


def run_lane(
    spine: Spine, repo: Path, command: str, lane: str = "lane", run_id: str = "r1", expect: int = 0
) -> dict[str, Any]:
    result: dict[str, Any] = spine.json(
        "run",
        "--json",
        "--lane",
        lane,
        "--run-id",
        run_id,
        "an objective",
        "--",
        command,
        cwd=repo,
        expect=expect,
    )
    return result


def test_changes_left_by_the_command_are_committed_by_spine(spine: Spine, repo: Path) -> None:
    result = run_lane(spine, repo, "echo new > new.txt && echo more >> README.md && rm src/other.txt")
    assert [c["madeBy"] for c in result["commits"]] == ["spine"]
    assert result["headSha"] == git("rev-parse", "spine/r1/lane", cwd=repo)
    assert result["diffStat"] == {"filesChanged": 3, "insertions": 2, "deletions": 1}
    message = git("log", "-1", "--format=%B", result["headSha"], cwd=repo)
    assert "Spine-Run: r1" in message and "Spine-Lane: lane" in message


def test_commits_the_command_made_are_told_apart_from_spines(spine: Spine, repo: Path) -> None:
    command = (
        "echo a > a.txt && git add a.txt && git commit -q -m 'command commit one' && "
        "echo b > b.txt && git add b.txt && git commit -q -m 'command commit two' && echo c > c.txt"
    )
    result = run_lane(spine, repo, command)
    assert [(c["subject"], c["madeBy"]) for c in result["commits"]] == [
        ("command commit one", "command"),
        ("command commit two", "command"),
        ("an objective", "spine"),
    ]
    assert result["headSha"] == result["commits"][-1]["sha"]


def test_a_command_that_only_commits_gets_no_extra_commit(spine: Spine, repo: Path) -> None:
    result = run_lane(spine, repo, "echo a > a.txt && git add a.txt && git commit -q -m 'by the command'")
    assert [(c["subject"], c["madeBy"]) for c in result["commits"]] == [("by the command", "command")]


def test_a_command_that_changes_nothing_leaves_the_branch_at_the_base(spine: Spine, repo: Path) -> None:
    result = run_lane(spine, repo, "echo ignored > scratch.tmp")  # *.tmp is ignored: nothing to commit
    assert result["status"] == "succeeded"
    assert result["commits"] == []
    assert result["headSha"] == result["baseSha"]
    assert result["diffStat"] == {"filesChanged": 0, "insertions": 0, "deletions": 0}


def test_a_command_that_moves_the_lane_branch_behind_its_base_fails_the_lane(
    spine: Spine, repo: Path
) -> None:
    result = run_lane(spine, repo, "git reset -q --hard HEAD~1", expect=1)
    assert result["status"] == "failed" and result["failureKind"] == "violation"
    [head] = [i for i in result["invariants"] if i["name"] == "head"]
    assert head["status"] == "violated" and "no longer contains its base" in head["detail"]
    assert result["commits"] == [] and result["diffStat"] is None
    # What the result names is reachable: the commit the command reset to.
    assert result["headSha"] == git("rev-parse", "main~1", cwd=repo)


def test_a_lane_branch_that_exists_already_is_checked_out_not_recreated(spine: Spine, repo: Path) -> None:
    git("branch", "spine/r1/lane", "main", cwd=repo)
    other = repo.parent / "elsewhere"
    git("worktree", "add", "-q", str(other), "spine/r1/lane", cwd=repo)
    (other / "earlier.txt").write_text("from before\n")
    git("add", "earlier.txt", cwd=other)
    git("commit", "-q", "-m", "earlier work", cwd=other)
    git("worktree", "remove", str(other), cwd=repo)

    result = run_lane(spine, repo, "echo later > later.txt")
    assert [(c["subject"], c["madeBy"]) for c in result["commits"]] == [
        ("earlier work", "command"),
        ("an objective", "spine"),
    ]
    assert "earlier.txt" in git("ls-tree", "--name-only", result["branch"], cwd=repo).split()
