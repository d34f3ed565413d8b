"""What a lane's command could change in the repository it shares with you, remembered before the
command runs and checked after it.

A lane's worktree is a linked worktree: its command (on the local-worktree backend, which contains
nothing) can write the repository's shared git dir, and spine, your other checkouts and your own git
would then obey what it wrote. ``remember`` notes, in one ``git for-each-ref`` and a few file reads:

- every ref outside spine's own, and whether it is symbolic; the lane branch itself;
- the HEAD of each of your checkouts (the primary one and worktrees spine did not make), with a
  signature of its index, to tell a branch switch (which rewrites the index) from HEAD swapped under
  a checkout;
- the files git takes configuration, attributes, excludes, grafts, alternates and hooks from: the
  repository's (their bytes are kept in memory, to put back) and the system's and yours (hashed):
  ``/etc/gitconfig``, ``~/.gitconfig``, ``$XDG_CONFIG_HOME/git/{config,attributes,ignore}``, every
  file a config ``include.path``/``includeIf.*.path`` names, ``core.excludesFile``,
  ``core.attributesFile`` and the hooks directory (``core.hooksPath`` or ``hooks/``).

``check`` compares and says what changed (``Change``); what spine can put back without losing anything
it puts back, compare-and-swap: a deleted branch or tag, a ref made symbolic, a branch rewound or
moved to an unrelated commit, a tag moved, a ref moved onto the lane's own work, a checkout's HEAD
swapped without a checkout, and the repository's own config, excludes, attributes and hooks (the
version the command left is kept beside the lane's state, secrets masked). Files outside the
repository are yours: spine names them and does not write them.

What is *not* a violation, since you may do it while a lane runs: a branch moving forward to commits
that are not the lane's (you committing), a new branch or tag (it is named), a checkout switching
branches, remote-tracking refs and the stash changing (fetch, stash) — unless they now hold the
lane's work.

Ref names and paths are kept as git prints them (undecodable bytes as surrogate escapes) and stored as
ASCII JSON, so any name git allows round-trips. See docs/adr/0067-the-shared-repository-is-guarded.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from spine.base.files import atomic_write_text, read_regular
from spine.base.redact import Redactor
from spine.workspace.context import is_spines_ref
from spine.workspace.repo import Repository
from spine.workspace.worktrees import LaneWorktree

ABSENT = "absent"

# Refs a user changes with fetch, stash or notes: only a move onto the lane's own work is the lane's.
_FREE_NAMESPACES = ("refs/remotes/", "refs/stash", "refs/notes/")
_REPLACE = "refs/replace/"
# Files in the common dir that make your next commit a merge (or cherry-pick, revert); you may be in
# the middle of one yourself, so they are named, never removed.
_NAMED_ONLY = ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD")


@dataclass(frozen=True)
class Ref:
    sha: str
    symref: str = ""  # the ref it points at, when symbolic


@dataclass(frozen=True)
class CheckoutHead:
    """A checkout's HEAD file and a signature of its index (inode, size, mtime)."""

    text: str
    index: str


@dataclass
class SharedState:
    """The repository as a lane's command found it (see the module docstring)."""

    refs: dict[str, Ref]
    lane_branch: Ref | None
    heads: dict[str, CheckoutHead]
    files: dict[str, str]  # path -> "MODE:SHA256" or "absent"
    inside: list[str]  # the files of ``files`` that are the repository's own (spine may put them back)
    contents: dict[str, bytes | None] = field(default_factory=dict)  # kept in memory only

    def to_json(self) -> str:
        return json.dumps(
            {
                "refs": {name: [r.sha, r.symref] for name, r in sorted(self.refs.items())},
                "laneBranch": [self.lane_branch.sha, self.lane_branch.symref] if self.lane_branch else None,
                "heads": {path: [h.text, h.index] for path, h in self.heads.items()},
                "files": self.files,
                "inside": self.inside,
            }
        )  # ensure_ascii: names git allows that are not UTF-8 round-trip as \\udcXX escapes

    @classmethod
    def from_json(cls, text: str) -> SharedState:
        data = json.loads(text)
        lane = data.get("laneBranch")
        return cls(
            refs={name: Ref(*pair) for name, pair in data["refs"].items()},
            lane_branch=Ref(*lane) if lane else None,
            heads={path: CheckoutHead(*pair) for path, pair in data["heads"].items()},
            files=data["files"],
            inside=data["inside"],
        )


