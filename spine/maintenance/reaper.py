"""The reaper: spine gc's policy. Finds what spine left behind and cleans it up without ever losing
uncommitted work; the worktree operations themselves are ``spine.workspace.worktrees``.

It looks at lane worktrees of finished runs and of runs whose driver is dead, worktrees git knows
under spine's worktree root that no run claims (and directories there git does not know), throwaway
gate worktrees of gates that were killed, pooled worktrees beyond the pool's size (``spine.maintenance.pool``),
stale git lock files in lane worktrees, lane branches, and runs older than the retention setting. Whether a run is still driven is asked of ``spine.base.liveness``,
the one liveness check.

A dirty worktree is never deleted as is: its state (tracked changes, deletions and untracked files,
not ignored ones) is committed to ``refs/spine/recovered/...`` first. A lane branch with commits the
target does not contain is kept unless the caller asks to prune branches.

What gc examines does not grow with history. Branch tips come from one ``git for-each-ref`` and
"is it in the target" from one ``for-each-ref --merged`` per target commit, never a git process per
branch. A finished run that gc cleaned up completely is remembered (``StatePaths.reaped_runs``: its
lanes, their branches, and the stamps of its run.json and result files); the next gc plans it from
that record, without reading its state, while those stamps still match, nobody drives it and none of
its worktrees has come back. A finished run gc reads without a summary for ``spine status``
(one an older spine made) gets one (``spine.workspace.store.remember_finished``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spine.base.errors import SpineError
from spine.base.files import atomic_write_json
from spine.base.liveness import run_is_driven
from spine.drive.recovery import close_dead_run, record_worktree_removed
from spine.workspace import worktrees as wt_ops
from spine.workspace.context import (
    LANE_BRANCH_PREFIX,
    ExecutionContext,
    attempt_refs_of_run,
    lane_branch,
    parse_lane_branch,
)
from spine.workspace.store import (
    RunStore,
    StateTooNew,
    file_stamp,
    finished_summaries,
    read_run,
    remember_finished,
)
from spine.workspace.worktrees import GitWorktree


@dataclass
class Finding:
    """Something the reaper found, what it does about it, and (after applying) what happened."""

    kind: str  # lane-worktree | orphan-worktree | stray-directory | gate-worktree | pool-worktree | lock | branch | run | process
    subject: str
    action: str  # remove | delete | keep | skip | close | kill
    reason: str
    apply: Callable[[], str | None] | None = field(default=None, repr=False)
    run_id: str | None = None
    done: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "action": self.action,
            "reason": self.reason,
            "done": self.done,
            "error": self.error,
        }


# --- planning ------------------------------------------------------------------------------------


def _under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _age_days(iso: str) -> float:
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (datetime.now(UTC) - then).total_seconds() / 86400


class Reaper:
    """Plans what to clean up, then applies the plan (or only shows it, for ``--dry-run``)."""

    def __init__(
        self, ctx: ExecutionContext, *, prune_branches: bool = False, retention_days: float | None = None
    ) -> None:
        self.ctx = ctx
        self.prune_branches = prune_branches
        self.retention_days = retention_days
        self.findings: list[Finding] = []
        self._claimed: set[Path] = set()
        self._tips: dict[str, str] | None = None  # lane branch name -> its tip
        self._merged: dict[str, set[str]] = {}  # target commit -> lane branches it contains
        self._targets: dict[str, str] = {}  # target ref -> its commit now
        self._remembered: dict[str, dict[str, Any]] = {}  # run id -> what an earlier gc recorded
        self._examined: dict[str, tuple[dict[str, Any], int, int]] = {}  # run id -> (record, findings)
        self._summaries: dict[str, tuple[list[int], dict[str, object]]] = {}  # finished runs read

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def plan(self) -> list[Finding]:
        from spine.drive.runs import list_run_ids

        self.findings = []
        self._tips, self._merged, self._targets, self._examined, self._summaries = None, {}, {}, {}, {}
        self._remembered = _read_reaped(self.ctx)
        worktrees = {wt.path: wt for wt in wt_ops.list_worktrees(self.ctx.git)}
        run_ids = list_run_ids(self.ctx)
        for run_id in run_ids:
            first = len(self.findings)
            known = self._remembered.get(run_id)
            if known is not None and self._plan_remembered(run_id, known, worktrees):
                self._examined[run_id] = (known, first, len(self.findings))
                continue
            record = self._plan_run(run_id, worktrees)
            if record is not None:
                self._examined[run_id] = (record, first, len(self.findings))
        self._plan_orphans(worktrees)
        self._plan_pool()
        self._plan_gate_worktrees(worktrees)
        self._plan_orphan_branches(set(run_ids))
        return self.findings

    # -- what git says of lane branches, asked once for all of them

    def _branch_tips(self) -> dict[str, str]:
        if self._tips is None:
            tips = self.ctx.git.ref_tips(f"refs/heads/{LANE_BRANCH_PREFIX}")
            self._tips = {ref.removeprefix("refs/heads/"): sha for ref, sha in tips.items()}
        return self._tips

    def _target_sha(self, target_ref: str) -> str:
        if target_ref not in self._targets:
            self._targets[target_ref] = self.ctx.git.resolve_commit(target_ref) or self.ctx.refs.target_sha
        return self._targets[target_ref]

    def _in_target(self, branch: str, tip: str, target_sha: str) -> bool:
        if not branch.startswith(LANE_BRANCH_PREFIX):
            return self.ctx.git.is_ancestor(tip, target_sha)
        if target_sha not in self._merged:
            merged = self.ctx.git.ref_tips(f"refs/heads/{LANE_BRANCH_PREFIX}", merged_into=target_sha)
            self._merged[target_sha] = {ref.removeprefix("refs/heads/") for ref, _ in merged.items()}
        return branch in self._merged[target_sha]

    # -- runs

    def _plan_remembered(
        self, run_id: str, known: dict[str, Any], worktrees: dict[Path, GitWorktree]
    ) -> bool:
        """Plan a run an earlier gc cleaned up from its record; False when the record is no longer
        true of it (or the run is past retention), and the run must be read."""
        ctx = self.ctx
        try:
            lanes: dict[str, dict[str, Any]] = known["lanes"]
            if known["runJson"] != file_stamp(ctx.state.run_file(run_id)):
                return False
            if self.retention_days is not None and _age_days(known["createdAt"]) > self.retention_days:
                return False
            paths = [ctx.lane_worktree(run_id, lane_id) for lane_id in lanes]
            if any(path in worktrees or path.exists() for path in paths):
                return False
            if run_is_driven(ctx.state.driver_lock(run_id)):
                return False
            target_ref = str(known["targetRef"])
            promoted = {}
            for lane_id, lane in lanes.items():
                if lane.get("branch"):
                    stamp = file_stamp(ctx.state.result_file(run_id, lane_id))
                    promoted[lane_id] = (
                        bool(lane.get("promoted"))
                        if stamp == lane.get("result")
                        else self._promoted(run_id, lane_id)
                    )
        except (KeyError, TypeError, AttributeError):
            return False  # a record this spine did not write
        self._claimed.update(paths)
        target_sha = self._target_sha(target_ref)
        for lane_id, lane in lanes.items():
            if lane.get("branch"):
                self._plan_branch(str(lane["branch"]), target_sha, target_ref, promoted=promoted[lane_id])
        return True

    def _plan_run(self, run_id: str, worktrees: dict[Path, GitWorktree]) -> dict[str, Any] | None:
        """Plan one run from its state; return what to remember of it should gc leave it clean."""
        ctx = self.ctx
        run_dir = ctx.state.run_dir(run_id)
        for lane_id in _lane_dirs(ctx, run_id):
            self._claimed.add(ctx.lane_worktree(run_id, lane_id))
        stamp = file_stamp(ctx.state.run_file(run_id))
        try:
            run = read_run(ctx.state, run_id)
        except (SpineError, OSError) as exc:  # an unreadable run.json: report, touch nothing of that run
            text = exc.message if isinstance(exc, SpineError) else str(exc)
            why = "a newer spine wrote it" if isinstance(exc, StateTooNew) else "cannot read its run.json"
            self.add(Finding("run", run_id, "skip", f"{why} ({text}); left alone"))
            return None
        for lane_id in run.lanes:
            self._claimed.add(ctx.lane_worktree(run_id, lane_id))
        if run_is_driven(ctx.state.driver_lock(run_id)):
            self.add(Finding("run", run_id, "skip", "a spine process is driving it", run_id=run_id))
            return None
        finished = all(lane.complete for lane in run.lanes.values())
        dead = run.driver is not None and not finished
        expired = self.retention_days is not None and _age_days(run.created_at) > self.retention_days
        if not (finished or dead or expired):
            self.add(
                Finding(
                    "run",
                    run_id,
                    "skip",
                    "not finished and not being driven (continue it with `spine resume`, "
                    "or it is removed once older than the retention)",
                    run_id=run_id,
                )
            )
            return None
        why = (
            "its run finished"
            if finished
            else ("its driver is dead" if dead else "the run is past retention")
        )
        if finished and not expired and stamp is not None:
            from spine.drive.runs import finished_summary

            self._summaries[run_id] = (stamp, finished_summary(run))
        target_sha = self._target_sha(run.target_ref)
        record: dict[str, Any] = {
            "runJson": stamp,
            "createdAt": run.created_at,
            "targetRef": run.target_ref,
            "lanes": {},
        }
        for lane_id, lane in run.lanes.items():
            expected = ctx.lane_worktree(run_id, lane_id)
            remembered: dict[str, Any] = {"branch": None}
            record["lanes"][lane_id] = remembered
            if dead and lane.pgid and lane.worktree:
                self._plan_orphan_processes(run_id, lane.pgid, Path(lane.worktree))
            if lane.worktree is not None and Path(lane.worktree) != expected:
                continue  # an in-place lane ran in the user's own checkout: nothing of spine's to remove
            self._plan_lane_worktree(run_id, lane_id, lane.base_sha, expected, worktrees.get(expected), why)
            branch = lane_branch(run_id, lane_id)
            if lane.branch == branch or (lane.branch is None and branch in self._branch_tips()):
                result_stamp = file_stamp(ctx.state.result_file(run_id, lane_id))
                promoted = self._promoted(run_id, lane_id)
                remembered.update(branch=branch, promoted=promoted, result=result_stamp)
                self._plan_branch(branch, target_sha, run.target_ref, promoted=promoted)
        if dead:
            self.add(
                Finding(
                    "run",
                    run_id,
                    "close",
                    "its driver died; unfinished lanes are recorded as canceled",
                    apply=lambda: close_dead_run(ctx, run_id),
                    run_id=run_id,
                )
            )
        if expired:
            days = self.retention_days

            def delete_run() -> str:
                shutil.rmtree(run_dir)
                # Heads of retried lanes' earlier attempts belong to the run and go with it.
                for ref in ctx.git.refs_matching(attempt_refs_of_run(run_id)):
                    ctx.git.delete_ref(ref)
                return f"deleted {run_dir}"

            self.add(
                Finding(
                    "run", run_id, "delete", f"older than the retention ({days:g} days)", delete_run, run_id
                )
            )
        return record if finished and not expired else None

    def _plan_orphan_processes(self, run_id: str, pgid: int, worktree: Path) -> None:
        """A dead driver's command may still run: its group is killed before its worktree goes."""
        pids = wt_ops.group_members_inside(pgid, worktree)
        if not pids:
            return

        def kill() -> str:
            from spine.base.process import kill_group

            kill_group(pgid, grace=2.0)
            return f"stopped process group {pgid} ({len(pids)} process{'es' if len(pids) > 1 else ''})"

        self.add(
            Finding(
                "process",
                f"process group {pgid}",
                "kill",
                f"the command of a lane whose driver died, still running in {worktree}",
                kill,
                run_id,
            )
        )

    def _promoted(self, run_id: str, lane_id: str) -> bool:
        path = self.ctx.state.result_file(run_id, lane_id)
        try:
            return bool(json.loads(path.read_text(encoding="utf-8")).get("promotion"))
        except (OSError, ValueError):
            return False

    def _plan_lane_worktree(
        self,
        run_id: str,
        lane_id: str,
        base_sha: str,
        path: Path,
        registered: GitWorktree | None,
        why: str,
    ) -> None:
        ctx = self.ctx
        if registered is None and not path.exists():
            return
        if path == ctx.workspace.current_worktree:
            self.add(
                Finding(
                    "lane-worktree",
                    str(path),
                    "skip",
                    "spine gc was started inside it; run it from another checkout to remove it",
                    run_id=run_id,
                )
            )
            return
        if registered is not None and registered.locked:
            self.add(
                Finding(
                    "lane-worktree",
                    str(path),
                    "skip",
                    f"locked with `git worktree lock` ({registered.locked}); unlock it to let gc remove it",
                    run_id=run_id,
                )
            )
            return
        gitdir = ctx.git.registered_git_dir(path)
        if gitdir is not None and (gitdir / "index.lock").exists():
            lock = gitdir / "index.lock"
            self.add(
                Finding(
                    "lock",
                    str(lock),
                    "delete",
                    "a git lock left by a process that died",
                    _unlink(lock),
                    run_id,
                )
            )
        head = registered.head if registered and registered.head else None
        # A worktree whose branch is gone lists HEAD as zeros: its base is then the parent to keep.
        parent = head if head and ctx.git.resolve_commit(head) else base_sha
        label = f"{run_id}/{lane_id}"
        self.add(
            Finding(
                "lane-worktree",
                str(path),
                "remove",
                why,
                lambda: _recover_and_remove(ctx, path, parent, label, run_id),
                run_id=run_id,
            )
        )

    def _plan_branch(self, branch: str, target_sha: str, target_ref: str, *, promoted: bool) -> None:
        ctx = self.ctx
        tip = (
            self._branch_tips().get(branch)
            if branch.startswith(LANE_BRANCH_PREFIX)
            else ctx.git.branch_sha(branch)
        )
        if tip is None:
            return
        ref_lock = ctx.git.branch_lock_file(branch)
        if ref_lock.exists():
            self.add(
                Finding(
                    "lock",
                    str(ref_lock),
                    "delete",
                    "a git ref lock left by a process that died",
                    _unlink(ref_lock),
                )
            )
        if self._in_target(branch, tip, target_sha):
            reason = f"everything on it is in {target_ref}"
        elif promoted:
            reason = "it was landed with `spine promote`, as its result records"
        elif self.prune_branches:
            reason = f"--prune-branches (its commits are not in {target_ref}; tip was {tip[:12]})"
        else:
            self.add(
                Finding(
                    "branch",
                    branch,
                    "keep",
                    f"it has commits not in {_short(target_ref)}; land it with "
                    f"`spine promote {branch.removeprefix(LANE_BRANCH_PREFIX)}`, or delete it with --prune-branches",
                )
            )
            return

        def delete() -> str:
            ctx.git.run("update-ref", "-d", f"refs/heads/{branch}", tip)
            return f"deleted branch {branch} (was {tip[:12]})"

        self.add(Finding("branch", branch, "delete", reason, delete))

    # -- leftovers nobody claims

    def _plan_orphans(self, worktrees: dict[Path, GitWorktree]) -> None:
        ctx = self.ctx
        root = ctx.workspace.worktree_root
        gate_root = ctx.workspace.gate
        pool_root = ctx.workspace.pool  # the pool's own: trimmed by _plan_pool, never orphans
        for path, wt in worktrees.items():
            if (
                not _under(path, root)
                or _under(path, gate_root)
                or _under(path, pool_root)
                or path in self._claimed
            ):
                continue
            if path == ctx.workspace.current_worktree:
                self.add(Finding("orphan-worktree", str(path), "skip", "spine gc was started inside it"))
                continue
            if wt.locked:
                self.add(Finding("orphan-worktree", str(path), "skip", f"locked ({wt.locked})"))
                continue
            label = "orphan/" + "-".join(path.relative_to(root).parts)
            self.add(
                Finding(
                    "orphan-worktree",
                    str(path),
                    "remove",
                    "git has this worktree under spine's worktree root but no run claims it"
                    + (" (its directory is gone)" if wt.prunable else ""),
                    _recoverer(ctx, path, wt.head or ctx.refs.target_sha, label),
                )
            )
        if not root.is_dir():
            return
        for run_dir in sorted(root.iterdir()):
            if run_dir in (gate_root, pool_root) or not run_dir.is_dir():
                continue
            for entry in sorted(run_dir.iterdir()):
                if entry in worktrees or entry in self._claimed or not entry.is_dir():
                    continue
                label = "stray/" + "-".join(entry.relative_to(root).parts)
                self.add(
                    Finding(
                        "stray-directory",
                        str(entry),
                        "remove",
                        "a directory under spine's worktree root that neither git nor any run knows",
                        _recoverer(ctx, entry, ctx.refs.target_sha, label),
                    )
                )
        # Claimed worktrees that git no longer has but whose directory is still there are handled
        # with their run; a claimed directory of a run still in progress is left alone.

    def _plan_pool(self) -> None:
        from spine.maintenance import pool

        ctx = self.ctx
        size = ctx.config.pool.size if ctx.config.pool.enabled else 0
        why = f"the worktree pool keeps at most {size}" if size else "the worktree pool is switched off"
        for path in pool.surplus(ctx):

            def remove(p: Path = path) -> str:
                if wt_ops.remove_pooled(ctx, p):
                    return f"removed pooled worktree {p}"
                return f"left pooled worktree {p}: a lane is taking it"

            self.add(Finding("pool-worktree", str(path), "remove", why, remove))

    def _plan_gate_worktrees(self, worktrees: dict[Path, GitWorktree]) -> None:
        ctx = self.ctx
        root = ctx.workspace.gate
        paths = {p for p in worktrees if _under(p, root)}
        if root.is_dir():
            paths |= {p for p in root.iterdir() if p.is_dir()}
        for path in sorted(paths):
            alive_dir = ctx.state.gate_active(path.name)
            if run_is_driven(ctx.state.gate_active_lock(path.name)):
                continue

            def remove(p: Path = path, d: Path = alive_dir) -> str:
                wt_ops.remove(ctx, p)
                shutil.rmtree(d, ignore_errors=True)
                return f"removed {p}"

            self.add(Finding("gate-worktree", str(path), "remove", "left by a gate that was killed", remove))

    def _plan_orphan_branches(self, run_ids: set[str]) -> None:
        ctx = self.ctx
        for branch in sorted(self._branch_tips()):
            parsed = parse_lane_branch(branch)
            if parsed is None or parsed[0] in run_ids:
                continue
            self._plan_branch(branch, ctx.refs.target_sha, ctx.refs.target_ref, promoted=False)

    # -- applying

    def run(self, *, dry_run: bool = False) -> list[Finding]:
        """Plan, and unless ``dry_run`` apply the plan, holding the lock lanes take to create worktrees.

        Planning under the lock too means a lane worktree being created right now cannot be
        mistaken for a stray directory.
        """
        if dry_run:
            return self.plan()
        with wt_ops.worktrees_lock(self.ctx, "spine gc"):
            self.plan()
            self.apply()
            self._remember_clean_runs()
            return self.findings

    def _remember_clean_runs(self) -> None:
        """Record the finished runs that this gc left with nothing to do, for the next gc to skip.

        A run qualifies when nothing of it was skipped and everything planned for it was done; a
        branch kept for its unlanded commits does not stop it (the next gc looks at it again from
        its tip). Runs that are gone are forgotten."""
        listed = finished_summaries(self.ctx.state)
        for run_id, (stamp, summary) in self._summaries.items():
            if run_id in listed and listed[run_id][0] == stamp:
                continue
            with contextlib.suppress(OSError):  # a finished run an older spine made: list it cheaply
                remember_finished(self.ctx.state, run_id, summary, stamp)
        reaped: dict[str, Any] = {}
        for run_id, (record, first, end) in self._examined.items():
            mine = self.findings[first:end]
            if any(f.action == "skip" or f.error or (f.apply is not None and f.done is None) for f in mine):
                continue
            reaped[run_id] = record
        if reaped == self._remembered:
            return
        with contextlib.suppress(OSError):  # only a cache: the next gc reads the runs again
            atomic_write_json(self.ctx.state.reaped_runs, json.dumps({"version": 1, "runs": reaped}))

    def apply(self) -> list[Finding]:
        """Carry out the plan, one finding at a time; a failure is recorded and the rest goes on."""
        ctx = self.ctx
        for finding in self.findings:
            if finding.apply is None:
                continue
            if finding.run_id and run_is_driven(ctx.state.driver_lock(finding.run_id)):
                finding.error = "a spine process started driving the run meanwhile; left alone"
                continue
            try:
                finding.done = finding.apply() or "done"
            except (SpineError, OSError) as exc:
                finding.error = exc.message if isinstance(exc, SpineError) else str(exc)
        return self.findings


