"""Driving a run from a command: progress on stderr, the summary on stdout, the exit code."""

from __future__ import annotations

import click

from spine.base.errors import ExitCode
from spine.drive.loop import StepListener
from spine.lane.runtime import Echo
from spine.model.state import RunState
from spine.workspace.context import ExecutionContext
from spine.workspace.store import RunStore


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
    from spine.views.progress import LiveProgress, PlainProgress, progress_for
    from spine.views.status import print_run_summary

    progress: list[PlainProgress | LiveProgress] = []

    def listen(driven: RunState) -> StepListener:
        progress.append(PlainProgress(driven) if verbose else progress_for(driven))
        return progress[0]

    echo: Echo = "prefixed" if verbose else "none"
    interrupted = False
    try:
        run = drive_run(ctx, store, run, jobs=jobs, echo=echo, listen=listen)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for shown in progress:
            shown.close()
    run = store.load()
    stopped = f"interrupted; running lanes were canceled. Continue the rest with `spine resume {run.run_id}`"
    if as_json:
        from spine.commands.output import emit, error_entry
        from spine.drive.runs import exit_code_for
        from spine.views.status import run_view

        view = run_view(ctx, run)
        if interrupted:
            return emit(view, ExitCode.INTERRUPTED, errors=[error_entry(stopped, ExitCode.INTERRUPTED)])
        return emit(view, exit_code_for((lane.status for lane in run.lanes.values()), run))
    code = print_run_summary(ctx, run, as_json=False)
    if interrupted:
        click.echo(f"spine: {stopped}", err=True)
        return ExitCode.INTERRUPTED
    return code
