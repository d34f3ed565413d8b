"""The lane steps: create_worktree -> setup -> execute -> commit -> validate -> finalize.

Each step is a plain function of a ``LaneRuntime`` that records one typed fact model on the lane
(``spine.model.facts``). The drive loop persists the lane after every step, so a step that finished
is never repeated and a step caught mid-way by a crash is redone safely (each step is re-runnable).

After the command, nothing it left is trusted: ``commit`` first checks that the worktree is still the
lane's own (its registration and ``.git`` file), where HEAD went (following it onto the lane branch
when the work descends from the base, failing the lane otherwise), that no process of the lane is
alive, and that what is committed is the command's work only (not the files spine copied in or the
setup commands wrote). Each check is recorded as an invariant in the result file; a violation fails
the lane with its cause (docs/adr/0057-a-lane-never-lies.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from spine.base.errors import EnvironmentProblem
from spine.base.files import atomic_write_json, atomic_write_text, glob_inside, inside
from spine.base.git import GitFailed
from spine.base.ids import format_duration, now_iso
from spine.base.process import ProcessOutcome
from spine.base.text import is_text, mend
from spine.lane.iterations import end_of_pass, feedback_in_worktree
from spine.lane.outcome import Outcome, classify
from spine.lane.render import MEANWHILE, Where, build_result
from spine.lane.runtime import LaneRuntime
from spine.lane.stall import StallWatch
from spine.model.facts import (
    CommitFacts,
    CreateFacts,
    ExecuteFacts,
    LeftoverProcess,
    ProcessRun,
    ResultFacts,
    SetupFacts,
    ValidateFacts,
)
from spine.model.result import (
    Artifact,
    CheckStatus,
    Commit,
    DiffStat,
    Invariant,
    LaneResult,
    LaneStatus,
    Validation,
)
from spine.workspace import guard, worktrees
from spine.workspace.context import lane_branch
from spine.workspace.worktrees import LaneWorktree

# --- create_worktree ---------------------------------------------------------------------------


def create_worktree(rt: LaneRuntime) -> None:
    """Create (or, after a crash, reconcile) the lane's worktree and branch from the base SHA."""
    lane, ctx = rt.lane, rt.ctx
    if rt.in_place:
        here = ctx.workspace.current_worktree
        checkout = worktrees.checkout_worktree(ctx.git, here)
        lane.worktree, lane.branch = str(here), checkout.head().branch
        lane.facts.create = CreateFacts(source="in-place", git_dir=str(checkout.git_dir))
        return
    path = ctx.lane_worktree(rt.run.run_id, rt.lane_id)
    branch = lane_branch(rt.run.run_id, rt.lane_id)
    started = time.perf_counter()
    _resolve_stacked_base(rt)
    if ctx.config.pool.enabled and not path.exists():
        taken = worktrees.take(ctx, path, branch, lane.base_sha, rt.backend.name)
        if taken is not None:
            lane.worktree, lane.branch = str(path), branch
            lane.facts.create = CreateFacts(
                source="pool",
                git_dir=str(taken.worktree.git_dir),
                cleaned=taken.cleaned,
                seconds=round(time.perf_counter() - started, 4),
            )
            return
    with worktrees.worktrees_lock(ctx, f"creating the worktree of lane {rt.run.run_id}/{rt.lane_id}"):
        created = worktrees.add(ctx, path, branch, lane.base_sha, f"{rt.run.run_id}/{rt.lane_id}")
    lane.worktree, lane.branch = str(path), branch
    lane.facts.create = CreateFacts(
        source="fresh", git_dir=str(created.git_dir), seconds=round(time.perf_counter() - started, 4)
    )


def _resolve_stacked_base(rt: LaneRuntime) -> None:
    """For ``base: lane:ID``, start from the head of lane ID's branch, which has succeeded by now."""
    dep_id = rt.lane.spec.stacked_on
    if dep_id is None:
        return
    dep = rt.run.lanes.get(dep_id)
    if dep is not None and dep.spec.is_group:  # stacked on a lane with attempts: on its pick
        picked = dep.facts.attempts.pick.lane_id if dep.facts.attempts else None
        dep = rt.run.lanes.get(picked) if picked and dep.status == LaneStatus.SUCCEEDED else dep
    head = (dep.facts.commit.head_sha if dep and dep.facts.commit else None) or (
        dep.base_sha if dep else None
    )
    if dep is None or dep.status != LaneStatus.SUCCEEDED or head is None:
        state = dep.status.value if dep else "missing"
        raise EnvironmentProblem(
            f"lane {rt.lane_id} is stacked on lane {dep_id}, which has not succeeded ({state})"
        )
    rt.lane.base_sha = head
    rt.lane.base_ref = dep.branch or dep.base_ref


# --- setup ---------------------------------------------------------------------------------------


