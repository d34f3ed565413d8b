"""``bubblewrap``: a real local sandbox on Linux, built from bwrap(1) namespaces.

What the command gets: its lane worktree writable; the rest of the file system read-only; the
repository's git directory (hooks and config included) read-only; spine's state, home directories
and /tmp hidden behind empty private file systems; no network unless the lane allows it, and then no
host sockets under /run either; its own PID namespace, so a timeout or cancel that ends bwrap ends
every process the command started; no capabilities; only the environment variables the lane
declares. Setup commands, checks and acceptance checks run the same way (docs/adr/0058).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

from spine.backends.base import ExecResult, SandboxHandle, SandboxSpec, declared_env
from spine.base.process import OutputSink, run_process

# Where the sandbox's HOME lives: inside its private /tmp, so it starts empty and vanishes with it.
SANDBOX_HOME = "/tmp/home"

# Sockets that would let a command talk its way out of the sandbox; masked with /dev/null when present.
SOCKETS = (
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/run/dbus/system_bus_socket",
)


@cache
def _probe(bwrap: str) -> str | None:
    """Try the namespaces the sandbox needs once per process; None when they work."""
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid"]
    argv += ["--unshare-net", "--cap-drop", "ALL", "--die-with-parent", "true"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not be started: {exc}"
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return f"bwrap cannot create its namespaces here ({detail}); unprivileged user namespaces may be disabled"
    return None


class Bubblewrap:
    """Linux namespaces via bwrap: worktree writable, rest read-only, no network, minimal env."""

    name = "bubblewrap"
    in_place = False

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.settings = dict(settings or {})

    def unavailable_reason(self) -> str | None:
        if not sys.platform.startswith("linux"):
            return f"bubblewrap needs Linux namespaces; this is {sys.platform}"
        bwrap = self._bwrap()
        if bwrap is None:
            return "bwrap is not installed (apt-get install bubblewrap, dnf install bubblewrap, ...)"
        return _probe(bwrap)

    def _bwrap(self) -> str | None:
        configured = self.settings.get("bwrap")
        return str(configured) if configured else shutil.which("bwrap")

    def prepare(self, spec: SandboxSpec) -> SandboxHandle:
        handle = SandboxHandle(backend=self.name, worktree=spec.worktree)
        handle.data["argv"] = self.sandbox_argv(spec)
        handle.data["spec"] = spec
        return handle

    def sandbox_argv(self, spec: SandboxSpec) -> list[str]:
        """The bwrap command line (up to ``--``) for ``spec``; mounts apply in order."""
        bwrap = self._bwrap() or "bwrap"
        worktree = spec.worktree.resolve()
        argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        hidden = [
            "/tmp",
            "/var/tmp",
            "/home",
            "/root",
            "/run/user",
            "/mnt",
            "/media",
            os.path.expanduser("~"),
        ]
        if not spec.network:
            # Without a network, host IPC is the way out that is left: the unix sockets under /run
            # (container engines, D-Bus, systemd, databases). Abstract sockets die with --unshare-net.
            hidden += ["/run", "/var/run"]
        hidden += [str(p) for p in self.settings.get("hide", [])]
        for path in dict.fromkeys(hidden):
            if os.path.isdir(path) and not os.path.islink(path):
                argv += ["--tmpfs", path]
        for sock in SOCKETS:
            if os.path.exists(sock):
                argv += ["--ro-bind", "/dev/null", sock]
        for path in self.settings.get("read_only", []):
            argv += ["--ro-bind-try", str(path), str(path)]
        if spec.git_dir is not None:
            git_dir = spec.git_dir.resolve()
            argv += ["--ro-bind", str(git_dir), str(git_dir)]
            state = spec.state_dir.resolve() if spec.state_dir else None
            if state is not None and state.is_dir():
                # Other lanes' worktrees, logs and run state are none of this lane's business.
                argv += ["--tmpfs", str(state)]
        for path in self.settings.get("writable", []):
            argv += ["--bind-try", str(path), str(path)]
        argv += ["--bind", str(worktree), str(worktree), "--dir", SANDBOX_HOME, "--chdir", str(worktree)]
        argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if not spec.network:
            argv.append("--unshare-net")
        # No --clearenv/--setenv: the command's environment is bwrap's own (set below), so no value of
        # it ever appears in a process list.
        argv += ["--cap-drop", "ALL", "--die-with-parent", "--new-session"]
        return argv

    def exec(
        self,
        handle: SandboxHandle,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        timeout: float | None,
        idle_timeout: float | None = None,
        on_output: OutputSink | None = None,
        cancel: threading.Event | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> ExecResult:
        inside = declared_env(env, handle.data["spec"])
        inside.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        inside.update({"HOME": SANDBOX_HOME, "TMPDIR": "/tmp"})
        full = [*handle.data["argv"], "--", *argv]
        return run_process(
            full,
            cwd=handle.worktree,
            env=inside,
            timeout=timeout,
            idle_timeout=idle_timeout,
            on_output=on_output,
            cancel=cancel,
            on_start=on_start,
        )

    def collect(self, handle: SandboxHandle) -> None:
        return None  # the worktree is bind-mounted: the changes are already there

    def teardown(self, handle: SandboxHandle) -> None:
        handle.torn_down = True  # the namespaces die with the command; nothing is left to release
