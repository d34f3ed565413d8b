"""What a lane on ``bubblewrap`` cannot do: write outside its worktree, touch the git directory or
its hooks, read files it was not given, open network connections (unless allowed), or leak its
secrets into the log and result. Every test runs a real lane through ``spine run``."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Spine, git, skip_unless_bubblewrap


@pytest.fixture(autouse=True)
def _bubblewrap_required() -> None:
    skip_unless_bubblewrap()


def bw(spine: Spine, repo: Path, script: str, *args: str, **kw: Any) -> dict[str, Any]:
    result: dict[str, Any] = spine.json(
        "run",
        "--json",
        "--backend",
        "bubblewrap",
        *args,
        "probe",
        "--",
        "sh",
        "-c",
        script,
        cwd=repo,
        expect=None,
        **kw,
    )
    return result


def log_of(result: dict[str, Any]) -> str:
    return Path(result["logPath"]).read_text()


def test_cannot_write_outside_the_worktree(spine: Spine, repo: Path) -> None:
    before = (repo / "README.md").read_text()
    probe = f"spine-probe-{uuid.uuid4().hex[:8]}"  # unique: other test runs on this machine may probe too
    script = (
        f"echo pwned > {repo}/README.md; echo pwned > {repo}/new.txt; touch /usr/{probe}; "
        f"echo x >> /etc/hostname; touch /{probe}; echo done"
    )
    result = bw(spine, repo, script)
    assert "done" in result["outputTail"]  # ran to the end (stderr and stdout lines may interleave)
    assert (repo / "README.md").read_text() == before
    assert not (repo / "new.txt").exists()
    assert not Path(f"/usr/{probe}").exists() and not Path(f"/{probe}").exists()
    assert "Read-only file system" in log_of(result)


def test_cannot_modify_git_hooks_config_or_refs(spine: Spine, repo: Path) -> None:
    git_dir = repo / ".git"
    config, head = (git_dir / "config").read_text(), git("rev-parse", "main", cwd=repo)
    script = (
        f"printf '#!/bin/sh\\necho hooked\\n' > {git_dir}/hooks/pre-commit; echo '[core]' >> {git_dir}/config; "
        f"echo 0000 > {git_dir}/refs/heads/main; git config user.name evil; git commit --allow-empty -qm x; "
        "git branch evil; echo done"
    )
    result = bw(spine, repo, script)
    assert "done" in result["outputTail"]  # ran to the end (stderr and stdout lines may interleave)
    assert not (git_dir / "hooks" / "pre-commit").exists()
    assert (git_dir / "config").read_text() == config
    assert git("rev-parse", "main", cwd=repo) == head
    assert git("branch", "--list", "evil", cwd=repo) == ""
    assert [c["madeBy"] for c in result["commits"]] == []  # nothing to commit, and no commit by the command


def test_cannot_read_files_it_was_not_given(spine: Spine, repo: Path, isolated_git: Path) -> None:
    home = isolated_git.parent  # the test's HOME
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_rsa").write_text("-----BEGIN FAKE PRIVATE KEY-----\nsecret-key-material\n")
    (home / ".netrc").write_text("machine example.com password hunter22\n")
    script = f"cat {home}/.ssh/id_rsa; cat ~/.ssh/id_rsa; cat {home}/.netrc; ls -a ~; echo done"
    result = bw(spine, repo, script)
    text = log_of(result) + json.dumps(result)
    assert "secret-key-material" not in text and "hunter22" not in text
    assert "done" in result["outputTail"]  # ran to the end (stderr and stdout lines may interleave)


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP listener on 127.0.0.1 that records what connects to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    got: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                got.append(conn.recv(100))

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], got
    stop.set()
    thread.join(2)
    server.close()


CONNECT = (
    "if {{ echo hello > /dev/tcp/127.0.0.1/{port}; }} 2>/dev/null; then echo connected; else echo refused; fi"
)


def test_no_network_unless_allowed(spine: Spine, repo: Path, listener: tuple[int, list[bytes]]) -> None:
    port, got = listener
    script = f"bash -c '{CONNECT.format(port=port)}'"
    blocked = bw(spine, repo, script)
    assert blocked["outputTail"][-1] == "refused" and got == []
    allowed = bw(spine, repo, script, "--network")
    assert allowed["outputTail"][-1] == "connected"
    assert got == [b"hello\n"]


def test_network_allowed_by_configuration(
    spine: Spine, repo: Path, listener: tuple[int, list[bytes]]
) -> None:
    port, got = listener
    (repo / ".spine.yaml").write_text("network: true\n")
    result = bw(spine, repo, f"bash -c '{CONNECT.format(port=port)}'")
    assert result["outputTail"][-1] == "connected" and got == [b"hello\n"]


def test_only_declared_variables_pass_and_secrets_stay_out_of_log_and_result(
    spine: Spine, repo: Path
) -> None:
    env = {
        "DEPLOY_PASSWORD": "pass-from-shell-42",
        "GITHUB_TOKEN": "ghp_notpassedthrough99",
        "PLAIN": "visible",
    }
    script = (
        'echo "pw=$DEPLOY_PASSWORD gh=${GITHUB_TOKEN-unset} plain=${PLAIN-unset} key=$MY_API_KEY"; exit 3'
    )
    result = bw(
        spine, repo, script, "--pass-env", "DEPLOY_PASSWORD", "--env", "MY_API_KEY=key-on-cli-77", env=env
    )
    assert result["status"] == "failed" and result["exitCode"] == 3
    line = result["outputTail"][-1]
    assert line == "pw=[REDACTED] gh=unset plain=unset key=[REDACTED]"
    everything = log_of(result) + Path(result["logPath"]).with_name("result.json").read_text()
    for secret in env.values():
        if secret != "visible":
            assert secret not in everything
    assert "key-on-cli-77" not in everything


def test_timeout_kills_the_whole_sandbox(spine: Spine, repo: Path) -> None:
    script = "(sleep 1; echo late > late.txt) & sh -c 'sleep 1; echo later > later.txt' & sleep 30"
    result = bw(spine, repo, script, "--timeout", "0.3")
    assert result["status"] == "failed" and result["timedOut"]
    import time

    time.sleep(1.5)
    worktree = Path(result["worktreePath"])
    assert not (worktree / "late.txt").exists() and not (worktree / "later.txt").exists()
