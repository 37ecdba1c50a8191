# -*- test-case-name: tests.test_server -*-
"""
L{ProxyFactory}: what the client connections share (the configuration,
the upstream pool, the clocks, the listening addresses, the connection
counts), and the L{Refuser} that answers a connection over a limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IHalfCloseableProtocol, IReactorThreads, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..http.errors import ProxyError, ServiceUnavailable
from ..http.framing import RequestHead, RequestParser
from ..records.emit import emitTransaction
from ..records.record import TransactionRecord
from .cache import HTTPCache
from .config import ProxyConfig
from .exchange import Exchange
from .generated import errorResponse
from .parent import ParentProxy
from .server import ProxyServerProtocol, fillRecordRequest
from .tcp import IStreamTransport, setNoDelay
from .upstream import UpstreamPool

__all__ = ["ProxyFactory", "Refuser"]

_transactionLog = Logger(namespace="twisted_proxy.transaction")


class ProxyFactory(Factory):
    """
    Builds L{ProxyServerProtocol}s and holds what they share: the
    configuration, the upstream pool, the clocks, and what is known of the
    running server (its listening addresses, its connections).

    @ivar config: the L{ProxyConfig} in force.
    @ivar cache: the L{HTTPCache}, or L{None}.
    @ivar pseudonym: this proxy's name in C{Via} and C{Proxy-Status}, as
        bytes (C{pseudonymText} as text).
    @ivar ownAddresses: C{(host, port)} pairs this proxy listens on; a
        request to one of them is a loop.
    @ivar stopping: the proxy is shutting down: no connection is kept open
        after its current response.
    @ivar requests: transactions finished so far.
    @ivar connections: the open client connections.
    @ivar _whenClosed: L{Deferred}s of L{whenConnectionsClosed} waiting for
        the last connection to close.
    """

    _log = Logger()
    noisy = False
    stopping = False
    requests = 0
    _connectionCounter = 0

    def __init__(
        self,
        config: ProxyConfig,
        clock: IReactorTime,
        pool: UpstreamPool,
        *,
        wallClock: Callable[[], float] = time.time,
        monoClock: Callable[[], float] = time.monotonic,
        transactionDetail: bool = False,
        connectionIdPrefix: str = "",
        cache: HTTPCache | None = None,
    ) -> None:
        """
        @param transactionDetail: attach the full record to transaction
            events (when the history, the access log or workers consume
            them; building it is not free).
        @param connectionIdPrefix: prefixed to connection ids (a worker's).
        @param cache: the HTTP cache, or L{None} for none.
        """
        self.reconfigure(config)
        self.clock = clock
        self.pool = pool
        self.wallClock = wallClock
        self.monoClock = monoClock
        self.transactionDetail = transactionDetail
        self.connectionIdPrefix = connectionIdPrefix
        self.cache = cache
        self.runInThread: Callable[..., Deferred[Any]]
        if IReactorThreads.providedBy(clock):
            reactor = clock
            self.runInThread = lambda f, *args: deferToThreadPool(
                reactor, reactor.getThreadPool(), f, *args
            )
        else:
            # A test clock has no threads: run it in place.
            self.runInThread = lambda f, *args: maybeDeferred(f, *args)
        self.ownAddresses: set[tuple[str, int]] = set()
        self._wildcardPorts: set[int] = set()
        self.connections: set[ProxyServerProtocol] = set()
        self._whenClosed: list[Deferred[None]] = []
        self._perClient: dict[str, int] = {}

    def reconfigure(self, config: ProxyConfig) -> None:
        """
        Use C{config} from now on: for new connections and new requests
        (a connection keeps its own connection-level settings).
        """
        self.config = config
        self.pseudonymText = config.pseudonym
        self.pseudonym = config.pseudonym.encode("ascii")

    def buildProtocol(self, addr: Any) -> Protocol:
        config = self.config
        if len(self.connections) >= config.maxConnections:
            return Refuser(
                self, "the proxy is at its limit of {} connections".format(config.maxConnections)
            )
        perClient = config.maxConnectionsPerClient
        if perClient is not None and self._perClient.get(getattr(addr, "host", ""), 0) >= perClient:
            return Refuser(self, "this client already has {} connections".format(perClient))
        return ProxyServerProtocol(self)

    def newRequestParser(self) -> RequestParser:
        config = self.config
        return RequestParser(config.maxTargetLength, config.maxHeaderBytes, config.maxHeaderCount)

    def addListeningAddress(self, host: str, port: int) -> None:
        """
        Record an address this proxy listens on (for loop detection).  An
        unspecified address (0.0.0.0, ::) means every local address.
        """
        if host in ("", "0.0.0.0", "::"):
            self._wildcardPorts.add(port)
            host = "127.0.0.1"
        self.ownAddresses.add((host, port))
        if host in ("127.0.0.1", "::1"):
            self.ownAddresses.add(("localhost", port))

    def parentFor(self, host: str) -> ParentProxy | None:
        """
        The parent proxy to reach C{host} through, or L{None} to go direct.
        """
        config = self.config
        if config.parent is None:
            return None
        if config.parentBypass is not None and config.parentBypass.matchHost(host) is not None:
            return None
        return config.parent

    def listensOnPort(self, port: int) -> bool:
        return any(p == port for _, p in self.ownAddresses)

    def isOwnAddress(self, host: str, port: int) -> bool:
        if (host, port) in self.ownAddresses:
            return True
        if port in self._wildcardPorts:
            return host.startswith("127.") or host in ("::1", "0.0.0.0", "::", "localhost")
        return False

    def connectionOpened(self, proto: ProxyServerProtocol) -> None:
        self.connections.add(proto)
        host = proto.peerHost
        self._perClient[host] = self._perClient.get(host, 0) + 1

    def connectionClosed(self, proto: ProxyServerProtocol) -> None:
        if proto in self.connections:
            self.connections.discard(proto)
            host = proto.peerHost
            left = self._perClient.get(host, 1) - 1
            if left:
                self._perClient[host] = left
            else:
                self._perClient.pop(host, None)
            if self._whenClosed and not self.connections:
                waiting, self._whenClosed = self._whenClosed, []
                for d in waiting:
                    d.callback(None)

    def whenConnectionsClosed(self) -> Deferred[None]:
        """
        A L{Deferred} that fires once no client connection is open: now if
        none is, else when the last one closes (its C{connectionLost}).  For
        whoever must not go on while a connection is left, such as a test
        that leaves no socket behind.
        """
        d: Deferred[None] = Deferred()
        if self.connections:
            self._whenClosed.append(d)
        else:
            d.callback(None)
        return d

    def nextConnectionId(self) -> str:
        self._connectionCounter += 1
        return "{}{}".format(self.connectionIdPrefix, self._connectionCounter)

    def exchangeFinished(self, ex: Exchange) -> None:
        """
        A transaction is over: complete its record and emit it.
        """
        self.requests += 1
        record = ex.record
        record.bytesFromClient = max(record.bytesFromClient, ex.bytesFromClient)
        record.bytesToUpstream = max(record.bytesToUpstream, ex.bytesToUpstream)
        record.bytesToClient = ex.bytesToClient
        self.emitRecord(record)

    def emitRecord(self, record: TransactionRecord) -> None:
        emitTransaction(
            _transactionLog,
            record,
            redact=self.config.redactHistory,
            detail=self.transactionDetail,
        )

    # stopping gracefully (used by the application's services)

    def closeIdleConnections(self) -> int:
        """
        Close the client connections that wait for a request (idle
        keep-alive connections); the others close after their current
        response once C{stopping} is set.

        @return: how many were closed.
        """
        return sum(proto.closeIfIdle() for proto in list(self.connections))

    def abortConnections(self) -> int:
        """
        Cut every client connection now (tunnels included): the end of a
        graceful stop that ran out of time.

        @return: how many were cut.
        """
        connections = list(self.connections)
        for proto in connections:
            proto.transport.abortConnection()
        return len(connections)

    def connectionStates(self) -> dict[str, int]:
        """
        How many client connections are in each state now (C{"READING"},
        C{"EXCHANGE"}, C{"TUNNEL"}, ...: see L{ProxyServerProtocol}), for
        the metrics.  It walks the connections: call it per scrape, not
        per request.
        """
        states: dict[str, int] = {}
        for proto in self.connections:
            state = proto.state
            states[state] = states.get(state, 0) + 1
        return states


@implementer(IHalfCloseableProtocol)
class Refuser(Protocol):
    """
    A connection over a connection limit: answer 503 to whatever request
    head arrives within a second, then close; close if nothing arrives.
    The existing connections carry on.  The 503 is a transaction record,
    like every response the proxy sends.
    """

    _log = Logger()
    transport: IStreamTransport
    waitForRequest = 1.0

    _answered = False

    def __init__(self, factory: ProxyFactory, why: str) -> None:
        self.factory = factory
        self.why = why
        self._timer: Any = None

    def connectionMade(self) -> None:
        setNoDelay(self.transport)
        peer = self.transport.getPeer()
        self._peer = (getattr(peer, "host", "") or "", getattr(peer, "port", 0) or 0)
        self._acceptedWall = self.factory.wallClock()
        self._acceptedMono = self.factory.monoClock()
        self._log.warn("Refusing a connection from {peer}: {why}.", peer=self._peer, why=self.why)
        self._timer = self.factory.clock.callLater(self.waitForRequest, self._giveUp)

    def dataReceived(self, received: bytes) -> None:
        if self._answered:
            return
        self._answered = True
        self._timer.cancel()
        self._timer = None
        factory = self.factory
        error = ServiceUnavailable("Too many connections: {}; try again later.".format(self.why))
        head: RequestHead | None = None
        try:
            events = factory.newRequestParser().feed(received)
        except ProxyError:
            events = []
        if events and type(events[0]) is RequestHead:
            head = events[0]
        response = errorResponse(
            error, factory.pseudonymText, head, close=True, extraHeaders=(("Retry-After", "5"),)
        )
        record = TransactionRecord(
            monoClock=factory.monoClock,
            connectionId=factory.nextConnectionId(),
            sequence=1,
            clientHost=self._peer[0],
            clientPort=self._peer[1],
            acceptedWall=self._acceptedWall,
            acceptedMono=self._acceptedMono,
        )
        record.mark("requestHead")
        if head is not None:
            fillRecordRequest(record, head)
        record.kind = "refused"
        record.proxyError = error.proxyStatus
        record.errorDetail = error.detail
        record.status, record.reason, record.responseVersion = (
            response.status,
            response.reason,
            "HTTP/1.1",
        )
        record.responseHeaders = response.headers
        record.mark("responseHead")
        data = response.bytes()
        record.bytesFromClient = len(received)
        record.bytesToClient = len(data)
        self.transport.write(data)
        record.mark("responseComplete")
        factory.emitRecord(record)
        # Shut down our side; whatever the client still sends is dropped.
        loseWrite = getattr(type(self.transport), "loseWriteConnection", None)
        if loseWrite is not None:
            loseWrite(self.transport)
            self._timer = factory.clock.callLater(factory.config.lingerTimeout, self._giveUp)
        else:
            self.transport.loseConnection()

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def _giveUp(self) -> None:
        self._timer = None
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
