"""
What real clients hit on the wire (issue 10): an answer that arrives
before the upload ends, refusals that must be records, C{ws://} targets,
and C{Connection} options that must not take away a message's framing.

Protocol tests over StringTransports (L{twisted_proxy.testing.Harness}),
plus loopback tests with real sockets where the kernel is the point
(C{TCP_NODELAY}, a lingering close seen by a real client).
"""

from __future__ import annotations

import socket

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import ISystemHandle
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests._loopback import listenLocal, portNumber
from twisted_proxy.http.fields import forwardRequestHeaders, forwardResponseHeaders
from twisted_proxy.http.target import Target
from twisted_proxy.proxy.factory import Refuser
from twisted_proxy.proxy.server import ProxyServerProtocol
from twisted_proxy.proxy.tcp import IStreamTransport
from twisted_proxy.testing import Harness, logEvents

from ._loopback import ProxyTestMixin, RawClient

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
FOUND = b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"


class HalfCloseableTransport(StringTransport):
    """
    A StringTransport that can shut down its write side, as TCP can.
    """

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True


def halfCloseableClient(
    h: Harness,
) -> tuple[ProxyServerProtocol | Refuser, HalfCloseableTransport]:
    """
    A client connection over a transport that can be half-closed: a
    protocol for it, or the refusal of one over a connection limit.
    """
    proto = h.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    assert isinstance(proto, (ProxyServerProtocol, Refuser))
    transport = HalfCloseableTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
    proto.makeConnection(transport)
    return proto, transport


def post(length: int, extra: bytes = b"") -> bytes:
    return b"POST http://a.test/upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n%s\r\n" % (
        length,
        extra,
    )


