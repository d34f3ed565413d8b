"""The pre-merge gate: test the would-be merge of a revision into a target, not the revision itself.

``git merge-tree --write-tree`` computes the merge without touching any checkout. A conflict is a
failure that lists the conflicting paths. A clean merge is checked out in a throwaway detached
worktree (removed afterwards, also on failure, Ctrl-C or SIGTERM) where the gate checks run. The
verdict is cached under ``<state>/gate`` by merged tree id and a hash of the check definitions, so
the same tree with the same checks is answered at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from spine.base.errors import EnvironmentProblem, UsageError
from spine.base.files import atomic_write_json
from spine.base.git import clean_env, git
from spine.base.ids import now_iso
from spine.base.process import OutputSink, ProcessOutcome, run_process
from spine.model.config import CheckSpec
from spine.workspace.context import ExecutionContext

GATE_SCHEMA_VERSION = 1

# The throwaway merge commit is made with a fixed identity and date, so the same two parents always
# give the same commit id and nothing depends on the user's git identity being configured.
_MERGE_IDENTITY = {
    "GIT_AUTHOR_NAME": "spine gate",
    "GIT_AUTHOR_EMAIL": "spine@localhost",
    "GIT_AUTHOR_DATE": "@0 +0000",
    "GIT_COMMITTER_NAME": "spine gate",
    "GIT_COMMITTER_EMAIL": "spine@localhost",
    "GIT_COMMITTER_DATE": "@0 +0000",
}


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class GateCheckResult(_Camel):
    """One gate check on the merged tree."""

    name: str
    command: str
    status: Literal["passed", "failed"]
    exit_code: int | None = None
    timed_out: bool = False
    duration_seconds: float = 0.0
    summary: str
    output_tail: list[str] = Field(default_factory=list)
    log_path: str | None = None


class GateVerdict(_Camel):
    """What the gate decided, and everything a CI report needs to show why."""

    schema_version: int = GATE_SCHEMA_VERSION
    passed: bool
    reason: Literal["passed", "conflict", "check-failed"]
    rev: str
    rev_sha: str
    into: str
    into_sha: str
    merged_tree: str | None = None
    merge_commit: str | None = None
    conflicts: list[str] = Field(default_factory=list)
    checks: list[GateCheckResult] = Field(default_factory=list)
    checks_hash: str
    cached: bool = False
    decided_at: str
    duration_seconds: float = 0.0

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"


@dataclass(frozen=True)
class MergeResult:
    """The outcome of ``git merge-tree``: a tree id, or the paths that conflict."""

    tree: str | None
    conflicts: list[str]


def resolve_commit(ctx: ExecutionContext, rev: str, *, what: str, cwd: Path | None = None) -> str:
    """Resolve ``rev`` to a commit SHA or raise a UsageError naming ``what`` it was meant to be."""
    if not rev.strip() or rev.startswith("-") or "\0" in rev:
        raise UsageError(f"invalid {what} {rev!r}", "name a branch, tag or commit, e.g. main")
    proc = git(
        "rev-parse",
        "--verify",
        "-q",
        "--end-of-options",
        f"{rev}^{{commit}}",
        cwd=cwd or ctx.workspace.current_worktree,
        check=False,
    )
    if proc.returncode != 0:
        raise UsageError(
            f"unknown {what} {rev!r}: no branch, tag or commit has that name",
            "check `git branch -a` and `git log --oneline`",
        )
    return proc.stdout.strip()


def merge_trees(ctx: ExecutionContext, into_sha: str, rev_sha: str) -> MergeResult:
    """Merge ``rev_sha`` into ``into_sha`` in git's object store only; no checkout is touched."""
    proc = git(
        "merge-tree",
        "--write-tree",
        "--name-only",
        "--no-messages",
        "-z",
        into_sha,
        rev_sha,
        cwd=ctx.repo.primary_checkout,
        check=False,
    )
    if proc.returncode in (0, 1):
        tree, *rest = proc.stdout.split("\0")
        if proc.returncode == 0:
            return MergeResult(tree=tree.strip(), conflicts=[])
        paths = sorted({p for p in rest if p})
        return MergeResult(tree=None, conflicts=paths)
    err = proc.stderr.strip()
    if "unrelated histories" in err:
        raise UsageError(
            f"{rev_sha[:12]} and {into_sha[:12]} have no common history, so there is no merge to test",
            "gate a revision that was branched from the target; in CI, fetch the full history "
            "(actions/checkout with fetch-depth: 0)",
        )
    if "unknown option" in err or "usage:" in err:
        raise EnvironmentProblem(
            "this git cannot compute merges without a checkout (git merge-tree --write-tree)",
            "install git 2.38 or newer",
        )
    raise EnvironmentProblem(f"git merge-tree failed: {err.splitlines()[-1] if err else proc.returncode}")


