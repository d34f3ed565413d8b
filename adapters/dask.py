"""``dask``: lanes on the workers of a Dask cluster (``pip install 'git-spine[dask]'``).

spine keeps the git bookkeeping here and sends each lane's command to one worker of a Dask
distributed cluster named by address (the ``scheduler`` setting, ``SPINE_DASK_SCHEDULER`` or Dask's
own ``DASK_SCHEDULER_ADDRESS``), through the remote protocol of ``remote.py``: the lane's files go
in, the command runs in a scratch directory on the worker with the timebox enforced there, a binary
patch comes back and spine commits it locally.

What moves, and how:

- **The base, once per worker.** Lanes whose worktrees start from the same tree share a base: a tar
  of the tree's files, keyed by the tree id, shipped to a worker the first time a lane of that base
  lands there and kept in the worker's cache as a small git repository. Every further lane of that
  base on that worker checks its copy out from the cache (objects shared through git alternates).
- **The delta, per lane.** Only the files that differ from the base (changed, added, untracked and
  not ignored) and the names of deleted ones are sent for each lane.
- **Directly, in bounded pieces.** Lane data goes from spine to the worker with ``scatter(direct=True)``
  and the patch comes back by direct gathers, never through the scheduler, in messages of at most
  ``message_bytes``: nothing is sent twice and no message grows with the repository.
- **Output** travels as Dask events on a topic named after spine's client (the scheduler keeps the
  last few events of a topic and drops them when that client leaves), pushed while the command runs.

The worker-side functions below use only the standard library and ``distributed``; they are shipped
by value (cloudpickle), so workers need Python with ``distributed``, ``sh``, ``tar`` and ``git``, and
not spine. A lane holds one worker thread while its command runs. A worker that dies takes its
lanes' commands with it: a reaper process per worker kills their process groups, and spine fails
the lane with that cause (``spine resume RUN --retry`` runs it again elsewhere).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import importlib.util
import io
import logging
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from spine.backends.base import ExecResult, SandboxHandle, SandboxSpec
from spine.base.errors import EnvironmentProblem, UsageError
from spine.base.git import git_binary
from spine.base.process import OutputSink

from .remote import LIFETIME_MARGIN, MAX_INITIAL_LIFETIME, STOP_GRACE, RemoteSandbox, pack

ADDRESS_VARS = ("SPINE_DASK_SCHEDULER", "DASK_SCHEDULER_ADDRESS")
SETTINGS = {
    "scheduler": "the scheduler's address, e.g. tcp://10.0.0.5:8786",
    "connect_timeout": "seconds to wait for the scheduler when a lane starts (default 10)",
    "check_timeout": "seconds `spine backends` waits for the scheduler (default 2)",
    "message_bytes": "the largest piece of lane data sent in one message (default 8 MiB)",
    "cache_dir": "directory on the workers for base caches and lane copies (default: each worker's local directory)",
    "cache_bases": "bases a worker keeps (default 8; the least recently used beyond that are removed)",
    "pool": "finished lanes' copies a worker keeps per base for later lanes to reuse (default 8; 0: none)",
    "direct": "send lane data straight to the workers (default true; false routes it through the scheduler)",
    "max_lifetime": "the longest a lane's copy lives on a worker before the first keepalive (default 3600)",
}
DEFAULT_MESSAGE_BYTES = 8 * 2**20
# Output is read in pieces of at most this size, and sent at most every PUBLISH_EVERY seconds per
# stream: a chatty command coalesces into few events, a quiet one's line arrives at once.
OUTPUT_CHUNK = 32 * 1024
PUBLISH_EVERY = 0.01
# How often a waiting lane asks whether its worker is still in the cluster.
LIVENESS_EVERY = 1.0
# After a command's task finished, how long its last output events may still be on their way.
OUTPUT_SETTLE = 5.0


# --- on the worker ----------------------------------------------------------------------------------
# Everything from here to the driver side runs in a Dask worker process. It is shipped by value and
# may use only the standard library and distributed: never spine, never a class of this module.

_REAPER = r"""
import os, shutil, signal, sys, time
worker, lanes = int(sys.argv[1]), sys.argv[2]
while True:
    gone = os.getppid() != worker
    now = time.time()
    try:
        names = os.listdir(lanes)
    except OSError:
        names = []
    for name in names:
        root = os.path.join(lanes, name)
        try:
            with open(os.path.join(root, "expires")) as f:
                expires = float(f.read())
        except (OSError, ValueError):
            continue
        if gone or expires < now:
            try:
                with open(os.path.join(root, "pgid")) as f:
                    os.killpg(int(f.read()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
            shutil.rmtree(root, ignore_errors=True)
    if gone:
        try:
            os.rmdir(lanes)
        except OSError:
            pass
        sys.exit(0)
    time.sleep(1.0)
"""


def _w_env() -> dict[str, str]:
    """The worker's environment for spine's own git: no GIT_* variables that would point git
    elsewhere, and none of the worker user's git configuration (line endings, hooks, fsmonitor)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return {**env, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def _w_git(*args: str, cwd: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=_w_env(),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"git {' '.join(args[:2])} failed: {detail[-1] if detail else proc.returncode}")
    return proc.stdout


def _w_write_file(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _w_untar(tar: str, into: str) -> None:
    proc = subprocess.run(["tar", "-xf", tar, "-C", into], capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"tar -xf failed: {proc.stderr.decode(errors='replace').strip()}")


def _w_open(
    cache_dir: str | None, token: str, lifetime: float, key: str, copy: dict[str, Any] | None
) -> dict[str, Any]:
    """Make the lane's scratch directory; when this worker holds base ``key`` and ``copy`` says
    what the lane's own files are, make the lane's copy too (one task instead of two)."""
    from distributed import get_worker

    worker = get_worker()
    cache = cache_dir or os.path.join(worker.local_directory, "spine")
    lanes = os.path.join(cache, "lanes", re.sub(r"[^A-Za-z0-9._-]", "_", str(worker.id)))
    root = os.path.join(lanes, token)
    for sub in ("home", "tmp", "work"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    _w_write_file(os.path.join(root, "expires"), str(time.time() + lifetime))
    # One reaper per worker process: it kills the lanes' commands if the worker dies, and removes
    # lanes whose spine stopped keeping them alive.
    lock = worker.__dict__.setdefault("_spine_reaper_lock", threading.Lock())
    with lock:
        reaper = worker.__dict__.get("_spine_reaper")
        if reaper is None or reaper.poll() is not None:
            worker.__dict__["_spine_reaper"] = subprocess.Popen(
                [sys.executable, "-c", _REAPER, str(os.getpid()), lanes],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
    ready = os.path.exists(os.path.join(cache, "bases", key, "ready"))
    info: dict[str, Any] = {
        "root": root,
        "cache": cache,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "has_base": ready,
        "head": None,
    }
    if ready and copy is not None:
        info["head"] = _w_materialize(root, cache, key, **copy)
    return info


def _w_write(path: str, offset: int, data: bytes) -> int:
    """Write one piece of a file at ``offset``."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)
    return len(data)


def _w_read(path: str, offset: int, size: int) -> tuple[int, bytes]:
    """One piece of a file, and the file's whole size."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        return os.fstat(handle.fileno()).st_size, handle.read(size)


def _w_store_base(cache: str, key: str, tar: str, keep: int) -> bool:
    """Turn a shipped base tarball into the cached repository ``bases/KEY``; False if already there."""
    import fcntl

    bases = os.path.join(cache, "bases")
    final = os.path.join(bases, key)
    os.makedirs(bases, exist_ok=True)
    stored = False
    with open(os.path.join(bases, f".{key}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(final, "ready")):
            shutil.rmtree(final, ignore_errors=True)
            tmp = tempfile.mkdtemp(prefix=f".{key}-", dir=bases)
            tree, repo = os.path.join(tmp, "tree"), os.path.join(tmp, "repo.git")
            os.mkdir(tree)
            _w_untar(tar, tree)
            _w_git("init", "-q", "--bare", repo, cwd=tmp)
            _w_git(f"--git-dir={repo}", "--work-tree=.", "add", "-A", "-f", ".", cwd=tree)
            tree_id = _w_git(f"--git-dir={repo}", "write-tree", cwd=tree).decode().strip()
            commit = _w_git(
                "-c", "user.name=spine", "-c", "user.email=spine@localhost",
                f"--git-dir={repo}", "commit-tree", tree_id, "-m", "spine baseline",
                cwd=tree,
            ).decode().strip()  # fmt: skip
            shutil.rmtree(tree)
            _w_write_file(os.path.join(tmp, "commit"), commit)
            os.rename(tmp, final)
            _w_write_file(os.path.join(final, "ready"), key)
            stored = True
    with contextlib.suppress(OSError):
        os.remove(tar)
    _w_evict(cache, keep)
    return stored


def _w_evict(cache: str, keep: int) -> None:
    """Remove the least recently used bases beyond ``keep`` that no lane copy uses."""
    bases = os.path.join(cache, "bases")
    in_use = set()
    lanes = os.path.join(cache, "lanes")
    for worker_dir in os.listdir(lanes) if os.path.isdir(lanes) else []:
        for lane in os.listdir(os.path.join(lanes, worker_dir)):
            with contextlib.suppress(OSError), open(os.path.join(lanes, worker_dir, lane, "base-key")) as f:
                in_use.add(f.read().strip())
    ready = []
    for name in os.listdir(bases):
        marker = os.path.join(bases, name, "ready")
        with contextlib.suppress(OSError):
            ready.append((os.stat(marker).st_mtime, name))
    ready.sort(reverse=True)
    recent = time.time() - 600  # a base shipped a moment ago may not be checked out yet
    for used, name in ready[keep:]:
        if name not in in_use and used < recent:
            shutil.rmtree(os.path.join(cache, "pool", name), ignore_errors=True)  # they use its objects
            shutil.rmtree(os.path.join(bases, name), ignore_errors=True)


_MATERIALIZE = r"""
set -e
cd "$1"
if [ "$7" = reuse ]; then
    # A copy a finished lane of this base left: a new .git, but its index, whose stat data lets
    # git rewrite only the files that differ from the base.
    mv .git/index ../index.reused
    rm -rf .git
fi
git init -q --template=
printf '[user]\n\tname = spine\n\temail = spine@localhost\n[core]\n\tautocrlf = false\n[commit]\n\tgpgsign = false\n' >> .git/config
printf '%s\n' "$2" > .git/objects/info/alternates
if [ "$7" = reuse ]; then mv ../index.reused .git/index; fi
git read-tree --reset -u "$3"
if [ "$7" = reuse ]; then git clean -ffdxq; fi
if [ -s "$4" ]; then git rm -q -f --pathspec-from-file="$4" --pathspec-file-nul; fi
if [ -s "$5" ]; then tar -xf "$5"; fi
if [ -s "$6" ]; then git add -A -f --pathspec-from-file="$6" --pathspec-file-nul; fi
if [ -s "$4" ] || [ -s "$5" ]; then
    git commit -q --no-verify --allow-empty -m 'spine baseline'
else
    git update-ref HEAD "$3"  # nothing of the lane's own: the cached base commit is the baseline
fi
git rev-parse HEAD
"""


def _w_take_pooled(cache: str, key: str, work: str) -> bool:
    """Move a pooled copy of base ``key`` into ``work`` (an empty directory); False if none."""
    pool = os.path.join(cache, "pool", key)
    try:
        names = sorted(os.listdir(pool))
    except OSError:
        return False
    for name in names:
        try:
            os.rename(os.path.join(pool, name), work)  # atomic: one lane gets each copy
        except OSError:
            continue
        return True
    return False


def _w_materialize(
    root: str,
    cache: str,
    key: str,
    delta: bytes | None,
    delta_path: str | None,
    paths: list[str],
    deletions: list[str],
) -> str:
    """The lane's copy: the cached base checked out (into a pooled copy of it when there is one,
    rewriting only what differs), the lane's deletions and delta over it, one baseline commit;
    returns "BASELINE fresh|reused". One shell script: a Dask worker is a large process to fork."""
    base = os.path.join(cache, "bases", key)
    with open(os.path.join(base, "commit")) as handle:
        commit = handle.read().strip()
    os.utime(os.path.join(base, "ready"))  # recently used: kept by eviction
    _w_write_file(os.path.join(root, "base-key"), key)
    if delta is not None:
        delta_path = os.path.join(root, "delta.tar")
        with open(delta_path, "wb") as out:
            out.write(delta)
    lists = {}
    for name, items in (("deletions", deletions), ("paths", paths)):
        lists[name] = os.path.join(root, name)
        with open(lists[name], "wb") as out:
            out.write(b"".join(os.fsencode(item) + b"\0" for item in items))
    work = os.path.join(root, "work")
    reused = _w_take_pooled(cache, key, work)
    while True:
        proc = subprocess.run(
            [
                "/bin/sh", "-c", _MATERIALIZE, "sh", work, os.path.join(base, "repo.git", "objects"), commit,
                lists["deletions"], delta_path or "", lists["paths"], "reuse" if reused else "fresh",
            ],
            env={**_w_env(), "GIT_LITERAL_PATHSPECS": "1"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )  # fmt: skip
        if proc.returncode == 0 or not reused:
            break
        # A pooled copy that cannot be brought back (its command left something git cannot
        # clean): start over from nothing.
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        reused = False
    for leftover in (delta_path, lists["deletions"], lists["paths"]):
        if leftover:
            with contextlib.suppress(OSError):
                os.remove(leftover)
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"making the lane's copy failed: {detail[-1] if detail else proc.returncode}")
    head = proc.stdout.decode().strip()
    _w_write_file(os.path.join(root, "base"), head)
    return f"{head} {'reused' if reused else 'fresh'}"


_COLLECT = r"""
set -e
cd "$1/work"
git add -A
git diff --cached --binary --full-index -M "$(cat ../base)" > ../out.patch
"""


def _w_collect(root: str, limit: int) -> tuple[int, bytes]:
    """The copy's changes against its baseline: the patch's size and its first ``limit`` bytes."""
    proc = subprocess.run(
        ["/bin/sh", "-c", _COLLECT, "sh", root],
        env={**_w_env(), "HOME": os.path.join(root, "home")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"git failed (exit {proc.returncode}): {' / '.join(detail[-3:])}")
    return _w_read(os.path.join(root, "out.patch"), 0, limit)


def _w_group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process of the group exists.

    Zombies answer ``killpg(pgid, 0)``; an init that does not reap orphans would keep them there.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc/self"):
        return True
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def _w_kill(pgid: int, grace: float) -> None:
    """SIGTERM the group, SIGKILL what is left after ``grace`` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _w_group_alive(pgid):
        time.sleep(0.05)
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def _w_run(
    root: str,
    script: str,
    env: dict[str, str],
    timeout: float | None,
    topic: str | None,
    token: str,
) -> dict[str, Any]:
    """Run ``/bin/sh -c script`` in ``root`` as its own process group, streaming its output as events.

    The wall-clock limit is enforced here, on the worker; the group id is left in ``root/pgid`` for
    a stop request and for the reaper.
    """
    from distributed import get_worker

    worker = get_worker() if topic else None
    machine = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": os.path.join(root, "home"),
        "TMPDIR": os.path.join(root, "tmp"),
    }
    proc = subprocess.Popen(
        ["/bin/sh", "-c", script],
        cwd=root,
        env={**machine, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    pgid_file = os.path.join(root, "pgid")
    _w_write_file(pgid_file, str(proc.pid))
    sent = [0]
    lock = threading.Lock()

    def pump(stream: str, fd: int) -> None:
        last = 0.0
        while True:
            pause = last + PUBLISH_EVERY - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            try:
                data = os.read(fd, OUTPUT_CHUNK)
            except OSError:
                return
            if not data:
                return
            last = time.monotonic()
            if worker is not None and topic is not None:
                with lock:
                    sent[0] += 1
                    worker.log_event(topic, {"spine": token, "n": sent[0], "s": stream, "d": data})

    assert proc.stdout is not None and proc.stderr is not None
    readers = [
        threading.Thread(target=pump, args=("stdout", proc.stdout.fileno()), daemon=True),
        threading.Thread(target=pump, args=("stderr", proc.stderr.fileno()), daemon=True),
    ]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        if timeout is None:
            proc.wait()
        else:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _w_kill(proc.pid, 1.0)
                proc.wait()
    finally:
        # Whatever the command left running in its group goes too; then the pipes close.
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        for reader in readers:
            reader.join(timeout=5)
        proc.stdout.close()
        proc.stderr.close()
        with contextlib.suppress(OSError):
            os.remove(pgid_file)
    code = proc.returncode
    if code is not None and code < 0:
        code = 128 - code
    return {"code": code, "chunks": sent[0], "timed_out": timed_out}


async def _w_stop(root: str, grace: float) -> bool:
    """Stop the lane's running command: SIGTERM to its group, SIGKILL after ``grace`` seconds.

    Runs on the worker's event loop (``Client.run``), so it needs no free worker thread.
    """
    import asyncio

    try:
        with open(os.path.join(root, "pgid")) as handle:
            pgid = int(handle.read())
        os.killpg(pgid, signal.SIGTERM)
    except (OSError, ValueError):
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _w_group_alive(pgid):
        await asyncio.sleep(0.05)
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)
    return True


def _w_keepalive(root: str, seconds: float) -> None:
    """Push the lane's expiry out (on the worker's event loop: a tiny file write)."""
    path = os.path.join(root, "expires")
    try:
        with open(path) as handle:
            current = float(handle.read())
    except (OSError, ValueError):
        return
    _w_write_file(path, str(max(current, time.time() + seconds)))


def _w_close(root: str, cache: str, pool: int) -> None:
    """Kill what is left of the lane's command; keep its copy for a later lane of the same base
    (up to ``pool`` per base) and remove the rest."""
    try:
        with open(os.path.join(root, "pgid")) as handle:
            os.killpg(int(handle.read()), signal.SIGKILL)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "base-key")) as handle:
            key = handle.read().strip()
        pooled = os.path.join(cache, "pool", key)
        os.makedirs(pooled, exist_ok=True)
        if os.path.exists(os.path.join(root, "base")) and len(os.listdir(pooled)) < pool:
            os.rename(os.path.join(root, "work"), os.path.join(pooled, os.path.basename(root)))
    except (OSError, ValueError):
        pass
    shutil.rmtree(root, ignore_errors=True)


def _remote(fn: Callable[..., Any], pid: int | None) -> Callable[..., Any]:
    """``fn`` as a task that refuses to run in any process but worker ``pid``.

    A closure, so that Dask's pickling falls back to cloudpickle, which ships it (and, with this
    module registered, ``fn``) by value. The pid check stops a task from running again on a
    restarted worker at the same address, where the lane's copy no longer exists.
    """

    def task(*args: Any) -> Any:
        if pid is not None and os.getpid() != pid:
            raise RuntimeError("the worker that held this lane's copy restarted; the copy is gone")
        return fn(*args)

    task.__name__ = fn.__name__.removeprefix("_w_")
    return task


# --- the driver side ---------------------------------------------------------------------------------


class WorkerLost(Exception):
    """The lane's worker (or the scheduler) went away while the lane needed it."""


@dataclass(frozen=True)
class _Settings:
    scheduler: str | None
    connect_timeout: float
    check_timeout: float
    message_bytes: int
    cache_dir: str | None
    cache_bases: int
    pool: int
    direct: bool
    max_lifetime: float

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> _Settings:
        unknown = sorted(set(raw) - set(SETTINGS))
        if unknown:
            known = ", ".join(SETTINGS)
            raise UsageError(
                f"unknown setting backends.dask.{unknown[0]} in .spine.yaml", f"known settings: {known}"
            )

        def number(name: str, default: float, kind: type = float) -> Any:
            value = raw.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise UsageError(
                    f"backends.dask.{name} must be a positive number, not {value!r}",
                    f"{name}: {SETTINGS[name]}",
                )
            return kind(value)

        scheduler = raw.get("scheduler")
        if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
            raise UsageError(
                f"backends.dask.scheduler must be an address like tcp://HOST:PORT, not {scheduler!r}"
            )
        cache_dir = raw.get("cache_dir")
        if cache_dir is not None and (not isinstance(cache_dir, str) or not os.path.isabs(cache_dir)):
            raise UsageError(f"backends.dask.cache_dir must be an absolute path, not {cache_dir!r}")
        pool = raw.get("pool", 8)
        if isinstance(pool, bool) or not isinstance(pool, int) or pool < 0:
            raise UsageError(f"backends.dask.pool must be a whole number, 0 or more, not {pool!r}")
        direct = raw.get("direct", True)
        if not isinstance(direct, bool):
            raise UsageError(f"backends.dask.direct must be true or false, not {direct!r}")
        return cls(
            scheduler=scheduler.strip() if scheduler else None,
            connect_timeout=number("connect_timeout", 10.0),
            check_timeout=number("check_timeout", 2.0),
            message_bytes=number("message_bytes", DEFAULT_MESSAGE_BYTES, int),
            cache_dir=cache_dir,
            cache_bases=number("cache_bases", 8, int),
            pool=pool,
            direct=direct,
            max_lifetime=number("max_lifetime", MAX_INITIAL_LIFETIME),
        )

    def address(self) -> str | None:
        """The scheduler's address: the setting, else the first variable of ADDRESS_VARS that is set."""
        if self.scheduler:
            return self.scheduler
        for var in ADDRESS_VARS:
            value = os.environ.get(var, "").strip()
            if value:
                return value
        return None


def _tcp_target(address: str) -> tuple[str, int] | None:
    """(host, port) of a plain TCP address, for a quick reachability check; None for other schemes."""
    match = re.fullmatch(r"(?:tcp://)?\[?([^\]/]+?)\]?:(\d+)/?", address)
    return (match.group(1), int(match.group(2))) if match else None


# Recent answers of probe(): spine checks a backend once per lane it plans, and a batch plans many.
_PROBES: dict[str, tuple[float, dict[str, int]]] = {}
PROBE_FRESH = 5.0


def probe(address: str, timeout: float) -> dict[str, int]:
    """{worker address: threads} from the scheduler at ``address``; raises OSError when it does not answer."""
    known = _PROBES.get(address)
    if known is not None and time.monotonic() - known[0] < PROBE_FRESH:
        return dict(known[1])
    workers = _probe(address, timeout)
    _PROBES[address] = (time.monotonic(), workers)
    return workers


def _probe(address: str, timeout: float) -> dict[str, int]:
    target = _tcp_target(address)
    if target is not None:  # fail fast, before importing distributed, when nothing listens
        with socket.create_connection(target, timeout=timeout):
            pass
    cluster = _Cluster.existing(address)
    if cluster is not None:
        return cluster.workers(max_age=0)
    import asyncio

    core = importlib.import_module("distributed.core")
    security = importlib.import_module("distributed.security").Security()

    async def ask() -> dict[str, int]:
        rpc = core.rpc(address, timeout=timeout, connection_args=security.get_connection_args("client"))
        try:
            return dict(await asyncio.wait_for(rpc.ncores(), timeout))
        finally:
            await rpc.close_rpc()

    try:
        return asyncio.run(ask())
    except TimeoutError as exc:
        raise OSError(f"no answer within {timeout:g} s") from exc


class _Shipment:
    """One base going to one worker: the first lane that needs it sends it, the others wait."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


class _Cluster:
    """One connection to a scheduler, shared by every lane of this process."""

    _instances: ClassVar[dict[tuple[str, bool], _Cluster]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def get(cls, address: str, settings: _Settings) -> _Cluster:
        key = (address, settings.direct)
        with cls._instances_lock:
            cluster = cls._instances.get(key)
            if cluster is None or cluster.closed or cluster.client.status in ("closing", "closed"):
                cluster = cls._instances[key] = cls(address, settings)
            return cluster

    @classmethod
    def close_all(cls) -> None:
        """Close every client this process opened (their threads stop with them)."""
        with cls._instances_lock:
            clusters, cls._instances = list(cls._instances.values()), {}
        for cluster in clusters:
            cluster.close()

    @classmethod
    def existing(cls, address: str) -> _Cluster | None:
        with cls._instances_lock:
            for (addr, _), cluster in cls._instances.items():
                if addr == address and not cluster.closed:
                    return cluster
        return None

    def __init__(self, address: str, settings: _Settings) -> None:
        self.address = address
        self.closed = False
        distributed = importlib.import_module("distributed")
        # spine reports every failure in its own words; the client's own log lines (reconnect
        # attempts, tracebacks when the scheduler goes) would only bury them.
        for name in ["distributed", *list(logging.root.manager.loggerDict)]:
            if name.startswith("distributed"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
        # The worker-side functions travel by value, so the workers need no spine.
        importlib.import_module("cloudpickle").register_pickle_by_value(sys.modules[__name__])
        try:
            self.client = distributed.Client(
                address,
                timeout=settings.connect_timeout,
                set_as_default=False,
                direct_to_workers=settings.direct,
                name="spine",
            )
        except Exception as exc:  # OSError, TimeoutError, or ValueError for an address Dask cannot parse
            raise EnvironmentProblem(
                f"dask: cannot connect to the scheduler at {address}: {exc}",
                "is the scheduler running and reachable from here? (`spine backends dask` checks)",
            ) from exc
        self.topic = str(self.client.id)
        self._lock = threading.Lock()
        self._streams: dict[str, queue.SimpleQueue[dict[str, Any]]] = {}
        self._active: Counter[str] = Counter()
        self._shipments: dict[tuple[str, str], _Shipment] = {}
        self._workers: dict[str, int] = {}
        self._workers_at = 0.0
        self._refresh_lock = threading.Lock()
        self.lost: str | None = None
        self.client.subscribe_topic(self.topic, self._on_event)
        atexit.register(self.close)

    # -- output events --

    def _on_event(self, event: tuple[float, Any]) -> None:
        msg = event[1]
        if isinstance(msg, dict) and "spine" in msg:
            stream = self._streams.get(str(msg["spine"]))
            if stream is not None:
                stream.put(msg)

    def listen(self, token: str) -> queue.SimpleQueue[dict[str, Any]]:
        stream: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._streams[token] = stream
        return stream

    def unlisten(self, token: str) -> None:
        self._streams.pop(token, None)

    # -- workers --

    def workers(self, max_age: float = LIVENESS_EVERY) -> dict[str, int]:
        """{worker address: threads}, asked of the scheduler at most every ``max_age`` seconds."""
        with self._refresh_lock:
            if time.monotonic() - self._workers_at >= max_age:
                try:
                    answer = self.client.sync(self.client.scheduler.ncores, callback_timeout=10)
                except Exception as exc:
                    self.lost = f"lost the scheduler at {self.address}: {type(exc).__name__}: {exc}"
                    raise WorkerLost(self.lost) from exc
                self._workers = {str(k): int(v) for k, v in dict(answer).items()}
                self._workers_at = time.monotonic()
                self.lost = None
            return dict(self._workers)

    def check(self, worker: str, doing: str, max_age: float = LIVENESS_EVERY) -> None:
        """Raise WorkerLost when ``worker`` (or the scheduler) is no longer there."""
        if worker not in self.workers(max_age):
            raise WorkerLost(
                f"worker {worker} left the cluster while {doing} (it died or was stopped); "
                "what the lane did there is lost"
            )

    def pick(self, key: str) -> str:
        """The worker for a new lane: the most free threads, then one that has the base."""
        workers = self.workers()
        with self._lock:
            if not workers:
                raise EnvironmentProblem(
                    f"dask: the scheduler at {self.address} has no workers",
                    f"start some: dask worker {self.address}",
                )

            shipped = {(where.partition("#")[0], k) for where, k in self._shipments}

            def score(worker: str) -> tuple[bool, int, bool]:
                free = workers[worker] - self._active[worker]
                return free > 0, free, any(w == worker and k == key for (w, k) in shipped)

            best = max(sorted(workers), key=score)
            self._active[best] += 1
            return best

    def release(self, worker: str) -> None:
        with self._lock:
            self._active[worker] -= 1
            if self._active[worker] <= 0:
                del self._active[worker]

    def shipment(self, where: str, key: str, present: bool) -> tuple[_Shipment, bool]:
        """The shipment of base ``key`` to worker process ``where``, and whether the caller sends it.

        A worker that said it lacks the base may be answering from before another lane's shipment
        finished, so a finished shipment counts; one that failed is sent again.
        """
        with self._lock:
            current = self._shipments.get((where, key))
            if current is not None and (current.ok or not current.done.is_set()):
                return current, False
            current = self._shipments[(where, key)] = _Shipment()
            if present:
                current.ok = True
                current.done.set()
                return current, False
            return current, True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self.client.close(timeout=5)


# Per process: the HEAD commit of a lane worktree -> (its tree id, its files as (mode, blob, path)).
_TREES: dict[str, tuple[str, tuple[tuple[str, str, str], ...]]] = {}
_TREES_LOCK = threading.Lock()
# Per process: a base key -> a temporary file holding its tarball, made once.
_BASE_TARS: dict[str, tuple[BinaryIO, int]] = {}
_BASE_LOCKS: dict[str, threading.Lock] = {}


@dataclass(frozen=True)
class Snapshot:
    """A lane worktree as the base it shares with other lanes (its HEAD tree) plus what is its own.

    ``key`` is the tree id; ``base`` lists the tree's files as (mode, blob id, path); ``modified``
    are base files the lane changed or deleted before its command ran (the base tarball takes those
    from git, so it is the same for every lane of the tree); ``delta`` are the lane's own files to
    send and ``deletions`` the base files it no longer has.
    """

    key: str
    base: tuple[tuple[str, str, str], ...]
    modified: frozenset[str]
    delta: tuple[str, ...]
    deletions: tuple[str, ...]


def snapshot(worktree: Path) -> Snapshot:
    """Split the lane's files into its base and its delta: one ``git status``, and one ``ls-tree`` per tree."""
    out = git_binary(
        "status", "--porcelain=v2", "-z", "--branch", "--untracked-files=all", "--no-renames",
        "--ignore-submodules=all",
        cwd=worktree,
    )  # fmt: skip
    if out.returncode != 0:
        raise EnvironmentProblem(
            f"dask: git status failed in {worktree}: {out.stderr.decode(errors='replace')}"
        )
    head = ""
    changed: list[str] = []
    untracked: list[str] = []
    for entry in out.stdout.split(b"\0"):
        if entry.startswith(b"# branch.oid "):
            head = entry.split()[2].decode()
        elif entry[:2] in (b"1 ", b"u "):  # ordinary and unmerged entries (no renames: --no-renames)
            fields = 9 if entry[:1] == b"1" else 11
            changed.append(os.fsdecode(entry.split(b" ", fields - 1)[-1]))
        elif entry.startswith(b"? "):
            untracked.append(os.fsdecode(entry[2:]))
    tree, base = _tree(worktree, head)

    def present(rel: str) -> bool:
        path = worktree / rel
        return ".git" not in Path(rel).parts and (path.is_symlink() or path.is_file())

    in_base = {path for _, _, path in base}
    modified = frozenset(rel for rel in changed if rel in in_base)
    delta = tuple(rel for rel in [*changed, *untracked] if present(rel))
    deletions = tuple(sorted(rel for rel in modified if not present(rel)))
    return Snapshot(key=tree, base=base, modified=modified, delta=delta, deletions=deletions)


def _tree(worktree: Path, head: str) -> tuple[str, tuple[tuple[str, str, str], ...]]:
    """(tree id, files as (mode, blob id, path)) of commit ``head``, read once per process."""
    with _TREES_LOCK:
        known = _TREES.get(head)
    if known is not None:
        return known
    rev = head if re.fullmatch(r"[0-9a-f]{40,64}", head) else "HEAD"
    tree = git_binary("rev-parse", f"{rev}^{{tree}}", cwd=worktree)
    listing = git_binary("ls-tree", "-r", "-z", "--full-tree", rev, cwd=worktree)
    if tree.returncode != 0 or listing.returncode != 0:
        raise EnvironmentProblem(f"dask: cannot read the base tree of {worktree}")
    files = []
    for entry in filter(None, listing.stdout.split(b"\0")):
        meta, _, path = entry.partition(b"\t")
        mode, kind, oid = meta.split(b" ", 2)
        if kind == b"blob":  # gitlinks (submodules) are not sent, as by the remote base
            files.append((mode.decode(), oid.decode(), os.fsdecode(path)))
    value = (tree.stdout.decode().strip(), tuple(files))
    with _TREES_LOCK:
        if len(_TREES) >= 16:
            _TREES.pop(next(iter(_TREES)))
        _TREES[head] = value
    return value


def _base_tar(snap: Snapshot, worktree: Path) -> tuple[BinaryIO, int]:
    """The base's tarball in a temporary file, made once per process and key.

    Files the lane left as checked out are read from its worktree; the ones it changed come from
    git as a checkout would write them (``cat-file --filters``), so every lane of the tree makes
    the same tarball.
    """
    with _TREES_LOCK:
        lock = _BASE_LOCKS.setdefault(snap.key, threading.Lock())
    with lock:
        made = _BASE_TARS.get(snap.key)
        if made is None:
            handle: BinaryIO = tempfile.TemporaryFile(prefix="spine-dask-base-")  # noqa: SIM115
            as_checked_out = [path for _, _, path in snap.base if path not in snap.modified]
            with tarfile.open(fileobj=handle, mode="w") as tar:
                _add_files(tar, worktree, as_checked_out)
                for mode, oid, path in snap.base:
                    if path in snap.modified:
                        _add_blob(tar, worktree, mode, oid, path)
            made = _BASE_TARS[snap.key] = (handle, handle.tell())
        return made


def _add_files(tar: tarfile.TarFile, worktree: Path, files: Sequence[str]) -> None:
    for rel in files:
        info = tar.gettarinfo(str(worktree / rel), arcname=rel)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if info.isreg():
            with open(worktree / rel, "rb") as handle:
                tar.addfile(info, handle)
        else:
            tar.addfile(info)


def _add_blob(tar: tarfile.TarFile, worktree: Path, mode: str, oid: str, path: str) -> None:
    """A base file as git checks it out, from its blob (the lane changed it in its worktree)."""
    if mode == "120000":
        target = git_binary("cat-file", "blob", oid, cwd=worktree)
        info = tarfile.TarInfo(path)
        info.type, info.linkname = tarfile.SYMTYPE, os.fsdecode(target.stdout)
        tar.addfile(info)
        return
    blob = git_binary("cat-file", "--filters", f"--path={path}", oid, cwd=worktree)
    if blob.returncode != 0:
        raise EnvironmentProblem(
            f"dask: cannot read {path} of the lane's base: {blob.stderr.decode().strip()}"
        )
    info = tarfile.TarInfo(path)
    info.size, info.mode, info.mtime = len(blob.stdout), 0o755 if mode == "100755" else 0o644, time.time()
    tar.addfile(info, io.BytesIO(blob.stdout))


def _pack(worktree: Path, files: Sequence[str]) -> bytes:
    """A tar of ``files`` without the padding to a 10 KiB record: a one-line file costs 2 KiB, not 10."""
    data = pack(worktree, files)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.getmembers()
        end = tar.offset  # where the two zero blocks that end the archive start
    return data[: end + 2 * tarfile.BLOCKSIZE]


def _reader(handle: BinaryIO) -> Callable[[int, int], bytes]:
    """``read_at(offset, n)`` of an open file, safe to use from several threads at once."""
    fd = handle.fileno()
    return lambda offset, n: os.pread(fd, n, offset)


class DaskDriver:
    """The remote primitives for one lane, on one worker of a Dask cluster."""

    def __init__(self, cluster: _Cluster, settings: _Settings) -> None:
        self.cluster = cluster
        self.settings = settings
        self.client = cluster.client
        self.worker = ""
        self.root = ""
        self.cache = ""
        self.pid: int | None = None
        self.token = ""
        self.sent_bytes = 0
        self.received_bytes = 0
        self.messages = 0
        self.largest_message = 0
        self.host = ""
        self._slot = False

    # -- helpers --

    def _wait(self, future: Any, doing: str) -> Any:
        """The task's result; WorkerLost as soon as its worker is gone."""
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        while not done.wait(LIVENESS_EVERY / 2):
            try:
                self.cluster.check(self.worker, doing)
            except WorkerLost:
                with contextlib.suppress(Exception):
                    future.cancel()
                raise
        try:
            return future.result()
        except Exception as exc:
            if future.status == "cancelled" or self.cluster.lost:
                # The client cancels its tasks when it loses the scheduler: say which went away.
                self.cluster.check(self.worker, doing, max_age=0)
                raise WorkerLost(f"the scheduler canceled the task while {doing}") from exc
            raise

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(
            _remote(fn, self.pid),
            *args,
            key=f"spine-{fn.__name__.removeprefix('_w_')}-{uuid.uuid4().hex}",
            workers=[self.worker],
            allow_other_workers=False,
            pure=False,
            retries=0,
        )

    def call(self, fn: Callable[..., Any], *args: Any, doing: str) -> Any:
        """Run ``fn(*args)`` as a task on the lane's worker and return its result."""
        try:
            return self._wait(self._submit(fn, *args), doing)
        except (WorkerLost, EnvironmentProblem):
            raise
        except Exception as exc:
            raise EnvironmentProblem(f"dask: {doing} on worker {self.worker} failed: {exc}") from exc

    def scatter(self, data: bytes) -> Any:
        """Put one message of lane data on the lane's worker (straight there unless ``direct`` is off)."""
        self.messages += 1
        self.largest_message = max(self.largest_message, len(data))
        self.sent_bytes += len(data)
        return self.client.scatter(data, workers=[self.worker], direct=self.settings.direct, hash=False)

    # -- RemoteDriver --

    def open(self, spec: SandboxSpec, lifetime: float) -> str:
        self.take_worker("")
        return str(self.open_lane(spec, lifetime, "", None)["id"])

    def take_worker(self, key: str) -> None:
        """Choose the lane's worker (and hold one of its threads for the lane) before opening."""
        self.worker = self.cluster.pick(key)
        self._slot = True

    def open_lane(
        self, spec: SandboxSpec, lifetime: float, key: str, copy: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Make the lane's directory on its worker (and its copy, if the worker holds the base)."""
        self.token = f"{spec.run_id}-{spec.lane_id}-{uuid.uuid4().hex[:8]}"
        info: dict[str, Any] = self.call(
            _w_open, self.settings.cache_dir, self.token, lifetime, key, copy, doing="opening the lane"
        )
        self.root, self.cache, self.pid = info["root"], info["cache"], int(info["pid"])
        self.host = str(info["host"])
        info["id"] = f"{self.token}@{self.worker}"
        return info

    def send(self, path: str, size: int, read_at: Callable[[int, int], bytes], doing: str) -> None:
        """Write ``size`` bytes (``read_at(offset, n)``) to ``path`` on the worker, a message at a time."""
        step = self.settings.message_bytes
        for offset in range(0, max(size, 1), step):
            data = read_at(offset, min(step, size - offset))
            self.call(_w_write, path, offset, self.scatter(data), doing=doing)

    def write_file(self, path: str, data: bytes) -> None:
        self.send(path, len(data), lambda offset, n: data[offset : offset + n], "sending the lane's files")

    def read_file(self, path: str) -> bytes:
        first = self.call(_w_read, path, 0, self.settings.message_bytes, doing="bringing the changes back")
        return self.read_rest(path, *first)

    def read_rest(self, path: str, size: int, first: bytes) -> bytes:
        """The whole of ``path`` (``size`` bytes) given its first piece, a message at a time."""
        pieces = [first]
        received = len(first)
        while received < size:
            _, piece = self.call(
                _w_read, path, received, self.settings.message_bytes, doing="bringing the changes back"
            )
            if not piece:
                break
            pieces.append(piece)
            received += len(piece)
        self.messages += len(pieces)
        self.largest_message = max([self.largest_message, *(len(p) for p in pieces)])
        self.received_bytes += received
        return b"".join(pieces)

    def run(
        self, script: str, *, env: Mapping[str, str], timeout: float | None, on_output: OutputSink | None
    ) -> int | None:
        token = f"{self.token}-{uuid.uuid4().hex[:8]}"
        stream = self.cluster.listen(token)
        try:
            future = self._submit(_w_run, self.root, script, dict(env), timeout, self.cluster.topic, token)
            # The task's end wakes the loop below as output does.
            future.add_done_callback(lambda _f: stream.put({"done": True}))
            received = 0
            next_check = time.monotonic() + LIVENESS_EVERY

            def deliver(msg: dict[str, Any]) -> None:
                nonlocal received
                received += 1
                if on_output is not None:
                    on_output(str(msg["s"]), bytes(msg["d"]))

            while True:
                try:
                    msg = stream.get(timeout=max(0.0, next_check - time.monotonic()))
                except queue.Empty:
                    try:
                        self.cluster.check(self.worker, "running the command")
                    except WorkerLost:
                        with contextlib.suppress(Exception):
                            future.cancel()
                        raise
                    next_check = time.monotonic() + LIVENESS_EVERY
                    continue
                if "done" in msg:
                    break
                deliver(msg)
            result = self._wait(future, "running the command")
            # The events were sent before the task's result; wait a little for any still on the way.
            settle = time.monotonic() + OUTPUT_SETTLE
            while received < int(result["chunks"]) and time.monotonic() < settle:
                with contextlib.suppress(queue.Empty):
                    deliver(stream.get(timeout=0.1))
            code = result["code"]
            return None if code is None else int(code)
        finally:
            self.cluster.unlisten(token)

    def interrupt(self) -> None:
        if self.root:
            self.client.run(_w_stop, self.root, STOP_GRACE, workers=[self.worker], on_error="raise")

    def keepalive(self, seconds: float) -> None:
        if self.root:
            self.client.run(_w_keepalive, self.root, seconds, workers=[self.worker], on_error="raise")

    def close(self) -> None:
        try:
            if self.root:
                root, self.root = self.root, ""
                with contextlib.suppress(Exception):
                    self.cluster.check(self.worker, "removing the lane's copy")
                    self.call(
                        _w_close, root, self.cache, self.settings.pool, doing="removing the lane's copy"
                    )
        finally:
            if self._slot:
                self._slot = False
                self.cluster.release(self.worker)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def _lost(exc: WorkerLost, spec: SandboxSpec) -> EnvironmentProblem:
    """The lane's error when its worker went away: the cause, and how to run the lane again."""
    retry = f"spine resume {spec.run_id} --retry"
    return EnvironmentProblem(f"dask: {exc}; `{retry}` runs the lane again", f"run `{retry}`")


class DaskSandbox(RemoteSandbox):
    """A worker of a Dask cluster (remote copy, binary patch back); needs the dask extra and a scheduler."""

    name = "dask"
    blocks_network = False

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(settings)
        self.options = _Settings.parse(self.settings)
        self.description = ""

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("distributed") is None:
            return "the Dask client is not installed: pip install 'git-spine[dask]'"
        address = self.options.address()
        if address is None:
            return (
                "no scheduler address: set backends.dask.scheduler (tcp://HOST:PORT) in .spine.yaml, "
                "or SPINE_DASK_SCHEDULER"
            )
        timeout = self.options.check_timeout
        try:
            workers = probe(address, timeout)
        except Exception as exc:
            detail = str(exc) or type(exc).__name__
            return f"the Dask scheduler at {address} does not answer within {timeout:g} s: {detail}"
        if not workers:
            return f"the Dask scheduler at {address} answers but has no workers (start some: dask worker {address})"
        threads = sum(workers.values())
        self.description = (
            f"Dask cluster at {address}: scheduler answers, {len(workers)} worker"
            f"{'s' if len(workers) != 1 else ''}, {threads} threads (remote copy, binary patch back)"
        )
        return None

    def make_driver(self, spec: SandboxSpec) -> DaskDriver:
        address = self.options.address()
        if address is None:
            raise EnvironmentProblem(f"dask: {self.unavailable_reason()}")
        return DaskDriver(_Cluster.get(address, self.options), self.options)

    def prepare(self, spec: SandboxSpec) -> SandboxHandle:
        handle = SandboxHandle(backend=self.name, worktree=spec.worktree)
        if not spec.network:
            handle.notices.append("dask cannot block network access on a worker; the command has network")
        lifetime = min((spec.timeout or 0.0) + LIFETIME_MARGIN, self.options.max_lifetime)
        try:
            driver = self.make_driver(spec)
            handle.data.update(driver=driver, spec=spec)
            snap = snapshot(spec.worktree)
            driver.take_worker(snap.key)
            delta = _pack(spec.worktree, snap.delta) if snap.delta else b""
            copy: dict[str, Any] = {
                "delta": driver.scatter(delta)
                if delta and len(delta) <= self.options.message_bytes
                else None,
                "delta_path": None,
                "paths": list(snap.delta),
                "deletions": list(snap.deletions),
            }
            small = not delta or copy["delta"] is not None
            # The usual case, a worker that has the base: one task opens the lane and makes its copy.
            info = driver.open_lane(spec, lifetime, snap.key, copy if small else None)
            handle.provider_run_id = info["id"]
            base_sent = 0
            made = info["head"]
            if made is None:
                base_sent = self._ship_base(driver, snap, bool(info["has_base"]), spec.worktree)
                if not small:
                    copy["delta_path"] = f"{driver.root}/delta.tar"
                    driver.write_file(copy["delta_path"], delta)
                made = driver.call(
                    _w_materialize,
                    driver.root,
                    driver.cache,
                    snap.key,
                    *copy.values(),
                    doing="making the lane's copy",
                )
            delta_sent = driver.sent_bytes - base_sent
            reused = str(made).endswith(" reused")
        except WorkerLost as exc:
            self.teardown(handle)
            raise _lost(exc, spec) from exc
        except BaseException:
            self.teardown(handle)
            raise
        handle.data.update(
            worker=driver.worker,
            base_key=snap.key,
            base_files=len(snap.base),
            base_sent_bytes=base_sent,
            delta_bytes=delta_sent,
            delta_files=len(snap.delta),
            copy_reused=reused,
        )
        base = (
            f"sent the base ({len(snap.base)} files, {_size(base_sent)}) to it"
            if base_sent
            else f"its base ({len(snap.base)} files) was already there"
        )
        handle.notices.append(
            f"dask: on worker {driver.worker} (host {driver.host}); {base}; "
            f"this lane sent {_size(delta_sent)} ({len(snap.delta)} own files, "
            f"{len(snap.deletions)} deletions); its copy {'reused a finished lane' if reused else 'is new'}"
        )
        return handle

    def _ship_base(self, driver: DaskDriver, snap: Snapshot, present: bool, worktree: Path) -> int:
        """Make sure the worker holds the base; send it if no lane of this process is doing so."""
        while True:
            shipment, mine = driver.cluster.shipment(f"{driver.worker}#{driver.pid}", snap.key, present)
            if not mine:
                while not shipment.done.wait(LIVENESS_EVERY / 2):
                    driver.cluster.check(driver.worker, "another lane was sending the base")
                if shipment.ok:
                    return 0
                present = False
                continue  # the lane that was sending it failed: send it ourselves
            try:
                tar, size = _base_tar(snap, worktree)
                path = f"{driver.cache}/incoming/{snap.key}-{uuid.uuid4().hex[:8]}.tar"
                before = driver.sent_bytes
                driver.send(path, size, _reader(tar), "sending the lane's base")
                driver.call(
                    _w_store_base,
                    driver.cache,
                    snap.key,
                    path,
                    self.options.cache_bases,
                    doing="storing the lane's base",
                )
                shipment.ok = True
                return driver.sent_bytes - before
            finally:
                shipment.done.set()

    @staticmethod
    def _command_script(root: str, argv: Sequence[str]) -> str:
        # The worker starts the script as its own process group (and records it), so no setsid here.
        command = " ".join(shlex.quote(a) for a in argv)
        return f"cd {shlex.quote(root + '/work')} || exit 127\nexec {command} < /dev/null"

    def _stop(self, driver: Any) -> None:
        with contextlib.suppress(Exception):
            driver.interrupt()

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
        try:
            return super().exec(
                handle,
                argv,
                env=env,
                timeout=timeout,
                idle_timeout=idle_timeout,
                on_output=on_output,
                cancel=cancel,
                on_start=on_start,
            )
        except EnvironmentProblem as exc:
            if isinstance(exc.__cause__, WorkerLost):
                raise _lost(exc.__cause__, handle.data["spec"]) from exc.__cause__
            raise

    def collect(self, handle: SandboxHandle) -> None:
        try:
            super().collect(handle)
        except WorkerLost as exc:
            raise _lost(exc, handle.data["spec"]) from exc

    def fetch_patch(self, driver: Any) -> bytes:
        """One task computes the patch and brings its first piece; larger ones follow in pieces."""
        assert isinstance(driver, DaskDriver)
        size, first = driver.call(
            _w_collect, driver.root, self.options.message_bytes, doing="computing the changes"
        )
        return driver.read_rest(f"{driver.root}/out.patch", size, first)


def _clean_up_base_tars() -> None:
    for handle, _ in _BASE_TARS.values():
        with contextlib.suppress(Exception):
            handle.close()
    _BASE_TARS.clear()


atexit.register(_clean_up_base_tars)


def close_clients() -> None:
    """Close every Dask client this process opened; a long-lived process calls it when it is done with
    a cluster (spine's own commands exit anyway)."""
    _Cluster.close_all()
