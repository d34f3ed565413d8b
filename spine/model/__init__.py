"""Data and its evaluation: configuration, result and state models, operators, modes, scores."""