@dataclass
class Change:
    """Something in the shared repository that is not as the command found it."""

    what: str  # one line: what changed, and what spine did about it
    violation: bool  # False: named only (a thing you may have done yourself)


# --- remembering ------------------------------------------------------------------------------------


def remember(repo: Repository, wt: LaneWorktree, lane_branch: str, state_root: Path) -> SharedState:
    """The shared repository now (one git process); see the module docstring for what is in it."""
    refs, lane = _refs(wt, lane_branch)
    files, inside = _watched_files(repo, wt)
    contents: dict[str, bytes | None] = {}
    fingerprints = {}
    for path in files:
        fingerprints[path], data = _fingerprint(Path(path))
        if path in inside:
            contents[path] = data
    return SharedState(
        refs=refs,
        lane_branch=lane,
        heads=_checkout_heads(repo, state_root),
        files=fingerprints,
        inside=sorted(inside),
        contents=contents,
    )


def _refs(wt: LaneWorktree, lane_branch: str) -> tuple[dict[str, Ref], Ref | None]:
    out = wt.git("for-each-ref", "--format=%(objectname) %(symref) %(refname)").stdout
    refs: dict[str, Ref] = {}
    lane = None
    full_lane = f"refs/heads/{lane_branch}"
    for line in out.splitlines():
        sha, symref, name = [*line.split(" ", 2), "", ""][:3]
        if not name:
            continue
        if name == full_lane:
            lane = Ref(sha, symref)
        elif not is_spines_ref(name):
            refs[name] = Ref(sha, symref)
    return refs, lane


def _index_signature(path: Path) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return ABSENT
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _checkout_heads(repo: Repository, state_root: Path) -> dict[str, CheckoutHead]:
    """HEAD of the primary checkout and of every worktree that spine did not make."""
    heads = {}
    common = repo.common_dir
    if (common / "index").exists() or repo.primary_checkout != common:
        heads[str(common / "HEAD")] = CheckoutHead(
            _read_text(common / "HEAD"), _index_signature(common / "index")
        )
    try:
        entries = sorted(os.scandir(common / "worktrees"), key=lambda e: e.name)
    except OSError:
        entries = []
    root = os.path.realpath(state_root)
    for entry in entries:
        admin = Path(entry.path)
        where = _read_text(admin / "gitdir")
        if not where or os.path.realpath(where).startswith(root + os.sep):
            continue  # a lane's or the pool's worktree: spine's own, checked by its own lane
        heads[str(admin / "HEAD")] = CheckoutHead(
            _read_text(admin / "HEAD"), _index_signature(admin / "index")
        )
    return heads


def _read_text(path: Path) -> str:
    data = _fingerprint(path)[1]
    return data.decode("utf-8", "surrogateescape").strip() if data is not None else ""


def _fingerprint(path: Path) -> tuple[str, bytes | None]:
    """("MODE:SHA256", bytes) of the file at ``path``, ("absent", None) when there is none, or
    ("special:MODE", None) for what is not a regular file (never read: ``read_regular``). Links are
    followed, as git follows them."""
    found = read_regular(path)
    if found is None:
        return ABSENT, None
    info, data = found
    if data is None:
        return f"special:{info.st_mode:o}", None
    return f"{stat.S_IMODE(info.st_mode):o}:{hashlib.sha256(data).hexdigest()}", data


