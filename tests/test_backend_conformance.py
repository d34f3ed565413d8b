"""One conformance suite for every backend: the same tests, through the Sandbox port.

Runs for real on local-worktree, none, bubblewrap, local-remote (the remote base driven on this
machine) and dask (a real scheduler and two worker processes on loopback, started here); the cloud
adapters run against fakes of their SDKs (tests/fakes) that execute commands locally; docker runs
against real engines: Docker, and Podman through its Docker-compatible socket (tests/engines.py says
which, and skips outside CI when there is none).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from spine.adapters.bubblewrap import Bubblewrap
from spine.adapters.cloudflare_sandbox import CloudflareSandbox
from spine.adapters.e2b import E2BSandbox
from spine.adapters.local_remote import LocalRemote
from spine.adapters.vercel_sandbox import VercelSandbox

from spine.backends.base import Sandbox, SandboxHandle, SandboxSpec
from spine.backends.local import LocalWorktree, NoIsolation
from tests import engines
from tests.conftest import git, skip_unless_bubblewrap, write_files
from tests.dask_cluster import DaskCluster, running_cluster
from tests.fakes import e2b_fake, vercel_fake
from tests.fakes.cloudflare_bridge import FakeBridge


@dataclass
class Case:
    """A backend under test, and what to expect of it."""

    backend: Sandbox
    isolates_env: bool
    remote: bool
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def sees(self, handle: SandboxHandle) -> Path:
        """The local directory the command runs in (the remote copy for remote backends)."""
        if self.remote:
            return Path(handle.data["driver"].root) / "work"
        return handle.worktree


BACKENDS = [
    "local-worktree",
    "none",
    "bubblewrap",
    "local-remote",
    "e2b",
    "vercel-sandbox",
    "cloudflare-sandbox",
    *engines.ENGINES,
    "dask",
]
REMOTE_BACKENDS = ["local-remote", "e2b", "vercel-sandbox", "cloudflare-sandbox", "dask"]


def make_case(name: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    if name == "local-worktree":
        return Case(LocalWorktree(), isolates_env=False, remote=False)
    if name == "none":
        return Case(NoIsolation(), isolates_env=False, remote=False)
    if name == "bubblewrap":
        skip_unless_bubblewrap()
        backend: Any = Bubblewrap()
        return Case(backend, isolates_env=True, remote=False)
    if name == "local-remote":
        (tmp / "remote").mkdir()
        return Case(LocalRemote({"dir": str(tmp / "remote")}), isolates_env=True, remote=True)
    if name == "e2b":
        return Case(E2BSandbox({"root": str(tmp / "sbx")}, sdk=e2b_fake), isolates_env=True, remote=True)  # type: ignore[arg-type]
    if name == "vercel-sandbox":
        return Case(
            VercelSandbox({"root": str(tmp / "sbx")}, sdk=vercel_fake), isolates_env=True, remote=True
        )  # type: ignore[arg-type]
    if name == "cloudflare-sandbox":
        workspace = tmp / "workspace"
        workspace.mkdir()
        bridge = FakeBridge(workspace, key="bridge-key-123456")
        monkeypatch.setenv("SANDBOX_API_KEY", bridge.key)
        backend = CloudflareSandbox({"url": bridge.url, "root": str(workspace / ".spine")})
        return Case(backend, isolates_env=True, remote=True, cleanups=[bridge.close])
    if name in engines.ENGINES:
        return Case(engines.backend(name), isolates_env=True, remote=False)
    raise AssertionError(name)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    with running_cluster(tmp_path_factory.mktemp("dask")) as cluster:
        yield cluster


@pytest.fixture(params=BACKENDS)
def case(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Case]:
    if request.param == "dask":
        cluster = request.getfixturevalue("dask_cluster")
        from spine.adapters.dask import DaskSandbox

        yield Case(DaskSandbox({"scheduler": cluster.address}), isolates_env=True, remote=True)
        return
    made = make_case(request.param, tmp_path, monkeypatch)
    yield made
    for cleanup in made.cleanups:
        cleanup()


@pytest.fixture
def worktree(case: Case, repo: Path, tmp_path: Path) -> Path:
    """A lane worktree of ``repo`` (the checkout itself for in-place backends)."""
    if case.backend.in_place:
        return repo
    path = tmp_path / "lane"
    git("worktree", "add", "-q", "-b", "lane", str(path), cwd=repo)
    return path


def spec_for(worktree: Path, repo: Path, **kw: Any) -> SandboxSpec:
    (repo / ".git" / "spine").mkdir(exist_ok=True)
    return SandboxSpec(
        worktree=worktree,
        run_id="run",
        lane_id="lane",
        env_passthrough=("DECLARED",),
        git_dir=repo / ".git",
        state_dir=repo / ".git" / "spine",
        **kw,
    )


def lane_env(worktree: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "SPINE_WORKTREE": str(worktree),
        "SPINE_LANE_ID": "lane",
        "DECLARED": "declared-value",
        "UNDECLARED": "undeclared-value",
    }


class Output:
    """Collects what a command printed, per stream."""

    def __init__(self) -> None:
        self.streams: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.hooks: list[Callable[[str, bytes], None]] = []
        self.lock = threading.Lock()

    def __call__(self, stream: str, chunk: bytes) -> None:
        with self.lock:
            self.streams[stream] += chunk
        for hook in self.hooks:
            hook(stream, chunk)

    def text(self, stream: str) -> str:
        return self.streams[stream].decode()


def run(
    case: Case, worktree: Path, repo: Path, script: str, out: Output | None = None, **kw: Any
) -> tuple[Any, Output, SandboxHandle]:
    handle = case.backend.prepare(spec_for(worktree, repo))
    out = out or Output()
    try:
        outcome = case.backend.exec(
            handle,
            ["/bin/sh", "-c", script],
            env=lane_env(worktree),
            timeout=kw.pop("timeout", 30),
            on_output=out,
            **kw,
        )
        case.backend.collect(handle)
    finally:
        case.backend.teardown(handle)
    return outcome, out, handle


def test_exit_codes_pass_through(case: Case, worktree: Path, repo: Path) -> None:
    ok, _, _ = run(case, worktree, repo, "exit 0")
    failed, _, _ = run(case, worktree, repo, "exit 7")
    assert (ok.exit_code, ok.timed_out) == (0, None)
    assert (failed.exit_code, failed.timed_out) == (7, None)


def test_environment_and_working_directory(case: Case, worktree: Path, repo: Path) -> None:
    script = (
        'test -f README.md && echo "has-readme"; '
        '[ "$(pwd -P)" = "$(cd "$SPINE_WORKTREE" && pwd -P)" ] && echo "cwd-is-worktree"; '
        'echo "declared=$DECLARED lane=$SPINE_LANE_ID undeclared=${UNDECLARED-unset}"'
    )
    outcome, out, _ = run(case, worktree, repo, script)
    text = out.text("stdout")
    assert outcome.exit_code == 0, out.streams
    assert "has-readme" in text and "cwd-is-worktree" in text
    assert "declared=declared-value lane=lane" in text
    expected = "undeclared=unset" if case.isolates_env else "undeclared=undeclared-value"
    assert expected in text


def test_stdout_and_stderr_stream_live(case: Case, worktree: Path, repo: Path) -> None:
    handle = case.backend.prepare(spec_for(worktree, repo))
    out = Output()
    go = case.sees(handle) / "go.flag"

    def release(stream: str, chunk: bytes) -> None:
        if stream == "stdout" and b"waiting" in chunk:
            go.write_text("go")  # only output that arrives while the command runs can release it

    out.hooks.append(release)
    script = (
        "echo waiting; while [ ! -f go.flag ]; do sleep 0.05; done; rm go.flag; echo released; echo oops >&2"
    )
    try:
        outcome = case.backend.exec(
            handle, ["/bin/sh", "-c", script], env=lane_env(worktree), timeout=20, on_output=out
        )
    finally:
        case.backend.teardown(handle)
    assert (outcome.exit_code, outcome.timed_out) == (0, None), out.streams
    assert out.text("stdout") == "waiting\nreleased\n"
    assert out.text("stderr") == "oops\n"
    assert outcome.tail[-1] in ("oops", "released")


def test_timeout_kills_everything(case: Case, worktree: Path, repo: Path) -> None:
    script = "(sleep 1; echo late > late.txt) & echo started; sleep 30"
    handle = case.backend.prepare(spec_for(worktree, repo))
    try:
        outcome = case.backend.exec(
            handle, ["/bin/sh", "-c", script], env=lane_env(worktree), timeout=0.3, on_output=Output()
        )
        time.sleep(1.5)  # long enough for the background child to write, had it survived
        case.backend.collect(handle)
        assert not (case.sees(handle) / "late.txt").exists()
    finally:
        case.backend.teardown(handle)
    assert outcome.timed_out == "wall"
    assert outcome.exit_code != 0
    assert not (worktree / "late.txt").exists()


def test_cancel_stops_the_command(case: Case, worktree: Path, repo: Path) -> None:
    cancel = threading.Event()
    out = Output()
    out.hooks.append(lambda stream, chunk: cancel.set() if b"started" in chunk else None)
    outcome, _, _ = run(case, worktree, repo, "echo started; sleep 30", out, cancel=cancel, timeout=20)
    assert outcome.canceled and outcome.timed_out is None
    assert "started" in outcome.tail


def test_collect_brings_back_every_kind_of_change(case: Case, worktree: Path, repo: Path) -> None:
    os.chmod(worktree / "src/greet.sh", 0o644)
    script = (
        "mv src/other.txt src/renamed.txt && rm README.md && chmod +x src/greet.sh && "
        "printf '\\000\\001\\002\\377binary' > blob.bin && echo new > added.txt && "
        "echo changed >> .gitignore && mkdir -p deep/er && echo x > deep/er/file.txt"
    )
    outcome, out, _ = run(case, worktree, repo, script)
    assert outcome.exit_code == 0, out.streams
    assert not (worktree / "src/other.txt").exists()
    assert (worktree / "src/renamed.txt").read_text() == "more\n"
    assert not (worktree / "README.md").exists()
    assert (worktree / "src/greet.sh").stat().st_mode & stat.S_IXUSR
    assert (worktree / "blob.bin").read_bytes() == b"\x00\x01\x02\xffbinary"
    assert (worktree / "added.txt").read_text() == "new\n"
    assert (worktree / ".gitignore").read_text() == "*.tmp\nchanged\n"
    assert (worktree / "deep/er/file.txt").read_text() == "x\n"


def test_teardown_twice_is_harmless(case: Case, worktree: Path, repo: Path) -> None:
    handle = case.backend.prepare(spec_for(worktree, repo))
    case.backend.teardown(handle)
    case.backend.teardown(handle)
    assert handle.torn_down


@pytest.mark.parametrize("case", REMOTE_BACKENDS, indirect=True)
def test_remote_copy_holds_tracked_and_unignored_files_only(case: Case, worktree: Path, repo: Path) -> None:
    write_files(worktree, {"notes.txt": "untracked\n", "junk.tmp": "ignored\n"})
    outcome, out, handle = run(
        case,
        worktree,
        repo,
        "cat notes.txt; test -e junk.tmp && echo has-junk || echo no-junk; echo built > out.tmp",
    )
    assert outcome.exit_code == 0
    assert out.text("stdout") == "untracked\nno-junk\n"
    assert (worktree / "junk.tmp").read_text() == "ignored\n"  # untouched locally
    assert not (worktree / "out.tmp").exists()  # ignored remotely, so not brought back
    assert handle.provider_run_id
