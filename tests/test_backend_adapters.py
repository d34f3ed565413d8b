"""What each adapter asks of its provider: timeouts that beat the providers' defaults, network
switches, mounts, credentials kept out of sight; and, when an SDK is installed, that every SDK name
and parameter the adapter uses still exists there. Cloud smoke tests run when credentials are set.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
from pathlib import Path
from typing import Any

import pytest
from spine.adapters.cloudflare_sandbox import CloudflareSandbox
from spine.adapters.e2b import E2BSandbox
from spine.adapters.vercel_sandbox import VercelSandbox

from spine.backends.base import Sandbox, SandboxSpec
from tests.conftest import git
from tests.fakes import e2b_fake, vercel_fake
from tests.fakes.cloudflare_bridge import FakeBridge
from tests.fakes.common import CallLog


@pytest.fixture(autouse=True)
def fresh_call_logs() -> None:
    for fake in (e2b_fake, vercel_fake):
        fake.log.calls.clear()


def lane(repo: Path, tmp_path: Path) -> Path:
    path = tmp_path / "lane"
    git("worktree", "add", "-q", "-b", "lane", str(path), cwd=repo)
    (repo / ".git" / "spine").mkdir(exist_ok=True)
    return path


def drive(
    backend: Sandbox, worktree: Path, repo: Path, *, timeout: float | None, network: bool = False
) -> Any:
    spec = SandboxSpec(
        worktree=worktree,
        run_id="run",
        lane_id="lane",
        network=network,
        env_passthrough=("DECLARED",),
        git_dir=repo / ".git",
        state_dir=repo / ".git" / "spine",
        timeout=timeout,
    )
    handle = backend.prepare(spec)
    try:
        env = {"PATH": os.environ["PATH"], "DECLARED": "1", "E2B_API_KEY": "e2b_secret_key_value"}
        outcome = backend.exec(handle, ["sh", "-c", "echo hi > hi.txt"], env=env, timeout=timeout)
        backend.collect(handle)
    finally:
        backend.teardown(handle)
    assert outcome.exit_code == 0
    assert (worktree / "hi.txt").read_text() == "hi\n"
    return handle


def the_command(log: CallLog, name: str, env_param: str) -> dict[str, Any]:
    """The call that ran the lane's command (the one that carries SPINE_WORKTREE)."""
    calls = [c.kwargs for c in log.named(name) if "SPINE_WORKTREE" in (c.kwargs.get(env_param) or {})]
    assert len(calls) == 1, calls
    return calls[0]


def last(log: CallLog, name: str) -> dict[str, Any]:
    calls = log.named(name)
    assert calls, f"{name} was never called"
    return calls[-1].kwargs


# --- E2B -------------------------------------------------------------------------------------------


def test_e2b_timebox_replaces_the_sdk_defaults(repo: Path, tmp_path: Path) -> None:
    backend = E2BSandbox({"root": str(tmp_path / "sbx")}, sdk=e2b_fake)  # type: ignore[arg-type]
    wt = lane(repo, tmp_path)
    handle = drive(backend, wt, repo, timeout=1800)
    create = last(e2b_fake.log, "Sandbox.create")
    assert create["timeout"] >= 1800  # not the 300 s default lifetime
    assert create["allow_internet_access"] is False
    assert the_command(e2b_fake.log, "Commands.run", "envs")["timeout"] >= 1800  # not the 60 s default
    assert handle.provider_run_id.startswith("fake-e2b-")
    assert handle.provider_run_id not in e2b_fake.live  # killed at teardown


def test_e2b_unbounded_lane_has_no_command_limit_and_may_use_network(repo: Path, tmp_path: Path) -> None:
    backend = E2BSandbox({"root": str(tmp_path / "sbx")}, sdk=e2b_fake)  # type: ignore[arg-type]
    drive(backend, lane(repo, tmp_path), repo, timeout=None, network=True)
    assert the_command(e2b_fake.log, "Commands.run", "envs")["timeout"] == 0  # 0: unlimited in the SDK
    assert last(e2b_fake.log, "Sandbox.create")["allow_internet_access"] is True
    envs = [c.kwargs.get("envs") or {} for c in e2b_fake.log.named("Commands.run")]
    assert all("E2B_API_KEY" not in e for e in envs)  # the credential never enters the sandbox


