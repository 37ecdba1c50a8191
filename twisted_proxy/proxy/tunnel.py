# -*- test-case-name: tests.test_tunnel -*-
"""
Byte relay for CONNECT tunnels and HTTP/1.1 protocol upgrades.

A L{Tunnel} joins two connected transports, the I{client} (the connection
the proxy accepted) and the I{upstream} (the connection the proxy made), and
copies bytes between them.  It parses nothing.

Hand-over
=========

The protocols that own the two transports stay the transports' protocols;
after the hand-over they delegate to the tunnel::

    tunnel = Tunnel(clock, idleTimeout=300.0)
    # client side (ProxyServerProtocol)     # upstream side
    dataReceived       -> tunnel.dataFromClient(data)     / dataFromUpstream
    readConnectionLost -> tunnel.clientReadClosed()       / upstreamReadClosed
    connectionLost     -> tunnel.clientConnectionLost(r)  / upstreamConnectionLost
    tunnel.start(clientTransport, upstreamTransport,
                 pendingFromClient=..., pendingFromUpstream=...)
    tunnel.whenClosed().addCallback(record)   # fires with one of the reasons

Both protocols should provide L{IHalfCloseableProtocol}; without it TCP
reports a peer's FIN as C{connectionLost}, and the tunnel can only close
both sides instead of propagating the half-close.  For CONNECT the upstream
side can be a L{TunnelUpstreamProtocol}.

Before L{Tunnel.start}, neither transport may have a producer registered
(unregister any the HTTP layer registered): L{Tunnel.start} registers each
transport as the other's streaming producer, as
L{twisted.protocols.portforward} does, so a consumer whose buffer fills
pauses reading from its peer.  Memory per tunnel is therefore bounded by the
transports' buffer sizes, whatever the speeds of the two ends.  L{start
<Tunnel.start>} then resumes both transports (the caller may pause the
client while it connects upstream) and writes the pending bytes (data read
past the CONNECT or upgrade heads) before anything else.  Events delegated
before L{Tunnel.start} are queued and replayed after the pending bytes, so
nothing is lost or reordered.

Closing
=======

  - A half-close (EOF) from one side becomes C{loseWriteConnection()} on the
    other, if the other transport's class has it (only the class is asked:
    a TLS transport's L{ProtocolWrapper.__getattr__
    <twisted.protocols.policies.ProtocolWrapper>} would offer the TCP
    transport's method and shut down the socket beneath the TLS layer).
    Otherwise both sides are closed.  When both directions have seen EOF,
    both sides are closed.
  - A side lost cleanly (L{ConnectionDone}) closes the other with
    C{loseConnection()}, so the bytes already written to it still arrive.
    A side lost any other way (reset, abort, TLS failure) aborts the other:
    a byte stream truncated by an error must not look complete to the far
    end, which it would if it ended with an ordinary FIN.
  - No bytes in either direction for L{Tunnel.idleTimeout} seconds closes
    both sides.
  - Whenever the tunnel closes a side with C{loseConnection()}, it aborts it
    if it is still there L{Tunnel.abortTimeout} seconds later (the two-stage
    close of L{twisted.web.http.HTTPChannel}): a peer that never reads must
    not keep its connection open.

Producers are unregistered from every transport still connected before it
is closed or half-closed, and nothing is written to a side after the tunnel
closed, half-closed, or lost it.

L{Tunnel.whenClosed} fires, once both connections are lost, with one of
L{CLOSED_NORMALLY}, L{IDLE_TIMEOUT}, L{CLIENT_LOST} or L{UPSTREAM_LOST}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .tcp import IStreamTransport, setNoDelay, writeNow

__all__ = [
    "CLOSED_NORMALLY",
    "IDLE_TIMEOUT",
    "CLIENT_LOST",
    "UPSTREAM_LOST",
    "Tunnel",
    "TunnelUpstreamProtocol",
]

CLOSED_NORMALLY: Final = "normal"
"""
The tunnel ended without error: both sides sent EOF, or one side closed
cleanly and the other was then closed after its pending writes.
"""

IDLE_TIMEOUT: Final = "idle-timeout"
"""
No bytes moved in either direction for L{Tunnel.idleTimeout} seconds.
"""

CLIENT_LOST: Final = "client-lost"
"""
The client connection failed (reset, abort, TLS error, or did not close
within L{Tunnel.abortTimeout}) before the tunnel ended.
"""

UPSTREAM_LOST: Final = "upstream-lost"
"""
The upstream connection failed before the tunnel ended.
"""

# Tunnel._state values.
_NEW: Final = "NEW"
_RELAYING: Final = "RELAYING"
_CLOSING: Final = "CLOSING"
_DONE: Final = "DONE"

# _Side.state values.
_CONNECTED: Final = "CONNECTED"
_SIDE_CLOSING: Final = "CLOSING"
_LOST: Final = "LOST"

# _Direction.state values.
_OPEN: Final = "OPEN"
_ENDED: Final = "ENDED"


class _Side:
    """
    One of the tunnel's two connections.

    @ivar name: C{"client"} or C{"upstream"}, for logs.
    @ivar failedReason: the close reason to report if this side fails.
    @ivar transport: the connection's transport, once L{Tunnel.start} ran.
    @ivar state: C{"CONNECTED"}; C{"CLOSING"} once the tunnel called
        C{loseConnection} or C{abortConnection} on it; C{"LOST"} once its
        protocol reported C{connectionLost}.  Nothing is written to a side
        that is not C{"CONNECTED"}, and nothing at all is called on a
        C{"LOST"} side's transport.
    @ivar lostReason: the L{Failure} given to C{connectionLost}, or L{None}.
    """

    transport: IStreamTransport
    state: str = _CONNECTED
    lostReason: Failure | None = None

    def __init__(self, name: str, failedReason: str) -> None:
        self.name = name
        self.failedReason = failedReason


class _Direction:
    """
    One direction of the tunnel: bytes read from C{source} are written to
    C{sink}.

    @ivar state: C{"OPEN"} while bytes flow, which is also while C{sink}'s
        transport has C{source}'s transport registered as its producer;
        C{"ENDED"} once C{source} sent EOF or the tunnel began closing, after
        that producer was unregistered.
    @ivar byteCount: bytes written to C{sink} in this direction.
    """

    state: str = _OPEN
    byteCount: int = 0

    def __init__(self, source: _Side, sink: _Side) -> None:
        self.source = source
        self.sink = sink


class Tunnel:
    """
    A bidirectional byte relay between a client and an upstream transport.

    See the module docstring for the hand-over protocol and close rules.

    @cvar abortTimeout: seconds a side may take to go away after the tunnel
        called C{loseConnection()} on it, before it is aborted.

    @ivar idleTimeout: seconds without a byte in either direction after which
        both sides are closed, or L{None} for no limit.
    @ivar startTime: C{clock.seconds()} when L{start} ran, or L{None}.
    @ivar endTime: C{clock.seconds()} when both sides were gone, or L{None}.
    @ivar closeReason: why the tunnel is ending, once that is known: set when
        the tunnel begins to close, and replaced only by a side's failure
        after a normal close began.  Final when L{whenClosed} fires.

    @ivar _clock: the L{IReactorTime} used for timestamps and timers.
    @ivar _state: C{"NEW"} until L{start}; C{"RELAYING"}; C{"CLOSING"} once a
        close began (idle timeout, EOF both ways, a side lost); C{"DONE"} once
        both sides are lost and L{whenClosed} has fired.
    @ivar _client: the client L{_Side}.
    @ivar _upstream: the upstream L{_Side}.
    @ivar _fromClient: the client-to-upstream L{_Direction}.
    @ivar _fromUpstream: the upstream-to-client L{_Direction}.
    @ivar _lastActivity: C{clock.seconds()} of the last byte relayed.
    @ivar _idleCall: the pending idle check, or L{None}.  One L{IDelayedCall}
        serves the whole idle period: relaying a chunk only updates
        C{_lastActivity}, and the check reschedules itself if there was
        activity since it was armed.
    @ivar _abortCall: the pending abort of sides that did not go away after
        C{loseConnection()}, or L{None}.
    @ivar _early: events delegated before L{start}, replayed by it in order.
    @ivar _waiting: L{Deferred}s from L{whenClosed} not yet fired.
    """

    abortTimeout: float = 15.0

    _log = Logger()

    startTime: float | None = None
    endTime: float | None = None
    closeReason: str | None = None

    _state: str = _NEW
    _lastActivity: float = 0.0
    _idleCall: IDelayedCall | None = None
    _abortCall: IDelayedCall | None = None

    def __init__(self, clock: IReactorTime, idleTimeout: float | None = 300.0) -> None:
        """
        @param clock: the clock for timestamps and the idle and abort timers.
        @param idleTimeout: see L{Tunnel.idleTimeout}.

        @raise ValueError: if C{idleTimeout} is not L{None} nor positive.
        """
        if idleTimeout is not None and not idleTimeout > 0:
            raise ValueError(f"idleTimeout must be positive or None: {idleTimeout!r}")
        self._clock = clock
        self.idleTimeout = idleTimeout
        self._client = _Side("client", CLIENT_LOST)
        self._upstream = _Side("upstream", UPSTREAM_LOST)
        self._fromClient = _Direction(self._client, self._upstream)
        self._fromUpstream = _Direction(self._upstream, self._client)
        self._early: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self._waiting: list[Deferred[str]] = []

    @property
    def bytesFromClient(self) -> int:
        """
        Bytes relayed from the client to the upstream, pending bytes included.
        """
        return self._fromClient.byteCount

    @property
    def bytesFromUpstream(self) -> int:
        """
        Bytes relayed from the upstream to the client, pending bytes included.
        """
        return self._fromUpstream.byteCount

    @property
    def timedOut(self) -> bool:
        """
        Whether the idle timeout closed the tunnel.
        """
        return self.closeReason == IDLE_TIMEOUT

    def start(
        self,
        clientTransport: ITransport,
        upstreamTransport: ITransport,
        pendingFromClient: bytes = b"",
        pendingFromUpstream: bytes = b"",
    ) -> None:
        """
        Begin relaying between two connected transports.

        @param clientTransport: the client connection's transport, with no
            producer registered.
        @param upstreamTransport: the upstream connection's transport, with no
            producer registered.
        @param pendingFromClient: bytes already read from the client (after
            the CONNECT or upgrade request head); written upstream first.
        @param pendingFromUpstream: bytes already read from the upstream
            (after a 101 response head); written to the client first.

        @raise RuntimeError: if the tunnel was already started, or if a
            transport already has a producer registered.
        """
        if self._state != _NEW:
            raise RuntimeError(f"Tunnel.start() called in state {self._state}")
        # What the tunnel uses of a transport is more than ITransport says
        # (producer, consumer, half-close); TCP and TLS transports, and the
        # tests' StringTransports, have it.
        client = cast(IStreamTransport, clientTransport)
        upstream = cast(IStreamTransport, upstreamTransport)
        self._client.transport = client
        self._upstream.transport = upstream
        # Each transport is the other's producer: when one's write buffer
        # fills it pauses reading from the other (portforward's wiring).
        client.registerProducer(upstream, True)
        upstream.registerProducer(client, True)
        self._state = _RELAYING
        self.startTime = self._lastActivity = self._clock.seconds()
        if self.idleTimeout is not None:
            self._idleCall = self._clock.callLater(self.idleTimeout, self._checkIdle)
        # Resume before writing: a write that fills a buffer pauses the peer
        # again, whereas resuming after it would undo that pause.  Resuming
        # delivers nothing synchronously, so the pending bytes still go first.
        client.resumeProducing()
        upstream.resumeProducing()
        if pendingFromClient:
            self._relay(self._fromClient, pendingFromClient)
        if pendingFromUpstream:
            self._relay(self._fromUpstream, pendingFromUpstream)
        early, self._early = self._early, []
        for method, args in early:
            method(*args)

    def whenClosed(self) -> Deferred[str]:
        """
        A L{Deferred} that fires, once, when both sides are gone.

        Each call returns a new L{Deferred}.

        @return: fires with L{CLOSED_NORMALLY}, L{IDLE_TIMEOUT},
            L{CLIENT_LOST} or L{UPSTREAM_LOST}.
        """
        if self._state == _DONE:
            assert self.closeReason is not None
            return succeed(self.closeReason)
        d: Deferred[str] = Deferred()
        self._waiting.append(d)
        return d

    # Delegated protocol events.

    def dataFromClient(self, data: bytes) -> None:
        """
        The client protocol received C{data}: write it upstream.
        """
        self._relay(self._fromClient, data)

    def dataFromUpstream(self, data: bytes) -> None:
        """
        The upstream protocol received C{data}: write it to the client.
        """
        self._relay(self._fromUpstream, data)

    def clientReadClosed(self) -> None:
        """
        The client sent EOF (C{IHalfCloseableProtocol.readConnectionLost}).
        """
        self._readClosed(self._fromClient)

    def upstreamReadClosed(self) -> None:
        """
        The upstream sent EOF (C{IHalfCloseableProtocol.readConnectionLost}).
        """
        self._readClosed(self._fromUpstream)

    def clientConnectionLost(self, reason: Failure) -> None:
        """
        The client connection is gone (C{IProtocol.connectionLost}).
        """
        self._connectionLost(self._client, reason)

    def upstreamConnectionLost(self, reason: Failure) -> None:
        """
        The upstream connection is gone (C{IProtocol.connectionLost}).
        """
        self._connectionLost(self._upstream, reason)

    # Implementation.

    def _relay(self, direction: _Direction, data: bytes) -> None:
        """
        Write C{data} from C{direction.source} to C{direction.sink}, if that
        direction is still open; otherwise drop it uncounted.
        """
        if self._state == _NEW:
            self._early.append((self._relay, (direction, data)))
            return
        if self._state != _RELAYING or direction.state != _OPEN:
            return
        direction.byteCount += len(data)
        self._lastActivity = self._clock.seconds()
        # At once when nothing is queued before it (a byte stream has no
        # message boundaries to wait for); the transport queues the rest and
        # pauses its producer, the other side, as usual.
        writeNow(direction.sink.transport, data)

    def _readClosed(self, direction: _Direction) -> None:
        """
        C{direction.source} sent EOF: half-close C{direction.sink}, or close
        both sides if the other direction ended too or C{sink} cannot be
        half-closed.
        """
        if self._state == _NEW:
            self._early.append((self._readClosed, (direction,)))
            return
        if self._state != _RELAYING or direction.state != _OPEN:
            return
        self._endDirection(direction)
        other = self._fromUpstream if direction is self._fromClient else self._fromClient
        if other.state == _ENDED:
            self._log.debug("Tunnel: EOF both ways; closing")
            self._closeBoth(CLOSED_NORMALLY, abort=False)
            return
        sink = direction.sink
        if getattr(type(sink.transport), "loseWriteConnection", None) is None:
            self._log.debug(
                "Tunnel: {source} sent EOF and {sink} cannot be half-closed; closing",
                source=direction.source.name,
                sink=sink.name,
            )
            self._closeBoth(CLOSED_NORMALLY, abort=False)
            return
        self._log.debug(
            "Tunnel: {source} sent EOF; half-closing {sink}",
            source=direction.source.name,
            sink=sink.name,
        )
        sink.transport.loseWriteConnection()

    def _connectionLost(self, side: _Side, reason: Failure) -> None:
        """
        C{side}'s connection is gone: close the other side (abort it if
        C{reason} is not a clean close), and finish once both are gone.
        """
        if self._state == _NEW:
            self._early.append((self._connectionLost, (side, reason)))
            return
        if side.state == _LOST:
            return
        side.state = _LOST
        side.lostReason = reason
        clean = reason.check(ConnectionDone) is not None
        if self._state == _RELAYING:
            self._log.debug(
                "Tunnel: {side} connection lost ({why}); closing",
                side=side.name,
                why=reason.getErrorMessage(),
            )
            cause = CLOSED_NORMALLY if clean else side.failedReason
            self._closeBoth(cause, abort=not clean)
        else:
            if not clean:
                self._setCloseReason(side.failedReason)
            self._maybeFinish()

    def _endDirection(self, direction: _Direction) -> None:
        """
        Stop relaying C{direction}: unregister its source as its sink's
        producer (unless the sink is already lost, whose transport dropped
        its producer itself).
        """
        direction.state = _ENDED
        if direction.sink.state != _LOST:
            direction.sink.transport.unregisterProducer()

    def _setCloseReason(self, reason: str) -> None:
        """
        Record why the tunnel ends: the first cause wins, except that a
        side's failure replaces a normal close in progress.
        """
        if self.closeReason is None or (
            self.closeReason == CLOSED_NORMALLY and reason in (CLIENT_LOST, UPSTREAM_LOST)
        ):
            self.closeReason = reason

    def _closeBoth(self, reason: str, abort: bool) -> None:
        """
        Begin closing: stop relaying, unregister producers, and close every
        side still connected, arming the abort timer for the stragglers.

        @param reason: the close reason this close stands for.
        @param abort: abort the sides instead of C{loseConnection()}.
        """
        self._state = _CLOSING
        self._setCloseReason(reason)
        self._cancelIdle()
        for direction in (self._fromClient, self._fromUpstream):
            if direction.state == _OPEN:
                self._endDirection(direction)
        closing = [s for s in (self._client, self._upstream) if s.state == _CONNECTED]
        for side in closing:
            side.state = _SIDE_CLOSING
        if closing:
            # Armed before calling out: a transport may report
            # connectionLost synchronously, and finishing cancels this.
            self._abortCall = self._clock.callLater(self.abortTimeout, self._abortStragglers)
        for side in closing:
            if side.state != _SIDE_CLOSING:
                continue
            if abort:
                self._abort(side)
            else:
                side.transport.loseConnection()
        self._maybeFinish()

    def _abort(self, side: _Side) -> None:
        """
        Abort C{side}'s connection, or lose it if its transport cannot abort.
        """
        abortConnection = getattr(side.transport, "abortConnection", None)
        if abortConnection is None:
            side.transport.loseConnection()
        else:
            abortConnection()

    def _abortStragglers(self) -> None:
        """
        The second stage of a close: abort the sides still not gone
        L{abortTimeout} seconds after C{loseConnection()}.
        """
        self._abortCall = None
        for side in (self._client, self._upstream):
            if side.state == _SIDE_CLOSING:
                self._log.info(
                    "Tunnel: {side} did not close within {abortTimeout} seconds; aborting",
                    side=side.name,
                    abortTimeout=self.abortTimeout,
                )
                self._abort(side)

    def _checkIdle(self) -> None:
        """
        The idle timer fired: time out if nothing moved for L{idleTimeout}
        seconds, else re-arm for the rest of the period.
        """
        self._idleCall = None
        if self._state != _RELAYING or self.idleTimeout is None:
            return
        deadline = self._lastActivity + self.idleTimeout
        now = self._clock.seconds()
        if now < deadline:
            self._idleCall = self._clock.callLater(deadline - now, self._checkIdle)
            return
        self._log.info(
            "Timing out tunnel: no bytes for {idleTimeout} seconds "
            "({bytesFromClient} from client, {bytesFromUpstream} from upstream)",
            idleTimeout=self.idleTimeout,
            bytesFromClient=self.bytesFromClient,
            bytesFromUpstream=self.bytesFromUpstream,
        )
        self._closeBoth(IDLE_TIMEOUT, abort=False)

    def _cancelIdle(self) -> None:
        """
        Cancel the idle timer, if armed.
        """
        if self._idleCall is not None:
            self._idleCall.cancel()
            self._idleCall = None

    def _maybeFinish(self) -> None:
        """
        Once both sides are lost: cancel the timers, record the end time and
        fire the L{whenClosed} L{Deferred}s.
        """
        if self._state == _DONE or not (
            self._client.state == _LOST and self._upstream.state == _LOST
        ):
            return
        self._state = _DONE
        self._cancelIdle()
        if self._abortCall is not None:
            self._abortCall.cancel()
            self._abortCall = None
        self.endTime = self._clock.seconds()
        reason = self.closeReason
        assert reason is not None, "a tunnel always closes through _closeBoth"
        assert self.startTime is not None
        self._log.debug(
            "Tunnel closed ({reason}) after {duration:.3f} seconds: "
            "{bytesFromClient} bytes from client, "
            "{bytesFromUpstream} bytes from upstream",
            reason=reason,
            duration=self.endTime - self.startTime,
            bytesFromClient=self.bytesFromClient,
            bytesFromUpstream=self.bytesFromUpstream,
        )
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(reason)


@implementer(IHalfCloseableProtocol)
class TunnelUpstreamProtocol(Protocol):
    """
    The upstream end of a CONNECT tunnel: forwards everything to a L{Tunnel}.

    Use it with C{connectProtocol(endpoint, TunnelUpstreamProtocol(tunnel))};
    when that L{Deferred} fires with the protocol, write the C{200} response
    to the client and call C{tunnel.start(clientTransport,
    protocol.transport, pendingFromClient=...)}.  It stops reading in
    C{connectionMade}, so nothing arrives before the tunnel is ready;
    L{Tunnel.start} resumes it.  If the tunnel is never started, the caller
    must close this connection itself.

    @ivar tunnel: the L{Tunnel} this connection feeds.
    """

    transport: IStreamTransport

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel

    def connectionMade(self) -> None:
        """
        Stop reading until L{Tunnel.start} resumes this transport.
        """
        setNoDelay(self.transport)
        self.transport.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        """
        Relay C{data} to the client.
        """
        self.tunnel.dataFromUpstream(data)

    def readConnectionLost(self) -> None:
        """
        The upstream sent EOF: half-close the client.
        """
        self.tunnel.upstreamReadClosed()

    def writeConnectionLost(self) -> None:
        """
        Our half-close of the upstream completed; nothing more to do.
        """

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        The upstream connection is gone.
        """
        self.tunnel.upstreamConnectionLost(reason)
