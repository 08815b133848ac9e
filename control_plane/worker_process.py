"""A worker pool in its own process (entry point): `python -m control_plane.worker_process POOL N`.

The stack starts these when `worker_processes` is set, so steps run beside the orchestrator on
another core. Settings come from the environment the stack passes (an entry point may read it).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from control_plane.stack import Stack, StackConfig
from engine.plan.pools import parse_pools
from engine.runtime import eventloop


async def serve(pool: str, concurrency: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pools = os.environ.get("NOETL_POOLS")
    capacity = os.environ.get("NOETL_WORKER_CAPACITY")
    config = StackConfig(home=Path(os.environ["NOETL_HOME"]), nats_url=os.environ["NOETL_NATS_URL"],
                         pg_dsn=os.environ["NOETL_PG_DSN"], secret_key=os.environ.get("NOETL_SECRET_KEY"),
                         prefix=os.environ.get("NOETL_BUS_PREFIX", "noetl"), orchestrator=False,
                         workers={pool: concurrency},
                         ack_wait_s=float(os.environ.get("NOETL_ACK_WAIT_S", "30")),
                         pools=parse_pools(pools, "NOETL_POOLS") if pools else None,
                         worker_labels=tuple(x for x in os.environ.get("NOETL_WORKER_LABELS", "").split(",")
                                             if x),
                         worker_capacity=json.loads(capacity) if capacity else None,
                         google_token_url=os.environ.get("NOETL_GOOGLE_TOKEN_URL") or None)
    async with Stack(config):
        ready = os.environ.get("NOETL_READY_FILE")
        if ready:
            Path(ready).write_text(str(os.getpid()))
        await stop.wait()


if __name__ == "__main__":
    eventloop.run(serve(sys.argv[1], int(sys.argv[2])))
