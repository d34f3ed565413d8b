"""Rendering a lane's outcome: its summary, its next action and the result file.

Everything here is a pure function of the lane's state, its outcome (``spine.lane.outcome``) and a
few names (run id, log path, backend). The next action is always a step that works: a command to
run, a branch to review, a file to read; tests run them. A lane with attempts renders its pick
(``build_group_result``); a lane with a repair loop lists its passes (``iterations``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spine.base.ids import format_duration, now_iso
from spine.lane.outcome import FailureKind, Outcome, repair_loop_end
from spine.model.facts import LaneFacts
from spine.model.result import AttemptFigures, CheckStatus, LaneResult, LaneStatus, Verdict
from spine.model.state import LaneState

_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class Where:
    """The names a rendering needs besides the lane's state."""

    run_id: str
    log_path: str
    backend: str
    in_place: bool = False
    target: str | None = None

    def retry(self, lane_id: str) -> str:
        return f"`spine resume {self.run_id} --retry --lane {lane_id}`"

    def promote(self, label: str, *more: str) -> str:
        """The promote command for lane ``label``; it names a branch to land on when the run's target
        is a commit (the checkout had a detached HEAD), since promote lands only on a branch."""
        into = " --into BRANCH" if self.target is not None and _COMMIT.fullmatch(self.target) else ""
        return f"`spine promote {label}{into}{''.join(' ' + m for m in more)}`"


def describe_changes(facts: LaneFacts, branch: str | None, in_place: bool) -> str:
    """'2 files changed (+9 -3) in 1 commit on BRANCH', 'no changes', or why nothing was committed."""
    commit = facts.commit
    if commit is None or commit.diff_stat is None:
        if in_place and (commit is None or commit.skipped):
            return "changes not committed (in-place backend)"
        return "nothing committed"
    if not commit.commits:
        return "no changes"
    stat = commit.diff_stat
    files = f"{stat.files_changed} file{'s' if stat.files_changed != 1 else ''} changed (+{stat.insertions} -{stat.deletions})"
    own = sum(1 for c in commit.commits if c.made_by == "command")
    count = f"{len(commit.commits)} commit{'s' if len(commit.commits) != 1 else ''}"
    if own:
        count += f", {own} made by the command"
    return f"{files} in {count} on {branch}"


MEANWHILE = "changed meanwhile, by you or the command"
"""How the ``repository`` invariant of a lane that may go on starts when it names changes (ADR 0067)."""


def _changed_meanwhile(facts: LaneFacts) -> str | None:
    """What changed in the shared repository while the command ran that may have been you (named by
    the ``repository`` invariant, ADR 0067), for the summary of a lane that succeeded."""
    commit = facts.commit
    for inv in commit.invariants if commit is not None else []:
        if inv.name == "repository" and inv.status == "ok" and inv.detail.startswith(MEANWHILE):
            return inv.detail
    return None