def _watched_files(repo: Repository, wt: LaneWorktree) -> tuple[list[str], set[str]]:
    """(every file watched, the ones inside the repository's git dir)."""
    common = repo.common_dir
    home = Path(os.environ.get("HOME", "/"))
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "git"
    configs = [common / "config", common / "config.worktree", wt.git_dir / "config.worktree"]
    if not os.environ.get("GIT_CONFIG_NOSYSTEM"):
        configs.append(Path(os.environ.get("GIT_CONFIG_SYSTEM") or "/etc/gitconfig"))
    configs += [Path(os.environ.get("GIT_CONFIG_GLOBAL") or home / ".gitconfig"), xdg / "config"]
    found = list(_with_includes(configs, home))
    settings = _settings(found)
    admin: list[Path] = []
    try:
        for entry in sorted(os.scandir(common / "worktrees"), key=lambda e: e.name):
            if os.path.realpath(entry.path) != os.path.realpath(wt.git_dir):
                admin += [Path(entry.path) / "commondir", Path(entry.path) / "config.worktree"]
    except OSError:
        pass
    others = [
        *admin,  # every linked worktree's: where its git takes the repository from, and its config
        *(common / name for name in _NAMED_ONLY),
        common / "shallow",
        common / "info" / "attributes",
        common / "info" / "exclude",
        common / "info" / "grafts",
        common / "objects" / "info" / "alternates",
        _expand(settings.get("core.excludesfile"), home) or xdg / "ignore",
        _expand(settings.get("core.attributesfile"), home) or xdg / "attributes",
    ]
    hooks_dir = _expand(settings.get("core.hookspath"), home) or common / "hooks"
    try:
        hooks = [Path(e.path) for e in os.scandir(hooks_dir) if not e.name.endswith(".sample")]
    except OSError:
        hooks = []
    files = [str(p) for p in dict.fromkeys([*found, *others, *sorted(hooks)]) if p is not None]
    inside = {p for p in files if _is_under(p, common) and not _is_under(p, common / "spine")}
    return files, inside


def _is_under(path: str, root: Path) -> bool:
    return path.startswith(str(root) + os.sep)


def _with_includes(configs: Iterable[Path], home: Path) -> Iterable[Path]:
    """The config files and, recursively, every file their include sections name (conditions are not
    evaluated: a file that is included anywhere is watched)."""
    seen: set[Path] = set()
    todo = list(configs)
    while todo:
        path = todo.pop(0)
        if path in seen or len(seen) > 64:
            continue
        seen.add(path)
        yield path
        for key, value in _config_entries(path):
            if key.endswith(".path") and (key.startswith("include.") or key.startswith("includeif.")):
                target = _expand(value, home, relative_to=path.parent)
                if target is not None:
                    todo.append(target)


def _settings(configs: Iterable[Path]) -> dict[str, str]:
    """The last value of each key across ``configs`` (keys lower-cased, subsections dropped)."""
    found: dict[str, str] = {}
    for path in configs:
        for key, value in _config_entries(path):
            found[key] = value
    return found


_SECTION = re.compile(r'^\[\s*([A-Za-z0-9.-]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\]')


def _config_entries(path: Path) -> Iterable[tuple[str, str]]:
    """(section.key lower-cased, value) of each entry of a git config file, as far as spine needs them:
    section headers (``[core]``, ``[includeIf "gitdir:~/w/"]``), ``key = value`` with quotes and
    comments; a subsection is reduced to the section's name (``includeif.path``)."""
    data = _fingerprint(path)[1]
    if data is None:
        return
    for section, _, key, value in _config_items(data.decode("utf-8", "surrogateescape")):
        yield f"{section}.{key}", value


def _config_items(text: str) -> list[tuple[str, str, str, str]]:
    """(section, subsection, key, value) of each entry of a git config file's text; section and key
    lower-cased."""
    items = []
    section = subsection = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            match = _SECTION.match(line)
            if match:
                name = match.group(1).lower()
                section, _, dotted = name.partition(".")
                subsection = match.group(2) or dotted
                line = line[match.end() :].strip()
            if not line:
                continue
        if not line or line[0] in "#;" or not section:
            continue
        key, eq, value = line.partition("=")
        items.append((section, subsection, key.strip().lower(), _unquote(value) if eq else "true"))
    return items


# Config sections whose changes run no program and change nothing spine's git sees of the lane (your
# identity, remotes, tracking, colours): changed meanwhile, they are named, never undone.
_PLAIN_SECTIONS = frozenset(
    {"user", "remote", "branch", "pull", "push", "fetch", "color", "advice", "log", "format", "gui", "init"}
)


def _plain_config_change(before: bytes, after: bytes) -> list[str] | None:
    """The keys that changed between two versions of a config file, when every one of them is in a
    plain section (``_PLAIN_SECTIONS``); None when any other key changed."""
    old = _config_items(before.decode("utf-8", "surrogateescape"))
    new = _config_items(after.decode("utf-8", "surrogateescape"))
    changed = set(old) ^ set(new)
    if not changed or any(section not in _PLAIN_SECTIONS for section, _, _, _ in changed):
        return None
    return sorted({f"{s}.{sub + '.' if sub else ''}{k}" for s, sub, k, _ in changed})


