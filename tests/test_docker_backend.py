"""The docker backend on real engines (Docker, and Podman through its compatible socket).

What a lane in a container gets (its output, complete; its exit code; a writable, executable HOME
and TMPDIR; files owned by you) and what it cannot do (write outside its worktree, touch the git
directory, see spine's state or other lanes, use the network unless allowed, keep capabilities, see
undeclared variables, outlive its timeout). Most tests run a real lane through ``spine run``.
tests/engines.py says which engines; outside CI a missing engine skips, under CI it fails.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spine.adapters.docker import DockerSandbox

from spine.backends.base import SandboxSpec
from tests import engines
from tests.conftest import Spine, git

RACE_LANES = int(os.environ.get("SPINE_TEST_OUTPUT_LANES", "10"))


@pytest.fixture(params=engines.ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    engines.backend(name)  # skip (fail under CI) when it is not there
    return name


@pytest.fixture
def on(engine: str, repo: Path) -> str:
    """Lanes in ``repo`` run on ``engine`` (its settings in .spine.yaml)."""
    (repo / ".spine.yaml").write_text(engines.spine_yaml(engine))
    return engine


def lane(spine: Spine, repo: Path, script: str, *args: str, **kw: Any) -> dict[str, Any]:
    result: dict[str, Any] = spine.json(
        "run", "--json", *args, "probe", "--", "sh", "-c", script, cwd=repo, expect=None, **kw
    )
    return result


def log_of(result: dict[str, Any]) -> str:
    return Path(result["logPath"]).read_text()


# --- what the lane gets ------------------------------------------------------------------------------


def test_a_lane_is_committed_with_its_output_and_exit_code(spine: Spine, repo: Path, on: str) -> None:
    script = "echo made > made.txt; git status --short; echo to-stderr >&2; exit 0"
    result = lane(spine, repo, script)
    assert result["status"] == "succeeded", result
    assert result["sandboxBackend"] == "docker" and result["providerRunId"]
    assert git("show", f"{result['branch']}:made.txt", cwd=repo) == "made"
    assert "?? made.txt" in result["outputTail"]  # git works, read-only, inside
    assert "to-stderr" in log_of(result)
    failed = lane(spine, repo, "echo partial > p.txt; exit 7")
    assert (failed["status"], failed["exitCode"]) == ("failed", 7)


def test_files_the_lane_writes_are_yours(spine: Spine, repo: Path, on: str) -> None:
    result = lane(spine, repo, "echo mine > mine.txt; id -u", "--keep-worktree")
    assert result["status"] == "succeeded", result
    written = Path(result["worktreePath"]) / "mine.txt"
    assert (written.stat().st_uid, written.stat().st_gid) == (os.getuid(), os.getgid())
    found = engines.backend(on).engine()
    inside = 0 if found.rootless and not found.podman else os.getuid()  # rootless Docker: its root is you
    assert result["outputTail"][-1] == str(inside)


def test_scripts_and_venvs_run_from_tmpdir_and_home(spine: Spine, repo: Path, on: str) -> None:
    script = (
        'printf "#!/bin/sh\\necho script-ran\\n" > "$TMPDIR/s.sh" && chmod +x "$TMPDIR/s.sh" && "$TMPDIR/s.sh" && '
        'python3 -m venv "$TMPDIR/v" && "$TMPDIR/v/bin/python" -c "print(6 * 7)" && '
        'echo cfg > "$HOME/.probe" && cat "$HOME/.probe" && echo "home=$HOME tmp=$TMPDIR"'
    )
    result = lane(spine, repo, script)
    assert result["status"] == "succeeded", log_of(result)
    assert result["outputTail"][-4:] == ["script-ran", "42", "cfg", "home=/tmp tmp=/tmp"]


def test_output_is_complete_in_every_lane(engine: str, repo: Path, tmp_path: Path) -> None:
    """The first line, the last line and everything between, on both streams, lane after lane.

    Attaching in a thread that raced the start lost output (all of it, or the first line) in some
    lanes, and Podman's followed log skips a line now and then; the attachment made before the
    start must lose nothing, on every engine. SPINE_TEST_OUTPUT_LANES sets the number of lanes.
    """
    backend = engines.backend(engine)
    expected_out = "first\n" + "".join(f"line {i}\n" for i in range(1, 201)) + "last\n"
    script = 'echo first; i=1; while [ $i -le 200 ]; do echo "line $i"; i=$((i+1)); done; echo last; echo err >&2; exit 3'
    incomplete = []
    for n in range(RACE_LANES):
        worktree = tmp_path / f"wt{n}"
        git("worktree", "add", "-q", "--detach", str(worktree), cwd=repo)
        handle = backend.prepare(SandboxSpec(worktree=worktree, run_id="race", lane_id=f"l{n}"))
        streams: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

        def collect(stream: str, chunk: bytes, streams: dict[str, bytearray] = streams) -> None:
            streams[stream].extend(chunk)

        try:
            outcome = backend.exec(handle, ["/bin/sh", "-c", script], env={}, timeout=60, on_output=collect)
        finally:
            backend.teardown(handle)
        if (outcome.exit_code, streams["stdout"].decode(), streams["stderr"].decode()) != (
            3,
            expected_out,
            "err\n",
        ):
            incomplete.append((n, outcome.exit_code, bytes(streams["stdout"][:40]), len(streams["stdout"])))
    assert incomplete == [], f"{len(incomplete)} of {RACE_LANES} lanes lost output or their exit code"


def test_a_line_written_in_parts_stays_one_line(engine: str, repo: Path, tmp_path: Path) -> None:
    """A program that writes a line in parts (its name, then its message) must not have the other
    stream's output land in the middle of that line."""
    backend = engines.backend(engine)
    worktree = tmp_path / "wt"
    git("worktree", "add", "-q", "--detach", str(worktree), cwd=repo)
    handle = backend.prepare(SandboxSpec(worktree=worktree, run_id="parts", lane_id="l"))
    streams: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    try:
        outcome = backend.exec(
            handle,
            ["sh", "-c", "printf part >&2; sleep 0.3; echo done; sleep 0.3; printf 'ial\\n' >&2"],
            env={},
            timeout=30,
            on_output=lambda s, c: streams[s].extend(c),
        )
    finally:
        backend.teardown(handle)
    assert (bytes(streams["stdout"]), bytes(streams["stderr"])) == (b"done\n", b"partial\n")
    assert sorted(outcome.tail) == ["done", "partial"]


