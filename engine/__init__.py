"""The NoETL engine: playbook language, net firing, scheduling, protocol, bus, runtime, tools.

It imports no other top-level package."""
