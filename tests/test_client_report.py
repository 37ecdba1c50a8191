"""
Tests for L{twisted_proxy.client.stats} and the pieces of
L{twisted_proxy.client.report}: statistics, heads on one line, body
previews that cannot drive a terminal.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests._client import WALL_TIME
from twisted_proxy.client.errors import proxyErrorOf
from twisted_proxy.client.report import bodyPreview, clockTime, escapeHead
from twisted_proxy.client.stats import nearestRankPercentile, summarize
from twisted_proxy.http.framing import ResponseHead


class StatisticsTests(SynchronousTestCase):
    def test_nearestRank(self) -> None:
        values = list(range(1, 11))
        self.assertEqual(nearestRankPercentile(values, 90), 9)
        self.assertEqual(nearestRankPercentile(list(reversed(values)), 90), 9)
        self.assertEqual(nearestRankPercentile(list(range(1, 21)), 90), 18)
        self.assertEqual(nearestRankPercentile([7.5], 90), 7.5)
        self.assertEqual(nearestRankPercentile([3, 1, 2], 90), 3)
        self.assertEqual(nearestRankPercentile([3, 1, 2], 0), 1)
        # Nearest rank rounds the rank up: ceil(0.25 * 10) = 3, ceil(0.9 * 5) = 5.
        self.assertEqual(nearestRankPercentile(values, 25), 3)
        self.assertEqual(nearestRankPercentile([1, 2, 3, 4, 5], 90), 5)

    def test_nearestRankContract(self) -> None:
        """
        Always one of the values (never interpolated), and no value for no
        values.
        """
        self.assertEqual(nearestRankPercentile([1.0, 2.0], 50), 1.0)
        self.assertEqual(nearestRankPercentile([1.0, 2.0], 50.1), 2.0)
        self.assertEqual(nearestRankPercentile([1.0, 2.0, 3.0], 99.9), 3.0)
        with self.assertRaises(ValueError):
            nearestRankPercentile([], 50)

    def test_summarize(self) -> None:
        self.assertEqual(
            summarize([4.0, 1.0, 3.0, 2.0]),
            {"min": 1.0, "mean": 2.5, "median": 2.5, "p90": 4.0, "max": 4.0},
        )
        self.assertEqual(summarize([5.0])["median"], 5.0)


def head(headers: list[tuple[bytes, bytes]], status: int = 200) -> ResponseHead:
    return ResponseHead(status, b"OK", b"1.1", headers)


class OutputTests(SynchronousTestCase):
    def test_escapeHead(self) -> None:
        self.assertEqual(
            escapeHead(b"GET / HTTP/1.1\r\nHost: 93.184.216.34\r\n\r\n"),
            "GET / HTTP/1.1\\r\\nHost: 93.184.216.34\\r\\n\\r\\n",
        )
        self.assertEqual(escapeHead(b"X: \x1b[31m\r\n"), "X: \\x1b[31m\\r\\n")

    def test_clockTime(self) -> None:
        self.assertEqual(clockTime(WALL_TIME), "12:34:56.123")

    def test_previewText(self) -> None:
        body = b"".join(b"line %d\n" % i for i in range(1, 31))
        lines = bodyPreview(head([(b"Content-Type", b"text/plain")]), body, len(body))
        self.assertEqual(lines[:2], ["  line 1", "  line 2"])
        self.assertEqual(len(lines), 11)
        self.assertEqual(
            lines[-1],
            "  [... {} bytes in all; --show-body prints the whole body]".format(len(body)),
        )

    def test_previewShort(self) -> None:
        self.assertEqual(
            bodyPreview(head([(b"Content-Type", b"application/json")]), b'{"a": 1}', 8),
            ['  {"a": 1}'],
        )
        self.assertEqual(bodyPreview(head([]), b"", 0), [])

    def test_previewBinary(self) -> None:
        self.assertEqual(
            bodyPreview(head([(b"Content-Type", b"image/png")]), b"\x89PNG", 4000),
            ["[4000 bytes of image/png: not shown; --output FILE saves the body]"],
        )
        self.assertEqual(
            bodyPreview(
                head([(b"Content-Type", b"text/html"), (b"Content-Encoding", b"gzip")]),
                b"\x1f\x8b",
                20,
            ),
            ["[20 bytes of text/html, gzip-encoded: not shown; --output FILE saves the body]"],
        )
        self.assertEqual(
            bodyPreview(head([]), b"\xff\xfe\x00", 3),
            ["[3 bytes of unknown type: not shown; --output FILE saves the body]"],
        )

    def test_previewControlCharacters(self) -> None:
        """
        A server cannot drive the terminal through the preview.
        """
        self.assertEqual(
            bodyPreview(
                head([(b"Content-Type", b"text/plain; charset=latin-1")]),
                b"a\x1b[2Jb\xe9",
                7,
            ),
            ["  a?[2Jb\xe9"],
        )

    def test_proxyError(self) -> None:
        self.assertEqual(
            proxyErrorOf('p:8080; error=dns_error; details="no such host"'), "dns_error"
        )
        self.assertIsNone(proxyErrorOf("p:8080; received-status=200"))
        self.assertIsNone(proxyErrorOf('p:8080; details="a; error=x"'))
        self.assertEqual(proxyErrorOf("a, b; error=connection_refused"), "connection_refused")
        self.assertIsNone(proxyErrorOf(None))
