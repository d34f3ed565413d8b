"""The lane steps: create_worktree -> setup -> execute -> commit -> validate -> finalize.

Each step is a plain function of a ``LaneRuntime``. A step records what it found in ``lane.facts``;
the drive loop persists the lane after every step, so a step that finished is never repeated and a
step caught mid-way by a crash is redone safely (each step is written to be re-runnable).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from spine.backends.base import Sandbox, SandboxSpec
from spine.base.errors import EnvironmentProblem
from spine.base.files import atomic_write_text
from spine.base.git import GitFailed, clean_env, git, git_out
from spine.base.ids import format_duration, now_iso
from spine.base.process import run_process
from spine.base.redact import Redactor, StreamRedactor
from spine.lane.stall import StallWatch
from spine.model.result import Artifact, CheckStatus, Commit, DiffStat, LaneResult, LaneStatus, Validation
from spine.model.state import LaneState, RunState
from spine.workspace.context import ExecutionContext
from spine.workspace.store import RunStore

Echo = Literal["none", "raw", "prefixed", "stderr"]

FALLBACK_NAME = "spine"
FALLBACK_EMAIL = "spine@localhost"


class LaneOutput:
    """Tees a lane's output to its log file and, optionally, the terminal, with secrets masked."""

    def __init__(self, log_path: Path, lane_id: str, echo: Echo, redactor: Redactor | None = None) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed by close()
        self._lane = lane_id
        self._echo = echo
        self._lock = threading.Lock()
        self._pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self._redactor = redactor or Redactor()
        self._streams = {name: StreamRedactor(self._redactor) for name in ("stdout", "stderr")}

    def __call__(self, stream: str, chunk: bytes) -> None:
        with self._lock:
            self._write(stream, self._streams[stream].feed(chunk))

    def _write(self, stream: str, chunk: bytes) -> None:
        if chunk:
            self._log.write(chunk)
            self._log.flush()
            if self._echo == "none":
                return
            if self._echo == "prefixed":
                data = self._pending[stream] + chunk
                *lines, self._pending[stream] = data.split(b"\n")
                prefix = f"[{self._lane}] ".encode()
                sys.stderr.buffer.write(b"".join(prefix + line + b"\n" for line in lines))
                sys.stderr.buffer.flush()
                return
            target = sys.stderr if (self._echo == "stderr" or stream == "stderr") else sys.stdout
            target.buffer.write(chunk)
            target.buffer.flush()

    def note(self, text: str) -> None:
        """Write a spine line (a section header) into the log only."""
        with self._lock:
            self._log.write(f"\n==> spine: {self._redactor.redact_text(text)}\n".encode())
            self._log.flush()

    def close(self) -> None:
        with self._lock:
            for name, stream in self._streams.items():
                self._write(name, stream.flush())
            if self._echo == "prefixed":
                prefix = f"[{self._lane}] ".encode()
                for rest in self._pending.values():
                    if rest:
                        sys.stderr.buffer.write(prefix + rest + b"\n")
            self._log.close()


@dataclass
class LaneRuntime:
    """Everything a step needs; built by the drive loop for one lane."""

    ctx: ExecutionContext
    run: RunState
    lane: LaneState
    store: RunStore
    backend: Sandbox
    echo: Echo = "raw"
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def lane_id(self) -> str:
        return self.lane.spec.id

    @property
    def log_path(self) -> Path:
        return self.ctx.state.log_file(self.run.run_id, self.lane_id)

    @property
    def worktree(self) -> Path:
        if self.lane.worktree is None:
            raise EnvironmentProblem(f"lane {self.lane_id} has no worktree yet")
        return Path(self.lane.worktree)

    def output(self) -> LaneOutput:
        return LaneOutput(self.log_path, self.lane_id, self.echo, self.redactor())

    def redactor(self) -> Redactor:
        """Masks the values of every secret-looking variable the lane's commands could see."""
        return Redactor.from_env({**clean_env(), **self.ctx.config.env, **self.lane.spec.env})

    def remember_pgid(self, pgid: int) -> None:
        """Record the running command's process group so ``spine cancel`` and a resume can stop it."""
        self.lane.pgid = pgid
        self.store.save(self.run)

    def lane_env(self) -> dict[str, str]:
        """The environment the command and checks see: who they are, where they run."""
        env = clean_env()
        env.update(self.ctx.config.env)
        binding = self.lane.spec.binding
        if binding is not None:
            env.update(binding.env)
        env.update(self.lane.spec.env)
        env.update(
            {
                "SPINE_RUN_ID": self.run.run_id,
                "SPINE_LANE_ID": self.lane_id,
                "SPINE_WORKTREE": str(self.worktree),
                "SPINE_BRANCH": self.lane.branch or "",
                "SPINE_BASE_REF": self.lane.base_ref,
                "SPINE_BASE_SHA": self.lane.base_sha,
                "SPINE_OBJECTIVE": self.lane.spec.objective,
                "SPINE_LOG": str(self.log_path),
                "SPINE_BACKEND": self.backend.name,
            }
        )
        return env


