"""DebugPacket: the closing artifact of every failed or stopped lane.

Written beside result.json as ``debug.json`` (the packet) and ``debug.md`` (a short rendering). It
says what was observed (symptom), what surrounded it (context: the base and what the lane changed),
how to get it again (a ``spine run`` one-liner pinned to the base SHA), up to three hypotheses drawn
from those facts, and the next pointer. ``spine debug RUN/LANE`` prints it.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from spine.base.files import atomic_write_json, atomic_write_text
from spine.base.ids import format_duration, now_iso
from spine.lane.outcome import FailureKind, Outcome
from spine.model.facts import LaneFacts
from spine.model.result import CheckStatus, DiffStat, LaneResult, Verdict
from spine.model.state import LaneSpec

if TYPE_CHECKING:
    from spine.lane.runtime import LaneRuntime

DEBUG_SCHEMA_VERSION = 1
MAX_HYPOTHESES = 3


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class Symptom(_Camel):
    """What was observed."""

    summary: str
    status: str
    failure_kind: str | None = None
    exit_code: int | None = None
    timed_out: bool = False
    timeout_kind: str | None = None
    last_lines: list[str] = Field(default_factory=list)
    failed_checks: list[str] = Field(default_factory=list)
    missing_evidence: list[str] = Field(default_factory=list)
    error: str | None = None
    error_detail: list[str] = Field(
        default_factory=list,
        description="the whole error text of the step spine could not finish (git's stderr, ...)",
    )
    check_output: dict[str, list[str]] = Field(
        default_factory=dict, description="the last lines of each failed check's output"
    )
    invariants: list[str] = Field(default_factory=list, description="what the lane broke or spine had to fix")


class Context(_Camel):
    """What surrounded the failure: the base, recent history, what the lane changed."""

    base_ref: str
    base_sha: str
    recent_base_commits: list[str] = Field(default_factory=list, description="'sha subject', newest first")
    branch: str | None = None
    worktree: str | None = None
    recovery_ref: str | None = Field(
        default=None, description="where gc saved the worktree's uncommitted work"
    )
    lane_commits: list[str] = Field(default_factory=list)
    changed_files: list[str] = Field(default_factory=list)
    diff_stat: DiffStat | None = None


class Repro(_Camel):
    """How to get the same failure again."""

    spine: str = Field(description="a one-line `spine run` that reproduces the lane from the same base")
    command: list[str] = Field(description="the exact argv the lane ran")
    shell: str = Field(description="the argv as one shell-quoted line")
    env_keys: list[str] = Field(default_factory=list, description="names of the variables the lane set")
    backend: str
    base_ref: str
    base_sha: str
    operator: str | None = None
    inputs: dict[str, str] | None = None
    mode: str | None = None


class DebugPacket(_Camel):
    """One failed or stopped lane, packed for whoever picks it up."""

    schema_version: int = DEBUG_SCHEMA_VERSION
    run_id: str
    lane_id: str
    objective: str
    created_at: str
    symptom: Symptom
    context: Context
    repro: Repro
    hypotheses: list[str] = Field(default_factory=list, max_length=MAX_HYPOTHESES)
    next_pointer: str
    result_path: str
    log_path: str

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"


def repro_command(spec: LaneSpec, *, primary: Path, backend: str, base_sha: str) -> str:
    """A single `spine run` line that runs the lane again from ``base_sha`` with the same settings."""
    args = ["spine", "-C", str(primary), "run"]
    binding = spec.binding
    if binding is not None and binding.operator:
        args += ["--op", binding.operator]
        for name, value in binding.inputs.items():
            args += ["--input", f"{name}={value}"]
    if binding is not None and binding.mode is not None:
        args += ["--mode", binding.mode.value]
    args += ["--base", base_sha, "--backend", backend]
    args += ["--timeout", _seconds(spec.timeout)]
    if spec.idle_timeout:
        args += ["--idle-timeout", _seconds(spec.idle_timeout)]
    if spec.stall_timeout:
        args += ["--stall-timeout", _seconds(spec.stall_timeout)]
    env_keys = list(spec.env)
    for check in spec.checks:
        args += ["--check", check.command]
    outputs = set(binding.outputs) if binding is not None else set()
    for pattern in spec.artifacts:
        if pattern not in outputs:
            args += ["--artifact", pattern]
    if spec.commit_in_place:
        args.append("--commit")
    # Variables are named, never their values: the line takes them from the shell it is pasted into.
    env = [f'--env {key}="${key}"' for key in env_keys]
    tail = [spec.objective]
    if binding is None or not binding.operator:
        tail.append("--")
        tail += [spec.command] if isinstance(spec.command, str) else list(spec.command)
    return " ".join([shlex.join(args), *env, shlex.join(tail)])


def _seconds(value: float | None) -> str:
    if value is None:
        return "none"
    return f"{value:g}s"


def build_debug_packet(rt: LaneRuntime, result: LaneResult, outcome: Outcome) -> DebugPacket:
    """Assemble the packet from the result, the outcome and the lane's facts."""
    lane = rt.lane
    facts = lane.facts
    failed_checks = [v.name for v in result.validation if v.status == CheckStatus.FAILED]
    failed_checks += [a.name for a in result.acceptance if a.verdict == Verdict.FAIL]
    missing = [e.id for e in result.evidence if e.required and not e.found]
    tail = list(result.output_tail)
    setup_failed = facts.setup.failed if facts.setup else None
    if setup_failed is not None and not tail:
        tail = list(setup_failed.tail)
    symptom = Symptom(
        summary=result.summary,
        status=result.status.value,
        failure_kind=outcome.kind.value if outcome.kind else None,
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        timeout_kind=result.timeout_kind,
        last_lines=tail[-10:],
        failed_checks=failed_checks,
        missing_evidence=missing,
        error=result.error,
        error_detail=list(facts.halt.detail) if facts.halt else [],
        check_output={v.name: list(v.output_tail) for v in result.validation if v.output_tail},
        invariants=[f"{i.name}: {i.status}: {i.detail}" for i in result.invariants if i.status != "ok"],
    )
    context = Context(
        base_ref=result.base_ref,
        base_sha=result.base_sha,
        recent_base_commits=_recent_commits(rt, result.base_sha),
        branch=result.branch,
        worktree=result.worktree_path,
        lane_commits=[f"{c.sha[:12]} {c.subject}" for c in result.commits],
        changed_files=_changed(rt, outcome),
        diff_stat=result.diff_stat,
    )
    env_keys = sorted(
        {*rt.ctx.config.env, *lane.spec.env, *(lane.spec.binding.env if lane.spec.binding else {})}
        | {
            "SPINE_RUN_ID",
            "SPINE_LANE_ID",
            "SPINE_WORKTREE",
            "SPINE_BRANCH",
            "SPINE_BASE_SHA",
            "SPINE_OBJECTIVE",
        }
    )
    binding = lane.spec.binding
    repro = Repro(
        spine=repro_command(
            lane.spec,
            primary=rt.ctx.repo.primary_checkout,
            backend=result.sandbox_backend,
            base_sha=result.base_sha,
        ),
        command=result.command,
        shell=shlex.join(result.command),
        env_keys=env_keys,
        backend=result.sandbox_backend,
        base_ref=result.base_ref,
        base_sha=result.base_sha,
        operator=binding.operator if binding else None,
        inputs=dict(binding.inputs) if binding and binding.operator else None,
        mode=binding.mode.value if binding and binding.mode else None,
    )
    return DebugPacket(
        run_id=result.run_id,
        lane_id=result.lane_id,
        objective=result.objective,
        created_at=now_iso(),
        symptom=symptom,
        context=context,
        repro=repro,
        hypotheses=hypotheses(outcome, symptom, context, lane.spec, facts)[:MAX_HYPOTHESES],
        next_pointer=result.next_pointer or " ".join(result.next_action.split()),
        result_path=str(rt.ctx.state.result_file(result.run_id, result.lane_id)),
        log_path=result.log_path,
    )


