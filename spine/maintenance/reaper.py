"""The one reaper: finds what spine left behind and cleans it up without ever losing uncommitted work.

It looks at lane worktrees of finished runs and of runs whose driver is dead, worktrees git knows
under spine's worktree root that no run claims (and directories there git does not know), throwaway
gate worktrees of gates that were killed, pooled worktrees beyond the pool's size (``spine.maintenance.pool``),
stale git lock files in lane worktrees, lane branches, and runs older than the retention setting. Whether a run is still driven is asked of ``spine.base.liveness``,
the one liveness check.

A dirty worktree is never deleted as is: its state (tracked changes, deletions and untracked files,
not ignored ones) is committed to ``refs/spine/recovered/...`` first. A lane branch with commits the
target does not contain is kept unless the caller asks to prune branches. ``lane.create_worktree``
clears a half-created worktree through ``clear_half_created`` here, so there is one implementation.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spine.base.git import GitFailed, git
from spine.base.liveness import run_is_driven
from spine.workspace.context import ExecutionContext

FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "spine",
    "GIT_AUTHOR_EMAIL": "spine@localhost",
    "GIT_COMMITTER_NAME": "spine",
    "GIT_COMMITTER_EMAIL": "spine@localhost",
}

RECOVERED_PREFIX = "refs/spine/recovered"


@dataclass
class GitWorktree:
    """One entry of ``git worktree list --porcelain``."""

    path: Path
    head: str | None = None
    branch: str | None = None
    locked: str | None = None
    prunable: bool = False


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


# --- primitives shared with the rest of spine ---------------------------------------------------


def list_git_worktrees(ctx: ExecutionContext) -> list[GitWorktree]:
    """Every worktree git has registered for this repository."""
    out = git("worktree", "list", "--porcelain", cwd=ctx.repo.primary_checkout).stdout
    found: list[GitWorktree] = []
    for block in out.strip().split("\n\n"):
        lines = block.splitlines()
        if not lines or not lines[0].startswith("worktree "):
            continue
        entry = GitWorktree(path=Path(lines[0].removeprefix("worktree ")))
        for line in lines[1:]:
            key, _, value = line.partition(" ")
            if key == "HEAD":
                entry.head = value
            elif key == "branch":
                entry.branch = value.removeprefix("refs/heads/")
            elif key == "locked":
                entry.locked = value or "locked"
            elif key == "prunable":
                entry.prunable = True
        found.append(entry)
    return found


def _identity_env(cwd: Path) -> dict[str, str]:
    """The user's git identity if one is configured, else spine's, so a recovery never fails on it."""
    probe = git("var", "GIT_COMMITTER_IDENT", cwd=cwd, check=False)
    return {} if probe.returncode == 0 else dict(FALLBACK_IDENTITY)


def worktree_git_dir(path: Path) -> Path | None:
    """The private git directory of a linked worktree at ``path``, read from its ``.git`` file."""
    dotgit = path / ".git"
    try:
        text = dotgit.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not text.startswith("gitdir: "):
        return None
    gitdir = Path(text.removeprefix("gitdir: "))
    if not gitdir.is_absolute():
        gitdir = (path / gitdir).resolve()
    return gitdir if gitdir.is_dir() else None


def snapshot_directory(
    ctx: ExecutionContext,
    directory: Path,
    parent: str,
    ref_name: str,
    message: str,
    *,
    include_deletions: bool = True,
) -> str | None:
    """Commit the state of ``directory`` on top of ``parent`` to ``refs/spine/recovered/<ref_name>``.

    Uses a private index, so the worktree's own index (and any stale ``index.lock``) is never touched.
    Ignored files are not included. Returns the recovery ref, or None when the directory holds
    nothing that ``parent`` does not already have.
    """
    primary = ctx.repo.primary_checkout
    fd, index = tempfile.mkstemp(prefix="spine-recover-", suffix=".index")
    os.close(fd)
    try:
        env = {"GIT_INDEX_FILE": index}
        gitdir = worktree_git_dir(directory)
        own_index = gitdir / "index" if gitdir else None
        if own_index is not None and own_index.is_file() and include_deletions:
            shutil.copyfile(own_index, index)  # reuses its stat data: fast on big trees
        else:
            os.unlink(index)
            git("read-tree", parent, cwd=primary, env=env)
        add = ["add", "-A"] if include_deletions else ["add", "--ignore-removal"]
        # An explicit git dir: a stray directory's own .git file may be broken or point elsewhere.
        where = [f"--git-dir={ctx.repo.git_common_dir}", f"--work-tree={directory}"]
        git(*where, *add, "--", ".", cwd=directory, env=env)
        tree = git("write-tree", cwd=primary, env=env).stdout.strip()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(index)
    if tree == git("rev-parse", f"{parent}^{{tree}}", cwd=primary).stdout.strip():
        return None
    commit = git(
        "commit-tree", tree, "-p", parent, "-m", message, cwd=primary, env=_identity_env(primary)
    ).stdout.strip()
    ref = f"{RECOVERED_PREFIX}/{ref_name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    git("update-ref", "-m", "spine: recovered uncommitted work", ref, commit, "", cwd=primary)
    return ref


def remove_worktree(ctx: ExecutionContext, path: Path) -> None:
    """Remove a worktree (registered or not, present or not) and git's record of it. Never raises."""
    primary = ctx.repo.primary_checkout
    proc = git("worktree", "remove", "--force", str(path), cwd=primary, check=False)
    if proc.returncode != 0 and path.exists():
        shutil.rmtree(path, ignore_errors=True)
    if proc.returncode != 0:
        git("worktree", "prune", cwd=primary, check=False)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # the run's directory, once its last lane is gone


