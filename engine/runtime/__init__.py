"""The orchestrator (events -> fire -> commands) and the worker (commands -> tools -> events)."""
