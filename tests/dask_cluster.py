"""A real Dask cluster for the tests: a ``dask scheduler`` and ``dask worker`` processes.

On loopback by default; with ``hosts=True`` every worker runs in a network namespace of its own (a
separate "host" on a bridge, reachable only over that bridge), when this machine allows it (root
and ``ip``). The workers cannot import spine (a ``sitecustomize`` refuses it), which proves that
the backend ships everything they run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BLOCK_SPINE = textwrap.dedent(
    """
    import sys

    class _NoSpine:
        def find_spec(self, name, path=None, target=None):
            if name == "spine" or name.startswith("spine."):
                raise ModuleNotFoundError(f"No module named {name!r} (a Dask worker in spine's tests)")
            return None

    sys.meta_path.insert(0, _NoSpine())
    """
)


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_dask() -> None:
    """Skip when Dask is not installed; under CI, where .ci/run installs it, fail instead."""
    import importlib.util

    if importlib.util.find_spec("distributed") is not None:
        return
    if under_ci():
        pytest.fail("the dask backend's tests must run under CI, but distributed is not installed")
    pytest.skip("distributed is not installed: pip install -e '.[test]'")


def namespaces_reason() -> str | None:
    """None when this machine can make network namespaces (root and ``ip``); otherwise why not."""
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"spine-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")


class DaskCluster:
    """A scheduler and ``workers`` worker processes of ``threads`` threads each."""

    def __init__(
        self, root: Path, *, workers: int = 2, threads: int = 8, hosts: bool = False, death_timeout: int = 60
    ) -> None:
        self.root = root
        self.death_timeout = death_timeout
        self.threads = threads
        self.hosts = hosts
        self.address = ""
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._names: list[str] = []
        self._tag = f"{os.getpid() % 10000:04d}{random.randrange(100):02d}"
        self._subnet = ""
        self._bridge = ""
        self._count = workers
        root.mkdir(parents=True, exist_ok=True)
        site = root / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(BLOCK_SPINE)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "SPINE_"))},
            "PYTHONPATH": str(site),
            "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
            "DASK_DISTRIBUTED__ADMIN__TICK__LIMIT": "30s",  # a busy 2-core machine is no bug
        }

    # -- network namespaces: a bridge here, one namespace ("host") per worker on it --

    def _make_hosts(self) -> None:
        used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=False).stdout
        for _ in range(50):
            third = random.randrange(16, 250)
            if f"10.254.{third}." not in used:
                break
        self._subnet = f"10.254.{third}"
        self._bridge = f"spbr{self._tag}"
        _ip("link", "add", self._bridge, "type", "bridge")
        _ip("addr", "add", f"{self._subnet}.1/24", "dev", self._bridge)
        _ip("link", "set", self._bridge, "up")
        for index in range(self._count):
            ns, veth = f"spine-{self._tag}-h{index}", f"spv{self._tag}{index}"
            _ip("netns", "add", ns)
            self._names.append(ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", self._bridge, "up")
            _ip("-n", ns, "addr", "add", f"{self._subnet}.{index + 2}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def _remove_hosts(self) -> None:
        for ns in self._names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        if self._bridge:
            subprocess.run(["ip", "link", "del", self._bridge], capture_output=True, check=False)

    # -- processes --

    def _dask(self, *args: str, log: str, netns: str | None = None) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "dask", *args]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        with open(self.root / log, "ab") as out:
            return subprocess.Popen(
                argv, cwd=self.root, env=self.env, stdout=out, stderr=out, stdin=subprocess.DEVNULL
            )

    def start(self) -> DaskCluster:
        if self.hosts:
            self._make_hosts()
        host = f"{self._subnet}.1" if self.hosts else "127.0.0.1"
        scheduler_file = self.root / "scheduler.json"
        self.scheduler = self._dask(
            "scheduler", "--host", host, "--port", "0", "--no-dashboard",
            "--scheduler-file", str(scheduler_file), "--idle-timeout", "1800",
            log="scheduler.log",
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            if self.scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Dask scheduler did not start: {self.log('scheduler.log')}")
            time.sleep(0.05)
        while not self.address:
            with contextlib.suppress(ValueError):
                self.address = json.loads(scheduler_file.read_text())["address"]
            time.sleep(0.02)
        for index in range(self._count):
            self.add_worker(f"w{index}", netns=self._names[index] if self.hosts else None)
        self.wait_for_workers(self._count)
        return self

    def add_worker(self, name: str, netns: str | None = None, threads: int | None = None) -> None:
        host = f"{self._subnet}.{int(name[1:]) + 2}" if netns else "127.0.0.1"
        self.workers[name] = self._dask(
            "worker", self.address, "--name", name, "--nthreads", str(threads or self.threads),
            "--no-nanny", "--host", host, "--no-dashboard", "--death-timeout", str(self.death_timeout),
            "--local-directory", str(self.root / f"local-{name}"),
            log=f"{name}.log", netns=netns,
        )  # fmt: skip

    def worker_addresses(self) -> dict[str, str]:
        """{worker name: address}, as the scheduler knows them."""
        import asyncio

        from distributed.core import rpc

        async def ask() -> dict[str, str]:
            scheduler = rpc(self.address)
            try:
                info = await scheduler.identity(n_workers=-1)
            finally:
                await scheduler.close_rpc()
            return {str(w["name"]): addr for addr, w in info["workers"].items()}

        return asyncio.run(ask())

    def wait_for_workers(self, count: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                if len(self.worker_addresses()) >= count:
                    return
            dead = [n for n, p in self.workers.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(self.log(f"{n}.log")[-2000:] for n in self.workers)
                raise RuntimeError(f"Dask workers did not register (dead: {dead}):\n{logs}")
            time.sleep(0.1)

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker: no goodbye to the scheduler, as when its machine dies."""
        proc = self.workers.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def log(self, name: str) -> str:
        path = self.root / name
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        # Workers first: a worker told to close by its scheduler while handling SIGTERM can hang.
        for group in (list(self.workers.values()), [self.scheduler] if self.scheduler else []):
            for proc in group:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in group:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.workers.clear()
        if self.hosts:
            self._remove_hosts()


@contextlib.contextmanager
def running_cluster(
    root: Path, *, workers: int = 2, threads: int = 8, hosts: bool = False, death_timeout: int = 60
) -> Iterator[DaskCluster]:
    """A started DaskCluster, stopped on exit."""
    require_dask()
    cluster = DaskCluster(root, workers=workers, threads=threads, hosts=hosts, death_timeout=death_timeout)
    try:
        yield cluster.start()
    finally:
        # Clients this process opened keep threads (and their use of the random module) alive: close
        # them with the cluster, so no later test shares the process with them.
        from spine.adapters.dask import close_clients

        close_clients()
        cluster.stop()
