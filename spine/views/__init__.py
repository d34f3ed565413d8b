"""Text views of runs and lanes for the command line."""
