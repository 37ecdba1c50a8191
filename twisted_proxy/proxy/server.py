# -*- test-case-name: tests.test_server -*-
"""
The proxy's client side: L{ProxyServerProtocol}, one client connection
(its factory is L{twisted_proxy.proxy.factory.ProxyFactory}).

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

from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..http.errors import ProxyError
from ..http.framing import Body, EndOfMessage, RequestEvent, RequestHead
from ..records.record import TransactionRecord
from .brief import headText, say
from .deadline import Deadline
from .exchange import Exchange
from .tcp import IStreamTransport, setNoDelay
from .tunnel import Tunnel

if TYPE_CHECKING:
    from .factory import ProxyFactory

__all__ = ["ProxyServerProtocol", "fillRecordRequest"]

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

    transport: IStreamTransport
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

    @property
    def state(self) -> str:
        """
        The connection's state (see the class docstring).
        """
        return self._state

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
        self.say(
            "Connection has been accepted from: " + origin, peer=(self.peerHost, self.peerPort)
        )
        factory.connectionOpened(self)
        # A unix-socket client has no IP address: the socket file's
        # permissions decide who may connect, not the network rules.
        if isinstance(peer, (IPv4Address, IPv6Address)):
            self._refusal = self.config.policy.checkClient(self.peerHost)
            if self._refusal is not None:
                self._refusal.closeConnection = True
        self._armTimer(self.config.idleTimeout, self._idleTimedOut)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
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
        events: Sequence[RequestEvent]
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
        microsecond (L{twisted_proxy.proxy.brief.say}), with C{fields} for
        other observers.
        """
        say(self, text, self.factory.wallClock(), fields)

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
        finally:
            self._processing = False
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
            + headText(head.method + b" " + head.target + b" HTTP/" + head.version, head.headers),
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
        if (
            remaining == head.contentLength
            and (head.get(b"expect") or b"").lower() == b"100-continue"
        ):
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
        if (
            close
            or self.factory.stopping
            or self._readClosed
            and not any(type(e) is RequestHead for e in self._queue)
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

    def _discard(self, event: Body | EndOfMessage) -> None:
        """
        Drop a piece of a request that was answered before it was read; at
        its end, read the next request.
        """
        if isinstance(event, EndOfMessage):
            if self._state == DISCARDING:
                self._nextRequest()
            return
        self._discarded += len(event.data)
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
        # The timer first: with the write side already shut down (a
        # lingering close), loseConnection reports connectionLost at once.
        self._setAbortTimer(self.config.abortTimeout)
        self.transport.loseConnection()

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
        self._pauses.clear()
        self._setAbortTimer(self.config.lingerTimeout)
        self.transport.resumeProducing()
        loseWrite(self.transport)

    def _setAbortTimer(self, seconds: float) -> None:
        if self._abortTimer is not None and self._abortTimer.active():
            self._abortTimer.cancel()
        self._abortTimer = self._clock.callLater(seconds, self._abortNow)

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

    def _armTimer(
        self, seconds: float | None, callback: Callable[[], None], kind: str = "idle"
    ) -> None:
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
                "The request head did not arrive within {} seconds.".format(
                    self.config.headerTimeout
                ),
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
