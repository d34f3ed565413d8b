"""The ExecutionContext: the single answer to "where does everything live?".

``resolve_context`` is the only code in spine that asks git where the repository, its common dir and
the primary checkout are, and this module is the only one that derives a path under the state
directory (``StatePaths``) or names a ref spine owns (lane branches, attempt and recovery refs). It
runs once per invocation; its result is handed down. From the primary checkout, any subdirectory, or
any lane worktree, every shared field comes out the same. When it cannot resolve, it raises an error
that says what is wrong and how to fix it; it never falls back to another directory.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spine.base.errors import NotARepository, UsageError
from spine.base.git import git
from spine.base.redact import looks_secret, register
from spine.workspace.repo import Repository

if TYPE_CHECKING:  # imported where a context is resolved: `locate_state` must not pay for the models
    from spine.model.config import SpineConfig

# Refs spine owns. Lane branches are ordinary branches so people can check them out and push them;
# the rest are refs outside refs/heads, so `git branch` stays clean and `git push --all` skips them.
LANE_BRANCH_PREFIX = "spine/"
ATTEMPTS_REFS = "refs/spine/attempts"
RECOVERED_REFS = "refs/spine/recovered"

# Directories under the worktree root that are not run ids (run ids cannot start with '.').
POOL_DIR = ".pool"
GATE_DIR = ".gate"


def is_spines_ref(ref: str) -> bool:
    """True for refs spine owns (lane branches, attempt and recovery refs): they move while lanes run."""
    return ref.startswith(("refs/heads/" + LANE_BRANCH_PREFIX, "refs/spine/"))


def lane_branch(run_id: str, lane_id: str) -> str:
    """The branch of lane LANE of run RUN: ``spine/RUN/LANE``."""
    return f"{LANE_BRANCH_PREFIX}{run_id}/{lane_id}"


def parse_lane_branch(branch: str) -> tuple[str, str] | None:
    """(run id, lane id) of a lane branch name, or None when ``branch`` is not one."""
    if not branch.startswith(LANE_BRANCH_PREFIX):
        return None
    parts = branch.removeprefix(LANE_BRANCH_PREFIX).split("/")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def attempt_ref(run_id: str, lane_id: str, attempt: int) -> str:
    """Where the head of attempt N of a retried lane is kept."""
    return f"{ATTEMPTS_REFS}/{run_id}/{lane_id}/{attempt}"


def attempt_refs_of_run(run_id: str) -> str:
    """The prefix of every attempt ref of a run (for ``git for-each-ref``)."""
    return f"{ATTEMPTS_REFS}/{run_id}/"


def recovery_ref(label: str) -> str:
    """A new recovery ref for uncommitted work found under ``label`` (e.g. RUN/LANE)."""
    return f"{RECOVERED_REFS}/{label}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def recovery_refs_pattern(label: str) -> str:
    """The ``for-each-ref`` pattern of every recovery ref made for ``label``."""
    return f"{RECOVERED_REFS}/{label}-*"


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

    def lane_worktree(self, run_id: str, lane_id: str) -> Path:
        return self.worktree_root / run_id / lane_id

    def run_worktrees(self, run_id: str) -> Path:
        return self.worktree_root / run_id

    @property
    def pool(self) -> Path:
        """Where pooled worktrees wait."""
        return self.worktree_root / POOL_DIR

    @property
    def gate(self) -> Path:
        """Where throwaway gate worktrees are created."""
        return self.worktree_root / GATE_DIR


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

    @property
    def crash_logs(self) -> Path:
        return self.root / "crash"

    @property
    def run_index(self) -> Path:
        """Run ids in the order they were created, one JSON line each."""
        return self.root / "run-index.jsonl"

    def pool_slot_lock(self, slot: str) -> Path:
        return self.pool / f"{slot}.lock"

    def pool_slot_note(self, slot: str) -> Path:
        """Which backend the lane that gave the pooled worktree ``slot`` back ran under."""
        return self.pool / f"{slot}.from"

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def new_run_dir(self, run_id: str) -> Path:
        """Where a run is assembled before it appears under its id (see ``RunStore.create``)."""
        return self.runs / f".new-{run_id}-{os.getpid()}"

    def run_file(self, run_id: str) -> Path:
        return self.runs / run_id / "run.json"

    def events_file(self, run_id: str) -> Path:
        return self.runs / run_id / "events.jsonl"

    def lane_states_dir(self, run_id: str) -> Path:
        """Lane state newer than run.json, one journal per lane (``spine.workspace.store``)."""
        return self.runs / run_id / "lane-state"

    def lane_state_file(self, run_id: str, lane_id: str) -> Path:
        return self.lane_states_dir(run_id) / f"{lane_id}.jsonl"

    @property
    def finished_runs(self) -> Path:
        """One JSON line per finished run: its summary, for listing runs without reading each one."""
        return self.root / "finished-runs.jsonl"

    @property
    def reaped_runs(self) -> Path:
        """What ``spine gc`` last found of each finished run it had cleaned up (``spine.maintenance.reaper``)."""
        return self.root / "reaped-runs.json"

    def driver_lock(self, run_id: str) -> Path:
        """The flock a run's driver holds (``spine.base.liveness``)."""
        return self.runs / run_id / "driver.lock"

    def lanes_dir(self, run_id: str) -> Path:
        return self.runs / run_id / "lanes"

    def lane_dir(self, run_id: str, lane_id: str) -> Path:
        return self.lanes_dir(run_id) / lane_id

    def result_file(self, run_id: str, lane_id: str) -> Path:
        return self.lane_dir(run_id, lane_id) / "result.json"

    def log_file(self, run_id: str, lane_id: str) -> Path:
        return self.lane_dir(run_id, lane_id) / "output.log"

    def debug_file(self, run_id: str, lane_id: str) -> Path:
        return self.lane_dir(run_id, lane_id) / "debug.json"

    def debug_markdown(self, run_id: str, lane_id: str) -> Path:
        return self.lane_dir(run_id, lane_id) / "debug.md"

    def refs_before(self, run_id: str, lane_id: str) -> Path:
        """The repository's refs (outside spine's own) as they were when the lane's command started."""
        return self.lane_dir(run_id, lane_id) / "refs.before"

    def config_before(self, run_id: str, lane_id: str) -> Path:
        """Fingerprints of git's configuration files as they were when the lane's command started."""
        return self.lane_dir(run_id, lane_id) / "config.before"

    def copied_list(self, run_id: str, lane_id: str) -> Path:
        """Every path the setup step copied into the lane's worktree, NUL-separated."""
        return self.lane_dir(run_id, lane_id) / "copied.list"

    def feedback_file(self, run_id: str, lane_id: str, iteration: int) -> Path:
        """The failing checks' output handed to pass ``iteration`` of a lane's repair loop."""
        return self.lane_dir(run_id, lane_id) / "feedback" / f"iteration-{iteration}.md"

    def artifacts_dir(self, run_id: str, lane_id: str) -> Path:
        return self.lane_dir(run_id, lane_id) / "artifacts"

    def promote_lock(self, run_id: str, lane_id: str) -> Path:
        """Held while lane RUN/LANE is promoted, so that it lands once."""
        return self.lane_dir(run_id, lane_id) / "promote.lock"

    def land_file(self, run_id: str) -> Path:
        """The state of the run's landing queue (``spine land``)."""
        return self.runs / run_id / "land.json"

    def land_lock(self, run_id: str) -> Path:
        """Held while a ``spine land`` of the run works its queue."""
        return self.runs / run_id / "land.lock"

    def attempts_dir(self, run_id: str, lane_id: str) -> Path:
        """Earlier attempts of a retried lane: ``N/`` holds attempt N's result, log and debug packet."""
        return self.runs / run_id / "attempts" / lane_id

    def attempt_dir(self, run_id: str, lane_id: str, attempt: int) -> Path:
        return self.attempts_dir(run_id, lane_id) / str(attempt)

    def attempt_result_file(self, run_id: str, lane_id: str, attempt: int) -> Path:
        """The result file of attempt N, in the lane directory a retry moved aside."""
        return self.attempt_dir(run_id, lane_id, attempt) / "result.json"

    def lock_file(self, name: str) -> Path:
        return self.locks / f"{name}.lock"

    def cancel_dir(self, run_id: str) -> Path:
        """Where ``spine cancel`` leaves requests for the run's driver: one file per lane."""
        return self.runs / run_id / "cancel"

    def cancel_all_file(self, run_id: str) -> Path:
        """A request to cancel every lane of the run."""
        return self.runs / run_id / "cancel-all"

    def gate_verdict(self, tree: str, checks_key: str) -> Path:
        return self.gate / "verdicts" / f"{tree}-{checks_key[:20]}.json"

    def gate_logs(self, tree: str, checks_key: str) -> Path:
        return self.gate / "logs" / f"{tree}-{checks_key[:20]}"

    def gate_active(self, name: str) -> Path:
        """The directory whose driver lock says a gate is still using worktree ``name``."""
        return self.gate / "active" / name

    def gate_active_lock(self, name: str) -> Path:
        return self.gate_active(name) / "driver.lock"


