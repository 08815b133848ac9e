"""Session-scoped real components for tests: nats-server, PostgreSQL, servers in threads."""
