"""The real container engines the docker backend's tests run against, and their test image.

``docker``: the engine at ``DOCKER_HOST`` (or the default socket). ``podman``: the Docker-compatible
socket of ``podman system service`` named by ``SPINE_TEST_PODMAN_HOST``. ``SPINE_TEST_ENGINES``
(default ``docker podman``) says which of them the tests are for. The image is
``SPINE_TEST_DOCKER_IMAGE`` (default ``spine-test/debian:local``, which ``.ci/images`` builds from
this machine's own Debian files: sh, bash, coreutils, git, python3).

Outside CI a test skips, saying why, when its engine or image is missing; under CI (``CI=true``) it
fails, because ``.ci/run`` starts both engines and builds the image.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from spine.adapters.docker import DockerSandbox

# Which engines the tests run on; a pass against one engine alone (rootless Podman, as its user) names it.
ENGINES = os.environ.get("SPINE_TEST_ENGINES", "docker podman").split()
IMAGE = os.environ.get("SPINE_TEST_DOCKER_IMAGE", "spine-test/debian:local")
SMALL_IMAGE = os.environ.get("SPINE_TEST_DOCKER_SMALL_IMAGE", "spine-test/busybox:local")


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def engine_host(engine: str) -> str | None:
    if engine == "docker":
        return os.environ.get("DOCKER_HOST") or None
    if engine == "podman":
        return os.environ.get("SPINE_TEST_PODMAN_HOST") or None
    raise AssertionError(engine)


def settings(engine: str, **more: Any) -> dict[str, Any]:
    """The ``backends.docker`` settings that point the backend at ``engine`` and the test image."""
    out: dict[str, Any] = {"image": IMAGE, **more}
    host = engine_host(engine)
    if host:
        out["host"] = host
    return out


def unavailable(reason: str) -> None:
    if under_ci():
        pytest.fail(f"the docker backend must run against a real engine under CI but cannot: {reason}")
    pytest.skip(f"docker backend tests need a reachable engine and the test image: {reason}")


def backend(engine: str, **more: Any) -> DockerSandbox:
    """A docker backend on ``engine``; skips (fails under CI) when the engine or the image is missing."""
    if engine == "podman" and not engine_host("podman"):
        unavailable("SPINE_TEST_PODMAN_HOST is not set (the socket of `podman system service`)")
    made = DockerSandbox(settings(engine, **more))
    reason = made.unavailable_reason()
    if reason:
        unavailable(
            f"{engine}: {reason} (`.ci/engines up DIR; . DIR/env` starts the engines and builds the images)"
        )
    product = made.engine().product
    expected = "Podman" if engine == "podman" else "Docker"
    if product != expected:
        unavailable(f"{engine}: the engine at {made.where()} is {product}, not {expected}")
    return made


def spine_yaml(engine: str, **more: Any) -> str:
    """A ``.spine.yaml`` that runs lanes on ``engine`` with the test image."""
    lines = ["backend: docker", "backends:", "  docker:"]
    lines += [f"    {key}: {value}" for key, value in settings(engine, **more).items()]
    return "\n".join(lines) + "\n"
