"""A NATS deployment of one server or a cluster: the server list of a URL, and how many replicas its
streams get. Pure: no connection here (the Bus, engine/bus/jetstream.py, applies it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from engine.errors import EngineError

__all__ = ["CLUSTER_REPLICAS", "REPLICA_REFUSALS", "NatsUrlError", "check_replicas", "cluster_size",
           "default_replicas", "server_list", "server_name"]

CLUSTER_REPLICAS = 3  # streams on a cluster of 3 or more JetStream servers survive the loss of one
# JetStream's refusals of a replica count: "no suitable peers for placement" (fewer JetStream servers than
# replicas) and "replicas > 1 not supported in non-clustered mode"
REPLICA_REFUSALS = (10005, 10074)


class NatsUrlError(EngineError):
    """A NATS URL (list) that names no server, or a replica count that is not 1 to 5."""

    code = "nats_url"


def server_list(url: str | Sequence[str]) -> list[str]:
    """The servers of `url`: one URL, a comma-separated list (`nats://a:4222,nats://b:4222`; NOETL_NATS_URL
    may be one), or a sequence of them. Each keeps its credentials; a bare `host:port` gets `nats://`."""
    parts = url.split(",") if isinstance(url, str) else [p for item in url for p in item.split(",")]
    servers = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        candidate = part if "://" in part else f"nats://{part}"
        try:
            split = urlsplit(candidate)
            split.port  # noqa: B018  (raises ValueError on a port that is not a number)
        except ValueError as exc:
            raise NatsUrlError(f"'{part}' is not a NATS server URL: {exc}", where="NOETL_NATS_URL",
                               fix="use nats://HOST:PORT, several separated by commas") from exc
        if split.scheme not in ("nats", "tls", "ws", "wss") or not split.hostname:
            raise NatsUrlError(f"'{part}' is not a NATS server URL", where="NOETL_NATS_URL",
                               fix="use nats://HOST:PORT (or tls://, ws://, wss://), several separated by "
                                   "commas")
        servers.append(candidate)
    if not servers:
        raise NatsUrlError(f"the NATS URL '{url}' names no server", where="NOETL_NATS_URL",
                           fix="use nats://HOST:PORT, several separated by commas")
    return servers


def cluster_size(info: Mapping[str, Any]) -> int:
    """How many servers the cluster of the server that sent `info` (its INFO message) has: the client
    URLs it advertises (`connect_urls`, its own included) when it is in a cluster, else 1."""
    if not info.get("cluster"):
        return 1
    urls = {str(u) for u in info.get("connect_urls") or ()}
    return max(1, len(urls))


def default_replicas(info: Mapping[str, Any]) -> int:
    """The replicas of a stream created through the server that sent `info`: 3 in a cluster of 3 or
    more servers with JetStream, else 1. An estimate (a cluster may mix servers without JetStream): the
    Bus falls back to 1 when the server finds no peers for 3."""
    if not info.get("jetstream"):
        return 1
    return CLUSTER_REPLICAS if cluster_size(info) >= CLUSTER_REPLICAS else 1


def check_replicas(replicas: int, where: str) -> int:
    """`replicas` when JetStream allows it (1 to 5), else NatsUrlError."""
    if not 1 <= replicas <= 5:
        raise NatsUrlError(f"stream replicas must be 1 to 5, not {replicas}", where=where,
                           fix="use 1 on a single server, 3 on a cluster of three or more")
    return replicas


def server_name(info: Mapping[str, Any], url: str) -> str:
    """`host:port (name)` of the server a connection is on, for logs and status lines."""
    name = info.get("server_name")
    return f"{url} ({name})" if name and name != info.get("server_id") else url
