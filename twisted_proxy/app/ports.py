# -*- test-case-name: tests.test_startup -*-
"""
The proxy's listening sockets as services: L{bindAll} opens the sockets of
a list of L{Listener}s (before twistd daemonizes), L{ListeningPort} serves
one with the proxy's factory while it runs, and L{listenerChanges} says
which to open and close when a reload changes C{--listen}.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from .. import __version__
from .listening import Listener, ListenError, listenBacklog

__all__ = ["ListeningPort", "bindAll", "listenerChanges"]

_log = Logger()


class ListeningPort(Service):
    """
    One listening socket (a bound L{Listener}), served by the reactor with
    the proxy's factory while the service runs.

    @ivar port: the reactor's listening port, while running.
    @ivar _waitingForPort: fires with L{port} once the service started (the
        name L{StreamServerEndpointService} gives it, which tests use).
    """

    port: Any = None

    def __init__(self, listener: Listener, reactor: Any, factory: Any) -> None:
        self.listener = listener
        self.reactor = reactor
        self.factory = factory
        self._waitingForPort: defer.Deferred[Any] = defer.Deferred()

    def startService(self) -> None:
        super().startService()
        listener = self.listener
        address = listener.describe()
        port = self.port = listener.adopt(self.reactor, self.factory)
        host = getattr(port.getHost(), "host", None)
        if host is not None:
            self.factory.addListeningAddress(host, port.getHost().port)
        _log.info(
            "twisted-proxy {version} listening on {address}{backlog}",
            version=__version__,
            address=address,
            backlog=""
            if listener.effectiveBacklog is None
            else f" (listen backlog {listener.effectiveBacklog})",
        )
        self._waitingForPort.callback(port)

    def stopService(self) -> defer.Deferred[Any] | None:
        super().stopService()
        self.listener.close()
        port, self.port = self.port, None
        if port is None:
            return None
        return defer.maybeDeferred(port.stopListening)


def bindAll(listeners: list[Listener], maxConnections: int) -> list[Listener]:
    """
    Open every socket of C{listeners}; an optional one (the IPv6 half of a
    bare port) that cannot be opened is left out with a warning.

    @return: the listeners bound.
    @raise ListenError: if one cannot be opened; the others are closed again.
    """
    backlog = listenBacklog(maxConnections)
    bound: list[Listener] = []
    for listener in listeners:
        try:
            listener.bind(backlog)
        except ListenError as e:
            if listener.optional:
                _log.warn(
                    "Not listening on {address}: IPv6 is not available here ({reason}); "
                    "listening on IPv4 only.",
                    address=listener.describe(),
                    reason=e.reason,
                )
                continue
            for other in bound:
                other.close()
            raise
        bound.append(listener)
    return bound


def listenerChanges(
    old: list[Listener], new: list[Listener]
) -> tuple[list[Listener], list[Listener]]:
    """
    The listeners to open and to close to go from C{old} to C{new}
    (compared by their C{--listen} value).

    @return: C{(added, removed)}; C{added} are from C{new}.
    """
    before = {listener.description for listener in old}
    after = {listener.description for listener in new}
    added = [listener for listener in new if listener.description not in before]
    removed = [listener for listener in old if listener.description not in after]
    return added, removed
