"""The ExecutionLaneResult contract: one result file per lane, camelCase JSON, versioned.

Field names follow the ExecutionLaneResult contract; spine adds what a reader needs to act without
opening anything else (ids, refs and SHAs, exit code, timeout, duration, diff stat, hashes).
``spine schema result`` prints the JSON Schema generated from these models.
"""

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

SCHEMA_VERSION = 1


class LaneStatus(StrEnum):
    """Where a lane is: planned, running, or how it ended (succeeded, failed, blocked, canceled)."""

    PLANNED = "planned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    BLOCKED = "blocked"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (LaneStatus.SUCCEEDED, LaneStatus.FAILED, LaneStatus.BLOCKED, LaneStatus.CANCELED)


class CheckStatus(StrEnum):
    NOT_RUN = "not-run"
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class Verdict(StrEnum):
    """An acceptance check's (or an operator run's) outcome."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"


class _Camel(BaseModel):
    # Readers keep fields they do not know: a newer spine may add fields without a new schema version
    # (docs/result-format.md). The JSON Schema says so too (additionalProperties is not false).
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class Commit(_Camel):
    sha: str
    subject: str
    made_by: Literal["command", "spine"] = Field(
        description="'command' if the lane's command committed it itself"
    )


class Artifact(_Camel):
    path: str = Field(description="path relative to the lane worktree")
    stored_at: str = Field(description="absolute path of the copy kept with the result")
    size: int
    sha256: str


class Validation(_Camel):
    name: str
    status: CheckStatus
    command: str
    summary: str
    exit_code: int | None = None
    duration_seconds: float | None = None
    output_tail: list[str] = Field(
        default_factory=list, description="last lines of a failed check's output (secrets masked)"
    )


class Invariant(_Camel):
    """One thing spine checked about a lane after its command ran, instead of assuming it."""

    name: Literal["worktree", "head", "processes", "commit"] = Field(
        description="worktree: still the lane's own; head: on the lane branch; processes: none left "
        "alive; commit: holds only the command's work"
    )
    status: Literal["ok", "fixed", "violated"] = Field(
        description="fixed: spine put it right (and says how); violated: the lane fails with this cause"
    )
    detail: str


class AcceptanceResult(_Camel):
    """One acceptance check of an operator run."""

    name: str
    verdict: Verdict
    command: str
    summary: str
    exit_code: int | None = None
    expect_exit: list[int] = Field(default_factory=lambda: [0])
    duration_seconds: float | None = None
    output_tail: list[str] = Field(
        default_factory=list, description="last lines of a failed check's output (secrets masked)"
    )


class EvidenceItem(_Camel):
    """One rule of the lane's evidence pattern, and whether the lane's facts satisfy it."""

    id: str
    kind: str
    description: str
    required: bool = True
    found: bool
    detail: str
    paths: list[str] = Field(default_factory=list)


class DiffStat(_Camel):
    files_changed: int = 0
    insertions: int = 0
    deletions: int = 0


class Promotion(_Camel):
    """How a lane was landed on its target by ``spine promote`` or ``spine land``."""

    strategy: Literal["merge", "squash", "rebase", "ff-only"]
    target: str = Field(description="branch the lane was landed on")
    target_before: str = Field(description="the target's commit before the promotion")
    target_after: str = Field(description="the target's commit after the promotion")
    lane_head: str = Field(description="the lane branch commit that was landed")
    commits: list[str] = Field(default_factory=list, description="commits the promotion added to the target")
    checkout: str | None = Field(
        default=None, description="checkout updated in place, or null when only the ref moved"
    )
    gate: Literal["passed", "cached"] | None = Field(
        default=None, description="gate verdict on the landed tree, when --gate was given"
    )
    forced: bool = False
    promoted_at: str
    via: Literal["promote", "land"] = Field(
        default="promote",
        description="'land' when a landing queue landed it: then targetBefore/targetAfter are the target "
        "before and after the batch the lane landed in, and commits are this lane's own",
    )


class Ejection(_Camel):
    """Why ``spine land`` took a lane out of its queue instead of landing it."""

    target: str = Field(description="branch the queue was landing on")
    target_sha: str | None = Field(
        default=None,
        description="the target commit (with the lanes landed ahead of it) the lane was tried on",
    )
    kind: Literal[
        "conflict",
        "check-failed",
        "not-succeeded",
        "no-branch",
        "branch-moved",
        "needs-ejected",
        "needs-not-landed",
    ] = Field(description="conflict and check-failed are decided on the queue's projected tree")
    reason: str = Field(description="one line: why, naming the conflicting paths or the failed check")
    conflicts: list[str] = Field(default_factory=list, description="paths that conflict, for kind conflict")
    check: str | None = Field(default=None, description="the gate check that failed, for kind check-failed")
    output_tail: list[str] = Field(
        default_factory=list, description="last lines of the failed check's output (secrets masked)"
    )
    tree: str | None = Field(default=None, description="the tree whose checks failed")
    ejected_at: str


class Iteration(_Camel):
    """One pass of a lane's repair loop: the command, its commit, the checks, and what it changed."""

    iteration: int = Field(description="1 for the first run of the command, 2 for the first repair, ...")
    exit_code: int | None = None
    duration_seconds: float | None = None
    started_at: str | None = None
    head_sha: str | None = Field(default=None, description="the lane branch's head after this iteration")
    commits: list[str] = Field(default_factory=list, description="commits this iteration added")
    diff_stat: DiffStat | None = Field(default=None, description="what this iteration changed")
    files: list[str] = Field(default_factory=list, description="files this iteration changed")
    changed: bool = Field(description="false when this iteration changed nothing (the loop stops)")
    checks: list[Validation] = Field(default_factory=list)
    acceptance: list[AcceptanceResult] = Field(default_factory=list)
    feedback: str | None = Field(
        default=None,
        description="the file of failing-check output written after this iteration for the next one",
    )


