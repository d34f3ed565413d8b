"""Shell completion, asked the way a shell asks it: run ids, RUN/LANE, lane ids, backends, operators.

bash is driven for real (the script from `_SPINE_COMPLETE=bash_source` is sourced and its function
called with COMP_WORDS/COMP_CWORD); zsh and fish through the same protocol their scripts speak.
Completion reads only: the state directory is the same before and after.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Spine, write_files

SPINE = str(Path(sys.executable).with_name("spine"))


def complete(repo: Path, line: str, shell: str = "bash") -> list[str]:
    """What spine offers for the last word of ``line``, through the protocol of ``shell``."""
    words = line.split(" ")
    env = {
        **os.environ,
        "_SPINE_COMPLETE": f"{shell}_complete",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - 1),
    }
    if shell == "fish":
        env["COMP_CWORD"] = words[-1]
    proc = subprocess.run([SPINE], cwd=repo, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    if shell == "bash":
        return [item.partition(",")[2] for item in proc.stdout.splitlines() if item]
    if shell == "zsh":
        lines = proc.stdout.splitlines()
        return [lines[n + 1] for n in range(0, len(lines), 3)]
    return [item.split("\t")[0].partition(",")[2] for item in proc.stdout.splitlines() if item]


def bash_complete(repo: Path, line: str) -> list[str]:
    """Source spine's bash completion script and complete ``line`` as bash would on TAB."""
    script = subprocess.run(
        [SPINE],
        env={**os.environ, "_SPINE_COMPLETE": "bash_source"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    words = line.split(" ")
    program = (
        f"{script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        "_spine_completion spine\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{Path(SPINE).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", "-c", program], cwd=repo, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


@pytest.fixture
def runs(repo: Path, spine: Spine) -> Path:
    write_files(
        repo,
        {
            ".spine.yaml": (
                "operators:\n  - id: ingest\n    name: Ingest\n    modes: [PIPELINE]\n    timebox: 10m\n"
                "    command: 'true'\n    acceptance: [test -n x]\n  - id: index\n    name: Index\n    modes: [PIPELINE]\n"
                "    timebox: 10m\n    command: 'true'\n    acceptance: [test -n x]\n"
            )
        },
    )
    for run_id, lanes in (("alpha", ["one", "two"]), ("beta", ["solo"])):
        batch = repo.parent / f"{run_id}.yaml"
        batch.write_text(
            "lanes:\n"
            + "".join(f"  - {{id: {lane}, objective: {lane}, command: 'true'}}\n" for lane in lanes)
        )
        assert spine("batch", str(batch), "--run-id", run_id, "--plan", cwd=repo).returncode == 0
    return repo


def snapshot(repo: Path) -> dict[str, int]:
    state = repo / ".git" / "spine"
    return {str(p): p.stat().st_mtime_ns for p in state.rglob("*")}


def test_bash_completes_runs_lanes_backends_and_operators(runs: Path) -> None:
    before = snapshot(runs)
    assert bash_complete(runs, "spine show ") == ["alpha", "beta"]
    assert bash_complete(runs, "spine show al") == ["alpha", "alpha/one", "alpha/two"]
    assert bash_complete(runs, "spine status alpha/t") == ["alpha/two"]
    assert bash_complete(runs, "spine logs alpha ") == ["one", "two"]
    assert bash_complete(runs, "spine resume b") == ["beta"]
    assert bash_complete(runs, "spine resume alpha --retry --lane ") == ["one", "two"]
    assert bash_complete(runs, "spine gate --lane beta/") == ["beta/solo"]
    assert bash_complete(runs, "spine run --backend local") == ["local-worktree", "local-remote"]
    assert bash_complete(runs, "spine run --op in") == ["ingest", "index"]
    assert bash_complete(runs, "spine ops ing") == ["ingest"]
    assert bash_complete(runs, "spine run --mode pi") == ["PIPELINE"]
    assert bash_complete(runs, "spine sh") == ["show"]
    assert snapshot(runs) == before  # completion never writes state


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_shell_protocol_gets_the_same_candidates(runs: Path, shell: str) -> None:
    assert complete(runs, "spine promote alpha/", shell) == ["alpha/one", "alpha/two"]
    assert complete(runs, "spine backends bubble", shell) == ["bubblewrap"]


def test_completion_outside_a_repository_or_with_a_broken_config_offers_nothing_quietly(
    runs: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    assert complete(outside, "spine show ") == []
    assert complete(outside, "spine run --backend no") == ["none"]
    (runs / ".spine.yaml").write_text("operators: [oops\n")
    assert complete(runs, "spine run --op ") == []
    assert complete(runs, "spine show b") == ["beta", "beta/solo"]  # runs do not need the configuration


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_documented_activation_script_is_printed(shell: str) -> None:
    proc = subprocess.run(
        [SPINE],
        env={**os.environ, "_SPINE_COMPLETE": f"{shell}_source"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "_SPINE_COMPLETE" in proc.stdout
    docs = (Path(__file__).resolve().parent.parent / "docs" / "completion.md").read_text()
    assert f"_SPINE_COMPLETE={shell}_source spine" in docs


def test_the_spine_script_is_where_the_tests_expect_it() -> None:
    assert Path(SPINE).is_file() or shutil.which("spine") is not None
