"""The one way spine runs git: a subprocess with a clean environment.

Inside a git hook, git exports ``GIT_DIR``, ``GIT_INDEX_FILE`` and friends; left in place they would
point every git spine runs at the hook's repository and index. ``clean_env`` drops them. See
docs/adr/0002-git-through-subprocess.md for why this is not GitPython.

A failure keeps all of git's error text (``GitFailed.stderr``); its message quotes the lines that
say what went wrong (``fatal:``/``error:`` and what follows them), not only the last one, which is
often a consequence ("the remote end hung up") rather than the cause ("git-lfs: not found").
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

# How much of git's error text a message quotes; the whole text stays on the exception.
_MESSAGE_LINES = 6


def clean_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return ``base`` (default: os.environ) without the GIT_* variables a hook exports."""
    source = os.environ if base is None else base
    return {k: v for k, v in source.items() if not k.startswith("GIT_") or k in _KEEP_GIT_VARS}


def error_lines(text: str) -> list[str]:
    """The lines of git's error output that say what went wrong.

    Lines from the first ``fatal:``/``error:`` on, plus any earlier line naming a program that is
    missing (``git-lfs: not found``); all non-empty lines when git printed neither kind.
    """
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    first = next((i for i, line in enumerate(lines) if line.startswith(("fatal:", "error:"))), None)
    if first is None:
        return lines
    earlier = [line for line in lines[:first] if "not found" in line or "No such file" in line]
    return earlier + lines[first:]


class GitFailed(EnvironmentProblem):
    """A git command exited non-zero; ``stderr`` holds everything git printed there."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        shown = error_lines(stderr)
        if len(shown) > _MESSAGE_LINES:
            shown = [*shown[: _MESSAGE_LINES - 1], f"... ({len(shown) - _MESSAGE_LINES + 1} more lines)"]
        detail = " / ".join(shown) if shown else f"exit code {returncode}"
        super().__init__(f"git {' '.join(_shown_args(args))} failed: {detail}")
        self.args_ = list(args)
        self.returncode = returncode
        self.stderr = stderr


def _shown_args(args: Sequence[str]) -> list[str]:
    """The arguments worth showing: the subcommand and what follows, not spine's safety options."""
    shown = list(args)
    while shown and (shown[0].startswith("--git-dir=") or shown[0].startswith("--work-tree=")):
        shown.pop(0)
    while len(shown) >= 2 and shown[0] == "-c":
        shown = shown[2:]
    return shown


def _start_failed(exc: OSError, cwd: Path | str) -> EnvironmentProblem:
    if not Path(cwd).is_dir():
        return EnvironmentProblem(
            f"cannot run git in {cwd}: the directory does not exist (any more)",
            "something removed it while spine was using it",
        )
    return EnvironmentProblem(
        "git is not installed or not on PATH", "install git (2.38 or newer) and try again"
    )


def git(
    *args: str,
    cwd: Path | str,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    input: str | bytes | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``git ARGS`` in ``cwd`` and return the completed process (text mode).

    Raises ``GitFailed`` on a non-zero exit when ``check`` is true, and ``EnvironmentProblem``
    when git cannot be started (not installed, or ``cwd`` is gone).
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
            errors="surrogateescape",
            check=False,
        )
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise _start_failed(exc, cwd) from exc
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
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise _start_failed(exc, cwd) from exc
