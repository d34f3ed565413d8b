"""Schedulers: pure functions of the run state that say which (lane, step) pairs may fire now.

A scheduler never touches disk or processes; the drive loop asks it, fires what it returns, records
the outcomes, and asks again. Changing the scheduler never changes the loop.
"""

from __future__ import annotations

from typing import Protocol

from spine.state import LaneState, RunState

Ready = set[tuple[str, str]]


class Scheduler(Protocol):
    def ready(self, run: RunState) -> Ready:
        """Every (lane id, step) that may start now, given what is in flight and what is done."""
        ...


def _startable(lane: LaneState) -> bool:
    return lane.current_step is None and not lane.complete and lane.next_step is not None


class LinearScheduler:
    """At most one step at a time: the first unfinished lane in order, its next step."""

    def ready(self, run: RunState) -> Ready:
        if any(lane.current_step is not None for lane in run.lanes.values()):
            return set()
        for lane_id, lane in run.lanes.items():
            if _startable(lane):
                step = lane.next_step
                assert step is not None
                return {(lane_id, step)}
        return set()