def summary(lane: LaneState, outcome: Outcome, where: Where) -> str:
    """One or two sentences: what happened, and what the lane changed."""
    facts, spec = lane.facts, lane.spec
    if spec.is_group and facts.attempts is not None and facts.driver_died is None:
        return _group_summary(lane)
    ex = facts.execute
    seconds = command_seconds(facts)
    took = f" after {format_duration(seconds)}" if ex and seconds is not None else ""
    changes = describe_changes(facts, lane.branch, where.in_place)
    kind = outcome.kind
    rerun = ""
    if ex is not None and ex.rerun_of:
        rerun = f" (it ran a second time after its driver died; the first run's work is at {ex.rerun_of})"
    if outcome.succeeded:
        text = f"command succeeded{took}{rerun}; {changes}"
        checks = facts.validation
        passed = [c.name for c in checks.checks if c.status == CheckStatus.PASSED] if checks else []
        if passed:
            text += f"; checks passed: {', '.join(passed)}"
        elif spec.binding is None:
            text += "; no checks configured"
        if spec.iterations > 1 and facts.iterations:
            last = facts.iterations[-1].iteration
            text += f"; they passed on iteration {last} of at most {spec.iterations}"
        text += _grading(facts)
        if ex is not None and ex.stopped:
            text += f"; spine stopped {_processes(len(ex.stopped))} the command left running"
        meanwhile = _changed_meanwhile(facts)
        if meanwhile:
            text += f"; {meanwhile}"
        if checks is not None and checks.artifact_problems:
            problems = checks.artifact_problems
            more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
            text += f"; artifacts not kept: {'; '.join(problems[:3])}{more}"
        return text
    if kind == FailureKind.BLOCKED and facts.blocked is not None:
        said = {"failed": "failed", "canceled": "was canceled", "blocked": "was blocked"}
        needs, root = facts.blocked.needs, facts.blocked.root
        text = f"not started: it needs {', '.join(needs)}, and " + " and ".join(
            f"{need} {said.get(status, status)}" for need, status in needs.items()
        )
        if set(root) != set(needs):
            text += f" (because {', '.join(f'{k} {said.get(v, v)}' for k, v in root.items())})"
        return text
    if kind == FailureKind.CANCELED and facts.not_started is not None:
        if facts.not_started.reason == "fail-fast":
            return (
                f"not started: lane {facts.not_started.after} failed and the run stops after the first "
                "failure (--fail-fast)"
            )
        if facts.cancel is not None and facts.cancel.because:
            return f"not started: {facts.cancel.because}"
        return "not started: canceled (spine cancel) before it began"
    if kind == FailureKind.DRIVER_DIED and facts.driver_died is not None:
        removed = "; spine gc removed the lane's worktree" if facts.driver_died.worktree_removed else ""
        return f"its driver died during step {facts.driver_died.step}{removed}"
    if kind == FailureKind.ERROR and facts.halt is not None:
        return f"spine could not finish the lane: step {facts.halt.step} failed: {facts.halt.error}"
    if kind == FailureKind.VIOLATION:
        return f"the lane is not trusted: {outcome.cause}; {changes}"
    if kind == FailureKind.CANCELED:
        because = f" ({facts.cancel.because})" if facts.cancel is not None and facts.cancel.because else ""
        return f"canceled{took}{because}; {changes}"
    if kind == FailureKind.SETUP_FAILED and facts.setup is not None and facts.setup.failed is not None:
        failed = facts.setup.failed
        how = "timed out" if failed.timed_out else f"failed (exit {failed.exit_code})"
        return f"setup command {failed.command!r} {how}; the command did not run"
    if kind == FailureKind.TIMEOUT:
        return f"command timed out{took} (wall-clock limit) and was stopped; {changes}"
    if kind == FailureKind.STALL and ex is not None and ex.timed_out == "stall":
        limit = format_duration(spec.stall_timeout or 0)
        return f"command showed no progress (no output, no file changes) for {limit} and was stopped{took}; {changes}"
    if kind == FailureKind.STALL:
        limit = format_duration(spec.idle_timeout or 0)
        return f"command printed nothing for {limit} and was stopped{took}; {changes}"
    if kind == FailureKind.COMMAND_FAILED and ex is not None:
        return f"command exited with code {ex.exit_code}{took}; {changes}"
    if kind == FailureKind.CHECK_FAILED:
        checks = facts.validation
        names = [c.name for c in checks.checks if c.status == CheckStatus.FAILED] if checks else []
        names += [a.name for a in checks.acceptance if a.verdict == Verdict.FAIL] if checks else []
        plural = "s" if len(names) > 1 else ""
        loop = repair_loop_end(facts, spec)
        return (
            f"command succeeded{took} but check{plural} {', '.join(names)} failed{loop}; {changes}"
            + _grading(facts)
        )
    if kind == FailureKind.MISSING_EVIDENCE:
        text = f"command succeeded{took}; {changes}" + _grading(facts)
        checks = facts.validation
        shown = checks is not None and (
            any(e.found for e in checks.evidence) or any(a.verdict == Verdict.PASS for a in checks.acceptance)
        )
        if not shown:
            text += "; no evidence was produced, so the lane does not count"
        return text
    return f"{outcome.cause}; {changes}"


