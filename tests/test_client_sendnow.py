"""
Tests for L{twisted_proxy.client.sendnow.SendNow}: writes that reach the
kernel when they are made, and what happens when the kernel takes only
part of them.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.interfaces import ISystemHandle, ITCPTransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tests._loopback import ITCPConnection, listenLocal, portNumber
from twisted_proxy.client.sendnow import SendNow


class FakeSocket:
    """
    A socket whose C{send} takes at most C{room} bytes, or raises.
    """

    def __init__(self, room: int = 1 << 30, error: OSError | None = None) -> None:
        self.room = room
        self.error = error
        self.sent = b""

    def send(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        taken = data[: self.room]
        self.room -= len(taken)
        self.sent += taken
        return len(taken)


@implementer(ITCPTransport, ISystemHandle)
class FakeTransport(StringTransport):
    """
    A L{StringTransport} with a socket (C{getHandle}), that tells its pull
    producer when its buffer "empties" (L{drain}).
    """

    def __init__(self, sock: Any) -> None:
        super().__init__()
        self.sock = sock
        self.registrations = 0

    def getHandle(self) -> Any:
        return self.sock

    # The rest of ITCPTransport, which SendNow passes through untouched.

    noDelay = False
    keepAlive = False

    def getTcpNoDelay(self) -> bool:
        return self.noDelay

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled

    def getTcpKeepAlive(self) -> bool:
        return self.keepAlive

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.keepAlive = enabled

    def loseWriteConnection(self) -> None:
        self.loseConnection()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.registrations += 1
        super().registerProducer(producer, streaming)
        if not streaming:
            producer.resumeProducing()  # as FileDescriptor does, at once

    def drain(self) -> bytes:
        data = self.value()
        self.clear()
        if self.producer is not None and not self.streaming:
            self.producer.resumeProducing()
        return data


class SendNowTests(SynchronousTestCase):
    def test_direct(self) -> None:
        """
        While nothing is queued, a write goes to the socket in the call,
        not through the transport's buffer.
        """
        sock = FakeSocket()
        transport = FakeTransport(sock)
        out = SendNow(transport)
        out.write(b"GET / HTTP/1.1\r\n\r\n")
        out.writeSequence([b"a", b"b"])
        out.write(b"")
        self.assertEqual(sock.sent, b"GET / HTTP/1.1\r\n\r\nab")
        self.assertEqual(transport.value(), b"")
        self.assertEqual(out.sentDirectly, 20)
        self.assertTrue(out.flushed)
        called: list[bool] = []
        out.whenFlushed(lambda: called.append(True))
        self.assertEqual(called, [True])

    def test_partial(self) -> None:
        """
        What the kernel did not take is queued in the transport; later
        writes queue behind it, in order; L{SendNow.whenFlushed} fires when
        the transport's buffer has gone out, and direct sends resume.
        """
        sock = FakeSocket(room=5)
        transport = FakeTransport(sock)
        out = SendNow(transport)
        flushed: list[str] = []
        out.write(b"0123456789")
        out.whenFlushed(lambda: flushed.append("first"))
        sock.room = 100
        out.write(b"abc")
        out.whenFlushed(lambda: flushed.append("second"))
        self.assertEqual(sock.sent, b"01234")
        self.assertEqual(transport.value(), b"56789abc")
        self.assertFalse(out.flushed)
        self.assertEqual(flushed, [])
        self.assertEqual(transport.registrations, 1)
        self.assertEqual(transport.drain(), b"56789abc")
        self.assertEqual(flushed, ["first", "second"])
        self.assertTrue(out.flushed)
        self.assertIsNone(transport.producer)
        out.write(b"direct")
        self.assertEqual(sock.sent, b"01234direct")

    def test_lastSendAt(self) -> None:
        """
        The time just before the C{send()} that handed the latest bytes to
        the kernel; for a queued remainder, when the buffer was found
        empty.
        """
        times = iter([1.0, 2.0, 3.0])
        sock = FakeSocket(room=3)
        transport = FakeTransport(sock)
        out = SendNow(transport, monotonic=lambda: next(times))
        self.assertIsNone(out.lastSendAt)
        out.write(b"abc")
        self.assertEqual(out.lastSendAt, 1.0)
        out.write(b"defg")
        self.assertEqual(out.lastSendAt, 2.0)
        transport.drain()
        self.assertEqual(out.lastSendAt, 3.0)

    def test_wouldBlock(self) -> None:
        sock = FakeSocket(error=BlockingIOError(errno.EAGAIN, "again"))
        transport = FakeTransport(sock)
        out = SendNow(transport)
        out.write(b"data")
        self.assertEqual((sock.sent, transport.value(), out.flushed), (b"", b"data", False))

    def test_socketError(self) -> None:
        """
        A failing send leaves the bytes to the transport, which meets the
        error itself and reports the connection lost.
        """
        sock = FakeSocket(error=BrokenPipeError(errno.EPIPE, "pipe"))
        transport = FakeTransport(sock)
        out = SendNow(transport)
        out.write(b"data")
        self.assertEqual(transport.value(), b"data")

    def test_noSocket(self) -> None:
        """
        A transport without a socket is written to as usual, and counts
        as flushed at once.
        """
        transport = StringTransport()
        out = SendNow(transport)
        out.write(b"data")
        self.assertEqual(transport.value(), b"data")
        self.assertTrue(out.flushed)
        self.assertEqual(out.sentDirectly, 0)

    def test_delegates(self) -> None:
        """
        Everything else is the transport's, interfaces included.
        """
        transport = FakeTransport(FakeSocket())
        out = SendNow(transport)
        self.assertTrue(ITCPTransport.providedBy(out))
        self.assertEqual(out.getPeer(), transport.getPeer())
        out.loseConnection()
        self.assertTrue(transport.disconnecting)


class Collect(Protocol):
    transport: ITCPConnection

    def __init__(self) -> None:
        self.data = b""
        self.made: defer.Deferred[None] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.got: defer.Deferred[None] | None = None
        self.want = 0

    def connectionMade(self) -> None:
        self.made.callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.got is not None and len(self.data) >= self.want:
            d, self.got = self.got, None
            d.callback(None)

    def waitFor(self, size: int) -> defer.Deferred[None]:
        self.want = size
        self.got = defer.Deferred()
        if len(self.data) >= size:
            d, self.got = self.got, None
            d.callback(None)
            return d
        return self.got


class LoopbackTests(TestCase):
    """
    With a real TCP connection: a small write is in the kernel (and so at
    the peer's socket) before the reactor runs again; a large one the
    kernel cannot take at once is finished by the transport, and
    L{SendNow.whenFlushed} says when.
    """

    async def connectPair(self) -> tuple[Any, Collect]:
        server = Collect()
        port = listenLocal(Factory.forProtocol(lambda: server))
        self.addCleanup(port.stopListening)
        client = Collect()
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", portNumber(port)), client)
        await server.made

        def close() -> defer.Deferred[None]:
            client.transport.loseConnection()
            return server.lost

        self.addCleanup(close)
        return client.transport, server

    async def test_smallWriteIsInTheKernel(self) -> None:
        transport, server = await self.connectPair()
        out = SendNow(transport)
        out.write(b"hello")
        self.assertEqual(out.sentDirectly, 5)
        # Readable on the peer's socket already, with no reactor pass.
        handle = server.transport.getHandle()
        assert isinstance(handle, socket.socket)
        peer = socket.socket(fileno=handle.fileno())
        try:
            self.assertEqual(peer.recv(5, socket.MSG_PEEK), b"hello")
        finally:
            peer.detach()
        await server.waitFor(5)
        self.assertEqual(server.data, b"hello")

    async def test_largeWrite(self) -> None:
        transport, server = await self.connectPair()
        out = SendNow(transport)
        data = bytes(range(256)) * (1 << 15)  # 8 MiB: more than the kernel takes at once
        out.write(data)
        self.assertLess(out.sentDirectly, len(data))
        self.assertFalse(out.flushed)
        flushed: defer.Deferred[None] = defer.Deferred()
        out.whenFlushed(lambda: flushed.callback(None))
        await flushed
        self.assertTrue(out.flushed)
        await server.waitFor(len(data))
        self.assertEqual(server.data, data)
