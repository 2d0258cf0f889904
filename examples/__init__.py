"""Worked examples (not installed with the package)."""