def write_debug_packet(rt: LaneRuntime, result: LaneResult, outcome: Outcome) -> LaneResult:
    """Write debug.json and debug.md for ``result``; return the result pointing at them."""
    packet = build_debug_packet(rt, result, outcome)
    path = rt.ctx.state.debug_file(result.run_id, result.lane_id)
    atomic_write_json(path, packet.to_json())
    atomic_write_text(rt.ctx.state.debug_markdown(result.run_id, result.lane_id), render_markdown(packet))
    return result.model_copy(update={"debug_packet": str(path)})


def _recent_commits(rt: LaneRuntime, base_sha: str, count: int = 5) -> list[str]:
    proc = rt.ctx.git.run("log", f"-{count}", "--format=%h %s", base_sha, check=False)
    return [line for line in proc.stdout.splitlines() if line.strip()]


def _changed(rt: LaneRuntime, outcome: Outcome) -> list[str]:
    """What the lane changed, read through its registered git dir (not when the worktree is not trusted)."""
    if (
        rt.lane.worktree is None
        or not Path(rt.lane.worktree).is_dir()
        or outcome.kind == FailureKind.VIOLATION
    ):
        return []
    if rt.lane.facts.create is None or rt.lane.facts.create.git_dir is None:
        return []
    from spine.lane.grading import changed_files

    try:
        return changed_files(rt)[:50]
    except Exception:
        return []


