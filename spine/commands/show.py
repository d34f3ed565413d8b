"""``spine show [RUN | RUN/LANE]``: read results back."""

from __future__ import annotations

import json

import click

from spine.commands.complete import RUN_OR_LANE


@click.command("show")
@click.argument("ref", required=False, metavar="[RUN | RUN/LANE]", shell_complete=RUN_OR_LANE)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON: a lane's result file, or a run's results (in the spine JSON envelope).",
)
def command(ref: str | None, as_json: bool) -> int:
    """Show a lane's result, or every lane of a run (default: the latest run). Never writes state."""
    from spine.drive.runs import load_result, parse_ref
    from spine.views.result import render_result
    from spine.workspace.context import resolve_context
    from spine.workspace.store import RunStore

    ctx = resolve_context()
    run_id, lane_id = parse_ref(ctx, ref)
    if lane_id:
        result = load_result(ctx, run_id, lane_id)
        path = ctx.state.result_file(run_id, lane_id)
        if as_json:
            from spine.commands.output import emit

            return emit(json.loads(path.read_text(encoding="utf-8")))  # the result file itself
        click.echo(render_result(result, str(path)))
        return 0
    run = RunStore(ctx.state, run_id).load()
    results = []
    for lid, lane in run.lanes.items():
        path = ctx.state.result_file(run_id, lid)
        if path.is_file():
            results.append(load_result(ctx, run_id, lid))
        elif not as_json:
            click.echo(f"lane {run_id}/{lid}: {lane.status.value} (no result yet)")
    if as_json:
        from spine.commands.output import emit

        files = [ctx.state.result_file(run_id, r.lane_id) for r in results]
        return emit(
            {
                "runId": run_id,
                "results": [json.loads(f.read_text(encoding="utf-8")) for f in files],
                "pending": [lid for lid in run.lanes if lid not in {r.lane_id for r in results}],
            }
        )
    else:
        click.echo(
            "\n\n".join(render_result(r, str(ctx.state.result_file(run_id, r.lane_id))) for r in results)
        )
    return 0
