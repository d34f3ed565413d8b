"""Fixtures: real git repositories in temporary directories, and a way to run spine as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run git in ``cwd`` and return stdout; raise on failure."""
    proc = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def write_files(root: Path, files: dict[str, str]) -> None:
    """Create ``files`` ({relative path: content}) under ``root``."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


@pytest.fixture(autouse=True)
def isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own HOME and global git config with a pinned identity."""
    home = tmp_path_factory.mktemp("home")
    gitconfig = home / ".gitconfig"
    gitconfig.write_text("[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in list(os.environ):
        if var.startswith("GIT_") and var not in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM"):
            monkeypatch.delenv(var)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return gitconfig


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with two commits on main: a greeting script and a README."""
    root = tmp_path / "repo"
    root.mkdir()
    git("init", "-q", "-b", "main", cwd=root)
    write_files(root, {"README.md": "# demo\n", "src/greet.sh": "#!/bin/sh\necho hello\n", ".gitignore": "*.tmp\n"})
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "initial commit", cwd=root)
    write_files(root, {"src/other.txt": "more\n"})
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "second commit", cwd=root)
    return root


class Spine:
    """Runs ``python -m spine`` as a subprocess, the way a user's shell would."""

    def __call__(
        self, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "spine", *args],
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            check=False,
        )

    def json(self, *args: str, cwd: Path, expect: int | None = 0, **kw: Any) -> Any:
        proc = self(*args, cwd=cwd, **kw)
        if expect is not None:
            assert proc.returncode == expect, f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
        return json.loads(proc.stdout)


@pytest.fixture
def spine() -> Iterator[Spine]:
    yield Spine()


def skip_unless_bubblewrap() -> None:
    """Skip when bubblewrap cannot run here, saying why; under CI (CI=true), fail instead.

    CI installs bubblewrap (.ci/run), so a skip there would hide the sandbox tests never running.
    """
    from spine.adapters.bubblewrap import Bubblewrap

    reason = Bubblewrap().unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"bubblewrap must run under CI but cannot: {reason}")
    pytest.skip(f"bubblewrap cannot run here: {reason}")
