"""What the gate leaves for CI: the step summary under any output and any neighbour, JUnit after a
conflict, a summary file that cannot be written, and the pre-push hooks (pre-commit's and spine's)."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from tests.conftest import Spine, git, write_files


def commit_all(root: Path, message: str) -> None:
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", message, cwd=root)


@pytest.fixture
def feature(repo: Path) -> Path:
    git("checkout", "-q", "-b", "feature", cwd=repo)
    write_files(repo, {"feature.txt": "feature\n"})
    commit_all(repo, "feature work")
    git("checkout", "-q", "main", cwd=repo)
    return repo


def render(markdown: str) -> list[tuple[str, str]]:
    """(block type, text) of each top-level block, as GitHub's CommonMark-with-tables reads it."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    blocks = []
    for n, token in enumerate(tokens):
        if token.level != 0 or token.nesting == -1:
            continue
        text = (
            tokens[n + 1].content if token.type.endswith("_open") and n + 1 < len(tokens) else token.content
        )
        blocks.append((token.type, text))
    return blocks


NASTY = (
    "printf 'a ``` fence\\n```\\nstill output\\n### not a heading\\n</details>\\n"
    "progress 10%%\\rprogress 100%%\\n'; exit 1"
)


def test_two_gates_appending_each_keep_their_heading_and_output(
    feature: Path, spine: Spine, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    first = spine("gate", "feature", "--into", "main", "--check", NASTY, "-q", cwd=feature, env=env)
    second = spine("gate", "feature", "--into", "main", "--check", "true", "-q", cwd=feature, env=env)
    assert (first.returncode, second.returncode) == (1, 0)
    blocks = render(summary.read_text())
    headings = [text for kind, text in blocks if kind == "heading_open"]
    assert headings == [
        "earlier step",
        "❌ spine gate failed: `feature` into `main`",
        "✅ spine gate passed: `feature` into `main`",
    ]
    fences = [text for kind, text in blocks if kind == "fence"]
    assert fences == ["a ``` fence\n```\nstill output\n### not a heading\n</details>\nprogress 100%\n"]


def test_a_check_name_with_a_pipe_stays_in_its_cell(feature: Path, spine: Spine, tmp_path: Path) -> None:
    configure = "gate:\n  checks:\n    - {name: 'a|b <i>', command: 'echo x | grep -q y'}\n"
    write_files(feature, {".spine.yaml": configure})
    commit_all(feature, "config")
    git("checkout", "-q", "feature", cwd=feature)
    git("merge", "-q", "--no-edit", "main", cwd=feature)
    summary = tmp_path / "summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    proc = spine("gate", "feature", "--into", "main", cwd=feature, env=env)
    assert proc.returncode == 1
    tokens = MarkdownIt("commonmark").enable("table").parse(summary.read_text())
    cells = [tokens[n + 1].content for n, t in enumerate(tokens) if t.type == "td_open"]
    assert len(cells) == 4, cells
    assert cells[0] == "a|b &lt;i&gt;" and cells[1] == "❌ failed"  # the pipe is text, not a column
    html = MarkdownIt("commonmark").enable("table").render(summary.read_text())
    assert "<td>a|b &lt;i&gt;</td>" in html  # shown as written, not taken as markup


def test_an_unwritable_step_summary_is_a_warning_not_a_failure(
    feature: Path, spine: Spine, tmp_path: Path
) -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "no" / "such" / "dir" / "summary.md"),
    }
    passed = spine("gate", "feature", "--into", "main", "--check", "true", cwd=feature, env=env)
    assert passed.returncode == 0, passed.stderr
    assert "spine: warning: cannot append the step summary to" in passed.stderr
    assert "the verdict is unchanged" in passed.stderr and "Traceback" not in passed.stderr
    as_json = spine.json(
        "gate", "feature", "--into", "main", "--check", "true", "--json", cwd=feature, env=env
    )
    assert as_json["passed"] is True
    failed = spine("gate", "feature", "--into", "main", "--check", "false", cwd=feature, env=env)
    assert failed.returncode == 1


