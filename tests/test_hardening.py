"""
Hostile clients and origins: timeouts, limits, connection caps and request
smuggling, each against the real server protocol with a fake clock and
fake upstream connections (see L{tests.test_server.Harness}).
"""

from __future__ import annotations

from twisted.internet import error as ierror
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests._server import OK_RESPONSE
from twisted_proxy.testing import Harness


class TimeoutTests(SynchronousTestCase):
    def test_requestBodyStalls(self) -> None:
        """
        A request body that stops arriving gets 408 after --body-timeout of
        silence; the upstream connection is dropped.
        """
        h = Harness(bodyTimeout=60)
        proto, client = h.client()
        proto.dataReceived(
            b"PUT http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n12"
        )
        up, upTransport = h.connect()
        h.clock.advance(59)
        proto.dataReceived(b"34")
        h.clock.advance(59)
        self.assertEqual(client.value(), b"")
        h.clock.advance(2)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 408 "), client.value())
        self.assertTrue(client.disconnecting)
        self.assertTrue(upTransport.disconnected)

    def test_originStopsReadingUpload(self) -> None:
        """
        If the origin stops reading the request body (we paused the client
        for it) for --body-timeout, the answer is 504 connection_write_timeout.
        """
        h = Harness(bodyTimeout=60)
        proto, client = h.client()
        proto.dataReceived(
            b"PUT http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n12"
        )
        up, upTransport = h.connect()
        assert upTransport.producer is not None
        upTransport.producer.pauseProducing()
        h.clock.advance(61)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 504 "), client.value())
        self.assertIn(b"error=connection_write_timeout", client.value())

    def test_responseBodyStalls(self) -> None:
        """
        A response body that stops for --response-body-timeout aborts both
        connections (the client must not take the truncated body as whole).
        """
        h = Harness(responseBodyTimeout=60)
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        h.clock.advance(30)
        up.dataReceived(b"def")
        h.clock.advance(59)
        self.assertFalse(client.disconnected)
        h.clock.advance(2)
        self.assertTrue(client.disconnected)
        self.assertTrue(upTransport.disconnected)

    def test_clientStopsReading(self) -> None:
        h = Harness(responseBodyTimeout=60)
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        assert client.producer is not None
        client.producer.pauseProducing()
        h.clock.advance(61)
        self.assertTrue(client.disconnected)
        self.assertTrue(upTransport.disconnected)

    def test_slowloris(self) -> None:
        """
        A head trickled byte by byte still has to be complete within
        --header-timeout of its first byte.
        """
        h = Harness(headerTimeout=10)
        proto, client = h.client()
        for b in b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nX-A: " + b"a" * 20:
            proto.dataReceived(bytes([b]))
            h.clock.advance(0.4)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 408 "))
        self.assertTrue(client.disconnecting)
        self.assertEqual(h.attempts, [])


class SizeLimitTests(SynchronousTestCase):
    def test_targetLength(self) -> None:
        for length, status in ((8192, None), (8193, b"414")):
            h = Harness()
            proto, client = h.client()
            path = b"/" + b"a" * (length - len(b"http://a.test/"))
            target = b"http://a.test" + path
            self.assertEqual(len(target), length)
            proto.dataReceived(b"GET " + target + b" HTTP/1.1\r\nHost: a.test\r\n\r\n")
            if status is None:
                self.assertEqual(len(h.attempts), 1, length)
            else:
                self.assertTrue(client.value().startswith(b"HTTP/1.1 414 "), length)
                self.assertEqual(h.attempts, [])

    def test_headerCount(self) -> None:
        for count, refused in ((100, False), (101, True)):
            h = Harness()
            proto, client = h.client()
            fields = b"Host: a.test\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(count - 1))
            proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\n" + fields + b"\r\n")
            if refused:
                self.assertTrue(client.value().startswith(b"HTTP/1.1 431 "), count)
                self.assertEqual(h.attempts, [])
            else:
                self.assertEqual(len(h.attempts), 1, count)

    def test_headerSection(self) -> None:
        for size, refused in ((32768, False), (32768 + 1, True)):
            h = Harness()
            proto, client = h.client()
            # Host: a.test\r\n is 14 bytes; one more field fills the rest.
            value = b"v" * (size - 14 - len(b"X-Big: \r\n"))
            proto.dataReceived(
                b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nX-Big: " + value + b"\r\n\r\n"
            )
            if refused:
                self.assertTrue(client.value().startswith(b"HTTP/1.1 431 "), size)
            else:
                self.assertEqual(len(h.attempts), 1, size)

    def test_maxBodyContentLength(self) -> None:
        for length, refused in ((1024, False), (1025, True)):
            h = Harness(maxBody=1024)
            proto, client = h.client()
            proto.dataReceived(
                b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n\r\n"
                % length
            )
            if refused:
                self.assertTrue(client.value().startswith(b"HTTP/1.1 413 "))
                self.assertTrue(client.disconnecting)
                self.assertEqual(h.attempts, [])
            else:
                self.assertEqual(len(h.attempts), 1)

    def test_maxBodyChunked(self) -> None:
        """
        A chunked body is counted as it streams; past the limit the request
        is cut off with 413 and the upstream connection dropped.
        """
        h = Harness(maxBody=1024)
        proto, client = h.client()
        proto.dataReceived(
            b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        up, upTransport = h.connect()
        proto.dataReceived(b"400\r\n" + b"x" * 1024 + b"\r\n")
        self.assertEqual(client.value(), b"")
        proto.dataReceived(b"1\r\nx\r\n")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 413 "))
        self.assertTrue(client.disconnecting)
        self.assertTrue(upTransport.disconnected)

    def test_responseHeadTooLarge(self) -> None:
        h = Harness()
        h.pool.maxResponseHeaderBytes = 1000
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * 2000 + b"\r\n\r\n")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 502 "))
        self.assertIn(b"error=http_response_header_section_size", client.value())