def clear_half_created(ctx: ExecutionContext, path: Path, base_sha: str, label: str) -> str | None:
    """Clear a worktree a crash left half-created at ``path`` so it can be created again.

    Files that differ from ``base_sha`` are saved to a recovery ref first (deletions are not: a
    half-finished checkout lacks files it never wrote). Returns the recovery ref, if one was made.
    """
    ref = None
    if path.is_dir() and any(p.name != ".git" for p in path.iterdir()):
        ref = snapshot_directory(
            ctx,
            path,
            base_sha,
            label,
            f"spine: files found in a half-created worktree of {label}",
            include_deletions=False,
        )
    remove_worktree(ctx, path)
    return ref


def is_registered(ctx: ExecutionContext, path: Path) -> bool:
    return any(wt.path == path for wt in list_git_worktrees(ctx))


# --- planning ------------------------------------------------------------------------------------


def _under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _ref_sha(ctx: ExecutionContext, ref: str) -> str | None:
    proc = git("rev-parse", "--verify", "-q", f"{ref}^{{commit}}", cwd=ctx.repo.primary_checkout, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _is_ancestor(ctx: ExecutionContext, sha: str, of: str) -> bool:
    proc = git("merge-base", "--is-ancestor", sha, of, cwd=ctx.repo.primary_checkout, check=False)
    return proc.returncode == 0


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

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def plan(self) -> list[Finding]:
        from spine.drive.runs import list_run_ids

        self.findings = []
        worktrees = {wt.path: wt for wt in list_git_worktrees(self.ctx)}
        run_ids = list_run_ids(self.ctx)
        for run_id in run_ids:
            self._plan_run(run_id, worktrees)
        self._plan_orphans(worktrees)
        self._plan_pool()
        self._plan_gate_worktrees(worktrees)
        self._plan_orphan_branches(set(run_ids))
        return self.findings

    # -- runs

    def _plan_run(self, run_id: str, worktrees: dict[Path, GitWorktree]) -> None:
        from spine.workspace.store import RunStore

        ctx = self.ctx
        run_dir = ctx.state.run_dir(run_id)
        for lane_id in _lane_dirs(ctx, run_id):
            self._claimed.add(ctx.lane_worktree(run_id, lane_id))
        try:
            run = RunStore(run_dir).load()
        except Exception as exc:  # an unreadable run.json: report, touch nothing of that run
            self.add(Finding("run", run_id, "skip", f"cannot read its run.json ({exc}); left alone"))
            return
        for lane_id in run.lanes:
            self._claimed.add(ctx.lane_worktree(run_id, lane_id))
        if run_is_driven(run_dir):
            self.add(Finding("run", run_id, "skip", "a spine process is driving it", run_id=run_id))
            return
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
            return
        why = (
            "its run finished"
            if finished
            else ("its driver is dead" if dead else "the run is past retention")
        )
        target_sha = _ref_sha(ctx, run.target_ref) or ctx.refs.target_sha
        for lane_id, lane in run.lanes.items():
            expected = ctx.lane_worktree(run_id, lane_id)
            if dead and lane.pgid and lane.worktree:
                self._plan_orphan_processes(run_id, lane.pgid, Path(lane.worktree))
            if lane.worktree is not None and Path(lane.worktree) != expected:
                continue  # an in-place lane ran in the user's own checkout: nothing of spine's to remove
            self._plan_lane_worktree(run_id, lane_id, lane.base_sha, expected, worktrees.get(expected), why)
            branch = f"spine/{run_id}/{lane_id}"
            if lane.branch == branch or (lane.branch is None and _ref_sha(ctx, f"refs/heads/{branch}")):
                self._plan_branch(
                    branch, target_sha, run.target_ref, promoted=self._promoted(run_id, lane_id)
                )
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
                from spine.drive.retry import ATTEMPTS_PREFIX

                primary = ctx.repo.primary_checkout
                refs = git("for-each-ref", "--format=%(refname)", f"{ATTEMPTS_PREFIX}/{run_id}/", cwd=primary)
                for ref in refs.stdout.split():
                    git("update-ref", "-d", ref, cwd=primary, check=False)
                return f"deleted {run_dir}"

            self.add(
                Finding(
                    "run", run_id, "delete", f"older than the retention ({days:g} days)", delete_run, run_id
                )
            )

    def _plan_orphan_processes(self, run_id: str, pgid: int, worktree: Path) -> None:
        """A dead driver's command may still run: its group is killed before its worktree goes."""
        pids = orphan_group_members(pgid, worktree)
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
            import json

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
        gitdir = worktree_git_dir(path)
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
        parent = (registered.head if registered and registered.head else None) or base_sha
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
        tip = _ref_sha(ctx, f"refs/heads/{branch}")
        if tip is None:
            return
        ref_lock = ctx.repo.git_common_dir / "refs" / "heads" / f"{branch}.lock"
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
        if _is_ancestor(ctx, tip, target_sha):
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
                    f"it has commits not in {target_ref}; land it with `spine promote`, "
                    "or delete it with --prune-branches",
                )
            )
            return

        def delete() -> str:
            git("update-ref", "-d", f"refs/heads/{branch}", tip, cwd=ctx.repo.primary_checkout)
            return f"deleted branch {branch} (was {tip[:12]})"

        self.add(Finding("branch", branch, "delete", reason, delete))

    # -- leftovers nobody claims

    def _plan_orphans(self, worktrees: dict[Path, GitWorktree]) -> None:
        ctx = self.ctx
        root = ctx.workspace.worktree_root
        gate_root = root / ".gate"
        pool_root = ctx.pool_worktrees  # the pool's own: trimmed by _plan_pool, never orphans
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
                if pool.remove_pooled(ctx, p):
                    return f"removed pooled worktree {p}"
                return f"left pooled worktree {p}: a lane is taking it"

            self.add(Finding("pool-worktree", str(path), "remove", why, remove))

    def _plan_gate_worktrees(self, worktrees: dict[Path, GitWorktree]) -> None:
        from spine.landing.gate import gate_liveness_dir, gate_worktrees_root

        ctx = self.ctx
        root = gate_worktrees_root(ctx)
        paths = {p for p in worktrees if _under(p, root)}
        if root.is_dir():
            paths |= {p for p in root.iterdir() if p.is_dir()}
        for path in sorted(paths):
            alive_dir = gate_liveness_dir(ctx, path.name)
            if run_is_driven(alive_dir):
                continue

            def remove(p: Path = path, d: Path = alive_dir) -> str:
                remove_worktree(ctx, p)
                shutil.rmtree(d, ignore_errors=True)
                return f"removed {p}"

            self.add(Finding("gate-worktree", str(path), "remove", "left by a gate that was killed", remove))

    def _plan_orphan_branches(self, run_ids: set[str]) -> None:
        ctx = self.ctx
        out = git(
            "for-each-ref", "--format=%(refname:short)", "refs/heads/spine/", cwd=ctx.repo.primary_checkout
        ).stdout
        for branch in out.split():
            parts = branch.split("/")
            if len(parts) != 3 or parts[1] in run_ids:
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
        from filelock import FileLock

        self.ctx.state.locks.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.ctx.state.lock_file("worktrees")), timeout=120):
            self.plan()
            return self.apply()

    def apply(self) -> list[Finding]:
        """Carry out the plan, one finding at a time; a failure is recorded and the rest goes on."""
        ctx = self.ctx
        for finding in self.findings:
            if finding.apply is None:
                continue
            if finding.run_id and run_is_driven(ctx.state.run_dir(finding.run_id)):
                finding.error = "a spine process started driving the run meanwhile; left alone"
                continue
            try:
                finding.done = finding.apply() or "done"
            except (GitFailed, OSError) as exc:
                finding.error = str(getattr(exc, "message", exc))
        return self.findings