# --- create_worktree ---------------------------------------------------------------------------


def create_worktree(rt: LaneRuntime) -> None:
    """Create (or, after a crash, reconcile) the lane's worktree and branch from the base SHA."""
    lane = rt.lane
    if rt.backend.in_place:
        here = rt.ctx.workspace.current_worktree
        branch = git("symbolic-ref", "-q", "--short", "HEAD", cwd=here, check=False).stdout.strip()
        lane.worktree, lane.branch = str(here), branch or None
        return
    path = rt.ctx.lane_worktree(rt.run.run_id, rt.lane_id)
    branch = f"spine/{rt.run.run_id}/{rt.lane_id}"
    started = time.perf_counter()
    _resolve_stacked_base(rt)
    if rt.ctx.config.pool.enabled and not path.exists():
        from spine.maintenance.pool import take

        taken = take(rt.ctx, path, branch, lane.base_sha)
        if taken is not None:
            lane.worktree, lane.branch = str(path), branch
            lane.facts["create_worktree"] = {
                "source": "pool",
                "cleaned": taken.cleaned,
                "seconds": round(time.perf_counter() - started, 4),
            }
            return
    from filelock import FileLock

    rt.ctx.state.locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(rt.ctx.state.lock_file("worktrees")), timeout=120):
        # The common case first: a new branch in a path nothing claims, one git process. Anything
        # an interrupted attempt left behind makes that fail, and is then reconciled.
        if path.exists() or not _add_new_worktree(rt, path, branch):
            _reconcile_worktree(rt, path, branch)
    lane.worktree, lane.branch = str(path), branch
    lane.facts["create_worktree"] = {"source": "fresh", "seconds": round(time.perf_counter() - started, 4)}


def _resolve_stacked_base(rt: LaneRuntime) -> None:
    """For ``base: lane:ID``, start from the head of lane ID's branch, which has succeeded by now."""
    dep_id = rt.lane.spec.stacked_on
    if dep_id is None:
        return
    dep = rt.run.lanes.get(dep_id)
    head = ((dep.facts.get("commit") or {}).get("headSha") if dep else None) or (
        dep.base_sha if dep else None
    )
    if dep is None or dep.status != LaneStatus.SUCCEEDED or head is None:
        state = dep.status.value if dep else "missing"
        raise EnvironmentProblem(
            f"lane {rt.lane_id} is stacked on lane {dep_id}, which has not succeeded ({state})"
        )
    rt.lane.base_sha = head
    rt.lane.base_ref = dep.branch or dep.base_ref


