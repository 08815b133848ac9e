"""The proposals suite: diagnoses -> proposals, compared with the expected ones and held to the guardrails."""
