"""
Tests for L{twisted_proxy.proxy.upstream}: the connection pool, the DNS cache and
the parent-proxy URL.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet import error as ierror
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IResolutionReceiver,
)
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twisted_proxy.proxy.dns import CachingResolver
from twisted_proxy.proxy.parent import ParentProxy
from twisted_proxy.testing import Harness


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        pass


@implementer(IHostnameResolver)
class FakeResolver:
    """
    Answers from a table; counts the names it was asked.
    """

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    def resolveHostName(
        self,
        receiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        self.asked.append(hostName)
        resolution = _Resolution(hostName)
        receiver.resolutionBegan(resolution)
        for address in self.table.get(hostName, []):
            kind: type[IPv4Address] | type[IPv6Address]
            kind = IPv6Address if ":" in address else IPv4Address
            receiver.addressResolved(kind("TCP", address, portNumber))
        receiver.resolutionComplete()
        return resolution


@implementer(IResolutionReceiver)
class Receiver:
    def __init__(self) -> None:
        self.addresses: list[IAddress] = []
        self.complete = False

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        pass

    def addressResolved(self, address: IAddress) -> None:
        self.addresses.append(address)

    def resolutionComplete(self) -> None:
        self.complete = True


class CachingResolverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.fake = FakeResolver({"a.test": ["192.0.2.1", "2001:db8::1"]})
        self.resolver = CachingResolver(self.fake, self.clock, ttl=60, negativeTtl=5)

    def resolve(self, name: str, port: int = 80) -> list[IAddress]:
        receiver = Receiver()
        self.resolver.resolveHostName(receiver, name, port)
        self.assertTrue(receiver.complete)
        return receiver.addresses

    def test_cachedForTTL(self) -> None:
        first = self.resolve("a.test", 80)
        self.assertEqual(
            first, [IPv4Address("TCP", "192.0.2.1", 80), IPv6Address("TCP", "2001:db8::1", 80)]
        )
        self.clock.advance(59)
        self.assertEqual(
            self.resolve("A.test", 8080),
            [IPv4Address("TCP", "192.0.2.1", 8080), IPv6Address("TCP", "2001:db8::1", 8080)],
        )
        self.assertEqual(self.fake.asked, ["a.test"])
        self.clock.advance(2)
        self.resolve("a.test")
        self.assertEqual(self.fake.asked, ["a.test", "a.test"])

    def test_failureCachedBriefly(self) -> None:
        self.assertEqual(self.resolve("nx.test"), [])
        self.clock.advance(4)
        self.resolve("nx.test")
        self.assertEqual(self.fake.asked, ["nx.test"])
        self.clock.advance(2)
        self.resolve("nx.test")
        self.assertEqual(self.fake.asked, ["nx.test", "nx.test"])

    def test_ipLiteralsNeverAsked(self) -> None:
        self.assertEqual(self.resolve("127.0.0.1", 81), [IPv4Address("TCP", "127.0.0.1", 81)])
        self.assertEqual(self.resolve("::1", 81), [IPv6Address("TCP", "::1", 81)])
        self.assertEqual(self.fake.asked, [])

    def test_disabled(self) -> None:
        resolver = CachingResolver(self.fake, self.clock, ttl=0, negativeTtl=0)
        for _ in range(2):
            resolver.resolveHostName(Receiver(), "a.test", 80)
        self.assertEqual(self.fake.asked, ["a.test", "a.test"])

    def test_bounded(self) -> None:
        resolver = CachingResolver(self.fake, self.clock, maxEntries=2)
        for name in ("a.test", "b.test", "c.test", "a.test"):
            resolver.resolveHostName(Receiver(), name, 80)
        self.assertEqual(self.fake.asked, ["a.test", "b.test", "c.test", "a.test"])


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class PoolTests(SynchronousTestCase):
    def relayOnce(self, h: Harness, proto, client, up=None):
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        if up is None:
            up, _ = h.connect()
        up.dataReceived(OK)
        return up

    def test_idleExpiry(self) -> None:
        h = Harness()
        h.pool.idleTimeout = 60
        proto, client = h.client()
        up = self.relayOnce(h, proto, client)
        self.assertEqual(h.pool.idleCount(), 1)
        h.clock.advance(61)
        self.assertEqual(h.pool.idleCount(), 0)
        self.assertTrue(up.transport.disconnecting)

    def test_closedByOriginNeverReused(self) -> None:
        """
        A pooled connection the origin closed leaves the pool at once: the
        next request opens a new connection.
        """
        h = Harness()
        proto, client = h.client()
        up = self.relayOnce(h, proto, client)
        up.connectionLost(Failure(ierror.ConnectionDone()))
        self.assertEqual(h.pool.idleCount(), 0)
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(len(h.attempts), 1)

    def test_connectionCloseNotPooled(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, _ = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(h.pool.idleCount(), 0)

    def test_unsolicitedBytesDropConnection(self) -> None:
        h = Harness()
        proto, client = h.client()
        up = self.relayOnce(h, proto, client)
        up.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertTrue(up.transport.disconnected)
        self.assertEqual(h.pool.idleCount(), 0)

    def test_keyedBySchemeHostPort(self) -> None:
        h = Harness()
        proto, client = h.client()
        self.relayOnce(h, proto, client)
        proto.dataReceived(b"GET http://a.test:81/ HTTP/1.1\r\nHost: a.test:81\r\n\r\n")
        self.assertEqual(len(h.attempts), 1)
        self.assertEqual(h.attempts[0][:2], ("a.test", 81))


class ParentProxyURLTests(SynchronousTestCase):
    def test_parse(self) -> None:
        parent = ParentProxy.fromURL("http://u%40x:p@[::1]:3128/")
        self.assertEqual((parent.host, parent.port), ("::1", 3128))
        self.assertEqual(parent.authorization, b"Basic dUB4OnA=")
        self.assertEqual(parent.describe(), "http://<credentials>@::1:3128")
        self.assertIsNone(ParentProxy.fromURL("http://p.test:8080").authorization)


class PoolCapTests(SynchronousTestCase):
    def test_capFollowsPeakConcurrency(self) -> None:
        """
        After six connections to one origin were busy at once, six idle ones
        are kept (over the cap of 2), even when they all finish together; with
        no load they expire after the idle timeout.
        """
        h = Harness()
        h.pool.minIdlePerHost = 2
        h.pool.idleTimeout = 60
        clients = [h.client() for _ in range(6)]
        for proto, _client in clients:
            proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        ups = [h.connect()[0] for _ in range(6)]
        for up in ups:
            up.dataReceived(OK)
        self.assertEqual(h.pool.idleCount(), 6)
        # The next round reuses them all.
        for proto, _client in clients:
            proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(h.attempts, [])
        self.assertEqual(h.pool.opened, 6)
        # When the load is gone, the surplus expires with the idle timeout.
        for up in ups:
            up.dataReceived(OK)
        h.clock.advance(61)
        self.assertEqual(h.pool.idleCount(), 0)

    def test_failedConnectNotCounted(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        h.fail(ierror.ConnectionRefusedError())
        self.assertEqual(h.pool._alive, {})
