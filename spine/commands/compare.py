"""``spine compare RUN/LANE``: the attempts of a lane side by side, and why one was picked."""

from __future__ import annotations

import click

from spine.commands.complete import RUN_OR_LANE


@click.command("compare")
@click.argument("lane_ref", metavar="RUN/LANE", shell_complete=RUN_OR_LANE)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the comparison as JSON (the spine JSON envelope)."
)
def command(lane_ref: str, as_json: bool) -> int:
    """Show the attempts of lane RUN/LANE side by side, and which one it picked and why.

    \b
    Each attempt: status, checks passed, operator verdict, score, size of its change, files changed,
    time, repair-loop iterations, and how far its change agrees with the other attempts' (changed
    lines / changed files, 0 to 1). The picked attempt is marked *. While attempts still run, the
    ones that ended are shown and nothing is picked yet. Never writes state.

    \b
    Example:
      spine compare 20261121-193012-a3f9/fix-parser
    """
    from spine import api
    from spine.base.errors import UsageError
    from spine.base.redact import redact_text
    from spine.base.text import printable
    from spine.drive.runs import parse_ref
    from spine.lane.render import attempts_table

    ctx = api.context()
    run_id, lane_id = parse_ref(ctx, lane_ref)
    if lane_id is None:
        raise UsageError(
            f"compare needs RUN/LANE, got {lane_ref!r}", f"see the lanes with `spine status {run_id}`"
        )
    found = api.compare(ctx, run_id, lane_id)
    if as_json:
        from spine.commands.output import emit

        return emit(found.to_json())
    label = f"{run_id}/{lane_id}"
    picked = found.pick.attempt if found.pick else None
    click.echo(f"lane {label}: {len(found.figures)} attempts, pick rule {found.rule}")
    for line in attempts_table(found.figures, picked):
        click.echo(printable(redact_text(f"  {line}")))
    if found.pick is None:
        waiting = [f.lane_id for f in found.figures if not f.status.terminal]
        click.echo(f"pick: not yet ({', '.join(waiting) or 'the lane'} still to finish)")
        return 0
    by = "by hand" if found.pick.by == "user" else f"by the rule {found.pick.rule}"
    head = f"pick: attempt {picked} ({by})" if picked is not None else "pick: none"
    click.echo(printable(redact_text(f"{head}: {found.pick.reason}")))
    if found.rule_pick != picked:
        click.echo(f"  the rule's own pick: {found.rule_pick if found.rule_pick is not None else 'none'}")
    if picked is not None:
        click.echo(f"next: land it with `spine promote {label}`, or pick another with `spine pick {label} N`")
    else:
        click.echo(
            f"next: take one anyway with `spine pick {label} N`, or retry with `spine resume {run_id} --retry --lane {lane_id}`"
        )
    return 0