def test_e2b_needs_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    assert "E2B_API_KEY" in (E2BSandbox(sdk=e2b_fake).unavailable_reason() or "")  # type: ignore[arg-type]
    monkeypatch.setenv("E2B_API_KEY", "k")
    assert E2BSandbox(sdk=e2b_fake).unavailable_reason() is None  # type: ignore[arg-type]


# --- Vercel ----------------------------------------------------------------------------------------


def test_vercel_timebox_and_network_policy(repo: Path, tmp_path: Path) -> None:
    backend = VercelSandbox({"root": str(tmp_path / "sbx")}, sdk=vercel_fake)  # type: ignore[arg-type]
    handle = drive(backend, lane(repo, tmp_path), repo, timeout=1200)
    create = last(vercel_fake.log, "create_sandbox")
    assert create["execution_time_limit"] >= 1200  # not the 5 minute default
    assert create["network_policy"] == vercel_fake.NetworkPolicy.deny_all()
    assert the_command(vercel_fake.log, "SyncSandbox.run_process", "env")["kill_after"] >= 1200
    assert vercel_fake.log.named("SyncSandbox.destroy")
    assert handle.provider_run_id.startswith("fake-vercel-")


def test_vercel_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("VERCEL_OIDC_TOKEN", "VERCEL_TOKEN", "VERCEL_PROJECT_ID", "VERCEL_TEAM_ID"):
        monkeypatch.delenv(var, raising=False)
    backend = VercelSandbox(sdk=vercel_fake)  # type: ignore[arg-type]
    assert "VERCEL_OIDC_TOKEN" in (backend.unavailable_reason() or "")
    monkeypatch.setenv("VERCEL_TOKEN", "t")
    assert "VERCEL_PROJECT_ID" in (backend.unavailable_reason() or "")
    monkeypatch.setenv("VERCEL_OIDC_TOKEN", "oidc")
    assert backend.unavailable_reason() is None


# --- Cloudflare ------------------------------------------------------------------------------------


