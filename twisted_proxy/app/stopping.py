# -*- test-case-name: tests.test_startup -*-
"""
Stopping and signals.

  - L{Draining}: a graceful stop: no new connections, idle ones closed at
    once, the others given C{--shutdown-timeout} seconds, then cut.
  - L{Signals}: the process's signal handlers.  SIGHUP reloads, SIGUSR1
    reopens the log files, SIGTERM and SIGINT stop gracefully (a second
    one cuts what is left).  The proxy installs its own SIGTERM and SIGINT
    handlers instead of the reactor's, so that a second signal does not
    raise C{ReactorNotRunning}, and so that a stop on a signal exits 0, as
    a stop that went as planned.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

if TYPE_CHECKING:
    from ..proxy.factory import ProxyFactory

__all__ = ["STOP_SIGNALS", "Draining", "Signals"]

_log = Logger()


class Draining:
    """
    A graceful stop of a L{ProxyFactory}'s connections: from L{start},
    connections waiting for a request are closed at once and the others
    after their current response (the factory is C{stopping}); tunnels run
    on.  What is still open after C{timeout} seconds (or at L{abortNow}) is
    cut.

    @cvar pollInterval: how often idle connections are looked for.
    """

    pollInterval = 0.1

    def __init__(self, factory: ProxyFactory, clock: Any, timeout: float) -> None:
        self.factory = factory
        self.clock = clock
        self.timeout = timeout
        self._done: defer.Deferred[None] = defer.Deferred()
        self._timer: Any = None
        self._loop: LoopingCall | None = None
        self._aborted = False

    def start(self) -> defer.Deferred[None]:
        """
        @return: a L{Deferred} that fires when no client connection is left.
        """
        factory = self.factory
        factory.stopping = True
        factory.closeIdleConnections()
        busy = [proto for proto in factory.connections if not proto.isClosing()]
        if not busy:
            self._done.callback(None)
            return self._done
        tunnels = sum(1 for proto in busy if proto.isTunnel())
        _log.info(
            "Stopping: no new connections; waiting up to {timeout} s for {busy} in "
            "progress{tunnels}.  Send the signal again to cut them now.",
            timeout=_seconds(self.timeout),
            busy=_plural(len(busy), "connection"),
            tunnels=f" ({tunnels} of them {'a tunnel' if tunnels == 1 else 'tunnels'})"
            if tunnels
            else "",
            count=len(busy),
        )
        self._started = self.clock.seconds()
        self._timer = self.clock.callLater(self.timeout, self._timedOut)
        loop = self._loop = LoopingCall(self._check)
        loop.clock = self.clock
        loop.start(self.pollInterval, now=False)
        return self._done

    def _check(self) -> None:
        factory = self.factory
        factory.closeIdleConnections()
        if not factory.connections:
            self._finish()

    def _timedOut(self) -> None:
        self._timer = None
        self._cut("Shutdown timeout ({timeout} s)")

    def abortNow(self) -> None:
        """
        Cut every connection now (a second signal).
        """
        if not self._done.called:
            self._cut("Stopping now")

    def _cut(self, why: str) -> None:
        if self._aborted:
            return
        self._aborted = True
        left = list(self.factory.connections)
        _log.warn(
            why + ": cutting {left} still in progress.",
            timeout=_seconds(self.timeout),
            left=_plural(len(left), "connection"),
            count=len(left),
        )
        self.factory.abortConnections()

    def _finish(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if not self._aborted:
            _log.info(
                "All connections finished after {seconds} s.",
                seconds=_seconds(self.clock.seconds() - self._started),
            )
        if not self._done.called:
            self._done.callback(None)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _seconds(value: float) -> str:
    """
    A duration for a person: C{30}, C{2.5}, C{0.05}.
    """
    if value >= 10 or float(value).is_integer():
        return str(round(value))
    return f"{value:.2g}" if value < 1 else f"{value:.1f}"


class Signals:
    """
    The process's signal handlers: installed by L{install}, the previous
    ones put back by L{restore}.  Each handler runs its action in the
    reactor thread.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._previous: dict[int, Any] = {}

    def install(self, signum: int, action: Callable[[], None], chain: bool = False) -> None:
        """
        Run C{action} on signal C{signum}.

        @param chain: also run the handler installed before, first (for
            SIGUSR1: twistd's own, if it logs to a file, rotates it; run
            first, "Log files reopened." lands in the new file).
        """
        previous = signal.getsignal(signum)
        chained = previous if chain and callable(previous) else None

        def handler(number: int, frame: Any) -> None:
            # The previous handler first, and ours whatever it does (main's
            # onSignal did the same, with a try/finally).
            try:
                if chained is not None:
                    chained(number, frame)
            finally:
                self.reactor.callFromThread(action)

        signal.signal(signum, handler)
        self._previous.setdefault(signum, previous)

    def installed(self) -> list[int]:
        return list(self._previous)

    def restore(self, *signums: int) -> None:
        """
        Put back the handlers installed before: for C{signums}, or all.
        """
        for signum in signums or list(self._previous):
            if signum in self._previous:
                previous = self._previous.pop(signum)
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
