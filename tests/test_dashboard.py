"""``spine dashboard``: a read-only web view of the runs that follows them live; checked over HTTP and in Chromium."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import Browser, artifacts_dir, local_only, require_chromium
from tests.lanetool import lane, spine_popen, state_dir, wait_for, write_batch
from tests.test_report import EXPECTED, fixture_run
from tests.test_status import snapshot


@pytest.fixture
def tool_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "marks"
    folder.mkdir()
    return folder


@pytest.fixture
def board(repo: Path) -> Iterator[Any]:
    """A dashboard of ``repo`` served from a thread of this process, through the documented API."""
    import spine

    dashboard = spine.dashboard(spine.context(repo))
    dashboard.start()
    try:
        yield dashboard
    finally:
        dashboard.shutdown()


def request(
    board: Any, method: str, path: str, host: str | None = None, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One raw request (the path is sent exactly as given, no normalising)."""
    conn = http.client.HTTPConnection("127.0.0.1", board.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host or f"127.0.0.1:{board.port}")
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def get_json(board: Any, path: str) -> Any:
    status, headers, body = request(board, "GET", path)
    assert status == 200 and headers["Content-Type"] == "application/json", (status, body)
    return json.loads(body)


def test_the_dashboard_serves_views_of_the_runs(spine: Any, repo: Path, tmp_path: Path, board: Any) -> None:
    assert board.url == f"http://127.0.0.1:{board.port}/"
    assert get_json(board, "/api/runs")["runs"] == []
    run_id = fixture_run(spine, repo, tmp_path)
    spine("run", "a second run", "--run-id", "second", "--", "true", cwd=repo)

    status, headers, body = request(board, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"default-src 'none'" in body and b"connect-src 'self'" in body
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"
    runs = get_json(board, "/api/runs")["runs"]
    assert [r["runId"] for r in runs] == ["second", run_id]  # newest first
    assert runs[1]["state"] == "complete" and runs[1]["counts"] == {"succeeded": 2, "failed": 2, "blocked": 1}
    view = get_json(board, f"/api/runs/{run_id}")
    assert {lane["id"]: lane["status"] for lane in view["lanes"]} == EXPECTED
    lanes = {lane["id"]: lane for lane in view["lanes"]}
    assert lanes["red"]["lastLine"] == "going down" and "[REDACTED]" not in json.dumps(lanes["green"])
    status, headers, body = request(board, "GET", f"/runs/{run_id}/report")
    assert status == 200 and b'data-lane="green" data-status="succeeded"' in body
    head = request(board, "HEAD", f"/api/runs/{run_id}")
    assert head[0] == 200 and head[2] == b"" and int(head[1]["Content-Length"]) > 100


def test_the_dashboard_changes_nothing_and_serves_nothing_else(
    spine: Any, repo: Path, tmp_path: Path, board: Any
) -> None:
    run_id = fixture_run(spine, repo, tmp_path)
    (state_dir(repo) / "config.secret").write_text("not for the web")
    before = snapshot(state_dir(repo))
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND"):
        for path in ("/", "/api/runs", f"/api/runs/{run_id}", "/api/events"):
            status, headers, _ = request(board, method, path, body=b"{}")
            assert status == 405, (method, path, status)
            assert headers["Allow"] == "GET, HEAD"
    for path in (
        "/..",
        "/../config",
        "/api/runs/..",
        "/api/runs/..%2F..%2Fconfig",
        "/api/runs/%2e%2e",
        f"/api/runs/{run_id}/../../../config.secret",
        "/runs/../config.secret",
        "/runs/..%2f..%2fconfig.secret/report",
        "/runs/%2e%2e/report",
        f"/runs/{run_id}/lanes/green/output.log",
        f"/runs/{run_id}/run.json",
        "/config.secret",
        "//etc/passwd",
        "/etc/passwd",
        "/api/runs/nope",
        "/runs/nope/report",
        f"/api/runs/{run_id}%00",
    ):
        status, _, body = request(board, "GET", path)
        assert status == 404, (path, status, body[:200])
        assert b"not for the web" not in body
    # Another host name in the request (DNS rebinding) is refused outright.
    status, _, _ = request(board, "GET", "/api/runs", host="attacker.example:80")
    assert status == 421
    for _ in range(3):
        get_json(board, "/api/runs")
        get_json(board, f"/api/runs/{run_id}")
        request(board, "GET", f"/runs/{run_id}/report")
    assert snapshot(state_dir(repo)) == before


def read_events(board: Any, count: int, action: Any = None, timeout: float = 60) -> list[str]:
    """Read ``count`` events from /api/events; call ``action`` after the first."""
    conn = http.client.HTTPConnection("127.0.0.1", board.port, timeout=timeout)
    conn.request("GET", "/api/events")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
    events: list[str] = []
    try:
        while len(events) < count:
            line = response.readline().decode()
            if line.startswith("event: "):
                events.append(line.split(": ", 1)[1].strip())
                if len(events) == 1 and action is not None:
                    action()
    finally:
        conn.close()
    return events


def test_the_event_stream_says_when_a_run_changes(spine: Any, repo: Path, board: Any) -> None:
    started = time.monotonic()
    events = read_events(
        board, 2, action=lambda: spine("run", "new", "--run-id", "ev", "--", "true", cwd=repo)
    )
    assert events == ["change", "change"]
    assert time.monotonic() - started < 60


def test_the_command_prints_its_address_and_stops_cleanly(spine: Any, repo: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "spine", "dashboard"],
        cwd=repo,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(
            r"spine dashboard: http://127\.0\.0\.1:(\d+)/  \(read-only; Ctrl-C stops it\)\n", line
        )
        assert match, line
        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=30)
        conn.request("GET", "/api/runs")
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # A port that is taken is bad input, said plainly.
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = spine("dashboard", "--port", str(taken.getsockname()[1]), cwd=repo)
    assert busy.returncode == 2 and "cannot listen on 127.0.0.1:" in busy.stderr
    assert "Traceback" not in busy.stderr


