"""Installing spine as a git hook: ``pre-push`` runs ``spine gate`` on every commit being pushed.

An existing hook is never overwritten silently: installing refuses and says so, unless asked to
chain it (the old hook is kept beside ours and runs first, with the same arguments and input) or to
replace it.
"""

from __future__ import annotations

import shlex
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from spine.base.errors import UsageError
from spine.base.git import git
from spine.workspace.context import ExecutionContext

MARKER = "# spine-managed-hook"
HOOKS = ("pre-push",)

_PRE_PUSH = """#!/bin/sh
{marker} (installed by `spine hooks install pre-push`; remove it with `spine hooks uninstall pre-push`)
# Gates every commit being pushed: is its merge into the gate target clean, and do the checks pass?
# Skip once with: git push --no-verify
input=$(cat)
status=0
{chain}
if [ -x {python} ]; then set -- {python} -m spine; else set -- spine; fi
while read -r local_ref local_sha remote_ref remote_sha; do
    [ -z "$local_sha" ] && continue
    # An id of only zeros (40 digits, or 64 in a SHA-256 repository) is a deletion: nothing to gate.
    case $local_sha in *[!0]*) ;; *) continue ;; esac
    "$@" gate "$local_sha" </dev/null || status=$?
done <<SPINE_EOF
$input
SPINE_EOF
exit $status
"""

_CHAIN = """if [ -x "$0.spine-chained" ]; then
    printf '%s\\n' "$input" | "$0.spine-chained" "$@" || exit $?
fi"""


@dataclass(frozen=True)
class HookInstall:
    path: Path
    chained: Path | None
    replaced: bool


def hooks_dir(ctx: ExecutionContext) -> Path:
    """Where git looks for hooks (honours core.hooksPath)."""
    primary = ctx.repo.primary_checkout
    raw = git("rev-parse", "--git-path", "hooks", cwd=primary).stdout.strip()
    path = Path(raw)
    return path if path.is_absolute() else (primary / path).resolve()


def _check_name(name: str) -> None:
    if name not in HOOKS:
        raise UsageError(f"spine has no {name!r} hook", f"available: {', '.join(HOOKS)}")


def is_spine_hook(path: Path) -> bool:
    try:
        return MARKER in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def install(ctx: ExecutionContext, name: str, *, chain: bool = False, replace: bool = False) -> HookInstall:
    """Write hook ``name``; an existing foreign hook is chained, replaced, or the install refuses."""
    _check_name(name)
    directory = hooks_dir(ctx)
    path = directory / name
    chained = path.with_name(f"{name}.spine-chained")
    replaced = False
    if path.exists() and not is_spine_hook(path):
        if chain:
            if chained.exists():
                raise UsageError(
                    f"{chained} already exists; spine will not overwrite a chained hook",
                    "look at both files and remove the one you do not need",
                )
            path.rename(chained)
        elif replace:
            replaced = True
        else:
            raise UsageError(
                f"{path} already exists and was not installed by spine; it was left unchanged",
                f"keep it and run it first: spine hooks install {name} --chain; "
                f"or overwrite it: spine hooks install {name} --replace",
            )
    text = _PRE_PUSH.format(
        marker=MARKER,
        python=shlex.quote(sys.executable),
        chain=_CHAIN if chained.exists() else "",
    )
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return HookInstall(path=path, chained=chained if chained.exists() else None, replaced=replaced)


def uninstall(ctx: ExecutionContext, name: str) -> str:
    """Remove spine's hook ``name`` and put a chained hook back in its place."""
    _check_name(name)
    path = hooks_dir(ctx) / name
    chained = path.with_name(f"{name}.spine-chained")
    if not path.exists():
        return f"no {name} hook is installed"
    if not is_spine_hook(path):
        raise UsageError(f"{path} was not installed by spine; it was left unchanged")
    path.unlink()
    if chained.exists():
        chained.rename(path)
        return f"removed spine's {name} hook and restored the hook it chained"
    return f"removed spine's {name} hook"
