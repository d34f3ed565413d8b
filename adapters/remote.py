"""The shared base of remote sandboxes: ship the worktree in, run there, bring a binary patch back.

A remote sandbox does not share the local file system, so:

1. ``prepare`` opens a sandbox (through a ``RemoteDriver``), sends a tar of the lane worktree's tracked
   and untracked-but-not-ignored files, and makes a baseline commit of exactly those files in a fresh
   git repository there.
2. ``exec`` runs the command in that copy. Output streams back live. The timebox is enforced on both
   sides: the provider is told the limit (command timeout, sandbox lifetime) and spine's own watchdog
   stops the command's process group remotely when the limit, the idle limit or a cancel comes first.
3. ``collect`` stages everything in the copy (respecting its .gitignore) and brings back
   ``git diff --binary`` against the baseline, which ``git apply --binary`` replays in the local
   worktree: additions, deletions, renames, mode changes and binary files.
4. ``teardown`` destroys the sandbox.

spine then commits locally, as for every backend. Commits the command makes remotely are folded into
that one patch.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import tarfile
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from spine.backends.base import ExecResult, SandboxHandle, SandboxSpec, declared_env
from spine.base.errors import EnvironmentProblem
from spine.base.git import git, git_binary
from spine.base.process import OutputSink, OutputTail, Timebox

# Remote variables kept from the lane environment: a remote machine has its own PATH and HOME.
REMOTE_BASE_ENV = ("LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TERM", "TZ")

# Extra life given to a remote sandbox beyond the lane's timebox, for upload, collect and teardown.
LIFETIME_MARGIN = 600.0
# The longest lifetime asked for at creation (providers cap it); keepalives extend it while the
# command runs, so a sandbox whose spine died expires at most LIFETIME_MARGIN later.
MAX_INITIAL_LIFETIME = 3600.0
KEEPALIVE_EVERY = 60.0
GRACE = 3.0
# How long a remote command has between SIGTERM and SIGKILL (zombies keep a group "alive", so short).
STOP_GRACE = 1.0


class RemoteDriver(Protocol):
    """One provider's primitives; ``RemoteSandbox`` builds the protocol above on them."""

    root: str
    """An absolute directory in the sandbox that spine owns (the copy lives in ``root/work``)."""

    def open(self, spec: SandboxSpec, lifetime: float) -> str:
        """Create the sandbox, alive for at least ``lifetime`` seconds; return the provider's id."""
        ...

    def write_file(self, path: str, data: bytes) -> None:
        """Write ``data`` to the absolute sandbox path ``path`` (creating parent directories)."""
        ...

    def read_file(self, path: str) -> bytes:
        """Read the absolute sandbox path ``path``."""
        ...

    def run(
        self, script: str, *, env: Mapping[str, str], timeout: float | None, on_output: OutputSink | None
    ) -> int | None:
        """Run ``/bin/sh -c script`` in ``root``, streaming output; block until it ends; its exit code.

        ``timeout`` goes to the provider's own command limit. Must allow a second ``run`` from
        another thread while one is running (spine uses that to stop a process group).
        """
        ...

    def interrupt(self) -> None:
        """Stop the command ``run`` is running now, with the provider's own means (best effort)."""
        ...

    def keepalive(self, seconds: float) -> None:
        """Make sure the sandbox lives at least ``seconds`` longer."""
        ...

    def close(self) -> None:
        """Destroy the sandbox. Idempotent."""
        ...


def tracked_and_untracked(worktree: Path) -> list[str]:
    """The lane's files to send: tracked, plus untracked ones that .gitignore does not exclude."""
    out = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=worktree).stdout
    files = []
    for rel in dict.fromkeys(filter(None, out.split("\0"))):
        path = worktree / rel
        if ".git" in Path(rel).parts or not (path.is_symlink() or path.is_file()):
            continue  # deleted tracked files, submodules, nested repositories
        files.append(rel)
    return files


