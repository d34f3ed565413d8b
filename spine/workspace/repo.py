"""The git questions spine asks of a repository, each answered in one place.

``Repository`` is built once, inside the ExecutionContext, and handed down: resolve a commit, is one
commit an ancestor of another, does a branch exist and where is it, the identity of spine's own
commits, and which private git dir git registered for a linked worktree. Every call runs in the
primary checkout, whose git dir is the user's own (never a lane's).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from spine.base.errors import UsageError
from spine.base.git import clean_env, git

FALLBACK_NAME = "spine"
FALLBACK_EMAIL = "spine@localhost"


@dataclass(frozen=True)
class Repository:
    """One repository: its common git dir and its primary checkout."""

    common_dir: Path
    primary_checkout: Path
    # Whether git has an identity of the user's, asked once per Repository (a batch commits often).
    _has_identity: dict[tuple[str | None, str | None], bool] = field(
        default_factory=dict, compare=False, repr=False
    )

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``git ARGS`` in the primary checkout."""
        return git(*args, cwd=self.primary_checkout, env=env, check=check, input=input)

    def out(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """``git ARGS`` in the primary checkout; its stdout without the trailing newline."""
        return self.run(*args, env=env).stdout.rstrip("\n")

    # --- commits and refs ----------------------------------------------------------------------

    def resolve_commit(self, rev: str, *, at: Path | None = None) -> str | None:
        """The commit ``rev`` names, or None (also for text that is not a revision at all).

        ``at`` resolves it in another checkout of the repository (where ``HEAD`` means that checkout's).
        """
        if not rev.strip() or rev.startswith("-") or "\0" in rev:
            return None
        args = ("rev-parse", "--verify", "-q", "--end-of-options", f"{rev}^{{commit}}")
        proc = git(*args, cwd=at, check=False) if at is not None else self.run(*args, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def resolve_commits(self, revs: Sequence[str]) -> list[str] | None:
        """Every revision of ``revs`` as a commit in one git process, or None if one does not resolve."""
        if any(not r.strip() or r.startswith("-") or "\0" in r for r in revs):
            return None
        # Text starting with "-" was refused above, so no revision can be read as an option.
        proc = self.run("rev-parse", *(f"{r}^{{commit}}" for r in revs), check=False)
        shas = proc.stdout.split()
        return shas if proc.returncode == 0 and len(shas) == len(revs) else None

    def require_commit(
        self, rev: str, *, what: str, given_by: str | None = None, at: Path | None = None
    ) -> str:
        """The commit ``rev`` names, or a UsageError naming ``what`` it was meant to be and where it came from."""
        sha = self.resolve_commit(rev, at=at)
        if sha is not None:
            return sha
        where = f"{given_by}: " if given_by else ""
        if not rev.strip() or rev.startswith("-") or "\0" in rev:
            raise UsageError(f"{where}invalid {what} {rev!r}", "name a branch, tag or commit, e.g. main")
        raise UsageError(
            f"{where}unknown {what} {rev!r}: no branch, tag or commit has that name",
            "check `git branch -a` and `git log --oneline`",
        )

    def branch_sha(self, branch: str) -> str | None:
        """Where local branch ``branch`` points, or None when there is no such branch."""
        return self.resolve_commit(f"refs/heads/{branch}")

    def branch_exists(self, branch: str) -> bool:
        return self.branch_sha(branch) is not None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """True when ``ancestor`` is ``descendant`` or one of its ancestors."""
        proc = self.run("merge-base", "--is-ancestor", ancestor, descendant, check=False)
        return proc.returncode == 0

    def tree_of(self, commit: str) -> str:
        return self.out("rev-parse", f"{commit}^{{tree}}")

    def refs_matching(self, pattern: str) -> list[str]:
        """Full names of the refs ``git for-each-ref PATTERN`` lists, sorted by name."""
        return self.out("for-each-ref", "--sort=refname", "--format=%(refname)", pattern).split()

    def ref_tips(self, pattern: str, *, merged_into: str | None = None) -> dict[str, str]:
        """Full ref name -> commit of the refs ``git for-each-ref PATTERN`` lists, in one git process;
        with ``merged_into``, only those whose tip is that commit or one of its ancestors."""
        args = ["for-each-ref", "--format=%(refname) %(objectname)"]
        if merged_into is not None:
            args.append(f"--merged={merged_into}")
        tips = {}
        for line in self.out(*args, pattern).splitlines():
            ref, _, sha = line.partition(" ")
            tips[ref] = sha
        return tips

    def delete_ref(self, ref: str, old: str | None = None) -> bool:
        """Delete ``ref`` (only if it still points at ``old``, when given); True when it was deleted."""
        args = ["update-ref", "-d", ref] + ([old] if old else [])
        return self.run(*args, check=False).returncode == 0

    # --- what changed ---------------------------------------------------------------------------

    def diff(self, base: str, head: str, *, max_bytes: int) -> tuple[str, bool]:
        """``git diff base..head`` as text, at most ``max_bytes`` of it; (text, whether it was cut).

        Only as much as is kept is read: git is stopped once the limit is reached. External diff
        programs and text conversions are off: a lane's ``.gitattributes`` runs nothing here.
        """
        if any(not rev.strip() or rev.startswith("-") or "\0" in rev for rev in (base, head)):
            raise UsageError(f"invalid revisions for a diff: {base!r}..{head!r}")
        args = ["git", "diff", "--no-color", "--no-ext-diff", "--no-textconv", f"{base}..{head}", "--"]
        proc = subprocess.Popen(
            args,
            cwd=self.primary_checkout,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        try:
            data = proc.stdout.read(max_bytes + 1)
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        cut = len(data) > max_bytes
        return data[:max_bytes].decode("utf-8", "replace"), cut

    def numstat(self, base: str, head: str) -> list[tuple[str, int | None, int | None]]:
        """(path, lines added, lines deleted) per file changed in ``base..head``; None counts for binary files."""
        if any(not rev.strip() or rev.startswith("-") or "\0" in rev for rev in (base, head)):
            raise UsageError(f"invalid revisions for a diff: {base!r}..{head!r}")
        out = self.run("diff", "--numstat", "-z", "--no-renames", f"{base}..{head}", "--").stdout
        rows: list[tuple[str, int | None, int | None]] = []
        for entry in out.split("\0"):
            added, _, rest = entry.partition("\t")
            deleted, _, path = rest.partition("\t")
            if path:
                rows.append(
                    (
                        path,
                        int(added) if added.isdigit() else None,
                        int(deleted) if deleted.isdigit() else None,
                    )
                )
        return rows

    # --- identity ------------------------------------------------------------------------------

    def identity_env(self, name: str | None = None, email: str | None = None) -> dict[str, str]:
        """Author and committer variables for a commit spine makes.

        ``name``/``email`` (from ``commit.author_*`` in .spine.yaml) win; then the user's own git
        identity; when git has none, spine's (so that a commit never fails on a missing identity).
        """
        env: dict[str, str] = {}
        if name:
            env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = name
        if email:
            env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = email
        if name and email:
            return env
        key = (name, email)
        if key not in self._has_identity:
            found = self.run("var", "GIT_COMMITTER_IDENT", env=env, check=False).returncode == 0
            self._has_identity[key] = found
        if self._has_identity[key]:
            return env
        env.setdefault("GIT_AUTHOR_NAME", FALLBACK_NAME)
        env.setdefault("GIT_COMMITTER_NAME", FALLBACK_NAME)
        env.setdefault("GIT_AUTHOR_EMAIL", FALLBACK_EMAIL)
        env.setdefault("GIT_COMMITTER_EMAIL", FALLBACK_EMAIL)
        return env

    # --- linked worktrees ------------------------------------------------------------------------

    def git_dir_of(self, checkout: Path) -> Path:
        """The git dir of a checkout git knows: the common dir for the primary, else its registered one."""
        if checkout == self.primary_checkout:
            return self.common_dir
        return self.registered_git_dir(checkout) or self.common_dir

    def branch_lock_file(self, branch: str) -> Path:
        """The lock file git leaves beside a loose branch ref while it updates it."""
        return self.common_dir / "refs" / "heads" / f"{branch}.lock"

    @property
    def worktrees_admin(self) -> Path:
        """Where git keeps the private git dirs of linked worktrees."""
        return self.common_dir / "worktrees"

    def registered_git_dir(self, worktree: Path) -> Path | None:
        """The private git dir git registered for the linked worktree at ``worktree``, or None.

        Read from git's own records under the common dir (``worktrees/<name>/gitdir``), never from
        the worktree's ``.git`` file: whatever ran in the worktree may have rewritten that.
        """
        admin = self.worktrees_admin
        if not admin.is_dir():
            return None
        wanted = os.path.normpath(os.path.join(os.path.realpath(worktree), ".git"))
        plain = os.path.normpath(os.path.join(str(worktree), ".git"))
        for entry in admin.iterdir():
            try:
                recorded = (entry / "gitdir").read_text(encoding="utf-8").strip()
            except OSError:
                continue
            if os.path.normpath(recorded) in (wanted, plain):
                return entry
        return None
