"""``spine cancel RUN [LANE]``: stop a run's lanes from any terminal and record them ``canceled``."""

from __future__ import annotations

import time

import click

from spine.commands.complete import LANE_OF_RUN, RUN_OR_LANE


@click.command("cancel")
@click.argument("run_ref", metavar="RUN[/LANE]", shell_complete=RUN_OR_LANE)
@click.argument("lane", required=False, metavar="[LANE]", shell_complete=LANE_OF_RUN)
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="How long to wait for a running driver to record the cancel (0: do not wait).",
)
def command(run_ref: str, lane: str | None, wait_seconds: float) -> int:
    """Cancel every unfinished lane of RUN, or only LANE.

    Running commands are stopped (their whole process group), lanes that have not started are not
    started, and each canceled lane gets a result with status `canceled`; lanes that needed a
    canceled lane end `blocked`. A live driver is asked through a request file and does this
    itself; when no driver is alive, this command does it.
    """
    from spine.base.errors import EnvironmentProblem, UsageError
    from spine.base.ids import check_id
    from spine.base.liveness import RunBusy
    from spine.drive.attempts import with_attempts
    from spine.drive.recovery import request_cancel
    from spine.drive.runs import drive_run, parse_ref
    from spine.drive.scheduler import OnlyLanes, scheduler_for
    from spine.workspace.context import resolve_context
    from spine.workspace.store import RunStore

    ctx = resolve_context()
    run_id, lane_id = parse_ref(ctx, run_ref)
    lane_id = check_id("lane id", lane) if lane else lane_id
    store = RunStore(ctx.state, run_id)
    run = store.load()
    if lane_id is not None and lane_id not in run.lanes:
        raise UsageError(f"run {run_id} has no lane {lane_id!r}", f"its lanes: {', '.join(run.lanes)}")
    # A lane with attempts is canceled through its attempts; it then compares what they left.
    wanted = set(with_attempts(run, [lane_id])) if lane_id is not None else set(run.lanes)
    targets = [lid for lid, ln in run.lanes.items() if not ln.complete and lid in wanted]
    if not targets:
        what = f"lane {lane_id}" if lane_id else "every lane"
        click.echo(f"nothing to cancel: {what} of run {run_id} already has a result")
        return 0
    request_cancel(ctx, run_id, lane_id)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            # No driver is alive: finish the canceled lanes here, through the same loop.
            drive_run(ctx, store, run, scheduler=OnlyLanes(scheduler_for(run), set(targets)), echo="none")
            break
        except RunBusy:
            pass
        run = store.load()
        if all(run.lanes[lid].complete for lid in targets):
            break
        if time.monotonic() >= deadline:
            if wait_seconds == 0:
                click.echo(f"cancel requested; the driver of run {run_id} will stop the lanes")
                return 0
            raise EnvironmentProblem(
                f"the driver of run {run_id} has not recorded the cancel after {wait_seconds:g}s",
                f"the request stays in place; check with `spine status {run_id}`",
            )
        time.sleep(0.2)
    run = store.load()
    for lid in targets:
        state = run.lanes[lid]
        click.echo(f"{lid}: {state.status.value}")
    return 0