class Agreement(_Camel):
    """How far one attempt's change agrees with the others' (0: nothing in common, 1: the same)."""

    files: float | None = Field(default=None, description="mean Jaccard similarity of the changed-file sets")
    lines: float | None = Field(
        default=None, description="mean Jaccard similarity of the changed lines (path, +/-, text)"
    )


class AttemptFigures(_Camel):
    """What spine measured about one attempt of a lane with attempts (best of N)."""

    attempt: int
    lane_id: str
    status: LaneStatus
    failure_kind: str | None = None
    command: list[str] = Field(default_factory=list)
    branch: str | None = None
    head_sha: str | None = None
    checks_passed: int = 0
    checks_failed: int = 0
    checks_total: int = Field(default=0, description="checks and acceptance checks")
    verdict: Verdict | None = None
    evidence_found: int = 0
    evidence_missing: list[str] = Field(default_factory=list, description="required evidence not found")
    score: int = Field(description="the result's score (spine score), 0-100")
    files_changed: int = 0
    insertions: int = 0
    deletions: int = 0
    files: list[str] = Field(default_factory=list, description="the files it changed (at most 200)")
    duration_seconds: float | None = Field(
        default=None, description="the command's wall time, every iteration together"
    )
    iterations: int = 1
    agreement: Agreement = Field(default_factory=Agreement)
    completed_at: str | None = None
    summary: str = ""

    @property
    def passed(self) -> bool:
        return self.status == LaneStatus.SUCCEEDED

    @property
    def size(self) -> int:
        return self.insertions + self.deletions


class Pick(_Camel):
    """Which attempt a lane with attempts settled on, and why."""

    attempt: int | None = Field(description="the picked attempt's number; null when no attempt qualified")
    lane_id: str | None = Field(default=None, description="the picked attempt's lane id (LANE.N)")
    rule: str = Field(description="the pick rule: smallest, first, fastest or agreement")
    by: Literal["rule", "user"] = Field(default="rule", description="'user' after `spine pick`")
    reason: str
    picked_at: str | None = None


