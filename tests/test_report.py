"""``spine report``: a run as one self-contained HTML file, checked as text and in headless Chromium."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.browser import Browser, artifacts_dir, local_only, require_chromium
from tests.lanetool import lane, state_dir, write_batch

SECRET = "tok-9f8e7d6c5b4a-secret"
HOSTILE = "<script>alert('x')</script> & \"quotes\""

# lane id -> the status the fixture run gives it
EXPECTED = {
    "green": "succeeded",
    "red": "failed",
    "checked": "failed",
    "after": "blocked",
    "big": "succeeded",
}


def fixture_run(spine: Any, repo: Path, tmp_path: Path, run_id: str = "fx") -> str:
    """A batch whose lanes end every way: succeeded with a check and an artifact, command failed
    (printing a secret), check failed, blocked, and one with a large diff."""
    big = "\n".join(f"line {i} of a generated file, long enough to count" for i in range(12000))
    (tmp_path / "big.txt").write_text(big + "\n")
    batch = write_batch(
        tmp_path / f"{run_id}.json",
        [
            {
                "id": "green",
                "objective": f"write a report {HOSTILE}",
                "command": "mkdir -p out && echo 'hello <b>world</b>' > out/greeting.txt && echo built the greeting",
                "checks": [{"name": "has-greeting", "command": "grep -q hello out/greeting.txt"}],
                "artifacts": ["out/*.txt"],
            },
            {
                "id": "red",
                "objective": "fail loudly",
                "command": f'echo {SECRET} > leak.txt && echo "token=$API_TOKEN" && echo going down && exit 3',
                "env": {"API_TOKEN": SECRET},
            },
            {
                "id": "checked",
                "objective": "a check that fails",
                "command": "echo changed > changed.txt",
                "checks": [{"name": "unit", "command": "echo 'assertion failed: 1 == 2' && exit 1"}],
            },
            lane("after", "write:after.txt", needs=["red"]),
            {"id": "big", "objective": "a large change", "command": f"cp {tmp_path / 'big.txt'} big.txt"},
        ],
    )
    proc = spine("batch", str(batch), "--run-id", run_id, "-j", "2", cwd=repo)
    assert proc.returncode == 1, proc.stderr
    return run_id


class Elements(HTMLParser):
    """Every start tag with its attributes, and whether any loads something from elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parse(text: str) -> Elements:
    parser = Elements()
    parser.feed(text)
    return parser


def test_the_report_holds_the_whole_run_in_one_file(spine: Any, repo: Path, tmp_path: Path) -> None:
    run_id = fixture_run(spine, repo, tmp_path)
    out = tmp_path / "report.html"
    proc = spine("report", run_id, "-o", str(out), cwd=repo, env={"API_TOKEN": SECRET})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote the report of run {run_id} (5 lanes) to {out}"
    text = out.read_text()
    page = parse(text)

    # Self-contained: nothing is loaded from anywhere, and the page says so to the browser.
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';' in text
    for tag, attrs in page.tags:
        for name in ("src", "href", "action", "srcset", "poster"):
            value = attrs.get(name) or ""
            assert not value or value.startswith(("#", "data:")), (tag, name, value)
    # Every lane, with its status, in the table and in its own section.
    rows = {a["data-lane"]: a["data-status"] for t, a in page.tags if t == "tr" and "data-lane" in a}
    sections = {a["data-lane"]: a["data-status"] for t, a in page.tags if t == "section" and "data-lane" in a}
    assert rows == EXPECTED and sections == EXPECTED
    tracks = [a["data-lane-track"] for t, a in page.tags if t == "div" and "data-lane-track" in a]
    assert tracks == list(EXPECTED)
    # The timeline has the steps of the lanes that ran, none for the blocked one.
    green_track = text.split('data-lane-track="green"')[1].split("</div></div>")[0]
    for step in ("create_worktree", "setup", "execute", "commit", "validate", "finalize"):
        assert f"step-{step}" in green_track
    after_track = text.split('data-lane-track="after"')[1].split("</div>")[0]
    assert "step-" not in after_track
    # Escaped, never markup; secrets masked everywhere, the diff of a file that holds one included.
    assert "<script>alert" not in text and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "hello &lt;b&gt;world&lt;/b&gt;" in text
    assert SECRET not in text and "token=[REDACTED]" in text and "+[REDACTED]" in text
    # Checks with their output tails; invariants; the diff collapsed; artifacts with size and hash.
    assert 'data-check="unit"' in text and "assertion failed: 1 == 2" in text
    assert 'data-check="has-greeting"' in text
    assert "<h3>Invariants</h3>" in text and "still the lane&#x27;s worktree" in text
    assert '<details class="diff"><summary>the diff' in text and "+changed" in text
    result = json.loads((state_dir(repo) / f"runs/{run_id}/lanes/green/result.json").read_text())
    artifact = result["artifacts"][0]
    assert (
        artifact["path"] == "out/greeting.txt"
        and artifact["sha256"] in text
        and f"{artifact['size']} B" in text
    )
    # The failed lanes' debug packets; the blocked lane says why.
    red = text.split('id="lane-red"')[1].split("</section>")[0]
    assert "<h3>Debug packet</h3>" in red and "spine -C" in red
    assert "the command exited with code 3" in red or "command exited with code 3" in red
    assert "not started: it needs red, and red failed" in text
    # The large diff is cut, and says how to see all of it.
    big = text.split('id="lane-big"')[1].split("</section>")[0]
    assert "cut at 256 KiB; the whole diff: <code>git diff" in big
    assert len(text.encode()) < 2 << 20


