"""Driving runs: the pure scheduler, the drive loop, recovery, retry."""
