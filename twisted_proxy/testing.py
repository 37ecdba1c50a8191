# -*- test-case-name: tests.test_server -*-
"""
Test doubles for the proxy, public as C{treq.testing} is: a protocol
harness with a fake clock and fake upstream endpoints, so every path of the
proxy can be driven byte by byte without a socket.

    h = Harness(idleTimeout=60)
    proto, client = h.client()
    proto.dataReceived(b"GET http://a.test/ HTTP/1.1\\r\\nHost: a.test\\r\\n\\r\\n")
    up, upTransport = h.connect()          # complete the connection attempt
    up.dataReceived(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
    client.value()                         # what the client received
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock, StringTransport
from twisted.logger import LogEvent, LogPublisher, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from .proxy.config import ProxyConfig
from .proxy.factory import ProxyFactory
from .proxy.upstream import UpstreamPool

if TYPE_CHECKING:
    from twisted.trial.unittest import SynchronousTestCase

__all__ = ["FakeEndpoint", "Harness", "LogEvents", "logEvents"]


class LogEvents(EventLoggingObserver):
    """
    The events logged while a test runs (an C{EventLoggingObserver}), and
    L{Deferred}s that fire once they include what the test waits for: a
    test waits for the event that says something happened, not for time to
    pass.

    @ivar _clock: fires the Deferreds on its next turn instead of inside the
        log call (so that the test does not go on, and perhaps end and
        remove this observer, while the publisher is still delivering the
        event), or L{None} to fire them at once.
    """

    def __init__(self, clock: IReactorTime | None = None) -> None:
        super().__init__()
        self._clock = clock
        self._waiting: list[tuple[Callable[[LogEvents], bool], Deferred[None]]] = []

    def __call__(self, event: LogEvent) -> None:
        super().__call__(event)
        if self._waiting:
            self._check()

    def when(self, predicate: Callable[[LogEvents], bool]) -> Deferred[None]:
        """
        A L{Deferred} that fires once C{predicate(self)} holds: now, or
        after the event that makes it hold.
        """
        d: Deferred[None] = Deferred()
        self._waiting.append((predicate, d))
        self._check()
        return d

    def whenLogged(self, text: str) -> Deferred[None]:
        """
        A L{Deferred} that fires once an event whose format contains
        C{text} has been logged.
        """
        return self.when(lambda events: self.logged(text))

    def logged(self, text: str) -> bool:
        """
        Whether an event whose format contains C{text} has been logged.
        """
        return any(text in (event.get("log_format") or "") for event in self)

    def _check(self) -> None:
        for entry in list(self._waiting):
            predicate, d = entry
            if predicate(self):
                self._waiting.remove(entry)
                if self._clock is None:
                    d.callback(None)
                else:
                    self._clock.callLater(0, d.callback, None)


def logEvents(
    testCase: SynchronousTestCase,
    publisher: LogPublisher = globalLogPublisher,
    clock: IReactorTime | None = None,
) -> LogEvents:
    """
    Collect what C{publisher} logs until C{testCase} ends (as Twisted's
    C{EventLoggingObserver.createWithCleanup}, for a synchronous test case
    as well).  With a C{clock}, the L{LogEvents.when} Deferreds fire on its
    next turn.
    """
    observer = LogEvents(clock)
    publisher.addObserver(observer)
    testCase.addCleanup(publisher.removeObserver, observer)
    return observer


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """
    An endpoint whose connection attempts the test completes or fails
    (L{Harness.connect}, L{Harness.fail}).
    """

    def __init__(self, harness: Harness, host: str, port: int) -> None:
        self.harness = harness
        self.host = host
        self.port = port

    def connect(self, factory: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.harness.attempts.append((self.host, self.port, factory, d))
        return d


class Harness:
    """
    A proxy factory wired to a fake clock and fake endpoints, configured
    with C{ProxyConfig(pseudonym="test-proxy", **settings)}, listening (for
    loop detection) on 127.0.0.1:8080.  With C{transactionDetail}, every
    transaction event carries its full record; with C{cache}, the factory
    has the cache the settings describe (none otherwise).

    @ivar clock: the L{MemoryReactorClock} (clock and wall clock).
    @ivar attempts: pending connection attempts, oldest first:
        C{(host, port, factory, deferred)}.
    @ivar pool: the L{UpstreamPool} (at least 4 idle connections per key
        unless C{poolMinIdlePerHost} says otherwise).
    @ivar factory: the L{ProxyFactory}.
    """

    def __init__(
        self, transactionDetail: bool = False, cache: bool = False, **settings: Any
    ) -> None:
        self.clock = MemoryReactorClock()
        self.attempts: list[tuple[str, int, Any, Deferred[Any]]] = []
        settings.setdefault("pseudonym", "test-proxy")
        settings.setdefault("poolMinIdlePerHost", 4)
        self.config = ProxyConfig(**settings)
        self.pool = UpstreamPool(
            self.clock,
            lambda host, port: FakeEndpoint(self, host, port),
            minIdlePerHost=self.config.poolMinIdlePerHost,
            idleTimeout=self.config.poolIdleTimeout,
        )
        self.factory = ProxyFactory(
            self.config,
            self.clock,
            self.pool,
            wallClock=self.clock.seconds,
            monoClock=self.clock.seconds,
            transactionDetail=transactionDetail,
            cache=self.config.newCache(self.clock.seconds) if cache else None,
        )
        self.factory.addListeningAddress("127.0.0.1", 8080)

    def client(self, peer: str = "127.0.0.1") -> tuple[Any, StringTransport]:
        """
        A new client connection from C{peer}.

        @return: the protocol and its transport.
        """
        proto = self.factory.buildProtocol(IPv4Address("TCP", peer, 50000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 50000))
        proto.makeConnection(transport)
        return proto, transport

    def connect(self, peer: tuple[str, int] = ("93.184.216.34", 80)) -> tuple[Any, StringTransport]:
        """
        Complete the oldest connection attempt, to C{peer}.

        @return: the upstream protocol and its transport.
        """
        host, port, factory, d = self.attempts.pop(0)
        proto = factory.buildProtocol(None)
        transport = StringTransport(
            peerAddress=IPv4Address("TCP", *peer), hostAddress=IPv4Address("TCP", "10.0.0.1", 40000)
        )
        proto.makeConnection(transport)
        d.callback(proto)
        return proto, transport

    def fail(self, exc: Exception) -> None:
        """
        Fail the oldest connection attempt with C{exc}.
        """
        host, port, factory, d = self.attempts.pop(0)
        d.errback(Failure(exc))


def writeHtpasswd(directory: str, user: str = "alice", password: bytes = b"s3cret") -> str:
    """
    Write an htpasswd file with one user (bcrypt, the cheapest cost) in
    C{directory}.

    @return: its path.
    """
    import bcrypt

    path = directory + "/htpasswd"
    with open(path, "wb") as f:
        f.write(user.encode("utf-8") + b":" + bcrypt.hashpw(password, bcrypt.gensalt(4)) + b"\n")
    return path
