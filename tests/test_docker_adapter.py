"""The docker backend against a scripted engine (tests/fakes/docker_fake.py): what only a fake shows.

Every SDK name and parameter the adapter uses still exists in the installed SDK; the container it
asks for on each kind of engine (Docker, Podman, rootless or not), including kinds this machine may
not run; engine failures turned into clear errors; every client and log stream closed. What the
containers actually do is tested against real engines (tests/test_docker_backend.py and the
conformance suite).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spine.adapters import docker as adapter
from spine.adapters.docker import DockerSandbox

from spine.backends.base import SandboxSpec
from spine.base.errors import EnvironmentProblem
from tests.conftest import git
from tests.fakes import docker_fake
from tests.fakes.docker_fake import Script


@pytest.fixture(autouse=True)
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[docker_fake.Engine]:
    monkeypatch.setenv("DOCKER_HOST", "unix:///fake/docker.sock")
    monkeypatch.setattr(adapter, "ENGINES", {})  # what answers at the fake address changes per test
    made = docker_fake.reset()
    yield made
    assert made.open_clients == 0, "a client was left open"
    assert made.open_streams == 0, "a log stream was left open"
    assert all(c.removed for c in made.containers.values()), "a container was left behind"


def backend(**settings: Any) -> DockerSandbox:
    return DockerSandbox(settings, sdk=docker_fake)  # type: ignore[arg-type]


def lane(repo: Path, tmp_path: Path) -> Path:
    path = tmp_path / "lane"
    git("worktree", "add", "-q", "-b", "lane", str(path), cwd=repo)
    (repo / ".git" / "spine").mkdir(exist_ok=True)
    return path


def spec(worktree: Path, repo: Path, network: bool = False) -> SandboxSpec:
    return SandboxSpec(
        worktree=worktree,
        run_id="run",
        lane_id="lane",
        network=network,
        env_passthrough=("DECLARED",),
        git_dir=repo / ".git",
        state_dir=repo / ".git" / "spine",
    )


def drive(
    made: DockerSandbox, worktree: Path, repo: Path, network: bool = False
) -> tuple[Any, list[tuple[str, bytes]]]:
    got: list[tuple[str, bytes]] = []
    handle = made.prepare(spec(worktree, repo, network))
    try:
        env = {"PATH": "/host/bin", "DECLARED": "1", "SECRET_TOKEN": "not-declared", "SPINE_LANE_ID": "lane"}
        outcome = made.exec(
            handle, ["sh", "-c", "true"], env=env, timeout=60, on_output=lambda s, c: got.append((s, c))
        )
        made.collect(handle)
    finally:
        made.teardown(handle)
    return outcome, got


def created(name: str = "APIClient.create_container") -> dict[str, Any]:
    calls = docker_fake.log.named(name)
    assert calls, f"{name} was never called"
    return calls[-1].kwargs


def host_config() -> dict[str, Any]:
    return created("APIClient.create_host_config")


# --- what the adapter asks of each kind of engine ---------------------------------------------------


def test_container_on_docker(repo: Path, tmp_path: Path) -> None:
    wt = lane(repo, tmp_path)
    outcome, _ = drive(backend(), wt, repo)
    assert outcome.exit_code == 0
    create = created()
    assert create["user"] == f"{os.getuid()}:{os.getgid()}"
    assert create["working_dir"] == str(wt.resolve())
    assert create["entrypoint"] == [""] and create["use_config_proxy"] is False
    # PATH is the image's, not the host's; HOME and TMPDIR are the private tmpfs
    assert create["environment"] == {
        "DECLARED": "1",
        "SPINE_LANE_ID": "lane",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
    }
    assert create["labels"] == {"spine.run": "run", "spine.lane": "lane"}
    host = host_config()
    git_dir = str((repo / ".git").resolve())
    assert host["binds"] == {
        str(wt.resolve()): {"bind": str(wt.resolve()), "mode": "rw"},
        git_dir: {"bind": git_dir, "mode": "ro"},
    }
    assert host["tmpfs"]["/tmp"] == "rw,exec,nosuid,nodev,mode=1777"  # a script or venv in $TMPDIR runs
    assert host["tmpfs"][f"{git_dir}/spine"].startswith("rw,noexec")
    assert (host["network_mode"], host["cap_drop"], host["init"]) == ("none", ["ALL"], True)
    assert host["security_opt"] == ["no-new-privileges"]
    assert "UsernsMode" not in created("APIClient.create_container")["host_config"]
    drive(backend(), wt, repo, network=True)
    assert host_config()["network_mode"] == "bridge"


def test_container_on_rootful_podman(repo: Path, tmp_path: Path) -> None:
    docker_fake.reset(product="Podman", version="4.3.1")
    wt = lane(repo, tmp_path)
    drive(backend(), wt, repo, network=True)
    tmpfs = host_config()["tmpfs"]
    # Podman would copy what lies below a tmpfs into it: spine's state would show through.
    assert all(options.endswith(",notmpcopyup") for options in tmpfs.values()), tmpfs
    # netavark's bridge rewrites the host firewall and ip_forward; user-mode networking does not
    assert host_config()["network_mode"] == "slirp4netns"
    assert created()["user"] == f"{os.getuid()}:{os.getgid()}"
    assert "UsernsMode" not in created()["host_config"]
    drive(backend(network_mode="bridge"), wt, repo, network=True)
    assert host_config()["network_mode"] == "bridge"


def test_container_on_rootless_podman_keeps_your_uid(repo: Path, tmp_path: Path) -> None:
    docker_fake.reset(product="Podman", rootless=True)
    drive(backend(), lane(repo, tmp_path), repo)
    # keep-id: your uid inside is your uid outside, so the lane can write its worktree
    assert created()["host_config"]["UsernsMode"] == "keep-id"
    assert created()["user"] == f"{os.getuid()}:{os.getgid()}"


def test_container_on_rootless_docker_runs_as_its_root(repo: Path, tmp_path: Path) -> None:
    docker_fake.reset(rootless=True)
    drive(backend(), lane(repo, tmp_path), repo)
    assert created()["user"] == "0:0"  # the only container uid that is you on the host
    assert "UsernsMode" not in created()["host_config"]


def test_output_of_both_streams_and_the_true_exit_code(
    repo: Path, tmp_path: Path, engine: docker_fake.Engine
) -> None:
    engine.next = Script(stdout=[b"one\n", b"two\n"], stderr=[b"oops\n"], exit_code=7)
    outcome, got = drive(backend(), lane(repo, tmp_path), repo)
    assert outcome.exit_code == 7
    assert [c for s, c in got if s == "stdout"] == [b"one\n", b"two\n"]
    assert [c for s, c in got if s == "stderr"] == [b"oops\n"]
    assert sorted(outcome.tail) == ["one", "oops", "two"]
    # attached to before the start (an attachment after it misses what came first), the log never read
    names = [c.name for c in docker_fake.log.calls]
    assert names.index("APIClient.attach_socket") < names.index("APIClient.start")
    assert docker_fake.log.named("APIClient.attach_socket")[-1].kwargs["params"] == {
        "stdout": 1,
        "stderr": 1,
        "stream": 1,
        "logs": 0,
    }
    assert "APIClient.logs" not in names
    assert host_config()["log_config"] == {"type": "none", "config": {}}


def test_a_wait_without_the_real_status_asks_the_container(
    repo: Path, tmp_path: Path, engine: docker_fake.Engine
) -> None:
    engine.next = Script(exit_code=7, wait_status=-1)  # what Podman's wait answered under the attach race
    outcome, _ = drive(backend(), lane(repo, tmp_path), repo)
    assert outcome.exit_code == 7
    assert docker_fake.log.named("APIClient.inspect_container")


# --- usable or not, and why ---------------------------------------------------------------------------


def test_usable_when_the_engine_answers_and_has_the_image() -> None:
    assert backend().unavailable_reason() is None
    assert backend(image="spine-test/other:1").unavailable_reason() is not None


@pytest.mark.parametrize(("product", "pull"), [("Docker", "docker pull"), ("Podman", "podman pull")])
def test_missing_image_says_how_to_get_one(product: str, pull: str) -> None:
    docker_fake.reset(product=product)
    reason = backend(image="spine-test/nosuch:1").unavailable_reason() or ""
    assert "image 'spine-test/nosuch:1' is not in the" in reason
    assert f"`{pull} spine-test/nosuch:1`" in reason and "build one offline" in reason
    assert "docs/backends.md" in reason and "backends.docker.image" in reason
    assert not docker_fake.log.named("APIClient.create_container")


def test_no_engine(monkeypatch: pytest.MonkeyPatch, engine: docker_fake.Engine) -> None:
    engine.reachable = False
    reason = backend().unavailable_reason() or ""
    assert "no container engine answers at unix:///fake/docker.sock" in reason and "DOCKER_HOST" in reason
    monkeypatch.delenv("DOCKER_HOST")
    monkeypatch.setattr(adapter, "DEFAULT_SOCKET", "/nonexistent/docker.sock")
    reason = backend().unavailable_reason() or ""
    assert "/nonexistent/docker.sock does not exist and DOCKER_HOST is not set" in reason


def test_host_setting_wins_over_docker_host() -> None:
    made = backend(host="unix:///run/podman/podman.sock")
    assert made.where() == "unix:///run/podman/podman.sock"
    assert made.unavailable_reason() is None
    environment = docker_fake.log.named("from_env")[-1].kwargs["environment"]
    assert environment["DOCKER_HOST"] == "unix:///run/podman/podman.sock"


def test_sdk_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert "pip install 'git-spine[docker]'" in (DockerSandbox().unavailable_reason() or "")


# --- engine failures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "fix"),
    [
        (
            Script(start_error="runc create failed: error setting rlimit type 7: operation not permitted"),
            "default_ulimits",
        ),
        (
            Script(
                create_error="container-init binary not found on the host: stat /usr/libexec/podman/catatonit"
            ),
            "catatonit",
        ),
    ],
)
def test_engine_that_cannot_run_the_container_is_an_environment_problem(
    repo: Path, tmp_path: Path, engine: docker_fake.Engine, script: Script, fix: str
) -> None:
    engine.next = script
    made = backend()
    handle = made.prepare(spec(lane(repo, tmp_path), repo))
    try:
        with pytest.raises(EnvironmentProblem) as raised:
            made.exec(handle, ["true"], env={}, timeout=10)
    finally:
        made.teardown(handle)
    assert "docker: cannot" in raised.value.message and fix in (raised.value.hint or "")
    assert fix in raised.value.message  # a lane records only the message


def test_image_removed_after_the_check_is_an_environment_problem(
    repo: Path, tmp_path: Path, engine: docker_fake.Engine
) -> None:
    made = backend()
    handle = made.prepare(spec(lane(repo, tmp_path), repo))
    engine.images.clear()
    try:
        with pytest.raises(EnvironmentProblem, match="image 'debian:bookworm-slim' is not in the engine"):
            made.exec(handle, ["true"], env={}, timeout=10)
    finally:
        made.teardown(handle)


# --- the SDK as it is today ------------------------------------------------------------------------


def _real(module: str, path: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def test_docker_sdk_still_has_what_the_adapter_uses(
    repo: Path, tmp_path: Path, engine: docker_fake.Engine
) -> None:
    if importlib.util.find_spec("docker") is None:
        pytest.skip(
            "the docker SDK is not installed (pip install 'git-spine[docker]'); its signature check needs it"
        )
    import docker

    made = backend()
    assert made.unavailable_reason() is None
    engine.next = Script(exit_code=7, wait_status=-1)
    drive(made, lane(repo, tmp_path), repo)
    where = {
        "from_env": ("docker", "APIClient.__init__"),  # from_env(**kwargs) hands them on, but for:
        "DockerClient.version": ("docker", "APIClient.version"),  # it passes its arguments on
        "DockerClient.info": ("docker", "DockerClient.info"),
        "DockerClient.close": ("docker", "DockerClient.close"),
        "APIClient.inspect_image": ("docker", "APIClient.inspect_image"),
        "APIClient.create_host_config": ("docker.types", "HostConfig.__init__"),  # it passes **kwargs on
        "APIClient.create_container": ("docker", "APIClient.create_container"),
        "APIClient.start": ("docker", "APIClient.start"),
        "APIClient.attach_socket": ("docker", "APIClient.attach_socket"),
        "APIClient.wait": ("docker", "APIClient.wait"),
        "APIClient.inspect_container": ("docker", "APIClient.inspect_container"),
        "APIClient.kill": ("docker", "APIClient.kill"),
        "APIClient.remove_container": ("docker", "APIClient.remove_container"),
    }
    used = docker_fake.log.used()
    for name, kwargs in used.items():
        assert name in where, f"{name} is used by the adapter but has no real counterpart listed"
        params = set(inspect.signature(_real(*where[name])).parameters)
        if name == "from_env":
            params |= set(inspect.signature(docker.utils.kwargs_from_env).parameters)
        assert not kwargs - params, f"{where[name]} no longer takes {sorted(kwargs - params)}"
    assert {"APIClient.create_container", "APIClient.attach_socket", "APIClient.wait"} <= set(used)
    assert "APIClient.inspect_container" in used
    assert issubclass(docker.errors.ImageNotFound, docker.errors.APIError)
    # The SDK's host config is a dict, so keep-id can be set on it; the SDK itself refuses that value.
    assert issubclass(docker.types.HostConfig, dict)
    with pytest.raises(ValueError, match="userns_mode"):
        docker.types.HostConfig(version="1.41", userns_mode="keep-id")
    # attach_socket hands back the connection itself, with the response it came from to close.
    assert "_get_raw_response_socket(" in inspect.getsource(docker.APIClient.attach_socket)
    assert "sock._response = response" in inspect.getsource(docker.APIClient._get_raw_response_socket)


# --- an output stream that does not end as it should ---------------------------------------------------


def test_a_complete_stream_is_delivered_once_with_no_note(
    repo: Path, tmp_path: Path, engine: docker_fake.Engine
) -> None:
    engine.next = Script(stdout=[b"o1\n", b"o2\n"], stderr=[b"e1\n", b"e2\n"])
    outcome, got = drive(backend(), lane(repo, tmp_path), repo)
    assert b"".join(c for s, c in got if s == "stdout") == b"o1\no2\n"
    assert b"".join(c for s, c in got if s == "stderr") == b"e1\ne2\n"
    assert sorted(outcome.tail) == ["e1", "e2", "o1", "o2"]


@pytest.mark.parametrize(
    ("script", "note"),
    [
        (Script(stdout=[b"o1\n", b"o2\n"], never_ends=True), "did not end the container's output stream"),
        (
            Script(stdout=[b"o1\n", b"o2\n"], cut_after=16),
            "output stream broke (ConnectionError: the engine ended",
        ),
        (Script(stdout=[b"o1\n", b"o2\n"], reset_after=11), "output stream broke (ConnectionResetError"),
    ],
    ids=["never-ends", "cut-in-a-frame", "reset"],
)
def test_a_stream_that_is_not_whole_says_so(
    repo: Path,
    tmp_path: Path,
    engine: docker_fake.Engine,
    monkeypatch: pytest.MonkeyPatch,
    script: Script,
    note: str,
) -> None:
    """Output the engine did not pass on cannot be got back; the lane's log and tail say it may be missing."""
    monkeypatch.setattr(adapter, "OUTPUT_GRACE", 0.3)
    engine.next = script
    outcome, got = drive(backend(), lane(repo, tmp_path), repo)
    assert outcome.exit_code == 0
    assert got[0] == ("stdout", b"o1\n")  # what came before the break is passed on
    said = b"".join(c for s, c in got if s == "stderr").decode()
    assert note in said and "output may be missing" in said, said
    assert any("output may be missing" in line for line in outcome.tail)


