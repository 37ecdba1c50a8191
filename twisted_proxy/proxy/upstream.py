# -*- test-case-name: tests.test_upstream -*-
"""
Connections to origin servers.

  - L{UpstreamProtocol}: one connection to an origin.  It frames responses
    with L{twisted_proxy.http.framing.ResponseParser} and reports them to the
    L{IResponseReceiver} that sent the current request.
  - L{UpstreamPool}: idle persistent connections keyed by
    C{(scheme, host, port)} (at least C{minIdlePerHost} each, more while
    the recent concurrency to that key needs them), expired after
    C{idleTimeout} seconds on the injected clock.  A pooled connection the
    origin closed is dropped the moment the close is seen, so it is never
    handed out.
  - L{connectFailureToError}: the C{ProxyError} a failed connection attempt
    becomes (RFC 9209 error types).

The reactor and the endpoint factory are passed in: tests connect to
loopback or to in-memory transports, and DNS failures are tested by
injecting an endpoint factory, never by resolving a real name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol as TypingProtocol

from twisted.internet import error as ierror
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHostnameResolver,
    IHostResolution,
    IProtocol,
    IPushProducer,
    IReactorPluggableNameResolver,
    IReactorTCP,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

import base64

from ..http.errors import BadGateway, GatewayTimeout, ProxyError
from ..http.framing import Body, EndOfMessage, ResponseHead, ResponseParser, serializeRequestHead
from .tcp import setNoDelay

__all__ = [
    "IResponseReceiver",
    "UpstreamProtocol",
    "UpstreamPool",
    "connectFailureToError",
    "hostnameEndpointFactory",
    "ParentProxy",
    "ParentConnectProtocol",
    "CachingResolver",
    "Deadline",
]

EndpointFactory = Callable[[str, int], IStreamClientEndpoint]


class Deadline:
    """
    A timeout that is cheap to move: at most one pending C{DelayedCall},
    which, when it fires early (the deadline moved later since it was
    scheduled), schedules itself again for the new deadline.

    Moving a deadline later, or clearing it, costs no reactor call at all,
    so the per-request timeouts of a busy keep-alive connection (idle,
    response, stalled body) do not create and cancel a timer each time.
    Moving it earlier cancels the pending call and schedules a new one
    (cheaper in Twisted's reactor than C{DelayedCall.reset} to an earlier
    time, which searches the timer heap).

    @ivar _when: the deadline (clock time), or L{None}.
    @ivar _callback: what to call at the deadline, with C{_args}.
    """

    __slots__ = ("_clock", "_call", "_when", "_callback", "_args")

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._call = None
        self._when: float | None = None
        self._callback = None
        self._args: tuple = ()

    def set(self, seconds: float | None, callback: Callable[..., None], *args: object) -> None:
        """
        Call C{callback(*args)} C{seconds} from now, replacing any deadline
        set before.  L{None} or 0 clears it instead.
        """
        if not seconds:
            self.clear()
            return
        clock = self._clock
        when = clock.seconds() + seconds
        self._when = when
        self._callback = callback
        self._args = args
        call = self._call
        if call is None:
            self._call = clock.callLater(seconds, self._fire)
        elif call.getTime() > when:
            call.cancel()
            self._call = clock.callLater(seconds, self._fire)

    def clear(self) -> None:
        """
        No deadline (the pending call, if any, will find nothing to do).
        """
        self._when = None
        self._callback = None
        self._args = ()

    def cancel(self) -> None:
        """
        No deadline, and no pending call (when the connection is gone).
        """
        self.clear()
        call = self._call
        if call is not None:
            self._call = None
            if call.active():
                call.cancel()

    def _fire(self) -> None:
        self._call = None
        when = self._when
        if when is None:
            return
        now = self._clock.seconds()
        if now < when:
            self._call = self._clock.callLater(when - now, self._fire)
            return
        callback, args = self._callback, self._args
        self.clear()
        callback(*args)


class IResponseReceiver(TypingProtocol):
    """
    What an L{UpstreamProtocol} reports to while a request is in flight.
    """

    def responseHead(self, head: ResponseHead) -> None: ...

    def responseBody(self, data: bytes) -> None: ...

    def responseEnd(self, trailers: list[tuple[bytes, bytes]]) -> None: ...

    def responseSwitched(self, trailingData: bytes) -> None: ...

    def responseFailed(self, error: ProxyError, responseStarted: bool) -> None: ...


def hostnameEndpointFactory(
    reactor: object, connectTimeout: float, resolver: IHostnameResolver | None = None
) -> EndpointFactory:
    """
    The default endpoint factory: L{HostnameEndpoint} (dual stack, happy
    eyeballs, connect timeout), resolving names with C{resolver} (e.g. a
    L{CachingResolver}) instead of the reactor's own resolver if given.
    """
    resolving = reactor if resolver is None else _ResolvingReactor(reactor, resolver)

    def factory(host: str, port: int) -> IStreamClientEndpoint:
        # An IP literal needs neither a lookup nor happy eyeballs (whose
        # attempt delay made a refused connection take 0.3 s to report).
        if isIPAddress(host):
            return TCP4ClientEndpoint(reactor, host, port, timeout=connectTimeout)
        if isIPv6Address(host):
            return TCP6ClientEndpoint(reactor, host, port, timeout=connectTimeout)
        return HostnameEndpoint(resolving, host, port, timeout=connectTimeout)

    return factory


@implementer(IReactorTCP, IReactorTime, IReactorPluggableNameResolver)
class _ResolvingReactor:
    """
    The reactor, with another name resolver: what L{HostnameEndpoint} asks
    for names (it reads C{nameResolver} at connect time).
    """

    def __init__(self, reactor: object, resolver: IHostnameResolver) -> None:
        self._reactor = reactor
        self.nameResolver = resolver

    def installNameResolver(self, resolver: IHostnameResolver) -> IHostnameResolver:
        previous, self.nameResolver = self.nameResolver, resolver
        return previous

    def __getattr__(self, name: str) -> object:
        return getattr(self._reactor, name)


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        pass


class _Recorder:
    """
    Passes a resolution through to the real receiver, and remembers it.
    """

    def __init__(self, cache: CachingResolver, key: tuple, receiver: object) -> None:
        self._cache = cache
        self._key = key
        self._receiver = receiver
        self._addresses: list = []

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        self._receiver.resolutionBegan(resolution)

    def addressResolved(self, address: object) -> None:
        self._addresses.append(address)
        self._receiver.addressResolved(address)

    def resolutionComplete(self) -> None:
        self._cache._store(self._key, [(type(a), a.host) for a in self._addresses])
        self._receiver.resolutionComplete()


@implementer(IHostnameResolver)
class CachingResolver:
    """
    A name resolver that remembers answers for C{ttl} seconds and failures
    for C{negativeTtl} seconds (the system resolver gives no TTLs; this is
    the same trade-off Squid's C{positive_dns_ttl} makes), and answers IP
    literals at once without asking anyone.
    """

    def __init__(
        self,
        resolver: IHostnameResolver,
        clock: IReactorTime,
        ttl: float = 60.0,
        negativeTtl: float = 5.0,
        maxEntries: int = 10000,
    ) -> None:
        self._resolver = resolver
        self._clock = clock
        self.ttl = ttl
        self.negativeTtl = negativeTtl
        self.maxEntries = maxEntries
        self._cache: dict[tuple, tuple[float, list]] = {}

    def resolveHostName(
        self,
        resolutionReceiver: object,
        hostName: str,
        portNumber: int = 0,
        addressTypes: object = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        resolution = _Resolution(hostName)
        if isIPAddress(hostName) or isIPv6Address(hostName):
            kind = IPv6Address if ":" in hostName else IPv4Address
            self._deliver(resolution, resolutionReceiver, [(kind, hostName)], portNumber,
                          transportSemantics)
            return resolution
        key = (hostName.lower(), transportSemantics,
               None if addressTypes is None else frozenset(addressTypes))
        entry = self._cache.get(key)
        if entry is not None:
            expires, addresses = entry
            if expires > self._clock.seconds():
                self._deliver(resolution, resolutionReceiver, addresses, portNumber,
                              transportSemantics)
                return resolution
            del self._cache[key]
        return self._resolver.resolveHostName(
            _Recorder(self, key, resolutionReceiver), hostName, portNumber, addressTypes,
            transportSemantics,
        )

    def _deliver(self, resolution, receiver, addresses, port, semantics) -> None:
        receiver.resolutionBegan(resolution)
        for kind, host in addresses:
            receiver.addressResolved(kind(semantics, host, port))
        receiver.resolutionComplete()

    def _store(self, key: tuple, addresses: list) -> None:
        ttl = self.ttl if addresses else self.negativeTtl
        if ttl <= 0:
            return
        if len(self._cache) >= self.maxEntries:
            # Drop the oldest entry (dicts keep insertion order).
            del self._cache[next(iter(self._cache))]
        self._cache[key] = (self._clock.seconds() + ttl, addresses)


class _UpstreamFactory(ClientFactory):
    """
    Builds the one protocol of one connection attempt.  Quiet: a proxy opens
    many connections, and a log line for each factory's start and stop costs
    time and says nothing.
    """

    noisy = False

    def __init__(self, proto: IProtocol) -> None:
        self._proto = proto

    def buildProtocol(self, addr: object) -> IProtocol:
        return self._proto


def connectFailureToError(failure: Failure, host: str, port: int) -> ProxyError:
    """
    The proxy error for a failed connection attempt to C{host:port}.
    """
    where = "{}:{}".format(host, port)
    if failure.check(ProxyError):
        return failure.value
    if failure.check(ierror.DNSLookupError):
        return BadGateway(
            "The destination host name {} could not be resolved.".format(host),
            proxyStatus="dns_error",
        )
    if failure.check(ierror.ConnectionRefusedError):
        return BadGateway(
            "The destination {} refused the connection.".format(where),
            proxyStatus="connection_refused",
        )
    if failure.check(ierror.TimeoutError):
        return GatewayTimeout(
            "Connecting to the destination {} timed out.".format(where),
            proxyStatus="connection_timeout",
        )
    if failure.check(ierror.NoRouteError):
        return BadGateway(
            "There is no route to the destination {}.".format(where),
            proxyStatus="destination_ip_unroutable",
        )
    return BadGateway(
        "The destination {} is unavailable: {}.".format(
            where, failure.getErrorMessage().rstrip(".")
        ),
        proxyStatus="destination_unavailable",
    )


@implementer(IPushProducer, IHalfCloseableProtocol)
class UpstreamProtocol(Protocol):
    """
    One connection to an origin server.

    States (C{_state}):
      - C{CONNECTING}: not connected yet.
      - C{IDLE}: connected, no request in flight (in the pool, or about to be).
      - C{WAITING}: a request is being sent or was sent; no response byte yet.
      - C{RECEIVING}: part of the response has arrived.
      - C{SWITCHED}: after a 101: bytes go to L{tunnel}, unparsed.
      - C{CLOSED}: the connection is gone.

    @ivar key: the pool key, C{(scheme, host, port)}.
    @ivar receiver: the L{IResponseReceiver} of the request in flight.
    @ivar onIdleLost: called by the pool's bookkeeping when an idle
        connection closes.
    @ivar paused: the client side paused reading from this connection (it
        cannot keep up with the response).
    """

    _log = Logger()

    _state = "CONNECTING"
    receiver: IResponseReceiver | None = None
    onIdleLost: Callable[[UpstreamProtocol], None] | None = None
    onLost: Callable[[UpstreamProtocol], None] | None = None
    tunnel = None
    paused = False
    _gotResponseBytes = False
    bytesReceived = 0

    def __init__(self, key: tuple[str, str, int], maxHeaderBytes: int | None = None) -> None:
        self.key = key
        self._parser = ResponseParser(maxHeaderBytes)
        self.expiry: Deadline | None = None

    def connectionMade(self) -> None:
        setNoDelay(self.transport)
        self._state = "IDLE"

    @property
    def reusable(self) -> bool:
        """
        Whether the connection can carry another request.
        """
        return self._state == "IDLE" and self._parser.keepAlive

    def startRequest(self, receiver: IResponseReceiver, method: bytes) -> None:
        """
        A request is about to be written; route its response to C{receiver}.
        """
        if self._state != "IDLE":
            raise RuntimeError("startRequest in state " + self._state)
        self._state = "WAITING"
        self.receiver = receiver
        self._gotResponseBytes = False
        self._parser.expect(method)

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def writeSequence(self, data: list[bytes]) -> None:
        self.transport.writeSequence(data)

    def dataReceived(self, data: bytes) -> None:
        self.bytesReceived += len(data)
        state = self._state
        if state == "SWITCHED":
            self.tunnel.dataFromUpstream(data)
            return
        if state == "IDLE":
            # Bytes nobody asked for: this connection cannot be trusted.
            self._log.info(
                "Unexpected {n} bytes from idle upstream {key}; closing it.",
                n=len(data),
                key=self.key,
            )
            self._state = "CLOSED"
            self.transport.abortConnection()
            if self.onIdleLost is not None:
                self.onIdleLost(self)
            return
        if state == "WAITING":
            self._state = "RECEIVING"
            self._gotResponseBytes = True
        try:
            events = self._parser.feed(data)
        except ProxyError as e:
            self._fail(e)
            return
        self._dispatch(events)

    def _dispatch(self, events: list) -> None:
        receiver = self.receiver
        for event in events:
            t = type(event)
            if t is Body:
                receiver.responseBody(event.data)
            elif t is ResponseHead:
                receiver.responseHead(event)
            elif t is EndOfMessage:
                if self._parser.switched:
                    self._state = "SWITCHED"
                    receiver.responseSwitched(self._parser.trailingData)
                    return
                self._state = "IDLE"
                self.receiver = None
                receiver.responseEnd(event.trailers)
            if self._state in ("CLOSED", "IDLE"):
                # The receiver may have aborted us, or the response is over.
                return

    def _fail(self, error: ProxyError) -> None:
        receiver = self.receiver
        started = self._gotResponseBytes
        self._state = "CLOSED"
        self.receiver = None
        self.transport.abortConnection()
        if receiver is not None:
            receiver.responseFailed(error, started)

    def readConnectionLost(self) -> None:
        """
        The origin sent EOF.  In a tunnel, half-close the client; otherwise
        close: the response (if any) ends here.
        """
        if self._state == "SWITCHED" and self.tunnel is not None:
            self.tunnel.upstreamReadClosed()
        else:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = ierror.ConnectionDone) -> None:
        state = self._state
        self._state = "CLOSED"
        if self.expiry is not None:
            self.expiry.cancel()
        if self.onLost is not None:
            self.onLost(self)
            self.onLost = None
        receiver = self.receiver
        if state == "SWITCHED" and self.tunnel is not None:
            self.receiver = None
            self.tunnel.upstreamConnectionLost(reason)
            return
        if state == "IDLE":
            if self.onIdleLost is not None:
                self.onIdleLost(self)
            return
        if receiver is None:
            return
        self.receiver = None
        if state == "WAITING":
            receiver.responseFailed(
                BadGateway(
                    "The destination closed the connection without sending a response.",
                    proxyStatus="http_response_incomplete",
                ),
                False,
            )
            return
        if state == "RECEIVING":
            try:
                events = self._parser.feedEOF()
            except ProxyError as e:
                receiver.responseFailed(e, True)
                return
            self.receiver = receiver
            self._state = "RECEIVING"
            self._dispatch(events)
            self._state = "CLOSED"
            self.receiver = None

    def switchToTunnel(self, tunnel) -> None:
        """
        After a 101: from now on, bytes and closes go to C{tunnel}.
        """
        self.tunnel = tunnel
        self.receiver = None
        self.paused = False

    def abort(self) -> None:
        """
        Drop the connection now (the request was abandoned).
        """
        self.receiver = None
        if self._state != "CLOSED":
            self._state = "CLOSED"
            self.transport.abortConnection()

    # IPushProducer: the client side pauses us when it cannot keep up.

    def pauseProducing(self) -> None:
        if not self.paused and self._state != "CLOSED":
            self.paused = True
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            if self._state != "CLOSED":
                self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.abort()


class UpstreamPool:
    """
    Persistent connections to origins, reused across client connections.

    Idle connections are kept per key, most recently used last; each has a
    L{Deadline} for its expiry, moved (at no cost) every time it goes back
    to the pool.

    How many idle connections a key keeps: at least C{minIdlePerHost}, and
    up to the most connections to that key that were busy at once within
    the last C{idleTimeout} seconds.  A fixed cap below the concurrency to
    one origin closes connections that are about to be needed again: with
    50 clients of one origin, a cap of 8 made a quarter of all requests open
    a new connection (responses finish in bursts, so for a moment most
    connections are idle).  When the load drops, the peak is forgotten and
    what is over the cap expires after C{idleTimeout}.

    @ivar minIdlePerHost: idle connections a key keeps at least.
    @ivar idleTimeout: seconds an idle connection is kept.
    @ivar opened: connections opened so far (for metrics and benchmarks).
    @ivar reused: requests that went over a reused connection.
    """

    _log = Logger()
    opened = 0
    reused = 0
    maxResponseHeaderBytes = 65536

    def __init__(
        self,
        clock: IReactorTime,
        endpointFactory: EndpointFactory,
        minIdlePerHost: int = 8,
        idleTimeout: float = 60.0,
    ) -> None:
        self._clock = clock
        self._endpointFactory = endpointFactory
        self.minIdlePerHost = minIdlePerHost
        self.idleTimeout = idleTimeout
        self._idle: dict[tuple[str, str, int], list[UpstreamProtocol]] = {}
        self._alive: dict[tuple[str, str, int], int] = {}
        # key -> (most connections busy at once, when that was last seen)
        self._peak: dict[tuple[str, str, int], tuple[int, float]] = {}

    def _busy(self, key: tuple[str, str, int]) -> None:
        """
        A connection to C{key} has just become busy: note the peak.
        """
        busy = self._alive.get(key, 0) - len(self._idle.get(key, ()))
        peak, _ = self._peak.get(key, (0, 0.0))
        if busy >= peak:
            self._peak[key] = (busy, self._clock.seconds())

    def takeIdle(self, key: tuple[str, str, int]) -> UpstreamProtocol | None:
        """
        An idle connection for C{key}, taken out of the pool, or L{None}.
        """
        idle = self._idle.get(key)
        while idle:
            proto = idle.pop()
            if not idle:
                del self._idle[key]
            proto.onIdleLost = None
            proto.expiry.clear()
            if proto.reusable:
                self.reused += 1
                self._busy(key)
                return proto
            idle = self._idle.get(key)
        return None

    def connect(self, key: tuple[str, str, int]) -> Deferred[UpstreamProtocol]:
        """
        A new connection for C{key}.
        """
        scheme, host, port = key
        proto = UpstreamProtocol(key, self.maxResponseHeaderBytes)
        self.opened += 1
        self._alive[key] = self._alive.get(key, 0) + 1
        self._busy(key)
        proto.onLost = self._gone
        d = self._endpointFactory(host, port).connect(_UpstreamFactory(proto))

        def failed(failure: Failure) -> Failure:
            if proto.onLost is not None:
                proto.onLost = None
                self._gone(proto)
            return failure

        return d.addErrback(failed)

    def _gone(self, proto: UpstreamProtocol) -> None:
        left = self._alive.get(proto.key, 1) - 1
        if left > 0:
            self._alive[proto.key] = left
        else:
            self._alive.pop(proto.key, None)
            self._peak.pop(proto.key, None)

    def connectRaw(self, host: str, port: int, proto: IProtocol) -> Deferred:
        """
        A connection for a tunnel: same endpoints (DNS, timeouts), never
        pooled.
        """
        self.opened += 1
        return self._endpointFactory(host, port).connect(_UpstreamFactory(proto))

    def release(self, proto: UpstreamProtocol) -> None:
        """
        The request on C{proto} is over: keep it for reuse, or close it.
        """
        if not proto.reusable or self.minIdlePerHost <= 0:
            proto.abort()
            return
        proto.resumeProducing()
        key = proto.key
        idle = self._idle.setdefault(key, [])
        peak, seen = self._peak.get(key, (0, 0.0))
        if self._clock.seconds() - seen > self.idleTimeout:
            peak = self._alive.get(key, 1) - len(idle)
            self._peak[key] = (peak, self._clock.seconds())
        if len(idle) >= max(self.minIdlePerHost, peak):
            proto.transport.loseConnection()
            return
        if proto.expiry is None:
            proto.expiry = Deadline(self._clock)
        proto.expiry.set(self.idleTimeout, self._expire, proto)
        idle.append(proto)
        proto.onIdleLost = self._lost

    def _remove(self, proto: UpstreamProtocol) -> bool:
        idle = self._idle.get(proto.key)
        if idle and proto in idle:
            idle.remove(proto)
            if not idle:
                del self._idle[proto.key]
            return True
        return False

    def _expire(self, proto: UpstreamProtocol) -> None:
        if self._remove(proto):
            proto.onIdleLost = None
            proto.transport.loseConnection()

    def _lost(self, proto: UpstreamProtocol) -> None:
        self._remove(proto)
        if proto.expiry is not None:
            proto.expiry.cancel()

    def idleCount(self, key: tuple[str, str, int] | None = None) -> int:
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(v) for v in self._idle.values())

    def closeIdle(self) -> None:
        """
        Close every idle connection (at shutdown).
        """
        for key in list(self._idle):
            for proto in self._idle.pop(key):
                if proto.expiry is not None:
                    proto.expiry.cancel()
                proto.onIdleLost = None
                proto.transport.loseConnection()


class ParentProxy:
    """
    A parent (upstream) proxy: plain requests go to it in absolute-form,
    CONNECT tunnels are chained through it with CONNECT.

    @ivar host: its host name or address.
    @ivar port: its port.
    @ivar authorization: the C{Proxy-Authorization} value to send it, or
        L{None}.
    """

    def __init__(self, host: str, port: int, authorization: bytes | None = None) -> None:
        self.host = host
        self.port = port
        self.authorization = authorization

    @classmethod
    def fromURL(cls, url: str) -> ParentProxy:
        """
        Parse C{http://[user:password@]host:port}.

        @raise ValueError: with a message saying what is wrong.
        """
        from urllib.parse import unquote

        from ..http.target import parseAuthority

        if not url.startswith("http://"):
            raise ValueError("the parent proxy must be an http:// URL, e.g. http://proxy.example:3128")
        rest = url[len("http://"):].rstrip("/")
        if "/" in rest:
            raise ValueError("the parent proxy URL must not have a path")
        authorization = None
        if "@" in rest:
            userinfo, rest = rest.rsplit("@", 1)
            user, _, password = userinfo.partition(":")
            credentials = (unquote(user) + ":" + unquote(password)).encode("utf-8")
            authorization = b"Basic " + base64.b64encode(credentials)
        try:
            host, port, _ = parseAuthority(rest.encode("ascii"), 80)
        except (ProxyError, UnicodeEncodeError) as e:
            raise ValueError("bad parent proxy address {!r}: {}".format(rest, e)) from None
        return cls(host, port, authorization)

    def describe(self) -> str:
        return "http://{}{}:{}".format(
            "<credentials>@" if self.authorization else "", self.host, self.port
        )


@implementer(IHalfCloseableProtocol)
class ParentConnectProtocol(Protocol):
    """
    The upstream end of a tunnel chained through a parent proxy: sends
    C{CONNECT host:port} to the parent, reads its answer, and once the
    parent says 2xx becomes a plain relay to a L{Tunnel}
    (L{twisted_proxy.proxy.tunnel.Tunnel}).

    @ivar established: fires with the bytes the parent sent after its 2xx
        head, or fails with a L{ProxyError} (the parent refused, or spoke
        nonsense).
    """

    _state = "CONNECTING"

    def __init__(self, tunnel, authority: bytes, authorization: bytes | None, via: bytes) -> None:
        self.tunnel = tunnel
        self._authority = authority
        self._authorization = authorization
        self._via = via
        self._parser = ResponseParser()
        self.established: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        setNoDelay(self.transport)
        self._state = "WAITING"
        headers = [(b"Host", self._authority), (b"Via", self._via)]
        if self._authorization is not None:
            headers.append((b"Proxy-Authorization", self._authorization))
        self._parser.expect(b"CONNECT")
        self.transport.write(serializeRequestHead(b"CONNECT", self._authority, headers))

    def dataReceived(self, data: bytes) -> None:
        if self._state == "RELAY":
            self.tunnel.dataFromUpstream(data)
            return
        if self._state != "WAITING":
            return
        try:
            events = self._parser.feed(data)
        except ProxyError as e:
            self._refuse(e)
            return
        for event in events:
            if type(event) is ResponseHead and not event.interim:
                if not 200 <= event.status < 300:
                    self._refuse(
                        BadGateway(
                            "The parent proxy refused the tunnel: {} {}.".format(
                                event.status, event.reason.decode("latin-1")
                            ),
                            proxyStatus="http_request_denied" if event.status in (403, 407)
                            else "destination_unavailable",
                        )
                    )
                    return
        if self._parser.switched:
            self._state = "RELAY"
            self.transport.pauseProducing()
            self.established.callback(self._parser.trailingData)

    def _refuse(self, error: ProxyError) -> None:
        self._state = "CLOSED"
        self.transport.abortConnection()
        self.established.errback(Failure(error))

    def readConnectionLost(self) -> None:
        if self._state == "RELAY":
            self.tunnel.upstreamReadClosed()
        else:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = ierror.ConnectionDone) -> None:
        state = self._state
        self._state = "CLOSED"
        if state == "RELAY":
            self.tunnel.upstreamConnectionLost(reason)
        elif state == "WAITING":
            self.established.errback(
                Failure(
                    BadGateway(
                        "The parent proxy closed the connection before answering CONNECT.",
                        proxyStatus="http_response_incomplete",
                    )
                )
            )
