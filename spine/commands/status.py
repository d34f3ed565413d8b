"""``spine status [RUN]``: every run, or one run's lanes. Reads only."""

from __future__ import annotations

import click


@click.command("status")
@click.argument("run_ref", required=False, metavar="[RUN]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(run_ref: str | None, as_json: bool) -> int:
    """Show all runs, or RUN's lanes: status, branch, age, duration and next action.

    A run is `running` while a driver holds it, `interrupted` when lanes are unfinished and no driver
    is alive (continue it with `spine resume RUN`), and `complete` when every lane has a result.
    Never writes state.
    """
    import json

    from spine.drive.runs import parse_ref
    from spine.views.status import render_run, render_run_list, run_list, run_view
    from spine.workspace.context import resolve_context
    from spine.workspace.store import RunStore

    ctx = resolve_context()
    if run_ref is None:
        views = run_list(ctx)
        if as_json:
            click.echo(json.dumps(views, indent=2))
        else:
            click.echo(render_run_list(views))
        return 0
    run_id, lane_id = parse_ref(ctx, run_ref)
    view = run_view(ctx, RunStore(ctx.state, run_id).load())
    if lane_id:
        lanes = [lane for lane in view["lanes"] if lane["id"] == lane_id]
        if not lanes:
            from spine.base.errors import UsageError

            raise UsageError(f"run {run_id} has no lane {lane_id!r}")
        view["lanes"] = lanes
    click.echo(json.dumps(view, indent=2) if as_json else render_run(view, ages=True))
    return 0