def test_after_a_conflict_junit_lists_the_checks_as_skipped(repo: Path, spine: Spine, tmp_path: Path) -> None:
    git("checkout", "-q", "-b", "feature", cwd=repo)
    write_files(repo, {"README.md": "feature\n"})
    commit_all(repo, "feature readme")
    git("checkout", "-q", "main", cwd=repo)
    write_files(repo, {"README.md": "main\n"})
    commit_all(repo, "main readme")
    report = tmp_path / "gate.xml"
    summary = tmp_path / "summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    proc = spine(
        "gate",
        "feature",
        "--into",
        "main",
        "--check",
        "make test",
        "--check",
        "ruff check .",
        "--junit",
        str(report),
        cwd=repo,
        env=env,
    )
    assert proc.returncode == 1
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "2")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == ["merge", "make", "ruff"]
    for name in ("make", "ruff"):
        skipped = cases[name].find("skipped")
        assert skipped is not None and skipped.get("message") == "not run: the merge conflicts"
    assert "Not run because the merge conflicts: `make`, `ruff`." in summary.read_text()


def test_pre_commit_hook_declares_its_minimum_version() -> None:
    import yaml

    hooks = yaml.safe_load((Path(__file__).resolve().parent.parent / ".pre-commit-hooks.yaml").read_text())
    assert [hook["minimum_pre_commit_version"] for hook in hooks] == ["3.2.0"]
    assert all("pre-push" in hook["stages"] for hook in hooks)


def test_under_pre_commit_the_gate_says_only_one_ref_is_gated(feature: Path, spine: Spine) -> None:
    """pre-commit (hook_impl._pre_push_ns) exports only the first pushed ref with new commits."""
    sha = git("rev-parse", "feature", cwd=feature)
    env = {
        "PRE_COMMIT_TO_REF": sha,
        "PRE_COMMIT_FROM_REF": git("rev-parse", "main", cwd=feature),
        "PRE_COMMIT_LOCAL_BRANCH": "refs/heads/feature",
        "PRE_COMMIT_REMOTE_BRANCH": "refs/heads/feature",
        "PRE_COMMIT_REMOTE_NAME": "origin",
        "PRE_COMMIT_REMOTE_URL": "/dev/null",
    }
    verdict = spine.json(
        "gate", "--into", "main", "--check", "test -f feature.txt", "--json", cwd=feature, env=env
    )
    assert verdict["revSha"] == sha
    proc = spine("gate", "--into", "main", "--check", "true", cwd=feature, env=env)
    assert "pre-commit passes only the first pushed ref with new commits (refs/heads/feature)" in proc.stderr
    assert "spine hooks install pre-push" in proc.stderr
    # A push that carries the root commit: pre-commit sets no range, only the branch.
    root_push = {k: v for k, v in env.items() if k not in ("PRE_COMMIT_TO_REF", "PRE_COMMIT_FROM_REF")}
    verdict = spine.json("gate", "--into", "main", "--check", "true", "--json", cwd=feature, env=root_push)
    assert verdict["revSha"] == sha and verdict["rev"] == "refs/heads/feature"
    plain = spine("gate", "--into", "main", "--check", "true", cwd=feature)
    assert "pre-commit" not in plain.stderr


@pytest.mark.parametrize("object_format", ["sha1", "sha256"])
def test_the_pre_push_hook_lets_branch_deletions_through(
    tmp_path: Path, spine: Spine, object_format: str
) -> None:
    work = tmp_path / "work"
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", f"--object-format={object_format}", str(remote), cwd=tmp_path)
    git("init", "-q", "-b", "main", f"--object-format={object_format}", str(work), cwd=tmp_path)
    write_files(
        work, {"README.md": "x\n", ".spine.yaml": "gate:\n  checks:\n    - {name: never, command: 'false'}\n"}
    )
    commit_all(work, "initial")
    git("remote", "add", "origin", str(remote), cwd=work)
    git("push", "-q", "origin", "main", "main:doomed", cwd=work)
    assert spine("hooks", "install", "pre-push", cwd=work).returncode == 0
    zero = "0" * (64 if object_format == "sha256" else 40)
    assert len(git("rev-parse", "main", cwd=work)) == len(zero)
    deletion = subprocess.run(
        ["git", "push", "origin", "--delete", "doomed"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ},
    )
    assert deletion.returncode == 0, deletion.stdout + deletion.stderr
    assert git("branch", "--list", "doomed", cwd=remote) == ""
    # ...while a push of new work is still gated (the check fails).
    write_files(work, {"more.txt": "y\n"})
    commit_all(work, "more")
    blocked = subprocess.run(
        ["git", "push", "origin", "main"], cwd=work, capture_output=True, text=True, check=False
    )
    assert blocked.returncode != 0 and "gate FAILED" in blocked.stdout + blocked.stderr
