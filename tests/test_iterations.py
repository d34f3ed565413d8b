"""The repair loop (--iterations K): while checks fail, the command runs again in the same worktree with
the failing checks' output; on real repositories, with a fixture agent that fixes one failing test per
pass from the feedback it is given (tests/agenttool.py)."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.agenttool import CHECK_COMMAND, agent, calc_source, runs, write_project
from tests.conftest import data_of, git
from tests.lanetool import result, run_json, state_dir, write_batch


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "agent-log"
    folder.mkdir()
    return folder


@pytest.fixture
def env(log_dir: Path) -> dict[str, str]:
    return {"AGENT_LOG": str(log_dir)}


def broken(repo: Path, names: set[str]) -> Path:
    write_project(repo, names)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", f"calc with {', '.join(sorted(names))} broken", cwd=repo)
    return repo


def repair(spine: Any, repo: Path, env: dict[str, str], k: int, *words: str, run_id: str = "r") -> Any:
    return spine(
        "run", "--iterations", str(k), "--run-id", run_id, "--check", CHECK_COMMAND, "fix calc", "--",
        *agent("repair", "add", *words), cwd=repo, env=env,
    )  # fmt: skip


def test_three_iterations_fix_one_test_each_and_the_lane_succeeds_after_the_last(
    spine: Any, repo: Path, env: dict[str, str], log_dir: Path
) -> None:
    base = git("rev-parse", "HEAD", cwd=broken(repo, {"add", "sub", "mul"}))
    proc = repair(spine, repo, env, 3)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lane = result(repo, "r", "fix-calc")
    assert lane["status"] == "succeeded" and lane["failureKind"] is None
    assert "they passed on iteration 3 of at most 3" in lane["summary"]
    iterations = lane["iterations"]
    assert [i["iteration"] for i in iterations] == [1, 2, 3]
    assert [i["checks"][0]["status"] for i in iterations] == ["failed", "failed", "passed"]
    assert [i["checks"][0]["summary"] for i in iterations[:2]] == [
        "exit 1: 1 passed, 2 failed",
        "exit 1: 2 passed, 1 failed",
    ]
    assert all(i["changed"] and i["files"] == ["calc.py"] and len(i["commits"]) == 1 for i in iterations)
    assert [i["diffStat"] for i in iterations] == [{"filesChanged": 1, "insertions": 1, "deletions": 1}] * 3
    # Each pass's work is its own commit; the lane's commits are all of them.
    assert [c["sha"] for c in lane["commits"]] == [i["commits"][0] for i in iterations]
    assert [c["subject"] for c in lane["commits"]] == [
        "fix calc",
        "fix calc (iteration 2)",
        "fix calc (iteration 3)",
    ]
    assert (
        git("log", "-1", "--format=%(trailers:key=Spine-Iteration,valueonly)", "spine/r/fix-calc", cwd=repo)
        == "3"
    )
    assert lane["headSha"] == iterations[-1]["headSha"] == git("rev-parse", "spine/r/fix-calc", cwd=repo)
    assert lane["durationSeconds"] == pytest.approx(sum(i["durationSeconds"] for i in iterations), abs=0.01)
    # Every pass after the first got the failing checks' output, and fixed the test named first there.
    assert runs(log_dir, "fix-calc") == [
        "attempt=0 iteration=1 feedback=''",
        "attempt=0 iteration=2 feedback='# Feedback for iteration 2 of 3'",
        "attempt=0 iteration=3 feedback='# Feedback for iteration 3 of 3'",
    ]
    first = Path(iterations[0]["feedback"])
    assert first == state_dir(repo) / "runs/r/lanes/fix-calc/feedback/iteration-2.md"
    text = first.read_text()
    assert (
        "FAIL test_sub: sub gave 9, expected 5" in text and "FAIL test_mul" in text and "Command: `" in text
    )
    assert "FAIL test_sub" not in Path(iterations[1]["feedback"]).read_text()
    assert iterations[2]["feedback"] is None
    # The feedback never lands in the lane's commits, nor stays in its worktree.
    assert ".spine-feedback.md" not in git(
        "log", "--name-only", "--format=", f"{base}..spine/r/fix-calc", cwd=repo
    )
    worktree = Path(lane["worktreePath"])
    assert not (worktree / ".spine-feedback.md").exists()
    assert git("show", "spine/r/fix-calc:calc.py", cwd=repo) == calc_source(set()).rstrip("\n")


def test_the_loop_stops_as_soon_as_the_checks_pass(
    spine: Any, repo: Path, env: dict[str, str], log_dir: Path
) -> None:
    broken(repo, {"add", "sub"})
    proc = repair(spine, repo, env, 3)
    assert proc.returncode == 0, proc.stderr
    lane = result(repo, "r", "fix-calc")
    assert [i["iteration"] for i in lane["iterations"]] == [1, 2]
    assert len(runs(log_dir, "fix-calc")) == 2
    assert run_json(repo, "r")["lanes"]["fix-calc"]["stepsDone"][-1] == "finalize"


def test_the_loop_stops_at_its_limit_and_the_lane_fails(
    spine: Any, repo: Path, env: dict[str, str], log_dir: Path
) -> None:
    broken(repo, {"add", "sub", "mul"})
    proc = repair(spine, repo, env, 2)
    assert proc.returncode == 1, proc.stderr
    lane = result(repo, "r", "fix-calc")
    assert lane["status"] == "failed" and lane["failureKind"] == "check_failed"
    assert "check python3 failed after 2 iterations (the most it may take)" in lane["summary"]
    assert [i["checks"][0]["status"] for i in lane["iterations"]] == ["failed", "failed"]
    assert lane["iterations"][-1]["feedback"] is None
    assert len(runs(log_dir, "fix-calc")) == 2
    # The next action is a command that works: reproduce the failing check in the lane's worktree.
    assert "reproduce the failing check python3: cd " in lane["nextAction"]
    where = Path(lane["worktreePath"])
    check = subprocess_run(CHECK_COMMAND, where)
    assert check.returncode == 1 and "FAIL test_mul" in check.stdout


def test_the_loop_stops_when_a_pass_changes_nothing(
    spine: Any, repo: Path, env: dict[str, str], log_dir: Path
) -> None:
    broken(repo, {"add", "sub"})
    proc = repair(spine, repo, env, 5, "--idle-from", "2")
    assert proc.returncode == 1, proc.stderr
    lane = result(repo, "r", "fix-calc")
    assert [(i["iteration"], i["changed"]) for i in lane["iterations"]] == [(1, True), (2, False)]
    assert lane["iterations"][1]["commits"] == [] and lane["iterations"][1]["files"] == []
    assert "after 2 iterations: iteration 2 changed nothing" in lane["summary"]
    assert len(runs(log_dir, "fix-calc")) == 2
    assert "changed nothing: the repair loop stops" in Path(lane["logPath"]).read_text()


def test_a_lane_without_iterations_keeps_its_result_as_it_was(
    spine: Any, repo: Path, env: dict[str, str]
) -> None:
    broken(repo, {"add"})
    proc = spine(
        "run",
        "--run-id",
        "r",
        "--check",
        CHECK_COMMAND,
        "fix add",
        "--",
        *agent("fix", "add"),
        cwd=repo,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    lane = result(repo, "r", "fix-add")
    assert lane["iterations"] == [] and lane["attempts"] == [] and lane["pick"] is None
    spec = run_json(repo, "r")["lanes"]["fix-add"]["spec"]
    assert spec["iterations"] == 1


def test_sigkill_between_passes_then_resume_continues_the_right_pass(
    spine: Any, repo: Path, env: dict[str, str], log_dir: Path
) -> None:
    broken(repo, {"add", "sub", "mul"})
    # The first validate sends the lane back to execute; the driver dies right after recording it.
    killed = repair(spine, repo, {**env, "SPINE_CRASH_AT": "fix-calc/validate"}, 3)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    lane = run_json(repo, "r")["lanes"]["fix-calc"]
    assert lane["stepsDone"] == ["create_worktree", "setup"]
    assert [i["iteration"] for i in lane["facts"]["iterations"]] == [1]
    assert lane["facts"].get("execute") is None
    resumed = spine("resume", "r", cwd=repo, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert [line.split(" feedback")[0] for line in runs(log_dir, "fix-calc")] == [
        "attempt=0 iteration=1",
        "attempt=0 iteration=2",
        "attempt=0 iteration=3",
    ]
    final = result(repo, "r", "fix-calc")
    assert final["status"] == "succeeded" and [i["iteration"] for i in final["iterations"]] == [1, 2, 3]


def test_sigkill_during_a_later_pass_redoes_only_that_pass(
    spine: Any, repo: Path, env: dict[str, str], log_dir: Path
) -> None:
    broken(repo, {"add", "sub", "mul"})
    # commit:effects fires in the first pass: the commit is made but not recorded.
    killed = repair(spine, repo, {**env, "SPINE_CRASH_AT": "fix-calc/commit:effects"}, 3)
    assert killed.returncode == -signal.SIGKILL
    assert spine("resume", "r", cwd=repo, env=env).returncode == 0
    final = result(repo, "r", "fix-calc")
    assert final["status"] == "succeeded" and len(final["commits"]) == 3
    assert len(runs(log_dir, "fix-calc")) == 3


def test_stepping_a_repair_loop_equals_driving_it(
    spine: Any, repo: Path, env: dict[str, str], tmp_path: Path
) -> None:
    broken(repo, {"add", "sub"})
    lanes = [
        {
            "id": "fix",
            "objective": "fix calc",
            "command": agent("repair", "add"),
            "checks": [CHECK_COMMAND],
            "iterations": 3,
        }
    ]
    batch = write_batch(tmp_path / "lanes.json", lanes)
    assert spine("batch", str(batch), "--run-id", "loop", cwd=repo, env=env).returncode == 0
    assert spine("batch", str(batch), "--run-id", "step", "--plan", cwd=repo, env=env).returncode == 0
    seen = []
    while True:
        proc = spine("step", "step", "--json", cwd=repo, env=env)
        if proc.returncode == 2:
            break
        assert proc.returncode == 0, proc.stderr
        data = data_of(proc)
        seen.append((data["fired"]["step"], data["lane"]["stepsDone"]))
    # After the first validate the lane is back before execute: stepsDone holds the current pass.
    assert seen[4] == ("validate", ["create_worktree", "setup"])
    assert [step for step, _ in seen] == [
        "create_worktree", "setup", "execute", "commit", "validate", "execute", "commit", "validate", "finalize"
    ]  # fmt: skip
    looped, stepped = result(repo, "loop", "fix"), result(repo, "step", "fix")

    def timeless(text: str) -> str:
        return re.sub(r"\d+(\.\d+)?s\b", "T", text.replace("/step/", "/RUN/").replace("/loop/", "/RUN/"))

    keep = ("status", "failureKind", "summary")
    assert {k: timeless(str(stepped[k])) for k in keep} == {k: timeless(str(looped[k])) for k in keep}
    assert [(i["iteration"], i["changed"], i["checks"][0]["status"]) for i in stepped["iterations"]] == [
        (i["iteration"], i["changed"], i["checks"][0]["status"]) for i in looped["iterations"]
    ]
    assert (
        run_json(repo, "step")["lanes"]["fix"]["stepsDone"]
        == run_json(repo, "loop")["lanes"]["fix"]["stepsDone"]
    )


def test_an_operator_brings_its_iterations(spine: Any, repo: Path, env: dict[str, str]) -> None:
    broken(repo, {"add", "sub"})
    command = " ".join(agent("repair", "add"))
    (repo / ".spine.yaml").write_text(
        "operators:\n"
        "  - id: repair-calc\n"
        "    name: repair calc\n"
        "    modes: [TOOLSMITH]\n"
        f"    command: {json.dumps(command)}\n"
        f"    acceptance: [{json.dumps(CHECK_COMMAND)}]\n"
        "    timebox: 5m\n"
        "    iterations: 3\n"
    )
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "an operator", cwd=repo)
    proc = spine("run", "--op", "repair-calc", "--run-id", "r", cwd=repo, env=env)
    lane = result(repo, "r", "repair-calc")
    assert [i["iteration"] for i in lane["iterations"]] == [1, 2], proc.stderr
    assert [i["acceptance"][0]["verdict"] for i in lane["iterations"]] == ["FAIL", "PASS"]
    assert run_json(repo, "r")["lanes"]["repair-calc"]["spec"]["sources"]["iterations"] == "operator"
    flag = spine("run", "--op", "repair-calc", "--iterations", "1", "--run-id", "r2", cwd=repo, env=env)
    assert flag.returncode == 1
    assert len(result(repo, "r2", "repair-calc")["iterations"]) == 0


def test_attempts_and_iterations_together(spine: Any, repo: Path, env: dict[str, str], log_dir: Path) -> None:
    broken(repo, {"add", "sub"})
    proc = spine(
        "run", "--attempts", "2", "--iterations", "3", "--run-id", "r", "--check", CHECK_COMMAND, "fix calc", "--",
        *agent("repair", "add"), cwd=repo, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lane = result(repo, "r", "fix-calc")
    assert lane["pick"]["attempt"] == 1 and [f["iterations"] for f in lane["attempts"]] == [2, 2]
    assert [i["iteration"] for i in lane["iterations"]] == [1, 2]  # the picked attempt's passes
    assert runs(log_dir, "fix-calc.2")[1].startswith("attempt=2 iteration=2")


def test_bad_iterations_are_refused(spine: Any, repo: Path, tmp_path: Path) -> None:
    for args, said in [
        (("run", "--iterations", "0", "x", "--", "true"), "--iterations: 0 is not a number of iterations"),
        (("run", "--iterations", "51", "x", "--", "true"), "from 1 to 50"),
        (("run", "--iterations", "2", "--backend", "none", "x", "--", "true"), "add --commit"),
    ]:
        proc = spine(*args, cwd=repo)
        assert proc.returncode == 2 and said in proc.stderr, (args, proc.stderr)
    batch = write_batch(
        tmp_path / "b.json", [{"id": "a", "objective": "x", "command": "true", "iterations": 0}]
    )
    proc = spine("batch", str(batch), cwd=repo)
    assert proc.returncode == 2 and "key 'lanes.0.iterations'" in proc.stderr


def subprocess_run(command: str, cwd: Path) -> Any:
    import subprocess

    return subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("backend", ["local-remote", "bubblewrap"])
def test_the_feedback_reaches_a_command_in_an_isolating_backend(
    spine: Any, repo: Path, env: dict[str, str], log_dir: Path, backend: str
) -> None:
    if backend == "bubblewrap":
        from tests.conftest import skip_unless_bubblewrap

        skip_unless_bubblewrap()
    # The agent is part of the project: a sandbox hides the test's own files (a checkout under /tmp).
    (repo / "agenttool.py").write_text(Path(agent("x")[1]).read_text())
    broken(repo, {"add", "sub"})
    proc = spine(
        "run", "--backend", backend, "--iterations", "3", "--run-id", "r", "-q",
        "--check", "python3 check.py", "fix calc", "--", "python3", "agenttool.py", "repair", "add",
        cwd=repo, env={},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lane = result(repo, "r", "fix-calc")
    assert [i["iteration"] for i in lane["iterations"]] == [1, 2]
    said = [line for line in Path(lane["logPath"]).read_text().splitlines() if line.startswith("agenttool:")]
    assert said == [
        "agenttool: attempt=0 iteration=1 feedback=''",
        "agenttool: attempt=0 iteration=2 feedback='# Feedback for iteration 2 of 3'",
    ]
    assert ".spine-feedback.md" not in git("log", "--name-only", "--format=", "spine/r/fix-calc", cwd=repo)


def test_a_symlink_the_lane_put_at_the_feedback_path_is_not_followed(
    spine: Any, repo: Path, tmp_path: Path
) -> None:
    # Pass 1 commits .spine-feedback.md as a link to a file of the host's; pass 2's feedback must not
    # be written through it, and the lane's link stays the lane's work.
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    script = (
        f'if [ -n "$SPINE_FEEDBACK" ]; then echo done > fixed; else ln -s {victim} .spine-feedback.md; fi'
    )
    proc = spine(
        "run", "--iterations", "2", "--run-id", "r", "-q", "--check", "test -f fixed", "plant", "--", "sh", "-c",
        script, cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert victim.read_text() == "precious\n"
    lane = result(repo, "r", "plant")
    assert [i["iteration"] for i in lane["iterations"]] == [1, 2]
    assert "cannot put the feedback" in Path(lane["logPath"]).read_text()
    mode = git("ls-tree", "spine/r/plant", ".spine-feedback.md", cwd=repo).split()[0]
    assert mode == "120000"  # still the link the command committed


def test_a_later_pass_cannot_pass_its_commit_off_as_spines(spine: Any, repo: Path) -> None:
    # Pass 2 reads the Spine-Commit token of pass 1's commit from the history and forges it.
    script = (
        'if [ -n "$SPINE_FEEDBACK" ]; then '
        "token=$(git log -1 --format='%(trailers:key=Spine-Commit,valueonly)' | tr -d '\\n'); "
        "echo done > fixed; git add fixed; "
        'git -c user.name=x -c user.email=x@x commit -qm "forged" -m "Spine-Commit: $token"; '
        "else echo one > one.txt; fi"
    )
    proc = spine(
        "run", "--iterations", "2", "--run-id", "r", "-q", "--check", "test -f fixed", "forge", "--", "sh", "-c",
        script, cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    commits = result(repo, "r", "forge")["commits"]
    assert [(c["subject"], c["madeBy"]) for c in commits] == [
        (commits[0]["subject"], "spine"),
        ("forged", "command"),
    ]
    trailer = git("log", "-1", "--format=%(trailers:key=Spine-Commit,valueonly)", commits[0]["sha"], cwd=repo)
    assert trailer.strip()  # pass 1's commit is spine's, with the token the forger copied
