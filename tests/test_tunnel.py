"""
Tests for L{twisted_proxy.proxy.tunnel}.

In memory: L{StringTransport} subclasses and a L{Clock}.  Two real protocols
joined with L{twisted.test.iosim} for a large transfer under backpressure.
One loopback test relays a TLS session between real sockets.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.error import (
    ConnectionAborted,
    ConnectionDone,
    ConnectionLost,
)
from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tests._loopback import listenLocal, portNumber
from tests._tls import selfSignedLocalhost as _selfSignedLocalhost
from tests._typing import TestCaseMixin
from twisted_proxy.proxy.tcp import IStreamTransport
from twisted_proxy.proxy.tunnel import (
    CLIENT_LOST,
    CLOSED_NORMALLY,
    IDLE_TIMEOUT,
    UPSTREAM_LOST,
    Tunnel,
    TunnelUpstreamProtocol,
)

_DONE = Failure(ConnectionDone())
_RESET = Failure(ConnectionLost())
_ABORTED = Failure(ConnectionAborted())


class _StrictTransport(StringTransport):
    """
    A L{StringTransport} that refuses a write after C{loseConnection()} or
    C{loseWriteConnection()}, so that a tunnel writing to a closed side
    fails the test.  (L{StringTransport} itself accepts such writes.)
    """

    writeClosed = False

    def write(self, data: bytes) -> None:
        if self.disconnecting or self.writeClosed:
            raise RuntimeError("write after close")
        super().write(data)


class _HalfCloseableTransport(_StrictTransport):
    """
    A transport that can half-close, like a TCP transport; records the call.
    """

    def loseWriteConnection(self) -> None:
        if self.disconnecting:
            raise RuntimeError("loseWriteConnection after loseConnection")
        self.writeClosed = True


class _WrappingTransport(_StrictTransport):
    """
    A transport that delegates unknown attributes to the transport beneath,
    as L{twisted.protocols.policies.ProtocolWrapper} (so a TLS transport)
    does: C{loseWriteConnection} resolves, but on the wrong layer.
    """

    def __init__(self, beneath: _HalfCloseableTransport) -> None:
        self._beneath = beneath
        super().__init__()

    def __getattr__(self, name: str) -> object:
        return getattr(self._beneath, name)


class _TunnelMixin(TestCaseMixin):
    """
    Builds a started tunnel on two L{_HalfCloseableTransport}s.
    """

    def makeTunnel(
        self,
        idleTimeout: float | None = 300.0,
        client: _StrictTransport | None = None,
        upstream: _StrictTransport | None = None,
        pendingFromClient: bytes = b"",
        pendingFromUpstream: bytes = b"",
    ) -> tuple[Clock, Tunnel, _StrictTransport, _StrictTransport]:
        clock = Clock()
        clock.advance(1000)
        tunnel = Tunnel(clock, idleTimeout=idleTimeout)
        if client is None:
            client = _HalfCloseableTransport()
        if upstream is None:
            upstream = _HalfCloseableTransport()
        tunnel.start(client, upstream, pendingFromClient, pendingFromUpstream)
        return clock, tunnel, client, upstream


class RelayTests(_TunnelMixin, SynchronousTestCase):
    """
    Bytes, pending bytes, counts and producers.
    """

    def test_pendingBytesFirst(self) -> None:
        """
        The bytes read past the CONNECT or 101 heads are written before any
        byte relayed later, and counted.
        """
        clock, tunnel, client, upstream = self.makeTunnel(
            pendingFromClient=b"\x16\x03\x01hello", pendingFromUpstream=b"early"
        )
        tunnel.dataFromClient(b" world")
        tunnel.dataFromUpstream(b" reply")
        self.assertEqual(upstream.value(), b"\x16\x03\x01hello world")
        self.assertEqual(client.value(), b"early reply")
        self.assertEqual(tunnel.bytesFromClient, 14)
        self.assertEqual(tunnel.bytesFromUpstream, 11)

    def test_eventsBeforeStartReplayedAfterPending(self) -> None:
        """
        Bytes delegated before L{Tunnel.start} (a protocol switched to the
        tunnel before the hand-over) follow the pending bytes, in order.
        """
        tunnel = Tunnel(Clock())
        client, upstream = _HalfCloseableTransport(), _HalfCloseableTransport()
        tunnel.dataFromUpstream(b"2")
        tunnel.dataFromClient(b"b")
        tunnel.dataFromUpstream(b"3")
        self.assertEqual(tunnel.bytesFromUpstream, 0)
        tunnel.start(client, upstream, b"a", b"1")
        self.assertEqual(client.value(), b"123")
        self.assertEqual(upstream.value(), b"ab")
        self.assertEqual((tunnel.bytesFromClient, tunnel.bytesFromUpstream), (2, 3))

    def test_relayBothWays(self) -> None:
        """
        Bytes go both ways unchanged, however they are chunked, and are
        counted each way.
        """
        clock, tunnel, client, upstream = self.makeTunnel()
        request = b"GET /chat HTTP/1.1\r\n\x00\xff"
        reply = bytes(range(256))
        for i in range(len(request)):
            tunnel.dataFromClient(request[i : i + 1])
        tunnel.dataFromUpstream(reply[:100])
        tunnel.dataFromUpstream(reply[100:])
        self.assertEqual(upstream.value(), request)
        self.assertEqual(client.value(), reply)
        self.assertEqual(tunnel.bytesFromClient, len(request))
        self.assertEqual(tunnel.bytesFromUpstream, 256)

    def test_producersRegisteredBothWays(self) -> None:
        """
        Each transport is the other's streaming producer.
        """
        clock, tunnel, client, upstream = self.makeTunnel()
        self.assertIs(client.producer, upstream)
        self.assertIs(upstream.producer, client)
        self.assertTrue(client.streaming)
        self.assertTrue(upstream.streaming)

    def test_backpressurePropagates(self) -> None:
        """
        A consumer whose buffer fills pauses its peer, and resumes it when it
        drains, each way: a slow client stops reads from the upstream, and a
        slow upstream stops reads from the client.
        """
        clock, tunnel, client, upstream = self.makeTunnel()
        assert client.producer is not None
        client.producer.pauseProducing()
        self.assertEqual(upstream.producerState, "paused")
        self.assertEqual(client.producerState, "producing")
        client.producer.resumeProducing()
        self.assertEqual(upstream.producerState, "producing")
        assert upstream.producer is not None
        upstream.producer.pauseProducing()
        self.assertEqual(client.producerState, "paused")
        upstream.producer.resumeProducing()
        self.assertEqual(client.producerState, "producing")

    def test_startResumesPausedTransports(self) -> None:
        """
        The caller may pause the client while it connects upstream (and
        L{TunnelUpstreamProtocol} pauses its transport): start resumes both.
        """
        client, upstream = _HalfCloseableTransport(), _HalfCloseableTransport()
        client.pauseProducing()
        upstream.pauseProducing()
        Tunnel(Clock()).start(client, upstream)
        self.assertEqual(client.producerState, "producing")
        self.assertEqual(upstream.producerState, "producing")

    def test_startWithRegisteredProducerFails(self) -> None:
        """
        A transport that still has a producer registered is refused.
        """
        client = _HalfCloseableTransport()
        client.registerProducer(object(), True)
        self.assertRaises(RuntimeError, Tunnel(Clock()).start, client, _HalfCloseableTransport())

    def test_startTwice(self) -> None:
        """
        A tunnel starts once.
        """
        clock, tunnel, client, upstream = self.makeTunnel()
        self.assertRaises(RuntimeError, tunnel.start, client, upstream)

    def test_invalidIdleTimeout(self) -> None:
        """
        The idle timeout is positive or L{None}.
        """
        self.assertRaises(ValueError, Tunnel, Clock(), 0)
        self.assertRaises(ValueError, Tunnel, Clock(), -1.0)

    def test_noGlobalReactor(self) -> None:
        """
        Importing the module does not install the global reactor.
        """
        code = (
            "import sys, twisted_proxy.proxy.tunnel; "
            "print('twisted.internet.reactor' in sys.modules)"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            capture_output=True,
            check=True,
        )
        self.assertEqual(result.stdout.strip(), b"False")


class HalfCloseTests(_TunnelMixin, SynchronousTestCase):
    """
    EOF from one side half-closes the other.
    """

    def test_clientHalfClose(self) -> None:
        """
        The client's EOF half-closes the upstream; the upstream's replies
        still reach the client; the client transport is no longer the
        upstream's producer.
        """
        clock, tunnel, client, upstream = self.makeTunnel()
        tunnel.dataFromClient(b"request")
        tunnel.clientReadClosed()
        self.assertTrue(upstream.writeClosed)
        self.assertIsNone(upstream.producer)
        self.assertIs(client.producer, upstream)
        self.assertFalse(client.writeClosed)
        self.assertFalse(upstream.disconnecting)
        self.assertFalse(client.disconnecting)
        tunnel.dataFromUpstream(b"reply")
        self.assertEqual(client.value(), b"reply")
        self.assertEqual(upstream.value(), b"request")
        self.assertNoResult(tunnel.whenClosed())

    def test_upstreamHalfClose(self) -> None:
        """
        The upstream's EOF half-closes the client; the client's bytes still
        reach the upstream.
        """
        clock, tunnel, client, upstream = self.makeTunnel()
        tunnel.upstreamReadClosed()
        self.assertTrue(client.writeClosed)
        self.assertIsNone(client.producer)
        self.assertIs(upstream.producer, client)
        self.assertFalse(upstream.writeClosed)
        tunnel.dataFromClient(b"more")
        self.assertEqual(upstream.value(), b"more")
        self.assertFalse(client.disconnecting or upstream.disconnecting)

    def test_readClosedTwice(self) -> None:
        """
        A repeated EOF (a resumed half-closed TCP transport reports it again)
        changes nothing.
        """
        clock, tunnel, client, upstream = self.makeTunnel()
        tunnel.clientReadClosed()
        tunnel.clientReadClosed()
        self.assertFalse(client.disconnecting or upstream.disconnecting)
        self.assertIs(client.producer, upstream)

    def test_bytesAfterEOFDropped(self) -> None:
        """
        Bytes claimed to come from a side after its EOF are not relayed nor
        counted.
        """
        clock, tunnel, client, upstream = self.makeTunnel()
        tunnel.clientReadClosed()
        tunnel.dataFromClient(b"late")
        self.assertEqual(upstream.value(), b"")
        self.assertEqual(tunnel.bytesFromClient, 0)

    def test_bothDirectionsEndedClosesBoth(self) -> None:
        """
        EOF both ways closes both connections; the tunnel finishes normally
        once both are lost.
        """
        clock, tunnel, client, upstream = self.makeTunnel()
        d = tunnel.whenClosed()
        tunnel.clientReadClosed()
        tunnel.upstreamReadClosed()
        self.assertTrue(client.disconnecting)
        self.assertTrue(upstream.disconnecting)
        self.assertFalse(client.disconnected or upstream.disconnected)
        self.assertIsNone(client.producer)
        self.assertIsNone(upstream.producer)
        self.assertNoResult(d)
        tunnel.upstreamConnectionLost(_DONE)
        self.assertNoResult(d)
        tunnel.clientConnectionLost(_DONE)
        self.assertEqual(self.successResultOf(d), CLOSED_NORMALLY)
        self.assertFalse(tunnel.timedOut)

    def test_cannotHalfCloseClosesBoth(self) -> None:
        """
        A transport without C{loseWriteConnection} cannot carry the EOF on
        its own: both connections are closed (after their pending writes).
        """
        client = _StrictTransport()
        clock, tunnel, client, upstream = self.makeTunnel(client=client)
        tunnel.upstreamReadClosed()
        self.assertTrue(client.disconnecting)
        self.assertTrue(upstream.disconnecting)
        self.assertFalse(client.disconnected or upstream.disconnected)
        self.assertIsNone(client.producer)
        self.assertIsNone(upstream.producer)

    def test_delegatedLoseWriteConnectionNotUsed(self) -> None:
        """
        A wrapping transport (TLS) that only delegates C{loseWriteConnection}
        to the transport beneath is not half-closed through it: that would
        shut the socket under the TLS layer.  It is closed instead.
        """
        beneath = _HalfCloseableTransport()
        wrapper = _WrappingTransport(beneath)
        clock, tunnel, client, upstream = self.makeTunnel(client=wrapper)
        tunnel.upstreamReadClosed()
        self.assertFalse(beneath.writeClosed)
        self.assertTrue(wrapper.disconnecting)


class ConnectionLostTests(_TunnelMixin, SynchronousTestCase):
    """
    A side's connection lost closes (or aborts) the other.
    """

    def test_clientClosedCleanly(self) -> None:
        """
        The client gone cleanly: the upstream is closed after its pending
        writes (not aborted), nothing more is relayed, and the tunnel ends
        normally.
        """
        clock, tunnel, client, upstream = self.makeTunnel()
        d = tunnel.whenClosed()
        tunnel.dataFromClient(b"last words")
        tunnel.clientConnectionLost(_DONE)
        self.assertTrue(upstream.disconnecting)
        self.assertFalse(upstream.disconnected)
        self.assertIsNone(upstream.producer)
        tunnel.dataFromUpstream(b"too late")
        self.assertEqual(client.value(), b"")
        self.assertEqual(upstream.value(), b"last words")
        self.assertNoResult(d)
        tunnel.upstreamConnectionLost(_DONE)
        self.assertEqual(self.successResultOf(d), CLOSED_NORMALLY)

    def test_upstreamClosedCleanly(self) -> None:
        """
        The upstream gone cleanly: the client is closed after its pending
        writes.
        """
        clock, tunnel, client, upstream = self.makeTunnel()
        d = tunnel.whenClosed()
        tunnel.dataFromUpstream(b"bye")
        tunnel.upstreamConnectionLost(_DONE)
        self.assertTrue(client.disconnecting)
        self.assertFalse(client.disconnected)
        self.assertIsNone(client.producer)
        tunnel.dataFromClient(b"too late")
        self.assertEqual(upstream.value(), b"")
        tunnel.clientConnectionLost(_DONE)
        self.assertEqual(self.successResultOf(d), CLOSED_NORMALLY)
        self.assertEqual(client.value(), b"bye")

    def test_clientResetAbortsUpstream(self) -> None:
        """
        The client lost by an error: the upstream is aborted, and the reason
        is L{CLIENT_LOST} (not replaced by the abort it caused).
        """
        clock, tunnel, client, upstream = self.makeTunnel()
        d = tunnel.whenClosed()
        tunnel.clientConnectionLost(_RESET)
        self.assertTrue(upstream.disconnected)
        tunnel.upstreamConnectionLost(_ABORTED)
        self.assertEqual(self.successResultOf(d), CLIENT_LOST)

    def test_upstreamResetAbortsClient(self) -> None:
        """
        The upstream lost by an error: the client is aborted, so it cannot
        take the truncated stream for a complete one.
        """
        clock, tunnel, client, upstream = self.makeTunnel()
        d = tunnel.whenClosed()
        tunnel.upstreamConnectionLost(_RESET)
        self.assertTrue(client.disconnected)
        self.assertIsNone(client.producer)
        tunnel.clientConnectionLost(_ABORTED)
        self.assertEqual(self.successResultOf(d), UPSTREAM_LOST)

    def test_failureDuringNormalClose(self) -> None:
        """
        A side failing while a normal close is in progress makes the close
        reason that failure.
        """
        clock, tunnel, client, upstream = self.makeTunnel()
        d = tunnel.whenClosed()
        tunnel.clientConnectionLost(_DONE)
        tunnel.upstreamConnectionLost(_RESET)
        self.assertEqual(self.successResultOf(d), UPSTREAM_LOST)

    def test_lostBeforeStart(self) -> None:
        """
        A side lost before L{Tunnel.start} is handled when it starts: the
        other side is closed at once, after the pending bytes.
        """
        tunnel = Tunnel(Clock())
        d = tunnel.whenClosed()
        tunnel.upstreamConnectionLost(_DONE)
        client, upstream = _HalfCloseableTransport(), _HalfCloseableTransport()
        tunnel.start(client, upstream, pendingFromUpstream=b"HTTP/2 preface")
        self.assertEqual(client.value(), b"HTTP/2 preface")
        self.assertTrue(client.disconnecting)
        tunnel.clientConnectionLost(_DONE)
        self.assertEqual(self.successResultOf(d), CLOSED_NORMALLY)

    def test_whenClosedFiresOnce(self) -> None:
        """
        Every L{Deferred} from L{Tunnel.whenClosed} fires once, even when the
        protocols report a loss twice; one asked for afterwards has the
        result already.  Start and end times come from the clock.
        """
        clock, tunnel, client, upstream = self.makeTunnel()
        self.assertEqual(tunnel.startTime, 1000)
        first, second = tunnel.whenClosed(), tunnel.whenClosed()
        clock.advance(5)
        tunnel.clientConnectionLost(_DONE)
        tunnel.clientConnectionLost(_DONE)
        clock.advance(2)
        tunnel.upstreamConnectionLost(_DONE)
        tunnel.upstreamConnectionLost(_RESET)
        self.assertEqual(self.successResultOf(first), CLOSED_NORMALLY)
        self.assertEqual(self.successResultOf(second), CLOSED_NORMALLY)
        self.assertEqual(self.successResultOf(tunnel.whenClosed()), CLOSED_NORMALLY)
        self.assertEqual(tunnel.endTime, 1007)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_noCallOnLostTransport(self) -> None:
        """
        A lost transport drops and stops its producer itself (as
        L{twisted.internet.abstract.FileDescriptor.connectionLost} does); the
        tunnel calls nothing on it (L{StringTransport.unregisterProducer}
        would raise) and closes the other side once.
        """
        clock, tunnel, client, upstream = self.makeTunnel()
        # What a FileDescriptor does in connectionLost: stop its producer.
        assert upstream.producer is not None
        upstream.producer.stopProducing()
        upstream.producer = None
        d = tunnel.whenClosed()
        tunnel.upstreamConnectionLost(_DONE)
        self.assertTrue(client.disconnecting)
        self.assertFalse(client.disconnected)
        tunnel.clientConnectionLost(_DONE)
        self.assertEqual(self.successResultOf(d), CLOSED_NORMALLY)


class IdleTimeoutTests(_TunnelMixin, SynchronousTestCase):
    """
    No bytes for C{idleTimeout} seconds closes the tunnel, in two stages.
    """

    def test_timesOutAfterInactivity(self) -> None:
        """
        Just below the timeout nothing happens; just above it both sides are
        closed (not aborted) and the tunnel records the timeout.
        """
        clock, tunnel, client, upstream = self.makeTunnel(idleTimeout=300)
        clock.advance(299.9)
        self.assertFalse(client.disconnecting or upstream.disconnecting)
        self.assertFalse(tunnel.timedOut)
        with capturedLogs() as events:
            clock.advance(0.2)
        [event] = events
        self.assertEqual(event["log_level"], LogLevel.info)
        self.assertEqual(event["idleTimeout"], 300)
        self.assertTrue(client.disconnecting)
        self.assertTrue(upstream.disconnecting)
        self.assertFalse(client.disconnected or upstream.disconnected)
        self.assertIsNone(client.producer)
        self.assertIsNone(upstream.producer)
        self.assertTrue(tunnel.timedOut)
        tunnel.dataFromUpstream(b"late")
        self.assertEqual(client.value(), b"")

    def test_activityResetsTimer(self) -> None:
        """
        A byte either way restarts the idle period, without a new timer per
        chunk.
        """
        clock, tunnel, client, upstream = self.makeTunnel(idleTimeout=300)
        clock.advance(200)
        for _ in range(100):
            tunnel.dataFromClient(b"x")
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(299.9)  # 499.9 s since start, 299.9 s idle
        self.assertFalse(client.disconnecting)
        tunnel.dataFromUpstream(b"y")
        clock.advance(299.9)
        self.assertFalse(client.disconnecting)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0.2)
        self.assertTrue(client.disconnecting)
        self.assertTrue(upstream.disconnecting)
        self.assertTrue(tunnel.timedOut)

    def test_halfClosedTunnelTimesOut(self) -> None:
        """
        A half-closed tunnel with no bytes moving still times out.
        """
        clock, tunnel, client, upstream = self.makeTunnel(idleTimeout=60)
        tunnel.clientReadClosed()
        clock.advance(60)
        self.assertTrue(client.disconnecting)
        self.assertTrue(upstream.disconnecting)

    def test_noneDisables(self) -> None:
        """
        With C{idleTimeout=None} no timer is armed.
        """
        clock, tunnel, client, upstream = self.makeTunnel(idleTimeout=None)
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(10**6)
        self.assertFalse(client.disconnecting or upstream.disconnecting)

    def test_abortAfterGrace(self) -> None:
        """
        Sides still there C{abortTimeout} seconds after the idle close are
        aborted; the reason stays L{IDLE_TIMEOUT}, and no timer is left.
        """
        clock, tunnel, client, upstream = self.makeTunnel(idleTimeout=10)
        d = tunnel.whenClosed()
        clock.advance(10)
        self.assertTrue(client.disconnecting)
        clock.advance(Tunnel.abortTimeout - 0.1)
        self.assertFalse(client.disconnected or upstream.disconnected)
        clock.advance(0.2)
        self.assertTrue(client.disconnected)
        self.assertTrue(upstream.disconnected)
        self.assertNoResult(d)
        tunnel.clientConnectionLost(_ABORTED)
        tunnel.upstreamConnectionLost(_ABORTED)
        self.assertEqual(self.successResultOf(d), IDLE_TIMEOUT)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_abortOnlyStragglers(self) -> None:
        """
        Only the side that did not go away is aborted.
        """
        clock, tunnel, client, upstream = self.makeTunnel(idleTimeout=10)
        clock.advance(10)
        tunnel.clientConnectionLost(_DONE)
        clock.advance(Tunnel.abortTimeout)
        self.assertFalse(client.disconnected)
        self.assertTrue(upstream.disconnected)

    def test_noAbortWhenBothGone(self) -> None:
        """
        Sides that go away within the grace are never aborted, and the abort
        timer is cancelled.
        """
        clock, tunnel, client, upstream = self.makeTunnel(idleTimeout=10)
        d = tunnel.whenClosed()
        clock.advance(10)
        tunnel.clientConnectionLost(_DONE)
        tunnel.upstreamConnectionLost(_DONE)
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(Tunnel.abortTimeout)
        self.assertFalse(client.disconnected or upstream.disconnected)
        self.assertEqual(self.successResultOf(d), IDLE_TIMEOUT)

    def test_normalCloseAlsoAbortsAfterGrace(self) -> None:
        """
        The two-stage close applies to every close the tunnel makes: a peer
        that does not drain after EOF both ways is aborted, and that failure
        is the close reason.
        """
        clock, tunnel, client, upstream = self.makeTunnel(idleTimeout=None)
        d = tunnel.whenClosed()
        tunnel.clientReadClosed()
        tunnel.upstreamReadClosed()
        tunnel.upstreamConnectionLost(_DONE)
        clock.advance(Tunnel.abortTimeout)
        self.assertTrue(client.disconnected)
        tunnel.clientConnectionLost(_ABORTED)
        self.assertEqual(self.successResultOf(d), CLIENT_LOST)


class TunnelUpstreamProtocolTests(SynchronousTestCase):
    """
    L{TunnelUpstreamProtocol} forwards its events to the tunnel.
    """

    def test_connectProtocol(self) -> None:
        """
        Connected with C{connectProtocol}: reads are paused until the tunnel
        starts; data, EOF (through the endpoint's wrapper) and loss reach the
        tunnel.
        """
        reactor = MemoryReactorClock()
        tunnel = Tunnel(reactor)
        d = connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", 443),
            TunnelUpstreamProtocol(tunnel),
        )
        [(host, port, factory, timeout, bind)] = reactor.tcpClients
        wrapper = factory.buildProtocol(None)
        assert IHalfCloseableProtocol.providedBy(wrapper)
        upstream = _HalfCloseableTransport()
        wrapper.makeConnection(upstream)
        proto = self.successResultOf(d)
        self.assertEqual(upstream.producerState, "paused")

        client = _HalfCloseableTransport()
        tunnel.start(client, proto.transport)
        self.assertEqual(upstream.producerState, "producing")
        wrapper.dataReceived(b"\x16\x03\x03server hello")
        self.assertEqual(client.value(), b"\x16\x03\x03server hello")
        wrapper.readConnectionLost()
        self.assertTrue(client.writeClosed)
        wrapper.writeConnectionLost()
        closed = tunnel.whenClosed()
        wrapper.connectionLost(_RESET)
        self.assertTrue(client.disconnected)
        tunnel.clientConnectionLost(_ABORTED)
        self.assertEqual(self.successResultOf(closed), UPSTREAM_LOST)


# Two real protocols joined through the tunnel with iosim.


class _FlowControlledTransport(FakeTransport):
    """
    An iosim L{FakeTransport} with flow control, as a TCP transport has it.

    Writes go to a buffer; above C{highWater} bytes the registered streaming
    producer is paused, and resumed once the buffer drains.  Each pump moves
    at most C{readSize} bytes, and only while the receiving transport
    (C{remote}) is reading: L{pauseProducing} stops this transport reading,
    leaving the bytes in the sender's buffer, as in the kernel.

    @ivar maxBuffered: the largest the write buffer grew.
    """

    highWater = 64 * 1024
    readSize = 16 * 1024
    reading = True
    remote: _FlowControlledTransport
    _producerPaused = False

    def __init__(self, protocol: Protocol, isServer: bool) -> None:
        super().__init__(protocol, isServer)
        self._outgoing = bytearray()
        self.maxBuffered = 0

    def write(self, data: bytes) -> None:
        if self.disconnecting:
            return
        self._outgoing += data
        self.maxBuffered = max(self.maxBuffered, len(self._outgoing))
        if (
            self.producer is not None
            and self.streamingProducer
            and not self._producerPaused
            and len(self._outgoing) > self.highWater
        ):
            self._producerPaused = True
            self.producer.pauseProducing()

    def getOutBuffer(self) -> bytes | None:
        if not self._outgoing or not self.remote.reading:
            return None
        chunk = bytes(self._outgoing[: self.readSize])
        del self._outgoing[: self.readSize]
        if not self._outgoing and self._producerPaused:
            self._producerPaused = False
            if self.producer is not None:
                self.producer.resumeProducing()
        return chunk

    def registerProducer(self, producer: object, streaming: bool) -> None:
        if self.producer is not None:
            raise RuntimeError("a producer is already registered")
        super().registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.producer = None
        self._producerPaused = False

    def pauseProducing(self) -> None:
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True


@implementer(IPushProducer)
class _Peer(Protocol):
    """
    An end of the tunnel: sends a payload as a well-behaved push producer
    and records what it receives.
    """

    transport: IStreamTransport

    chunkSize = 32 * 1024
    paused = False
    lost = False

    def __init__(self) -> None:
        self.received = bytearray()
        self._outgoing = memoryview(b"")

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)

    def send(self, payload: bytes) -> None:
        self._outgoing = memoryview(payload)
        self._produce()

    def _produce(self) -> None:
        while self._outgoing and not self.paused:
            chunk = self._outgoing[: self.chunkSize]
            self._outgoing = self._outgoing[self.chunkSize :]
            self.transport.write(bytes(chunk))

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._produce()

    def stopProducing(self) -> None:
        self._outgoing = memoryview(b"")

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True


@implementer(IHalfCloseableProtocol)
class _ClientSide(Protocol):
    """
    Stands in for C{ProxyServerProtocol} once it handed over to a tunnel.
    """

    transport: IStreamTransport

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel

    def dataReceived(self, data: bytes) -> None:
        self.tunnel.dataFromClient(data)

    def readConnectionLost(self) -> None:
        self.tunnel.clientReadClosed()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.tunnel.clientConnectionLost(reason)


def _link(a: _FlowControlledTransport, b: _FlowControlledTransport) -> None:
    a.remote = b
    b.remote = a


class LargeTransferTests(SynchronousTestCase):
    """
    8 MiB through a tunnel between two real protocols, with one end not
    reading for a while.
    """

    size = 8 * 1024 * 1024

    def setUp(self) -> None:
        self.payload = random.Random(9110).randbytes(self.size)
        self.clock = Clock()
        self.tunnel = Tunnel(self.clock)
        self.client = _Peer()
        self.origin = _Peer()
        self.clientTransport = _FlowControlledTransport(self.client, False)
        self.clientSide = _FlowControlledTransport(_ClientSide(self.tunnel), True)
        _link(self.clientTransport, self.clientSide)
        self.upstreamSide = _FlowControlledTransport(TunnelUpstreamProtocol(self.tunnel), False)
        self.originTransport = _FlowControlledTransport(self.origin, True)
        _link(self.upstreamSide, self.originTransport)
        self.pumps = [
            connect(
                self.clientSide.protocol,
                self.clientSide,
                self.client,
                self.clientTransport,
                clock=self.clock,
            ),
            connect(
                self.origin,
                self.originTransport,
                self.upstreamSide.protocol,
                self.upstreamSide,
                clock=self.clock,
            ),
        ]
        self.tunnel.start(self.clientSide, self.upstreamSide)

    def pumpAll(self) -> None:
        """
        Pump both connections until nothing moves.
        """
        pumps: list[IOPump] = self.pumps
        for _ in range(100_000):
            moved = False
            for pump in pumps:
                moved = pump.pump() or moved
            if not moved:
                return
        self.fail("the connections never went quiet")

    def assertTransferUnderBackpressure(
        self,
        sender: _Peer,
        receiver: _Peer,
        receiverTransport: _FlowControlledTransport,
        proxyReadSide: _FlowControlledTransport,
        proxyWriteSide: _FlowControlledTransport,
        sent: str,
    ) -> None:
        """
        With C{receiver} not reading, C{sender} ends up paused, the proxy
        stops reading from it and buffers a bounded amount; once the
        receiver reads, every byte arrives intact.
        """
        receiverTransport.pauseProducing()
        sender.send(self.payload)
        self.pumpAll()
        self.assertEqual(receiver.received, b"")
        self.assertTrue(sender.paused)
        self.assertFalse(proxyReadSide.reading)
        bound = proxyWriteSide.highWater + proxyWriteSide.readSize
        self.assertLessEqual(proxyWriteSide.maxBuffered, bound)
        self.assertLess(getattr(self.tunnel, sent), 2 * bound)

        receiverTransport.resumeProducing()
        self.pumpAll()
        self.assertEqual(len(receiver.received), self.size)
        self.assertTrue(receiver.received == self.payload)
        self.assertEqual(getattr(self.tunnel, sent), self.size)
        self.assertFalse(sender.paused)
        self.assertTrue(proxyReadSide.reading)
        self.assertLessEqual(proxyWriteSide.maxBuffered, bound)

    def assertClosesNormally(self, closer: _Peer) -> None:
        """
        C{closer} closing ends the tunnel normally, with no timer left.
        """
        d = self.tunnel.whenClosed()
        closer.transport.loseConnection()
        self.pumpAll()
        self.assertTrue(self.client.lost)
        self.assertTrue(self.origin.lost)
        self.assertEqual(self.successResultOf(d), CLOSED_NORMALLY)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_clientToUpstream(self) -> None:
        """
        An upload to an origin that does not read pauses the client.
        """
        self.assertTransferUnderBackpressure(
            self.client,
            self.origin,
            self.originTransport,
            self.clientSide,
            self.upstreamSide,
            "bytesFromClient",
        )
        self.assertClosesNormally(self.client)

    def test_upstreamToClient(self) -> None:
        """
        A download to a client that does not read pauses the origin.
        """
        self.assertTransferUnderBackpressure(
            self.origin,
            self.client,
            self.clientTransport,
            self.upstreamSide,
            self.clientSide,
            "bytesFromUpstream",
        )
        self.assertClosesNormally(self.origin)


# Loopback: a TLS session through a tunnel between real sockets.


class _Echo(Protocol):
    """
    The origin: echoes, and tells when its connection is gone.
    """

    transport: IStreamTransport

    def __init__(self, connections: list[_Echo]) -> None:
        self.lost: Deferred[None] = Deferred()
        self.connections = connections

    def connectionMade(self) -> None:
        self.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


class _EchoFactory(Factory):
    """
    Builds L{_Echo}s, and keeps the connected ones.
    """

    def __init__(self) -> None:
        self.connections: list[_Echo] = []

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        return _Echo(self.connections)


class _EchoClient(Protocol):
    """
    Sends a message and collects the echo.
    """

    transport: IStreamTransport

    def __init__(self, message: bytes) -> None:
        self.message = message
        self.received = b""
        self.echoed: Deferred[bytes] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.message)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= len(self.message) and not self.echoed.called:
            self.echoed.callback(self.received)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


class _Relay(_ClientSide):
    """
    A CONNECT-less relay: every accepted connection is tunnelled to the
    origin, as the proxy does after a CONNECT.
    """

    def __init__(self, tunnel: Tunnel, relays: _RelayFactory) -> None:
        super().__init__(tunnel)
        self.relays = relays

    def connectionMade(self) -> None:
        self.relays.tunnels.append(self.tunnel)
        self.transport.pauseProducing()
        d = connectProtocol(
            TCP4ClientEndpoint(self.relays.reactor, "127.0.0.1", self.relays.originPort),
            TunnelUpstreamProtocol(self.tunnel),
        )
        d.addCallback(lambda up: self.tunnel.start(self.transport, up.transport))
        d.addErrback(lambda f: self.transport.abortConnection())


class _RelayFactory(Factory):
    """
    Builds L{_Relay}s to the origin on C{originPort}, and keeps their
    tunnels.
    """

    def __init__(self, reactor: Any, originPort: int) -> None:
        self.reactor = reactor
        self.originPort = originPort
        self.tunnels: list[Tunnel] = []

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        return _Relay(Tunnel(self.reactor, idleTimeout=30), self)


class LoopbackTLSTests(TestCase):
    """
    A TLS session from a real client to a real origin, through a tunnel.
    """

    async def test_tlsEchoThroughTunnel(self) -> None:
        """
        The client verifies the origin's certificate for C{localhost}
        through the relay and its bytes come back; then everything closes
        normally.
        """
        from twisted.internet import reactor

        certPEM, keyPEM = _selfSignedLocalhost()
        serverOptions = PrivateCertificate.loadPEM(keyPEM + certPEM).options()
        originFactory = _EchoFactory()
        originPort = listenLocal(TLSMemoryBIOFactory(serverOptions, False, originFactory))
        self.addCleanup(originPort.stopListening)

        relayFactory = _RelayFactory(reactor, portNumber(originPort))
        relayPort = listenLocal(relayFactory)
        self.addCleanup(relayPort.stopListening)

        message = b"through the tunnel\r\n" * 1000
        clientOptions = optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(certPEM))
        endpoint = wrapClientTLS(
            clientOptions,
            TCP4ClientEndpoint(reactor, "127.0.0.1", portNumber(relayPort)),
        )
        client = await connectProtocol(endpoint, _EchoClient(message))
        self.addCleanup(self._closeAll, client, originFactory, relayFactory)

        self.assertEqual(await client.echoed, message)
        peer = client.transport.getPeerCertificate().to_cryptography()
        self.assertEqual(peer.public_bytes(Encoding.PEM), certPEM)

        [tunnel] = relayFactory.tunnels
        closed = tunnel.whenClosed()
        client.transport.loseConnection()
        await client.lost
        self.assertEqual(await closed, CLOSED_NORMALLY)
        await originFactory.connections[0].lost
        # The relay saw only ciphertext: more than the message each way.
        self.assertGreater(tunnel.bytesFromClient, len(message))
        self.assertGreater(tunnel.bytesFromUpstream, len(message))

    def _closeAll(
        self, client: _EchoClient, originFactory: _EchoFactory, relayFactory: _RelayFactory
    ) -> Deferred[list[tuple[bool, Any]]]:
        """
        Abort whatever a failed test left open, and wait until it is gone.
        """
        waits: list[Deferred[Any]] = []
        protocols: list[_EchoClient | _Echo] = [client, *originFactory.connections]
        for proto in protocols:
            if not proto.lost.called:
                proto.transport.abortConnection()
                waits.append(proto.lost)
        waits.extend(tunnel.whenClosed() for tunnel in relayFactory.tunnels)
        return DeferredList(waits)
