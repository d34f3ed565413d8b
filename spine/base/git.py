"""The one way spine runs git: a subprocess with a clean environment.

Inside a git hook, git exports ``GIT_DIR``, ``GIT_INDEX_FILE`` and friends; left in place they would
point every git spine runs at the hook's repository and index. ``clean_env`` drops them. See
docs/adr/0002-git-through-subprocess.md for why this is not GitPython.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from spine.base.errors import EnvironmentProblem

# Variables that are safe (and useful) to keep from a hook's environment.
_KEEP_GIT_VARS = frozenset(
    {
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "GIT_CONFIG_NOSYSTEM",
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_SYSTEM",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_ASKPASS",
        "GIT_TERMINAL_PROMPT",
        "GIT_TRACE",
        "GIT_TRACE2",
        "GIT_TRACE2_EVENT",
        "GIT_EXEC_PATH",
    }
)


def clean_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return ``base`` (default: os.environ) without the GIT_* variables a hook exports."""
    source = os.environ if base is None else base
    return {k: v for k, v in source.items() if not k.startswith("GIT_") or k in _KEEP_GIT_VARS}


class GitFailed(EnvironmentProblem):
    """A git command exited non-zero."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit code {returncode}"
        super().__init__(f"git {' '.join(args)} failed: {detail}")
        self.args_ = list(args)
        self.returncode = returncode
        self.stderr = stderr


def git(
    *args: str,
    cwd: Path | str,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    input: str | bytes | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``git ARGS`` in ``cwd`` and return the completed process (text mode).

    Raises ``GitFailed`` on a non-zero exit when ``check`` is true.
    """
    run_env = clean_env()
    if env:
        run_env.update(env)
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=run_env,
            input=input.decode() if isinstance(input, bytes) else input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise EnvironmentProblem(
            "git is not installed or not on PATH", "install git (2.38 or newer) and try again"
        ) from exc
    if check and proc.returncode != 0:
        raise GitFailed(args, proc.returncode, proc.stderr)
    return proc


def git_out(*args: str, cwd: Path | str, env: Mapping[str, str] | None = None) -> str:
    """Run git and return its stdout without the trailing newline."""
    return git(*args, cwd=cwd, env=env).stdout.rstrip("\n")


def git_binary(
    *args: str, cwd: Path | str, input: bytes | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git ARGS`` with bytes in and out (binary patches); the caller checks the exit code."""
    run_env = clean_env()
    if env:
        run_env.update(env)
    try:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=run_env,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise EnvironmentProblem(
            "git is not installed or not on PATH", "install git (2.38 or newer) and try again"
        ) from exc
