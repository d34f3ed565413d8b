"""Fixtures: real git repositories in temporary directories, and a way to run spine as a user would."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from typing import IO, Any

import pytest


def git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run git in ``cwd`` and return stdout; raise on failure."""
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
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
    gitconfig.write_text(
        "[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n"
    )
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
    write_files(
        root, {"README.md": "# demo\n", "src/greet.sh": "#!/bin/sh\necho hello\n", ".gitignore": "*.tmp\n"}
    )
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "initial commit", cwd=root)
    write_files(root, {"src/other.txt": "more\n"})
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "second commit", cwd=root)
    return root


# At a crash point the driver SIGKILLs itself: that must never be this process.
CRASH_VAR = "SPINE_CRASH_AT"


def needs_a_process(env: Mapping[str, str]) -> str | None:
    """Why a call with ``env`` laid over os.environ must run as a subprocess, or None.

    A crash point kills the driving process; a PYTHON* variable that differs from this interpreter's
    acts only when an interpreter starts.
    """
    if CRASH_VAR in env or CRASH_VAR in os.environ:
        return f"{CRASH_VAR} makes the driver SIGKILL itself"
    for name, value in env.items():
        if name.startswith("PYTHON") and os.environ.get(name) != value:
            return f"{name} acts when an interpreter starts"
    return None


class Spine:
    """Runs spine's command line as a user's shell would: in this process by default, fast.

    In process, ``spine.cli.run_cli`` runs in ``cwd`` with ``env`` laid over ``os.environ``, and
    everything is put back afterwards. File descriptors 0, 1 and 2 are pointed at temporary files for
    the call and ``sys.stdin``/``sys.stdout``/``sys.stderr`` are opened on them, so what spine prints,
    what its lane threads write to ``sys.stdout.buffer``, and anything a child process would write to
    an inherited descriptor all land in one stream in the order written, as in a real process.

    ``subprocess=True`` starts ``python -m spine`` instead. Use it where the separate process is the
    point: exit by a signal, start-up, a real pipe on stdin. A call that sets a crash point or a new
    PYTHON* variable runs as a subprocess whatever it asked for (``needs_a_process``).
    """

    def __call__(
        self,
        *args: str,
        cwd: Path,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        input: str | None = None,
        subprocess: bool = False,
    ) -> CompletedProcess[str]:
        overlay = env or {}
        if subprocess or needs_a_process(overlay):
            return _spine_subprocess(list(args), cwd=cwd, env=overlay, timeout=timeout, input=input)
        return _spine_in_process(list(args), cwd=cwd, env=overlay, timeout=timeout, input=input)

    def json(self, *args: str, cwd: Path, expect: int | None = 0, envelope: bool = False, **kw: Any) -> Any:
        """Run a command with --json; check spine's JSON envelope and return its ``data`` (or all of it)."""
        proc = self(*args, cwd=cwd, **kw)
        if expect is not None:
            assert proc.returncode == expect, (
                f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
            )
        document = json.loads(proc.stdout)
        check_envelope(document, proc.returncode, args)
        return document if envelope else document["data"]


def data_of(proc: CompletedProcess[str]) -> Any:
    """The ``data`` of the JSON envelope a ``--json`` call printed, after checking the envelope."""
    document = json.loads(proc.stdout)
    check_envelope(document, proc.returncode, proc.args[3:] if isinstance(proc.args, list) else ())
    return document["data"]


ENVELOPE_KEYS = {"spineJson", "command", "ok", "exitCode", "data", "errors"}


