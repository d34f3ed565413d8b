"""Promotion: land a finished lane's branch on its target branch, as a separate and explicit step.

The new target commit is computed first, in git's object store (``merge-tree`` and ``commit-tree``;
a rebase replays the lane in a throwaway worktree), so a refusal at any point leaves everything as it
was. Only then is the target moved: with ``git merge --ff-only`` in the checkout that has it checked
out (git itself refuses to overwrite local changes there), or, when no checkout has it, with
``git update-ref`` guarded by the old value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from spine.base.errors import ExitCode, SpineError, UsageError
from spine.base.git import git
from spine.model.result import LaneResult
from spine.model.state import RunState
from spine.workspace.context import ExecutionContext, parse_lane_branch
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
    from spine.landing.gate import merge_trees

    primary = ctx.repo.primary_checkout
    label = f"{run_id}/{lane_id}"
    if strategy == "ff-only":
        if not ctx.git.is_ancestor(target_sha, lane_sha):
            raise PromoteRefused(
                f"{target} has commits the lane branch does not have, so it cannot be fast-forwarded",
                f"use --strategy rebase, merge or squash: spine promote {label} --strategy rebase",
            )
        return lane_sha
    if strategy == "rebase":
        return _rebase(ctx, target=target, target_sha=target_sha, lane_sha=lane_sha, label=label)
    merge = merge_trees(ctx, target_sha, lane_sha)
    if merge.tree is None:
        raise PromoteRefused(
            f"lane {label} conflicts with {target} in: {', '.join(merge.conflicts)}",
            f"rebase the lane branch on {target} and resolve the conflicts, then promote again",
        )
    ident = ctx.git.identity_env()
    if strategy == "merge":
        message = f"Merge lane {label} into {target}\n\n{objective}\n\n{_trailers(run_id, lane_id)}\n"
        parents = ["-p", target_sha, "-p", lane_sha]
    else:
        subjects = git("log", "--reverse", "--format=* %s", f"{target_sha}..{lane_sha}", cwd=primary).stdout
        message = f"{objective}\n\n{subjects.strip()}\n\n{_trailers(run_id, lane_id)}\n"
        parents = ["-p", target_sha]
    return git(
        "commit-tree", merge.tree, *parents, "-F", "-", cwd=primary, env=ident, input=message
    ).stdout.strip()


def _rebase(ctx: ExecutionContext, *, target: str, target_sha: str, lane_sha: str, label: str) -> str:
    """Replay the lane's commits on the target in a throwaway worktree; no user checkout is touched."""
    from spine.landing.gate import throwaway_checkout

    if ctx.git.is_ancestor(target_sha, lane_sha):
        return lane_sha  # already on top of the target: nothing to replay
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
            env=ctx.git.identity_env(),
            check=False,
        )
        if proc.returncode != 0:
            conflicts = git("diff", "--name-only", "--diff-filter=U", cwd=tmp, check=False).stdout.split()
            git("rebase", "--abort", cwd=tmp, check=False)
            detail = f" in: {', '.join(conflicts)}" if conflicts else f": {proc.stderr.strip()[-300:]}"
            raise PromoteRefused(
                f"the commits of lane {label} do not apply cleanly on {target}{detail}",
                f"use --strategy merge, or rebase the lane branch on {target} yourself and promote again",
            )
        return git("rev-parse", "HEAD", cwd=tmp).stdout.strip()


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
    target = into or run.target_ref
    if (
        git("check-ref-format", "--branch", target, cwd=ctx.repo.primary_checkout, check=False).returncode
        != 0
    ):
        raise UsageError(f"invalid target branch {target!r}", "name a local branch, e.g. --into main")
    if target.startswith("refs/"):
        target = target.removeprefix("refs/heads/")
    ref = f"refs/heads/{target}"

    with hold(ctx.state.lock_file("promote"), f"promoting lane {label}", ctx.config.lock_timeout):
        target_sha = ctx.git.resolve_commit(ref)
        if target_sha is None:
            raise UsageError(
                f"the target {target!r} is not a local branch",
                "promote onto a local branch: pass --into BRANCH (git branch lists them)",
            )
        checkouts = find_target_checkouts(ctx, target)
        for co in checkouts:
            if co.operation:
                raise PromoteRefused(
                    f"{co.operation} is in progress in {co.path}, which has {target} checked out; nothing was changed",
                    "finish it or abort it there (e.g. git rebase --continue / --abort), then promote again",
                )
        checkout = next((co.path for co in checkouts if co.has_target), None)
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
            _record(
                ctx, store, result, strategy, target, target_sha, target_sha, lane_sha, [], None, None, force
            )
            return Landing(target, target_sha, target_sha, [], checkout, already=True)
        gate_verdict: Literal["passed", "cached"] | None = None
        if use_gate:
            gate_verdict = _gate(ctx, target, target_sha, new_sha, label, echo_gate)
        changed = set(
            git("diff", "--name-only", "-z", target_sha, new_sha, cwd=ctx.repo.primary_checkout).stdout.split(
                "\0"
            )
        ) - {""}
        if checkout is not None:
            in_the_way = dirty_paths_in_the_way(checkout, changed)
            if in_the_way:
                raise PromoteRefused(
                    f"{checkout} has uncommitted changes to files the promotion would change: "
                    f"{', '.join(in_the_way)}; nothing was changed",
                    "commit or stash them there (git stash), then promote again",
                )
            proc = git("merge", "--ff-only", "--quiet", new_sha, cwd=checkout, check=False)
            if proc.returncode != 0:
                raise PromoteRefused(
                    f"git refused to update {target} in {checkout}: {proc.stderr.strip()[-300:]}",
                    "commit or stash the local changes there, then promote again",
                )
        else:
            git(
                "update-ref",
                "-m",
                f"spine promote {label} ({strategy})",
                ref,
                new_sha,
                target_sha,
                cwd=ctx.repo.primary_checkout,
            )
        commits = git(
            "rev-list", "--reverse", f"{target_sha}..{new_sha}", cwd=ctx.repo.primary_checkout
        ).stdout.split()
        _record(
            ctx,
            store,
            result,
            strategy,
            target,
            target_sha,
            new_sha,
            lane_sha,
            commits,
            checkout,
            gate_verdict,
            force,
        )
        return Landing(target, target_sha, new_sha, commits, checkout)


