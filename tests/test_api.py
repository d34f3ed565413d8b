"""The Python API: ``import spine``, the worked script of docs/api.md, typed results and errors."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git
from tests.lanetool import result as read_result

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "api.md"


def worked_script() -> str:
    """The first python block of docs/api.md: the worked script."""
    match = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert match, "docs/api.md has no worked script"
    return match.group(1)


def test_the_script_uses_only_the_documented_api() -> None:
    import spine

    tree = ast.parse(worked_script())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported == {"spine", "sys"}
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "spine"
    }
    assert used and used <= set(spine.__all__), used - set(spine.__all__)
    assert {"run_batch", "results", "promote"} <= used


def test_the_worked_script_runs_a_batch_reads_results_and_lands_a_lane(repo: Path) -> None:
    script = repo.parent / "land_greeting.py"
    script.write_text(worked_script())
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=repo, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    run_id = re.fullmatch(r"run (\S+): exit code 1", lines[0])
    assert run_id, lines
    assert lines[1].startswith("  greeting: succeeded: command succeeded")
    assert lines[2] == "  broken: failed: command exited with code 3 after " + lines[2].split(" after ")[1]
    assert re.fullmatch(r"  landed greeting on main: [0-9a-f]{12} -> [0-9a-f]{12}", lines[3])
    assert lines[4] == "  a missing run: exit code 2: no run 'no-such-run' in this repository"
    # The lane landed: squashed onto main, in the checkout, and recorded in its result.
    assert (repo / "GREETING.txt").read_text() == "hello\n"
    assert git("log", "-1", "--format=%s", "main", cwd=repo).startswith("add a greeting")
    promotion = read_result(repo, run_id.group(1), "greeting")["promotion"]
    assert promotion["strategy"] == "squash" and promotion["target"] == "main"
    assert read_result(repo, run_id.group(1), "broken")["promotion"] is None
    assert 'data-lane="greeting" data-status="succeeded"' in (repo / "report.html").read_text()


def test_every_public_name_is_documented_and_typed() -> None:
    import spine

    doc = DOC.read_text()
    for name in spine.__all__:
        assert f"`{name}" in doc or f"`spine.{name}" in doc, (
            f"{name} is in spine.__all__ but not in docs/api.md"
        )
        value = getattr(spine, name)
        if callable(value) and name != "__version__":
            assert (value.__doc__ or "").strip(), f"spine.{name} has no docstring"
    # Every function of the documented table is exported.
    documented = set(re.findall(r"^\| `(\w+)\(", doc, re.M))
    assert documented and documented <= set(spine.__all__), documented - set(spine.__all__)
    assert spine.API_VERSION == 1 and "spine.API_VERSION" in doc
    with pytest.raises(AttributeError):
        spine.no_such_name  # noqa: B018
    assert "run_batch" in dir(spine)


def test_import_spine_loads_nothing_until_used() -> None:
    code = (
        "import sys, spine\n"
        "print('before', 'pydantic' in sys.modules, 'spine.api' in sys.modules, spine.__version__)\n"
        "spine.LaneStatus\n"
        "print('after', 'pydantic' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == ["before False False 0.1.0", "after True"]


def test_errors_carry_the_exit_code(repo: Path, tmp_path: Path) -> None:
    import spine

    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    with pytest.raises(spine.NotARepository) as not_repo:
        spine.context(outside)
    assert not_repo.value.exit_code == spine.ExitCode.USAGE == 2
    assert "git init" in (not_repo.value.hint or "")
    ctx = spine.context(repo)
    with pytest.raises(spine.UsageError) as no_run:
        spine.load_run(ctx, "nope")
    assert no_run.value.exit_code == 2
    with pytest.raises(spine.UsageError) as bad_batch:
        spine.run_batch(ctx, {"lanes": [{"id": "x"}]})
    assert bad_batch.value.exit_code == 2 and spine.list_runs(ctx) == []
    run, failed = spine.run_lane(ctx, spine.LaneRequest(id="nope", objective="fails", command="exit 5"))
    assert isinstance(failed, spine.LaneResult) and failed.status is spine.LaneStatus.FAILED
    assert failed.exit_code == 5 and spine.exit_code(run) == 1
    with pytest.raises(spine.PromoteRefused) as refused:
        spine.promote(ctx, run.run_id, "nope")
    assert refused.value.exit_code == 1 and "did not succeed" in refused.value.message
    with pytest.raises(spine.UsageError):
        spine.promote(ctx, run.run_id, "nope", strategy="octopus")  # type: ignore[arg-type]
    assert (
        issubclass(spine.RunBusy, spine.EnvironmentProblem) and spine.EnvironmentProblem("x").exit_code == 3
    )


def test_a_lane_a_gate_and_the_results_through_the_api(repo: Path) -> None:
    import spine

    ctx = spine.context(repo)
    request = spine.LaneRequest(
        id="note",
        objective="write a note",
        command=["sh", "-c", "echo note > NOTE.txt"],
        checks=["test -f NOTE.txt"],
    )
    run, result = spine.run_lane(ctx, request, run_id="api")
    assert run.run_id == "api" and list(run.lanes) == ["note"]
    assert result.status is spine.LaneStatus.SUCCEEDED and result.validation[0].status.value == "passed"
    assert spine.list_runs(ctx) == ["api"] and spine.load_run(ctx).run_id == "api"
    assert [r.lane_id for r in spine.results(ctx, "api")] == ["note"]
    assert spine.result(ctx, "api", "note") == result
    verdict = spine.gate(ctx, lane="api/note", checks=["test -f NOTE.txt"])
    assert isinstance(verdict, spine.GateVerdict) and verdict.passed and verdict.into == "main"
    rejected = spine.gate(ctx, lane="api/note", checks=["test -f MISSING.txt"])
    assert not rejected.passed and rejected.reason == "check-failed"
    assert "<h1>spine gate" in spine.gate_report(rejected)
    with pytest.raises(spine.UsageError):
        spine.gate(ctx, "HEAD", lane="api/note")


def test_the_version_is_the_packages() -> None:
    import tomllib

    import spine

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert spine.__version__ == project["project"]["version"]
