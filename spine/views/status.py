"""Views of a run for people and scripts: per-lane status, counts, the batch summary.

Everything here only reads run.json, result files and the driver lock; nothing writes state, so
``spine status`` can be run at any time, from any worktree, while a driver is working.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from spine.base.ids import format_duration
from spine.base.liveness import run_is_driven
from spine.base.text import printable
from spine.drive.runs import exit_code_for, list_run_ids
from spine.drive.scheduler import started
from spine.model.result import LaneResult, LaneStatus
from spine.model.state import LaneState, RunState
from spine.workspace.context import ExecutionContext
from spine.workspace.store import file_stamp, finished_summaries, read_run

STATUS_ORDER = ("succeeded", "failed", "blocked", "canceled", "running", "interrupted", "planned")
COLORS = {
    "succeeded": "green",
    "failed": "red",
    "blocked": "magenta",
    "canceled": "yellow",
    "running": "cyan",
    "interrupted": "yellow",
}


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def load_result_if_any(ctx: ExecutionContext, run_id: str, lane_id: str) -> LaneResult | None:
    path = ctx.state.result_file(run_id, lane_id)
    if not path.is_file():
        return None
    try:
        return LaneResult.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def lane_view(
    ctx: ExecutionContext, run: RunState, lane_id: str, driven: bool, now: datetime
) -> dict[str, Any]:
    """One lane as shown by ``spine status``: status, step, branch, age, duration, next action."""
    lane: LaneState = run.lanes[lane_id]
    result = load_result_if_any(ctx, run.run_id, lane_id) if lane.complete else None
    status = lane.status.value
    step = lane.current_step
    if not lane.complete:
        if driven and started(lane):
            status = "running"
        elif started(lane):
            status = "interrupted"
        else:
            status = "planned"
        step = lane.current_step or (lane.next_step if started(lane) else None)
    begun = parse_time(lane.facts.started_at)
    ended = parse_time(result.completed_at) if result else None
    duration = ((ended or now) - begun).total_seconds() if begun and (ended or started(lane)) else None
    if result:
        summary, next_action = result.summary, result.next_action
    elif status == "running":
        summary = f"in step {step}"
        next_action = f"wait, or follow it with `spine logs {run.run_id} {lane_id} -f`"
    elif status == "interrupted":
        summary = f"interrupted in step {step} (no driver is running)"
        next_action = f"continue with `spine resume {run.run_id}`"
    else:
        waiting = [n for n in lane.spec.needs or lane.spec.attempts if not run.lanes[n].complete]
        summary = f"waiting for {', '.join(waiting)}" if waiting else "not started yet"
        next_action = "wait" if driven else f"start it with `spine resume {run.run_id}`"
    return {
        "id": lane_id,
        "status": status,
        "step": step,
        "branch": lane.branch,
        "worktree": None if (lane.facts.result and lane.facts.result.returned_to_pool) else lane.worktree,
        "needs": list(lane.spec.needs),
        "startedAt": lane.facts.started_at,
        "completedAt": result.completed_at if result else None,
        "ageSeconds": round((now - begun).total_seconds(), 1) if begun else None,
        "durationSeconds": round(duration, 1) if duration is not None else None,
        "summary": summary,
        "nextAction": next_action,
        "resultPath": str(ctx.state.result_file(run.run_id, lane_id)) if result else None,
    }


def run_view(ctx: ExecutionContext, run: RunState) -> dict[str, Any]:
    """A whole run: state, counts per status and every lane's view."""
    driven = run_is_driven(ctx.state.driver_lock(run.run_id))
    now = datetime.now(UTC)
    lanes = [lane_view(ctx, run, lane_id, driven, now) for lane_id in run.lanes]
    counts: dict[str, int] = {}
    for view in lanes:
        counts[view["status"]] = counts.get(view["status"], 0) + 1
    complete = all(lane.complete for lane in run.lanes.values())
    state = "complete" if complete else ("running" if driven else "interrupted")
    return {
        "runId": run.run_id,
        "kind": run.kind,
        "createdAt": run.created_at,
        "state": state,
        "complete": complete,
        "driven": driven,
        "jobs": run.jobs,
        "failFast": run.fail_fast,
        "counts": {k: counts[k] for k in STATUS_ORDER if k in counts},
        "exitCode": exit_code_for((lane.status for lane in run.lanes.values()), run) if complete else None,
        "laneCount": len(lanes),
        "lanes": lanes,
    }


