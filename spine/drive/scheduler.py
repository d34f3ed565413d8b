"""Schedulers: pure functions of the run state that say which (lane, step) pairs may fire now.

A scheduler never touches disk or processes; the drive loop asks it, fires what it returns, records
the outcomes, and asks again. Changing the scheduler never changes the loop.

Besides the lane steps (``spine.model.state.STEPS``) a scheduler may return two pseudo-steps for a lane that
never started: ``block`` (a lane it needs ended without succeeding) and ``cancel`` (a cancel was
requested, or ``--fail-fast`` stopped the run). The loop fires them like any step: they record why the
lane did not run and write its result file through the normal ``finalize``.

A lane with attempts (best of N) runs no command: it gets its steps (``GROUP_STEPS``: ``compare``,
``finalize``) once every one of its attempts has a result, whatever the result, and takes no slot.
Its attempts are lanes like any other; they do not count as failures for ``fail_fast`` (the lane
they are attempts of does).
"""

from __future__ import annotations

from typing import Protocol

from spine.model.result import LaneStatus
from spine.model.state import LaneState, RunState

Ready = set[tuple[str, str]]

BLOCK = "block"
CANCEL = "cancel"
PSEUDO_STEPS: tuple[str, ...] = (BLOCK, CANCEL)


class Scheduler(Protocol):
    def ready(self, run: RunState) -> Ready:
        """Every (lane id, step) that may start now, given what is in flight and what is done."""
        ...


def started(lane: LaneState) -> bool:
    """True once the lane's first step began (it holds a slot until it is complete)."""
    return bool(lane.steps_done) or lane.current_step is not None


def in_flight(lane: LaneState) -> bool:
    """True while the lane has started and has no result yet."""
    return started(lane) and not lane.complete


def unmet_needs(run: RunState, lane: LaneState) -> dict[str, LaneStatus]:
    """The lane's needs that ended without succeeding, with their status (blocking causes)."""
    causes: dict[str, LaneStatus] = {}
    for need in lane.spec.needs:
        other = run.lanes.get(need)
        if other is not None and other.complete and other.status != LaneStatus.SUCCEEDED:
            causes[need] = other.status
    return causes


def needs_succeeded(run: RunState, lane: LaneState) -> bool:
    return all(
        need in run.lanes and run.lanes[need].complete and run.lanes[need].status == LaneStatus.SUCCEEDED
        for need in lane.spec.needs
    )


def first_failure(run: RunState) -> str | None:
    """The first lane (in batch order) that failed, if any; an attempt's failure is its lane's to judge."""
    return next(
        (
            lid
            for lid, lane in run.lanes.items()
            if lane.status == LaneStatus.FAILED and lane.spec.attempt_of is None
        ),
        None,
    )


def attempts_ended(run: RunState, lane: LaneState) -> bool:
    """True when every attempt of lane with attempts ``lane`` has a result."""
    return all(run.lanes[a].complete for a in lane.spec.attempts if a in run.lanes)


class DependencyScheduler:
    """Every lane whose ``needs`` all succeeded, at most ``jobs`` lanes in flight at once.

    A lane in flight (started, no result yet) keeps its slot between steps, so ``jobs`` bounds the
    number of lanes at work, not just the number of steps. Lanes already started always get their
    next step; new lanes start in batch order while slots are free. A lane whose dependency ended
    without succeeding gets ``block``; a lane with a recorded cancel request, or any unstarted lane
    once a lane failed under ``fail_fast``, gets ``cancel`` (an explicit cancel wins over a block,
    a block over ``fail_fast``). Neither takes a slot.
    """

    def __init__(self, jobs: int | None = None) -> None:
        self.jobs = jobs

    def ready(self, run: RunState) -> Ready:
        jobs = max(1, self.jobs if self.jobs is not None else run.jobs)
        ready: Ready = set()
        busy = 0
        for lane_id, lane in run.lanes.items():
            if lane.spec.is_group:  # runs nothing: compared once its attempts ended; takes no slot
                if not lane.complete and lane.current_step is None and attempts_ended(run, lane):
                    ready.add((lane_id, lane.next_step or "finalize"))
                continue
            if not in_flight(lane):
                continue
            busy += 1
            if lane.current_step is None and lane.next_step is not None:
                ready.add((lane_id, lane.next_step))
        stop = run.fail_fast and first_failure(run) is not None
        free = jobs - busy
        for lane_id, lane in run.lanes.items():
            if started(lane) or lane.complete or lane.spec.is_group:
                continue
            if lane.facts.cancel is not None:
                ready.add((lane_id, CANCEL))
            elif unmet_needs(run, lane):
                ready.add((lane_id, BLOCK))
            elif stop:
                ready.add((lane_id, CANCEL))
            elif free > 0 and needs_succeeded(run, lane):
                ready.add((lane_id, "create_worktree"))
                free -= 1
        return ready


class LinearScheduler:
    """At most one step at a time: the first ready step in batch order (lanes run one after another)."""

    def ready(self, run: RunState) -> Ready:
        if any(lane.current_step is not None for lane in run.lanes.values()):
            return set()
        candidates = DependencyScheduler(jobs=1).ready(run)
        if not candidates:
            return set()
        order = {lane_id: index for index, lane_id in enumerate(run.lanes)}
        return {min(candidates, key=lambda pair: (order[pair[0]], pair[1]))}


class OnlyLanes:
    """Another scheduler's answer limited to some lanes (``spine cancel`` finishes only those)."""

    def __init__(self, inner: Scheduler, lanes: set[str]) -> None:
        self.inner = inner
        self.lanes = lanes

    def ready(self, run: RunState) -> Ready:
        return {pair for pair in self.inner.ready(run) if pair[0] in self.lanes}


def scheduler_for(run: RunState, jobs: int | None = None) -> Scheduler:
    """The scheduler a run was created with: linear for ``spine run``, dependency-aware for batches
    and for a ``spine run`` with attempts (its attempts run side by side, ``jobs`` at a time)."""
    if run.kind == "run" and not any(lane.spec.is_group for lane in run.lanes.values()):
        return LinearScheduler()
    return DependencyScheduler(jobs)
