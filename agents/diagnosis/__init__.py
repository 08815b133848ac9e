"""Diagnosing failed (or slow) executions: evidence -> rules -> similar failures -> [LLM] -> Diagnosis."""