class ConnectionLimitTests(SynchronousTestCase):
    def connect(self, h: Harness, peer: str = "127.0.0.1"):
        proto = h.factory.buildProtocol(IPv4Address("TCP", peer, 50000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 50000))
        proto.makeConnection(transport)
        return proto, transport

    def test_maxConnections(self) -> None:
        """
        Past --max-connections a new connection gets 503 (if it sends a
        request head in time) while existing ones continue.
        """
        h = Harness(maxConnections=2)
        first, t1 = self.connect(h)
        second, t2 = self.connect(h)
        third, t3 = self.connect(h)
        third.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertTrue(t3.value().startswith(b"HTTP/1.1 503 "), t3.value())
        self.assertIn(b"error=connection_limit_reached", t3.value())
        self.assertTrue(t3.disconnecting)
        first.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(OK_RESPONSE)
        self.assertTrue(t1.value().endswith(b"hello"))
        # Once one closes, a new connection is served again.
        second.connectionLost(Failure(ierror.ConnectionDone()))
        fourth, t4 = self.connect(h)
        fourth.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(t4.value(), b"")
        self.assertEqual(h.pool.reused, 1)

    def test_silentRefusedConnectionClosed(self) -> None:
        h = Harness(maxConnections=1)
        self.connect(h)
        refused, t = self.connect(h)
        h.clock.advance(1.1)
        self.assertEqual(t.value(), b"")
        self.assertTrue(t.disconnecting)

    def test_perClient(self) -> None:
        h = Harness(maxConnectionsPerClient=1)
        self.connect(h, "10.0.0.1")
        other, t2 = self.connect(h, "10.0.0.2")
        again, t3 = self.connect(h, "10.0.0.1")
        again.dataReceived(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertTrue(t3.value().startswith(b"HTTP/1.1 503 "))
        other.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(len(h.attempts), 1)


SMUGGLING = [
    (b"CL and TE", b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n"),
    (b"two CL", b"Content-Length: 4\r\nContent-Length: 5\r\n"),
    (b"CL list", b"Content-Length: 4, 5\r\n"),
    (b"bad CL", b"Content-Length: +4\r\n"),
    (b"TE not chunked last", b"Transfer-Encoding: chunked, gzip\r\n"),
    (b"TE unknown", b"Transfer-Encoding: xchunked\r\n"),
    (b"obs-fold", b"X-A: 1\r\n folded\r\n"),
    (b"space before colon", b"Transfer-Encoding : chunked\r\n"),
    (b"control character", b"X-A: a\x00b\r\n"),
    (b"bare CR", b"X-A: a\rb\r\n"),
    (b"bare LF", b"X-A: a\nX-B: b\r\n"),
]


class SmugglingTests(SynchronousTestCase):
    """
    Each ambiguous request gets 400 and a closed connection; nothing from it
    reaches an origin, and nothing after it on that connection is read.
    """

    def test_ambiguousRequests(self) -> None:
        for name, fields in SMUGGLING:
            h = Harness()
            proto, client = h.client()
            proto.dataReceived(
                b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\n" + fields + b"\r\n"
                b"0\r\n\r\nGET http://a.test/admin HTTP/1.1\r\nHost: a.test\r\n\r\n"
            )
            self.assertTrue(client.value().startswith(b"HTTP/1.1 400 "), name)
            self.assertTrue(client.disconnecting, name)
            self.assertEqual(h.attempts, [], name)
            proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
            self.assertEqual(h.attempts, [], name)

    def test_http10WithTransferEncoding(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"POST http://a.test/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        self.assertTrue(client.value().startswith(b"HTTP/1.1 400 "))
        self.assertEqual(h.attempts, [])

    def test_originReceivesExactlyOneRequest(self) -> None:
        """
        A well-framed request followed by garbage: the origin gets exactly
        the one request, re-serialised, and the garbage is answered 400.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc"
            b"GET http://a.test/x HTTP/1.1\r\n"
            b"Host: a.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
        )
        up, upTransport = h.connect()
        sent = upTransport.value()
        self.assertEqual(sent.count(b" HTTP/1.1\r\n"), 1)
        self.assertTrue(sent.endswith(b"\r\n\r\nabc"))
        up.dataReceived(OK_RESPONSE)
        self.assertIn(b"HTTP/1.1 400 ", client.value())
        self.assertTrue(client.disconnecting)

    def test_ambiguousResponse(self) -> None:
        for name, fields in SMUGGLING:
            if name in (b"TE not chunked last", b"TE unknown"):
                # In a response these mean "read until close" (RFC 9112 6.3).
                continue
            h = Harness()
            proto, client = h.client()
            proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
            up, upTransport = h.connect()
            up.dataReceived(b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n0\r\n\r\n")
            self.assertTrue(client.value().startswith(b"HTTP/1.1 502 "), (name, client.value()))
            self.assertTrue(upTransport.disconnected, name)
            self.assertEqual(h.pool.idleCount(), 0, name)

    def test_sshBannerIsNotHTTP09(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test:22/ HTTP/1.1\r\nHost: a.test:22\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"SSH-2.0-OpenSSH_9.2p1\r\n")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 502 "))
        self.assertNotIn(b"SSH-2.0", client.value().split(b"\r\n\r\n", 1)[0])

    def test_interimNeverFinal(self) -> None:
        """
        A 1xx then a connection close: the client gets the interim response
        and then a 502, never the 1xx as if it were final.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        up.connectionLost(Failure(ierror.ConnectionDone()))
        data = client.value()
        self.assertTrue(data.startswith(b"HTTP/1.1 103 Early Hints\r\n"))
        self.assertIn(b"HTTP/1.1 502 ", data)

    def test_errorMidStreamNotPooled(self) -> None:
        """
        A framing error after the head was relayed aborts both connections;
        the upstream connection never goes back to the pool.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        up.dataReceived(b"zz\r\n")
        self.assertTrue(upTransport.disconnected)
        self.assertTrue(client.disconnected)
        self.assertEqual(h.pool.idleCount(), 0)

    def test_errorInFirstPacketIs502(self) -> None:
        """
        If the framing error comes in the same bytes as the head, nothing was
        relayed yet: the client gets a clean 502.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 502 "))
        self.assertTrue(upTransport.disconnected)
        self.assertEqual(h.pool.idleCount(), 0)


class FoundByFaultTests(SynchronousTestCase):
    """
    Regressions found by bench/soak.py and bench/fuzz_proxy.py.
    """

    def test_originDiesDuringUpload(self) -> None:
        """
        When the origin's connection drops during an upload, Twisted first
        tells its producer (our client side) to stop; the client must still
        get the 502, not a bare close.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"POST http://a.test/up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1000000\r\n\r\n"
            + b"x" * 10000
        )
        up, upTransport = h.connect()
        assert upTransport.producer is not None
        upTransport.producer.stopProducing()
        up.connectionLost(Failure(ierror.ConnectionLost()))
        self.assertTrue(client.value().startswith(b"HTTP/1.1 502 "), client.value())
        self.assertIn(b"error=http_response_incomplete", client.value())
        # The rest of the body is read and dropped (RFC 9112 9.3), and the
        # connection carries the next request.
        self.assertFalse(client.disconnecting)
        client.clear()
        proto.dataReceived(b"x" * 990000 + b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        self.assertEqual(upTransport.value().split(b"\r\n")[0], b"GET / HTTP/1.1")
        up.dataReceived(OK_RESPONSE)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 200 "), client.value())

    def test_garbageAfterCompleteRequestWaitsForItsResponse(self) -> None:
        """
        Bytes that are not HTTP after a complete request do not cut that
        request's response short: it completes, then the 400 follows.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
        proto.dataReceived(b"GARBAGE\r\n\r\n")
        self.assertFalse(client.disconnected)
        up.dataReceived(b"56789")
        data = client.value()
        self.assertIn(b"0123456789HTTP/1.1 400 ", data)
        self.assertTrue(client.disconnecting)
        self.assertFalse(client.disconnected)
