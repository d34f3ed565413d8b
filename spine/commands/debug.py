"""``spine debug RUN/LANE [--json]``: print the debug packet of a failed or stopped lane."""

from __future__ import annotations

import click

from spine.commands.complete import RUN_OR_LANE


@click.command("debug")
@click.argument("ref", required=False, metavar="[RUN/LANE | RUN]", shell_complete=RUN_OR_LANE)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print debug.json as JSON (in the spine JSON envelope) instead of Markdown.",
)
def command(ref: str | None, as_json: bool) -> int:
    """Show the debug packet (symptom, context, repro, hypotheses, next) of a lane. Never writes state.

    With RUN (or nothing: the latest run), the run's only failed lane is shown.
    """
    from spine.base.errors import UsageError
    from spine.drive.runs import load_result, parse_ref
    from spine.lane.debug import load_packet, render_markdown
    from spine.workspace.context import resolve_context
    from spine.workspace.store import RunStore

    ctx = resolve_context()
    run_id, lane_id = parse_ref(ctx, ref)
    if lane_id is None:
        run = RunStore(ctx.state, run_id).load()
        with_packet = [lid for lid in run.lanes if ctx.state.debug_file(run_id, lid).is_file()]
        if len(with_packet) != 1:
            lanes = ", ".join(f"{run_id}/{lid}" for lid in with_packet)
            raise UsageError(
                f"run {run_id!r} has {len(with_packet) or 'no'} lane(s) with a debug packet",
                f"name one: spine debug {lanes.split(', ')[0]}"
                if with_packet
                else "only failed or stopped lanes have one",
            )
        lane_id = with_packet[0]
    path = ctx.state.debug_file(run_id, lane_id)
    if not path.is_file():
        result = load_result(ctx, run_id, lane_id)  # says why when there is no result at all
        raise UsageError(
            f"lane {run_id}/{lane_id} has no debug packet (status: {result.status.value})",
            "debug packets are written for failed and stopped lanes only",
        )
    packet = load_packet(path)
    if as_json:
        from spine.commands.output import emit

        return emit(packet.model_dump(mode="json", by_alias=True))
    from spine.base.text import printable

    click.echo(printable(render_markdown(packet)))
    return 0
