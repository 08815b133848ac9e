"""NATS JetStream: streams, publishing with message ids, pull consumers. The only place that imports nats."""
