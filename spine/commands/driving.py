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
    if interrupted:
        run = store.load()  # as the interrupted driver left it
    code = print_run_summary(ctx, run, as_json=as_json)
    if interrupted:
        click.echo(
            f"spine: interrupted; running lanes were canceled. Continue the rest with `spine resume {run.run_id}`",
            err=True,
        )
        return ExitCode.INTERRUPTED
    return code
