"""Benchmarks: each measures the project against a named baseline in the same run and prints ratios."""

from writer_images.settings import use_development_secrets

# Every benchmark starts services or builds their settings, which have no default secrets.
use_development_secrets()
