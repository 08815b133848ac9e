"""The NATS subjects that start executions (subject triggers, docs/triggers.md) as durable consumers.

A trigger's subject is read from the stream that captures it already (a user's stream), else from the
stream of this prefix for trigger subjects (`<PREFIX>_TRIGGERS`), whose subjects are the fewest that
cover every trigger's. Each trigger has a durable consumer of its own starting at the time the trigger
was created, so messages that come while no NoETL server runs are read when one is back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from engine.errors import EngineError

log = logging.getLogger(__name__)

ACK_WAIT_S = 30.0


class TriggerSubjectError(EngineError):
    """A trigger subject that cannot be read."""


def stream_name(prefix: str) -> str:
    return f"{prefix.upper().replace('.', '_')}_TRIGGERS"


def durable_name(trigger_id: str) -> str:
    return f"trigger-{trigger_id}"


def covers(wide: str, narrow: str) -> bool:
    """Whether every subject `narrow` matches is matched by `wide` too."""
    wide_tokens, narrow_tokens = wide.split("."), narrow.split(".")
    for index, token in enumerate(wide_tokens):
        if token == ">":
            return len(narrow_tokens) > index
        if index >= len(narrow_tokens):
            return False
        other = narrow_tokens[index]
        if other == ">":
            return False
        if token != "*" and token != other:
            return False
    return len(wide_tokens) == len(narrow_tokens)


def overlaps(one: str, two: str) -> bool:
    """Whether some subject matches both."""
    a, b = one.split("."), two.split(".")
    for index in range(max(len(a), len(b))):
        x = a[index] if index < len(a) else None
        y = b[index] if index < len(b) else None
        if x == ">" or y == ">":
            return x is not None and y is not None
        if x is None or y is None:
            return False
        if x != y and x != "*" and y != "*":
            return False
    return True


def cover(subjects: Sequence[str]) -> list[str]:
    """The fewest of `subjects` that match everything they match (one stream cannot hold overlapping
    subjects); TriggerSubjectError for two that overlap without either covering the other."""
    kept: list[str] = []
    for subject in sorted(set(subjects), key=lambda s: (-_breadth(s), s)):
        if any(covers(wide, subject) for wide in kept):
            continue
        clash = next((other for other in kept if overlaps(other, subject)), None)
        if clash is not None:
            raise TriggerSubjectError(
                f"subject '{subject}' overlaps '{clash}' of another trigger, and neither covers the other",
                where="subject", fix=f"use a subject that covers both (e.g. one ending in '>'), or '{clash}' "
                                     "itself with a `when`-style check in the playbook")
        kept.append(subject)
    return sorted(kept)


def _breadth(subject: str) -> int:
    return sum(1 for token in subject.split(".") if token in ("*", ">")) * 100 - len(subject.split("."))


async def _capturing_stream(js: JetStreamContext, subject: str, own: str) -> str | None:
    try:
        name = await js.find_stream_name_by_subject(subject)
    except nats.js.errors.NotFoundError:
        return None
    return None if name == own else str(name)


async def bind(js: JetStreamContext, *, prefix: str, trigger_id: str, subject: str, since: datetime,
               all_subjects: Sequence[str]) -> str:
    """Make the trigger's durable consumer (once; again is harmless); returns the stream it reads."""
    if subject == prefix or subject.startswith(prefix + ".") or subject in (">", "*") or \
            subject.startswith("$"):
        raise TriggerSubjectError(f"subject '{subject}' is NoETL's own or the system's", where="subject",
                                  fix=f"use a subject of your own, outside '{prefix}.>' and '$…'")
    own = stream_name(prefix)
    stream = await _capturing_stream(js, subject, own)
    try:
        if stream is None:
            stream = own
            subjects = cover([*all_subjects, subject])
            config = StreamConfig(name=own, subjects=subjects, storage=StorageType.FILE,
                                  max_age=7 * 86400.0, duplicate_window=120.0)
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError:
                await js.update_stream(config)
            except nats.js.errors.ServerError:
                await js.update_stream(config)
        config_c = ConsumerConfig(durable_name=durable_name(trigger_id), name=durable_name(trigger_id),
                                  filter_subject=subject, ack_policy=AckPolicy.EXPLICIT,
                                  deliver_policy=DeliverPolicy.BY_START_TIME,
                                  opt_start_time=since, ack_wait=ACK_WAIT_S, max_deliver=-1)
        try:  # made once: its start time stays the trigger's (a consumer's start cannot change)
            await js.consumer_info(stream, durable_name(trigger_id))
        except nats.js.errors.NotFoundError:
            await js.add_consumer(stream, config_c)
    except nats.js.errors.APIError as exc:
        raise TriggerSubjectError(f"cannot read subject '{subject}': {exc.description}", where="subject",
                                  fix="a subject another stream captures in part cannot be read; use one "
                                      "it captures whole, or one no stream captures") from exc
    except nats.errors.Error as exc:
        raise TriggerSubjectError(f"cannot read subject '{subject}': {exc!r}", where="subject",
                                  fix="check the connection to nats-server; the server tries again") from exc
    return stream


async def unbind(js: JetStreamContext, *, prefix: str, trigger_id: str, stream: str | None = None) -> None:
    """Delete the trigger's durable consumer (wherever it is); nothing when there is none."""
    streams = [stream] if stream else [stream_name(prefix)]
    for name in streams:
        try:
            await js.delete_consumer(name, durable_name(trigger_id))
        except nats.js.errors.NotFoundError:
            continue
        except nats.errors.Error as exc:
            log.warning("trigger %s: its consumer on %s was not deleted (%s)", trigger_id, name, exc)
