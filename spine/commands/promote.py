"""``spine promote RUN/LANE``: land a finished lane on its target branch."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import click

from spine.commands.complete import RUN_OR_LANE

if TYPE_CHECKING:
    from spine.landing.promote import Strategy


@click.command("promote")
@click.argument("lane_ref", metavar="RUN/LANE", shell_complete=RUN_OR_LANE)
@click.option(
    "--strategy",
    type=click.Choice(["merge", "squash", "rebase", "ff-only"]),
    default="merge",
    show_default=True,
    help="How the lane's commits land on the target.",
)
@click.option("--into", metavar="BRANCH", help="Target branch (default: the run's target).")
@click.option(
    "--gate", "use_gate", is_flag=True, help="Refuse unless the gate passes on exactly what would land."
)
@click.option("--force", is_flag=True, help="Land a lane that did not succeed, or land it again.")
@click.option("--json", "as_json", is_flag=True, help="Print the recorded promotion as JSON.")
def command(
    lane_ref: str, strategy: str, into: str | None, use_gate: bool, force: bool, as_json: bool
) -> int:
    """Land lane RUN/LANE on its target branch (merge, squash, rebase or ff-only).

    \b
    Refuses, changing nothing, when the lane did not succeed (unless --force), when a rebase, merge,
    cherry-pick, revert or bisect is in progress in the checkout that has the target, or when that
    checkout has uncommitted changes to files the promotion would change. A target checked out in a
    checkout is updated there; a target checked out nowhere is moved without touching any checkout.

    \b
    Example:
      spine promote 20261121-193012-a3f9/fix-parser --strategy squash --gate
    """
    from spine import api
    from spine.base.errors import UsageError
    from spine.drive.runs import parse_ref

    ctx = api.context()
    run_id, lane_id = parse_ref(ctx, lane_ref)
    if lane_id is None:
        raise UsageError(
            f"promote needs RUN/LANE, got {lane_ref!r}", f"see the lanes with `spine show {run_id}`"
        )
    landing = api.promote(
        ctx, run_id, lane_id, strategy=cast("Strategy", strategy), into=into, use_gate=use_gate, force=force
    )
    if as_json:
        from spine.commands.output import emit

        result = api.result(ctx, run_id, lane_id)
        payload = result.promotion.model_dump(mode="json", by_alias=True) if result.promotion else None
        return emit({"alreadyLanded": landing.already, "promotion": payload})
    if landing.promoted_before:
        click.echo(
            f"nothing to do: lane {run_id}/{lane_id} was already promoted onto {landing.target} "
            f"({landing.promoted_before}); --force lands it again"
        )
        return 0
    if landing.already:
        click.echo(f"nothing to do: everything on lane {run_id}/{lane_id} is already in {landing.target}")
        return 0
    where = f"updated in {landing.checkout}" if landing.checkout else "ref moved; no checkout touched"
    count = len(landing.commits)
    click.echo(
        f"promoted {run_id}/{lane_id} onto {landing.target} ({strategy}): "
        f"{landing.before[:12]} -> {landing.after[:12]}, {count} commit{'s' if count != 1 else ''} ({where})"
    )
    click.echo("  next: clean up the lane with `spine gc`")
    return 0
