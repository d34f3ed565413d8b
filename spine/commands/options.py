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
        if str(value).strip().lower() in ("none", "off"):
            return None
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(f"{exc} ('none' means no limit)", param, ctx)


DURATION = DurationType()