def _add_new_worktree(rt: LaneRuntime, path: Path, branch: str) -> bool:
    """``git worktree add -b``; False (and nothing to undo that reconciling cannot) when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = ("worktree", "add", "--quiet", "-b", branch, str(path), rt.lane.base_sha)
    return git(*args, cwd=rt.ctx.repo.primary_checkout, check=False).returncode == 0


def _reconcile_worktree(rt: LaneRuntime, path: Path, branch: str) -> None:
    """Make ``path`` a complete worktree of ``branch``, whatever an interrupted attempt left.

    This step only runs again when it was never recorded as done, so the lane's command has not run
    in ``path`` yet. A worktree ``git worktree add`` completed (registered, on the lane branch, not
    locked) is kept. Anything else - a worktree still locked "initializing" with a half checkout, a
    directory git does not know - is cleared through the reaper (which saves unexpected files to a
    recovery ref first) and added again. The branch is reused as it is, so it is never duplicated
    and commits already on it are kept.
    """
    from spine.maintenance.reaper import clear_half_created, list_git_worktrees

    primary = rt.ctx.repo.primary_checkout
    real = os.path.realpath(path)
    entry = next((wt for wt in list_git_worktrees(rt.ctx) if os.path.realpath(wt.path) == real), None)
    if entry is not None and entry.branch == branch and not entry.locked and (path / ".git").is_file():
        return
    if entry is not None and entry.locked:
        git("worktree", "unlock", str(path), cwd=primary, check=False)
    if entry is not None or path.exists():
        clear_half_created(rt.ctx, path, rt.lane.base_sha, f"{rt.run.run_id}/{rt.lane_id}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if _branch_exists(rt, branch):
        git("worktree", "add", "--quiet", str(path), branch, cwd=primary)
    else:
        git("worktree", "add", "--quiet", "-b", branch, str(path), rt.lane.base_sha, cwd=primary)


def _branch_exists(rt: LaneRuntime, branch: str) -> bool:
    probe = git(
        "rev-parse", "--verify", "-q", f"refs/heads/{branch}", cwd=rt.ctx.repo.primary_checkout, check=False
    )
    return probe.returncode == 0


# --- setup ---------------------------------------------------------------------------------------


def setup(rt: LaneRuntime) -> None:
    """Copy .worktreeinclude files, update submodules, run setup commands."""
    if rt.backend.in_place:
        rt.lane.facts["setup"] = {"copied": [], "commands": []}
        return
    cfg = rt.ctx.config.setup
    copied = copy_included_files(rt.ctx.repo.primary_checkout, rt.worktree, cfg.copy_files)
    out = rt.output()
    commands: list[dict[str, Any]] = []
    failed: dict[str, Any] | None = None
    try:
        if cfg.submodules == "update":
            git("submodule", "update", "--init", "--recursive", cwd=rt.worktree)
        env = rt.lane_env()
        for command in cfg.commands:
            out.note(f"setup: {command}")
            outcome = run_process(
                ["/bin/sh", "-c", command],
                cwd=rt.worktree,
                env=env,
                timeout=rt.lane.spec.timeout,
                on_output=out,
                cancel=rt.cancel,
                on_start=rt.remember_pgid,
            )
            rt.lane.pgid = None
            commands.append({"command": command, "exitCode": outcome.exit_code})
            if not outcome.ok:
                failed = {
                    "command": command,
                    "exitCode": outcome.exit_code,
                    "timedOut": outcome.timed_out,
                    "tail": outcome.tail[-5:],
                }
                break
    finally:
        out.close()
    rt.lane.facts["setup"] = {"copied": copied, "commands": commands, "failed": failed}


def copy_included_files(primary: Path, worktree: Path, extra_patterns: list[str]) -> list[str]:
    """Copy untracked files of the primary checkout matching .worktreeinclude or ``extra_patterns``.

    Patterns use gitignore syntax and are matched by git itself.
    """
    include = primary / ".worktreeinclude"
    sources = [str(include)] if include.is_file() else []
    tmp = None
    if extra_patterns:
        handle = tempfile.NamedTemporaryFile("w", suffix=".spine-include", delete=False)  # noqa: SIM115
        with handle:
            handle.write("\n".join(extra_patterns) + "\n")
        tmp = handle.name
        sources.append(tmp)
    if not sources:
        return []
    try:
        args = ["ls-files", "-z", "--others", "--ignored"]
        for source in sources:
            args.append(f"--exclude-from={source}")
        listing = git(*args, cwd=primary).stdout
    finally:
        if tmp:
            os.unlink(tmp)
    copied = []
    for rel in filter(None, listing.split("\0")):
        src, dst = primary / rel, worktree / rel
        if dst.exists() or not src.is_file():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        copied.append(rel)
    return copied


# --- execute -------------------------------------------------------------------------------------


def execute(rt: LaneRuntime) -> None:
    """Run the lane's command through its backend, with the timebox, stdin closed, output logged."""
    setup_facts = rt.lane.facts.get("setup") or {}
    if setup_facts.get("failed"):
        rt.lane.facts["execute"] = {"skipped": "setup failed"}
        return
    spec = rt.lane.spec
    settings = rt.ctx.config.backends.get(rt.backend.name, {})
    out = rt.output()
    argv = spec.argv()
    out.note(f"command: {' '.join(argv)}")
    started = now_iso()
    handle = rt.backend.prepare(sandbox_spec(rt, settings))
    for notice in handle.notices:
        out.note(notice)

    # The stall rule watches output and the worktree, and stops the command through a cancel event.
    watch = StallWatch(rt.worktree, spec.stall_timeout, rt.cancel) if spec.stall_timeout else None
    try:
        with watch or contextlib.nullcontext():
            outcome = rt.backend.exec(
                handle,
                argv,
                env=rt.lane_env(),
                timeout=spec.timeout,
                idle_timeout=spec.idle_timeout,
                on_output=watch.wrap(out) if watch else out,
                cancel=watch.stop if watch else rt.cancel,
                on_start=rt.remember_pgid,
            )
        rt.backend.collect(handle)
    finally:
        rt.backend.teardown(handle)
        out.close()
    rt.lane.pgid = None
    stalled = watch is not None and watch.stalled and not rt.cancel.is_set() and outcome.timed_out is None
    rt.lane.facts["execute"] = {
        "exitCode": outcome.exit_code,
        "timedOut": "stall" if stalled else outcome.timed_out,
        "canceled": outcome.canceled and not stalled,
        "durationSeconds": round(outcome.duration, 3),
        "tail": [rt.redactor().redact_text(line) for line in outcome.tail[-20:]],
        "startedAt": started,
        "providerRunId": handle.provider_run_id,
    }


