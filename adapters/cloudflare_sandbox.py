"""``cloudflare-sandbox``: lanes in Cloudflare Sandbox containers, through the sandbox bridge.

Cloudflare's Sandbox SDK runs only inside Workers (TypeScript), so spine talks to the *sandbox
bridge*, the reference Worker that exposes it over HTTP (deploy it once in your account). spine needs
its URL (``SANDBOX_WORKER_URL`` or the ``url`` setting) and its key (``SANDBOX_API_KEY``). No extra
package is needed: the bridge speaks plain HTTP and server-sent events.

Routes used (``/v1`` prefix): ``POST /sandbox``, ``POST /sandbox/:id/session``,
``POST /sandbox/:id/exec`` (SSE: ``stdout``/``stderr`` base64 chunks, ``exit``, ``error``),
``PUT``/``GET /sandbox/:id/file/<path>``, ``DELETE /sandbox/:id``. Everything lives under
``/workspace``. The bridge has no per-sandbox network switch: a lane that denies network gets a
notice in its log saying so.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

from spine.backends.base import SandboxSpec
from spine.base.errors import EnvironmentProblem
from spine.base.process import OutputSink

from .remote import RemoteSandbox

URL_VAR = "SANDBOX_WORKER_URL"
KEY_VAR = "SANDBOX_API_KEY"


def read_events(lines: Iterator[bytes]) -> Iterator[tuple[str, str]]:
    """Parse a server-sent event stream into (event, data) pairs."""
    event: str = "message"
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip(b"\r\n").decode()
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield event, "\n".join(data)


class BridgeDriver:
    """The remote primitives over the sandbox bridge's HTTP API."""

    def __init__(self, url: str, key: str | None, settings: Mapping[str, Any]) -> None:
        self._base = url.rstrip("/") + str(settings.get("prefix", "/v1"))
        self._key = key
        self._id: str | None = None
        self._responses: set[Any] = set()
        self._lock = threading.Lock()
        self.root = str(settings.get("root", "/workspace/.spine"))

    def _request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Any:
        request = urllib.request.Request(self._base + path, data=body, method=method)
        if self._key:
            request.add_header("Authorization", f"Bearer {self._key}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            return urllib.request.urlopen(request, timeout=120)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise EnvironmentProblem(
                f"sandbox bridge: {method} {path} answered {exc.code}: {detail}"
            ) from None
        except urllib.error.URLError as exc:
            raise EnvironmentProblem(f"sandbox bridge unreachable at {self._base}: {exc.reason}") from None

    def _json(
        self, method: str, path: str, payload: Any = None, headers: Mapping[str, str] | None = None
    ) -> Any:
        body = json.dumps(payload).encode() if payload is not None else None
        with self._request(
            method, path, body, {"Content-Type": "application/json", **(headers or {})}
        ) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def open(self, spec: SandboxSpec, lifetime: float) -> str:
        self._id = str(self._json("POST", "/sandbox")["id"])
        return self._id

    def _file_path(self, path: str) -> str:
        return f"/sandbox/{self._id}/file/" + urllib.parse.quote(path.lstrip("/"))

    def write_file(self, path: str, data: bytes) -> None:
        with self._request("PUT", self._file_path(path), data, {"Content-Type": "application/octet-stream"}):
            pass

    def read_file(self, path: str) -> bytes:
        with self._request("GET", self._file_path(path)) as resp:
            data: bytes = resp.read()
        return data

    def run(
        self, script: str, *, env: Mapping[str, str], timeout: float | None, on_output: OutputSink | None
    ) -> int | None:
        # A session carries the environment; the exec route itself takes none.
        session = self._json("POST", f"/sandbox/{self._id}/session", {"cwd": self.root, "env": dict(env)})
        payload: dict[str, Any] = {"argv": ["/bin/sh", "-c", script], "cwd": self.root}
        if timeout is not None:
            payload["timeout_ms"] = int(timeout * 1000)
        resp = self._request(
            "POST",
            f"/sandbox/{self._id}/exec",
            json.dumps(payload).encode(),
            {"Content-Type": "application/json", "Session-Id": str(session["id"])},
        )
        with self._lock:
            self._responses.add(resp)
        code: int | None = None
        try:
            for event, data in read_events(iter(resp.readline, b"")):
                if event in ("stdout", "stderr"):
                    if on_output:
                        on_output(event, base64.b64decode(data))
                elif event == "exit":
                    code = int(json.loads(data)["exit_code"])
                    break
                elif event == "error":
                    raise EnvironmentProblem(f"sandbox bridge: exec failed: {json.loads(data).get('error')}")
        finally:
            with self._lock:
                self._responses.discard(resp)
            resp.close()
        return code

    def interrupt(self) -> None:
        return None  # the bridge has no kill route; spine stops the process group by id instead

    def keepalive(self, seconds: float) -> None:
        return None  # a container stays up while it is used

    def close(self) -> None:
        if self._id is not None:
            sandbox, self._id = self._id, None
            with self._request("DELETE", f"/sandbox/{sandbox}"):
                pass


class CloudflareSandbox(RemoteSandbox):
    """Cloudflare Sandbox container via the sandbox bridge Worker; needs its URL and key."""

    name = "cloudflare-sandbox"
    blocks_network = False

    def _url(self) -> str | None:
        return str(self.settings.get("url") or os.environ.get(URL_VAR) or "") or None

    def unavailable_reason(self) -> str | None:
        if not self._url():
            return f"no sandbox bridge URL: set {URL_VAR} (or backends.cloudflare-sandbox.url) after deploying the bridge Worker"
        if not os.environ.get(KEY_VAR):
            return f"{KEY_VAR} is not set (the key the sandbox bridge was deployed with)"
        return None

    def make_driver(self, spec: SandboxSpec) -> BridgeDriver:
        url = self._url()
        if url is None:
            raise EnvironmentProblem(f"cloudflare-sandbox: {URL_VAR} is not set")
        return BridgeDriver(url, os.environ.get(KEY_VAR), self.settings)
