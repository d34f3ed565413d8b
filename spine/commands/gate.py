"""``spine gate [REV] --into TARGET``: may REV land on TARGET? Test the merge result, cache the verdict."""

from __future__ import annotations

import os

import click

from spine.commands.complete import RUN_OR_LANE


@click.command("gate")
@click.argument("rev", required=False, metavar="[REV]")
@click.option(
    "--into", metavar="BRANCH", help="Branch to test merging into (default: gate.into, else target)."
)
@click.option(
    "--lane",
    "lane_ref",
    metavar="RUN/LANE",
    shell_complete=RUN_OR_LANE,
    help="Gate a lane's branch instead of REV.",
)
@click.option(
    "--check",
    "checks",
    multiple=True,
    metavar="CMD",
    help="A check to run on the merge result (repeatable; replaces the configured gate checks).",
)
@click.option(
    "--no-cache", "--retest", "no_cache", is_flag=True, help="Ignore a cached verdict; run the checks."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the verdict as JSON on stdout (the spine JSON envelope)."
)
@click.option("--junit", "junit_path", metavar="PATH", help="Also write the verdict as JUnit XML to PATH.")
@click.option(
    "--report", "report_path", metavar="FILE", help="Also write the verdict as a self-contained HTML file."
)
@click.option("-q", "--quiet", is_flag=True, help="Do not echo the checks' output (it is still logged).")
def command(
    rev: str | None,
    into: str | None,
    lane_ref: str | None,
    checks: tuple[str, ...],
    no_cache: bool,
    as_json: bool,
    junit_path: str | None,
    report_path: str | None,
    quiet: bool,
) -> int:
    """Test the would-be merge of REV (default: HEAD) into a branch, without touching any checkout.

    \b
    The merge is computed with git merge-tree; a conflict fails the gate and lists the paths.
    A clean merge is checked out in a throwaway worktree, where the gate checks run (gate.checks
    in .spine.yaml, else the lane checks, or --check CMD). The verdict is cached by merged tree
    and check definitions: the same tree is answered at once and says so.

    \b
    Examples:
      spine gate --into main
      spine gate feature/parser --into main --check 'make test'
      spine gate --lane 20261121-193012-a3f9/fix-parser --junit gate.xml

    Exit 0 when the change may land, 1 when it may not, 2 for bad input, 3 when the environment failed.
    """
    from pathlib import Path

    from spine import api
    from spine.base.errors import UsageError
    from spine.base.process import sigterm_as_interrupt
    from spine.base.redact import redact_text
    from spine.base.text import printable
    from spine.landing.gate import echo_to_stderr
    from spine.landing.report import github_annotations, junit_xml, render_table, step_summary
    from spine.model.config import CheckSpec

    try:
        ctx = api.context()
    except UsageError as problem:
        # A CI clone may lack the configured base/target branches; an explicit --into stands in.
        if not into:
            raise
        try:
            ctx = api.context(base=into, target=into)
        except UsageError:
            raise problem from None
    if not lane_ref:
        # pre-commit's pre-push stage names what is being pushed (PRE_COMMIT_TO_REF, or for a push
        # that carries the root commit only PRE_COMMIT_LOCAL_BRANCH); a plain invocation gates HEAD.
        pushed = os.environ.get("PRE_COMMIT_TO_REF") or os.environ.get("PRE_COMMIT_LOCAL_BRANCH")
        if not rev and pushed:
            _pre_commit_note(pushed)
        rev = rev or pushed or None

    def announce(check: CheckSpec) -> None:
        if not quiet:
            click.echo(f"==> spine gate: {check.name}: {check.command}", err=True)

    with sigterm_as_interrupt():
        verdict = api.gate(
            ctx,
            rev,
            into=into,
            lane=lane_ref,
            checks=checks,
            use_cache=not no_cache,
            echo=None if quiet else echo_to_stderr,
            on_check=announce,
        )

    skipped = [c.name for c in api.gate_checks(ctx, checks)] if verdict.reason == "conflict" else []
    if report_path:
        api.write_html(report_path, api.gate_report(verdict))
    if junit_path:
        path = Path(junit_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(redact_text(junit_xml(verdict, skipped)), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write the JUnit report to {junit_path}: {exc.strerror}") from None
    if not as_json:
        text = printable(redact_text(render_table(verdict)))
        first, _, rest = text.partition("\n")
        click.echo(click.style(first, fg="green" if verdict.passed else "red", bold=True) + "\n" + rest)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in github_annotations(verdict):
            # stdout is the documented channel; keep --json output clean
            click.echo(redact_text(line), err=as_json)
        summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary_file:
            _append_summary(summary_file, redact_text(step_summary(verdict, skipped)))
    code = 0 if verdict.passed else 1
    if as_json:
        from spine.commands.output import emit

        return emit(verdict.model_dump(mode="json", by_alias=True), code)
    return code


def _append_summary(path: str, text: str) -> None:
    """Append to the job's step summary; a file that cannot be written is a warning, not a failure:
    the verdict stands whatever happens to the report of it."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        click.echo(
            f"spine: warning: cannot append the step summary to {path}: {exc.strerror or exc}; "
            "the verdict is unchanged",
            err=True,
        )


def _pre_commit_note(rev: str) -> None:
    """pre-commit gives a pre-push hook one pushed ref: say so, so a multi-branch push is not
    mistaken for a gated one (docs/gate.md)."""
    branch = os.environ.get("PRE_COMMIT_LOCAL_BRANCH") or rev
    click.echo(
        f"spine gate: note: pre-commit passes only the first pushed ref with new commits ({branch}) to "
        "its hooks; other refs in the same push are not gated. Push one branch at a time, or use "
        "`spine hooks install pre-push`, which gates every pushed ref.",
        err=True,
    )
