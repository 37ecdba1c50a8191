"""
The cache as a step of the exchange (L{twisted_proxy.proxy.exchange}):
hits served without an upstream connection, validation, collapsed
forwarding, stale responses, invalidation, and reverse-proxy mode.  The
cache's own rules are tested section by section in C{test_cache_*.py};
these tests check that the exchange follows the protocol it documents.
"""

from __future__ import annotations

import shutil
import tempfile

from twisted.internet import error as ierror, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ProxyAgent, readBody
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests._loopback import listenLocal, portNumber
from twisted_proxy.app.tap import Options, makeService
from twisted_proxy.proxy.config import ReverseOrigin
from twisted_proxy.testing import Harness, logEvents

GET = b"GET http://a.test/page HTTP/1.1\r\nHost: a.test\r\n\r\n"
CACHEABLE = (
    b'HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: "v1"\r\n'
    b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Length: 5\r\n\r\nhello"
)


def headAndBody(data: bytes) -> tuple[list[bytes], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


def field(lines: list[bytes], name: bytes) -> bytes | None:
    for line in lines[1:]:
        n, _, v = line.partition(b":")
        if n.strip().lower() == name:
            return v.strip()
    return None


class CacheHarness(Harness):
    """
    A harness with a cache, and no pooled upstream connections: every
    request that goes upstream is a new connection attempt.
    """

    def __init__(self, **settings) -> None:
        settings.setdefault("poolMinIdlePerHost", 0)
        super().__init__(cache=True, transactionDetail=True, **settings)

    def fetch(self, request: bytes = GET, answer: bytes | None = CACHEABLE) -> tuple[bytes, int]:
        """
        Send C{request} on a new client connection; if it goes upstream,
        answer it with C{answer}.

        @return: what the client received, and how many connection
            attempts it made.
        """
        proto, client = self.client()
        before = self.pool.opened
        proto.dataReceived(request)
        if self.attempts and answer is not None:
            up, upTransport = self.connect()
            self.lastUpstream = upTransport
            up.dataReceived(answer)
        return client.value(), self.pool.opened - before


class HitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events = logEvents(self)

    def records(self) -> list[dict]:
        return [e["transaction"] for e in self.events if "transaction" in e]

    def test_secondRequestIsAHit(self) -> None:
        """
        A fresh stored response answers the next request without any
        upstream connection, with C{Age}, C{Cache-Status} and our C{Via};
        the records say miss, then hit.
        """
        h = CacheHarness()
        first, opened = h.fetch()
        self.assertEqual(opened, 1)
        lines, body = headAndBody(first)
        self.assertEqual(body, b"hello")
        self.assertEqual(
            field(lines, b"cache-status"), b"test-proxy; fwd=uri-miss; fwd-status=200; stored"
        )
        h.clock.advance(7)
        second, opened = h.fetch(answer=None)
        self.assertEqual(opened, 0)
        self.assertEqual(h.attempts, [])
        lines, body = headAndBody(second)
        self.assertEqual(lines[0], b"HTTP/1.1 200 OK")
        self.assertEqual(body, b"hello")
        self.assertEqual(field(lines, b"age"), b"7")
        self.assertTrue((field(lines, b"cache-status") or b"").startswith(b"test-proxy; hit"))
        self.assertEqual(field(lines, b"via"), b"1.1 test-proxy")
        self.assertEqual([r["cacheStatus"] for r in self.records()], ["miss", "hit"])
        self.assertTrue(
            any(
                "Response served from the cache" in (e.get("log_format") or "") for e in self.events
            )
        )

    def test_originFormHitsAbsoluteFormEntry(self) -> None:
        """
        The same URL in origin-form with Host is the same entry.
        """
        h = CacheHarness()
        h.fetch()
        second, opened = h.fetch(b"GET /page HTTP/1.1\r\nHost: a.test\r\n\r\n", answer=None)
        self.assertEqual(opened, 0)
        self.assertTrue(second.endswith(b"hello"))

    def test_headFromStoredGet(self) -> None:
        h = CacheHarness()
        h.fetch()
        second, opened = h.fetch(b"HEAD http://a.test/page HTTP/1.1\r\nHost: a.test\r\n\r\n", None)
        self.assertEqual(opened, 0)
        lines, body = headAndBody(second)
        self.assertEqual(body, b"")
        self.assertEqual(field(lines, b"content-length"), b"5")

    def test_noStoreNotStored(self) -> None:
        h = CacheHarness()
        h.fetch(answer=b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 2\r\n\r\nhi")
        second, opened = h.fetch()
        self.assertEqual(opened, 1)

    def test_keepAliveAfterHit(self) -> None:
        """
        A hit keeps the client connection: the next request on it is read.
        """
        h = CacheHarness()
        h.fetch()
        proto, client = h.client()
        proto.dataReceived(GET + GET)
        self.assertEqual(client.value().count(b"HTTP/1.1 200 OK"), 2)
        self.assertFalse(client.disconnecting)

    def test_onlyIfCachedMiss(self) -> None:
        h = CacheHarness()
        data, opened = h.fetch(
            b"GET http://a.test/x HTTP/1.1\r\n"
            b"Host: a.test\r\nCache-Control: only-if-cached\r\n\r\n",
            None,
        )
        self.assertEqual(opened, 0)
        self.assertTrue(data.startswith(b"HTTP/1.1 504 "), data)

    def test_abortedBodyNotStored(self) -> None:
        """
        An upstream that dies mid-body stores nothing (and the client
        connection is aborted, as always).
        """
        h = CacheHarness()
        proto, client = h.client()
        proto.dataReceived(GET)
        up, upTransport = h.connect()
        up.dataReceived(CACHEABLE[:-2])
        up.connectionLost(Failure(ierror.ConnectionLost()))
        self.assertTrue(client.disconnected)
        second, opened = h.fetch()
        self.assertEqual(opened, 1)

    def test_bodyStreamedWithBackpressure(self) -> None:
        """
        A stored body is the client transport's producer: when the
        transport's buffer fills it pauses, and nothing more is written
        until it resumes.
        """
        h = CacheHarness()
        big = b"x" * (1 << 20)
        h.fetch(
            answer=b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: %d\r\n\r\n%s"
            % (len(big), big)
        )

        class Full(StringTransport):
            def write(self, data: bytes) -> None:
                super().write(data)
                if len(self.value()) > 100000 and self.producer is not None:
                    self.producer.pauseProducing()

        proto = h.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50001))
        client = Full(peerAddress=IPv4Address("TCP", "127.0.0.1", 50001))
        proto.makeConnection(client)
        proto.dataReceived(GET)
        sent = len(client.value())
        self.assertLess(sent, len(big))
        self.assertIsNotNone(client.producer)
        client.clear()
        while client.producer is not None:
            client.clear()
            client.producer.resumeProducing()
            sent += len(client.value())
        self.assertGreater(sent, len(big))


