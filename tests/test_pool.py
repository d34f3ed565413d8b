"""The worktree pool: a pooled worktree is handed out only pristine and only to one lane at a time."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from spine.maintenance import pool
from spine.workspace import worktrees
from spine.workspace.context import ExecutionContext, resolve_context
from spine.workspace.worktrees import LaneWorktree
from tests.conftest import Spine, git, write_files

# Every lane's command prints what it found in its worktree before it changes anything.
INSPECT = "git status --porcelain --ignored --untracked-files=all; ls -a"


def enable_pool(repo: Path, size: int = 4, keep: list[str] | None = None) -> None:
    lines = ["pool:", "  enabled: true", f"  size: {size}"]
    if keep:
        lines.append("  keep: [" + ", ".join(keep) + "]")
    (repo / ".spine.yaml").write_text("\n".join(lines) + "\n")


def run_lane(spine: Spine, repo: Path, lane: str, command: str, expect: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = spine.json(
        "run",
        "--json",
        "--lane",
        lane,
        "--run-id",
        f"run-{lane}",
        f"objective {lane}",
        "--",
        command,
        cwd=repo,
        expect=expect,
    )
    return result


def lane_facts(repo: Path, lane: str) -> dict[str, Any]:
    run = json.loads((repo / ".git" / "spine" / "runs" / f"run-{lane}" / "run.json").read_text())
    facts: dict[str, Any] = run["lanes"][lane]["facts"]
    return facts


def log_of(repo: Path, lane: str) -> str:
    return (repo / ".git" / "spine" / "runs" / f"run-{lane}" / "lanes" / lane / "output.log").read_text()


def ctx_of(repo: Path) -> ExecutionContext:
    return resolve_context(repo)


def test_a_succeeded_lane_returns_its_worktree_and_the_next_lane_reuses_it(spine: Spine, repo: Path) -> None:
    enable_pool(repo)
    first = run_lane(spine, repo, "one", "echo one > one.txt")
    assert first["status"] == "succeeded"
    pooled = worktrees.pooled(ctx_of(repo))
    assert len(pooled) == 1
    assert not Path(first["worktreePath"]).exists()
    # The lane's branch is no longer checked out anywhere: a person can check it out.
    assert "spine/run-one/one" not in git("worktree", "list", "--porcelain", cwd=repo)

    second = run_lane(spine, repo, "two", f"{INSPECT}; echo two > two.txt")
    assert second["status"] == "succeeded"
    assert lane_facts(repo, "two")["create"]["source"] == "pool"
    assert worktrees.pooled(ctx_of(repo)) != pooled  # taken, then given back under a new slot
    # It started from the base, not from the first lane's commit.
    assert "one.txt" not in log_of(repo, "two")
    assert git("show", "--name-only", "--format=", second["headSha"], cwd=repo) == "two.txt"
    assert second["baseSha"] == first["baseSha"]
    assert git("rev-parse", f"{second['headSha']}~1", cwd=repo) == second["baseSha"]


def test_a_dirty_pooled_worktree_is_cleaned_before_use(spine: Spine, repo: Path) -> None:
    enable_pool(repo)
    run_lane(spine, repo, "one", "echo one > one.txt")
    [slot] = worktrees.pooled(ctx_of(repo))
    # Everything a careless process could leave behind in a waiting worktree.
    write_files(
        slot,
        {"README.md": "changed\n", "stray.txt": "untracked\n", "dir/deep/x.txt": "x\n", "a.tmp": "ignored\n"},
    )
    (slot / "src" / "other.txt").unlink()
    git("add", "stray.txt", cwd=slot)

    run_lane(spine, repo, "two", f"{INSPECT}; echo two > two.txt")
    facts = lane_facts(repo, "two")["create"]
    assert facts == {
        "source": "pool",
        "cleaned": True,
        "seconds": facts["seconds"],
        "gitDir": facts["gitDir"],
    }
    log = log_of(repo, "two")
    listing = log.split("==> spine: command:", 1)[1].splitlines()[1:]
    # No status line (nothing modified, staged, untracked or ignored), and only the base's files.
    assert sorted(listing) == sorted([".", "..", ".git", ".gitignore", "README.md", "src"])
    assert git("show", "--name-only", "--format=", lane_head(repo, "two"), cwd=repo) == "two.txt"


def lane_head(repo: Path, lane: str) -> str:
    head: str = lane_facts(repo, lane)["commit"]["headSha"]
    return head


def test_ignored_files_are_removed_except_the_keep_list(spine: Spine, repo: Path) -> None:
    write_files(repo, {".gitignore": "*.tmp\nbuild/\nnode_modules/\n.venv/\n"})
    git("add", ".gitignore", cwd=repo)
    git("commit", "-q", "-m", "ignore more", cwd=repo)
    enable_pool(repo, keep=["node_modules/", ".venv/"])
    leave = (
        "mkdir -p node_modules/dep build .venv/lib && echo d > node_modules/dep/index.js && "
        "echo v > .venv/lib/site.py && echo b > build/out.o && echo t > scratch.tmp && echo one > one.txt"
    )
    run_lane(spine, repo, "one", leave)
    run_lane(spine, repo, "two", f"{INSPECT}; cat node_modules/dep/index.js .venv/lib/site.py")
    log = log_of(repo, "two")
    status_and_listing = log.split("==> spine: command:", 1)[1]
    assert "!! .venv/lib/site.py" in status_and_listing
    assert "!! node_modules/dep/index.js" in status_and_listing
    for gone in ("build", "scratch.tmp", "one.txt"):
        assert gone not in status_and_listing
    assert lane_facts(repo, "two")["create"]["cleaned"] is True


def test_a_locked_pooled_worktree_is_not_handed_out(spine: Spine, repo: Path) -> None:
    enable_pool(repo)
    run_lane(spine, repo, "one", "echo one > one.txt")
    ctx = ctx_of(repo)
    [slot] = worktrees.pooled(ctx)
    with worktrees.slot_lock(ctx, slot.name) as held:
        assert held
        run_lane(spine, repo, "two", "echo two > two.txt")
        assert lane_facts(repo, "two")["create"]["source"] == "fresh"
        assert slot.exists()  # left alone while somebody holds it
    # Free again: the next lane may take it.
    run_lane(spine, repo, "three", "echo three > three.txt")
    assert lane_facts(repo, "three")["create"]["source"] == "pool"


def test_a_pooled_worktree_that_cannot_be_proven_clean_is_discarded(spine: Spine, repo: Path) -> None:
    enable_pool(repo)
    run_lane(spine, repo, "one", "echo one > one.txt")
    [slot] = worktrees.pooled(ctx_of(repo))
    # A branch checked out in a waiting worktree: not a state spine left, so not one it trusts.
    git("switch", "-q", "-c", "somebody-else", cwd=slot)
    write_files(slot, {"precious.txt": "work\n"})
    run_lane(spine, repo, "two", f"{INSPECT}; echo two > two.txt")
    assert lane_facts(repo, "two")["create"]["source"] == "fresh"
    assert not slot.exists()
    assert "precious.txt" not in log_of(repo, "two")
    assert git("rev-parse", "--verify", "-q", "refs/heads/somebody-else", cwd=repo)  # the branch is kept


def test_a_failed_lane_keeps_its_worktree_for_inspection(spine: Spine, repo: Path) -> None:
    enable_pool(repo)
    result = run_lane(spine, repo, "bad", "echo half > half.txt; exit 3", expect=1)
    assert result["status"] == "failed"
    assert Path(result["worktreePath"]).is_dir()
    assert worktrees.pooled(ctx_of(repo)) == []


NORMALIZE = [
    (re.compile(r"run-(fresh|pooled)"), "RUN"),
    (re.compile(r"\b[0-9a-f]{40}\b"), "SHA"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "SHORT"),
    (re.compile(r"after \d+(\.\d+)?s"), "after Ns"),
    (re.compile(r'"durationSeconds": [0-9.]+'), '"durationSeconds": N'),
]
VOLATILE = {"startedAt", "completedAt", "durationSeconds"}


def normalized(result: dict[str, Any], repo: Path) -> str:
    data = {k: v for k, v in result.items() if k not in VOLATILE}
    text = json.dumps(data, indent=2, sort_keys=True).replace(str(repo), "REPO")
    for pattern, replacement in NORMALIZE:
        text = pattern.sub(replacement, text)
    return text


def test_a_pooled_lane_has_the_same_result_as_a_fresh_one(spine: Spine, repo: Path, tmp_path: Path) -> None:
    command = "mkdir -p out && echo made > out/file.txt && git rm -q src/other.txt"
    checks = ["--check", "test -f out/file.txt", "--artifact", "out/*.txt"]

    def lane(lane_id: str) -> dict[str, Any]:
        result: dict[str, Any] = spine.json(
            "run",
            "--json",
            "--lane",
            "same",
            "--run-id",
            lane_id,
            "the same objective",
            *checks,
            "--",
            command,
            cwd=repo,
        )
        return result

    fresh = lane("run-fresh")
    enable_pool(repo)
    lane("run-warmup")  # fills the pool
    pooled = lane("run-pooled")
    facts = json.loads((repo / ".git" / "spine" / "runs" / "run-pooled" / "run.json").read_text())
    assert facts["lanes"]["same"]["facts"]["create"]["source"] == "pool"
    assert normalized(pooled, repo) == normalized(fresh, repo)
    assert pooled["diffStat"] == {"filesChanged": 2, "insertions": 1, "deletions": 1}
    assert [c["madeBy"] for c in pooled["commits"]] == ["spine"]


def opened(ctx: ExecutionContext, path: Path) -> LaneWorktree:
    found = worktrees.open_worktree(ctx.git, path)
    assert found is not None
    return found


def test_the_pool_never_holds_more_than_its_size(repo: Path) -> None:
    enable_pool(repo, size=2)
    ctx = ctx_of(repo)
    paths = []
    for i in range(3):
        path = repo.parent / f"wt-{i}"
        git("worktree", "add", "-q", "--detach", str(path), "main", cwd=repo)
        paths.append(path)
    assert [worktrees.give_back(ctx, opened(ctx, path)) for path in paths] == [True, True, False]
    assert len(worktrees.pooled(ctx)) == 2
    assert paths[2].is_dir()  # a full pool leaves the worktree where it was
    newest, oldest = worktrees.pooled(ctx)
    assert pool.trim(ctx, keep=1) == [oldest]
    assert worktrees.pooled(ctx) == [newest]
    assert pool.trim(ctx, keep=0) == [newest]
    assert worktrees.pooled(ctx) == []
    assert not list(ctx.state.pool.glob("*.lock"))
    assert len(git("worktree", "list", "--porcelain", cwd=repo).split("\n\n")) == 2  # main + wt-2


def test_taking_a_worktree_for_an_existing_branch_leaves_the_pool_intact(repo: Path) -> None:
    enable_pool(repo)
    ctx = ctx_of(repo)
    path = repo.parent / "wt"
    git("worktree", "add", "-q", "--detach", str(path), "main", cwd=repo)
    assert worktrees.give_back(ctx, opened(ctx, path))
    git("branch", "taken", "main", cwd=repo)
    dest = repo.parent / "lane"
    assert worktrees.take(ctx, dest, "taken", ctx.refs.base_sha) is None
    assert not dest.exists()
    assert len(worktrees.pooled(ctx)) == 1
    taken = worktrees.take(ctx, dest, "fresh-branch", ctx.refs.base_sha)
    assert taken is not None and taken.worktree.path == dest
    assert git("symbolic-ref", "--short", "HEAD", cwd=dest) == "fresh-branch"
    assert git("status", "--porcelain", "--ignored", cwd=dest) == ""


@pytest.mark.parametrize("keep", ["'!node_modules'", "'../outside'", "'.git'", "''"])
def test_a_keep_pattern_that_could_hurt_is_a_config_error(spine: Spine, repo: Path, keep: str) -> None:
    (repo / ".spine.yaml").write_text(f"pool:\n  enabled: true\n  keep: [{keep}]\n")
    proc = spine("context", cwd=repo)
    assert proc.returncode == 2, proc.stderr
    assert "pool.keep" in proc.stderr


def test_gc_leaves_the_pool_alone_and_trims_it_when_switched_off(spine: Spine, repo: Path) -> None:
    enable_pool(repo)
    run_lane(spine, repo, "one", "echo one > one.txt")
    [slot] = worktrees.pooled(ctx_of(repo))
    proc = spine("gc", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert slot.is_dir(), proc.stdout  # a pooled worktree is not an orphan

    (repo / ".spine.yaml").write_text("pool:\n  enabled: false\n")
    dry = spine("gc", "--dry-run", cwd=repo)
    assert f"would remove pool-worktree {slot}" in dry.stdout
    assert slot.is_dir()
    proc = spine("gc", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert not slot.exists()
    assert str(slot) not in git("worktree", "list", cwd=repo)


def test_lanes_of_a_batch_share_a_small_pool_without_seeing_each_others_files(
    spine: Spine, repo: Path, tmp_path: Path
) -> None:
    enable_pool(repo, size=1)
    lanes = ["lanes:"]
    for i in range(6):
        lanes += [f"  - id: l{i}", f"    objective: lane {i}", f"    command: 'ls; echo {i} > f{i}.txt'"]
    batch = tmp_path / "lanes.yaml"
    batch.write_text("\n".join(lanes) + "\n")
    proc = spine("batch", str(batch), "--jobs", "2", "--run-id", "b", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    run = json.loads((repo / ".git" / "spine" / "runs" / "b" / "run.json").read_text())
    sources = [lane["facts"]["create"]["source"] for lane in run["lanes"].values()]
    assert "pool" in sources
    assert len(worktrees.pooled(ctx_of(repo))) == 1
    for i in range(6):
        log = (repo / ".git" / "spine" / "runs" / "b" / "lanes" / f"l{i}" / "output.log").read_text()
        assert not re.search(r"^f\d\.txt$", log, re.MULTILINE), log  # nothing from an earlier lane
        head = run["lanes"][f"l{i}"]["facts"]["commit"]["headSha"]
        assert git("show", "--name-only", "--format=", head, cwd=repo) == f"f{i}.txt"


def test_the_pool_is_on_by_default_and_the_result_says_where_the_worktree_went(
    spine: Spine, repo: Path
) -> None:
    assert not (repo / ".spine.yaml").exists()
    first = run_lane(spine, repo, "one", "echo one > one.txt")
    assert first["status"] == "succeeded" and first["worktreeKept"] is False
    assert not Path(first["worktreePath"]).parent.exists()  # no empty run directory is left behind
    assert len(worktrees.pooled(ctx_of(repo))) == 1
    assert lane_facts(repo, "one")["result"]["returnedToPool"] is True
    shown = spine("show", "run-one/one", cwd=repo)
    assert re.search(r"worktree\s+returned to the worktree pool; the work is on the branch", shown.stdout)
    [lane_status] = spine.json("status", "run-one", "--json", cwd=repo)["lanes"]
    assert lane_status["worktree"] is None  # nobody is sent to a directory that is gone
    assert git("show", f"{first['branch']}:one.txt", cwd=repo) == "one"

    second = run_lane(spine, repo, "two", "echo two > two.txt")
    assert lane_facts(repo, "two")["create"]["source"] == "pool"
    assert second["worktreeKept"] is False


def test_keep_worktree_keeps_a_succeeded_lanes_worktree(spine: Spine, repo: Path, tmp_path: Path) -> None:
    kept: dict[str, Any] = spine.json(
        "run",
        "--json",
        "--keep-worktree",
        "--run-id",
        "run-kept",
        "keep it",
        "--",
        "sh",
        "-c",
        "echo k > k.txt",
        cwd=repo,
    )
    assert kept["status"] == "succeeded" and kept["worktreeKept"] is True
    assert (Path(kept["worktreePath"]) / "k.txt").read_text() == "k\n"
    assert worktrees.pooled(ctx_of(repo)) == []
    assert re.search(
        r"worktree\s+" + re.escape(kept["worktreePath"]), spine("show", "run-kept/keep-it", cwd=repo).stdout
    )

    batch = tmp_path / "lanes.yaml"
    batch.write_text(
        "lanes:\n"
        "  - {id: stays, objective: stay, command: 'echo s > s.txt', keep_worktree: true}\n"
        "  - {id: goes, objective: go, command: 'echo g > g.txt'}\n"
    )
    proc = spine("batch", str(batch), "--run-id", "mixed", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    runs = repo / ".git" / "spine" / "runs" / "mixed" / "lanes"
    stays = json.loads((runs / "stays" / "result.json").read_text())
    goes = json.loads((runs / "goes" / "result.json").read_text())
    assert stays["worktreeKept"] is True and (Path(stays["worktreePath"]) / "s.txt").is_file()
    assert goes["worktreeKept"] is False and not Path(goes["worktreePath"]).exists()


def test_a_lane_that_finds_the_pool_full_keeps_its_worktree_and_says_so(
    spine: Spine, repo: Path, tmp_path: Path
) -> None:
    enable_pool(repo, size=1)
    batch = tmp_path / "lanes.yaml"
    batch.write_text(
        "lanes:\n"
        "  - {id: a, objective: a, command: 'echo a > a.txt'}\n"
        "  - {id: b, objective: b, command: 'echo b > b.txt'}\n"
    )
    proc = spine("batch", str(batch), "--run-id", "full", "--jobs", "2", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    lanes = repo / ".git" / "spine" / "runs" / "full" / "lanes"
    results = [json.loads((lanes / name / "result.json").read_text()) for name in ("a", "b")]
    # Both started fresh from an empty pool; whichever finished second found it full.
    assert sorted(r["worktreeKept"] for r in results) == [False, True]
    for r in results:
        assert Path(r["worktreePath"]).is_dir() == r["worktreeKept"]
    assert len(worktrees.pooled(ctx_of(repo))) == 1


def test_git_agrees_with_what_spine_wrote_itself_when_moving_and_committing(spine: Spine, repo: Path) -> None:
    enable_pool(repo)
    git("add", ".spine.yaml", cwd=repo)
    git("commit", "-qm", "pool on", cwd=repo)
    run_lane(spine, repo, "first", "echo one > one.txt")
    (slot,) = worktrees.pooled(ctx_of(repo))
    first = git("rev-parse", "spine/run-first/first", cwd=repo)
    # git sees the pooled worktree where spine moved it, detached at the lane's commit, and keeps it.
    listing = git("worktree", "list", "--porcelain", cwd=repo)
    assert f"worktree {slot}\nHEAD {first}\ndetached" in listing
    git("worktree", "prune", cwd=repo)
    assert f"worktree {slot}\n" in git("worktree", "list", "--porcelain", cwd=repo)
    assert git("status", "--porcelain", cwd=slot) == ""

    result = run_lane(spine, repo, "second", "printf 'a\\nb\\n' > two.txt; rm README.md")
    branch = "spine/run-second/second"
    head = git("rev-parse", branch, cwd=repo)
    assert result["headSha"] == head and git("rev-parse", f"{head}^", cwd=repo) == git(
        "rev-parse", "main", cwd=repo
    )
    assert [c["sha"] for c in result["commits"]] == [head]
    assert result["commits"][0]["subject"] == git("log", "-1", "--format=%s", head, cwd=repo)
    stat = git("diff", "--shortstat", "main", head, cwd=repo)
    shown = result["diffStat"]
    assert (
        stat
        == f"{shown['filesChanged']} files changed, {shown['insertions']} insertions(+), {shown['deletions']} deletion(-)"
    )
    # The worktree went back again; git's record of it and of the lane path agree.
    assert f"worktree {repo}/.git/spine/worktrees/run-second/second\n" not in git(
        "worktree", "list", "--porcelain", cwd=repo
    )
    assert git("worktree", "list", "--porcelain", cwd=repo).count("detached") == 1
