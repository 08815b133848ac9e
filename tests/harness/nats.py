"""Pytest fixtures: one embedded nats-server (JetStream) per session, a unique subject prefix per test,
and a 3-server cluster for the tests that ask for one (per module)."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.embedded import EmbeddedNats, start_nats
from engine.runtime.embedded_cluster import EmbeddedNatsCluster


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A nats-server with JetStream for the whole session, in a temporary data dir, stopped at the end."""
    server = start_nats(Path(tmp_path_factory.mktemp("embedded-nats")))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNatsCluster]:
    """Three nats-servers with JetStream, routed into one cluster, for one test module; stopped at its end.
    A test that kills a node restarts it before it ends."""
    with EmbeddedNatsCluster(Path(tmp_path_factory.mktemp("nats-cluster")), size=3) as cluster:
        yield cluster


def streams_seen(monitor_url: str) -> dict[str, dict[str, Any]]:
    """Each stream as the server at `monitor_url` reports it (/jsz): its config (`num_replicas`, ...),
    its consumers (`consumer_detail`) and, in a cluster, its leader and replicas."""
    with urllib.request.urlopen(f"{monitor_url}/jsz?streams=true&config=true&consumers=true",
                                timeout=5) as response:
        doc = json.loads(response.read())
    return {stream["name"]: stream for account in doc.get("account_details") or ()
            for stream in account.get("stream_detail") or ()}


@pytest.fixture
def nats_url(nats_server: EmbeddedNats) -> str:
    return nats_server.url


@pytest.fixture
def nats_prefix() -> str:
    """A subject prefix (and so stream names) that no other test uses: tests share the server."""
    return f"t{uuid.uuid4().hex[:12]}"


async def fetch_all(consumer: Any, count: int, *, timeout_s: float = 5.0) -> list[Any]:
    """`count` deliveries from a pull consumer, over as many fetches as it takes (a fetch may return
    fewer than it asked for while the rest are still on their way); fewer only after `timeout_s`."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and (left := deadline - time.monotonic()) > 0:
        got.extend(await consumer.fetch(batch=count - len(got), timeout=min(left, 1.0)))
    return got
