"""The outcome classifier, case by case: facts in, status, kind and cause out; no git, no processes.

Each row is a lane's facts as the steps record them. The rendered summary and next action come from
the same outcome, so they are checked here too.
"""

from __future__ import annotations

from typing import Any

import pytest

from spine.lane.outcome import FailureKind, classify
from spine.lane.render import Where, build_group_result, build_result, next_action, summary
from spine.model.facts import (
    AttemptsFacts,
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
    AttemptFigures,
    CheckStatus,
    Commit,
    DiffStat,
    EvidenceItem,
    Invariant,
    Iteration,
    LaneStatus,
    Pick,
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
    return Validation(
        name=name, status=status, command=f"run {name}", summary=status.value, output_tail=tail or []
    )


MODE = {"mode": "PIPELINE", "evidence": []}


def passed(n: int, *, changed: bool = True, ok: bool = False) -> Iteration:
    """Pass ``n`` of a repair loop: its check failed (or passed, ``ok``)."""
    status = CheckStatus.PASSED if ok else CheckStatus.FAILED
    return Iteration(
        iteration=n, exit_code=0, head_sha=f"{n}" * 40, changed=changed, checks=[check("unit", status)]
    )


def figure(n: int, status: LaneStatus, kind: str | None = None, size: int = 1) -> AttemptFigures:
    return AttemptFigures(
        attempt=n,
        lane_id=f"l.{n}",
        status=status,
        failure_kind=kind,
        branch=f"spine/r1/l.{n}",
        score=100,
        files_changed=1,
        insertions=size,
        deletions=size,
        checks_passed=1 if status == LaneStatus.SUCCEEDED else 0,
        checks_total=1,
        summary=f"attempt {n} {status.value}",
    )


THREE = [
    figure(1, LaneStatus.FAILED, "check_failed"),
    figure(2, LaneStatus.SUCCEEDED),
    figure(3, LaneStatus.FAILED, "check_failed"),
]
GROUP = {"attempts": ["l.1", "l.2", "l.3"], "pick": "smallest"}
LOOP_FAILED = ValidateFacts(checks=[check("unit", CheckStatus.FAILED, ["E assert 1 == 2"])])

CASES: list[tuple[str, LaneFacts, dict[str, Any], LaneStatus, FailureKind | None, str, str]] = [
    (
        "succeeded",
        LaneFacts(
            execute=OK_EXEC,
            commit=ONE_COMMIT,
            validation=ValidateFacts(checks=[check("t", CheckStatus.PASSED)]),
        ),
        {},
        LaneStatus.SUCCEEDED,
        None,
        "checks passed: t",
        "spine promote r1/l",
    ),
    (
        "setup failed",
        LaneFacts(
            setup=SetupFacts(failed=ProcessRun(command="npm ci", exit_code=1)),
            execute=ExecuteFacts(skipped="setup failed"),
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
                acceptance=[
                    AcceptanceResult(name="smoke", verdict=Verdict.FAIL, command="./smoke", summary="exit 1")
                ]
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
                    EvidenceItem(
                        id="manifest",
                        kind="manifest",
                        description="a run manifest",
                        found=False,
                        detail="none",
                    )
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
        LaneFacts(
            execute=OK_EXEC, halt=Halt(step="commit", error="git add -A failed: fatal: index.lock exists")
        ),
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
                invariants=[
                    Invariant(
                        name="worktree", status="violated", detail="the worktree's .git file was rewritten"
                    )
                ]
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
            commit=CommitFacts(
                invariants=[Invariant(name="head", status="violated", detail="HEAD left the lane branch")]
            ),
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
        "repair loop: the checks passed on iteration 2",
        LaneFacts(
            execute=OK_EXEC,
            commit=ONE_COMMIT,
            validation=ValidateFacts(checks=[check("unit", CheckStatus.PASSED)]),
            iterations=[passed(1), passed(2, ok=True)],
        ),
        {"iterations": 3},
        LaneStatus.SUCCEEDED,
        None,
        "they passed on iteration 2 of at most 3",
        "spine promote r1/l",
    ),
    (
        "repair loop: out of iterations",
        LaneFacts(
            execute=OK_EXEC, commit=ONE_COMMIT, validation=LOOP_FAILED, iterations=[passed(1), passed(2)]
        ),
        {"iterations": 2},
        LaneStatus.FAILED,
        FailureKind.CHECK_FAILED,
        "check unit failed after 2 iterations (the most it may take)",
        "reproduce the failing check unit",
    ),
    (
        "repair loop: a pass changed nothing",
        LaneFacts(
            execute=OK_EXEC,
            commit=ONE_COMMIT,
            validation=LOOP_FAILED,
            iterations=[passed(1), passed(2, changed=False)],
        ),
        {"iterations": 5},
        LaneStatus.FAILED,
        FailureKind.CHECK_FAILED,
        "after 2 iterations: iteration 2 changed nothing",
        "its 2 iterations are listed",
    ),
    (
        "repair loop: the command failed in a later pass",
        LaneFacts(
            execute=ExecuteFacts(exit_code=2, tail=["crash"]), commit=ONE_COMMIT, iterations=[passed(1)]
        ),
        {"iterations": 3},
        LaneStatus.FAILED,
        FailureKind.COMMAND_FAILED,
        "command exited with code 2",
        "last line: 'crash'",
    ),
    (
        "attempts: the rule picked the one that passed",
        LaneFacts(
            attempts=AttemptsFacts(
                figures=THREE,
                pick=Pick(
                    attempt=2,
                    lane_id="l.2",
                    rule="smallest",
                    reason="attempt 2 is the only attempt that passed every check",
                ),
                rule_pick=2,
            )
        ),
        GROUP,
        LaneStatus.SUCCEEDED,
        None,
        "attempt 2 of 3 picked by the rule smallest: attempt 2 is the only attempt that passed every check",
        "then land it with `spine promote r1/l`; `spine compare r1/l` shows every attempt",
    ),
    (
        "attempts: none passed",
        LaneFacts(
            attempts=AttemptsFacts(
                figures=[
                    figure(1, LaneStatus.FAILED, "check_failed"),
                    figure(2, LaneStatus.FAILED, "timeout"),
                ],
                pick=Pick(attempt=None, rule="smallest", reason="none of the 2 attempts succeeded"),
            )
        ),
        GROUP,
        LaneStatus.FAILED,
        FailureKind.ATTEMPTS_FAILED,
        "none of the 2 attempts succeeded; attempts: 1 failed (check_failed), 2 failed (timeout)",
        "`spine resume r1 --retry --lane l`, or take one anyway with `spine pick r1/l N`",
    ),
    (
        "attempts: every attempt was blocked",
        LaneFacts(
            attempts=AttemptsFacts(
                figures=[figure(1, LaneStatus.BLOCKED, "blocked"), figure(2, LaneStatus.BLOCKED, "blocked")],
                pick=Pick(attempt=None, rule="smallest", reason="none of the 2 attempts succeeded"),
            )
        ),
        GROUP,
        LaneStatus.BLOCKED,
        FailureKind.BLOCKED,
        "attempts: 1 blocked (blocked), 2 blocked (blocked)",
        "spine compare r1/l",
    ),
    (
        "attempts: a failing attempt picked by hand",
        LaneFacts(
            attempts=AttemptsFacts(
                figures=THREE,
                pick=Pick(
                    attempt=3,
                    lane_id="l.3",
                    rule="smallest",
                    by="user",
                    reason="attempt 3 was picked by hand",
                ),
                rule_pick=2,
            )
        ),
        GROUP,
        LaneStatus.FAILED,
        FailureKind.CHECK_FAILED,
        "attempt 3 of 3 picked by hand",
        "land it anyway with `spine promote r1/l --force`",
    ),
    (
        "attempts: spine could not compare them",
        LaneFacts(halt=Halt(step="compare", error="git diff failed")),
        GROUP,
        LaneStatus.FAILED,
        FailureKind.ERROR,
        "step compare failed: git diff failed",
        "spine resume r1 --retry --lane l",
    ),
    (
        "an attempt stopped because another one passed",
        LaneFacts(
            cancel=CancelRequest(requested_at="t", because="attempt 1 passed every check (--stop-on-pass)"),
            not_started=NotStarted(reason="canceled"),
        ),
        {"attempt_of": "g", "attempt": 2},
        LaneStatus.CANCELED,
        FailureKind.CANCELED,
        "not started: attempt 1 passed every check",
        "spine resume r1 --retry --lane l",
    ),
    (
        "driver died",
        LaneFacts(
            execute=OK_EXEC,
            driver_died=DriverDied(step="commit", recovered_ref="refs/spine/recovered/r1/l-1"),
        ),
        {},
        LaneStatus.CANCELED,
        FailureKind.DRIVER_DIED,
        "its driver died during step commit",
        "refs/spine/recovered/r1/l-1",
    ),
]


@pytest.mark.parametrize(
    ("case", "facts", "spec", "status", "kind", "said", "next_step"), CASES, ids=[c[0] for c in CASES]
)
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


def test_the_result_of_a_lane_with_attempts_is_its_picks_under_its_own_id() -> None:
    facts = LaneFacts(
        attempts=AttemptsFacts(
            figures=THREE,
            pick=Pick(attempt=2, lane_id="l.2", rule="smallest", reason="only one passed"),
            rule_pick=2,
        )
    )
    state = lane(facts, **GROUP)
    outcome = classify(state.facts, state.spec)
    attempt = lane(
        LaneFacts(
            execute=OK_EXEC,
            commit=ONE_COMMIT,
            validation=ValidateFacts(checks=[check("t", CheckStatus.PASSED)]),
        ),
        attempt_of="l",
        attempt=2,
    ).model_copy(update={"branch": "spine/r1/l.2"})
    picked = build_result(attempt, classify(attempt.facts, attempt.spec), WHERE)
    assert picked.attempt == 2 and picked.attempt_of == "l"
    assert "attempt 2 of lane l" in picked.next_action and "spine promote r1/l`" in picked.next_action
    result = build_group_result(state, outcome, WHERE, picked)
    assert (result.lane_id, result.branch, result.head_sha) == ("l", "spine/r1/l.2", "a" * 40)
    assert result.status == LaneStatus.SUCCEEDED and result.validation == picked.validation
    assert (
        result.pick is not None
        and result.pick.attempt == 2
        and [f.attempt for f in result.attempts] == [1, 2, 3]
    )
    assert result.attempt is None and result.attempt_of is None
    assert "spine promote r1/l`" in result.next_action

    none = lane(
        LaneFacts(
            attempts=AttemptsFacts(figures=THREE[:1], pick=Pick(attempt=None, rule="smallest", reason="no"))
        ),
        **GROUP,
    ).model_copy(update={"branch": None})
    empty = build_group_result(none, classify(none.facts, none.spec), WHERE, None)
    assert empty.branch is None and empty.commits == [] and empty.failure_kind == "attempts_failed"
