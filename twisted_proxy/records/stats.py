# -*- test-case-name: tests.test_history_stats -*-
"""
Statistics over timings: the project's one L{percentile}.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction
from typing import TypeVar

__all__ = ["percentile"]

_Number = TypeVar("_Number", int, float)


def percentile(values: Iterable[_Number], percent: float) -> _Number | None:
    """
    The C{percent}th percentile of C{values} by the B{nearest-rank} method:
    the smallest value such that at least C{percent} per cent of the values
    are less than or equal to it, that is the value of rank
    M{ceil(percent / 100 * n)} (counting from 1) in ascending order, and
    the smallest value for C{percent} 0.

    Nearest rank, not linear interpolation between ranks, because a
    percentile of latencies should be a latency that happened: the p99 of a
    run is one of its requests, and the p100 is its maximum.  (Spreadsheets
    and numpy's default interpolate; they agree with this only where
    M{percent / 100 * n} is a whole number and the two neighbours are
    equal.)

    The rank is computed exactly: C{percent} is taken as the decimal number
    it prints as (C{99.9} is 999/1000 of 100), so that no float rounding
    moves a value across a rank (M{0.07 * 100} is 7.000000000000001 in
    floating point, and a float rank would be 8).

    @param values: the sample, in any order.
    @param percent: from 0 to 100.
    @return: a value of C{values}, or L{None} if there are none.
    @raise ValueError: if C{percent} is outside 0..100 or not a number.
    """
    if (
        isinstance(percent, bool)
        or not isinstance(percent, (int, float))
        or not (math.isfinite(percent) and 0 <= percent <= 100)
    ):
        raise ValueError(f"percentile must be a number from 0 to 100, not {percent!r}")
    exact = Fraction(percent) if isinstance(percent, int) else Fraction(repr(percent))
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(exact * len(ordered) / 100))
    return ordered[rank - 1]
