"""The ExecutionContext: the single answer to "where does everything live?".

``resolve_context`` is the only code in spine that asks git where the repository, its common dir and
the primary checkout are, and the only code that derives state paths. It runs once per invocation;
its result is handed down. From the primary checkout, any subdirectory, or any lane worktree, every
shared field comes out the same. When it cannot resolve, it raises an error that says what is wrong
and how to fix it; it never falls back to another directory.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spine.base.errors import NotARepository, UsageError
from spine.base.git import GitFailed, git
from spine.model.config import CONFIG_FILE, SpineConfig, load_config


@dataclass(frozen=True)
class RepoIdentity:
    """Which repository this is, independent of the worktree we stand in."""

    id: str
    name: str
    primary_checkout: Path
    git_common_dir: Path


@dataclass(frozen=True)
class Workspace:
    """Where the invocation stands and where lane worktrees go."""

    current_worktree: Path
    is_primary: bool
    worktree_root: Path


@dataclass(frozen=True)
class Refs:
    """Base and target refs, resolved to commit SHAs once."""

    base_ref: str
    base_sha: str
    target_ref: str
    target_sha: str


@dataclass(frozen=True)
class StatePaths:
    """Every path of spine's state, all under ``<git-common-dir>/spine``."""

    root: Path

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def gate(self) -> Path:
        return self.root / "gate"

    @property
    def default_worktrees(self) -> Path:
        return self.root / "worktrees"

    @property
    def pool(self) -> Path:
        """Lock files of the worktree pool's slots."""
        return self.root / "pool"

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def run_file(self, run_id: str) -> Path:
        return self.runs / run_id / "run.json"

    def events_file(self, run_id: str) -> Path:
        return self.runs / run_id / "events.jsonl"

    def lane_dir(self, run_id: str, lane_id: str) -> Path:
        return self.runs / run_id / "lanes" / lane_id

    def result_file(self, run_id: str, lane_id: str) -> Path:
        return self.lane_dir(run_id, lane_id) / "result.json"

    def log_file(self, run_id: str, lane_id: str) -> Path:
        return self.lane_dir(run_id, lane_id) / "output.log"

    def debug_file(self, run_id: str, lane_id: str) -> Path:
        return self.lane_dir(run_id, lane_id) / "debug.json"

    def debug_markdown(self, run_id: str, lane_id: str) -> Path:
        return self.lane_dir(run_id, lane_id) / "debug.md"

    def lock_file(self, name: str) -> Path:
        return self.locks / f"{name}.lock"

    def cancel_dir(self, run_id: str) -> Path:
        """Where ``spine cancel`` leaves requests for the run's driver: one file per lane."""
        return self.runs / run_id / "cancel"

    def cancel_all_file(self, run_id: str) -> Path:
        """A request to cancel every lane of the run."""
        return self.runs / run_id / "cancel-all"


@dataclass(frozen=True)
class ExecutionContext:
    """Everything a command needs to know about where it runs; built by ``resolve_context``."""

    repo: RepoIdentity
    workspace: Workspace
    refs: Refs
    state: StatePaths
    config: SpineConfig
    config_path: Path
    config_found: bool
    backend: str
    cwd: Path = field(compare=False)

    def lane_worktree(self, run_id: str, lane_id: str) -> Path:
        return self.workspace.worktree_root / run_id / lane_id

    @property
    def pool_worktrees(self) -> Path:
        """Where pooled worktrees wait; run ids cannot start with '.', so no run collides with it."""
        return self.workspace.worktree_root / ".pool"

    def shared(self) -> dict[str, Any]:
        """The fields that must be identical from every working directory of the repository."""
        return {
            "repository": {
                "id": self.repo.id,
                "name": self.repo.name,
                "primaryCheckout": str(self.repo.primary_checkout),
                "gitCommonDir": str(self.repo.git_common_dir),
            },
            "refs": {
                "baseRef": self.refs.base_ref,
                "baseSha": self.refs.base_sha,
                "targetRef": self.refs.target_ref,
                "targetSha": self.refs.target_sha,
            },
            "stateDir": str(self.state.root),
            "worktreeRoot": str(self.workspace.worktree_root),
            "configFile": str(self.config_path) if self.config_found else None,
            "backend": self.backend,
            "config": self.config.model_dump(mode="json", by_alias=True),
        }

    def to_json(self) -> dict[str, Any]:
        data = self.shared()
        data["currentWorktree"] = {
            "path": str(self.workspace.current_worktree),
            "isPrimary": self.workspace.is_primary,
        }
        return data


