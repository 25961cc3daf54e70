"""Benchmarks (``python -m bench``): ratios measured in one run, never CI gates."""
