"""Scheduling: ready steps x worker pools -> order and placement (CP-SAT with a greedy fallback)."""
