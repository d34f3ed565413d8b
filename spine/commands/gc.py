"""``spine gc``: the one reaper, from the command line."""

from __future__ import annotations

import click

KEPT_LISTED = 3
"""Kept lane branches listed one per line; more than this are summed up in one line."""


@click.command("gc")
@click.option("-n", "--dry-run", is_flag=True, help="Only list what would be done.")
@click.option(
    "--prune-branches", is_flag=True, help="Also delete lane branches whose commits are not in the target."
)
@click.option(
    "--retention-days",
    type=click.FloatRange(min=0, min_open=True),
    metavar="DAYS",
    help="Delete runs older than this (default: gc.retention_days in .spine.yaml).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was found and done as JSON.")
def command(dry_run: bool, prune_branches: bool, retention_days: float | None, as_json: bool) -> int:
    """Clean up what finished or dead runs left behind, without ever losing uncommitted work.

    \b
    Removes lane worktrees of finished runs and of runs whose driver died, worktrees and directories
    under spine's worktree root that no run claims, throwaway worktrees of killed gates, stale git
    lock files, and runs older than the retention. A dirty worktree's changes are first committed to
    refs/spine/recovered/...; lane branches with commits not in the target are kept unless
    --prune-branches. Runs being driven are never touched.
    """
    from spine.maintenance.reaper import Reaper
    from spine.workspace.context import resolve_context

    ctx = resolve_context()
    days = retention_days if retention_days is not None else ctx.config.gc.retention_days
    reaper = Reaper(ctx, prune_branches=prune_branches, retention_days=days)
    findings = reaper.run(dry_run=dry_run)
    failed = [f for f in findings if f.error]
    if as_json:
        from spine.commands.output import emit, error_entry

        errors = [error_entry(f"{f.kind} {f.subject}: {f.error}", 3) for f in failed]
        return emit(
            {"dryRun": dry_run, "findings": [f.to_json() for f in findings]},
            3 if failed else 0,
            errors=errors,
        )
    if not findings:
        click.echo("nothing to clean up")
        return 0
    kept = [f for f in findings if f.kind == "branch" and f.action == "keep" and not f.error]
    if len(kept) > KEPT_LISTED:
        # Each gc meets the same unlanded branches again: one line for them all, not one each.
        findings = [f for f in findings if f not in kept]
        names = ", ".join(f.subject for f in kept[:KEPT_LISTED])
        click.echo(
            f"keep     {len(kept)} lane branches with commits not in their target ({names}, ...); land "
            "them with `spine promote RUN/LANE` or `spine land RUN`, or delete them with --prune-branches "
            "(`spine gc --json` lists each)"
        )
    for f in findings:
        if f.error:
            click.echo(f"error    {f.kind} {f.subject}: {f.error}")
        elif f.apply is None:
            click.echo(f"{f.action:<8} {f.kind} {f.subject}: {f.reason}")
        elif dry_run:
            click.echo(f"would {f.action} {f.kind} {f.subject} ({f.reason})")
        else:
            click.echo(f"{f.done} ({f.reason})")
    return 3 if failed else 0