def setup(rt: LaneRuntime) -> None:
    """Copy .worktreeinclude files, update submodules, run setup commands; remember what they made."""
    if rt.in_place:
        rt.lane.facts.setup = SetupFacts()
        return
    cfg = rt.ctx.config.setup
    wt = rt.worktree()
    copied, not_copied = worktrees.copy_included(rt.ctx.git.primary_checkout, wt.path, cfg.copy_files)
    out = rt.output()
    commands: list[ProcessRun] = []
    failed: ProcessRun | None = None
    try:
        for problem in not_copied:
            out.note(f"setup: not copied: {problem}")
        if cfg.submodules == "update":
            _update_submodules(rt, wt)
        if cfg.commands:
            with rt.sandbox(collect=True) as box:
                for command in cfg.commands:
                    out.note(f"setup: {command}")
                    outcome = box.run(command, timeout=rt.lane.spec.timeout, on_output=out)
                    run = _process_run(rt, command, outcome, keep_tail=not outcome.ok)
                    commands.append(run)
                    if not outcome.ok:
                        failed = run
                        break
    finally:
        out.close()
    listed = rt.ctx.state.copied_list(rt.run.run_id, rt.lane_id)
    if copied:
        listed.parent.mkdir(parents=True, exist_ok=True)
        listed.write_text("\0".join(copied), encoding="utf-8")
    else:
        listed.unlink(missing_ok=True)
    tree = _worktree_tree(wt) if (copied or cfg.commands) else None
    private: list[str] = []
    if tree is not None and copied:
        changed = set(_changed_paths(wt, rt.lane.base_sha, tree))
        private = [p for p in copied if p in changed]
    rt.lane.facts.setup = SetupFacts(
        copied=len(copied),
        copied_sample=copied[:20],
        private=private,
        not_copied=not_copied,
        commands=commands,
        failed=failed,
        tree=tree,
    )


def _update_submodules(rt: LaneRuntime, wt: LaneWorktree) -> None:
    """`git submodule update --init` over the usual transports, leaving the repository's config as it was.

    `submodule init` writes each submodule's URL into the shared config; a lane's base may carry a
    .gitmodules a lane wrote, and its URLs must not stay in the user's config.
    """
    repo = rt.ctx.git
    if rt.lane.base_sha != rt.run.base_sha:
        # A stacked lane starts from another lane's work, which may name submodules of its own: spine
        # fetches, on the host with your network and keys, only the URLs the run's base names.
        chosen, trusted = _submodule_urls(rt, rt.lane.base_sha), _submodule_urls(rt, rt.run.base_sha)
        added = sorted(f"{name} ({url})" for name, url in chosen.items() if trusted.get(name) != url)
        if added:
            raise EnvironmentProblem(
                f"the lane's base ({rt.lane.spec.base}) adds or changes submodule URLs: {', '.join(added[:3])}; "
                "spine fetches only the URLs the run's base names",
                "land the lane that added them first (then they are yours), or set setup.submodules: none",
            )

    def submodule_keys() -> set[str]:
        listing = repo.run("config", "--local", "--name-only", "--get-regexp", r"^submodule\.", check=False)
        return set(listing.stdout.split())

    before = submodule_keys()
    try:
        wt.git(*worktrees.SUBMODULE_PROTOCOLS, "submodule", "update", "--init", "--recursive")
    finally:
        new_keys = submodule_keys() - before
        # A section that is wholly new goes as a whole, leaving the file as it was (an unset leaves the
        # section's header behind, and other lanes watch the file: docs/adr/0067).
        sections = {key.rsplit(".", 1)[0] for key in new_keys}
        for section in sorted(sections):
            if not any(key.startswith(section + ".") for key in before):
                repo.run("config", "--local", "--remove-section", section, check=False)
        for key in sorted(submodule_keys() - before):
            repo.run("config", "--local", "--unset-all", key, check=False)


def _submodule_urls(rt: LaneRuntime, commit: str) -> dict[str, str]:
    """name -> URL of the submodules ``.gitmodules`` names at ``commit`` (none when it has no such file)."""
    proc = rt.ctx.git.run(
        "config", "--blob", f"{commit}:.gitmodules", "--get-regexp", r"^submodule\..*\.url$", check=False
    )
    urls = {}
    for line in proc.stdout.splitlines():
        key, _, url = line.partition(" ")
        urls[key.removeprefix("submodule.").removesuffix(".url")] = url
    return urls


def _process_run(rt: LaneRuntime, command: str, outcome: ProcessOutcome, *, keep_tail: bool) -> ProcessRun:
    redactor = rt.redactor()
    return ProcessRun(
        command=command,
        exit_code=outcome.exit_code,
        timed_out=outcome.timed_out is not None,
        canceled=outcome.canceled,
        duration_seconds=round(outcome.duration, 3),
        tail=[redactor.redact_text(line) for line in outcome.tail[-10:]] if keep_tail else [],
    )


def _worktree_tree(wt: LaneWorktree) -> str:
    """The tree ``git add -A`` would commit now, without touching the worktree's own index."""
    fd, index = tempfile.mkstemp(prefix="spine-tree-", suffix=".index")
    os.close(fd)
    try:
        own = wt.git_dir / "index"
        if own.is_file():
            shutil.copyfile(own, index)  # its stat data spares re-hashing unchanged files
        else:
            os.unlink(index)
            wt.git("read-tree", "HEAD", env={"GIT_INDEX_FILE": index})
        env = {"GIT_INDEX_FILE": index}
        wt.git("add", "-A", env=env)
        return wt.out("write-tree", env=env)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(index)


def _changed_paths(wt: LaneWorktree, old: str, new: str) -> list[str]:
    out = wt.git(
        "diff-tree", "-r", "-z", "--name-only", "--no-renames", "--no-ext-diff", "--no-textconv", old, new
    )
    return [p for p in out.stdout.split("\0") if p]


# --- execute -------------------------------------------------------------------------------------


