"""spine's version, in one place (``spine.__version__``, ``spine --version``, report footers).

Kept equal to ``version`` in pyproject.toml (tests/test_api.py checks it)."""

__version__ = "0.1.0"
