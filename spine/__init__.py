"""spine: a Git-native worktree execution orchestrator."""

__version__ = "0.1.0"
