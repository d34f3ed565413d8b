"""Promotion: land a finished lane's branch on its target branch, as a separate and explicit step.

The new target commit is computed first, in git's object store (``merge-tree`` and ``commit-tree``;
a rebase replays the lane in a throwaway worktree), so a refusal at any point leaves everything as it
was. Only then is the target moved: with ``git merge --ff-only`` in the checkout that has it checked
out (git itself refuses to overwrite local changes there), or, when no checkout has it, with
``git update-ref`` guarded by the old value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from spine.base.errors import ExitCode, SpineError, UsageError
from spine.base.git import git
from spine.model.result import LaneResult, Promotion
from spine.model.state import RunState
from spine.workspace.context import ExecutionContext, lane_branch, parse_lane_branch
from spine.workspace.store import RunStore

Strategy = Literal["merge", "squash", "rebase", "ff-only"]
STRATEGIES: tuple[Strategy, ...] = ("merge", "squash", "rebase", "ff-only")

# Marker file or directory in a git dir -> the operation it means is in progress.
_IN_PROGRESS = (
    ("rebase-merge", "a rebase"),
    ("rebase-apply", "a rebase (or git am)"),
    ("MERGE_HEAD", "a merge"),
    ("CHERRY_PICK_HEAD", "a cherry-pick"),
    ("REVERT_HEAD", "a revert"),
    ("BISECT_LOG", "a bisect"),
)


class PromoteRefused(SpineError):
    """The lane cannot land now; nothing was changed. Exit 1."""

    exit_code = ExitCode.FAILED


@dataclass(frozen=True)
class Checkout:
    """A worktree that has the target branch checked out (or is in the middle of rewriting it)."""

    path: Path
    git_dir: Path
    has_target: bool
    operation: str | None


def operation_in_progress(git_dir: Path) -> str | None:
    """Which git operation is stopped half-way in the worktree owning ``git_dir``, if any."""
    for marker, what in _IN_PROGRESS:
        if (git_dir / marker).exists():
            return what
    return None


def _rewritten_branch(git_dir: Path) -> str | None:
    """The branch a stopped rebase or bisect will write back to when it finishes."""
    for name in ("rebase-merge/head-name", "rebase-apply/head-name", "BISECT_START"):
        try:
            text = (git_dir / name).read_text(encoding="utf-8").strip()
        except OSError:
            continue
        return text.removeprefix("refs/heads/")
    return None


def find_target_checkouts(ctx: ExecutionContext, target: str) -> list[Checkout]:
    """Worktrees where ``target`` is checked out, or is being rebased or bisected."""
    from spine.workspace.worktrees import list_worktrees

    found = []
    for wt in list_worktrees(ctx.git):
        if wt.prunable:
            continue
        git_dir = ctx.git.git_dir_of(wt.path)
        rewriting = _rewritten_branch(git_dir) == target
        if wt.branch == target or rewriting:
            found.append(Checkout(wt.path, git_dir, wt.branch == target, operation_in_progress(git_dir)))
    return found


def _trailers(run_id: str, lane_id: str) -> str:
    return f"Spine-Run: {run_id}\nSpine-Lane: {lane_id}"


@dataclass(frozen=True)
class LandingCommit:
    """What landing a lane on one target commit gives: the commit the target would point at, or why not."""

    commit: str | None
    conflicts: list[str] = field(default_factory=list)
    detail: str = ""  # why a replay failed when git named no conflicting path
    rebased: bool = False  # the lane's commits were replayed on the target because its merge conflicted
    tree: str | None = None  # the commit's tree, when it was computed on the way


def landing_commit(
    ctx: ExecutionContext,
    strategy: Strategy,
    *,
    target: str,
    target_sha: str,
    lane_sha: str,
    run_id: str,
    lane_id: str,
    objective: str,
    rebase_on_conflict: bool = False,
    ident: Mapping[str, str] | None = None,
) -> LandingCommit:
    """The commit the target should point at after landing ``lane_sha`` on ``target_sha``, or the
    paths that conflict; changes no ref or checkout.

    With ``rebase_on_conflict``, a ``merge`` or ``squash`` whose merge conflicts is tried once more
    on the lane's commits replayed one by one on the target (a replay skips commits the target
    already has, such as those of a lane this one was stacked on); it lands that way when clean.
    ``ident`` is the identity of the commits made (default: ``Repository.identity_env()``).
    """
    from spine.landing.gate import merge_trees

    label = f"{run_id}/{lane_id}"
    if strategy == "ff-only":
        if not ctx.git.is_ancestor(target_sha, lane_sha):
            raise PromoteRefused(
                f"{target} has commits the lane branch does not have, so it cannot be fast-forwarded",
                f"use --strategy rebase, merge or squash: spine promote {label} --strategy rebase",
            )
        return LandingCommit(lane_sha)
    ident = ident if ident is not None else ctx.git.identity_env()
    if strategy == "rebase":
        return _replay(ctx, target_sha=target_sha, lane_sha=lane_sha, ident=ident)
    merge = merge_trees(ctx, target_sha, lane_sha)
    tree, head, rebased = merge.tree, lane_sha, False
    if tree is None:
        if not rebase_on_conflict:
            return LandingCommit(None, merge.conflicts)
        replayed = _replay(ctx, target_sha=target_sha, lane_sha=lane_sha, ident=ident)
        if replayed.commit is None:
            return LandingCommit(None, merge.conflicts or replayed.conflicts, replayed.detail)
        tree, head, rebased = ctx.git.tree_of(replayed.commit), replayed.commit, True
    primary = ctx.repo.primary_checkout
    if strategy == "merge":
        message = f"Merge lane {label} into {target}\n\n{objective}\n\n{_trailers(run_id, lane_id)}\n"
        parents = ["-p", target_sha, "-p", head]
    else:
        subjects = git("log", "--reverse", "--format=* %s", f"{target_sha}..{head}", cwd=primary).stdout
        message = f"{objective}\n\n{subjects.strip()}\n\n{_trailers(run_id, lane_id)}\n"
        parents = ["-p", target_sha]
    commit = git(
        "commit-tree", tree, *parents, "-F", "-", cwd=primary, env=ident, input=message
    ).stdout.strip()
    return LandingCommit(commit, rebased=rebased, tree=tree)


def compute_landing(
    ctx: ExecutionContext,
    strategy: Strategy,
    *,
    target: str,
    target_sha: str,
    lane_sha: str,
    base_sha: str,
    run_id: str,
    lane_id: str,
    objective: str,
) -> str:
    """The commit the target should point at after landing ``lane_sha``; changes no ref or checkout."""
    label = f"{run_id}/{lane_id}"
    landing = landing_commit(
        ctx,
        strategy,
        target=target,
        target_sha=target_sha,
        lane_sha=lane_sha,
        run_id=run_id,
        lane_id=lane_id,
        objective=objective,
    )
    if landing.commit is not None:
        return landing.commit
    if strategy == "rebase":
        from spine.landing.gate import merge_trees

        detail = f" in: {', '.join(landing.conflicts)}" if landing.conflicts else f": {landing.detail}"
        if merge_trees(ctx, target_sha, lane_sha).tree is not None:
            hint = f"--strategy merge lands it cleanly: spine promote {label} --strategy merge"
        else:
            hint = resolve_by_hand(label, target)
        raise PromoteRefused(f"the commits of lane {label} do not apply cleanly on {target}{detail}", hint)
    raise PromoteRefused(
        f"lane {label} conflicts with {target} in: {', '.join(landing.conflicts)}",
        resolve_by_hand(label, target),
    )


def _replay(
    ctx: ExecutionContext, *, target_sha: str, lane_sha: str, ident: Mapping[str, str]
) -> LandingCommit:
    """Replay the lane's commits on the target in a throwaway worktree; no user checkout is touched."""
    from spine.landing.gate import throwaway_checkout

    if ctx.git.is_ancestor(target_sha, lane_sha):
        return LandingCommit(lane_sha)  # already on top of the target: nothing to replay
    with throwaway_checkout(ctx, lane_sha, "rebase") as tmp:
        # Hooks of the user's repository are not run on commits they never made in this checkout.
        proc = git(
            "-c",
            "core.hooksPath=/dev/null",
            "rebase",
            "--quiet",
            "--onto",
            target_sha,
            target_sha,
            cwd=tmp,
            env=ident,
            check=False,
        )
        if proc.returncode != 0:
            conflicts = git("diff", "--name-only", "--diff-filter=U", cwd=tmp, check=False).stdout.split()
            git("rebase", "--abort", cwd=tmp, check=False)
            return LandingCommit(None, sorted(conflicts), proc.stderr.strip()[-300:])
        return LandingCommit(git("rev-parse", "HEAD", cwd=tmp).stdout.strip())