def sandbox_spec(rt: LaneRuntime, settings: dict[str, Any]) -> SandboxSpec:
    """What the lane asks of its backend: network, the variables it declared, where git lives."""
    cfg, spec = rt.ctx.config, rt.lane.spec
    declared = {*cfg.env, *spec.env, *cfg.env_passthrough, *spec.env_passthrough}
    return SandboxSpec(
        worktree=rt.worktree,
        run_id=rt.run.run_id,
        lane_id=rt.lane_id,
        network=cfg.network if spec.network is None else spec.network,
        env_passthrough=tuple(sorted(declared)),
        settings=settings,
        git_dir=rt.ctx.repo.git_common_dir,
        state_dir=rt.ctx.state.root,
        timeout=spec.timeout,
    )


# --- commit --------------------------------------------------------------------------------------


def commit(rt: LaneRuntime) -> None:
    """Commit everything the command left (respecting .gitignore); list every commit of the lane."""
    lane = rt.lane
    if rt.backend.in_place and not lane.spec.commit_in_place:
        lane.facts["commit"] = {
            "commits": [],
            "headSha": None,
            "diffStat": None,
            "skipped": "in-place backend",
        }
        return
    wt = rt.worktree
    # `add -A` then a cached diff (index against HEAD, no work-tree scan) instead of a `status`
    # first: on a fresh worktree every scan re-hashes racily clean files, so each one saved counts.
    git("add", "-A", cwd=wt)
    staged = git("diff", "--cached", "--quiet", cwd=wt, check=False)
    if staged.returncode not in (0, 1):
        raise GitFailed(["diff", "--cached", "--quiet"], staged.returncode, staged.stderr)
    if staged.returncode == 1:
        _git_commit(rt, wt, _commit_message(rt))
    commits = []
    for sha, subject, by_spine in _log_entries(rt, wt):
        made_by: Literal["command", "spine"] = "spine" if by_spine else "command"
        commits.append(Commit(sha=sha, subject=subject, made_by=made_by).model_dump(by_alias=True))
    head = commits[-1]["sha"] if commits else git_out("rev-parse", "HEAD", cwd=wt)
    stat = _diff_stat(wt, lane.base_sha, head)
    lane.facts["commit"] = {"commits": commits, "headSha": head, "diffStat": stat.model_dump(by_alias=True)}


