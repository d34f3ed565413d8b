"""Lanes with attempts in a run: stopping the other attempts once one passed, cancels that name the
lane, and overriding the pick (``spine pick``); see docs/attempts.md.

The attempts themselves are lanes like any other (the drive loop and its schedulers run them); the
lane they are attempts of compares them in its own step (``spine.lane.attempts``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from spine.base.errors import UsageError
from spine.base.ids import now_iso
from spine.model.facts import CancelRequest, PairAgreement
from spine.model.result import AttemptFigures, LaneResult, LaneStatus, Pick
from spine.model.state import LaneState, RunState
from spine.workspace.context import ExecutionContext
from spine.workspace.store import RunStore


def with_attempts(run: RunState, lane_ids: Iterable[str]) -> list[str]:
    """``lane_ids`` with every lane with attempts among them followed by its attempts."""
    out: list[str] = []
    for lane_id in lane_ids:
        out.append(lane_id)
        lane = run.lanes.get(lane_id)
        if lane is not None:
            out += [a for a in lane.spec.attempts if a not in out]
    return list(dict.fromkeys(out))


def stop_other_attempts(run: RunState, lane_id: str) -> list[str]:
    """After attempt ``lane_id`` ended: when it passed and its lane stops on a pass, record a cancel
    on every other unfinished attempt of that lane and return them."""
    lane = run.lanes[lane_id]
    group_id = lane.spec.attempt_of
    if group_id is None or lane.status != LaneStatus.SUCCEEDED or group_id not in run.lanes:
        return []
    group = run.lanes[group_id]
    if not group.spec.stop_on_pass:
        return []
    stopped = []
    for other in group.spec.attempts:
        state = run.lanes.get(other)
        if other == lane_id or state is None or state.complete or state.facts.cancel is not None:
            continue
        state.facts.cancel = CancelRequest(
            requested_at=now_iso(), because=f"attempt {lane.spec.attempt} passed every check (--stop-on-pass)"
        )
        stopped.append(other)
    return stopped


def group_of(run: RunState, lane_id: str) -> LaneState:
    """Lane ``lane_id`` of ``run``, which must be a lane with attempts; else a UsageError."""
    lane = run.lanes.get(lane_id)
    if lane is None:
        raise UsageError(f"run {run.run_id} has no lane {lane_id!r}", f"its lanes: {', '.join(run.lanes)}")
    if lane.spec.attempt_of is not None:
        raise UsageError(
            f"lane {lane_id} is an attempt of lane {lane.spec.attempt_of}",
            f"name the lane itself: {run.run_id}/{lane.spec.attempt_of}",
        )
    if not lane.spec.is_group:
        raise UsageError(
            f"lane {run.run_id}/{lane_id} has no attempts",
            'run a lane with attempts with: spine run --attempts 3 "OBJECTIVE" -- COMMAND',
        )
    return lane


@dataclass(frozen=True)
class Comparison:
    """The attempts of a lane side by side (``spine compare``)."""

    run_id: str
    lane_id: str
    rule: str
    figures: list[AttemptFigures]
    pick: Pick | None
    pairs: list[PairAgreement]
    rule_pick: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "laneId": self.lane_id,
            "rule": self.rule,
            "compared": self.pick is not None,
            "pick": self.pick.model_dump(mode="json", by_alias=True) if self.pick else None,
            "rulePick": self.rule_pick,
            "attempts": [f.model_dump(mode="json", by_alias=True) for f in self.figures],
            "agreement": [p.model_dump(mode="json", by_alias=True) for p in self.pairs],
        }


def comparison(ctx: ExecutionContext, run: RunState, lane_id: str) -> Comparison:
    """The attempts of lane ``lane_id`` side by side, and its pick once it has one.

    A compared lane answers from its record; a lane whose attempts are still running is measured
    now (its unfinished attempts show only their status). Writes nothing.
    """
    from spine.lane.attempts import measure

    lane = group_of(run, lane_id)
    facts = lane.facts.attempts
    rule = lane.spec.pick or ctx.config.pick
    if facts is not None:
        return Comparison(
            run.run_id, lane_id, rule, list(facts.figures), facts.pick, list(facts.pairs), facts.rule_pick
        )
    figures, pairs = measure(ctx, run, lane)
    return Comparison(
        run.run_id,
        lane_id,
        rule,
        figures,
        None,
        [PairAgreement(a=a, b=b, files=f, lines=ln) for a, b, f, ln in pairs],
    )


def pick(ctx: ExecutionContext, run_id: str, lane_id: str, attempt: int) -> LaneResult:
    """Make attempt ``attempt`` the pick of lane RUN/LANE (``spine pick``) and rewrite its result.

    Holds the run's driver lock (``RunBusy``, exit 3, while a driver works on the run). Refuses a
    lane that has not compared its attempts yet, a number that is no attempt of it, and a lane that
    was promoted already.
    """
    from spine.lane.attempts import pick_by_hand, write_group_result

    store = RunStore(ctx.state, run_id)
    with store.driver_lock():
        run = store.load()
        lane = group_of(run, lane_id)
        facts = lane.facts.attempts
        if facts is None or not lane.complete:
            raise UsageError(
                f"lane {run_id}/{lane_id} has not compared its attempts yet ({lane.status.value})",
                f"let the run finish (`spine resume {run_id}`), then pick",
            )
        numbers = [f.attempt for f in facts.figures]
        if attempt not in numbers:
            raise UsageError(
                f"lane {run_id}/{lane_id} has no attempt {attempt}",
                f"its attempts are {', '.join(map(str, numbers))}; see `spine compare {run_id}/{lane_id}`",
            )
        path = ctx.state.result_file(run_id, lane_id)
        if path.is_file():
            landed = LaneResult.model_validate_json(path.read_text(encoding="utf-8")).promotion
            if landed is not None:
                raise UsageError(
                    f"lane {run_id}/{lane_id} was promoted already (onto {landed.target}); a new pick "
                    "would not take that back",
                    "revert the landed commits on the target first if another attempt should land",
                )
        facts.pick = pick_by_hand(lane, attempt)
        result = write_group_result(ctx, run, lane, lane.backend)
        lane.status = result.status
        if lane.facts.result is not None:
            lane.facts.result = lane.facts.result.model_copy(
                update={"status": result.status.value, "next_action": result.next_action}
            )
        store.save(run)
        store.event("picked", lane_id, attempt=attempt, by="user")
    return result