def resolve_by_hand(label: str, target: str) -> str:
    """The steps that resolve a conflicting lane and land it after all, each a command that works."""
    run_id, _, lane_id = label.partition("/")
    branch = lane_branch(run_id, lane_id)
    return (
        f"resolve it on the lane branch: `git switch {branch} && git rebase {target}` (fix, `git rebase "
        f"--continue`), then land what you resolved: `spine promote {label} --force --gate`"
    )


def dirty_paths_in_the_way(checkout: Path, changed: set[str]) -> list[str]:
    """Paths with local changes (staged, unstaged or untracked) that the landing would overwrite."""
    out = git("status", "--porcelain=v1", "-z", "--untracked-files=all", cwd=checkout).stdout
    dirty: set[str] = set()
    entries = out.split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        dirty.add(entry[3:])
        if entry[0] in "RC":  # a rename's source path follows as its own entry
            dirty.add(entries[i])
            i += 1
    return sorted(dirty & changed)


@dataclass
class Landing:
    """What a promotion did (or, with ``dry_run``, would do)."""

    target: str
    before: str
    after: str
    commits: list[str]
    checkout: Path | None
    already: bool = False
    promoted_before: str | None = None  # when this lane was promoted by an earlier `spine promote`


def promote(
    ctx: ExecutionContext,
    run_id: str,
    lane_id: str,
    strategy: Strategy,
    *,
    into: str | None = None,
    use_gate: bool = False,
    force: bool = False,
    echo_gate: bool = True,
) -> Landing:
    """Land lane ``run_id/lane_id`` on its target with ``strategy``; see the module docstring."""
    from spine.base.locks import hold
    from spine.drive.runs import load_result
    from spine.workspace.store import RunStore

    label = f"{run_id}/{lane_id}"
    store = RunStore(ctx.state, run_id)
    run = store.load()
    load_result(ctx, run_id, lane_id)  # says clearly when the lane has no result
    # One promotion of a lane at a time; what the result says is read again under the lock, so a
    # second promotion sees the first one's record and lands nothing.
    with hold(ctx.state.promote_lock(run_id, lane_id), f"promoting lane {label}", ctx.config.lock_timeout):
        result = load_result(ctx, run_id, lane_id)
        if result.promotion is not None and not force:
            p = result.promotion
            when = f"{p.strategy}, {p.promoted_at}"
            return Landing(
                p.target, p.target_after, p.target_after, [], None, already=True, promoted_before=when
            )
        return _promote(ctx, store, run, result, label, strategy, into, use_gate, force, echo_gate)