@dataclass(frozen=True)
class ExecutionContext:
    """Everything a command needs to know about where it runs; built by ``resolve_context``."""

    repo: RepoIdentity
    git: Repository
    workspace: Workspace
    refs: Refs
    state: StatePaths
    config: SpineConfig
    config_path: Path
    config_found: bool
    backend: str
    cwd: Path = field(compare=False)

    def lane_worktree(self, run_id: str, lane_id: str) -> Path:
        return self.workspace.lane_worktree(run_id, lane_id)

    @property
    def pool_worktrees(self) -> Path:
        """Where pooled worktrees wait; run ids cannot start with '.', so no run collides with it."""
        return self.workspace.pool

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
    from spine.model.config import CONFIG_FILE, load_config

    config_path = primary / CONFIG_FILE
    config = load_config(config_path)
    register(value for name, value in config.env.items() if looks_secret(name))
    if backend is not None:
        config = config.model_copy(update={"backend": backend})
    state = StatePaths(common_dir / "spine")
    root = Path(config.worktree_root) if config.worktree_root else state.default_worktrees
    if not root.is_absolute():
        root = primary / root
    repository = Repository(common_dir=common_dir, primary_checkout=primary)
    problems: list[UsageError] = []
    try:
        _check_backend_name(config.backend, backend is None, config_path)
    except UsageError as exc:
        problems.append(exc)
    try:
        refs = _resolve_refs(repository, base, target, config, config_path)
    except UsageError as exc:
        problems.append(exc)
    if problems:
        raise UsageError.of(problems)
    return ExecutionContext(
        repo=RepoIdentity(
            id=hashlib.sha256(str(common_dir).encode()).hexdigest()[:16],
            name=primary.name,
            primary_checkout=primary,
            git_common_dir=common_dir,
        ),
        git=repository,
        workspace=Workspace(current_worktree=toplevel, is_primary=toplevel == primary, worktree_root=root),
        refs=refs,
        state=state,
        config=config,
        config_path=config_path,
        config_found=config_path.is_file(),
        backend=config.backend,
        cwd=here,
    )


