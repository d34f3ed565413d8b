"""Cleaning up: the reaper's gc policy and the pool's trim policy."""
