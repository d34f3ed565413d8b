"""What a lane step works with: the ``LaneRuntime`` (context, run, lane, backend) and the lane's output.

Steps run code in two ways. The lane's command runs through its backend (``execute``). Setup
commands, checks and acceptance checks run through ``LaneRuntime.sandbox``: behind the same port, in
the same isolation as the command, unless the lane says ``checks_on_host`` (docs/adr/0058). On the
local backends that is a subprocess in the worktree under the subreaper, as before.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from spine.backends.base import Sandbox, SandboxHandle, SandboxSpec
from spine.base.errors import EnvironmentProblem
from spine.base.git import clean_env
from spine.base.process import OutputSink, ProcessOutcome, run_process
from spine.base.redact import MASK, Redactor, StreamRedactor, looks_secret, process_redactor, register
from spine.model.state import LaneState, RunState
from spine.workspace.context import ExecutionContext
from spine.workspace.store import RunStore
from spine.workspace.worktrees import LaneWorktree, checkout_worktree

Echo = Literal["none", "raw", "prefixed", "stderr"]

# How much of one line the prefixed echo holds back while waiting for its newline.
_MAX_PENDING = 8192

# How much of a lane's latest output is kept to find its last line, and how long a kept line may be.
_TAIL_BYTES = 1024
LAST_LINE_CHARS = 200
_ESCAPES = re.compile(rb"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class OutputLines:
    """The last output line of each lane, for a live view.

    ``LaneOutput`` feeds it what it logs (already redacted); it keeps only the last ``_TAIL_BYTES``
    of each lane, and finds the last line when a view asks (a few times a second at most), not on
    every write. Bounded by the number of lanes times ``_TAIL_BYTES``. No lock: one lane's output
    is fed by one ``LaneOutput`` at a time (under its own lock), and replacing a dict entry is
    atomic, so a reader sees the old tail or the new one.
    """

    def __init__(self) -> None:
        self._tails: dict[str, bytes] = {}

    def feed(self, lane_id: str, chunk: bytes) -> None:
        if len(chunk) >= _TAIL_BYTES:
            self._tails[lane_id] = chunk[-_TAIL_BYTES:]
        else:
            self._tails[lane_id] = (self._tails.get(lane_id, b"") + chunk)[-_TAIL_BYTES:]

    def get(self, lane_id: str) -> str | None:
        """The lane's last non-blank output line, or None before it printed anything."""
        tail = self._tails.get(lane_id)
        return last_line(tail) if tail else None


def last_line(data: bytes) -> str | None:
    """The last non-blank line of ``data`` as plain text (no escape sequences or control characters).

    A carriage return ends a line too: a progress bar's latest frame is its last line.
    """
    plain = _ESCAPES.sub(b"", data)
    for segment in reversed(re.split(rb"[\r\n]", plain)):
        text = _CONTROLS.sub("", segment.decode("utf-8", "replace").replace("\t", " ")).strip()
        if text:
            return text[:LAST_LINE_CHARS]
    return None


FEEDBACK_NAME = ".spine-feedback.md"
"""Where, in its worktree, a command of the repair loop finds the failing checks' output (SPINE_FEEDBACK).

spine puts it there before the command runs and takes it away when it ends, so it is never committed;
a copy stays with the lane's state (``StatePaths.feedback_file``)."""


