"""The NoETL engine: playbook language, Petri-net firing, scheduling, wire protocol, bus, runtime and tools. Imports no other top-level package."""
