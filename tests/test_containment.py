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


@pytest.mark.usefixtures("bwrap")
def test_landing_an_isolated_lane_tests_its_code_in_its_isolation(
    spine: Spine, repo: Path, tmp_path: Path
) -> None:
    """`spine land` gates the tree that holds the lane's work: code a bubblewrap lane wrote runs in
    bubblewrap there too, never on the host, as it did in the lane's own checks."""
    marker = tmp_path / "ran-on-host"
    write_files(
        repo, {".spine.yaml": "checks:\n  - name: test\n    command: sh test.sh\n", "test.sh": "exit 0\n"}
    )
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "a check", cwd=repo)
    script = f"echo '(id; echo HOME=$HOME) > {marker} 2>/dev/null; true' > test.sh"
    result = run_lane(spine, repo, "--backend", "bubblewrap", "edit tests", "--", "sh", "-c", script)
    assert not marker.exists()  # the lane's own check ran in the sandbox
    landed = spine.json("land", result["runId"], "--json", cwd=repo)
    assert [d["outcome"] for d in landed["decisions"]] == ["landed"], landed
    assert not marker.exists()
    assert git("show", "main:test.sh", cwd=repo).startswith("(id;")


def test_a_lane_that_rewrites_its_commondir_fails_and_nothing_it_named_runs(
    spine: Spine, repo: Path, tmp_path: Path
) -> None:
    """A linked worktree's registered git dir names the repository in its `commondir` file. A command
    that points it at a repository of its own (with a clean filter) fails the lane; spine's git never
    takes the repository from that file, and the worktree never goes back to the pool."""
    evil, ran = tmp_path / "evil", tmp_path / "ran"
    script = (
        f"git init -q --bare {evil} && git --git-dir={evil} config core.bare false && "
        f'echo "$(git rev-parse --path-format=absolute --git-common-dir)/objects" > {evil}/objects/info/alternates && '
        f"git --git-dir={evil} config filter.x.clean 'sh -c \"echo ran >> {ran}; cat\"' && "
        f'echo "* filter=x" > {evil}/info/attributes && '
        f'echo {evil} > "$(git rev-parse --git-dir)/commondir" && echo w > w.txt'
    )
    result = run_lane(spine, repo, "plant", "--", "sh", "-c", script, expect=1)
    assert result["failureKind"] == "violation"
    assert f"its commondir file names '{evil}'" in result["summary"]
    after = run_lane(spine, repo, "--lane", "next", "next", "--", "sh", "-c", "echo g > g.txt")
    assert git("show", f"{after['branch']}:g.txt", cwd=repo) == "g"
    assert not ran.exists()


