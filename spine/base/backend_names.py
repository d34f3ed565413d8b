"""Backend names: the built-in ones and those installed packages add through the ``spine.backends``
entry point group. Names only; ``spine.backends.registry`` loads them."""

from __future__ import annotations

from functools import cache

from spine.base.errors import UsageError

ENTRY_POINT_GROUP = "spine.backends"

BUILTIN: dict[str, str] = {
    "local-worktree": "spine.backends.local:LocalWorktree",
    "none": "spine.backends.local:NoIsolation",
    "bubblewrap": "spine.adapters.bubblewrap:Bubblewrap",
    "docker": "spine.adapters.docker:DockerSandbox",
    "local-remote": "spine.adapters.local_remote:LocalRemote",
    "e2b": "spine.adapters.e2b:E2BSandbox",
    "vercel-sandbox": "spine.adapters.vercel_sandbox:VercelSandbox",
    "cloudflare-sandbox": "spine.adapters.cloudflare_sandbox:CloudflareSandbox",
    "dask": "spine.adapters.dask:DaskSandbox",
}


@cache
def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in BUILTIN}


def known_backend_names() -> list[str]:
    """Every backend name spine can resolve: built-in first, then installed plugins."""
    return [*BUILTIN, *_entry_points()]


def backend_target(name: str) -> str:
    """The ``module:attribute`` a backend name points at."""
    target = BUILTIN.get(name) or _entry_points().get(name)
    if target is None:
        raise UsageError(f"unknown backend {name!r}", f"known backends: {', '.join(known_backend_names())}")
    return target
