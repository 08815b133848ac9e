"""NATS subjects and JetStream stream names: defined once, used by the bus, the runtime and the tests."""

from __future__ import annotations

import re

from engine.protocol.partitions import partition_of, partition_token

PREFIX = "noetl"
COMMAND_STREAM = "NOETL_COMMANDS"
EVENT_STREAM = "NOETL_EVENTS"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


def _token(value: str, what: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"{what} '{value}' may use only letters, digits, '_' and '-' (it is a NATS "
                         "subject token)")
    return value


def command_subject(pool: str, prefix: str = PREFIX) -> str:
    """Commands for the workers of one pool (a work queue per pool)."""
    return f"{prefix}.cmd.{_token(pool, 'pool name')}"


def command_subjects(prefix: str = PREFIX) -> str:
    return f"{prefix}.cmd.>"


def event_subject(execution_id: str, prefix: str = PREFIX) -> str:
    """Events of one execution, from workers and the API to the orchestrator that owns its partition."""
    token = _token(execution_id, "execution id")
    return f"{prefix}.evt.{partition_token(partition_of(execution_id))}.{token}"


def event_subjects(prefix: str = PREFIX) -> str:
    return f"{prefix}.evt.>"


def partition_event_subjects(partition: int, prefix: str = PREFIX) -> str:
    """The events of one partition's executions (its durable consumer's filter)."""
    return f"{prefix}.evt.{partition_token(partition)}.>"


def report_subject(partition: int, prefix: str = PREFIX) -> str:
    """Core NATS requests: workers' outcomes of one partition's executions to the orchestrator that owns
    it, answered once stored (engine/bus/reports.py)."""
    return f"{prefix}.rpt.{partition_token(partition)}"


def cancel_subject(prefix: str = PREFIX) -> str:
    """Core NATS broadcast: every worker stops the commands named in the message."""
    return f"{prefix}.ctl.cancel"


def worker_subject(prefix: str = PREFIX) -> str:
    """Core NATS: workers' heartbeats (pool, labels, capacity), every few seconds and when asked."""
    return f"{prefix}.ctl.workers"


def worker_ping_subject(prefix: str = PREFIX) -> str:
    """Core NATS: the orchestrator asks every worker for a heartbeat now (after it starts)."""
    return f"{prefix}.ctl.workers.ping"
