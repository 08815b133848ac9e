"""Evaluation suites, each runnable on its own and printing JSON figures."""
