"""The outcome classifier, case by case: facts in, status, kind and cause out; no git, no processes.

Each row is a lane's facts as the steps record them. The rendered summary and next action come from
the same outcome, so they are checked here too.
"""

from __future__ import annotations

from typing import Any

import pytest

from spine.lane.outcome import FailureKind, classify
from spine.lane.render import Where, build_result, next_action, summary
from spine.model.facts import (
    Blocked,
    CancelRequest,
    CommitFacts,
    DriverDied,
    ExecuteFacts,
    Halt,
    LaneFacts,
    LeftoverProcess,
    NotStarted,
    ProcessRun,
    SetupFacts,
    ValidateFacts,
)
from spine.model.result import (
    AcceptanceResult,
    CheckStatus,
    Commit,
    DiffStat,
    EvidenceItem,
    Invariant,
    LaneStatus,
    Validation,
    Verdict,
)
from spine.model.state import LaneSpec, LaneState

WHERE = Where(run_id="r1", log_path="/state/runs/r1/lanes/l/output.log", backend="local-worktree")
OK_EXEC = ExecuteFacts(exit_code=0, duration_seconds=3.0, started_at="2026-01-01T00:00:00Z")
ONE_COMMIT = CommitFacts(
    commits=[Commit(sha="a" * 40, subject="x", made_by="spine")],
    head_sha="a" * 40,
    diff_stat=DiffStat(files_changed=1, insertions=2, deletions=0),
    invariants=[Invariant(name="worktree", status="ok", detail="ok")],
)


def lane(facts: LaneFacts, **spec: Any) -> LaneState:
    return LaneState(
        spec=LaneSpec(id="l", objective="do it", command="make", **spec),
        backend="local-worktree",
        base_ref="main",
        base_sha="b" * 40,
        branch="spine/r1/l",
        worktree="/wt/r1/l",
        facts=facts,
    )


def check(name: str, status: CheckStatus, tail: list[str] | None = None) -> Validation:
    return Validation(name=name, status=status, command=f"run {name}", summary=status.value, output_tail=tail or [])


MODE = {"mode": "PIPELINE", "evidence": []}

CASES: list[tuple[str, LaneFacts, dict[str, Any], LaneStatus, FailureKind | None, str, str]] = [
    (
        "succeeded",
        LaneFacts(execute=OK_EXEC, commit=ONE_COMMIT, validation=ValidateFacts(checks=[check("t", CheckStatus.PASSED)])),
        {},
        LaneStatus.SUCCEEDED,
        None,
        "checks passed: t",
        "spine promote r1/l",
    ),
    (
        "setup failed",
        LaneFacts(
            setup=SetupFacts(failed=ProcessRun(command="npm ci", exit_code=1)), execute=ExecuteFacts(skipped="setup failed")
        ),
        {},
        LaneStatus.FAILED,
        FailureKind.SETUP_FAILED,
        "setup command 'npm ci' failed (exit 1)",
        "spine resume r1 --retry --lane l",
    ),
    (
        "command failed",
        LaneFacts(execute=ExecuteFacts(exit_code=3, tail=["boom"]), commit=ONE_COMMIT),
        {},
        LaneStatus.FAILED,
        FailureKind.COMMAND_FAILED,
        "command exited with code 3",
        "last line: 'boom'",
    ),
    (
        "timed out (wall)",
        LaneFacts(execute=ExecuteFacts(exit_code=143, timed_out="wall", duration_seconds=60.0)),
        {"timeout": 60.0},
        LaneStatus.FAILED,
        FailureKind.TIMEOUT,
        "timed out after 1m (wall-clock limit)",
        "raise --timeout",
    ),
    (
        "timed out (idle)",
        LaneFacts(execute=ExecuteFacts(exit_code=143, timed_out="idle")),
        {"idle_timeout": 30.0},
        LaneStatus.FAILED,
        FailureKind.STALL,
        "printed nothing for 30s",
        "raise --idle-timeout",
    ),
    (
        "timed out (stall)",
        LaneFacts(execute=ExecuteFacts(exit_code=143, timed_out="stall")),
        {"stall_timeout": 45.0},
        LaneStatus.FAILED,
        FailureKind.STALL,
        "no progress (no output, no file changes) for 45s",
        "raise --stall-timeout",
    ),
    (
        "check failed",
        LaneFacts(
            execute=OK_EXEC,
            commit=ONE_COMMIT,
            validation=ValidateFacts(checks=[check("unit", CheckStatus.FAILED, ["E assert 1 == 2"])]),
        ),
        {},
        LaneStatus.FAILED,
        FailureKind.CHECK_FAILED,
        "but check unit failed",
        "reproduce the failing check unit: cd /wt/r1/l && run unit",
    ),
    (
        "acceptance failed",
        LaneFacts(
            execute=OK_EXEC,
            commit=ONE_COMMIT,
            validation=ValidateFacts(
                acceptance=[AcceptanceResult(name="smoke", verdict=Verdict.FAIL, command="./smoke", summary="exit 1")]
            ),
        ),
        {},
        LaneStatus.FAILED,
        FailureKind.CHECK_FAILED,
        "check smoke failed",
        "reproduce the failing check smoke",
    ),
    (
        "evidence missing",
        LaneFacts(
            execute=OK_EXEC,
            commit=ONE_COMMIT,
            validation=ValidateFacts(
                evidence=[
                    EvidenceItem(id="manifest", kind="manifest", description="a run manifest", found=False, detail="none")
                ],
                verdict=Verdict.FAIL,
            ),
        ),
        {"op": MODE},
        LaneStatus.FAILED,
        FailureKind.MISSING_EVIDENCE,
        "evidence missing: manifest",
        "produce the missing evidence (a run manifest)",
    ),
    (
        "spine could not finish a step",
        LaneFacts(execute=OK_EXEC, halt=Halt(step="commit", error="git add -A failed: fatal: index.lock exists")),
        {},
        LaneStatus.FAILED,
        FailureKind.ERROR,
        "spine could not finish the lane: step commit failed",
        "fix the cause above, then run the lane again with `spine resume r1 --retry --lane l`",
    ),
    (
        "the lane broke its worktree",
        LaneFacts(
            execute=OK_EXEC,
            commit=CommitFacts(
                invariants=[Invariant(name="worktree", status="violated", detail="the worktree's .git file was rewritten")]
            ),
        ),
        {},
        LaneStatus.FAILED,
        FailureKind.VIOLATION,
        "the lane is not trusted: the worktree's .git file was rewritten",
        "spine gc` saves what is left of its worktree",
    ),
    (
        "a violation wins over a failed command",
        LaneFacts(
            execute=ExecuteFacts(exit_code=1),
            commit=CommitFacts(invariants=[Invariant(name="head", status="violated", detail="HEAD left the lane branch")]),
        ),
        {},
        LaneStatus.FAILED,
        FailureKind.VIOLATION,
        "HEAD left the lane branch",
        "spine resume r1 --retry --lane l",
    ),
    (
        "canceled while running",
        LaneFacts(cancel=CancelRequest(requested_at="t"), execute=ExecuteFacts(exit_code=143, canceled=True)),
        {},
        LaneStatus.CANCELED,
        FailureKind.CANCELED,
        "canceled",
        "spine resume r1 --retry --lane l",
    ),
    (
        "canceled before it began",
        LaneFacts(cancel=CancelRequest(requested_at="t"), not_started=NotStarted(reason="canceled")),
        {},
        LaneStatus.CANCELED,
        FailureKind.CANCELED,
        "not started: canceled",
        "spine resume r1 --retry --lane l",
    ),
    (
        "not started after a failure (--fail-fast)",
        LaneFacts(not_started=NotStarted(reason="fail-fast", after="a")),
        {},
        LaneStatus.CANCELED,
        FailureKind.CANCELED,
        "lane a failed and the run stops after the first failure",
        "spine resume r1 --retry",
    ),
    (
        "blocked",
        LaneFacts(blocked=Blocked(needs={"a": "failed"}, root={"a": "failed"})),
        {"needs": ["a"]},
        LaneStatus.BLOCKED,
        FailureKind.BLOCKED,
        "not started: it needs a, and a failed",
        "fix lane a (failed) first",
    ),
    (
        "driver died",
        LaneFacts(execute=OK_EXEC, driver_died=DriverDied(step="commit", recovered_ref="refs/spine/recovered/r1/l-1")),
        {},
        LaneStatus.CANCELED,
        FailureKind.DRIVER_DIED,
        "its driver died during step commit",
        "refs/spine/recovered/r1/l-1",
    ),
]