def resolve_context(
    cwd: Path | str | None = None,
    *,
    base: str | None = None,
    target: str | None = None,
    backend: str | None = None,
) -> ExecutionContext:
    """Resolve the ExecutionContext for ``cwd`` (default: the process's working directory).

    ``base``, ``target`` and ``backend`` are command-line overrides of the configuration.
    """
    here = Path(cwd if cwd is not None else os.getcwd()).resolve()
    if not here.is_dir():
        raise UsageError(f"{here} is not a directory")
    common_dir, toplevel = _locate(here)
    primary = _primary_checkout(common_dir, here)
    config_path = primary / CONFIG_FILE
    config = load_config(config_path)
    if backend is not None:
        config = config.model_copy(update={"backend": backend})
    state = StatePaths(common_dir / "spine")
    root = Path(config.worktree_root) if config.worktree_root else state.default_worktrees
    if not root.is_absolute():
        root = primary / root
    refs = _resolve_refs(common_dir, primary, base or config.base, target or config.target)
    _check_backend_name(config.backend)
    return ExecutionContext(
        repo=RepoIdentity(
            id=hashlib.sha256(str(common_dir).encode()).hexdigest()[:16],
            name=primary.name,
            primary_checkout=primary,
            git_common_dir=common_dir,
        ),
        workspace=Workspace(current_worktree=toplevel, is_primary=toplevel == primary, worktree_root=root),
        refs=refs,
        state=state,
        config=config,
        config_path=config_path,
        config_found=config_path.is_file(),
        backend=config.backend,
        cwd=here,
    )


def _locate(here: Path) -> tuple[Path, Path]:
    """Return (git common dir, top of the current worktree), or say why there are none."""
    proc = git(
        "rev-parse", "--path-format=absolute", "--git-common-dir", "--show-toplevel", cwd=here, check=False
    )
    if proc.returncode == 0:
        common, top = proc.stdout.splitlines()[:2]
        return Path(common).resolve(), Path(top).resolve()
    err = proc.stderr
    if "not a git repository" in err:
        raise NotARepository(
            f"{here} is not inside a git repository",
            "cd into a git repository (or create one with `git init` and make a first commit)",
        )
    bare = git("rev-parse", "--is-bare-repository", cwd=here, check=False)
    if bare.stdout.strip() == "true":
        raise NotARepository(
            f"{here} is a bare repository; spine needs a working tree",
            "clone it (`git clone PATH`) or add a worktree (`git worktree add PATH`) and run spine there",
        )
    inside = git("rev-parse", "--is-inside-git-dir", cwd=here, check=False)
    if inside.stdout.strip() == "true":
        raise NotARepository(
            f"{here} is inside the .git directory", "cd into the working tree of the repository"
        )
    raise NotARepository(f"cannot resolve the repository at {here}: {err.strip()}")


def _primary_checkout(common_dir: Path, here: Path) -> Path:
    if common_dir.name == ".git":
        return common_dir.parent
    # A separate git dir (git init --separate-git-dir) or a bare repository with linked worktrees.
    listing = git("worktree", "list", "--porcelain", cwd=here).stdout
    first = listing.split("\n\n", 1)[0].splitlines()
    if "bare" in first:
        raise NotARepository(
            f"the repository at {common_dir} is bare and has no primary checkout",
            "run spine from a regular clone; bare repositories with linked worktrees are not supported",
        )
    return Path(first[0].removeprefix("worktree ")).resolve()


def _primary_head(common_dir: Path) -> tuple[str, bool]:
    """Return (the primary checkout's HEAD as a ref name or SHA, whether it is a branch)."""
    head = (common_dir / "HEAD").read_text(encoding="utf-8").strip()
    if head.startswith("ref: "):
        return head.removeprefix("ref: ").removeprefix("refs/heads/"), True
    return head, False


def _resolve_refs(common_dir: Path, primary: Path, base: str | None, target: str | None) -> Refs:
    head, _ = _primary_head(common_dir)
    base_ref = base or head
    target_ref = target or base_ref
    for name, ref in (("base", base_ref), ("target", target_ref)):
        if ref.startswith("-") or not ref.strip():
            raise UsageError(f"invalid {name} ref {ref!r}", "name a branch, tag or commit, e.g. main")
    wanted = [base_ref] if target_ref == base_ref else [base_ref, target_ref]
    proc = git("rev-parse", *(f"{ref}^{{commit}}" for ref in wanted), cwd=primary, check=False)
    if proc.returncode != 0:
        if not base and git("rev-parse", "--verify", "-q", "HEAD", cwd=primary, check=False).returncode != 0:
            raise UsageError(
                f"the repository at {primary} has no commits yet",
                "make a first commit (git add -A && git commit -m 'initial commit') and try again",
            )
        for name, ref in (("base", base_ref), ("target", target_ref)):
            try:
                git("rev-parse", "--verify", "-q", f"{ref}^{{commit}}", cwd=primary)
            except GitFailed:
                flag = "--base" if name == "base" else "--target"
                raise UsageError(
                    f"unknown {name} ref {ref!r}: no branch, tag or commit has that name",
                    f"check `git branch -a`, or pass an existing ref with {flag}",
                ) from None
        raise UsageError(f"cannot resolve refs {wanted}: {proc.stderr.strip()}")
    shas = proc.stdout.split()
    return Refs(base_ref=base_ref, base_sha=shas[0], target_ref=target_ref, target_sha=shas[-1])


def _check_backend_name(name: str) -> None:
    from spine.backends.registry import BUILTIN, known_backend_names

    if name in BUILTIN:
        return  # no need to scan installed packages' entry points for a built-in name
    names = known_backend_names()
    if name not in names:
        import difflib

        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageError(f"unknown backend {name!r}", f"{hint}known backends: {', '.join(sorted(names))}")
