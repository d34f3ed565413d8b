"""The ExecutionContext: parity across working directories, and clear failures instead of fallbacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spine.base.errors import NotARepository, UsageError
from spine.workspace.context import resolve_context
from tests.conftest import Spine, git, write_files


def test_shared_fields_identical_from_root_subdir_and_lane_worktree(spine: Spine, repo: Path) -> None:
    lane = spine.json("run", "--json", "--keep-worktree", "make a worktree", "--", "true", cwd=repo)
    views = [
        spine.json("context", "--json", cwd=where)
        for where in (repo, repo / "src", Path(lane["worktreePath"]), Path(lane["worktreePath"]) / "src")
    ]
    current = [v.pop("currentWorktree") for v in views]
    assert all(v == views[0] for v in views[1:])
    assert views[0]["repository"]["primaryCheckout"] == str(repo)
    assert views[0]["repository"]["gitCommonDir"] == str(repo / ".git")
    assert views[0]["stateDir"] == str(repo / ".git" / "spine")
    assert views[0]["refs"]["baseRef"] == "main"
    assert views[0]["refs"]["baseSha"] == git("rev-parse", "HEAD", cwd=repo)
    assert [c["isPrimary"] for c in current] == [True, True, False, False]
    assert current[2]["path"] == lane["worktreePath"]


def test_context_is_read_in_process_the_same_way(repo: Path) -> None:
    a, b = resolve_context(repo), resolve_context(repo / "src")
    assert a.shared() == b.shared()
    assert (
        a.state.result_file("r", "l")
        == repo / ".git" / "spine" / "runs" / "r" / "lanes" / "l" / "result.json"
    )


def test_overrides_and_config(spine: Spine, repo: Path) -> None:
    git("branch", "dev", "HEAD~1", cwd=repo)
    write_files(repo, {".spine.yaml": "base: dev\nworktree_root: ../lanes\n"})
    ctx = spine.json("context", "--json", cwd=repo)
    assert ctx["refs"]["baseRef"] == "dev" and ctx["refs"]["targetRef"] == "dev"
    assert ctx["refs"]["baseSha"] == git("rev-parse", "dev", cwd=repo)
    assert ctx["worktreeRoot"] == str(repo / "../lanes")
    ctx = spine.json("context", "--json", "--base", "main", "--target", "dev", cwd=repo)
    assert ctx["refs"]["baseRef"] == "main" and ctx["refs"]["targetSha"] == git("rev-parse", "dev", cwd=repo)


def test_human_context(spine: Spine, repo: Path) -> None:
    proc = spine("context", cwd=repo)
    assert proc.returncode == 0
    assert "primary checkout" in proc.stdout and str(repo) in proc.stdout and "(primary)" in proc.stdout


def _fails(spine: Spine, cwd: Path, *args: str, words: tuple[str, ...]) -> str:
    proc = spine(*args, cwd=cwd)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    return proc.stderr


def test_outside_a_repository(spine: Spine, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    _fails(spine, plain, "context", words=("not inside a git repository", "hint:"))
    _fails(spine, plain, "run", "x", "--", "true", words=("not inside a git repository",))
    with pytest.raises(NotARepository):
        resolve_context(plain)


def test_bare_repository(spine: Spine, repo: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    git("clone", "-q", "--bare", str(repo), str(bare), cwd=tmp_path)
    _fails(spine, bare, "context", words=("bare repository", "clone"))


def test_inside_the_git_directory(spine: Spine, repo: Path) -> None:
    _fails(spine, repo / ".git", "context", words=(".git directory",))


def test_unknown_ref(spine: Spine, repo: Path) -> None:
    _fails(
        spine,
        repo,
        "context",
        "--base",
        "no-such-branch",
        words=("unknown base ref 'no-such-branch'", "--base"),
    )
    _fails(spine, repo, "run", "--base", "nope", "x", "--", "true", words=("unknown base ref",))
    _fails(spine, repo, "context", "--target", "nah", words=("unknown target ref 'nah'",))
    assert not (repo / ".git" / "spine" / "runs").exists()


def test_no_commits_yet(spine: Spine, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git("init", "-q", "-b", "main", cwd=empty)
    _fails(spine, empty, "context", words=("no commits yet", "first commit"))
    with pytest.raises(UsageError, match="no commits yet"):
        resolve_context(empty)


def test_context_json_carries_the_config(spine: Spine, repo: Path) -> None:
    write_files(repo, {".spine.yaml": "timeout: 10m\nchecks:\n  - {name: t, command: 'true'}\n"})
    ctx = spine.json("context", "--json", cwd=repo)
    assert ctx["config"]["timeout"] == 600.0
    assert ctx["config"]["checks"] == [{"name": "t", "command": "true", "timeout": None}]
    assert ctx["configFile"] == str(repo / ".spine.yaml")
    assert json.dumps(ctx)  # serialisable as a whole
