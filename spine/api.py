"""What the command line does, as plain functions: for scripts and for the commands themselves.

Every function takes an ``ExecutionContext`` (``spine.api.context()`` resolves one) and returns the
same models the state and result files hold. Errors are ``spine.base.errors.SpineError`` subclasses
carrying the exit code the command line would end with: ``UsageError`` (2), ``EnvironmentProblem``
(3), ``PromoteRefused`` (1). ``import spine`` exposes these functions lazily (``spine.__all__``);
they are part of spine's versioned contract. See docs/api.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spine.base.errors import UsageError
from spine.base.ids import check_id, new_run_id
from spine.drive.runs import create_run, drive_run, load_result, parse_ref
from spine.lane.spec import LaneRequest, batch_lane_specs, resolve_lane_specs
from spine.model.result import LaneResult
from spine.model.state import LaneSpec, RunState
from spine.workspace.context import ExecutionContext, resolve_context
from spine.workspace.store import RunStore

if TYPE_CHECKING:
    from spine.base.process import OutputSink
    from spine.drive.attempts import Comparison
    from spine.drive.loop import StepListener
    from spine.landing.gate import GateVerdict
    from spine.landing.promote import Landing, Strategy
    from spine.lane.runtime import Echo, OutputLines
    from spine.model.config import CheckSpec
    from spine.model.land import LandState, LandStrategy
    from spine.views.dashboard import Dashboard

Listen = Callable[[RunState], "StepListener"]


def context(
    cwd: Path | str | None = None,
    *,
    base: str | None = None,
    target: str | None = None,
    backend: str | None = None,
) -> ExecutionContext:
    """The execution context of the repository at ``cwd`` (default: the working directory)."""
    return resolve_context(cwd, base=base, target=target, backend=backend)


def plan_lane(
    ctx: ExecutionContext, request: LaneRequest, *, run_id: str | None = None, jobs: int | None = None
) -> tuple[RunStore, RunState]:
    """Record a one-lane run for ``request`` without starting it (``spine step`` or ``resume`` drive it).

    A request with attempts records the lane and its attempts; ``jobs`` (default: all of them)
    says how many attempts run at once.
    """
    specs = resolve_lane_specs(request, ctx.config, origin="flag")
    for spec in specs:
        _refuse_in_place(ctx, spec)
    rid = check_id("run id", run_id) if run_id else new_run_id()
    attempts = len(specs[0].attempts)
    return create_run(ctx, rid, specs, kind="run", jobs=jobs or max(1, attempts))


def run_lane(
    ctx: ExecutionContext,
    request: LaneRequest,
    *,
    run_id: str | None = None,
    jobs: int | None = None,
    echo: Echo = "none",
    listen: Listen | None = None,
) -> tuple[RunState, LaneResult]:
    """Run one lane (with its attempts, if it has any) end to end; return its run and its result.

    Raises KeyboardInterrupt when interrupted (its lanes end canceled), ``RunBusy`` when another
    process drives the run.
    """
    store, run = plan_lane(ctx, request, run_id=run_id, jobs=jobs)
    run = drive_run(ctx, store, run, echo=echo, listen=listen)
    lane_id = next(iter(run.lanes))
    return run, load_result(ctx, run.run_id, lane_id)


def compare(ctx: ExecutionContext, run_id: str, lane_id: str) -> Comparison:
    """The attempts of lane RUN/LANE side by side: figures, pairwise agreement, the pick once made."""
    from spine.drive.attempts import comparison

    return comparison(ctx, RunStore(ctx.state, run_id).load(), lane_id)


def pick(ctx: ExecutionContext, run_id: str, lane_id: str, attempt: int) -> LaneResult:
    """Make attempt ``attempt`` the pick of lane RUN/LANE; return the lane's rewritten result."""
    from spine.drive.attempts import pick as pick_attempt

    return pick_attempt(ctx, run_id, lane_id, attempt)