@pytest.mark.usefixtures("bwrap")
def test_gating_a_pushed_lane_branch_tests_it_in_the_lanes_isolation(
    spine: Spine, repo: Path, tmp_path: Path
) -> None:
    """`spine gate REV` (what the pre-push hook runs) on a branch holding a bubblewrap lane's work runs
    the checks in bubblewrap, even with local-worktree configured; a JUnit path the lane made a link to
    a host file is replaced, not written through."""
    marker, victim = tmp_path / "ran-on-host", tmp_path / "victim"
    victim.write_text("precious\n")
    write_files(repo, {".spine.yaml": "checks:\n  - name: t\n    command: sh t.sh\n", "t.sh": "exit 0\n"})
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "a check", cwd=repo)
    script = f"echo 'id > {marker} 2>/dev/null; exit 0' > t.sh && ln -s {victim} gate.xml"
    result = run_lane(spine, repo, "--backend", "bubblewrap", "x", "--", "sh", "-c", script)
    git("checkout", "-q", result["branch"], cwd=repo)
    proc = spine("gate", "--into", "main", "--junit", "gate.xml", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert victim.read_text() == "precious\n"
    assert (repo / "gate.xml").read_text().startswith("<?xml")


@pytest.mark.usefixtures("bwrap")
def test_a_hosts_secret_looking_spine_variable_stays_out_of_the_sandbox(
    spine: Spine, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPINE_DEPLOY_TOKEN", "ghp-abcdef123456-secret")
    result = run_lane(spine, repo, "--backend", "bubblewrap", "x", "--", "sh", "-c", "env > seen.txt")
    seen = git("show", f"{result['branch']}:seen.txt", cwd=repo)
    assert "SPINE_DEPLOY_TOKEN" not in seen and "SPINE_RUN_ID" in seen, seen  # spine's own still pass


def test_an_error_quoting_lane_output_reaches_the_terminal_without_escapes(spine: Spine, repo: Path) -> None:
    """A refused promotion quotes the failing gate check's output, which the lane's code wrote."""
    write_files(repo, {".spine.yaml": "checks:\n  - name: t\n    command: sh t.sh\n", "t.sh": "exit 0\n"})
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "a check", cwd=repo)
    script = r"""printf '[ -n "$SPINE_GATE_TREE" ] || exit 0\nprintf "\\033]52;c;cm0K\\007\\033]0;PWNED\\007bad\\n"\nexit 1\n' > t.sh"""
    result = run_lane(spine, repo, "x", "--", "sh", "-c", script)
    proc = spine("promote", f"{result['runId']}/x", "--gate", cwd=repo)
    assert proc.returncode == 1, proc.stderr
    assert "bad" in proc.stderr and "\x1b]" not in proc.stderr and "\x07" not in proc.stderr


def test_evidence_file_names_holding_a_secret_are_masked_in_the_state(
    spine: Spine, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Evidence rules match files by name, and the command chose the names."""
    monkeypatch.setenv("EVIDENCE_TOKEN", "tok-0d9a7c2e-secret")
    spine.json(
        "run", "--json", "-q", "--mode", "contract", "--pass-env", "EVIDENCE_TOKEN", "fix the crash", "--",
        "sh", "-c", 'echo x > "repro-$EVIDENCE_TOKEN.txt"', cwd=repo, expect=None,
    )  # fmt: skip
    leaked = [
        p for p in (repo / ".git" / "spine").rglob("*") if p.is_file() and b"tok-0d9a7c2e" in p.read_bytes()
    ]
    assert leaked == []


def test_a_stacked_lane_never_fetches_a_submodule_url_the_lane_below_chose(
    spine: Spine, repo: Path, tmp_path: Path
) -> None:
    """`setup.submodules: update` runs on the host with your network and keys: for a lane stacked on
    another lane's work, URLs that work adds or changes are refused, named, before any fetch."""
    write_files(repo, {".spine.yaml": "setup:\n  submodules: update\n"})
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "submodules", cwd=repo)
    plant = (
        "git init -q sub && git -C sub -c user.name=a -c user.email=a@b commit -q --allow-empty -m s && "
        "printf '[submodule \"sub\"]\\n\\tpath = sub\\n\\turl = https://127.0.0.1:9/exfiltrate\\n' > .gitmodules"
    )
    batch = tmp_path / "lanes.yaml"
    batch.write_text(
        "lanes:\n"
        f"  - id: x\n    objective: plant a submodule\n    command: {json.dumps(plant)}\n"
        "  - id: y\n    objective: build on it\n    base: lane:x\n    command: 'true'\n"
    )
    proc = spine("batch", str(batch), cwd=repo)
    assert (repo / ".git" / "spine" / "runs").is_dir(), proc.stderr
    [run] = [p for p in (repo / ".git" / "spine" / "runs").iterdir() if p.is_dir()]
    x = json.loads((run / "lanes" / "x" / "result.json").read_text())
    y = json.loads((run / "lanes" / "y" / "result.json").read_text())
    assert x["status"] == "succeeded", x["summary"]
    assert y["status"] == "failed", y["summary"]
    assert "adds or changes submodule URLs: sub (https://127.0.0.1:9/exfiltrate)" in y["summary"]
