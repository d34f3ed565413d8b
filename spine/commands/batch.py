"""``spine batch FILE``: many lanes, in parallel, in dependency order, resumable."""

from __future__ import annotations

import click

from spine.commands.complete import BACKEND, FILE


@click.command("batch")
@click.argument("file", metavar="FILE", shell_complete=FILE)
@click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Lanes at work at once."
)
@click.option(
    "--fail-fast", is_flag=True, help="After the first failed lane, start no new lanes (they end canceled)."
)
@click.option("--run-id", metavar="ID", help="Run id (default: a timestamp plus a random suffix).")
@click.option("--base", metavar="REF", help="Default base ref of the lanes (a lane's own `base` wins).")
@click.option(
    "--backend",
    metavar="NAME",
    shell_complete=BACKEND,
    help="Default backend of the lanes (a lane's own `backend` wins).",
)
@click.option(
    "--plan", is_flag=True, help="Validate and record the run, start nothing; drive it with resume or step."
)
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON on stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Echo lane output to stderr, prefixed with the lane id.")
def command(
    file: str,
    jobs: int,
    fail_fast: bool,
    run_id: str | None,
    base: str | None,
    backend: str | None,
    plan: bool,
    as_json: bool,
    verbose: bool,
) -> int:
    """Run the lanes of FILE (YAML or JSON, `-` for stdin) and print one summary.

    \b
    Example lanes.yaml:
      lanes:
        - id: parser
          objective: make the parser accept tabs
          command: ./scripts/agent.sh --task parser
          checks: [make test]
        - id: docs
          objective: document tab support
          command: ["./scripts/agent.sh", "--task", "docs"]
          needs: [parser]

    The whole file is checked before anything is created. Exit 0 when every lane succeeded,
    1 when one failed or was blocked, 2 for an invalid batch, 130 when interrupted.
    """
    from spine import api
    from spine.commands.driving import drive_with_progress
    from spine.model.batch import read_batch

    source, data = read_batch(file)
    ctx = api.context(base=base, backend=backend)
    store, run = api.plan_batch(ctx, data, source, run_id=run_id, jobs=jobs, fail_fast=fail_fast)
    rid = run.run_id
    if plan:
        if as_json:
            from spine.commands.output import emit

            return emit({"runId": rid, "lanes": list(run.lanes), "runDir": str(store.run_dir)})
        else:
            click.echo(f"run {rid}: {len(run.lanes)} lanes planned; nothing started")
            click.echo(f"  drive it:  spine resume {rid}   (or one step at a time: spine step {rid})")
        return 0
    if not as_json:
        click.echo(f"run {rid}: {len(run.lanes)} lanes, {jobs} at a time", err=True)
    return drive_with_progress(ctx, store, run, jobs=jobs, as_json=as_json, verbose=verbose)
