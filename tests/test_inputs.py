"""Every bad input: exit 2, a message that says what was wrong and what to do, no traceback, nothing created."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Spine, git


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "objective only"], ["no command given", "--"]),
        (["run", "  ", "--", "true"], ["objective is empty"]),
        (["run", "--lane", "bad/id", "x", "--", "true"], ["invalid lane id 'bad/id'"]),
        (["run", "--lane", "-dash", "x", "--", "true"], ["invalid lane id"]),
        (["run", "--run-id", "a..b", "x", "--", "true"], ["invalid run id", ".."]),
        (["run", "--backend", "local-worktre", "x", "--", "true"], ["unknown backend 'local-worktre'",
                                                                    "did you mean 'local-worktree'"]),
        (["run", "--env", "NOEQUALS", "x", "--", "true"], ["KEY=VALUE"]),
        (["run", "--idle-timeout", "5q", "x", "--", "true"], ["not a duration"]),
        (["show", "nope-run"], ["no run 'nope-run'"]),
        (["score", "missing.json"], ["no result file"]),
        (["schema", "other"], ["Invalid value"]),
        (["frobnicate"], ["No such command"]),
    ],
)
def test_bad_input(spine: Spine, repo: Path, args: list[str], words: list[str]) -> None:
    proc = spine(*args, cwd=repo)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    assert not (repo / ".git" / "spine" / "runs").exists() or not any((repo / ".git" / "spine" / "runs").iterdir())
    assert git("branch", "--list", "spine/*", cwd=repo) == ""


def test_unknown_command_is_not_a_crash(spine: Spine, repo: Path) -> None:
    proc = spine("run", "x", "--", "definitely-not-a-program-xyz", cwd=repo)
    assert proc.returncode == 1
    assert "cannot start" in proc.stdout + proc.stderr


def test_help_and_version(spine: Spine, repo: Path) -> None:
    proc = spine("--help", cwd=repo)
    assert proc.returncode == 0 and "run" in proc.stdout and "Exit codes" in proc.stdout
    assert spine("--version", cwd=repo).stdout.startswith("spine, version")
    assert spine("-C", str(repo / "src"), "context", cwd=Path("/")).returncode == 0
    assert spine("-C", "/no/such/dir", "context", cwd=repo).returncode == 2


def test_dash_c_lasts_one_call_of_run_cli(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """run_cli returns to its caller; the caller's working directory is its own again, -C or not."""
    from spine.cli import run_cli

    monkeypatch.chdir(tmp_path)
    assert run_cli(["-C", str(repo / "src"), "context", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["repository"]["primaryCheckout"] == str(repo)
    assert Path.cwd() == tmp_path
    assert run_cli(["-C", str(repo), "show", "no-such-run"]) == 2
    assert Path.cwd() == tmp_path


def test_a_bug_exits_4_with_a_crash_log_not_a_traceback(
    spine: Spine, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from spine.workspace import context as spine_context

    def broken(**kw: object) -> None:
        raise RuntimeError("resolver exploded")

    monkeypatch.setattr(spine_context, "resolve_context", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    proc = spine("context", "--json", cwd=repo)
    assert proc.returncode == 4
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert "internal error (RuntimeError: resolver exploded); this is a bug in spine" in proc.stderr
    [log] = tmp_path.glob("spine-crash-*.log")
    assert f"details: {log}" in proc.stderr
    text = log.read_text()
    assert "argv: ['spine', 'context', '--json']" in text  # what spine was asked, not the host's argv
    assert "Traceback" in text and "resolver exploded" in text
