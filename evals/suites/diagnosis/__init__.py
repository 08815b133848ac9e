"""The diagnosis suite: failing playbooks with expected root causes, run on a real stack."""
