"""Benchmarks: JSON output with ratios against a baseline measured in the same run."""
