"""The run state models: what run.json holds (``spine.workspace.store`` reads and writes it).

run.json carries ``schemaVersion``: the major version of this format. Readers take every older
version (``upgrade`` converts it), tolerate fields they do not know within their own version (a newer
spine may add some), and refuse a newer version with a message that says to upgrade spine.
"""

import functools
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from spine.model.config import CheckSpec
from spine.model.facts import LaneFacts
from spine.model.result import LaneStatus

if TYPE_CHECKING:
    from spine.model.operators import OpBinding

STATE_VERSION = 3
"""The state format written by this spine. 1: facts were an untyped mapping. 2: typed facts, run.json
alone. 3: lanes with attempts and the repair loop (a spine of version 2 would run a lane with
attempts as a lane of its own), and lane records under ``lane-state/`` that may be newer than
run.json (``spine.workspace.store``); a spine that reads run.json alone would miss them, so it must
refuse this version."""

LANE_BASE_PREFIX = "lane:"
"""A lane base of the form ``lane:ID`` starts the lane from lane ID's result (stacked lanes)."""

STEPS: tuple[str, ...] = ("create_worktree", "setup", "execute", "commit", "validate", "finalize")
GROUP_STEPS: tuple[str, ...] = ("compare", "finalize")
"""The steps of a lane with attempts: compare its attempts once they all ended, then write its result."""


class _State(BaseModel):
    # Fields this spine does not know are kept (and written back): a newer spine of the same state
    # version may have added them.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class LaneSpec(_State):
    """What a lane was asked to do; fixed once the run is created (``spine.lane.spec`` builds it)."""

    id: str
    objective: str
    command: list[str] | str = Field(description="argv list, or a string run by the shell")
    base: str | None = None
    backend: str | None = None
    timeout: float | None = None
    idle_timeout: float | None = None
    stall_timeout: float | None = None
    env: dict[str, str] = Field(default_factory=dict)
    env_passthrough: list[str] = Field(default_factory=list)
    network: bool | None = None
    checks: list[CheckSpec] = Field(default_factory=list)
    artifacts: list[str] = Field(default_factory=list)
    needs: list[str] = Field(default_factory=list)
    commit_in_place: bool = False
    keep_worktree: bool = Field(
        default=False, description="keep the worktree where it ran even when the pool would take it back"
    )
    checks_on_host: bool = Field(
        default=False,
        description="run setup commands, checks and acceptance checks on the host instead of inside "
        "the lane's isolating backend",
    )
    op: dict[str, Any] | None = Field(
        default=None,
        description="the operator and mode the lane runs under (see docs/operators.md): an OpBinding as data",
    )
    sources: dict[str, str] = Field(
        default_factory=dict,
        description="where each setting came from: flag, batch lane, operator, .spine.yaml or default",
    )
    iterations: int = Field(
        default=1, description="the most times the command runs while the checks fail (the repair loop)"
    )
    attempt_of: str | None = Field(
        default=None, description="for an attempt of a lane with attempts: that lane's id"
    )
    attempt: int | None = Field(default=None, description="for an attempt: its number, from 1")
    attempts: list[str] = Field(
        default_factory=list,
        description="for a lane with attempts: the ids of its attempts, in order; the lane itself runs "
        "no command, it compares them (GROUP_STEPS)",
    )
    pick: str | None = Field(default=None, description="for a lane with attempts: its pick rule")
    stop_on_pass: bool = Field(
        default=False,
        description="for a lane with attempts: stop the other attempts once one passed every check",
    )

    @functools.cached_property
    def binding(self) -> "OpBinding | None":
        """``op`` as an OpBinding, validated on first use, so that plain lanes never build the operator models."""
        if self.op is None:
            return None
        from spine.model.operators import OpBinding

        return OpBinding.model_validate(self.op)

    @property
    def is_group(self) -> bool:
        """True for a lane with attempts: it runs no command of its own."""
        return bool(self.attempts)

    @property
    def stacked_on(self) -> str | None:
        """The lane whose result this lane starts from (``base: lane:ID``), if any."""
        if self.base and self.base.startswith(LANE_BASE_PREFIX):
            return self.base.removeprefix(LANE_BASE_PREFIX)
        return None

    def argv(self) -> list[str]:
        if isinstance(self.command, str):
            return ["/bin/sh", "-c", self.command]
        return list(self.command)


