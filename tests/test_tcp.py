"""
Tests for L{twisted_proxy.proxy.tcp}: writes that reach the kernel at once,
checked against the installed Twisted's TCP transports over loopback, and
the relay's use of them (a response head leaves with the body bytes of the
same read, in one write).
"""

from __future__ import annotations

import socket

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tests._loopback import listenLocal, portNumber
from twisted_proxy.proxy.server import ProxyServerProtocol
from twisted_proxy.proxy.tcp import IStreamTransport, writeNow
from twisted_proxy.testing import Harness


class _Accepted(Protocol):
    transport: IStreamTransport

    def __init__(self, accepted: defer.Deferred[_Accepted]) -> None:
        self.accepted = accepted

    def connectionMade(self) -> None:
        self.accepted.callback(self)


async def connectedPair(test: TestCase) -> tuple[_Accepted, socket.socket]:
    """
    A real loopback connection: the protocol on Twisted's side, and a plain
    non-blocking socket at the other end that a test reads without running
    the reactor.
    """
    accepted: defer.Deferred[_Accepted] = defer.Deferred()
    factory = Factory.forProtocol(lambda: _Accepted(accepted))
    port = listenLocal(factory)
    test.addCleanup(port.stopListening)
    peer = socket.create_connection(("127.0.0.1", portNumber(port)))
    test.addCleanup(peer.close)
    proto = await accepted
    test.addCleanup(proto.transport.abortConnection)
    peer.setblocking(False)
    return proto, peer


class WriteNowTests(TestCase):
    """
    L{writeNow} over a real loopback connection, with a plain socket at the
    other end that the test reads without running the reactor.
    """

    async def connected(self) -> tuple[Protocol, socket.socket]:
        return await connectedPair(self)

    async def test_sentAtOnce(self) -> None:
        """
        With nothing queued, the bytes are in the kernel when writeNow
        returns: the peer can read them before the reactor runs again.
        """
        proto, peer = await self.connected()
        self.assertTrue(writeNow(proto.transport, b"hello"))
        self.assertEqual(peer.recv(100), b"hello")

    async def test_orderKeptBehindQueuedBytes(self) -> None:
        """
        Bytes queued by an ordinary write go first: writeNow queues behind
        them.
        """
        proto, peer = await self.connected()
        assert proto.transport is not None
        proto.transport.write(b"first ")
        self.assertFalse(writeNow(proto.transport, b"second"))
        with self.assertRaises(BlockingIOError):
            peer.recv(100)
        self.assertEqual(await self.receive(peer, 12), b"first second")

    async def test_partialSendQueuesTheRest(self) -> None:
        """
        What the kernel does not take is queued and sent by the transport,
        in order.
        """
        proto, peer = await self.connected()
        data = bytes(range(256)) * (32 * 1024)  # 8 MiB
        self.assertFalse(writeNow(proto.transport, data))
        self.assertEqual(await self.receive(peer, len(data)), data)

    def receive(self, peer: socket.socket, size: int) -> defer.Deferred[bytes]:
        """
        Read C{size} bytes from C{peer} as the reactor makes them arrive
        (the peer's socket is watched by the reactor).
        """
        done: defer.Deferred[bytes] = defer.Deferred()
        received: list[bytes] = []

        @implementer(IReadDescriptor)
        class Reader:
            def fileno(self) -> int:
                return peer.fileno()

            def logPrefix(self) -> str:
                return "peer"

            def doRead(self) -> None:
                received.append(peer.recv(1 << 20))
                if sum(map(len, received)) >= size:
                    reactor.removeReader(self)
                    done.callback(b"".join(received))

            def connectionLost(self, reason: object) -> None:
                pass

        reactor.addReader(Reader())
        return done

    async def test_notAfterLoseConnection(self) -> None:
        proto, peer = await self.connected()
        assert proto.transport is not None
        proto.transport.loseConnection()
        self.assertFalse(writeNow(proto.transport, b"late"))

    def test_otherTransports(self) -> None:
        """
        A transport it does not know gets the ordinary write.
        """
        transport = StringTransport()
        self.assertFalse(writeNow(transport, b"data"))
        self.assertEqual(transport.value(), b"data")


class CountingTransport(StringTransport):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)


class TunnelSendsAtOnceTests(TestCase):
    """
    A tunnel relays what one side sent to the other at once: the bytes are
    in the kernel when the relay returns, not on the reactor's next pass.
    """

    async def test_bothWays(self) -> None:
        from twisted.internet.task import Clock

        from twisted_proxy.proxy.tunnel import Tunnel

        client, clientPeer = await connectedPair(self)
        upstream, upstreamPeer = await connectedPair(self)
        tunnel = Tunnel(Clock())
        tunnel.start(client.transport, upstream.transport)
        tunnel.dataFromUpstream(b"from the origin")
        self.assertEqual(clientPeer.recv(100), b"from the origin")
        tunnel.dataFromClient(b"from the client")
        self.assertEqual(upstreamPeer.recv(100), b"from the client")


class HeadWithBodyTests(SynchronousTestCase):
    """
    A response head and the body bytes that came in the same read leave in
    one write (one segment); a head whose body comes later leaves at the
    end of its own read.
    """

    def client(self, h: Harness) -> tuple[ProxyServerProtocol, CountingTransport]:
        from twisted.internet.address import IPv4Address

        proto = h.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        assert isinstance(proto, ProxyServerProtocol)
        transport = CountingTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        proto.makeConnection(transport)
        return proto, transport

    def test_oneWrite(self) -> None:
        h = Harness()
        proto, client = self.client(h)
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, _ = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        self.assertEqual(len(client.writes), 1)
        self.assertTrue(client.writes[0].endswith(b"\r\n\r\nhello"))

    def test_headAloneThenBody(self) -> None:
        h = Harness()
        proto, client = self.client(h)
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, _ = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        self.assertEqual(len(client.writes), 1)
        self.assertTrue(client.writes[0].endswith(b"\r\n\r\n"))
        up.dataReceived(b"hello")
        self.assertEqual(client.writes[1:], [b"hello"])

    def test_chunkedOneWrite(self) -> None:
        h = Harness()
        proto, client = self.client(h)
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, _ = h.connect()
        up.dataReceived(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        self.assertEqual(len(client.writes), 1)
        self.assertTrue(client.writes[0].endswith(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"))