def plan_batch(
    ctx: ExecutionContext,
    data: object,
    source: str = "<batch>",
    *,
    run_id: str | None = None,
    jobs: int = 1,
    fail_fast: bool = False,
) -> tuple[RunStore, RunState]:
    """Validate a batch (already parsed YAML/JSON data) and record its run; nothing starts yet."""
    from spine.base.backend_names import known_backend_names
    from spine.model.batch import parse_batch

    batch = parse_batch(data, source, known_backend_names())
    specs = batch_lane_specs(batch, ctx.config, source)
    for spec in specs:
        _refuse_in_place(ctx, spec)
    rid = check_id("run id", run_id) if run_id else new_run_id()
    return create_run(ctx, rid, specs, kind="batch", jobs=jobs, fail_fast=fail_fast, source=source)


def run_batch(
    ctx: ExecutionContext,
    batch: Mapping[str, Any] | Path,
    *,
    run_id: str | None = None,
    jobs: int = 1,
    fail_fast: bool = False,
    echo: Echo = "none",
    listen: Listen | None = None,
) -> RunState:
    """Run a batch end to end and return its run; ``batch`` is the data of a batch file, or its path.

    Lanes that fail do not raise: read them with ``results`` (``exit_code(run)`` is what ``spine
    batch`` would exit with). Raises ``UsageError`` for an invalid batch (nothing is created then),
    KeyboardInterrupt when interrupted (running lanes end canceled; ``drive`` continues the rest).
    """
    if isinstance(batch, Path):
        from spine.model.batch import read_batch

        source, data = read_batch(str(batch))
    else:
        source, data = "<batch>", dict(batch)
    _, run = plan_batch(ctx, data, source, run_id=run_id, jobs=jobs, fail_fast=fail_fast)
    return drive(ctx, run.run_id, echo=echo, listen=listen)


def drive(
    ctx: ExecutionContext,
    run_id: str,
    *,
    jobs: int | None = None,
    echo: Echo = "none",
    listen: Listen | None = None,
    max_steps: int | None = None,
    lines: OutputLines | None = None,
) -> RunState:
    """Drive run ``run_id`` until every lane has a result (or ``max_steps`` steps fired).

    ``listen(run)`` returns a callable told ``(lane, step, "start" | "done" | "halted")`` as steps
    fire; ``lines`` is kept up to date with each lane's last output line.
    """
    store = RunStore(ctx.state, run_id)
    return drive_run(
        ctx, store, store.load(), jobs=jobs, echo=echo, listen=listen, max_steps=max_steps, lines=lines
    )


def exit_code(run: RunState) -> int:
    """The exit code the command line gives for ``run``: 0 when every lane succeeded, else 1, 3 or 130."""
    from spine.drive.runs import exit_code_for

    return exit_code_for((lane.status for lane in run.lanes.values()), run)


def retry(ctx: ExecutionContext, run_id: str, lanes: Sequence[str] = ()) -> list[str]:
    """Reset lanes that failed, were blocked or canceled (default: all such) again, each as a new try."""
    from spine.drive.retry import retry as retry_lanes

    _, retried = retry_lanes(ctx, RunStore(ctx.state, run_id), list(lanes))
    return retried


def load_run(ctx: ExecutionContext, ref: str | None = None) -> RunState:
    """The run ``ref`` names (``RUN``; default: the latest run)."""
    run_id, _ = parse_ref(ctx, ref)
    return RunStore(ctx.state, run_id).load()


def list_runs(ctx: ExecutionContext) -> list[str]:
    """The ids of the repository's runs, oldest first."""
    from spine.drive.runs import list_run_ids

    return list_run_ids(ctx)


def results(ctx: ExecutionContext, run_id: str) -> list[LaneResult]:
    """The result of every lane of a run that has one, in lane order."""
    run = RunStore(ctx.state, run_id).load()
    return [
        load_result(ctx, run_id, lane_id)
        for lane_id in run.lanes
        if ctx.state.result_file(run_id, lane_id).is_file()
    ]


def result(ctx: ExecutionContext, run_id: str, lane_id: str) -> LaneResult:
    """The result of lane RUN/LANE."""
    return load_result(ctx, run_id, lane_id)


