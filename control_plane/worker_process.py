"""A worker pool in its own process (entry point): `python -m control_plane.worker_process POOL N`.

The stack starts these when `worker_processes` is set, so steps run beside the orchestrator on
another core. Settings come from the environment the stack passes (an entry point may read it).
The process ends with the one that started it (NOETL_PARENT_PID): when that one dies, even by kill -9,
the worker stops taking work, drains for a few seconds and exits with code 1, so no worker is left
behind connected to nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from control_plane.stack import Stack, StackConfig
from engine.plan.pools import parse_pools
from engine.runtime import eventloop
from engine.runtime.spans import otel_settings
from engine.tools.lifeline import watch_parent

MODULE = "control_plane.worker_process"  # how `noetl dev down` recognises leftover workers
ORPHAN_EXIT_S = 10.0  # an orphaned worker's drain and close may take this long; then it exits anyway
EXIT_ORPHANED = 1


def _orphaned(parent: int, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """On the watch thread: stop the worker, and end the process if stopping takes too long."""
    print(f"the process that started this worker (pid {parent}) is gone; stopping", file=sys.stderr,
          flush=True)
    loop.call_soon_threadsafe(stop.set)
    time.sleep(ORPHAN_EXIT_S)  # a daemon thread: the process normally exits before this ends
    print(f"the worker did not stop within {ORPHAN_EXIT_S:g} s; exiting", file=sys.stderr, flush=True)
    os._exit(EXIT_ORPHANED)


async def serve(pool: str, concurrency: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = int(os.environ.get("NOETL_PARENT_PID") or 0)
    orphaned: list[bool] = []

    def on_orphaned() -> None:
        orphaned.append(True)
        _orphaned(parent, loop, stop)

    if parent:
        watch_parent(parent, on_orphaned)
    pools = os.environ.get("NOETL_POOLS")
    capacity = os.environ.get("NOETL_WORKER_CAPACITY")
    replicas = os.environ.get("NOETL_NATS_REPLICAS")  # set by the parent when it was given
    config = StackConfig(home=Path(os.environ["NOETL_HOME"]), nats_url=os.environ["NOETL_NATS_URL"],
                         nats_replicas=int(replicas) if replicas else None,
                         pg_dsn=os.environ["NOETL_PG_DSN"], secret_key=os.environ.get("NOETL_SECRET_KEY"),
                         prefix=os.environ.get("NOETL_BUS_PREFIX", "noetl"), orchestrator=False,
                         workers={pool: concurrency},
                         ack_wait_s=float(os.environ.get("NOETL_ACK_WAIT_S", "30")),
                         pools=parse_pools(pools, "NOETL_POOLS") if pools else None,
                         worker_labels=tuple(x for x in os.environ.get("NOETL_WORKER_LABELS", "").split(",")
                                             if x),
                         worker_capacity=json.loads(capacity) if capacity else None,
                         google_token_url=os.environ.get("NOETL_GOOGLE_TOKEN_URL") or None,
                         otel=otel_settings())
    async with Stack(config):
        ready = os.environ.get("NOETL_READY_FILE")
        if ready:
            Path(ready).write_text(str(os.getpid()))
        await stop.wait()
    return EXIT_ORPHANED if orphaned else 0


if __name__ == "__main__":
    sys.exit(eventloop.run(serve(sys.argv[1], int(sys.argv[2]))))
