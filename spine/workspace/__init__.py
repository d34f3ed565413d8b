"""Where things live: the execution context, the repository, worktrees, the run store."""