def test_no_socket_is_left_open(engine: str, repo: Path, tmp_path: Path) -> None:
    """Every connection to the engine is closed by the time the lane is torn down."""
    worktree = tmp_path / "wt"
    git("worktree", "add", "-q", "--detach", str(worktree), cwd=repo)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        backend = engines.backend(engine)
        for n in range(3):
            handle = backend.prepare(SandboxSpec(worktree=worktree, run_id="leak", lane_id=f"l{n}"))
            try:
                backend.exec(handle, ["sh", "-c", "echo out; echo err >&2"], env={}, timeout=30)
            finally:
                backend.teardown(handle)
        del backend
        gc.collect()
    leaked = [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)]
    assert leaked == []


def test_a_batch_of_lanes_at_once_loses_no_output(spine: Spine, repo: Path, on: str, tmp_path: Path) -> None:
    """Lanes running side by side on one engine: every lane's log holds every line, on both streams."""
    ids = [f"l{n}" for n in range(6)]
    command = 'echo "first-$L"; seq 1 300; echo "last-$L"; echo "err-$L" >&2; echo "$L" > out.txt'
    lanes = [{"id": i, "objective": f"lane {i}", "command": command, "env": {"L": i}} for i in ids]
    batch = tmp_path / "lanes.json"
    batch.write_text(json.dumps({"lanes": lanes}))
    data = spine.json("batch", str(batch), "--json", "-j", "3", "--run-id", "many", cwd=repo)
    assert data["counts"] == {"succeeded": len(ids)}, data
    numbers = "".join(f"{n}\n" for n in range(1, 301))
    for i in ids:
        result = json.loads(
            (repo / ".git" / "spine" / "runs" / "many" / "lanes" / i / "result.json").read_text()
        )
        log = log_of(result)
        assert log.count(f"err-{i}\n") == 1, (i, log)
        # stdout and stderr are two streams: the order between them is not kept, each one's is
        assert f"first-{i}\n{numbers}last-{i}\n" in log.replace(f"err-{i}\n", ""), (i, log)
        assert git("show", f"spine/many/{i}:out.txt", cwd=repo) == i


