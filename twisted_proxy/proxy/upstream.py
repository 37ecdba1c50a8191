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

Names are resolved by L{twisted_proxy.proxy.dns}; parent proxies are in
L{twisted_proxy.proxy.parent}.

The reactor and the endpoint factory are passed in: tests connect to
loopback or to in-memory transports, and DNS failures are tested by
injecting an endpoint factory, never by resolving a real name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol as TypingProtocol, TypeVar, cast

from twisted.internet import error as ierror
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..http.errors import BadGateway, GatewayTimeout, ProxyError
from ..http.framing import Body, EndOfMessage, ResponseEvent, ResponseHead, ResponseParser
from .deadline import Deadline
from .dns import EndpointFactory
from .tcp import IStreamTransport, setNoDelay, writeNow

if TYPE_CHECKING:
    from .tunnel import Tunnel

__all__ = ["IResponseReceiver", "UpstreamPool", "UpstreamProtocol", "connectFailureToError"]


class IResponseReceiver(TypingProtocol):
    """
    What an L{UpstreamProtocol} reports to while a request is in flight.
    """

    def responseHead(self, head: ResponseHead) -> None: ...

    def responseBody(self, data: bytes) -> None: ...

    def responseEnd(self, trailers: list[tuple[bytes, bytes]]) -> None: ...

    def responseSwitched(self, trailingData: bytes) -> None: ...

    def responseFailed(self, error: ProxyError, responseStarted: bool) -> None: ...

    def readDone(self) -> None:
        """
        Everything of one read from the origin has been delivered (a head
        held back to leave with its body goes out now).
        """


_P = TypeVar("_P", bound=Protocol)


class _UpstreamFactory(ClientFactory[_P]):
    """
    Builds the one protocol of one connection attempt.  Quiet: a proxy opens
    many connections, and a log line for each factory's start and stop costs
    time and says nothing.
    """

    noisy = False

    def __init__(self, proto: _P) -> None:
        self._proto = proto

    def buildProtocol(self, addr: IAddress | None) -> _P:
        return self._proto


def _connect(endpoint: IStreamClientEndpoint, proto: _P) -> Deferred[_P]:
    """
    Connect C{proto} with C{endpoint}; the result fires with C{proto}.
    """
    # IStreamClientEndpoint.connect is typed as firing with an IProtocol; it
    # fires with what the factory built, which is proto.
    return cast("Deferred[_P]", endpoint.connect(_UpstreamFactory(proto)))


def connectFailureToError(failure: Failure, host: str, port: int) -> ProxyError:
    """
    The proxy error for a failed connection attempt to C{host:port}.
    """
    where = "{}:{}".format(host, port)
    if isinstance(failure.value, ProxyError):
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
    @ivar peerHost: the address connected to (the origin's, or a parent
        proxy's), read once when the connection is made.
    @ivar peerPort: its port.
    """

    _log = Logger()

    transport: IStreamTransport
    _state = "CONNECTING"
    receiver: IResponseReceiver | None = None
    onIdleLost: Callable[[UpstreamProtocol], None] | None = None
    onLost: Callable[[UpstreamProtocol], None] | None = None
    tunnel: Tunnel | None = None
    paused = False
    _gotResponseBytes = False
    bytesReceived = 0
    peerHost = ""
    peerPort = 0

    def __init__(self, key: tuple[str, str, int], maxHeaderBytes: int | None = None) -> None:
        self.key = key
        self._parser = ResponseParser(maxHeaderBytes)
        self.expiry: Deadline | None = None

    def connectionMade(self) -> None:
        setNoDelay(self.transport)
        peer = self.transport.getPeer()
        self.peerHost = getattr(peer, "host", "")
        self.peerPort = getattr(peer, "port", 0)
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
        writeNow(self.transport, data)

    def writeSequence(self, data: list[bytes]) -> None:
        self.transport.writeSequence(data)

    def dataReceived(self, data: bytes) -> None:
        self.bytesReceived += len(data)
        state = self._state
        if state == "SWITCHED":
            # The receiver's responseSwitched gave the tunnel, or aborted us.
            assert self.tunnel is not None
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

    def _dispatch(self, events: list[ResponseEvent]) -> None:
        receiver = self.receiver
        assert receiver is not None  # events come only while a request is in flight
        # Dispatched on type(event), taken once; mypy does not narrow event
        # through that local, hence Any.
        event: Any
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
        if events and self.receiver is receiver:
            receiver.readDone()

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

    def connectionLost(self, reason: Failure = connectionDone) -> None:
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
            if reason is not None and not reason.check(ierror.ConnectionDone):
                # A close-delimited body ends at a clean close only; "unless
                # an error was indicated by the underlying connection" (RFC
                # 9112 8), a reset means it was cut short.
                receiver.responseFailed(
                    BadGateway(
                        "The destination's connection failed before the response was "
                        "complete ({}).".format(reason.getErrorMessage().rstrip(".")),
                        proxyStatus="http_response_incomplete",
                    ),
                    True,
                )
                return
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

    def switchToTunnel(self, tunnel: Tunnel) -> None:
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
            assert proto.expiry is not None  # release() gave every idle one its expiry
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
        d = _connect(self._endpointFactory(host, port), proto)

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

    def connectRaw(self, host: str, port: int, proto: Protocol) -> Deferred[Protocol]:
        """
        A connection for a tunnel: same endpoints (DNS, timeouts), never
        pooled.
        """
        self.opened += 1
        return _connect(self._endpointFactory(host, port), proto)

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
