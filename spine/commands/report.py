"""``spine report [RUN] [-o FILE]``: a run as one self-contained HTML file."""

from __future__ import annotations

import click


@click.command("report")
@click.argument("run_ref", required=False, metavar="[RUN]")
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="Where to write the report (default: spine-report-RUN.html in this directory; - for stdout).",
)
def command(run_ref: str | None, output: str | None) -> int:
    """Write the report of RUN (default: the latest run) as one HTML file that loads nothing else.

    \b
    It shows a timeline of the lanes' steps, each lane's status and summary, checks with the last
    lines of their output, invariants, the diff stat and the diff itself (collapsed, cut at 256 KiB
    a lane), artifacts with sizes and hashes, debug packets, promotions and earlier attempts side
    by side. Secrets are masked. Open it in a browser, or keep it as a CI artifact. Never writes
    state.

    \b
    Examples:
      spine report                      # the latest run, into ./spine-report-RUN.html
      spine report 20261121-193012-a3f9 -o report.html
    """
    from spine import api
    from spine.base.errors import UsageError

    ctx = api.context()
    if run_ref and "/" in run_ref:
        run_id = run_ref.partition("/")[0]
        raise UsageError("report takes a run, not a lane", f"report the whole run: spine report {run_id}")
    run = api.load_run(ctx, run_ref)
    document = api.report(ctx, run.run_id)
    if output == "-":
        click.echo(document, nl=False)
        return 0
    path = api.write_html(output or f"spine-report-{run.run_id}.html", document)
    lanes = len(run.lanes)
    click.echo(f"wrote the report of run {run.run_id} ({lanes} lane{'s' if lanes != 1 else ''}) to {path}")
    return 0