def _log_entries(rt: LaneRuntime, wt: Path) -> list[tuple[str, str, bool]]:
    """(sha, subject, made by spine) of every commit on the lane, oldest first, HEAD last.

    A commit carrying this run's and this lane's trailers is spine's own, even one made before a
    crash; everything else the command made.
    """
    fmt = (
        "--format=%H%x00%s%x00%(trailers:key=Spine-Run,valueonly,separator=%x2C)"
        "%x00%(trailers:key=Spine-Lane,valueonly,separator=%x2C)"
    )
    fields = git("log", "--reverse", "-z", fmt, f"{rt.lane.base_sha}..HEAD", cwd=wt).stdout.split("\0")
    return [
        (
            fields[i],
            fields[i + 1],
            fields[i + 2].strip() == rt.run.run_id and fields[i + 3].strip() == rt.lane_id,
        )
        for i in range(0, len(fields) - 3, 4)
    ]


def _commit_message(rt: LaneRuntime) -> str:
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
    return f"{body}\n\n{trailers}\n"


def _git_commit(rt: LaneRuntime, wt: Path, message: str) -> None:
    cfg = rt.ctx.config.commit
    env: dict[str, str] = {}
    if cfg.author_name:
        env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = cfg.author_name
    if cfg.author_email:
        env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = cfg.author_email
    args = ["commit", "--quiet", "--no-verify", "--file=-"]
    proc = git(*args, cwd=wt, env=env, input=message, check=False)
    if proc.returncode != 0 and ("tell me who you are" in proc.stderr or "auto-detect" in proc.stderr):
        # No git identity is configured: commit as spine rather than fail the lane.
        fallback = {
            "GIT_AUTHOR_NAME": cfg.author_name or FALLBACK_NAME,
            "GIT_AUTHOR_EMAIL": cfg.author_email or FALLBACK_EMAIL,
            "GIT_COMMITTER_NAME": cfg.author_name or FALLBACK_NAME,
            "GIT_COMMITTER_EMAIL": cfg.author_email or FALLBACK_EMAIL,
        }
        proc = git(*args, cwd=wt, env=fallback, input=message, check=False)
    if proc.returncode != 0:
        raise GitFailed(args, proc.returncode, proc.stderr or proc.stdout)


def _diff_stat(wt: Path, base: str, head: str) -> DiffStat:
    if base == head:
        return DiffStat()
    out = git("diff", "--shortstat", base, head, cwd=wt).stdout
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


def validate(rt: LaneRuntime) -> None:
    """Run the lane's checks in the worktree; skip them when the command did not succeed."""
    checks = [*rt.ctx.config.checks, *rt.lane.spec.checks]
    ex = rt.lane.facts.get("execute") or {}
    command_ok = ex.get("exitCode") == 0 and not ex.get("timedOut") and not ex.get("canceled")
    results: list[dict[str, Any]] = []
    out = rt.output()
    try:
        env = rt.lane_env()
        for check in checks:
            if not command_ok or rt.cancel.is_set():
                reason = "the command did not succeed" if not command_ok else "the lane was canceled"
                results.append(
                    Validation(
                        name=check.name,
                        status=CheckStatus.SKIPPED,
                        command=check.command,
                        summary=f"not run: {reason}",
                    ).model_dump(by_alias=True)
                )
                continue
            out.note(f"check {check.name}: {check.command}")
            outcome = run_process(
                ["/bin/sh", "-c", check.command],
                cwd=rt.worktree,
                env=env,
                timeout=check.timeout,
                on_output=out,
                cancel=rt.cancel,
                on_start=rt.remember_pgid,
            )
            rt.lane.pgid = None
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
            results.append(
                Validation(
                    name=check.name,
                    status=status,
                    command=check.command,
                    summary=summary,
                    exit_code=outcome.exit_code,
                    duration_seconds=round(outcome.duration, 3),
                ).model_dump(by_alias=True)
            )
    finally:
        out.close()
    rt.lane.facts["validate"] = results
    if rt.lane.spec.op is not None:
        from spine.lane.grading import (
            run_acceptance,  # operator machinery: loaded by the first lane with a mode
        )

        run_acceptance(rt)