def _record(
    ctx: ExecutionContext,
    store: RunStore,
    result: LaneResult,
    strategy: Strategy,
    target: str,
    before: str,
    after: str,
    lane_sha: str,
    commits: list[str],
    checkout: Path | None,
    gate_verdict: Literal["passed", "cached"] | None,
    force: bool,
) -> None:
    """Record the promotion in the lane's result and the run's journal."""
    from spine.base.files import atomic_write_text
    from spine.base.ids import now_iso
    from spine.model.result import Promotion

    promotion = Promotion(
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
    updated = result.model_copy(
        update={
            "promotion": promotion,
            "next_action": f"landed on {target} ({strategy}); clean up the lane with `spine gc`",
        }
    )
    atomic_write_text(ctx.state.result_file(result.run_id, result.lane_id), updated.to_json())
    picked = result.pick.lane_id if result.pick is not None else None
    if picked is not None and ctx.state.result_file(result.run_id, picked).is_file():
        # The attempt that landed says so too (``spine gc`` reads it for its branch).
        path = ctx.state.result_file(result.run_id, picked)
        attempt = LaneResult.model_validate_json(path.read_text(encoding="utf-8"))
        atomic_write_text(path, attempt.model_copy(update={"promotion": promotion}).to_json())
    store.event(
        "promoted",
        result.lane_id,
        strategy=strategy,
        target=target,
        before=before,
        after=after,
        checkout=str(checkout) if checkout else None,
        gate=gate_verdict,
        forced=force,
    )


def _gate(
    ctx: ExecutionContext, target: str, target_sha: str, new_sha: str, label: str, echo: bool
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