def execute(rt: LaneRuntime) -> None:
    """Run the lane's command through its backend, with the timebox, stdin closed, output logged;
    then stop whatever it left running."""
    setup_facts = rt.lane.facts.setup
    if setup_facts is not None and setup_facts.failed is not None:
        rt.lane.facts.execute = ExecuteFacts(skipped="setup failed")
        return
    spec = rt.lane.spec
    wt = rt.worktree()
    out = rt.output()
    argv = spec.argv()
    out.note(f"command: {' '.join(argv)}")
    started = now_iso()
    env = rt.lane_env()
    rerun_of = None
    if rt.lane.facts.execute_begun >= rt.lane.iteration and not rt.in_place:
        # The command ran before and its driver died: it runs again on top of what it left, which is
        # kept first (commits and files) so that nothing of the first run is lost, and said.
        label = f"{rt.run.run_id}/{rt.lane_id}"
        head = wt.head().sha or rt.lane.base_sha
        rerun_of = worktrees.snapshot(
            rt.ctx, wt.path, head, label, f"spine: {label} before the command ran again"
        )
        rerun_of = rerun_of or head
    rt.lane.facts.execute_begun += 1
    rt.store.save_lane(rt.run, rt.lane_id)
    if not rt.in_place:
        _remember_shared(rt, wt)
    # A pass of the repair loop finds its feedback in the worktree, before a remote backend copies it.
    with contextlib.ExitStack() as stack:
        stack.callback(out.close)
        stack.enter_context(feedback_in_worktree(rt, out))
        handle = rt.backend.prepare(rt.sandbox_spec())
        stack.callback(rt.backend.teardown, handle)
        for notice in handle.notices:
            out.note(notice)
        # The stall rule watches output and the worktree, and stops the command through a cancel event.
        watch = StallWatch(wt, spec.stall_timeout, rt.cancel) if spec.stall_timeout else None
        with watch or contextlib.nullcontext():
            outcome = rt.backend.exec(
                handle,
                argv,
                env=env,
                timeout=spec.timeout,
                idle_timeout=spec.idle_timeout,
                on_output=watch.wrap(out) if watch else out,
                cancel=watch.stop if watch else rt.cancel,
                on_start=rt.remember_pgid,
            )
        rt.backend.collect(handle)
    rt.lane.pgid = None
    stopped = [LeftoverProcess(pid=pid, argv=text) for pid, text in outcome.stopped]
    surviving: list[LeftoverProcess] = []
    if not rt.in_place:
        markers = {"SPINE_RUN_ID": rt.run.run_id, "SPINE_LANE_ID": rt.lane_id}
        left = worktrees.processes_inside(wt.path, markers)
        if left:
            stopped += [LeftoverProcess(pid=pid, argv=text) for pid, text in left]
            alive = set(worktrees.stop_processes([pid for pid, _ in left]))
            surviving = [p for p in stopped if p.pid in alive]
    if outcome.timed_out is not None or outcome.canceled:
        stopped = []  # a stopped command takes its processes with it; that is no news
    stalled = watch is not None and watch.stalled and not rt.cancel.is_set() and outcome.timed_out is None
    redactor = rt.redactor()
    rt.lane.facts.execute = ExecuteFacts(
        exit_code=outcome.exit_code,
        timed_out="stall" if stalled else outcome.timed_out,
        canceled=outcome.canceled and not stalled,
        duration_seconds=round(outcome.duration, 3),
        tail=[redactor.redact_text(line) for line in outcome.tail[-20:]],
        started_at=started,
        provider_run_id=handle.provider_run_id,
        stopped=[p.model_copy(update={"argv": redactor.redact_text(p.argv)}) for p in stopped],
        surviving=surviving,
        supervisor_lost=outcome.supervisor_lost,
        rerun_of=rerun_of,
    )


# --- commit --------------------------------------------------------------------------------------


def commit(rt: LaneRuntime) -> None:
    """Check the lane's invariants, then commit the command's work (and only that) on the lane branch."""
    lane = rt.lane
    if rt.in_place and not lane.spec.commit_in_place:
        lane.facts.commit = CommitFacts(skipped="in-place backend")
        return
    repo = rt.ctx.git
    wt = rt.worktree()
    invariants: list[Invariant] = []
    problem = None if rt.in_place else wt.problem(repo)
    if problem is not None:
        invariants.append(Invariant(name="worktree", status="violated", detail=problem))
        lane.facts.commit = CommitFacts(
            invariants=invariants, head_sha=repo.branch_sha(lane.branch) if lane.branch else None
        )
        return
    invariants.append(
        Invariant(name="worktree", status="ok", detail=f"{wt.path} is still the lane's worktree")
    )
    if not rt.in_place:
        shared = _shared_invariant(rt, wt)
        invariants.append(shared)
        if shared.status == "violated":
            lane.facts.commit = CommitFacts(invariants=invariants, head_sha=wt.head().sha)
            return
    processes = _processes_invariant(rt)
    invariants.append(processes)
    if processes.status == "violated":  # something of the lane may still be writing the worktree
        lane.facts.commit = CommitFacts(invariants=invariants, head_sha=wt.head().sha)
        return
    head = _head_invariant(rt, wt)
    invariants.append(head)
    if head.status == "violated":
        lane.facts.commit = CommitFacts(invariants=invariants, head_sha=wt.head().sha)
        return
    leaked = _private_files_committed(rt, wt)
    if leaked is not None:
        invariants.append(leaked)
        lane.facts.commit = CommitFacts(invariants=invariants, head_sha=wt.head().sha)
        return
    stale = _remove_stale_index_lock(wt)
    hidden = _unhide_files(rt, wt)
    wt.git("add", "-A")
    excluded = _leave_out_setup_work(rt, wt)
    nested = _leave_out_nested_repositories(wt)
    # What is staged, as the stat of the commit it would make; exit 1 when anything is.
    staged = wt.git(
        "diff", "--cached", "--shortstat", "--exit-code", "--no-ext-diff", "--no-textconv", check=False
    )
    if staged.returncode not in (0, 1):
        raise GitFailed(["diff", "--cached", "--shortstat"], staged.returncode, staged.stderr)
    before = wt.head().sha
    message = ""
    if staged.returncode == 1:
        if lane.facts.commit_token is None:
            # Recorded before the commit exists, so a redo after a crash still knows spine's commit.
            lane.facts.commit_token = secrets.token_hex(8)
            rt.store.save_lane(rt.run, rt.lane_id)
        message = _commit_message(rt, lane.facts.commit_token)
        _git_commit(rt, wt, message)
    invariants.append(_commit_invariant(excluded, nested, stale, hidden))
    if before == lane.base_sha:
        # The command made no commit of its own: the lane holds spine's commit (if anything was
        # staged) on its base, and what git said of the staged changes is that commit's stat.
        head_sha = wt.head().sha if message else before
        if head_sha is None:
            raise GitFailed(["commit"], 0, "the lane branch names no commit after committing")
        lane.facts.commit = CommitFacts(
            commits=[Commit(sha=head_sha, subject=_subject(message), made_by="spine")] if message else [],
            head_sha=head_sha,
            diff_stat=_parse_shortstat(staged.stdout) if message else DiffStat(),
            excluded=excluded + nested,
            invariants=invariants,
        )
        return
    commits = [
        Commit(sha=sha, subject=subject, made_by="spine" if by_spine else "command")
        for sha, subject, by_spine in _log_entries(rt, wt)
    ]
    head_sha = commits[-1].sha if commits else wt.out("rev-parse", "HEAD")
    lane.facts.commit = CommitFacts(
        commits=commits,
        head_sha=head_sha,
        diff_stat=_diff_stat(wt, lane.base_sha, head_sha),
        excluded=excluded + nested,
        invariants=invariants,
    )


