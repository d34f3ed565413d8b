"""`spine run`: one lane end to end, against real repositories and real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Spine, data_of, git, write_files


def run_lane(spine: Spine, repo: Path, *args: str, expect: int | None = 0, **kw: object) -> dict:
    """Run `spine run --json ...` and return the parsed result."""
    return spine.json("run", "--json", *args, cwd=repo, expect=expect, **kw)  # type: ignore[arg-type]


def test_success_commits_on_lane_branch_and_writes_result(spine: Spine, repo: Path) -> None:
    head_before = git("rev-parse", "HEAD", cwd=repo)
    # End to end as a user's shell runs it: its own interpreter, real pipes.
    result = run_lane(
        spine,
        repo,
        "--lane",
        "greet",
        "make the greeting friendlier",
        "--",
        "sh",
        "-c",
        "echo 'echo hello, friend' > src/greet.sh && echo edited",
        subprocess=True,
    )
    assert result["status"] == "succeeded"
    assert result["exitCode"] == 0
    branch = result["branch"]
    assert branch == f"spine/{result['runId']}/greet"
    assert result["laneId"] == "greet"
    assert result["baseSha"] == head_before
    assert result["diffStat"] == {"filesChanged": 1, "insertions": 1, "deletions": 2}
    [commit] = result["commits"]
    assert commit["madeBy"] == "spine" and commit["sha"] == result["headSha"]
    assert git("show", f"{branch}:src/greet.sh", cwd=repo) == "echo hello, friend"
    message = git("log", "-1", "--format=%B", branch, cwd=repo)
    assert "make the greeting friendlier" in message
    assert f"Spine-Run: {result['runId']}" in message and "Spine-Lane: greet" in message
    assert "edited" in Path(result["logPath"]).read_text()
    assert result["summary"].startswith("command succeeded") and "1 file changed" in result["summary"]
    assert branch in result["nextAction"]
    # The primary checkout is untouched: same HEAD, nothing modified.
    assert git("rev-parse", "HEAD", cwd=repo) == head_before
    assert git("status", "--porcelain", cwd=repo) == ""
    # The result file on disk is what --json printed, and run.json records the finished lane.
    state = repo / ".git" / "spine"
    on_disk = json.loads((state / "runs" / result["runId"] / "lanes" / "greet" / "result.json").read_text())
    assert on_disk == result
    run = json.loads((state / "runs" / result["runId"] / "run.json").read_text())
    assert run["lanes"]["greet"]["stepsDone"][-1] == "finalize"


def test_human_output_names_branch_summary_and_next_action(spine: Spine, repo: Path) -> None:
    proc = spine("run", "add notes", "--", "sh", "-c", "echo note > NOTES.md", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "succeeded" in out and "spine/" in out and "summary" in out and "next" in out
    assert "Traceback" not in proc.stderr


def test_failing_command_records_exit_code(spine: Spine, repo: Path) -> None:
    result = run_lane(
        spine, repo, "break it", "--", "sh", "-c", "echo partial > p.txt; echo boom >&2; exit 3", expect=1
    )
    assert result["status"] == "failed"
    assert result["exitCode"] == 3
    assert "exited with code 3" in result["summary"]
    assert "boom" in result["nextAction"]  # the last line of output, to act on without opening the log
    # Partial work is kept on the lane branch for inspection.
    assert git("show", f"{result['branch']}:p.txt", cwd=repo) == "partial"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_timeout_kills_the_whole_process_group(spine: Spine, repo: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $! > {pids}; echo started; sleep 60"
    result = run_lane(spine, repo, "--timeout", "1s", "hang", "--", "sh", "-c", script, expect=1)
    assert result["status"] == "failed"
    assert result["timedOut"] is True and result["timeoutKind"] == "wall"
    assert "timed out" in result["summary"] and "--timeout" in result["nextAction"]
    child = int(pids.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "a background process of the lane survived the timeout"


def test_idle_timeout_stops_a_silent_command(spine: Spine, repo: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"echo working; sleep 60 & echo $! > {pids}; wait"
    result = run_lane(spine, repo, "--idle-timeout", "1", "go quiet", "--", "sh", "-c", script, expect=1)
    assert result["timeoutKind"] == "idle"
    assert "printed nothing" in result["summary"]
    assert not _alive(int(pids.read_text()))


def test_failing_check_means_failed(spine: Spine, repo: Path) -> None:
    result = run_lane(
        spine,
        repo,
        "--check",
        "test -f done.txt",
        "--check",
        "sh -c 'echo nope; exit 1'",
        "do it",
        "--",
        "sh",
        "-c",
        "echo x > done.txt",
        expect=1,
    )
    assert result["status"] == "failed"
    statuses = [(v["name"], v["status"]) for v in result["validation"]]
    assert statuses == [("test", "passed"), ("sh", "failed")]
    assert result["validation"][1]["summary"] == "exit 1: nope"
    assert "check" in result["summary"] and "failed" in result["summary"]
    assert "sh -c 'echo nope; exit 1'" in result["nextAction"]


def test_checks_from_config_run_and_are_skipped_when_the_command_fails(spine: Spine, repo: Path) -> None:
    write_files(repo, {".spine.yaml": "checks:\n  - name: readme\n    command: test -f README.md\n"})
    ok = run_lane(spine, repo, "fine", "--", "true")
    assert ok["validation"][0] | {"durationSeconds": None} == {
        "name": "readme",
        "status": "passed",
        "command": "test -f README.md",
        "summary": "passed",
        "exitCode": 0,
        "durationSeconds": None,
        "outputTail": [],
    }
    bad = run_lane(spine, repo, "broken", "--", "false", expect=1)
    assert bad["validation"][0]["status"] == "skipped"


def test_stdin_is_closed(spine: Spine, repo: Path) -> None:
    # If stdin were inherited, `cat` would copy the input (or block forever on a terminal). A real
    # pipe on spine's stdin, as a shell pipeline gives it.
    result = run_lane(
        spine,
        repo,
        "read stdin",
        "--",
        "sh",
        "-c",
        "cat > got.txt",
        input="secret input\n",
        timeout=30,
        subprocess=True,
    )
    assert result["status"] == "succeeded"
    assert git("show", f"{result['branch']}:got.txt", cwd=repo) == ""


def test_commits_made_by_the_command_are_kept_and_reported(spine: Spine, repo: Path) -> None:
    script = "echo a > a.txt && git add a.txt && git commit -qm 'agent: add a' && echo b > b.txt"
    result = run_lane(spine, repo, "two steps", "--", "sh", "-c", script)
    assert [(c["subject"], c["madeBy"]) for c in result["commits"]] == [
        ("agent: add a", "command"),
        ("two steps", "spine"),
    ]
    assert "1 made by the command" in result["summary"]
    assert git("log", "--format=%s", f"{result['baseSha']}..{result['branch']}", cwd=repo).splitlines() == [
        "two steps",
        "agent: add a",
    ]


def test_no_changes(spine: Spine, repo: Path) -> None:
    result = run_lane(spine, repo, "look around", "--", "true")
    assert result["status"] == "succeeded"
    assert result["commits"] == []
    assert result["headSha"] == result["baseSha"]
    assert "no changes" in result["summary"]
    assert "nothing to review" in result["nextAction"]
    assert "spine gc" in result["nextAction"]


def test_no_git_identity(spine: Spine, repo: Path, isolated_git: Path) -> None:
    isolated_git.write_text("")
    git("config", "user.useConfigOnly", "true", cwd=repo)
    result = run_lane(spine, repo, "anonymous", "--", "sh", "-c", "echo x > x.txt")
    assert result["status"] == "succeeded", result
    assert git("log", "-1", "--format=%an <%ae>", result["branch"], cwd=repo) == "spine <spine@localhost>"


def test_ignored_files_are_not_committed(spine: Spine, repo: Path) -> None:
    result = run_lane(spine, repo, "scratch", "--", "sh", "-c", "echo x > junk.tmp && echo y > kept.txt")
    files = git("ls-tree", "-r", "--name-only", result["branch"], cwd=repo).splitlines()
    assert "kept.txt" in files and "junk.tmp" not in files


def test_repository_path_with_spaces(spine: Spine, tmp_path: Path) -> None:
    root = tmp_path / "my projects" / "the repo"
    root.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=root)
    write_files(root, {"a.txt": "a\n"})
    git("add", "-A", cwd=root)
    git("commit", "-qm", "init", cwd=root)
    result = run_lane(spine, root, "spaces", "--", "sh", "-c", 'echo "$SPINE_WORKTREE" > where.txt')
    assert result["status"] == "succeeded"
    assert git("show", f"{result['branch']}:where.txt", cwd=root) == result["worktreePath"]
    assert " " in result["worktreePath"]


def test_lane_environment(spine: Spine, repo: Path) -> None:
    script = 'env | grep ^SPINE_ | sort > env.txt; echo "$EXTRA" >> env.txt'
    result = run_lane(
        spine, repo, "--lane", "envy", "--env", "EXTRA=yes", "look at env", "--", "sh", "-c", script
    )
    env = dict(
        line.split("=", 1) for line in git("show", f"{result['branch']}:env.txt", cwd=repo).splitlines()[:-1]
    )
    assert env["SPINE_RUN_ID"] == result["runId"]
    assert env["SPINE_LANE_ID"] == "envy"
    assert env["SPINE_WORKTREE"] == result["worktreePath"]
    assert env["SPINE_BASE_SHA"] == result["baseSha"]
    assert env["SPINE_OBJECTIVE"] == "look at env"
    assert git("show", f"{result['branch']}:env.txt", cwd=repo).splitlines()[-1] == "yes"


def test_from_a_subdirectory_and_from_another_lanes_worktree(spine: Spine, repo: Path) -> None:
    first = run_lane(spine, repo / "src", "--keep-worktree", "first", "--", "sh", "-c", "echo 1 > one.txt")
    assert first["status"] == "succeeded"
    assert first["worktreePath"].startswith(str(repo / ".git" / "spine" / "worktrees"))
    # From inside the first lane's worktree, a new lane starts from the primary HEAD, not the lane's.
    second = run_lane(spine, Path(first["worktreePath"]), "second", "--", "sh", "-c", "echo 2 > two.txt")
    assert second["baseSha"] == git("rev-parse", "HEAD", cwd=repo)
    assert Path(second["logPath"]).is_relative_to(repo / ".git" / "spine" / "runs")
    assert "one.txt" not in git("ls-tree", "--name-only", second["branch"], cwd=repo).split()


def test_worktreeinclude_and_setup_commands(spine: Spine, repo: Path) -> None:
    write_files(
        repo,
        {
            ".gitignore": "*.tmp\n.env\nlocal/\n",
            ".env": "TOKEN=abc\n",
            "local/cfg.ini": "x=1\n",
            ".worktreeinclude": ".env\n",
            "untracked-but-not-listed.tmp": "no\n",
            ".spine.yaml": "setup:\n  copy: ['local/']\n  commands: ['echo prepared > setup.out']\n",
        },
    )
    git("add", ".gitignore", ".worktreeinclude", ".spine.yaml", cwd=repo)
    git("commit", "-qm", "config", cwd=repo)
    result = run_lane(
        spine,
        repo,
        "use env",
        "--",
        "sh",
        "-c",
        "cat .env > seen.txt; cat local/cfg.ini >> seen.txt; cat setup.out >> seen.txt; "
        "test -e untracked-but-not-listed.tmp && echo leaked >> seen.txt; true",
    )
    assert git("show", f"{result['branch']}:seen.txt", cwd=repo).splitlines() == [
        "TOKEN=abc",
        "x=1",
        "prepared",
    ]


def test_setup_command_failure_fails_the_lane_without_running_the_command(spine: Spine, repo: Path) -> None:
    write_files(repo, {".spine.yaml": "setup:\n  commands: ['exit 4']\n"})
    result = run_lane(spine, repo, "never runs", "--", "sh", "-c", "echo ran > ran.txt", expect=1)
    assert result["status"] == "failed"
    assert "setup command 'exit 4' failed" in result["summary"]
    assert result["commits"] == []


def test_artifacts_are_kept_with_size_and_hash(spine: Spine, repo: Path) -> None:
    import hashlib

    result = run_lane(
        spine,
        repo,
        "--artifact",
        "out/*.json",
        "report",
        "--",
        "sh",
        "-c",
        "mkdir -p out && printf '{\"ok\": true}' > out/report.json",
    )
    [artifact] = result["artifacts"]
    assert artifact["path"] == "out/report.json"
    assert artifact["size"] == len(b'{"ok": true}')
    assert artifact["sha256"] == hashlib.sha256(b'{"ok": true}').hexdigest()
    assert Path(artifact["storedAt"]).read_bytes() == b'{"ok": true}'


def test_commit_message_template(spine: Spine, repo: Path) -> None:
    write_files(repo, {".spine.yaml": "commit:\n  message: 'lane {lane_id}: {objective}'\n"})
    result = run_lane(spine, repo, "--lane", "t1", "template me", "--", "sh", "-c", "echo x > x.txt")
    assert git("log", "-1", "--format=%s", result["branch"], cwd=repo) == "lane t1: template me"


def test_none_backend_runs_in_place_without_committing(spine: Spine, repo: Path) -> None:
    head = git("rev-parse", "HEAD", cwd=repo)
    result = run_lane(spine, repo, "--backend", "none", "research", "--", "sh", "-c", "echo n > notes.txt")
    assert result["sandboxBackend"] == "none"
    assert result["worktreePath"] == str(repo)
    assert (repo / "notes.txt").read_text() == "n\n"
    assert result["commits"] == [] and git("rev-parse", "HEAD", cwd=repo) == head
    # --commit in a checkout with changes of the user's would sweep them into the lane's commit.
    refused = spine(
        "run", "--backend", "none", "--commit", "record", "--", "sh", "-c", "echo m > m.txt", cwd=repo
    )
    assert refused.returncode == 2 and "notes.txt" in refused.stderr and "git stash" in refused.stderr
    assert not (repo / "m.txt").exists() and git("rev-parse", "HEAD", cwd=repo) == head
    (repo / "notes.txt").unlink()
    committed = run_lane(
        spine, repo, "--backend", "none", "--commit", "record", "--", "sh", "-c", "echo m > m.txt"
    )
    assert len(committed["commits"]) == 1 and git("rev-parse", "HEAD", cwd=repo) == committed["headSha"]
    assert git("show", "--name-only", "--format=", "HEAD", cwd=repo) == "m.txt"


def test_two_runs_started_at_once_both_succeed(spine: Spine, repo: Path) -> None:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "spine",
                "run",
                "--json",
                "--lane",
                "same",
                f"lane {i}",
                "--",
                "sh",
                "-c",
                f"echo {i} > f{i}.txt",
            ],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for i in range(3)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out)["data"])
    assert len({r["runId"] for r in results}) == 3
    assert all(r["status"] == "succeeded" for r in results)


def test_ctrl_c_cancels_the_lane_and_exits_130(repo: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spine",
            "run",
            "--json",
            "--lane",
            "long",
            "long job",
            "--",
            "sh",
            "-c",
            f"echo $$ > {pids}; sleep 60 & echo $! >> {pids}; echo partial > partial.txt; wait",
        ],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 30
    while (not pids.exists() or len(pids.read_text().split()) < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    for pid in map(int, pids.read_text().split()):
        assert not _alive(pid)
    runs = sorted((repo / ".git" / "spine" / "runs").iterdir())
    result = json.loads((runs[-1] / "lanes" / "long" / "result.json").read_text())
    assert result["status"] == "canceled"
    assert git("show", f"{result['branch']}:partial.txt", cwd=repo) == "partial"


def test_git_spine_alias(repo: Path) -> None:
    bindir = Path(sys.executable).parent
    if not (bindir / "git-spine").exists():
        pytest.fail(
            "git-spine console script is not installed next to the interpreter; install with pip install -e ."
        )
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["git", "spine", "context", "--json"], cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert data_of(proc)["repository"]["primaryCheckout"] == str(repo)


def test_run_says_when_uncommitted_changes_stay_behind(spine: Spine, repo: Path) -> None:
    (repo / "README.md").write_text("edited, not committed\n")
    proc = spine("run", "--json", "-q", "--run-id", "r", "look", "--", "cat", "README.md", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "has uncommitted changes; the lane starts from main" in proc.stderr
    log = Path(data_of(proc)["logPath"]).read_text()
    assert "edited, not committed" not in log  # the lane really did not have them
    git("checkout", "-q", "--", "README.md", cwd=repo)
    clean = spine("run", "-q", "--run-id", "c", "x", "--", "true", cwd=repo)
    assert clean.returncode == 0 and "uncommitted" not in clean.stderr


def test_a_lane_run_from_a_detached_head_says_which_branch_to_land_on(spine: Spine, repo: Path) -> None:
    git("checkout", "-q", "--detach", "HEAD", cwd=repo)
    proc = spine("run", "--json", "-q", "--run-id", "d", "add", "--", "sh", "-c", "echo y > y.txt", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "`spine promote d/add --into BRANCH`" in data_of(proc)["nextAction"]
    git("checkout", "-q", "main", cwd=repo)
    assert spine("promote", "d/add", "--into", "main", cwd=repo).returncode == 0
