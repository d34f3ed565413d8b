"""Reading results back (`spine show`) and grading them (`spine score`)."""

from __future__ import annotations

import json
from pathlib import Path

from spine.model.result import LaneResult
from spine.model.score import grade
from tests.conftest import Spine, data_of


def _lane(spine: Spine, repo: Path, *args: str, expect: int = 0) -> dict:
    return spine.json("run", "--json", *args, cwd=repo, expect=expect)  # type: ignore[no-any-return]


def test_show_lane_run_and_latest(spine: Spine, repo: Path) -> None:
    result = _lane(spine, repo, "--lane", "a", "--check", "true", "first", "--", "sh", "-c", "echo 1 > 1.txt")
    ref = f"{result['runId']}/a"
    assert spine.json("show", ref, "--json", cwd=repo) == result
    run = {"runId": result["runId"], "results": [result], "pending": []}
    assert spine.json("show", result["runId"], "--json", cwd=repo) == run
    assert spine.json("show", "--json", cwd=repo) == run  # the latest run
    human = spine("show", ref, cwd=repo).stdout
    assert "succeeded" in human and "check true" in human and result["nextAction"] in human
    missing = spine("show", f"{result['runId']}/zzz", cwd=repo)
    assert missing.returncode == 2 and "has no lane 'zzz'" in missing.stderr


def test_show_never_writes(spine: Spine, repo: Path) -> None:
    result = _lane(spine, repo, "x", "--", "true")
    state = repo / ".git" / "spine"
    before = {p: p.stat().st_mtime_ns for p in state.rglob("*")}
    spine("show", cwd=repo)
    spine("show", result["runId"], "--json", cwd=repo)
    assert {p: p.stat().st_mtime_ns for p in state.rglob("*")} == before


def test_score_passes_real_results_and_flags_doctored_ones(spine: Spine, repo: Path, tmp_path: Path) -> None:
    good = _lane(spine, repo, "--check", "true", "graded", "--", "sh", "-c", "echo g > g.txt")
    path = repo / ".git" / "spine" / "runs" / good["runId"] / "lanes" / good["laneId"] / "result.json"
    ok = spine("score", str(path), cwd=repo)
    assert ok.returncode == 0, ok.stdout
    assert ok.stdout.startswith("ok  100")
    assert spine("score", f"{good['runId']}/{good['laneId']}", cwd=repo).returncode == 0

    doctored = dict(good)
    doctored["validation"] = [dict(good["validation"][0], status="failed")]
    bad_path = tmp_path / "doctored.json"
    bad_path.write_text(json.dumps(doctored))
    proc = spine("score", str(bad_path), "--json", cwd=repo)
    assert proc.returncode == 1
    report = data_of(proc)
    assert report["passed"] is False
    assert "status is succeeded but check(s) true failed" in report["results"][0]["contradictions"]


def test_grade_rewards_complete_consistent_results(spine: Spine, repo: Path) -> None:
    failed = _lane(spine, repo, "--check", "true", "fails", "--", "false", expect=1)
    g = grade(LaneResult.model_validate(failed))
    assert g.contradictions == [] and g.score == 100
    no_checks = _lane(spine, repo, "no checks", "--", "true")
    g = grade(LaneResult.model_validate(no_checks))
    assert "no validation was recorded (configure checks)" in g.gaps and g.score < 100
    lying = LaneResult.model_validate({**failed, "status": "succeeded"})
    assert grade(lying).score < 80
