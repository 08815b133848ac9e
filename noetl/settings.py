"""Settings, read only here at the entry points (DESIGN principle 10): the environment -> a StackConfig."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from control_plane.stack import StackConfig
    from engine.plan.pools import PoolSet

# Imported by every command module, so only the standard library at module level: the command line's
# `--help` must not pay for the control plane (docs/performance.md, "Command line").


def noetl_home() -> Path:
    """NOETL_HOME, else the user data dir (~/.local/share/noetl on Linux)."""
    value = os.environ.get("NOETL_HOME")
    if value:
        return Path(value).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("noetl"))


def stack_config(**overrides: object) -> StackConfig:
    from control_plane.stack import StackConfig
    from engine.runtime.spans import otel_settings

    config: dict[str, object] = {
        "home": noetl_home(),
        "nats_url": os.environ.get("NOETL_NATS_URL") or None,
        "pg_dsn": os.environ.get("NOETL_PG_DSN") or None,
        "secret_key": os.environ.get("NOETL_SECRET_KEY") or None,
        "prefix": os.environ.get("NOETL_BUS_PREFIX") or "noetl",
        # where google_id_token keychain entries are minted (default: the key's token_uri, Google's)
        "google_token_url": os.environ.get("NOETL_GOOGLE_TOKEN_URL") or None,
    }
    config["nats_replicas"] = nats_replicas()
    if os.environ.get("NOETL_ACK_WAIT_S"):  # how long a silent worker keeps a command (default 30 s)
        config["ack_wait_s"] = float(os.environ["NOETL_ACK_WAIT_S"])
    config["pools"] = configured_pools()
    config["otel"] = otel_settings()  # OTEL_EXPORTER_OTLP_ENDPOINT &c.: tracing (docs/insights.md)
    config.update(overrides)
    return StackConfig(**config)  # type: ignore[arg-type]


def nats_replicas() -> int | None:
    """NOETL_NATS_REPLICAS: the replicas of the bus's streams (1 to 5); unset: 3 when NOETL_NATS_URL's
    cluster has 3 or more servers, else 1 (docs/reliability.md)."""
    value = os.environ.get("NOETL_NATS_REPLICAS", "").strip()
    if not value:
        return None
    if not (value.isdigit() and 1 <= int(value) <= 5):
        from control_plane.errors import InvalidArgumentError

        raise InvalidArgumentError(f"NOETL_NATS_REPLICAS is '{value}', not a replica count",
                                   where="NOETL_NATS_REPLICAS",
                                   fix="1 to 5: 1 on a single server, 3 on a cluster of three or more; unset "
                                       "to choose by the cluster's size")
    return int(value)


def qdrant_target(home: Path) -> dict[str, Any]:
    """NOETL_QDRANT_URL (+ NOETL_QDRANT_API_KEY) when set, else the embedded index under home."""
    url = os.environ.get("NOETL_QDRANT_URL", "").strip()
    if url:
        return {"url": url, "api_key": os.environ.get("NOETL_QDRANT_API_KEY", "").strip() or None}
    return {"path": home / "qdrant"}


def server_url() -> str | None:
    """NOETL_SERVER_URL: when set, the CLI is a client of that server's API (docs/api.md)."""
    return os.environ.get("NOETL_SERVER_URL", "").strip() or None


def api_token() -> str | None:
    """NOETL_TOKEN: the bearer token the CLI sends in client mode."""
    return os.environ.get("NOETL_TOKEN", "").strip() or None


def outage_wait_s() -> float:
    """NOETL_OUTAGE_WAIT_S: how long a client command waits for Postgres, NATS or the API server to come
    back before it fails with exit 3 (default 60; 0 = fail at once). See noetl.outage."""
    from noetl.outage import DEFAULT_WAIT_S

    value = os.environ.get("NOETL_OUTAGE_WAIT_S", "").strip()
    if not value:
        return DEFAULT_WAIT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        from control_plane.errors import InvalidArgumentError

        raise InvalidArgumentError(f"NOETL_OUTAGE_WAIT_S is '{value}', not a number of seconds",
                                   where="NOETL_OUTAGE_WAIT_S", fix="a number such as 60 (0 = do not wait)")
    return seconds


DEFAULT_API_PORT = 8082


def api_port() -> int:
    """NOETL_API_PORT: where `noetl dev up` serves the API (default 8082; 0 = a free port)."""
    value = os.environ.get("NOETL_API_PORT", "").strip()
    if not value:
        return DEFAULT_API_PORT
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        from control_plane.errors import InvalidArgumentError

        raise InvalidArgumentError(f"NOETL_API_PORT is '{value}', not a port", where="NOETL_API_PORT",
                                   fix="a number from 0 to 65535 (0 = a free port)")
    return port


DEFAULT_IDLE_STOP_S = 15 * 60.0


def idle_stop_s() -> float:
    """NOETL_IDLE_STOP: how long the embedded servers a one-off `noetl run` uses stay up unused (seconds,
    or 30s, 15m, 1h; 0 = never stop them; default 15 minutes)."""
    from engine.dsl.model import parse_duration

    value = os.environ.get("NOETL_IDLE_STOP", "").strip()
    if not value:
        return DEFAULT_IDLE_STOP_S
    try:
        seconds = 0.0 if re.fullmatch(r"0+(\.0*)?\s*(ms|s|m|h)?", value) else parse_duration(value)
    except ValueError:
        seconds = "invalid"
    if not isinstance(seconds, float):
        from control_plane.errors import InvalidArgumentError

        raise InvalidArgumentError(f"NOETL_IDLE_STOP is '{value}', not a duration", where="NOETL_IDLE_STOP",
                                   fix="a number of seconds or a duration such as 90s, 15m or 1h (0 = never "
                                       "stop the servers)")
    return seconds


def configured_pools(pools_file: Path | None = None) -> PoolSet | None:
    """The pools the deployment declares (`--pools`, NOETL_POOLS, NOETL_HOME/pools.yaml), else None.

    NOETL_POOLS is the text of a pools file (YAML or JSON) or a path to one. Raises PoolConfigError when
    the configuration exists but is not valid."""
    value = os.environ.get("NOETL_POOLS", "").strip()
    default = noetl_home() / "pools.yaml"
    if pools_file is None and not value and not default.is_file():
        return None  # the common case, without importing the planner's package
    from engine.plan.pools import load_pools_file, parse_pools

    if pools_file is not None:
        return load_pools_file(pools_file)
    if value:
        if value[:1] in "{[" or "\n" in value or (":" in value and not Path(value).exists()):
            return parse_pools(value, "NOETL_POOLS")
        return load_pools_file(value)
    return load_pools_file(default)


def export_targets() -> tuple[str | None, str | None]:
    """(NOETL_CLICKHOUSE_URL, NOETL_EXPORT_DIR): where the analytics exporter writes (None: not set)."""
    return (os.environ.get("NOETL_CLICKHOUSE_URL", "").strip() or None,
            os.environ.get("NOETL_EXPORT_DIR", "").strip() or None)
