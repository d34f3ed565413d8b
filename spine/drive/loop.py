"""The drive loop: ask the scheduler what is ready, fire it, record the outcome, repeat.

The run's state (``spine.workspace.store``) is the loop's truth. Before a step starts, the lane's
``currentStep`` is recorded; when it ends, the step is added to ``stepsDone`` (or, if it raised, the
lane is halted with the reason and its state is left unadvanced). A step may send its lane back to an
earlier step instead (the repair loop's ``validate`` returns ``execute``): the steps from there on
leave ``stepsDone`` in the same write, so ``stepsDone`` always holds the steps done in the lane's
current pass. Each of these writes only that lane's record (and the records of lanes it changed), so
recording a step costs the same in a run of one lane or five hundred; run.json is rewritten whole
when the driver takes the run, recovers it, records cancel requests and lets go. ``spine run``,
``spine batch``, ``spine resume`` and ``spine step`` all use this loop; only the scheduler and
``max_steps`` differ.

The caller holds the run's driver lock (``spine.base.liveness.DriverLock``), so when ``drive`` starts,
any step still recorded as in flight belongs to a driver that died: ``recover`` stops what that
driver left running and the step is redone. Cancel requests left by ``spine cancel`` are polled
between steps and recorded in run.json, so they survive a crash too.

What a step may raise (docs/adr/0004-exit-codes-and-errors.md):

- a ``SpineError`` or an ``OSError`` (git failed, a lock timed out, the disk is full): the lane halts
  once with that cause recorded as its facts, its result is written (failed, kind ``error``) and the
  other lanes go on. If even the result cannot be written, the driver stops every lane and raises
  ``StateUnwritable`` (exit 3); the run is left as run.json last recorded it, for ``spine resume``.
- anything else is a bug in spine: the driver stops every lane, leaves the failing step recorded as
  in flight (so ``spine resume`` redoes it) and re-raises, so the command exits 4 with a crash log.

Crash points for tests: ``SPINE_CRASH_AT=[LANE/]STEP[:PHASE]`` makes the driver SIGKILL itself at
PHASE of STEP (``begin``: the step is recorded as started; ``effects``: the step's work is done but
not recorded; ``done``: the step is recorded as done, the default). It exists so that tests can
crash the driver at an exact point no lane command can observe, e.g. between commit and result.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from spine.backends.base import Sandbox
from spine.backends.registry import require_usable
from spine.base.errors import EnvironmentProblem, SpineError
from spine.base.git import GitFailed, error_lines
from spine.base.ids import now_iso
from spine.base.process import sigterm_as_interrupt
from spine.drive.attempts import stop_other_attempts, with_attempts
from spine.drive.recovery import clear_cancel_requests, pending_cancel_requests, stop_stale_group
from spine.drive.scheduler import BLOCK, PSEUDO_STEPS, Scheduler, first_failure, started, unmet_needs
from spine.lane.runtime import Echo, LaneRuntime, OutputLines
from spine.lane.steps import STEP_FUNCTIONS, finalize
from spine.model.facts import Blocked, CancelRequest, ExecuteFacts, Halt, NotStarted
from spine.model.result import LaneStatus
from spine.model.state import STEPS, RunState
from spine.workspace.context import ExecutionContext
from spine.workspace.store import RunStore

CRASH_ENV = "SPINE_CRASH_AT"

StepListener = Callable[[str, str, str], None]
"""Called with (lane id, step, "start" | "done" | "halted") for progress display."""


class Interrupted(Exception):
    """The driver was asked to stop (Ctrl-C or SIGTERM)."""


class StateUnwritable(EnvironmentProblem):
    """A lane's result (or run.json) could not be written; the driver stopped. Exit 3."""


def describe_error(exc: BaseException) -> tuple[str, list[str]]:
    """(one-line message, the whole error text) of what a step raised."""
    if isinstance(exc, GitFailed):
        return exc.message, error_lines(exc.stderr) or exc.stderr.splitlines()
    if isinstance(exc, SpineError):
        return exc.message, []
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}", []
    return f"{type(exc).__name__}: {exc}", []