def _group_summary(lane: LaneState) -> str:
    """What a lane with attempts settled on: the pick and its reason, then each attempt's status."""
    from spine.model.attempts import change_text  # its models only for a lane with attempts

    compared = lane.facts.attempts
    assert compared is not None
    pick, figures = compared.pick, compared.figures
    each = ", ".join(
        f"{f.attempt} {f.status.value}" + (f" ({f.failure_kind})" if f.failure_kind else "") for f in figures
    )
    picked = _picked(lane)
    if picked is None:
        return f"{pick.reason}; attempts: {each}"
    how = "picked by hand" if pick.by == "user" else f"picked by the rule {pick.rule}"
    on = f" on {picked.branch}" if picked.branch else ""
    return (
        f"attempt {picked.attempt} of {len(figures)} {how}: {pick.reason}; its change: {change_text(picked)}{on}; "
        f"attempts: {each}"
    )


def _picked(lane: LaneState) -> AttemptFigures | None:
    compared = lane.facts.attempts
    if compared is None or compared.pick.attempt is None:
        return None
    return next((f for f in compared.figures if f.attempt == compared.pick.attempt), None)


def _group_next_action(lane: LaneState, where: Where) -> str:
    run_id, lane_id = where.run_id, lane.spec.id
    label = f"{run_id}/{lane_id}"
    picked = _picked(lane)
    compare = f"`spine compare {label}` shows every attempt"
    if picked is not None and picked.status == LaneStatus.SUCCEEDED:
        if picked.branch and (picked.files_changed or picked.insertions + picked.deletions):
            return (
                f"review branch {picked.branch} (git log -p {lane.base_sha[:12]}..{picked.branch}), "
                f"then land it with {where.promote(label)}; {compare}"
            )
        return f"nothing to land: the picked attempt changed nothing; {compare}"
    if picked is not None:
        return (
            f"attempt {picked.attempt} did not succeed ({picked.failure_kind or picked.status.value}); land it "
            f"anyway with {where.promote(label, '--force')}, or pick another with `spine pick {label} N` "
            f"({compare})"
        )
    return (
        f"see why with `spine compare {label}`; run the attempts that did not succeed again with "
        f"`spine resume {run_id} --retry --lane {lane_id}`, or take one anyway with `spine pick {label} N`"
    )


