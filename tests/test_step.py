"""``spine step``: one step per call, and stepping a run to the end equals driving it with the loop."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import data_of
from tests.lanetool import lane, run_json, state_dir, write_batch


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "marks"
    folder.mkdir()
    return {"LANETOOL_DIR": str(folder)}


def parity_batch(tmp_path: Path) -> Path:
    return write_batch(
        tmp_path / "lanes.json",
        [
            lane("one", "start", "write:one.txt", checks=["test -f one.txt"], artifacts=["*.txt"]),
            lane("two", "start", "write:two.txt", needs=["one"]),
            lane("bad", "start", "exit:2"),
            lane("after-bad", "start", needs=["bad"]),
            lane("idle", "start"),
            {"id": "check-fails", "objective": "x", "command": "echo x > x.txt", "checks": ["false"]},
        ],
    )


TIMING_KEYS = {"startedAt", "completedAt", "durationSeconds", "sha", "headSha", "stepStartedAt", "at"}


def normalize(value: Any, run_id: str) -> Any:
    """Drop what differs between two runs by nature: times, durations, SHAs, the run id."""
    if isinstance(value, dict):
        return {k: normalize(v, run_id) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [normalize(v, run_id) for v in value]
    if isinstance(value, str):
        value = value.replace(run_id, "RUN")
        return re.sub(r"\b\d+(\.\d+)?(s|m)\b", "T", value)
    return value


def results(repo: Path, run_id: str) -> dict[str, Any]:
    folder = state_dir(repo) / "runs" / run_id / "lanes"
    return {
        path.parent.name: normalize(json.loads(path.read_text()), run_id)
        for path in sorted(folder.glob("*/result.json"))
    }


def test_stepping_to_the_end_equals_driving_with_the_loop(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    batch = parity_batch(tmp_path)
    looped = spine("batch", str(batch), "-j", "2", "--run-id", "by-loop", cwd=repo, env=env)
    assert looped.returncode == 1, looped.stderr

    planned = spine("batch", str(batch), "-j", "2", "--run-id", "by-step", "--plan", cwd=repo, env=env)
    assert planned.returncode == 0 and "nothing started" in planned.stdout
    assert not (state_dir(repo) / "worktrees" / "by-step").exists()
    events = state_dir(repo) / "runs/by-step/events.jsonl"
    steps = 0
    while True:
        before = events.read_text().count('"step-started"')
        proc = spine("step", "by-step", "--json", cwd=repo, env=env)
        if proc.returncode == 2:
            assert "nothing left to step" in proc.stderr
            break
        assert proc.returncode == 0, proc.stderr
        fired = data_of(proc)["fired"]
        assert events.read_text().count('"step-started"') == before + 1, fired  # exactly one step
        steps += 1
        assert steps < 100
    # five lanes take their six steps each; the blocked lane takes one block step
    assert steps == 5 * 6 + 1

    assert results(repo, "by-step") == results(repo, "by-loop")
    assert set(results(repo, "by-loop")) == {"one", "two", "bad", "after-bad", "idle", "check-fails"}
    looped_state = run_json(repo, "by-loop")["lanes"]
    stepped_state = run_json(repo, "by-step")["lanes"]
    for lane_id in looped_state:
        assert stepped_state[lane_id]["status"] == looped_state[lane_id]["status"]
        assert stepped_state[lane_id]["stepsDone"] == looped_state[lane_id]["stepsDone"]
    summary = spine.json("status", "by-step", "--json", cwd=repo)
    assert summary["counts"] == {"succeeded": 3, "failed": 2, "blocked": 1}


def test_step_plain_output_and_lane_ref_rejected(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    batch = write_batch(tmp_path / "lanes.json", [lane("only", "write:o.txt")])
    assert spine("batch", str(batch), "--run-id", "st", "--plan", cwd=repo, env=env).returncode == 0
    first = spine("step", "st", cwd=repo, env=env)
    assert first.returncode == 0 and first.stdout.strip() == "only: create_worktree done"
    assert run_json(repo, "st")["lanes"]["only"]["stepsDone"] == ["create_worktree"]
    bad = spine("step", "st/only", cwd=repo, env=env)
    assert bad.returncode == 2 and "step takes a run" in bad.stderr
    # resume finishes what stepping began
    assert spine("resume", "st", cwd=repo, env=env).returncode == 0
    assert spine("step", "st", cwd=repo, env=env).returncode == 2