# --- what the lane cannot do --------------------------------------------------------------------------


def test_cannot_write_outside_the_worktree(spine: Spine, repo: Path, on: str) -> None:
    before = (repo / "README.md").read_text()
    probe = f"spine-probe-{uuid.uuid4().hex[:8]}"
    script = (
        f"echo pwned > {repo}/README.md; echo pwned > {repo}/new.txt; touch /usr/{probe}; "
        f"echo x >> /etc/hostname; touch /{probe}; echo done"
    )
    result = lane(spine, repo, script)
    assert "done" in result["outputTail"]
    assert (repo / "README.md").read_text() == before
    assert not (repo / "new.txt").exists()
    assert not Path(f"/usr/{probe}").exists() and not Path(f"/{probe}").exists()
    assert "Read-only file system" in log_of(result) or "No such file or directory" in log_of(result)


def test_cannot_modify_git_hooks_config_or_refs(spine: Spine, repo: Path, on: str) -> None:
    git_dir = repo / ".git"
    config, head = (git_dir / "config").read_text(), git("rev-parse", "main", cwd=repo)
    script = (
        f"printf '#!/bin/sh\\necho hooked\\n' > {git_dir}/hooks/pre-commit; echo '[core]' >> {git_dir}/config; "
        f"echo 0000 > {git_dir}/refs/heads/main; git config user.name evil; git commit --allow-empty -qm x; "
        "git branch evil; echo done"
    )
    result = lane(spine, repo, script)
    assert "done" in result["outputTail"]
    assert not (git_dir / "hooks" / "pre-commit").exists()
    assert (git_dir / "config").read_text() == config
    assert git("rev-parse", "main", cwd=repo) == head
    assert git("branch", "--list", "evil", cwd=repo) == ""
    assert "Read-only file system" in log_of(result)


def test_cannot_see_spine_state_other_lanes_or_other_runs(spine: Spine, repo: Path, on: str) -> None:
    """spine's state under the git directory is an empty tmpfs, with only the lane's own worktree in it.

    Podman copies what lies below a tmpfs into it unless told not to: this is where that would show.
    """
    state = (repo / ".git" / "spine").resolve()
    other_run = state / "runs" / "other-run"
    other_run.mkdir(parents=True)
    (other_run / "run.json").write_text('{"secret": "other-run-state-4242"}\n')
    other_lane = state / "worktrees" / "other-run" / "other-lane"
    other_lane.mkdir(parents=True)
    (other_lane / "work.txt").write_text("other-lane-work-4242\n")
    script = (
        f"echo \"state: $(ls -A {state} | tr '\\n' ' ')\"; "
        f"test -e {other_run} && echo sees-other-run || echo no-other-run; "
        f"test -e {other_lane} && echo sees-other-lane || echo no-other-lane; "
        f'echo "run.json files: $(find {state} -name run.json | wc -l)"; '
        f"cat {other_run}/run.json {other_lane}/work.txt 2>/dev/null; echo done"
    )
    result = lane(spine, repo, script, "--keep-worktree")
    text = log_of(result)
    assert result["outputTail"][-1] == "done", text
    assert "4242" not in text
    worktree = Path(result["worktreePath"]).resolve()
    # only the path down to the lane's own worktree exists in the tmpfs
    top = worktree.relative_to(state).parts[0] if worktree.is_relative_to(state) else None
    assert result["outputTail"][-5:-1] == [
        f"state: {top + ' ' if top else ''}",
        "no-other-run",
        "no-other-lane",
        "run.json files: 0",
    ], text


