# -*- test-case-name: tests.test_client_loopback -*-
"""
How the client reaches an address: name resolution as a phase of its own,
and connections straight to IP addresses, made when they are asked for.

A name is resolved before any connection is attempted (the C{namelookup}
phase, as curl times it), with C{getaddrinfo} in the reactor's thread pool;
L{ThreadResolver.prepare} starts that pool before the clock does.  An IP
address is connected to directly (L{TCP4ClientEndpoint} or
L{TCP6ClientEndpoint}), never through L{HostnameEndpoint}, whose
resolution of even a literal goes through that thread pool and, on a cold
client, starts it in the middle of the timed connect.

L{ConnectNowEndpoint} goes one step further for the client's own timed
connections: Twisted's TCP connector creates the socket when asked but
makes the C{connect()} call on the reactor's next pass (C{callLater(0)}),
after whatever else that pass does; this endpoint makes the call at once,
waits for the socket to be writable, and hands the connected socket to the
reactor (L{IReactorSocket.adoptStreamConnection}).  The SYN leaves when
the clock says the connection starts.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IReactorSocket,
    IStreamClientEndpoint,
    IWriteDescriptor,
)
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["isAddress", "ThreadResolver", "ConnectNowEndpoint", "addressEndpoint", "tcpInfo"]


def isAddress(host: str) -> bool:
    """
    Whether C{host} is an IPv4 or IPv6 address (not a name).
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _lookUp(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise DNSLookupError("{}: {}".format(host, e)) from None
    addresses: list[str] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            address = str(sockaddr[0]).split("%", 1)[0]
            if address not in addresses:
                addresses.append(address)
    if not addresses:
        raise DNSLookupError("{}: no IPv4 or IPv6 address".format(host))
    return addresses


class ThreadResolver:
    """
    C{getaddrinfo} in the reactor's thread pool: the addresses of a name,
    in the order the system prefers them.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def prepare(self) -> Deferred[None]:
        """
        Start the thread pool (and one thread in it), so that a later
        L{resolve} times the lookup, not the pool's start.
        """
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), lambda: None)

    def resolve(self, host: str, port: int) -> Deferred[list[str]]:
        """
        @return: the addresses, or a failure with L{DNSLookupError}.
        """
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), _lookUp, host, port)


_TCP_ESTABLISHED = 1
# struct tcp_info (linux/tcp.h): eight one-byte fields, then 32-bit ones;
# tcpi_rtt (microseconds) is the sixteenth of those.
_TCP_INFO = struct.Struct("=B7x60xI")


def tcpInfo(sock: socket.socket) -> tuple[int, int] | None:
    """
    The TCP state and smoothed round-trip time (microseconds) of C{sock}
    from the kernel (Linux C{TCP_INFO}), or L{None} where it is not
    available.  Right after the handshake the round-trip time is the
    handshake's.
    """
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, option, _TCP_INFO.size)
    except OSError:
        return None
    if len(raw) < _TCP_INFO.size:
        return None
    state, rtt = _TCP_INFO.unpack_from(raw)
    return state, rtt


@implementer(IWriteDescriptor)
class _Connecting:
    """
    A socket whose C{connect()} is in progress, registered with the reactor
    as a writer: writable means the attempt is over, one way or the other.
    """

    def __init__(self, endpoint: ConnectNowEndpoint, sock: socket.socket) -> None:
        self._endpoint = endpoint
        self._socket = sock

    def fileno(self) -> int:
        return self._socket.fileno()

    def logPrefix(self) -> str:
        return "proxyclient connect"

    def doWrite(self) -> None:
        self._endpoint._attemptOver(self)

    def connectionLost(self, reason: Failure) -> None:
        # The reactor saw an error or hang-up on the socket: SO_ERROR says
        # which.
        self._endpoint._attemptOver(self)


@implementer(IStreamClientEndpoint)
class ConnectNowEndpoint:
    """
    A TCP client endpoint for an IPv4 or IPv6 address that calls
    C{connect()} in L{connect}, not on the reactor's next pass.

    The connected socket becomes a Twisted transport through
    L{IReactorSocket.adoptStreamConnection}; failures are Twisted's
    connection errors (L{error.getConnectError}); the attempt gives up with
    L{error.TimeoutError} after C{timeout} seconds and can be cancelled
    (L{error.ConnectingCancelledError}).

    @ivar connectedAt: the C{monotonic} time at which the connection was
        established, before the reactor adopts it and calls
        C{connectionMade}; L{None} until then.  When the handshake finished
        inside the C{connect()} call itself (a peer on this machine: the
        kernel runs the whole handshake before the call returns, and the
        peer it wakes may take the CPU before the call returns), it is the
        time of the call plus the handshake's round trip as the kernel
        measured it (C{TCP_INFO}); otherwise it is when the socket was
        reported writable.
    @ivar connectCalledAt: the C{monotonic} time just before C{connect()}.
    """

    connectedAt: float | None = None
    connectCalledAt: float | None = None
    _waiting: _Connecting | None = None

    def __init__(
        self,
        reactor: Any,
        host: str,
        port: int,
        timeout: float = 30,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reactor = reactor
        self._host = host
        self._port = port
        self._timeout = timeout
        self._monotonic = monotonic
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        self._factory = protocolFactory
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        sock.setblocking(False)
        self.connectCalledAt = called = self._monotonic()
        code = sock.connect_ex((self._host, self._port))
        if code in (0, errno.EISCONN):
            self.connectedAt = self._establishedAt(sock, called) or self._monotonic()
            return self._adopt(sock)
        if code not in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, errno.EINTR):
            sock.close()
            return fail(error.getConnectError((code, os.strerror(code))))
        self.connectedAt = self._establishedAt(sock, called)
        self._waiting = waiting = _Connecting(self, sock)
        self._result: Deferred[IProtocol] = Deferred(lambda d: self._giveUp(waiting, None))
        self._timer = self._reactor.callLater(self._timeout, self._giveUp, waiting, "timeout")
        self._reactor.addWriter(waiting)
        return self._result

    def _attemptOver(self, waiting: _Connecting) -> None:
        if waiting is not self._waiting:
            return
        now = self._monotonic()
        self._stopWaiting()
        sock = waiting._socket
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self.connectedAt = None
            sock.close()
            self._result.errback(error.getConnectError((code, os.strerror(code))))
            return
        if self.connectedAt is None:
            self.connectedAt = now
        self._adopt(sock).chainDeferred(self._result)

    def _establishedAt(self, sock: socket.socket, called: float) -> float | None:
        """
        If the connection is already established as C{connect()} returns,
        when it was: C{called} plus the handshake round trip the kernel
        measured (C{TCP_INFO}'s C{tcpi_rtt}), but never later than now.
        L{None} if it is not established yet, or the kernel does not say.
        """
        info = tcpInfo(sock)
        if info is None or info[0] != _TCP_ESTABLISHED:
            return None
        return min(called + info[1] / 1e6, self._monotonic())

    def _giveUp(self, waiting: _Connecting, why: str | None) -> None:
        if waiting is not self._waiting:
            return
        self._stopWaiting()
        waiting._socket.close()
        if why == "timeout":
            self._result.errback(error.TimeoutError())
        else:
            self._result.errback(
                error.ConnectingCancelledError(
                    IPv4Address("TCP", self._host, self._port)
                    if self._family == socket.AF_INET
                    else IPv6Address("TCP", self._host, self._port)
                )
            )

    def _stopWaiting(self) -> None:
        waiting, self._waiting = self._waiting, None
        self._reactor.removeWriter(waiting)
        if self._timer.active():
            self._timer.cancel()

    def _adopt(self, sock: socket.socket) -> Deferred[IProtocol]:
        """
        Hand the connected socket to the reactor; C{connectionMade} runs
        now.
        """
        try:
            transport = self._reactor.adoptStreamConnection(
                sock.fileno(), self._family, self._factory
            )
        except Exception:
            return fail()
        finally:
            # The reactor has its own duplicate of the descriptor.
            sock.close()
        if transport is None:
            return fail(error.ConnectError("the protocol factory refused the connection"))
        return succeed(transport.protocol)


def addressEndpoint(reactor: Any, monotonic: Callable[[], float] = time.monotonic) -> Any:
    """
    The default C{endpointFactory}: C{(address, port, timeout)} to a
    L{ConnectNowEndpoint} for that IPv4 or IPv6 address, or Twisted's own
    TCP endpoints on a reactor that cannot adopt a socket.
    """

    def endpoint(host: str, port: int, timeout: float) -> IStreamClientEndpoint:
        if IReactorSocket.providedBy(reactor):
            return ConnectNowEndpoint(reactor, host, port, timeout, monotonic)
        if ":" in host:
            return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
        return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)

    return endpoint
