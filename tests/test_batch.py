"""``spine batch``: validation before anything exists, parallel lanes, needs, blocking, fail-fast."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import data_of
from tests.lanetool import git_lines, lane, result, run_json, runs_of, stamp, state_dir, write_batch


@pytest.fixture
def tool_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "marks"
    folder.mkdir()
    return folder


@pytest.fixture
def env(tool_dir: Path) -> dict[str, str]:
    return {"LANETOOL_DIR": str(tool_dir)}


def nothing_created(repo: Path) -> None:
    runs = state_dir(repo) / "runs"
    assert not runs.exists() or not any(runs.iterdir()), "a run directory was created"
    assert git_lines(repo, "branch", "--list", "spine/*") == []
    assert len(git_lines(repo, "worktree", "list")) == 1


# --- validation ----------------------------------------------------------------------------------

INVALID: list[tuple[str, str, str]] = [
    (
        "duplicate ids",
        "lanes:\n  - {id: a, objective: x, command: 'true'}\n  - {id: a, objective: y, command: 'true'}\n",
        "lane id 'a' is used more than once (lanes 1, 2)",
    ),
    (
        "unknown needs",
        "lanes:\n  - {id: a, objective: x, command: 'true', needs: [ghost]}\n",
        "lane 'a' needs 'ghost', which is not a lane of this batch",
    ),
    (
        "cycle",
        "lanes:\n"
        "  - {id: a, objective: x, command: 'true', needs: [c]}\n"
        "  - {id: b, objective: x, command: 'true', needs: [a]}\n"
        "  - {id: c, objective: x, command: 'true', needs: [b]}\n",
        "dependency cycle: a -> c -> b -> a",
    ),
    (
        "self need",
        "lanes:\n  - {id: a, objective: x, command: 'true', needs: [a]}\n",
        "lane 'a' needs itself",
    ),
    (
        "id with a slash",
        "lanes:\n  - {id: fix/parser, objective: x, command: 'true'}\n",
        "invalid lane id 'fix/parser'",
    ),
    (
        "id ending in .lock",
        "lanes:\n  - {id: a.lock, objective: x, command: 'true'}\n",
        "invalid lane id 'a.lock': it may not end with '.lock'",
    ),
    (
        "id with a space",
        "lanes:\n  - {id: 'two words', objective: x, command: 'true'}\n",
        "invalid lane id 'two words'",
    ),
    (
        "unknown lane key",
        "lanes:\n  - {id: a, objective: x, command: 'true', need: [b]}\n",
        "unknown key 'lanes.0.need'",
    ),
    (
        "unknown top-level key",
        "lanes:\n  - {id: a, objective: x, command: 'true'}\njobs: 3\n",
        "unknown key 'jobs'",
    ),
    (
        "missing command",
        "lanes:\n  - {id: a, objective: x}\n",
        "lane 'a' needs a `command` (or an operator with `op`)",
    ),
    ("empty command", "lanes:\n  - {id: a, objective: x, command: []}\n", "the command is empty"),
    ("no lanes", "lanes: []\n", "lanes"),
    ("not a mapping", "- {id: a}\n", "the top level must be a mapping"),
    ("empty file", "", "the batch is empty"),
    ("bad yaml", "lanes:\n  - {id: a, objective: x\n", "invalid YAML"),
    (
        "unknown backend",
        "lanes:\n  - {id: a, objective: x, command: 'true', backend: nope}\n",
        "lane 'a': unknown backend 'nope'",
    ),
    (
        "unknown base",
        "lanes:\n  - {id: a, objective: x, command: 'true', base: no-such-branch}\n",
        "lanes.yaml: lane 'a': key 'base': unknown base ref 'no-such-branch'",
    ),
    (
        "every unknown base at once",
        "lanes:\n  - {id: a, objective: x, command: 'true', base: nope-1}\n"
        "  - {id: b, objective: y, command: 'true', base: nope-2}\n",
        "2 problems:\n  - {path}: lane 'a': key 'base': unknown base ref 'nope-1': no branch, tag or commit has"
        " that name\n  - {path}: lane 'b': key 'base': unknown base ref 'nope-2'",
    ),
    ("bad timeout", "lanes:\n  - {id: a, objective: x, command: 'true', timeout: soon}\n", "timeout"),
]


@pytest.mark.parametrize(("name", "text", "message"), INVALID, ids=[case[0] for case in INVALID])
def test_invalid_batch_exits_2_and_creates_nothing(
    spine: Any, repo: Path, tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / "lanes.yaml"
    path.write_text(text)
    proc = spine("batch", str(path), cwd=repo)
    assert proc.returncode == 2, proc.stderr
    assert message.replace("{path}", str(path)) in proc.stderr
    assert "Traceback" not in proc.stderr
    nothing_created(repo)


def test_every_problem_is_reported_at_once(spine: Any, repo: Path, tmp_path: Path) -> None:
    path = tmp_path / "lanes.yaml"
    path.write_text(
        "lanes:\n"
        "  - {id: a, objective: x, command: 'true', needs: [b, ghost]}\n"
        "  - {id: b, objective: x, command: 'true', needs: [a]}\n"
        "  - {id: b, objective: x, command: 'true'}\n"
    )
    proc = spine("batch", str(path), cwd=repo)
    assert proc.returncode == 2
    assert "3 problems" in proc.stderr
    assert "ghost" in proc.stderr and "used more than once" in proc.stderr and "a -> b -> a" in proc.stderr
    nothing_created(repo)


def test_missing_file_and_stdin(spine: Any, repo: Path, env: dict[str, str]) -> None:
    proc = spine("batch", "nope.yaml", cwd=repo)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    nothing_created(repo)
    text = json.dumps({"lanes": [lane("only", "write:x.txt")]})
    data = spine.json("batch", "-", "--json", cwd=repo, input=text, env=env)
    assert data["counts"] == {"succeeded": 1}


def test_json_batch_and_config_defaults(spine: Any, repo: Path, tmp_path: Path, env: dict[str, str]) -> None:
    (repo / ".spine.yaml").write_text("timeout: 90s\nenv:\n  FROM_CONFIG: yes-it-is\n")
    batch = write_batch(
        tmp_path / "lanes.json",
        [
            {
                "id": "shell",
                "objective": "a shell string",
                "command": 'echo "$FROM_CONFIG $OWN" > out.txt',
                "env": {"OWN": "own"},
                "checks": ["grep -q yes-it-is out.txt", {"name": "named", "command": "test -s out.txt"}],
                "artifacts": ["out.txt"],
            },
            {
                "id": "argv",
                "objective": "an argv list",
                "command": ["touch", "made by argv.txt"],
                "timeout": None,
            },
        ],
    )
    data = spine.json("batch", str(batch), "--json", "--run-id", "cfg", cwd=repo, env=env)
    assert data["counts"] == {"succeeded": 2}, data
    first = result(repo, "cfg", "shell")
    assert [c["status"] for c in first["validation"]] == ["passed", "passed"]
    assert [c["name"] for c in first["validation"]] == ["grep", "named"]
    assert first["artifacts"][0]["path"] == "out.txt"
    state = run_json(repo, "cfg")
    assert state["lanes"]["shell"]["spec"]["timeout"] == 90
    assert state["lanes"]["argv"]["spec"]["timeout"] is None
    assert git_lines(repo, "show", "spine/cfg/argv:made by argv.txt") == []
    assert git_lines(repo, "show", "spine/cfg/shell:out.txt") == ["yes-it-is own"]


# --- running -------------------------------------------------------------------------------------


def test_parallel_lanes_overlap_with_jobs_2(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str], tool_dir: Path
) -> None:
    # Each lane waits until the other has started before it ends: with --jobs 2 both starts come
    # before both ends; run one at a time, the first would give up waiting and end first.
    batch = write_batch(
        tmp_path / "lanes.json",
        [lane("a", "start", "wait:b.start", "end"), lane("b", "start", "wait:a.start", "end")],
    )
    proc = spine("batch", str(batch), "-j", "2", "--run-id", "par", cwd=repo, env=env)
    assert proc.returncode == 0, proc.stderr
    assert stamp(tool_dir, "a.start") < stamp(tool_dir, "b.end")
    assert stamp(tool_dir, "b.start") < stamp(tool_dir, "a.end")


def test_jobs_caps_lanes_at_work(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str], tool_dir: Path
) -> None:
    ids = ["l1", "l2", "l3", "l4", "l5"]
    batch = write_batch(tmp_path / "lanes.json", [lane(i, "start", "sleep:0.3", "end") for i in ids])
    assert spine("batch", str(batch), "-j", "2", cwd=repo, env=env).returncode == 0
    spans = [(stamp(tool_dir, f"{i}.start"), stamp(tool_dir, f"{i}.end")) for i in ids]
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most <= 2


def test_needs_order_lanes(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str], tool_dir: Path
) -> None:
    batch = write_batch(
        tmp_path / "lanes.json",
        [
            lane("c", "start", "end", needs=["a", "b"]),
            lane("a", "start", "sleep:0.2", "end"),
            lane("b", "start", "end", needs=["a"]),
        ],
    )
    proc = spine("batch", str(batch), "-j", "3", "--run-id", "order", cwd=repo, env=env)
    assert proc.returncode == 0, proc.stderr
    assert stamp(tool_dir, "a.end") <= stamp(tool_dir, "b.start")
    assert stamp(tool_dir, "b.end") <= stamp(tool_dir, "c.start")
    events = [
        json.loads(line) for line in (state_dir(repo) / "runs/order/events.jsonl").read_text().splitlines()
    ]
    order = [(e.get("lane"), e.get("step")) for e in events if e["event"] in ("step-started", "step-done")]
    assert order.index(("a", "finalize")) < order.index(("b", "create_worktree"))
    assert order.index(("b", "finalize")) < order.index(("c", "create_worktree"))


def test_failing_lane_blocks_dependents_while_independent_lanes_finish(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str], tool_dir: Path
) -> None:
    batch = write_batch(
        tmp_path / "lanes.json",
        [
            lane("bad", "start", "exit:3"),
            lane("child", "start", needs=["bad"]),
            lane("grandchild", "start", needs=["child"]),
            lane("free", "start", "sleep:0.3", "write:free.txt", "end"),
        ],
    )
    proc = spine("batch", str(batch), "-j", "2", "--run-id", "blk", "--json", cwd=repo, env=env)
    assert proc.returncode == 1, proc.stderr
    summary = data_of(proc)
    assert summary["counts"] == {"succeeded": 1, "failed": 1, "blocked": 2}
    lanes = {entry["id"]: entry for entry in summary["lanes"]}
    assert lanes["free"]["status"] == "succeeded" and lanes["free"]["branch"] == "spine/blk/free"
    assert lanes["child"]["status"] == "blocked"
    assert "fix lane bad" in lanes["child"]["nextAction"]
    assert "fix lane bad" in lanes["grandchild"]["nextAction"]
    assert "child was blocked" in lanes["grandchild"]["summary"]
    blocked = result(repo, "blk", "child")
    assert blocked["status"] == "blocked" and blocked["branch"] is None
    assert runs_of(tool_dir, "child") == 0 and runs_of(tool_dir, "grandchild") == 0
    # blocked lanes never got a worktree or branch
    assert git_lines(repo, "branch", "--list", "spine/blk/*", "--format=%(refname:short)") == [
        "spine/blk/bad",
        "spine/blk/free",
    ]


def test_fail_fast_starts_nothing_new_but_lets_running_lanes_finish(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str], tool_dir: Path
) -> None:
    # "slow" is running when "bad" fails: it waits for bad's result file, then finishes.
    batch = write_batch(
        tmp_path / "lanes.json",
        [
            lane("bad", "start", "exit:1"),
            lane("slow", "start", "wait-result:bad", "end"),
            lane("later", "start"),
            lane("dependent", "start", needs=["bad"]),
        ],
    )
    proc = spine("batch", str(batch), "-j", "2", "--fail-fast", "--run-id", "ff", "--json", cwd=repo, env=env)
    assert proc.returncode == 1, proc.stderr
    lanes = {entry["id"]: entry for entry in data_of(proc)["lanes"]}
    assert lanes["bad"]["status"] == "failed"
    assert lanes["slow"]["status"] == "succeeded"
    assert lanes["later"]["status"] == "canceled"
    assert "--fail-fast" in lanes["later"]["summary"] and "fix lane bad" in lanes["later"]["nextAction"]
    assert lanes["dependent"]["status"] == "blocked"
    assert runs_of(tool_dir, "later") == 0


def test_plain_progress_lines_when_not_a_terminal(
    spine: Any, repo: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    batch = write_batch(tmp_path / "lanes.json", [lane("one", "write:x.txt"), lane("two", "exit:2")])
    # stderr is a real pipe, as when a shell redirects it.
    proc = spine("batch", str(batch), "--run-id", "plain", cwd=repo, env=env, subprocess=True)
    assert proc.returncode == 1
    assert "[one] started" in proc.stderr and "[one] succeeded: review branch spine/plain/one" in proc.stderr
    assert "[two] failed: inspect the log" in proc.stderr
    assert "\x1b[" not in proc.stderr
    # the human summary: counts, and each lane's branch and next action
    assert "1 succeeded, 1 failed" in proc.stdout
    assert "spine/plain/one" in proc.stdout and "next: review branch spine/plain/one" in proc.stdout


def test_verbose_echoes_prefixed_lane_output(spine: Any, repo: Path, tmp_path: Path) -> None:
    batch = write_batch(
        tmp_path / "lanes.json", [{"id": "talk", "objective": "talk", "command": "echo hello from the lane"}]
    )
    # Lane output reaches the real stderr of the spine process from its reader threads.
    proc = spine("batch", str(batch), "-v", cwd=repo, subprocess=True)
    assert proc.returncode == 0
    assert "[talk] hello from the lane" in proc.stderr


def test_run_id_taken_is_a_usage_error(spine: Any, repo: Path, tmp_path: Path, env: dict[str, str]) -> None:
    batch = write_batch(tmp_path / "lanes.json", [lane("one")])
    assert spine("batch", str(batch), "--run-id", "same", cwd=repo, env=env).returncode == 0
    proc = spine("batch", str(batch), "--run-id", "same", cwd=repo, env=env)
    assert proc.returncode == 2 and "already exists" in proc.stderr


def test_stacked_lane_starts_from_the_result_of_the_lane_it_names(repo: Path, spine: Any) -> None:
    from tests.conftest import git

    batch = repo.parent / "stack.yaml"
    batch.write_text(
        "lanes:\n"
        "  - {id: parser, objective: tabs in the parser, command: 'echo tabs > parser.txt'}\n"
        "  - {id: docs, objective: document tabs, base: 'lane:parser',\n"
        "     command: 'cat parser.txt > docs.txt'}\n"
        "  - {id: plain, objective: unrelated, command: 'test ! -e parser.txt && echo ok > plain.txt'}\n"
    )
    proc = spine("batch", str(batch), "-j", "2", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [run_id] = [p.name for p in (state_dir(repo) / "runs").iterdir()]
    parser, docs = result(repo, run_id, "parser"), result(repo, run_id, "docs")
    assert docs["baseRef"] == parser["branch"] and docs["baseSha"] == parser["headSha"]
    assert git("show", f"{docs['branch']}:docs.txt", cwd=repo) == "tabs"
    # The stacked lane's result describes its own work only: one commit, one file.
    assert [c["subject"] for c in docs["commits"]] == ["document tabs"]
    assert docs["diffStat"]["filesChanged"] == 1
    assert result(repo, run_id, "plain")["status"] == "succeeded"


def test_stacked_lane_is_blocked_when_its_base_lane_fails(repo: Path, spine: Any) -> None:
    batch = repo.parent / "stack.yaml"
    batch.write_text(
        "lanes:\n"
        "  - {id: parser, objective: o, command: 'exit 1'}\n"
        "  - {id: docs, objective: o, base: 'lane:parser', command: 'true'}\n"
    )
    proc = spine("batch", str(batch), cwd=repo)
    assert proc.returncode == 1
    [run_id] = [p.name for p in (state_dir(repo) / "runs").iterdir()]
    assert result(repo, run_id, "docs")["status"] == "blocked"


@pytest.mark.parametrize(
    ("lanes", "message"),
    [
        (
            "  - {id: a, objective: o, command: 'true', base: 'lane:nope'}\n",
            "needs 'nope', which is not a lane",
        ),
        ("  - {id: a, objective: o, command: 'true', base: 'lane:a'}\n", "lane 'a' needs itself"),
        (
            "  - {id: a, objective: o, command: 'true', base: 'lane:b'}\n"
            "  - {id: b, objective: o, command: 'true', needs: [a]}\n",
            "dependency cycle",
        ),
    ],
)
def test_invalid_stacking_exits_2_and_creates_nothing(
    repo: Path, spine: Any, lanes: str, message: str
) -> None:
    batch = repo.parent / "bad.yaml"
    batch.write_text("lanes:\n" + lanes)
    proc = spine("batch", str(batch), cwd=repo)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    nothing_created(repo)
