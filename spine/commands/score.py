"""``spine score RESULT...``: the score gate."""

from __future__ import annotations

from pathlib import Path

import click

from spine.commands.complete import RUN_OR_LANE


@click.command("score")
@click.argument("results", nargs=-1, required=True, metavar="RESULT...", shell_complete=RUN_OR_LANE)
@click.option(
    "--threshold",
    type=click.IntRange(0, 100),
    default=80,
    show_default=True,
    help="Exit 1 when any result scores below this.",
)
@click.option("--json", "as_json", is_flag=True, help="Print grades as JSON.")
def command(results: tuple[str, ...], threshold: int, as_json: bool) -> int:
    """Grade result files (paths, or RUN/LANE) for completeness and consistency, 0-100."""
    from pydantic import ValidationError

    from spine.base.errors import UsageError
    from spine.model.result import LaneResult
    from spine.model.score import grade

    graded = []
    for item in results:
        path = Path(item)
        if not path.is_file() and "/" in item and not item.endswith(".json"):
            from spine.workspace.context import resolve_context

            run_id, lane_id = item.split("/", 1)
            path = resolve_context().state.result_file(run_id, lane_id)
        if not path.is_file():
            raise UsageError(f"no result file at {item!r}", "pass a result.json path or RUN/LANE")
        try:
            result = LaneResult.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError as exc:
            raise UsageError(f"{path} is not a spine result file: {exc.errors()[0]['msg']}") from None
        graded.append((str(path), grade(result)))
    below = [p for p, g in graded if g.score < threshold]
    if as_json:
        payload = [
            {"path": p, "score": g.score, "gaps": g.gaps, "contradictions": g.contradictions}
            for p, g in graded
        ]
        from spine.commands.output import emit

        return emit({"threshold": threshold, "passed": not below, "results": payload}, 1 if below else 0)
    else:
        for path_text, g in graded:
            mark = "ok  " if g.score >= threshold else "LOW "
            click.echo(f"{mark}{g.score:3d}  {path_text}")
            for msg in g.contradictions:
                click.echo(f"        inconsistent: {msg}")
            for msg in g.gaps:
                click.echo(f"        missing: {msg}")
    return 1 if below else 0
