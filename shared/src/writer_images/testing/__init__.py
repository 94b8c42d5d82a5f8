"""Test harness: the project's pytest plugin and helpers for real infrastructure."""