# --- finalize ------------------------------------------------------------------------------------


def finalize(rt: LaneRuntime) -> None:
    """Collect artifacts, decide the status, write result.json; with the pool on, return the worktree."""
    path = rt.ctx.state.result_file(rt.run.run_id, rt.lane_id)
    worktree_gone = rt.lane.worktree is not None and not Path(rt.lane.worktree).exists()
    result = _result_before_pool(rt, path) if worktree_gone else None
    returned: bool | None = None
    if result is None:
        result = build_result(rt)
        if result.status in (LaneStatus.FAILED, LaneStatus.CANCELED):
            from spine.lane.debug import write_debug_packet  # its models are only needed on failure

            try:
                result = write_debug_packet(rt, result)
            except Exception as exc:  # the result file matters more than its debug packet
                rt.store.event("debug-packet-failed", rt.lane_id, error=f"{type(exc).__name__}: {exc}")
        # Only succeeded lanes go back to the pool: everything they made is committed, and a failed
        # lane's worktree is where a person looks first. The result says so before the worktree
        # moves, so that a crash in between leaves a result that is true once finalize is redone.
        pooling = (
            rt.ctx.config.pool.enabled
            and result.status == LaneStatus.SUCCEEDED
            and not rt.backend.in_place
            and not rt.lane.spec.keep_worktree
            and rt.lane.worktree is not None
            and not worktree_gone
        )
        if pooling:
            result = result.model_copy(update={"worktree_kept": False})
        _write_result(rt, path, result)
        if pooling:
            from spine.maintenance.pool import give_back

            returned = give_back(rt.ctx, rt.worktree)
            if not returned:  # a full pool, a locked worktree: it stays where it ran
                result = result.model_copy(update={"worktree_kept": True})
                _write_result(rt, path, result)
    rt.lane.status = result.status
    rt.lane.facts["result"] = {
        "path": str(path),
        "status": result.status.value,
        "nextAction": result.next_action,
    }
    if returned is not None:
        rt.lane.facts["result"]["returnedToPool"] = returned


def _write_result(rt: LaneRuntime, path: Path, result: LaneResult) -> None:
    atomic_write_text(path, rt.redactor().redact_text(result.to_json()))


def _result_before_pool(rt: LaneRuntime, path: Path) -> LaneResult | None:
    """The result written just before the worktree went back to the pool, when finalize is redone.

    Rebuilding it would find no worktree (and so no artifacts); the one written then is complete.
    """
    if not path.is_file() or rt.lane.error:
        return None
    stored = LaneResult.model_validate_json(path.read_text(encoding="utf-8"))
    head = (rt.lane.facts.get("commit") or {}).get("headSha")
    return stored if stored.status == LaneStatus.SUCCEEDED and stored.head_sha == head else None