def gate_checks(ctx: ExecutionContext) -> list[CheckSpec]:
    """The configured gate checks: ``gate.checks``, else the lane ``checks``."""
    return list(ctx.config.gate.checks or ctx.config.checks)


def echo_to_stderr(stream: str, chunk: bytes) -> None:
    """An output sink that shows check output on stderr, keeping stdout for the report."""
    sys.stderr.buffer.write(chunk)
    sys.stderr.buffer.flush()


def checks_hash(checks: Sequence[CheckSpec], env: dict[str, str]) -> str:
    """A stable hash of what the checks are: names, commands, timeouts and the environment they get."""
    payload = {
        "checks": [{"name": c.name, "command": c.command, "timeout": c.timeout} for c in checks],
        "env": dict(sorted(env.items())),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_file(ctx: ExecutionContext, tree: str, check_key: str) -> Path:
    return ctx.state.gate_verdict(tree, check_key)


def load_cached(ctx: ExecutionContext, tree: str, check_key: str) -> GateVerdict | None:
    """A previous verdict for the same merged tree and checks, or None."""
    path = cache_file(ctx, tree, check_key)
    try:
        return GateVerdict.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # missing or unreadable: decide again rather than trust it


@contextlib.contextmanager
def throwaway_checkout(ctx: ExecutionContext, commit: str, label: str) -> Iterator[Path]:
    """Check ``commit`` out in a throwaway detached worktree; remove it on the way out, whatever happens.

    While the worktree exists, this process holds a driver lock on its liveness directory, so
    ``spine gc`` can tell a gate in progress from one that was killed.
    """
    from spine.base.liveness import DriverLock
    from spine.workspace import worktrees

    name = f"{label[:12]}-{os.getpid()}-{secrets.token_hex(3)}"
    path = ctx.workspace.gate / name
    alive = DriverLock(ctx.state.gate_active_lock(name))
    alive.acquire()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ctx.git.run(*worktrees.SAFE_CONFIG, "worktree", "add", "--quiet", "--detach", str(path), commit)
        try:
            yield path
        finally:
            worktrees.remove(ctx, path)
    finally:
        alive.release()
        shutil.rmtree(alive.path.parent, ignore_errors=True)


def check_env(ctx: ExecutionContext, extra: dict[str, str]) -> dict[str, str]:
    """The environment gate checks see: no hook GIT_* variables, the configured env, and gate facts."""
    env = clean_env()
    env.update(ctx.config.env)
    env.update(extra)
    return env


class GateCanceled(Exception):
    """The gate's checks were stopped by a cancel request: there is no verdict, and none is cached."""


def run_gate(
    ctx: ExecutionContext,
    *,
    rev: str,
    rev_sha: str,
    into: str,
    into_sha: str,
    checks: Sequence[CheckSpec],
    use_cache: bool = True,
    echo: OutputSink | None = None,
    on_check: Callable[[CheckSpec], None] | None = None,
    backend: str | None = None,
) -> GateVerdict:
    """Decide whether ``rev`` may land on ``into``: merge, then run ``checks`` on the merged tree.

    The checks run in the isolation of ``backend`` (default: the configured one), like a lane's
    checks, unless ``checks_on_host`` says otherwise: the tree holds what a lane's command wrote.
    """
    started = time.monotonic()
    merge = merge_trees(ctx, into_sha, rev_sha)
    if merge.tree is None:
        return GateVerdict(
            passed=False,
            reason="conflict",
            rev=rev,
            rev_sha=rev_sha,
            into=into,
            into_sha=into_sha,
            checks_hash=gate_key(ctx, checks, backend),
            conflicts=merge.conflicts,
            decided_at=now_iso(),
            duration_seconds=round(time.monotonic() - started, 3),
        )
    if use_cache:
        cached = cached_verdict(
            ctx, merge.tree, checks, rev=rev, rev_sha=rev_sha, into=into, into_sha=into_sha, backend=backend
        )
        if cached is not None:
            return cached
    commit = git(
        "commit-tree",
        merge.tree,
        "-p",
        into_sha,
        "-p",
        rev_sha,
        "-m",
        f"spine gate: {rev} into {into}",
        cwd=ctx.repo.primary_checkout,
        env=_MERGE_IDENTITY,
    ).stdout.strip()
    return gate_tree(
        ctx,
        tree=merge.tree,
        commit=commit,
        rev=rev,
        rev_sha=rev_sha,
        into=into,
        into_sha=into_sha,
        checks=checks,
        use_cache=False,
        echo=echo,
        on_check=on_check,
        started=started,
        backend=backend,
    )


def cached_verdict(
    ctx: ExecutionContext,
    tree: str,
    checks: Sequence[CheckSpec],
    *,
    rev: str,
    rev_sha: str,
    into: str,
    into_sha: str,
    backend: str | None = None,
) -> GateVerdict | None:
    """The cached verdict on ``tree`` with ``checks``, reported under this request's names; or None."""
    cached = load_cached(ctx, tree, gate_key(ctx, checks, backend))
    if cached is None:
        return None
    # The same tree may come from other parents: report this request's names, the old decision.
    update = {"rev": rev, "rev_sha": rev_sha, "into": into, "into_sha": into_sha, "cached": True}
    return cached.model_copy(update=update)


def gate_tree(
    ctx: ExecutionContext,
    *,
    tree: str,
    commit: str,
    rev: str,
    rev_sha: str,
    into: str,
    into_sha: str,
    checks: Sequence[CheckSpec],
    use_cache: bool = True,
    echo: OutputSink | None = None,
    on_check: Callable[[CheckSpec], None] | None = None,
    cancel: threading.Event | None = None,
    started: float | None = None,
    backend: str | None = None,
) -> GateVerdict:
    """Run ``checks`` on ``commit`` (whose tree is ``tree``) in a throwaway checkout; cache the verdict.

    The merge is already made: this is the half of the gate that ``spine gate`` shares with promotion
    and the landing queue, which test commits they computed themselves. With ``use_cache`` the same
    tree with the same checks is answered from the cache. A set ``cancel`` event stops the running
    check and raises ``GateCanceled``; nothing is cached then.
    """
    started = time.monotonic() if started is None else started
    isolation = _isolation(ctx, backend or ctx.backend)
    key = gate_key(ctx, checks, backend)
    if use_cache:
        cached = cached_verdict(
            ctx, tree, checks, rev=rev, rev_sha=rev_sha, into=into, into_sha=into_sha, backend=backend
        )
        if cached is not None:
            return cached
    results: list[GateCheckResult] = []
    if checks:
        log_dir = ctx.state.gate_logs(tree, key)
        shutil.rmtree(log_dir, ignore_errors=True)
        log_dir.mkdir(parents=True, exist_ok=True)
        with throwaway_checkout(ctx, commit, tree) as worktree:
            from spine.workspace.worktrees import copy_included

            copy_included(ctx.repo.primary_checkout, worktree, list(ctx.config.setup.copy_files))
            env = check_env(
                ctx,
                {
                    "SPINE_GATE_REV": rev,
                    "SPINE_GATE_REV_SHA": rev_sha,
                    "SPINE_GATE_INTO": into,
                    "SPINE_GATE_INTO_SHA": into_sha,
                    "SPINE_GATE_TREE": tree,
                    "SPINE_WORKTREE": str(worktree),
                },
            )
            with _check_runner(ctx, isolation, worktree, tree, cancel) as runner:
                for index, check in enumerate(checks):
                    if cancel is not None and cancel.is_set():
                        raise GateCanceled()
                    if on_check:
                        on_check(check)
                    log_path = log_dir / f"{index}-{_safe(check.name)}.log"
                    results.append(_run_check(ctx, check, worktree, env, log_path, echo, runner))
                    if cancel is not None and cancel.is_set():
                        raise GateCanceled()
    passed = all(r.status == "passed" for r in results)
    verdict = GateVerdict(
        passed=passed,
        reason="passed" if passed else "check-failed",
        merged_tree=tree,
        merge_commit=commit,
        checks=results,
        rev=rev,
        rev_sha=rev_sha,
        into=into,
        into_sha=into_sha,
        checks_hash=key,
        decided_at=now_iso(),
        duration_seconds=round(time.monotonic() - started, 3),
    )
    atomic_write_json(cache_file(ctx, tree, key), verdict.to_json())
    return verdict


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)[:60] or "check"


