"""Evaluations and benchmarks: conformance, diagnosis accuracy, proposal safety, speed."""
