"""Driving a run from a command: progress on stderr, the summary on stdout, the exit code."""

from __future__ import annotations

from typing import Any

import click

from spine.base.errors import ExitCode
from spine.drive.loop import StepListener
from spine.lane.runtime import Echo
from spine.model.state import RunState
from spine.workspace.context import ExecutionContext
from spine.workspace.store import RunStore


def run_errors(run: RunState, code: int) -> list[dict[str, Any]]:
    """The ``errors`` of a run's JSON envelope: what made it end 3 (lanes halted by the environment)
    or 130 (lanes canceled); the lanes themselves are in ``data``."""
    from spine.commands.output import error_entry
    from spine.model.result import LaneStatus

    if code == ExitCode.ENVIRONMENT:
        return [
            error_entry(
                f"lane {lane_id}: step {lane.facts.halt.step} failed: {lane.facts.halt.error}",
                code,
                hint=f"fix the cause, then run it again with `spine resume {run.run_id} --retry --lane {lane_id}`",
            )
            for lane_id, lane in run.lanes.items()
            if lane.facts.halt is not None
        ]
    if code == ExitCode.INTERRUPTED:
        canceled = [lane_id for lane_id, lane in run.lanes.items() if lane.status == LaneStatus.CANCELED]
        return [
            error_entry(
                f"run {run.run_id}: {', '.join(canceled)} canceled",
                code,
                hint=f"run them again with `spine resume {run.run_id} --retry`",
            )
        ]
    return []


def drive_with_progress(
    ctx: ExecutionContext,
    store: RunStore,
    run: RunState,
    *,
    jobs: int | None,
    as_json: bool,
    verbose: bool,
) -> int:
    """Drive ``run`` to the end showing progress, print its summary, return the exit code.

    Lane output goes only to the lane logs, unless ``verbose``: then it is echoed to stderr with a
    ``[lane]`` prefix and progress is printed as plain lines.
    """
    from spine.drive.runs import drive_run
    from spine.lane.runtime import OutputLines
    from spine.views.progress import LiveProgress, PlainProgress, progress_for
    from spine.views.status import print_run_summary

    progress: list[PlainProgress | LiveProgress] = []
    lines = OutputLines()

    def listen(driven: RunState) -> StepListener:
        progress.append(PlainProgress(driven, lines=lines) if verbose else progress_for(driven, lines=lines))
        return progress[0]

    echo: Echo = "prefixed" if verbose else "none"
    interrupted = False
    try:
        run = drive_run(ctx, store, run, jobs=jobs, echo=echo, listen=listen, lines=lines)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for shown in progress:
            shown.close()
    if interrupted:
        run = store.load()  # as the interrupted driver left it
    stopped = f"interrupted; running lanes were canceled. Continue the rest with `spine resume {run.run_id}`"
    if as_json:
        from spine.commands.output import emit, error_entry
        from spine.drive.runs import exit_code_for
        from spine.views.status import run_view

        view = run_view(ctx, run)
        if interrupted:
            return emit(view, ExitCode.INTERRUPTED, errors=[error_entry(stopped, ExitCode.INTERRUPTED)])
        code = exit_code_for((lane.status for lane in run.lanes.values()), run)
        return emit(view, code, errors=run_errors(run, code))
    code = print_run_summary(ctx, run, as_json=False)
    if interrupted:
        click.echo(f"spine: {stopped}", err=True)
        return ExitCode.INTERRUPTED
    return code