def _promote(
    ctx: ExecutionContext,
    store: RunStore,
    run: RunState,
    result: LaneResult,
    label: str,
    strategy: Strategy,
    into: str | None,
    use_gate: bool,
    force: bool,
    echo_gate: bool,
) -> Landing:
    from spine.base.locks import hold
    from spine.model.result import LaneStatus

    run_id, lane_id = result.run_id, result.lane_id
    if result.attempts and (result.pick is None or result.pick.attempt is None):
        raise PromoteRefused(
            f"lane {label} picked none of its attempts: {result.pick.reason if result.pick else 'not compared'}",
            f"see them with `spine compare {label}`; take one with `spine pick {label} N`, then promote",
        )
    if result.status != LaneStatus.SUCCEEDED and not force:
        raise PromoteRefused(
            f"lane {label} did not succeed (status: {result.status.value}): {result.summary}",
            f"fix it and run it again, or land it anyway with: spine promote {label} --force",
        )
    if not result.branch or parse_lane_branch(result.branch) is None:
        raise UsageError(
            f"lane {label} has no lane branch to promote (it ran in place)",
            "its changes are already in your checkout",
        )
    lane_sha = ctx.git.branch_sha(result.branch)
    if lane_sha is None:
        raise UsageError(
            f"the branch {result.branch} of lane {label} no longer exists",
            "it was deleted (by `spine gc --prune-branches` or by hand); nothing to promote",
        )
    if result.head_sha and lane_sha != result.head_sha and not force:
        raise PromoteRefused(
            f"branch {result.branch} moved since the lane finished ({result.head_sha[:12]} -> {lane_sha[:12]}); "
            "what would land is not what the lane's checks saw",
            f"re-check it with `spine gate --lane {label}` and land it with --force, or run the lane again",
        )
    target, ref = target_ref(ctx, into or run.target_ref)

    with hold(ctx.state.lock_file("promote"), f"promoting lane {label}", ctx.config.lock_timeout):
        target_sha = ctx.git.resolve_commit(ref)
        if target_sha is None:
            raise UsageError(
                f"the target {target!r} is not a local branch",
                "promote onto a local branch: pass --into BRANCH (git branch lists them)",
            )
        checkout = target_checkout(ctx, target, again="promote again")
        if ctx.git.is_ancestor(lane_sha, target_sha):
            return Landing(target, target_sha, target_sha, [], checkout, already=True)
        new_sha = compute_landing(
            ctx,
            strategy,
            target=target,
            target_sha=target_sha,
            lane_sha=lane_sha,
            base_sha=result.base_sha,
            run_id=run_id,
            lane_id=lane_id,
            objective=result.objective,
        )
        if new_sha != lane_sha and ctx.git.tree_of(new_sha) == ctx.git.tree_of(target_sha):
            # The lane's change is in the target already (landed before a crash, or by hand):
            # landing it again would add an empty commit. Record it as landed instead.
            record_promotion(
                ctx,
                store,
                result,
                _promotion(strategy, target, target_sha, target_sha, lane_sha, [], None, None, force),
            )
            return Landing(target, target_sha, target_sha, [], checkout, already=True)
        gate_verdict: Literal["passed", "cached"] | None = None
        if use_gate:
            gate_verdict = _gate(ctx, target, target_sha, new_sha, label, echo_gate, result.sandbox_backend)
        move_target(
            ctx,
            target=target,
            before=target_sha,
            after=new_sha,
            checkout=checkout,
            reason=f"spine promote {label} ({strategy})",
            again="promote again",
        )
        commits = git(
            "rev-list", "--reverse", f"{target_sha}..{new_sha}", cwd=ctx.repo.primary_checkout
        ).stdout.split()
        promotion = _promotion(
            strategy, target, target_sha, new_sha, lane_sha, commits, checkout, gate_verdict, force
        )
        record_promotion(ctx, store, result, promotion)
        return Landing(target, target_sha, new_sha, commits, checkout)


