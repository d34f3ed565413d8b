"""Optional backends and integrations, installed as ``spine.adapters``."""