def _unquote(value: str) -> str:
    out, quoted = [], False
    chars = iter(value.strip())
    for ch in chars:
        if ch == '"':
            quoted = not quoted
        elif ch == "\\":
            nxt = next(chars, "")
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
        elif ch in "#;" and not quoted:
            break
        else:
            out.append(ch)
    return "".join(out).strip()


def _expand(value: str | None, home: Path, relative_to: Path | None = None) -> Path | None:
    if not value:
        return None
    if value.startswith("~/"):
        return home / value[2:]
    path = Path(value)
    if path.is_absolute():
        return path
    return relative_to / path if relative_to is not None else None


# --- checking ---------------------------------------------------------------------------------------


def check(
    repo: Repository,
    wt: LaneWorktree,
    before: SharedState,
    lane_branch: str,
    state_root: Path,
    evidence: Path,
    redactor: Redactor,
) -> list[Change]:
    """What changed in the shared repository since ``before``; puts back what it safely can (see the
    module docstring). ``evidence`` is a directory for the files the command changed."""
    head = wt.head().sha
    changes: list[Change] = []
    refs, lane = _refs(wt, lane_branch)

    def lane_work(sha: str) -> bool:
        """``sha`` is a commit the command made: on the lane's HEAD, not in what the ref held before."""
        return head is not None and repo.is_ancestor(sha, head)

    if before.lane_branch is not None and lane is not None and lane.symref:
        fixed = repo.run(
            "update-ref", "--no-deref", "-m", "spine: the lane branch is a branch", f"refs/heads/{lane_branch}",
            lane.sha, check=False,
        ).returncode == 0  # fmt: skip
        changes.append(
            Change(
                f"made the lane branch a symbolic ref to {_short(lane.symref)}"
                + (f"; spine made it a branch again at {lane.sha[:12]}" if fixed else ""),
                True,
            )
        )
    for name, old in before.refs.items():
        changes += _ref_change(repo, name, old, refs.get(name), lane_work)
    for name in sorted(set(refs) - set(before.refs)):
        new = refs[name]
        if name.startswith(_REPLACE):
            # A replace ref makes git show one commit in place of another: the review command of the
            # result would show what does not land. spine's own git ignores them (GIT_NO_REPLACE_OBJECTS).
            ok = repo.run("update-ref", "--no-deref", "-d", name, new.sha, check=False).returncode == 0
            changes.append(
                Change(f"created the replace ref {name}" + ("; spine removed it" if ok else ""), True)
            )
            continue
        if name.startswith(_FREE_NAMESPACES) and not lane_work(new.sha):
            continue
        link = f" (a symbolic ref to {_short(new.symref)})" if new.symref else ""
        changes.append(Change(f"created {_kind(name)} {_short(name)} at {new.sha[:12]}{link}", False))
    stash = refs.get("refs/stash")
    if stash is not None and stash != before.refs.get("refs/stash"):
        changes.append(_stash_change(repo, stash.sha, lane_branch))
    changes += _head_changes(repo, before, state_root, refs)
    watched, inside = _watched_files(repo, wt)
    files = dict(before.files)
    others = str(repo.common_dir / "worktrees") + os.sep
    for path in watched:  # a hook, an included file or an excludes file that was not there before
        if not path.startswith(others):  # other worktrees come and go with other lanes
            files.setdefault(path, ABSENT)
    for path in [p for p in files if p.startswith(others) and p not in watched]:
        del files[path]  # that worktree was removed meanwhile
    changes += _file_changes(
        repo.common_dir, files, set(before.inside) | inside, before.contents, evidence, redactor
    )
    return changes


def _short(ref: str) -> str:
    return ref.removeprefix("refs/heads/").removeprefix("refs/tags/").removeprefix("refs/")


def _kind(ref: str) -> str:
    return "branch" if ref.startswith("refs/heads/") else "tag" if ref.startswith("refs/tags/") else "ref"


