"""Errors that reach the user, and the exit codes they map to.

Every error spine raises on purpose is a ``SpineError``: it carries a message saying what is wrong,
a hint saying what to do, and the exit code the command ends with. The CLI prints them without a
traceback; anything else is a bug and is reported as one.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes. 125 is never used: ``git bisect run`` reads it as "skip"."""

    OK = 0
    FAILED = 1  # the work said no: a lane or a check failed, a gate rejected
    USAGE = 2  # the input was wrong: usage, configuration, ids, refs
    ENVIRONMENT = 3  # the environment failed: git missing, backend unavailable, lock timeout
    INTERNAL = 4  # a bug in spine; details are written to a crash log
    INTERRUPTED = 130  # Ctrl-C or SIGTERM


class SpineError(Exception):
    """An error with a message for the user, a hint, and an exit code."""

    exit_code: ExitCode = ExitCode.ENVIRONMENT

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"spine: error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class UsageError(SpineError):
    """The input was wrong: a flag, a file, an id, a ref. Exit 2."""

    exit_code = ExitCode.USAGE
    parts: list[str]  # the problems an error made by ``of`` says, one each

    @classmethod
    def of(cls, problems: list[UsageError]) -> UsageError:
        """One error saying every problem of ``problems`` (all found before giving up), with their hints."""
        if len(problems) == 1:
            return problems[0]
        parts = [part for p in problems for part in getattr(p, "parts", [p.message])]
        hints = list(dict.fromkeys(p.hint for p in problems if p.hint))
        error = cls(f"{len(parts)} problems:\n  - " + "\n  - ".join(parts), "; ".join(hints) or None)
        error.parts = parts
        return error


class ConfigError(UsageError):
    """The configuration file is invalid. Exit 2."""


class EnvironmentProblem(SpineError):
    """Something outside the input failed: git, a backend, a lock. Exit 3."""

    exit_code = ExitCode.ENVIRONMENT


class NotARepository(UsageError):
    """The working directory is not inside a usable git repository. Exit 2."""
