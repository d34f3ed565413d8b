"""The static registry of backends, plus third-party backends from the ``spine.backends`` entry points.

Backends are named here as ``module:attribute`` strings and imported only when used, so an optional
SDK is never imported by a lane that does not use its backend.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spine.base.backend_names import BUILTIN, backend_target
from spine.base.errors import EnvironmentProblem

if TYPE_CHECKING:
    # The sandbox port pulls in the process runner; resolving a built-in name needs neither.
    from spine.backends.base import Sandbox


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


@dataclass(frozen=True)
class BackendInfo:
    """One row of ``spine backends``."""

    name: str
    source: str
    target: str
    usable: bool
    reason: str | None
    description: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "target": self.target,
            "usable": self.usable,
            "reason": self.reason,
            "description": self.description,
        }


def backend_info(name: str, settings: Mapping[str, Any] | None = None) -> BackendInfo:
    """Whether backend ``name`` is usable here and, if not, why; a broken plugin is reported, not raised."""
    from spine.backends.base import describe

    target = backend_target(name)
    source = "built-in" if name in BUILTIN else "plugin"
    try:
        backend = load_backend(name, settings)
        reason = backend.unavailable_reason()
        description = describe(backend)
    except Exception as exc:  # a third-party backend may fail in any way; report it instead
        text = (
            exc.message
            if isinstance(exc, EnvironmentProblem)
            else f"cannot be loaded: {type(exc).__name__}: {exc}"
        )
        return BackendInfo(name, source, target, False, text, "")
    return BackendInfo(name, source, target, reason is None, reason, description)
