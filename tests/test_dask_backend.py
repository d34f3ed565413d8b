"""The dask backend against real clusters started here: a ``dask scheduler`` and ``dask worker``
processes on loopback, and workers in network namespaces of their own as separate hosts.

Beyond the conformance suite (tests/test_backend_conformance.py): what ``spine backends`` says, a
scheduler that is gone at start, bad settings, a worker killed mid-lane and ``resume --retry``, the
timebox and the lane's lifetime enforced on the worker, a lane bigger than a message, the base sent
once per worker, and idle timeouts that depend on output streaming back while the command runs.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spine.backends.base import SandboxHandle, SandboxSpec
from tests.conftest import Spine, git, write_files
from tests.dask_cluster import DaskCluster, namespaces_reason, require_dask, running_cluster, under_ci


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    with running_cluster(tmp_path_factory.mktemp("dask"), workers=2, threads=8) as started:
        yield started


def _env(address: str, **extra: str) -> dict[str, str]:
    return {"SPINE_DASK_SCHEDULER": address, "DASK_SCHEDULER_ADDRESS": "", **extra}


def _lane(repo: Path, tmp_path: Path, name: str = "lane") -> Path:
    path = tmp_path / name
    git("worktree", "add", "-q", "-b", name, str(path), cwd=repo)
    (repo / ".git" / "spine").mkdir(exist_ok=True)
    return path


def _spec(worktree: Path, repo: Path, **kw: Any) -> SandboxSpec:
    return SandboxSpec(
        worktree=worktree,
        run_id="run",
        lane_id=worktree.name,
        git_dir=repo / ".git",
        state_dir=repo / ".git" / "spine",
        **kw,
    )


def _backend(address: str, **settings: Any) -> Any:
    from spine.adapters.dask import DaskSandbox

    return DaskSandbox({"scheduler": address, **settings})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _processes_with(marker: str) -> list[int]:
    """Pids of live (non-zombie) ``sh`` and ``sleep`` processes whose command line has ``marker``.

    Only those: the spine process that started the lane has the marker in its arguments too.
    """
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ")
            state = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        program = os.path.basename(cmdline.split(b" ", 1)[0])
        if program in (b"sh", b"sleep") and marker.encode() in cmdline and state != b"Z":
            found.append(int(name))
    return found


def _unique_sleep(seconds: int) -> str:
    """A sleep duration no other process has on its command line: a marker for sh and sleep alike."""
    return f"{seconds}.{uuid.uuid4().int % 10**9:09d}"


def _eventually(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


# --- what `spine backends` says --------------------------------------------------------------------


def test_backends_says_the_scheduler_answers_and_how_many_workers(
    spine: Spine, repo: Path, cluster: DaskCluster
) -> None:
    data = spine.json("backends", "--json", "dask", cwd=repo, env=_env(cluster.address))
    [row] = data["backends"]
    assert row["usable"] and row["reason"] is None
    assert (
        f"Dask cluster at {cluster.address}: scheduler answers, 2 workers, 16 threads" in row["description"]
    )
    text = spine("backends", cwd=repo, env=_env(cluster.address))
    assert text.returncode == 0 and "scheduler answers, 2 workers" in text.stdout


def test_scheduler_gone_at_start_fails_before_anything_exists(spine: Spine, repo: Path) -> None:
    address = f"tcp://127.0.0.1:{_closed_port()}"
    (repo / ".spine.yaml").write_text(f"backends:\n  dask:\n    scheduler: {address}\n")
    check = spine("backends", "dask", cwd=repo, env=_env(""))
    assert check.returncode == 3
    assert f"the Dask scheduler at {address} does not answer within 2 s" in check.stdout
    run = spine("run", "--backend", "dask", "try", "--", "true", cwd=repo, env=_env(""))
    assert run.returncode == 3, run.stderr
    assert f"backend 'dask' is not usable here: the Dask scheduler at {address} does not answer" in run.stderr
    assert "Traceback" not in run.stderr
    assert git("branch", "--list", "spine/*", cwd=repo) == ""
    assert not (repo / ".git" / "spine" / "runs").exists()


def test_no_scheduler_named_is_an_environment_error(spine: Spine, repo: Path) -> None:
    require_dask()
    run = spine("run", "--backend", "dask", "try", "--", "true", cwd=repo, env=_env(""))
    assert run.returncode == 3
    assert "no scheduler address: set backends.dask.scheduler" in run.stderr


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("message_bytes: -1", "backends.dask.message_bytes must be a positive number, not -1"),
        ("schedular: tcp://x:1", "unknown setting backends.dask.schedular in .spine.yaml"),
        ("cache_dir: relative/dir", "backends.dask.cache_dir must be an absolute path"),
        ("pool: -2", "backends.dask.pool must be a whole number, 0 or more, not -2"),
    ],
)
def test_bad_settings_are_usage_errors(spine: Spine, repo: Path, yaml: str, message: str) -> None:
    (repo / ".spine.yaml").write_text(f"backends:\n  dask:\n    {yaml}\n")
    run = spine("run", "--backend", "dask", "try", "--", "true", cwd=repo, env=_env(""))
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr


def test_the_address_comes_from_the_setting_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from spine.adapters.dask import _Settings

    monkeypatch.setenv("SPINE_DASK_SCHEDULER", "tcp://spine-var:1")
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://dask-var:2")
    assert _Settings.parse({"scheduler": "tcp://setting:3"}).address() == "tcp://setting:3"
    assert _Settings.parse({}).address() == "tcp://spine-var:1"
    monkeypatch.delenv("SPINE_DASK_SCHEDULER")
    assert _Settings.parse({}).address() == "tcp://dask-var:2"


# --- lanes -------------------------------------------------------------------------------------------


def test_a_lane_runs_on_a_worker_and_is_committed_here(
    spine: Spine, repo: Path, cluster: DaskCluster
) -> None:
    (repo / ".spine.yaml").write_text(f"backends:\n  dask:\n    scheduler: {cluster.address}\n")
    script = "echo hello > hello.txt; mv src/other.txt src/moved.txt; echo on-the-worker; pwd"
    result = spine.json(
        "run", "--json", "--backend", "dask", "greet", "--", "sh", "-c", script, cwd=repo, env=_env("")
    )
    assert result["status"] == "succeeded", result
    assert result["sandboxBackend"] == "dask"
    token, _, worker = result["providerRunId"].partition("@")
    assert worker in cluster.worker_addresses().values()
    assert git("show", f"{result['branch']}:hello.txt", cwd=repo) == "hello"
    assert "rename src/{other.txt => moved.txt}" in git(
        "show", "--summary", "--format=", result["branch"], cwd=repo
    )
    # The command ran in the worker's scratch directory, not in the lane worktree.
    assert result["outputTail"][0] == "on-the-worker"
    assert f"/{token}/work" in result["outputTail"][1]
    log = Path(result["logPath"]).read_text()
    assert f"dask: on worker {worker}" in log
    # Repositories with the same tree share a base: an earlier test's may already be there.
    assert re.search(r"(sent the base|its base) \(4 files", log), log


def test_workers_run_without_spine(cluster: DaskCluster) -> None:
    """The test workers cannot import spine, so every lane above ran on code shipped by value."""
    from distributed import Client

    def try_spine() -> str:  # local: Dask ships it by value
        try:
            importlib.import_module("spine")
        except ImportError:
            return "no spine"
        return "spine importable"

    with Client(cluster.address, set_as_default=False) as client:
        answers = client.run(try_spine)
    assert set(answers.values()) == {"no spine"}


def test_output_streams_while_the_command_runs_so_idle_timeouts_hold(
    repo: Path, tmp_path: Path, cluster: DaskCluster
) -> None:
    backend = _backend(cluster.address)
    worktree = _lane(repo, tmp_path)
    handle = backend.prepare(_spec(worktree, repo))
    lines: list[bytes] = []
    try:
        # Ten lines 0.4 s apart (4 s) outlast a 1.5 s idle limit only if each arrives while the
        # command runs; then the command goes quiet and the idle limit stops it.
        outcome = backend.exec(
            handle,
            ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i; sleep 0.4; done; sleep 30"],
            env={},
            timeout=60,
            idle_timeout=1.5,
            on_output=lambda _s, chunk: lines.append(chunk),
        )
    finally:
        backend.teardown(handle)
    assert outcome.timed_out == "idle"
    assert b"".join(lines).split() == [f"line{i}".encode() for i in range(1, 11)]
    assert len(lines) >= 5  # they came in many events, not at the end


def test_a_chatty_command_arrives_whole_and_in_order(
    repo: Path, tmp_path: Path, cluster: DaskCluster
) -> None:
    backend = _backend(cluster.address)
    handle = backend.prepare(_spec(_lane(repo, tmp_path), repo))
    chunks: list[bytes] = []
    try:
        outcome = backend.exec(
            handle,
            ["sh", "-c", "seq 1 200000; echo done >&2"],
            env={},
            timeout=60,
            on_output=lambda stream, chunk: chunks.append(chunk) if stream == "stdout" else None,
        )
    finally:
        backend.teardown(handle)
    assert outcome.exit_code == 0 and outcome.tail[-1] in ("done", "200000")
    assert b"".join(chunks) == "".join(f"{i}\n" for i in range(1, 200001)).encode()
    assert len(chunks) > 10  # in many pieces: 1.3 MB does not travel as one event


def test_the_timebox_is_enforced_on_the_worker(repo: Path, tmp_path: Path, cluster: DaskCluster) -> None:
    """Without spine's own watchdog (the driver's primitive alone), the worker stops the command."""
    backend = _backend(cluster.address)
    handle = backend.prepare(_spec(_lane(repo, tmp_path), repo))
    marker = _unique_sleep(30)
    try:
        code = handle.data["driver"].run(f"sleep {marker}; echo done", env={}, timeout=1.0, on_output=None)
    finally:
        backend.teardown(handle)
    assert code == 143  # SIGTERM from the worker
    assert _processes_with(marker) == []


def test_a_lane_spine_stops_keeping_alive_is_removed_from_the_worker(
    repo: Path, tmp_path: Path, cluster: DaskCluster
) -> None:
    """The reaper on the worker ends a lane whose lifetime ran out (its spine died): command and copy."""
    backend = _backend(cluster.address, max_lifetime=4)
    handle = backend.prepare(_spec(_lane(repo, tmp_path), repo))
    driver = handle.data["driver"]
    root = Path(driver.root)
    marker = _unique_sleep(60)
    result: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: result.update(
            code=driver.run(f"sleep {marker}; echo done", env={}, timeout=None, on_output=None)
        )
    )
    runner.start()
    try:
        assert _eventually(lambda: _processes_with(marker)), "the command never started"
        runner.join(30)
        assert result.get("code") == 137  # SIGKILL from the reaper, no keepalive came
        assert _eventually(lambda: not root.exists()), "the lane's copy is still on the worker"
        assert _processes_with(marker) == []
    finally:
        backend.teardown(handle)


def test_a_lane_bigger_than_a_message(repo: Path, tmp_path: Path, cluster: DaskCluster) -> None:
    limit = 64 * 1024
    (repo / "big-base.bin").write_bytes(os.urandom(300_000))
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "a big tracked file", cwd=repo)
    worktree = _lane(repo, tmp_path)
    own = os.urandom(200_000)
    (worktree / "own-untracked.bin").write_bytes(own)
    backend = _backend(cluster.address, message_bytes=limit)
    handle = backend.prepare(_spec(worktree, repo))
    try:
        script = (
            "cmp big-base.bin big-base.bin && cat own-untracked.bin > seen.bin && "
            "head -c 500000 /dev/urandom > made.bin && rm big-base.bin"
        )
        outcome = backend.exec(handle, ["sh", "-c", script], env={}, timeout=60)
        assert outcome.exit_code == 0, outcome.tail
        backend.collect(handle)
    finally:
        backend.teardown(handle)
    driver = handle.data["driver"]
    assert (worktree / "seen.bin").read_bytes() == own  # the delta arrived whole
    assert (worktree / "made.bin").stat().st_size == 500_000  # the patch came back whole
    assert not (worktree / "big-base.bin").exists()
    assert handle.data["patch_bytes"] > 500_000 + 200_000  # made.bin and seen.bin, base85 in a patch
    assert driver.largest_message <= limit
    assert driver.messages >= (300_000 + 200_000 + handle.data["patch_bytes"]) // limit


def test_the_base_goes_once_to_each_worker_and_each_lane_sends_only_its_own_files(
    repo: Path, tmp_path: Path, cluster: DaskCluster
) -> None:
    write_files(repo, {f"pkg/mod{i:03d}.txt": f"module {i}\n" * 200 for i in range(100)})
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "a hundred modules", cwd=repo)
    backend = _backend(cluster.address)
    lanes = [_lane(repo, tmp_path, f"lane{i}") for i in range(8)]
    for i, worktree in enumerate(lanes):
        (worktree / f"own{i}.txt").write_text(f"lane {i}\n")
    handles: list[SandboxHandle] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def prepare(worktree: Path) -> None:
        try:
            handle = backend.prepare(_spec(worktree, repo))
        except BaseException as exc:
            errors.append(exc)
            return
        with lock:
            handles.append(handle)

    threads = [threading.Thread(target=prepare, args=(w,)) for w in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    try:
        assert not errors, errors
        for handle in handles:
            outcome = backend.exec(handle, ["sh", "-c", "cat own*.txt > seen.txt"], env={}, timeout=30)
            assert outcome.exit_code == 0
            backend.collect(handle)
    finally:
        for handle in handles:
            backend.teardown(handle)
    workers = {h.data["worker"] for h in handles}
    assert len(workers) == 2  # lanes spread over both workers
    shipped = [h for h in handles if h.data["base_sent_bytes"]]
    assert sorted(h.data["worker"] for h in shipped) == sorted(workers)  # once per worker
    base_bytes = shipped[0].data["base_sent_bytes"]
    assert base_bytes > 100 * 200 * len("module 0\n")
    for i, handle in enumerate(sorted(handles, key=lambda h: h.worktree.name)):
        assert handle.data["delta_files"] == 1
        assert handle.data["delta_bytes"] < base_bytes / 10
        assert (handle.worktree / "seen.txt").read_text() == f"lane {i}\n"
    # A later lane of the same base finds it on its worker: nothing but its delta travels.
    late = backend.prepare(_spec(_lane(repo, tmp_path, "late"), repo))
    backend.teardown(late)
    assert late.data["base_sent_bytes"] == 0 and "was already there" in late.notices[-1]


def test_lane_data_through_the_scheduler_when_workers_are_out_of_reach(
    repo: Path, tmp_path: Path, cluster: DaskCluster
) -> None:
    """``direct: false``: for clusters where spine reaches only the scheduler."""
    worktree = _lane(repo, tmp_path)
    (worktree / "own.txt").write_text("mine\n")
    backend = _backend(cluster.address, direct=False)
    handle = backend.prepare(_spec(worktree, repo))
    try:
        outcome = backend.exec(handle, ["sh", "-c", "cat own.txt > copied.txt"], env={}, timeout=30)
        backend.collect(handle)
    finally:
        backend.teardown(handle)
    assert outcome.exit_code == 0
    assert (worktree / "copied.txt").read_text() == "mine\n"
    assert handle.data["driver"].client.direct_to_workers is False


def test_a_finished_lanes_copy_is_reused_and_comes_back_as_the_base(
    repo: Path, tmp_path: Path, cluster: DaskCluster
) -> None:
    """A later lane of the same base on the same worker gets a pooled copy: nothing the earlier
    command left survives (files, ignored files, changes, deletions, branches, hooks, config)."""
    (repo / "unique.txt").write_text(uuid.uuid4().hex)  # a base of its own, on one worker
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "a base of its own", cwd=repo)
    backend = _backend(cluster.address)
    mess = (
        "echo junk > junk.txt; echo built > build.tmp; echo changed > README.md; rm src/other.txt; "
        "mkdir -p deep/dir && echo x > deep/dir/x; git branch left-behind; git config core.editor vi; "
        "mkdir -p .git/hooks && printf '#!/bin/sh\necho hooked\n' > .git/hooks/post-commit; "
        "chmod +x .git/hooks/post-commit; git add -A; git commit -qm 'made by the command'"
    )
    first = backend.prepare(_spec(_lane(repo, tmp_path, "first"), repo))
    try:
        assert backend.exec(first, ["sh", "-c", mess], env={}, timeout=30).exit_code == 0
        backend.collect(first)
    finally:
        backend.teardown(first)
    second_tree = _lane(repo, tmp_path, "second")
    (second_tree / "own.txt").write_text("mine\n")
    second = backend.prepare(_spec(second_tree, repo))
    look = (
        "ls -A | sort | tr '\\n' ' '; echo; cat README.md; git status --porcelain | wc -l; "
        "git branch | wc -l; git log --oneline | wc -l; ls .git/hooks 2>/dev/null | wc -l; "
        "git config core.editor || echo no-editor; git commit -q --allow-empty -m probe; echo committed"
    )
    try:
        outcome = backend.exec(second, ["sh", "-c", look], env={}, timeout=30)
        backend.collect(second)
    finally:
        backend.teardown(second)
    assert second.data["worker"] == first.data["worker"]
    assert (first.data["copy_reused"], second.data["copy_reused"]) == (False, True)
    assert "its copy reused a finished lane" in second.notices[-1]
    assert outcome.tail == [
        ".git .gitignore README.md own.txt src unique.txt ",
        "# demo",
        "0",  # clean: own.txt is in the baseline
        "1",  # one branch
        "1",  # one commit: the baseline
        "0",  # no hooks
        "no-editor",
        "committed",  # and no post-commit hook ran
    ], outcome.tail
    assert (second_tree / "src" / "other.txt").exists()


def test_pool_zero_keeps_no_copies(repo: Path, tmp_path: Path, cluster: DaskCluster) -> None:
    (repo / "unique.txt").write_text(uuid.uuid4().hex)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "a base of its own", cwd=repo)
    backend = _backend(cluster.address, pool=0)
    handles = []
    for name in ("first", "second"):
        handle = backend.prepare(_spec(_lane(repo, tmp_path, name), repo))
        backend.teardown(handle)
        handles.append(handle)
    assert [h.data["copy_reused"] for h in handles] == [False, False]


def test_a_lane_that_changed_files_of_its_base_sends_them_and_deletions(
    repo: Path, tmp_path: Path, cluster: DaskCluster
) -> None:
    worktree = _lane(repo, tmp_path)
    (worktree / "README.md").write_text("# changed before the command\n")
    (worktree / "src" / "other.txt").unlink()
    backend = _backend(cluster.address)
    handle = backend.prepare(_spec(worktree, repo))
    try:
        outcome = backend.exec(
            handle, ["sh", "-c", "cat README.md; test -e src/other.txt || echo no-other"], env={}, timeout=30
        )
        backend.collect(handle)
    finally:
        backend.teardown(handle)
    assert outcome.tail == ["# changed before the command", "no-other"]
    assert handle.data["delta_files"] == 1
    assert "1 own files, 1 deletions" in handle.notices[-1]


# --- a worker that dies -----------------------------------------------------------------------------


def test_a_worker_killed_mid_lane_fails_the_lane_and_retry_runs_it_again(
    spine: Spine, repo: Path, tmp_path: Path
) -> None:
    with running_cluster(tmp_path / "doomed", workers=1, threads=4) as doomed:
        env = _env(doomed.address)
        marker = _unique_sleep(30)
        once = tmp_path / "ran-once"  # the retry does not wait again
        script = (
            f"echo started; [ -e {once} ] || {{ touch {once}; sleep {marker}; }}; echo finished > slow.txt"
        )
        proc = spine_background(
            spine, repo, env, "run", "--json", "--backend", "dask", "slow", "--", "sh", "-c", script
        )
        assert _eventually(lambda: _processes_with(marker)), "the lane's command never started"
        doomed.kill_worker("w0")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 3, err  # the environment failed: exit 3
        result = json.loads(out)["data"]
        assert result["status"] == "failed"
        assert re.search(r"worker tcp://\S+ left the cluster while running the command", result["summary"])
        assert f"spine resume {result['runId']} --retry" in result["summary"]
        # The worker's reaper took the command down with the worker.
        assert _eventually(lambda: not _processes_with(marker)), "the command outlived its worker"
        doomed.add_worker("w1")
        doomed.wait_for_workers(1)
        resumed = spine("resume", result["runId"], "--retry", cwd=repo, env=env, timeout=180)
        assert resumed.returncode == 0, resumed.stderr
    assert git("show", f"{result['branch']}:slow.txt", cwd=repo) == "finished"


def test_the_scheduler_gone_mid_lane_fails_the_lane(spine: Spine, repo: Path, tmp_path: Path) -> None:
    with running_cluster(tmp_path / "headless", workers=1, threads=4) as headless:
        marker = _unique_sleep(60)
        script = f"echo started; sleep {marker}; echo never > never.txt"
        env = _env(headless.address)
        proc = spine_background(
            spine, repo, env, "run", "--json", "--backend", "dask", "slow", "--", "sh", "-c", script
        )
        assert _eventually(lambda: _processes_with(marker)), "the lane's command never started"
        assert headless.scheduler is not None
        headless.scheduler.kill()
        headless.scheduler.wait()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err  # the environment failed: exit 3
    result = json.loads(out)["data"]
    assert result["status"] == "failed"
    assert f"lost the scheduler at {headless.address}" in result["summary"]


def spine_background(spine: Spine, repo: Path, env: dict[str, str], *args: str) -> Any:
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "spine", *args],
        cwd=repo,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --- separate hosts -----------------------------------------------------------------------------------


def test_a_batch_across_two_hosts(spine: Spine, repo: Path, tmp_path: Path) -> None:
    """Workers in network namespaces of their own: spine reaches them only over a bridge."""
    require_dask()
    reason = namespaces_reason()
    if reason:
        if under_ci():
            pytest.fail(f"the two-host test must run under CI: {reason}")
        pytest.skip(reason)
    with running_cluster(tmp_path / "hosts", workers=2, threads=4, hosts=True) as hosts:
        lanes = [
            {
                "id": f"l{i}",
                "objective": f"lane {i}",
                "command": ["sh", "-c", f"hostname -I; echo {i} > out{i}.txt"],
            }
            for i in range(6)
        ]
        (tmp_path / "lanes.json").write_text(json.dumps({"lanes": lanes}))
        (repo / ".spine.yaml").write_text(f"backends:\n  dask:\n    scheduler: {hosts.address}\n")
        proc = spine(
            "batch", str(tmp_path / "lanes.json"), "-j", "6", "--backend", "dask", cwd=repo, env=_env("")
        )
        assert proc.returncode == 0, proc.stderr
        workers = hosts.worker_addresses()
    run_id = next(p.name for p in (repo / ".git" / "spine" / "runs").iterdir())
    seen: dict[str, list[str]] = {}
    for i in range(6):
        result = json.loads(
            (repo / ".git" / "spine" / "runs" / run_id / "lanes" / f"l{i}" / "result.json").read_text()
        )
        assert result["status"] == "succeeded", result
        assert git("show", f"{result['branch']}:out{i}.txt", cwd=repo) == str(i)
        worker = result["providerRunId"].partition("@")[2]
        log = Path(result["logPath"]).read_text()
        seen.setdefault(worker, []).append("sent the base" if "sent the base" in log else "had it")
        host_ip = worker.removeprefix("tcp://").rpartition(":")[0]
        assert host_ip in result["outputTail"][0].split()  # the command ran on that host
    assert set(seen) == set(workers.values())
    for worker, kinds in seen.items():
        assert kinds.count("sent the base") == 1, (worker, kinds)


def test_the_base_tarball_is_the_tree_as_checked_out_whichever_lane_makes_it(
    repo: Path, tmp_path: Path
) -> None:
    """A lane that changed, deleted and retargeted base files before its command still makes the
    base of its tree, not of its worktree: those files come from git, the rest from the worktree."""
    import tarfile

    from spine.adapters.dask import _base_tar, snapshot

    (repo / "unique.txt").write_text(uuid.uuid4().hex)  # a tree no other test made a base of
    (repo / "link").symlink_to("README.md")
    (repo / "tool.sh").write_text("#!/bin/sh\n")
    (repo / "tool.sh").chmod(0o755)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "more kinds of files", cwd=repo)
    worktree = _lane(repo, tmp_path)
    (worktree / "README.md").write_text("changed by setup\n")
    (worktree / "src" / "other.txt").unlink()
    (worktree / "link").unlink()
    (worktree / "link").symlink_to("elsewhere")
    (worktree / "tool.sh").unlink()
    snap = snapshot(worktree)
    assert snap.key == git("rev-parse", "HEAD^{tree}", cwd=repo)
    assert snap.modified == {"README.md", "src/other.txt", "link", "tool.sh"}
    assert snap.deletions == ("src/other.txt", "tool.sh")
    assert sorted(snap.delta) == ["README.md", "link"]
    handle, size = _base_tar(snap, worktree)
    with tarfile.open(fileobj=io.BytesIO(os.pread(handle.fileno(), size, 0))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == sorted(git("ls-files", cwd=repo).split("\n"))
        for name, member in members.items():
            if member.issym():
                assert (name, member.linkname) == ("link", "README.md")
                continue
            extracted = tar.extractfile(member)
            assert extracted is not None
            assert extracted.read() == (repo / name).read_bytes(), name
        assert members["tool.sh"].mode & 0o100