def locate_state(cwd: Path | str | None = None) -> tuple[Path, StatePaths] | None:
    """(primary checkout, state paths) of the repository at ``cwd``, or None outside one.

    Neither the configuration nor any ref is read: for quick read-only look-ups such as shell
    completion, which must answer at once even where ``.spine.yaml`` is broken.
    """
    here = Path(cwd if cwd is not None else os.getcwd()).resolve()
    try:
        common_dir, _ = _locate(here)
        primary = _primary_checkout(common_dir, here)
    except (NotARepository, OSError):
        return None
    return primary, StatePaths(common_dir / "spine")


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


def _resolve_refs(
    repo: Repository, base: str | None, target: str | None, config: SpineConfig, config_path: Path
) -> Refs:
    head, _ = _primary_head(repo.common_dir)
    base_ref = base or config.base or head
    target_ref = target or config.target or base_ref
    where = {
        "base": "--base" if base else (f"{config_path}: key 'base'" if config.base else "the primary HEAD"),
        "target": "--target" if target else (f"{config_path}: key 'target'" if config.target else "the base"),
    }
    wanted = [base_ref] if target_ref == base_ref else [base_ref, target_ref]
    shas = repo.resolve_commits(wanted)
    if shas is not None:
        return Refs(base_ref=base_ref, base_sha=shas[0], target_ref=target_ref, target_sha=shas[-1])
    if not (base or config.base) and repo.resolve_commit("HEAD") is None:
        raise UsageError(
            f"the repository at {repo.primary_checkout} has no commits yet",
            "make a first commit (git add -A && git commit -m 'initial commit') and try again",
        )
    problems: list[UsageError] = []
    for name, ref in dict.fromkeys((("base", base_ref), ("target", target_ref))):
        try:
            repo.require_commit(ref, what=f"{name} ref", given_by=where[name])
        except UsageError as exc:
            if name == "target" and ref == base_ref and problems:
                continue  # the target is the base: said once
            problems.append(exc)
    raise UsageError.of(problems) if problems else UsageError(f"cannot resolve refs {wanted}")


def _check_backend_name(name: str, from_config: bool, config_path: Path) -> None:
    from spine.base.backend_names import BUILTIN, known_backend_names

    if name in BUILTIN:
        return  # no need to scan installed packages' entry points for a built-in name
    names = known_backend_names()
    if name not in names:
        import difflib

        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        where = f"{config_path}: key 'backend': " if from_config else "--backend: "
        raise UsageError(
            f"{where}unknown backend {name!r}", f"{hint}known backends: {', '.join(sorted(names))}"
        )
