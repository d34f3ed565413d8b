"""Isolation backends: one port (``spine.backends.base.Sandbox``), a static registry, entry points."""