def test_report_defaults_stdout_and_bad_input(spine: Any, repo: Path, tmp_path: Path) -> None:
    assert spine("report", cwd=repo).returncode == 2  # no runs yet
    spine("run", "one lane", "--run-id", "solo", "--", "sh", "-c", "echo hi > hi.txt", cwd=repo)
    proc = spine("report", cwd=tmp_path / "repo")
    assert proc.returncode == 0, proc.stderr
    written = repo / "spine-report-solo.html"
    assert written.is_file() and 'data-lane="one-lane"' in written.read_text()
    written.unlink()
    printed = spine("report", "solo", "-o", "-", cwd=repo)
    assert printed.returncode == 0 and printed.stdout.startswith("<!doctype html>")
    assert printed.stdout.rstrip().endswith("</html>")
    missing = spine("report", "nope", cwd=repo)
    assert missing.returncode == 2 and "no run 'nope'" in missing.stderr
    lane_ref = spine("report", "solo/one-lane", cwd=repo)
    assert lane_ref.returncode == 2 and "report takes a run, not a lane" in lane_ref.stderr
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file")
    unwritable = spine("report", "solo", "-o", str(blocked / "r.html"), cwd=repo)
    assert (
        unwritable.returncode == 2
        and "cannot write" in unwritable.stderr
        and "Traceback" not in unwritable.stderr
    )


def test_attempts_and_promotions_are_shown(spine: Any, repo: Path, tmp_path: Path) -> None:
    mark = tmp_path / "tried-once"
    flaky = f"test -e {mark} || {{ touch {mark}; echo first try fails; exit 1; }}; echo fixed > fixed.txt"
    spine("run", "flaky lane", "--lane", "flaky", "--run-id", "again", "--", flaky, cwd=repo)
    assert spine("resume", "again", "--retry", cwd=repo).returncode == 0
    assert spine("promote", "again/flaky", cwd=repo).returncode == 0
    out = tmp_path / "again.html"
    assert spine("report", "again", "-o", str(out), cwd=repo).returncode == 0
    text = out.read_text()
    attempts = text.split("<h3>Retries</h3>")[1].split("</table>")[0]
    assert "try 1" in attempts and "try 2 (current)" in attempts
    assert re.search(r"<th>status</th><td>failed</td><td>succeeded</td>", attempts)
    assert "<h3>Promotion</h3>" in text and "landed on" in text and "<code>main</code> (merge)" in text