class TargetMoved(PromoteRefused):
    """The target branch moved between reading it and moving it; nothing was changed. Exit 1."""


def target_ref(ctx: ExecutionContext, target: str) -> tuple[str, str]:
    """(branch name, full ref) of a landing target given as ``main`` or ``refs/heads/main``."""
    if (
        git("check-ref-format", "--branch", target, cwd=ctx.repo.primary_checkout, check=False).returncode
        != 0
    ):
        raise UsageError(f"invalid target branch {target!r}", "name a local branch, e.g. --into main")
    if target.startswith("refs/"):
        target = target.removeprefix("refs/heads/")
    return target, f"refs/heads/{target}"


def target_checkout(ctx: ExecutionContext, target: str, *, again: str) -> Path | None:
    """The checkout that has ``target`` checked out, if any; refuses while an operation is stopped
    half-way in a checkout of it (``again`` says what to do after finishing or aborting it)."""
    checkouts = find_target_checkouts(ctx, target)
    for co in checkouts:
        if co.operation:
            raise PromoteRefused(
                f"{co.operation} is in progress in {co.path}, which has {target} checked out; nothing was changed",
                f"finish it or abort it there (e.g. git rebase --continue / --abort), then {again}",
            )
    return next((co.path for co in checkouts if co.has_target), None)


