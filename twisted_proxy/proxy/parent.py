# -*- test-case-name: tests.test_upstream -*-
"""
A parent (upstream) proxy: L{ParentProxy} (C{--upstream-proxy}) and
L{ParentConnectProtocol}, which chains a CONNECT tunnel through it.
"""

from __future__ import annotations

import base64

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from ..http.errors import BadGateway, ProxyError
from ..http.framing import ResponseHead, ResponseParser, serializeRequestHead
from .tcp import IStreamTransport, setNoDelay

__all__ = ["ParentConnectProtocol", "ParentProxy"]


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
            raise ValueError(
                "the parent proxy must be an http:// URL, e.g. http://proxy.example:3128"
            )
        rest = url[len("http://") :].rstrip("/")
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

    transport: IStreamTransport
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
                            proxyStatus="http_request_denied"
                            if event.status in (403, 407)
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

    def connectionLost(self, reason: Failure = connectionDone) -> None:
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