def pack(worktree: Path, files: Sequence[str]) -> bytes:
    """A tar of ``files`` (modes and symlinks kept), as bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for rel in files:
            info = tar.gettarinfo(str(worktree / rel), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isreg():
                with open(worktree / rel, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def _q(text: str) -> str:
    return shlex.quote(text)


class RemoteSandbox:
    """Base class of remote backends: subclasses say how to reach the provider (``make_driver``)."""

    name = "remote"
    in_place = False
    blocks_network = True

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.settings = dict(settings or {})

    def unavailable_reason(self) -> str | None:
        raise NotImplementedError

    def make_driver(self, spec: SandboxSpec) -> RemoteDriver:
        raise NotImplementedError

    # --- prepare ------------------------------------------------------------------------------------

    def prepare(self, spec: SandboxSpec) -> SandboxHandle:
        handle = SandboxHandle(backend=self.name, worktree=spec.worktree)
        driver = self.make_driver(spec)
        handle.data.update(driver=driver, spec=spec)
        if not spec.network and not self.blocks_network:
            handle.notices.append(f"{self.name} cannot block network access; the command has network")
        cap = float(self.settings.get("max_lifetime", MAX_INITIAL_LIFETIME))
        lifetime = min((spec.timeout or 0.0) + LIFETIME_MARGIN, cap)
        try:
            handle.provider_run_id = driver.open(spec, lifetime)
            files = tracked_and_untracked(spec.worktree)
            root = driver.root
            driver.write_file(f"{root}/in.tar", pack(spec.worktree, files))
            lines: deque[str] = deque(maxlen=20)
            code = driver.run(
                self._baseline_script(root),
                env={},
                timeout=300,
                on_output=lambda _s, chunk: lines.extend(chunk.decode(errors="replace").splitlines()),
            )
            if code != 0:
                raise EnvironmentProblem(
                    f"{self.name}: preparing the sandbox copy failed (exit {code}): {' / '.join(lines)}",
                    "the sandbox image needs sh, tar and git",
                )
        except BaseException:
            self.teardown(handle)
            raise
        return handle

    @staticmethod
    def _baseline_script(root: str) -> str:
        work = f"{root}/work"
        return "\n".join(
            [
                "set -e",
                f"rm -rf {_q(work)} && mkdir -p {_q(work)} && cd {_q(work)}",
                f"tar -xf {_q(root + '/in.tar')} && rm -f {_q(root + '/in.tar')}",
                "git init -q",
                "git config user.name spine && git config user.email spine@localhost",
                "git config core.autocrlf false && git config commit.gpgsign false",
                # The copy holds exactly the files sent; -f keeps tracked files a .gitignore matches.
                "git add -A -f .",
                "git commit -q --no-verify --allow-empty -m 'spine baseline'",
                f"git rev-parse HEAD > {_q(root + '/base')}",
            ]
        )

    # --- exec ---------------------------------------------------------------------------------------

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
        driver: RemoteDriver = handle.data["driver"]
        spec: SandboxSpec = handle.data["spec"]
        root = driver.root
        remote_env = declared_env(env, spec, keep=REMOTE_BASE_ENV)
        remote_env["SPINE_WORKTREE"] = f"{root}/work"
        local = str(spec.worktree)
        for name in ("SPINE_FEEDBACK",):  # paths inside the worktree name the remote copy
            if remote_env.get(name, "").startswith(local + "/"):
                remote_env[name] = f"{root}/work/{remote_env[name][len(local) + 1 :]}"
        started = time.monotonic()
        box = Timebox(timeout, idle_timeout, cancel, started)
        tail = OutputTail()

        def sink(stream: str, chunk: bytes) -> None:
            box.activity()
            tail.feed(chunk)
            if on_output:
                on_output(stream, chunk)

        result: dict[str, Any] = {}

        def runner() -> None:
            try:
                result["code"] = driver.run(
                    self._command_script(root, argv),
                    env=remote_env,
                    timeout=None if timeout is None else timeout + GRACE * 2,
                    on_output=sink,
                )
            except BaseException as exc:  # reported below, in the calling thread
                result["error"] = exc

        thread = threading.Thread(target=runner, name=f"{self.name}-exec", daemon=True)
        thread.start()
        next_keepalive = started + KEEPALIVE_EVERY
        try:
            while thread.is_alive():
                thread.join(0.05)
                now = time.monotonic()
                if not thread.is_alive():
                    break
                if box.expired():
                    self._stop(driver)
                    break
                if now >= next_keepalive:
                    with contextlib.suppress(Exception):
                        driver.keepalive(LIFETIME_MARGIN)
                    next_keepalive = now + KEEPALIVE_EVERY
        except BaseException:
            self._stop(driver)
            raise
        thread.join(GRACE * 4)
        if "error" in result and not (box.timed_out or box.canceled):
            exc = result["error"]
            raise EnvironmentProblem(f"{self.name}: running the command failed: {exc}") from exc
        code = result.get("code")
        if box.timed_out or box.canceled:
            code = code if isinstance(code, int) and code != 0 else 137
        return ExecResult(
            exit_code=code,
            timed_out=box.timed_out,
            canceled=box.canceled,
            duration=time.monotonic() - started,
            tail=tail.lines(),
        )

    @staticmethod
    def _command_script(root: str, argv: Sequence[str]) -> str:
        # The command gets a session of its own (when setsid can wait for it) so that the whole
        # process group can be stopped by id from a second connection.
        pidfile = _q(root + "/pgid")
        command = " ".join(_q(a) for a in argv)
        inner = f'echo $$ > {pidfile}; exec "$@"'
        return "\n".join(
            [
                f"cd {_q(root + '/work')} || exit 127",
                "if setsid --help 2>&1 | grep -q -- --wait; then",
                f"  exec setsid --wait sh -c {_q(inner)} sh {command} < /dev/null",
                "fi",
                f"echo $$ > {pidfile}",
                f"exec {command} < /dev/null",
            ]
        )

    def _stop(self, driver: RemoteDriver) -> None:
        """Stop the running command: its process group first, then the provider's own kill."""
        pidfile = _q(driver.root + "/pgid")
        polls = int(STOP_GRACE / 0.1)
        script = (
            f"p=$(cat {pidfile} 2>/dev/null) || exit 0; "
            # no "--": dash's kill takes a negative pid after the signal but rejects "--"
            f'kill -TERM "-$p" "$p" 2>/dev/null; i=0; '
            f'while [ $i -lt {polls} ] && kill -0 "-$p" 2>/dev/null; do sleep 0.1; i=$((i+1)); done; '
            f'kill -KILL "-$p" "$p" 2>/dev/null; exit 0'
        )
        with contextlib.suppress(Exception):
            driver.run(script, env={}, timeout=GRACE * 4, on_output=None)
        with contextlib.suppress(Exception):
            driver.interrupt()

    # --- collect ------------------------------------------------------------------------------------

    def collect(self, handle: SandboxHandle) -> None:
        data = self.fetch_patch(handle.data["driver"])
        handle.data["patch_bytes"] = len(data)
        if not data.strip():
            return
        # The patch is the sandbox's word, not ours: git apply refuses paths outside the worktree, in
        # .git, or beyond a symbolic link; and nothing from the worktree's config runs while it does.
        applied = git_binary(
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "apply",
            "--binary",
            "--whitespace=nowarn",
            "-",
            cwd=handle.worktree,
            input=data,
        )
        if applied.returncode != 0:
            fd, kept = tempfile.mkstemp(prefix="spine-remote-", suffix=".patch")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            raise EnvironmentProblem(
                f"{self.name}: the sandbox's changes do not apply to {handle.worktree}: "
                f"{applied.stderr.decode(errors='replace').strip()}",
                f"the patch is kept in {kept}",
            )

    def fetch_patch(self, driver: RemoteDriver) -> bytes:
        """The copy's changes against its baseline as ``git diff --binary``, computed there, brought here."""
        root = driver.root
        work, patch = _q(root + "/work"), _q(root + "/out.patch")
        script = (
            f"set -e; cd {work}; git add -A; "
            f'git diff --cached --binary --full-index -M "$(cat {_q(root + "/base")})" > {patch}'
        )
        lines: deque[str] = deque(maxlen=20)
        code = driver.run(
            script,
            env={},
            timeout=300,
            on_output=lambda _s, chunk: lines.extend(chunk.decode(errors="replace").splitlines()),
        )
        if code != 0:
            raise EnvironmentProblem(
                f"{self.name}: computing the changes in the sandbox failed (exit {code}): {' / '.join(lines)}"
            )
        return driver.read_file(f"{root}/out.patch")

    # --- teardown -----------------------------------------------------------------------------------

    def teardown(self, handle: SandboxHandle) -> None:
        if handle.torn_down:
            return
        handle.torn_down = True
        driver = handle.data.get("driver")
        if driver is not None:
            with contextlib.suppress(Exception):
                driver.close()
