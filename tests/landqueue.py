"""A repository with a finished run of lanes to land, for the tests of ``spine land``.

Each lane copies prepared files into its worktree. The gate check imports every ``mod_*.py`` at
the top of the tree, so a lane that calls a function another lane renamed breaks the checks only
when both have landed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.conftest import Spine, git, write_files

CHECK_PY = """\
import glob, importlib, sys
sys.path.insert(0, ".")
mods = sorted(glob.glob("mod_*.py"))
for path in mods:
    importlib.import_module(path[:-3])
print("imported", len(mods), "modules")
"""

BASE_FILES = {
    "lib.py": "def helper():\n    return 1\n",
    "shared.txt": "a\nb\nc\n",
    "check.py": CHECK_PY,
}

# The scenario of docs/land.md: two renames a function five calls; four conflicts with one.
SIX_LANES: dict[str, dict[str, str]] = {
    "one": {"shared.txt": "a\nONE\nc\n", "mod_one.py": "VALUE = 1\n"},
    "two": {"lib.py": "def assist():\n    return 1\n", "mod_two.py": "import lib\nlib.assist()\n"},
    "three": {"mod_three.py": "VALUE = 3\n"},
    "four": {"shared.txt": "a\nFOUR\nc\n", "mod_four.py": "VALUE = 4\n"},
    "five": {"mod_five.py": "import lib\nlib.helper()\n"},
    "six": {"mod_six.py": "VALUE = 6\n"},
}


def imports_check() -> str:
    return f"{sys.executable} check.py"


def make_repo(root: Path, *, check: str | None = None, extra_config: str = "") -> Path:
    """A repository on main with the base files and a gate check (default: import every module)."""
    repo = root / "repo"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    config = f"gate:\n  checks:\n    - name: imports\n      command: {json.dumps(check or imports_check())}\n"
    write_files(repo, {**BASE_FILES, ".spine.yaml": config + extra_config})
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "base", cwd=repo)
    return repo


def run_lanes(
    spine: Spine,
    repo: Path,
    lanes: dict[str, dict[str, str]],
    *,
    run_id: str = "r",
    extra: dict[str, str] | None = None,
) -> None:
    """Run one batch whose lane ID copies ``lanes[ID]`` into its worktree; every lane must succeed."""
    src = repo.parent / f"src-{run_id}"
    lines = ["lanes:"]
    for lane_id, files in lanes.items():
        write_files(src / lane_id, files)
        more = f", {extra[lane_id]}" if extra and lane_id in extra else ""
        lines.append(
            f"  - {{id: {lane_id}, objective: lane {lane_id}, command: 'cp -R {src / lane_id}/. .'{more}}}"
        )
    batch = repo.parent / f"lanes-{run_id}.yaml"
    batch.write_text("\n".join(lines) + "\n")
    proc = spine("batch", str(batch), "--run-id", run_id, "-j", "2", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def state_of(repo: Path, run_id: str = "r") -> dict[str, Any]:
    return json.loads((repo / ".git" / "spine" / "runs" / run_id / "land.json").read_text())  # type: ignore[no-any-return]


def result_of(repo: Path, lane: str, run_id: str = "r") -> dict[str, Any]:
    path = repo / ".git" / "spine" / "runs" / run_id / "lanes" / lane / "result.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def events_of(repo: Path, run_id: str = "r") -> list[dict[str, Any]]:
    path = repo / ".git" / "spine" / "runs" / run_id / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def decisions(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["laneId"]: d for d in state["decisions"]}


def landed_lanes(repo: Path, branch: str = "main", since: str | None = None) -> list[str]:
    """The lanes whose landing commits are on ``branch``'s first-parent line, oldest first."""
    span = f"{since}..{branch}" if since else branch
    out = git(
        "log", "--first-parent", "--reverse", "--format=%(trailers:key=Spine-Lane,valueonly)", span, cwd=repo
    )
    return [line.strip() for line in out.splitlines() if line.strip()]


def passing_trees(repo: Path) -> set[str]:
    """Trees with a passing verdict in the gate's cache."""
    found = set()
    for path in (repo / ".git" / "spine" / "gate" / "verdicts").glob("*.json"):
        verdict = json.loads(path.read_text())
        if verdict["passed"]:
            found.add(verdict["mergedTree"])
    return found
