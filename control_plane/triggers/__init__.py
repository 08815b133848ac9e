"""Triggers: schedules, events and webhooks that start executions (docs/triggers.md)."""
