"""The wire contract between orchestrator and workers: commands, events, subjects, result envelopes."""
