# -*- test-case-name: tests.test_history_stats -*-
"""
Tests for L{twisted_proxy.records.stats}.
"""

from __future__ import annotations

import math
import random

from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.records.stats import percentile


class PercentileTests(SynchronousTestCase):
    """
    L{percentile} is the nearest-rank percentile.
    """

    def test_nearestRank(self) -> None:
        """
        The value at rank ceil(p/100 * n) in ascending order, whatever the
        order given.
        """
        values = [50.0, 15.0, 35.0, 20.0, 40.0]
        self.assertEqual(percentile(values, 5), 15.0)
        self.assertEqual(percentile(values, 20), 15.0)
        self.assertEqual(percentile(values, 30), 20.0)
        self.assertEqual(percentile(values, 40), 20.0)
        self.assertEqual(percentile(values, 50), 35.0)
        self.assertEqual(percentile(values, 100), 50.0)
        self.assertEqual(percentile([3.0, 1.0, 2.0], 1), 1.0)

    def test_observedValue(self) -> None:
        """
        The result is always one of the values (never interpolated), and
        grows with C{percent}.
        """
        generator = random.Random(7)
        for n in (1, 2, 3, 10, 99, 1000):
            values = [generator.expovariate(1.0) for _ in range(n)]
            previous = -math.inf
            for percent in (0, 0.1, 1, 25, 50, 90, 99, 99.9, 100):
                result = percentile(values, percent)
                assert result is not None
                self.assertIn(result, values)
                self.assertGreaterEqual(result, previous)
                previous = result
            self.assertEqual(percentile(values, 0), min(values))
            self.assertEqual(percentile(values, 100), max(values))

    def test_definition(self) -> None:
        """
        At least C{percent} per cent of the values are less than or equal
        to the result, and it is the smallest value for which that holds.
        """
        generator = random.Random(3)
        for n in (1, 7, 100, 101):
            values = sorted(generator.randrange(1000) for _ in range(n))
            for percent in (1, 7, 33.3, 50, 66.7, 95, 99):
                result = percentile(values, percent)
                assert result is not None
                atOrBelow = sum(1 for v in values if v <= result)
                self.assertGreaterEqual(atOrBelow * 100, percent * n, (n, percent))
                smaller = [v for v in values if v < result]
                if smaller:
                    below = sum(1 for v in values if v <= smaller[-1])
                    self.assertLess(below * 100, percent * n, (n, percent))

    def test_exactRank(self) -> None:
        """
        The rank is computed exactly: 7% of 100 values is the 7th value
        (in floating point 0.07 * 100 is 7.000000000000001, whose ceiling
        would be 8), and 99.9% of 1000 the 999th.
        """
        values = list(range(1, 101))
        self.assertEqual(percentile(values, 7), 7)
        self.assertEqual(percentile(values, 7.0), 7)
        self.assertEqual(percentile(values, 57), 57)
        self.assertEqual(percentile(list(range(1, 1001)), 99.9), 999)

    def test_empty(self) -> None:
        """
        No values: L{None}, for a summary to show as "-".
        """
        self.assertIsNone(percentile([], 50))
        self.assertIsNone(percentile(iter(()), 99))

    def test_invalidPercent(self) -> None:
        """
        A percent outside 0..100, or not a number, is a L{ValueError}.
        """
        for percent in (-1, 100.5, math.nan, math.inf, True, "50"):
            self.assertRaises(ValueError, percentile, [1.0], percent)
