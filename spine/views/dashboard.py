"""``spine dashboard``: a read-only web view of a repository's runs that follows them live.

A small ``http.server`` that answers GET and HEAD only (any other method gets 405) and serves
nothing but views computed from the state directory's runs: the page itself, the runs as JSON, one
run as JSON, a run's HTML report, and an event stream (server-sent events) that says "something
changed" whenever a run's files change; the page then fetches the views again. A run or lane is
named in a URL only by an id the state directory lists, so no path can reach anything else. It
opens state files for reading only, and never takes a run's driver lock (``run_is_driven`` probes
it without holding it, and only for runs with unfinished lanes).

It binds to 127.0.0.1 by default, on a port the system picks; bound to a loopback address it also
refuses requests whose Host header names another host (DNS rebinding). See docs/report.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from spine.base.errors import SpineError, UsageError
from spine.base.liveness import run_is_driven
from spine.base.redact import redact_text
from spine.drive.runs import list_run_ids
from spine.drive.scheduler import started
from spine.lane.runtime import last_line
from spine.model.state import RunState
from spine.views.html import esc, page
from spine.views.progress import STEP_WORDS
from spine.views.status import STATUS_ORDER, run_view
from spine.workspace.context import ExecutionContext
from spine.workspace.store import RunStore

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
LOG_TAIL_BYTES = 4096
KEEPALIVE_SECONDS = 15.0
ALIVE_EVERY = 5.0
"""While a run has unfinished lanes, the stream says "changed" at least this often (a driver may
have died without a file changing, and elapsed times move)."""

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class Dashboard:
    """The server: ``url`` once bound; ``serve_forever`` until ``shutdown`` (from another thread)."""

    def __init__(
        self, ctx: ExecutionContext, *, host: str = "127.0.0.1", port: int = 0, poll: float = 0.5
    ) -> None:
        self.ctx = ctx
        self.poll = poll
        self.stopping = threading.Event()
        self._active: dict[str, list[str]] = {}
        self._active_lock = threading.Lock()
        try:
            self.server = _Server((host, port), _handler_for(self))
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                "choose another --port (0 picks a free one) or --host",
            ) from None
        self.host = host
        self.loopback = host in LOOPBACK_NAMES or host.startswith("127.")

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}/"

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def start(self) -> threading.Thread:
        """Serve from a background thread (for scripts and tests); ``shutdown`` stops it."""
        thread = threading.Thread(target=self.serve_forever, name="spine-dashboard", daemon=True)
        thread.start()
        return thread

    def shutdown(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    # --- views -------------------------------------------------------------------------------

    def runs(self) -> dict[str, Any]:
        """Every run, newest first: id, kind, state, counts; the data of ``/api/runs``."""
        listed = []
        active: dict[str, list[str]] = {}
        for run_id in reversed(list_run_ids(self.ctx)):
            try:
                run = RunStore(self.ctx.state, run_id).load()
            except SpineError as exc:
                listed.append({"runId": run_id, "state": "unreadable", "error": exc.message, "counts": {}})
                continue
            unfinished = [lane_id for lane_id, lane in run.lanes.items() if not lane.complete]
            if unfinished:
                active[run_id] = unfinished
            listed.append(_run_summary(self.ctx, run, bool(unfinished)))
        with self._active_lock:
            self._active = active
        return {"runs": listed, "repository": self.ctx.repo.name, "now": _now()}

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run with every lane's view and last output line; None when there is no such run."""
        if run_id not in set(list_run_ids(self.ctx)):
            return None
        run = RunStore(self.ctx.state, run_id).load()
        view = run_view(self.ctx, run)
        for lane in view["lanes"]:
            lane["lastLine"] = self._last_line(run, lane["id"]) if lane["status"] != "planned" else None
            lane["objective"] = run.lanes[lane["id"]].spec.objective
            step = lane["step"] if lane["status"] in ("running", "interrupted") else None
            lane["doing"] = STEP_WORDS.get(step, step) if step else None
        view["now"] = _now()
        view["baseRef"], view["targetRef"] = run.base_ref, run.target_ref
        return view

    def _last_line(self, run: RunState, lane_id: str) -> str | None:
        path = self.ctx.state.log_file(run.run_id, lane_id)
        try:
            with open(path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - LOG_TAIL_BYTES))
                tail = handle.read(LOG_TAIL_BYTES)
        except OSError:
            return None
        lines = [line for line in tail.split(b"\n") if not line.startswith(b"==> spine:")]
        return last_line(b"\n".join(lines))

    def fingerprint(self) -> str:
        """Changes whenever a run's files change: run.json, its lane journals, its events, the logs of
        unfinished lanes."""
        parts: list[str] = []
        paths = [self.ctx.state.run_index]
        with self._active_lock:
            active = dict(self._active)
        runs = self.ctx.state.runs
        try:
            names = sorted(p.name for p in runs.iterdir() if not p.name.startswith("."))
        except OSError:
            names = []
        for run_id in names:
            paths += [self.ctx.state.run_file(run_id), self.ctx.state.events_file(run_id)]
            try:  # a driven run records its steps in its lanes' journals, not in run.json
                journals = self.ctx.state.lane_states_dir(run_id)
                paths += sorted(journals / name for name in os.listdir(journals))
            except OSError:
                pass
            paths += [self.ctx.state.log_file(run_id, lane_id) for lane_id in active.get(run_id, [])]
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                parts.append(f"{path}:-")
                continue
            parts.append(f"{path}:{st.st_mtime_ns}:{st.st_size}")
        if active:
            parts.append(str(int(time.time() // ALIVE_EVERY)))
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _run_summary(ctx: ExecutionContext, run: RunState, unfinished: bool) -> dict[str, Any]:
    """A run in one row, from run.json alone (no result files): the listing stays cheap."""
    driven = unfinished and run_is_driven(ctx.state.driver_lock(run.run_id))
    counts: dict[str, int] = {}
    for lane in run.lanes.values():
        if lane.complete:
            word = lane.status.value
        elif started(lane):
            word = "running" if driven else "interrupted"
        else:
            word = "planned"
        counts[word] = counts.get(word, 0) + 1
    state = "complete" if not unfinished else ("running" if driven else "interrupted")
    return {
        "runId": run.run_id,
        "kind": run.kind,
        "createdAt": run.created_at,
        "state": state,
        "lanes": len(run.lanes),
        "counts": {k: counts[k] for k in STATUS_ORDER if k in counts},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # an open event stream must not keep the process alive


def _handler_for(board: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        dashboard = board

    return Handler


class _Handler(BaseHTTPRequestHandler):
    """GET and HEAD of the routes below; 405 for every other method; 404 for every other path."""

    dashboard: Dashboard
    server_version = "spine-dashboard"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        return None  # a quiet server: the terminal shows only its address

    def __getattr__(self, name: str) -> Callable[[], None]:
        # http.server looks up do_<METHOD>: every method but GET and HEAD is refused the same way.
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        self.close_connection = True
        self._send(
            HTTPStatus.METHOD_NOT_ALLOWED,
            b"read-only: only GET and HEAD\n",
            "text/plain",
            {"Allow": "GET, HEAD"},
        )

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _host_ok(self) -> bool:
        if not self.dashboard.loopback:
            return True
        host = self.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]", 1)[0]
        return name in LOOPBACK_NAMES

    def _route(self, *, head: bool) -> None:
        if not self._host_ok():
            self._send(
                HTTPStatus.MISDIRECTED_REQUEST, b"this dashboard answers only to localhost\n", "text/plain"
            )
            return
        parts = [unquote(p) for p in urlsplit(self.path).path.split("/")[1:]]
        try:
            if parts in ([""], []):
                self._send(HTTPStatus.OK, _PAGE.encode(), "text/html; charset=utf-8", head=head)
            elif parts == ["api", "runs"]:
                self._json(self.dashboard.runs(), head)
            elif len(parts) == 3 and parts[:2] == ["api", "runs"]:
                view = self.dashboard.run(parts[2])
                if view is None:
                    self._not_found()
                else:
                    self._json(view, head)
            elif len(parts) == 3 and parts[0] == "runs" and parts[2] == "report":
                self._report(parts[1], head)
            elif parts == ["api", "events"]:
                self._events(head)
            else:
                self._not_found()
        except (BrokenPipeError, ConnectionResetError):
            return
        except UsageError:  # the run went away between listing and reading it (spine gc)
            self._not_found()
        except (SpineError, OSError) as exc:
            text = exc.render() if isinstance(exc, SpineError) else f"spine: error: {exc}"
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, redact_text(text).encode(), "text/plain", head=head)
        except Exception as exc:  # a bug: answer it, keep serving, print no traceback
            text = f"spine: internal error ({type(exc).__name__}: {exc}); this is a bug in spine"
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, redact_text(text).encode(), "text/plain", head=head)

    def _report(self, run_id: str, head: bool) -> None:
        if run_id not in set(list_run_ids(self.dashboard.ctx)):
            self._not_found()
            return
        from spine.views.report import gather, render_run

        document = render_run(gather(self.dashboard.ctx, run_id))
        self._send(HTTPStatus.OK, document.encode(), "text/html; charset=utf-8", head=head)

    def _not_found(self) -> None:
        self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _json(self, data: dict[str, Any], head: bool) -> None:
        body = redact_text(json.dumps(data)).encode()
        self._send(HTTPStatus.OK, body, "application/json", head=head)

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        extra: dict[str, str] | None = None,
        *,
        head: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _events(self, head: bool) -> None:
        """Server-sent events: ``change`` whenever the fingerprint of the runs' files changes."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        if head:
            return
        board = self.dashboard
        last, wrote = "", time.monotonic()
        self.wfile.write(b"retry: 1000\n\n")
        while not board.stopping.is_set():
            now = board.fingerprint()
            if now != last:
                board.runs()  # keep the list of unfinished lanes (whose logs count) current
                now = board.fingerprint()
                self.wfile.write(f"event: change\ndata: {json.dumps({'fingerprint': now})}\n\n".encode())
                self.wfile.flush()
                last, wrote = now, time.monotonic()
            elif time.monotonic() - wrote > KEEPALIVE_SECONDS:
                self.wfile.write(b": keep-alive\n\n")
                self.wfile.flush()
                wrote = time.monotonic()
            board.stopping.wait(board.poll)


_SCRIPT = r"""
(function () {
  'use strict';
  var selected = decodeURIComponent(location.hash.replace(/^#run=/, '')) || null;
  var current = null;
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }
  function badge(status) { return el('span', {'class': 'badge s-' + status}, status); }
  function duration(seconds) {
    if (seconds === null || seconds === undefined) { return ''; }
    if (seconds < 10) { return seconds.toFixed(1) + 's'; }
    if (seconds < 60) { return Math.round(seconds) + 's'; }
    var m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
    if (m < 60) { return m + 'm' + (s < 10 ? '0' : '') + s + 's'; }
    var h = Math.floor(m / 60); m = m % 60;
    return h + 'h' + (m < 10 ? '0' : '') + m + 'm';
  }
  function getJSON(url) {
    return fetch(url, {cache: 'no-store'}).then(function (r) {
      if (!r.ok) { throw new Error(url + ': ' + r.status); }
      return r.json();
    });
  }
  function renderRuns(data) {
    document.getElementById('repo').textContent = data.repository;
    var body = document.getElementById('runs-body');
    body.replaceChildren();
    if (!data.runs.length) {
      var tr = el('tr'); tr.appendChild(el('td', {colspan: '4', 'class': 'muted'}, 'no runs yet'));
      body.appendChild(tr); return null;
    }
    if (!selected) { selected = data.runs[0].runId; }
    data.runs.forEach(function (run) {
      var tr = el('tr', {'data-run': run.runId, 'data-state': run.state});
      if (run.runId === selected) { tr.className = 'selected'; }
      var link = el('a', {href: '#run=' + encodeURIComponent(run.runId), 'class': 'mono'}, run.runId);
      var td = el('td'); td.appendChild(link); tr.appendChild(td);
      tr.appendChild(el('td', {}, run.kind));
      var st = el('td'); st.appendChild(badge(run.state)); tr.appendChild(st);
      var counts = el('td');
      Object.keys(run.counts || {}).forEach(function (k) {
        var b = badge(k); b.textContent = run.counts[k] + ' ' + k; counts.appendChild(b); counts.appendChild(document.createTextNode(' '));
      });
      tr.appendChild(counts);
      body.appendChild(tr);
    });
    return selected;
  }
  function renderRun(run) {
    current = run;
    current.loadedAt = Date.now();
    document.getElementById('run-title').textContent = 'run ' + run.runId;
    var head = document.getElementById('run-head');
    head.replaceChildren(badge(run.state), document.createTextNode(
      ' ' + run.kind + ' · ' + run.lanes.length + ' lanes · base ' + run.baseRef + ' → ' + run.targetRef + ' · '));
    var report = el('a', {href: '/runs/' + encodeURIComponent(run.runId) + '/report'}, 'full report');
    head.appendChild(report);
    var body = document.getElementById('lanes-body');
    body.replaceChildren();
    run.lanes.forEach(function (lane) {
      var tr = el('tr', {'data-lane': lane.id, 'data-status': lane.status});
      tr.appendChild(el('td', {'class': 'mono'}, lane.id));
      var st = el('td'); st.appendChild(badge(lane.status)); tr.appendChild(st);
      tr.appendChild(el('td', {'class': 'num', 'data-took': lane.id}, duration(lane.durationSeconds)));
      tr.appendChild(el('td', {'class': 'nowrap'}, lane.doing || ''));
      var summary = el('td');
      summary.appendChild(el('div', {}, lane.summary));
      if (lane.lastLine) { summary.appendChild(el('div', {'class': 'mono muted'}, lane.lastLine)); }
      summary.appendChild(el('div', {'class': 'muted'}, 'next: ' + lane.nextAction));
      tr.appendChild(summary);
      body.appendChild(tr);
    });
    document.getElementById('run').hidden = false;
  }
  function tick() {
    if (!current) { return; }
    var gone = (Date.now() - current.loadedAt) / 1000;
    current.lanes.forEach(function (lane) {
      if (lane.status !== 'running' || lane.durationSeconds === null) { return; }
      var cell = document.querySelector('[data-took="' + CSS.escape(lane.id) + '"]');
      if (cell) { cell.textContent = duration(lane.durationSeconds + gone); }
    });
  }
  var loading = false, again = false;
  function load() {
    if (loading) { again = true; return; }
    loading = true;
    getJSON('/api/runs').then(function (data) {
      var id = renderRuns(data);
      return id ? getJSON('/api/runs/' + encodeURIComponent(id)).then(renderRun) : null;
    }).catch(function (err) {
      document.getElementById('live').textContent = 'could not load: ' + err.message;
    }).then(function () {
      loading = false;
      document.body.setAttribute('data-loaded', String(Date.now()));
      if (again) { again = false; load(); }
    });
  }
  window.addEventListener('hashchange', function () {
    selected = decodeURIComponent(location.hash.replace(/^#run=/, '')) || null; load();
  });
  var live = document.getElementById('live');
  var stream = new EventSource('/api/events');
  stream.addEventListener('change', load);
  stream.onopen = function () { live.textContent = 'live'; live.className = 'live on'; };
  stream.onerror = function () { live.textContent = 'reconnecting'; live.className = 'live'; };
  setInterval(tick, 1000);
  load();
})();
"""

_BODY = f"""
<header><h1>spine · <span id="repo"></span></h1>
<p class="sub">Runs of this repository, as they progress. Read-only. <span id="live" class="live">connecting</span></p></header>
<section id="runs"><h2>Runs</h2>
<table class="runs"><thead><tr><th>run</th><th>kind</th><th>state</th><th>lanes</th></tr></thead>
<tbody id="runs-body"></tbody></table></section>
<section id="run" hidden><h2 id="run-title"></h2><p class="sub" id="run-head"></p>
<table class="lanes"><thead><tr><th>lane</th><th>status</th><th>took</th><th>step</th><th>summary</th></tr></thead>
<tbody id="lanes-body"></tbody></table></section>
<noscript><p>{esc("The dashboard needs JavaScript; `spine status` and `spine report` show the same without it.")}</p></noscript>
"""

_PAGE = page("spine dashboard", _BODY, script=_SCRIPT, connect_self=True)
