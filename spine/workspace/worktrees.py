"""Worktrees: the one module that adds, takes from and gives to the pool, removes, lists, snapshots
and inspects them, and that runs git on a lane's worktree.

**Git on a lane's worktree never trusts the worktree.** A lane's command may rewrite the worktree's
``.git`` file (to point at another repository, or at the user's own git dir) or plant config there
that runs programs (``core.fsmonitor``, hooks). ``LaneWorktree.git`` therefore names the worktree's
*registered* git dir and work tree itself (``--git-dir``/``--work-tree``, the git dir as git recorded
it under the common dir when spine created the worktree), and switches off every setting that would
run a program: fsmonitor, hooks, external diff and textconv drivers, submodule recursion.
``LaneWorktree.problem`` says when the worktree is no longer the lane's (gone, replaced, its ``.git``
rewritten, its registration moved) so the lane fails with that cause instead of being trusted.

Worktree changes happen under the ``worktrees`` lock (``StatePaths.lock_file("worktrees")``); pool
slots are taken under a per-slot ``flock`` (see docs/adr/0050-worktree-pool.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from spine.base.errors import EnvironmentProblem
from spine.base.files import atomic_write_text, read_regular
from spine.base.git import GitFailed, git
from spine.base.locks import hold
from spine.workspace.context import ExecutionContext, recovery_ref
from spine.workspace.repo import Repository

# Settings that would make git run a program, switched off for every git spine runs on a worktree a
# lane's command could have written to. Config comes from the user's own files only (the registered
# git dir is named explicitly), but attributes come from the worktree: textconv and external diff
# drivers are disabled per command (``--no-textconv --no-ext-diff``) where git would use them.
SAFE_CONFIG: tuple[str, ...] = (
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "submodule.recurse=false",
    # A repository nested in the worktree (a submodule, or one the lane created) has a config of its
    # own, which git would obey if it looked inside: it never does.
    "-c",
    "diff.ignoreSubmodules=all",
    "-c",
    "status.submoduleSummary=false",
    "-c",
    "protocol.allow=never",
)

# For `git submodule update` of a new worktree: the usual network transports, never `ext::` or a
# local path a lane-written .gitmodules could name (file is git's own default: refused for submodules).
SUBMODULE_PROTOCOLS: tuple[str, ...] = (
    "-c",
    "protocol.https.allow=always",
    "-c",
    "protocol.http.allow=always",
    "-c",
    "protocol.ssh.allow=always",
    "-c",
    "protocol.git.allow=always",
)


@dataclass
class GitWorktree:
    """One entry of ``git worktree list --porcelain``."""

    path: Path
    head: str | None = None
    branch: str | None = None
    locked: str | None = None
    prunable: bool = False


def list_worktrees(repo: Repository) -> list[GitWorktree]:
    """Every worktree git has registered for this repository."""
    out = repo.run(*SAFE_CONFIG, "worktree", "list", "--porcelain").stdout
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


def registered(repo: Repository, path: Path) -> GitWorktree | None:
    """git's entry for the worktree at ``path``, if git has one."""
    real = os.path.realpath(path)
    return next((wt for wt in list_worktrees(repo) if os.path.realpath(wt.path) == real), None)


# --- git on a lane's worktree ------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """Where a worktree's HEAD is: on ``branch`` (at ``sha``), or detached at ``sha``."""

    branch: str | None
    sha: str | None


