# -*- test-case-name: tests.test_server -*-
"""
The proxy's client side: L{ProxyServerProtocol} and L{ProxyFactory}.

For each request on a client connection: frame it
(L{twisted_proxy.http.framing.RequestParser}), check it (loops, target, policy),
get an upstream connection from the L{twisted_proxy.proxy.upstream.UpstreamPool},
stream the request body up and the response body down, each direction
paused when the receiving side cannot keep up, then either read the next
request or close.

Requests on one connection are answered in order, one at a time; requests a
client pipelines wait in a queue of parsed events, and the connection stops
reading while anything waits there, so a client costs a bounded amount of
memory however much it sends.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..http.errors import (
    BadGateway,
    BadRequest,
    GatewayTimeout,
    LoopDetected,
    PayloadTooLarge,
    ProxyError,
    ServiceUnavailable,
)
from ..http.framing import (
    LAST_CHUNK,
    Body,
    EndOfMessage,
    RequestHead,
    RequestParser,
    ResponseHead,
    chunkHeader,
    lastChunk,
    serializeRequestHead,
    serializeResponseHead,
)
from ..records.emit import emitEvent, emitTransaction
from ..records.record import TransactionRecord
from .policy import HostPatterns, Policy
from ..http.fields import (
    SECRET_HEADERS,
    forwardRequestHeaders,
    forwardResponseHeaders,
    redactHeaders,
    viaHasPseudonym,
)
from ..http.target import Target, parseTarget
from .tunnel import Tunnel, TunnelUpstreamProtocol
from .upstream import (
    Deadline,
    ParentConnectProtocol,
    ParentProxy,
    UpstreamPool,
    UpstreamProtocol,
    connectFailureToError,
)

__all__ = ["ProxyFactory", "ProxyServerProtocol"]

# Methods whose request can be sent again when a reused connection turns
# out to be dead (RFC 9110 9.2.2).
_IDEMPOTENT = frozenset([b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"])

_CRLF = b"\r\n"


def _maxForwards(head: RequestHead) -> int | None:
    """
    The Max-Forwards of a TRACE or OPTIONS request (RFC 9110 7.6.2; other
    methods ignore it), or L{None}.

    @raise BadRequest: if it is not a non-negative integer.
    """
    if head.method not in (b"TRACE", b"OPTIONS"):
        return None
    value = head.get(b"max-forwards")
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 9:
        raise BadRequest("Max-Forwards must be a non-negative integer.")
    return int(value)


def _headSize(line1: bytes, line2: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """
    The size of a request head as serialised (the request line's two
    variable parts, and the fields).
    """
    size = len(line1) + len(line2) + 15
    for n, v in headers:
        size += len(n) + len(v) + 4
    return size


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


class _Exchange:
    """
    One request and its response, on one client connection.

    It is the L{twisted_proxy.proxy.upstream.IResponseReceiver} of its upstream
    connection, so callbacks from an upstream that was abandoned can never
    reach a later exchange.

    @ivar requestEnded: the whole request has been sent upstream.
    @ivar responseStarted: the final response head went to the client.
    @ivar mode: how the response body is framed to the client: C{"length"},
        C{"chunked"}, C{"close"} or C{"none"}.
    """

    upstream: UpstreamProtocol | None = None
    parent: ParentProxy | None = None
    maxForwards: int | None = None
    user: str | None = None
    upstreamReady = False
    reused = False
    retried = False
    requestEnded = False
    responseStarted = False
    finished = False
    mode = "none"
    closeAfter = False
    status: int | None = None
    bytesToClient = 0
    bytesFromClient = 0
    bytesToUpstream = 0
    upstreamBytesAtStart = 0
    bodyBytes = 0
    lastProgress = 0.0

    def __init__(
        self, proto: ProxyServerProtocol, head: RequestHead, target: Target, record: TransactionRecord
    ) -> None:
        self.proto = proto
        self.head = head
        self.target = target
        self.record = record
        self.upgrade = proto._parser.switched and head.method != b"CONNECT"

    # IResponseReceiver

    def responseHead(self, head: ResponseHead) -> None:
        if self.finished:
            return
        self.proto._responseHead(self, head)

    def responseBody(self, data: bytes) -> None:
        if self.finished:
            return
        self.proto._responseBody(self, data)

    def responseEnd(self, trailers: list[tuple[bytes, bytes]]) -> None:
        if self.finished:
            return
        self.proto._responseEnd(self, trailers)

    def responseSwitched(self, trailingData: bytes) -> None:
        if self.finished:
            return
        self.proto._responseSwitched(self, trailingData)

    def responseFailed(self, error: ProxyError, responseStarted: bool) -> None:
        if self.finished:
            return
        self.proto._responseFailed(self, error, responseStarted)

    def cancelTimers(self) -> None:
        """
        No more response or stall timeout for this exchange (they share the
        connection's L{Deadline}, exchanges being one at a time).
        """
        if self.proto._exchange is self:
            self.proto._deadline.clear()


@implementer(IPushProducer, IHalfCloseableProtocol)
class ProxyServerProtocol(Protocol):
    """
    One client connection.

    States (C{_state}):
      - C{READING}: waiting for (the rest of) a request head.
      - C{EXCHANGE}: a request is being relayed (L{_exchange}).
      - C{TUNNEL}: the connection is a byte tunnel (CONNECT or 101).
      - C{CLOSING}: the last response is written; the connection closes.
      - C{CLOSED}: the connection is gone.

    @ivar _queue: parsed events not yet handled (pipelined requests, body
        bytes that arrived before the upstream connection was ready).
    @ivar _pauses: why reading from the client is paused (reading resumes
        when the set is empty).
    @ivar _deadline: the connection's one timeout in force: idle or header
        while reading, response or stalled body during an exchange.
    @ivar _readClosed: the client half-closed; close once the requests it
        sent are answered.
    @ivar _parseError: the client sent bytes that are not HTTP after
        complete requests; it is answered once those are.
    @ivar _tunnel: the L{Tunnel} in state C{TUNNEL}.
    @ivar _refusal: the policy refused this client: its first request is
        answered with this error, then the connection closes.
    """

    _log = Logger()

    _state = "READING"
    _exchange: _Exchange | None = None
    _abortTimer = None
    _sequence = 0
    _readClosed = False
    _parseError: ProxyError | None = None
    _refusal: ProxyError | None = None
    _tunnel: Tunnel | None = None

    def __init__(self, factory: ProxyFactory) -> None:
        self.factory = factory
        self._clock = factory.clock
        self._parser = factory.newRequestParser()
        self._queue: deque = deque()
        self._pauses: set[str] = set()
        self._deadline = Deadline(self._clock)

    # connection life

    def connectionMade(self) -> None:
        factory = self.factory
        self._acceptedWall = factory.wallClock()
        self._acceptedMono = factory.monoClock()
        self.connectionId = factory.nextConnectionId()
        peer = self.transport.getPeer()
        self.peerHost = getattr(peer, "host", "") or ""
        self.peerPort = getattr(peer, "port", 0) or 0
        if isinstance(peer, (IPv4Address, IPv6Address)):
            origin = "('{}', {})".format(self.peerHost, self.peerPort)
        else:
            name = getattr(self.transport.getHost(), "name", None)
            origin = "unix:" + (name.decode() if isinstance(name, bytes) else str(name or "?"))
        self._say("Connection has been accepted from: " + origin, peer=(self.peerHost, self.peerPort))
        self.factory.connectionOpened(self)
        # A unix-socket client has no IP address: the socket file's
        # permissions decide who may connect, not the network rules.
        if isinstance(peer, (IPv4Address, IPv6Address)):
            self._refusal = self.factory.policy.checkClient(self.peerHost)
            if self._refusal is not None:
                self._refusal.closeConnection = True
        self._armTimer(self.factory.idleTimeout, self._idleTimedOut)

    def connectionLost(self, reason: Failure = None) -> None:
        state = self._state
        self._state = "CLOSED"
        self._deadline.cancel()
        if self._abortTimer is not None and self._abortTimer.active():
            self._abortTimer.cancel()
        ex = self._exchange
        if state == "TUNNEL":
            self._tunnel.clientConnectionLost(reason)
        elif ex is not None and not ex.finished:
            self._abandon(ex, "the client closed the connection")
        self._queue.clear()
        self.factory.connectionClosed(self)
        self._say("Connection has been closed.", peer=(self.peerHost, self.peerPort))

    def readConnectionLost(self) -> None:
        """
        The client half-closed: answer what it sent, then close.
        """
        if self._state == "TUNNEL":
            self._tunnel.clientReadClosed()
            return
        self._readClosed = True
        ex = self._exchange
        if ex is not None and not ex.requestEnded and not self._requestFullyQueued():
            # The client will never send the rest of this request.
            self._abandon(ex, "the client closed before sending the whole request")
            self._state = "CLOSED"
            self.transport.abortConnection()
            return
        if ex is None and not self._queue:
            self._closeConnection()

    def writeConnectionLost(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        state = self._state
        if state == "TUNNEL":
            self._tunnel.dataFromClient(data)
            return
        if state in ("CLOSING", "CLOSED"):
            return
        if self._parseError is not None:
            return
        try:
            events = self._parser.feed(data)
        except ProxyError as e:
            complete = getattr(e, "events", None)
            ex = self._exchange
            if not complete and (
                ex is None or not (ex.requestEnded or self._requestFullyQueued())
            ):
                self._clientError(e)
                return
            # Answer the requests that came before the bad one first, and
            # read nothing more.
            self._parseError = e
            self._pause("error")
            events = complete or []
        if state == "READING":
            if events:
                self._cancelTimer()
            elif self._timerKind != "header":
                self._armTimer(self.factory.headerTimeout, self._headerTimedOut, "header")
        self._queue.extend(events)
        self._process()

    def _say(self, text: str, **fields: object) -> None:
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
            _briefLog, _literal(text) + "  [" + _clockText(self.factory.wallClock()) + "]",
            fields, self,
        )

    # the event queue

    def _process(self) -> None:
        queue = self._queue
        if self._parseError is not None and not queue and self._exchange is None:
            if self._state in ("READING", "EXCHANGE"):
                self._clientError(self._parseError)
            return
        while queue and self._state in ("READING", "EXCHANGE"):
            ex = self._exchange
            if ex is None:
                event = queue.popleft()
                if type(event) is RequestHead:
                    self._beginExchange(event)
                    continue
                # Body or end of a request that was answered early.
                continue
            if ex.requestEnded or not ex.upstreamReady:
                break
            self._requestEvent(ex, queue.popleft())
        if queue:
            self._pause("queue")
        else:
            self._resume("queue")
            if self._readClosed and self._exchange is None and self._state == "READING":
                self._closeConnection()

    def _pause(self, reason: str) -> None:
        if not self._pauses and self._state not in ("CLOSING", "CLOSED"):
            self.transport.pauseProducing()
        self._pauses.add(reason)

    def _resume(self, reason: str) -> None:
        if reason in self._pauses:
            self._pauses.discard(reason)
            if not self._pauses and self._state not in ("CLOSING", "CLOSED", "TUNNEL"):
                self.transport.resumeProducing()

    # IPushProducer, for the upload direction: the upstream transport
    # pauses us when the origin does not read the request body fast enough.

    def pauseProducing(self) -> None:
        self._pause("upload")

    def resumeProducing(self) -> None:
        # The origin drained what we wrote: that is progress too.
        if self._exchange is not None:
            self._exchange.lastProgress = self._clock.seconds()
        self._resume("upload")

    def stopProducing(self) -> None:
        # The upstream transport says this when its connection is gone (it
        # tells its producer before its protocol).  Nothing to do here: the
        # upstream's connectionLost follows and answers the client (502) or
        # closes it, as the state of the exchange requires.
        self._resume("upload")

    # a request

    def _newRecord(self, head: RequestHead) -> TransactionRecord:
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
        if head.method != b"-":
            record.method = head.method.decode("latin-1")
            record.target = head.target.decode("latin-1")
            record.requestVersion = "HTTP/" + head.version.decode("ascii")
            # Decoded only if the record is read (history.TransactionRecord).
            record.requestHeaders = head.headers
        return record

    def _beginExchange(self, head: RequestHead) -> None:
        factory = self.factory
        self._state = "EXCHANGE"
        self._cancelTimer()
        record = self._newRecord(head)
        self._say(
            "Request has been received: "
            + _headText(head.method + b" " + head.target + b" HTTP/" + head.version, head.headers),
            peer=(self.peerHost, self.peerPort),
        )
        try:
            if self._refusal is not None:
                raise self._refusal
            if viaHasPseudonym(head.headers, factory.pseudonym):
                raise LoopDetected("This request has already been through this proxy (Via).")
            target = parseTarget(head.method, head.target, head.get(b"host"))
            if factory.isOwnAddress(target.host, target.port):
                raise LoopDetected(
                    "The destination {}:{} is this proxy itself.".format(target.host, target.port)
                )
            if (
                factory.maxBody is not None
                and head.contentLength is not None
                and head.contentLength > factory.maxBody
            ):
                raise self._tooLarge()
            maxForwards = _maxForwards(head)
        except ProxyError as e:
            record.kind = "refused"
            ex = _Exchange(self, head, Target("http", "", 0, b"", b""), record)
            self._exchange = ex
            self._respondWithError(ex, e)
            return
        ex = _Exchange(self, head, target, record)
        ex.bytesFromClient = _headSize(head.method, head.target, head.headers)
        record.destHost = target.host
        record.destPort = target.port
        self._exchange = ex
        if maxForwards == 0:
            self._answerHere(ex)
            return
        ex.maxForwards = None if maxForwards is None else maxForwards - 1
        credentials = head.get(b"proxy-authorization")
        policy = factory.policy
        if policy.pendingVerification(credentials):
            # Checking a password hash (bcrypt: tens to hundreds of ms) must
            # not stop the reactor: it runs in a thread, and this request
            # waits (reading stops) until the outcome is in the cache.
            self._pause("auth")
            d = factory.runInThread(policy.verify, credentials)
            d.addErrback(lambda f: self._log.failure("While verifying credentials", f))
            d.addCallback(self._verified, ex, credentials)
            return
        self._authorize(ex, credentials)

    def _verified(self, result: object, ex: _Exchange, credentials: bytes) -> None:
        self._resume("auth")
        if ex.finished or self._state == "CLOSED":
            return
        self._authorize(ex, credentials)
        self._process()

    def _authorize(self, ex: _Exchange, credentials: bytes | None) -> None:
        """
        The policy's verdict on the request (credentials, CONNECT port,
        destination), then on to the destination.
        """
        head, target, record = ex.head, ex.target, ex.record
        decision = self.factory.policy.checkRequest(
            head.method, target.host, target.port, credentials
        )
        if decision.refusal is not None:
            record.kind = "refused"
            self._respondWithError(ex, decision.refusal)
            return
        record.user = ex.user = decision.user
        if head.method == b"CONNECT":
            record.kind = "tunnel"
            self._connectTunnel(ex)
            return
        if ex.upgrade:
            record.kind = "upgrade"
        self._connectUpstream(ex)

    def _connectUpstream(self, ex: _Exchange) -> None:
        target = ex.target
        parent = ex.parent = self.factory.parentFor(target.host)
        if parent is not None:
            key = ("proxy", parent.host, parent.port)
        else:
            key = (target.scheme, target.host, target.port)
        pool = self.factory.pool
        proto = pool.takeIdle(key)
        if proto is not None:
            self._upstreamConnected(proto, True, ex)
            return
        pool.connect(key).addCallbacks(
            self._upstreamConnected, self._upstreamConnectFailed, (False, ex), None, (ex,)
        )

    def _upstreamConnectFailed(self, failure: Failure, ex: _Exchange) -> None:
        if ex.finished:
            return
        if ex.parent is not None and not failure.check(ProxyError):
            error = connectFailureToError(failure, ex.parent.host, ex.parent.port)
            error.detail = "Parent proxy: " + error.detail
        else:
            error = connectFailureToError(failure, ex.target.host, ex.target.port)
        self._respondWithError(ex, error)

    def _upstreamConnected(self, proto: UpstreamProtocol, reused: bool, ex: _Exchange) -> None:
        if ex.finished:
            # The client went away while we were connecting.
            self.factory.pool.release(proto)
            return
        error = self._checkConnected(
            ex, proto.transport.getPeer(), proto.transport.getHost(), reused
        )
        if error is not None:
            proto.abort()
            self._respondWithError(ex, error)
            return
        ex.upstream = proto
        ex.reused = reused
        ex.upstreamReady = True
        ex.upstreamBytesAtStart = proto.bytesReceived
        record = ex.record
        record.mark("upstreamReady")
        record.connectionReused = reused
        peer = proto.transport.getPeer()
        record.peerHost = getattr(peer, "host", None)
        record.peerPort = getattr(peer, "port", None)
        head = ex.head
        proto.startRequest(ex, head.method)
        headers = forwardRequestHeaders(
            head.headers,
            ex.target,
            head.version,
            self.factory.pseudonym,
            upgrade=ex.upgrade,
            chunked=head.chunked,
            forwarded=self.factory.forwarded,
            clientHost=self.peerHost,
        )
        if ex.maxForwards is not None:
            value = b"%d" % (ex.maxForwards,)
            headers = [(n, value) if n.lower() == b"max-forwards" else (n, v) for n, v in headers]
        if ex.parent is not None:
            requestTarget = ex.target.url.encode("latin-1")
            if ex.parent.authorization is not None:
                headers.append((b"Proxy-Authorization", ex.parent.authorization))
        else:
            requestTarget = ex.target.path
        data = serializeRequestHead(head.method, requestTarget, headers)
        ex.bytesToUpstream += len(data)
        proto.write(data)
        if head.hasBody:
            proto.transport.registerProducer(self, True)
            self._armStall(ex, self.factory.bodyTimeout)
        self._process()

    # CONNECT

    def _connectTunnel(self, ex: _Exchange) -> None:
        """
        Connect to the CONNECT target; the bytes after the CONNECT head wait
        in the parser (and reading stops) until the tunnel starts.
        """
        queue = self._queue
        if queue and type(queue[0]) is EndOfMessage:
            queue.popleft()
        ex.requestEnded = True
        self._pause("connect")
        tunnel = Tunnel(self._clock, self.factory.tunnelIdleTimeout)
        target = ex.target
        parent = ex.parent = self.factory.parentFor(target.host)
        if parent is None:
            d = self.factory.pool.connectRaw(target.host, target.port, TunnelUpstreamProtocol(tunnel))
        else:
            d = self.factory.pool.connectRaw(
                parent.host,
                parent.port,
                ParentConnectProtocol(
                    tunnel,
                    target.authority,
                    parent.authorization,
                    b"1.1 " + self.factory.pseudonym,
                ),
            )
        d.addCallbacks(
            self._tunnelConnected, self._upstreamConnectFailed, (ex, tunnel), None, (ex,)
        )

    def _tunnelConnected(self, proto, ex: _Exchange, tunnel: Tunnel) -> None:
        if ex.finished:
            proto.transport.abortConnection()
            return
        peer = proto.transport.getPeer()
        error = self._checkConnected(ex, peer, proto.transport.getHost(), reused=False)
        if error is not None:
            proto.transport.abortConnection()
            self._respondWithError(ex, error)
            return
        if isinstance(proto, ParentConnectProtocol):
            proto.established.addCallbacks(
                lambda pending: self._tunnelReady(ex, tunnel, proto, pending),
                lambda failure: None if ex.finished else self._respondWithError(
                    ex, failure.value if failure.check(ProxyError) else BadGateway(
                        failure.getErrorMessage(), proxyStatus="proxy_internal_error"
                    )
                ),
            )
            return
        self._tunnelReady(ex, tunnel, proto, b"")

    def _tunnelReady(self, ex: _Exchange, tunnel: Tunnel, proto, fromUpstream: bytes) -> None:
        if ex.finished:
            proto.transport.abortConnection()
            return
        record = ex.record
        record.mark("upstreamReady")
        record.mark("requestSent")
        record.mark("responseHead")
        record.connectionReused = False
        peer = proto.transport.getPeer()
        record.peerHost = getattr(peer, "host", None)
        record.peerPort = getattr(peer, "port", None)
        record.status, record.reason, record.responseVersion = 200, "Connection Established", "HTTP/1.1"
        ex.status = 200
        ex.responseStarted = True
        self._state = "TUNNEL"
        self._cancelTimer()
        self._pauses.clear()
        self._tunnel = tunnel
        data = b"HTTP/1.1 200 Connection Established\r\n\r\n"
        ex.bytesToClient += len(data)
        self.transport.write(data)
        self._say(
            "Tunnel established to {}:{}".format(ex.target.host, ex.target.port),
            destination=ex.target.host,
            port=ex.target.port,
        )
        pending = self._parser.trailingData
        self._parser.trailingData = b""
        tunnel.whenClosed().addCallback(self._tunnelClosed, ex, tunnel)
        tunnel.start(
            self.transport, proto.transport, pendingFromClient=pending, pendingFromUpstream=fromUpstream
        )

    def _tunnelClosed(self, reason: str, ex: _Exchange, tunnel: Tunnel) -> None:
        ex.finished = True
        self._exchange = None
        record = ex.record
        record.bytesFromClient = ex.bytesFromClient + tunnel.bytesFromClient
        record.bytesToUpstream = tunnel.bytesFromClient
        record.bytesFromUpstream += tunnel.bytesFromUpstream
        ex.bytesToClient += tunnel.bytesFromUpstream
        if reason not in ("normal",):
            record.errorDetail = "tunnel closed: " + reason
        record.mark("responseComplete")
        self._say(
            "Tunnel to {}:{} closed ({}): {} bytes up, {} bytes down".format(
                ex.target.host, ex.target.port, reason, tunnel.bytesFromClient,
                tunnel.bytesFromUpstream,
            ),
            destination=ex.target.host,
            port=ex.target.port,
            reason=reason,
        )
        self.factory.exchangeFinished(self, ex)

    def _checkConnected(self, ex: _Exchange, peer, local, reused: bool) -> ProxyError | None:
        """
        Where did the connection go?  Refuse loops and, if configured,
        private addresses; log the destination the brief's way.
        """
        peerHost = getattr(peer, "host", "")
        peerPort = getattr(peer, "port", 0)
        if self.factory.isOwnAddress(peerHost, peerPort) or (
            getattr(local, "host", None) == peerHost and self.factory.listensOnPort(peerPort)
        ):
            return LoopDetected(
                "The destination {}:{} is this proxy itself.".format(peerHost, peerPort)
            )
        if reused:
            return None
        if ex.parent is not None:
            # The parent resolves and connects; what we reached is the parent.
            destination = "{} (via parent proxy {}:{})".format(ex.target.host, peerHost, peerPort)
        else:
            refusal = self.factory.policy.checkConnectedAddress(peerHost)
            if refusal is not None:
                return refusal
            destination = (
                peerHost if peerHost == ex.target.host else "{} ({})".format(ex.target.host, peerHost)
            )
        self._say("Destination IP address: " + destination, destination=destination)
        return None

    def _requestEvent(self, ex: _Exchange, event: object) -> None:
        t = type(event)
        proto = ex.upstream
        if t is Body:
            data = event.data
            ex.bytesFromClient += len(data)
            ex.lastProgress = self._clock.seconds()
            maxBody = self.factory.maxBody
            if maxBody is not None:
                ex.bodyBytes += len(data)
                if ex.bodyBytes > maxBody:
                    self._responseFailed(ex, self._tooLarge(), False, retry=False)
                    return
            if ex.head.chunked:
                header = chunkHeader(len(data))
                ex.bytesToUpstream += len(header) + len(data) + 2
                proto.writeSequence([header, data, _CRLF])
            else:
                ex.bytesToUpstream += len(data)
                proto.write(data)
        elif t is EndOfMessage:
            ex.requestEnded = True
            ex.record.mark("requestSent")
            if ex.head.chunked:
                data = lastChunk(event.trailers)
                ex.bytesToUpstream += len(data)
                proto.write(data)
            if ex.head.hasBody:
                proto.transport.unregisterProducer()
                self._resume("upload")
            if not ex.responseStarted:
                self._deadline.set(self.factory.responseTimeout, self._responseTimedOut, ex)

    # the response

    def _responseHead(self, ex: _Exchange, head: ResponseHead) -> None:
        ex.cancelTimers()
        client = ex.head
        if head.status < 200:
            if head.status == 101:
                if not ex.upgrade:
                    self._responseFailed(
                        ex,
                        BadGateway(
                            "The origin switched protocols without being asked to.",
                            proxyStatus="http_protocol_error",
                        ),
                        False,
                    )
                    return
                ex.status = 101
                ex.responseStarted = True
                headers = forwardResponseHeaders(
                    head.headers, head.version, self.factory.pseudonym, upgrade=True
                )
                self._recordResponse(ex, head, headers)
                data = serializeResponseHead(101, head.reason, headers)
                ex.bytesToClient += len(data)
                self.transport.write(data)
                return
            # Interim responses (100 Continue, 103 Early Hints) go to HTTP/1.1
            # clients only (RFC 9110 15.2).
            if client.version == b"1.1":
                headers = forwardResponseHeaders(head.headers, head.version, self.factory.pseudonym)
                self.transport.write(serializeResponseHead(head.status, head.reason, headers))
            return
        self._say(
            "Response received: HTTP/"
            + (head.version + b" %d " % (head.status,) + head.reason).decode("latin-1")
            + " ...",
            status=head.status,
        )
        if head.noBody:
            mode = "none"
        elif head.contentLength is not None:
            mode = "length"
        elif client.version == b"1.1":
            mode = "chunked"
        else:
            mode = "close"
        close = (
            not client.keepAlive
            or mode == "close"
            or not ex.requestEnded
            or self.factory.stopping
        )
        ex.mode = mode
        ex.closeAfter = close
        ex.status = head.status
        ex.responseStarted = True
        headers = forwardResponseHeaders(
            head.headers,
            head.version,
            self.factory.pseudonym,
            chunked=mode == "chunked",
            close=close,
            keepAlive10=client.version == b"1.0" and not close,
        )
        self._recordResponse(ex, head, headers)
        data = serializeResponseHead(head.status, head.reason, headers)
        ex.bytesToClient += len(data)
        self.transport.write(data)
        if mode != "none":
            self.transport.registerProducer(ex.upstream, True)
            self._armStall(ex, self.factory.responseBodyTimeout)

    def _recordResponse(self, ex: _Exchange, head: ResponseHead, headers: list) -> None:
        record = ex.record
        record.mark("responseHead")
        record.status = head.status
        record.reason = head.reason.decode("latin-1")
        record.responseVersion = "HTTP/" + head.version.decode("ascii")
        record.responseHeaders = headers

    def _responseBody(self, ex: _Exchange, data: bytes) -> None:
        ex.lastProgress = self._clock.seconds()
        mode = ex.mode
        if mode == "chunked":
            header = chunkHeader(len(data))
            ex.bytesToClient += len(header) + len(data) + 2
            self.transport.writeSequence([header, data, _CRLF])
        elif mode != "none":
            ex.bytesToClient += len(data)
            self.transport.write(data)

    def _responseEnd(self, ex: _Exchange, trailers: list[tuple[bytes, bytes]]) -> None:
        if ex.mode == "chunked":
            data = lastChunk(trailers) if trailers else LAST_CHUNK
            ex.bytesToClient += len(data)
            self.transport.write(data)
        if ex.mode != "none":
            self.transport.unregisterProducer()
        ex.record.mark("responseComplete")
        proto = ex.upstream
        ex.upstream = None
        ex.record.bytesFromUpstream = proto.bytesReceived - ex.upstreamBytesAtStart
        if ex.requestEnded:
            self.factory.pool.release(proto)
        else:
            proto.abort()
        self._finishExchange(ex, close=ex.closeAfter)

    def _responseSwitched(self, ex: _Exchange, trailingData: bytes) -> None:
        """
        The origin answered an upgrade request with 101: the connection
        becomes a tunnel between the client and that origin connection.
        """
        proto = ex.upstream
        ex.upstream = None
        tunnel = Tunnel(self._clock, self.factory.tunnelIdleTimeout)
        proto.switchToTunnel(tunnel)
        self._state = "TUNNEL"
        self._cancelTimer()
        self._pauses.clear()
        self._tunnel = tunnel
        pending = self._parser.trailingData
        self._parser.trailingData = b""
        tunnel.whenClosed().addCallback(self._tunnelClosed, ex, tunnel)
        tunnel.start(self.transport, proto.transport, pendingFromClient=pending,
                     pendingFromUpstream=trailingData)

    def _tooLarge(self) -> ProxyError:
        return PayloadTooLarge(
            "The request body is larger than the {} bytes this proxy accepts (--max-body).".format(
                self.factory.maxBody
            )
        )

    # stalled bodies: one timer per exchange, re-armed from the time of the
    # last progress rather than reset on every chunk

    def _armStall(self, ex: _Exchange, seconds: float | None) -> None:
        ex.lastProgress = self._clock.seconds()
        self._deadline.set(seconds, self._stallCheck, ex, seconds)

    def _stallCheck(self, ex: _Exchange, seconds: float) -> None:
        if ex.finished:
            return
        idle = self._clock.seconds() - ex.lastProgress
        if idle < seconds:
            self._deadline.set(seconds - idle, self._stallCheck, ex, seconds)
            return
        if ex.responseStarted:
            proto = ex.upstream
            who = (
                "the client stopped reading the response"
                if proto is not None and proto._paused
                else "the destination stopped sending the response body"
            )
            error = GatewayTimeout(
                "No progress for {} seconds: {}.".format(seconds, who),
                proxyStatus="connection_read_timeout",
            )
        elif "upload" in self._pauses:
            error = GatewayTimeout(
                "The destination stopped reading the request body for {} seconds.".format(seconds),
                proxyStatus="connection_write_timeout",
            )
        else:
            error = ProxyError(
                "The request body stalled: no bytes for {} seconds.".format(seconds),
                status=408,
                proxyStatus="http_request_error",
                closeConnection=True,
            )
        self._responseFailed(ex, error, ex.responseStarted, retry=False)

    def _responseFailed(
        self, ex: _Exchange, error: ProxyError, started: bool, retry: bool = True
    ) -> None:
        ex.cancelTimers()
        proto = ex.upstream
        ex.upstream = None
        if proto is not None:
            ex.record.bytesFromUpstream += proto.bytesReceived - ex.upstreamBytesAtStart
            proto.abort()
        if ex.responseStarted:
            # Part of the response went to the client: cut the connection,
            # so that a truncated body can never look complete.
            self._log.info(
                "Upstream failed mid-response ({error}); aborting the client connection.",
                error=error.detail,
            )
            ex.record.proxyError = error.proxyStatus
            ex.record.errorDetail = error.detail
            self._abandon(ex, error.detail)
            self._state = "CLOSED"
            self.transport.abortConnection()
            return
        if (
            retry
            and not started
            and ex.reused
            and not ex.retried
            and ex.head.method in _IDEMPOTENT
            and not ex.head.hasBody
        ):
            # A reused connection died under us before any response byte:
            # safe to try once more on a fresh one.
            ex.retried = True
            ex.upstreamReady = False
            ex.bytesToUpstream = 0
            ex.requestEnded = False
            self._queue.appendleft(EndOfMessage())
            self._connectUpstream(ex)
            return
        if not ex.requestEnded:
            # The rest of the request body is still coming: after this
            # response the connection cannot be reused.
            error.closeConnection = True
        self._respondWithError(ex, error)

    def _responseTimedOut(self, ex: _Exchange) -> None:
        if ex.finished:
            return
        self._responseFailed(
            ex,
            GatewayTimeout(
                "The destination sent no response within {} seconds.".format(
                    self.factory.responseTimeout
                ),
                proxyStatus="http_response_timeout",
            ),
            False,
        )

    # ending an exchange

    def _respondWithError(self, ex: _Exchange, error: ProxyError) -> None:
        """
        Answer the client with a generated response for C{error}.
        """
        ex.cancelTimers()
        if ex.upstream is not None:
            ex.upstream.abort()
            ex.upstream = None
        status, reason, headers, body = error.render(self.factory.pseudonymText)
        # The rest of a request we did not read cannot be told apart from the
        # next request: close unless the request is complete.
        requestComplete = ex.requestEnded or self._requestFullyQueued()
        # After a failed CONNECT, what follows may be TLS, not HTTP.
        close = (
            error.closeConnection
            or not ex.head.keepAlive
            or not requestComplete
            or ex.head.method == b"CONNECT"
        )
        if close and not error.closeConnection:
            headers.append(("Connection", "close"))
        elif not close and ex.head.version == b"1.0":
            headers.append(("Connection", "keep-alive"))
        self._say(
            "Request refused: {} {} ({}): {}".format(status, reason, error.proxyStatus, error.detail),
            status=status,
            error=error.proxyStatus,
            detail=error.detail,
            rule=getattr(error, "rule", None),
            peer=(self.peerHost, self.peerPort),
        )
        ex.record.proxyError = error.proxyStatus
        ex.record.errorDetail = error.detail
        self._sendGenerated(
            ex,
            status,
            reason,
            [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers],
            b"" if ex.head.method == b"HEAD" else body,
            close,
        )

    def _sendGenerated(
        self,
        ex: _Exchange,
        status: int,
        reason: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        close: bool,
    ) -> None:
        """
        Send a response this proxy made itself, record it, and end the
        exchange.
        """
        record = ex.record
        record.mark("responseHead")
        record.status, record.reason, record.responseVersion = status, reason, "HTTP/1.1"
        record.responseHeaders = headers
        ex.status = status
        data = serializeResponseHead(status, reason.encode("ascii"), headers) + body
        ex.bytesToClient += len(data)
        self.transport.write(data)
        record.mark("responseComplete")
        self._finishExchange(ex, close=close)

    def _answerHere(self, ex: _Exchange) -> None:
        """
        A TRACE or OPTIONS whose Max-Forwards reached 0: this proxy is its
        final recipient (RFC 9110 7.6.2).  TRACE gets the request back as
        C{message/http}, without credentials and cookies (RFC 9110 9.3.8);
        OPTIONS gets an empty 200.
        """
        head = ex.head
        headers = [(b"Via", b"1.1 " + self.factory.pseudonym)]
        if head.method == b"TRACE":
            body = serializeRequestHead(
                head.method,
                head.target,
                [(n, v) for n, v in head.headers if n.lower() not in SECRET_HEADERS],
                head.version,
            )
            headers.append((b"Content-Type", b"message/http"))
        else:
            body = b""
        headers.append((b"Content-Length", b"%d" % (len(body),)))
        close = not head.keepAlive or not (ex.requestEnded or self._requestFullyQueued())
        if close:
            headers.append((b"Connection", b"close"))
        self._sendGenerated(ex, 200, "OK", headers, body, close)

    def _requestFullyQueued(self) -> bool:
        """
        Whether the end of the current request has been read (it waits in
        the queue, before any next request).
        """
        for event in self._queue:
            t = type(event)
            if t is EndOfMessage:
                return True
            if t is RequestHead:
                break
        return False

    def _finishExchange(self, ex: _Exchange, close: bool) -> None:
        ex.finished = True
        ex.cancelTimers()
        self._exchange = None
        self.factory.exchangeFinished(self, ex)
        if close or self._state == "CLOSED" or self._readClosed and not any(
            type(e) is RequestHead for e in self._queue
        ):
            self._closeConnection()
            return
        self._state = "READING"
        # Drop what is left of the request just answered (it was answered
        # before it was fully read only if it had no body).
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
        self._armTimer(self.factory.idleTimeout, self._idleTimedOut)
        self._process()

    def _closeConnection(self) -> None:
        if self._state == "CLOSED":
            return
        self._state = "CLOSING"
        self._queue.clear()
        self._cancelTimer()
        self.transport.loseConnection()
        self._abortTimer = self._clock.callLater(
            self.factory.abortTimeout, self._abortConnection
        )

    def _abortConnection(self) -> None:
        self._abortTimer = None
        if self._state != "CLOSED":
            self.transport.abortConnection()

    def _abandon(self, ex: _Exchange, why: str) -> None:
        ex.finished = True
        ex.cancelTimers()
        if ex.upstream is not None:
            ex.record.bytesFromUpstream += ex.upstream.bytesReceived - ex.upstreamBytesAtStart
            ex.upstream.abort()
            ex.upstream = None
        self._exchange = None
        ex.record.aborted = True
        if ex.record.errorDetail is None:
            ex.record.errorDetail = why
        self.factory.exchangeFinished(self, ex)

    def _clientError(self, error: ProxyError) -> None:
        """
        The client sent bytes that are not a well-framed request.
        """
        ex = self._exchange
        if ex is not None and ex.responseStarted:
            # Mid-request-body garbage after the response began: cut it.
            self._abandon(ex, error.detail)
            self._state = "CLOSED"
            self.transport.abortConnection()
            return
        if ex is None:
            head = RequestHead(b"-", b"-", b"1.1", [], keepAlive=False)
            record = self._newRecord(head)
            record.kind = "refused"
            ex = _Exchange(self, head, Target("http", "", 0, b"", b""), record)
            self._exchange = ex
        self._queue.clear()
        error.closeConnection = True
        self._respondWithError(ex, error)

    # client-side timeouts

    _timerKind = ""

    def _armTimer(self, seconds: float | None, callback: Callable[[], None], kind: str = "idle") -> None:
        self._deadline.set(seconds, callback)
        self._timerKind = kind

    def _cancelTimer(self) -> None:
        self._deadline.clear()
        self._timerKind = ""

    def _idleTimedOut(self) -> None:
        self._log.info("Closing idle connection from {peer}.", peer=(self.peerHost, self.peerPort))
        self._closeConnection()

    def _headerTimedOut(self) -> None:
        self._clientError(
            ProxyError(
                "The request head did not arrive within {} seconds.".format(
                    self.factory.headerTimeout
                ),
                status=408,
                proxyStatus="http_request_error",
                closeConnection=True,
            )
        )


class ProxyFactory(Factory):
    """
    Builds L{ProxyServerProtocol}s and holds what they share: the upstream
    pool, the clock, the configuration.

    @ivar pseudonym: this proxy's name in C{Via} and C{Proxy-Status}.
    @ivar ownAddresses: C{(host, port)} pairs this proxy listens on; a
        request to one of them is a loop.
    """

    _log = Logger()
    noisy = False
    redactHistory = True
    # Attach the full record to transaction events (set when --history,
    # --access-log or workers consume it; building it is not free).
    transactionDetail = False
    connectionIdPrefix = ""
    _connectionCounter = 0

    idleTimeout = 60.0
    tunnelIdleTimeout: float | None = 300.0
    bodyTimeout: float | None = 60.0
    responseBodyTimeout: float | None = 60.0
    maxBody: int | None = None
    maxConnections = 4096
    maxConnectionsPerClient = 256
    headerTimeout = 10.0
    responseTimeout = 30.0
    abortTimeout = 15.0
    forwarded = "off"
    stopping = False

    def __init__(
        self,
        clock: IReactorTime,
        pool: UpstreamPool,
        *,
        pseudonym: str = "twisted-proxy",
        wallClock: Callable[[], float] = time.time,
        monoClock: Callable[[], float] = time.monotonic,
        idleTimeout: float | None = None,
        headerTimeout: float | None = None,
        responseTimeout: float | None = None,
        forwarded: str | None = None,
        policy: Policy | None = None,
        tunnelIdleTimeout: float | None = None,
        parent: ParentProxy | None = None,
        parentBypass: HostPatterns | None = None,
        maxTargetLength: int = 8192,
        maxHeaderBytes: int = 32768,
        maxHeaderCount: int = 100,
    ) -> None:
        self.clock = clock
        self.pool = pool
        self.pseudonymText = pseudonym
        self.pseudonym = pseudonym.encode("ascii")
        self.wallClock = wallClock
        self.monoClock = monoClock
        if idleTimeout is not None:
            self.idleTimeout = idleTimeout
        if headerTimeout is not None:
            self.headerTimeout = headerTimeout
        if responseTimeout is not None:
            self.responseTimeout = responseTimeout
        if forwarded is not None:
            self.forwarded = forwarded
        self.policy = policy if policy is not None else Policy.fromOptions()
        if hasattr(clock, "getThreadPool"):
            self.runInThread = lambda f, *args: deferToThreadPool(
                clock, clock.getThreadPool(), f, *args
            )
        else:
            # A test clock has no threads: run it in place.
            self.runInThread = lambda f, *args: maybeDeferred(f, *args)
        if tunnelIdleTimeout is not None:
            self.tunnelIdleTimeout = tunnelIdleTimeout
        self.parent = parent
        self.parentBypass = parentBypass
        self._parserLimits = (maxTargetLength, maxHeaderBytes, maxHeaderCount)
        self.ownAddresses: set[tuple[str, int]] = set()
        self._wildcardPorts: set[int] = set()
        self.connections: set[ProxyServerProtocol] = set()
        self._perClient: dict[str, int] = {}
        self.requests = 0

    def buildProtocol(self, addr: object) -> Protocol:
        host = getattr(addr, "host", "")
        if len(self.connections) >= self.maxConnections:
            return _Refuser(self, "the proxy is at its limit of {} connections".format(
                self.maxConnections))
        if self._perClient.get(host, 0) >= self.maxConnectionsPerClient:
            return _Refuser(self, "this client already has {} connections".format(
                self.maxConnectionsPerClient))
        return ProxyServerProtocol(self)

    def newRequestParser(self) -> RequestParser:
        return RequestParser(*self._parserLimits)

    def addListeningAddress(self, host: str, port: int) -> None:
        """
        Record an address this proxy listens on (for loop detection).  An
        unspecified address (0.0.0.0, ::) means every local address.
        """
        if host in ("", "0.0.0.0", "::"):
            self._wildcardPorts.add(port)
            host = "127.0.0.1"
        self.ownAddresses.add((host, port))
        if host == "127.0.0.1":
            self.ownAddresses.add(("localhost", port))
        if host == "::1":
            self.ownAddresses.add(("localhost", port))

    def parentFor(self, host: str) -> ParentProxy | None:
        """
        The parent proxy to reach C{host} through, or L{None} to go direct.
        """
        if self.parent is None:
            return None
        if self.parentBypass is not None and self.parentBypass.matchHost(host) is not None:
            return None
        return self.parent

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

    def configureLimits(self, **limits: object) -> None:
        """
        Set timeouts and limits by attribute name (C{bodyTimeout},
        C{maxBody}, C{maxConnections}, ...), as parsed from options.
        """
        for name, value in limits.items():
            if not hasattr(type(self), name):
                raise TypeError("unknown limit " + name)
            setattr(self, name, value)

    def exchangeFinished(self, proto: ProxyServerProtocol, ex: _Exchange) -> None:
        """
        A transaction is over: complete its record and emit it.
        """
        self.requests += 1
        record = ex.record
        record.bytesFromClient = max(record.bytesFromClient, ex.bytesFromClient)
        record.bytesToUpstream = max(record.bytesToUpstream, ex.bytesToUpstream)
        record.bytesToClient = ex.bytesToClient
        emitTransaction(
            _transactionLog, record, redact=self.redactHistory, detail=self.transactionDetail
        )


class _Refuser(Protocol):
    """
    A connection over a connection limit: answer 503 to whatever request
    head arrives within a second, then close; close if nothing arrives.
    The existing connections carry on.
    """

    _log = Logger()
    waitForRequest = 1.0

    def __init__(self, factory: ProxyFactory, why: str) -> None:
        self.factory = factory
        self.why = why
        self._timer = None

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self._log.warn(
            "Refusing a connection from {peer}: {why}.",
            peer=(getattr(peer, "host", ""), getattr(peer, "port", 0)),
            why=self.why,
        )
        self._timer = self.factory.clock.callLater(self.waitForRequest, self._giveUp)

    def dataReceived(self, data: bytes) -> None:
        if self._timer is None:
            return
        self._timer.cancel()
        self._timer = None
        error = ServiceUnavailable(
            "Too many connections: {}; try again later.".format(self.why)
        )
        status, reason, headers, body = error.render(self.factory.pseudonymText)
        headers.append(("Retry-After", "5"))
        self.transport.write(
            serializeResponseHead(
                status,
                reason.encode("ascii"),
                [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers],
            )
            + body
        )
        self.transport.loseConnection()

    def _giveUp(self) -> None:
        self._timer = None
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