def check_envelope(document: Any, returncode: int, args: tuple[str, ...] | list[str] = ()) -> None:
    """``document`` is spine's JSON envelope (docs/json.md) for a command that exited ``returncode``."""
    assert isinstance(document, dict) and set(document) == ENVELOPE_KEYS, document
    assert document["spineJson"] == 1
    assert document["exitCode"] == returncode and document["ok"] is (returncode == 0), document
    assert isinstance(document["errors"], list)
    if returncode in (0, 1):
        assert document["errors"] == [], document["errors"]
    else:
        assert document["errors"] and all(e["exitCode"] == returncode for e in document["errors"]), document
    from spine.cli import COMMANDS

    named = next((arg for arg in args if arg in COMMANDS), None)
    if named is not None:
        assert document["command"] == named, (document["command"], args)


def _spine_subprocess(
    args: list[str], *, cwd: Path, env: dict[str, str], timeout: float, input: str | None
) -> CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spine", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        check=False,
    )


def _spine_in_process(
    args: list[str], *, cwd: Path, env: dict[str, str], timeout: float, input: str | None
) -> CompletedProcess[str]:
    from spine.cli import run_cli

    argv = [sys.executable, "-m", "spine", *args]
    saved_cwd = os.getcwd()
    saved_env = dict(os.environ)
    deadline = _Deadline(timeout)
    code: int | None = None
    try:
        os.environ.update(env)
        os.chdir(cwd)
        with _standard_streams(input) as streams:
            try:
                with deadline:
                    code = run_cli(args)
            except KeyboardInterrupt:
                if not deadline.fired:
                    raise
    finally:
        os.chdir(saved_cwd)
        _restore_environ(saved_env)
    if deadline.fired:
        # As subprocess.run does; spine was interrupted as by Ctrl-C and has cleaned up its lanes.
        raise subprocess.TimeoutExpired(argv, timeout, output=streams.stdout, stderr=streams.stderr)
    assert code is not None
    return CompletedProcess(argv, code, streams.stdout, streams.stderr)


def _restore_environ(saved: dict[str, str]) -> None:
    for name in [name for name in os.environ if name not in saved]:
        del os.environ[name]
    for name, value in saved.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


@dataclass
class _Output:
    stdout: str = ""
    stderr: str = ""


@contextlib.contextmanager
def _standard_streams(input: str | None) -> Iterator[_Output]:
    """Point fds 0, 1, 2 and sys.stdin/stdout/stderr at temporary files, as a child's pipes would be."""
    output = _Output()
    with contextlib.ExitStack() as files:
        stdin, stdout, stderr = (files.enter_context(tempfile.TemporaryFile()) for _ in range(3))
        stdin.write((input or "").encode())
        stdin.seek(0)
        sys.stdout.flush()
        sys.stderr.flush()
        saved_fds = [os.dup(fd) for fd in (0, 1, 2)]
        saved_streams = (sys.stdin, sys.stdout, sys.stderr)
        for fd, file in enumerate((stdin, stdout, stderr)):
            os.dup2(file.fileno(), fd)
        try:
            # What a Python started with pipes gets: block-buffered stdout, line-buffered stderr.
            sys.stdin = files.enter_context(open(0, encoding="utf-8", closefd=False))
            sys.stdout = files.enter_context(open(1, "w", encoding="utf-8", closefd=False))
            sys.stderr = files.enter_context(
                open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)
            )
            yield output
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdin, sys.stdout, sys.stderr = saved_streams
            for fd, saved in enumerate(saved_fds):
                os.dup2(saved, fd)
                os.close(saved)
            output.stdout, output.stderr = _read_text(stdout), _read_text(stderr)


def _read_text(file: IO[bytes]) -> str:
    """The file's bytes as subprocess.run(text=True) would return them."""
    file.seek(0)
    return file.read().decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


class _Deadline:
    """After ``seconds``, interrupt the main thread as Ctrl-C would; spine then stops its lanes and returns."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self._armed = False

    def _fire(self, signum: int, frame: object) -> None:
        self.fired = True
        raise KeyboardInterrupt

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread() and self.seconds > 0:
            self._previous = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
            self._armed = True

    def __exit__(self, *exc: object) -> None:
        if self._armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)
            self._armed = False


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
