"""Best of N: a lane with attempts runs each attempt as a lane of its own, compares them by what spine
measured, picks one by a rule (or by hand), and promotes the pick; on real repositories, with a
fixture agent that behaves differently per attempt (tests/agenttool.py)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from spine.model.attempts import agreement, choose, diff_tokens
from spine.model.result import Agreement, AttemptFigures, LaneStatus
from tests.agenttool import CHECK_COMMAND, agent, agent_shell, runs, write_project
from tests.conftest import data_of, git
from tests.lanetool import (
    TOOL,
    git_lines,
    result,
    run_json,
    spine_popen,
    stamp,
    state_dir,
    wait_for,
    write_batch,
)


@pytest.fixture
def project(repo: Path) -> Path:
    """The repository with calc.py (add is broken) and check.py committed on main."""
    write_project(repo, {"add"})
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "calc with a broken add", cwd=repo)
    return repo


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "agent-log"
    folder.mkdir()
    return folder


@pytest.fixture
def env(log_dir: Path, tmp_path: Path) -> dict[str, str]:
    marks = tmp_path / "marks"
    marks.mkdir()
    return {"AGENT_LOG": str(log_dir), "LANETOOL_DIR": str(marks)}


def best_of_three(spine: Any, repo: Path, env: dict[str, str], *extra: str, run_id: str = "r") -> Any:
    """`spine run --attempts 3` where only attempt 2 fixes add (1 and 3 break it their own ways)."""
    return spine(
        "run", "--attempts", "3", "--run-id", run_id, "--check", CHECK_COMMAND, *extra,
        "fix add", "--", *agent("attempt", "2", "add"),
        cwd=repo, env=env,
    )  # fmt: skip


def test_best_of_three_picks_the_attempt_that_passed_and_promote_lands_exactly_it(
    spine: Any, project: Path, env: dict[str, str], log_dir: Path
) -> None:
    base = git("rev-parse", "HEAD", cwd=project)
    proc = best_of_three(spine, project, env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    # Each attempt is a lane of its own: its branch, its worktree, told which attempt it is.
    state = run_json(project, "r")
    assert list(state["lanes"]) == ["fix-add", "fix-add.1", "fix-add.2", "fix-add.3"]
    assert state["lanes"]["fix-add"]["spec"]["attempts"] == ["fix-add.1", "fix-add.2", "fix-add.3"]
    for n in (1, 2, 3):
        lane = state["lanes"][f"fix-add.{n}"]
        assert (lane["spec"]["attemptOf"], lane["spec"]["attempt"]) == ("fix-add", n)
        assert lane["branch"] == f"spine/r/fix-add.{n}"
        assert runs(log_dir, f"fix-add.{n}") == [f"attempt={n} iteration=1 feedback=''"]
        attempt = result(project, "r", f"fix-add.{n}")
        assert (attempt["attempt"], attempt["attemptOf"]) == (n, "fix-add")
    assert {result(project, "r", f"fix-add.{n}")["status"] for n in (1, 3)} == {"failed"}
    # The pool takes back the worktree of the attempt that passed; failed attempts keep theirs.
    assert result(project, "r", "fix-add.2")["worktreeKept"] is False
    assert all(Path(result(project, "r", f"fix-add.{n}")["worktreePath"]).is_dir() for n in (1, 3))

    lane = result(project, "r", "fix-add")
    assert lane["status"] == "succeeded" and lane["laneId"] == "fix-add"
    assert (
        lane["pick"]["attempt"] == 2 and lane["pick"]["by"] == "rule" and lane["pick"]["rule"] == "smallest"
    )
    assert lane["pick"]["reason"] == "attempt 2 is the only attempt that passed every check"
    assert lane["branch"] == "spine/r/fix-add.2"
    assert lane["headSha"] == git("rev-parse", "spine/r/fix-add.2", cwd=project)
    figures = {f["attempt"]: f for f in lane["attempts"]}
    assert [figures[n]["status"] for n in (1, 2, 3)] == ["failed", "succeeded", "failed"]
    assert [figures[n]["checksPassed"] for n in (1, 2, 3)] == [0, 1, 0]
    assert figures[3]["files"] == ["NOTES.md", "calc.py"] and figures[2]["files"] == ["calc.py"]
    assert figures[3]["insertions"] > figures[2]["insertions"]
    assert all(0 <= figures[n]["agreement"]["files"] <= 1 for n in (1, 2, 3))
    assert figures[1]["agreement"]["lines"] > figures[2]["agreement"]["lines"]  # 1 and 3 made the same edit
    assert "attempt 2 of 3 picked" in lane["summary"]
    assert "spine promote r/fix-add`" in lane["nextAction"]

    # spine compare shows why.
    shown = spine("compare", "r/fix-add", cwd=project)
    assert shown.returncode == 0, shown.stderr
    rows = [line for line in shown.stdout.splitlines() if "fix-add." in line]
    assert len(rows) == 3 and rows[1].lstrip().startswith("* 2 fix-add.2")
    assert "succeeded" in rows[1] and "check_failed" in rows[0] and "check_failed" in rows[2]
    assert (
        "pick: attempt 2 (by the rule smallest): attempt 2 is the only attempt that passed every check"
        in shown.stdout
    )
    data = spine.json("compare", "r/fix-add", "--json", cwd=project)
    assert data["pick"]["attempt"] == 2 and data["rulePick"] == 2 and data["compared"] is True
    assert [a["checksPassed"] for a in data["attempts"]] == [0, 1, 0]
    assert {(p["a"], p["b"]) for p in data["agreement"]} == {(1, 2), (1, 3), (2, 3)}

    # spine promote lands exactly attempt 2's change.
    landed = spine("promote", "r/fix-add", cwd=project)
    assert landed.returncode == 0, landed.stderr
    assert git("rev-parse", "main^{tree}", cwd=project) == git(
        "rev-parse", "spine/r/fix-add.2^{tree}", cwd=project
    )
    assert git("diff", base, "main", cwd=project) == git("diff", base, "spine/r/fix-add.2", cwd=project)
    assert not (project / "NOTES.md").exists()
    assert "return a + b" in (project / "calc.py").read_text()
    promoted = result(project, "r", "fix-add")["promotion"]
    assert promoted["laneHead"] == git("rev-parse", "spine/r/fix-add.2", cwd=project)
    assert result(project, "r", "fix-add.2")["promotion"] == promoted
    graded = spine.json("score", "r/fix-add", "r/fix-add.1", "--json", cwd=project)
    assert [(g["score"], g["contradictions"]) for g in graded["results"]] == [(100, []), (100, [])]


def test_pick_by_hand_overrides_the_rule_and_promote_lands_the_override(
    spine: Any, project: Path, env: dict[str, str]
) -> None:
    small = agent_shell("fix", "add")
    big = agent_shell("attempt", "2", "add") + " && echo notes > NOTES.md"
    proc = spine(
        "run", "--run-id", "r", "--check", CHECK_COMMAND, "--attempt-command", small, "--attempt-command", big,
        "fix add", cwd=project, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lane = result(project, "r", "fix-add")
    assert [f["status"] for f in lane["attempts"]] == ["succeeded", "succeeded"]
    assert lane["attempts"][0]["command"][-1].endswith("fix add")
    assert lane["pick"]["attempt"] == 1
    assert lane["pick"]["reason"].startswith(
        "attempts 1, 2 passed every check; the smallest passing change is attempt 1"
    )

    lane = spine.json("pick", "r/fix-add", "2", "--json", cwd=project)
    assert lane["pick"]["attempt"] == 2 and lane["pick"]["by"] == "user"
    assert lane["branch"] == "spine/r/fix-add.2" and lane["status"] == "succeeded"
    assert result(project, "r", "fix-add") == lane
    shown = spine("compare", "r/fix-add", cwd=project)
    assert "pick: attempt 2 (by hand)" in shown.stdout and "the rule's own pick: 1" in shown.stdout

    assert spine("promote", "r/fix-add", cwd=project).returncode == 0
    assert (project / "NOTES.md").read_text() == "notes\n"
    assert git("rev-parse", "main^{tree}", cwd=project) == git(
        "rev-parse", "spine/r/fix-add.2^{tree}", cwd=project
    )
    again = spine("pick", "r/fix-add", "1", cwd=project)
    assert again.returncode == 2 and "was promoted already" in again.stderr


def test_pick_and_compare_refuse_what_they_cannot_do(spine: Any, project: Path, env: dict[str, str]) -> None:
    assert best_of_three(spine, project, env).returncode == 0
    cases = [
        (("pick", "r/fix-add", "4"), "has no attempt 4"),
        (("pick", "r/fix-add.2", "1"), "is an attempt of lane fix-add"),
        (("compare", "r/nope"), "has no lane 'nope'"),
        (("pick", "r", "1"), "pick needs RUN/LANE"),
    ]
    for args, said in cases:
        proc = spine(*args, cwd=project)
        assert proc.returncode == 2 and said in proc.stderr, (args, proc.stderr)
    plain = spine("run", "--run-id", "p", "plain", "--", "true", cwd=project)
    assert plain.returncode == 0
    proc = spine("compare", "p/plain", cwd=project)
    assert proc.returncode == 2 and "has no attempts" in proc.stderr


def test_when_no_attempt_passes_nothing_is_picked_and_the_next_action_works(
    spine: Any, project: Path, env: dict[str, str], log_dir: Path
) -> None:
    proc = spine(
        "run", "--attempts", "2", "--run-id", "r", "--check", CHECK_COMMAND, "fix add", "--",
        *agent("flaky-once", "add"), cwd=project, env=env,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lane = result(project, "r", "fix-add")
    assert lane["status"] == "failed" and lane["failureKind"] == "attempts_failed"
    assert lane["pick"]["attempt"] is None and lane["branch"] is None and lane["commits"] == []
    assert lane["summary"].startswith("none of the 2 attempts succeeded")
    graded = spine.json("score", "r/fix-add", "--json", cwd=project)
    assert graded["results"][0]["score"] == 100 and graded["results"][0]["contradictions"] == []
    refused = spine("promote", "r/fix-add", cwd=project)
    assert refused.returncode == 1 and "picked none of its attempts" in refused.stderr
    # The next action names commands that work: compare, then retry the lane's attempts.
    assert "spine compare r/fix-add" in lane["nextAction"]
    assert spine("compare", "r/fix-add", cwd=project).returncode == 0
    retry = "spine resume r --retry --lane fix-add"
    assert retry in lane["nextAction"]
    again = spine(*retry.split()[1:], cwd=project, env=env)
    assert again.returncode == 0, again.stderr
    lane = result(project, "r", "fix-add")
    assert lane["status"] == "succeeded" and lane["pick"]["attempt"] == 1
    assert len(runs(log_dir, "fix-add.1")) == 2 and len(runs(log_dir, "fix-add.2")) == 2
    previous = state_dir(project) / "runs/r/attempts/fix-add/1/result.json"
    assert json.loads(previous.read_text())["failureKind"] == "attempts_failed"


def test_stop_on_pass_cancels_the_attempts_still_to_come(
    spine: Any, project: Path, env: dict[str, str], log_dir: Path
) -> None:
    proc = spine(
        "run", "--attempts", "3", "-j", "1", "--stop-on-pass", "--run-id", "r", "--check", CHECK_COMMAND,
        "fix add", "--", *agent("attempt", "1", "add"), cwd=project, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert runs(log_dir, "fix-add.1") and not runs(log_dir, "fix-add.2") and not runs(log_dir, "fix-add.3")
    for n in (2, 3):
        stopped = result(project, "r", f"fix-add.{n}")
        assert stopped["status"] == "canceled"
        assert stopped["summary"] == "not started: attempt 1 passed every check (--stop-on-pass)"
    lane = result(project, "r", "fix-add")
    assert lane["pick"]["attempt"] == 1 and lane["status"] == "succeeded"


def test_stop_on_pass_stops_attempts_that_are_running(spine: Any, project: Path, env: dict[str, str]) -> None:
    slow = agent_shell("sleep", "60", "fix", "add")
    started = time.monotonic()
    proc = spine(
        "run", "--run-id", "r", "--stop-on-pass", "--check", CHECK_COMMAND, "--attempt-command", agent_shell("fix", "add"),
        "--attempt-command", slow, "--attempt-command", slow, "fix add", cwd=project, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 50
    for n in (2, 3):
        stopped = result(project, "r", f"fix-add.{n}")
        assert stopped["status"] == "canceled" and "attempt 1 passed every check" in stopped["summary"]
    assert result(project, "r", "fix-add")["pick"]["attempt"] == 1


def test_attempts_respect_jobs(spine: Any, project: Path, env: dict[str, str]) -> None:
    marks = Path(env["LANETOOL_DIR"])
    proc = spine(
        "run", "--attempts", "3", "-j", "2", "--run-id", "r", "overlap", "--",
        "python3", str(TOOL), "start", "sleep:0.8", "end", cwd=project, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    spans = [(stamp(marks, f"overlap.{n}.start"), stamp(marks, f"overlap.{n}.end")) for n in (1, 2, 3)]
    at_once = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert at_once == 2, spans
    assert run_json(project, "r")["jobs"] == 2


@pytest.mark.parametrize(
    "crash_at",
    [
        "fix-add.2/commit",  # attempt 1 done, attempt 2 committed, attempt 3 not started
        "fix-add.2/execute:begin",  # attempt 2's command was about to run
        "fix-add/compare:effects",  # every attempt done, the comparison made but not recorded
    ],
)
def test_sigkill_in_the_middle_of_attempts_then_resume_runs_only_what_was_unfinished(
    spine: Any, project: Path, env: dict[str, str], log_dir: Path, crash_at: str
) -> None:
    killed = best_of_three(spine, project, {**env, "SPINE_CRASH_AT": crash_at}, "-j", "1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = {n: len(runs(log_dir, f"fix-add.{n}")) for n in (1, 2, 3)}
    assert before[1] == 1
    state = run_json(project, "r")["lanes"]
    assert state["fix-add.1"]["stepsDone"][-1] == "finalize"
    assert "finalize" not in state["fix-add"]["stepsDone"]
    resumed = spine("resume", "r", "--json", cwd=project, env=env)
    assert resumed.returncode == 0, resumed.stderr
    # Every attempt's command ran once in all: what had run before the crash never ran again.
    assert {n: len(runs(log_dir, f"fix-add.{n}")) for n in (1, 2, 3)} == {1: 1, 2: 1, 3: 1}
    lane = result(project, "r", "fix-add")
    assert lane["status"] == "succeeded" and lane["pick"]["attempt"] == 2
    events = (state_dir(project) / "runs/r/events.jsonl").read_text()
    assert events.count('"step-started", "lane": "fix-add.1"') == 6  # attempt 1 took its six steps once
    assert json.loads(resumed.stdout)["exitCode"] == 0


def test_a_batch_lane_with_attempts_as_a_number_and_as_a_list(
    spine: Any, project: Path, env: dict[str, str], tmp_path: Path, log_dir: Path
) -> None:
    batch = write_batch(
        tmp_path / "lanes.json",
        [
            {
                "id": "add",
                "objective": "fix add",
                "command": agent("attempt", "2", "add"),
                "attempts": 2,
                "checks": [CHECK_COMMAND],
            },
            {
                "id": "mixed",
                "objective": "fix add, two ways",
                "attempts": [agent_shell("wrong", "add"), {"command": agent("fix", "add")}],
                "checks": [CHECK_COMMAND],
                "pick": "first",
            },
            {
                "id": "after",
                "objective": "build on the pick",
                "command": "cat calc.py > seen.txt",
                "base": "lane:add",
            },
        ],
    )
    proc = spine("batch", str(batch), "-j", "2", "--run-id", "b", "--json", cwd=project, env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["exitCode"] == 0
    assert result(project, "b", "add")["pick"]["attempt"] == 2
    mixed = result(project, "b", "mixed")
    assert mixed["pick"]["attempt"] == 2 and mixed["pick"]["rule"] == "first"
    assert [f["status"] for f in mixed["attempts"]] == ["failed", "succeeded"]
    assert runs(log_dir, "mixed.1") and runs(log_dir, "mixed.2")
    # A lane stacked on a lane with attempts starts from its pick.
    after = result(project, "b", "after")
    assert after["baseSha"] == git("rev-parse", "spine/b/add.2", cwd=project)
    seen = git("show", "spine/b/after:seen.txt", cwd=project)
    assert "return a + b" in seen


def test_cancel_of_a_lane_with_attempts_cancels_its_attempts(
    spine: Any, project: Path, env: dict[str, str]
) -> None:
    marks = Path(env["LANETOOL_DIR"])
    proc = spine_popen(
        "run", "--attempts", "2", "--run-id", "c", "slow", "--", "python3", str(TOOL), "start", "touch:up-{}", "sleep:60",
        cwd=project, env=env,
    )  # fmt: skip
    try:
        wait_for(marks / "slow.1.start")
        wait_for(marks / "slow.2.start")
        canceled = spine("cancel", "c/slow", cwd=project)
        assert canceled.returncode == 0, canceled.stderr
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    lane = result(project, "c", "slow")
    assert lane["status"] == "canceled" and lane["failureKind"] == "canceled"
    assert [f["status"] for f in lane["attempts"]] == ["canceled", "canceled"]


def test_bad_attempt_settings_are_refused_before_anything_starts(
    spine: Any, project: Path, tmp_path: Path
) -> None:
    cases = [
        (("run", "--attempts", "0", "x", "--", "true"), "--attempts: 0 is not a number of attempts"),
        (("run", "--attempts", "1000", "x", "--", "true"), "give a whole number from 1 to 50"),
        (("run", "--pick", "best", "--attempts", "2", "x", "--", "true"), "--pick: unknown pick rule 'best'"),
        (("run", "--pick", "first", "x", "--", "true"), "--pick only applies to a lane with attempts"),
        (("run", "--stop-on-pass", "x", "--", "true"), "--stop-on-pass only applies to a lane with attempts"),
        (("run", "-j", "2", "x", "--", "true"), "-j/--jobs only applies to a lane with attempts"),
        (
            ("run", "--attempts", "1", "--attempt-command", "a", "--attempt-command", "b", "x"),
            "1 attempts, but 2 commands to run",
        ),
        (("run", "--attempts", "2", "x"), "no command given"),
        (("run", "--attempts", "2", "--lane", "a" * 99, "x", "--", "true"), "would be named"),
        (
            ("run", "--attempts", "2", "--backend", "none", "x", "--", "true"),
            "cannot have attempts side by side",
        ),
    ]
    for args, said in cases:
        proc = spine(*args, cwd=project)
        assert proc.returncode == 2 and said in proc.stderr, (args, proc.stderr)
    assert not (state_dir(project) / "runs").exists() or not any((state_dir(project) / "runs").iterdir())
    clash = write_batch(
        tmp_path / "clash.json",
        [
            {"id": "a", "objective": "x", "command": "true", "attempts": 2},
            {"id": "a.1", "objective": "y", "command": "true"},
        ],
    )
    proc = spine("batch", str(clash), cwd=project)
    assert proc.returncode == 2 and "lane id 'a.1' is used twice" in proc.stderr
    both = write_batch(
        tmp_path / "both.json", [{"id": "a", "objective": "x", "command": "true", "attempts": ["b"]}]
    )
    proc = spine("batch", str(both), cwd=project)
    assert proc.returncode == 2 and "give no `command` or `op`" in proc.stderr
    picky = write_batch(
        tmp_path / "picky.json", [{"id": "a", "objective": "x", "command": "true", "pick": "first"}]
    )
    proc = spine("batch", str(picky), cwd=project)
    assert proc.returncode == 2 and "only apply with `attempts`" in proc.stderr


def test_stepping_a_run_with_attempts_equals_driving_it(
    spine: Any, project: Path, env: dict[str, str], tmp_path: Path
) -> None:
    lanes = [
        {
            "id": "add",
            "objective": "fix add",
            "command": agent("attempt", "2", "add"),
            "attempts": 3,
            "checks": [CHECK_COMMAND],
        }
    ]
    batch = write_batch(tmp_path / "lanes.json", lanes)
    looped = spine("batch", str(batch), "-j", "2", "--run-id", "loop", cwd=project, env=env)
    assert looped.returncode == 0, looped.stderr
    assert (
        spine("batch", str(batch), "-j", "2", "--run-id", "step", "--plan", cwd=project, env=env).returncode
        == 0
    )
    fired = []
    while True:
        proc = spine("step", "step", "--json", cwd=project, env=env)
        if proc.returncode == 2:
            break
        assert proc.returncode == 0, proc.stderr
        fired.append(data_of(proc)["fired"])
    assert len(fired) == 3 * 6 + 2  # six steps per attempt, then compare and finalize
    assert fired[-2:] == [
        {"lane": "add", "step": "compare", "outcome": "done"},
        {"lane": "add", "step": "finalize", "outcome": "done"},
    ]
    looped_lane, stepped_lane = result(project, "loop", "add"), result(project, "step", "add")
    assert stepped_lane["pick"]["attempt"] == looped_lane["pick"]["attempt"] == 2
    strip = {"completedAt", "durationSeconds", "startedAt", "headSha", "branch", "pickedAt", "score"}

    def plain(figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in f.items() if k not in strip and k != "summary"} for f in figures]

    assert plain(stepped_lane["attempts"]) == plain(looped_lane["attempts"])
    assert run_json(project, "step")["lanes"]["add"]["stepsDone"] == ["compare", "finalize"]
    assert git_lines(project, "branch", "--list", "spine/step/*", "--format=%(refname:short)") == [
        "spine/step/add.1",
        "spine/step/add.2",
        "spine/step/add.3",
    ]


# --- the comparison and the pick rules, from figures alone ------------------------------------------


def fig(n: int, status: LaneStatus = LaneStatus.SUCCEEDED, **kw: Any) -> AttemptFigures:
    return AttemptFigures(attempt=n, lane_id=f"l.{n}", status=status, score=kw.pop("score", 100), **kw)


def test_each_pick_rule_picks_a_passing_attempt_and_says_why() -> None:
    figures = [
        fig(1, LaneStatus.FAILED, insertions=1, deletions=0, files_changed=1, checks_passed=2, checks_total=3),
        fig(2, insertions=9, deletions=3, files_changed=2, duration_seconds=5.0, completed_at="2026-01-01T00:00:09Z",
            agreement=Agreement(files=1.0, lines=0.8)),
        fig(3, insertions=2, deletions=1, files_changed=1, duration_seconds=9.0, completed_at="2026-01-01T00:00:05Z",
            agreement=Agreement(files=0.5, lines=0.1)),
        fig(4, insertions=2, deletions=1, files_changed=1, duration_seconds=2.0, completed_at="2026-01-01T00:00:07Z",
            agreement=Agreement(files=0.5, lines=0.1)),
    ]  # fmt: skip
    smallest = choose(figures, "smallest")
    assert smallest.attempt == 3  # 3 and 4 tie on size: the lower number wins; 1 is smaller but failed
    assert smallest.reason == (
        "attempts 2, 3, 4 passed every check; the smallest passing change is attempt 3 "
        "(+2 -1 in 1 file; attempt 2: +9 -3 in 2 files; attempt 4: +2 -1 in 1 file)"
    )
    assert choose(figures, "first").attempt == 3
    assert choose(figures, "fastest").attempt == 4
    assert choose(figures, "agreement").attempt == 2
    assert "agreement 0.80 of lines" in choose(figures, "agreement").reason
    with pytest.raises(ValueError, match="unknown pick rule"):
        choose(figures, "best")


def test_a_warning_verdict_ranks_after_a_pass_and_nothing_failing_is_ever_picked() -> None:
    from spine.model.result import Verdict

    warned = [fig(1, insertions=1, verdict=Verdict.WARN), fig(2, insertions=5, verdict=Verdict.PASS)]
    assert choose(warned, "smallest").attempt == 2
    failing = [
        fig(1, LaneStatus.FAILED, checks_passed=1, checks_total=3, insertions=4),
        fig(2, LaneStatus.FAILED, checks_passed=2, checks_total=3, insertions=9, files_changed=2),
        fig(3, LaneStatus.CANCELED),
    ]
    pick = choose(failing, "smallest")
    assert pick.attempt is None
    assert pick.reason == (
        "none of the 3 attempts succeeded; the closest is attempt 2 (2 of 3 checks passed, +9 -0 in 2 files)"
    )


def test_agreement_compares_changed_files_and_changed_lines() -> None:
    one = diff_tokens("--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-old\n+new\n+  \n")
    assert one == {("x.py", "-", "old"), ("x.py", "+", "new")}
    two = diff_tokens("--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-old\n+other\n--- /dev/null\n+++ b/y.py\n+y\n")
    assert ("y.py", "+", "y") in two
    means, pairs = agreement({1: (["x.py"], one), 2: (["x.py", "y.py"], two), 3: ([], frozenset())})
    assert pairs == [(1, 2, 0.5, 0.25)]
    assert means[1] == means[2] == Agreement(files=0.5, lines=0.25)
    assert means[3] == Agreement()  # changed nothing: agrees with nobody


def test_the_score_catches_a_lane_with_attempts_that_contradicts_its_pick() -> None:
    from spine.model.result import LaneResult, Pick
    from spine.model.score import grade

    figures = [fig(1, LaneStatus.FAILED, head_sha="1" * 40), fig(2, head_sha="2" * 40)]
    result = LaneResult(
        run_id="r", lane_id="l", objective="fix it", status=LaneStatus.SUCCEEDED, sandbox_backend="local-worktree",
        branch="spine/r/l.1", worktree_path="/wt", log_path="/log", base_ref="main", base_sha="b" * 40,
        head_sha="1" * 40, exit_code=0, summary="attempt 1 picked by hand", next_action="land it with spine promote",
        started_at="2026-01-01T00:00:00Z", completed_at="2026-01-01T00:00:01Z", attempts=figures,
        pick=Pick(attempt=1, lane_id="l.1", rule="smallest", by="user", reason="by hand"),
    )  # fmt: skip
    assert grade(result).contradictions == ["status is succeeded but the picked attempt 1 failed"]
    elsewhere = result.model_copy(update={"pick": Pick(attempt=7, rule="smallest", reason="?")})
    assert "the pick names attempt 7, which is not among its attempts" in grade(elsewhere).contradictions
    none = result.model_copy(
        update={
            "status": LaneStatus.FAILED,
            "branch": None,
            "pick": Pick(attempt=None, rule="smallest", reason="?"),
        }
    )
    assert "an attempt succeeded but the rule picked none" in grade(none).contradictions


def test_attempts_can_run_operators_and_their_verdicts_are_compared(
    spine: Any, project: Path, env: dict[str, str], tmp_path: Path
) -> None:
    fix = " ".join(agent("fix", "add"))
    (project / ".spine.yaml").write_text(
        "operators:\n"
        "  - id: fix-add\n"
        "    name: fix add\n"
        "    modes: [TOOLSMITH]\n"
        f"    command: {json.dumps(fix)}\n"
        f"    acceptance: [{json.dumps(CHECK_COMMAND)}]\n"
        "    timebox: 5m\n"
    )
    git("add", "-A", cwd=project)
    git("commit", "-q", "-m", "an operator", cwd=project)
    batch = write_batch(
        tmp_path / "lanes.json",
        [
            {
                "id": "add",
                "objective": "fix add",
                "attempts": [agent_shell("wrong", "add"), {"op": "fix-add"}],
                "checks": [CHECK_COMMAND],
            }
        ],
    )
    proc = spine("batch", str(batch), "--run-id", "b", cwd=project, env=env)
    assert proc.returncode == 1, proc.stderr + proc.stdout
    lane = result(project, "b", "add")
    first, second = lane["attempts"]
    assert (first["status"], first["failureKind"], first["verdict"], first["checksPassed"]) == (
        "failed", "check_failed", None, 0
    )  # fmt: skip
    # The operator passed its acceptance check and the lane's check, but its mode (TOOLSMITH) wants
    # evidence it did not leave.
    assert (second["status"], second["failureKind"], second["verdict"]) == (
        "failed",
        "missing_evidence",
        "FAIL",
    )
    assert (second["checksPassed"], second["checksTotal"], second["evidenceMissing"]) == (
        2,
        2,
        ["help", "smoke"],
    )
    assert result(project, "b", "add.2")["operator"] == "fix-add"
    assert lane["pick"]["attempt"] is None and lane["failureKind"] == "attempts_failed"
    assert lane["pick"]["reason"] == (
        "none of the 2 attempts succeeded; the closest is attempt 2 (2 of 2 checks passed, evidence missing: help, "
        "smoke, +1 -1 in 1 file)"
    )


def test_each_attempt_has_the_lanes_timeout(spine: Any, project: Path, env: dict[str, str]) -> None:
    proc = spine(
        "run", "--run-id", "t", "--timeout", "2", "--check", CHECK_COMMAND, "--attempt-command", "sleep 30",
        "--attempt-command", agent_shell("fix", "add"), "fix add", cwd=project, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lane = result(project, "t", "fix-add")
    assert [(f["status"], f["failureKind"]) for f in lane["attempts"]] == [
        ("failed", "timeout"),
        ("succeeded", None),
    ]
    assert result(project, "t", "fix-add.1")["timeoutKind"] == "wall"
    assert lane["pick"]["attempt"] == 2
