"""``spine classify "OBJECTIVE" [--json]``: which mode the keyword classifier picks, and why."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from spine.model.config import SpineConfig


@click.command("classify")
@click.argument("objective")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: mode, reason and matched keywords.")
def command(objective: str, as_json: bool) -> int:
    """Classify OBJECTIVE into a mode by keywords (the defaults, or modes.*.keywords in .spine.yaml).

    Exit 0 when a mode was found, 1 when no keyword matched.
    """
    from spine.base.errors import ExitCode, UsageError
    from spine.model.modes import classify

    if not objective.strip():
        raise UsageError("the objective is empty", 'e.g. spine classify "backfill the March export to csv"')
    config = _config_here()
    found = classify(objective, config.mode_settings())
    code = ExitCode.OK if found.mode else ExitCode.FAILED
    if as_json:
        from spine.commands.output import emit

        return emit({"objective": objective, **found.to_json()}, code)
    else:
        click.echo(found.mode.value if found.mode else "no mode")
        click.echo(f"  why: {found.reason}")
        for mode, words in found.matches.items():
            if mode != found.mode:
                click.echo(f"  also: {mode.value} ({', '.join(words)})")
    return code


def _config_here() -> SpineConfig:
    """The repository's config when run inside one; outside a repository the shipped defaults apply."""
    from spine.base.errors import NotARepository
    from spine.model.config import SpineConfig
    from spine.workspace.context import resolve_context

    try:
        return resolve_context().config
    except NotARepository:
        return SpineConfig()