def run_list(ctx: ExecutionContext) -> list[dict[str, Any]]:
    """Every run's view without its lanes, oldest first, as ``spine status`` lists them.

    A finished run is listed from the summary its driver left when it finished
    (``spine.workspace.store.remember_finished``) while run.json is still the file that summary was
    made from and nobody drives the run; only the other runs are read. So the list costs about the
    same with a thousand finished runs as with one.
    """
    remembered = finished_summaries(ctx.state)
    views = []
    for run_id in list_run_ids(ctx):
        known = remembered.get(run_id)
        if (
            known is not None
            and known[0] == file_stamp(ctx.state.run_file(run_id))
            and not run_is_driven(ctx.state.driver_lock(run_id))
        ):
            summary = known[1]
            counts = summary.get("counts", {})
            view = {**summary, "counts": {k: counts[k] for k in STATUS_ORDER if k in counts}}
        else:
            view = run_view(ctx, read_run(ctx.state, run_id))
            view.pop("lanes")
        views.append(view)
    return views


def format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def render_run(view: dict[str, Any], *, color: bool = True, ages: bool = False) -> str:
    """Human text for a run: a head line with counts, then each lane with its branch and next step."""
    total = len(view["lanes"])
    head = (
        f"run {view['runId']} ({view['kind']}, {total} lane{'s' if total != 1 else ''}, "
        f"{view['state']}): {format_counts(view['counts'])}"
    )
    width = max((len(lane["id"]) for lane in view["lanes"]), default=4)
    lines = [click.style(head, bold=True) if color else head]
    for lane in view["lanes"]:
        status = lane["status"].ljust(11)
        if color:
            status = click.style(status, fg=COLORS.get(lane["status"]))
        extra = []
        if ages and lane["ageSeconds"] is not None:
            extra.append(f"started {format_duration(lane['ageSeconds'])} ago")
        if lane["durationSeconds"] is not None:
            extra.append(f"took {format_duration(lane['durationSeconds'])}")
        tail = f"  ({', '.join(extra)})" if extra else ""
        lines.append(f"  {lane['id'].ljust(width)}  {status} {lane['branch'] or '-'}{tail}")
        pad = " " * (width + 4)
        lines.append(f"{pad}{lane['summary']}")
        lines.append(f"{pad}next: {lane['nextAction']}")
    return printable("\n".join(lines))


def print_run_summary(ctx: ExecutionContext, run: RunState, *, as_json: bool) -> int:
    """Print the run summary (text or JSON) on stdout; return the run's exit code."""
    view = run_view(ctx, run)
    if as_json:
        click.echo(json.dumps(view, indent=2))
    else:
        click.echo(render_run(view))
    return exit_code_for((lane.status for lane in run.lanes.values()), run)


def render_run_list(views: list[dict[str, Any]]) -> str:
    """One line per run, for ``spine status`` without a run."""
    if not views:
        return "no runs yet"
    width = max(len(v["runId"]) for v in views)
    rows = []
    for view in views:
        rows.append(
            f"{view['runId'].ljust(width)}  {view['kind'].ljust(5)}  {view['state'].ljust(11)}  "
            f"{view['laneCount']} lane{'s' if view['laneCount'] != 1 else ' '}  {format_counts(view['counts'])}"
        )
    return "\n".join(rows)


def lane_statuses(run: RunState) -> list[LaneStatus]:
    return [lane.status for lane in run.lanes.values()]