CheckRunner = Callable[[list[str], dict[str, str], "float | None", OutputSink], ProcessOutcome]


def gate_key(ctx: ExecutionContext, checks: Sequence[CheckSpec], backend: str | None = None) -> str:
    """The cache key of a gate's checks: what they are, their environment, and where they run."""
    isolation = _isolation(ctx, backend or ctx.backend)
    return checks_hash(checks, {**ctx.config.env, "SPINE_GATE_ISOLATION": isolation or "host"})


def _isolation(ctx: ExecutionContext, backend: str) -> str | None:
    """The backend gate checks run in, or None for the host (a local backend, or ``checks_on_host``)."""
    if ctx.config.checks_on_host:
        return None
    from spine.backends.registry import load_backend

    loaded = load_backend(backend, ctx.config.backends.get(backend, {}))
    isolates = bool(getattr(loaded, "isolates", True)) and not loaded.in_place
    return backend if isolates else None


@contextlib.contextmanager
def _check_runner(
    ctx: ExecutionContext,
    isolation: str | None,
    worktree: Path,
    tree: str,
    cancel: threading.Event | None = None,
) -> Iterator[CheckRunner]:
    """Runs gate checks on the host (under the subreaper) or in a sandbox of ``isolation``."""
    if isolation is None:

        def on_host(
            argv: list[str], env: dict[str, str], timeout: float | None, sink: OutputSink
        ) -> ProcessOutcome:
            return run_process(
                argv, cwd=worktree, env=env, timeout=timeout, on_output=sink, cancel=cancel, supervise=True
            )

        yield on_host
        return
    from spine.backends.base import SandboxSpec
    from spine.backends.registry import require_usable

    settings = ctx.config.backends.get(isolation, {})
    sandbox = require_usable(isolation, settings)
    spec = SandboxSpec(
        worktree=worktree,
        run_id="gate",
        lane_id=tree[:12],
        network=ctx.config.network,
        env_passthrough=tuple(sorted({*ctx.config.env, *ctx.config.env_passthrough} | set(GATE_VARIABLES))),
        settings=settings,
        git_dir=ctx.git.common_dir,
        state_dir=ctx.state.root,
        timeout=ctx.config.timeout,
    )
    handle = sandbox.prepare(spec)
    try:

        def in_sandbox(
            argv: list[str], env: dict[str, str], timeout: float | None, sink: OutputSink
        ) -> ProcessOutcome:
            return sandbox.exec(handle, argv, env=env, timeout=timeout, on_output=sink, cancel=cancel)

        yield in_sandbox
    finally:
        sandbox.teardown(handle)