@pytest.mark.parametrize(("case", "facts", "spec", "status", "kind", "said", "next_step"), CASES, ids=[c[0] for c in CASES])
def test_the_outcome_of_each_kind_of_lane(
    case: str,
    facts: LaneFacts,
    spec: dict[str, Any],
    status: LaneStatus,
    kind: FailureKind | None,
    said: str,
    next_step: str,
) -> None:
    state = lane(facts, **spec)
    outcome = classify(state.facts, state.spec)
    assert (outcome.status, outcome.kind) == (status, kind)
    assert outcome.succeeded == (status == LaneStatus.SUCCEEDED)
    assert said in summary(state, outcome, WHERE)
    assert next_step in next_action(state, outcome, WHERE)
    result = build_result(state, outcome, WHERE)
    assert result.status == status and result.failure_kind == (kind.value if kind else None)


def test_processes_spine_stopped_are_said_in_the_summary_and_do_not_fail_the_lane() -> None:
    facts = LaneFacts(
        execute=OK_EXEC.model_copy(update={"stopped": [LeftoverProcess(pid=7, argv="sleep 100")]}),
        commit=ONE_COMMIT,
    )
    state = lane(facts)
    outcome = classify(state.facts, state.spec)
    assert outcome.succeeded
    assert "spine stopped 1 process the command left running" in summary(state, outcome, WHERE)


def test_an_operators_failure_path_is_the_next_action() -> None:
    op = {"operator": "ingest", "mode": "PIPELINE", "failurePaths": {"command_failed": "see {log} for {op}"}}
    state = lane(LaneFacts(execute=ExecuteFacts(exit_code=2)), op=op)
    outcome = classify(state.facts, state.spec)
    assert outcome.kind == FailureKind.COMMAND_FAILED
    assert next_action(state, outcome, WHERE) == f"see {WHERE.log_path} for ingest"


def test_a_lane_with_a_mode_that_was_never_graded_does_not_count() -> None:
    state = lane(LaneFacts(execute=OK_EXEC, commit=ONE_COMMIT), op=MODE)
    assert classify(state.facts, state.spec).kind == FailureKind.ERROR
