"""``spine logs RUN LANE [-f]``: a lane's output log. Reads only."""

from __future__ import annotations

import sys
import time

import click

from spine.commands.complete import LANE_OF_RUN, RUN_OR_LANE


@click.command("logs")
@click.argument("run_ref", metavar="RUN[/LANE]", shell_complete=RUN_OR_LANE)
@click.argument("lane", required=False, metavar="[LANE]", shell_complete=LANE_OF_RUN)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the lane has its result.")
def command(run_ref: str, lane: str | None, follow: bool) -> int:
    """Print the output log of a lane (the command, setup and checks, with spine's section headers).

    With -f, wait for new output until the lane ends or no driver is left working on it.
    """
    from spine.base.errors import UsageError
    from spine.base.ids import check_id
    from spine.base.liveness import run_is_driven
    from spine.drive.runs import parse_ref
    from spine.workspace.context import resolve_context
    from spine.workspace.store import RunStore

    ctx = resolve_context()
    run_id, lane_id = parse_ref(ctx, run_ref)
    lane_id = check_id("lane id", lane) if lane else lane_id
    store = RunStore(ctx.state, run_id)
    run = store.load()
    if lane_id is None:
        if len(run.lanes) != 1:
            raise UsageError(
                f"run {run_id} has {len(run.lanes)} lanes; say which one",
                f"e.g. spine logs {run_id} {next(iter(run.lanes))}",
            )
        lane_id = next(iter(run.lanes))
    if lane_id not in run.lanes:
        raise UsageError(f"run {run_id} has no lane {lane_id!r}", f"its lanes: {', '.join(run.lanes)}")
    path = ctx.state.log_file(run_id, lane_id)
    out = sys.stdout.buffer
    offset = 0

    def pump() -> None:
        nonlocal offset
        if not path.is_file():
            return
        with open(path, "rb") as handle:
            handle.seek(offset)
            while chunk := handle.read(65536):
                out.write(chunk)
                offset += len(chunk)
        out.flush()

    pump()
    if not follow:
        if not path.is_file():
            click.echo(f"lane {run_id}/{lane_id} has no output yet", err=True)
        return 0
    while True:
        finished = store.load().lanes[lane_id].complete or not run_is_driven(ctx.state.driver_lock(run_id))
        pump()
        if finished:
            return 0
        time.sleep(0.2)
