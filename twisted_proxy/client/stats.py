# -*- test-case-name: tests.test_client_report -*-
"""
The statistics of repeated runs (C{--count N}).

The contract, as the help text states it to users: the median is the
middle value (the mean of the two middle ones for an even count), and
percentiles are by nearest rank over a non-empty sample.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = ["nearestRankPercentile", "summarize"]


def nearestRankPercentile(values: Sequence[float], percent: float) -> float:
    """
    The C{percent}th percentile of a non-empty sample by the nearest-rank
    method: the smallest value such that at least C{percent}% of the values
    are less than or equal to it, i.e. the M{ceil(percent/100 * n)}th
    smallest, counting from 1 (the smallest for C{percent} 0).  Always one
    of the values, never an interpolation.

    @param percent: from 0 to 100; a float (C{99.9} works).
    @raise ValueError: if C{values} is empty (there is no such value).
    """
    if not values:
        raise ValueError("the percentile of no values is undefined")
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(values: Sequence[float]) -> dict[str, float]:
    """
    C{min}, C{mean}, C{median} (the middle value, or the mean of the two
    middle values), C{p90} (nearest rank) and C{max} of a non-empty sample.
    """
    return {
        "min": min(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "p90": nearestRankPercentile(values, 90),
        "max": max(values),
    }