def orphan_group_members(pgid: int, worktree: Path) -> list[int]:
    """Live processes of group ``pgid`` working inside ``worktree``.

    A recorded group id may have been reused by an unrelated program since; requiring the process's
    working directory to be inside the lane worktree rules that out.
    """
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return []
    members = []
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            if int(fields[2]) != pgid or fields[0] == b"Z":
                continue
            cwd = Path(os.readlink(entry / "cwd"))
        except (OSError, IndexError, ValueError):
            continue
        if _under(cwd, worktree):
            members.append(int(entry.name))
    return members


def _lane_dirs(ctx: ExecutionContext, run_id: str) -> list[str]:
    lanes = ctx.state.run_dir(run_id) / "lanes"
    return [p.name for p in lanes.iterdir()] if lanes.is_dir() else []


def _unlink(path: Path) -> Callable[[], str]:
    def remove() -> str:
        path.unlink(missing_ok=True)
        return f"deleted {path}"

    return remove


def _recoverer(ctx: ExecutionContext, path: Path, parent: str, label: str) -> Callable[[], str]:
    return lambda: _recover_and_remove(ctx, path, parent, label, None)


def recover_and_remove(ctx: ExecutionContext, path: Path, parent: str, label: str, run_id: str | None) -> str:
    """Save uncommitted work in ``path`` to a recovery ref, then remove the worktree (the public name)."""
    return _recover_and_remove(ctx, path, parent, label, run_id)


