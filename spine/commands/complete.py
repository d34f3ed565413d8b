"""Shell completion of spine's arguments: run ids, RUN/LANE, lane ids, backends, operators, modes.

click asks these when the shell does (``_SPINE_COMPLETE=bash_complete`` and friends; docs/completion.md).
They only read: the state directory's run folders and run.json files, the backend registry, and
``.spine.yaml`` for operator ids. They never write state, never resolve refs, and answer nothing
rather than fail: a completion that raised would print a traceback into the user's prompt.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

Completer = Callable[[click.Context, click.Parameter, str], list[CompletionItem]]


def _quietly(complete: Callable[[click.Context, str], list[CompletionItem]]) -> Completer:
    def run(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        try:
            return complete(ctx, incomplete)
        except Exception:  # never disturb the shell: no candidates instead
            return []

    return run


def _state() -> tuple[Path, Any] | None:
    from spine.workspace.context import locate_state

    return locate_state()


def _run_ids() -> list[str]:
    found = _state()
    if found is None:
        return []
    runs = found[1].runs
    if not runs.is_dir():
        return []
    return sorted(p.name for p in runs.iterdir() if not p.name.startswith(".") and (p / "run.json").is_file())


def _lanes(run_id: str) -> dict[str, str]:
    """Lane id -> its status, from run.json (read as plain JSON: no model is built)."""
    found = _state()
    if found is None or not run_id or "/" in run_id:
        return {}
    path = found[1].run_file(run_id)
    if not path.is_file():
        return {}
    lanes = json.loads(path.read_text(encoding="utf-8")).get("lanes", {})
    return {lane_id: str(lane.get("status", "")) for lane_id, lane in lanes.items() if isinstance(lane, dict)}


def _runs(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(rid) for rid in _run_ids() if rid.startswith(incomplete)]


def _run_or_lane(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    """RUN, or RUN/LANE once the run id is typed up to its slash."""
    if "/" in incomplete:
        run_id, _, lane = incomplete.partition("/")
        return [
            CompletionItem(f"{run_id}/{lane_id}", help=status)
            for lane_id, status in _lanes(run_id).items()
            if lane_id.startswith(lane)
        ]
    items = _runs(ctx, incomplete)
    if len(items) == 1:  # one run left: offer its lanes too, so the shell goes on past the slash
        run_id = items[0].value
        items += [CompletionItem(f"{run_id}/{lane_id}", help=s) for lane_id, s in _lanes(run_id).items()]
    return items


def _lane_of_run(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    """A lane id of the run given earlier on the line (``spine logs RUN LANE``, ``--lane ID``)."""
    # While an option's value is being completed click leaves the arguments before it unassigned.
    leftover = [arg for arg in ctx.args if not arg.startswith("-")]
    run_ref = str(ctx.params.get("run_ref") or (leftover[0] if leftover else ""))
    return [
        CompletionItem(lane_id, help=status)
        for lane_id, status in _lanes(run_ref.partition("/")[0]).items()
        if lane_id.startswith(incomplete)
    ]


def _backends(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    from spine.base.backend_names import known_backend_names

    return [CompletionItem(name) for name in known_backend_names() if name.startswith(incomplete)]


def _operators(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    from spine.model.config import CONFIG_FILE, load_config

    found = _state()
    if found is None:
        return []
    config = load_config(found[0] / CONFIG_FILE)
    return [CompletionItem(op.id, help=op.name) for op in config.operators if op.id.startswith(incomplete)]


def _modes(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    from spine.model.modes import Mode

    names = [m.value for m in Mode] + ["auto"]
    return [CompletionItem(name) for name in names if name.lower().startswith(incomplete.lower())]


RUN = _quietly(_runs)
RUN_OR_LANE = _quietly(_run_or_lane)
LANE_OF_RUN = _quietly(_lane_of_run)
BACKEND = _quietly(_backends)
OPERATOR = _quietly(_operators)
MODE = _quietly(_modes)


def _file(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(incomplete, type="file")]  # the shell completes file names itself


FILE: Completer = _file
