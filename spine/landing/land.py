"""The landing queue (``spine land``): land many lanes of a run, each tested on exactly what lands.

The rule it keeps: the target moves only to a tree that passed the gate checks, and each lane lands on
top of everything landed before it, in queue order. The outcome is the one of landing the lanes one
by one with ``spine promote --gate`` and skipping each that conflicts or fails; it is reached with
fewer gate runs, as merge queues do (bors, Zuul):

1. *Project*: compute, in git's object store only, the commit each lane would make on top of the
   previous lane's (``spine.landing.promote.landing_commit``; a merge that conflicts is retried as a
   replay of the lane's commits). A lane that conflicts is left out of the projection.
2. *Test the whole batch*: the gate runs on the projection's last tree (``spine.landing.gate``,
   verdicts cached by tree). Passed: the target moves there in one compare-and-swap.
3. *Bisect a failed batch*: test prefixes of the projection, up to ``jobs`` at once, until a lane
   whose prefix fails sits right after a prefix that passed. Land that prefix, eject the lane naming
   the failed check, and go back to 1 with the lanes after it.

A conflict or "already landed" seen in a projection is final once every lane ahead of it has landed.
Every decision is recorded in ``land.json`` (``spine.model.land``) when it is final; a batch's move
is written there before the target moves and its record is finished on resume, so a queue killed at
any point resumes without testing again what it decided and without landing a lane twice. A target
that someone else moved meanwhile is never overwritten: the queue notices and tests again on it.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import signal
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from spine.base.errors import EnvironmentProblem, ExitCode, SpineError, UsageError
from spine.base.files import atomic_write_json
from spine.base.git import git
from spine.base.ids import now_iso
from spine.base.locks import hold
from spine.drive.runs import load_result
from spine.landing.gate import GateVerdict, checks_hash, gate_checks, gate_tree
from spine.landing.promote import (
    PromoteRefused,
    TargetMoved,
    landing_commit,
    move_target,
    record_promotion,
    target_checkout,
    target_ref,
)
from spine.model.land import (
    LAND_VERSION,
    EjectKind,
    LandDecision,
    LandedLane,
    LandState,
    LandStrategy,
    PendingMove,
)
from spine.model.result import Ejection, LaneResult, LaneStatus, Promotion
from spine.model.state import RunState
from spine.workspace.context import ExecutionContext, parse_lane_branch
from spine.workspace.store import RunStore

CRASH_ENV = "SPINE_CRASH_AT"
"""``SPINE_CRASH_AT=land:PHASE`` SIGKILLs the queue at PHASE (before-move, moved, recording), for tests."""

Progress = Callable[[str], None]


class TargetFailsChecks(SpineError):
    """The target fails the gate checks before any lane is added: no lane can be tested on it. Exit 1."""

    exit_code = ExitCode.FAILED


class LandStateTooNew(EnvironmentProblem):
    """land.json was written by a newer spine. Exit 3."""


class LandStateUnreadable(EnvironmentProblem):
    """land.json is not valid (damaged by hand or by a disk problem). Exit 3."""


@dataclass
class Candidate:
    """A queued lane that may land: its result and the commit of its branch."""

    lane_id: str
    position: int
    result: LaneResult
    lane_sha: str
    needs: list[str]


@dataclass
class Step:
    """One lane in a projection: the commit the target would point at once it (and those ahead) landed."""

    lane: Candidate
    commit: str
    tree: str
    rebased: bool


@dataclass
class Projection:
    """The queue projected on a target commit: the steps, and the lanes left out with why."""

    base: str
    base_tree: str
    steps: list[Step]
    left_out: list[tuple[int, LandDecision]] = field(default_factory=list)


def load_state(ctx: ExecutionContext, run_id: str) -> LandState | None:
    """The run's landing queue as land.json holds it, or None when it never had one."""
    path = ctx.state.land_file(run_id)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        state = LandState.model_validate_json(text)
    except ValueError:
        raise LandStateUnreadable(
            f"{path} is not a valid landing queue: it was damaged",
            f"remove it to start the queue over (lanes that landed stay landed): rm {path}",
        ) from None
    if state.schema_version > LAND_VERSION:
        raise LandStateTooNew(
            f"{path} was written by a newer spine (version {state.schema_version})",
            "upgrade spine to continue this landing queue",
        )
    return state


