"""spine gate: the merge result is what gets tested, verdicts are cached, reports are readable by CI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import Spine, git, write_files


def commit_all(root: Path, message: str) -> None:
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", message, cwd=root)


@pytest.fixture
def branched(repo: Path) -> Path:
    """main and feature have each moved on since they split: only their merge has both files."""
    git("checkout", "-q", "-b", "feature", cwd=repo)
    write_files(repo, {"feature.txt": "feature\n"})
    commit_all(repo, "feature work")
    git("checkout", "-q", "main", cwd=repo)
    write_files(repo, {"main.txt": "main\n"})
    commit_all(repo, "main moved on")
    return repo


def configure(repo: Path, yaml_text: str) -> None:
    write_files(repo, {".spine.yaml": yaml_text})
    commit_all(repo, "configure spine")


def worktree_paths(repo: Path) -> list[str]:
    return [
        line.removeprefix("worktree ")
        for line in git("worktree", "list", "--porcelain", cwd=repo).splitlines()
        if line.startswith("worktree ")
    ]


def test_clean_merge_passes_and_the_checks_see_the_merge_result(branched: Path, spine: Spine) -> None:
    configure(
        branched,
        "gate:\n  into: main\n  checks:\n"
        "    - name: both-sides\n      command: test -f main.txt && test -f feature.txt\n",
    )
    head_before = git("rev-parse", "HEAD", cwd=branched)
    verdict = spine.json("gate", "feature", "--json", cwd=branched, subprocess=True)  # as a CI step runs it
    assert verdict["passed"] is True
    assert verdict["reason"] == "passed"
    assert verdict["into"] == "main"
    assert verdict["cached"] is False
    assert [c["status"] for c in verdict["checks"]] == ["passed"]
    # The merged tree is real: it has both files, and it is what `git merge` would produce.
    names = git("ls-tree", "--name-only", verdict["mergedTree"], cwd=branched).split()
    assert {"main.txt", "feature.txt"} <= set(names)
    # No checkout was touched and the throwaway worktree is gone.
    assert git("rev-parse", "HEAD", cwd=branched) == head_before
    assert git("status", "--porcelain", cwd=branched) == ""
    assert worktree_paths(branched) == [str(branched)]


def test_failing_check_fails_the_gate_with_its_output(branched: Path, spine: Spine) -> None:
    proc = spine(
        "gate", "feature", "--into", "main", "--check", "echo 'tests: 3 failed'; exit 4", cwd=branched
    )
    assert proc.returncode == 1, proc.stderr
    assert "gate FAILED" in proc.stdout
    assert "exit 4: tests: 3 failed" in proc.stdout
    verdict = spine.json(
        "gate", "feature", "--into", "main", "--check", "exit 4", "--json", cwd=branched, expect=1
    )
    assert verdict["reason"] == "check-failed"
    assert verdict["checks"][0]["exitCode"] == 4
    assert worktree_paths(branched) == [str(branched)]


def test_merge_conflict_fails_and_lists_the_conflicting_paths(repo: Path, spine: Spine) -> None:
    git("checkout", "-q", "-b", "feature", cwd=repo)
    write_files(repo, {"README.md": "# feature's title\n", "src/other.txt": "feature\n", "new.txt": "x\n"})
    commit_all(repo, "feature edits")
    git("checkout", "-q", "main", cwd=repo)
    write_files(repo, {"README.md": "# main's title\n", "src/other.txt": "main\n"})
    commit_all(repo, "main edits")

    proc = spine("gate", "feature", "--into", "main", "--check", "true", cwd=repo)
    assert proc.returncode == 1
    assert "CONFLICT in 2 paths" in proc.stdout
    assert "README.md" in proc.stdout and "src/other.txt" in proc.stdout
    verdict = spine.json("gate", "feature", "--into", "main", "--json", cwd=repo, expect=1)
    assert verdict["reason"] == "conflict"
    assert verdict["conflicts"] == ["README.md", "src/other.txt"]
    assert verdict["checks"] == []
    assert git("status", "--porcelain", cwd=repo) == ""


def test_second_gate_of_the_same_tree_is_cached_and_retest_forces(
    branched: Path, spine: Spine, tmp_path: Path
) -> None:
    counter = tmp_path / "ran"
    check = f"echo run >> {counter}"
    first = spine.json("gate", "feature", "--into", "main", "--check", check, "--json", cwd=branched)
    second = spine.json("gate", "feature", "--into", "main", "--check", check, "--json", cwd=branched)
    assert first["cached"] is False and second["cached"] is True
    assert second["mergedTree"] == first["mergedTree"] and second["passed"] is True
    assert counter.read_text().count("run") == 1
    human = spine("gate", "feature", "--into", "main", "--check", check, cwd=branched)
    assert "cached verdict" in human.stdout and "--retest" in human.stdout
    assert counter.read_text().count("run") == 1

    retest = spine.json(
        "gate", "feature", "--into", "main", "--check", check, "--retest", "--json", cwd=branched
    )
    assert retest["cached"] is False
    assert counter.read_text().count("run") == 2
    # Another check definition is another question: not answered from the cache.
    other = spine.json(
        "gate", "feature", "--into", "main", "--check", check + " # v2", "--json", cwd=branched
    )
    assert other["cached"] is False
    assert counter.read_text().count("run") == 3


def test_junit_report_parses_even_with_control_characters(
    branched: Path, spine: Spine, tmp_path: Path
) -> None:
    report = tmp_path / "reports" / "gate.xml"
    failing = r"printf '\033[31mred <&> output\033[0m\n'; exit 2"
    proc = spine(
        "gate",
        "feature",
        "--into",
        "main",
        "--check",
        "true",
        "--check",
        failing,
        "--junit",
        str(report),
        cwd=branched,
    )
    assert proc.returncode == 1
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "3" and suite.get("failures") == "1"
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"merge", "true", "printf"}
    assert cases["true"].find("failure") is None
    failure = cases["printf"].find("failure")
    assert failure is not None and "exit 2" in (failure.get("message") or "")
    assert "red <&> output" in (failure.text or "")


def test_github_actions_annotations_and_step_summary(repo: Path, spine: Spine, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    git("checkout", "-q", "-b", "feature", cwd=repo)
    write_files(repo, {"feature.txt": "x\n"})
    commit_all(repo, "feature")
    proc = spine(
        "gate", "feature", "--into", "main", "--check", "echo boom: it broke; exit 1", cwd=repo, env=env
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stdout.splitlines() if line.startswith("::error ")]
    assert len(errors) == 1
    assert errors[0].startswith("::error title=spine gate%3A check echo failed::exit 1")
    assert "boom: it broke" in errors[0]
    text = summary.read_text()
    assert text.startswith("# earlier step\n")  # appended, not overwritten
    assert "spine gate failed" in text and "| echo | ❌ failed |" in text

    # A conflict annotates each conflicting file.
    write_files(repo, {"README.md": "feature\n"})
    commit_all(repo, "feature readme")
    git("checkout", "-q", "main", cwd=repo)
    write_files(repo, {"README.md": "main\n"})
    commit_all(repo, "main readme")
    proc = spine("gate", "feature", "--into", "main", cwd=repo, env=env)
    assert proc.returncode == 1
    assert "::error file=README.md,title=spine gate%3A merge conflict::" in proc.stdout

    # Outside GitHub Actions nothing of the sort is printed.
    quiet = spine("gate", "feature", "--into", "main", cwd=repo)
    assert "::error" not in quiet.stdout


def test_gate_from_a_real_pre_push_hook(branched: Path, spine: Spine, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    git("remote", "add", "origin", str(remote), cwd=branched)
    # The check proves it runs in the throwaway merge checkout: git there must not see the hook's
    # GIT_DIR / GIT_INDEX_FILE, and must find a clean tree with both sides of the merge.
    configure(
        branched,
        "gate:\n  into: main\n  checks:\n    - name: merged\n      command: >-\n"
        '        test "$(git rev-parse --show-toplevel)" = "$SPINE_WORKTREE"\n'
        '        && test -z "$(git status --porcelain)" && test -f main.txt && test ! -f broken\n',
    )
    git("push", "-q", "origin", "main", cwd=branched)
    installed = spine("hooks", "install", "pre-push", cwd=branched)
    assert installed.returncode == 0, installed.stderr
    git("checkout", "-q", "feature", cwd=branched)
    git("merge", "-q", "--no-edit", "main", cwd=branched)  # the gate config is read from this checkout
    write_files(branched, {"broken": "x\n"})
    commit_all(branched, "breaks the gate")

    push = subprocess.run(
        ["git", "push", "origin", "feature"], cwd=branched, capture_output=True, text=True, check=False
    )
    assert push.returncode != 0
    assert "gate FAILED" in push.stdout + push.stderr
    assert git("branch", "--list", "feature", cwd=remote) == ""

    git("rm", "-q", "broken", cwd=branched)
    git("commit", "-q", "-m", "fix it", cwd=branched)
    push = subprocess.run(
        ["git", "push", "origin", "feature"], cwd=branched, capture_output=True, text=True, check=False
    )
    assert push.returncode == 0, push.stdout + push.stderr
    assert "gate PASSED" in push.stdout + push.stderr
    assert git("rev-parse", "feature", cwd=remote) == git("rev-parse", "feature", cwd=branched)
    assert worktree_paths(branched) == [str(branched)]


def test_gate_ignores_hook_variables_in_its_environment(branched: Path, spine: Spine) -> None:
    hook_env = {
        "GIT_DIR": ".git",
        "GIT_INDEX_FILE": str(branched / ".git" / "index"),
        "GIT_WORK_TREE": str(branched),
        "GIT_PREFIX": "src/",
    }
    check = 'test "$(git rev-parse --show-toplevel)" = "$SPINE_WORKTREE" && test -f feature.txt'
    verdict = spine.json(
        "gate", "feature", "--into", "main", "--check", check, "--json", cwd=branched, env=hook_env
    )
    assert verdict["passed"] is True


def test_existing_hook_is_never_overwritten_silently(repo: Path, spine: Spine, tmp_path: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.parent.mkdir(exist_ok=True)
    marker = tmp_path / "old-hook-ran"
    hook.write_text(f"#!/bin/sh\ncat > /dev/null\ntouch {marker}\n")
    hook.chmod(0o755)
    refused = spine("hooks", "install", "pre-push", cwd=repo)
    assert refused.returncode == 2
    assert "--chain" in refused.stderr and "left unchanged" in refused.stderr
    assert "touch" in hook.read_text()

    chained = spine("hooks", "install", "pre-push", "--chain", cwd=repo)
    assert chained.returncode == 0, chained.stderr
    assert (repo / ".git" / "hooks" / "pre-push.spine-chained").is_file()
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    git("remote", "add", "origin", str(remote), cwd=repo)
    git("push", "-q", "origin", "main", cwd=repo)
    assert marker.exists()  # the old hook still ran

    removed = spine("hooks", "uninstall", "pre-push", cwd=repo)
    assert removed.returncode == 0
    assert "touch" in hook.read_text()  # the chained hook is back in place


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_gate_removes_its_throwaway_worktree(branched: Path, sig: signal.Signals) -> None:
    started = branched.parent / f"started-{sig.name}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spine",
            "gate",
            "feature",
            "--into",
            "main",
            "--check",
            f"touch {started}; sleep 30",
        ],
        cwd=branched,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), "the check never started"
    assert len(worktree_paths(branched)) == 2
    os.kill(proc.pid, sig)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert worktree_paths(branched) == [str(branched)]
    gate_root = branched / ".git" / "spine" / "worktrees" / ".gate"
    assert not gate_root.exists() or not any(gate_root.iterdir())


def test_bad_input_exits_2(branched: Path, spine: Spine) -> None:
    proc = spine("gate", "no-such-branch", "--into", "main", cwd=branched)
    assert proc.returncode == 2
    assert "unknown revision 'no-such-branch'" in proc.stderr
    proc = spine("gate", "feature", "--into", "nope", cwd=branched)
    assert proc.returncode == 2
    assert "unknown target (--into) 'nope'" in proc.stderr
    proc = spine("gate", "feature", "--lane", "x/y", cwd=branched)
    assert proc.returncode == 2
    assert "give either REV or --lane" in proc.stderr


def test_into_stands_in_for_configured_refs_a_ci_clone_lacks(branched: Path, spine: Spine) -> None:
    configure(branched, "target: release\n")  # no local branch of that name, as in a fresh CI clone
    plain = spine("gate", "feature", cwd=branched)
    assert plain.returncode == 2 and "unknown target ref 'release'" in plain.stderr
    verdict = spine.json("gate", "feature", "--into", "main", "--check", "true", "--json", cwd=branched)
    assert verdict["passed"] is True and verdict["into"] == "main"
