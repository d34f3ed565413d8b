"""One lane's outcome: status, failure kind and cause, from its facts alone.

``classify`` is the only place that decides what happened to a lane. It is a pure function of the
facts the steps recorded (``spine.model.facts.LaneFacts``) and the lane's spec: no git, no files, no
clock. Every text that explains a lane renders its result: the result file's summary and next action
(``spine.lane.render``), the debug packet's hypotheses (``spine.lane.debug``), the closing of a dead
driver's lanes and the operator's failure paths. See docs/adr/0056-one-outcome-classifier.md.

The order of the rules is the order of precedence: a lane that never started says why first; a
step spine could not finish comes next; then what the lane's command did to its worktree (a lane
that broke its own invariants is not believed on anything else); then how the command ended; then
the checks; then, for a lane with a mode, its evidence.

A lane with attempts (best of N) has no command of its own: after the first two rules its outcome
is its pick's (``AttemptsFacts``): the picked attempt's outcome, or, when no attempt passed,
``attempts_failed`` (``blocked`` or ``canceled`` when every attempt was). A lane with a repair loop
is classified by its last pass; the cause says how many passes it took and why the loop stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from spine.base.ids import format_duration
from spine.model.facts import LaneFacts
from spine.model.result import CheckStatus, LaneStatus, Verdict
from spine.model.state import LaneSpec


class FailureKind(StrEnum):
    """Why a lane did not succeed; also the keys of an operator's ``failure_paths``."""

    SETUP_FAILED = "setup_failed"
    COMMAND_FAILED = "command_failed"
    TIMEOUT = "timeout"
    STALL = "stall"
    CHECK_FAILED = "check_failed"
    MISSING_EVIDENCE = "missing_evidence"
    VIOLATION = "violation"
    ERROR = "error"
    CANCELED = "canceled"
    BLOCKED = "blocked"
    DRIVER_DIED = "driver_died"
    ATTEMPTS_FAILED = "attempts_failed"


@dataclass(frozen=True)
class Outcome:
    """What happened to a lane: its status, and for anything but success the kind and the cause."""

    status: LaneStatus
    kind: FailureKind | None = None
    cause: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status == LaneStatus.SUCCEEDED


def classify(facts: LaneFacts, spec: LaneSpec) -> Outcome:
    """The outcome of a lane with these facts; see the module docstring for the order of the rules."""
    if facts.driver_died is not None:
        return Outcome(
            LaneStatus.CANCELED,
            FailureKind.DRIVER_DIED,
            f"its driver died during step {facts.driver_died.step} and never came back",
        )
    if facts.blocked is not None:
        needs = ", ".join(f"{need} {_ended(status)}" for need, status in facts.blocked.needs.items())
        return Outcome(LaneStatus.BLOCKED, FailureKind.BLOCKED, f"a lane it needs did not succeed: {needs}")
    if facts.not_started is not None:
        if facts.not_started.reason == "fail-fast":
            cause = f"lane {facts.not_started.after} failed and the run stops after the first failure"
        else:
            cause = "canceled before it began" + _because(facts)
        return Outcome(LaneStatus.CANCELED, FailureKind.CANCELED, cause)
    if facts.halt is not None:
        return Outcome(
            LaneStatus.FAILED,
            FailureKind.ERROR,
            f"spine could not finish step {facts.halt.step}: {facts.halt.error}",
        )
    if spec.is_group:
        return _group_outcome(facts)
    ex, commit, checks = facts.execute, facts.commit, facts.validation
    if commit is not None and commit.violations:
        return Outcome(LaneStatus.FAILED, FailureKind.VIOLATION, commit.violations[0].detail)
    canceled_checks = checks is not None and any(
        c.status == CheckStatus.SKIPPED and "canceled" in c.summary for c in checks.checks
    )
    if (ex is not None and ex.canceled) or canceled_checks or (facts.cancel is not None and ex is None):
        return Outcome(LaneStatus.CANCELED, FailureKind.CANCELED, "canceled while it ran" + _because(facts))
    if facts.setup is not None and facts.setup.failed is not None:
        failed = facts.setup.failed
        how = "timed out" if failed.timed_out else f"failed (exit {failed.exit_code})"
        return Outcome(LaneStatus.FAILED, FailureKind.SETUP_FAILED, f"setup command {failed.command!r} {how}")
    if ex is not None and ex.timed_out == "wall":
        limit = f" ({format_duration(spec.timeout)})" if spec.timeout else ""
        return Outcome(LaneStatus.FAILED, FailureKind.TIMEOUT, f"the command ran out of its timebox{limit}")
    if ex is not None and ex.timed_out == "stall":
        limit = format_duration(spec.stall_timeout or 0)
        return Outcome(
            LaneStatus.FAILED,
            FailureKind.STALL,
            f"the command neither printed nor changed a file for {limit}",
        )
    if ex is not None and ex.timed_out == "idle":
        limit = format_duration(spec.idle_timeout or 0)
        return Outcome(LaneStatus.FAILED, FailureKind.STALL, f"the command printed nothing for {limit}")
    if ex is not None and ex.exit_code not in (0, None):
        return Outcome(
            LaneStatus.FAILED, FailureKind.COMMAND_FAILED, f"the command exited with code {ex.exit_code}"
        )
    if ex is None or ex.skipped is not None or ex.exit_code is None:
        why = ex.skipped if ex is not None and ex.skipped else "it has no record of the command ending"
        return Outcome(LaneStatus.FAILED, FailureKind.ERROR, f"the command did not run: {why}")
    if checks is not None:
        failed_checks = [c.name for c in checks.checks if c.status == CheckStatus.FAILED]
        failed_checks += [a.name for a in checks.acceptance if a.verdict == Verdict.FAIL]
        if failed_checks:
            plural = "s" if len(failed_checks) > 1 else ""
            return Outcome(
                LaneStatus.FAILED,
                FailureKind.CHECK_FAILED,
                f"check{plural} {', '.join(failed_checks)} failed{repair_loop_end(facts, spec)}",
            )
        missing = [e.id for e in checks.evidence if e.required and not e.found]
        if missing:
            return Outcome(
                LaneStatus.FAILED,
                FailureKind.MISSING_EVIDENCE,
                f"required evidence is missing: {', '.join(missing)}",
            )
        if checks.verdict == Verdict.FAIL:
            return Outcome(
                LaneStatus.FAILED,
                FailureKind.MISSING_EVIDENCE,
                "no evidence was produced, so the lane does not count",
            )
    elif spec.binding is not None and spec.binding.mode is not None:
        return Outcome(LaneStatus.FAILED, FailureKind.ERROR, "its checks and evidence were never evaluated")
    return Outcome(LaneStatus.SUCCEEDED)


