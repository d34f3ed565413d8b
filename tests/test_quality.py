"""The code itself: ruff and mypy --strict are clean, and the package installs as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_lint_is_clean() -> None:
    proc = _run("ruff", "check", "spine", "adapters", "tests", "benchmarks")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_is_clean() -> None:
    proc = _run("ruff", "format", "--check", "spine", "adapters")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_is_clean() -> None:
    proc = _run("mypy", "spine", "adapters")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_adapters_install_under_the_spine_namespace() -> None:
    import spine.adapters

    assert Path(spine.adapters.__file__).parent.name == "adapters"
    proc = subprocess.run(
        [sys.executable, "-c", "import adapters"], cwd="/", capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0, "adapters must not be importable as a top-level module"


def test_help_does_not_import_the_heavy_modules() -> None:
    code = (
        "import sys; from spine.cli import run_cli; run_cli(['--help']); "
        "print('LOADED=' + ','.join(m for m in ('pydantic', 'yaml', 'filelock', 'spine.lane.steps') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.stdout.strip().splitlines()[-1] == "LOADED=", proc.stdout


LOADED_MODELS = (
    "import sys\nfrom spine.cli import run_cli\n"
    "try:\n    run_cli(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
    "print('LOADED=' + ','.join(m for m in ('spine.model.operators', 'spine.model.modes', 'spine.lane.grading') if m in sys.modules))"
)


def test_plain_lanes_do_not_build_the_operator_and_mode_models(repo: Path) -> None:
    def loaded(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", LOADED_MODELS, *args],
            cwd=repo,
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.stdout.strip().splitlines()[-1]

    assert loaded("run", "-q", "a plain lane", "--", "true") == "LOADED="
    assert loaded("status") == "LOADED="
    assert loaded("show") == "LOADED="
    # A lane with a mode needs them, and loads them.
    assert loaded("run", "-q", "--mode", "PIPELINE", "a lane with a mode", "--", "true") == (
        "LOADED=spine.model.operators,spine.model.modes,spine.lane.grading"
    )
