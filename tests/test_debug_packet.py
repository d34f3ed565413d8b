"""Debug packets: written for failed and stopped lanes, printed by `spine debug`, and their repro reproduces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Spine, data_of, git, write_files

NEEDS_FILE = 'test -f fixed.txt || { echo "looking for fixed.txt"; echo "fixed.txt is missing" >&2; exit 3; }'


def spine_on_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has a `spine` that runs this checkout's spine, as a user's shell would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "spine"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m spine "$@"\n')
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def run_repro(line: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Execute the one-liner exactly as a person would paste it into a shell."""
    return subprocess.run(
        ["/bin/sh", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def new_result(spine: Spine, repo: Path, known: str) -> dict[str, Any]:
    """The result of the one run other than ``known`` (run ids of the same second do not sort by time)."""
    runs = [p.name for p in (repo / ".git" / "spine" / "runs").iterdir() if p.name != known]
    assert len(runs) == 1, runs
    results = spine.json("show", runs[0], "--json", cwd=repo)["results"]
    result: dict[str, Any] = results[0]
    return result


def packet_of(result: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(result["debugPacket"]).read_text())
    return data


def test_failed_lane_gets_a_packet_whose_repro_reproduces_the_failure(
    repo: Path, spine: Spine, tmp_path: Path
) -> None:
    base = git("rev-parse", "HEAD", cwd=repo)
    failed = spine.json(
        "run",
        "--json",
        "-q",
        "--env",
        "FLAVOUR=plain",
        "needs a file",
        "--",
        "sh",
        "-c",
        NEEDS_FILE,
        cwd=repo,
        expect=1,
    )
    packet = packet_of(failed)
    assert Path(failed["debugPacket"]).with_name("debug.md").is_file()
    symptom, context, repro = packet["symptom"], packet["context"], packet["repro"]
    assert symptom["exitCode"] == 3 and symptom["failureKind"] == "command_failed"
    assert "fixed.txt is missing" in symptom["lastLines"]
    assert context["baseSha"] == base
    assert context["recentBaseCommits"][0].endswith("second commit")
    assert repro["command"] == ["sh", "-c", NEEDS_FILE]
    assert "FLAVOUR" in repro["envKeys"] and "SPINE_RUN_ID" in repro["envKeys"]
    assert repro["backend"] == "local-worktree" and repro["baseSha"] == base
    assert 1 <= len(packet["hypotheses"]) <= 3
    assert packet["nextPointer"] == failed["nextPointer"] or packet["nextPointer"] == failed["nextAction"]
    assert "\n" not in packet["nextPointer"]

    # The base moves on and would make the command pass; the repro is pinned to the old base.
    write_files(repo, {"fixed.txt": "here\n"})
    git("add", "fixed.txt", cwd=repo)
    git("commit", "-q", "-m", "add fixed.txt", cwd=repo)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_repro(repro["spine"], spine_on_path(tmp_path), cwd=elsewhere)
    assert proc.returncode == 1, proc.stderr
    again = new_result(spine, repo, known=failed["runId"])
    assert again["status"] == "failed" and again["exitCode"] == 3
    assert again["baseSha"] == base
    assert again["command"] == failed["command"]
    assert "fixed.txt is missing" in again["outputTail"]
    assert packet_of(again)["symptom"]["failureKind"] == "command_failed"


def test_operator_repro_reproduces_missing_evidence(repo: Path, spine: Spine, tmp_path: Path) -> None:
    op = {
        "id": "report",
        "name": "Write a report",
        "modes": ["PIPELINE"],
        "inputs": {"name": {"type": "string", "pattern": "[a-z]+"}},
        "command": "mkdir -p out && echo rows > out/{{name}}.csv",
        "outputs": ["out/*.csv"],
        "acceptance": ["test -d out"],
        "timebox": "30s",
    }
    write_files(repo, {".spine.yaml": yaml.safe_dump({"operators": [op]})})
    failed = spine.json("run", "--json", "-q", "--op", "report", "--input", "name=weekly", cwd=repo, expect=1)
    assert failed["exitCode"] == 0 and failed["status"] == "failed"
    packet = packet_of(failed)
    assert packet["symptom"]["failureKind"] == "missing_evidence"
    assert packet["symptom"]["missingEvidence"] == ["manifest"]
    assert packet["repro"]["operator"] == "report" and packet["repro"]["inputs"] == {"name": "weekly"}
    assert "--op report --input name=weekly" in packet["repro"]["spine"]
    assert any("manifest" in h for h in packet["hypotheses"])

    proc = run_repro(packet["repro"]["spine"], spine_on_path(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    again = new_result(spine, repo, known=failed["runId"])
    assert again["status"] == "failed" and again["verdict"] == "FAIL"
    assert [e["id"] for e in again["evidence"] if not e["found"]] == ["manifest"]


def test_spine_debug_prints_the_packet(repo: Path, spine: Spine) -> None:
    failed = spine.json(
        "run", "--json", "-q", "--lane", "boom", "boom", "--", "sh", "-c", "exit 5", cwd=repo, expect=1
    )
    ref = f"{failed['runId']}/boom"
    text = spine("debug", ref, cwd=repo)
    assert text.returncode == 0, text.stderr
    for heading in ("## Symptom", "## Context", "## Minimal repro", "## Hypotheses", "## Next"):
        assert heading in text.stdout
    assert data_of(spine("debug", ref, "--json", cwd=repo)) == packet_of(failed)
    assert spine("debug", failed["runId"], cwd=repo).stdout == text.stdout  # the run's only failed lane
    assert spine("debug", cwd=repo).stdout == text.stdout  # the latest run

    ok = spine.json("run", "--json", "-q", "--lane", "fine", "fine", "--", "true", cwd=repo)
    assert ok["debugPacket"] is None
    missing = spine("debug", f"{ok['runId']}/fine", cwd=repo)
    assert missing.returncode == 2
    assert "has no debug packet (status: succeeded)" in missing.stderr


def test_hypotheses_follow_the_facts(repo: Path, spine: Spine) -> None:
    missing_tool = spine.json(
        "run", "--json", "-q", "tool", "--", "sh", "-c", "no-such-tool-xyz", cwd=repo, expect=1
    )
    assert any("not installed or not on PATH" in h for h in packet_of(missing_tool)["hypotheses"])

    timed = spine.json(
        "run", "--json", "-q", "--timeout", "1", "slow", "--", "sleep", "20", cwd=repo, expect=1
    )
    packet = packet_of(timed)
    assert packet["symptom"]["failureKind"] == "timeout" and packet["symptom"]["timeoutKind"] == "wall"
    assert any("timebox" in h for h in packet["hypotheses"])
    assert "--timeout 1s" in packet["repro"]["spine"]
    # The timebox stopped a plain lane: it still leaves a one-line next pointer.
    assert (
        timed["nextPointer"]
        and "\n" not in timed["nextPointer"]
        and "raise --timeout" in timed["nextPointer"]
    )

    write_files(repo, {".spine.yaml": yaml.safe_dump({"setup": {"commands": ["cat local-only.env"]}})})
    setup = spine.json("run", "--json", "-q", "setup", "--", "true", cwd=repo, expect=1)
    hypotheses = packet_of(setup)["hypotheses"]
    assert packet_of(setup)["symptom"]["failureKind"] == "setup_failed"
    assert ".worktreeinclude" in hypotheses[0]
    assert len(hypotheses) <= 3
