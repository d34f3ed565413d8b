"""Click parameter types and option bundles shared by several commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from spine.base.ids import parse_duration

if TYPE_CHECKING:
    _DurationBase = click.ParamType[float | None]
else:  # click.ParamType is generic only in recent click releases
    _DurationBase = click.ParamType


class DurationType(_DurationBase):
    """Seconds or 90s / 10m / 1h / 1h30m; 'none' for no limit."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float | None:
        if isinstance(value, int | float):
            return float(value)
        if str(value).strip().lower() in ("none", "off", "0"):
            return None
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = DurationType()


def parse_env_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    """KEY=VALUE pairs from repeated --env options."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise click.BadParameter(
                f"{pair!r} is not KEY=VALUE with a valid variable name", param_hint="--env"
            )
        env[key] = value
    return env


def check_name(command: str, taken: set[str]) -> str:
    """A readable, unique name for a --check command."""
    base = command.split()[0].rsplit("/", 1)[-1] if command.split() else "check"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name