def test_no_capabilities_and_no_new_privileges(spine: Spine, repo: Path, on: str) -> None:
    result = lane(spine, repo, "grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status")
    assert result["status"] == "succeeded", log_of(result)
    rows = dict(line.split(":\t") for line in result["outputTail"])
    assert rows == {"CapPrm": "0000000000000000", "CapEff": "0000000000000000", "NoNewPrivs": "1"}


def host_address() -> str:
    """An address of this machine that a container can reach (not loopback: that is the container's own)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent; this only picks the outgoing address
        address: str = probe.getsockname()[0]
    except OSError:
        address = subprocess.run(
            ["hostname", "-I"], capture_output=True, text=True, check=False
        ).stdout.split()[0]
    finally:
        probe.close()
    return address


@pytest.fixture
def listener() -> Iterator[tuple[str, int, list[bytes]]]:
    """A TCP listener on this machine's address that records what connects to it, and answers."""
    address = host_address()
    server = socket.socket()
    server.bind((address, 0))
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
                conn.settimeout(5)
                got.append(conn.recv(100))
                conn.sendall(b"ok\n")  # the lane waits for this: its data arrived before it ends

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield address, server.getsockname()[1], got
    stop.set()
    thread.join(2)
    server.close()


def test_no_network_unless_allowed(
    spine: Spine, repo: Path, on: str, listener: tuple[str, int, list[bytes]]
) -> None:
    """A lane connects to this machine, sends a line and waits for the answer; only with --network.

    The lane waits for the answer because Podman's user-mode network ends with the container: a
    line sent just before the command exits may never leave it.
    """
    address, port, got = listener
    connect = (
        f"if {{ exec 3<>/dev/tcp/{address}/{port}; }} 2>/dev/null; "
        'then echo hello >&3; read -r -t 10 reply <&3; echo "connected $reply"; else echo refused; fi'
    )
    script = f"bash -c '{connect}'"
    blocked = lane(spine, repo, script)
    assert blocked["outputTail"][-1] == "refused" and got == []
    allowed = lane(spine, repo, script, "--network")
    assert allowed["outputTail"][-1] == "connected ok", log_of(allowed)
    assert got == [b"hello\n"]


def test_only_declared_variables_pass_and_secrets_stay_out_of_log_and_result(
    spine: Spine, repo: Path, on: str
) -> None:
    env = {
        "DEPLOY_PASSWORD": "pass-from-shell-42",
        "GITHUB_TOKEN": "ghp_notpassedthrough99",
        "PLAIN": "visible",
    }
    script = (
        'echo "pw=$DEPLOY_PASSWORD gh=${GITHUB_TOKEN-unset} plain=${PLAIN-unset} key=$MY_API_KEY"; exit 3'
    )
    result = lane(
        spine, repo, script, "--pass-env", "DEPLOY_PASSWORD", "--env", "MY_API_KEY=key-on-cli-77", env=env
    )
    assert result["status"] == "failed" and result["exitCode"] == 3
    assert result["outputTail"][-1] == "pw=[REDACTED] gh=unset plain=unset key=[REDACTED]"
    everything = log_of(result) + Path(result["logPath"]).with_name("result.json").read_text()
    for secret in ("pass-from-shell-42", "ghp_notpassedthrough99", "key-on-cli-77"):
        assert secret not in everything


