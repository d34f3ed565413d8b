"""The score gate: grade a result file for completeness and consistency.

Completeness asks whether a reader has what they need to act (branch, log, checks, summary, next
action, timestamps). Consistency asks whether the fields agree with each other (a ``succeeded`` lane
whose check failed is inconsistent). The score is 0-100; any inconsistency costs more than any gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from spine.model.result import CheckStatus, LaneResult, LaneStatus, Verdict


@dataclass
class Grade:
    score: int
    gaps: list[str] = field(default_factory=list)
    contradictions: list[str] = field(default_factory=list)


def grade(result: LaneResult) -> Grade:
    """Score one result: 50 points for completeness, 50 for consistency."""
    in_place = result.worktree_path is not None and result.branch is None
    # A lane with attempts that picked none has no branch, worktree or checks of its own: its
    # attempts have them.
    unpicked = bool(result.attempts) and (result.pick is None or result.pick.attempt is None)
    completeness: list[tuple[bool, str]] = [
        (bool(result.objective.strip()), "objective is empty"),
        (result.status.terminal, f"status {result.status.value!r} is not final"),
        (bool(result.sandbox_backend), "sandboxBackend is missing"),
        (
            bool(result.branch) or in_place or unpicked or result.status == LaneStatus.BLOCKED,
            "branch is missing",
        ),
        (
            bool(result.worktree_path)
            or unpicked
            or result.status in (LaneStatus.BLOCKED, LaneStatus.CANCELED),
            "worktreePath is missing",
        ),
        (bool(result.log_path), "logPath is missing"),
        (
            bool(result.validation) or bool(result.acceptance) or unpicked,
            "no validation was recorded (configure checks)",
        ),
        (len(result.summary.split()) >= 3, "summary is not a sentence"),
        (len(result.next_action.split()) >= 3, "nextAction is not a sentence"),
        (bool(result.started_at) and bool(result.completed_at), "startedAt or completedAt is missing"),
        (result.exit_code is not None or result.status != LaneStatus.SUCCEEDED, "exitCode is missing"),
    ]
    gaps = [msg for ok, msg in completeness if not ok]

    contradictions: list[str] = []
    failed_checks = [c.name for c in result.validation if c.status == CheckStatus.FAILED]
    failed_checks += [a.name for a in result.acceptance if a.verdict == Verdict.FAIL]
    missing_evidence = [e.id for e in result.evidence if e.required and not e.found]
    if result.status == LaneStatus.SUCCEEDED:
        if failed_checks:
            contradictions.append(f"status is succeeded but check(s) {', '.join(failed_checks)} failed")
        if result.exit_code not in (0, None):
            contradictions.append(f"status is succeeded but the command exited with {result.exit_code}")
        if result.timed_out:
            contradictions.append("status is succeeded but the command timed out")
        if result.error:
            contradictions.append("status is succeeded but an error is recorded")
        if missing_evidence:
            contradictions.append(
                f"status is succeeded but evidence {', '.join(missing_evidence)} is missing"
            )
        if result.verdict == Verdict.FAIL:
            contradictions.append("status is succeeded but the verdict is FAIL")
    if result.mode and not (result.next_pointer or "").strip():
        contradictions.append("the lane has a mode but no next pointer")
    if (
        result.status == LaneStatus.FAILED
        and not (
            failed_checks
            or missing_evidence
            or result.verdict == Verdict.FAIL
            or result.exit_code not in (0, None)
            or result.timed_out
            or result.error
            or (unpicked and not any(a.status == LaneStatus.SUCCEEDED for a in result.attempts))
        )
        and "setup" not in result.summary
    ):
        contradictions.append("status is failed but nothing in the result failed")
    contradictions += _attempts_contradictions(result)
    if (
        result.iterations
        and result.head_sha
        and result.iterations[-1].head_sha not in (None, result.head_sha)
    ):
        contradictions.append("the last iteration's head is not headSha")
    if result.timed_out != (result.timeout_kind is not None):
        contradictions.append("timedOut and timeoutKind disagree")
    if result.commits and result.head_sha and result.commits[-1].sha != result.head_sha:
        contradictions.append("headSha is not the last commit")
    if result.commits and result.head_sha == result.base_sha:
        contradictions.append("commits are listed but headSha equals baseSha")
    if result.started_at and result.completed_at and _parse(result.completed_at) < _parse(result.started_at):
        contradictions.append("completedAt is before startedAt")

    complete_points = 50 * (len(completeness) - len(gaps)) / len(completeness)
    consistent_points = max(0, 50 - 25 * len(contradictions))
    return Grade(score=round(complete_points + consistent_points), gaps=gaps, contradictions=contradictions)


def _attempts_contradictions(result: LaneResult) -> list[str]:
    """What a lane with attempts can get wrong: a pick that is no attempt, a status that is not the pick's."""
    if not result.attempts:
        return []
    found = []
    pick = result.pick
    picked = next((a for a in result.attempts if pick is not None and a.attempt == pick.attempt), None)
    if pick is not None and pick.attempt is not None and picked is None:
        found.append(f"the pick names attempt {pick.attempt}, which is not among its attempts")
    if picked is not None and picked.status != result.status:
        found.append(
            f"status is {result.status.value} but the picked attempt {picked.attempt} {picked.status.value}"
        )
    if picked is not None and result.head_sha and picked.head_sha and picked.head_sha != result.head_sha:
        found.append("headSha is not the picked attempt's head")
    passed = any(a.status == LaneStatus.SUCCEEDED for a in result.attempts)
    if pick is not None and pick.attempt is None and pick.by == "rule" and passed:
        found.append("an attempt succeeded but the rule picked none")
    return found


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