def landing_order(run: RunState) -> list[str]:
    """The run's lanes in batch order, each after every lane it needs (or is stacked on)."""
    index = {lane_id: i for i, lane_id in enumerate(run.lanes)}
    needs = {lane_id: set(_needs(run, lane_id)) for lane_id in run.lanes}
    order: list[str] = []
    ready = [(index[lane], lane) for lane, wanted in needs.items() if not wanted]
    heapq.heapify(ready)
    placed: set[str] = set()
    while ready:
        _, lane_id = heapq.heappop(ready)
        order.append(lane_id)
        placed.add(lane_id)
        for other, wanted in needs.items():
            queued = any(item[1] == other for item in ready)
            if other not in placed and not queued and lane_id in wanted and wanted <= placed:
                heapq.heappush(ready, (index[other], other))
    # A batch has no cycles (it is validated), but a hand-edited run might: keep the rest in order.
    order += [lane for lane in run.lanes if lane not in placed]
    return order


def _needs(run: RunState, lane_id: str) -> list[str]:
    spec = run.lanes[lane_id].spec
    found = list(spec.needs)
    if spec.stacked_on and spec.stacked_on not in found:
        found.append(spec.stacked_on)
    return [n for n in found if n in run.lanes]


def land(
    ctx: ExecutionContext,
    run_id: str,
    lanes: Sequence[str] = (),
    *,
    into: str | None = None,
    strategy: LandStrategy | None = None,
    jobs: int = 1,
    restart: bool = False,
    progress: Progress | None = None,
) -> LandState:
    """Work the landing queue of run ``run_id``; see the module docstring. Returns its final state.

    An unfinished queue of the run (interrupted, killed) is resumed; a finished one is replaced by a
    new queue of the lanes not landed yet. Raises ``TargetFailsChecks`` when the target itself fails,
    ``PromoteRefused`` when the target's checkout is in the middle of an operation or has changes in
    the way, and KeyboardInterrupt when interrupted (the queue then resumes where it stopped).
    """
    store = RunStore(ctx.state, run_id)
    run = store.load()
    with hold(ctx.state.land_lock(run_id), f"landing run {run_id}", 0):
        state = load_state(ctx, run_id)
        if state is not None and state.finished_at is None:
            queue = LandQueue(ctx, store, run, state, jobs=jobs, progress=progress)
            queue.finish_pending()
            if not restart:
                _same_request(state, lanes, into, strategy)
                queue.say(f"resuming the landing queue of {run_id} into {state.target} ({state.strategy})")
                return queue.work()
        state = new_state(ctx, run, lanes, into=into, strategy=strategy or "merge")
        queue = LandQueue(ctx, store, run, state, jobs=jobs, progress=progress)
        queue.save()
        store.event("land-started", target=state.target, strategy=state.strategy, queue=state.queue)
        return queue.work()


def _same_request(
    state: LandState, lanes: Sequence[str], into: str | None, strategy: LandStrategy | None
) -> None:
    """Refuse to resume an unfinished queue with other lanes, another target or strategy."""
    differs = []
    if lanes and (not state.named or list(lanes) != state.queue):
        differs.append(f"lanes {' '.join(state.queue) if state.named else '(all succeeded)'}")
    if into and into.removeprefix("refs/heads/") != state.target:
        differs.append(f"--into {state.target}")
    if strategy and strategy != state.strategy:
        differs.append(f"--strategy {state.strategy}")
    if differs:
        raise UsageError(
            f"run {state.run_id} has an unfinished landing queue with {', '.join(differs)}",
            f"finish it with `spine land {state.run_id}`, or start over with --restart "
            "(lanes it landed stay landed)",
        )