class Driver:
    """Drives one run to completion (or until interrupted) with a given scheduler."""

    def __init__(
        self,
        ctx: ExecutionContext,
        store: RunStore,
        run: RunState,
        scheduler: Scheduler,
        *,
        echo: Echo = "raw",
        listener: StepListener | None = None,
        lines: OutputLines | None = None,
    ) -> None:
        self.ctx = ctx
        self.store = store
        self.run = run
        self.scheduler = scheduler
        self.echo = echo
        self.listener = listener
        self.lines = lines
        self._backends: dict[str, Sandbox] = {}
        self._runtimes: dict[str, LaneRuntime] = {}
        self._cancel_all = threading.Event()
        self._crash_at = _parse_crash_point(os.environ.get(CRASH_ENV, ""))

    def backend_for(self, name: str) -> Sandbox:
        if name not in self._backends:
            self._backends[name] = require_usable(name, self.ctx.config.backends.get(name, {}))
        return self._backends[name]

    def runtime(self, lane_id: str) -> LaneRuntime:
        if lane_id not in self._runtimes:
            lane = self.run.lanes[lane_id]
            rt = LaneRuntime(
                ctx=self.ctx,
                run=self.run,
                lane=lane,
                store=self.store,
                backend=self.backend_for(lane.backend),
                echo=self.echo,
                lines=self.lines,
            )
            if self._cancel_all.is_set() or lane.facts.cancel is not None:
                rt.cancel.set()
            self._runtimes[lane_id] = rt
        return self._runtimes[lane_id]

    def cancel(self, lane_id: str | None = None) -> None:
        """Ask running lanes (or one lane) to stop; their steps record ``canceled``."""
        if lane_id is None:
            self._cancel_all.set()
            targets = list(self._runtimes.values())
        else:
            targets = [self.runtime(lane_id)]
        for rt in targets:
            rt.cancel.set()

    def recover(self) -> list[str]:
        """Reset steps left in flight by a dead driver so they are redone; return those lanes.

        Only call this while holding the run's driver lock: then nothing else can be running them.
        """
        stale = []
        for lane_id, lane in self.run.lanes.items():
            if lane.pgid is not None and stop_stale_group(lane.pgid, lane.worktree):
                self.store.event("stray-processes-stopped", lane_id, pgid=lane.pgid)
            lane.pgid = None
            if lane.current_step is not None:
                stale.append(lane_id)
                self.store.event("step-interrupted", lane_id, step=lane.current_step)
                lane.current_step = None
        self.run.halted = False
        self.store.save(self.run)
        return stale

    def absorb_cancel_requests(self) -> None:
        """Record cancel requests left by ``spine cancel`` and tell the lanes' steps to stop."""
        everything, requested = pending_cancel_requests(self.ctx, self.run.run_id)
        if not everything and not requested:
            return
        requested = with_attempts(self.run, requested)
        targets = [
            lane_id
            for lane_id, lane in self.run.lanes.items()
            if not lane.complete and not lane.spec.is_group and (everything or lane_id in requested)
        ]
        for lane_id in targets:
            facts = self.run.lanes[lane_id].facts
            if facts.cancel is None:
                facts.cancel = CancelRequest(requested_at=now_iso())
        self.store.save(self.run)
        self.store.event("cancel-requested", lanes=targets)
        clear_cancel_requests(self.ctx, self.run.run_id, everything, requested)
        for lane_id in targets:
            if lane_id in self._runtimes:
                self._runtimes[lane_id].cancel.set()

    def _fire_pseudo(self, lane_id: str, step: str) -> None:
        """Record why a lane that never started will not run, then write its result."""
        lane = self.run.lanes[lane_id]
        if step == BLOCK:
            causes = unmet_needs(self.run, lane)
            root: dict[str, str] = {}
            for need, status in causes.items():
                blocked = self.run.lanes[need].facts.blocked
                if status == LaneStatus.BLOCKED and blocked is not None:
                    root.update(blocked.root)
                else:
                    root[need] = status.value
            lane.facts.blocked = Blocked(needs={k: v.value for k, v in causes.items()}, root=root)
        elif lane.facts.cancel is not None:
            lane.facts.not_started = NotStarted(reason="canceled")
        else:
            lane.facts.not_started = NotStarted(reason="fail-fast", after=first_failure(self.run))
        self.runtime(lane_id)  # the result needs the lane's backend
        lane.current_step = "finalize"
        self.fire(lane_id, "finalize")

    def fire(self, lane_id: str, step: str) -> None:
        """Run one step of one lane and record its outcome in run.json and the journal."""
        if step in PSEUDO_STEPS:
            self._fire_pseudo(lane_id, step)
            return
        rt = self.runtime(lane_id)
        lane = rt.lane
        ran = lane.facts.execute is not None and lane.facts.execute.started_at is not None
        if rt.cancel.is_set() and step in ("create_worktree", "setup", "execute") and not ran:
            # Canceled before its command ran: record that and go straight to the result.
            lane.facts.execute = ExecuteFacts(canceled=True)
            if lane.worktree is None:
                lane.steps_done = [s for s in STEPS if s != "finalize"]
                lane.current_step = "finalize"
                self.fire(lane_id, "finalize")
                return
            self._done(lane_id, step)
            return
        try:
            again = STEP_FUNCTIONS[step](rt)
            self._crash_point(lane_id, step, "effects")
        except (SpineError, OSError) as exc:
            if step == "finalize":
                message, _ = describe_error(exc)
                self.store.event("finalize-failed", lane_id, error=message)
                raise StateUnwritable(
                    f"cannot record the result of lane {self.run.run_id}/{lane_id}: {message}",
                    f"fix that (free disk space, make {self.ctx.state.root} writable), then "
                    f"`spine resume {self.run.run_id}` finishes the lane",
                ) from exc
            self._halt(rt, step, exc)
            return
        self._done(lane_id, step, again=again)

    def _halt(self, rt: LaneRuntime, step: str, exc: BaseException) -> None:
        """The lane stops at ``step`` with ``exc`` as its cause: recorded once, its result written."""
        lane = rt.lane
        message, detail = describe_error(exc)
        lane.current_step = None
        lane.facts.halt = Halt(step=step, error=message, detail=detail)
        self.store.event("step-halted", lane.spec.id, step=step, error=message)
        lane.current_step = "finalize"
        try:
            finalize(rt)
        except (SpineError, OSError) as final_exc:
            final_message, _ = describe_error(final_exc)
            self.store.event("finalize-failed", lane.spec.id, error=final_message)
            raise StateUnwritable(
                f"lane {self.run.run_id}/{lane.spec.id} stopped at step {step} ({message}), and its result "
                f"cannot be written: {final_message}",
                f"fix that, then `spine resume {self.run.run_id}` records the lane",
            ) from final_exc
        lane.steps_done = [*(s for s in lane.steps if s != "finalize" and s in lane.steps_done), "finalize"]
        lane.current_step = None
        self.store.save_lane(self.run, lane.spec.id)
        if self.listener:
            self.listener(lane.spec.id, step, "halted")

    def _done(self, lane_id: str, step: str, again: str | None = None) -> None:
        """Record ``step`` as done; ``again`` (the repair loop) takes the lane back to that step."""
        lane = self.run.lanes[lane_id]
        if again is None:
            lane.steps_done.append(step)
        else:
            back = lane.steps.index(again)
            lane.steps_done = [s for s in lane.steps_done if lane.steps.index(s) < back]
        lane.current_step = None
        event = {"step": step}
        if again is not None:
            event["again"] = again
        if step == "finalize":
            event["status"] = lane.status.value
            stopped = stop_other_attempts(self.run, lane_id)
            for other in stopped:
                if other in self._runtimes:
                    self._runtimes[other].cancel.set()
            for other in stopped:
                self.store.save_lane(self.run, other)  # its cancel request
            if stopped:
                self.store.event("attempts-stopped", lane_id, lanes=stopped)
        self.store.event("step-done", lane_id, **event)
        self.store.save_lane(self.run, lane_id)
        self._crash_point(lane_id, step, "done")
        if self.listener:
            self.listener(lane_id, step, "done")

    def _begin(self, lane_id: str, step: str) -> None:
        lane = self.run.lanes[lane_id]
        lane.current_step = step
        lane.step_started_at = now_iso()
        if lane.status == LaneStatus.PLANNED and step not in PSEUDO_STEPS:
            lane.status = LaneStatus.RUNNING
            if lane.facts.started_at is None:
                lane.facts.started_at = lane.step_started_at
        self.store.save_lane(self.run, lane_id)
        self.store.event("step-started", lane_id, step=step)
        self._crash_point(lane_id, step, "begin")
        if self.listener:
            self.listener(lane_id, step, "start")

    def _save_quietly(self) -> None:
        """Save run.json on the way out of a failed drive, if the disk still lets us."""
        with contextlib.suppress(OSError):
            self.store.save(self.run)

    def _crash_point(self, lane_id: str, step: str, phase: str) -> None:
        if self._crash_at is None:
            return
        want_lane, want_step, want_phase = self._crash_at
        if step == want_step and phase == want_phase and want_lane in (None, lane_id):
            os.kill(os.getpid(), signal.SIGKILL)

    def drive(self, jobs: int = 1, max_steps: int | None = None) -> RunState:
        """Fire ready steps until none are left (or ``max_steps`` have fired); return the run.

        Ctrl-C or SIGTERM cancels every running lane; the lanes finish as ``canceled``, lanes that
        had not started stay planned (``spine resume`` runs them), and ``Interrupted`` is raised.
        """
        self.recover()
        self.absorb_cancel_requests()
        order = {lane_id: index for index, lane_id in enumerate(self.run.lanes)}
        fired = 0
        interrupted = False
        failure: BaseException | None = None
        futures: dict[Future[None], tuple[str, str]] = {}
        with sigterm_as_interrupt(), ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            while True:
                try:
                    busy = {lane_id for lane_id, _ in futures.values()}
                    fired_before = fired
                    ready = sorted(self.scheduler.ready(self.run), key=lambda p: (order[p[0]], p[1]))
                    if failure is not None:
                        ready = []  # stopping: what is in flight ends, nothing new starts
                    for lane_id, step in ready:
                        if max_steps is not None and fired >= max_steps:
                            break
                        if lane_id in busy:
                            continue  # its previous step is still recording its outcome
                        if interrupted and not started(self.run.lanes[lane_id]):
                            continue
                        self._begin(lane_id, step)
                        fired += 1
                        if step in PSEUDO_STEPS:
                            try:
                                self.fire(lane_id, step)  # no command runs; record it right away
                            except Exception as exc:
                                failure = exc
                                self.cancel()
                                break
                            continue
                        futures[pool.submit(self.fire, lane_id, step)] = (lane_id, step)
                        busy.add(lane_id)
                    if not futures:
                        if (
                            failure is None
                            and fired > fired_before
                            and (max_steps is None or fired < max_steps)
                        ):
                            continue  # pseudo-steps may have made more lanes ready
                        break
                    done, _ = wait(list(futures), timeout=0.2, return_when=FIRST_COMPLETED)
                    for future in done:
                        futures.pop(future)
                        error = future.exception()
                        if error is not None and failure is None:
                            failure = error
                            self.cancel()  # the other lanes stop; their steps record it
                    if failure is not None and not futures:
                        break
                    if failure is None:
                        self.absorb_cancel_requests()
                except KeyboardInterrupt:
                    if interrupted:
                        raise
                    interrupted = True
                    self.cancel()
        if failure is not None:
            self._save_quietly()
            raise failure
        if interrupted:
            self.run.halted = True
            self.store.save(self.run)
            raise Interrupted()
        return self.run


def _parse_crash_point(value: str) -> tuple[str | None, str, str] | None:
    """Parse ``[LANE/]STEP[:PHASE]`` (see the module docstring); empty means no crash point."""
    value = value.strip()
    if not value:
        return None
    lane, _, rest = value.rpartition("/")
    step, _, phase = rest.partition(":")
    return (lane or None, step, phase or "done")
