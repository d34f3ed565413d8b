"""The drive loop: ask the scheduler what is ready, fire it, record the outcome, repeat.

run.json is the loop's state. Before a step starts, the lane's ``currentStep`` is recorded; when it
ends, the step is added to ``stepsDone`` (or, if it raised, the lane is halted with the reason and
its state is left unadvanced). ``spine run`` and ``spine batch`` both use this loop.
"""

from __future__ import annotations

import signal
import threading
import types
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager

from spine.backends.base import Sandbox
from spine.backends.registry import require_usable
from spine.context import ExecutionContext
from spine.errors import SpineError
from spine.lane import STEP_FUNCTIONS, Echo, LaneRuntime, finalize
from spine.result import LaneStatus
from spine.scheduler import Scheduler
from spine.state import STEPS, RunState, RunStore, now_iso

StepListener = Callable[[str, str, str], None]
"""Called with (lane id, step, "start" | "done" | "halted") for progress display."""


class Interrupted(Exception):
    """The driver was asked to stop (Ctrl-C or SIGTERM)."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while the loop runs, so both cancel lanes cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: types.FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
    ) -> None:
        self.ctx = ctx
        self.store = store
        self.run = run
        self.scheduler = scheduler
        self.echo = echo
        self.listener = listener
        self._backends: dict[str, Sandbox] = {}
        self._runtimes: dict[str, LaneRuntime] = {}
        self._cancel_all = threading.Event()

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
            )
            if self._cancel_all.is_set():
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

    def fire(self, lane_id: str, step: str) -> None:
        """Run one step of one lane and record its outcome in run.json and the journal."""
        rt = self.runtime(lane_id)
        lane = rt.lane
        ran = bool((lane.facts.get("execute") or {}).get("startedAt"))
        if rt.cancel.is_set() and step in ("create_worktree", "setup", "execute") and not ran:
            # Canceled before its command ran: record that and go straight to the result.
            lane.facts["execute"] = {"canceled": True, "exitCode": None}
            if lane.worktree is None:
                lane.steps_done = [s for s in STEPS if s != "finalize"]
                lane.current_step = "finalize"
                self.fire(lane_id, "finalize")
                return
            self._done(lane_id, step)
            return
        try:
            STEP_FUNCTIONS[step](rt)
        except Exception as exc:  # a step that cannot execute halts its lane, state unadvanced
            message = exc.message if isinstance(exc, SpineError) else f"{type(exc).__name__}: {exc}"
            lane.current_step = None
            lane.error = f"step {step} failed: {message}"
            self.store.event("step-halted", lane_id, step=step, error=message)
            try:
                finalize(rt)
                lane.steps_done.append("finalize")
            except Exception as final_exc:  # even the result could not be written
                lane.status = LaneStatus.FAILED
                self.store.event("finalize-failed", lane_id, error=str(final_exc))
            self.store.save(self.run)
            if self.listener:
                self.listener(lane_id, step, "halted")
            return
        self._done(lane_id, step)

    def _done(self, lane_id: str, step: str) -> None:
        lane = self.run.lanes[lane_id]
        lane.steps_done.append(step)
        lane.current_step = None
        event = {"step": step}
        if step == "finalize":
            event["status"] = lane.status.value
        self.store.event("step-done", lane_id, **event)
        self.store.save(self.run)
        if self.listener:
            self.listener(lane_id, step, "done")

    def _begin(self, lane_id: str, step: str) -> None:
        lane = self.run.lanes[lane_id]
        lane.current_step = step
        lane.step_started_at = now_iso()
        if lane.status == LaneStatus.PLANNED:
            lane.status = LaneStatus.RUNNING
        self.store.save(self.run)
        self.store.event("step-started", lane_id, step=step)
        if self.listener:
            self.listener(lane_id, step, "start")

    def drive(self, jobs: int = 1, max_steps: int | None = None) -> RunState:
        """Fire ready steps until none are left (or ``max_steps`` have fired); return the run.

        Ctrl-C or SIGTERM cancels every running lane; the lanes finish as ``canceled`` and
        ``Interrupted`` is raised once they are recorded.
        """
        fired = 0
        interrupted = False
        futures: dict[Future[None], tuple[str, str]] = {}
        with sigterm_as_interrupt(), ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            while True:
                try:
                    if max_steps is None or fired < max_steps:
                        for lane_id, step in sorted(self.scheduler.ready(self.run)):
                            if max_steps is not None and fired >= max_steps:
                                break
                            if any(key == (lane_id, step) for key in futures.values()):
                                continue
                            self._begin(lane_id, step)
                            futures[pool.submit(self.fire, lane_id, step)] = (lane_id, step)
                            fired += 1
                    if not futures:
                        break
                    done, _ = wait(list(futures), timeout=0.2, return_when=FIRST_COMPLETED)
                    for future in done:
                        futures.pop(future)
                        future.result()
                except KeyboardInterrupt:
                    if interrupted:
                        raise
                    interrupted = True
                    self.cancel()
        if interrupted:
            raise Interrupted()
        return self.run