def _because(facts: LaneFacts) -> str:
    """Why spine canceled a lane when no person asked (another attempt passed)."""
    return f": {facts.cancel.because}" if facts.cancel is not None and facts.cancel.because else ""


def repair_loop_end(facts: LaneFacts, spec: LaneSpec) -> str:
    """Why a lane's repair loop stopped with failing checks: '' for a lane that runs its command once."""
    if spec.iterations <= 1 or not facts.iterations:
        return ""
    last = facts.iterations[-1]
    passes = f"{last.iteration} iteration{'s' if last.iteration != 1 else ''}"
    if last.iteration > 1 and not last.changed:
        return f" after {passes}: iteration {last.iteration} changed nothing"
    if last.iteration >= spec.iterations:
        return f" after {passes} (the most it may take)"
    return f" after {passes}"


def _group_outcome(facts: LaneFacts) -> Outcome:
    """The outcome of a lane with attempts: its pick's, or why nothing was picked."""
    compared = facts.attempts
    if compared is None:
        return Outcome(LaneStatus.FAILED, FailureKind.ERROR, "its attempts were never compared")
    pick, figures = compared.pick, compared.figures
    if pick.attempt is not None:
        picked = next((f for f in figures if f.attempt == pick.attempt), None)
        if picked is None:
            return Outcome(
                LaneStatus.FAILED,
                FailureKind.ERROR,
                f"it picked attempt {pick.attempt}, which it has no figures of",
            )
        if picked.status == LaneStatus.SUCCEEDED:
            return Outcome(LaneStatus.SUCCEEDED)
        try:
            kind = FailureKind(picked.failure_kind or "error")
        except ValueError:
            kind = FailureKind.ERROR
        return Outcome(
            picked.status, kind, f"the picked attempt {pick.attempt} did not succeed: {picked.summary}"
        )
    statuses = {f.status for f in figures}
    if statuses == {LaneStatus.BLOCKED}:
        return Outcome(LaneStatus.BLOCKED, FailureKind.BLOCKED, "every attempt was blocked")
    if statuses == {LaneStatus.CANCELED}:
        return Outcome(LaneStatus.CANCELED, FailureKind.CANCELED, "every attempt was canceled")
    return Outcome(LaneStatus.FAILED, FailureKind.ATTEMPTS_FAILED, pick.reason)


def _ended(status: str) -> str:
    return {"failed": "failed", "canceled": "was canceled", "blocked": "was blocked"}.get(status, status)