def _ref_change(
    repo: Repository, name: str, old: Ref, new: Ref | None, lane_work: Callable[[str], bool]
) -> list[Change]:
    shown = f"{_kind(name)} {_short(name)}"
    guarded = name.startswith(("refs/heads/", "refs/tags/", _REPLACE))
    if new is None:
        if not guarded or old.symref:
            return []
        # You may delete a branch yourself (or rename it); putting it back loses nothing either way.
        ok = repo.run("update-ref", "-m", "spine: a deleted ref put back", name, old.sha, "", check=False)
        back = f"; spine put it back at {old.sha[:12]} (delete it again if that was you)"
        return [Change(f"deleted {shown}" + (back if ok.returncode == 0 else ""), name.startswith(_REPLACE))]
    if new == old:
        return []
    if new.symref != old.symref:
        if not guarded:
            return []
        if old.symref:
            return [
                Change(f"changed the symbolic ref {shown} to point at {_short(new.symref or new.sha)}", True)
            ]
        ok = repo.run(
            "update-ref", "--no-deref", "-m", "spine: undo a lane's symbolic ref", name, old.sha, check=False
        )
        back = f"; spine made it a branch at {old.sha[:12]} again" if ok.returncode == 0 else ""
        return [Change(f"made {shown} a symbolic ref to {_short(new.symref)}{back}", True)]
    if old.symref:
        return []  # the ref it points at moved; that ref is checked by itself
    if (lane_work(new.sha) and not repo.is_ancestor(new.sha, old.sha)) or name.startswith(_REPLACE):
        # Only the command can have moved a ref onto its own work (or made git show other commits).
        ok = repo.run(
            "update-ref", "--no-deref", "-m", "spine: undo a lane's move", name, old.sha, new.sha, check=False
        )
        back = f"; spine put it back at {old.sha[:12]}" if ok.returncode == 0 else ""
        what = "its own commit" if not name.startswith(_REPLACE) else "another commit"
        return [Change(f"moved {shown} to {what} {new.sha[:12]}{back}", True)]
    if not guarded or repo.is_ancestor(old.sha, new.sha):
        return []  # forward, to commits that are not the lane's: you committing meanwhile
    # A rewrite you may have made yourself (amend, rebase, reset, a moved tag): named, never undone.
    how = "rewound" if repo.is_ancestor(new.sha, old.sha) else "rewrote"
    return [Change(f"{how} {shown} from {old.sha[:12]} to {new.sha[:12]}", False)]


def _stash_change(repo: Repository, sha: str, lane_branch: str) -> Change:
    """A new stash entry: the command's, when git made it on the lane branch ("WIP on BRANCH: ...")."""
    subject = repo.run("log", "-1", "--format=%s", sha, check=False).stdout.strip()
    if lane_branch and f" on {lane_branch}:" in subject:
        return Change(
            f"stashed its work (git stash): it is in your stash as {sha[:12]} ({subject[:80]!r}), not on the "
            "lane branch",
            True,
        )
    return Change(f"the stash changed ({subject[:80]!r})", False)


def _head_commit(text: str, refs: dict[str, Ref]) -> str | None:
    """The commit a HEAD file's text names (through ``refs`` for a branch)."""
    if text.startswith("ref: "):
        ref = refs.get(text.removeprefix("ref: "))
        return ref.sha if ref is not None else None
    return text or None


def _head_changes(
    repo: Repository, before: SharedState, state_root: Path, refs: dict[str, Ref]
) -> list[Change]:
    now = _checkout_heads(repo, state_root)
    changes = []
    for path, old in before.heads.items():
        new = now.get(path)
        checkout = (
            "your checkout"
            if Path(path).parent == repo.common_dir
            else f"the checkout of {Path(path).parent.name}"
        )
        if new is not None and new.text == old.text and new.index != old.index:
            changes.append(Change(f"the index (staged changes) of {checkout} changed", False))
        if new is None or new.text == old.text:
            continue
        was, is_ = _head_name(old.text), _head_name(new.text)
        if new.index != old.index or _head_commit(old.text, before.refs) == _head_commit(new.text, refs):
            # A checkout rewrites the index; `git checkout -b`, `switch -c` and `branch -m` keep the
            # commit. Both are things you do: named, never undone.
            changes.append(Change(f"{checkout} switched from {was} to {is_}", False))
            continue
        # HEAD now names another commit while the index stayed: no checkout does that; put it back.
        restored = _replace_if(repo.common_dir, Path(path), new.text, old.text)
        back = "; spine put it back" if restored else ""
        changes.append(
            Change(f"switched HEAD of {checkout} from {was} to {is_} without a checkout{back}", True)
        )
    return changes