def hypotheses(
    outcome: Outcome, symptom: Symptom, context: Context, spec: LaneSpec, facts: LaneFacts
) -> list[str]:
    """Explanations worth testing first, most specific first, drawn only from the outcome and facts."""
    out: list[str] = []
    text = "\n".join(symptom.last_lines).lower()
    kind = outcome.kind.value if outcome.kind else None
    setup_failed = facts.setup.failed if facts.setup else None
    code = symptom.exit_code
    changed = context.changed_files
    if kind == "violation":
        out.append(f"the command {outcome.cause}; spine does not trust what such a lane leaves behind")
    if kind == "setup_failed" and setup_failed:
        out.append(
            f"setup command {setup_failed.command!r} fails in a fresh worktree: a file it needs may be "
            "untracked in the primary checkout and not copied (list it in .worktreeinclude or setup.copy)"
        )
    if code == 127 or "command not found" in text or ": not found" in text:
        out.append("a program the command calls is not installed or not on PATH in the lane's environment")
    if code == 126 or "permission denied" in text:
        out.append("a script lacks the executable bit, or the command writes where it may not")
    if "no such file" in text or "cannot open" in text or "filenotfounderror" in text:
        out.append(
            "a file the command expects is missing in a fresh worktree (untracked files are not copied "
            "unless listed in .worktreeinclude)"
        )
    if "modulenotfounderror" in text or "importerror" in text or "cannot find module" in text:
        out.append("a dependency is not installed in the environment the lane runs in")
    if code in (137, 9) and not symptom.timed_out:
        out.append("the process was killed from outside (out of memory, or a watchdog)")
    if kind == "timeout":
        limit = format_duration(spec.timeout) if spec.timeout else "the limit"
        if changed:
            out.append(
                f"the work progressed ({len(changed)} file(s) changed) but needs longer than the timebox "
                f"({limit}): split the objective or raise --timeout"
            )
        else:
            out.append(f"the command waited the whole timebox ({limit}) without changing a file")
        out.append(
            "the command waits for input that never comes (stdin is closed: a prompt, a pager, a login)"
        )
    if kind == "stall":
        out.append(
            "the command is blocked on something outside the worktree (a lock, a network call without "
            "timeout, a prompt): it neither printed nor changed a file"
        )
        out.append(
            "the command works silently where spine does not look (outside the worktree or in ignored files)"
        )
    if kind == "check_failed" and symptom.failed_checks:
        name = symptom.failed_checks[0]
        if changed:
            out.append(f"the lane's changes ({_few(changed)}) broke check {name!r}")
        else:
            out.append(
                f"check {name!r} fails without any change by the lane: it probably fails on base "
                f"{context.base_sha[:12]} too"
            )
    if kind == "missing_evidence":
        for item in facts.validation.evidence if facts.validation else []:
            if item.required and not item.found:
                out.append(f"the command did not produce {item.description} ({item.detail})")
        out.append(
            "the outputs were written somewhere the globs do not look (check outputs: and the evidence globs)"
        )
    if kind == "command_failed" and code not in (None, 0):
        if not changed:
            out.append(
                f"the command fails on base {context.base_sha[:12]} before changing anything: run the repro "
                "to see it fail the same way"
            )
        elif context.recent_base_commits and not out:
            out.append(
                f"a recent commit on {context.base_ref} ({context.recent_base_commits[0]}) changed what the command relies on"
            )
    if kind == "canceled":
        out.append("the lane was canceled by a person or a signal; nothing points at the work itself")
    if kind == "error":
        out.append(f"spine itself could not finish the lane: {outcome.cause}")
    if kind == "driver_died":
        out.append("the spine process driving the run was killed (a closed terminal, an OOM kill, a reboot)")
    if not out:
        out.append("the last lines of the log show the first error; start from there")
    return list(dict.fromkeys(out))


