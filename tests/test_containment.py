"""Untrusted stays untrusted: what a sandboxed lane leaves behind never runs or leaks on the host, and
no secret value reaches a file or an output.

The escapes tried here are the ones listed in docs/backends.md ("What each backend contains"); the
bubblewrap ones run wherever bwrap can (and must, under CI).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Spine, git, skip_unless_bubblewrap, write_files


@pytest.fixture
def bwrap() -> None:
    skip_unless_bubblewrap()


def run_lane(spine: Spine, repo: Path, *args: str, expect: int | None = 0, **kw: Any) -> dict[str, Any]:
    result: dict[str, Any] = spine.json("run", "--json", "-q", *args, cwd=repo, expect=expect, **kw)
    return result


# --- 1 and 2: spine's own git work on what a sandboxed lane left ---------------------------------


@pytest.mark.parametrize("backend", ["bubblewrap", "local-worktree"])
def test_a_git_config_planted_by_the_lane_never_runs_on_the_host(
    spine: Spine, repo: Path, tmp_path: Path, backend: str
) -> None:
    if backend == "bubblewrap":
        skip_unless_bubblewrap()
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    plant = (
        "rm -f .git && git init -q evil && "
        f"git -C evil config core.fsmonitor 'touch {marker}; false' && "
        "git -C evil config core.hooksPath /nonexistent && "
        'printf "gitdir: %s/evil/.git\\n" "$PWD" > .git && echo x > x.txt'
    )
    result = run_lane(spine, repo, "--backend", backend, "plant", "--", "sh", "-c", plant, expect=1)
    assert result["failureKind"] == "violation"
    assert "rewritten" in result["summary"]
    assert not marker.exists(), "the lane's fsmonitor ran on the host"
    # gc later saves and removes the worktree: still nothing of the lane's config runs.
    assert spine("gc", cwd=repo).returncode == 0
    assert not marker.exists()


def test_gc_never_follows_a_link_put_where_a_lane_worktree_was(
    spine: Spine, repo: Path, tmp_path: Path
) -> None:
    # A failed lane keeps its worktree; something then puts a link to a host directory in its place.
    result = run_lane(
        spine, repo, "--run-id", "r", "fails", "--", "sh", "-c", "echo x > x.txt; exit 1", expect=1
    )
    worktree = Path(result["worktreePath"])
    private = tmp_path / "private"
    private.mkdir()
    (private / "id_rsa").write_text("host key\n")
    os.rename(worktree, tmp_path / "moved-away")
    worktree.symlink_to(private)
    assert spine("gc", cwd=repo).returncode == 0
    assert (private / "id_rsa").read_text() == "host key\n"  # not removed through the link
    assert not os.path.lexists(worktree)  # the link itself is gone
    recovered = git("for-each-ref", "--format=%(refname)", "refs/spine/recovered/", cwd=repo).split()
    for ref in recovered:  # nothing of the linked directory was taken into the repository
        assert "id_rsa" not in git("ls-tree", "-r", "--name-only", ref, cwd=repo)


@pytest.mark.usefixtures("bwrap")
def test_a_lane_pointing_its_git_file_at_the_users_repository_cannot_commit_there(
    spine: Spine, repo: Path
) -> None:
    main = git("rev-parse", "main", cwd=repo)
    command = f'printf "gitdir: {repo / ".git"}\\n" > .git && echo x > x.txt && rm README.md'
    result = run_lane(spine, repo, "--backend", "bubblewrap", "redirect", "--", "sh", "-c", command, expect=1)
    assert result["status"] == "failed" and result["failureKind"] == "violation"
    assert git("rev-parse", "main", cwd=repo) == main
    assert git("status", "--porcelain", cwd=repo) == ""
    assert result["commits"] == []


# --- 3: setup, checks and acceptance checks run in the lane's isolation -------------------------------


@pytest.fixture
def host_secret(isolated_git: Path) -> Iterator[Path]:
    """A private key in the (test's) home directory, which the sandbox must not see."""
    ssh = Path(os.environ["HOME"]) / ".ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    key = ssh / "id_ed25519"
    key.write_text("PRIVATE KEY MATERIAL\n")
    yield key


@pytest.mark.usefixtures("bwrap")
def test_checks_under_bubblewrap_cannot_read_the_home_directory(
    spine: Spine, repo: Path, host_secret: Path
) -> None:
    check = f"cat {host_secret}"
    inside = run_lane(
        spine, repo, "--backend", "bubblewrap", "--check", check, "sandboxed check", "--", "true", expect=1
    )
    assert inside["failureKind"] == "check_failed"
    assert "PRIVATE KEY" not in json.dumps(inside)
    # The explicit setting runs them on the host, where the file is there to read.
    host = run_lane(
        spine,
        repo,
        "--backend",
        "bubblewrap",
        "--checks-on-host",
        "--check",
        check,
        "host check",
        "--",
        "true",
    )
    assert host["validation"][0]["status"] == "passed"


@pytest.mark.usefixtures("bwrap")
def test_setup_commands_under_bubblewrap_run_in_the_sandbox(
    spine: Spine, repo: Path, host_secret: Path
) -> None:
    write_files(repo, {".spine.yaml": f"setup:\n  commands:\n    - cat {host_secret} > copied.txt\n"})
    result = run_lane(spine, repo, "--backend", "bubblewrap", "setup leak", "--", "true", expect=1)
    assert result["failureKind"] == "setup_failed"


# --- 4: other ways out ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("bwrap")
def test_a_host_socket_under_run_is_out_of_reach_without_network(spine: Spine, repo: Path) -> None:
    path = Path("/run") / f"spine-test-{uuid.uuid4().hex[:8]}.sock"
    try:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
    except OSError as exc:
        pytest.skip(f"cannot create a socket under /run here: {exc}")
    server.listen(1)
    probe = f"{sys.executable} -c \"import socket; s = socket.socket(socket.AF_UNIX); s.connect('{path}')\""
    try:
        blocked = run_lane(
            spine, repo, "--backend", "bubblewrap", "dial out", "--", "sh", "-c", probe, expect=1
        )
        assert blocked["failureKind"] == "command_failed"
    finally:
        server.close()
        path.unlink(missing_ok=True)


@pytest.mark.usefixtures("bwrap")
def test_an_artifact_that_is_a_link_to_a_host_file_is_not_copied(
    spine: Spine, repo: Path, host_secret: Path
) -> None:
    command = f"ln -s {host_secret} report.txt && mkdir -p out && ln -s {host_secret.parent} out/keys"
    result = run_lane(
        spine,
        repo,
        "--backend",
        "bubblewrap",
        "--artifact",
        "report.txt",
        "--artifact",
        "out/**/*",
        "links",
        "--",
        "sh",
        "-c",
        command,
    )
    assert result["artifacts"] == []
    stored = Path(result["logPath"]).parent / "artifacts"
    assert not stored.exists() or not any(p.is_file() for p in stored.rglob("*"))
    log = Path(result["logPath"]).read_text()
    assert "artifact not kept: report.txt: a link or a path through a link" in log


# --- 5: secrets never reach disk or output -----------------------------------------------------------------

TOKEN = "ghp_" + "S3cr3tValue" * 3


def _everything_under(root: Path) -> str:
    texts = []
    for path in root.rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


def test_a_gate_check_that_prints_a_token_keeps_it_out_of_every_output(
    spine: Spine, repo: Path, tmp_path: Path
) -> None:
    git("switch", "-qc", "feature", cwd=repo)
    (repo / "f.txt").write_text("f\n")
    git("add", "f.txt", cwd=repo)
    git("commit", "-qm", "feature", cwd=repo)
    junit = tmp_path / "gate.xml"
    summary = tmp_path / "summary.md"
    env = {"GITHUB_TOKEN": TOKEN, "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    check = 'echo "token is $GITHUB_TOKEN"; exit 1'
    proc = spine(
        "gate", "--into", "main", "--check", check, "--junit", str(junit), "--json", cwd=repo, env=env
    )
    assert proc.returncode == 1
    outputs = [
        proc.stdout,
        proc.stderr,
        junit.read_text(),
        summary.read_text(),
        _everything_under(repo / ".git" / "spine"),
    ]
    assert "[REDACTED]" in proc.stdout
    for text in outputs:
        assert TOKEN not in text


def test_secrets_from_every_source_stay_out_of_the_state_directory(spine: Spine, repo: Path) -> None:
    env = {"GITHUB_TOKEN": TOKEN}
    write_files(repo, {".spine.yaml": 'setup:\n  commands:\n    - echo "setup sees $GITHUB_TOKEN"\n'})
    # A failing check prints it; the objective and argv carry it; an --env value has a secret name.
    first = run_lane(
        spine,
        repo,
        "--run-id",
        "r1",
        "--lane",
        "uses",
        "--env",
        f"DEPLOY_TOKEN={TOKEN}x",
        "--check",
        'echo "$GITHUB_TOKEN"; exit 1',
        f"use {TOKEN}",
        "--",
        "sh",
        "-c",
        f'echo {TOKEN}; echo "$DEPLOY_TOKEN"',
        env=env,
        expect=1,
    )
    assert first["failureKind"] == "check_failed"
    # A failing setup command prints it.
    write_files(repo, {".spine.yaml": 'setup:\n  commands:\n    - echo "$GITHUB_TOKEN"; exit 1\n'})
    run_lane(spine, repo, "--run-id", "r2", "setup fails", "--", "true", env=env, expect=1)
    state = _everything_under(repo / ".git" / "spine")
    assert TOKEN not in state
    debug = spine("debug", "r1/uses", cwd=repo, env=env)
    assert debug.returncode == 0, debug.stderr
    packet = json.loads(
        (repo / ".git" / "spine" / "runs" / "r1" / "lanes" / "uses" / "debug.json").read_text()
    )
    assert '--env DEPLOY_TOKEN="$DEPLOY_TOKEN"' in packet["repro"]["spine"]
    assert TOKEN not in debug.stdout + debug.stderr


def test_a_secret_env_value_is_not_stored_but_still_reaches_the_command(spine: Spine, repo: Path) -> None:
    result = run_lane(
        spine,
        repo,
        "--run-id",
        "r1",
        "--lane",
        "s",
        "--env",
        f"API_TOKEN={TOKEN}",
        "secret env",
        "--",
        "sh",
        "-c",
        'test "$API_TOKEN" = "' + TOKEN + '" && echo ok > ok.txt',
    )
    assert result["status"] == "succeeded"
    run = (repo / ".git" / "spine" / "runs" / "r1" / "run.json").read_text()
    assert TOKEN not in run and '"API_TOKEN": "[REDACTED]"' in run


def test_a_dead_drivers_lanes_are_closed_without_secrets(spine: Spine, repo: Path) -> None:
    env = {"GITHUB_TOKEN": TOKEN, "SPINE_CRASH_AT": "commit:begin"}
    proc = spine(
        "run",
        "--run-id",
        "r1",
        "--lane",
        "d",
        f"objective {TOKEN}",
        "--",
        "sh",
        "-c",
        f"echo {TOKEN}",
        cwd=repo,
        env=env,
    )
    assert proc.returncode == -9
    gc = spine("gc", cwd=repo, env={"GITHUB_TOKEN": TOKEN})
    assert gc.returncode == 0, gc.stderr
    result = json.loads((repo / ".git" / "spine" / "runs" / "r1" / "lanes" / "d" / "result.json").read_text())
    assert result["failureKind"] == "driver_died"
    assert TOKEN not in _everything_under(repo / ".git" / "spine")


def test_the_security_suite_is_listed_in_the_backend_docs() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "backends.md").read_text()
    assert "tests/test_containment.py" in doc
    module = sys.modules[__name__]
    tests = [
        name
        for name in dir(module)
        if name.startswith("test_") and name != "test_the_security_suite_is_listed_in_the_backend_docs"
    ]
    for name in tests:
        assert name in doc, f"docs/backends.md does not list {name}"


def test_a_patch_from_a_remote_sandbox_cannot_write_outside_the_worktree(repo: Path, tmp_path: Path) -> None:
    """What a remote sandbox sends back is applied by git apply, which refuses a path through a link,
    into .git, or outside the worktree; the lane then fails with the patch kept."""
    from spine.adapters.remote import RemoteSandbox

    from spine.backends.base import SandboxHandle
    from spine.base.errors import EnvironmentProblem

    outside = tmp_path / "outside"
    outside.mkdir()
    link = (
        "diff --git a/esc b/esc\nnew file mode 120000\nindex 0000000..1111111\n--- /dev/null\n+++ b/esc\n"
        f"@@ -0,0 +1 @@\n+{outside}\n\\ No newline at end of file\n"
        "diff --git a/esc/pwned b/esc/pwned\nnew file mode 100644\nindex 0000000..2222222\n--- /dev/null\n"
        "+++ b/esc/pwned\n@@ -0,0 +1 @@\n+pwned\n"
    )
    hook = (
        "diff --git a/.git/hooks/post-checkout b/.git/hooks/post-checkout\nnew file mode 100755\n"
        "index 0000000..3333333\n--- /dev/null\n+++ b/.git/hooks/post-checkout\n@@ -0,0 +1 @@\n+touch pwned\n"
    )
    climb = (
        "diff --git a/../climbed b/../climbed\nnew file mode 100644\nindex 0000000..4444444\n--- /dev/null\n"
        "+++ b/../climbed\n@@ -0,0 +1 @@\n+pwned\n"
    )

    class Driver:
        root = "/remote"

        def __init__(self, patch: str) -> None:
            self.patch = patch.encode()

        def run(self, script: str, **kw: object) -> int:
            return 0

        def read_file(self, path: str) -> bytes:
            return self.patch

    for patch in (link, hook, climb):
        handle = SandboxHandle(backend="test", worktree=repo, data={"driver": Driver(patch)})
        with pytest.raises(EnvironmentProblem, match="do not apply"):
            RemoteSandbox().collect(handle)
    assert list(outside.iterdir()) == []
    assert not (repo / ".git" / "hooks" / "post-checkout").exists()
    assert not (repo.parent / "climbed").exists()
