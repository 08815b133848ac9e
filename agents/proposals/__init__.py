"""The closed loop's last leg: diagnoses -> proposals (guardrails) -> approval -> measured effect."""