def _few(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def render_markdown(packet: DebugPacket) -> str:
    """The short human rendering written to debug.md and printed by `spine debug`."""
    s, c, r = packet.symptom, packet.context, packet.repro
    lines = [f"# Debug packet: {packet.run_id}/{packet.lane_id}", "", f"Objective: {packet.objective}", ""]
    lines += ["## Symptom", "", f"- {s.summary}"]
    if s.exit_code is not None:
        lines.append(f"- exit code: {s.exit_code}")
    if s.timed_out:
        lines.append(f"- stopped: {s.timeout_kind}")
    if s.failed_checks:
        lines.append(f"- failed checks: {', '.join(s.failed_checks)}")
    if s.missing_evidence:
        lines.append(f"- missing evidence: {', '.join(s.missing_evidence)}")
    if s.last_lines:
        lines += ["- last lines:", "", "```", *s.last_lines, "```"]
    lines += ["", "## Context", "", f"- base: {c.base_ref} @ {c.base_sha}"]
    if c.recent_base_commits:
        lines.append(f"- recent commits on the base: {'; '.join(c.recent_base_commits[:3])}")
    if c.branch:
        lines.append(f"- lane branch: {c.branch}")
    if c.worktree:
        lines.append(f"- worktree: {c.worktree}")
    if c.recovery_ref:
        lines.append(f"- the worktree was removed by spine gc; its uncommitted work is in {c.recovery_ref}")
    lines.append(f"- changed by the lane: {', '.join(c.changed_files[:10]) or 'nothing'}")
    lines += ["", "## Minimal repro", "", "```sh", r.spine, "```", ""]
    short = len(r.shell) <= 200 and "\n" not in r.shell
    command = f"`{r.shell}`" if short else "the lane's script (repro.command in debug.json)"
    lines.append(f"Command: {command}; backend {r.backend}; env keys: {', '.join(r.env_keys)}")
    lines += ["", "## Hypotheses", ""]
    lines += [f"{n}. {h}" for n, h in enumerate(packet.hypotheses, 1)]
    lines += ["", "## Next", "", packet.next_pointer, ""]
    return "\n".join(lines)


def load_packet(path: Path) -> DebugPacket:
    """Read a debug.json."""
    return DebugPacket.model_validate_json(path.read_text(encoding="utf-8"))


def packet_summary(packet: DebugPacket) -> dict[str, Any]:
    """The packet as camelCase JSON data."""
    return packet.model_dump(mode="json", by_alias=True)
