"""The ``spine`` fixture: a call in this process behaves as the ``python -m spine`` it stands in for."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Spine, git


def test_output_of_spine_its_lane_threads_and_children_is_captured_in_order(spine: Spine, repo: Path) -> None:
    # The lane's output reaches sys.stdout.buffer / sys.stderr.buffer from reader threads; the
    # summary is printed afterwards by click.
    proc = spine("run", "talk", "--", "sh", "-c", "echo to-out; echo to-err >&2", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "to-out" in proc.stdout and "to-err" in proc.stderr
    assert proc.stdout.index("to-out") < proc.stdout.index("succeeded")
    assert proc.args[-3:] == ["sh", "-c", "echo to-out; echo to-err >&2"]


def test_environment_and_working_directory_are_given_and_put_back(
    spine: Spine, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROBE_KEPT", "before")
    before = dict(os.environ)
    result = spine.json(
        "run",
        "--json",
        "look",
        "--",
        "sh",
        "-c",
        'echo "$PROBE_NEW $PROBE_KEPT" > probe.txt',
        cwd=repo / "src",
        env={"PROBE_NEW": "new", "PROBE_KEPT": "changed"},
    )
    assert git("show", f"{result['branch']}:probe.txt", cwd=repo) == "new changed"
    assert dict(os.environ) == before
    assert Path.cwd() == tmp_path


def test_stdin_is_the_input_given(spine: Spine, repo: Path) -> None:
    proc = spine(
        "batch", "-", "--json", cwd=repo, input="lanes: [{id: one, objective: o, command: 'true'}]\n"
    )
    assert proc.returncode == 0, proc.stderr
    proc = spine("batch", "-", cwd=repo)
    assert proc.returncode == 2 and "empty" in proc.stderr


@pytest.mark.parametrize("how", ["env", "os.environ"])
def test_a_crash_point_always_gets_a_process_of_its_own(
    spine: Spine, repo: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    env = {"SPINE_CRASH_AT": "execute"}
    if how == "os.environ":
        monkeypatch.setenv("SPINE_CRASH_AT", "execute")
        env = {}
    proc = spine("run", "crash", "--", "true", cwd=repo, env=env)
    assert proc.returncode == -signal.SIGKILL  # and this process is still here to see it


def test_timeout_interrupts_spine_which_stops_its_lane(spine: Spine, repo: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    handler = signal.getsignal(signal.SIGALRM)
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        spine("run", "hang", "--", "sh", "-c", f"echo $$ > {pid_file}; exec sleep 60", cwd=repo, timeout=3)
    assert "interrupted" in str(caught.value.stderr)
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    [run] = (repo / ".git" / "spine" / "runs").iterdir()
    [lane] = (run / "lanes").iterdir()
    assert json.loads((lane / "result.json").read_text())["status"] == "canceled"
    # No alarm is left armed, and the handler is what it was.
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is handler


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
