"""The collector and a long-running engine process: what was built at start-up is left alone."""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

# the youngest generation is collected after this many allocations (Python's default: 700): a busy loop
# allocates a few hundred objects per item, and collecting every few items cost the orchestrator about
# a seventh of its CPU per loop item (docs/performance.md "Session 11"); the garbage of a cycle waits a
# little longer, the memory it holds meanwhile is a few megabytes at most
GEN0_THRESHOLD = 20_000


def freeze_startup_heap() -> None:
    """Move every object alive now (imported modules, compiled nets, clients) to the permanent
    generation, once a process has started its orchestrator or workers. Full collections walk the
    whole heap and find nothing to free there: measured 60-170 ms each in the orchestrator and the
    worker pool, every few hundred milliseconds of a busy loop, during which no step moved. The
    youngest generation is then collected less often (GEN0_THRESHOLD)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])
    log.debug("froze %d start-up objects out of the collector's way", gc.get_freeze_count())
