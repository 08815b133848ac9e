"""Large results kept in the NATS object store (`output.store.kind: kv | object`) against the session's
real nats-server: put by one connection, read back synchronously by the process-wide reader, and a
missing object or a malformed reference is a clear error."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from engine.bus.result_objects import ObjectReader, ResultObjects
from engine.tools.artifacts import ArtifactError, encode, resolve

pytestmark = pytest.mark.anyio


async def test_a_result_put_in_the_object_store_reads_back_from_another_thread_as_it_was(
        nats_url: str) -> None:
    objects = ResultObjects(nats_url, f"t{uuid.uuid4().hex[:8]}")
    reader = ObjectReader()
    reader.configure(nats_url)
    rows = [{"id": i, "name": f"row {i}"} for i in range(3000)]
    sql = {"rows": rows[:5], "row_count": 5, "columns": ["id", "name"], "statement_count": 1,
           "command_0": {"rows": rows[:5], "row_count": 5}}
    try:
        for data, format_ in ((rows, "arrow"), ({"nested": {"a": [1, None, "x"]}}, "json"), (sql, "arrow")):
            encoded = encode(data)
            ref = encoded.ref(await objects.put("7001", "fetch rows", encoded.payload), data)
            assert ref.format == format_ and ref.uri.startswith(f"nats-object://{objects.server}/")
            # a synchronous read, as result handles do inside template rendering, off this event loop
            assert await asyncio.to_thread(resolve, ref, reader.read) == data
    finally:
        await objects.close()


async def test_a_reference_to_a_missing_object_is_an_error_naming_it_and_the_fix(nats_url: str) -> None:
    objects = ResultObjects(nats_url, f"t{uuid.uuid4().hex[:8]}")
    try:
        encoded = encode({"k": "v"})
        ref = encoded.ref(await objects.put("7002", "s", encoded.payload), {"k": "v"})
    finally:
        await objects.close()
    missing = ref.model_copy(update={"uri": ref.uri.rsplit("/", 1)[0] + "/7002.s.gone"})
    with pytest.raises(ArtifactError) as raised:
        await asyncio.to_thread(resolve, missing, ObjectReader().read)
    assert "7002.s.gone" in str(raised.value) and "is not in NATS" in str(raised.value)
    assert "bucket" in raised.value.fix


def test_a_malformed_object_reference_is_refused_saying_what_a_reference_looks_like() -> None:
    with pytest.raises(ArtifactError) as raised:
        resolve({"uri": "nats-object://127.0.0.1:4222/only-a-bucket", "size": 1, "format": "json"},
                 ObjectReader().read)
    assert "nats-object://HOST:PORT/BUCKET/NAME" in str(raised.value)
