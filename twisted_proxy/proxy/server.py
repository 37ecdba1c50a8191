# -*- test-case-name: tests.test_server -*-
"""
The proxy's client side: L{ProxyServerProtocol} (one client connection)
and L{ProxyFactory}.

The connection frames the client's bytes into requests
(L{twisted_proxy.http.framing.RequestParser}) and hands each to an
L{Exchange <twisted_proxy.proxy.exchange.Exchange>}, which does the
request's work; the connection keeps what belongs to the connection: the
queue of parsed events, why reading is paused, the client timeouts, the
rest of a request answered before it was read, and closing.

Requests on one connection are answered in order, one at a time; requests a
client pipelines wait in the queue, and the connection stops reading while
anything waits there, so a client costs a bounded amount of memory however
much it sends.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IHalfCloseableProtocol, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..http.errors import ProxyError, ServiceUnavailable
from ..http.fields import redactHeaders
from ..http.framing import EndOfMessage, RequestHead, RequestParser
from ..records.history import TransactionRecord, emitEvent, emitTransaction
from .config import ProxyConfig
from .exchange import Exchange
from .generated import errorResponse
from .tcp import setNoDelay
from .tunnel import Tunnel
from .upstream import Deadline, ParentProxy, UpstreamPool

__all__ = ["ProxyFactory", "ProxyServerProtocol"]


class _ClockText:
    """
    Local time to the microsecond, as the brief prints it (C{12:34:56.123456});
    the hours, minutes and seconds are formatted once per second.
    """

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, when: float) -> str:
        second = int(when)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%H:%M:%S", time.localtime(second))
        return "%s.%06d" % (self._text, int((when - second) * 1000000))


_clockText = _ClockText()

# Module-level loggers: a Logger as a class attribute is a descriptor that
# builds a new Logger on every access, which the hot path cannot afford.
_briefLog = Logger(namespace="twisted_proxy.proxy.server.ProxyServerProtocol")
_transactionLog = Logger(namespace="twisted_proxy.transaction")


def _literal(text: str) -> str:
    """
    C{text} as a C{log_format} that formats to itself.
    """
    return text.replace("{", "{{").replace("}", "}}")


def _headText(line: bytes, headers: list[tuple[bytes, bytes]]) -> str:
    """
    A message head as the brief prints it (C{\\r\\n} shown escaped),
    credentials and cookies redacted.
    """
    parts = [line.decode("latin-1")]
    parts.extend([n + ": " + v for n, v in redactHeaders(headers)])
    return "\\r\\n".join(parts) + "\\r\\n\\r\\n"


# ProxyServerProtocol._state values.
READING = "READING"
EXCHANGE = "EXCHANGE"
DISCARDING = "DISCARDING"
TUNNEL = "TUNNEL"
LINGERING = "LINGERING"
CLOSING = "CLOSING"
CLOSED = "CLOSED"

_HANDLING = (READING, EXCHANGE, DISCARDING)


@implementer(IHalfCloseableProtocol)
class ProxyServerProtocol(Protocol):
    """
    One client connection.

    States (C{_state}):
      - C{READING}: waiting for (the rest of) a request head.
      - C{EXCHANGE}: a request is being handled (L{_exchange}).
      - C{DISCARDING}: the request was answered before its body was read;
        the rest of the body is read and dropped (up to
        C{discardBodyMax} bytes), then the next request is read.
      - C{TUNNEL}: the connection is a byte tunnel (CONNECT or 101).
      - C{LINGERING}: the last response is written and the write side
        shut down; input is read and dropped until the client closes or
        C{lingerTimeout} passes, so that a client still sending its request
        body reads the response instead of a reset (RFC 9112 9.6).
      - C{CLOSING}: the last response is written; the connection closes.
      - C{CLOSED}: the connection is gone.

    @ivar deadline: the connection's one timeout in force: idle or header
        while reading, the exchange's response or stalled-body timeout
        during an exchange (exchanges are one at a time).
    @ivar _queue: parsed events not yet handled (pipelined requests, body
        bytes that arrived before the upstream connection was ready).
    @ivar _pauses: why reading from the client is paused (reading resumes
        when the set is empty).
    @ivar _requestRead: the end of the current request has been taken from
        the queue.
    @ivar _discarded: body bytes of an answered request dropped so far.
    @ivar _readClosed: the client half-closed; close once the requests it
        sent are answered.
    @ivar _parseError: the client sent bytes that are not HTTP after
        complete requests; it is answered once those are.
    @ivar _tunnel: the L{Tunnel} in state C{TUNNEL}.
    @ivar _refusal: the policy refused this client: its first request is
        answered with this error, then the connection closes.
    """

    _log = Logger()

    _state = READING
    _exchange: Exchange | None = None
    _abortTimer: Any = None
    _sequence = 0
    _readClosed = False
    _requestRead = False
    _processing = False
    _discarded = 0
    _parseError: ProxyError | None = None
    _refusal: ProxyError | None = None
    _tunnel: Tunnel | None = None
    _timerKind = ""

    def __init__(self, factory: ProxyFactory) -> None:
        self.factory = factory
        self.config = factory.config
        self._clock = factory.clock
        self._parser = factory.newRequestParser()
        self._queue: deque[Any] = deque()
        self._pauses: set[str] = set()
        self.deadline = Deadline(self._clock)

    # connection life

    def connectionMade(self) -> None:
        factory = self.factory
        transport = self.transport
        setNoDelay(transport)
        self._acceptedWall = factory.wallClock()
        self._acceptedMono = factory.monoClock()
        self.connectionId = factory.nextConnectionId()
        peer = transport.getPeer()
        self.peerHost = getattr(peer, "host", "") or ""
        self.peerPort = getattr(peer, "port", 0) or 0
        if isinstance(peer, (IPv4Address, IPv6Address)):
            origin = "('{}', {})".format(self.peerHost, self.peerPort)
        else:
            name = getattr(transport.getHost(), "name", None)
            origin = "unix:" + (name.decode() if isinstance(name, bytes) else str(name or "?"))
        self.say("Connection has been accepted from: " + origin, peer=(self.peerHost, self.peerPort))
        factory.connectionOpened(self)
        # A unix-socket client has no IP address: the socket file's
        # permissions decide who may connect, not the network rules.
        if isinstance(peer, (IPv4Address, IPv6Address)):
            self._refusal = self.config.policy.checkClient(self.peerHost)
            if self._refusal is not None:
                self._refusal.closeConnection = True
        self._armTimer(self.config.idleTimeout, self._idleTimedOut)

    def connectionLost(self, reason: Failure | None = None) -> None:
        state = self._state
        self._state = CLOSED
        self.deadline.cancel()
        if self._abortTimer is not None and self._abortTimer.active():
            self._abortTimer.cancel()
        ex = self._exchange
        if state == TUNNEL:
            assert self._tunnel is not None
            self._tunnel.clientConnectionLost(reason)
        elif ex is not None:
            ex.abandon("the client closed the connection")
        self._queue.clear()
        self.factory.connectionClosed(self)
        self.say("Connection has been closed.", peer=(self.peerHost, self.peerPort))

    def readConnectionLost(self) -> None:
        """
        The client half-closed: answer what it sent, then close.
        """
        state = self._state
        if state == TUNNEL:
            assert self._tunnel is not None
            self._tunnel.clientReadClosed()
            return
        if state in (LINGERING, DISCARDING):
            self._closeConnection()
            return
        self._readClosed = True
        ex = self._exchange
        if ex is not None and not ex.requestSent and not self.requestFullyRead():
            # The client will never send the rest of this request.
            ex.abandon("the client closed before sending the whole request")
            self.abort()
            return
        if ex is None and not self._queue:
            self._closeConnection()

    def writeConnectionLost(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        state = self._state
        if state == TUNNEL:
            assert self._tunnel is not None
            self._tunnel.dataFromClient(data)
            return
        if state not in _HANDLING or self._parseError is not None:
            # Lingering, closing or closed: what comes now is dropped.
            return
        try:
            events = self._parser.feed(data)
        except ProxyError as e:
            complete = e.events
            ex = self._exchange
            if not complete and (ex is None or not (ex.requestSent or self.requestFullyRead())):
                self._clientError(e)
                return
            # Answer the requests that came before the bad one first, and
            # read nothing more.
            self._parseError = e
            self.pauseReading("error")
            events = complete
        if state == READING:
            if events:
                self._cancelTimer()
            elif self._timerKind != "header":
                self._armTimer(self.config.headerTimeout, self._headerTimedOut, "header")
        elif state == DISCARDING:
            self._armTimer(self.config.bodyTimeout, self._discardTimedOut, "discard")
        self._queue.extend(events)
        self.processQueue()

    def say(self, text: str, **fields: object) -> None:
        """
        Log one of the brief's lines, ending with the local time to the
        microsecond.  The text is rendered here, once, so that formatting
        the event (for the console or a log file) is nearly free; the
        structured fields ride along for other observers.
        """
        # log_system: twistd's text observer prints it as is, instead of
        # formatting the namespace and level for every line.
        fields["log_system"] = "proxy"
        emitEvent(
            _briefLog,
            _literal(text) + "  [" + _clockText(self.factory.wallClock()) + "]",
            fields,
            self,
        )

    # the event queue

    def processQueue(self) -> None:
        """
        Hand queued events to whoever takes them now: a request head starts
        an exchange; body events go to the exchange once it can send them
        on (or are dropped if their request was already answered).
        """
        if self._processing:
            # Called back from inside the loop below, which goes on.
            return
        self._processing = True
        try:
            self._processLoop()
        finally:
            self._processing = False

    def _processLoop(self) -> None:
        queue = self._queue
        while queue and self._state in _HANDLING:
            event = queue[0]
            t = type(event)
            ex = self._exchange
            if t is RequestHead:
                if ex is not None or self._state == DISCARDING:
                    break
                queue.popleft()
                self._beginExchange(event)
                continue
            if ex is None:
                # The rest of a request answered before it was read.
                queue.popleft()
                self._discard(event)
                continue
            if ex.wantsBody:
                queue.popleft()
                if t is EndOfMessage:
                    self._requestRead = True
                    ex.requestEnd(event.trailers)
                else:
                    ex.requestBody(event.data)
                continue
            if ex.requestSent:
                # The end of a request without a body, or of a CONNECT.
                queue.popleft()
                if t is EndOfMessage:
                    self._requestRead = True
                continue
            # The exchange cannot take the body yet (authorizing,
            # connecting): it waits here, and reading stops.
            break
        if queue:
            self.pauseReading("queue")
            return
        self.resumeReading("queue")
        if self._state in _HANDLING:
            if self._parseError is not None and self._exchange is None:
                self._clientError(self._parseError)
            elif self._readClosed and self._exchange is None and self._state == READING:
                self._closeConnection()

    def pauseReading(self, reason: str) -> None:
        """
        Stop reading from the client for C{reason} (until L{resumeReading}
        with the same reason, and every other reason is gone too).
        """
        if not self._pauses and self._state not in (CLOSING, CLOSED):
            self.transport.pauseProducing()
        self._pauses.add(reason)

    def resumeReading(self, reason: str) -> None:
        if reason in self._pauses:
            self._pauses.discard(reason)
            if not self._pauses and self._state not in (CLOSING, CLOSED, TUNNEL):
                self.transport.resumeProducing()

    def isPaused(self, reason: str) -> bool:
        return reason in self._pauses

    # requests

    def _newRecord(self, head: RequestHead | None) -> TransactionRecord:
        factory = self.factory
        self._sequence += 1
        record = TransactionRecord(
            wallClock=factory.wallClock,
            monoClock=factory.monoClock,
            connectionId=self.connectionId,
            sequence=self._sequence,
            clientHost=self.peerHost,
            clientPort=self.peerPort,
            acceptedWall=self._acceptedWall,
            acceptedMono=self._acceptedMono,
        )
        record.mark("requestHead")
        if head is not None:
            fillRecordRequest(record, head)
        return record

    def _beginExchange(self, head: RequestHead) -> None:
        self._state = EXCHANGE
        self._requestRead = False
        self._cancelTimer()
        record = self._newRecord(head)
        self.say(
            "Request has been received: "
            + _headText(head.method + b" " + head.target + b" HTTP/" + head.version, head.headers),
            peer=(self.peerHost, self.peerPort),
        )
        upgrade = self._parser.switched and head.method != b"CONNECT"
        ex = self._exchange = Exchange(self, head, record, upgrade)
        ex.start(self._refusal)

    def requestFullyRead(self) -> bool:
        """
        Whether the end of the current request has been read (taken, or
        waiting in the queue before any next request).
        """
        if self._requestRead:
            return True
        for event in self._queue:
            t = type(event)
            if t is EndOfMessage:
                return True
            if t is RequestHead:
                break
        return False

    def canDiscardRest(self) -> bool:
        """
        Whether the rest of the current request, not read yet, can be read
        and dropped after its response so that the connection stays open
        (RFC 9112 9.3): its length is known and within C{discardBodyMax},
        and the client is not waiting for a C{100 Continue} before sending
        it (it may never send it).
        """
        if self.requestFullyRead():
            return True
        ex = self._exchange
        if ex is None:
            return False
        head = ex.head
        remaining = self._parser.bodyRemaining
        if head.contentLength is None or remaining is None:
            return False
        if remaining == head.contentLength and (head.get(b"expect") or b"").lower() == b"100-continue":
            return False
        return remaining <= self.config.discardBodyMax

    def startTunnel(self, tunnel: Tunnel, upstreamTransport: Any, fromUpstream: bytes) -> None:
        """
        From now on the connection is a byte tunnel with C{upstreamTransport}
        (CONNECT, or an upgrade the origin accepted).
        """
        self._state = TUNNEL
        self._cancelTimer()
        self._pauses.clear()
        self._tunnel = tunnel
        pending = self._parser.trailingData
        self._parser.trailingData = b""
        tunnel.start(
            self.transport,
            upstreamTransport,
            pendingFromClient=pending,
            pendingFromUpstream=fromUpstream,
        )

    def exchangeDone(self, ex: Exchange, close: bool) -> None:
        """
        C{ex} has sent its whole response: read the next request (after
        dropping the rest of this one, if it was answered early), or close.
        """
        self._exchange = None
        if self._state not in _HANDLING:
            return
        fullyRead = ex.requestSent or self.requestFullyRead()
        if close or self.factory.stopping or self._readClosed and not any(
            type(e) is RequestHead for e in self._queue
        ):
            if fullyRead:
                self._closeConnection()
            else:
                self._lingeringClose()
            return
        if not fullyRead:
            self._state = DISCARDING
            self._discarded = 0
            self._armTimer(self.config.bodyTimeout, self._discardTimedOut, "discard")
            self.processQueue()
            return
        self._nextRequest()

    def _nextRequest(self) -> None:
        self._state = READING
        # Drop what is left of the request just answered (the end of a
        # request without a body).
        queue = self._queue
        while queue and type(queue[0]) is not RequestHead:
            queue.popleft()
        if self._parser.switched:
            # An upgrade that did not happen: the bytes after the request
            # are HTTP again.
            try:
                queue.extend(self._parser.resume())
            except ProxyError as e:
                self._clientError(e)
                return
        self._armTimer(self.config.idleTimeout, self._idleTimedOut)
        self.processQueue()

    def _discard(self, event: object) -> None:
        """
        Drop a piece of a request that was answered before it was read; at
        its end, read the next request.
        """
        if type(event) is EndOfMessage:
            if self._state == DISCARDING:
                self._nextRequest()
            return
        self._discarded += len(event.data)  # type: ignore[attr-defined]
        if self._discarded > self.config.discardBodyMax:
            self._lingeringClose()

    def _discardTimedOut(self) -> None:
        self._log.info(
            "The rest of a request body from {peer} stalled; closing.",
            peer=(self.peerHost, self.peerPort),
        )
        self._closeConnection()

    # closing

    def _closeConnection(self) -> None:
        if self._state in (CLOSING, CLOSED):
            return
        self._state = CLOSING
        self._queue.clear()
        self._cancelTimer()
        self.transport.loseConnection()
        self._abortTimer = self._clock.callLater(self.config.abortTimeout, self._abortNow)

    def _lingeringClose(self) -> None:
        """
        Close without resetting a client that may still be sending: shut
        down our write side once the response is out, then read and drop
        whatever comes until the client closes or C{lingerTimeout} passes.
        """
        loseWrite = getattr(type(self.transport), "loseWriteConnection", None)
        if loseWrite is None:
            self._closeConnection()
            return
        self._state = LINGERING
        self._queue.clear()
        self._cancelTimer()
        loseWrite(self.transport)
        self._pauses.clear()
        self.transport.resumeProducing()
        self._abortTimer = self._clock.callLater(self.config.lingerTimeout, self._abortNow)

    def _abortNow(self) -> None:
        self._abortTimer = None
        if self._state != CLOSED:
            self.transport.abortConnection()

    def abort(self) -> None:
        """
        Drop the connection now (a response was cut short, or the request
        can never be complete).
        """
        self._state = CLOSED
        self._queue.clear()
        self.transport.abortConnection()

    def _clientError(self, error: ProxyError) -> None:
        """
        The client sent bytes that are not a well-framed request.
        """
        ex = self._exchange
        if ex is not None and ex.responseStarted:
            # Mid-request-body garbage after the response began: cut it.
            ex.abandon(error.detail)
            self.abort()
            return
        self._queue.clear()
        self._requestRead = False
        error.closeConnection = True
        if ex is None:
            record = self._newRecord(None)
            record.kind = "refused"
            ex = self._exchange = Exchange(self, _NO_REQUEST, record, False)
        ex.fail(error)

    # client-side timeouts

    def _armTimer(self, seconds: float | None, callback: Callable[[], None], kind: str = "idle") -> None:
        self.deadline.set(seconds, callback)
        self._timerKind = kind

    def _cancelTimer(self) -> None:
        self.deadline.clear()
        self._timerKind = ""

    def _idleTimedOut(self) -> None:
        self._log.info("Closing idle connection from {peer}.", peer=(self.peerHost, self.peerPort))
        self._closeConnection()

    def _headerTimedOut(self) -> None:
        self._clientError(
            ProxyError(
                "The request head did not arrive within {} seconds.".format(self.config.headerTimeout),
                status=408,
                proxyStatus="http_request_error",
                closeConnection=True,
            )
        )

    # stopping gracefully (used by the application's services)

    def isIdle(self) -> bool:
        """
        Whether the connection waits for a request and has received nothing
        of one: closing it loses nothing.
        """
        return (
            self._state == READING
            and self._exchange is None
            and not self._queue
            and self._timerKind == "idle"
        )

    def isTunnel(self) -> bool:
        """
        Whether the connection is a byte tunnel (CONNECT or an upgrade).
        """
        return self._state == TUNNEL

    def isClosing(self) -> bool:
        """
        Whether the connection is closing (or closed).
        """
        return self._state in (LINGERING, CLOSING, CLOSED)

    def closeIfIdle(self) -> bool:
        """
        Close the connection if L{isIdle}.

        @return: whether it was closed.
        """
        if not self.isIdle():
            return False
        self._closeConnection()
        return True


# The stand-in head of a transaction whose request could not be read.
_NO_REQUEST = RequestHead(b"-", b"-", b"1.1", [], keepAlive=False)


def fillRecordRequest(record: TransactionRecord, head: RequestHead) -> None:
    """
    Put the request line and fields of C{head} in C{record}.
    """
    record.method = head.method.decode("latin-1")
    record.target = head.target.decode("latin-1")
    record.requestVersion = "HTTP/" + head.version.decode("ascii")
    # Decoded only if the record is read (TransactionRecord.asDict).
    record.requestHeaders = head.headers


class ProxyFactory(Factory):
    """
    Builds L{ProxyServerProtocol}s and holds what they share: the
    configuration, the upstream pool, the clocks, and what is known of the
    running server (its listening addresses, its connections).

    @ivar config: the L{ProxyConfig} in force.
    @ivar pseudonym: this proxy's name in C{Via} and C{Proxy-Status}, as
        bytes (C{pseudonymText} as text).
    @ivar ownAddresses: C{(host, port)} pairs this proxy listens on; a
        request to one of them is a loop.
    @ivar stopping: the proxy is shutting down: no connection is kept open
        after its current response.
    @ivar requests: transactions finished so far.
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
    ) -> None:
        """
        @param transactionDetail: attach the full record to transaction
            events (when the history, the access log or workers consume
            them; building it is not free).
        @param connectionIdPrefix: prefixed to connection ids (a worker's).
        """
        self.reconfigure(config)
        self.clock = clock
        self.pool = pool
        self.wallClock = wallClock
        self.monoClock = monoClock
        self.transactionDetail = transactionDetail
        self.connectionIdPrefix = connectionIdPrefix
        getThreadPool = getattr(clock, "getThreadPool", None)
        if getThreadPool is not None:
            self.runInThread: Callable[..., Deferred[Any]] = lambda f, *args: deferToThreadPool(
                clock, getThreadPool(), f, *args  # type: ignore[arg-type]
            )
        else:
            # A test clock has no threads: run it in place.
            self.runInThread = lambda f, *args: maybeDeferred(f, *args)
        self.ownAddresses: set[tuple[str, int]] = set()
        self._wildcardPorts: set[int] = set()
        self.connections: set[ProxyServerProtocol] = set()
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
            return _Refuser(
                self, "the proxy is at its limit of {} connections".format(config.maxConnections)
            )
        perClient = config.maxConnectionsPerClient
        if perClient is not None and self._perClient.get(getattr(addr, "host", ""), 0) >= perClient:
            return _Refuser(self, "this client already has {} connections".format(perClient))
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


@implementer(IHalfCloseableProtocol)
class _Refuser(Protocol):
    """
    A connection over a connection limit: answer 503 to whatever request
    head arrives within a second, then close; close if nothing arrives.
    The existing connections carry on.  The 503 is a transaction record,
    like every response the proxy sends.
    """

    _log = Logger()
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
            wallClock=factory.wallClock,
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
        record.status, record.reason, record.responseVersion = response.status, response.reason, "HTTP/1.1"
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

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