def _remember_shared(rt: LaneRuntime, wt: LaneWorktree) -> None:
    """Note the shared repository before the command runs (docs/adr/0067), to tell afterwards what
    it changed: in memory with the bytes to put back, on disk for a driver that resumes the lane."""
    state = guard.remember(rt.ctx.git, wt, rt.lane.branch or "", rt.ctx.state.root)
    rt.shared_before = state
    path = rt.ctx.state.shared_before(rt.run.run_id, rt.lane_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, state.to_json(), redact=False, durable=False)


def _shared_invariant(rt: LaneRuntime, wt: LaneWorktree) -> Invariant:
    """Whether the command changed what the lane shares with your repository: refs that are not the
    lane's, another checkout's HEAD, git's configuration, excludes or hooks (docs/adr/0067). spine's
    own git would obey what it wrote (a filter or an fsmonitor runs a program): that is a violation,
    and what can be put back is. Changes you may have made yourself meanwhile are only named."""
    before = rt.shared_before
    if before is None:
        path = rt.ctx.state.shared_before(rt.run.run_id, rt.lane_id)
        if not path.is_file():
            return Invariant(name="repository", status="ok", detail="not noted before the command ran")
        before = guard.SharedState.from_json(path.read_text(encoding="utf-8"))
    changes = guard.check(
        rt.ctx.git,
        wt,
        before,
        rt.lane.branch or "",
        rt.ctx.state.root,
        rt.ctx.state.changed_by_command(rt.run.run_id, rt.lane_id),
        rt.redactor(),
    )
    violations = [c.what for c in changes if c.violation]
    named = [c.what for c in changes if not c.violation]
    also = f"{MEANWHILE}: {'; '.join(named[:3])}" if named else ""
    if not violations:
        detail = also or "as the command found it"
        return Invariant(name="repository", status="ok", detail=detail)
    also = f"; also {also}" if also else ""
    more = f"; and {len(violations) - 5} more" if len(violations) > 5 else ""
    return Invariant(
        name="repository",
        status="violated",
        detail=f"the command changed what the lane shares with your repository: {'; '.join(violations[:5])}"
        f"{more}{also}",
    )


