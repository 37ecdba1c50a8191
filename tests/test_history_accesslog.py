# -*- test-case-name: tests.test_history_accesslog -*-
"""
Tests for L{twisted_proxy.records.accesslog} (the access-log formats) and
the access-log observer.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from tests._records import (
    REQUEST_FIELDS,
    T0,
    FakeClocks,
    TempDirMixin,
    readLines,
    successfulRecord,
)
from twisted_proxy.records.accesslog import formatAccessLine
from twisted_proxy.records.emit import emitTransaction
from twisted_proxy.records.logfiles import accessLogObserver


class AccessLogTests(TempDirMixin, SynchronousTestCase):
    """
    Tests for L{formatAccessLine} and L{accessLogObserver}.
    """

    def test_squid(self) -> None:
        """
        Squid's native format: end time with milliseconds, elapsed, client,
        code/status, bytes, method, URL, user, hierarchy/peer, type.
        """
        record = successfulRecord(FakeClocks())
        record.finish()
        self.assertEqual(
            formatAccessLine(record.asDict(), "squid"),
            "1700000000.068     67 127.0.0.1 TCP_MISS/200 205 GET "
            "http://example.com/a?x=1 alice HIER_DIRECT/127.0.0.2 text/html",
        )

    def test_squidCodes(self) -> None:
        """
        Refusals, tunnels, cache hits and aborts get Squid's result codes.
        """
        clocks = FakeClocks()

        def line(**attributes: Any) -> str:
            record = clocks.record()
            clocks.advance(0.001)
            record.mark("requestHead")
            for name, value in attributes.items():
                setattr(record, name, value)
            record.finish()
            return formatAccessLine(record.asDict(), "squid").split()[3]

        self.assertEqual(line(kind="refused", status=407), "TCP_DENIED/407")
        self.assertEqual(line(kind="refused", status=400), "NONE_NONE/400")
        self.assertEqual(line(kind="tunnel", status=200), "TCP_TUNNEL/200")
        self.assertEqual(line(cacheStatus="hit", status=200), "TCP_HIT/200")
        self.assertEqual(line(cacheStatus="revalidated", status=200), "TCP_REFRESH_UNMODIFIED/200")
        self.assertEqual(line(status=200, aborted=True), "TCP_MISS_ABORTED/200")
        self.assertEqual(line(aborted=True), "TCP_MISS_ABORTED/000")

    def test_squidFieldsHaveNoSpaces(self) -> None:
        """
        A value with spaces cannot shift the fields: it is percent-encoded.
        """
        clocks = FakeClocks()
        record = clocks.record()
        record.user = "alice smith"
        record.target = "http://example.com/a b"
        record.method = "GET"
        record.finish()
        fields = formatAccessLine(record.asDict(), "squid").split(" ")
        fields = [field for field in fields if field]
        self.assertEqual(len(fields), 10)
        self.assertEqual(fields[6], "http://example.com/a%20b")
        self.assertEqual(fields[7], "alice%20smith")
        # A target's own escapes are logged as they came, not escaped again.
        record = clocks.record()
        record.target = "http://example.com/a%20b?q=%C3%A9"
        record.finish()
        self.assertEqual(
            formatAccessLine(record.asDict(), "squid").split()[6],
            "http://example.com/a%20b?q=%C3%A9",
        )
        self.assertEqual(fields[8], "HIER_NONE/-")
        self.assertEqual(fields[9], "-")

    def test_common(self) -> None:
        """
        Apache's common log format, time of the request head, in UTC.
        """
        record = successfulRecord(FakeClocks())
        record.finish()
        self.assertEqual(
            formatAccessLine(record.asDict(), "common"),
            "127.0.0.1 - alice [14/Nov/2023:22:13:20 +0000] "
            '"GET http://example.com/a?x=1 HTTP/1.1" 200 205',
        )

    def test_combined(self) -> None:
        """
        The combined format adds the referer and user agent, quoted with
        escapes.
        """
        record = successfulRecord(FakeClocks())
        record.requestHeaders = [*REQUEST_FIELDS, ("Referer", 'http://r.example/"x"\\')]
        record.finish()
        self.assertEqual(
            formatAccessLine(record.asDict(), "combined"),
            "127.0.0.1 - alice [14/Nov/2023:22:13:20 +0000] "
            '"GET http://example.com/a?x=1 HTTP/1.1" 200 205 '
            '"http://r.example/\\"x\\"\\\\" "curl/8.5"',
        )

    def test_commonWithoutRequest(self) -> None:
        """
        Nothing known but the connection: dashes.
        """
        record = FakeClocks().record()
        record.finish()
        self.assertEqual(
            formatAccessLine(record.asDict(), "combined"),
            '127.0.0.1 - - [14/Nov/2023:22:13:20 +0000] "-" - - "-" "-"',
        )

    def test_unknownFormat(self) -> None:
        """
        An unknown format name is a L{ValueError} naming the choices.
        """
        path = os.path.join(self.makeDir(), "access.log")
        error = self.assertRaises(ValueError, accessLogObserver, path, "apache")
        self.assertIn("squid, common, combined", str(error))

    def test_observer(self) -> None:
        """
        The observer writes one line per transaction event, ignores other
        events, and continues in a new file after C{reopen()}.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "access.log")
        observer = accessLogObserver(path, "common")
        self.addCleanup(observer.close)
        log = Logger(observer=observer)
        emitTransaction(log, successfulRecord(FakeClocks()))
        log.info("not a transaction")
        os.rename(path, path + ".1")
        observer.reopen()
        emitTransaction(log, successfulRecord(FakeClocks(wall=T0 + 86400)))
        [first] = readLines(path + ".1")
        [second] = readLines(path)
        self.assertIn("[14/Nov/2023:22:13:20 +0000]", first)
        self.assertIn("[15/Nov/2023:22:13:20 +0000]", second)

    def test_escapingAllControls(self) -> None:
        """
        Every control character and space in a Squid token is
        percent-encoded (a C{%} stays, as Squid leaves a URL's own escapes
        alone), and in an Apache quoted field every control
        character is C{\\xhh} and C{"} and C{\\} are escaped; nothing else
        changes (non-ASCII text stays as it is).
        """
        clocks = FakeClocks()
        record = clocks.record()
        clocks.advance(0.001)
        record.mark("requestHead")
        everything = "".join(chr(c) for c in range(0x80)) + "caf\xe9"
        record.method = "GET"
        record.target = everything
        record.requestHeaders = [("User-Agent", everything)]
        record.finish()
        data = record.asDict()
        squidTarget = formatAccessLine(data, "squid").split()[6]
        expected = (
            "".join(f"%{c:02X}" if c <= 0x20 or c == 0x7F else chr(c) for c in range(0x80))
            + "caf\xe9"
        )
        self.assertEqual(squidTarget, expected)
        combined = formatAccessLine(data, "combined")
        quoted = (
            "".join(
                f"\\x{c:02x}"
                if c < 0x20 or c == 0x7F
                else "\\" + chr(c)
                if chr(c) in '"\\'
                else chr(c)
                for c in range(0x80)
            )
            + "caf\xe9"
        )
        self.assertTrue(combined.endswith(' "' + quoted + '"'), combined)
        self.assertEqual(combined.count("\n"), 0)
