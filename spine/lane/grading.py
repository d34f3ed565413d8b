"""Grading a lane that runs under an operator or a mode: its acceptance checks and its evidence.

Called by the validate step. ``run_acceptance`` runs the operator's acceptance checks in the lane's
isolation and records PASS/WARN/FAIL for each; ``grade`` checks the mode's evidence pattern against
what the lane left (files read without following links out of the worktree) and decides the verdict.
The command's exit code alone never makes such a lane count: no evidence means no success. The
lane's status and next pointer are then decided by the outcome classifier like any lane's.
"""

from __future__ import annotations

from collections.abc import Sequence

from spine.base.ids import format_duration
from spine.lane.runtime import LaneOutput, LaneRunner, LaneRuntime
from spine.model.facts import ValidateFacts
from spine.model.modes import ArtifactFact, CheckFact, EvidenceFacts, Finding, evaluate
from spine.model.operators import AcceptanceCheck, OpBinding
from spine.model.result import AcceptanceResult, CheckStatus, EvidenceItem, Verdict


def run_acceptance(
    rt: LaneRuntime, box: LaneRunner | None, binding: OpBinding, out: LaneOutput, why_not: str
) -> list[AcceptanceResult]:
    """Run the binding's acceptance checks through ``box``; without a box none can run (all FAIL)."""
    results: list[AcceptanceResult] = []
    redactor = rt.redactor()
    for check in binding.acceptance:
        if box is None or rt.cancel.is_set():
            why = "the lane was canceled" if rt.cancel.is_set() else why_not
            results.append(not_run(check, why))
            continue
        out.note(f"acceptance {check.name}: {check.command}")
        outcome = box.run(check.command, timeout=check.timeout or rt.lane.spec.timeout, on_output=out)
        ok = outcome.exit_code in check.expect_exit and not outcome.timed_out and not outcome.canceled
        expected = "/".join(str(c) for c in check.expect_exit)
        if ok:
            verdict, summary = Verdict.PASS, f"exit {outcome.exit_code} (expected {expected})"
        else:
            verdict = Verdict.WARN if check.severity == "warn" else Verdict.FAIL
            if outcome.timed_out:
                summary = f"timed out after {format_duration(outcome.duration)}"
            elif outcome.canceled:
                summary = "canceled"
            else:
                last = next((line.strip() for line in reversed(outcome.tail) if line.strip()), "")
                summary = f"exit {outcome.exit_code}, expected {expected}" + (
                    f": {last[:200]}" if last else ""
                )
        results.append(
            AcceptanceResult(
                name=check.name,
                verdict=verdict,
                command=check.command,
                summary=redactor.redact_text(summary),
                exit_code=outcome.exit_code,
                expect_exit=list(check.expect_exit),
                duration_seconds=round(outcome.duration, 3),
                output_tail=[redactor.redact_text(line) for line in outcome.tail[-20:]]
                if verdict == Verdict.FAIL
                else [],
            )
        )
    return results


def not_run(check: AcceptanceCheck, why: str) -> AcceptanceResult:
    return AcceptanceResult(
        name=check.name,
        verdict=Verdict.FAIL,
        command=check.command,
        summary=f"not run: {why}",
        expect_exit=list(check.expect_exit),
    )


def grade(rt: LaneRuntime, validated: ValidateFacts) -> ValidateFacts:
    """``validated`` with the mode's evidence evaluated and the verdict decided."""
    binding = rt.lane.spec.binding
    assert binding is not None
    acceptance = list(validated.acceptance)
    if binding.acceptance and not acceptance:
        acceptance = [not_run(c, "the lane stopped before its checks") for c in binding.acceptance]
    findings = evaluate(binding.evidence, evidence_facts(rt, validated, acceptance))
    evidence = [
        EvidenceItem(
            id=f.rule.id,
            kind=f.rule.kind,
            description=f.rule.what(),
            required=f.rule.required,
            found=f.found,
            detail=rt.redactor().redact_text(f.detail),
            paths=list(f.paths),
        )
        for f in findings
    ]
    return validated.model_copy(
        update={"acceptance": acceptance, "evidence": evidence, "verdict": aggregate(acceptance, findings)}
    )


def changed_files(rt: LaneRuntime) -> list[str]:
    """Files added or changed since the base (committed or not), plus untracked ones."""
    wt = rt.worktree()
    diff = wt.git(
        "diff",
        "--name-only",
        "-z",
        "--no-renames",
        "--no-ext-diff",
        "--no-textconv",
        "--diff-filter=ACMRT",
        rt.lane.base_sha,
        check=False,
    )
    untracked = wt.git("ls-files", "-z", "--others", "--exclude-standard", check=False)
    return list(dict.fromkeys(p for p in (diff.stdout + untracked.stdout).split("\0") if p))


def evidence_facts(
    rt: LaneRuntime, validated: ValidateFacts, acceptance: Sequence[AcceptanceResult]
) -> EvidenceFacts:
    """What the evidence rules may look at, read from the lane's worktree and its facts."""
    root = rt.worktree_path if rt.lane.worktree and rt.worktree_path.is_dir() else None
    changed: list[str] = []
    files: list[str] = []
    if root is not None:
        changed = changed_files(rt)
        listing = rt.worktree().git(
            "ls-files", "-z", "--cached", "--others", "--exclude-standard", check=False
        )
        files = [p for p in listing.stdout.split("\0") if p]
    checks = [CheckFact(v.name, v.command, v.status == CheckStatus.PASSED) for v in validated.checks]
    checks += [CheckFact(a.name, a.command, a.verdict == Verdict.PASS) for a in acceptance]
    artifacts = [ArtifactFact(a.path, a.size, a.stored_at) for a in validated.artifacts]
    return EvidenceFacts(root=root, changed=changed, files=files, artifacts=artifacts, checks=checks)


def aggregate(acceptance: Sequence[AcceptanceResult], findings: Sequence[Finding]) -> Verdict:
    """FAIL if any check failed or required evidence is missing or nothing at all was shown;
    WARN if a check warned or optional evidence is missing; else PASS."""
    if any(a.verdict == Verdict.FAIL for a in acceptance):
        return Verdict.FAIL
    if any(f.rule.required and not f.found for f in findings):
        return Verdict.FAIL
    shown = any(f.found for f in findings) or any(a.verdict == Verdict.PASS for a in acceptance)
    if not shown:
        return Verdict.FAIL
    if any(a.verdict == Verdict.WARN for a in acceptance) or any(not f.found for f in findings):
        return Verdict.WARN
    return Verdict.PASS
