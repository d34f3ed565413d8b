"""How run state reaches the disk: atomic writes, per-lane records, and the open events journal."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from spine.base.files import atomic_write_text
from spine.model.state import STATE_VERSION, LaneSpec, LaneState, RunState
from spine.workspace.context import StatePaths
from spine.workspace.store import RunStore, StateTooNew, read_run
from tests.lanetool import lane, state_dir, write_batch


def test_atomic_writes_from_several_threads_leave_one_whole_version_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "run.json"
    versions = {n: json.dumps({"writer": n, "pad": "x" * (1000 * (n + 1))}) + "\n" for n in range(4)}

    def writer(n: int) -> None:
        for _ in range(50):
            atomic_write_text(target, versions[n])

    threads = [threading.Thread(target=writer, args=(n,)) for n in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert target.read_text(encoding="utf-8") in versions.values()
    assert [p.name for p in target.parent.iterdir()] == ["run.json"]


def test_a_failed_atomic_write_keeps_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    atomic_write_text(target, "old\n")
    try:
        atomic_write_text(target, "\udcff")  # cannot be encoded: the write fails before the rename
    except UnicodeEncodeError:
        pass
    else:
        raise AssertionError("an unencodable text was written")
    assert target.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_events_are_readable_at_once_and_survive_close_and_a_second_writer(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    store = RunStore(paths, "r")
    store.event("first", "a", step="setup")
    # Another process (e.g. `spine cancel`) appends through its own store meanwhile.
    RunStore(paths, "r").event("second")
    store.event("third")
    lines = [json.loads(line) for line in store.events_file.read_text(encoding="utf-8").splitlines()]
    assert [line["event"] for line in lines] == ["first", "second", "third"]
    assert lines[0]["lane"] == "a" and lines[0]["step"] == "setup"
    store.close()
    store.event("fourth")
    assert store.events_file.read_text(encoding="utf-8").count("\n") == 4


# --- lane records -------------------------------------------------------------------------------


def _run(lanes: int) -> RunState:
    return RunState(
        run_id="r",
        created_at="2026-01-01T00:00:00Z",
        base_ref="main",
        base_sha="a" * 40,
        target_ref="main",
        target_sha="a" * 40,
        lanes={
            f"l{i}": LaneState(
                spec=LaneSpec(id=f"l{i}", objective="o", command="true"),
                backend="local",
                base_ref="main",
                base_sha="a" * 40,
            )
            for i in range(lanes)
        },
    )


def test_recording_a_lane_writes_its_record_only_and_readers_see_it(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    store = RunStore(paths, "r")
    run = _run(50)
    store.create(run)
    before = store.run_file.read_bytes()
    run.lanes["l7"].current_step = "execute"
    run.lanes["l7"].steps_done = ["create_worktree", "setup"]
    store.save_lane(run, "l7")
    assert store.run_file.read_bytes() == before  # run.json is not rewritten for one lane's step
    assert [p.name for p in paths.lane_states_dir("r").iterdir()] == ["l7.jsonl"]
    seen = read_run(paths, "r")  # a reader in another process: run.json overlaid with the record
    assert seen.lanes["l7"].current_step == "execute"
    assert seen.lanes["l7"].steps_done == ["create_worktree", "setup"]
    assert seen.lanes["l8"].current_step is None


def test_saving_the_whole_run_absorbs_the_lane_records(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    run = _run(3)
    RunStore(paths, "r").create(run)
    run.lanes["l1"].current_step = "commit"
    RunStore(paths, "r").save_lane(run, "l1")  # a driver that died after recording the step
    # The next driver loads the run (it finds the record) and saves it whole: one file again.
    store = RunStore(paths, "r")
    loaded = store.load()
    assert loaded.lanes["l1"].current_step == "commit"
    loaded.lanes["l1"].current_step = None
    store.save(loaded)
    assert list(paths.lane_states_dir("r").iterdir()) == []
    on_disk = json.loads(store.run_file.read_text(encoding="utf-8"))
    assert on_disk["schemaVersion"] == STATE_VERSION
    assert on_disk["lanes"]["l1"]["currentStep"] is None
    assert read_run(paths, "r").lanes["l1"].current_step is None


def test_a_lane_record_from_a_newer_spine_is_refused(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    run = _run(1)
    RunStore(paths, "r").create(run)
    record = paths.lane_state_file("r", "l0")
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"schemaVersion": STATE_VERSION + 1, "lane": {}}) + "\n")
    with pytest.raises(StateTooNew, match="newer spine"):
        read_run(paths, "r")


def test_run_json_of_the_previous_version_is_read_and_converted(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    RunStore(paths, "r").create(_run(2))
    data = json.loads(paths.run_file("r").read_text(encoding="utf-8"))
    data["schemaVersion"] = 2
    paths.run_file("r").write_text(json.dumps(data))
    run = read_run(paths, "r")
    assert run.schema_version == STATE_VERSION and list(run.lanes) == ["l0", "l1"]


def test_a_torn_or_lost_last_record_leaves_the_lane_at_the_one_before(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    run = _run(3)
    store = RunStore(paths, "r")
    store.create(run)
    for lane_id in ("l0", "l1", "l2"):
        run.lanes[lane_id].steps_done = ["create_worktree"]
        store.save_lane(run, lane_id)
        run.lanes[lane_id].steps_done = ["create_worktree", "setup"]
        store.save_lane(run, lane_id)
    journal = paths.lane_state_file("r", "l0").read_bytes()
    assert journal.count(b"\n") == 2  # one whole line per save
    # Killed in the middle of the second save: its line has no newline yet.
    paths.lane_state_file("r", "l0").write_bytes(journal[: len(journal) - 40])
    # A power cut (the journals are not fsynced) lost the whole journal's content.
    paths.lane_state_file("r", "l1").write_bytes(b"")
    seen = read_run(paths, "r")
    assert seen.lanes["l0"].steps_done == ["create_worktree"]  # the state before the torn save
    assert seen.lanes["l1"].steps_done == []  # where run.json had it: its steps are redone
    assert seen.lanes["l2"].steps_done == ["create_worktree", "setup"]


def test_a_driver_records_steps_in_lane_records_and_leaves_one_file(
    spine: Any, repo: Path, tmp_path: Path
) -> None:
    batch = write_batch(tmp_path / "lanes.json", [lane("a", "write:a.txt"), lane("b", "write:b.txt")])
    env = {"LANETOOL_DIR": str(tmp_path), "SPINE_CRASH_AT": "b/commit:begin"}
    killed = spine("batch", str(batch), "-j", "1", "--run-id", "c", cwd=repo, env=env, subprocess=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    paths = StatePaths(state_dir(repo))
    on_disk = json.loads(paths.run_file("c").read_text(encoding="utf-8"))
    assert all(entry["stepsDone"] == [] for entry in on_disk["lanes"].values())  # not rewritten per step
    assert sorted(p.name for p in paths.lane_states_dir("c").iterdir()) == ["a.jsonl", "b.jsonl"]
    seen = read_run(paths, "c")
    assert seen.lanes["a"].complete and seen.lanes["b"].current_step == "commit"

    resumed = spine("resume", "c", cwd=repo, env={"LANETOOL_DIR": str(tmp_path)})
    assert resumed.returncode == 0, resumed.stderr
    assert not paths.lane_states_dir("c").exists() or not any(paths.lane_states_dir("c").iterdir())
    on_disk = json.loads(paths.run_file("c").read_text(encoding="utf-8"))
    assert [entry["status"] for entry in on_disk["lanes"].values()] == ["succeeded", "succeeded"]
