"""Running a lane under an operator or a mode: its spec, its acceptance checks, and a grounded result.

``lane_spec_from_operator`` turns an operator plus inputs into a ``LaneSpec`` (``spine run --op`` and
batch lanes with ``op:`` both use it). During the lane, ``run_acceptance`` runs the acceptance checks
(from the validate step); at the end ``ground_result`` checks the evidence pattern against the lane's
facts and decides PASS/WARN/FAIL, the status and the single-line next pointer. The command's exit
code alone never makes a lane count: no evidence means no success.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spine.base.errors import UsageError
from spine.base.git import git
from spine.base.ids import check_id, format_duration
from spine.base.process import run_process
from spine.model.config import CheckSpec, SpineConfig
from spine.model.modes import (
    ArtifactFact,
    CheckFact,
    EvidenceFacts,
    Finding,
    Mode,
    classify,
    evaluate,
    mode_profile,
    parse_mode,
)
from spine.model.operators import OpBinding, OperatorSpec, pointer, resolve_inputs, substitute
from spine.model.result import AcceptanceResult, CheckStatus, EvidenceItem, LaneResult, LaneStatus, Verdict
from spine.model.state import LaneSpec

if TYPE_CHECKING:
    from spine.lane.steps import LaneRuntime

MODE_NAMES = ", ".join(m.value for m in Mode)


def find_operator(config: SpineConfig, op_id: str) -> OperatorSpec:
    """The configured operator ``op_id``, or a UsageError listing the ones there are."""
    op = config.operator(op_id)
    if op is None:
        known = ", ".join(o.id for o in config.operators)
        raise UsageError(
            f"no operator {op_id!r} in .spine.yaml",
            f"configured operators: {known}"
            if known
            else "declare one under operators: (see docs/operators.md)",
        )
    return op


def parse_mode_name(value: str, *, what: str = "--mode") -> Mode:
    """A Mode from user text, or a UsageError listing the modes."""
    try:
        return Mode(str(parse_mode(value)))
    except ValueError:
        raise UsageError(f"{what}: unknown mode {value!r}", f"modes: {MODE_NAMES} (or 'auto')") from None


def choose_mode(
    config: SpineConfig, objective: str, requested: str | Mode | None, legal: Sequence[Mode] | None = None
) -> tuple[Mode, str, str]:
    """Return (mode, source, reason) for a lane: an explicit request, else the classifier.

    ``legal`` limits the choice to an operator's modes; with one legal mode that mode is taken. With
    no request and no keyword match, an operator falls back to its first mode and a plain lane is an
    error (spine does not guess a mode silently).
    """
    if requested is not None and str(requested).lower() != "auto":
        mode = requested if isinstance(requested, Mode) else parse_mode_name(requested)
        if legal is not None and mode not in legal:
            raise UsageError(
                f"the operator is not legal in mode {mode.value}",
                f"it is legal in {', '.join(m.value for m in legal)}; pick one of those with --mode",
            )
        return mode, "flag", f"{mode.value}: chosen with --mode"
    if legal is not None and len(legal) == 1:
        return legal[0], "operator", f"{legal[0].value}: the only mode the operator is legal in"
    found = classify(objective, config.mode_settings(), among=legal)
    if found.mode is not None:
        return found.mode, "classifier", found.reason
    if legal:
        return legal[0], "operator", f"{legal[0].value}: {found.reason}; the operator's first mode"
    raise UsageError(
        f"cannot classify the objective {objective!r}: {found.reason}",
        f"name the mode with --mode ({MODE_NAMES}); `spine classify` shows the keywords",
    )


def mode_binding(config: SpineConfig, objective: str, requested: str) -> OpBinding:
    """The binding of a plain lane (no operator) run with ``--mode MODE`` or ``--mode auto``."""
    mode, source, reason = choose_mode(config, objective, requested)
    profile = mode_profile(mode, config.mode_settings())
    return OpBinding(
        mode=mode,
        mode_source=source,  # type: ignore[arg-type]
        mode_reason=reason,
        evidence=list(profile.evidence),
        stop_rule=profile.stop_rule,
        env={"SPINE_MODE": mode.value},
    )


def lane_spec_from_operator(
    config: SpineConfig,
    op_id: str,
    inputs: Mapping[str, object] | None = None,
    *,
    objective: str | None = None,
    lane_id: str | None = None,
    mode: str | Mode | None = None,
    base: str | None = None,
    backend: str | None = None,
    timeout: float | None = None,
    idle_timeout: float | None = None,
    stall_timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    checks: Iterable[CheckSpec] = (),
    artifacts: Iterable[str] = (),
    needs: Iterable[str] = (),
    commit_in_place: bool = False,
    keep_worktree: bool = False,
) -> LaneSpec:
    """Build the LaneSpec of one run of operator ``op_id``; inputs are validated here, before anything runs.

    ``timeout`` overrides the operator's timebox (an operator run is always timeboxed); ``checks`` and
    ``artifacts`` add to the operator's. Raises UsageError for an unknown operator, a bad input or a
    mode in which the operator is not legal.
    """
    op = find_operator(config, op_id)
    values = resolve_inputs(op, dict(inputs or {}))
    text = (objective or "").strip() or _default_objective(op, values)
    chosen, source, reason = choose_mode(config, text, mode, legal=op.modes)
    profile = mode_profile(chosen, config.mode_settings())
    extra_evidence = [
        rule.model_copy(update={"glob": [substitute(g, values, quote=False) for g in rule.glob]})
        for rule in op.evidence
    ]
    outputs = [substitute(g, values, quote=False) for g in op.outputs]
    binding_env = dict(op.env)
    binding_env.update({f"SPINE_INPUT_{name.upper()}": value for name, value in values.items()})
    binding_env.update({"SPINE_OPERATOR": op.id, "SPINE_MODE": chosen.value})
    binding = OpBinding(
        operator=op.id,
        mode=chosen,
        mode_source=source,  # type: ignore[arg-type]
        mode_reason=reason,
        inputs=values,
        acceptance=[
            check.model_copy(update={"command": substitute(check.command, values, quote=True)})
            for check in op.acceptance
        ],
        evidence=[*profile.evidence, *extra_evidence],
        outputs=outputs,
        failure_paths=op.failure_paths,
        next=op.next,
        stop_rule=profile.stop_rule,
        env=binding_env,
    )
    extra_artifacts = [a for a in artifacts if a not in outputs]
    return LaneSpec(
        id=check_id("lane id", lane_id or op.id),
        objective=text,
        command=op.script(values),
        base=base,
        backend=backend,
        timeout=timeout if timeout is not None else op.timebox,
        idle_timeout=idle_timeout if idle_timeout is not None else config.idle_timeout,
        stall_timeout=stall_timeout
        if stall_timeout is not None
        else (op.stall_timeout if op.stall_timeout is not None else config.stall_timeout),
        env=dict(env or {}),
        checks=list(checks),
        artifacts=[*outputs, *extra_artifacts],
        needs=list(needs),
        commit_in_place=commit_in_place,
        keep_worktree=keep_worktree,
        op=binding.as_data(),
    )


def _default_objective(op: OperatorSpec, values: Mapping[str, str]) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in values.items() if v)
    return f"{op.name} ({shown})" if shown else op.name


# --- during the lane -----------------------------------------------------------------------------


def run_acceptance(rt: LaneRuntime) -> None:
    """Run the binding's acceptance checks in the worktree and record PASS/WARN/FAIL for each.

    Called by the validate step. When the command did not succeed the checks are not run and count
    as FAIL: acceptance was not shown.
    """
    binding = rt.lane.spec.binding
    if binding is None or not binding.acceptance:
        return
    ex = rt.lane.facts.get("execute") or {}
    command_ok = ex.get("exitCode") == 0 and not ex.get("timedOut") and not ex.get("canceled")
    results: list[dict[str, Any]] = []
    out = rt.output()
    try:
        env = rt.lane_env()
        for check in binding.acceptance:
            if not command_ok or rt.cancel.is_set():
                why = "the command did not succeed" if not command_ok else "the lane was canceled"
                results.append(_not_run(check.name, check.command, check.expect_exit, why))
                continue
            out.note(f"acceptance {check.name}: {check.command}")
            outcome = run_process(
                ["/bin/sh", "-c", check.command],
                cwd=rt.worktree,
                env=env,
                timeout=check.timeout or rt.lane.spec.timeout,
                on_output=out,
                cancel=rt.cancel,
            )
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
                    summary=summary,
                    exit_code=outcome.exit_code,
                    expect_exit=list(check.expect_exit),
                    duration_seconds=round(outcome.duration, 3),
                ).model_dump(mode="json", by_alias=True)
            )
    finally:
        out.close()
    rt.lane.facts["acceptance"] = results


def _not_run(name: str, command: str, expect_exit: list[int], why: str) -> dict[str, Any]:
    return AcceptanceResult(
        name=name, verdict=Verdict.FAIL, command=command, summary=f"not run: {why}", expect_exit=expect_exit
    ).model_dump(mode="json", by_alias=True)


# --- at the end ----------------------------------------------------------------------------------


def changed_files(worktree: Path, base_sha: str) -> list[str]:
    """Files added or changed since ``base_sha`` (committed or not), plus untracked ones."""
    diff = git(
        "diff",
        "--name-only",
        "-z",
        "--no-renames",
        "--diff-filter=ACMRT",
        base_sha,
        cwd=worktree,
        check=False,
    )
    untracked = git("ls-files", "-z", "--others", "--exclude-standard", cwd=worktree, check=False)
    return list(dict.fromkeys(p for p in (diff.stdout + untracked.stdout).split("\0") if p))


def evidence_facts(rt: LaneRuntime, result: LaneResult, acceptance: list[AcceptanceResult]) -> EvidenceFacts:
    """What the evidence rules may look at, read from the lane's worktree and result."""
    wt = Path(result.worktree_path) if result.worktree_path else None
    changed: list[str] = []
    files: list[str] = []
    if wt is not None and wt.is_dir():
        changed = changed_files(wt, result.base_sha)
        listing = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=wt, check=False)
        files = [p for p in listing.stdout.split("\0") if p]
    checks = [CheckFact(v.name, v.command, v.status == CheckStatus.PASSED) for v in result.validation]
    checks += [CheckFact(a.name, a.command, a.verdict == Verdict.PASS) for a in acceptance]
    artifacts = [ArtifactFact(a.path, a.size, a.stored_at) for a in result.artifacts]
    return EvidenceFacts(root=wt, changed=changed, files=files, artifacts=artifacts, checks=checks)


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


