"""One lane: its steps, typed facts, the outcome and what renders it."""
