"""A lane's result as text: the block `spine run` and `spine show` print."""

from __future__ import annotations

import click

from spine.base.ids import format_duration
from spine.base.text import printable
from spine.model.result import LaneResult


def _worktree_shown(result: LaneResult) -> str:
    if result.worktree_removed_at:
        saved = f"; uncommitted work saved to {result.recovery_ref}" if result.recovery_ref else ""
        return f"removed by spine gc at {result.worktree_removed_at}{saved}"
    if not result.worktree_kept:
        return "returned to the worktree pool; the work is on the branch"
    return result.worktree_path or "-"


def render_result(result: LaneResult, result_path: str | None = None) -> str:
    """A short human summary of one lane result."""
    head = f"lane {result.run_id}/{result.lane_id}: {result.status.value}"
    rows = [
        ("objective", result.objective),
        ("branch", result.branch or "-"),
        ("worktree", _worktree_shown(result)),
    ]
    if result.duration_seconds is not None:
        rows.append(("duration", format_duration(result.duration_seconds)))
    for check in result.validation:
        rows.append((f"check {check.name}", f"{check.status.value}: {check.summary}"))
    if result.mode:
        rows.append(("mode", f"{result.mode} ({result.mode_source})"))
    if result.operator:
        shown = ", ".join(f"{k}={v}" for k, v in (result.inputs or {}).items())
        rows.append(("operator", result.operator + (f" ({shown})" if shown else "")))
    for accepted in result.acceptance:
        rows.append((f"accept {accepted.name}", f"{accepted.verdict.value}: {accepted.summary}"))
    for item in result.evidence:
        state = "found" if item.found else ("MISSING" if item.required else "missing (optional)")
        rows.append((f"evidence {item.id}", f"{state}: {item.detail}"))
    if result.verdict:
        rows.append(("verdict", result.verdict.value))
    if result.artifacts:
        rows.append(("artifacts", ", ".join(a.path for a in result.artifacts)))
    for it in result.iterations:
        checks = ", ".join(f"{c.name} {c.status.value}" for c in it.checks) or "-"
        change = f"+{it.diff_stat.insertions} -{it.diff_stat.deletions}" if it.diff_stat else "no change"
        rows.append((f"iteration {it.iteration}", f"{change}; checks: {checks}"))
    if result.attempt is not None:
        rows.append(("attempt", f"{result.attempt} of lane {result.attempt_of}"))
    if result.attempts:
        from spine.model.attempts import change_text  # its models only for a lane with attempts
    for f in result.attempts:
        mark = " (picked)" if result.pick is not None and result.pick.attempt == f.attempt else ""
        rows.append(
            (
                f"attempt {f.attempt}",
                f"{f.status.value}{mark}: {f.checks_passed}/{f.checks_total} checks, "
                f"{change_text(f)} ({f.lane_id})",
            )
        )
    if result.pick is not None:
        rows.append(("pick", result.pick.reason))
    rows += [("log", result.log_path)]
    if result_path:
        rows.append(("result", result_path))
    if result.debug_packet:
        rows.append(("debug", f"spine debug {result.run_id}/{result.lane_id}"))
    rows += [("summary", result.summary), ("next", result.next_action)]
    width = max(len(k) for k, _ in rows)
    return printable(head + "\n" + "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows))


def print_result(result: LaneResult, result_path: str, *, as_json: bool) -> None:
    """Print ``result`` on stdout: the result file as JSON, or the text block with a coloured head."""
    if as_json:
        click.echo(result.to_json(), nl=False)
        return
    color = {"succeeded": "green", "failed": "red", "canceled": "yellow"}.get(result.status.value)
    text = render_result(result, result_path)
    first, _, rest = text.partition("\n")
    click.echo(click.style(first, fg=color, bold=True) + "\n" + rest)
