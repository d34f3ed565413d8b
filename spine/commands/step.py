"""``spine step RUN``: fire exactly one ready step of a run, then stop."""

from __future__ import annotations

import click

from spine.commands.complete import RUN


@click.command("step")
@click.argument("run_ref", metavar="RUN", shell_complete=RUN)
@click.option("--json", "as_json", is_flag=True, help="Print what was fired, and the lane's state, as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Echo the step's output to stderr.")
def command(run_ref: str, as_json: bool, verbose: bool) -> int:
    """Fire one ready step of RUN (the same one the drive loop would pick first) and stop.

    Stepping a run to its end gives the same results as `spine resume`. Exit 0 after a step;
    2 when the run is complete and nothing is left to step (so `while spine step RUN; do :; done`
    ends); 3 when another process is driving the run.
    """
    from spine.base.errors import UsageError
    from spine.drive.loop import StepListener
    from spine.drive.runs import drive_run, parse_ref
    from spine.lane.runtime import Echo
    from spine.model.state import RunState
    from spine.workspace.context import resolve_context
    from spine.workspace.store import RunStore

    ctx = resolve_context()
    run_id, lane_id = parse_ref(ctx, run_ref)
    if lane_id:
        raise UsageError("step takes a run, not a lane", f"step the run: spine step {run_id}")
    store = RunStore(ctx.state, run_id)
    if all(lane.complete for lane in store.load().lanes.values()):
        raise UsageError(
            f"run {run_id} is complete: nothing left to step", f"see the results with `spine status {run_id}`"
        )
    events: list[tuple[str, str, str]] = []

    def listen(run: RunState) -> StepListener:
        return lambda lane, step, what: events.append((lane, step, what))

    echo: Echo = "stderr" if verbose else "none"
    run = drive_run(ctx, store, RunStore(ctx.state, run_id).load(), echo=echo, listen=listen, max_steps=1)
    if not events:
        raise UsageError(f"run {run_id} has no step ready to fire", f"see `spine status {run_id}`")
    fired_lane, fired_step, _ = events[0]
    outcome = "halted" if any(what == "halted" for _, _, what in events) else "done"
    lane = run.lanes[fired_lane]
    complete = all(other.complete for other in run.lanes.values())
    if as_json:
        from spine.commands.output import emit

        return emit(
            {
                "runId": run_id,
                "fired": {"lane": fired_lane, "step": fired_step, "outcome": outcome},
                "lane": {
                    "status": lane.status.value,
                    "stepsDone": lane.steps_done,
                    "nextStep": None if lane.complete else lane.next_step,
                },
                "complete": complete,
            }
        )
    else:
        text = f"{fired_lane}: {fired_step} {outcome}"
        if lane.complete:
            result = lane.facts.result
            text += f"; lane {lane.status.value}: {result.next_action if result else ''}"
        click.echo(text)
        if complete:
            click.echo(f"run {run_id} is complete; see `spine status {run_id}`")
    return 0