def new_state(
    ctx: ExecutionContext,
    run: RunState,
    lanes: Sequence[str],
    *,
    into: str | None,
    strategy: LandStrategy,
) -> LandState:
    """A new queue: the named lanes in the order given, or every succeeded lane in landing order."""
    target, ref = target_ref(ctx, into or run.target_ref)
    target_sha = ctx.git.resolve_commit(ref)
    if target_sha is None:
        raise UsageError(
            f"the target {target!r} is not a local branch",
            "land onto a local branch: pass --into BRANCH (git branch lists them)",
        )
    now = now_iso()
    decisions: list[LandDecision] = []
    if lanes:
        queue = _named_queue(run, lanes)
    else:
        queue = []
        for lane_id in landing_order(run):
            status = _status(ctx, run, lane_id)
            if status == LaneStatus.SUCCEEDED.value:
                queue.append(lane_id)
            else:
                reason = f"not queued: the lane {_status_phrase(status)}"
                decisions.append(
                    LandDecision(lane_id=lane_id, outcome="skipped", reason=reason, decided_at=now)
                )
    return LandState(
        run_id=run.run_id,
        target=target,
        strategy=strategy,
        queue=queue,
        named=bool(lanes),
        target_start=target_sha,
        checks_hash=checks_hash(gate_checks(ctx), dict(ctx.config.env)),
        decisions=decisions,
        started_at=now,
        updated_at=now,
    )


def _status(ctx: ExecutionContext, run: RunState, lane_id: str) -> str | None:
    """The lane's result status, or None when it has no result yet."""
    if not ctx.state.result_file(run.run_id, lane_id).is_file():
        return None
    return load_result(ctx, run.run_id, lane_id).status.value


def _status_phrase(status: str | None) -> str:
    return "has no result yet" if status is None else f"did not succeed (status: {status})"


