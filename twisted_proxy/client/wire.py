# -*- test-case-name: tests.test_client_wire -*-
"""
The connection to the proxy, as protocols.

  - L{HTTPLayer} sends requests and frames responses (with
    L{twisted_proxy.http.framing.ResponseParser}), one at a time.
  - L{ProxyWire} is the TCP connection to the proxy.  For C{https://}
    targets it first opens a C{CONNECT} tunnel and then runs TLS
    (L{twisted.protocols.tls.TLSMemoryBIOProtocol}) over it, with the
    L{HTTPLayer} on top.
  - Both report what happens, as it happens, to a L{RunListener}.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener, ISystemHandle, ITCPTransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_proxy.http.errors import ProxyError
from twisted_proxy.http.framing import (
    Body,
    EndOfMessage,
    ResponseEvent,
    ResponseHead,
    ResponseParser,
)

from .errors import ClientError, framingError, lossDetail, printable, tlsFailure
from .sendnow import SendNow

if TYPE_CHECKING:
    from .config import TLSCreator

__all__ = ["RunListener", "HTTPLayer", "ProxyWire"]


class _IHTTPTransport(ITCPTransport, ISystemHandle):
    """
    What L{HTTPLayer} uses of its transport: the TCP connection's, through
    a L{SendNow} (which provides what the transport provides), or the TLS
    layer's, whose C{getHandle} is the OpenSSL connection.  For the type
    checker only: Twisted types C{Protocol.transport} as an optional
    L{ITransport}, and the layer is only ever used connected.
    """


class RunListener:
    """
    What the protocols report, as it happens, for one run.  L{Recorder} is
    the real one; this base ignores everything.

    Each event is reported when it happens on the socket: C{connected} in
    C{connectionMade}; C{requestStarting} just before the request is
    written; C{requestSent} once all of it has been handed to the kernel,
    with C{at} the time of the C{send()} call that did it
    (L{SendNow.lastSendAt}: the bytes leave during that call, and the time
    after it may include the peer, woken by them, taking the CPU);
    C{tunnelOpened}, C{tlsEstablished}, C{firstByte} and
    C{responseComplete} with C{at}, the time (L{ProxyWire.lastReadAt}) at
    which the read that brought the answer, the last handshake message, or
    the first and last byte of the response returned: before parsing,
    decryption or any output.
    """

    def connected(self) -> None:
        pass

    def tunnelOpened(self, head: ResponseHead, at: float | None = None) -> None:
        pass

    def tlsEstablished(self, version: str | None, at: float | None = None) -> None:
        pass

    def requestStarting(self) -> None:
        pass

    def requestSent(self, at: float | None = None) -> None:
        pass

    def firstByte(self, at: float | None = None) -> None:
        pass

    def interimHead(self, head: ResponseHead) -> None:
        pass

    def responseHead(self, head: ResponseHead) -> None:
        pass

    def bodyReceived(self, data: bytes) -> None:
        pass

    def responseComplete(self, at: float | None = None) -> None:
        pass


@implementer(IHandshakeListener)
class HTTPLayer(Protocol):
    """
    Requests and responses, one at a time, on a connection to the proxy
    (plain) or, inside a C{CONNECT} tunnel, over TLS to the origin.

    @ivar ready: fires when a request can be sent (the connection is up, or
        for TLS the handshake is done); fails with L{ClientError} otherwise.
    @ivar reusable: whether another request may be sent now.
    @ivar tlsVersion: the TLS version, once the handshake is done.
    @ivar _state: C{"connecting"} until ready; C{"idle"} between exchanges;
        C{"sending"} while a request is being handed to the kernel;
        C{"waiting"} from then to the first byte of the response;
        C{"receiving"} until the end of the response; C{"closed"}.
    @ivar _tlsHost: the host TLS verifies, or L{None} for a plain connection.
    @ivar _parser: frames the responses on this connection.
    @ivar _listener: gets the events of the current exchange.
    @ivar _done: fires when the current exchange ends.
    @ivar _bodyBytes: body bytes of the current response so far.
    @ivar _headSeen: whether the final head of the current response arrived.
    @ivar wire: the connection underneath, for the time of each read and
        for knowing when a write has reached the kernel.
    """

    transport: _IHTTPTransport
    reusable = False
    tlsVersion: str | None = None
    wire: ProxyWire | None = None
    _state = "connecting"
    _done: Deferred[None] | None = None
    _bodyBytes = 0
    _headSeen = False

    def __init__(self, listener: RunListener, tlsHost: str | None = None) -> None:
        self._tlsHost = tlsHost
        self.ready: Deferred[None] = Deferred()
        self._parser = ResponseParser()
        self._listener = listener

    def connectionMade(self) -> None:
        if self._tlsHost is None:
            self._becomeReady()

    def handshakeCompleted(self) -> None:
        handle = self.transport.getHandle()
        assert isinstance(handle, SSL.Connection)  # the TLS layer's handle
        self.tlsVersion = handle.get_protocol_version_name()
        self._listener.tlsEstablished(self.tlsVersion, self._readAt())
        self._becomeReady()

    def _becomeReady(self) -> None:
        self._state = "idle"
        self.reusable = True
        self.ready.callback(None)

    def failBeforeReady(self, error: ClientError) -> None:
        """
        The connection will never be ready (the tunnel was refused).
        """
        if self._state == "connecting":
            self._state = "closed"
            self.ready.errback(error)

    def request(self, method: bytes, data: bytes, listener: RunListener) -> Deferred[None]:
        """
        Send a request and read its response.

        @param method: the method (it changes how the response is framed).
        @param data: the request head and body.
        @param listener: gets the events of this exchange.
        @return: fires when the response is complete, or fails with
            L{ClientError}.
        """
        assert self._state == "idle", self._state
        self._parser.expect(method)
        self._listener = listener
        self._bodyBytes = 0
        self._headSeen = False
        self._state = "sending"
        self.reusable = False
        self._done = done = Deferred[None]()
        listener.requestStarting()
        self.transport.write(data)
        if self.wire is not None and self.wire.out is not None:
            self.wire.out.whenFlushed(self._sent)
        else:
            self._sent()
        return done

    def _sent(self) -> None:
        """
        The whole request has been handed to the kernel.
        """
        if self._state == "sending":
            self._state = "waiting"
            out = self.wire.out if self.wire is not None else None
            self._listener.requestSent(out.lastSendAt if out is not None else None)

    def _readAt(self) -> float | None:
        return self.wire.lastReadAt if self.wire is not None else None

    def dataReceived(self, data: bytes) -> None:
        if self._state in ("sending", "waiting"):
            # An early answer (before all of a long request went out) also
            # ends the sending as far as timing goes.
            self._sent()
            self._state = "receiving"
            self._listener.firstByte(self._readAt())
        elif self._state != "receiving":
            # Bytes nobody asked for: this connection cannot be trusted.
            self.reusable = False
            self.transport.loseConnection()
            return
        try:
            events = self._parser.feed(data)
        except ProxyError as e:
            self._fail(framingError(e))
            self.transport.abortConnection()
            return
        self._handle(events)

    def _handle(self, events: list[ResponseEvent]) -> None:
        listener = self._listener
        for event in events:
            if self._state != "receiving":
                return
            try:
                if isinstance(event, ResponseHead):
                    if event.status < 200:
                        listener.interimHead(event)
                    else:
                        self._headSeen = True
                        listener.responseHead(event)
                elif isinstance(event, Body):
                    self._bodyBytes += len(event.data)
                    listener.bodyReceived(event.data)
                elif isinstance(event, EndOfMessage):
                    self.reusable = self._parser.keepAlive
                    self._state = "idle"
                    done, self._done = self._done, None
                    listener.responseComplete(self._readAt())
                    assert done is not None
                    done.callback(None)
            except ClientError as e:
                self._fail(e)
                self.transport.abortConnection()
                return

    def _fail(self, error: ClientError) -> None:
        self.reusable = False
        self._state = "closed"
        done, self._done = self._done, None
        if done is not None:
            done.errback(error)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        state = self._state
        self.reusable = False
        if state == "connecting":
            self._state = "closed"
            assert self._tlsHost is not None
            self.ready.errback(tlsFailure(reason, self._tlsHost))
            return
        if state not in ("sending", "waiting", "receiving"):
            self._state = "closed"
            return
        try:
            events = self._parser.feedEOF()
        except ProxyError:
            events = []
        if events:
            self._state = "receiving"
            self._handle(events)
        if self._done is None:
            self._state = "closed"
            return
        how = lossDetail(reason)
        if state in ("sending", "waiting"):
            message = "The proxy closed the connection{} without sending a response.".format(how)
        elif not self._headSeen:
            message = "The connection closed{} in the middle of the response head.".format(how)
        else:
            message = (
                "The connection closed{} after {} body bytes, before the end of "
                "the response: the body is incomplete.".format(how, self._bodyBytes)
            )
        self._fail(ClientError(message))


class _Only(Factory):
    """
    A factory that "builds" one protocol that already exists (to put an
    existing protocol under L{TLSMemoryBIOFactory}).
    """

    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: object) -> Protocol:
        return self._protocol


class ProxyWire(Protocol):
    """
    The TCP connection to the proxy (or, for a C{no_proxy} match, to the
    origin).

    For a plain target the bytes go straight to the L{HTTPLayer}.  For an
    C{https://} target through a proxy, a C{CONNECT} is sent first; after a
    2xx answer, TLS (L{TLSMemoryBIOFactory}, client side) runs over the same
    transport with the L{HTTPLayer} on top, and any bytes that arrived after
    the answer's head are the first TLS bytes.  For an C{https://} target
    reached directly, TLS starts at once.

    Its writes (the C{CONNECT}, the request, TLS records) go through a
    L{SendNow}, so they reach the kernel when they are made; the socket
    has C{TCP_NODELAY}, so none waits for an acknowledgement either.

    @ivar listener: gets the connection's events for the current run.
    @ivar localAddress: the socket's local address, once connected.
    @ivar lastReadAt: the monotonic time at which the latest read returned,
        taken before anything is done with the bytes.
    @ivar out: the transport, wrapped in a L{SendNow}, once connected.
    @ivar closed: fires when the TCP connection is gone.
    @ivar tunnelHead: the answer to the C{CONNECT}, if one was sent.
    @ivar _state: C{"connecting"}; C{"tunnelling"} (C{CONNECT} sent);
        C{"refused"} (a non-2xx answer is being read); C{"open"} (bytes go to
        C{_upper}); C{"closed"}.
    @ivar _upper: the protocol the bytes go to: the L{HTTPLayer} or the TLS
        layer wrapping it.
    @ivar _refusal: the start of the body of a refused C{CONNECT}.
    """

    transport: ITCPTransport
    localAddress: str | None = None
    lastReadAt: float | None = None
    out: SendNow | None = None
    tunnelHead: ResponseHead | None = None
    _state = "connecting"
    _upper: HTTPLayer | TLSMemoryBIOProtocol | None = None
    _parser: ResponseParser | None = None

    def __init__(
        self,
        http: HTTPLayer,
        listener: RunListener,
        tunnelHead: bytes | None = None,
        tunnelTarget: str = "",
        tlsCreator: TLSCreator | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        http.wire = self
        self._monotonic = monotonic
        self.listener = listener
        self._tunnelRequest = tunnelHead
        self._tunnelTarget = tunnelTarget
        self._tlsCreator = tlsCreator
        self._refusal = b""
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.listener.connected()
        self.out = SendNow(self.transport, self._monotonic)
        if ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)
        self.localAddress = getattr(self.transport.getHost(), "host", None)
        if self._tunnelRequest is None:
            if self._tlsCreator is not None:
                # https:// to the origin directly (no_proxy): TLS at once.
                self._startTLS()
            else:
                self._open(self._http)
            return
        self._state = "tunnelling"
        self._parser = ResponseParser()
        self._parser.expect(b"CONNECT")
        self.out.write(self._tunnelRequest)

    def _open(self, upper: HTTPLayer | TLSMemoryBIOProtocol) -> None:
        self._state = "open"
        self._upper = upper
        upper.makeConnection(self.out)

    def dataReceived(self, data: bytes) -> None:
        self.lastReadAt = self._monotonic()
        if self._state == "open":
            assert self._upper is not None
            self._upper.dataReceived(data)
            return
        if self._state not in ("tunnelling", "refused"):
            return
        try:
            assert self._parser is not None
            events = self._parser.feed(data)
        except ProxyError as e:
            error = framingError(e)
            error.message = "The proxy's answer to CONNECT: " + error.message
            self._refuse(error)
            return
        for event in events:
            if isinstance(event, ResponseHead):
                if event.status < 200:
                    continue
                self.tunnelHead = event
                if 200 <= event.status < 300:
                    self._startTLS()
                    return
                self._state = "refused"
            elif isinstance(event, Body):
                self._refusal = (self._refusal + event.data)[:1024]
            elif isinstance(event, EndOfMessage):
                self._refuse(self._refusalError())
                return

    def _startTLS(self) -> None:
        if self.tunnelHead is not None:
            self.listener.tunnelOpened(self.tunnelHead, self.lastReadAt)
        # A tunnel is opened, and TLS started, for an https:// target only,
        # which always has its TLS settings.
        assert self._tlsCreator is not None
        factory = TLSMemoryBIOFactory(self._tlsCreator, True, _Only(self._http))
        # Not Twisted's default BufferingTLSTransport, which holds small
        # writes until the next reactor iteration (a callLater(0) on the
        # global reactor): the request goes out when it is written.
        factory.protocol = TLSMemoryBIOProtocol
        tls = factory.buildProtocol(self.transport.getPeer())
        self._open(tls)
        if self._parser is not None and self._parser.trailingData:
            tls.dataReceived(self._parser.trailingData)

    def _refusalError(self) -> ClientError:
        head = self.tunnelHead
        assert head is not None
        proxyStatus = head.get(b"proxy-status")
        message = "The proxy refused to open a tunnel to {}: {} {}".format(
            self._tunnelTarget, head.status, printable(head.reason.decode("latin-1"))
        )
        if proxyStatus:
            message += " (Proxy-Status: {})".format(printable(proxyStatus.decode("latin-1")))
        firstLine = self._refusal.decode("utf-8", "replace").strip().split("\n")[0]
        if firstLine:
            message += ": " + printable(firstLine)
        return ClientError(
            message,
            proxyStatus=proxyStatus.decode("latin-1") if proxyStatus else None,
            status=head.status,
            head=head,
        )

    def _refuse(self, error: ClientError) -> None:
        self._state = "closed"
        self._http.failBeforeReady(error)
        self.transport.loseConnection()

    def close(self) -> None:
        """
        Close the connection (with a TLS close_notify if TLS is running).
        """
        upper = self._upper
        if self._state == "open" and isinstance(upper, TLSMemoryBIOProtocol):
            upper.loseConnection()
        elif self._state != "closed":
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        state, self._state = self._state, "closed"
        if state == "open":
            assert self._upper is not None
            self._upper.connectionLost(reason)
        elif state == "refused":
            self._http.failBeforeReady(self._refusalError())
        elif state == "tunnelling":
            self._http.failBeforeReady(
                ClientError(
                    "The proxy closed the connection{} before answering the CONNECT "
                    "request for {}.".format(lossDetail(reason), self._tunnelTarget)
                )
            )
        self.closed.callback(None)