def _read_reaped(ctx: ExecutionContext) -> dict[str, dict[str, Any]]:
    """What earlier gcs remembered of finished runs they cleaned up (empty when unreadable)."""
    try:
        data = json.loads(ctx.state.reaped_runs.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    runs = data.get("runs") if isinstance(data, dict) and data.get("version") == 1 else None
    return {k: v for k, v in runs.items() if isinstance(v, dict)} if isinstance(runs, dict) else {}


def _lane_dirs(ctx: ExecutionContext, run_id: str) -> list[str]:
    lanes = ctx.state.lanes_dir(run_id)
    return [p.name for p in lanes.iterdir()] if lanes.is_dir() else []


def _unlink(path: Path) -> Callable[[], str]:
    def remove() -> str:
        path.unlink(missing_ok=True)
        return f"deleted {path}"

    return remove


def _recoverer(ctx: ExecutionContext, path: Path, parent: str, label: str) -> Callable[[], str]:
    return lambda: _recover_and_remove(ctx, path, parent, label, None)


def _recover_and_remove(
    ctx: ExecutionContext, path: Path, parent: str, label: str, run_id: str | None
) -> str:
    """Save uncommitted work in ``path`` to a recovery ref, then remove the worktree."""
    ref = wt_ops.recover_and_remove(ctx, path, parent, label)
    if run_id:
        lane_id = label.split("/", 1)[-1]
        if ref:
            RunStore(ctx.state, run_id).event("work-recovered", lane_id, ref=ref, path=str(path))
        record_worktree_removed(ctx, run_id, lane_id, ref)
    if ref:
        return f"removed {path}; uncommitted work saved to {ref}"
    return f"removed {path}"


def _short(ref: str) -> str:
    """A target for people: a branch name as it is, a commit (a detached HEAD's target) shortened."""
    return ref[:12] if len(ref) in (40, 64) and all(c in "0123456789abcdef" for c in ref) else ref
