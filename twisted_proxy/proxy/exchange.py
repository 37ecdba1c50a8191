# -*- test-case-name: tests.test_server -*-
"""
L{Exchange}: one request and its response, from the moment its head has
been read to the moment its response has been relayed (or refused, or
failed).

Its steps, in the order one request takes them, each a method below::

    start           check the head: refusal, loops, target, size, Max-Forwards
    _authorize      the policy's verdict (a password check may run in a thread)
    _lookUpCache    the cache's turn (L{twisted_proxy.proxy.cache}): serve a
                    stored response, wait for one in flight, or go on to the
                    origin (with validators, if a stored one is stale)
    _connect        an upstream connection: pooled, new, or via a parent proxy
    _sendHead       the request head goes upstream
    requestBody     request body events, from the connection, go upstream
    requestEnd
    responseHead    the response, from the upstream connection, goes to the
    responseBody    client (L{twisted_proxy.proxy.upstream.IResponseReceiver})
    responseEnd
    _finish         the record is complete; the connection goes on

CONNECT takes C{_connectTunnel} after C{_authorize}, and a 101 response
C{responseSwitched}; both end in C{_startTunnel}.

States (C{_state}):
  - C{CHECKING}: the head is being checked.
  - C{AUTHORIZING}: waiting for a password check.
  - C{WAITING}: waiting for the response to an identical request already
    in flight (the cache's collapsed forwarding).
  - C{CONNECTING}: waiting for an upstream connection.
  - C{FORWARDING}: the request is going upstream; no final response yet.
  - C{RELAYING}: the final response head went to the client; its body is
    being relayed.
  - C{SERVING}: a stored response is being sent from the cache.
  - C{TUNNEL}: bytes are relayed unparsed (CONNECT, or a 101 upgrade).
  - C{DONE}: over (answered, refused, failed or abandoned).  Callbacks from
    an upstream connection that was given up can never reach a later
    exchange: each exchange is the receiver of its own upstream connection,
    and ignores everything once C{DONE}.

The request side moves independently of these states (an origin may answer
before the request body is complete): C{requestSent} says whether the whole
request went upstream.

The exchange talks to its connection (L{ProxyServerProtocol}) through a
narrow set of calls: C{pauseReading}/C{resumeReading} with a reason,
C{say} (the brief's log lines), C{requestFullyRead}, C{startTunnel} and
C{exchangeDone}; it writes the response to the client transport directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..http.errors import (
    BadGateway,
    Forbidden,
    GatewayTimeout,
    LoopDetected,
    PayloadTooLarge,
    ProxyError,
)
from ..http.fields import forwardRequestHeaders, forwardResponseHeaders, viaHasPseudonym
from ..http.framing import (
    LAST_CHUNK,
    RequestHead,
    ResponseHead,
    chunkHeader,
    lastChunk,
    serializeRequestHead,
    serializeResponseHead,
)
from ..http.target import Target, parseTarget
from ..records.record import TransactionRecord
from .cache import (
    COLLAPSED,
    FRESH_HIT,
    NOT_MODIFIED,
    ONLY_IF_CACHED_MISS,
    STALE_WHILE_REVALIDATE,
    CachedBody,
    CacheLookup,
    CacheWriter,
    HTTPCache,
)
from .generated import Generated, errorResponse, maxForwards, maxForwardsResponse
from .parent import ParentConnectProtocol, ParentProxy
from .revalidation import BackgroundRevalidation
from .tcp import writeNow
from .tunnel import Tunnel, TunnelUpstreamProtocol
from .upstream import UpstreamProtocol, connectFailureToError

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from .factory import ProxyFactory
    from .server import ProxyServerProtocol

__all__ = ["Exchange"]

# Methods whose request can be sent again when a reused connection turns
# out to be dead (RFC 9110 9.2.2).
_IDEMPOTENT = frozenset([b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"])

_CRLF = b"\r\n"
_NO_TARGET = Target("http", "", 0, b"", b"")

# Exchange._state values.
CHECKING = "CHECKING"
AUTHORIZING = "AUTHORIZING"
WAITING = "WAITING"
CONNECTING = "CONNECTING"
FORWARDING = "FORWARDING"
RELAYING = "RELAYING"
SERVING = "SERVING"
TUNNEL = "TUNNEL"
DONE = "DONE"


def _outcome(status: int) -> str:
    """
    How the brief's log line names a response the proxy made itself: a
    refusal (the access policy, a limit), a request the client got wrong,
    or a request that failed on the way to the origin.
    """
    if status in (403, 407, 421, 503):
        return "Request refused"
    if status < 500:
        return "Request rejected"
    return "Request failed"


def _headSize(head: RequestHead) -> int:
    """
    The size of a request head as serialised: C{METHOD SP TARGET SP
    HTTP/1.1 CRLF}, C{name: value CRLF} per field, and the final CRLF.
    """
    size = len(head.method) + len(head.target) + 14
    for n, v in head.headers:
        size += len(n) + len(v) + 4
    return size


@implementer(IPushProducer)
class Exchange:
    """
    One request/response transaction on a client connection; see the
    module docstring.

    It is the L{IResponseReceiver
    <twisted_proxy.proxy.upstream.IResponseReceiver>} of its upstream
    connection, and the push producer the upstream transport pauses when
    the origin does not read the request body fast enough.

    @ivar head: the request head.
    @ivar target: where the request goes (a blank target if refused before
        it was parsed).
    @ivar record: the transaction record.
    @ivar requestSent: the whole request went upstream (or, for a request
        answered here, was read).
    @ivar mode: how the response body is framed to the client: C{"length"},
        C{"chunked"}, C{"close"} or C{"none"}.
    @ivar closeAfter: the client connection closes after this response.
    @ivar status: the final status sent to the client, if any.
    """

    _log = Logger()
    _state = CHECKING

    upstream: UpstreamProtocol | None = None
    parent: ParentProxy | None = None
    forwardMaxForwards: int | None = None
    reused = False
    retried = False
    requestSent = False
    mode = "none"
    closeAfter = False
    status: int | None = None
    bytesToClient = 0
    bytesFromClient = 0
    bytesToUpstream = 0
    upstreamBytesAtStart = 0
    bodyBytes = 0
    lastProgress = 0.0
    _lookup: CacheLookup | None = None
    _forward: RequestHead | None = None
    _writer: CacheWriter | None = None
    _served: CachedBody | None = None
    _serveAtEnd: tuple[ResponseHead | None, CachedBody | None] | None = None
    _requestTime = 0.0

    def __init__(
        self,
        conn: ProxyServerProtocol,
        head: RequestHead,
        record: TransactionRecord,
        upgrade: bool,
    ) -> None:
        self.conn = conn
        self.factory: ProxyFactory = conn.factory
        self.config = conn.factory.config
        self.head = head
        self.record = record
        self.target = _NO_TARGET
        self.upgrade = upgrade
        self._transport = conn.transport
        self._clock = conn.factory.clock
        self._deadline = conn.deadline
        # Response bytes of the current upstream read, not yet written.
        self._held: list[bytes] = []

    @property
    def state(self) -> str:
        return self._state

    @property
    def _cache(self) -> HTTPCache:
        """
        The cache of the current lookup.  There is a lookup only when the
        factory has a cache (L{_lookUpCache}), and a factory keeps the cache
        it was built with (a reload reconfigures it, never replaces it).
        """
        cache = self.factory.cache
        assert cache is not None, "a cache lookup without a cache"
        return cache

    @property
    def finished(self) -> bool:
        return self._state == DONE

    @property
    def responseStarted(self) -> bool:
        """
        The final response head (or a CONNECT's 200) went to the client.
        """
        return self._state in (RELAYING, SERVING, TUNNEL) or self.status is not None

    # the request: check, authorize, connect, send

    def start(self, refusal: ProxyError | None) -> None:
        """
        The request head has been read: check it, and go on.

        @param refusal: the connection was refused by policy: answer this.
        """
        head = self.head
        factory = self.factory
        try:
            if refusal is not None:
                raise refusal
            if viaHasPseudonym(head.headers, factory.pseudonym):
                raise LoopDetected("This request has already been through this proxy (Via).")
            target = self._resolveTarget()
            if factory.isOwnAddress(target.host, target.port):
                raise LoopDetected(
                    "The destination {}:{} is this proxy itself.".format(target.host, target.port)
                )
            maxBody = self.config.maxBody
            if (
                maxBody is not None
                and head.contentLength is not None
                and head.contentLength > maxBody
            ):
                raise self._tooLarge()
            hops = maxForwards(head)
        except ProxyError as e:
            self.record.kind = "refused"
            self.fail(e)
            return
        self.target = target
        self.bytesFromClient = _headSize(head)
        record = self.record
        record.destHost = target.host
        record.destPort = target.port
        if hops == 0:
            self._answer(maxForwardsResponse(head, factory.pseudonym, self._mustClose()))
            return
        self.forwardMaxForwards = None if hops is None else hops - 1
        credentials = head.get(b"proxy-authorization")
        policy = self.config.policy
        if policy.pendingVerification(credentials):
            # Checking a password hash (bcrypt: tens to hundreds of ms) must
            # not stop the reactor: it runs in a thread, and this request
            # waits (reading stops) until the outcome is in the cache.
            self._state = AUTHORIZING
            self.conn.pauseReading("auth")
            d = factory.runInThread(policy.verify, credentials)
            d.addErrback(lambda f: self._log.failure("While verifying credentials", f))
            d.addCallback(self._verified, credentials)
            return
        self._authorize(credentials)

    def _resolveTarget(self) -> Target:
        """
        Where the request goes: its target, or, in reverse-proxy mode, the
        origin configured for its C{Host}.

        @raise ProxyError: if it has no usable target.
        """
        head = self.head
        config = self.config
        websocket = self.upgrade and b"websocket" in (head.get(b"upgrade") or b"").lower()
        if not config.reversing:
            return parseTarget(head.method, head.target, head.get(b"host"), websocket)
        if head.method == b"CONNECT":
            raise Forbidden("This server is a reverse proxy; it does not open tunnels.")
        target = parseTarget(head.method, head.target, head.get(b"host") or b"-", websocket)
        name = target.host
        origin = dict(config.reverseHosts).get(name, config.reverse)
        if origin is None:
            raise ProxyError(
                "This reverse proxy serves no site named {}.".format(name),
                status=421,
                proxyStatus="destination_not_found",
            )
        authority = origin.authority if config.reverseRewriteHost else target.authority
        if head.get(b"host") is None:
            authority = origin.authority
        return Target("http", origin.host, origin.port, target.path, authority)

    def _verified(self, result: object, credentials: bytes | None) -> None:
        self.conn.resumeReading("auth")
        if self._state != AUTHORIZING:
            return
        self._authorize(credentials)
        self.conn.processQueue()

    def _authorize(self, credentials: bytes | None) -> None:
        """
        The policy's verdict on the request (credentials, CONNECT port,
        destination), then on to the destination.
        """
        head, target, record = self.head, self.target, self.record
        decision = self.config.policy.checkRequest(
            head.method, target.host, target.port, credentials
        )
        if decision.refusal is not None:
            record.kind = "refused"
            self.fail(decision.refusal)
            return
        record.user = decision.user
        self.parent = self.factory.parentFor(target.host)
        if head.method == b"CONNECT":
            record.kind = "tunnel"
            self._connectTunnel()
            return
        if self.upgrade:
            record.kind = "upgrade"
        self._lookUpCache()

    def _lookUpCache(self) -> None:
        """
        The cache's turn, before any connection is made: it answers what it
        can, and says what goes on to the origin (and with which
        validators).  With no cache, or for an upgrade, every request goes
        on to the origin.
        """
        cache = self.factory.cache
        if cache is None or self.upgrade:
            self._connect()
            return
        self._useLookup(cache.lookup(self.head, self.target))

    def _useLookup(self, lookup: CacheLookup) -> None:
        self._lookup = lookup
        self.record.cacheStatus = lookup.verdict
        outcome = lookup.outcome
        if outcome == FRESH_HIT or outcome == NOT_MODIFIED:
            self._serveFromCache(lookup.head, lookup.body)
        elif outcome == STALE_WHILE_REVALIDATE:
            if lookup.background is not None:
                BackgroundRevalidation(
                    self.factory, self._cache, lookup.background, self.parent
                ).start()
            self._serveFromCache(lookup.head, lookup.body)
        elif outcome == COLLAPSED:
            # The same response is on its way for another request: wait
            # for it (bounded), then look again.
            self._state = WAITING
            lookup.wait(self._collapseEnded)
            self._deadline.set(self._cache.config.collapseTimeout, self._collapseTimedOut)
        elif outcome == ONLY_IF_CACHED_MISS:
            assert lookup.error is not None  # this outcome's answer is its error
            self.fail(lookup.error)
        else:
            self._forward = lookup.forward
            self._connect()

    def _collapseEnded(self, result: str) -> None:
        # Called from inside the exchange that led: do the work later.
        self._clock.callLater(0, self._lookUpAgain)

    def _collapseTimedOut(self) -> None:
        if self._lookup is not None:
            self._lookup.cancelWait()
        self._lookUpAgain()

    def _lookUpAgain(self) -> None:
        if self._state != WAITING or self._lookup is None:
            return
        self._deadline.clear()
        self._useLookup(self._cache.lookupAgain(self._lookup))

    def _serveFromCache(self, head: ResponseHead | None, body: CachedBody | None) -> None:
        """
        Send a response from the cache: its head now, its body streamed
        from the store (the client transport pausing it as needed).

        @param head: the head of the lookup or decision that said to serve
            from the cache; only an outcome that serves nothing has none.
        """
        assert head is not None, "served from the cache without a head"
        self._deadline.clear()
        self._state = SERVING
        client = self.head
        close = self.factory.stopping or self._mustClose()
        self.closeAfter = close
        self.status = head.status
        self.conn.say(
            "Response served from the cache: HTTP/"
            + (head.version + b" %d " % (head.status,) + head.reason).decode("latin-1")
            + " ...",
            status=head.status,
        )
        headers = forwardResponseHeaders(
            head.headers,
            head.version,
            self.factory.pseudonym,
            contentLength=head.contentLength if body is not None else None,
            close=close,
            keepAlive10=client.version == b"1.0" and not close,
        )
        self._recordResponse(head.status, head.reason.decode("latin-1"), head.version, headers)
        data = serializeResponseHead(head.status, head.reason, headers)
        self.bytesToClient += len(data)
        writeNow(self._transport, data)
        if body is None:
            self.record.mark("responseComplete")
            self._finish(close)
            return
        self._served = body
        # A CachedBody is a push producer by its shape: the cache package,
        # pure, cannot import twisted.internet to declare IPushProducer.
        self._transport.registerProducer(body, True)  # type: ignore[arg-type]
        self._armStall(self.config.responseBodyTimeout)
        body.start(_ToClient(self))

    def _cacheBodyDone(self) -> None:
        if self._state != SERVING:
            return
        self._served = None
        self._transport.unregisterProducer()
        self.record.mark("responseComplete")
        self._finish(self.closeAfter)

    def _cacheBodyFailed(self, reason: str) -> None:
        """
        A stored body could not be read to its end (a block failed its
        checksum): the client must not take what it got as whole.
        """
        if self._state != SERVING:
            return
        self._served = None
        self.record.errorDetail = "cached body unreadable: " + reason
        self.abandon(self.record.errorDetail)
        self.conn.abort()

    def _connect(self) -> None:
        self._state = CONNECTING
        parent = self.parent
        if parent is not None:
            key = ("proxy", parent.host, parent.port)
        else:
            target = self.target
            key = (target.scheme, target.host, target.port)
        pool = self.factory.pool
        proto = pool.takeIdle(key)
        if proto is not None:
            self._upstreamConnected(proto, True)
            return
        d = pool.connect(key)
        self._markConnectStart(d)
        d.addCallbacks(self._upstreamConnected, self._connectFailed, (False,))

    def _markConnectStart(self, connecting: Deferred[Any]) -> None:
        """
        Mark C{connectStart} when the connection is really asked of the
        kernel.  Twisted's TCP client calls C{connect()} (which sends the
        SYN) on the reactor's next pass, after whatever else this one does;
        a call scheduled now, later than that one, runs right after it.  A
        connection that is already made (or failed) was asked for now.
        """
        if connecting.called:
            self.record.mark("connectStart")
        else:
            self._clock.callLater(0, self._connectCalled)

    def _connectCalled(self) -> None:
        if self._state == CONNECTING and not self.record.marked("upstreamReady"):
            self.record.mark("connectStart")

    def _connectFailed(self, failure: Failure) -> None:
        if self._state != CONNECTING:
            return
        parent = self.parent
        if parent is not None and not failure.check(ProxyError):
            error = connectFailureToError(failure, parent.host, parent.port)
            error.detail = "Parent proxy: " + error.detail
        else:
            error = connectFailureToError(failure, self.target.host, self.target.port)
        self._originFailed(error)

    def _checkConnected(
        self, transport: Any, peerHost: str, peerPort: int, reused: bool
    ) -> ProxyError | None:
        """
        Where did the connection go (C{peerHost}, C{peerPort})?  For a new
        connection: refuse loops and, if configured, private addresses; log
        the destination the brief's way.  A reused one passed these checks
        when it was new.
        """
        record = self.record
        record.peerHost = peerHost
        record.peerPort = peerPort
        record.connectionReused = reused
        if reused:
            return None
        factory = self.factory
        if factory.isOwnAddress(peerHost, peerPort) or (
            getattr(transport.getHost(), "host", None) == peerHost
            and factory.listensOnPort(peerPort)
        ):
            return LoopDetected(
                "The destination {}:{} is this proxy itself.".format(peerHost, peerPort)
            )
        target = self.target
        if self.parent is not None:
            # The parent resolves and connects; what we reached is the parent.
            destination = "{} (via parent proxy {}:{})".format(target.host, peerHost, peerPort)
        else:
            refusal = self.config.policy.checkConnectedAddress(peerHost)
            if refusal is not None:
                return refusal
            destination = (
                peerHost if peerHost == target.host else "{} ({})".format(target.host, peerHost)
            )
        self.conn.say("Destination IP address: " + destination, destination=destination)
        return None

    def _upstreamConnected(self, proto: UpstreamProtocol, reused: bool) -> None:
        if self._state != CONNECTING:
            # The client went away while we were connecting.
            self.factory.pool.release(proto)
            return
        # Marked first: logging the destination is not part of connecting.
        self.record.mark("upstreamReady")
        error = self._checkConnected(proto.transport, proto.peerHost, proto.peerPort, reused)
        if error is not None:
            proto.abort()
            self.fail(error)
            return
        self._state = FORWARDING
        self.upstream = proto
        self.reused = reused
        self.upstreamBytesAtStart = proto.bytesReceived
        self._sendHead()
        self.conn.processQueue()

    def _sendHead(self) -> None:
        head, proto = self.head, self.upstream
        assert proto is not None
        proto.startRequest(self, head.method)
        config = self.config
        if self._lookup is not None:
            self._requestTime = self._clock.seconds()
        headers = forwardRequestHeaders(
            (self._forward or head).headers,
            self.target,
            head.version,
            self.factory.pseudonym,
            upgrade=self.upgrade,
            contentLength=head.contentLength,
            chunked=head.chunked,
            forwarded=config.forwarded,
            clientHost=self.conn.peerHost,
        )
        if self.forwardMaxForwards is not None:
            value = b"%d" % (self.forwardMaxForwards,)
            headers = [(n, value) if n.lower() == b"max-forwards" else (n, v) for n, v in headers]
        parent = self.parent
        if parent is not None:
            requestTarget = self.target.url.encode("latin-1")
            if parent.authorization is not None:
                headers.append((b"Proxy-Authorization", parent.authorization))
        else:
            requestTarget = self.target.path
        data = serializeRequestHead(head.method, requestTarget, headers)
        self.bytesToUpstream += len(data)
        proto.write(data)
        if head.hasBody:
            proto.transport.registerProducer(self, True)
            self._armStall(config.bodyTimeout)
        else:
            self._requestComplete()

    @property
    def wantsBody(self) -> bool:
        """
        Whether the exchange can take request body events now.
        """
        return self._state in (FORWARDING, RELAYING) and not self.requestSent

    def requestBody(self, data: bytes) -> None:
        """
        A piece of the request body, from the client.
        """
        self.bytesFromClient += len(data)
        self.lastProgress = self._clock.seconds()
        maxBody = self.config.maxBody
        if maxBody is not None:
            self.bodyBytes += len(data)
            if self.bodyBytes > maxBody:
                self._upstreamFailed(self._tooLarge(), retry=False, originFault=False)
                return
        proto = self.upstream
        assert proto is not None
        if self.head.chunked:
            header = chunkHeader(len(data))
            self.bytesToUpstream += len(header) + len(data) + 2
            proto.writeSequence([header, data, _CRLF])
        else:
            self.bytesToUpstream += len(data)
            proto.write(data)

    def requestEnd(self, trailers: list[tuple[bytes, bytes]]) -> None:
        """
        The end of the request body, from the client.
        """
        proto = self.upstream
        assert proto is not None
        if self.head.chunked:
            data = lastChunk(trailers)
            self.bytesToUpstream += len(data)
            proto.write(data)
        proto.transport.unregisterProducer()
        self.conn.resumeReading("upload")
        self._requestComplete()

    def _requestComplete(self) -> None:
        self.requestSent = True
        self.record.mark("requestSent")
        if self._state == FORWARDING:
            self._deadline.set(self.config.responseTimeout, self._responseTimedOut)

    # IPushProducer, for the upload: the upstream transport pauses us when
    # the origin does not read the request body fast enough.

    def pauseProducing(self) -> None:
        self.conn.pauseReading("upload")

    def resumeProducing(self) -> None:
        # The origin drained what we wrote: that is progress too.
        self.lastProgress = self._clock.seconds()
        self.conn.resumeReading("upload")

    def stopProducing(self) -> None:
        # The upstream transport says this when its connection is gone (it
        # tells its producer before its protocol).  Nothing to do here: the
        # upstream's connectionLost follows and answers the client (502) or
        # closes it, as the state of the exchange requires.
        if self._state != DONE:
            self.conn.resumeReading("upload")

    def _dropUpstream(self) -> None:
        """
        Close the upstream connection of a request that is given up (never
        pooled: it may be mid-request or mid-response).
        """
        proto = self.upstream
        if proto is None:
            return
        self.upstream = None
        self.record.bytesFromUpstream += proto.bytesReceived - self.upstreamBytesAtStart
        if self.head.hasBody and not self.requestSent:
            # Stop being its producer now, not when its loss is reported.
            proto.transport.unregisterProducer()
            self.conn.resumeReading("upload")
        proto.abort()

    # the response (IResponseReceiver)

    def responseHead(self, head: ResponseHead) -> None:
        if self._state != FORWARDING:
            return
        self._deadline.clear()
        client = self.head
        factory = self.factory
        transport = self._transport
        if head.status < 200:
            if head.status == 101:
                self._switching(head)
                return
            # Interim responses (100 Continue, 103 Early Hints) go to HTTP/1.1
            # clients only (RFC 9110 15.2).
            if client.version == b"1.1":
                headers = forwardResponseHeaders(head.headers, head.version, factory.pseudonym)
                writeNow(transport, serializeResponseHead(head.status, head.reason, headers))
            if self.requestSent:
                self._deadline.set(self.config.responseTimeout, self._responseTimedOut)
            else:
                self._armStall(self.config.bodyTimeout)
            return
        # Marked first: the log line and the rewriting are not the origin's.
        self.record.mark("responseHead")
        self.conn.say(
            "Response received: HTTP/"
            + (head.version + b" %d " % (head.status,) + head.reason).decode("latin-1")
            + " ...",
            status=head.status,
        )
        lookup = self._lookup
        if lookup is not None:
            decision = self._cache.responseReceived(
                lookup, head, self._requestTime, self._clock.seconds()
            )
            self.record.cacheStatus = decision.verdict
            if decision.error is not None:
                self.fail(decision.error)
                return
            if decision.fromCache:
                # The stored response answers (a 304 validated it, or the
                # origin failed and a stale one may be served).
                if head.noBody:
                    # The upstream response ends right here: serve at its end.
                    self._serveAtEnd = (decision.head, decision.body)
                else:
                    self._dropUpstream()
                    self._serveFromCache(decision.head, decision.body)
                return
            # The upstream head, with the cache's fields added.
            assert decision.head is not None  # only an error decision has no head
            head = decision.head
            self._writer = decision.writer
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
            or factory.stopping
            or not (self.requestSent or self.conn.canDiscardRest())
        )
        self._state = RELAYING
        self.mode = mode
        self.closeAfter = close
        self.status = head.status
        headers = forwardResponseHeaders(
            head.headers,
            head.version,
            factory.pseudonym,
            contentLength=head.contentLength if mode == "length" else None,
            chunked=mode == "chunked",
            close=close,
            keepAlive10=client.version == b"1.0" and not close,
        )
        self._recordResponse(
            head.status, head.reason.decode("latin-1"), head.version, headers, mark=False
        )
        data = serializeResponseHead(head.status, head.reason, headers)
        self.bytesToClient += len(data)
        if mode == "none":
            writeNow(transport, data)
            return
        # What a read from the origin brings is sent at the end of that
        # read (readDone, responseEnd), in one write: a head with the body
        # bytes that came with it leaves in one segment.
        self._held = [data]
        # The upstream connection is the body's producer (FORWARDING has one).
        assert self.upstream is not None
        transport.registerProducer(self.upstream, True)
        self._armStall(self.config.responseBodyTimeout)

    def _switching(self, head: ResponseHead) -> None:
        """
        A 101: relay it if the client asked to upgrade; the tunnel starts
        at the end of the head (L{responseSwitched}).
        """
        if not self.upgrade:
            self._upstreamFailed(
                BadGateway(
                    "The origin switched protocols without being asked to.",
                    proxyStatus="http_protocol_error",
                ),
            )
            return
        self.status = 101
        headers = forwardResponseHeaders(
            head.headers, head.version, self.factory.pseudonym, upgrade=True
        )
        self._recordResponse(101, head.reason.decode("latin-1"), head.version, headers)
        data = serializeResponseHead(101, head.reason, headers)
        self.bytesToClient += len(data)
        self._transport.write(data)

    def _recordResponse(
        self, status: int, reason: str, version: bytes, headers: list, mark: bool = True
    ) -> None:
        record = self.record
        if mark:
            record.mark("responseHead")
        record.status = status
        record.reason = reason
        record.responseVersion = "HTTP/" + version.decode("ascii")
        record.responseHeaders = headers

    def responseBody(self, data: bytes) -> None:
        if self._state != RELAYING:
            return
        self.lastProgress = self._clock.seconds()
        writer = self._writer
        if writer is not None and not writer.write(data):
            self._writer = None
        mode = self.mode
        if mode == "chunked":
            header = chunkHeader(len(data))
            self.bytesToClient += len(header) + len(data) + 2
            self._held += (header, data, _CRLF)
        elif mode != "none":
            self.bytesToClient += len(data)
            self._held.append(data)

    def readDone(self) -> None:
        """
        The upstream connection delivered everything of one read: send
        what it brought.
        """
        held = self._held
        if held:
            self._held = []
            writeNow(self._transport, held[0] if len(held) == 1 else b"".join(held))

    def responseEnd(self, trailers: list[tuple[bytes, bytes]]) -> None:
        if self._state == FORWARDING and self._serveAtEnd is not None:
            head, body = self._serveAtEnd
            self._serveAtEnd = None
            self._releaseUpstream()
            self._serveFromCache(head, body)
            return
        if self._state != RELAYING:
            return
        writer = self._writer
        if writer is not None:
            self._writer = None
            writer.finish()
        mode = self.mode
        transport = self._transport
        held = self._held
        if mode == "chunked":
            data = lastChunk(trailers) if trailers else LAST_CHUNK
            self.bytesToClient += len(data)
            held.append(data)
        if held:
            self._held = []
            writeNow(transport, held[0] if len(held) == 1 else b"".join(held))
        if mode != "none":
            transport.unregisterProducer()
        self.record.mark("responseComplete")
        self._releaseUpstream()
        self._finish(self.closeAfter)

    def _releaseUpstream(self) -> None:
        """
        The response is complete: the upstream connection goes back to the
        pool, if it can carry another request.
        """
        if self.requestSent:
            proto = self.upstream
            assert proto is not None
            self.upstream = None
            self.record.bytesFromUpstream += proto.bytesReceived - self.upstreamBytesAtStart
            self.factory.pool.release(proto)
        else:
            # Answered before the whole request went up: that connection
            # cannot carry another request.
            self._dropUpstream()

    def responseSwitched(self, trailingData: bytes) -> None:
        """
        The origin answered an upgrade request with 101: the connection
        becomes a tunnel between the client and that origin connection.
        """
        if self._state != FORWARDING:
            return
        proto = self.upstream
        assert proto is not None
        self.upstream = None
        tunnel = Tunnel(self._clock, self.config.tunnelIdleTimeout)
        proto.switchToTunnel(tunnel)
        self._startTunnel(tunnel, proto.transport, trailingData)

    def responseFailed(self, error: ProxyError, responseStarted: bool) -> None:
        if self._state not in (FORWARDING, RELAYING):
            return
        self._upstreamFailed(error, retry=not responseStarted)

    # CONNECT

    def _connectTunnel(self) -> None:
        """
        Connect to the CONNECT target; the bytes after the CONNECT head wait
        in the parser (and reading stops) until the tunnel starts.
        """
        self._state = CONNECTING
        self.requestSent = True
        self.conn.pauseReading("connect")
        tunnel = Tunnel(self._clock, self.config.tunnelIdleTimeout)
        target, parent = self.target, self.parent
        pool = self.factory.pool
        if parent is None:
            d = pool.connectRaw(target.host, target.port, TunnelUpstreamProtocol(tunnel))
        else:
            d = pool.connectRaw(
                parent.host,
                parent.port,
                ParentConnectProtocol(
                    tunnel,
                    target.authority,
                    parent.authorization,
                    b"1.1 " + self.factory.pseudonym,
                ),
            )
        self._markConnectStart(d)
        d.addCallbacks(self._tunnelConnected, self._connectFailed, (tunnel,))

    def _tunnelConnected(self, proto: Any, tunnel: Tunnel) -> None:
        if self._state != CONNECTING:
            proto.transport.abortConnection()
            return
        self.record.mark("upstreamReady")
        peer = proto.transport.getPeer()
        error = self._checkConnected(
            proto.transport, getattr(peer, "host", ""), getattr(peer, "port", 0), reused=False
        )
        if error is not None:
            proto.transport.abortConnection()
            self.fail(error)
            return
        if isinstance(proto, ParentConnectProtocol):
            proto.established.addCallbacks(
                lambda pending: self._tunnelReady(tunnel, proto, pending),
                self._parentRefused,
            )
            return
        self._tunnelReady(tunnel, proto, b"")

    def _parentRefused(self, failure: Failure) -> None:
        if self._state != CONNECTING:
            return
        error = failure.value
        if not isinstance(error, ProxyError):
            error = BadGateway(failure.getErrorMessage(), proxyStatus="proxy_internal_error")
        self.fail(error)

    def _tunnelReady(self, tunnel: Tunnel, proto: Any, fromUpstream: bytes) -> None:
        if self._state != CONNECTING:
            proto.transport.abortConnection()
            return
        record = self.record
        record.mark("requestSent")
        record.mark("responseHead")
        record.status, record.reason, record.responseVersion = (
            200,
            "Connection Established",
            "HTTP/1.1",
        )
        self.status = 200
        data = b"HTTP/1.1 200 Connection Established\r\n\r\n"
        self.bytesToClient += len(data)
        writeNow(self._transport, data)
        target = self.target
        self.conn.say(
            "Tunnel established to {}:{}".format(target.host, target.port),
            destination=target.host,
            port=target.port,
        )
        self._startTunnel(tunnel, proto.transport, fromUpstream)

    def _startTunnel(self, tunnel: Tunnel, upstreamTransport: Any, fromUpstream: bytes) -> None:
        """
        From here on the connection is a byte tunnel (CONNECT established,
        or a 101 relayed).
        """
        self._state = TUNNEL
        self._deadline.clear()
        tunnel.whenClosed().addCallback(self._tunnelClosed, tunnel)
        self.conn.startTunnel(tunnel, upstreamTransport, fromUpstream)

    def _tunnelClosed(self, reason: str, tunnel: Tunnel) -> None:
        record = self.record
        record.bytesFromClient = self.bytesFromClient + tunnel.bytesFromClient
        record.bytesToUpstream = tunnel.bytesFromClient
        record.bytesFromUpstream += tunnel.bytesFromUpstream
        self.bytesToClient += tunnel.bytesFromUpstream
        if reason != "normal":
            record.errorDetail = "tunnel closed: " + reason
        record.mark("responseComplete")
        target = self.target
        self.conn.say(
            "Tunnel to {}:{} closed ({}): {} bytes up, {} bytes down".format(
                target.host, target.port, reason, tunnel.bytesFromClient, tunnel.bytesFromUpstream
            ),
            destination=target.host,
            port=target.port,
            reason=reason,
        )
        self._state = DONE
        self.factory.exchangeFinished(self)

    # timeouts: one deadline, shared with the connection (exchanges on a
    # connection are one at a time); a stalled body is re-checked from the
    # time of its last progress rather than reset on every chunk

    def _armStall(self, seconds: float | None) -> None:
        self.lastProgress = self._clock.seconds()
        self._deadline.set(seconds, self._stallCheck, seconds)

    def _stallCheck(self, seconds: float) -> None:
        if self._state not in (FORWARDING, RELAYING, SERVING):
            return
        idle = self._clock.seconds() - self.lastProgress
        if idle < seconds:
            self._deadline.set(seconds - idle, self._stallCheck, seconds)
            return
        if self._state == SERVING:
            self.abandon(
                "No progress for {} seconds: the client stopped reading the response.".format(
                    seconds
                )
            )
            self.conn.abort()
            return
        if self._state == RELAYING:
            proto = self.upstream
            who = (
                "the client stopped reading the response"
                if proto is not None and proto.paused
                else "the destination stopped sending the response body"
            )
            error: ProxyError = GatewayTimeout(
                "No progress for {} seconds: {}.".format(seconds, who),
                proxyStatus="connection_read_timeout",
            )
        elif self.conn.isPaused("upload"):
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
            self._upstreamFailed(error, retry=False, originFault=False)
            return
        self._upstreamFailed(error, retry=False)

    def _responseTimedOut(self) -> None:
        if self._state != FORWARDING:
            return
        self._upstreamFailed(
            GatewayTimeout(
                "The destination sent no response within {} seconds.".format(
                    self.config.responseTimeout
                ),
                proxyStatus="http_response_timeout",
            ),
        )

    # ending

    def _upstreamFailed(
        self, error: ProxyError, retry: bool = True, originFault: bool = True
    ) -> None:
        """
        The upstream side failed (or timed out, or the request grew too
        large): retry, answer with an error, or cut the client off.

        @param originFault: the origin failed (not the client): a stale
            response may be served instead (RFC 5861 4).
        """
        self._deadline.clear()
        self._dropUpstream()
        if self._state == RELAYING:
            # Part of the response went to the client: cut the connection,
            # so that a truncated body can never look complete.
            self._log.info(
                "Upstream failed mid-response ({error}); aborting the client connection.",
                error=error.detail,
            )
            self.record.proxyError = error.proxyStatus
            self.record.errorDetail = error.detail
            self.abandon(error.detail)
            self.conn.abort()
            return
        head = self.head
        if (
            retry
            and self.reused
            and not self.retried
            and head.method in _IDEMPOTENT
            and not head.hasBody
        ):
            # A reused connection died under us before any response byte:
            # safe to try once more on a fresh one.
            self.retried = True
            self.requestSent = False
            self.bytesToUpstream = 0
            self._connect()
            return
        if originFault:
            self._originFailed(error)
        else:
            self.fail(error)

    def _originFailed(self, error: ProxyError) -> None:
        """
        No response came from the origin: the cache may answer instead
        (a stale response under C{stale-if-error}, or a 504 for one that
        must be revalidated); else the client gets C{error}.
        """
        lookup = self._lookup
        if lookup is not None:
            decision = self._cache.upstreamFailed(lookup)
            if decision is not None:
                self.record.cacheStatus = decision.verdict
                if decision.error is None:
                    self._serveFromCache(decision.head, decision.body)
                    return
                error = decision.error
        self.fail(error)

    def fail(self, error: ProxyError, extraHeaders: tuple[tuple[str, str], ...] = ()) -> None:
        """
        Answer the client with a generated response for C{error}.
        """
        self._deadline.clear()
        self._dropUpstream()
        # After a failed CONNECT, what follows may be TLS, not HTTP.
        close = error.closeConnection or self.head.method == b"CONNECT" or self._mustClose()
        response = errorResponse(error, self.factory.pseudonymText, self.head, close, extraHeaders)
        self.conn.say(
            "{}: {} {} ({}): {}".format(
                _outcome(response.status),
                response.status,
                response.reason,
                error.proxyStatus,
                error.detail,
            ),
            status=response.status,
            error=error.proxyStatus,
            detail=error.detail,
            rule=getattr(error, "rule", None),
            peer=(self.conn.peerHost, self.conn.peerPort),
        )
        self.record.proxyError = error.proxyStatus
        self.record.errorDetail = error.detail
        self._answer(response)

    def _mustClose(self) -> bool:
        """
        Whether a response made here, now, must close the connection: the
        client asked to, or the rest of an unread request body cannot be
        read and discarded.
        """
        return not self.head.keepAlive or not (
            self.requestSent or self.conn.requestFullyRead() or self.conn.canDiscardRest()
        )

    def _answer(self, response: Generated) -> None:
        """
        Send a response this proxy made itself, record it, and end the
        exchange.
        """
        self._recordResponse(response.status, response.reason, b"1.1", response.headers)
        self.status = response.status
        data = response.bytes()
        self.bytesToClient += len(data)
        writeNow(self._transport, data)
        self.record.mark("responseComplete")
        self._finish(response.close)

    def _finish(self, close: bool) -> None:
        self._state = DONE
        self._deadline.clear()
        if self._lookup is not None:
            self._endCacheLookup()
        self.factory.exchangeFinished(self)
        self.conn.exchangeDone(self, close)

    def _endCacheLookup(self) -> None:
        lookup = self._lookup
        if lookup is not None:
            self._lookup = None
            self._writer = None
            lookup.cancelWait()
            self._cache.finished(lookup)

    def abandon(self, why: str) -> None:
        """
        End the exchange without a (complete) response: the client went
        away, or the connection is being cut.
        """
        if self._state == DONE:
            return
        self._deadline.clear()
        self._dropUpstream()
        served = self._served
        if served is not None:
            self._served = None
            served.stopProducing()
        self._state = DONE
        self._endCacheLookup()
        record = self.record
        record.aborted = True
        if record.errorDetail is None:
            record.errorDetail = why
        self.factory.exchangeFinished(self)

    def _tooLarge(self) -> ProxyError:
        return PayloadTooLarge(
            "The request body is larger than the {} bytes this proxy accepts (--max-body).".format(
                self.config.maxBody
            )
        )


class _ToClient:
    """
    Where a body served from the cache goes: the client transport.
    """

    __slots__ = ("_exchange",)

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange

    def write(self, data: bytes) -> None:
        ex = self._exchange
        if ex._state != SERVING:
            return
        ex.bytesToClient += len(data)
        ex.lastProgress = ex._clock.seconds()
        writeNow(ex._transport, data)

    def bodyDone(self) -> None:
        self._exchange._cacheBodyDone()

    def bodyFailed(self, reason: str) -> None:
        self._exchange._cacheBodyFailed(reason)