def _head_name(text: str) -> str:
    if text.startswith("ref: "):
        return _short(text.removeprefix("ref: "))
    return f"a detached HEAD at {text[:12]}"


def _replace_if(common: Path, path: Path, expected: str, text: str) -> bool:
    if _read_text(path) != expected or not _reached_without_links(common, path):
        return False
    try:
        atomic_write_text(path, text + "\n", redact=False, durable=False)
    except OSError:
        return False
    return True


def _reached_without_links(common: Path, path: Path) -> bool:
    """True when every directory from the common dir down to ``path``'s is a directory, not a link
    (the command could have replaced ``hooks/`` or a worktree's admin dir with a link to elsewhere:
    spine writes and removes files only where they were)."""
    try:
        rel = path.parent.relative_to(common)
    except ValueError:
        return False
    current = common
    for part in rel.parts:
        current = current / part
        try:
            if not stat.S_ISDIR(os.lstat(current).st_mode):
                return False
        except OSError:
            return False
    return True


def _file_changes(
    common: Path,
    files: dict[str, str],
    inside: set[str],
    contents: dict[str, bytes | None],
    evidence: Path,
    redactor: Redactor,
) -> list[Change]:
    changes = []
    for path, old in files.items():
        new, data = _fingerprint(Path(path))
        if new == old:
            continue
        did = "created" if old == ABSENT else "removed" if new == ABSENT else "changed"
        if Path(path).parent == common and Path(path).name in _NAMED_ONLY:
            changes.append(Change(f"{did} {os.path.relpath(path, common.parent)} in your checkout", False))
            continue
        if path not in inside:
            changes.append(
                Change(f"{did} {path} (yours, outside the repository: spine leaves it to you to check)", True)
            )
            continue
        shown = os.path.relpath(path, common.parent)
        earlier = contents.get(path)
        if data is not None and earlier is not None and Path(path).name in ("config", "config.worktree"):
            plain = _plain_config_change(earlier, data)
            if plain is not None:  # `git config user.email`, `git remote add`: you may do that yourself
                changes.append(Change(f"changed {shown} ({', '.join(plain[:4])})", False))
                continue
        kept = _keep(evidence, shown, data, redactor) if data is not None else None
        restored = _reached_without_links(common, Path(path)) and _put_back(
            Path(path), contents.get(path), old
        )
        if restored:
            note = "; spine removed it" if old == ABSENT else "; spine put it back"
        else:
            note = "; spine could not put it back, check it"
        note += f" (the command's version is kept as {kept})" if kept else ""
        changes.append(Change(f"{did} {shown}{note}", True))
    return changes


def _keep(evidence: Path, shown: str, data: bytes, redactor: Redactor) -> Path | None:
    # The name too is masked: a hook the command named after a secret must not put it in a file name.
    target = evidence / re.sub(r"[^A-Za-z0-9._-]+", "_", redactor.redact_text(shown).replace("/", "__"))
    n = 1
    while target.exists():
        n += 1
        target = target.with_name(f"{target.name.split('~')[0]}~{n}")
    try:
        evidence.mkdir(parents=True, exist_ok=True)
        target.write_text(redactor.redact_text(data.decode("utf-8", "replace")), encoding="utf-8")
    except OSError:
        return None
    return target


def _put_back(path: Path, data: bytes | None, fingerprint: str) -> bool:
    """Write the file back as it was (or remove it, if it was absent), replacing what is there (a link
    the command put there is replaced, not followed). False when its bytes were not kept (a resumed
    lane) or the write failed."""
    try:
        if fingerprint.startswith("special:"):
            return False  # it was not a regular file: nothing to write back
        if fingerprint == ABSENT:
            if os.path.lexists(path):
                os.unlink(path)
            return True
        if data is None:
            return False
        mode = int(fingerprint.split(":", 1)[0], 8)
        tmp = path.with_name(f".{path.name}.spine-restore-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError:
        return False
    return True
