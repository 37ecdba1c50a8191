"""
Tests for L{twisted_proxy.app.status}: the C{--metrics} endpoint's pages,
served by the real site over an in-memory transport, and what the status
page shows (escaped, redacted).
"""

from __future__ import annotations

import gzip
from html.parser import HTMLParser
from typing import Any

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parseOpenMetrics,
)
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.app.metrics import (
    Health,
    Monitor,
    ProxyGauges,
    TransactionStats,
    buildRegistry,
)
from twisted_proxy.app.status import (
    configurationSummary,
    redactTarget,
    renderStatusPage,
    statusSite,
)
from twisted_proxy.app.tap import Options
from twisted_proxy.testing import Harness

HOSTILE_TARGET = 'http://evil.test/"><script>alert(1)</script><img src=x onerror=alert(2)>'


def transaction(**fields: Any) -> dict[str, Any]:
    """
    A record dict (as a worker sends it) with sensible defaults.
    """
    record = {
        "kind": "http",
        "method": "GET",
        "target": "http://a.test/",
        "status": 200,
        "clientHost": "127.0.0.1",
        "user": None,
        "proxyError": None,
        "aborted": False,
        "connectionReused": False,
        "bytesFromClient": 40,
        "bytesToClient": 100,
        "bytesFromUpstream": 90,
        "bytesToUpstream": 45,
        "cacheStatus": None,
        "durations": {
            "upstreamConnect": 2.0,
            "send": 0.1,
            "wait": 10.0,
            "receive": 1.0,
            "total": 13.1,
        },
    }
    record.update(fields)
    return record


