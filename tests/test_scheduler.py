"""The schedulers are pure functions of run.json: what may fire, given what is done and in flight."""

from __future__ import annotations

from spine.drive.scheduler import (
    BLOCK,
    CANCEL,
    DependencyScheduler,
    LinearScheduler,
    OnlyLanes,
    scheduler_for,
)
from spine.model.facts import CancelRequest
from spine.model.result import LaneStatus
from spine.model.state import STEPS, LaneSpec, LaneState, RunState


def make_run(
    lanes: dict[str, list[str]], jobs: int = 2, fail_fast: bool = False, kind: str = "batch"
) -> RunState:
    return RunState(
        run_id="r1",
        created_at="2026-01-01T00:00:00Z",
        kind=kind,
        base_ref="main",
        base_sha="0" * 40,
        target_ref="main",
        target_sha="0" * 40,
        jobs=jobs,
        fail_fast=fail_fast,
        lanes={
            lane_id: LaneState(
                spec=LaneSpec(id=lane_id, objective=lane_id, command="true", needs=needs),
                backend="local-worktree",
                base_ref="main",
                base_sha="0" * 40,
            )
            for lane_id, needs in lanes.items()
        },
    )


def finish(run: RunState, lane_id: str, status: LaneStatus) -> None:
    lane = run.lanes[lane_id]
    lane.steps_done = list(STEPS)
    lane.status = status


def test_dependency_scheduler_starts_independent_lanes_up_to_jobs() -> None:
    run = make_run({"a": [], "b": [], "c": [], "d": ["a"]}, jobs=2)
    assert DependencyScheduler().ready(run) == {("a", "create_worktree"), ("b", "create_worktree")}
    assert DependencyScheduler(jobs=3).ready(run) == {
        ("a", "create_worktree"),
        ("b", "create_worktree"),
        ("c", "create_worktree"),
    }


def test_lanes_in_flight_keep_their_slot_between_steps() -> None:
    run = make_run({"a": [], "b": [], "c": []}, jobs=2)
    run.lanes["a"].steps_done = ["create_worktree", "setup"]
    run.lanes["b"].current_step = "execute"
    # a continues, b is busy, c must wait: two lanes are at work already.
    assert DependencyScheduler().ready(run) == {("a", "execute")}


def test_needs_wait_for_success_then_start() -> None:
    run = make_run({"a": [], "b": ["a"]}, jobs=4)
    assert DependencyScheduler().ready(run) == {("a", "create_worktree")}
    finish(run, "a", LaneStatus.SUCCEEDED)
    assert DependencyScheduler().ready(run) == {("b", "create_worktree")}


def test_failed_or_canceled_need_blocks_and_blocked_propagates() -> None:
    run = make_run({"a": [], "b": ["a"], "c": ["b"], "d": []}, jobs=1)
    run.lanes["d"].current_step = "execute"
    finish(run, "a", LaneStatus.FAILED)
    # blocking takes no slot, even though d holds the only one
    assert DependencyScheduler().ready(run) == {("b", BLOCK)}
    finish(run, "b", LaneStatus.BLOCKED)
    assert DependencyScheduler().ready(run) == {("c", BLOCK)}
    run2 = make_run({"a": [], "b": ["a"]})
    finish(run2, "a", LaneStatus.CANCELED)
    assert DependencyScheduler().ready(run2) == {("b", BLOCK)}


def test_fail_fast_cancels_unstarted_lanes_and_lets_running_ones_finish() -> None:
    run = make_run({"a": [], "b": [], "c": [], "d": ["a"]}, jobs=2, fail_fast=True)
    finish(run, "a", LaneStatus.FAILED)
    run.lanes["b"].steps_done = ["create_worktree"]
    assert DependencyScheduler().ready(run) == {("b", "setup"), ("c", CANCEL), ("d", BLOCK)}
    run.fail_fast = False
    assert DependencyScheduler().ready(run) == {("b", "setup"), ("c", "create_worktree"), ("d", BLOCK)}


def test_cancel_request_wins_over_block() -> None:
    run = make_run({"a": [], "b": ["a"]})
    finish(run, "a", LaneStatus.FAILED)
    run.lanes["b"].facts.cancel = CancelRequest(requested_at="now")
    assert DependencyScheduler().ready(run) == {("b", CANCEL)}


def test_complete_run_has_nothing_ready() -> None:
    run = make_run({"a": [], "b": ["a"]})
    finish(run, "a", LaneStatus.SUCCEEDED)
    finish(run, "b", LaneStatus.SUCCEEDED)
    assert DependencyScheduler().ready(run) == set()
    assert LinearScheduler().ready(run) == set()


def test_linear_scheduler_returns_at_most_one_in_batch_order() -> None:
    run = make_run({"z": [], "a": []}, jobs=4)
    assert LinearScheduler().ready(run) == {("z", "create_worktree")}
    run.lanes["z"].current_step = "create_worktree"
    assert LinearScheduler().ready(run) == set()
    run.lanes["z"].current_step = None
    run.lanes["z"].steps_done = ["create_worktree"]
    assert LinearScheduler().ready(run) == {("z", "setup")}


def test_scheduler_for_kind_and_only_lanes() -> None:
    assert isinstance(scheduler_for(make_run({"a": []}, kind="run")), LinearScheduler)
    assert isinstance(scheduler_for(make_run({"a": []})), DependencyScheduler)
    run = make_run({"a": [], "b": []})
    assert OnlyLanes(DependencyScheduler(), {"b"}).ready(run) == {("b", "create_worktree")}


def test_scheduler_does_not_change_the_run() -> None:
    run = make_run({"a": [], "b": ["a"], "c": []}, fail_fast=True)
    finish(run, "a", LaneStatus.FAILED)
    before = run.model_dump_json()
    DependencyScheduler().ready(run)
    LinearScheduler().ready(run)
    assert run.model_dump_json() == before
