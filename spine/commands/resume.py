"""``spine resume RUN``: continue a halted, interrupted or crashed run where it stopped."""

from __future__ import annotations

import click

from spine.commands.complete import LANE_OF_RUN, RUN


@click.command("resume")
@click.argument("run_ref", metavar="RUN", shell_complete=RUN)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    help="Lanes at work at once (default: as the run was started).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON on stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Echo lane output to stderr, prefixed with the lane id.")
@click.option(
    "--retry",
    is_flag=True,
    help="Run failed, blocked and canceled lanes again (each previous try is kept).",
)
@click.option(
    "--lane",
    "lanes",
    multiple=True,
    metavar="ID",
    shell_complete=LANE_OF_RUN,
    help="With --retry: only this lane (repeatable).",
)
def command(
    run_ref: str, jobs: int | None, as_json: bool, verbose: bool, retry: bool, lanes: tuple[str, ...]
) -> int:
    """Drive RUN to the end again.

    Lanes with a result never run again. A step that was in flight when its driver died is redone
    (what the dead driver left running is stopped first; the lane's branch and the commits on it are
    kept). Only one process drives a run at a time: if another one does, this exits 3.

    With --retry, lanes that failed, were blocked or were canceled start over from the current tip of
    their base, as a new try; the previous try's result and log move to
    runs/RUN/attempts/LANE/N/ and its branch head is kept at refs/spine/attempts/RUN/LANE/N.
    """
    from spine.base.errors import UsageError
    from spine.commands.driving import drive_with_progress
    from spine.drive.runs import parse_ref
    from spine.workspace.context import resolve_context
    from spine.workspace.store import RunStore

    ctx = resolve_context()
    run_id, lane_id = parse_ref(ctx, run_ref)
    if lane_id:
        raise UsageError("resume takes a run, not a lane", f"resume the whole run: spine resume {run_id}")
    store = RunStore(ctx.state, run_id)
    run = store.load()
    if lanes and not retry:
        raise UsageError(
            "--lane only applies with --retry", f"spine resume {run_id} --retry --lane {lanes[0]}"
        )
    if retry:
        from spine.drive.retry import retry as retry_lanes

        run, retried = retry_lanes(ctx, store, list(lanes))
        click.echo(f"retrying {', '.join(retried)} of run {run_id}", err=True)
    elif all(lane.complete for lane in run.lanes.values()):
        from spine.model.result import LaneStatus

        again = [
            f"{lid} ({lane.status.value})"
            for lid, lane in run.lanes.items()
            if lane.status != LaneStatus.SUCCEEDED
        ]
        if again:
            click.echo(
                f"run {run_id} is complete: every lane has a result; {', '.join(again)} did not succeed. "
                f"Run them again with `spine resume {run_id} --retry` (or --retry --lane ID)",
                err=True,
            )
        else:
            click.echo(f"run {run_id} is complete: every lane succeeded; nothing to resume", err=True)
    return drive_with_progress(ctx, store, run, jobs=jobs, as_json=as_json, verbose=verbose)
