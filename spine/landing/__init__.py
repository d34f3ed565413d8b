"""Landing work: the gate, promotion, hooks and their reports."""