def test_attempts_and_iterations_are_rendered_side_by_side(spine: Any, repo: Path) -> None:
    """A lane with attempts gets them side by side with its pick marked; a repair loop its passes."""
    from spine import api
    from spine.views.report import gather, render_run

    spine("run", "plain", "--lane", "plain", "--run-id", "iter", "--", "true", cwd=repo)
    ctx = api.context(repo)
    assert "<h3>Attempts</h3>" not in render_run(gather(ctx, "iter"))
    proc = spine(
        "run", "two ways", "--lane", "two", "--run-id", "best", "--attempts", "2", "-q",
        "--check", "test -f ok.txt", "--", "sh", "-c",
        'if [ "$SPINE_LANE_ID" = two.2 ]; then echo "<i>two</i>" > ok.txt; else echo no > no.txt; fi',
        cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = render_run(gather(ctx, "best"))
    block = text.split("<h3>Attempts</h3>")[1].split("</table>")[0]
    assert "<th>attempt 1</th><th>attempt 2 (picked)</th>" in block
    assert "<td>failed</td><td>succeeded</td>" in block.replace("\n", "")
    proc = spine(
        "run", "fix", "--lane", "loop", "--run-id", "loop", "--iterations", "2", "-q",
        "--check", "test -f fixed", "--", "sh", "-c", '[ -n "$SPINE_FEEDBACK" ] && touch fixed; touch seen',
        cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = render_run(gather(ctx, "loop"))
    block = text.split("<h3>Iterations</h3>")[1].split("</table>")[0]
    assert "<th>iteration 1</th><th>iteration 2</th>" in block and "fixed" in block


def test_gate_writes_a_report(spine: Any, repo: Path, tmp_path: Path) -> None:
    spine("run", "gate me", "--lane", "g", "--run-id", "gr", "--", "sh", "-c", "echo g > g.txt", cwd=repo)
    good = tmp_path / "gate-pass.html"
    proc = spine("gate", "--lane", "gr/g", "--check", "test -f g.txt", "--report", str(good), cwd=repo)
    assert proc.returncode == 0, proc.stderr
    text = good.read_text()
    assert 'class="badge s-passed">passed</span></h1>' in text and 'data-status="passed"' in text
    bad = tmp_path / "gate-fail.html"
    failing = "echo 'expected 3, got 4' && exit 1"
    proc = spine("gate", "--lane", "gr/g", "--check", failing, "--report", str(bad), cwd=repo)
    assert proc.returncode == 1
    text = bad.read_text()
    assert 'class="badge s-failed">failed</span></h1>' in text and "expected 3, got 4" in text
    assert "<details open>" in text


def test_the_report_in_chromium(spine: Any, repo: Path, tmp_path: Path) -> None:
    executable = require_chromium()
    run_id = fixture_run(spine, repo, tmp_path)
    out = tmp_path / "report.html"
    assert spine("report", run_id, "-o", str(out), cwd=repo).returncode == 0
    gate_out = tmp_path / "gate.html"
    spine("gate", "--lane", f"{run_id}/green", "--check", "true", "--report", str(gate_out), cwd=repo)
    browser = Browser(executable)
    try:
        browser.open(out.as_uri())
        shown = browser.eval(
            "Object.fromEntries([...document.querySelectorAll('tr[data-lane]')]"
            ".map(r => [r.dataset.lane, r.querySelector('.badge').textContent]))"
        )
        assert shown == EXPECTED
        visible = browser.eval(
            "[...document.querySelectorAll('section.lane')].filter(s => s.offsetHeight > 0).length"
        )
        assert visible == len(EXPECTED)
        # The diff is collapsed until opened.
        assert browser.eval("document.querySelector('#lane-green details.diff').open") is False
        browser.screenshot(artifacts_dir() / "report.png")
        # The counts filter the lanes (the page's own script runs without errors).
        browser.eval("document.querySelector('button[data-filter=\"failed\"]').click()")
        only = browser.eval(
            "[...document.querySelectorAll('tr[data-lane]')].filter(r => !r.hidden).map(r => r.dataset.lane)"
        )
        assert only == ["red", "checked"]
        browser.open(gate_out.as_uri())
        assert browser.eval("document.querySelector('h1 .badge').textContent") == "passed"
        browser.pump(0.3)
        assert browser.problems() == []
        assert local_only(browser.requests()) == []
        assert browser.requests(), "the browser's requests were not recorded"
    finally:
        browser.close()


@pytest.mark.parametrize("size", [1000, 5000])
def test_the_diff_is_read_only_as_far_as_it_is_kept(repo: Path, size: int) -> None:
    from spine import api
    from tests.conftest import git

    (repo / "many.txt").write_text("".join(f"row {i}\n" for i in range(20000)))
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "many rows", cwd=repo)
    ctx = api.context(repo)
    text, cut = ctx.git.diff("HEAD~1", "HEAD", max_bytes=size)
    assert cut and len(text.encode()) <= size and text.startswith("diff --git a/many.txt")
    whole, cut = ctx.git.diff("HEAD~1", "HEAD", max_bytes=10 << 20)
    assert not cut and whole.count("\n+row ") == 20000
    assert ctx.git.numstat("HEAD~1", "HEAD") == [("many.txt", 20000, 0)]
    from spine.base.errors import UsageError

    with pytest.raises(UsageError):
        ctx.git.diff("--output=/tmp/x", "HEAD", max_bytes=10)