def land(
    ctx: ExecutionContext,
    run_id: str,
    lanes: Sequence[str] = (),
    *,
    into: str | None = None,
    strategy: LandStrategy | None = None,
    jobs: int = 1,
    restart: bool = False,
    progress: Callable[[str], None] | None = None,
) -> LandState:
    """Land the succeeded lanes of run ``run_id`` (or ``lanes``, in that order) through the landing
    queue: the target moves only to trees that passed the gate (docs/land.md). Resumes an unfinished
    queue of the run."""
    from spine.landing.land import land as land_queue

    return land_queue(
        ctx, run_id, lanes, into=into, strategy=strategy, jobs=jobs, restart=restart, progress=progress
    )


def gate_checks(ctx: ExecutionContext, commands: Sequence[str] = ()) -> list[CheckSpec]:
    """The checks a gate runs: ``commands`` (shell commands, named after themselves) when given, else
    ``gate.checks`` of .spine.yaml, else the lane checks."""
    from spine.landing.gate import gate_checks as configured
    from spine.model.config import CheckSpec, check_name

    if not commands:
        return configured(ctx)
    taken: set[str] = set()
    return [CheckSpec(name=check_name(c, taken), command=c) for c in commands]


def gate(
    ctx: ExecutionContext,
    rev: str | None = None,
    *,
    into: str | None = None,
    lane: str | None = None,
    checks: Sequence[str] = (),
    use_cache: bool = True,
    echo: OutputSink | None = None,
    on_check: Callable[[CheckSpec], None] | None = None,
) -> GateVerdict:
    """May ``rev`` (default HEAD), or lane ``lane`` (RUN/LANE), land on ``into``? Test the merge result.

    ``into`` defaults to ``gate.into`` in .spine.yaml, else the target (a lane's run's target);
    ``checks`` (shell commands) replace the configured gate checks. A failed gate is a verdict
    (``passed`` is False), not an exception.
    """
    from spine.landing.gate import resolve_commit, run_gate

    backend: str | None = None
    if lane:
        if rev:
            raise UsageError("give either REV or --lane, not both", f"spine gate --lane {lane}")
        run_id, lane_id = parse_ref(ctx, lane)
        if lane_id is None:
            raise UsageError(f"--lane needs RUN/LANE, got {lane!r}", "see the lanes with `spine show RUN`")
        found = load_result(ctx, run_id, lane_id)
        if not found.branch:
            raise UsageError(
                f"lane {lane} has no branch to gate", "it ran in place; gate your checkout instead"
            )
        rev = found.branch
        backend = found.sandbox_backend  # the lane's own isolation: the tree holds its command's work
        default_into = ctx.config.gate.into or RunStore(ctx.state, run_id).load().target_ref
    else:
        rev = rev or "HEAD"
        default_into = ctx.config.gate.into or ctx.refs.target_ref
    target = into or default_into
    rev_sha = resolve_commit(ctx, rev, what="revision")
    into_what = (
        "target (--into)"
        if into
        else f"target ({ctx.config_path}: key 'gate.into')"
        if ctx.config.gate.into and target == ctx.config.gate.into
        else "target"
    )
    known = {ctx.refs.base_ref: ctx.refs.base_sha, ctx.refs.target_ref: ctx.refs.target_sha}
    into_sha = known.get(target) or resolve_commit(ctx, target, what=into_what)
    if backend is None:
        # A revision holding an isolated lane's work (a pushed lane branch) is tested in its isolation;
        # nothing to look for when the configured backend isolates already.
        from spine.landing.gate import isolating_backend, lane_backends_in

        if isolating_backend(ctx, [ctx.backend]) is None:
            backend = isolating_backend(ctx, lane_backends_in(ctx, rev_sha, into_sha))
    return run_gate(
        ctx,
        rev=rev,
        rev_sha=rev_sha,
        into=target,
        into_sha=into_sha,
        checks=gate_checks(ctx, checks),
        use_cache=use_cache,
        echo=echo,
        on_check=on_check,
        backend=backend,
    )


