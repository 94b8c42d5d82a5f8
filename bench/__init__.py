"""Benchmarks: each measures the project against a named baseline in the same run and prints ratios."""