def collect_artifacts(rt: LaneRuntime) -> list[Artifact]:
    patterns = [*rt.ctx.config.artifacts, *rt.lane.spec.artifacts]
    if not patterns or rt.lane.worktree is None:
        return []
    wt = rt.worktree
    store = rt.ctx.state.lane_dir(rt.run.run_id, rt.lane_id) / "artifacts"
    found: dict[str, Path] = {}
    for pattern in patterns:
        for match in sorted(wt.glob(pattern)):
            if match.is_file() and ".git" not in match.relative_to(wt).parts:
                found.setdefault(match.relative_to(wt).as_posix(), match)
    artifacts = []
    for rel, src in found.items():
        dst = store / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        digest = hashlib.sha256()
        with open(dst, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        artifacts.append(
            Artifact(path=rel, stored_at=str(dst), size=dst.stat().st_size, sha256=digest.hexdigest())
        )
    return artifacts


def build_result(rt: LaneRuntime) -> LaneResult:
    """Derive status, summary and next action from the facts the steps recorded."""
    lane, facts = rt.lane, rt.lane.facts
    ex: dict[str, Any] = facts.get("execute") or {}
    cm: dict[str, Any] = facts.get("commit") or {}
    checks = [Validation.model_validate(v) for v in facts.get("validate") or []]
    setup_failed = (facts.get("setup") or {}).get("failed")
    artifacts = collect_artifacts(rt)
    stat = DiffStat.model_validate(cm["diffStat"]) if cm.get("diffStat") else None
    commits = [Commit.model_validate(c) for c in cm.get("commits", [])]
    log = str(rt.log_path)
    failed_checks = [c for c in checks if c.status == CheckStatus.FAILED]
    passed_checks = [c for c in checks if c.status == CheckStatus.PASSED]
    duration = ex.get("durationSeconds")
    took = f" after {format_duration(duration)}" if duration is not None else ""
    changes = _describe_changes(stat, commits, lane.branch, rt.backend.in_place)
    where = f"cd {lane.worktree}" if lane.worktree else "the lane worktree"

    blocked: dict[str, Any] = facts.get("blocked") or {}
    not_started: dict[str, Any] = facts.get("notStarted") or {}
    if blocked:
        status = LaneStatus.BLOCKED
        summary, next_action = _blocked_text(rt.run.run_id, blocked)
    elif not_started:
        status = LaneStatus.CANCELED
        if not_started.get("reason") == "fail-fast":
            failed = not_started.get("after")
            summary = (
                f"not started: lane {failed} failed and the run stops after the first failure (--fail-fast)"
            )
            next_action = (
                f"fix lane {failed} (see `spine show {rt.run.run_id}/{failed}`), then retry both with "
                f"`spine resume {rt.run.run_id} --retry`"
            )
        else:
            summary = "not started: canceled (spine cancel) before it began"
            next_action = f"if it is still wanted, run it with `spine resume {rt.run.run_id} --retry --lane {rt.lane_id}`"
    elif lane.error:
        status = LaneStatus.FAILED
        summary = f"spine could not finish the lane: {lane.error}"
        next_action = f"fix the cause above, then continue with `spine resume {rt.run.run_id}`"
    elif (
        ex.get("canceled")
        or (rt.cancel.is_set() and not ex)
        or any(c.status == CheckStatus.SKIPPED and "canceled" in c.summary for c in checks)
    ):
        status = LaneStatus.CANCELED
        summary = f"canceled{took}; {changes}"
        again = f"`spine resume {rt.run.run_id} --retry --lane {rt.lane_id}`"
        next_action = (
            f"review what it left on {lane.branch}, or run it again with {again}"
            if lane.branch
            else f"run it again with {again}"
        )
    elif setup_failed:
        status = LaneStatus.FAILED
        summary = f"setup command {setup_failed['command']!r} failed (exit {setup_failed['exitCode']}); the command did not run"
        next_action = f"fix the setup command in .spine.yaml; its output is in {log}"
    elif ex.get("timedOut") == "wall":
        status = LaneStatus.FAILED
        summary = f"command timed out{took} (wall-clock limit) and was stopped; {changes}"
        next_action = f"inspect the log at {log}; raise --timeout if the work needs longer"
    elif ex.get("timedOut") == "stall":
        status = LaneStatus.FAILED
        summary = f"command showed no progress (no output, no file changes) for {format_duration(lane.spec.stall_timeout or 0)} and was stopped{took}; {changes}"
        next_action = f"inspect the log at {log}; find what it waits on, or raise --stall-timeout"
    elif ex.get("timedOut") == "idle":
        status = LaneStatus.FAILED
        summary = f"command printed nothing for {format_duration(lane.spec.idle_timeout or 0)} and was stopped{took}; {changes}"
        next_action = f"inspect the log at {log}; raise --idle-timeout if long silences are expected"
    elif ex.get("exitCode") not in (0, None):
        status = LaneStatus.FAILED
        last = _last_line(ex.get("tail") or [])
        summary = f"command exited with code {ex['exitCode']}{took}; {changes}"
        next_action = f"inspect the log at {log}" + (f" (last line: {last!r})" if last else "")
    elif failed_checks:
        status = LaneStatus.FAILED
        first = failed_checks[0]
        names = ", ".join(c.name for c in failed_checks)
        summary = f"command succeeded{took} but check{'s' if len(failed_checks) > 1 else ''} {names} failed; {changes}"
        next_action = f"reproduce the failing check: {where} && {first.command}"
    else:
        status = LaneStatus.SUCCEEDED
        verdict = (
            f"checks passed: {', '.join(c.name for c in passed_checks)}"
            if passed_checks
            else "no checks configured"
        )
        summary = f"command succeeded{took}; {changes}; {verdict}"
        if commits and lane.branch:
            next_action = (
                f"review branch {lane.branch} (git log -p {lane.base_sha[:12]}..{lane.branch}), "
                f"then land it with `spine promote {rt.run.run_id}/{rt.lane_id}`"
            )
        elif rt.backend.in_place:
            next_action = "review the changes in your checkout (git status)"
        else:
            next_action = "nothing to review: the command changed nothing; clean up the lane with `spine gc`"

    result = LaneResult(
        run_id=rt.run.run_id,
        lane_id=rt.lane_id,
        objective=lane.spec.objective,
        status=status,
        sandbox_backend=rt.backend.name,
        branch=lane.branch,
        worktree_path=lane.worktree,
        log_path=log,
        provider_run_id=ex.get("providerRunId"),
        command=lane.spec.argv(),
        base_ref=lane.base_ref,
        base_sha=lane.base_sha,
        head_sha=cm.get("headSha"),
        commits=commits,
        artifacts=artifacts,
        validation=checks,
        exit_code=ex.get("exitCode"),
        timed_out=bool(ex.get("timedOut")),
        timeout_kind=ex.get("timedOut"),
        duration_seconds=duration,
        diff_stat=stat,
        output_tail=(ex.get("tail") or [])[-10:],
        error=lane.error,
        summary=summary,
        next_action=next_action,
        next_pointer=" ".join(next_action.split()),
        started_at=ex.get("startedAt") or lane.step_started_at,
        completed_at=now_iso(),
    )
    if lane.spec.op is None:
        return result
    from spine.lane.grading import ground_result

    return ground_result(rt, result)


def _blocked_text(run_id: str, blocked: dict[str, Any]) -> tuple[str, str]:
    """Summary and next action of a lane that could not start because of its needs."""
    needs: dict[str, str] = blocked.get("needs") or {}
    root: dict[str, str] = blocked.get("root") or needs
    said = {"failed": "failed", "canceled": "was canceled", "blocked": "was blocked"}
    parts = [f"{need} {said.get(status, status)}" for need, status in needs.items()]
    summary = f"not started: it needs {', '.join(needs)}, and {' and '.join(parts)}"
    if set(root) != set(needs):
        summary += f" (because {', '.join(f'{k} {said.get(v, v)}' for k, v in root.items())})"
    first = next(iter(root), "")
    fixes = " and ".join(f"lane {name} ({status})" for name, status in root.items())
    next_action = f"fix {fixes} first (see `spine show {run_id}/{first}`), then retry with `spine resume {run_id} --retry`"
    return summary, next_action


def _describe_changes(
    stat: DiffStat | None, commits: list[Commit], branch: str | None, in_place: bool
) -> str:
    if stat is None:
        return "changes not committed (in-place backend)" if in_place else "nothing committed"
    if not commits:
        return "no changes"
    files = f"{stat.files_changed} file{'s' if stat.files_changed != 1 else ''} changed (+{stat.insertions} -{stat.deletions})"
    own = sum(1 for c in commits if c.made_by == "command")
    count = f"{len(commits)} commit{'s' if len(commits) != 1 else ''}"
    if own:
        count += f", {own} made by the command"
    return f"{files} in {count} on {branch}"


def _last_line(tail: list[str]) -> str:
    return next((line.strip()[:160] for line in reversed(tail) if line.strip()), "")


STEP_FUNCTIONS = {
    "create_worktree": create_worktree,
    "setup": setup,
    "execute": execute,
    "commit": commit,
    "validate": validate,
    "finalize": finalize,
}
