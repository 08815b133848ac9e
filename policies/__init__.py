"""Guarded configuration changes: proposals, guardrails, approval, applied overlays, rollback."""