def failure_kind(result: LaneResult, facts: Mapping[str, Any]) -> str | None:
    """Classify why a lane did not succeed: the key used in ``failure_paths`` (None: it succeeded)."""
    if result.error:
        return "error"
    if result.status == LaneStatus.CANCELED:
        return "canceled"
    if (facts.get("setup") or {}).get("failed"):
        return "setup_failed"
    if result.timeout_kind == "wall":
        return "timeout"
    if result.timeout_kind in ("idle", "stall"):
        return "stall"
    if result.exit_code not in (0, None):
        return "command_failed"
    if any(v.status == CheckStatus.FAILED for v in result.validation) or any(
        a.verdict == Verdict.FAIL for a in result.acceptance
    ):
        return "check_failed"
    if any(e.required and not e.found for e in result.evidence) or result.verdict == Verdict.FAIL:
        return "missing_evidence"
    if result.status == LaneStatus.SUCCEEDED:
        return None
    return "command_failed"


def ground_result(rt: LaneRuntime, result: LaneResult) -> LaneResult:
    """Check acceptance and evidence for a lane with a mode; return the result with status and next pointer grounded."""
    binding = rt.lane.spec.binding
    if binding is None:
        return result  # build_result already made next_pointer from next_action
    facts = rt.lane.facts
    acceptance = [AcceptanceResult.model_validate(a) for a in facts.get("acceptance") or []]
    if binding.acceptance and not acceptance:
        why = (
            "the lane stopped before its checks"
            if result.status != LaneStatus.CANCELED
            else "the lane was canceled"
        )
        acceptance = [
            AcceptanceResult.model_validate(_not_run(c.name, c.command, c.expect_exit, why))
            for c in binding.acceptance
        ]
    findings = evaluate(binding.evidence, evidence_facts(rt, result, acceptance))
    evidence = [
        EvidenceItem(
            id=f.rule.id,
            kind=f.rule.kind,
            description=f.rule.what(),
            required=f.rule.required,
            found=f.found,
            detail=f.detail,
            paths=list(f.paths),
        )
        for f in findings
    ]
    verdict = aggregate(acceptance, findings)
    if result.status != LaneStatus.SUCCEEDED:
        verdict = Verdict.FAIL
    status = result.status
    summary = result.summary
    if status == LaneStatus.SUCCEEDED:
        mode_name = binding.mode.value if binding.mode else "mode"
        summary = summary.replace("; no checks configured", "")
        if acceptance:
            summary += "; acceptance: " + ", ".join(f"{a.name} {a.verdict.value}" for a in acceptance)
        found = [f.rule.id for f in findings if f.found]
        missing = [f.rule.id for f in findings if not f.found and f.rule.required]
        optional = [f.rule.id for f in findings if not f.found and not f.rule.required]
        if found:
            summary += f"; {mode_name} evidence found: {', '.join(found)}"
        if missing:
            summary += f"; {mode_name} evidence missing: {', '.join(missing)}"
        if optional:
            summary += f"; optional evidence missing: {', '.join(optional)}"
        if verdict == Verdict.FAIL:
            status = LaneStatus.FAILED
            if not found and not any(a.verdict == Verdict.PASS for a in acceptance):
                summary += "; no evidence was produced, so the lane does not count"
    graded = result.model_copy(
        update={
            "status": status,
            "summary": summary,
            "operator": binding.operator,
            "mode": binding.mode.value if binding.mode else None,
            "mode_source": binding.mode_source,
            "inputs": dict(binding.inputs) if binding.operator else None,
            "acceptance": acceptance,
            "evidence": evidence,
            "verdict": verdict,
        }
    )
    missing_rules = [f for f in findings if not f.found and f.rule.required]
    next_pointer = _next_pointer(rt, graded, missing_rules, acceptance)
    return graded.model_copy(update={"next_pointer": next_pointer, "next_action": next_pointer})


