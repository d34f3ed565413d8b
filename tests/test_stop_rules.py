"""Stop rules: the timebox and the stall rule end a lane and leave a next pointer and a debug packet."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import yaml

from spine.lane.stall import StallWatch, worktree_fingerprint
from tests.conftest import Spine, write_files

SLEEPER = {
    "id": "slow",
    "name": "A slow move",
    "modes": ["PIPELINE"],
    "command": "sleep 30",
    "acceptance": ["true"],
    "timebox": 1,
    "failure_paths": {
        "timeout": "re-scope {op}: it did not finish within {timebox}",
        "stall": "find what {lane_id} waits on",
    },
}


def test_the_operator_timebox_stops_the_lane_and_records_its_failure_path(repo: Path, spine: Spine) -> None:
    write_files(repo, {".spine.yaml": yaml.safe_dump({"operators": [SLEEPER]})})
    result = spine.json("run", "--json", "-q", "--op", "slow", cwd=repo, expect=1)
    assert result["status"] == "failed"
    assert result["timedOut"] is True and result["timeoutKind"] == "wall"
    assert result["nextPointer"].startswith("re-scope slow: it did not finish within 1.0s")
    assert result["acceptance"][0]["verdict"] == "FAIL"
    assert Path(result["debugPacket"]).is_file()


def test_the_stall_rule_stops_a_silent_idle_command(repo: Path, spine: Spine) -> None:
    write_files(
        repo, {".spine.yaml": yaml.safe_dump({"operators": [{**SLEEPER, "timebox": 60, "stall_timeout": 1}]})}
    )
    result = spine.json("run", "--json", "-q", "--op", "slow", cwd=repo, expect=1)
    assert result["timedOut"] is True and result["timeoutKind"] == "stall"
    assert result["status"] == "failed"
    assert result["nextPointer"].startswith("find what slow waits on")
    assert "no progress" in result["summary"]


def test_stall_timeout_from_the_command_line_and_config_for_plain_lanes(repo: Path, spine: Spine) -> None:
    flag = spine.json(
        "run", "--json", "-q", "--stall-timeout", "1", "wait", "--", "sleep", "30", cwd=repo, expect=1
    )
    assert flag["timeoutKind"] == "stall" and flag["debugPacket"]
    write_files(repo, {".spine.yaml": "stall_timeout: 1s\n"})
    configured = spine.json("run", "--json", "-q", "wait again", "--", "sleep", "30", cwd=repo, expect=1)
    assert configured["timeoutKind"] == "stall"


def test_output_or_file_changes_count_as_progress(repo: Path, spine: Spine) -> None:
    # Silent but writing a file for 2.4s, then printing without writing for 2.4s: each phase is longer
    # than the stall time, but there is never a stretch of 2s without progress.
    loop = "i=0; while [ $i -lt 12 ]; do {}; sleep 0.2; i=$((i+1)); done"
    script = loop.format("echo $i >> progress.txt") + "; " + loop.format("echo tick")
    result = spine.json(
        "run", "--json", "-q", "--stall-timeout", "2", "busy", "--", "sh", "-c", script, cwd=repo
    )
    assert result["status"] == "succeeded", result["summary"]
    assert result["timeoutKind"] is None


def test_fingerprint_changes_on_every_kind_of_progress(repo: Path) -> None:
    from tests.conftest import git

    first = worktree_fingerprint(repo)
    assert worktree_fingerprint(repo) == first
    (repo / "new.txt").write_text("a")
    second = worktree_fingerprint(repo)
    assert second != first
    (repo / "new.txt").write_text("ab")  # same file, written again
    third = worktree_fingerprint(repo)
    assert third != second
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "progress", cwd=repo)
    assert worktree_fingerprint(repo) != third


def test_stall_watch_forwards_a_cancel_without_calling_it_a_stall(repo: Path) -> None:
    cancel = threading.Event()
    with StallWatch(repo, limit=30, cancel=cancel) as watch:
        cancel.set()
        assert watch.stop.wait(5)
    assert not watch.stalled


def test_stall_watch_fires_when_nothing_happens(repo: Path) -> None:
    with StallWatch(repo, limit=0.5, cancel=threading.Event()) as watch:
        assert watch.stop.wait(10)
    assert watch.stalled


def test_stall_watch_keeps_waiting_while_output_flows(repo: Path) -> None:
    seen: list[bytes] = []
    with StallWatch(repo, limit=2, cancel=threading.Event()) as watch:
        sink = watch.wrap(lambda stream, chunk: seen.append(chunk))
        for _ in range(25):
            sink("stdout", b"x")
            time.sleep(0.1)
        assert not watch.stop.is_set()
    assert not watch.stalled and len(seen) == 25
