"""
Behind a TCP load balancer: C{--listen haproxy:tcp:...} reads the PROXY
protocol header a balancer such as HAProxy sends first, and the proxy then
knows, logs, records and applies its rules to the real client's address,
not the balancer's.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_proxy.app.haproxy import PeerFirstHAProxyFactory
from twisted_proxy.app.tap import Options, makeService

from ._loopback import RawClient, listenLocal, origin, portNumber


class HAProxyListenTests(TestCase):
    async def startProxy(self) -> int:
        originPort = listenLocal(origin())
        self.addCleanup(originPort.stopListening)
        self.originPort = portNumber(originPort)
        config = Options()
        config.parseOptions(
            ["--listen", "haproxy:tcp:0:interface=127.0.0.1", "--history-headers", "all"]
        )
        service = makeService(config, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        port = await list(service)[0]._waitingForPort
        return port.getHost().port

    async def request(self, port: int, source: bytes) -> bytes:
        client = RawClient(
            b"PROXY TCP4 %s 127.0.0.1 56324 %d\r\n"
            % (source, port)
            + b"GET http://127.0.0.1:%d/small HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            b"Connection: close\r\n\r\n" % (self.originPort, self.originPort)
        )
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        return await client.done

    async def test_realClientAddressLogged(self) -> None:
        """
        The brief's accept line and the transaction record name the client
        the balancer announced.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        port = await self.startProxy()
        data = await self.request(port, b"192.168.7.9")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:100])
        texts = [formatEvent(e) for e in events]
        self.assertTrue(
            any(
                t.startswith("Connection has been accepted from: ('192.168.7.9', 56324)")
                for t in texts
            ),
            texts,
        )
        [record] = [e["record"] for e in events if "record" in e]
        self.assertEqual((record.clientHost, record.clientPort), ("192.168.7.9", 56324))

    async def test_rulesApplyToRealClient(self) -> None:
        """
        The client networks rule (default: loopback and private networks)
        judges the real client: a public address behind the balancer is
        refused though the balancer itself is on loopback.
        """
        port = await self.startProxy()
        data = await self.request(port, b"203.0.113.9")
        self.assertTrue(data.startswith(b"HTTP/1.1 403 "), data[:100])


class PeerFirstWrapperTests(SynchronousTestCase):
    """
    The wrapper itself, over a StringTransport: the proxy's protocol is
    connected once the header is read, whatever the segments.
    """

    def connect(self) -> tuple[IProtocol, list[object], StringTransport]:
        seen: list[object] = []

        class Recorder(Protocol):
            def connectionMade(self) -> None:
                assert self.transport is not None
                seen.append(self.transport.getPeer())

            def dataReceived(self, data: bytes) -> None:
                seen.append(data)

        factory = PeerFirstHAProxyFactory(Factory.forProtocol(Recorder))
        wrapper = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        assert wrapper is not None
        transport = StringTransport()
        wrapper.makeConnection(transport)
        return wrapper, seen, transport

    def test_v1InPieces(self) -> None:
        wrapper, seen, transport = self.connect()
        self.assertEqual(seen, [])
        for piece in (b"PRO", b"XY TCP4 192.0.2.1 ", b"127.0.0.1 5 8080\r\nGET"):
            wrapper.dataReceived(piece)
        self.assertEqual(seen, [IPv4Address("TCP", "192.0.2.1", 5), b"GET"])

    def test_v2(self) -> None:
        wrapper, seen, transport = self.connect()
        header = (
            b"\r\n\r\n\x00\r\nQUIT\n"  # signature
            + b"\x21\x11\x00\x0c"  # v2 PROXY, TCP over IPv4, 12 address bytes
            + bytes([192, 0, 2, 2, 127, 0, 0, 1])
            + (4321).to_bytes(2, "big")
            + (8080).to_bytes(2, "big")
        )
        wrapper.dataReceived(header[:10])
        wrapper.dataReceived(header[10:] + b"x")
        self.assertEqual(seen, [IPv4Address("TCP", "192.0.2.2", 4321), b"x"])

    def test_notProxyProtocol(self) -> None:
        """
        A connection that does not begin with a PROXY header is closed; the
        proxy's protocol never sees it.
        """
        wrapper, seen, transport = self.connect()
        wrapper.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(seen, [])

    def test_lostBeforeHeader(self) -> None:
        wrapper, seen, transport = self.connect()
        wrapper.dataReceived(b"PROXY TCP4 ")
        wrapper.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(seen, [])
