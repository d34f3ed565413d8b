"""A lane command for the batch tests, plus helpers those tests share.

As a script, it runs a list of actions in order, each ``name`` or ``name:arg``, and records what it
did in ``$LANETOOL_DIR`` (a directory outside the repository), so tests can prove ordering and overlap
from timestamps the commands themselves wrote:

    start            write <dir>/<lane>.start (a time.time() stamp) and count the run in <lane>.runs
    end              write <dir>/<lane>.end
    wait:NAME        wait until <dir>/NAME exists (up to 30 s)
    wait-result:LANE wait until lane LANE of this run has its result file (up to 30 s)
    hang-once:NAME   the first time: write <dir>/NAME (the process group id) and hang for 60 s;
                     later times (a resumed run): go on at once
    touch:NAME       write <dir>/NAME
    sleep:SECONDS    sleep
    write:FILE       write FILE in the worktree (something to commit)
    pid              write the process group id to <dir>/<lane>.pgid
    exit:N           exit with code N
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TOOL = Path(__file__).resolve()


def main(argv: list[str]) -> int:
    folder = Path(os.environ["LANETOOL_DIR"])
    lane = os.environ.get("SPINE_LANE_ID", "lane")
    for action in argv:
        name, _, arg = action.partition(":")
        if name == "start":
            (folder / f"{lane}.start").write_text(repr(time.time()))
            with open(folder / f"{lane}.runs", "a") as handle:
                handle.write("run\n")
        elif name == "end":
            (folder / f"{lane}.end").write_text(repr(time.time()))
        elif name == "wait":
            deadline = time.monotonic() + 30
            while not (folder / arg).exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        elif name == "hang-once":
            if not (folder / arg).exists():
                (folder / arg).write_text(str(os.getpgid(0)))
                time.sleep(60)
        elif name == "wait-result":
            result = Path(os.environ["SPINE_LOG"]).parent.parent / arg / "result.json"
            deadline = time.monotonic() + 30
            while not result.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        elif name == "touch":
            (folder / arg).write_text("x")
        elif name == "sleep":
            time.sleep(float(arg))
        elif name == "write":
            Path(arg).write_text(f"written by {lane}\n")
        elif name == "pid":
            (folder / f"{lane}.pgid").write_text(str(os.getpgid(0)))
        elif name == "exit":
            return int(arg)
        else:
            print(f"lanetool: unknown action {action!r}", file=sys.stderr)
            return 99
    return 0


# --- helpers for the tests ---------------------------------------------------------------------


def cmd(*actions: str) -> list[str]:
    """A lane command (argv list) running ``actions``."""
    return [sys.executable, str(TOOL), *actions]


def lane(lane_id: str, *actions: str, **extra: Any) -> dict[str, Any]:
    """One batch lane running ``actions``."""
    return {"id": lane_id, "objective": f"lane {lane_id}", "command": cmd(*actions), **extra}


def write_batch(path: Path, lanes: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"lanes": lanes}, indent=2))
    return path


def stamp(folder: Path, name: str) -> float:
    return float((folder / name).read_text())


def runs_of(folder: Path, lane_id: str) -> int:
    path = folder / f"{lane_id}.runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout}s")
        time.sleep(0.02)


def spine_popen(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python -m spine ARGS`` in the background (to kill or race it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "spine", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def state_dir(repo: Path) -> Path:
    return repo / ".git" / "spine"


def run_json(repo: Path, run_id: str) -> dict[str, Any]:
    """The run's state as its driver last recorded it (run.json and the lane records newer than it)."""
    from spine.workspace.context import StatePaths
    from spine.workspace.store import read_run

    return read_run(StatePaths(state_dir(repo)), run_id).model_dump(by_alias=True, mode="json")


def result(repo: Path, run_id: str, lane_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (state_dir(repo) / "runs" / run_id / "lanes" / lane_id / "result.json").read_text()
    )
    return data


def git_lines(repo: Path, *args: str) -> list[str]:
    out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