def test_timeout_kills_the_whole_container(spine: Spine, repo: Path, on: str) -> None:
    script = "(sleep 1; echo late > late.txt) & sh -c 'sleep 1; echo later > later.txt' & sleep 30"
    result = lane(spine, repo, script, "--timeout", "0.5", "--keep-worktree")
    assert result["status"] == "failed" and result["timedOut"]
    time.sleep(1.5)
    worktree = Path(result["worktreePath"])
    assert not (worktree / "late.txt").exists() and not (worktree / "later.txt").exists()
    client = engines.backend(on).connect()
    try:  # the container is gone, not just stopped
        assert client.api.containers(all=True, filters={"label": f"spine.run={result['runId']}"}) == []
    finally:
        client.close()


# --- a missing image is found before anything exists -----------------------------------------------


def test_missing_image_fails_before_anything_exists(spine: Spine, repo: Path, engine: str) -> None:
    (repo / ".spine.yaml").write_text(engines.spine_yaml(engine, image="spine-test/nosuch:missing"))
    proc = spine("run", "--backend", "docker", "try", "--", "true", cwd=repo)
    assert proc.returncode == 3, proc.stderr
    assert "image 'spine-test/nosuch:missing' is not in the" in proc.stderr
    assert "pull spine-test/nosuch:missing" in proc.stderr and "build one offline" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert git("branch", "--list", "spine/*", cwd=repo) == ""
    assert not (repo / ".git" / "spine" / "worktrees").exists()
    assert not (repo / ".git" / "spine" / "runs").exists()
    listed = spine("backends", "docker", cwd=repo)
    assert listed.returncode == 3 and "build one offline" in listed.stdout
    rows = {r["name"]: r for r in spine.json("backends", "--json", cwd=repo)["backends"]}
    assert rows["docker"]["usable"] is False and "spine-test/nosuch:missing" in rows["docker"]["reason"]
    (repo / ".spine.yaml").write_text(engines.spine_yaml(engine))
    assert spine("backends", "docker", cwd=repo).returncode == 0


def test_image_without_a_shell_still_runs_a_command(engine: str, repo: Path, tmp_path: Path) -> None:
    """The small image (busybox alone) runs the command as given: no shell wrapper, no ENTRYPOINT."""
    backend = engines.backend(engine, image=engines.SMALL_IMAGE)
    worktree = tmp_path / "wt"
    git("worktree", "add", "-q", "--detach", str(worktree), cwd=repo)
    handle = backend.prepare(SandboxSpec(worktree=worktree, run_id="small", lane_id="l"))
    out: list[bytes] = []
    try:
        outcome = backend.exec(
            handle, ["cat", "README.md"], env={}, timeout=30, on_output=lambda s, c: out.append(c)
        )
    finally:
        backend.teardown(handle)
    assert (outcome.exit_code, b"".join(out)) == (0, b"# demo\n")


def test_result_names_the_container(spine: Spine, repo: Path, on: str) -> None:
    result = lane(spine, repo, "true")
    run = json.loads((repo / ".git" / "spine" / "runs" / result["runId"] / "run.json").read_text())
    execute = run["lanes"][result["laneId"]]["facts"]["execute"]
    assert execute["providerRunId"] == result["providerRunId"] and len(result["providerRunId"]) == 12


def test_backend_object_is_reusable_across_lanes(engine: str, repo: Path, tmp_path: Path) -> None:
    """One backend serves many lanes (a batch): each lane has its own client, nothing is shared but the engine facts."""
    backend: DockerSandbox = engines.backend(engine)
    results = []
    for n in range(2):
        worktree = tmp_path / f"wt{n}"
        git("worktree", "add", "-q", "--detach", str(worktree), cwd=repo)
        handle = backend.prepare(SandboxSpec(worktree=worktree, run_id="reuse", lane_id=f"l{n}"))
        try:
            results.append(
                backend.exec(handle, ["sh", "-c", f"echo {n} > n.txt"], env={}, timeout=30).exit_code
            )
        finally:
            backend.teardown(handle)
        assert (worktree / "n.txt").read_text() == f"{n}\n"
    assert results == [0, 0]