class LaneResult(_Camel):
    """One lane's outcome: what happened, where it is, and what to do next."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    lane_id: str
    objective: str
    status: LaneStatus
    sandbox_backend: str
    branch: str | None = None
    worktree_path: str | None = None
    worktree_kept: bool = Field(
        default=True,
        description="false when the lane's worktree went back to the worktree pool after it succeeded: "
        "worktreePath no longer holds it, and the work is on the branch",
    )
    worktree_removed_at: str | None = Field(
        default=None,
        description="when `spine gc` removed the lane's worktree (worktreePath no longer holds it)",
    )
    recovery_ref: str | None = Field(
        default=None, description="the ref holding what was uncommitted in the worktree when gc removed it"
    )
    log_path: str
    provider_run_id: str | None = None
    command: list[str] = Field(default_factory=list)
    base_ref: str
    base_sha: str
    head_sha: str | None = None
    commits: list[Commit] = Field(default_factory=list)
    artifacts: list[Artifact] = Field(default_factory=list)
    validation: list[Validation] = Field(default_factory=list)
    exit_code: int | None = None
    timed_out: bool = False
    timeout_kind: Literal["wall", "idle", "stall"] | None = Field(
        default=None, description="wall: the timebox; idle: no output; stall: no output and no file changes"
    )
    duration_seconds: float | None = None
    diff_stat: DiffStat | None = None
    output_tail: list[str] = Field(default_factory=list, description="last lines of the command's output")
    error: str | None = Field(
        default=None, description="why spine itself could not finish the lane, if it could not"
    )
    failure_kind: str | None = Field(
        default=None,
        description="why a lane did not succeed, as a key: setup_failed, command_failed, timeout, stall, "
        "check_failed, missing_evidence, violation, error, canceled, blocked, driver_died",
    )
    invariants: list[Invariant] = Field(
        default_factory=list,
        description="what spine checked after the command (worktree, head, processes, commit)",
    )
    promotion: Promotion | None = Field(
        default=None, description="set once `spine promote` or `spine land` landed the lane"
    )
    ejection: Ejection | None = Field(
        default=None,
        description="set when `spine land` ejected the lane from its queue; cleared once it lands",
    )
    operator: str | None = Field(default=None, description="the operator the lane ran, if any")
    mode: str | None = Field(default=None, description="the lane's mode, when it has one")
    mode_source: Literal["operator", "flag", "classifier"] | None = None
    inputs: dict[str, str] | None = Field(default=None, description="the operator's resolved inputs")
    acceptance: list[AcceptanceResult] = Field(
        default_factory=list, description="the operator's acceptance checks, PASS/WARN/FAIL each"
    )
    evidence: list[EvidenceItem] = Field(
        default_factory=list, description="the mode's evidence pattern, found or missing rule by rule"
    )
    verdict: Verdict | None = Field(
        default=None, description="PASS/WARN/FAIL of a lane with a mode, grounded in acceptance and evidence"
    )
    next_pointer: str | None = Field(
        default=None, description="one line: what to do next; for a lane with a mode, also its nextAction"
    )
    iterations: list[Iteration] = Field(
        default_factory=list,
        description="the repair loop (--iterations): each pass of the command with its checks; empty "
        "for a lane that runs its command once",
    )
    attempt: int | None = Field(
        default=None, description="for an attempt of a lane with attempts: its number"
    )
    attempt_of: str | None = Field(
        default=None, description="for an attempt of a lane with attempts: the lane it is an attempt of"
    )
    attempts: list[AttemptFigures] = Field(
        default_factory=list,
        description="for a lane with attempts (best of N): every attempt with what spine measured",
    )
    pick: Pick | None = Field(
        default=None, description="for a lane with attempts: the attempt it settled on and why"
    )
    debug_packet: str | None = Field(
        default=None, description="path of debug.json, written for every failed or stopped lane"
    )
    summary: str
    next_action: str
    started_at: str | None = None
    completed_at: str | None = None

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"