@dataclass(frozen=True)
class LaneWorktree:
    """A worktree spine created for a lane: its path and the git dir git registered for it."""

    path: Path
    git_dir: Path

    def git(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run git on this worktree through its registered git dir, with programs switched off.

        The common dir is named too (``GIT_COMMON_DIR``): git would otherwise take it from the
        ``commondir`` file in the registered git dir, which the lane's command can write."""
        where = (f"--git-dir={self.git_dir}", f"--work-tree={self.path}")
        run_env = {"GIT_COMMON_DIR": str(self.common_dir), **(env or {})}
        return git(*where, *SAFE_CONFIG, *args, cwd=self.path, env=run_env, check=check, input=input)

    @property
    def common_dir(self) -> Path:
        """The repository's common git dir: the registered git dir of a linked worktree is
        ``COMMON/worktrees/NAME`` (git makes it so); a primary checkout's git dir is the common dir."""
        if self.git_dir.parent.name == "worktrees":
            return self.git_dir.parent.parent
        return self.git_dir

    def out(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        return self.git(*args, env=env).stdout.rstrip("\n")

    def head(self) -> Head:
        """HEAD as its registered git dir records it (read without running git)."""
        found = read_regular(self.git_dir / "HEAD")
        if found is None or found[1] is None:
            return Head(None, None)  # gone, or not a file (a FIFO would block the read): no HEAD
        text = found[1].decode("utf-8", "replace").strip()
        if text.startswith("ref: "):
            ref = text.removeprefix("ref: ")
            sha = read_loose_ref(self.common_dir, ref)
            if sha is None:  # packed, in a reftable, or absent: ask git
                sha = self.git("rev-parse", "--verify", "-q", ref, check=False).stdout.strip() or None
            return Head(ref.removeprefix("refs/heads/"), sha)
        return Head(None, text or None)

    def detach_at(self, sha: str) -> None:
        """Detach HEAD at ``sha`` (the index and files are left as they are).

        HEAD of a linked worktree is a file in its registered git dir; it is replaced atomically
        with the commit's name, as ``git update-ref --no-deref`` would (without a reflog entry). A
        repository whose refs git keeps in a reftable has no such file; git does it there."""
        head = self.git_dir / "HEAD"
        try:
            current = head.read_text(encoding="utf-8").strip()
        except OSError:
            current = ""
        plain_file = current.startswith("ref: refs/heads/") or _HEX.fullmatch(current) is not None
        if not plain_file or current == "ref: refs/heads/.invalid" or not _HEX.fullmatch(sha):
            self.git("update-ref", "--no-deref", "-m", "spine: detached", "HEAD", sha)
            return
        atomic_write_text(head, sha + "\n", redact=False, durable=False)  # git does not fsync it either

    def problem(self, repo: Repository) -> str | None:
        """Why this is no longer the lane's worktree, or None when it still is."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return f"the worktree {self.path} is gone: something deleted it while the lane ran"
        except OSError as exc:
            return f"the worktree {self.path} cannot be read: {exc.strerror}"
        if not stat.S_ISDIR(mode):
            return f"the worktree {self.path} is no longer a directory (it was replaced)"
        if not self.git_dir.is_dir():
            return f"git no longer knows the worktree {self.path}: its registration {self.git_dir} is gone"
        if self.git_dir.is_symlink():
            return f"git's record of the worktree {self.path} ({self.git_dir}) was replaced by a link"
        for name in ("HEAD", "index"):
            try:
                mode = os.lstat(self.git_dir / name).st_mode
            except FileNotFoundError:
                continue
            except OSError as exc:
                return f"the worktree's {name} ({self.git_dir / name}) cannot be read: {exc.strerror}"
            if not stat.S_ISREG(mode):
                return f"the worktree's {name} ({self.git_dir / name}) was replaced by a link or special file"
        common = common_dir_of(self.git_dir)
        if os.path.realpath(common) != os.path.realpath(repo.common_dir):
            return (
                f"git's record of the worktree {self.path} was changed: its commondir file names "
                f"{str(common)[:200]!r}, not the repository's {repo.common_dir}"
            )
        now = repo.registered_git_dir(self.path)
        if now is None or os.path.realpath(now) != os.path.realpath(self.git_dir):
            return f"git's record of the worktree {self.path} was changed or moved"
        dotgit = self.path / ".git"
        try:
            dot_mode = os.lstat(dotgit).st_mode
        except FileNotFoundError:
            return f"the worktree's .git file was removed ({dotgit})"
        if not stat.S_ISREG(dot_mode):
            kind = "a directory" if stat.S_ISDIR(dot_mode) else "a link or special file"
            return f"the worktree's .git file was replaced by {kind} ({dotgit})"
        try:
            text = dotgit.read_text(encoding="utf-8", errors="replace").strip()
        except OSError as exc:
            return f"the worktree's .git file cannot be read: {exc.strerror}"
        target = text.removeprefix("gitdir: ").strip()
        if not text.startswith("gitdir: ") or not _same_path(self.path, target, self.git_dir):
            return (
                f"the worktree's .git file was rewritten: it points to {target[:200]!r}, not {self.git_dir}"
            )
        return None


_HEX = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")

_ASSUME_VALID = 0x8000  # "assume unchanged" (git update-index --assume-unchanged)


def index_may_hide_files(index: Path, hash_size: int) -> bool:
    """Whether the index at ``index`` may mark entries "assume unchanged" or "skip worktree", which
    make ``git add`` pass over a changed file; read without starting git.

    git writes index version 2 unless an entry needs extended flags (skip-worktree, intent-to-add),
    which take version 3; version 4 is chosen by configuration. A version 2 index is read entry by
    entry for the assume-unchanged bit (``hash_size``: 20 for SHA-1, 32 for SHA-256); any other
    version answers True, and the caller asks git (``git ls-files -v``)."""
    found = read_regular(index)
    data = found[1] if found is not None else None
    if data is None:
        return False
    if len(data) < 12 or data[:4] != b"DIRC":
        return False
    version, count = int.from_bytes(data[4:8], "big"), int.from_bytes(data[8:12], "big")
    if version != 2:
        return True
    pos = 12
    fixed = 40 + hash_size  # ctime, mtime, dev, ino, mode, uid, gid, size; then the object name
    for _ in range(count):
        if pos + fixed + 2 > len(data):
            return True  # not what git writes: let git say
        flags = int.from_bytes(data[pos + fixed : pos + fixed + 2], "big")
        if flags & _ASSUME_VALID:
            return True
        name_len = flags & 0x0FFF
        start = pos + fixed + 2
        if name_len == 0x0FFF:
            name_len = data.index(b"\0", start) - start
        entry = fixed + 2 + name_len
        pos += entry + (8 - entry % 8)  # 1 to 8 NULs pad the entry to a multiple of 8
    return False


def common_dir_of(git_dir: Path) -> Path:
    """The common git dir of a (linked worktree's) git dir, from its ``commondir`` file."""
    try:
        text = (git_dir / "commondir").read_text(encoding="utf-8").strip()
    except OSError:
        return git_dir
    return Path(os.path.normpath(git_dir / text))


def read_loose_ref(common_dir: Path, ref: str) -> str | None:
    """The commit a ref stored as a loose file names, read without starting git; None when it is not
    stored that way (packed, kept in a reftable, a symbolic ref, or absent): ask git then.

    git replaces a loose ref file by renaming a lock file over it, so the read sees the old or the new
    commit, never a mix."""
    if not ref.startswith("refs/") or ".." in ref:
        return None
    try:
        text = (common_dir / ref).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _HEX.fullmatch(text) else None


def _same_path(base: Path, written: str, expected: Path) -> bool:
    path = Path(written)
    if not path.is_absolute():
        path = base / path
    return os.path.realpath(path) == os.path.realpath(expected)


def open_worktree(repo: Repository, path: Path) -> LaneWorktree | None:
    """The lane worktree at ``path`` through git's registration, or None when git has none there."""
    git_dir = repo.registered_git_dir(path)
    return LaneWorktree(path=path, git_dir=git_dir) if git_dir is not None else None


def checkout_worktree(repo: Repository, path: Path) -> LaneWorktree:
    """The user's own checkout at ``path`` (the primary or a linked worktree), for in-place lanes."""
    if os.path.realpath(path) == os.path.realpath(repo.primary_checkout):
        return LaneWorktree(path=path, git_dir=repo.common_dir)
    found = open_worktree(repo, path)
    if found is None:
        raise EnvironmentProblem(f"{path} is not a checkout git knows")
    return found


# --- adding and removing -----------------------------------------------------------------------


@contextlib.contextmanager
def worktrees_lock(ctx: ExecutionContext, purpose: str) -> Iterator[None]:
    """The lock every change to the repository's list of worktrees is made under."""
    with hold(ctx.state.lock_file("worktrees"), purpose, ctx.config.lock_timeout):
        yield


def add(ctx: ExecutionContext, path: Path, branch: str, base_sha: str, label: str) -> LaneWorktree:
    """A worktree of ``branch`` at ``path``: new from ``base_sha``, or reconciled with what an
    interrupted attempt left there. Call under ``worktrees_lock``.

    The common case first: a new branch in a path nothing claims, one git process. Anything an
    interrupted attempt left behind makes that fail, and is then reconciled: a worktree ``git worktree
    add`` completed (registered, on the branch, not locked) is kept; anything else (a worktree still
    locked "initializing" with a half checkout, a directory git does not know) is cleared, saving
    files it holds to a recovery ref first, and added again. An existing branch is reused as it is,
    so commits already on it are kept.
    """
    repo = ctx.git
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        args = ("worktree", "add", "--quiet", "-b", branch, str(path), base_sha)
        if repo.run(*SAFE_CONFIG, *args, check=False).returncode == 0:
            return _opened(repo, path)
    entry = registered(repo, path)
    if entry is not None and entry.branch == branch and not entry.locked and (path / ".git").is_file():
        lane = _opened(repo, path)
        if lane.problem(repo) is None:
            return lane
    if entry is not None and entry.locked:
        repo.run(*SAFE_CONFIG, "worktree", "unlock", str(path), check=False)
    if entry is not None or path.exists():
        clear_half_created(ctx, path, base_sha, label)
    path.parent.mkdir(parents=True, exist_ok=True)
    if repo.branch_exists(branch):
        repo.run(*SAFE_CONFIG, "worktree", "add", "--quiet", str(path), branch)
    else:
        repo.run(*SAFE_CONFIG, "worktree", "add", "--quiet", "-b", branch, str(path), base_sha)
    return _opened(repo, path)


def _opened(repo: Repository, path: Path) -> LaneWorktree:
    lane = open_worktree(repo, path)
    if lane is None:
        raise EnvironmentProblem(f"git did not register the worktree it just added at {path}")
    return lane


def remove(ctx: ExecutionContext, path: Path) -> None:
    """Remove a worktree (registered or not, present or not) and git's record of it. Never raises.

    Only ever this worktree's own record is dropped (never ``git worktree prune``, which would also
    drop the records of the user's worktrees on an unmounted disk).
    """
    repo = ctx.git
    git_dir = repo.registered_git_dir(path)
    if _swapped(path):
        # Something put a link where the worktree was (or above it): remove the link, never what
        # it points at, and drop only git's record of the worktree that was here.
        _rmtree(path)
        if git_dir is not None and git_dir.parent == repo.worktrees_admin:
            shutil.rmtree(git_dir, ignore_errors=True)
        return
    proc = repo.run(*SAFE_CONFIG, "worktree", "remove", "--force", "--force", str(path), check=False)
    if proc.returncode != 0 or path.exists():
        _rmtree(path)
        if git_dir is not None and git_dir.parent == repo.worktrees_admin:
            shutil.rmtree(git_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        if path.parent.parent == ctx.workspace.worktree_root:
            path.parent.rmdir()  # the run's directory, once its last lane is gone


def _swapped(path: Path) -> bool:
    """True when ``path`` or its parent (the run's or the pool's directory, which spine made) is a
    symbolic link: not the directory spine made there."""
    absolute = Path(os.path.abspath(path))
    return os.path.islink(absolute) or os.path.islink(absolute.parent)


def _rmtree(path: Path) -> None:
    """Remove ``path`` whatever it is (a link is removed, never followed)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def snapshot(
    ctx: ExecutionContext,
    directory: Path,
    parent: str,
    label: str,
    message: str,
    *,
    include_deletions: bool = True,
) -> str | None:
    """Commit the state of ``directory`` on top of ``parent`` to a recovery ref (``recovery_ref(label)``).

    Uses a private index, so the worktree's own index (and any stale ``index.lock``) is never touched,
    and names the common git dir explicitly: a stray directory's own .git may be broken or hostile.
    Ignored files are not included. Returns the recovery ref, or None when the directory holds
    nothing that ``parent`` does not already have.
    """
    repo = ctx.git
    fd, index = tempfile.mkstemp(prefix="spine-recover-", suffix=".index")
    os.close(fd)
    try:
        env = {"GIT_INDEX_FILE": index}
        git_dir = repo.registered_git_dir(directory)
        own_index = git_dir / "index" if git_dir else None
        if own_index is not None and own_index.is_file() and include_deletions:
            shutil.copyfile(own_index, index)  # reuses its stat data: fast on big trees
        else:
            os.unlink(index)
            repo.run("read-tree", parent, env=env)
        add = ["add", "-A"] if include_deletions else ["add", "--ignore-removal"]
        where = [f"--git-dir={repo.common_dir}", f"--work-tree={directory}", *SAFE_CONFIG]
        # Repositories nested inside (a lane may create one) cannot be added as files; leave them out.
        spec = "\0".join([".", *(f":(exclude,literal){p}" for p in _nested_repositories(directory))]) + "\0"
        git(*where, *add, "--pathspec-from-file=-", "--pathspec-file-nul", cwd=directory, env=env, input=spec)
        tree = repo.out("write-tree", env=env)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(index)
    if tree == repo.tree_of(parent):
        return None
    commit = repo.out("commit-tree", tree, "-p", parent, "-m", message, env=repo.identity_env())
    ref = recovery_ref(label)
    repo.run("update-ref", "-m", "spine: recovered uncommitted work", ref, commit, "")
    return ref


def _real_directory(root: Path, rel: Path) -> Path | None:
    """``root/rel`` as a directory made of real directories only (created as needed); None when a
    component is a link (something in the worktree could point it anywhere)."""
    current = root
    for part in rel.parts:
        if part in ("", "."):
            continue
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            os.mkdir(current)
            continue
        if stat.S_ISLNK(mode):
            return None
        if not stat.S_ISDIR(mode):
            raise NotADirectoryError(20, "Not a directory", str(current))
    return current


def _copy_new_file(src: Path, dst: Path) -> None:
    """Copy regular file ``src`` to a new ``dst`` that must not exist (never through a link)."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out, open(src, "rb") as source:
        shutil.copyfileobj(source, out)
    shutil.copystat(src, dst, follow_symlinks=False)


def _nested_repositories(root: Path) -> list[str]:
    """Relative paths of the directories below ``root`` that hold a ``.git`` of their own (links not followed)."""
    found = []
    for current, dirs, files in os.walk(root):
        here = Path(current)
        if here != root and (".git" in dirs or ".git" in files):
            found.append(here.relative_to(root).as_posix())
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if d != ".git"]
    return found


def clear_half_created(ctx: ExecutionContext, path: Path, base_sha: str, label: str) -> str | None:
    """Clear a worktree a crash left half-created at ``path`` so it can be created again.

    Files that differ from ``base_sha`` are saved to a recovery ref first (deletions are not: a
    half-finished checkout lacks files it never wrote). Returns the recovery ref, if one was made.
    """
    ref = None
    if path.is_dir() and any(p.name != ".git" for p in path.iterdir()):
        ref = snapshot(
            ctx,
            path,
            base_sha,
            label,
            f"spine: files found in a half-created worktree of {label}",
            include_deletions=False,
        )
    remove(ctx, path)
    return ref


def recover_and_remove(ctx: ExecutionContext, path: Path, parent: str, label: str) -> str | None:
    """Save uncommitted work in ``path`` to a recovery ref, then remove the worktree; the ref, if any."""
    ref = None
    if path.is_dir() and not _swapped(path):  # never snapshot what a link put in its place points at
        ref = snapshot(ctx, path, parent, label, f"spine: uncommitted work recovered from {path}")
    remove(ctx, path)
    return ref


def copy_included(primary: Path, worktree: Path, extra_patterns: list[str]) -> tuple[list[str], list[str]]:
    """Copy untracked files of the primary checkout matching .worktreeinclude or ``extra_patterns``.

    Patterns use gitignore syntax and are matched by git itself. Symbolic links arrive as symbolic
    links (to the same target); what cannot be copied (a socket, an unreadable file) is reported.
    Returns (copied paths, "path: why" for each path not copied).
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
        return [], []
    try:
        args = ["ls-files", "-z", "--others", "--ignored"]
        for source in sources:
            args.append(f"--exclude-from={source}")
        listing = git(*args, cwd=primary).stdout
    finally:
        if tmp:
            os.unlink(tmp)
    copied: list[str] = []
    problems: list[str] = []
    for rel in filter(None, listing.split("\0")):
        src = primary / rel
        try:
            parent = _real_directory(worktree, Path(rel).parent)
        except OSError as exc:
            problems.append(f"{rel}: {exc.strerror or exc}")
            continue
        if parent is None:
            problems.append(f"{rel}: a folder on its way in the worktree is a link; not followed")
            continue
        dst = parent / Path(rel).name
        if os.path.lexists(dst):
            continue
        try:
            mode = os.lstat(src).st_mode
            if stat.S_ISLNK(mode):
                os.symlink(os.readlink(src), dst)
            elif stat.S_ISREG(mode):
                _copy_new_file(src, dst)
            else:
                problems.append(f"{rel}: not a regular file or a link")
                continue
        except OSError as exc:
            problems.append(f"{rel}: {exc.strerror or exc}")
            continue
        copied.append(rel)
    return copied, problems


# --- processes inside a worktree -----------------------------------------------------------------


def _ancestors() -> set[int]:
    """This process and its ancestors: never counted as a lane's processes."""
    found = {os.getpid()}
    pid = os.getppid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                pid = int(handle.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return found


def processes_inside(worktree: Path, markers: Mapping[str, str] | None = None) -> list[tuple[int, str]]:
    """(pid, command line) of live processes working inside ``worktree``, or carrying every variable
    of ``markers`` (e.g. the lane's ``SPINE_RUN_ID`` and ``SPINE_LANE_ID``) in their environment."""
    if not os.path.isdir("/proc"):
        return []
    root = os.path.realpath(worktree)
    wanted = [f"{k}={v}".encode() for k, v in (markers or {}).items()]
    mine = _ancestors()
    found = []
    # One pass over /proc with plain strings (this runs twice per lane). The working directory is
    # read first: a zombie has none, and only a process that is a candidate has its state read.
    for entry in os.scandir("/proc"):
        name = entry.name
        if not name.isdigit() or int(name) in mine:
            continue
        base = entry.path
        try:
            cwd = os.readlink(base + "/cwd")
        except OSError:
            cwd = ""  # gone, a zombie, or not ours to read: only its environment can tell
        inside = bool(cwd) and (cwd == root or cwd.startswith(root + os.sep))
        if not inside and wanted:
            try:
                with open(base + "/environ", "rb") as handle:
                    environ = handle.read().split(b"\0")
            except OSError:
                environ = []
            inside = all(w in environ for w in wanted)
        if not inside:
            continue
        try:
            with open(base + "/stat", "rb") as handle:
                state = handle.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state in (b"Z", b"X"):
            continue
        try:
            with open(base + "/cmdline", "rb") as handle:
                argv = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            argv = "?"
        found.append((int(name), argv.strip()[:300] or "?"))
    return found


def stop_processes(pids: Sequence[int], grace: float = 1.0) -> list[int]:
    """SIGTERM, then SIGKILL after ``grace``; the pids still alive afterwards (normally none)."""
    import signal

    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def group_members_inside(pgid: int, worktree: Path) -> list[int]:
    """Live processes of group ``pgid`` working inside ``worktree``.

    A recorded group id may have been reused by an unrelated program since; requiring the process's
    working directory to be inside the lane worktree rules that out.
    """
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return []
    root = os.path.realpath(worktree)
    members = []
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            if int(fields[2]) != pgid or fields[0] == b"Z":
                continue
            cwd = os.readlink(entry / "cwd")
        except (OSError, IndexError, ValueError):
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            members.append(int(entry.name))
    return members


# --- the pool -------------------------------------------------------------------------------------


class NotPristine(EnvironmentProblem):
    """A pooled worktree could not be brought back to a clean state; it is discarded, never used."""


@dataclass(frozen=True)
class Taken:
    """A pooled worktree now at the lane's path, on the lane's branch."""

    worktree: LaneWorktree
    slot: str
    cleaned: bool  # untracked or ignored files had to be removed
    seconds: float


def pooled(ctx: ExecutionContext) -> list[Path]:
    """The worktrees waiting in the pool, most recently returned first."""
    root = ctx.workspace.pool
    if not root.is_dir():
        return []
    slots = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(slots, key=lambda p: p.name, reverse=True)


def is_pooled(ctx: ExecutionContext, path: Path) -> bool:
    """True when ``path`` is a worktree waiting in the pool."""
    return path.resolve().parent == ctx.workspace.pool.resolve()


@contextlib.contextmanager
def slot_lock(ctx: ExecutionContext, slot: str) -> Iterator[bool]:
    """Try to lock one slot (a pooled worktree's directory name) without waiting; yields whether
    this process now holds it. While held, no other process takes, trims or discards that worktree."""
    lock = ctx.state.pool_slot_lock(slot)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = False
        else:
            held = True
        yield held
    finally:
        os.close(fd)  # closing releases the lock


def take(
    ctx: ExecutionContext, dest: Path, branch: str, base_sha: str, backend: str | None = None
) -> Taken | None:
    """Move a pristine pooled worktree to ``dest`` on a new ``branch`` at ``base_sha``.

    The keep-list (``pool.keep``: dependency caches) survives only between lanes of the same
    ``backend``: what a sandboxed lane left in a cache must not run on the host in the next one.
    Returns None when no pooled worktree can be used (the pool is empty, every slot is locked, or
    the branch exists already); the caller then creates a fresh worktree.
    """
    started = time.perf_counter()
    repo = ctx.git
    for slot_path in pooled(ctx):
        with slot_lock(ctx, slot_path.name) as held:
            if not held or not (slot_path / ".git").is_file():
                continue  # another lane is taking it, or took it since we listed the pool
            lane = open_worktree(repo, slot_path)
            try:
                if lane is None or lane.problem(repo) is not None:
                    raise NotPristine(f"pooled worktree {slot_path} is not the worktree git registered")
                note = ctx.state.pool_slot_note(slot_path.name)
                came_from = note.read_text(encoding="utf-8").strip() if note.is_file() else None
                keep = backend is not None and came_from == backend
                cleaned = _make_pristine(ctx, lane, base_sha, branch, keep=keep)
            except BranchExists:
                # Most likely a lane being redone: the worktree stays pooled, untouched, and the
                # caller reconciles the branch the way it does without a pool.
                return None
            except (GitFailed, NotPristine):
                _discard(ctx, slot_path)
                repo.delete_ref(f"refs/heads/{branch}", base_sha)  # if the checkout made it
                continue
            with worktrees_lock(ctx, "taking a pooled worktree"):
                moved = _move(repo, lane, dest)
            if not moved:
                # e.g. another file system; the worktree stays pooled, detached, and the branch goes
                lane.detach_at(base_sha)
                repo.delete_ref(f"refs/heads/{branch}", base_sha)
                continue
            ctx.state.pool_slot_lock(slot_path.name).unlink(missing_ok=True)
            ctx.state.pool_slot_note(slot_path.name).unlink(missing_ok=True)
        return Taken(
            worktree=LaneWorktree(path=dest, git_dir=lane.git_dir),
            slot=slot_path.name,
            cleaned=cleaned,
            seconds=time.perf_counter() - started,
        )
    return None


def _move(repo: Repository, lane: LaneWorktree, dest: Path) -> bool:
    """Move a linked worktree to ``dest`` (which must not exist); True when it moved. Call under the
    ``worktrees`` lock.

    What ``git worktree move`` does for a worktree without submodules is a rename and rewriting the
    path git recorded for it (``gitdir`` in its registered git dir, an absolute path); spine does that
    itself, sparing a git process a move, and lets git do it whenever the worktree is not that plain
    case (relative paths, a lock, submodules)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    record = lane.git_dir / "gitdir"
    try:
        recorded = record.read_text(encoding="utf-8").strip()
        dotgit = (lane.path / ".git").read_text(encoding="utf-8").strip()
    except OSError:
        return False
    plain = (
        os.path.isabs(recorded)
        and dotgit.startswith("gitdir: ")
        and os.path.isabs(dotgit.removeprefix("gitdir: "))
        and not (lane.git_dir / "locked").exists()
        and not (lane.path / ".gitmodules").exists()
        and not os.path.lexists(dest)
    )
    if not plain:
        return (
            repo.run(*SAFE_CONFIG, "worktree", "move", str(lane.path), str(dest), check=False).returncode == 0
        )
    try:
        os.rename(lane.path, dest)
    except OSError:
        return False
    try:
        atomic_write_text(
            record, os.path.join(os.path.realpath(dest), ".git") + "\n", redact=False, durable=False
        )
    except OSError:
        os.rename(dest, lane.path)
        return False
    return True


def give_back(ctx: ExecutionContext, lane: LaneWorktree, backend: str | None = None) -> bool:
    """Return a finished lane's worktree to the pool; False (and leave it in place) when it cannot go.

    It goes back only while it is still the lane's own worktree, the pool has room, and no process
    works inside it. The worktree's HEAD is detached, so the lane's branch is no longer checked out
    anywhere. Whatever the lane left behind is cleaned by the next ``take``, not here.
    """
    repo = ctx.git
    if lane.problem(repo) is not None or processes_inside(lane.path):
        return False
    slot = f"{time.time_ns():x}-{secrets.token_hex(2)}"
    dest = ctx.workspace.pool / slot
    with slot_lock(ctx, slot) as held:
        if not held:
            return False
        with worktrees_lock(ctx, "returning a worktree to the pool"):
            if len(pooled(ctx)) >= ctx.config.pool.size:
                return False
            dest.parent.mkdir(parents=True, exist_ok=True)
            head = lane.head()
            try:
                if head.sha is None:
                    return False
                lane.detach_at(head.sha)
                if not _move(repo, lane, dest):
                    return False  # a locked worktree, one with submodules: it stays where it is
            except (GitFailed, OSError):
                return False
            if backend is not None:
                ctx.state.pool_slot_note(slot).write_text(backend + "\n", encoding="utf-8")
            if lane.path.parent.parent == ctx.workspace.worktree_root:
                with contextlib.suppress(OSError):  # the run's last lane worktree: leave no empty directory
                    lane.path.parent.rmdir()
    return True


def remove_pooled(ctx: ExecutionContext, path: Path) -> bool:
    """Remove one pooled worktree unless another process holds its slot; True if it was removed.

    A pooled worktree holds nothing of value (its lane's work is on the lane's branch), so it is
    removed as it is.
    """
    if not is_pooled(ctx, path):
        raise ValueError(f"{path} is not in the worktree pool")
    with slot_lock(ctx, path.name) as held:
        if not held or not path.exists():
            return False
        _discard(ctx, path)
    return True


def forget_free_slot_locks(ctx: ExecutionContext) -> None:
    """Remove lock files of slots whose worktree is gone and that nobody holds."""
    if not ctx.state.pool.is_dir():
        return
    for lock in ctx.state.pool.glob("*.lock"):
        slot = lock.name.removesuffix(".lock")
        if not (ctx.workspace.pool / slot).exists():
            with slot_lock(ctx, slot) as held:
                if held:
                    lock.unlink(missing_ok=True)


class BranchExists(Exception):
    """The lane's branch exists already; a pooled worktree was not touched."""


def _make_pristine(
    ctx: ExecutionContext, lane: LaneWorktree, base_sha: str, branch: str, *, keep: bool = True
) -> bool:
    """Bring ``lane`` to ``base_sha`` on a new ``branch`` with nothing else in it but the keep-list;
    True if files had to be removed. The keep-list is kept only with ``keep``. Raises ``BranchExists`` when the branch exists (nothing was
    changed), ``NotPristine`` (or ``GitFailed``) when a clean worktree cannot be shown.

    A forced checkout makes HEAD, index and every tracked file equal to the base (it exits non-zero
    otherwise), rewriting only the files whose stat data or content differs, and creates the branch
    in the same pass; ``clean`` removes every untracked and ignored file except the keep-list, by
    git's own pattern rules. When it removed anything, a dry run must then find nothing. See
    docs/adr/0050-worktree-pool.md and 0065.
    """
    if lane.head().branch is not None:
        # The pool leaves HEAD detached: a branch means someone used this worktree by hand.
        raise NotPristine(f"pooled worktree {lane.path} has a branch checked out")
    excludes = [f"--exclude={pattern}" for pattern in ctx.config.pool.keep] if keep else []
    checkout = lane.git("checkout", "-q", "-f", "-b", branch, base_sha, check=False)
    if checkout.returncode != 0:
        if ctx.git.branch_exists(branch):
            raise BranchExists(branch)
        raise GitFailed(["checkout", "-f", "-b", branch, base_sha], checkout.returncode, checkout.stderr)
    clean = lane.git("clean", "-ffdx", *excludes)
    removed = bool(clean.stdout.strip() or clean.stderr.strip())
    if removed and lane.git("clean", "-n", "-ffdx", *excludes).stdout.strip():
        raise NotPristine(f"pooled worktree {lane.path} still has untracked files after cleaning")
    return removed


def _discard(ctx: ExecutionContext, path: Path) -> None:
    """Remove a pooled worktree that must not be used (only ever one inside the pool)."""
    if is_pooled(ctx, path):
        remove(ctx, path)
    ctx.state.pool_slot_lock(path.name).unlink(missing_ok=True)
    ctx.state.pool_slot_note(path.name).unlink(missing_ok=True)