def _subject(message: str) -> str:
    """The subject git shows of a commit with ``message`` (``%s``): its first paragraph, on one line."""
    lines = [line.rstrip() for line in message.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    first: list[str] = []
    for line in lines:
        if not line:
            break
        first.append(line)
    return " ".join(first)


def _processes_invariant(rt: LaneRuntime) -> Invariant:
    ex = rt.lane.facts.execute
    if ex is None:
        return Invariant(name="processes", status="ok", detail="the command did not run")
    if ex.supervisor_lost:
        return Invariant(
            name="processes",
            status="violated",
            detail="the command killed or stopped spine's process supervisor, so the processes it started "
            "were not stopped by it and may still run (`ps` shows them); use an isolating backend for such "
            "a command",
        )
    if ex.surviving:
        shown = ", ".join(f"{p.pid} ({p.argv[:60]})" for p in ex.surviving[:3])
        return Invariant(
            name="processes",
            status="violated",
            detail=f"processes of the lane are still alive after spine stopped them: {shown}",
        )
    if ex.stopped:
        shown = ", ".join(f"{p.pid} ({p.argv[:60]})" for p in ex.stopped[:3])
        more = f" and {len(ex.stopped) - 3} more" if len(ex.stopped) > 3 else ""
        return Invariant(
            name="processes",
            status="fixed",
            detail=f"the command left {len(ex.stopped)} process(es) running; spine stopped them: {shown}{more}",
        )
    if getattr(rt.backend, "isolates", True):
        return Invariant(name="processes", status="ok", detail="no process of the lane is left")
    return Invariant(
        name="processes",
        status="ok",
        detail="no process the command started is left (on this backend spine sees the command's "
        "descendants and processes in the worktree, not work it handed to a server already running, "
        "such as a tmux server)",
    )


def _head_invariant(rt: LaneRuntime, wt: LaneWorktree) -> Invariant:
    """Where HEAD went; follow it onto the lane branch when that loses nothing, or say where the work is."""
    lane, repo = rt.lane, rt.ctx.git
    head = wt.head()
    base = lane.base_sha[:12]
    if head.sha is None:
        return Invariant(name="head", status="violated", detail="the worktree's HEAD points at nothing")
    if rt.in_place:
        if head.branch != lane.branch:
            now = f"branch {head.branch}" if head.branch else f"a detached HEAD at {head.sha[:12]}"
            return Invariant(
                name="head",
                status="violated",
                detail=f"the command moved your checkout from {lane.branch or 'a detached HEAD'} to {now}",
            )
        return Invariant(name="head", status="ok", detail=f"still on {head.branch}")
    branch = lane.branch or ""
    if head.branch == branch:
        if head.sha != lane.base_sha and not repo.is_ancestor(lane.base_sha, head.sha):
            return Invariant(
                name="head",
                status="violated",
                detail=f"the lane branch no longer contains its base {base}: the command moved {branch} to "
                f"{head.sha[:12]} (git reset or a rewrite)",
            )
        return Invariant(name="head", status="ok", detail=f"HEAD is on {branch}")
    where = f"on branch {head.branch}" if head.branch else "detached"
    tip = repo.branch_sha(branch)
    if tip is None:
        return Invariant(
            name="head",
            status="violated",
            detail=f"the lane branch {branch} was deleted; HEAD is {where} at {head.sha[:12]}",
        )
    if not repo.is_ancestor(tip, head.sha):
        return Invariant(
            name="head",
            status="violated",
            detail=f"HEAD left the lane branch: it is {where} at {head.sha[:12]}, which does not build on "
            f"{branch} ({tip[:12]}); the work is there, not on the lane branch",
        )
    if head.sha == tip:
        wt.git("symbolic-ref", "-m", "spine: back to the lane branch", "HEAD", f"refs/heads/{branch}")
        return Invariant(
            name="head",
            status="fixed",
            detail=f"the command left HEAD {where} at the lane branch's own commit; spine put HEAD back on {branch}",
        )
    wt.git("update-ref", "-m", "spine: follow the command's HEAD", f"refs/heads/{branch}", head.sha, tip)
    wt.git("symbolic-ref", "-m", "spine: back to the lane branch", "HEAD", f"refs/heads/{branch}")
    kept = f"; branch {head.branch} is left as the command made it" if head.branch else ""
    return Invariant(
        name="head",
        status="fixed",
        detail=f"the command left HEAD {where} at {head.sha[:12]}; spine moved {branch} there and put HEAD "
        f"back on it{kept}",
    )


def _remove_stale_index_lock(wt: LaneWorktree) -> bool:
    """Remove ``index.lock`` from the lane's own git dir when no process of the lane is left to hold it.

    Only called after the command ended and its processes were stopped, so any lock there is stale.
    """
    lock = wt.git_dir / "index.lock"
    if not lock.exists():
        return False
    holders = worktrees.processes_inside(wt.path)
    if holders:
        return False
    lock.unlink(missing_ok=True)
    return True


def _leave_out_setup_work(rt: LaneRuntime, wt: LaneWorktree) -> list[str]:
    """Unstage what spine copied in and what setup produced, unless the command changed it since.

    Copied files that git would commit (``SetupFacts.private``) are never committed, changed or not:
    they are the user's private files (an ``.env`` with a token).
    """
    setup = rt.lane.facts.setup
    if setup is None or setup.tree is None:
        return []
    base, after_setup = rt.lane.base_sha, setup.tree
    private = set(setup.private)
    touched = _changed_paths(wt, base, after_setup)
    if not touched:
        return []
    staged = _entries(wt, ["ls-files", "-s", "-z", "--", *touched])
    at_setup = _tree_entries(wt, after_setup, touched)
    leave = [p for p in touched if p in private or staged.get(p) == at_setup.get(p)]
    if not leave:
        return []
    # Back to the base's version: drop what the base does not have, restore what it has.
    in_base = _tree_entries(wt, base, leave)
    lines = []
    for path in leave:
        entry = in_base.get(path)
        lines.append(f"{entry[0]} {entry[1]}\t{path}" if entry else f"0 {'0' * 40}\t{path}")
    wt.git("update-index", "--index-info", input="\n".join(lines) + "\n")
    return sorted(leave)


def _leave_out_nested_repositories(wt: LaneWorktree) -> list[str]:
    """Unstage repositories the command created inside the worktree (not declared submodules):
    `git add -A` would record them as links to commits nobody can fetch."""
    out = wt.git("diff-index", "--cached", "-z", "--diff-filter=A", "--ignore-submodules=none", "HEAD").stdout
    fields = out.split("\0")
    added = [fields[i + 1] for i in range(0, len(fields) - 1, 2) if fields[i].split(" ")[1:2] == ["160000"]]
    if not added:
        return []
    declared = set()
    gitmodules = wt.path / ".gitmodules"
    if inside(wt.path, ".gitmodules") is not None:
        listing = wt.git(
            "config", "--file", str(gitmodules), "--get-regexp", r"^submodule\..*\.path$", check=False
        )
        declared = {line.split(" ", 1)[1] for line in listing.stdout.splitlines() if " " in line}
    nested = [path for path in added if path not in declared]
    if nested:
        wt.git("update-index", "--force-remove", "--", *nested)
    return nested


def _entries(wt: LaneWorktree, args: list[str]) -> dict[str, tuple[str, str]]:
    """path -> (mode, blob) from ``ls-files -s -z``."""
    found = {}
    for record in wt.git(*args).stdout.split("\0"):
        if not record:
            continue
        meta, _, path = record.partition("\t")
        mode, sha, _stage = meta.split(" ")
        found[path] = (mode, sha)
    return found


def _tree_entries(wt: LaneWorktree, tree: str, paths: list[str]) -> dict[str, tuple[str, str]]:
    """path -> (mode, blob) of ``paths`` in ``tree``."""
    found = {}
    out = wt.git("ls-tree", "-r", "-z", "--full-tree", tree, "--", *paths).stdout
    for record in out.split("\0"):
        if not record:
            continue
        meta, _, path = record.partition("\t")
        mode, _kind, sha = meta.split(" ")
        found[path] = (mode, sha)
    return found


def _private_files_committed(rt: LaneRuntime, wt: LaneWorktree) -> Invariant | None:
    """A violation when any commit the command made holds a file spine copied in from the user's
    checkout (ignored or not; on a side branch merged in too)."""
    listed = rt.ctx.state.copied_list(rt.run.run_id, rt.lane_id)
    if not listed.is_file():
        return None
    copied = set(filter(None, listed.read_text(encoding="utf-8").split("\0")))
    # Every commit in the range, each with the paths it changed: no history simplification.
    out = wt.git("log", "--format=", "--name-only", "--no-renames", "-z", f"{rt.lane.base_sha}..HEAD")
    leaked = sorted(copied.intersection(out.stdout.replace("\n", "\0").split("\0")))
    if not leaked:
        return None
    return Invariant(
        name="commit",
        status="violated",
        detail=f"the command committed files spine copied in from your checkout ({', '.join(leaked[:5])}); "
        "they are private and must not land",
    )


def _unhide_files(rt: LaneRuntime, wt: LaneWorktree) -> list[str]:
    """Clear "assume unchanged" and "skip worktree" on entries whose file is in the worktree, so that
    ``git add -A`` sees what the command changed in them; the paths it cleared. Entries whose file is
    absent (a sparse checkout's) are left as they are. Costs no git process when the index marks
    nothing (``index_may_hide_files``)."""
    if not worktrees.index_may_hide_files(wt.git_dir / "index", len(rt.lane.base_sha) // 2):
        return []
    listing = [e for e in wt.git("ls-files", "-v", "-z").stdout.split("\0") if len(e) > 2]
    present = {
        e[2:]: e[0] for e in listing if (e[0].islower() or e[0] == "S") and os.path.lexists(wt.path / e[2:])
    }
    # One mark per update-index run: git applies only the last of --no-skip-worktree/--no-assume-unchanged.
    for option, marked in (
        ("--no-skip-worktree", [p for p, tag in present.items() if tag in "Ss"]),
        ("--no-assume-unchanged", [p for p, tag in present.items() if tag.islower()]),
    ):
        if marked:
            wt.git("update-index", option, "-z", "--stdin", input="\0".join(marked) + "\0")
    return sorted(present)


def _commit_invariant(excluded: list[str], nested: list[str], stale: bool, hidden: list[str]) -> Invariant:
    notes = []
    if hidden:
        notes.append(
            f"the command had hidden {len(hidden)} file(s) from git (assume-unchanged or skip-worktree: "
            f"{', '.join(hidden[:5])}); spine cleared those marks, so what it changed in them is committed"
        )
    if excluded:
        notes.append(f"left out what spine copied in or setup produced: {', '.join(excluded[:5])}")
    if nested:
        notes.append(
            f"left out repositories the command created inside the worktree: {', '.join(nested[:5])}"
        )
    if stale:
        notes.append("removed a stale index.lock the command left in the lane's git dir")
    if notes:
        return Invariant(name="commit", status="fixed", detail="; ".join(notes))
    return Invariant(name="commit", status="ok", detail="the commit holds only the command's work")


def _log_entries(rt: LaneRuntime, wt: LaneWorktree) -> list[tuple[str, str, bool]]:
    """(sha, subject, made by spine) of every commit on the lane, oldest first, HEAD last.

    A commit carrying the token this step drew after the command ended (``Spine-Commit``) is spine's
    own, even one made before a crash, and so are spine's commits of earlier passes of the repair
    loop (``spine_commits``); everything else the command made, whatever trailers it wrote.
    """
    token = rt.lane.facts.commit_token
    earlier = set(rt.lane.facts.spine_commits)
    fmt = "--format=%H%x00%s%x00%(trailers:key=Spine-Commit,valueonly,separator=%x2C)"
    fields = wt.git("log", "--reverse", "-z", fmt, f"{rt.lane.base_sha}..HEAD").stdout.split("\0")
    return [
        (
            fields[i],
            fields[i + 1],
            fields[i] in earlier or (token is not None and fields[i + 2].strip() == token),
        )
        for i in range(0, len(fields) - 2, 3)
    ]


def _commit_message(rt: LaneRuntime, token: str) -> str:
    lane = rt.lane
    fields = {
        "objective": lane.spec.objective,
        "run_id": rt.run.run_id,
        "lane_id": rt.lane_id,
        "branch": lane.branch or "",
        "base_ref": lane.base_ref,
        "base_sha": lane.base_sha,
        "backend": rt.backend.name,
    }
    body = rt.ctx.config.commit.message.format(**fields).strip() or lane.spec.objective
    trailers = f"Spine-Run: {rt.run.run_id}\nSpine-Lane: {rt.lane_id}\nSpine-Base: {lane.base_sha}"
    if lane.spec.iterations > 1:
        iteration = lane.iteration
        trailers += f"\nSpine-Iteration: {iteration}"
        if iteration > 1:
            subject, newline, rest = body.partition("\n")
            body = f"{subject} (iteration {iteration}){newline}{rest}"
    trailers += f"\nSpine-Commit: {token}"
    return rt.redactor().redact_text(f"{body}\n\n{trailers}\n")


def _git_commit(rt: LaneRuntime, wt: LaneWorktree, message: str) -> None:
    cfg = rt.ctx.config.commit
    env = rt.ctx.git.identity_env(cfg.author_name, cfg.author_email)
    wt.git("commit", "--quiet", "--no-verify", "--file=-", env=env, input=message)


def _diff_stat(wt: LaneWorktree, base: str, head: str) -> DiffStat:
    if base == head:
        return DiffStat()
    return _parse_shortstat(
        wt.git("diff", "--shortstat", "--no-ext-diff", "--no-textconv", base, head).stdout
    )


def _parse_shortstat(out: str) -> DiffStat:
    """``N files changed, N insertions(+), N deletions(-)`` as a DiffStat."""
    numbers = {"file": 0, "insertion": 0, "deletion": 0}
    for part in out.split(","):
        words = part.split()
        if len(words) >= 2 and words[0].isdigit():
            for key in numbers:
                if words[1].startswith(key):
                    numbers[key] = int(words[0])
    return DiffStat(
        files_changed=numbers["file"], insertions=numbers["insertion"], deletions=numbers["deletion"]
    )


# --- validate ------------------------------------------------------------------------------------


def validate(rt: LaneRuntime) -> str | None:
    """Run the checks (and an operator's acceptance checks), keep the artifacts, grade the evidence.

    Checks run in the lane's isolation (``LaneRuntime.sandbox``); they are skipped when the command
    did not succeed or the lane broke its invariants (its worktree is then not trusted at all).
    For a lane with a repair loop it ends the pass (``spine.lane.iterations``) and returns
    ``"execute"`` when the command is to run again.
    """
    facts = rt.lane.facts
    iteration = rt.lane.iteration
    checks = [*rt.ctx.config.checks, *rt.lane.spec.checks]
    binding = rt.lane.spec.binding
    ex = facts.execute
    broken = facts.commit is not None and bool(facts.commit.violations)
    command_ok = ex is not None and ex.succeeded and not broken
    results: list[Validation] = []
    acceptance = []
    out = rt.output()
    try:
        wanted = command_ok and not rt.cancel.is_set() and (checks or (binding and binding.acceptance))
        with rt.sandbox() if wanted else contextlib.nullcontext() as box:
            for check in checks:
                if box is None or rt.cancel.is_set():
                    reason = "the lane was canceled" if rt.cancel.is_set() else _why_not_run(ex, broken)
                    results.append(
                        Validation(
                            name=check.name,
                            status=CheckStatus.SKIPPED,
                            command=check.command,
                            summary=f"not run: {reason}",
                        )
                    )
                    continue
                out.note(f"check {check.name}: {check.command}")
                outcome = box.run(check.command, timeout=check.timeout, on_output=out)
                results.append(_validation(rt, check.name, check.command, outcome))
            if binding is not None and binding.acceptance:
                from spine.lane.grading import run_acceptance  # operator machinery, only when there is one

                acceptance = run_acceptance(rt, box, binding, out, _why_not_run(ex, broken))
        artifacts, problems = ([], []) if broken else collect_artifacts(rt)
        for problem in problems:
            out.note(f"artifact not kept: {problem}")
    finally:
        out.close()
    validated = ValidateFacts(
        checks=results, acceptance=acceptance, artifacts=artifacts, artifact_problems=problems
    )
    if binding is not None and binding.mode is not None and not broken:
        from spine.lane.grading import grade

        validated = grade(rt, validated)
    facts.validation = validated
    if rt.lane.spec.iterations <= 1:
        return None
    notes = rt.output()
    try:
        return end_of_pass(rt, iteration, validated, notes)
    finally:
        notes.close()


def _why_not_run(ex: ExecuteFacts | None, broken: bool) -> str:
    if broken:
        return "the lane broke its invariants"
    return "the command did not succeed"


def _validation(rt: LaneRuntime, name: str, command: str, outcome: ProcessOutcome) -> Validation:
    redactor = rt.redactor()
    if outcome.ok:
        status, summary = CheckStatus.PASSED, "passed"
    elif outcome.timed_out:
        status, summary = CheckStatus.FAILED, f"timed out after {format_duration(outcome.duration)}"
    elif outcome.canceled:
        status, summary = CheckStatus.SKIPPED, "canceled"
    else:
        last = next((line for line in reversed(outcome.tail) if line.strip()), "")
        status = CheckStatus.FAILED
        summary = f"exit {outcome.exit_code}" + (f": {last.strip()[:200]}" if last else "")
    return Validation(
        name=name,
        status=status,
        command=command,
        summary=redactor.redact_text(summary),
        exit_code=outcome.exit_code,
        duration_seconds=round(outcome.duration, 3),
        output_tail=[redactor.redact_text(line) for line in outcome.tail[-20:]]
        if status == CheckStatus.FAILED
        else [],
    )


ARTIFACT_MAX_BYTES = 256 * 1024 * 1024
"""The largest file kept as an artifact (a lane could make a sparse file of any apparent size)."""


def collect_artifacts(rt: LaneRuntime) -> tuple[list[Artifact], list[str]]:
    """Copy the files the artifact globs match into the lane's result folder, with size and sha256.

    Only regular files inside the worktree count: a match that is a link, or that is reached through a
    linked directory, is reported and not copied (it could lead to a file outside the worktree).
    """
    patterns = [*rt.ctx.config.artifacts, *rt.lane.spec.artifacts]
    if not patterns or rt.lane.worktree is None or not rt.worktree_path.is_dir():
        return [], []
    wt = rt.worktree_path
    store = rt.ctx.state.artifacts_dir(rt.run.run_id, rt.lane_id)
    found: dict[str, Path] = {}
    problems: list[str] = []
    redactor = rt.redactor()
    for pattern in patterns:
        files, links = glob_inside(wt, pattern)
        problems += [
            f"{mend(rel)}: a link or a path through a link; not kept" for rel in links if rel not in found
        ]
        for rel in files:
            # A name is kept in result.json and is a file name in spine's state: it must be text,
            # and must not carry a secret the command could see.
            if not is_text(rel):
                problems.append(f"{mend(rel)}: the name is not valid UTF-8; not kept")
                continue
            if redactor.redact_text(rel) != rel:
                problems.append(f"{redactor.redact_text(rel)}: the name holds a secret value; not kept")
                continue
            path = wt / rel
            size = path.stat().st_size
            if size > ARTIFACT_MAX_BYTES:
                problems.append(
                    f"{rel}: {size:,} bytes, more than the {ARTIFACT_MAX_BYTES:,} an artifact may have"
                )
                continue
            found.setdefault(rel, path)
    artifacts = []
    for rel, src in found.items():
        dst = store / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        try:
            fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            problems.append(f"{rel}: {exc.strerror or exc}")
            continue
        with os.fdopen(fd, "rb") as reader, open(dst, "wb") as writer:
            for block in iter(lambda: reader.read(1 << 20), b""):
                digest.update(block)
                writer.write(block)
        artifacts.append(
            Artifact(path=rel, stored_at=str(dst), size=dst.stat().st_size, sha256=digest.hexdigest())
        )
    return artifacts, problems


# --- finalize ------------------------------------------------------------------------------------


def where(rt: LaneRuntime) -> Where:
    return Where(
        run_id=rt.run.run_id,
        log_path=str(rt.log_path),
        backend=rt.backend.name,
        in_place=rt.in_place,
        target=rt.run.target_ref,
    )


def finalize(rt: LaneRuntime) -> None:
    """Decide the outcome, write result.json (and a debug packet); with the pool on, return the worktree."""
    lane = rt.lane
    if lane.spec.is_group:
        from spine.lane.attempts import finalize_group  # lanes with attempts only

        finalize_group(rt)
        return
    path = rt.ctx.state.result_file(rt.run.run_id, rt.lane_id)
    worktree_gone = lane.worktree is not None and not Path(lane.worktree).exists()
    outcome = classify(lane.facts, lane.spec)
    result = _result_before_pool(rt, path) if worktree_gone else None
    returned: bool | None = None
    if result is None:
        result = build_result(lane, outcome, where(rt))
        if not rt.log_path.exists():  # a lane that never started: its log says why
            out = rt.output()
            out.note(result.summary)
            out.close()
        if outcome.status in (LaneStatus.FAILED, LaneStatus.CANCELED):
            result = _with_debug_packet(rt, result, outcome)
        # Only succeeded lanes go back to the pool: everything they made is committed, and a failed
        # lane's worktree is where a person looks first. The result says so before the worktree
        # moves, so that a crash in between leaves a result that is true once finalize is redone.
        pooling = (
            rt.ctx.config.pool.enabled
            and outcome.succeeded
            and not rt.in_place
            and not lane.spec.keep_worktree
            and lane.worktree is not None
            and not worktree_gone
        )
        if pooling:
            result = result.model_copy(update={"worktree_kept": False})
        write_result(path, result)
        if pooling:
            returned = worktrees.give_back(rt.ctx, rt.worktree(), rt.backend.name)
            if not returned:  # a full pool, a locked worktree, a process inside: it stays where it ran
                result = result.model_copy(update={"worktree_kept": True})
                write_result(path, result)
    lane.status = result.status
    lane.facts.result = ResultFacts(
        path=str(path), status=result.status.value, next_action=result.next_action, returned_to_pool=returned
    )


def _with_debug_packet(rt: LaneRuntime, result: LaneResult, outcome: Outcome) -> LaneResult:
    from spine.lane.debug import write_debug_packet  # its models are only needed on failure

    try:
        return write_debug_packet(rt, result, outcome)
    except (OSError, GitFailed, EnvironmentProblem) as exc:  # the result matters more than its packet
        rt.store.event("debug-packet-failed", rt.lane_id, error=f"{type(exc).__name__}: {exc}")
        return result


def write_result(path: Path, result: LaneResult) -> None:
    atomic_write_json(path, result.to_json())


def _result_before_pool(rt: LaneRuntime, path: Path) -> LaneResult | None:
    """The result written just before the worktree went back to the pool, when finalize is redone.

    Rebuilding it would find no worktree (and so no artifacts); the one written then is complete.
    """
    if not path.is_file() or rt.lane.facts.halt is not None:
        return None
    stored = LaneResult.model_validate_json(path.read_text(encoding="utf-8"))
    head = rt.lane.facts.commit.head_sha if rt.lane.facts.commit else None
    return stored if stored.status == LaneStatus.SUCCEEDED and stored.head_sha == head else None


# --- compare (a lane with attempts) ---------------------------------------------------------------


def compare(rt: LaneRuntime) -> None:
    """Compare the attempts of a lane with attempts and pick one (``spine.lane.attempts``)."""
    from spine.lane.attempts import compare as compare_attempts  # lanes with attempts only

    compare_attempts(rt)


StepName = Literal["create_worktree", "setup", "execute", "commit", "validate", "finalize", "compare"]

StepFunction = Callable[[LaneRuntime], "str | None"]
"""A step; it may return a step to go back to (the repair loop's ``validate`` returns ``execute``)."""

STEP_FUNCTIONS: dict[str, StepFunction] = {
    "create_worktree": create_worktree,
    "setup": setup,
    "execute": execute,
    "commit": commit,
    "validate": validate,
    "finalize": finalize,
    "compare": compare,
}