def test_an_engine_that_cannot_attach_is_an_environment_problem(
    repo: Path, tmp_path: Path, engine: docker_fake.Engine
) -> None:
    engine.next = Script(
        attach_error="409 Client Error: Conflict (can only attach to created or running containers)"
    )
    made = backend()
    handle = made.prepare(spec(lane(repo, tmp_path), repo))
    try:
        with pytest.raises(EnvironmentProblem, match="docker: cannot attach to the container at"):
            made.exec(handle, ["true"], env={}, timeout=10)
    finally:
        made.teardown(handle)
    assert not docker_fake.log.named("APIClient.start")


def test_output_is_passed_on_in_whole_lines_per_stream(
    repo: Path, tmp_path: Path, engine: docker_fake.Engine
) -> None:
    """The engine passes on the pieces of a line written in parts; a piece must not merge with the other stream."""
    engine.next = Script(
        stdout=[b"done\n", b"no newline"], stderr=[b"touch: ", b"cannot touch 'x'\n", b"par", b"tial"]
    )
    outcome, got = drive(backend(), lane(repo, tmp_path), repo)
    assert [c for s, c in got if s == "stderr"] == [b"touch: cannot touch 'x'\n", b"partial"]
    assert [c for s, c in got if s == "stdout"] == [b"done\n", b"no newline"]
    assert sorted(outcome.tail) == ["done", "no newline", "partial", "touch: cannot touch 'x'"]


def test_a_line_longer_than_the_limit_is_passed_on_in_pieces(
    repo: Path, tmp_path: Path, engine: docker_fake.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapter, "LINE_LIMIT", 8)
    engine.next = Script(stdout=[b"0123456789", b"abc\n"])
    _, got = drive(backend(), lane(repo, tmp_path), repo)
    assert [c for s, c in got if s == "stdout"] == [b"0123456789", b"abc\n"]