class ValidationTests(SynchronousTestCase):
    def test_staleRevalidated304(self) -> None:
        """
        A stale entry goes upstream with If-None-Match; a 304 serves the
        stored body and the upstream connection returns to the pool.
        """
        h = CacheHarness(poolMinIdlePerHost=4)
        h.fetch()
        h.clock.advance(120)
        proto, client = h.client()
        proto.dataReceived(GET)
        up, upTransport = h.connect()
        lines, _ = headAndBody(upTransport.value())
        self.assertEqual(field(lines, b"if-none-match"), b'"v1"')
        up.dataReceived(
            b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nCache-Control: max-age=60\r\n\r\n'
        )
        lines, body = headAndBody(client.value())
        self.assertEqual(lines[0], b"HTTP/1.1 200 OK")
        self.assertEqual(body, b"hello")
        self.assertIn(b"fwd=stale; fwd-status=304", field(lines, b"cache-status"))
        self.assertEqual(h.pool.idleCount(), 1)
        self.assertFalse(upTransport.disconnecting)

    def test_staleReplaced(self) -> None:
        h = CacheHarness()
        h.fetch()
        h.clock.advance(120)
        data, opened = h.fetch(
            answer=b'HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: "v2"\r\n'
            b"Content-Length: 3\r\n\r\nnew"
        )
        self.assertTrue(data.endswith(b"new"))
        third, opened = h.fetch(answer=None)
        self.assertEqual(opened, 0)
        self.assertTrue(third.endswith(b"new"))

    def test_clientConditionalAnswered304(self) -> None:
        h = CacheHarness()
        h.fetch()
        data, opened = h.fetch(
            b'GET http://a.test/page HTTP/1.1\r\nHost: a.test\r\nIf-None-Match: "v1"\r\n\r\n', None
        )
        self.assertEqual(opened, 0)
        self.assertTrue(data.startswith(b"HTTP/1.1 304 "), data)

    def test_unsafeMethodInvalidates(self) -> None:
        h = CacheHarness()
        h.fetch()
        h.fetch(
            b"POST http://a.test/page HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        )
        again, opened = h.fetch()
        self.assertEqual(opened, 1)


class StaleTests(SynchronousTestCase):
    def test_staleIfErrorOnConnectFailure(self) -> None:
        h = CacheHarness()
        h.fetch(
            answer=b"HTTP/1.1 200 OK\r\nCache-Control: max-age=1, stale-if-error=600\r\n"
            b"Content-Length: 5\r\n\r\nhello"
        )
        h.clock.advance(30)
        proto, client = h.client()
        proto.dataReceived(GET)
        h.fail(ierror.ConnectionRefusedError())
        lines, body = headAndBody(client.value())
        self.assertEqual(lines[0], b"HTTP/1.1 200 OK")
        self.assertEqual(body, b"hello")
        self.assertIn(b"stale-if-error", field(lines, b"cache-status"))

    def test_mustRevalidateGives504(self) -> None:
        h = CacheHarness()
        h.fetch(
            answer=b"HTTP/1.1 200 OK\r\nCache-Control: max-age=1, must-revalidate\r\n"
            b'ETag: "a"\r\nContent-Length: 5\r\n\r\nhello'
        )
        h.clock.advance(30)
        proto, client = h.client()
        proto.dataReceived(GET)
        h.fail(ierror.ConnectionRefusedError())
        self.assertTrue(client.value().startswith(b"HTTP/1.1 504 "), client.value())

    def test_staleWhileRevalidate(self) -> None:
        """
        A stale response within stale-while-revalidate is served at once,
        and revalidated in the background on an upstream connection of its
        own; the next request gets the refreshed response.
        """
        h = CacheHarness()
        h.fetch(
            answer=b"HTTP/1.1 200 OK\r\nCache-Control: max-age=1, stale-while-revalidate=600\r\n"
            b'ETag: "a"\r\nContent-Length: 5\r\n\r\nhello'
        )
        h.clock.advance(30)
        proto, client = h.client()
        proto.dataReceived(GET)
        self.assertTrue(client.value().endswith(b"hello"))
        [(host, port, _, _)] = h.attempts
        up, upTransport = h.connect()
        lines, _ = headAndBody(upTransport.value())
        self.assertEqual(field(lines, b"if-none-match"), b'"a"')
        up.dataReceived(
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n"
            b'ETag: "b"\r\nContent-Length: 5\r\n\r\nworld'
        )
        again, opened = h.fetch(answer=None)
        self.assertEqual(opened, 0)
        self.assertTrue(again.endswith(b"world"))


class CollapsedForwardingTests(SynchronousTestCase):
    def test_concurrentMissesShareOneRequest(self) -> None:
        h = CacheHarness()
        p1, c1 = h.client()
        p1.dataReceived(GET)
        p2, c2 = h.client()
        p2.dataReceived(GET)
        self.assertEqual(len(h.attempts), 1)
        up, upTransport = h.connect()
        up.dataReceived(CACHEABLE)
        self.assertTrue(c1.value().endswith(b"hello"))
        self.assertEqual(c2.value(), b"")
        h.clock.advance(0)
        self.assertTrue(c2.value().endswith(b"hello"))
        self.assertIn(b"collapsed", c2.value())
        self.assertEqual(h.attempts, [])

    def test_waitIsBounded(self) -> None:
        h = CacheHarness(cacheCollapseTimeout=5)
        p1, c1 = h.client()
        p1.dataReceived(GET)
        p2, c2 = h.client()
        p2.dataReceived(GET)
        self.assertEqual(len(h.attempts), 1)
        h.clock.advance(5)
        self.assertEqual(len(h.attempts), 2)

    def test_waiterLeaves(self) -> None:
        """
        A waiting client that goes away is forgotten; the leader carries on.
        """
        h = CacheHarness()
        p1, c1 = h.client()
        p1.dataReceived(GET)
        p2, c2 = h.client()
        p2.dataReceived(GET)
        p2.connectionLost(Failure(ierror.ConnectionDone()))
        up, upTransport = h.connect()
        up.dataReceived(CACHEABLE)
        h.clock.advance(1)
        self.assertTrue(c1.value().endswith(b"hello"))


class ReverseProxyTests(SynchronousTestCase):
    ORIGIN = ReverseOrigin.fromURL("http://127.0.0.1:9000")

    def test_originFormToTheOrigin(self) -> None:
        """
        An origin-form request goes to the configured origin; the client's
        Host is kept (it names the site).
        """
        h = Harness(reverse=self.ORIGIN)
        proto, client = h.client()
        proto.dataReceived(b"GET /x HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
        [(host, port, _, _)] = h.attempts
        self.assertEqual((host, port), ("127.0.0.1", 9000))
        up, upTransport = h.connect()
        lines, _ = headAndBody(upTransport.value())
        self.assertEqual(lines[0], b"GET /x HTTP/1.1")
        self.assertEqual(field(lines, b"host"), b"www.example.test")

    def test_rewriteHost(self) -> None:
        h = Harness(reverse=self.ORIGIN, reverseRewriteHost=True)
        proto, client = h.client()
        proto.dataReceived(b"GET /x HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
        up, upTransport = h.connect()
        self.assertEqual(field(headAndBody(upTransport.value())[0], b"host"), b"127.0.0.1:9000")

    def test_byHost(self) -> None:
        other = ReverseOrigin.fromURL("http://127.0.0.1:9001")
        h = Harness(reverseHosts=(("a.test", self.ORIGIN), ("b.test", other)))
        proto, client = h.client()
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: b.test\r\n\r\n")
        [(host, port, _, _)] = h.attempts
        self.assertEqual(port, 9001)
        proto, client = h.client()
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: c.test\r\n\r\n")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 421 "), client.value())

    def test_connectRefused(self) -> None:
        h = Harness(reverse=self.ORIGIN)
        proto, client = h.client()
        proto.dataReceived(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 403 "), client.value())

    def test_cachedAsAccelerator(self) -> None:
        h = CacheHarness(reverse=self.ORIGIN)
        request = b"GET /x HTTP/1.1\r\nHost: www.example.test\r\n\r\n"
        h.fetch(request)
        second, opened = h.fetch(request, None)
        self.assertEqual(opened, 0)
        self.assertTrue(second.endswith(b"hello"))


class _Counted(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.hits = 0

    def render_GET(self, request):
        self.hits += 1
        request.setHeader(b"cache-control", b"max-age=600")
        request.setHeader(b"content-type", b"text/plain")
        return b"counted %d\n" % (self.hits,)


class LoopbackCacheTests(TestCase):
    """
    The daemon's cache over loopback, with an origin that counts its hits.
    """

    async def startProxy(self, *args: str):
        config = Options()
        config.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", *args])
        service = makeService(config, reactor)
        service.startService()
        port = await list(service)[0]._waitingForPort
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), reactor)
        return service, agent

    async def get(self, agent, url: str) -> tuple[bytes, list[bytes]]:
        response = await agent.request(b"GET", url.encode("ascii"))
        return await readBody(response), response.headers.getRawHeaders(b"cache-status", [])

    async def test_diskCacheSurvivesRestart(self) -> None:
        resource = _Counted()
        originPort = listenLocal(Site(resource))
        self.addCleanup(originPort.stopListening)
        url = "http://127.0.0.1:%d/x" % (portNumber(originPort),)
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)

        service, agent = await self.startProxy("--cache-dir", directory)
        self.assertEqual((await self.get(agent, url))[0], b"counted 1\n")
        body, status = await self.get(agent, url)
        self.assertEqual(body, b"counted 1\n")
        self.assertIn(b"hit", status[0])
        await service.stopService()

        service, agent = await self.startProxy("--cache-dir", directory)
        self.addCleanup(service.stopService)
        body, status = await self.get(agent, url)
        self.assertEqual(body, b"counted 1\n")
        self.assertIn(b"hit", status[0])
        self.assertEqual(resource.hits, 1)