def attempts_table(figures: list[AttemptFigures], picked: int | None) -> list[str]:
    """The attempts side by side, one line each (``spine compare`` and the compare step's log)."""
    rows = [
        ("  attempt", "status", "checks", "verdict", "score", "change", "files", "time", "iter", "agrees")
    ]
    for f in figures:
        agrees = (
            f"{f.agreement.lines:.2f}/{f.agreement.files:.2f}"
            if f.agreement.lines is not None and f.agreement.files is not None
            else "-"
        )
        rows.append(
            (
                f"{'*' if f.attempt == picked else ' '} {f.attempt} {f.lane_id}",
                f.status.value + (f" ({f.failure_kind})" if f.failure_kind else ""),
                f"{f.checks_passed}/{f.checks_total}" if f.checks_total else "-",
                f.verdict.value if f.verdict else "-",
                str(f.score) if f.status.terminal else "-",
                f"+{f.insertions} -{f.deletions}",
                str(f.files_changed),
                format_duration(f.duration_seconds) if f.duration_seconds is not None else "-",
                str(f.iterations),
                agrees,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def _grading(facts: LaneFacts) -> str:
    checks = facts.validation
    if checks is None or (not checks.acceptance and not checks.evidence):
        return ""
    text = ""
    if checks.acceptance:
        text += "; acceptance: " + ", ".join(f"{a.name} {a.verdict.value}" for a in checks.acceptance)
    found = [e.id for e in checks.evidence if e.found]
    missing = [e.id for e in checks.evidence if not e.found and e.required]
    optional = [e.id for e in checks.evidence if not e.found and not e.required]
    if found:
        text += f"; evidence found: {', '.join(found)}"
    if missing:
        text += f"; evidence missing: {', '.join(missing)}"
    if optional:
        text += f"; optional evidence missing: {', '.join(optional)}"
    return text


def _processes(count: int) -> str:
    return f"{count} process{'es' if count != 1 else ''}"


def next_action(lane: LaneState, outcome: Outcome, where: Where) -> str:
    """The one thing to do next, as a step that works."""
    facts, spec = lane.facts, lane.spec
    lane_id, run_id, log = spec.id, where.run_id, where.log_path
    kind = outcome.kind
    retry = where.retry(lane_id)
    if spec.is_group and facts.attempts is not None and kind != FailureKind.DRIVER_DIED:
        return _group_next_action(lane, where)
    binding = spec.binding
    if binding is not None:
        configured = _operator_pointer(lane, outcome, where)
        if configured:
            return configured
    if outcome.succeeded:
        commits = facts.commit.commits if facts.commit else []
        if commits and lane.branch and not where.in_place and spec.attempt_of is not None:
            group = f"{run_id}/{spec.attempt_of}"
            return (
                f"review branch {lane.branch} (git log -p {lane.base_sha[:12]}..{lane.branch}); it is attempt "
                f"{spec.attempt} of lane {spec.attempt_of}: `spine compare {group}` shows it beside the others, "
                f"and {where.promote(group)} lands the lane's pick"
            )
        if commits and lane.branch and not where.in_place:
            return (
                f"review branch {lane.branch} (git log -p {lane.base_sha[:12]}..{lane.branch}), "
                f"then land it with {where.promote(f'{run_id}/{lane_id}')}"
            )
        if where.in_place:
            return (
                "review the commit in your checkout (git show HEAD)"
                if commits
                else "review the changes in your checkout (git status)"
            )
        return "nothing to review: the command changed nothing; clean up the lane with `spine gc`"
    if kind == FailureKind.BLOCKED and facts.blocked is not None:
        root = facts.blocked.root
        first = next(iter(root), "")
        fixes = " and ".join(f"lane {name} ({status})" for name, status in root.items())
        return f"fix {fixes} first (see `spine show {run_id}/{first}`), then retry with `spine resume {run_id} --retry`"
    if kind == FailureKind.CANCELED and facts.not_started is not None:
        if facts.not_started.reason == "fail-fast":
            failed = facts.not_started.after
            return (
                f"fix lane {failed} (see `spine show {run_id}/{failed}`), then retry both with "
                f"`spine resume {run_id} --retry`"
            )
        return f"if it is still wanted, run it with {retry}"
    if kind == FailureKind.DRIVER_DIED and facts.driver_died is not None:
        if facts.driver_died.recovered_ref:
            ref = facts.driver_died.recovered_ref
            return f"its uncommitted work is in {ref} (git log -p {ref}); run the lane again with {retry}"
        if lane.branch and facts.commit and facts.commit.commits:
            return f"review what it committed on {lane.branch}, or run the lane again with {retry}"
        return f"run the lane again with {retry}"
    if kind == FailureKind.ERROR:
        return f"fix the cause above, then run the lane again with {retry} (its work so far is kept)"
    if kind == FailureKind.VIOLATION:
        broken = facts.commit.violations[0].name if facts.commit and facts.commit.violations else ""
        again = f"run the lane again with {retry} once the command no longer does that"
        if broken == "worktree" or not lane.worktree:
            return f"{again}; `spine gc` saves what is left of its worktree to a recovery ref and removes it"
        return f"inspect the worktree at {lane.worktree}, then {again}"
    if kind == FailureKind.CANCELED:
        if lane.branch and not where.in_place:
            return f"review what it left on {lane.branch}, or run it again with {retry}"
        return f"run it again with {retry}"
    if kind == FailureKind.SETUP_FAILED:
        return f"fix the setup command in .spine.yaml (its output is in {log}), then run the lane again with {retry}"
    if kind == FailureKind.TIMEOUT:
        return f"inspect the log at {log}; raise --timeout if the work needs longer"
    if kind == FailureKind.STALL and facts.execute is not None and facts.execute.timed_out == "stall":
        return f"inspect the log at {log}; find what it waits on, or raise --stall-timeout"
    if kind == FailureKind.STALL:
        return f"inspect the log at {log}; raise --idle-timeout if long silences are expected"
    if kind == FailureKind.COMMAND_FAILED:
        last = last_line(facts.execute.tail if facts.execute else [])
        return f"inspect the log at {log}" + (f" (last line: {last!r})" if last else "")
    if kind == FailureKind.CHECK_FAILED:
        name, command = failing_check(facts)
        where_to = f"cd {lane.worktree}" if lane.worktree else "the lane worktree"
        text = f"reproduce the failing check {name}: {where_to} && {command}"
        if spec.iterations > 1 and facts.iterations:
            text += f" (its {len(facts.iterations)} iterations are listed in the result's iterations)"
        return text
    if kind == FailureKind.MISSING_EVIDENCE:
        checks = facts.validation
        missing = [e.description for e in checks.evidence if e.required and not e.found] if checks else []
        return f"produce the missing evidence ({', '.join(missing) or 'evidence'}) and run the lane again with {retry}"
    return f"inspect the log at {log}"


def failing_check(facts: LaneFacts) -> tuple[str, str]:
    """(name, command) of the first check that failed: acceptance checks first."""
    checks = facts.validation
    if checks is None:
        return "", ""
    for accepted in checks.acceptance:
        if accepted.verdict == Verdict.FAIL:
            return accepted.name, accepted.command
    return next(((c.name, c.command) for c in checks.checks if c.status == CheckStatus.FAILED), ("", ""))


def last_line(tail: list[str]) -> str:
    return next((line.strip()[:160] for line in reversed(tail) if line.strip()), "")


def _operator_pointer(lane: LaneState, outcome: Outcome, where: Where) -> str | None:
    """The operator's own next pointer for this outcome (``next`` on success, ``failure_paths``)."""
    from spine.model.operators import pointer

    binding = lane.spec.binding
    assert binding is not None
    checks = lane.facts.validation
    failed_check = ""
    if checks is not None:
        failed_check = next((a.name for a in checks.acceptance if a.verdict == Verdict.FAIL), "") or next(
            (c.name for c in checks.checks if c.status == CheckStatus.FAILED), ""
        )
    fields = {
        "op": binding.operator or "",
        "mode": binding.mode.value if binding.mode else "",
        "run_id": where.run_id,
        "lane_id": lane.spec.id,
        "branch": lane.branch or "",
        "worktree": lane.worktree or "",
        "log": where.log_path,
        "check": failed_check,
        "missing": ", ".join(
            e.description for e in (checks.evidence if checks else []) if e.required and not e.found
        ),
        "timebox": format_duration(lane.spec.timeout) if lane.spec.timeout else "none",
        "base_sha": lane.base_sha,
    }
    if outcome.succeeded:
        return pointer(binding.next, fields) if binding.next else None
    configured = binding.failure_paths.for_kind(outcome.kind.value) if outcome.kind else None
    if configured and pointer(configured, fields):
        return pointer(configured, fields)
    if outcome.kind == FailureKind.TIMEOUT and binding.stop_rule:
        return f"stopped by the timebox ({fields['timebox']}): {binding.stop_rule}"
    if outcome.kind == FailureKind.STALL and binding.stop_rule:
        return f"stopped: no progress; {binding.stop_rule}"
    return None


def build_result(lane: LaneState, outcome: Outcome, where: Where) -> LaneResult:
    """The result file of a lane, from its state and outcome."""
    facts, spec = lane.facts, lane.spec
    ex, commit, checks = facts.execute, facts.commit, facts.validation
    action = " ".join(next_action(lane, outcome, where).split())
    binding = spec.binding
    error = None
    if facts.halt is not None:
        error = f"step {facts.halt.step} failed: {facts.halt.error}"
    elif outcome.kind == FailureKind.DRIVER_DIED:
        error = outcome.cause
    debug_hint = (
        not outcome.succeeded and outcome.kind not in (FailureKind.BLOCKED,) and facts.not_started is None
    )
    pointer_text = action
    if binding is not None and binding.mode is not None and debug_hint:
        pointer_text = f"{action} (debug packet: spine debug {where.run_id}/{spec.id})"
    verdict = checks.verdict if checks is not None else None
    if binding is not None and binding.mode is not None and not outcome.succeeded:
        verdict = Verdict.FAIL
    return LaneResult(
        run_id=where.run_id,
        lane_id=spec.id,
        objective=spec.objective,
        status=outcome.status,
        sandbox_backend=where.backend,
        branch=lane.branch,
        worktree_path=lane.worktree,
        log_path=where.log_path,
        provider_run_id=ex.provider_run_id if ex else None,
        command=spec.argv(),
        base_ref=lane.base_ref,
        base_sha=lane.base_sha,
        head_sha=commit.head_sha if commit else None,
        commits=list(commit.commits) if commit else [],
        artifacts=list(checks.artifacts) if checks else [],
        validation=list(checks.checks) if checks else [],
        exit_code=ex.exit_code if ex else None,
        timed_out=bool(ex and ex.timed_out),
        timeout_kind=ex.timed_out if ex else None,
        duration_seconds=command_seconds(facts),
        diff_stat=commit.diff_stat if commit else None,
        output_tail=(ex.tail if ex else [])[-10:],
        error=error,
        failure_kind=outcome.kind.value if outcome.kind else None,
        invariants=list(commit.invariants) if commit else [],
        operator=binding.operator if binding else None,
        mode=binding.mode.value if binding and binding.mode else None,
        mode_source=binding.mode_source if binding and binding.mode else None,
        inputs=dict(binding.inputs) if binding and binding.operator else None,
        acceptance=list(checks.acceptance) if checks else [],
        evidence=list(checks.evidence) if checks else [],
        verdict=verdict,
        summary=summary(lane, outcome, where),
        next_action=pointer_text if binding is not None and binding.mode is not None else action,
        next_pointer=pointer_text,
        started_at=(facts.iterations[0].started_at if facts.iterations else None)
        or (ex.started_at if ex else None)
        or facts.started_at
        or lane.step_started_at,
        completed_at=now_iso(),
        iterations=list(facts.iterations) if spec.iterations > 1 else [],
        attempt=spec.attempt,
        attempt_of=spec.attempt_of,
    )


def command_seconds(facts: LaneFacts) -> float | None:
    """The command's wall time: every pass of a repair loop together."""
    ex = facts.execute
    current = ex.duration_seconds if ex is not None else None
    if not facts.iterations:
        return current
    total = sum(i.duration_seconds or 0.0 for i in facts.iterations)
    if facts.validation is None and current is not None:  # a pass under way, not recorded yet
        total += current
    return round(total, 3)


def build_group_result(
    lane: LaneState, outcome: Outcome, where: Where, picked: LaneResult | None
) -> LaneResult:
    """The result of a lane with attempts: the picked attempt's result under the lane's id, with the
    figures of every attempt and the pick; without a pick, the lane's own (no branch, no commits)."""
    base = build_result(lane, outcome, where)
    compared = lane.facts.attempts
    extra: dict[str, object] = {
        "attempts": list(compared.figures) if compared else [],
        "pick": compared.pick if compared else None,
        "command": [],
    }
    if picked is None:
        return base.model_copy(update=extra)
    return picked.model_copy(
        update={
            **extra,
            "command": list(picked.command),
            "run_id": base.run_id,
            "lane_id": base.lane_id,
            "objective": base.objective,
            "status": base.status,
            "failure_kind": base.failure_kind,
            "error": base.error,
            "summary": base.summary,
            "next_action": base.next_action,
            "next_pointer": base.next_pointer,
            "attempt": None,
            "attempt_of": None,
            "promotion": None,
            "completed_at": base.completed_at,
        }
    )