class EarlyResponseTests(SynchronousTestCase):
    """
    An answer that arrives before the request body is complete (RFC 9112
    9.3, 9.6): the proxy keeps reading and dropping the rest, so the client
    reads the answer instead of a reset; the connection survives when the
    rest is of known length within --discard-body-max.
    """

    def test_originAnswersEarlyKeepsConnection(self) -> None:
        """
        The origin's 302 to a partly sent upload reaches the client without
        C{Connection: close}; the rest of the body is dropped (never sent
        upstream, never parsed as a request), and the next request on the
        same connection is served.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(post(100000) + b"x" * 1000)
        up, upTransport = h.connect()
        up.dataReceived(FOUND)
        response = client.value()
        self.assertTrue(response.startswith(b"HTTP/1.1 302 Found\r\n"), response)
        self.assertNotIn(b"Connection: close", response)
        self.assertTrue(upTransport.disconnecting, "the half-used upstream is not reused")
        self.assertFalse(client.disconnecting)
        # The rest of the body holds what looks like a request: it is body.
        smuggled = b"GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n"
        rest = smuggled + b"y" * (99000 - len(smuggled))
        client.clear()
        proto.dataReceived(rest[:50000])
        proto.dataReceived(
            rest[50000:] + b"GET http://a.test/next HTTP/1.1\r\nHost: a.test\r\n\r\n"
        )
        self.assertEqual([(host, port) for host, port, _, _ in h.attempts], [("a.test", 80)])
        up2, upTransport2 = h.connect()
        self.assertTrue(upTransport2.value().startswith(b"GET /next HTTP/1.1\r\n"))
        up2.dataReceived(OK)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 200 OK\r\n"), client.value())

    def test_restTooLongLingers(self) -> None:
        """
        When the rest of the body is longer than --discard-body-max, the
        response says C{Connection: close}, the write side is shut down
        once it is out, and what the client still sends is read and
        dropped until it closes; then the connection closes.
        """
        h = Harness(discardBodyMax=1000)
        proto, client = halfCloseableClient(h)
        proto.dataReceived(post(20_000_000) + b"x" * 1000)
        up, upTransport = h.connect()
        up.dataReceived(FOUND)
        self.assertIn(b"Connection: close", client.value())
        self.assertTrue(client.writeClosed)
        self.assertFalse(client.disconnecting)
        proto.dataReceived(b"x" * 65536)
        proto.readConnectionLost()
        self.assertTrue(client.disconnecting)

    def test_lingerEndsAfterTimeout(self) -> None:
        """
        A client that keeps sending is cut off after --linger-timeout.
        """
        h = Harness(discardBodyMax=1000, lingerTimeout=2.0)
        proto, client = halfCloseableClient(h)
        proto.dataReceived(post(20_000_000))
        up, upTransport = h.connect()
        up.dataReceived(FOUND)
        h.clock.advance(1.9)
        proto.dataReceived(b"x" * 65536)
        self.assertFalse(client.disconnected)
        h.clock.advance(0.2)
        self.assertTrue(client.disconnected)

    def test_chunkedRestLingers(self) -> None:
        """
        A chunked body's rest has no known length: close, lingering.
        """
        h = Harness()
        proto, client = halfCloseableClient(h)
        proto.dataReceived(
            b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n"
        )
        up, upTransport = h.connect()
        up.dataReceived(FOUND)
        self.assertIn(b"Connection: close", client.value())
        self.assertTrue(client.writeClosed)

    def test_expectContinueNotSent(self) -> None:
        """
        A client waiting for C{100 Continue} may never send its body: an
        early final answer closes the connection instead of waiting for it.
        """
        h = Harness()
        proto, client = halfCloseableClient(h)
        proto.dataReceived(post(5000, b"Expect: 100-continue\r\n"))
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
        self.assertIn(b"Connection: close", client.value())
        self.assertTrue(client.writeClosed)

    def test_proxyRefusalDiscardsBody(self) -> None:
        """
        A request the proxy itself refuses (here 407) before reading its
        body keeps the connection when the rest can be dropped, so the
        client can send the request again, with credentials, on it.
        """
        from twisted_proxy.proxy.policy import Policy

        from ._server import writeHtpasswd

        h = Harness(policy=Policy.fromOptions(authFile=writeHtpasswd(self)))
        proto, client = h.client()
        proto.dataReceived(post(10) + b"12345")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 407 "), client.value())
        self.assertNotIn(b"Connection: close", client.value())
        client.clear()
        proto.dataReceived(b"67890" + post(0, b"Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n"))
        self.assertEqual(len(h.attempts), 1)

    def test_discardStallCloses(self) -> None:
        """
        A rest of body that stops arriving for --body-timeout closes the
        connection.
        """
        h = Harness(bodyTimeout=60)
        proto, client = h.client()
        proto.dataReceived(post(10000) + b"x" * 10)
        up, upTransport = h.connect()
        up.dataReceived(FOUND)
        h.clock.advance(59)
        proto.dataReceived(b"x" * 10)
        h.clock.advance(59)
        self.assertFalse(client.disconnecting)
        h.clock.advance(2)
        self.assertTrue(client.disconnecting)

    def test_tooLargeLingers(self) -> None:
        """
        A body over --max-body is answered 413 and the connection closed,
        lingering: the client reads the 413 instead of a reset.
        """
        h = Harness(maxBody=100)
        proto, client = halfCloseableClient(h)
        proto.dataReceived(post(1000) + b"x" * 10)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 413 "), client.value())
        self.assertTrue(client.writeClosed)
        self.assertEqual(h.attempts, [])


class RefusalRecordTests(SynchronousTestCase):
    """
    Every response the proxy sends is a transaction record, the 503 for a
    connection over a limit included.
    """

    def test_connectionLimitRecorded(self) -> None:
        events = logEvents(self)
        h = Harness(maxConnections=1, transactionDetail=True)
        h.client()
        proto, client = halfCloseableClient(h)
        proto.dataReceived(b"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 503 "), client.value())
        [record] = [e["transaction"] for e in events if "transaction" in e]
        self.assertEqual(
            (record["kind"], record["status"], record["method"], record["target"]),
            ("refused", 503, "GET", "http://a.test/x"),
        )
        self.assertEqual(record["proxyError"], "connection_limit_reached")


class WebSocketTargetTests(SynchronousTestCase):
    """
    C{ws://} in absolute-form is C{http://} for a WebSocket upgrade
    (RFC 6455 3), as aiohttp sends it; C{wss://} is refused with the advice
    to use CONNECT.
    """

    UPGRADE = b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"

    def test_wsUpgrade(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"GET ws://a.test:8001/chat HTTP/1.1\r\nHost: a.test:8001\r\n" + self.UPGRADE + b"\r\n"
        )
        [(host, port, _, _)] = h.attempts
        self.assertEqual((host, port), ("a.test", 8001))
        up, upTransport = h.connect()
        lines = upTransport.value().split(b"\r\n")
        self.assertEqual(lines[0], b"GET /chat HTTP/1.1")
        self.assertIn(b"Upgrade: websocket", lines)

    def test_wsWithoutUpgrade(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET ws://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 400 "), client.value())
        self.assertIn(b"upgrade to WebSocket", client.value())

    def test_wssRefused(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"GET wss://a.test/ HTTP/1.1\r\nHost: a.test\r\n" + self.UPGRADE + b"\r\n"
        )
        self.assertTrue(client.value().startswith(b"HTTP/1.1 400 "), client.value())
        self.assertIn(b"send wss:// requests through a CONNECT tunnel", client.value())


class FramingIsOursTests(SynchronousTestCase):
    """
    A C{Connection} option never takes away a message's own framing (RFC
    9112 6.3, RFC 9110 7.6.1): the framing of everything forwarded is
    computed from what was parsed.  C{Connection: Content-Length} once
    let a body through with neither Content-Length nor Transfer-Encoding,
    and the origin ran it as a second request.
    """

    def test_requestContentLengthNamedInConnection(self) -> None:
        h = Harness()
        proto, client = h.client()
        smuggled = b"GET /admin HTTP/1.1\r\nHost: a.test\r\n\r\n"
        proto.dataReceived(
            b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nConnection: Content-Length\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(smuggled), smuggled)
        )
        up, upTransport = h.connect()
        head, _, body = upTransport.value().partition(b"\r\n\r\n")
        self.assertIn(b"Content-Length: %d" % (len(smuggled),), head.split(b"\r\n"))
        self.assertEqual(body, smuggled)

    def test_requestTransferEncodingNamedInConnection(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nConnection: Transfer-Encoding\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        up, upTransport = h.connect()
        head, _, body = upTransport.value().partition(b"\r\n\r\n")
        self.assertIn(b"Transfer-Encoding: chunked", head.split(b"\r\n"))
        self.assertEqual(body, b"5\r\nhello\r\n0\r\n\r\n")

    def test_requestHostNamedInConnection(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: Host\r\n\r\n")
        up, upTransport = h.connect()
        self.assertIn(b"Host: a.test", upTransport.value().split(b"\r\n"))

    def test_responseContentLengthNamedInConnection(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(
            b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello"
        )
        head, _, body = client.value().partition(b"\r\n\r\n")
        self.assertIn(b"Content-Length: 5", head.split(b"\r\n"))
        self.assertEqual(body, b"hello")

    def test_responseTransferEncodingNamedInConnection(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(
            b"HTTP/1.1 200 OK\r\n"
            b"Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n"
        )
        head, _, body = client.value().partition(b"\r\n\r\n")
        self.assertIn(b"Transfer-Encoding: chunked", head.split(b"\r\n"))
        self.assertEqual(body, b"5\r\nhello\r\n0\r\n\r\n")

    def test_fieldsFunctions(self) -> None:
        """
        The pure functions: the parsed length replaces what was sent, at
        its place, and a missing one is added.
        """
        target = Target("http", "a.test", 80, b"/", b"a.test")
        headers = [
            (b"Connection", b"content-length, host"),
            (b"content-length", b"5"),
            (b"X", b"1"),
        ]
        self.assertEqual(
            forwardRequestHeaders(headers, target, b"1.1", b"p", contentLength=5),
            [(b"Host", b"a.test"), (b"content-length", b"5"), (b"X", b"1"), (b"Via", b"1.1 p")],
        )
        self.assertEqual(
            forwardResponseHeaders(headers, b"1.1", b"p", contentLength=5),
            [(b"content-length", b"5"), (b"X", b"1"), (b"Via", b"1.1 p")],
        )
        self.assertEqual(
            forwardResponseHeaders(
                [(b"Connection", b"Content-Length"), (b"Content-Length", b"7")], b"1.1", b"p"
            ),
            [(b"Content-Length", b"7"), (b"Via", b"1.1 p")],
            "a response to HEAD keeps its Content-Length",
        )


def _nodelay(transport: object) -> int:
    assert ISystemHandle.providedBy(transport)
    handle = transport.getHandle()
    assert isinstance(handle, socket.socket)
    return handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


class _EarlyAnswer(Protocol):
    """
    An origin that answers 302 as soon as it has the request head, and
    keeps reading (nginx's behaviour).
    """

    transport: IStreamTransport

    answered = False

    def dataReceived(self, data: bytes) -> None:
        if not self.answered and b"\r\n\r\n" in data:
            self.answered = True
            self.transport.write(FOUND)


class LoopbackWireTests(ProxyTestMixin, TestCase):
    """
    The same, with real sockets.
    """

    async def test_noDelayEverywhere(self) -> None:
        """
        Every socket the proxy accepts or opens has TCP_NODELAY: the client
        connection, the upstream connection, and both sides of a tunnel.
        """
        await self.setUpProxy("--connect-ports", "*")
        originPort = int(self.origin.rsplit(":", 1)[1])
        client = RawClient(
            b"GET %s/small HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
            % (self.origin.encode("ascii"), originPort)
        )
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxyPort), client)
        await client.waitFor(b"hello from the origin\n")
        factory = self.service.factory
        [conn] = factory.connections
        self.assertTrue(_nodelay(conn.transport))
        [upstream] = factory.pool._idle[("http", "127.0.0.1", originPort)]
        self.assertTrue(_nodelay(upstream.transport))
        client.transport.loseConnection()
        await client.done

        tunnelClient = RawClient(
            b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % (originPort,)
        )
        await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxyPort), tunnelClient
        )
        await tunnelClient.waitFor(b"200 Connection Established\r\n\r\n")
        [conn] = factory.connections
        self.assertTrue(_nodelay(conn.transport))
        assert conn._tunnel is not None
        self.assertTrue(_nodelay(conn._tunnel._upstream.transport))
        tunnelClient.transport.loseConnection()
        await tunnelClient.done

    async def test_earlyAnswerReadByRealClient(self) -> None:
        """
        A client uploading a body larger than the socket buffers to an
        origin that answers at once reads the whole answer, with the rest
        of its body dropped by a lingering close (here: over
        --discard-body-max), instead of getting a reset.
        """
        earlyPort = listenLocal(Factory.forProtocol(_EarlyAnswer))
        self.addCleanup(earlyPort.stopListening)
        await self.setUpProxy("--discard-body-max", "64k")
        port = portNumber(earlyPort)
        size = 8 * 1024 * 1024
        client = RawClient(
            b"POST http://127.0.0.1:%d/up HTTP/1.1\r\n"
            b"Host: 127.0.0.1:%d\r\nContent-Length: %d\r\n\r\n" % (port, port, size) + b"x" * size
        )
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxyPort), client)
        data = await client.done
        self.assertTrue(data.startswith(b"HTTP/1.1 302 Found\r\n"), data[:200])
        self.assertIn(b"Connection: close", data)
