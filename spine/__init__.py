"""spine: a Git-native worktree execution orchestrator.

``import spine`` gives the Python API: typed functions for what the command line does, the models
the result files hold, and the errors (each carries the exit code the command line would end with).
Nothing is imported until a name is first used, so ``import spine`` (and ``spine --help``) stays
cheap. See docs/api.md; ``API_VERSION`` says which version of this contract the names follow.

    import spine

    ctx = spine.context()
    run = spine.run_batch(ctx, {"lanes": [{"id": "hi", "objective": "say hi", "command": "echo hi > hi.txt"}]})
    for result in spine.results(ctx, run.run_id):
        print(result.lane_id, result.status, result.next_action)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from spine.base.version import __version__

API_VERSION = 1
"""The version of the Python API contract (``__all__``, the signatures, the models' fields).

Within one API version names are only added: new functions, new keyword arguments with defaults,
new model fields. Removing or changing a name incompatibly makes a new API version (and a new major
version of git-spine), after at least one release in which the old form still works and warns with
a ``DeprecationWarning``."""

# name -> module it lives in. Looked up on first use (PEP 562), never at import.
_EXPORTS: dict[str, str] = {
    # what the command line does
    "context": "spine.api",
    "plan_lane": "spine.api",
    "run_lane": "spine.api",
    "compare": "spine.api",
    "pick": "spine.api",
    "plan_batch": "spine.api",
    "run_batch": "spine.api",
    "drive": "spine.api",
    "retry": "spine.api",
    "exit_code": "spine.api",
    "list_runs": "spine.api",
    "load_run": "spine.api",
    "results": "spine.api",
    "result": "spine.api",
    "gate": "spine.api",
    "gate_checks": "spine.api",
    "promote": "spine.api",
    "land": "spine.api",
    "report": "spine.api",
    "gate_report": "spine.api",
    "write_html": "spine.api",
    "dashboard": "spine.api",
    # what they take and return
    "ExecutionContext": "spine.workspace.context",
    "LaneRequest": "spine.lane.spec",
    "RunState": "spine.model.state",
    "LaneState": "spine.model.state",
    "LaneResult": "spine.model.result",
    "LaneStatus": "spine.model.result",
    "Promotion": "spine.model.result",
    "GateVerdict": "spine.landing.gate",
    "Landing": "spine.landing.promote",
    "Comparison": "spine.drive.attempts",
    "LandState": "spine.model.land",
    "Dashboard": "spine.views.dashboard",
    "OutputLines": "spine.lane.runtime",
    # what they raise
    "ExitCode": "spine.base.errors",
    "SpineError": "spine.base.errors",
    "UsageError": "spine.base.errors",
    "ConfigError": "spine.base.errors",
    "NotARepository": "spine.base.errors",
    "EnvironmentProblem": "spine.base.errors",
    "RunBusy": "spine.base.liveness",
    "LockTimeout": "spine.base.locks",
    "StateTooNew": "spine.workspace.store",
    "StateUnreadable": "spine.workspace.store",
    "PromoteRefused": "spine.landing.promote",
}

# The contract: every name here is documented in docs/api.md (a test checks both lists agree).
__all__ = [
    "API_VERSION",
    "Comparison",
    "ConfigError",
    "Dashboard",
    "EnvironmentProblem",
    "ExecutionContext",
    "ExitCode",
    "GateVerdict",
    "LandState",
    "Landing",
    "LaneRequest",
    "LaneResult",
    "LaneState",
    "LaneStatus",
    "LockTimeout",
    "NotARepository",
    "OutputLines",
    "PromoteRefused",
    "Promotion",
    "RunBusy",
    "RunState",
    "SpineError",
    "StateTooNew",
    "StateUnreadable",
    "UsageError",
    "__version__",
    "compare",
    "context",
    "dashboard",
    "drive",
    "exit_code",
    "gate",
    "gate_checks",
    "gate_report",
    "land",
    "list_runs",
    "load_run",
    "pick",
    "plan_batch",
    "plan_lane",
    "promote",
    "report",
    "result",
    "results",
    "retry",
    "run_batch",
    "run_lane",
    "write_html",
]

if TYPE_CHECKING:
    from spine.api import (
        compare,
        context,
        dashboard,
        drive,
        exit_code,
        gate,
        gate_checks,
        gate_report,
        land,
        list_runs,
        load_run,
        pick,
        plan_batch,
        plan_lane,
        promote,
        report,
        result,
        results,
        retry,
        run_batch,
        run_lane,
        write_html,
    )
    from spine.base.errors import (
        ConfigError,
        EnvironmentProblem,
        ExitCode,
        NotARepository,
        SpineError,
        UsageError,
    )
    from spine.base.liveness import RunBusy
    from spine.base.locks import LockTimeout
    from spine.drive.attempts import Comparison
    from spine.landing.gate import GateVerdict
    from spine.landing.promote import Landing, PromoteRefused
    from spine.lane.runtime import OutputLines
    from spine.lane.spec import LaneRequest
    from spine.model.land import LandState
    from spine.model.result import LaneResult, LaneStatus, Promotion
    from spine.model.state import LaneState, RunState
    from spine.views.dashboard import Dashboard
    from spine.workspace.context import ExecutionContext
    from spine.workspace.store import StateTooNew, StateUnreadable


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'spine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