def test_the_dashboard_in_chromium_follows_a_lane_to_its_end(
    spine: Any, repo: Path, tmp_path: Path, tool_dir: Path, board: Any
) -> None:
    executable = require_chromium()
    fixture_run(spine, repo, tmp_path)
    batch = write_batch(
        tmp_path / "live.json",
        [lane("slowpoke", "touch:started", "wait:go", "write:done.txt"), lane("quick", "write:q.txt")],
    )
    driver = spine_popen(
        "batch", str(batch), "--run-id", "live", "-j", "2", cwd=repo, env={"LANETOOL_DIR": str(tool_dir)}
    )
    browser = Browser(executable)
    try:
        wait_for(tool_dir / "started")
        browser.open(f"{board.url}#run=live")
        status_of = "(document.querySelector('tr[data-lane=\"{}\"]') || {{dataset: {{}}}}).dataset.status"
        assert browser.wait_for(status_of.format("slowpoke")) == "running"
        browser.wait_for(f"{status_of.format('quick')} === 'succeeded'")
        assert browser.eval("document.querySelector('tr[data-run=\"live\"]').dataset.state") == "running"
        assert browser.eval("document.getElementById('live').textContent") == "live"
        loads = browser.eval("document.body.dataset.loaded")
        browser.screenshot(artifacts_dir() / "dashboard-running.png")
        (tool_dir / "go").write_text("go")
        # The page was not reloaded: the event stream told it, and it fetched the views again.
        browser.wait_for(f"{status_of.format('slowpoke')} === 'succeeded'")
        browser.wait_for("document.querySelector('tr[data-run=\"live\"]').dataset.state === 'complete'")
        assert browser.eval("document.body.dataset.loaded") != loads
        assert browser.eval("performance.getEntriesByType('navigation').length") == 1
        browser.screenshot(artifacts_dir() / "dashboard.png")
        # Every lane of the fixture run, with its status, on the other run's page.
        browser.eval("location.hash = '#run=fx'")
        browser.wait_for("document.getElementById('run-title').textContent === 'run fx'")
        shown = browser.eval(
            "Object.fromEntries([...document.querySelectorAll('tr[data-lane]')].map(r => [r.dataset.lane, r.dataset.status]))"
        )
        assert shown == EXPECTED
        assert browser.problems() == []
        requested = browser.requests()
        assert any(url.endswith("/api/events") for url in requested)
        assert local_only(requested) == []
    finally:
        browser.close()
        _, err = driver.communicate(timeout=60)
    assert driver.returncode == 0, err
