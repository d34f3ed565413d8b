"""spine land: a local merge queue. The target only moves to trees that passed the gate checks."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import Spine, git, write_files
from tests.landqueue import (
    BASE_FILES,
    SIX_LANES,
    decisions,
    events_of,
    landed_lanes,
    make_repo,
    passing_trees,
    result_of,
    run_lanes,
    state_of,
)


@pytest.fixture
def six(tmp_path: Path, spine: Spine) -> Path:
    repo = make_repo(tmp_path)
    run_lanes(spine, repo, SIX_LANES)
    return repo


@pytest.fixture
def two(tmp_path: Path, spine: Spine) -> Path:
    repo = make_repo(tmp_path)
    run_lanes(spine, repo, {"one": SIX_LANES["one"], "three": SIX_LANES["three"]})
    return repo


def checks_pass(repo: Path, rev: str = "main") -> bool:
    """Run the gate check on a fresh checkout of ``rev``."""
    where = repo.parent / f"verify-{git('rev-parse', rev, cwd=repo)[:12]}"
    git("worktree", "add", "-q", "--detach", str(where), rev, cwd=repo)
    try:
        proc = subprocess.run([sys.executable, "check.py"], cwd=where, capture_output=True, check=False)
        return proc.returncode == 0
    finally:
        git("worktree", "remove", "--force", str(where), cwd=repo)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_lands_what_passes_and_ejects_the_conflict_and_the_breakage(
    six: Path, spine: Spine, tmp_path: Path, jobs: str
) -> None:
    repo = six
    start = git("rev-parse", "main", cwd=repo)
    # Lanes two and five each pass the gate alone; together they break the checks.
    for lane in ("two", "five"):
        alone = spine("gate", "--lane", f"r/{lane}", "-q", cwd=repo)
        assert alone.returncode == 0, alone.stdout

    junit = tmp_path / "land.xml"
    proc = spine("land", "r", "-j", jobs, "--junit", str(junit), cwd=repo)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # some lanes were ejected

    state = state_of(repo)
    got = decisions(state)
    assert {lane for lane, d in got.items() if d["outcome"] == "landed"} == {"one", "two", "three", "six"}
    assert got["four"]["outcome"] == "ejected" and got["four"]["kind"] == "conflict"
    assert got["four"]["conflicts"] == ["shared.txt"]
    assert got["five"]["outcome"] == "ejected" and got["five"]["kind"] == "check-failed"
    assert got["five"]["check"] == "imports"
    assert any("has no attribute 'helper'" in line for line in got["five"]["outputTail"])

    # Each lane landed on top of everything landed before it, in queue order, once.
    assert landed_lanes(repo, since=start) == ["one", "two", "three", "six"]
    # The primary checkout has main: it was moved in place, is clean, and its tree passes the checks.
    assert git("status", "--porcelain", cwd=repo) == ""
    assert (repo / "shared.txt").read_text() == "a\nONE\nc\n"
    assert sorted(p.name for p in repo.glob("mod_*.py")) == [
        "mod_one.py",
        "mod_six.py",
        "mod_three.py",
        "mod_two.py",
    ]
    assert checks_pass(repo)
    # Every commit main pointed at had a tree that passed the gate.
    reached = git("reflog", "show", "--format=%H", "main", cwd=repo).split()
    moved_to = reached[: reached.index(start)]
    assert moved_to and all(
        git("rev-parse", f"{c}^{{tree}}", cwd=repo) in passing_trees(repo) for c in moved_to
    )

    # The speculative batch pays off: fewer gate runs than lanes, and the number is reported.
    assert 0 < state["gateRuns"] < len(SIX_LANES)
    assert f"gate runs: {state['gateRuns']} for 6 queued lanes" in proc.stdout
    assert "conflicts with main in: shared.txt" in proc.stdout
    assert "check imports failed" in proc.stdout

    # Each lane's result records its promotion, or its ejection with the reason.
    for lane in ("one", "two", "three", "six"):
        promotion = result_of(repo, lane)["promotion"]
        assert promotion["via"] == "land" and promotion["target"] == "main" and promotion["gate"] == "passed"
        assert result_of(repo, lane).get("ejection") is None
    four, five = result_of(repo, "four"), result_of(repo, "five")
    assert four["promotion"] is None and four["ejection"]["kind"] == "conflict"
    assert four["ejection"]["conflicts"] == ["shared.txt"] and "shared.txt" in four["nextAction"]
    assert five["ejection"]["check"] == "imports" and "spine gate --lane r/five" in five["nextAction"]
    ejected = [e["lane"] for e in events_of(repo) if e["event"] == "ejected"]
    assert sorted(ejected) == ["five", "four"]

    # JUnit: one test case per landing decision, the ejections as failures naming why.
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == set(SIX_LANES)
    assert suite.get("failures") == "2"
    four_failure = cases["four"].find("failure")
    five_failure = cases["five"].find("failure")
    assert four_failure is not None and "shared.txt" in (four_failure.get("message") or "")
    assert five_failure is not None and "imports" in (five_failure.get("message") or "")
    assert "helper" in (five_failure.text or "")
    assert cases["one"].find("failure") is None


def test_relanding_after_a_fix_tests_only_what_changed(six: Path, spine: Spine) -> None:
    repo = six
    assert spine("land", "r", "-q", cwd=repo).returncode == 1
    # Fix the breakage on main: keep the old name as an alias.
    write_files(repo, {"lib.py": "def assist():\n    return 1\n\n\ndef helper():\n    return assist()\n"})
    git("commit", "-q", "-am", "keep helper as an alias", cwd=repo)

    again = spine.json("land", "r", "--json", "-q", cwd=repo, expect=1)
    assert again == state_of(repo)  # --json prints the recorded state
    assert again["schemaVersion"] == 1 and again["strategy"] == "merge" and again["target"] == "main"
    got = decisions(again)
    assert got["five"]["outcome"] == "landed"
    assert got["four"]["outcome"] == "ejected" and got["four"]["kind"] == "conflict"  # no gate for a conflict
    assert all(got[lane]["outcome"] == "already-landed" for lane in ("one", "two", "three", "six"))
    assert again["gateRuns"] == 1  # only five on the new main was tested
    assert (
        result_of(repo, "five")["ejection"] is None and result_of(repo, "five")["promotion"]["via"] == "land"
    )
    assert checks_pass(repo)

    third = spine.json("land", "r", "--json", "-q", cwd=repo, expect=1)
    assert third["gateRuns"] == 0
    assert landed_lanes(repo).count("five") == 1


@pytest.mark.parametrize(("strategy", "new_commits"), [("merge", 10), ("squash", 5), ("rebase", 5)])
def test_a_batch_that_passes_lands_in_one_move_with_one_gate(
    tmp_path: Path, spine: Spine, strategy: str, new_commits: int
) -> None:
    repo = make_repo(tmp_path)
    lanes = {f"l{i}": {f"mod_l{i}.py": f"VALUE = {i}\n"} for i in range(5)}
    run_lanes(spine, repo, lanes)
    git("checkout", "-q", "--detach", cwd=repo)  # main checked out nowhere: only the ref moves
    start = git("rev-parse", "main", cwd=repo)

    state = spine.json("land", "r", "--json", "--strategy", strategy, cwd=repo)
    assert state["gateRuns"] == 1 and state["moves"] == 1
    assert all(d["outcome"] == "landed" and d["batch"] == list(lanes) for d in state["decisions"])
    # merge: a merge commit and the lane's commit each; squash: one commit; rebase: the lane's commit replayed
    assert len(git("rev-list", f"{start}..main", cwd=repo).split()) == new_commits
    assert sorted(git("ls-tree", "--name-only", "main", cwd=repo).split()) == sorted(
        [*BASE_FILES, ".spine.yaml", *(f"mod_{lane}.py" for lane in lanes)]
    )
    if strategy != "rebase":  # a replayed commit keeps the lane's own message
        assert landed_lanes(repo, since=start) == list(lanes)
    assert git("reflog", "show", "--format=%H", "main", cwd=repo).split()[:2] == [state["targetEnd"], start]
    assert git("rev-parse", "HEAD", cwd=repo) == start  # no checkout was touched
    for lane in lanes:
        commits = result_of(repo, lane)["promotion"]["commits"]
        assert len(commits) == new_commits // 5


def test_named_lanes_land_in_the_order_given(six: Path, spine: Spine) -> None:
    repo = six
    start = git("rev-parse", "main", cwd=repo)
    state = spine.json("land", "r", "three", "one", "--json", "-q", cwd=repo)
    assert state["queue"] == ["three", "one"] and state["named"] is True
    assert landed_lanes(repo, since=start) == ["three", "one"]
    assert result_of(repo, "two").get("promotion") is None  # not named, not touched


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ghost"], "run 'r' has no lane 'ghost'"),
        (["one", "one"], "lane 'one' is named twice"),
        (["--strategy", "ff-only"], "Invalid value for '--strategy'"),
        (["--into", "no-such-branch"], "the target 'no-such-branch' is not a local branch"),
        (["-j", "0"], "Invalid value for '-j'"),
    ],
)
def test_bad_input_is_refused_before_anything_happens(
    two: Path, spine: Spine, args: list[str], message: str
) -> None:
    proc = spine("land", "r", *args, cwd=two)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (two / ".git" / "spine" / "runs" / "r" / "land.json").exists()


def test_unknown_run_is_bad_input(tmp_path: Path, spine: Spine) -> None:
    proc = spine("land", "nope", cwd=make_repo(tmp_path))
    assert proc.returncode == 2 and "no run 'nope'" in proc.stderr


def test_a_lane_named_before_a_lane_it_needs_is_refused(tmp_path: Path, spine: Spine) -> None:
    repo = make_repo(tmp_path)
    run_lanes(
        spine,
        repo,
        {"a": {"mod_a.py": "A = 1\n"}, "b": {"mod_b.py": "B = 1\n"}},
        extra={"b": "needs: [a]"},
    )
    proc = spine("land", "r", "b", "a", cwd=repo)
    assert proc.returncode == 2 and "lane 'b' needs lane 'a', which is named after it" in proc.stderr
    proc = spine("land", "r", "b", cwd=repo)
    assert proc.returncode == 1
    assert decisions(state_of(repo))["b"]["kind"] == "needs-not-landed"
    assert "spine land r a b" in decisions(state_of(repo))["b"]["reason"]


def test_a_stacked_lane_whose_merge_conflicts_lands_by_replaying_its_commits(
    tmp_path: Path, spine: Spine
) -> None:
    repo = make_repo(tmp_path)
    # b starts from a's result and changes the line a wrote: after a is squashed onto main, merging b
    # conflicts (both sides changed that line), while replaying b's own commit applies cleanly.
    run_lanes(
        spine,
        repo,
        {"a": {"shared.txt": "a\nA\nc\n"}, "b": {"shared.txt": "a\nB\nc\n"}},
        extra={"b": "base: 'lane:a'"},
    )
    state = spine.json("land", "r", "--strategy", "squash", "--json", "-q", cwd=repo)
    got = decisions(state)
    assert got["a"]["outcome"] == "landed" and got["a"]["rebased"] is False
    assert got["b"]["outcome"] == "landed" and got["b"]["rebased"] is True
    assert git("show", "main:shared.txt", cwd=repo) == "a\nB\nc"


def test_an_ejected_lane_takes_the_lanes_that_need_it_along(tmp_path: Path, spine: Spine) -> None:
    repo = make_repo(tmp_path)
    run_lanes(
        spine,
        repo,
        {
            "one": {"shared.txt": "a\nONE\nc\n"},
            "four": {"shared.txt": "a\nFOUR\nc\n"},
            "after": {"mod_after.py": "X = 1\n"},
        },
        extra={"after": "needs: [four]"},
    )
    state = spine.json("land", "r", "--json", "-q", cwd=repo, expect=1)
    got = decisions(state)
    assert got["one"]["outcome"] == "landed"
    assert got["four"]["kind"] == "conflict"
    assert got["after"]["kind"] == "needs-ejected" and "four" in got["after"]["reason"]
    assert state["gateRuns"] == 1


def test_refuses_while_a_rebase_is_in_progress_in_the_target_checkout(six: Path, spine: Spine) -> None:
    repo = six
    git("checkout", "-q", "-b", "side", cwd=repo)
    write_files(repo, {"README.md": "side\n"})
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "readme on side", cwd=repo)
    git("checkout", "-q", "main", cwd=repo)
    write_files(repo, {"README.md": "main\n"})
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "readme on main", cwd=repo)
    rebase = subprocess.run(["git", "rebase", "side"], cwd=repo, capture_output=True, check=False)
    assert rebase.returncode != 0 and (repo / ".git" / "rebase-merge").is_dir()  # stopped on the conflict
    before = git("rev-parse", "main", cwd=repo)

    proc = spine("land", "r", cwd=repo)
    assert proc.returncode == 1
    assert "a rebase is in progress" in proc.stderr and "nothing was changed" in proc.stderr
    assert git("rev-parse", "main", cwd=repo) == before

    git("rebase", "--abort", cwd=repo)
    git("checkout", "-q", "main", cwd=repo)
    assert spine("land", "r", "-q", cwd=repo).returncode == 1  # the queue resumes and decides
    assert state_of(repo)["finishedAt"] is not None


def test_the_target_failing_its_own_checks_stops_the_queue_deciding_nothing(
    tmp_path: Path, spine: Spine
) -> None:
    repo = make_repo(tmp_path)
    run_lanes(spine, repo, {"a": {"mod_a.py": "A = 1\n"}})
    write_files(repo, {"mod_broken.py": "raise SystemExit(3)\n"})
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "break main", cwd=repo)
    before = git("rev-parse", "main", cwd=repo)

    proc = spine("land", "r", cwd=repo)
    assert proc.returncode == 1
    assert "main" in proc.stderr and "fails the gate checks itself" in proc.stderr
    assert git("rev-parse", "main", cwd=repo) == before
    assert state_of(repo)["decisions"] == [] and state_of(repo)["finishedAt"] is None
    assert result_of(repo, "a").get("ejection") is None


def test_a_concurrent_push_is_noticed_kept_and_tested_on(tmp_path: Path, spine: Spine) -> None:
    # The gate check itself pushes a commit to the target the first time it runs: the queue's
    # compare-and-swap must notice, keep that commit and test again on top of it.
    marker = tmp_path / "pushed-once"
    push = (
        f"if [ ! -e {marker} ]; then touch {marker}; "
        "export GIT_INDEX_FILE=$(mktemp -u); git read-tree release && "
        "blob=$(echo pushed | git hash-object -w --stdin) && "
        "git update-index --add --cacheinfo 100644,$blob,pushed.txt && "
        "c=$(git commit-tree $(git write-tree) -p release -m 'pushed meanwhile') && "
        "git update-ref refs/heads/release $c; fi; " + f"{sys.executable} check.py"
    )
    repo = make_repo(tmp_path, check=push)
    git("branch", "release", cwd=repo)
    run_lanes(spine, repo, {"a": {"mod_a.py": "A = 1\n"}, "b": {"mod_b.py": "B = 1\n"}})

    state = spine.json("land", "r", "--into", "release", "--json", "-q", cwd=repo)
    assert marker.exists()
    pushed = git("log", "--format=%H", "--grep", "pushed meanwhile", "release", cwd=repo)
    assert pushed, "the commit pushed meanwhile was overwritten"
    assert state["targetMovedUnder"] == 1
    assert state["gateRuns"] == 2  # once on the old target, once on the new one
    assert {d["outcome"] for d in state["decisions"]} == {"landed"}
    assert git("show", "release:pushed.txt", cwd=repo) == "pushed"
    assert any(e["event"] == "land-target-moved" for e in events_of(repo))


@pytest.mark.parametrize("point", ["before-move", "moved", "recording"])
def test_a_crash_around_the_move_resumes_without_landing_twice(
    tmp_path: Path, spine: Spine, point: str
) -> None:
    repo = make_repo(tmp_path)
    lanes = {f"l{i}": {f"mod_l{i}.py": f"VALUE = {i}\n"} for i in range(3)}
    run_lanes(spine, repo, lanes)
    start = git("rev-parse", "main", cwd=repo)

    crashed = spine("land", "r", "-q", cwd=repo, env={"SPINE_CRASH_AT": f"land:{point}"})
    assert crashed.returncode == -9, crashed.stderr
    assert state_of(repo)["pending"] is not None
    moved = git("rev-parse", "main", cwd=repo) != start
    assert moved == (point != "before-move")

    state = spine.json("land", "r", "--json", "-q", cwd=repo)
    assert state["pending"] is None and state["gateRuns"] == 1  # the resume tested nothing again
    assert {d["outcome"] for d in state["decisions"]} == {"landed"}
    assert landed_lanes(repo, since=start) == list(lanes)
    promoted = [e["lane"] for e in events_of(repo) if e["event"] == "promoted"]
    assert sorted(promoted) == sorted(lanes)  # each lane recorded once
    assert git("status", "--porcelain", cwd=repo) == ""


def test_an_unfinished_queue_is_resumed_not_replaced(six: Path, spine: Spine) -> None:
    repo = six
    crashed = spine("land", "r", "-q", cwd=repo, env={"SPINE_CRASH_AT": "land:before-move"})
    assert crashed.returncode == -9
    proc = spine("land", "r", "one", cwd=repo)
    assert proc.returncode == 2
    assert "unfinished landing queue" in proc.stderr and "--restart" in proc.stderr
    assert spine("land", "r", "-q", "--restart", "one", cwd=repo).returncode == 0
    state = state_of(repo)
    assert state["queue"] == ["one"] and decisions(state)["one"]["outcome"] == "landed"


def test_a_second_queue_of_the_same_run_is_refused_while_one_works(two: Path, spine: Spine) -> None:
    from spine.base.locks import hold

    lock = two / ".git" / "spine" / "runs" / "r" / "land.lock"
    with hold(lock, "landing run r"):
        proc = spine("land", "r", cwd=two)
    assert proc.returncode == 3 and "land.lock" in proc.stderr and "landing run r" in proc.stderr


def test_secrets_in_check_output_reach_no_report(tmp_path: Path, spine: Spine) -> None:
    secret = "hunter2-landing-secret"
    check = f'if [ -e mod_bad.py ]; then echo "deploying with $DEPLOY_TOKEN failed"; exit 1; fi; {sys.executable} check.py'
    repo = make_repo(tmp_path, check=check, extra_config=f"env:\n  DEPLOY_TOKEN: {secret}\n")
    run_lanes(spine, repo, {"ok": {"mod_ok.py": "X = 1\n"}, "bad": {"mod_bad.py": "Y = 1\n"}})
    junit = tmp_path / "land.xml"

    proc = spine("land", "r", "--junit", str(junit), cwd=repo)
    assert proc.returncode == 1
    bad = decisions(state_of(repo))["bad"]
    assert bad["kind"] == "check-failed"
    assert any("deploying with [REDACTED] failed" in line for line in bad["outputTail"])
    shown = [
        proc.stdout,
        proc.stderr,
        junit.read_text(),
        json.dumps(state_of(repo)),
        json.dumps(result_of(repo, "bad")),
    ]
    assert all(secret not in text for text in shown)
    assert "[REDACTED]" in junit.read_text() and "[REDACTED]" in proc.stdout


def test_sigterm_during_parallel_gates_stops_them_and_the_queue_resumes(tmp_path: Path, spine: Spine) -> None:
    import os
    import signal
    import time

    finished = tmp_path / "finished"
    finished.mkdir()
    # Each check takes a while, then leaves a mark: a check that was stopped leaves none.
    check = f"sleep 1 && touch {finished}/$SPINE_GATE_TREE && {sys.executable} check.py"
    repo = make_repo(tmp_path, check=check)
    run_lanes(spine, repo, SIX_LANES)
    proc = subprocess.Popen(
        [sys.executable, "-m", "spine", "land", "r", "-j", "2"],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and gate_runs_so_far(repo) < 1:
        time.sleep(0.05)
    time.sleep(0.5)  # the whole batch failed: two gates of the bisection run their checks now
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "`spine land r` resumes" in err
    marks = set(os.listdir(finished))
    time.sleep(1.5)
    assert set(os.listdir(finished)) == marks, "a stopped check ran on"
    assert len(marks) == 1  # only the whole batch's gate had finished
    gates = repo / ".git" / "spine" / "worktrees" / ".gate"
    assert not gates.exists() or not any(gates.iterdir()), "a gate worktree was left behind"
    assert state_of(repo)["finishedAt"] is None and state_of(repo)["decisions"] == []

    resumed = spine.json("land", "r", "--json", "-q", cwd=repo, expect=1)
    got = decisions(resumed)
    assert {lane for lane, d in got.items() if d["outcome"] == "landed"} == {"one", "two", "three", "six"}
    assert resumed["gateCached"] >= 1  # the whole batch was not tested again


def gate_runs_so_far(repo: Path) -> int:
    """The gate runs the queue of run r has recorded (0 before its state exists)."""
    try:
        return int(state_of(repo)["gateRuns"])
    except (OSError, ValueError):
        return 0