def test_cloudflare_bridge_protocol(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    bridge = FakeBridge(workspace, key="bridge-key-abcdef")
    try:
        monkeypatch.setenv("SANDBOX_API_KEY", bridge.key)
        backend = CloudflareSandbox({"url": bridge.url, "root": str(workspace / ".spine")})
        handle = drive(backend, lane(repo, tmp_path), repo, timeout=60)
        routes = {c.name for c in bridge.log.calls}
        assert {"POST /sandbox", "POST /sandbox/:id/session", "POST /sandbox/:id/exec"} <= routes
        assert {"PUT /sandbox/:id/file/*", "GET /sandbox/:id/file/*", "DELETE /sandbox/:id"} <= routes
        assert bridge.deleted == [handle.provider_run_id]
        assert any("cannot block network" in n for n in handle.notices)
    finally:
        bridge.close()


def test_cloudflare_wrong_key_is_an_environment_error(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spine.base.errors import EnvironmentProblem

    bridge = FakeBridge(tmp_path, key="right-key-123456")
    try:
        monkeypatch.setenv("SANDBOX_API_KEY", "wrong-key-123456")
        backend = CloudflareSandbox({"url": bridge.url, "root": str(tmp_path / ".spine")})
        with pytest.raises(EnvironmentProblem, match="401"):
            backend.prepare(SandboxSpec(worktree=lane(repo, tmp_path), run_id="r", lane_id="l"))
    finally:
        bridge.close()


def test_cloudflare_needs_url_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANDBOX_WORKER_URL", raising=False)
    monkeypatch.delenv("SANDBOX_API_KEY", raising=False)
    assert "SANDBOX_WORKER_URL" in (CloudflareSandbox().unavailable_reason() or "")
    monkeypatch.setenv("SANDBOX_WORKER_URL", "https://bridge.example.workers.dev")
    assert "SANDBOX_API_KEY" in (CloudflareSandbox().unavailable_reason() or "")


# --- the SDKs as they are today --------------------------------------------------------------------


def _real(module: str, path: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _sdk_or_skip(module: str, extra: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        pytest.skip(
            f"the {module} SDK is not installed (pip install 'git-spine[{extra}]'); its signature check needs it"
        )


def _check(
    log: CallLog, where: dict[str, tuple[str, str]], extra_kwargs: dict[str, set[str]] | None = None
) -> None:
    used = log.used()
    assert used, "the fake recorded no calls; run the adapter first"
    for name, kwargs in used.items():
        assert name in where, f"{name} is used by the adapter but has no real counterpart listed"
        module, path = where[name]
        real = _real(module, path)
        params = inspect.signature(real).parameters
        allowed = set(params) | (extra_kwargs or {}).get(name, set())
        missing = kwargs - allowed
        assert not missing, f"{module}.{path} no longer takes {sorted(missing)}"


def test_e2b_sdk_still_has_what_the_adapter_uses(repo: Path, tmp_path: Path) -> None:
    _sdk_or_skip("e2b", "e2b")
    e2b_fake.log.calls.clear()
    drive(E2BSandbox({"root": str(tmp_path / "sbx")}, sdk=e2b_fake), lane(repo, tmp_path), repo, timeout=30)  # type: ignore[arg-type]
    sync = "e2b.sandbox_sync"
    _check(
        e2b_fake.log,
        {
            "Sandbox.create": ("e2b", "Sandbox.create"),
            "Sandbox.set_timeout": ("e2b", "Sandbox.set_timeout"),
            "Sandbox.kill": ("e2b", "Sandbox.kill"),
            "Commands.run": (f"{sync}.commands.command", "Commands.run"),
            "CommandHandle.wait": (f"{sync}.commands.command_handle", "CommandHandle.wait"),
            "CommandHandle.kill": (f"{sync}.commands.command_handle", "CommandHandle.kill"),
            "Filesystem.write": (f"{sync}.filesystem.filesystem", "Filesystem.write"),
            "Filesystem.read": (f"{sync}.filesystem.filesystem", "Filesystem.read"),
        },
    )
    import e2b

    assert {"exit_code"} <= set(inspect.signature(e2b.CommandExitException).parameters)
    for attr in ("sandbox_id", "files", "commands"):
        assert hasattr(e2b.Sandbox, attr)
    assert "pid" in dir(_real(f"{sync}.commands.command_handle", "CommandHandle"))


def test_vercel_sdk_still_has_what_the_adapter_uses(repo: Path, tmp_path: Path) -> None:
    _sdk_or_skip("vercel.sandbox.sync", "vercel")
    vercel_fake.log.calls.clear()
    drive(
        VercelSandbox({"root": str(tmp_path / "sbx")}, sdk=vercel_fake),
        lane(repo, tmp_path),
        repo,
        timeout=30,
    )  # type: ignore[arg-type]
    sync = "vercel.sandbox.sync"
    _check(
        vercel_fake.log,
        {
            "create_sandbox": (sync, "create_sandbox"),
            "SyncSandbox.run_process": (sync, "SyncSandbox.run_process"),
            "SyncSandbox.extend_execution_time_limit": (sync, "SyncSandbox.extend_execution_time_limit"),
            "SyncSandbox.stop": (sync, "SyncSandbox.stop"),
            "SyncSandbox.destroy": (sync, "SyncSandbox.destroy"),
            "SyncSandboxFilesystem.mkdir": (sync, "SyncSandboxFilesystem.mkdir"),
            "SyncSandboxFilesystem.write_bytes": (sync, "SyncSandboxFilesystem.write_bytes"),
            "SyncSandboxFilesystem.read_bytes": (sync, "SyncSandboxFilesystem.read_bytes"),
            "SyncProcess.kill": (sync, "SyncProcess.kill"),
        },
    )
    sdk = importlib.import_module(sync)
    assert callable(sdk.NetworkPolicy.allow_all) and callable(sdk.NetworkPolicy.deny_all)
    for attr in ("name", "fs"):
        assert hasattr(sdk.SyncSandbox, attr)
    assert hasattr(sdk.SyncProcess, "returncode")


# --- cloud smoke tests: real providers, only with credentials ----------------------------------------


@pytest.mark.parametrize(
    ("backend_cls", "needs"),
    [
        (E2BSandbox, "E2B_API_KEY"),
        (VercelSandbox, "VERCEL_TOKEN or VERCEL_OIDC_TOKEN"),
        (CloudflareSandbox, "SANDBOX_WORKER_URL and SANDBOX_API_KEY"),
    ],
)
def test_cloud_smoke(backend_cls: type[Any], needs: str, repo: Path, tmp_path: Path) -> None:
    backend = backend_cls({})
    reason = backend.unavailable_reason()
    if reason:
        pytest.skip(f"{backend.name} smoke test needs real credentials ({needs}): {reason}")
    drive(backend, lane(repo, tmp_path), repo, timeout=300)
