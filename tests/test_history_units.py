# -*- test-case-name: tests.test_history_units -*-
"""
Tests for L{twisted_proxy.records.units}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.records.units import parseSize


class ParseSizeTests(SynchronousTestCase):
    """
    Tests for L{parseSize}.
    """

    def test_sizes(self) -> None:
        """
        Plain bytes and binary multiples, any case, optional B or iB.
        """
        for text, expected in [
            ("10M", 10485760),
            ("512k", 524288),
            ("512K", 524288),
            ("1G", 1073741824),
            ("2T", 2 << 40),
            ("1048576", 1048576),
            ("0", 0),
            ("1.5G", 1610612736),
            ("10MB", 10485760),
            ("10MiB", 10485760),
            ("100b", 100),
            (" 3 k ", 3072),
            ("0.1k", 102),
            ("0.5", 0),
            ("1.25M", 1310720),
        ]:
            self.assertEqual(parseSize(text), expected, text)

    def test_invalid(self) -> None:
        """
        Anything else is a L{ValueError} that says what is expected.
        """
        for text in ["", "M", "-1", "1e3", "1_000", "10X", "1.", "ten", "10 MB B"]:
            error = self.assertRaises(ValueError, parseSize, text)
            self.assertIn(repr(text), str(error))
            self.assertIn("e.g. 10M", str(error))
