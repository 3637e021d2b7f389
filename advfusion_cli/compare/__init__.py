"""compare, inspect and demo: train what is missing, evaluate every method, one table with noise verdicts."""