def promote(
    ctx: ExecutionContext,
    run_id: str,
    lane_id: str,
    *,
    strategy: Strategy = "merge",
    into: str | None = None,
    use_gate: bool = False,
    force: bool = False,
) -> Landing:
    """Land lane RUN/LANE on its target (default: the run's target) and return what moved.

    The lane's result file then holds the ``Promotion`` (``result(ctx, run_id, lane_id).promotion``).
    Raises ``PromoteRefused`` (exit 1) when the lane cannot land now; nothing is changed then.
    """
    from spine.landing.promote import STRATEGIES
    from spine.landing.promote import promote as land_lane

    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}", f"use one of: {', '.join(STRATEGIES)}")
    return land_lane(ctx, run_id, lane_id, strategy, into=into, use_gate=use_gate, force=force)


def report(ctx: ExecutionContext, run_id: str) -> str:
    """The report of run ``run_id`` as one self-contained HTML document (nothing is written)."""
    from spine.views.report import gather, render_run

    return render_run(gather(ctx, run_id))


def gate_report(verdict: GateVerdict) -> str:
    """A gate verdict as one self-contained HTML document."""
    from spine.views.report import render_gate

    return render_gate(verdict)


def dashboard(ctx: ExecutionContext, *, host: str = "127.0.0.1", port: int = 0) -> Dashboard:
    """A read-only web view of the repository's runs, bound and ready: ``serve_forever()`` or ``start()``.

    ``port`` 0 picks a free port (``url`` says which); ``shutdown()`` stops it.
    """
    from spine.views.dashboard import Dashboard

    return Dashboard(ctx, host=host, port=port)


def write_html(path: Path | str, document: str) -> Path:
    """Write an HTML document (a report) to ``path``, whole or not at all, secrets masked."""
    from spine.base.files import atomic_write_text

    target = Path(path)
    try:
        atomic_write_text(target, document)
    except OSError as exc:
        raise UsageError(
            f"cannot write {target}: {exc.strerror or exc}", "choose a writable path with -o"
        ) from None
    return target


def _refuse_in_place(ctx: ExecutionContext, spec: LaneSpec) -> None:
    """Attempts need worktrees of their own; an in-place repair loop needs --commit to see changes."""
    backend = spec.backend or ctx.backend
    wants = spec.attempt_of is not None or (spec.iterations > 1 and not spec.commit_in_place)
    if wants or spec.commit_in_place:
        from spine.backends.registry import load_backend

        if not load_backend(backend, ctx.config.backends.get(backend, {})).in_place:
            return
        if spec.attempt_of is not None:
            raise UsageError(
                f"backend {backend!r} runs in your checkout, so lane {spec.attempt_of} cannot have attempts "
                "side by side",
                "use a backend with worktrees (local-worktree, bubblewrap, ...) for --attempts",
            )
        if spec.iterations > 1 and not spec.commit_in_place:
            raise UsageError(
                f"backend {backend!r} runs in your checkout without committing, so a repair loop "
                "(--iterations) cannot tell what each pass changed",
                "add --commit, or use a backend with worktrees",
            )
    if spec.commit_in_place:
        _refuse_dirty_checkout(ctx, backend)


def _refuse_dirty_checkout(ctx: ExecutionContext, backend: str) -> None:
    """An in-place lane that commits must not sweep the user's own changes into its commit."""
    from spine.backends.registry import load_backend

    if not load_backend(backend, ctx.config.backends.get(backend, {})).in_place:
        return
    here = ctx.workspace.current_worktree
    from spine.base.git import git

    status = git("status", "--porcelain=v1", "--untracked-files=normal", "-z", cwd=here).stdout
    entries = [e[3:] for e in status.split("\0") if len(e) > 3]
    if entries:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise UsageError(
            f"{here} has uncommitted changes ({shown}); an in-place lane with --commit would commit them "
            "together with the command's work",
            "commit or stash them first (git stash -u), or run without --commit",
        )