def _recover_and_remove(
    ctx: ExecutionContext, path: Path, parent: str, label: str, run_id: str | None
) -> str:
    """Save uncommitted work in ``path`` to a recovery ref, then remove the worktree."""
    ref = None
    if path.is_dir():
        ref = snapshot_directory(ctx, path, parent, label, f"spine: uncommitted work recovered from {path}")
    remove_worktree(ctx, path)
    if ref and run_id:
        from spine.workspace.store import RunStore

        RunStore(ctx.state.run_dir(run_id)).event(
            "work-recovered", label.split("/", 1)[-1], ref=ref, path=str(path)
        )
    if ref:
        return f"removed {path}; uncommitted work saved to {ref}"
    return f"removed {path}"


def close_dead_run(ctx: ExecutionContext, run_id: str) -> str:
    """Record the unfinished lanes of a run whose driver died as canceled, with a result file each."""
    from spine.base.files import atomic_write_text
    from spine.base.ids import now_iso
    from spine.model.result import LaneResult, LaneStatus
    from spine.workspace.store import RunStore

    store = RunStore(ctx.state.run_dir(run_id))
    run = store.load()
    closed = []
    for lane_id, lane in run.lanes.items():
        if lane.complete:
            continue
        step = lane.current_step or lane.next_step or "?"
        branch_sha = _ref_sha(ctx, f"refs/heads/{lane.branch}") if lane.branch else None
        has_commits = branch_sha is not None and branch_sha != lane.base_sha
        recovered = _recovery_refs(ctx, f"{run_id}/{lane_id}")
        if recovered:
            next_action = f"its uncommitted work is in {recovered[-1]} (git log -p {recovered[-1]})"
        elif has_commits:
            next_action = f"review what it committed on {lane.branch}, or run the lane again"
        else:
            next_action = "run the lane again with `spine run`"
        result = LaneResult(
            run_id=run_id,
            lane_id=lane_id,
            objective=lane.spec.objective,
            status=LaneStatus.CANCELED,
            sandbox_backend=lane.backend,
            branch=lane.branch if branch_sha else None,
            worktree_path=None,
            log_path=str(ctx.state.log_file(run_id, lane_id)),
            command=lane.spec.argv(),
            base_ref=lane.base_ref,
            base_sha=lane.base_sha,
            head_sha=branch_sha,
            error=f"the driver stopped during step {step} and never came back",
            summary=f"its driver died during step {step}; spine gc removed the lane's worktree",
            next_action=next_action,
            started_at=lane.step_started_at,
            completed_at=now_iso(),
        )
        atomic_write_text(ctx.state.result_file(run_id, lane_id), result.to_json())
        lane.status = LaneStatus.CANCELED
        lane.error = result.error
        lane.current_step = None
        lane.pgid = None
        if "finalize" not in lane.steps_done:
            lane.steps_done.append("finalize")
        lane.facts["result"] = {
            "path": str(ctx.state.result_file(run_id, lane_id)),
            "status": result.status.value,
            "nextAction": next_action,
        }
        store.event("reaped", lane_id, step=step)
        closed.append(lane_id)
    run.driver = None
    run.halted = True
    store.save(run)
    return f"recorded {', '.join(closed) or 'no lanes'} as canceled"


def _recovery_refs(ctx: ExecutionContext, label: str) -> list[str]:
    out = git(
        "for-each-ref",
        "--sort=refname",
        "--format=%(refname)",
        f"{RECOVERED_PREFIX}/{label}-*",
        cwd=ctx.repo.primary_checkout,
    ).stdout
    return out.split()