class LaneState(_State):
    """A lane's progress through the steps, and the facts each finished step recorded."""

    spec: LaneSpec
    status: LaneStatus = LaneStatus.PLANNED
    steps_done: list[str] = Field(default_factory=list)
    current_step: str | None = None
    step_started_at: str | None = None
    backend: str
    base_ref: str
    base_sha: str
    branch: str | None = None
    worktree: str | None = None
    pgid: int | None = None
    facts: LaneFacts = Field(default_factory=LaneFacts)

    @property
    def steps(self) -> tuple[str, ...]:
        """The steps this lane takes: STEPS, or GROUP_STEPS for a lane with attempts."""
        return GROUP_STEPS if self.spec.is_group else STEPS

    @property
    def next_step(self) -> str | None:
        for step in self.steps:
            if step not in self.steps_done:
                return step
        return None

    @property
    def iteration(self) -> int:
        """The pass of the repair loop the lane is in (1 until its checks failed once)."""
        done = self.facts.iterations
        if done and self.facts.validation is None:
            return done[-1].iteration + 1
        return done[-1].iteration if done else 1

    @property
    def complete(self) -> bool:
        return "finalize" in self.steps_done


class DriverInfo(_State):
    pid: int
    host: str
    started_at: str


class RunState(_State):
    """run.json: everything the drive loop needs to continue a run."""

    schema_version: int = STATE_VERSION
    run_id: str
    created_at: str
    kind: str = "run"
    base_ref: str
    base_sha: str
    target_ref: str
    target_sha: str
    jobs: int = 1
    fail_fast: bool = False
    driver: DriverInfo | None = None
    lanes: dict[str, LaneState]
    halted: bool = False


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Convert run.json data of an older state version to this one (a no-op for the current one)."""
    data.setdefault("schemaVersion", 1)
    if data["schemaVersion"] == 1:
        for lane in (data.get("lanes") or {}).values():
            if isinstance(lane, dict):
                _upgrade_lane_v1(lane)
        data["schemaVersion"] = 2
    if data["schemaVersion"] == 2:
        data["schemaVersion"] = 3  # the same run.json with fields added; newer lane state may live beside it
    return data


def _upgrade_lane_v1(lane: dict[str, Any]) -> None:
    """Version 1 kept each step's facts as a loose mapping keyed by step name, and the halt as ``error``."""
    old: dict[str, Any] = lane.get("facts") or {}
    new: dict[str, Any] = {}
    for key in ("startedAt", "cancel", "blocked", "notStarted", "setup", "execute", "result"):
        if isinstance(old.get(key), dict):
            new[key] = dict(old[key])
    if isinstance(old.get("create_worktree"), dict):
        new["create"] = dict(old["create_worktree"])
    if isinstance(new.get("setup"), dict):
        setup = new["setup"]
        copied = setup.get("copied") or []
        if isinstance(copied, list):
            setup["copied"], setup["copiedSample"] = len(copied), copied[:20]
        setup["commands"] = [c for c in setup.get("commands") or [] if isinstance(c, dict)]
    if isinstance(old.get("commit"), dict):
        new["commit"] = {
            k: v for k, v in old["commit"].items() if k in ("commits", "headSha", "diffStat", "skipped")
        }
    if isinstance(old.get("validate"), list) or isinstance(old.get("acceptance"), list):
        new["validation"] = {"checks": old.get("validate") or [], "acceptance": old.get("acceptance") or []}
    error = lane.pop("error", None)
    if error:
        step, _, message = str(error).removeprefix("step ").partition(" failed: ")
        new["halt"] = {"step": step if message else "?", "error": message or str(error)}
    lane["facts"] = new
