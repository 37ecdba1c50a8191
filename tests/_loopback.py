"""
Helpers for the loopback integration tests: a real C{twisted.web} origin on
127.0.0.1 (L{origin}, L{slowOrigin}), the proxy service built by
L{makeService <twisted_proxy.app.tap.makeService>} in front of it
(L{ProxyTestMixin}), and a raw client that sends exact bytes
(L{RawClient}, L{rawRequest}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IListeningPort, IReactorSSL, ISystemHandle, ITCPTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ProxyAgent, readBody
from twisted.web.http_headers import Headers
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Site

from tests._typing import TestCaseMixin
from twisted_proxy.app.service import ProxyService
from twisted_proxy.app.tap import Options, makeService
from twisted_proxy.proxy.factory import ProxyFactory


def listenLocal(factory: Any, tls: Any = None, interface: str = "127.0.0.1") -> IListeningPort:
    """
    Listen on C{interface} (127.0.0.1), on a port the system chooses, with
    C{factory} (a L{Site}, a C{Factory.forProtocol(...)}: Twisted's
    annotations of C{listenTCP} take only some of its factories), over TLS
    with the server options C{tls} if given.
    """
    if tls is None:
        return reactor.listenTCP(0, factory, interface=interface)
    return IReactorSSL(reactor).listenSSL(0, factory, tls, interface=interface)


def connectionsClosed(factory: ProxyFactory, timeout: float = 5.0) -> defer.Deferred[None]:
    """
    Fires once C{factory} has no client connection open; fails with
    L{defer.TimeoutError} if one is still open after C{timeout} seconds (a
    bound, not a wait: it fires as soon as the last one closes).
    """
    return factory.whenConnectionsClosed().addTimeout(timeout, reactor)


def proxyService(config: Options, onReactor: Any = reactor) -> ProxyService:
    """
    What C{makeService} builds for one process, a L{ProxyService} (the
    test fails if it is a supervisor of workers).
    """
    service = makeService(config, onReactor)
    assert isinstance(service, ProxyService), service
    return service


class ITCPConnection(ITCPTransport, ISystemHandle):
    """
    A TCP connection's transport, as tests of real connections use it (the
    socket too, through C{getHandle}).  For the type checker: Twisted types
    C{Protocol.transport} as an optional L{ITransport}.
    """


def portNumber(port: IListeningPort) -> int:
    """
    The TCP port number C{port} listens on.
    """
    address = port.getHost()
    assert isinstance(address, (IPv4Address, IPv6Address)), address
    return address.port


class Small(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return b"hello from the origin\n"


class Big(Resource):
    """
    1 MiB, written in 16 KiB pieces as the transport asks for them.
    """

    isLeaf = True
    size = 1024 * 1024

    def render_GET(self, request):
        request.setHeader(b"content-length", b"%d" % self.size)
        chunk = b"z" * 16384
        remaining = [self.size]

        class Producer:
            def resumeProducing(self):
                if remaining[0] <= 0:
                    return
                remaining[0] -= len(chunk)
                request.write(chunk)
                if remaining[0] <= 0:
                    request.unregisterProducer()
                    request.finish()

            def stopProducing(self):
                remaining[0] = 0

        request.registerProducer(Producer(), False)
        return NOT_DONE_YET


class Echo(Resource):
    isLeaf = True

    def render_POST(self, request):
        body = request.content.read()
        return b"got %d bytes: %s" % (len(body), body[:32])


class Chunked(Resource):
    """
    A response without Content-Length: twisted.web sends it chunked.
    """

    isLeaf = True

    def render_GET(self, request):
        request.write(b"part one, ")
        reactor.callLater(0, lambda: (request.write(b"part two"), request.finish()))
        return NOT_DONE_YET


class _Root(Resource):
    """
    The origin's root: unknown paths are a 404 from C{twisted.web.pages}
    (Resource's own default, C{NoResource}, is deprecated: it does not
    escape what it echoes).
    """

    def getChild(self, path: bytes, request: Any) -> IResource:
        return notFound()


def origin() -> Site:
    root = _Root()
    root.putChild(b"small", Small())
    root.putChild(b"big", Big())
    root.putChild(b"echo", Echo())
    root.putChild(b"chunked", Chunked())
    return Site(root)


class ProxyTestMixin(TestCaseMixin):
    """
    Start a loopback origin and the proxy service built by makeService.
    """

    async def setUpProxy(self, *args: str) -> None:
        originPort = listenLocal(origin())
        self.addCleanup(originPort.stopListening)
        self.origin = "http://127.0.0.1:%d" % (portNumber(originPort),)
        config = Options()
        config.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", *args])
        self.service = proxyService(config)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.addCleanup(self.proxyConnectionsClosed)
        listening = list(self.service)[0]
        port = await listening._waitingForPort
        self.proxyPort = port.getHost().port
        self.agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxyPort), reactor)

    async def proxyConnectionsClosed(self) -> None:
        """
        Wait until the proxy has closed its side of every client
        connection, so no socket outlives the test.
        """
        await connectionsClosed(self.service.factory)

    async def get(self, path: str, method: bytes = b"GET", body=None):
        response = await self.agent.request(
            method, (self.origin + path).encode("ascii"), Headers(), body
        )
        content = await readBody(response)
        return response, content


class Slow(Resource):
    """
    C{b"slow"} ten times, one every 0.1 s: a transfer that is in progress
    for a second.
    """

    isLeaf = True
    pieces = 10
    interval = 0.1

    def render_GET(self, request):
        request.setHeader(b"content-length", b"%d" % (4 * self.pieces,))
        left = [self.pieces]
        calls = []

        def write():
            if request.finished or request._disconnected:
                return
            request.write(b"slow")
            left[0] -= 1
            if left[0]:
                calls.append(reactor.callLater(self.interval, write))
            else:
                request.finish()

        def cancel(_):
            for call in calls:
                if call.active():
                    call.cancel()

        request.notifyFinish().addErrback(cancel)
        write()
        return NOT_DONE_YET


def slowOrigin() -> Site:
    """
    The integration tests' origin, with C{/slow} (L{Slow}).
    """
    site = origin()
    site.resource.putChild(b"slow", Slow())
    return site


class RawClient(Protocol):
    """
    Sends C{request} (if any); collects everything until the connection
    closes (L{done}).  L{waitFor} fires once the bytes received contain a
    marker.
    """

    transport: ITCPTransport

    def __init__(self, request: bytes = b"") -> None:
        self.request = request
        self.received = b""
        self.done: defer.Deferred[bytes] = defer.Deferred()
        self._waiting: list[tuple[bytes, defer.Deferred[None]]] = []

    def connectionMade(self) -> None:
        if self.request:
            self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self._check()

    def _check(self) -> None:
        for marker, d in list(self._waiting):
            if marker in self.received:
                self._waiting.remove((marker, d))
                d.callback(None)

    def waitFor(self, marker: bytes) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append((marker, d))
        self._check()
        return d

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback(self.received)


async def rawRequest(port: int, data: bytes) -> bytes:
    """
    Send C{data} to 127.0.0.1:C{port}; everything received until the
    connection closes.
    """
    client = RawClient(data)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    return await client.done
