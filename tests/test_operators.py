"""Operators: config invariants, typed inputs, `spine ops`, `spine run --op`, and the LaneSpec builder."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Spine, git, write_files

INGEST = {
    "id": "ingest",
    "name": "Ingest a CSV",
    "description": "copy the first rows of a CSV into out/ with a manifest",
    "modes": ["PIPELINE"],
    "inputs": {
        "source": {"type": "path", "description": "the CSV to read"},
        "rows": {"type": "int", "default": 10},
        "label": {"type": "string", "default": "plain"},
    },
    "steps": [
        "mkdir -p out",
        "head -n {{rows}} {{source}} > out/data.csv",
        "printf '%s\\n' {{label}} > out/label.txt",
        'printf \'{"count": %s, "sha256": "%s"}\\n\' "$(wc -l < out/data.csv)" '
        "\"$(sha256sum out/data.csv | cut -d' ' -f1)\" > out/manifest.json",
    ],
    "outputs": ["out/*"],
    "acceptance": [{"name": "rows", "command": "test -s out/data.csv"}],
    "timebox": "1m",
    "failure_paths": {"command_failed": "check that {lane_id} got a readable CSV; log: {log}"},
    "next": "publish {branch}",
}


def configure(repo: Path, operators: list[dict[str, Any]], **extra: Any) -> None:
    write_files(repo, {".spine.yaml": yaml.safe_dump({"operators": operators, **extra}, sort_keys=False)})


def with_csv(repo: Path) -> None:
    write_files(repo, {"data/in.csv": "a,b\n1,2\n3,4\n"})
    git("add", "data/in.csv", cwd=repo)
    git("commit", "-q", "-m", "add data", cwd=repo)


# --- invariants at config load -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drop", "key", "expected"),
    [
        ("modes", "operators.0.modes", "legal in no mode; list at least one, e.g. modes: [PIPELINE]"),
        ("acceptance", "operators.0.acceptance", "has no acceptance checks; add at least one"),
        (
            "timebox",
            "operators.0.timebox",
            "has no timebox; every operator needs a default timebox, e.g. timebox: 10m",
        ),
    ],
)
def test_each_invariant_is_enforced_when_the_config_loads(
    repo: Path, spine: Spine, drop: str, key: str, expected: str
) -> None:
    op = {k: v for k, v in INGEST.items() if k != drop}
    configure(repo, [op])
    proc = spine("ops", cwd=repo)
    assert proc.returncode == 2, proc.stderr
    assert ".spine.yaml" in proc.stderr
    assert f"key '{key}'" in proc.stderr
    assert "operator 'ingest'" in proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_empty_mode_list_is_rejected_like_a_missing_one(repo: Path, spine: Spine) -> None:
    configure(repo, [{**INGEST, "modes": []}])
    proc = spine("run", "--op", "ingest", "--input", "source=x", cwd=repo)
    assert proc.returncode == 2
    assert "legal in no mode" in proc.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"modes": ["PIPELIN"]}, "key 'operators.0.modes.0'"),
        ({"command": "echo {{nope}}", "steps": []}, "uses {{nope}} but declares no such input"),
        ({"command": "true"}, "needs exactly one of 'command' or 'steps'"),
        (
            {"inputs": {"rows": {"type": "int", "default": "many"}}},
            "the default 'many' is invalid: expected a whole number",
        ),
        ({"inputs": {"speed": {"type": "choice"}}}, "a choice input needs 'choices'"),
        ({"id": "bad id"}, "invalid operator id"),
        ({"failure_paths": {"timeout": "see {lgo}"}}, "unknown field(s) lgo"),
        (
            {"acceptance": [{"name": "a", "command": "x"}, {"name": "a", "command": "y"}]},
            "two acceptance checks are named 'a'",
        ),
        ({"evidence": [{"id": "m", "kind": "manifest", "glob": "m.json"}]}, "needs 'keys'"),
        ({"timebox": "soon"}, "'soon' is not a duration"),
    ],
)
def test_malformed_operators_name_the_key_and_the_expected_form(
    repo: Path, spine: Spine, change: dict[str, Any], message: str
) -> None:
    configure(repo, [{**INGEST, **change}])
    proc = spine("ops", cwd=repo)
    assert proc.returncode == 2
    assert message in proc.stderr, proc.stderr


def test_duplicate_operator_ids_are_rejected(repo: Path, spine: Spine) -> None:
    configure(repo, [INGEST, INGEST])
    proc = spine("ops", cwd=repo)
    assert proc.returncode == 2
    assert "two operators have the id 'ingest'" in proc.stderr


# --- spine ops -----------------------------------------------------------------------------------


def test_ops_lists_operators_with_their_evidence(repo: Path, spine: Spine) -> None:
    configure(repo, [INGEST])
    text = spine("ops", cwd=repo)
    assert text.returncode == 0, text.stderr
    assert "ingest: Ingest a CSV" in text.stdout
    assert "input source" in text.stdout and "required" in text.stdout
    assert "accept rows" in text.stdout
    data = spine.json("ops", "--json", cwd=repo)["operators"]
    assert [op["id"] for op in data] == ["ingest"]
    assert data[0]["timebox"] == 60.0
    assert [rule["id"] for rule in data[0]["evidence"]["PIPELINE"]] == ["artifact", "manifest"]
    missing = spine("ops", "nope", cwd=repo)
    assert missing.returncode == 2 and "no operator 'nope'" in missing.stderr and "ingest" in missing.stderr


def test_ops_without_operators_says_how_to_declare_them(repo: Path, spine: Spine) -> None:
    proc = spine("ops", cwd=repo)
    assert proc.returncode == 0
    assert "no operators configured" in proc.stdout
    assert spine.json("ops", "--json", cwd=repo) == {"operators": []}


# --- spine run --op ------------------------------------------------------------------------------


def test_run_op_records_operator_mode_acceptance_evidence_and_next(repo: Path, spine: Spine) -> None:
    with_csv(repo)
    configure(repo, [INGEST])
    result = spine.json("run", "--json", "-q", "--op", "ingest", "--input", "source=data/in.csv", cwd=repo)
    assert result["status"] == "succeeded"
    assert result["operator"] == "ingest"
    assert result["mode"] == "PIPELINE" and result["modeSource"] == "operator"
    assert result["inputs"] == {"source": "data/in.csv", "rows": "10", "label": "plain"}
    assert [(a["name"], a["verdict"]) for a in result["acceptance"]] == [("rows", "PASS")]
    assert [(e["id"], e["found"]) for e in result["evidence"]] == [("artifact", True), ("manifest", True)]
    assert result["verdict"] == "PASS"
    assert result["nextPointer"] == f"publish {result['branch']}" == result["nextAction"]
    assert "\n" not in result["nextPointer"]
    assert result["debugPacket"] is None
    kept = {a["path"] for a in result["artifacts"]}
    assert kept == {"out/data.csv", "out/label.txt", "out/manifest.json"}
    assert result["objective"] == "Ingest a CSV (source=data/in.csv, rows=10, label=plain)"


def test_inputs_are_validated_before_anything_runs(repo: Path, spine: Spine) -> None:
    configure(repo, [INGEST])
    cases = [
        (["--input", "rows=3"], "needs input 'source' (path)"),
        (["--input", "source=../etc/passwd"], "expected a path inside the repository"),
        (
            ["--input", "source=a.csv", "--input", "rows=many"],
            "input rows='many' is invalid: expected a whole number",
        ),
        (["--input", "source=a.csv", "--input", "colour=red"], "has no input 'colour'"),
        (["--input", "source"], "is not NAME=VALUE"),
    ]
    for args, message in cases:
        proc = spine("run", "--op", "ingest", *args, cwd=repo)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
    assert not (repo / ".git" / "spine" / "runs").exists() or not any(
        (repo / ".git" / "spine" / "runs").iterdir()
    )


def test_inputs_are_shell_quoted_when_substituted(repo: Path, spine: Spine) -> None:
    with_csv(repo)
    configure(repo, [INGEST])
    hostile = "it's $(touch pwned); `touch pwned2` | x"
    result = spine.json(
        "run",
        "--json",
        "-q",
        "--op",
        "ingest",
        "--input",
        "source=data/in.csv",
        "--input",
        f"label={hostile}",
        cwd=repo,
    )
    assert result["status"] == "succeeded", result["summary"]
    assert git("show", f"{result['branch']}:out/label.txt", cwd=repo) == hostile
    # Anything the command created would have been committed with the rest.
    assert not {"pwned", "pwned2"} & set(git("ls-tree", "--name-only", result["branch"], cwd=repo).split())
    assert not (repo / "pwned").exists()


def test_choice_and_bool_inputs(repo: Path, spine: Spine) -> None:
    op = {
        "id": "echo",
        "name": "Echo settings",
        "modes": ["TOOLSMITH", "CONTRACT"],
        "inputs": {
            "speed": {"type": "choice", "choices": ["fast", "full"]},
            "dry": {"type": "bool", "default": False},
        },
        "command": "printf '%s %s %s\\n' {{speed}} {{dry}} \"$SPINE_INPUT_SPEED\" > settings.txt",
        "acceptance": ["test -s settings.txt"],
        "timebox": 30,
    }
    configure(repo, [op])
    bad = spine("run", "--op", "echo", "--input", "speed=slow", cwd=repo)
    assert bad.returncode == 2 and "expected one of fast, full" in bad.stderr
    result = spine.json(
        "run",
        "--json",
        "-q",
        "--op",
        "echo",
        "--input",
        "speed=full",
        "--input",
        "dry=YES",
        "--mode",
        "contract",
        cwd=repo,
        expect=None,
    )
    assert (Path(result["worktreePath"]) / "settings.txt").read_text() == "full true full\n"
    assert result["mode"] == "CONTRACT" and result["modeSource"] == "flag"
    illegal = spine("run", "--op", "echo", "--input", "speed=full", "--mode", "SERVICE", cwd=repo)
    assert illegal.returncode == 2
    assert "not legal in mode SERVICE" in illegal.stderr and "TOOLSMITH, CONTRACT" in illegal.stderr


def test_run_op_refuses_a_command_and_stray_inputs(repo: Path, spine: Spine) -> None:
    configure(repo, [INGEST])
    proc = spine("run", "--op", "ingest", "obj", "--", "echo", "hi", cwd=repo)
    assert proc.returncode == 2 and "brings its own command" in proc.stderr
    stray = spine("run", "--input", "a=b", "obj", "--", "true", cwd=repo)
    assert stray.returncode == 2 and "--input is given without --op" in stray.stderr
    unknown = spine("run", "--op", "nope", cwd=repo)
    assert unknown.returncode == 2 and "no operator 'nope'" in unknown.stderr and "ingest" in unknown.stderr


def test_a_failing_step_stops_the_steps_and_takes_its_failure_path(repo: Path, spine: Spine) -> None:
    configure(repo, [INGEST])
    result = spine.json(
        "run",
        "--json",
        "-q",
        "--op",
        "ingest",
        "--input",
        "source=missing.csv",
        "--lane",
        "broken",
        cwd=repo,
        expect=1,
    )
    assert result["status"] == "failed"
    assert result["exitCode"] == 1
    assert any("step 2/4 failed" in line for line in result["outputTail"])
    assert not any("step 3/4:" in line for line in result["outputTail"])
    assert result["nextPointer"].startswith(f"check that broken got a readable CSV; log: {result['logPath']}")
    assert [(a["name"], a["verdict"]) for a in result["acceptance"]] == [("rows", "FAIL")]
    assert result["acceptance"][0]["summary"].startswith("not run")
    assert result["verdict"] == "FAIL"


def test_an_operator_lane_resolves_to_a_spec_for_batches(repo: Path) -> None:
    from spine.base.errors import UsageError
    from spine.lane.spec import LaneRequest, resolve_lane_spec
    from spine.model.config import validate_config
    from spine.model.state import LaneSpec

    config = validate_config({"operators": [INGEST], "stall_timeout": "20s"}, "test")
    request = LaneRequest(
        op="ingest",
        inputs={"source": "data/in.csv", "rows": 5},
        id="lane-1",
        needs=["prep"],
        artifacts=["extra/*"],
    )
    spec = resolve_lane_spec(request, config, origin="batch lane", label="lanes.yaml: lane 'lane-1'")
    assert spec.sources["timeout"] == "operator" and spec.sources["stall_timeout"] == ".spine.yaml"
    assert spec.id == "lane-1" and spec.needs == ["prep"]
    assert spec.timeout == 60.0 and spec.stall_timeout == 20.0
    assert spec.artifacts == ["out/*", "extra/*"]
    assert isinstance(spec.command, str) and "head -n 5 data/in.csv" in spec.command
    binding = spec.binding
    assert binding is not None and binding.operator == "ingest" and binding.inputs["rows"] == "5"
    assert binding.env["SPINE_INPUT_SOURCE"] == "data/in.csv"
    # The spec survives run.json: it round-trips through JSON.
    again = LaneSpec.model_validate_json(spec.model_dump_json(by_alias=True))
    assert again == spec
    with pytest.raises(
        UsageError, match=re.escape("lanes.yaml: lane 'x': operator 'ingest' needs input 'source'")
    ):
        resolve_lane_spec(
            LaneRequest(op="ingest", id="x"), config, origin="batch lane", label="lanes.yaml: lane 'x'"
        )
    assert json.loads(spec.model_dump_json(by_alias=True))["op"]["modeSource"] == "operator"


def test_the_documented_configs_are_valid() -> None:
    """The worked example in docs/operators.md loads, and the example file documents the keys."""
    from spine.model.config import validate_config

    root = Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "operators.md").read_text()
    block = doc.split("`.spine.yaml`:\n\n```yaml\n", 1)[1].split("```", 1)[0]
    config = validate_config(yaml.safe_load(block), "docs/operators.md")
    assert [op.id for op in config.operators] == ["export-orders", "new-cli", "fix-bug"]
    example = (root / ".spine.yaml.example").read_text()
    for key in (
        "stall_timeout:",
        "operators:",
        "modes:",
        "acceptance:",
        "timebox:",
        "failure_paths:",
        "expect_exit:",
    ):
        assert key in example


# --- operators in batch lanes --------------------------------------------------------------------


def test_batch_lanes_can_run_operators(spine: Spine, repo: Path) -> None:
    configure(repo, [INGEST])
    with_csv(repo)
    batch = {
        "lanes": [
            {"id": "first", "op": "ingest", "inputs": {"source": "data/in.csv", "rows": 2}},
            {"id": "plain", "objective": "a plain lane", "command": "true", "needs": ["first"]},
        ]
    }
    (repo.parent / "lanes.yaml").write_text(yaml.safe_dump(batch))
    summary = spine.json("batch", str(repo.parent / "lanes.yaml"), "--json", cwd=repo)
    assert summary is not None
    run_id = sorted(p.name for p in (repo / ".git" / "spine" / "runs").iterdir())[-1]
    result = spine.json("show", f"{run_id}/first", "--json", cwd=repo)
    assert result["status"] == "succeeded"
    assert result["operator"] == "ingest" and result["mode"] == "PIPELINE"
    assert git("show", f"{result['branch']}:out/data.csv", cwd=repo) == "a,b\n1,2"
    assert spine.json("show", f"{run_id}/plain", "--json", cwd=repo)["status"] == "succeeded"


@pytest.mark.parametrize(
    ("lane", "words"),
    [
        ({"id": "x", "op": "ingest", "inputs": {"source": "a.csv", "rows": "many"}}, ["lane 'x'", "rows"]),
        ({"id": "x", "op": "ingest"}, ["lane 'x'", "needs input 'source'", "`inputs:`"]),
        ({"id": "x", "op": "nope"}, ["lane 'x'", "nope"]),
        ({"id": "x", "op": "ingest", "command": "true"}, ["both `command` and `op`"]),
        ({"id": "x", "objective": "o"}, ["needs a `command`"]),
        (
            {"id": "x", "objective": "o", "command": "true", "inputs": {"a": 1}},
            ["only apply to operator lanes"],
        ),
    ],
)
def test_bad_operator_lanes_are_rejected_before_anything_runs(
    spine: Spine, repo: Path, lane: dict[str, Any], words: list[str]
) -> None:
    configure(repo, [INGEST])
    (repo.parent / "bad.yaml").write_text(yaml.safe_dump({"lanes": [lane]}))
    proc = spine("batch", str(repo.parent / "bad.yaml"), cwd=repo)
    assert proc.returncode == 2, proc.stderr
    for word in words:
        assert word in proc.stderr
    assert not (repo / ".git" / "spine" / "runs").exists() or not any(
        (repo / ".git" / "spine" / "runs").iterdir()
    )
