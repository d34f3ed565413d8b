"""A stand-in for Cloudflare's sandbox bridge Worker: the same HTTP routes, served on 127.0.0.1.

Commands run locally; the "/workspace" the real bridge confines paths to is a temporary directory
here (tests point the adapter's ``root`` into it). Streams exec output as server-sent events with
base64 chunks, like the real bridge.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.fakes.common import CallLog, LocalProcess

ROUTE = re.compile(r"^/v1/sandbox(?:/(?P<id>[a-z2-7]+)(?P<rest>/.*)?)?$")


class FakeBridge:
    def __init__(self, workspace: Path, key: str) -> None:
        self.workspace = workspace.resolve()
        self.key = key
        self.log = CallLog()
        self.sandboxes: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                bridge.handle(self, "POST")

            def do_PUT(self) -> None:
                bridge.handle(self, "PUT")

            def do_GET(self) -> None:
                bridge.handle(self, "GET")

            def do_DELETE(self) -> None:
                bridge.handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- routing ------------------------------------------------------------------------------------

    def _inside(self, path: str) -> Path | None:
        resolved = Path(path).resolve()
        return resolved if resolved == self.workspace or self.workspace in resolved.parents else None

    def handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        if req.headers.get("Authorization") != f"Bearer {self.key}":
            return self._json(req, 401, {"error": "Unauthorized", "code": "unauthorized"})
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        match = ROUTE.match(urllib.parse.urlparse(req.path).path)
        if not match:
            return self._json(req, 404, {"error": "not found"})
        sid, rest = match["id"], match["rest"] or ""
        self.log.record(f"{method} /sandbox{'/:id' if sid else ''}{re.sub(r'/file/.*', '/file/*', rest)}")
        if method == "POST" and sid is None:
            new = base64.b32encode(secrets.token_bytes(16)).decode().lower().rstrip("=")
            self.sandboxes[new] = {"sessions": {}}
            return self._json(req, 200, {"id": new})
        if sid not in self.sandboxes:
            return self._json(req, 404, {"error": "no such sandbox"})
        box = self.sandboxes[sid]
        if method == "DELETE" and not rest:
            self.sandboxes.pop(sid)
            self.deleted.append(sid)
            req.send_response(204)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return None
        if method == "POST" and rest == "/session":
            spec = json.loads(body or b"{}")
            session = secrets.token_hex(8)
            box["sessions"][session] = spec
            return self._json(req, 200, {"id": session})
        if rest.startswith("/file/"):
            target = self._inside("/" + urllib.parse.unquote(rest[len("/file/") :]))
            if target is None:
                return self._json(req, 403, {"error": "path must resolve to a location within /workspace"})
            if method == "PUT":
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(body)
                return self._json(req, 200, {"ok": True})
            if not target.is_file():
                return self._json(req, 404, {"error": "File not found"})
            data = target.read_bytes()
            req.send_response(200)
            req.send_header("Content-Type", "application/octet-stream")
            req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            req.wfile.write(data)
            return None
        if method == "POST" and rest == "/exec":
            return self._exec(req, box, json.loads(body))
        return self._json(req, 404, {"error": "not found"})

    def _exec(self, req: BaseHTTPRequestHandler, box: dict[str, Any], payload: dict[str, Any]) -> None:
        session = box["sessions"].get(req.headers.get("Session-Id") or "", {})
        cwd = self._inside(payload.get("cwd") or session.get("cwd") or str(self.workspace))
        if cwd is None:
            return self._json(req, 403, {"error": "cwd must resolve to a location within /workspace"})
        req.send_response(200)
        req.send_header("Content-Type", "text/event-stream")
        req.send_header("Cache-Control", "no-cache")
        req.send_header("Connection", "close")
        req.end_headers()
        lock = threading.Lock()

        def event(name: str, data: str) -> None:
            with lock:
                req.wfile.write(f"event: {name}\ndata: {data}\n\n".encode())
                req.wfile.flush()

        timeout_ms = payload.get("timeout_ms")
        process = LocalProcess(
            list(payload["argv"]),
            cwd=str(cwd),
            env=session.get("env") or {},
            on_stdout=lambda chunk: event("stdout", base64.b64encode(chunk).decode()),
            on_stderr=lambda chunk: event("stderr", base64.b64encode(chunk).decode()),
            timeout=timeout_ms / 1000 if timeout_ms else None,
        )
        code = process.wait()
        event("exit", json.dumps({"exit_code": code}))
        req.close_connection = True
        return None

    @staticmethod
    def _json(req: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)
