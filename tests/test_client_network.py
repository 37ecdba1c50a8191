"""
Tests for L{twisted_proxy.client.network}: connecting to an address at
once (L{ConnectNowEndpoint}), and name resolution as its own step
(L{ThreadResolver}, asked only about C{localhost}).
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import defer, error, reactor
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests._loopback import ITCPConnection, listenLocal, portNumber
from twisted_proxy.client.network import (
    ConnectNowEndpoint,
    ThreadResolver,
    _lookUp,
    addressEndpoint,
    isAddress,
    tcpInfo,
)


class Made(Protocol):
    transport: ITCPConnection

    def __init__(self) -> None:
        self.made: defer.Deferred[None] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.made.callback(None)

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


class Quiet(Factory):
    noisy = False

    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: object) -> Protocol:
        return self._protocol


class ConnectNowEndpointTests(TestCase):
    def listen(self, interface: str = "127.0.0.1") -> tuple[int, list[Made]]:
        accepted: list[Made] = []

        def build() -> Made:
            proto = Made()
            accepted.append(proto)
            return proto

        port = listenLocal(Factory.forProtocol(build), interface=interface)
        self.addCleanup(port.stopListening)
        return portNumber(port), accepted

    async def test_connects(self) -> None:
        """
        The connection is made; the transport is a Twisted TCP transport
        (with C{TCP_NODELAY} settable); C{connectedAt} is when the kernel
        established it: on loopback, inside the C{connect()} call, so the
        call's time plus the handshake's round trip (C{TCP_INFO}), never the
        later time the call returned.
        """
        number, accepted = self.listen()
        times = iter([1.0, 2.0, 3.0, 4.0])
        endpoint = ConnectNowEndpoint(reactor, "127.0.0.1", number, monotonic=lambda: next(times))
        client = Made()
        proto = await endpoint.connect(Quiet(client))
        self.assertIs(proto, client)
        self.assertTrue(client.made.called)
        self.assertEqual(endpoint.connectCalledAt, 1.0)
        assert endpoint.connectedAt is not None
        handle = client.transport.getHandle()
        assert isinstance(handle, socket.socket)
        if tcpInfo(handle) is not None:
            self.assertGreater(endpoint.connectedAt, 1.0)
            self.assertLess(endpoint.connectedAt, 1.1)
        else:
            self.assertEqual(endpoint.connectedAt, 2.0)
        transport = client.transport
        self.assertTrue(ITCPTransport.providedBy(transport))
        transport.setTcpNoDelay(True)
        self.assertTrue(transport.getTcpNoDelay())
        self.assertEqual(transport.getPeer().port, number)
        self.assertEqual(transport.getHost().host, "127.0.0.1")
        transport.loseConnection()
        await client.lost
        await accepted[0].lost

    async def test_ipv6(self) -> None:
        if not socket.has_ipv6:
            raise self.skipTest("no IPv6")
        try:
            number, accepted = self.listen("::1")
        except error.CannotListenError:
            raise self.skipTest("no IPv6 loopback") from None
        client = Made()
        await ConnectNowEndpoint(reactor, "::1", number).connect(Quiet(client))
        self.assertEqual(client.transport.getPeer().host, "::1")
        client.transport.loseConnection()
        await client.lost
        await accepted[0].lost

    async def test_refused(self) -> None:
        port = listenLocal(Factory.forProtocol(Protocol))
        number = portNumber(port)
        await defer.maybeDeferred(port.stopListening)
        with self.assertRaises(error.ConnectionRefusedError):
            await ConnectNowEndpoint(reactor, "127.0.0.1", number).connect(Quiet(Made()))


class FakeReactor:
    """
    The real reactor for adopting a socket, a L{Clock} for time, and
    writers that are recorded but never told the socket is writable.
    """

    def __init__(self) -> None:
        self.clock = Clock()
        self.writers: list[Any] = []

    def callLater(self, *args: Any, **kwargs: Any) -> Any:
        return self.clock.callLater(*args, **kwargs)

    def addWriter(self, writer: Any) -> None:
        self.writers.append(writer)

    def removeWriter(self, writer: Any) -> None:
        self.writers.remove(writer)


class ConnectNowGivingUpTests(SynchronousTestCase):
    """
    An attempt that does not finish is given up after the timeout, or when
    cancelled; its socket is closed and nothing is left registered.
    """

    def setUp(self) -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        self.addCleanup(listener.close)
        self.number = listener.getsockname()[1]
        self.reactor = FakeReactor()

    def test_timeout(self) -> None:
        endpoint = ConnectNowEndpoint(self.reactor, "127.0.0.1", self.number, timeout=5)
        d = endpoint.connect(Quiet(Made()))
        [writer] = self.reactor.writers
        self.assertNoResult(d)
        self.reactor.clock.advance(5)
        self.failureResultOf(d, error.TimeoutError)
        self.assertEqual(self.reactor.writers, [])
        self.assertEqual(writer._socket.fileno(), -1)

    def test_cancel(self) -> None:
        endpoint = ConnectNowEndpoint(self.reactor, "127.0.0.1", self.number)
        d = endpoint.connect(Quiet(Made()))
        [writer] = self.reactor.writers
        d.cancel()
        self.failureResultOf(d, error.ConnectingCancelledError)
        self.assertEqual((self.reactor.writers, self.reactor.clock.getDelayedCalls()), ([], []))
        self.assertEqual(writer._socket.fileno(), -1)


class TCPInfoTests(SynchronousTestCase):
    def test_states(self) -> None:
        """
        The state (1: established) and the handshake's round trip in
        microseconds; the time a connect call establishes is capped at the
        time it is asked.
        """
        if getattr(socket, "TCP_INFO", None) is None:
            raise self.skipTest("no TCP_INFO here")
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        self.addCleanup(listener.close)
        sock = socket.socket()
        self.addCleanup(sock.close)
        info = tcpInfo(sock)
        assert info is not None
        self.assertNotEqual(info[0], 1)
        endpoint = ConnectNowEndpoint(None, "127.0.0.1", 1, monotonic=lambda: 5.0)
        self.assertIsNone(endpoint._establishedAt(sock, 4.0))
        sock.connect(listener.getsockname())
        info = tcpInfo(sock)
        assert info is not None
        state, rtt = info
        self.assertEqual(state, 1)
        self.assertLess(rtt, 1_000_000)
        self.assertEqual(endpoint._establishedAt(sock, 4.0), 4.0 + rtt / 1e6)
        self.assertEqual(endpoint._establishedAt(sock, 4.9999999), 5.0)


class AddressEndpointTests(SynchronousTestCase):
    def test_choice(self) -> None:
        self.assertIsInstance(addressEndpoint(reactor)("127.0.0.1", 1, 1), ConnectNowEndpoint)
        from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint

        clock = Clock()  # no IReactorSocket: Twisted's own endpoints
        self.assertIsInstance(addressEndpoint(clock)("127.0.0.1", 1, 1), TCP4ClientEndpoint)
        self.assertIsInstance(addressEndpoint(clock)("::1", 1, 1), TCP6ClientEndpoint)

    def test_isAddress(self) -> None:
        for host in ("127.0.0.1", "::1", "2001:db8::1"):
            self.assertTrue(isAddress(host), host)
        for host in ("localhost", "proxy.example", "1.2.3", ""):
            self.assertFalse(isAddress(host), host)


class ThreadResolverTests(TestCase):
    async def test_localhost(self) -> None:
        resolver = ThreadResolver(reactor)
        await resolver.prepare()
        addresses = await resolver.resolve("localhost", 8080)
        self.assertTrue(addresses)
        self.assertTrue(set(addresses) <= {"127.0.0.1", "::1"}, addresses)
        self.assertEqual(len(addresses), len(set(addresses)))

    def test_failure(self) -> None:
        """
        A name that cannot be looked up is a L{error.DNSLookupError}.  (An
        invalid name fails before any query: nothing leaves this machine.)
        """
        with self.assertRaises(error.DNSLookupError):
            _lookUp("a..b", 80)
