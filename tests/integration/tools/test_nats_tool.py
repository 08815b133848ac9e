"""The nats tool against the session's real nats-server: key-value, object store and publishing, on the
deployment's NATS or one a credential names, with classified errors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.bus.jetstream import Bus
from engine.bus.nats_ops import NatsEndpoint, NatsOps
from engine.protocol import subjects
from engine.protocol.results import ResultEnvelope
from engine.tools.nats_tool import NatsTool
from tests.harness.nats import fetch_all

from .conftest import StoredCredentials, free_port, make_call

pytestmark = pytest.mark.anyio


@pytest.fixture
async def tool(nats_url: str) -> AsyncIterator[NatsTool]:
    nats = NatsTool(nats_url)  # the deployment's NATS, as the worker passes it
    yield nats
    await nats.close()


@pytest.fixture
def bucket() -> str:
    return f"b{uuid.uuid4().hex[:10]}"  # a bucket no other test uses: the server is shared


async def op(tool: NatsTool, operation: str, **config: Any) -> ResultEnvelope:
    return await tool.run(make_call("nats", {"operation": operation, **config}))


async def test_kv_put_then_get_returns_the_value_and_its_revision(tool: NatsTool, bucket: str) -> None:
    value = {"score": 0.9, "tags": ["a", "b"], "note": "ünïcode"}
    put = await op(tool, "kv_put", bucket=bucket, key="customer.7", value=value)
    assert put.status == "ok", put.error
    assert put.data == {"bucket": bucket, "key": "customer.7", "revision": put.data["revision"]}
    assert isinstance(put.data["revision"], int) and put.data["revision"] >= 1
    got = await op(tool, "kv_get", bucket=bucket, key="customer.7")
    assert got.data == {"bucket": bucket, "key": "customer.7", "value": value,
                        "revision": put.data["revision"]}
    again = await op(tool, "kv_put", bucket=bucket, key="customer.7", value="plain text")
    assert again.data["revision"] > put.data["revision"]
    text = await op(tool, "kv_get", bucket=bucket, key="customer.7")
    assert text.data["value"] == "plain text"  # a string comes back a string


async def test_kv_get_of_an_absent_key_creates_the_bucket_and_returns_null(tool: NatsTool,
                                                                          bucket: str) -> None:
    got = await op(tool, "kv_get", bucket=bucket, key="nobody")
    assert got.status == "ok"
    assert got.data == {"bucket": bucket, "key": "nobody", "value": None, "revision": None}


async def test_kv_delete_makes_the_key_absent(tool: NatsTool, bucket: str) -> None:
    await op(tool, "kv_put", bucket=bucket, key="k", value=1)
    deleted = await op(tool, "kv_delete", bucket=bucket, key="k")
    assert deleted.data == {"bucket": bucket, "key": "k", "deleted": True}
    assert (await op(tool, "kv_get", bucket=bucket, key="k")).data["value"] is None
    twice = await op(tool, "kv_delete", bucket=bucket, key="k")  # a retried delete is harmless
    assert twice.status == "ok"


async def test_a_value_another_client_wrote_reads_as_text_or_base64(tool: NatsTool, nats_url: str,
                                                                   bucket: str) -> None:
    ops = NatsOps()
    try:
        await ops.kv_put(NatsEndpoint(nats_url), bucket, "text", b"not json")
        await ops.kv_put(NatsEndpoint(nats_url), bucket, "bytes", bytes([0xFF, 0x00, 0x10]))
    finally:
        await ops.close()
    assert (await op(tool, "kv_get", bucket=bucket, key="text")).data["value"] == "not json"
    raw = (await op(tool, "kv_get", bucket=bucket, key="bytes")).data
    assert raw["value"] == "/wAQ" and raw["encoding"] == "base64"


async def test_publish_to_a_stream_subject_returns_the_stream_sequence(tool: NatsTool, nats_url: str,
                                                                       nats_prefix: str) -> None:
    bus = await Bus.connect(nats_url, nats_prefix)
    try:
        await bus.ensure_streams()  # the event stream takes <prefix>.events.>
        subject = subjects.event_subject("x1", nats_prefix)
        first = await op(tool, "publish", subject=subject, data={"n": 1}, headers={"X-Source": "noetl"})
        second = await op(tool, "publish", subject=subject, data="two")
        assert first.status == "ok", first.error
        assert first.data == {"subject": subject, "seq": first.data["seq"], "stream": bus.event_stream}
        assert second.data["seq"] == first.data["seq"] + 1
        consumer = await bus.event_consumer("reader")
        got = await fetch_all(consumer, 2)
        assert [d.data for d in got] == [b'{"n":1}', b"two"]
        await consumer.close()
    finally:
        await bus.close()


async def test_publish_to_a_plain_subject_reaches_subscribers_without_a_sequence(tool: NatsTool,
                                                                                 nats_url: str) -> None:
    subject = f"plain.{uuid.uuid4().hex[:8]}"
    bus = await Bus.connect(nats_url, "plain")
    received: asyncio.Queue[bytes] = asyncio.Queue()
    try:
        subscription = await bus.subscribe_core(subject, received.put)
        published = await op(tool, "publish", subject=subject, data=[1, 2])
        assert published.status == "ok" and published.data == {"subject": subject}
        assert await asyncio.wait_for(received.get(), 5) == b"[1,2]"
        await subscription.unsubscribe()
    finally:
        await bus.close()


async def test_object_put_then_get_round_trips_and_an_absent_object_is_null(tool: NatsTool,
                                                                           bucket: str) -> None:
    report = {"rows": [{"id": i, "name": f"row {i}"} for i in range(500)]}
    put = await op(tool, "object_put", bucket=bucket, name="reports/summary.json", data=report)
    assert put.status == "ok", put.error
    assert put.data["bucket"] == bucket and put.data["name"] == "reports/summary.json"
    assert put.data["size"] > 10_000 and str(put.data["digest"]).startswith("SHA-256=")
    got = await op(tool, "object_get", bucket=bucket, name="reports/summary.json")
    assert got.data == {"bucket": bucket, "name": "reports/summary.json", "data": report,
                        "size": put.data["size"]}
    absent = await op(tool, "object_get", bucket=bucket, name="nothing.txt")
    assert absent.data == {"bucket": bucket, "name": "nothing.txt", "data": None, "size": None}


async def test_a_credential_names_the_server_to_use(nats_url: str, bucket: str) -> None:
    tool = NatsTool()  # no deployment NATS: only `auth` can say where
    credentials = StoredCredentials({"nats_main": ("nats", {"url": nats_url})})
    try:
        put = await tool.run(make_call("nats", {"operation": "kv_put", "bucket": bucket, "key": "k",
                                                "value": 1, "auth": "nats_main"}, credentials=credentials))
        assert put.status == "ok" and put.data["revision"] >= 1
        missing = await tool.run(make_call("nats", {"operation": "kv_get", "bucket": bucket, "key": "k"}))
        assert missing.error is not None and missing.error.kind == "validation"
        assert "'auth'" in missing.error.message
    finally:
        await tool.close()


async def test_an_unreachable_server_is_a_retryable_connection_error_and_hides_the_password() -> None:
    tool = NatsTool()
    url = f"nats://127.0.0.1:{free_port()}"
    credentials = StoredCredentials({"far": ("nats", {"url": url, "user": "app", "password": "hunter2-pw"})})
    try:
        env = await tool.run(make_call("nats", {"operation": "kv_get", "bucket": "b", "key": "k",
                                                "auth": "far"}, credentials=credentials))
    finally:
        await tool.close()
    assert env.status == "error" and env.error is not None
    assert (env.error.kind, env.error.retryable, env.error.source) == ("connection", True, "nats")
    assert url in env.error.message and "hunter2-pw" not in env.error.model_dump_json()


async def test_bad_configuration_is_a_validation_error(tool: NatsTool) -> None:
    unknown = await op(tool, "kv_list", bucket="b")
    assert unknown.error is not None and unknown.error.kind == "validation"
    assert "kv_put" in unknown.error.message
    no_key = await op(tool, "kv_put", bucket="b", value=1)
    assert no_key.error is not None and no_key.error.kind == "validation" and "'key'" in no_key.error.message
    bad_bucket = await op(tool, "kv_get", bucket="has space", key="k")
    assert bad_bucket.error is not None and bad_bucket.error.kind == "validation"
    assert not bad_bucket.error.retryable
