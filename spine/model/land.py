"""The landing queue's state: what ``land.json`` in a run's directory holds (``spine.landing.land``).

The file is the queue's truth. It records every landing decision once it is final, the batch whose
landing is under way (``pending``, written before the target moves, so that a crash between moving
the target and recording it is finished on resume instead of landing anything twice), and how many
gate runs the queue needed. Verdicts themselves live in the gate's cache, keyed by tree.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

LAND_VERSION = 1
"""The land.json format written by this spine."""

LandStrategy = Literal["merge", "squash", "rebase"]
LAND_STRATEGIES: tuple[LandStrategy, ...] = ("merge", "squash", "rebase")

EjectKind = Literal[
    "conflict",
    "check-failed",
    "not-succeeded",
    "no-branch",
    "branch-moved",
    "needs-ejected",
    "needs-not-landed",
]


class _State(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class LandedLane(_State):
    """One lane of a batch whose landing is under way."""

    lane_id: str
    lane_head: str = Field(description="the lane branch commit that lands")
    commits: list[str] = Field(default_factory=list, description="the commits this lane adds to the target")
    rebased: bool = False


class PendingMove(_State):
    """A batch about to move the target (written before the move, cleared once it is recorded)."""

    before: str
    after: str
    tree: str
    gate: Literal["passed", "cached"]
    checkout: str | None = None
    lanes: list[LandedLane]


class LandDecision(_State):
    """What the queue decided for one lane, and why."""

    lane_id: str
    outcome: Literal["landed", "ejected", "already-landed", "skipped"] = Field(
        description="skipped: the lane did not succeed and was not named, so it was never queued"
    )
    kind: EjectKind | None = Field(default=None, description="why an ejected lane was ejected")
    reason: str
    lane_head: str | None = None
    commits: list[str] = Field(default_factory=list, description="commits the lane added to the target")
    rebased: bool = Field(default=False, description="its commits were replayed because its merge conflicted")
    target_before: str | None = Field(default=None, description="the target before the batch (or try)")
    target_after: str | None = Field(default=None, description="the target after the batch it landed in")
    tree: str | None = Field(default=None, description="the tree that was tested: passed, or failed")
    batch: list[str] = Field(default_factory=list, description="the lanes that landed in the same move")
    gate: Literal["passed", "cached"] | None = None
    conflicts: list[str] = Field(default_factory=list)
    check: str | None = None
    check_command: str | None = None
    output_tail: list[str] = Field(default_factory=list)
    log_path: str | None = None
    decided_at: str


class LandState(_State):
    """land.json: one landing queue of a run into one target branch."""

    schema_version: int = LAND_VERSION
    run_id: str
    target: str
    strategy: LandStrategy
    queue: list[str] = Field(description="the lanes in landing order")
    named: bool = Field(default=False, description="true when the lanes (and their order) were named")
    target_start: str = Field(description="the target when the queue started")
    target_end: str | None = Field(default=None, description="the target when the queue finished")
    checks_hash: str
    decisions: list[LandDecision] = Field(default_factory=list, description="in the order they were made")
    pending: PendingMove | None = None
    abandoned: list[PendingMove] = Field(
        default_factory=list,
        description="moves found not made when the queue resumed; recorded after all if the target gets them "
        "(a git process of a killed queue may still finish its move)",
    )
    gate_runs: int = Field(default=0, description="gates whose checks ran")
    gate_cached: int = Field(default=0, description="gates answered from the verdict cache")
    moves: int = Field(default=0, description="times the queue moved the target")
    target_moved_under: int = Field(
        default=0, description="times someone else moved the target while the queue ran (it re-tested)"
    )
    started_at: str
    updated_at: str
    finished_at: str | None = None

    def decision(self, lane_id: str) -> LandDecision | None:
        return next((d for d in self.decisions if d.lane_id == lane_id), None)

    def undecided(self) -> list[str]:
        decided = {d.lane_id for d in self.decisions}
        return [lane for lane in self.queue if lane not in decided]