def move_target(
    ctx: ExecutionContext,
    *,
    target: str,
    before: str,
    after: str,
    checkout: Path | None,
    reason: str,
    again: str,
) -> None:
    """Move ``target`` from ``before`` to ``after`` (a descendant of it), as a compare-and-swap.

    In the checkout that has it, with ``git merge --ff-only`` (git refuses to overwrite local
    changes; spine first names the ones in the way); elsewhere with ``git update-ref REF NEW OLD``.
    When the target is no longer at ``before`` (someone pushed meanwhile) it raises ``TargetMoved``
    and the target keeps what was pushed.
    """
    ref = f"refs/heads/{target}"
    primary = ctx.repo.primary_checkout

    def moved() -> TargetMoved | None:
        now = ctx.git.resolve_commit(ref)
        if now == before:
            return None
        return TargetMoved(
            f"{target} moved while landing ({before[:12]} -> {(now or 'deleted')[:12]}); nothing was changed",
            f"the new commits stay; {again}",
        )

    if checkout is not None:
        changed = set(git("diff", "--name-only", "-z", before, after, cwd=primary).stdout.split("\0")) - {""}
        in_the_way = dirty_paths_in_the_way(checkout, changed)
        if in_the_way:
            raise PromoteRefused(
                f"{checkout} has uncommitted changes to files the promotion would change: "
                f"{', '.join(in_the_way)}; nothing was changed",
                f"commit or stash them there (git stash), then {again}",
            )
        problem = moved()
        if problem is not None:
            raise problem
        proc = git("merge", "--ff-only", "--quiet", after, cwd=checkout, check=False)
        if proc.returncode != 0:
            raise moved() or PromoteRefused(
                f"git refused to update {target} in {checkout}: {proc.stderr.strip()[-300:]}",
                f"commit or stash the local changes there, then {again}",
            )
        return
    proc = git("update-ref", "-m", reason, ref, after, before, cwd=primary, check=False)
    if proc.returncode != 0:
        problem = moved()
        if problem is not None:
            raise problem
        from spine.base.git import GitFailed

        raise GitFailed(["update-ref", ref, after, before], proc.returncode, proc.stderr)


def _promotion(
    strategy: Strategy,
    target: str,
    before: str,
    after: str,
    lane_sha: str,
    commits: list[str],
    checkout: Path | None,
    gate_verdict: Literal["passed", "cached"] | None,
    force: bool,
) -> Promotion:
    from spine.base.ids import now_iso

    return Promotion(
        strategy=strategy,
        target=target,
        target_before=before,
        target_after=after,
        lane_head=lane_sha,
        commits=commits,
        checkout=str(checkout) if checkout else None,
        gate=gate_verdict,
        forced=force,
        promoted_at=now_iso(),
    )


def record_promotion(
    ctx: ExecutionContext, store: RunStore, result: LaneResult, promotion: Promotion
) -> None:
    """Record the promotion in the lane's result (clearing an earlier ejection) and the run's journal."""
    from spine.base.files import atomic_write_json

    updated = result.model_copy(
        update={
            "promotion": promotion,
            "ejection": None,
            "next_action": f"landed on {promotion.target} ({promotion.strategy}); clean up the lane with `spine gc`",
        }
    )
    atomic_write_json(ctx.state.result_file(result.run_id, result.lane_id), updated.to_json())
    picked = result.pick.lane_id if result.pick is not None else None
    if picked is not None and ctx.state.result_file(result.run_id, picked).is_file():
        # The attempt that landed says so too (``spine gc`` reads it for its branch).
        path = ctx.state.result_file(result.run_id, picked)
        attempt = LaneResult.model_validate_json(path.read_text(encoding="utf-8"))
        atomic_write_json(path, attempt.model_copy(update={"promotion": promotion}).to_json())
    store.event(
        "promoted",
        result.lane_id,
        strategy=promotion.strategy,
        target=promotion.target,
        before=promotion.target_before,
        after=promotion.target_after,
        checkout=promotion.checkout,
        gate=promotion.gate,
        forced=promotion.forced,
        via=promotion.via,
    )


def _gate(
    ctx: ExecutionContext, target: str, target_sha: str, new_sha: str, label: str, echo: bool, backend: str
) -> Literal["passed", "cached"]:
    """Run the gate on exactly what would land; refuse unless it passes."""
    from spine.landing.gate import echo_to_stderr, gate_checks, run_gate

    verdict = run_gate(
        ctx,
        rev=f"promotion of {label}",
        rev_sha=new_sha,
        into=target,
        into_sha=target_sha,
        checks=gate_checks(ctx),
        echo=echo_to_stderr if echo else None,
        backend=backend,
    )
    if not verdict.passed:
        failed = [f"{c.name} ({c.summary})" for c in verdict.checks if c.status == "failed"]
        raise PromoteRefused(
            f"the gate rejected the promotion of {label} onto {target}: "
            + (", ".join(failed) or f"conflicts in {', '.join(verdict.conflicts)}")
            + "; nothing was changed",
            f"reproduce it with `spine gate --lane {label} --retest`",
        )
    return "cached" if verdict.cached else "passed"
