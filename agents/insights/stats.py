"""Robust statistics for the insights: percentiles, the median and its absolute deviation. Pure."""

from __future__ import annotations

import math
from collections.abc import Sequence

MAD_SCALE = 1.4826  # the MAD of a normal distribution times this is its standard deviation


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between the closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)


def mad(values: Sequence[float]) -> float | None:
    """The median absolute deviation from the median."""
    centre = median(values)
    if centre is None:
        return None
    return median([abs(v - centre) for v in values])


def robust_z(value: float, history: Sequence[float], *, floor: float = 0.0) -> float | None:
    """How many (scaled) MADs `value` lies above the median of `history`; `floor` is the least spread
    assumed (a history of identical durations would make any change infinite). None for no history."""
    centre, spread = median(history), mad(history)
    if centre is None or spread is None:
        return None
    scale = max(spread * MAD_SCALE, floor)
    if scale <= 0:
        return math.inf if value > centre else 0.0
    return (value - centre) / scale