class Fixture:
    """
    A monitor over a harness's factory, with a clock at a known time.
    """

    def __init__(self, *args: str) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(1_700_000_000)
        self.harness = Harness()
        self.stats = TransactionStats()
        self.health = Health()
        options = Options()
        options.parseOptions(
            ["--listen", "tcp:3128:interface=127.0.0.1", "--metrics", "9100", *args]
        )
        gauges = ProxyGauges(self.harness.factory, self.harness.pool).read
        self.monitor = Monitor(
            stats=self.stats,
            gauges=gauges,
            health=self.health,
            summary=lambda: configurationSummary(options, options["proxyConfig"]),
            registry=buildRegistry(self.stats, gauges),
            clock=self.clock,
            wallClock=self.clock.seconds,
            pseudonym="proxy.test:3128",
        )
        self.site = statusSite(self.monitor, self.clock)

    def add(self, **fields: Any) -> None:
        self.stats.addDict(transaction(**fields), self.clock.seconds())

    def get(self, path: bytes, *headers: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        """
        One request to the site over an in-memory transport.

        @return: status, headers (lower-case names), body.
        """
        proto = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(
            b"GET "
            + path
            + b" HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nConnection: close\r\n"
            + b"".join(h + b"\r\n" for h in headers)
            + b"\r\n"
        )
        head, _, body = transport.value().partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            name, _, v = line.partition(b":")
            fields[name.strip().lower()] = v.strip()
        if fields.get(b"transfer-encoding") == b"chunked":
            body = _unchunk(body)
        proto.connectionLost(None)
        return status, fields, body


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, data = data.partition(b"\r\n")
        n = int(size, 16)
        if not n:
            break
        out, data = out + data[:n], data[n + 2 :]
    return out


class Elements(HTMLParser):
    """
    The elements and text of a page, as a browser's parser sees them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: bytes) -> Elements:
    elements = Elements()
    elements.feed(page.decode("utf-8"))
    elements.close()
    return elements


class HealthzTests(SynchronousTestCase):
    def test_accepting(self) -> None:
        f = Fixture()
        status, headers, body = f.get(b"/healthz")
        self.assertEqual((status, body), (200, b"ok\n"))
        self.assertEqual(headers[b"content-type"], b"text/plain; charset=utf-8")
        self.assertEqual(headers[b"cache-control"], b"no-store")

    def test_draining(self) -> None:
        f = Fixture()
        f.health.drain()
        status, headers, body = f.get(b"/healthz")
        self.assertEqual((status, body), (503, b"draining\n"))


class MetricsPageTests(SynchronousTestCase):
    def test_text(self) -> None:
        f = Fixture()
        f.add(status=404)
        status, headers, body = f.get(b"/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(headers[b"content-type"], b"text/plain; version=0.0.4; charset=utf-8")
        families = {m.name: m for m in text_string_to_metric_families(body.decode())}
        [sample] = families["twisted_proxy_requests"].samples
        self.assertEqual(
            (sample.labels, sample.value), ({"method": "GET", "status_class": "4xx"}, 1.0)
        )

    def test_openMetricsGzip(self) -> None:
        """
        A scraper asking for OpenMetrics and gzip gets both.
        """
        f = Fixture()
        f.add()
        status, headers, body = f.get(
            b"/metrics",
            b"Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            b"Accept-Encoding: gzip",
        )
        self.assertEqual(status, 200)
        self.assertTrue(headers[b"content-type"].startswith(b"application/openmetrics-text"))
        self.assertEqual(headers[b"content-encoding"], b"gzip")
        text = gzip.decompress(body).decode("utf-8")
        self.assertTrue(text.endswith("# EOF\n"))
        names = {m.name for m in parseOpenMetrics(text)}
        self.assertIn("twisted_proxy_time_to_first_byte_seconds", names)

    def test_notFound(self) -> None:
        status, headers, body = Fixture().get(b"/nothing")
        self.assertEqual(status, 404)


class StatusPageTests(SynchronousTestCase):
    def test_served(self) -> None:
        """
        The page is HTML with a policy that allows no script, and refreshes
        itself.
        """
        f = Fixture()
        status, headers, body = f.get(b"/")
        self.assertEqual(status, 200)
        self.assertEqual(headers[b"content-type"], b"text/html; charset=utf-8")
        csp = headers[b"content-security-policy"]
        self.assertIn(b"default-src 'none'", csp)
        self.assertNotIn(b"script-src", csp)
        self.assertEqual(headers[b"x-content-type-options"], b"nosniff")
        self.assertIn(b'<meta http-equiv="refresh" content="5">', body)
        self.assertNotIn(b"<script", body)
        self.assertIn(b"No transaction yet.", body)

    def test_refreshParameter(self) -> None:
        f = Fixture()
        self.assertNotIn(b"http-equiv", f.get(b"/?refresh=0")[2])
        self.assertIn(b'content="30"', f.get(b"/?refresh=30")[2])
        self.assertIn(b'content="5"', f.get(b"/?refresh=soon")[2])

    def test_summary(self) -> None:
        """
        Uptime, version, state, counters and the configuration.
        """
        f = Fixture()
        f.clock.advance(3 * 3600 + 125)
        f.add()
        f.add(status=503, proxyError="connection_timeout", durations={"total": 10000.0})
        f.stats.addRefusal("deny-host *.blocked.test")
        page = f.get(b"/")[2].decode()
        text = " ".join(parse(page.encode()).text)
        self.assertIn("up 3 h 2 min", text)
        self.assertIn("Accepting", text)
        self.assertIn("0.1.0", text)
        self.assertIn("connection_timeout", text)
        self.assertIn("deny-host *.blocked.test", text)
        self.assertIn("tcp:3128:interface=127.0.0.1", text)
        self.assertIn("Last 2 transactions", text)
        f.health.drain()
        self.assertIn("Draining", " ".join(parse(f.get(b"/")[2]).text))

    def test_lastFifty(self) -> None:
        f = Fixture()
        for i in range(60):
            f.add(target="http://a.test/%d" % (i,))
        text = " ".join(parse(renderStatusPage(f.monitor)).text)
        self.assertIn("Last 50 transactions", text)
        self.assertIn("http://a.test/59", text)
        self.assertIn("http://a.test/10", text)
        self.assertNotIn("http://a.test/9 ", text + " ")

    def test_escaped(self) -> None:
        """
        What came from requests is text, never markup: the page has exactly
        the elements it would have with harmless values.
        """
        f = Fixture()
        f.add(
            target=HOSTILE_TARGET,
            user="<b>mallory</b>",
            clientHost="<i>10.0.0.1</i>",
            proxyError="<u>err</u>",
            method="<s>",
            kind="<x>",
            cacheStatus="<hit>",
        )
        f.stats.addRefusal("<em>rule</em>")
        hostile = parse(renderStatusPage(f.monitor))
        g = Fixture()
        g.add(
            target="http://evil.test/",
            user="mallory",
            clientHost="10.0.0.1",
            proxyError="err",
            method="GET",
            kind="other",
            cacheStatus="hit",
        )
        g.stats.addRefusal("rule")
        harmless = parse(renderStatusPage(g.monitor))
        self.assertEqual(hostile.tags, harmless.tags)
        self.assertNotIn("onerror", [name for name, _ in hostile.attributes])
        text = "".join(hostile.text)
        self.assertIn("<script>alert(1)</script>", text)
        self.assertIn("<b>mallory</b>", text)
        self.assertIn("<em>rule</em>", text)

    def test_controlCharacters(self) -> None:
        f = Fixture()
        f.add(target="http://a.test/\x1b[31mred\x00")
        page = renderStatusPage(f.monitor)
        self.assertNotIn(b"\x1b", page)
        self.assertNotIn(b"\x00", page)


class RedactionTests(SynchronousTestCase):
    def test_userinfo(self) -> None:
        self.assertEqual(redactTarget("http://alice:s3cret@a.test/x"), "http://<redacted>@a.test/x")
        self.assertEqual(redactTarget("ftp://token@a.test/"), "ftp://<redacted>@a.test/")
        self.assertEqual(redactTarget("http://a.test/x@y"), "http://a.test/x@y")
        self.assertEqual(redactTarget("a.test:443"), "a.test:443")

    def test_secretParameters(self) -> None:
        self.assertEqual(
            redactTarget("http://a.test/p?q=cats&password=hunter2&api_key=K1;access_token=T#x"),
            "http://a.test/p?q=cats&password=<redacted>&api_key=<redacted>"
            ";access_token=<redacted>#x",
        )
        self.assertEqual(
            redactTarget("http://a.test/?Session=abc&page=2"),
            "http://a.test/?Session=<redacted>&page=2",
        )

    def test_onThePage(self) -> None:
        f = Fixture()
        f.add(target="http://alice:s3cret@a.test/?token=abc123")
        page = renderStatusPage(f.monitor)
        self.assertNotIn(b"s3cret", page)
        self.assertNotIn(b"abc123", page)
        self.assertIn(b"http://&lt;redacted&gt;@a.test/?token=&lt;redacted&gt;", page)

    def test_cacheAndReverse(self) -> None:
        """
        The page says where the cache is and which origins a reverse proxy
        serves.
        """
        rows = dict(Fixture().monitor.summary())
        self.assertEqual(rows["Cache"], "in memory, 67108864 bytes (objects up to 8388608 bytes)")
        self.assertNotIn("Reverse proxy", rows)
        rows = dict(
            Fixture(
                "--cache-size",
                "0",
                "--reverse",
                "http://127.0.0.1:8000",
                "--reverse-host",
                "a.test=http://127.0.0.1:8001",
            ).monitor.summary()
        )
        self.assertEqual(rows["Cache"], "off")
        self.assertEqual(
            rows["Reverse proxy"],
            "a.test -> http://127.0.0.1:8001, others -> http://127.0.0.1:8000",
        )

    def test_configurationHasNoSecrets(self) -> None:
        """
        A parent proxy's credentials are not on the page.
        """
        f = Fixture("--upstream-proxy", "http://bob:pa55word@parent.test:3128")
        page = renderStatusPage(f.monitor)
        self.assertNotIn(b"pa55word", page)
        self.assertNotIn(b"bob", page)
        self.assertIn(b"parent proxy http://&lt;credentials&gt;@parent.test:3128", page)
