"""``spine land RUN [LANE...]``: land many lanes through a local merge queue."""

from __future__ import annotations

from typing import cast

import click


@click.command("land")
@click.argument("run_ref", metavar="RUN")
@click.argument("lanes", nargs=-1, metavar="[LANE...]")
@click.option("--into", metavar="BRANCH", help="Target branch (default: the run's target).")
@click.option(
    "--strategy",
    type=click.Choice(["merge", "squash", "rebase"]),
    default=None,
    help="How each lane lands on the target.  [default: merge]",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Gates at once while bisecting a failed batch.",
)
@click.option("--restart", is_flag=True, help="Drop an unfinished queue of the run and start a new one.")
@click.option("--json", "as_json", is_flag=True, help="Print the queue's decisions as JSON on stdout.")
@click.option("--junit", "junit_path", metavar="FILE", help="Also write JUnit XML: one test case per lane.")
@click.option("-q", "--quiet", is_flag=True, help="Do not report progress on stderr.")
def command(
    run_ref: str,
    lanes: tuple[str, ...],
    into: str | None,
    strategy: str | None,
    jobs: int,
    restart: bool,
    as_json: bool,
    junit_path: str | None,
    quiet: bool,
) -> int:
    """Land the succeeded lanes of RUN (or the LANEs named, in that order) on the target.

    \b
    The target moves only to a tree that passed the gate checks, and each lane lands on top of
    everything landed before it. The queue's combined result is tested first; when it fails, the
    queue is bisected to find the lane that breaks it, which is ejected with the failed check. A
    lane that conflicts is ejected with the conflicting paths. Verdicts are cached by tree.
    Interrupted or killed, `spine land RUN` resumes where it stopped. See docs/land.md.

    \b
    Examples:
      spine land 20261121-193012-a3f9
      spine land 20261121-193012-a3f9 parser docs --into release --strategy squash -j 2

    Exit 0 when every queued lane landed, 1 when one was ejected (or the target itself fails the
    checks), 2 for bad input, 3 when the environment failed, 130 when interrupted.
    """
    from pathlib import Path

    from spine import api
    from spine.base.errors import ExitCode, UsageError
    from spine.base.process import sigterm_as_interrupt
    from spine.base.redact import redact_text
    from spine.drive.runs import parse_ref
    from spine.landing.land_report import junit_xml, render_table
    from spine.model.land import LandStrategy

    ctx = api.context()
    run_id, first = parse_ref(ctx, run_ref)
    named = [first, *lanes] if first else list(lanes)

    def progress(message: str) -> None:
        if not quiet:
            click.echo(redact_text(f"spine land: {message}"), err=True)

    try:
        with sigterm_as_interrupt():
            state = api.land(
                ctx,
                run_id,
                named,
                into=into,
                strategy=cast(LandStrategy | None, strategy),
                jobs=jobs,
                restart=restart,
                progress=progress,
            )
    except KeyboardInterrupt:
        click.echo(
            f"spine land: interrupted; `spine land {run_id}` resumes the queue where it stopped", err=True
        )
        return ExitCode.INTERRUPTED

    if junit_path:
        path = Path(junit_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(redact_text(junit_xml(state)), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write the JUnit report to {junit_path}: {exc.strerror}") from None
    ejected = any(d.outcome == "ejected" for d in state.decisions)
    code = ExitCode.FAILED if ejected else ExitCode.OK
    if as_json:
        from spine.commands.output import emit

        return emit(state.model_dump(mode="json", by_alias=True), code)
    else:
        text = redact_text(render_table(state))
        head, _, rest = text.partition("\n")
        click.echo(click.style(head, fg="red" if ejected else "green", bold=True) + "\n" + rest)
    return ExitCode.FAILED if ejected else ExitCode.OK
