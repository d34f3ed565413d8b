"""What each lane step found, as typed models: the only input of the lane's outcome.

Every step records one model here (``LaneFacts.<step>``), and nothing else decides what happened to
a lane: ``spine.lane.outcome.classify`` turns these facts into status, failure kind and cause, and
everything that explains a lane (summary, next action, debug packet, the closing of a dead driver's
lanes, operator grading) renders that outcome. Facts are stored in run.json, camelCase, so a crash
between steps loses nothing a later step needs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from spine.model.result import (
    AcceptanceResult,
    Artifact,
    AttemptFigures,
    Commit,
    DiffStat,
    EvidenceItem,
    Invariant,
    Iteration,
    Pick,
    Validation,
    Verdict,
)

TimeoutKind = Literal["wall", "idle", "stall"]


class _Facts(BaseModel):
    # Unknown fields are kept, not refused: a newer spine of the same state version may add some.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class CreateFacts(_Facts):
    """create_worktree: where the lane's worktree came from and which git dir git registered for it."""

    source: Literal["fresh", "pool", "in-place"]
    git_dir: str | None = Field(
        default=None,
        description="the worktree's private git dir as git registered it when spine created it; "
        "spine's own git work on the lane names it, never what the worktree's .git file says later",
    )
    cleaned: bool = False
    seconds: float = 0.0


class ProcessRun(_Facts):
    """One setup command or check run: what ran and how it ended."""

    command: str
    exit_code: int | None = None
    timed_out: bool = False
    canceled: bool = False
    duration_seconds: float | None = None
    tail: list[str] = Field(default_factory=list)


class SetupFacts(_Facts):
    """setup: what spine copied in and what the setup commands did, before the command ran."""

    copied: int = 0
    copied_sample: list[str] = Field(default_factory=list, description="the first copied paths")
    private: list[str] = Field(
        default_factory=list,
        description="copied paths git would commit (not ignored): never part of the lane's commit",
    )
    not_copied: list[str] = Field(
        default_factory=list, description="'path: why' for what could not be copied"
    )
    commands: list[ProcessRun] = Field(default_factory=list)
    failed: ProcessRun | None = None
    tree: str | None = Field(
        default=None, description="the worktree's tree right after setup: what the command started from"
    )


class LeftoverProcess(_Facts):
    pid: int
    argv: str


class ExecuteFacts(_Facts):
    """execute: how the command ended, and what it left running."""

    exit_code: int | None = None
    timed_out: TimeoutKind | None = None
    canceled: bool = False
    duration_seconds: float | None = None
    tail: list[str] = Field(default_factory=list)
    started_at: str | None = None
    provider_run_id: str | None = None
    skipped: str | None = Field(default=None, description="why the command did not run")
    stopped: list[LeftoverProcess] = Field(
        default_factory=list, description="processes the command left behind, stopped by spine"
    )
    surviving: list[LeftoverProcess] = Field(
        default_factory=list, description="processes of the lane still alive after spine stopped them"
    )
    supervisor_lost: bool = Field(
        default=False,
        description="the command killed spine's process supervisor, so nothing it started was stopped",
    )
    rerun_of: str | None = Field(
        default=None,
        description="the command ran again after its driver died mid-run; the ref holding what its first run had "
        "left in the worktree",
    )

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and self.timed_out is None and not self.canceled and self.skipped is None


class CommitFacts(_Facts):
    """commit: the lane's commits after the command, and what spine checked before making its own."""

    commits: list[Commit] = Field(default_factory=list)
    head_sha: str | None = None
    diff_stat: DiffStat | None = None
    skipped: str | None = None
    excluded: list[str] = Field(
        default_factory=list, description="paths spine copied in or setup produced, left out of the commit"
    )
    invariants: list[Invariant] = Field(default_factory=list)

    @property
    def violations(self) -> list[Invariant]:
        return [i for i in self.invariants if i.status == "violated"]


class ValidateFacts(_Facts):
    """validate: checks, acceptance checks, artifacts and (for a lane with a mode) its evidence."""

    checks: list[Validation] = Field(default_factory=list)
    acceptance: list[AcceptanceResult] = Field(default_factory=list)
    artifacts: list[Artifact] = Field(default_factory=list)
    artifact_problems: list[str] = Field(default_factory=list)
    evidence: list[EvidenceItem] = Field(default_factory=list)
    verdict: Verdict | None = None


class Halt(_Facts):
    """A step that spine could not finish: the lane stops there with this cause."""

    step: str
    error: str
    detail: list[str] = Field(default_factory=list, description="the full error text (git's stderr, ...)")


class Blocked(_Facts):
    """The lane never started: a lane it needs ended without succeeding."""

    needs: dict[str, str]
    root: dict[str, str]


class NotStarted(_Facts):
    """The lane never started: canceled before it began, or the run stopped after a failure."""

    reason: Literal["canceled", "fail-fast"]
    after: str | None = None


class CancelRequest(_Facts):
    requested_at: str
    because: str | None = Field(
        default=None, description="why spine asked, when no person did (another attempt passed)"
    )


class DriverDied(_Facts):
    """The driver died during ``step`` and ``spine gc`` closed the lane."""

    step: str
    recovered_ref: str | None = None
    worktree_removed: bool = True


class PairAgreement(_Facts):
    """How far the changes of two attempts agree (Jaccard similarity, 0 to 1)."""

    a: int
    b: int
    files: float
    lines: float


class AttemptsFacts(_Facts):
    """compare: what spine measured about each attempt of a lane with attempts, and its pick."""

    figures: list[AttemptFigures] = Field(default_factory=list)
    pairs: list[PairAgreement] = Field(default_factory=list)
    pick: Pick
    rule_pick: int | None = Field(
        default=None, description="the attempt the pick rule chose (kept when `spine pick` overrides it)"
    )


class ResultFacts(_Facts):
    path: str
    status: str
    next_action: str
    returned_to_pool: bool | None = None


class LaneFacts(_Facts):
    """Everything the steps of one lane found, step by step."""

    started_at: str | None = None
    cancel: CancelRequest | None = None
    blocked: Blocked | None = None
    not_started: NotStarted | None = None
    create: CreateFacts | None = None
    setup: SetupFacts | None = None
    execute: ExecuteFacts | None = None
    execute_begun: int = Field(default=0, description="how many times the command was started")
    commit: CommitFacts | None = None
    commit_token: str | None = Field(
        default=None,
        description="the token spine's own commit carries (Spine-Commit trailer), drawn after the command "
        "ended: a commit the command made cannot pass for spine's",
    )
    spine_commits: list[str] = Field(
        default_factory=list,
        description="spine's own commits of earlier passes of the repair loop (their token is in the "
        "history the next pass can read, so each pass draws a new one and these are known by sha)",
    )
    validation: ValidateFacts | None = None
    iterations: list[Iteration] = Field(
        default_factory=list,
        description="the finished passes of the repair loop (lanes with iterations > 1 only); while the "
        "lane loops, execute, commit and validation hold the pass under way",
    )
    attempts: AttemptsFacts | None = None
    halt: Halt | None = None
    driver_died: DriverDied | None = None
    result: ResultFacts | None = None
