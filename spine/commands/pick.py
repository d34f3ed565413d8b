"""``spine pick RUN/LANE N``: make attempt N the pick of a lane with attempts."""

from __future__ import annotations

import click

from spine.commands.complete import RUN_OR_LANE


@click.command("pick")
@click.argument("lane_ref", metavar="RUN/LANE", shell_complete=RUN_OR_LANE)
@click.argument("attempt", type=click.IntRange(min=1), metavar="N")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the lane's rewritten result file (the spine JSON envelope).",
)
def command(lane_ref: str, attempt: int, as_json: bool) -> int:
    """Make attempt N the pick of lane RUN/LANE, over its pick rule's choice.

    \b
    The lane's result is rewritten for attempt N (its branch, checks and status), so
    `spine promote RUN/LANE` lands that attempt. A lane that was promoted already keeps its pick.
    The rule's own choice stays on record (`spine compare RUN/LANE`).

    \b
    Example:
      spine pick 20261121-193012-a3f9/fix-parser 3
    """
    from spine import api
    from spine.base.errors import UsageError
    from spine.drive.runs import parse_ref
    from spine.views.result import print_result

    ctx = api.context()
    run_id, lane_id = parse_ref(ctx, lane_ref)
    if lane_id is None:
        raise UsageError(
            f"pick needs RUN/LANE, got {lane_ref!r}", f"see the lanes with `spine status {run_id}`"
        )
    result = api.pick(ctx, run_id, lane_id, attempt)
    path = ctx.state.result_file(run_id, lane_id)
    if as_json:
        import json

        from spine.commands.output import emit

        return emit(json.loads(path.read_text(encoding="utf-8")))  # the result file itself
    print_result(result, str(path), as_json=False)
    return 0