def _named_queue(run: RunState, lanes: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    for lane_id in lanes:
        if lane_id not in run.lanes:
            raise UsageError(
                f"run {run.run_id!r} has no lane {lane_id!r}", f"its lanes: {', '.join(run.lanes)}"
            )
        if lane_id in seen:
            raise UsageError(f"lane {lane_id!r} is named twice", "name each lane once, in landing order")
        for need in _needs(run, lane_id):
            if need in lanes and need not in seen:
                raise UsageError(
                    f"lane {lane_id!r} needs lane {need!r}, which is named after it",
                    f"name {need} first: a lane lands after the lanes it needs",
                )
        seen.add(lane_id)
    return list(lanes)


@contextlib.contextmanager
def _deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while the target moves and the move is recorded."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def later(signum: int, frame: types.FrameType | None) -> None:
        caught.append(signum)

    previous = {sig: signal.signal(sig, later) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        raise KeyboardInterrupt


def _crash_point(phase: str) -> None:
    if os.environ.get(CRASH_ENV, "") == f"land:{phase}":
        os.kill(os.getpid(), signal.SIGKILL)


class LandQueue:
    """Works one landing queue to its end; ``land`` builds it."""

    def __init__(
        self,
        ctx: ExecutionContext,
        store: RunStore,
        run: RunState,
        state: LandState,
        *,
        jobs: int = 1,
        progress: Progress | None = None,
    ) -> None:
        self.ctx = ctx
        self.store = store
        self.run = run
        self.state = state
        self.jobs = max(1, jobs)
        self.progress = progress
        self.checks = gate_checks(ctx)
        self.target, self.ref = target_ref(ctx, state.target)
        self.cancel = threading.Event()
        self.again = f"run `spine land {state.run_id}` again"
        self.ident = ctx.git.identity_env()

    # --- recording -------------------------------------------------------------------------------

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def save(self) -> None:
        self.state.updated_at = now_iso()
        text = self.state.model_dump_json(by_alias=True, indent=2) + "\n"
        atomic_write_json(self.ctx.state.land_file(self.state.run_id), text)

    def _decide(self, decision: LandDecision) -> None:
        """Record a final decision (its result file first, then the queue's state)."""
        if self.state.decision(decision.lane_id) is not None:
            return
        if decision.outcome == "ejected":
            self._record_ejection(decision)
            self.say(f"ejected {decision.lane_id}: {decision.reason}")
        elif decision.outcome == "already-landed":
            self.say(f"{decision.lane_id}: {decision.reason}")
        self.state.decisions.append(decision)
        self.save()

    def _record_ejection(self, decision: LandDecision) -> None:
        run_id, lane_id = self.state.run_id, decision.lane_id
        self.store.event("ejected", lane_id, why=decision.kind, reason=decision.reason, target=self.target)
        if not self.ctx.state.result_file(run_id, lane_id).is_file():
            return
        result = load_result(self.ctx, run_id, lane_id)
        ejection = Ejection(
            target=self.target,
            target_sha=decision.target_before,
            kind=cast(EjectKind, decision.kind),
            reason=decision.reason,
            conflicts=decision.conflicts,
            check=decision.check,
            output_tail=decision.output_tail,
            tree=decision.tree if decision.kind == "check-failed" else None,
            ejected_at=decision.decided_at,
        )
        updated = result.model_copy(
            update={"ejection": ejection, "next_action": _next_action(run_id, lane_id, self.target, decision)}
        )
        atomic_write_json(self.ctx.state.result_file(run_id, lane_id), updated.to_json())

    # --- the queue -------------------------------------------------------------------------------

    def work(self) -> LandState:
        """Decide every queued lane; return the finished state."""
        while self.state.undecided():
            head = self._target_sha()
            if self._adopt_abandoned(head):
                continue
            checkout = target_checkout(self.ctx, self.target, again=self.again)
            candidates = self._screen()
            if not candidates:
                continue
            projection = self._project(head, candidates)
            if not projection.steps:
                self._settle(projection, before=None)
                continue
            count = len(projection.steps)
            self.say(
                f"testing {_lanes(projection.steps)} together on {self.target} ({head[:12]}), "
                f"tree {projection.steps[-1].tree[:12]}"
            )
            verdicts = self._gate_prefixes(projection, [count])
            if verdicts[count].passed:
                if self._land(projection, count, verdicts[count], checkout):
                    self._settle(projection, before=None)
                continue
            culprit, verdicts = self._bisect(projection, verdicts)
            if culprit == 1:
                self._require_target_passes(projection)
            if culprit > 1 and not self._land(projection, culprit - 1, verdicts[culprit - 1], checkout):
                continue
            if culprit == 1 and self._target_sha() != head:
                self._moved_under(head)
                continue
            step = projection.steps[culprit - 1]
            self._settle(projection, before=step.lane.position)
            self._decide(_check_failed(step, verdicts[culprit], self.target, projection, culprit))
        if self.state.finished_at is None:
            self.state.finished_at = now_iso()
            self.state.target_end = self.ctx.git.resolve_commit(self.ref)
            self.save()
            landed = [d.lane_id for d in self.state.decisions if d.outcome == "landed"]
            ejected = [d.lane_id for d in self.state.decisions if d.outcome == "ejected"]
            self.store.event(
                "land-finished",
                target=self.target,
                landed=landed,
                ejected=ejected,
                gate_runs=self.state.gate_runs,
                gate_cached=self.state.gate_cached,
            )
        return self.state

    def _target_sha(self) -> str:
        sha = self.ctx.git.resolve_commit(self.ref)
        if sha is None:
            raise UsageError(
                f"the target {self.target!r} is not a local branch (any more)",
                f"recreate it, or start over with `spine land {self.state.run_id} --into BRANCH --restart`",
            )
        return sha

    def _screen(self) -> list[Candidate]:
        """The undecided lanes that can be projected; decides (final) those that cannot land at all."""
        undecided = self.state.undecided()
        results = {lane_id: self._result(lane_id) for lane_id in undecided}
        branches = [r.branch for r in results.values() if r is not None and r.branch]
        # Every branch in one git process; when one is gone, each is resolved on its own below.
        shas = self.ctx.git.resolve_commits([f"refs/heads/{b}" for b in branches]) if branches else None
        known = dict(zip(branches, shas, strict=True)) if shas is not None else {}
        candidates: list[Candidate] = []
        for lane_id in undecided:
            decision, candidate = self._screen_one(lane_id, results[lane_id], known)
            if decision is not None:
                self._decide(decision)
            elif candidate is not None:
                candidates.append(candidate)
        return candidates

    def _result(self, lane_id: str) -> LaneResult | None:
        if not self.ctx.state.result_file(self.state.run_id, lane_id).is_file():
            return None
        return load_result(self.ctx, self.state.run_id, lane_id)

    def _screen_one(
        self, lane_id: str, result: LaneResult | None, known: dict[str, str]
    ) -> tuple[LandDecision | None, Candidate | None]:
        run_id, now = self.state.run_id, now_iso()

        def eject(kind: EjectKind, reason: str) -> tuple[LandDecision, None]:
            return LandDecision(
                lane_id=lane_id, outcome="ejected", kind=kind, reason=reason, decided_at=now
            ), None

        if result is None or result.status != LaneStatus.SUCCEEDED:
            return eject(
                "not-succeeded", f"the lane {_status_phrase(result.status.value if result else None)}"
            )
        if result.promotion is not None:
            p = result.promotion
            reason = f"landed before on {p.target} ({p.strategy}, {p.promoted_at})"
            decision = LandDecision(
                lane_id=lane_id,
                outcome="already-landed",
                reason=reason,
                lane_head=p.lane_head,
                decided_at=now,
            )
            return decision, None
        if not result.branch or parse_lane_branch(result.branch) is None:
            return eject("no-branch", "the lane ran in place: it has no lane branch to land")
        lane_sha = known.get(result.branch) or self.ctx.git.branch_sha(result.branch)
        if lane_sha is None:
            return eject("no-branch", f"its branch {result.branch} no longer exists")
        if result.head_sha and lane_sha != result.head_sha:
            return eject(
                "branch-moved",
                f"branch {result.branch} moved since the lane finished ({result.head_sha[:12]} -> "
                f"{lane_sha[:12]}): what would land is not what the lane's checks saw",
            )
        for need in _needs(self.run, lane_id):
            decided = self.state.decision(need)
            if decided is not None and decided.outcome in ("landed", "already-landed"):
                continue
            if decided is not None and decided.outcome == "ejected":
                return eject("needs-ejected", f"it needs lane {need}, which was ejected ({decided.reason})")
            if decided is None and need in self.state.queue:
                continue  # ahead in the queue: the projection lands it first or leaves this one out
            if not self._landed_elsewhere(need):
                return eject(
                    "needs-not-landed",
                    f"it needs lane {need}, which has not landed and is not in this queue "
                    f"(land both: spine land {run_id} {need} {lane_id})",
                )
        needs = _needs(self.run, lane_id)
        return None, Candidate(lane_id, self.state.queue.index(lane_id), result, lane_sha, needs)

    def _landed_elsewhere(self, lane_id: str) -> bool:
        if not self.ctx.state.result_file(self.state.run_id, lane_id).is_file():
            return False
        return load_result(self.ctx, self.state.run_id, lane_id).promotion is not None

    def _project(self, base: str, candidates: list[Candidate]) -> Projection:
        """Each candidate's landing on top of the previous one's; conflicts and no-ops are left out."""
        projection = Projection(base, self.ctx.git.tree_of(base), [])
        head, head_tree = base, projection.base_tree
        out: dict[str, str] = {}  # lane left out -> why, for the lanes that need it
        for cand in candidates:
            now = now_iso()
            blocked = next((n for n in cand.needs if n in out), None)
            if blocked is not None:
                reason = f"it needs lane {blocked}, which was ejected ({out[blocked]})"
                decision = LandDecision(
                    lane_id=cand.lane_id,
                    outcome="ejected",
                    kind="needs-ejected",
                    reason=reason,
                    decided_at=now,
                )
                projection.left_out.append((cand.position, decision))
                out[cand.lane_id] = reason
                continue
            landing = landing_commit(
                self.ctx,
                self.state.strategy,
                ident=self.ident,
                target=self.target,
                target_sha=head,
                lane_sha=cand.lane_sha,
                run_id=self.state.run_id,
                lane_id=cand.lane_id,
                objective=cand.result.objective,
                rebase_on_conflict=True,
            )
            if landing.commit is None:
                paths = landing.conflicts
                reason = (
                    f"conflicts with {self.target} in: {', '.join(paths)}"
                    if paths
                    else f"its commits do not apply on {self.target}: {landing.detail}"
                )
                decision = LandDecision(
                    lane_id=cand.lane_id,
                    outcome="ejected",
                    kind="conflict",
                    reason=reason,
                    lane_head=cand.lane_sha,
                    conflicts=paths,
                    target_before=head,
                    decided_at=now,
                )
                projection.left_out.append((cand.position, decision))
                out[cand.lane_id] = "conflict"
                continue
            tree = landing.tree or self.ctx.git.tree_of(landing.commit)
            if tree == head_tree:
                decision = LandDecision(
                    lane_id=cand.lane_id,
                    outcome="already-landed",
                    reason=f"its change is already in {self.target}",
                    lane_head=cand.lane_sha,
                    decided_at=now,
                )
                projection.left_out.append((cand.position, decision))
                continue
            projection.steps.append(Step(cand, landing.commit, tree, landing.rebased))
            head, head_tree = landing.commit, tree
        return projection

    def _settle(self, projection: Projection, *, before: int | None) -> None:
        """Make final the lanes left out of ``projection`` that sit ahead of queue position ``before``
        (all, when None): every lane ahead of them has landed, so what they met is what they get."""
        for position, decision in projection.left_out:
            if before is None or position < before:
                self._decide(decision)

    # --- gates -----------------------------------------------------------------------------------

    def _gate(self, projection: Projection, count: int) -> GateVerdict:
        """The gate on the first ``count`` steps of ``projection`` (0: the target itself)."""
        if count == 0:
            tree, commit, what = projection.base_tree, projection.base, f"{self.target} itself"
        else:
            step = projection.steps[count - 1]
            tree, commit, what = (
                step.tree,
                step.commit,
                f"land {self.state.run_id}: {_lanes(projection.steps[:count])}",
            )
        return gate_tree(
            self.ctx,
            tree=tree,
            commit=commit,
            rev=what,
            rev_sha=commit,
            into=self.target,
            into_sha=projection.base,
            checks=self.checks,
            cancel=self.cancel,
        )

    def _gate_prefixes(self, projection: Projection, counts: list[int]) -> dict[int, GateVerdict]:
        """Gate several prefixes of ``projection``, up to ``jobs`` at once."""
        verdicts: dict[int, GateVerdict] = {}
        if len(counts) == 1 or self.jobs == 1:
            for count in counts:
                verdicts[count] = self._gate(projection, count)
                self._count(verdicts[count])
        else:
            with ThreadPoolExecutor(max_workers=min(self.jobs, len(counts))) as pool:
                futures: dict[Future[GateVerdict], int] = {
                    pool.submit(self._gate, projection, count): count for count in counts
                }
                try:
                    wait(futures)
                except BaseException:
                    self.cancel.set()  # stop the other gates' checks, then let them end
                    wait(futures)
                    self.cancel.clear()
                    raise
                for future, count in futures.items():
                    verdicts[count] = future.result()
                    self._count(verdicts[count])
        self.save()
        return verdicts

    def _count(self, verdict: GateVerdict) -> None:
        if verdict.cached:
            self.state.gate_cached += 1
        else:
            self.state.gate_runs += 1
        failed = next((c for c in verdict.checks if c.status == "failed"), None)
        word = (
            "passed"
            if verdict.passed
            else f"failed ({failed.name}: {failed.summary})"
            if failed
            else "failed"
        )
        self.say(f"  gate {word}{' [cached]' if verdict.cached else ''}: {verdict.rev}")

    def _bisect(
        self, projection: Projection, verdicts: dict[int, GateVerdict]
    ) -> tuple[int, dict[int, GateVerdict]]:
        """The first step whose prefix fails right after a prefix that passes (or the target)."""
        lo, hi = 0, len(projection.steps)
        while hi - lo > 1:
            points = _spread(lo, hi, self.jobs)
            self.say(f"bisecting: testing the first {', '.join(str(p) for p in points)} of {hi} lanes")
            found = self._gate_prefixes(projection, points)
            verdicts.update(found)
            failing = [p for p in points if not found[p].passed]
            if failing:
                hi = min(failing)
            lo = max([lo, *(p for p in points if found[p].passed and p < hi)])
        return hi, verdicts

    def _require_target_passes(self, projection: Projection) -> None:
        """Refuse when the target itself fails: then the first lane is not to blame for it."""
        verdict = self._gate_prefixes(projection, [0])[0]
        if verdict.passed:
            return
        failed = next((c for c in verdict.checks if c.status == "failed"), None)
        what = f"{failed.name} ({failed.summary})" if failed else "the checks"
        raise TargetFailsChecks(
            f"{self.target} ({projection.base[:12]}) fails the gate checks itself: {what}; "
            "no lane can be tested on it, nothing was landed or ejected",
            f"fix {self.target} first (reproduce with `spine gate {self.target} --into {self.target}`), "
            f"then {self.again}",
        )

    # --- moving the target -----------------------------------------------------------------------

    def _land(self, projection: Projection, count: int, verdict: GateVerdict, checkout: Path | None) -> bool:
        """Move the target to the first ``count`` steps of ``projection`` (their tree passed); record
        each lane as landed. False when the target moved under the queue (nothing was changed)."""
        steps = projection.steps[:count]
        lane_ids = [s.lane.lane_id for s in steps]
        commits = self._own_commits(projection.base, [s.commit for s in steps])
        pending = PendingMove(
            before=projection.base,
            after=steps[-1].commit,
            tree=steps[-1].tree,
            gate="cached" if verdict.cached else "passed",
            checkout=str(checkout) if checkout is not None else None,
            lanes=[
                LandedLane(lane_id=s.lane.lane_id, lane_head=s.lane.lane_sha, commits=c, rebased=s.rebased)
                for s, c in zip(steps, commits, strict=True)
            ],
        )
        timeout = self.ctx.config.lock_timeout
        with contextlib.ExitStack() as locks:
            # The locks `spine promote` takes, in its order: a lane lands once, the target moves once.
            for lane_id in sorted(lane_ids):
                locks.enter_context(
                    hold(self.ctx.state.promote_lock(self.state.run_id, lane_id), "landing the lane", timeout)
                )
            locks.enter_context(hold(self.ctx.state.lock_file("promote"), "landing a queue", timeout))
            if any(self._landed_elsewhere(lane_id) for lane_id in lane_ids):
                return False  # promoted by hand meanwhile: project again, it is screened out
            with _deferred_interrupts():
                self.state.pending = pending
                self.save()
                _crash_point("before-move")
                try:
                    move_target(
                        self.ctx,
                        target=self.target,
                        before=pending.before,
                        after=pending.after,
                        checkout=Path(pending.checkout) if pending.checkout else None,
                        reason=f"spine land {self.state.run_id}: {', '.join(lane_ids)}",
                        again=self.again,
                    )
                except TargetMoved:
                    self.state.pending = None
                    self._moved_under(pending.before)
                    return False
                except PromoteRefused:
                    self.state.pending = None
                    self.save()
                    raise
                _crash_point("moved")
                self._record_landing(pending)
        return True

    def _own_commits(self, base: str, heads: list[str]) -> list[list[str]]:
        """For each of ``heads`` (each descending from the one before, the first from ``base``), the
        commits it adds to the one before, oldest first; one git process for all of them."""
        listing = git(
            "rev-list", "--reverse", "--parents", f"{base}..{heads[-1]}", cwd=self.ctx.repo.primary_checkout
        ).stdout
        order: list[str] = []
        parents: dict[str, list[str]] = {}
        for line in listing.splitlines():
            sha, *rest = line.split()
            order.append(sha)
            parents[sha] = rest

        def reach(head: str) -> set[str]:
            seen: set[str] = set()
            stack = [head]
            while stack:
                sha = stack.pop()
                if sha in parents and sha not in seen:
                    seen.add(sha)
                    stack.extend(parents[sha])
            return seen

        found: list[list[str]] = []
        before: set[str] = set()
        for head in heads:
            reached = reach(head)
            found.append([sha for sha in order if sha in reached and sha not in before])
            before = reached
        return found

    def _moved_under(self, before: str) -> None:
        now = self.ctx.git.resolve_commit(self.ref) or "deleted"
        self.state.target_moved_under += 1
        self.save()
        self.store.event("land-target-moved", target=self.target, expected=before, found=now)
        self.say(f"{self.target} moved under the queue ({before[:12]} -> {now[:12]}); testing again on it")

    def finish_pending(self) -> None:
        """Finish recording a batch whose move a crash interrupted, or forget it if it did not move."""
        pending = self.state.pending
        if pending is None:
            return
        now = self.ctx.git.resolve_commit(self.ref)
        if now is not None and (now == pending.after or self.ctx.git.is_ancestor(pending.after, now)):
            with _deferred_interrupts():
                self._record_landing(pending)
        else:
            self.state.abandoned.append(pending)
            self.state.pending = None
            self.save()

    def _adopt_abandoned(self, head: str) -> bool:
        """Record a move found not made on resume that the target has after all; True if one was."""
        for pending in list(self.state.abandoned):
            if self.ctx.git.is_ancestor(pending.after, head):
                self.state.abandoned.remove(pending)
                with _deferred_interrupts():
                    self._record_landing(pending)
                return True
        return False

    def _record_landing(self, pending: PendingMove) -> None:
        batch = [lane.lane_id for lane in pending.lanes]
        for index, landed in enumerate(pending.lanes):
            result = load_result(self.ctx, self.state.run_id, landed.lane_id)
            if result.promotion is None or result.promotion.target_after != pending.after:
                promotion = Promotion(
                    strategy=self.state.strategy,
                    target=self.target,
                    target_before=pending.before,
                    target_after=pending.after,
                    lane_head=landed.lane_head,
                    commits=landed.commits,
                    checkout=pending.checkout,
                    gate=pending.gate,
                    promoted_at=now_iso(),
                    via="land",
                )
                record_promotion(self.ctx, self.store, result, promotion)
            if index == 0:
                _crash_point("recording")
            if self.state.decision(landed.lane_id) is None:
                self.state.decisions.append(
                    LandDecision(
                        lane_id=landed.lane_id,
                        outcome="landed",
                        reason=f"landed with {_plural(len(batch), 'lane')} on a tree that passed the gate"
                        + (" (its commits were replayed: its merge conflicted)" if landed.rebased else ""),
                        lane_head=landed.lane_head,
                        commits=landed.commits,
                        rebased=landed.rebased,
                        target_before=pending.before,
                        target_after=pending.after,
                        tree=pending.tree,
                        batch=batch,
                        gate=pending.gate,
                        decided_at=now_iso(),
                    )
                )
        self.state.pending = None
        self.state.moves += 1
        self.save()
        self.say(f"landed {', '.join(batch)}: {self.target} {pending.before[:12]} -> {pending.after[:12]}")


def _check_failed(
    step: Step, verdict: GateVerdict, target: str, projection: Projection, count: int
) -> LandDecision:
    failed = next((c for c in verdict.checks if c.status == "failed"), None)
    ahead = count - 1
    on = f"{target} with {_plural(ahead, 'lane')} ahead of it" if ahead else target
    if failed is None:  # a verdict that failed without a failed check: only a conflict does that
        reason = f"the gate failed on {on}: {verdict.reason}"
    else:
        reason = f"check {failed.name} failed on {on}: {failed.summary}"
    return LandDecision(
        lane_id=step.lane.lane_id,
        outcome="ejected",
        kind="check-failed",
        reason=reason,
        lane_head=step.lane.lane_sha,
        target_before=projection.steps[ahead - 1].commit if ahead else projection.base,
        tree=step.tree,
        check=failed.name if failed else None,
        check_command=failed.command if failed else None,
        output_tail=failed.output_tail if failed else [],
        log_path=failed.log_path if failed else None,
        decided_at=now_iso(),
    )


def _next_action(run_id: str, lane_id: str, target: str, decision: LandDecision) -> str:
    again = f"`spine land {run_id} {lane_id}`"
    if decision.kind == "conflict":
        return (
            f"ejected from the landing queue: it conflicts with {target} in {', '.join(decision.conflicts)}; "
            f"run the lane again on the new {target} (or resolve it on its branch and land it with "
            f"`spine promote {run_id}/{lane_id} --gate --force`)"
        )
    if decision.kind == "check-failed":
        return (
            f"ejected from the landing queue: {decision.reason}; reproduce it with "
            f"`spine gate --lane {run_id}/{lane_id}`, fix the lane, then {again}"
        )
    return f"ejected from the landing queue: {decision.reason}; fix that, then {again}"


def _spread(lo: int, hi: int, jobs: int) -> list[int]:
    """Up to ``jobs`` prefix lengths strictly between ``lo`` and ``hi``, evenly spaced, rounded up:
    a probe that passes is the prefix that lands, so between two equal choices the longer one."""
    count = min(jobs, hi - lo - 1)
    points = {lo - (-(i + 1) * (hi - lo) // (count + 1)) for i in range(count)}
    return sorted(p for p in points if lo < p < hi)


def _lanes(steps: Sequence[Step]) -> str:
    ids = [s.lane.lane_id for s in steps]
    shown = ", ".join(ids) if len(ids) <= 6 else f"{', '.join(ids[:3])}, ... {', '.join(ids[-2:])}"
    return f"{_plural(len(ids), 'lane')} ({shown})"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"
