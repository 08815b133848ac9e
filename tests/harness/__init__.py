"""Test components: session-scoped real ones (nats-server, PostgreSQL, servers in threads) and
in-memory fakes of the event log and the bus for unit tests (fake_event_log, fake_bus, fake_runtime)."""
