"""Every bad input: exit 2, a message that says what was wrong and what to do, no traceback, nothing created."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Spine, check_envelope, git


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "objective only"], ["no command given", "--"]),
        (["run", "  ", "--", "true"], ["objective is empty"]),
        (["run", "--lane", "bad/id", "x", "--", "true"], ["invalid lane id 'bad/id'"]),
        (["run", "--lane", "-dash", "x", "--", "true"], ["invalid lane id"]),
        (["run", "--run-id", "a..b", "x", "--", "true"], ["invalid run id", ".."]),
        (
            ["run", "--backend", "local-worktre", "x", "--", "true"],
            ["unknown backend 'local-worktre'", "did you mean 'local-worktree'"],
        ),
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
    assert not (repo / ".git" / "spine" / "runs").exists() or not any(
        (repo / ".git" / "spine" / "runs").iterdir()
    )
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


def test_dash_c_lasts_one_call_of_run_cli(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """run_cli returns to its caller; the caller's working directory is its own again, -C or not."""
    from spine.cli import run_cli

    monkeypatch.chdir(tmp_path)
    assert run_cli(["-C", str(repo / "src"), "context", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["repository"]["primaryCheckout"] == str(repo)
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
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "internal error (RuntimeError: resolver exploded); this is a bug in spine" in proc.stderr
    [log] = tmp_path.glob("spine-crash-*.log")
    assert f"details: {log}" in proc.stderr
    # With --json the crash is a JSON error on stdout too.
    envelope = json.loads(proc.stdout)
    check_envelope(envelope, 4, ["context"])
    assert envelope["data"] is None
    assert envelope["errors"] == [
        {
            "kind": "internal",
            "exitCode": 4,
            "details": str(log),
            "hint": f"details: {log}",
            "message": "internal error (RuntimeError: resolver exploded); this is a bug in spine.",
        }
    ]
    text = log.read_text()
    assert "argv: ['spine', 'context', '--json']" in text  # what spine was asked, not the host's argv
    assert "Traceback" in text and "resolver exploded" in text


@pytest.mark.parametrize(
    ("args", "code", "kind", "message"),
    [
        (["show", "nosuch", "--json"], 2, "usage", "no run 'nosuch'"),
        (["status", "--json", "--bogus"], 2, "usage", "No such option"),
        (["run", "--json", "--timeout", "soon", "x", "--", "true"], 2, "usage", "not a duration"),
        (["gate", "--json", "no-such-rev", "--into", "main"], 2, "usage", "unknown revision"),
    ],
)
def test_errors_come_as_json_when_json_is_asked_for(
    spine: Spine, repo: Path, args: list[str], code: int, kind: str, message: str
) -> None:
    proc = spine(*args, cwd=repo)
    assert proc.returncode == code, proc.stderr
    envelope = json.loads(proc.stdout)
    check_envelope(envelope, code, args)
    assert envelope["data"] is None
    [error] = envelope["errors"]
    assert error["kind"] == kind and error["exitCode"] == code and message in error["message"], error
    assert "spine: error" in proc.stderr or "Error" in proc.stderr  # people still read stderr


def test_every_problem_is_listed_in_the_json_error(spine: Spine, repo: Path) -> None:
    (repo / ".spine.yaml").write_text("base: no-such-base\ntarget: no-such-target\n")
    envelope = spine.json("context", "--json", cwd=repo, expect=2, envelope=True)
    [error] = envelope["errors"]
    assert error["problems"] == [
        f"{repo / '.spine.yaml'}: key 'base': unknown base ref 'no-such-base': no branch, tag or commit has that name",
        f"{repo / '.spine.yaml'}: key 'target': unknown target ref 'no-such-target': no branch, tag or commit has "
        "that name",
    ]


def test_json_after_dash_dash_belongs_to_the_command(spine: Spine, repo: Path) -> None:
    proc = spine("run", "say json", "--", "echo", "--json", cwd=repo)
    assert proc.returncode == 0 and not proc.stdout.lstrip().startswith("{"), proc.stdout


def test_an_interrupt_under_json_is_a_json_error(repo: Path) -> None:
    """Ctrl-C while a lane runs: the lane ends canceled and stdout still holds one envelope."""
    import signal
    import subprocess
    import sys
    import time

    child = subprocess.Popen(
        [sys.executable, "-m", "spine", "run", "--json", "wait", "--", "sleep", "30"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = repo / ".git" / "spine" / "runs"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(runs.glob("*/lanes/*/output.log")):
        time.sleep(0.1)
    time.sleep(0.5)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    envelope = json.loads(out)
    check_envelope(envelope, 130, ["run"])
    assert envelope["errors"][0]["kind"] == "interrupted"
