"""The wire contract between orchestrator and workers: commands, events and NATS subjects."""