GATE_VARIABLES = (
    "SPINE_GATE_REV",
    "SPINE_GATE_REV_SHA",
    "SPINE_GATE_INTO",
    "SPINE_GATE_INTO_SHA",
    "SPINE_GATE_TREE",
)


def _run_check(
    ctx: ExecutionContext,
    check: CheckSpec,
    worktree: Path,
    env: dict[str, str],
    log_path: Path,
    echo: OutputSink | None,
    runner: CheckRunner,
) -> GateCheckResult:
    """Run one gate check; what it prints reaches the log, the terminal and the verdict with secrets masked."""
    from spine.base.ids import format_duration
    from spine.base.redact import StreamRedactor, process_redactor

    redactor = process_redactor()
    streams = {name: StreamRedactor(redactor) for name in ("stdout", "stderr")}
    with open(log_path, "wb") as log:

        def sink(stream: str, chunk: bytes) -> None:
            shown = streams[stream].feed(chunk)
            log.write(shown)
            if echo and shown:
                echo(stream, shown)

        timeout = check.timeout if check.timeout is not None else ctx.config.timeout
        outcome = runner(["/bin/sh", "-c", check.command], env, timeout, sink)
        for name, stream in streams.items():
            rest = stream.flush()
            log.write(rest)
            if echo and rest:
                echo(name, rest)
    if outcome.ok:
        status: Literal["passed", "failed"] = "passed"
        summary = "passed"
    elif outcome.timed_out:
        status, summary = "failed", f"timed out after {format_duration(outcome.duration)}"
    else:
        status = "failed"
        last = next((line.strip() for line in reversed(outcome.tail) if line.strip()), "")
        summary = f"exit {outcome.exit_code}" + (f": {last[:200]}" if last else "")
    return GateCheckResult(
        name=check.name,
        command=redactor.redact_text(check.command),
        status=status,
        exit_code=outcome.exit_code,
        timed_out=outcome.timed_out is not None,
        duration_seconds=round(outcome.duration, 3),
        summary=redactor.redact_text(summary),
        output_tail=[redactor.redact_text(line) for line in outcome.tail[-20:]],
        log_path=str(log_path),
    )