def _next_pointer(
    rt: LaneRuntime, result: LaneResult, missing: list[Finding], acceptance: list[AcceptanceResult]
) -> str:
    binding = rt.lane.spec.binding
    assert binding is not None
    spec = rt.lane.spec
    failed_check = next((a.name for a in acceptance if a.verdict == Verdict.FAIL), None) or next(
        (v.name for v in result.validation if v.status == CheckStatus.FAILED), ""
    )
    fields = {
        "op": binding.operator or "",
        "mode": binding.mode.value if binding.mode else "",
        "run_id": result.run_id,
        "lane_id": result.lane_id,
        "branch": result.branch or "",
        "worktree": result.worktree_path or "",
        "log": result.log_path,
        "check": failed_check,
        "missing": ", ".join(f.rule.what() for f in missing),
        "timebox": format_duration(spec.timeout) if spec.timeout else "none",
        "base_sha": result.base_sha,
    }
    kind = failure_kind(result, rt.lane.facts)
    if kind is None:
        text = (pointer(binding.next, fields) if binding.next else "") or result.next_action
        return " ".join(text.split())
    configured = binding.failure_paths.for_kind(kind)
    if configured and pointer(configured, fields):
        text = pointer(configured, fields)
    elif kind == "timeout":
        text = f"stopped by the timebox ({fields['timebox']}): {binding.stop_rule or 're-scope or raise --timeout'}"
    elif kind == "stall":
        stall = spec.stall_timeout or spec.idle_timeout
        how = f"for {format_duration(stall)}" if stall else "too long"
        text = f"stopped: no progress {how}; {binding.stop_rule or 'find what it waits on'}"
    elif kind == "check_failed" and failed_check:
        command = next((a.command for a in acceptance if a.name == failed_check), None) or next(
            (v.command for v in result.validation if v.name == failed_check), ""
        )
        text = f"reproduce the failing check {failed_check}: cd {result.worktree_path} && {command}"
    elif kind == "missing_evidence":
        what = fields["missing"] or "evidence"
        text = f"produce the missing evidence ({what}) and run the lane again"
    else:
        text = result.next_action
    text = " ".join(text.split())
    return f"{text} (debug packet: spine debug {result.run_id}/{result.lane_id})"
