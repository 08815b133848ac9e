"""Does appending to the event log stay as cheap when the log is large? Append latency at growing sizes.

One execution per size step receives batches of 3 events (a step's scheduled/started/succeeded); the
log is filled between steps with 500-event batches. The ratio of each size's median against the
empty log's, measured in the same run, is the figure: it should stay near 1 (an index lookup per key),
never grow with the log. No ANALYZE is run, as on a fresh deployment before autovacuum catches up.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from control_plane.store import open_store
from control_plane.store.secret_key import load_secret_key
from engine.protocol.events import Event
from engine.runtime.embedded import start_postgres

TARGET_RATIO_MAX = 2.0


def _event(execution_id: str) -> Event:
    key = uuid.uuid4().hex
    return Event(event_id=key, idempotency_key=key, execution_id=execution_id, type="step.started", step="s")


async def measure(*, sizes: tuple[int, ...] = (0, 20_000, 60_000),
                  samples: int = 200) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="noetl-bench-log-"))
    postgres = start_postgres(home)  # its own server: the benchmark never writes into a user's log
    try:
        store = await open_store(postgres.dsn, load_secret_key(home, None), min_size=1, max_size=1)
        filler = uuid.uuid4().hex
        await store.events.create_execution(filler, playbook_path="bench/log", playbook_version=1,
                                            playbook_text="", payload={})
        for _ in range(50):  # warm up: connections, prepared statements, cached plans
            await store.events.append([_event(filler) for _ in range(3)])
        stored = 150
        medians: dict[int, float] = {}
        for size in sizes:
            while stored < size:
                await store.events.append([_event(filler) for _ in range(500)])
                stored += 500
            execution = uuid.uuid4().hex
            await store.events.create_execution(execution, playbook_path="bench/log", playbook_version=1,
                                                playbook_text="", payload={})
            times = []
            for _ in range(samples):
                started = time.perf_counter()
                await store.events.append([_event(execution) for _ in range(3)])
                times.append(time.perf_counter() - started)
            stored += 3 * samples
            medians[size] = statistics.median(times) * 1000
        await store.close()
    finally:
        postgres.stop()
        shutil.rmtree(home, ignore_errors=True)
    base = medians[sizes[0]]
    ratios = {str(size): round(ms / base, 3) for size, ms in medians.items()}
    worst = max(ratios.values())
    return {"append_ms_by_log_size": {str(k): round(v, 4) for k, v in medians.items()},
            "ratio_to_empty_log": ratios, "worst_ratio": worst,
            "target": {"worst_ratio_max": TARGET_RATIO_MAX}, "met": worst <= TARGET_RATIO_MAX,
            "samples_per_size": samples}
