# -*- test-case-name: tests.test_haproxy -*-
"""
The PROXY protocol (HAProxy's, versions 1 and 2) for C{--listen
haproxy:tcp:...}, with the proxy's protocol connected only once the header
has been read.

Twisted's wrapper (what the C{haproxy:} endpoint installs) connects the
wrapped protocol at once, so that in C{connectionMade} the peer is still
the load balancer: the brief's accept line, the client networks rule and
the per-address count would all be about the balancer.  This wrapper waits
for the header; a connection whose header is invalid is closed without the
proxy ever seeing it.

It builds on Twisted's header parsers and wrapper, which live in private
modules of C{twisted.protocols.haproxy} (the package exports only
C{proxyEndpoint}); C{tests/test_haproxy.py} checks them against the
installed Twisted.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Protocol
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.haproxy._wrapper import HAProxyProtocolWrapper, HAProxyWrappingFactory
from zope.interface import directlyProvides, providedBy

__all__ = ["HAProxyWrappingFactory", "PeerFirstHAProxyFactory"]


class PeerFirstHAProxyWrapper(HAProxyProtocolWrapper):
    """
    A PROXY protocol wrapper whose wrapped protocol is connected once the
    header is read, with the client the header names as its peer.
    """

    _announced = False
    _early = b""

    def makeConnection(self, transport: Any) -> None:
        # ProtocolWrapper.makeConnection, but for connecting the wrapped
        # protocol, which waits for the header.
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)

    def dataReceived(self, data: bytes) -> None:
        if self._announced:
            self.wrappedProtocol.dataReceived(data)
            return
        parser = self._parser
        if parser is None:
            data = self._early + data
            if len(data) >= 16 and data[:12] == V2Parser.PREFIX and data[12] & 0xF0 == 0x20:
                parser = V2Parser()
            elif len(data) >= 8 and data[:5] == V1Parser.PROXYSTR:
                parser = V1Parser()
            elif len(data) < 16 and (
                V2Parser.PREFIX.startswith(data[:12]) or V1Parser.PROXYSTR.startswith(data[:5])
            ):
                self._early = data
                return
            else:
                self.loseConnection()
                return
            self._parser = parser
            self._early = b""
        try:
            info, remaining = parser.feed(data)
        except InvalidProxyHeader:
            self.loseConnection()
            return
        if info is None:
            return
        self._proxyInfo = info
        self._announced = True
        # As ProtocolWrapper does: the wrapper is the wrapped protocol's
        # transport (it provides what its own transport provides).
        self.wrappedProtocol.makeConnection(self)  # type: ignore[arg-type]
        if remaining:
            self.wrappedProtocol.dataReceived(remaining)

    def connectionLost(self, reason: Any = None) -> None:
        if self._announced:
            super().connectionLost(reason)
        else:
            self.factory.unregisterProtocol(self)


class PeerFirstHAProxyFactory(HAProxyWrappingFactory):
    """
    Serves the wrapped factory's protocols behind the PROXY protocol,
    connected once the header is read.
    """

    protocol = PeerFirstHAProxyWrapper  # type: ignore[assignment]  # a subclass of the base's
