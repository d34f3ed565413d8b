"""How run state reaches the disk: atomic run.json writes and the open events journal."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from spine.base.files import atomic_write_text
from spine.workspace.context import StatePaths
from spine.workspace.store import RunStore


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
