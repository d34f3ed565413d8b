"""The one JSON envelope that every command's ``--json`` prints on stdout (docs/json.md, ADR 0060).

    {"spineJson": 1, "command": "show", "ok": true, "exitCode": 0, "data": ..., "errors": []}

A command that was asked for ``--json`` ends with ``return emit(data, code)``: ``data`` is what the
command has to say (an object; for ``spine run`` the result file itself) and ``code`` its exit code.
When a command fails with an error instead, ``spine.cli.run_cli`` prints the same envelope with
``data: null`` and the error in ``errors`` (``error_envelope``). Every key spine makes is camelCase.
"""

from __future__ import annotations

import json
from typing import Any

import click

from spine.base.errors import ExitCode

JSON_VERSION = 1

KINDS = {
    ExitCode.OK: "ok",
    ExitCode.FAILED: "failed",
    ExitCode.USAGE: "usage",
    ExitCode.ENVIRONMENT: "environment",
    ExitCode.INTERNAL: "internal",
    ExitCode.INTERRUPTED: "interrupted",
}

# Set by ``emit``: run_cli prints no error envelope after a command printed its own.
_emitted: list[bool] = []


def envelope(
    command: str, data: Any, exit_code: int, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The envelope around ``data`` (see the module docstring)."""
    return {
        "spineJson": JSON_VERSION,
        "command": command,
        "ok": exit_code == 0,
        "exitCode": int(exit_code),
        "data": data,
        "errors": errors or [],
    }


def error_entry(
    message: str, exit_code: int, *, hint: str | None = None, problems: list[str] | None = None, **more: Any
) -> dict[str, Any]:
    """One entry of ``errors``: what went wrong, what to do, the exit code and its kind."""
    entry: dict[str, Any] = {
        "kind": KINDS.get(ExitCode(exit_code), "error") if exit_code in set(ExitCode) else "error",
        "exitCode": int(exit_code),
        "message": message,
        "hint": hint,
    }
    if problems:
        entry["problems"] = problems
    entry.update(more)
    return entry


def emit(data: Any, exit_code: int = 0, *, errors: list[dict[str, Any]] | None = None) -> int:
    """Print ``data`` in the envelope on stdout (secrets masked); return ``exit_code``."""
    from spine.base.redact import redact_text

    text = json.dumps(envelope(command_name(), data, exit_code, errors), indent=2)
    click.echo(redact_text(text))
    _emitted.append(True)
    return exit_code


def error_envelope(command: str, entry: dict[str, Any]) -> str | None:
    """The envelope of a command that failed with ``entry``, or None when it already printed one."""
    if _emitted:
        return None
    return json.dumps(envelope(command, None, entry["exitCode"], [entry]), indent=2)


def reset() -> None:
    """Forget earlier envelopes (run_cli calls this as each command starts)."""
    _emitted.clear()


def command_name() -> str:
    """The running command's name without the program: 'show', 'hooks install'."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return ""
    return ctx.command_path.partition(" ")[2] or ctx.command_path


def camel_keys(data: Any, *, keep: frozenset[str] = frozenset()) -> Any:
    """``data`` with snake_case keys in camelCase; the keys of mappings under a key in ``keep``
    (names a user chose, such as input or variable names) stay as they are."""
    if isinstance(data, list):
        return [camel_keys(item, keep=keep) for item in data]
    if not isinstance(data, dict):
        return data
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in keep and isinstance(value, dict):
            out[_camel(key)] = {k: camel_keys(v, keep=keep) for k, v in value.items()}
        else:
            out[_camel(key)] = camel_keys(value, keep=keep)
    return out


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
