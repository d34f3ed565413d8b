"""``spine gate [REV] --into TARGET``: may REV land on TARGET? Test the merge result, cache the verdict."""

from __future__ import annotations

import os

import click


@click.command("gate")
@click.argument("rev", required=False, metavar="[REV]")
@click.option(
    "--into", metavar="BRANCH", help="Branch to test merging into (default: gate.into, else target)."
)
@click.option("--lane", "lane_ref", metavar="RUN/LANE", help="Gate a lane's branch instead of REV.")
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
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON on stdout.")
@click.option("--junit", "junit_path", metavar="PATH", help="Also write the verdict as JUnit XML to PATH.")
@click.option("-q", "--quiet", is_flag=True, help="Do not echo the checks' output (it is still logged).")
def command(
    rev: str | None,
    into: str | None,
    lane_ref: str | None,
    checks: tuple[str, ...],
    no_cache: bool,
    as_json: bool,
    junit_path: str | None,
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

    from spine.base.errors import UsageError
    from spine.base.process import sigterm_as_interrupt
    from spine.base.redact import redact_text
    from spine.landing.gate import echo_to_stderr, gate_checks, resolve_commit, run_gate
    from spine.landing.report import github_annotations, junit_xml, render_table, step_summary
    from spine.model.config import CheckSpec, check_name
    from spine.workspace.context import resolve_context

    try:
        ctx = resolve_context()
    except UsageError as problem:
        # A CI clone may lack the configured base/target branches; an explicit --into stands in.
        if not into:
            raise
        try:
            ctx = resolve_context(base=into, target=into)
        except UsageError:
            raise problem from None
    if lane_ref:
        if rev:
            raise UsageError("give either REV or --lane, not both", f"spine gate --lane {lane_ref}")
        from spine.drive.runs import load_result, parse_ref
        from spine.workspace.store import RunStore

        run_id, lane_id = parse_ref(ctx, lane_ref)
        if lane_id is None:
            raise UsageError(
                f"--lane needs RUN/LANE, got {lane_ref!r}", "see the lanes with `spine show RUN`"
            )
        result = load_result(ctx, run_id, lane_id)
        if not result.branch:
            raise UsageError(
                f"lane {lane_ref} has no branch to gate", "it ran in place; gate your checkout instead"
            )
        rev = result.branch
        default_into = ctx.config.gate.into or RunStore(ctx.state, run_id).load().target_ref
    else:
        # pre-commit's pre-push stage names what is being pushed; a plain invocation gates HEAD.
        rev = rev or os.environ.get("PRE_COMMIT_TO_REF") or "HEAD"
        default_into = ctx.config.gate.into or ctx.refs.target_ref
    target = into or default_into
    rev_sha = resolve_commit(ctx, rev, what="revision")
    known = {ctx.refs.base_ref: ctx.refs.base_sha, ctx.refs.target_ref: ctx.refs.target_sha}
    into_sha = known.get(target) or resolve_commit(ctx, target, what="target (--into)")
    if checks:
        taken: set[str] = set()
        specs = [CheckSpec(name=check_name(c, taken), command=c) for c in checks]
    else:
        specs = gate_checks(ctx)

    def announce(check: CheckSpec) -> None:
        if not quiet:
            click.echo(f"==> spine gate: {check.name}: {check.command}", err=True)

    with sigterm_as_interrupt():
        verdict = run_gate(
            ctx,
            rev=rev,
            rev_sha=rev_sha,
            into=target,
            into_sha=into_sha,
            checks=specs,
            use_cache=not no_cache,
            echo=None if quiet else echo_to_stderr,
            on_check=announce,
        )

    if junit_path:
        path = Path(junit_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(redact_text(junit_xml(verdict)), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write the JUnit report to {junit_path}: {exc.strerror}") from None
    if as_json:
        click.echo(redact_text(verdict.to_json()), nl=False)
    else:
        text = redact_text(render_table(verdict))
        first, _, rest = text.partition("\n")
        click.echo(click.style(first, fg="green" if verdict.passed else "red", bold=True) + "\n" + rest)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in github_annotations(verdict):
            click.echo(
                redact_text(line), err=as_json
            )  # stdout is the documented channel; keep --json output clean
        summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary_file:
            with open(summary_file, "a", encoding="utf-8") as handle:
                handle.write(redact_text(step_summary(verdict)))
    return 0 if verdict.passed else 1
