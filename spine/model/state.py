"""The run state models: what run.json holds (``spine.workspace.store`` reads and writes it)."""

import functools
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from spine.model.config import CheckSpec
from spine.model.result import LaneStatus

if TYPE_CHECKING:
    from spine.model.operators import OpBinding

LANE_BASE_PREFIX = "lane:"
"""A lane base of the form ``lane:ID`` starts the lane from lane ID's result (stacked lanes)."""

STEPS: tuple[str, ...] = ("create_worktree", "setup", "execute", "commit", "validate", "finalize")


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class LaneSpec(_Camel):
    """What a lane was asked to do; fixed once the run is created."""

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
    op: dict[str, Any] | None = Field(
        default=None,
        description="the operator and mode the lane runs under (see docs/operators.md): an OpBinding as data",
    )

    @functools.cached_property
    def binding(self) -> "OpBinding | None":
        """``op`` as an OpBinding, validated on first use, so that plain lanes never build the operator models."""
        if self.op is None:
            return None
        from spine.model.operators import OpBinding

        return OpBinding.model_validate(self.op)

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


class LaneState(_Camel):
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
    facts: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None

    @property
    def next_step(self) -> str | None:
        for step in STEPS:
            if step not in self.steps_done:
                return step
        return None

    @property
    def complete(self) -> bool:
        return "finalize" in self.steps_done


class DriverInfo(_Camel):
    pid: int
    host: str
    started_at: str


class RunState(_Camel):
    """run.json: everything the drive loop needs to continue a run."""

    schema_version: int = 1
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