class LaneOutput:
    """Tees a lane's output to its log file and, optionally, the terminal, with secrets masked."""

    def __init__(
        self,
        log_path: Path,
        lane_id: str,
        echo: Echo,
        redactor: Redactor,
        lines: OutputLines | None = None,
    ) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed by close()
        self._lane = lane_id
        self._echo = echo
        self._lock = threading.Lock()
        self._pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self._redactor = redactor
        self._streams = {name: StreamRedactor(self._redactor) for name in ("stdout", "stderr")}
        self._lines = lines

    def __call__(self, stream: str, chunk: bytes) -> None:
        with self._lock:
            self._write(stream, self._streams[stream].feed(chunk))

    def _write(self, stream: str, chunk: bytes) -> None:
        if not chunk:
            return
        self._log.write(chunk)
        self._log.flush()
        if self._lines is not None:
            self._lines.feed(self._lane, chunk)
        if self._echo == "none":
            return
        if self._echo == "prefixed":
            data = self._pending[stream] + chunk
            *lines, rest = data.split(b"\n")
            # A progress bar redraws one line with carriage returns: only its last frame can show.
            cut = rest.rstrip(b"\r").rfind(b"\r")
            rest = rest[cut + 1 :] if cut >= 0 else rest
            self._pending[stream] = rest[-_MAX_PENDING:]
            prefix = f"[{self._lane}] ".encode()
            if lines:
                sys.stderr.buffer.write(b"".join(prefix + _frame(line) + b"\n" for line in lines))
                sys.stderr.buffer.flush()
            return
        target = sys.stderr if (self._echo == "stderr" or stream == "stderr") else sys.stdout
        target.buffer.write(chunk)
        target.buffer.flush()

    def note(self, text: str) -> None:
        """Write a spine line (a section header) into the log only."""
        with self._lock:
            self._log.write(f"\n==> spine: {self._redactor.redact_text(text)}\n".encode())
            self._log.flush()

    def close(self) -> None:
        with self._lock:
            for name, stream in self._streams.items():
                self._write(name, stream.flush())
            if self._echo == "prefixed":
                prefix = f"[{self._lane}] ".encode()
                for rest in self._pending.values():
                    if rest:
                        sys.stderr.buffer.write(prefix + _frame(rest) + b"\n")
            self._log.close()


def _frame(line: bytes) -> bytes:
    body = line.rstrip(b"\r")
    cut = body.rfind(b"\r")
    return body[cut + 1 :] if cut >= 0 else body


