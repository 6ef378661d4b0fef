"""Benchmarks for fastmlp (run from the repository root: python -m benchmarks.epoch)."""
