"""Watching runs: ``spine status``, ``spine logs``, live progress on a terminal; reading never writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.lanetool import lane, spine_popen, state_dir, wait_for, write_batch


@pytest.fixture
def tool_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "marks"
    folder.mkdir()
    return folder


@pytest.fixture
def env(tool_dir: Path) -> dict[str, str]:
    return {"LANETOOL_DIR": str(tool_dir)}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.rglob("*")) if p.is_file()}


def test_status_lists_runs_and_shows_lanes(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    assert spine("status", cwd=repo).stdout.strip() == "no runs yet"
    batch = write_batch(
        tmp_path / "lanes.json", [lane("ok", "write:ok.txt"), lane("no", "exit:4"), lane("dep", needs=["no"])]
    )
    spine("batch", str(batch), "--run-id", "first", cwd=repo, env=env)
    spine("run", "single lane", "--run-id", "second", "--", "true", cwd=repo)

    listing = spine("status", cwd=repo)
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert lines[0].startswith("first") and "batch" in lines[0] and "complete" in lines[0]
    assert "1 succeeded, 1 failed, 1 blocked" in lines[0]
    assert lines[1].startswith("second") and "1 succeeded" in lines[1]
    runs = spine.json("status", "--json", cwd=repo)["runs"]
    assert [r["runId"] for r in runs] == ["first", "second"] and runs[0]["exitCode"] == 1

    one = spine("status", "first", cwd=repo)
    assert "run first (batch, 3 lanes, complete): 1 succeeded, 1 failed, 1 blocked" in one.stdout
    assert "spine/first/ok" in one.stdout and "started" in one.stdout and "took" in one.stdout
    view = spine.json("status", "first", "--json", cwd=repo)
    lanes = {entry["id"]: entry for entry in view["lanes"]}
    assert lanes["ok"]["branch"] == "spine/first/ok" and lanes["ok"]["durationSeconds"] is not None
    assert lanes["ok"]["ageSeconds"] is not None and lanes["ok"]["resultPath"].endswith("ok/result.json")
    assert lanes["dep"]["status"] == "blocked" and "fix lane no" in lanes["dep"]["nextAction"]
    only = spine.json("status", "first/no", "--json", cwd=repo)
    assert [entry["id"] for entry in only["lanes"]] == ["no"]
    assert only["counts"] == {"failed": 1} and only["state"] == "complete" and only["exitCode"] == 1
    head = spine("status", "first/no", cwd=repo).stdout.splitlines()[0]
    assert head == "run first (batch, 1 lane, complete): 1 failed"
    missing = spine("status", "nope", cwd=repo)
    assert missing.returncode == 2 and "no run 'nope'" in missing.stderr


def test_reading_commands_never_write_state(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str], tool_dir: Path
) -> None:
    batch = write_batch(
        tmp_path / "lanes.json", [lane("done", "write:d.txt"), lane("hung", "hang-once:h", "write:h.txt")]
    )
    driver = spine_popen("batch", str(batch), "-j", "2", "--run-id", "ro", cwd=repo, env=env)
    wait_for(tool_dir / "h")
    wait_for(state_dir(repo) / "runs/ro/lanes/done/result.json")
    driver.kill()
    driver.communicate(timeout=30)
    before = snapshot(state_dir(repo))
    for args in (
        ("status",),
        ("status", "--json"),
        ("status", "ro"),
        ("status", "ro", "--json"),
        ("show", "ro"),
        ("show", "ro/done", "--json"),
        ("logs", "ro", "done"),
        ("logs", "ro/hung", "-f"),
        ("report", "ro", "-o", str(tmp_path / "ro.html")),
        ("report", "ro", "-o", "-"),
    ):
        proc = spine(*args, cwd=repo, env=env)
        assert proc.returncode == 0, (args, proc.stderr)
    read_through_the_dashboard(repo, "ro")
    assert snapshot(state_dir(repo)) == before
    assert spine.json("status", "ro", "--json", cwd=repo)["state"] == "interrupted"
    # tidy up the stray command of the killed driver
    assert spine("cancel", "ro", cwd=repo, env=env).returncode == 0


def read_through_the_dashboard(repo: Path, run_id: str) -> None:
    """Every view the dashboard serves, and its event stream, for ``run_id``."""
    import http.client

    import spine

    board = spine.dashboard(spine.context(repo))
    board.start()
    try:
        for path in ("/", "/api/runs", f"/api/runs/{run_id}", f"/runs/{run_id}/report", "/api/events"):
            conn = http.client.HTTPConnection("127.0.0.1", board.port, timeout=30)
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == 200, path
            if path == "/api/events":
                while not response.readline().startswith(b"event: change"):
                    pass
            else:
                assert response.read()
            conn.close()
    finally:
        board.shutdown()


def test_logs_prints_and_follows_a_lane(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str], tool_dir: Path
) -> None:
    waiter = (
        f"{sys.executable} -c \"import os,sys,time; sys.stdout.write('first line\\n'); sys.stdout.flush()\" && "
        f"while [ ! -e {tool_dir}/go ]; do sleep 0.05; done && echo second line"
    )
    batch = write_batch(tmp_path / "lanes.json", [{"id": "talk", "objective": "talk", "command": waiter}])
    driver = spine_popen("batch", str(batch), "--run-id", "lg", cwd=repo, env=env)
    log = state_dir(repo) / "runs/lg/lanes/talk/output.log"
    wait_for(log)
    follower = spine_popen("logs", "lg", "talk", "-f", cwd=repo, env=env)
    while "first line" not in log.read_text():
        pass
    (tool_dir / "go").write_text("go")
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert "first line" in out and "second line" in out and "==> spine: command:" in out
    driver.communicate(timeout=60)
    assert driver.returncode == 0
    plain = spine("logs", "lg/talk", cwd=repo)
    assert plain.stdout == log.read_text()
    wrong = spine("logs", "lg", "nobody", cwd=repo)
    assert wrong.returncode == 2 and "no lane 'nobody'" in wrong.stderr


def test_live_progress_on_a_terminal(repo: Path, tmp_path: Path, env: dict[str, str]) -> None:
    batch = write_batch(
        tmp_path / "lanes.json", [lane("alpha", "sleep:0.6", "write:a.txt"), lane("beta", "exit:1")]
    )
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "spine", "batch", str(batch), "-j", "2"],
        cwd=repo,
        env={**os.environ, **env, "COLUMNS": "120", "LINES": "30", "CI": ""},  # CI=true asks for plain lines
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=60)
    reader.join(timeout=5)
    os.close(master)
    screen = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 1
    assert "\x1b[2K" in screen  # lines redrawn in place
    assert "alpha" in screen and "beta" in screen
    assert "succeeded" in screen and "failed" in screen
    assert "[alpha]" not in screen  # no plain lines on a terminal
    assert "1 succeeded, 1 failed" in out  # the summary still goes to stdout


def test_run_still_uses_the_loop_and_records_steps(spine: Any, repo: Path) -> None:
    proc = spine("run", "one lane", "--run-id", "solo", "--", "sh", "-c", "echo hi > hi.txt", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    events = [
        json.loads(line) for line in (state_dir(repo) / "runs/solo/events.jsonl").read_text().splitlines()
    ]
    started = [e["step"] for e in events if e["event"] == "step-started"]
    assert started == ["create_worktree", "setup", "execute", "commit", "validate", "finalize"]
    assert spine("resume", "solo", cwd=repo).returncode == 0
    assert spine.json("status", "solo", "--json", cwd=repo)["kind"] == "run"


def test_the_run_list_uses_what_a_finished_run_left_only_while_it_is_still_true(
    spine: Any, repo: Path
) -> None:
    assert spine("run", "-q", "--run-id", "r1", "fails", "--", "sh", "-c", "exit 3", cwd=repo).returncode == 1
    remembered = [
        json.loads(line) for line in (state_dir(repo) / "finished-runs.jsonl").read_text().splitlines()
    ]
    assert [(r["runId"], r["summary"]["counts"]) for r in remembered] == [("r1", {"failed": 1})]
    listed = spine.json("status", "--json", cwd=repo)["runs"]
    assert [(v["runId"], v["counts"], v["laneCount"], v["exitCode"]) for v in listed] == [
        ("r1", {"failed": 1}, 1, 1)
    ]
    # The summary says what run.json said when it was made: once the run changes, it is read again.
    run_file = state_dir(repo) / "runs" / "r1" / "run.json"
    data = json.loads(run_file.read_text())
    data["lanes"]["fails"]["status"] = "succeeded"
    run_file.write_text(json.dumps(data))
    listed = spine.json("status", "--json", cwd=repo)["runs"]
    assert [(v["runId"], v["counts"], v["exitCode"]) for v in listed] == [("r1", {"succeeded": 1}, 0)]
    assert "1 lane   1 succeeded" in spine("status", cwd=repo).stdout
