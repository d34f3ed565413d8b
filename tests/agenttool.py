"""A fixture agent for the attempts and repair-loop tests, and the small project it works on.

The project (``write_project``) is a module ``calc.py`` whose functions ``add``, ``sub`` and ``mul``
are broken (the ones named are), and ``check.py``, which tests them and prints ``FAIL test_NAME: ...``
for every test that fails (exit 1 when one does). The check is ``python3 check.py``.

As a script the agent edits ``calc.py`` in its worktree, and what it does depends on which attempt
(``SPINE_ATTEMPT``) and which pass of the repair loop (``SPINE_ITERATION``) it is:

    attempt PASS_ON FUNC   attempt PASS_ON fixes FUNC; every other attempt N breaks it in its own
                           way (attempt 3 also writes NOTES.md, a bigger change)
    fix FUNC               fix FUNC (the same in every attempt)
    wrong FUNC             break FUNC in another way
    repair FIRST [--idle-from N]
                           pass 1 fixes FIRST; every later pass reads $SPINE_FEEDBACK and fixes the
                           first failing test named there (exit 3 if there is no feedback); from
                           pass N on (--idle-from) it changes nothing
    flaky-once FUNC        the first run (per lane) exits 1 without a change; later runs fix FUNC
    sleep SECONDS          sleep first (then go on with the next words)

Every run prints ``agenttool: attempt=.. iteration=.. feedback=..`` and appends the same line to
``$AGENT_LOG/<lane>.log`` when AGENT_LOG is set, so tests can count runs and see what each pass was
given (inside a sandbox that hides AGENT_LOG, from the lane's log).
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

TOOL = Path(__file__).resolve()

RIGHT = {"add": "a + b", "sub": "a - b", "mul": "a * b"}
WRONG = {"add": "a - b", "sub": "a + b", "mul": "a + b"}
OTHER_WRONG = {"add": "a * b", "sub": "b - a", "mul": "a ** b"}

CHECK = """import sys

sys.dont_write_bytecode = True  # a fix of the same size within a second must not meet a stale .pyc

import calc  # noqa: E402

fails = []
for name, got, want in (
    ("add", calc.add(2, 3), 5),
    ("sub", calc.sub(7, 2), 5),
    ("mul", calc.mul(3, 4), 12),
):
    if got != want:
        fails.append(f"FAIL test_{name}: {name} gave {got}, expected {want}")
for line in fails:
    print(line)
print(f"{3 - len(fails)} passed, {len(fails)} failed")
sys.exit(1 if fails else 0)
"""


def calc_source(broken: set[str]) -> str:
    parts = []
    for name in ("add", "sub", "mul"):
        body = WRONG[name] if name in broken else RIGHT[name]
        parts.append(f"def {name}(a, b):\n    return {body}\n")
    return "\n\n".join(parts)


def write_project(root: Path, broken: set[str]) -> None:
    (root / "calc.py").write_text(calc_source(broken))
    (root / "check.py").write_text(CHECK)


def set_body(name: str, body: str) -> None:
    path = Path("calc.py")
    text = path.read_text()
    new = re.sub(rf"(def {name}\(a, b\):\n    return ).*", lambda m: m.group(1) + body, text)
    path.write_text(new)


def main(argv: list[str]) -> int:
    lane = os.environ.get("SPINE_LANE_ID", "lane")
    attempt = int(os.environ.get("SPINE_ATTEMPT", "0") or 0)
    iteration = int(os.environ.get("SPINE_ITERATION", "1") or 1)
    feedback_path = os.environ.get("SPINE_FEEDBACK")
    feedback = Path(feedback_path).read_text() if feedback_path and Path(feedback_path).is_file() else ""
    first = feedback.splitlines()[0] if feedback else ""
    said = f"attempt={attempt} iteration={iteration} feedback={first!r}"
    print(f"agenttool: {said}", flush=True)
    if os.environ.get("AGENT_LOG"):  # not inside a sandbox that hides it
        with open(Path(os.environ["AGENT_LOG"]) / f"{lane}.log", "a") as handle:
            handle.write(said + "\n")
    words = list(argv)
    if words[:1] == ["sleep"]:
        time.sleep(float(words[1]))
        words = words[2:]
    action = words[0]
    if action == "attempt":
        pass_on, name = int(words[1]), words[2]
        if attempt == pass_on:
            set_body(name, RIGHT[name])
        else:
            set_body(name, OTHER_WRONG[name] if attempt % 2 else WRONG[name] + " + 1")
            if attempt == 3:
                Path("NOTES.md").write_text("attempt 3 took notes\nand more notes\n")
        return 0
    if action == "fix":
        set_body(words[1], RIGHT[words[1]])
        return 0
    if action == "wrong":
        set_body(words[1], OTHER_WRONG[words[1]])
        return 0
    if action == "flaky-once":
        marker = Path(os.environ["AGENT_LOG"]) / f"{lane}.flaked"
        if not marker.exists():
            marker.write_text("x")
            return 1
        set_body(words[1], RIGHT[words[1]])
        return 0
    if action == "repair":
        idle_from = int(words[words.index("--idle-from") + 1]) if "--idle-from" in words else None
        if idle_from is not None and iteration >= idle_from:
            return 0
        if iteration == 1:
            set_body(words[1], RIGHT[words[1]])
            return 0
        if not feedback:
            print("agenttool: no feedback for a repair pass", file=sys.stderr)
            return 3
        named = re.search(r"FAIL test_(\w+)", feedback)
        if named is None:
            print("agenttool: the feedback names no failing test", file=sys.stderr)
            return 4
        set_body(named.group(1), RIGHT[named.group(1)])
        return 0
    print(f"agenttool: unknown action {action!r}", file=sys.stderr)
    return 99


def agent(*words: str) -> list[str]:
    """The agent's argv running ``words``."""
    return [sys.executable, str(TOOL), *words]


def agent_shell(*words: str) -> str:
    """The agent as one shell command (for --attempt-command)."""
    return " ".join([sys.executable, str(TOOL), *words])


def runs(log_dir: Path, lane_id: str) -> list[str]:
    path = log_dir / f"{lane_id}.log"
    return path.read_text().splitlines() if path.exists() else []


CHECK_COMMAND = f"{sys.executable} check.py"

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
