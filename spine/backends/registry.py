"""The static registry of backends, plus third-party backends from the ``spine.backends`` entry points.

Backends are named here as ``module:attribute`` strings and imported only when used, so an optional
SDK is never imported by a lane that does not use its backend.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from functools import cache
from typing import Any

from spine.backends.base import Sandbox
from spine.errors import EnvironmentProblem, UsageError

ENTRY_POINT_GROUP = "spine.backends"

BUILTIN: dict[str, str] = {
    "local-worktree": "spine.backends.local:LocalWorktree",
    "none": "spine.backends.local:NoIsolation",
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


def load_backend(name: str, settings: Mapping[str, Any] | None = None) -> Sandbox:
    """Import and instantiate backend ``name`` with its settings from ``.spine.yaml``."""
    module_name, _, attr = backend_target(name).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EnvironmentProblem(
            f"backend {name!r} cannot be loaded: {exc}",
            f"install its extra, e.g. pip install 'git-spine[{name}]'",
        ) from exc
    factory = getattr(module, attr)
    backend: Sandbox = factory(settings or {})
    return backend


def require_usable(name: str, settings: Mapping[str, Any] | None = None) -> Sandbox:
    """Load backend ``name`` and fail (exit 3) with its reason when it is not usable here."""
    backend = load_backend(name, settings)
    reason = backend.unavailable_reason()
    if reason:
        raise EnvironmentProblem(
            f"backend {name!r} is not usable here: {reason}", "choose another with --backend"
        )
    return backend
