"""``spine status [RUN]``: every run, or one run's lanes. Reads only."""

from __future__ import annotations

import click

from spine.commands.complete import RUN_OR_LANE


@click.command("status")
@click.argument("run_ref", required=False, metavar="[RUN[/LANE]]", shell_complete=RUN_OR_LANE)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(run_ref: str | None, as_json: bool) -> int:
    """Show all runs, or RUN's lanes (or RUN/LANE's one): status, branch, age, duration, next action.

    A run is `running` while a driver holds it, `interrupted` when lanes are unfinished and no driver
    is alive (continue it with `spine resume RUN`), and `complete` when every lane has a result.
    Never writes state.
    """
    from spine.drive.runs import parse_ref
    from spine.views.status import render_run, render_run_list, run_list, run_view
    from spine.workspace.context import resolve_context
    from spine.workspace.store import RunStore

    ctx = resolve_context()
    if run_ref is None:
        views = run_list(ctx)
        if as_json:
            from spine.commands.output import emit

            return emit({"runs": views})
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
        # The lanes shown, and their counts; the run's state and exit code stay the whole run's.
        view["lanes"] = lanes
        view["counts"] = {lanes[0]["status"]: 1}
    if as_json:
        from spine.commands.output import emit

        return emit(view)
    click.echo(render_run(view, ages=True))
    return 0