@dataclass
class LaneRuntime:
    """Everything a step needs; built by the drive loop for one lane."""

    ctx: ExecutionContext
    run: RunState
    lane: LaneState
    store: RunStore
    backend: Sandbox
    echo: Echo = "raw"
    cancel: threading.Event = field(default_factory=threading.Event)
    lines: OutputLines | None = None

    @property
    def lane_id(self) -> str:
        return self.lane.spec.id

    @property
    def log_path(self) -> Path:
        return self.ctx.state.log_file(self.run.run_id, self.lane_id)

    @property
    def in_place(self) -> bool:
        return bool(self.backend.in_place)

    @property
    def worktree_path(self) -> Path:
        if self.lane.worktree is None:
            raise EnvironmentProblem(f"lane {self.lane_id} has no worktree yet")
        return Path(self.lane.worktree)

    def worktree(self) -> LaneWorktree:
        """The lane's worktree through the git dir git registered for it when spine created it."""
        path = self.worktree_path
        if self.in_place:
            return checkout_worktree(self.ctx.git, path)
        created = self.lane.facts.create
        if created is None or created.git_dir is None:
            raise EnvironmentProblem(f"lane {self.lane_id} has no recorded worktree registration")
        return LaneWorktree(path=path, git_dir=Path(created.git_dir))

    def output(self) -> LaneOutput:
        return LaneOutput(self.log_path, self.lane_id, self.echo, self.redactor(), self.lines)

    def redactor(self) -> Redactor:
        """Masks every secret the lane's commands could see or print."""
        return process_redactor()

    def remember_pgid(self, pgid: int) -> None:
        """Record the running command's process group so ``spine cancel`` and a resume can stop it."""
        self.lane.pgid = pgid
        self.store.save_lane(self.run, self.lane_id)

    def lane_env(self) -> dict[str, str]:
        """The environment the command and checks see: who they are, where they run.

        A secret ``--env`` value is never stored (run.json holds the mask); a driver that did not
        start the run takes it from its own environment, or stops the lane saying which is missing.
        """
        env = clean_env()
        env.update(self.ctx.config.env)
        binding = self.lane.spec.binding
        if binding is not None:
            env.update(binding.env)
        for key, value in self.lane.spec.env.items():
            if value == MASK.decode() and looks_secret(key):
                if key not in os.environ:
                    raise EnvironmentProblem(
                        f"lane {self.lane_id} needs the secret variable {key}, whose value spine does not store",
                        f"export {key} in this shell and run the same command again",
                    )
                value = os.environ[key]
            env[key] = value
        register(v for k, v in env.items() if looks_secret(k))
        env.update(
            {
                "SPINE_RUN_ID": self.run.run_id,
                "SPINE_LANE_ID": self.lane_id,
                "SPINE_WORKTREE": str(self.worktree_path),
                "SPINE_BRANCH": self.lane.branch or "",
                "SPINE_BASE_REF": self.lane.base_ref,
                "SPINE_BASE_SHA": self.lane.base_sha,
                "SPINE_OBJECTIVE": self.lane.spec.objective,
                "SPINE_LOG": str(self.log_path),
                "SPINE_BACKEND": self.backend.name,
            }
        )
        env.update(self.repeat_env())
        return env

    def repeat_env(self) -> dict[str, str]:
        """SPINE_ATTEMPT(S) for an attempt of a lane with attempts; SPINE_ITERATION(S) and, from the
        second pass on, SPINE_FEEDBACK for a lane with a repair loop."""
        spec, env = self.lane.spec, {}
        if spec.attempt is not None and spec.attempt_of is not None:
            group = self.run.lanes.get(spec.attempt_of)
            env["SPINE_ATTEMPT"] = str(spec.attempt)
            env["SPINE_ATTEMPTS"] = str(len(group.spec.attempts) if group else spec.attempt)
            env["SPINE_ATTEMPT_OF"] = spec.attempt_of
        if spec.iterations > 1:
            iteration = self.lane.iteration
            env["SPINE_ITERATION"] = str(iteration)
            env["SPINE_ITERATIONS"] = str(spec.iterations)
            if iteration > 1:
                env["SPINE_FEEDBACK"] = str(self.worktree_path / FEEDBACK_NAME)
        return env

    def sandbox_spec(self) -> SandboxSpec:
        """What the lane asks of its backend: network, the variables it declared, where git lives."""
        cfg, spec = self.ctx.config, self.lane.spec
        declared = {*cfg.env, *spec.env, *cfg.env_passthrough, *spec.env_passthrough}
        binding = spec.binding
        if binding is not None:
            declared |= set(binding.env)
        return SandboxSpec(
            worktree=self.worktree_path,
            run_id=self.run.run_id,
            lane_id=self.lane_id,
            network=cfg.network if spec.network is None else spec.network,
            env_passthrough=tuple(sorted(declared)),
            settings=self.ctx.config.backends.get(self.backend.name, {}),
            git_dir=self.ctx.git.common_dir,
            state_dir=self.ctx.state.root,
            timeout=spec.timeout,
        )

    @property
    def isolates(self) -> bool:
        """True when the backend isolates the command (anything but the local backends)."""
        return bool(getattr(self.backend, "isolates", True)) and not self.in_place

    @contextlib.contextmanager
    def sandbox(self, *, collect: bool = False) -> Iterator[LaneRunner]:
        """Where setup commands and checks run: the lane's isolation, or the host when the lane says so.

        ``collect`` brings what they changed back into the worktree (setup commands on a remote
        backend). The sandbox is torn down on the way out, whatever happens.
        """
        if not self.isolates or self.lane.spec.checks_on_host:
            yield LaneRunner(self, None)
            return
        handle = self.backend.prepare(self.sandbox_spec())
        try:
            yield LaneRunner(self, handle)
            if collect:
                self.backend.collect(handle)
        finally:
            self.backend.teardown(handle)


@dataclass
class LaneRunner:
    """Runs shell commands for a step, in the lane's sandbox (``handle``) or on the host."""

    rt: LaneRuntime
    handle: SandboxHandle | None

    def run(self, command: str, *, timeout: float | None, on_output: OutputSink) -> ProcessOutcome:
        rt = self.rt
        env = rt.lane_env()
        try:
            if self.handle is None:
                return run_process(
                    ["/bin/sh", "-c", command],
                    cwd=rt.worktree_path,
                    env=env,
                    timeout=timeout,
                    on_output=on_output,
                    cancel=rt.cancel,
                    on_start=rt.remember_pgid,
                    supervise=True,
                )
            return rt.backend.exec(
                self.handle,
                ["/bin/sh", "-c", command],
                env=env,
                timeout=timeout,
                on_output=on_output,
                cancel=rt.cancel,
                on_start=rt.remember_pgid,
            )
        finally:
            rt.lane.pgid = None
