# -*- test-case-name: tests.test_metrics -*-
"""
The C{--metrics} endpoint as a service (L{MetricsService}), what it shows
(L{Monitor}) and whether the proxy accepts connections (L{Health}, for
C{/healthz}).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client.registry import CollectorRegistry
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger, LogPublisher, globalLogPublisher

from ... import __version__
from .exposition import buildRegistry
from .gauges import ProxyGauges, WorkerGauges
from .stats import MetricsObserver, TransactionStats

__all__ = [
    "Health",
    "MetricsService",
    "Monitor",
]

_log = Logger()


# Health.


class Health:
    """
    Whether the proxy accepts new connections: C{/healthz} answers 200
    while it does and 503 once it is draining.

    Draining starts when L{drain} is called (the metrics service calls it
    when the reactor begins to shut down, and when it is stopped), or when
    one of the C{checks} given says so (e.g. the factory's C{stopping}).
    Graceful-shutdown code that lets in-flight transfers finish calls
    C{drain(until=d)}: the metrics endpoint then keeps serving (503 at
    C{/healthz}, live numbers at C{/metrics}) until C{d} fires.

    @ivar _draining: L{drain} was called.
    @ivar _until: Deferreds to wait for before the endpoint stops.
    """

    def __init__(self, *checks: Callable[[], bool]) -> None:
        self._checks = checks
        self._draining = False
        self._until: list[Deferred[None]] = []

    @property
    def draining(self) -> bool:
        return self._draining or any(check() for check in self._checks)

    def drain(self, until: Deferred[Any] | None = None) -> None:
        """
        The proxy no longer accepts connections.

        @param until: fires when the in-flight work is done; the metrics
            endpoint stays up until then.  Its result is passed through
            untouched.
        """
        self._draining = True
        if until is not None:
            done: Deferred[None] = Deferred()

            def passOn(result: object) -> object:
                done.callback(None)
                return result

            until.addBoth(passOn)
            self._until.append(done)

    def whenDrained(self) -> Deferred[Any]:
        """
        Fires when every C{until} given to L{drain} has fired.
        """
        if not self._until:
            return succeed(None)
        return DeferredList(list(self._until))


# The service.


class Monitor:
    """
    Everything the endpoint shows, in one place: what the status page and
    C{/metrics} read.

    @ivar stats: the transactions so far.
    @ivar gauges: returns the gauges now (see L{ProxyGauges.read}).
    @ivar health: the L{Health}.
    @ivar summary: returns the configuration summary: C{(label, text)}
        pairs, secrets already left out.
    @ivar registry: the Prometheus registry.
    @ivar clock: for uptime.
    @ivar wallClock: returns POSIX time, for the page's clock.
    @ivar startedAt: C{clock.seconds()} when the service started.
    @ivar workers: how many worker processes serve (1: this process).
    """

    def __init__(
        self,
        *,
        stats: TransactionStats,
        gauges: Callable[[], Mapping[str, float]],
        health: Health,
        summary: Callable[[], list[tuple[str, str]]],
        registry: CollectorRegistry,
        clock: Any,
        wallClock: Callable[[], float],
        pseudonym: str,
        workers: int = 1,
    ) -> None:
        self.stats = stats
        self.gauges = gauges
        self.health = health
        self.summary = summary
        self.registry = registry
        self.clock = clock
        self.wallClock = wallClock
        self.pseudonym = pseudonym
        self.workers = workers
        self.startedAt = clock.seconds()
        self.version = __version__

    def uptime(self) -> float:
        return max(0.0, float(self.clock.seconds() - self.startedAt))


class MetricsService(Service):
    """
    The C{--metrics} endpoint: listens on C{description}, serves the
    L{Monitor}, and keeps the L{MetricsObserver} on the log publisher while
    it runs.  Build it with L{forProxy} or L{forWorkers}.

    Its socket is opened by L{bind}, which the proxy's service calls with
    its own ports (before twistd daemonizes: a port in use is reported on
    the terminal), or when it starts.

    Stopping: C{/healthz} says "draining" from the moment the reactor
    begins to shut down, or the proxy's service says so
    (C{monitor.health.drain(until=d)}); the endpoint keeps serving until
    every such C{d} has fired, then closes.

    @ivar monitor: the L{Monitor}.
    @ivar observer: the L{MetricsObserver}.
    @ivar options: the settings shown on the status page (a mapping of
        setting names to values); L{reconfigure} replaces them.
    @ivar listener: the endpoint's L{Listener}.
    @ivar port: the listening port, while running.
    @ivar _waitingForPort: fires with L{port} once listening.
    """

    backlog = 128

    def __init__(
        self,
        reactor: Any,
        description: str,
        monitor: Monitor,
        observer: MetricsObserver,
        publisher: LogPublisher | None = None,
        onListening: Callable[[Any], None] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        from ..listening import Listener
        from ..status import statusSite

        self.reactor = reactor
        self.description = description
        self.monitor = monitor
        self.observer = observer
        self.publisher = publisher if publisher is not None else globalLogPublisher
        self.options: Mapping[str, Any] = options if options is not None else {}
        self.port: Any = None
        self._extraOnListening = onListening
        self._trigger: Any = None
        self._waitingForPort: Deferred[Any] = Deferred()
        self.site = statusSite(monitor, reactor)
        [self.listener] = Listener.parse(description)
        self.listener.option = "metrics"

    @classmethod
    def forProxy(
        cls,
        reactor: Any,
        options: Mapping[str, Any],
        factory: Any,
        pool: Any,
        publisher: LogPublisher | None = None,
    ) -> MetricsService:
        """
        The endpoint of a proxy serving in this process.

        @param options: the settings (setting name to value), for the
            endpoint and the status page.
        """
        from ..status import configurationSummary

        stats = TransactionStats()
        gauges = ProxyGauges(factory, pool)
        registry = buildRegistry(stats, gauges.read)
        monitor = Monitor(
            stats=stats,
            gauges=gauges.read,
            health=Health(lambda: bool(factory.stopping)),
            summary=lambda: configurationSummary(service.options, factory.config),
            registry=registry,
            clock=reactor,
            wallClock=factory.wallClock,
            pseudonym=factory.config.pseudonym,
        )

        def guard(port: Any) -> None:
            # A request through the proxy to this endpoint is refused as a
            # loop: proxy clients must not read the status page from here.
            address = port.getHost()
            host = getattr(address, "host", None)
            if host is not None:
                factory.addListeningAddress(host, address.port)

        service = cls(
            reactor, options["metrics"], monitor, MetricsObserver(stats), publisher, guard, options
        )
        return service

    @classmethod
    def forWorkers(
        cls,
        reactor: Any,
        options: Mapping[str, Any],
        supervisor: Any,
        publisher: LogPublisher | None = None,
    ) -> MetricsService:
        """
        The endpoint of the parent of worker processes (see the module
        docstring): C{supervisor} has C{workers} (worker id to its process
        protocol), C{built} (the settings in force) and C{stopping}.
        """
        from ..status import configurationSummary

        def workerPids() -> dict[int, int]:
            return {
                worker: process.transport.pid
                for worker, process in supervisor.workers.items()
                if getattr(process.transport, "pid", None) is not None
            }

        stats = TransactionStats()
        workerGauges = WorkerGauges(workerPids)
        registry = buildRegistry(stats, workerGauges.read, workerPids)
        monitor = Monitor(
            stats=stats,
            gauges=workerGauges.read,
            health=Health(lambda: bool(supervisor.stopping)),
            summary=lambda: configurationSummary(service.options, supervisor.built.config),
            registry=registry,
            clock=reactor,
            wallClock=reactor.seconds,
            pseudonym=supervisor.built.config.pseudonym,
            workers=options["workers"],
        )
        service = cls(
            reactor,
            options["metrics"],
            monitor,
            MetricsObserver(stats, workerGauges),
            publisher,
            options=options,
        )
        return service

    def reconfigure(self, options: Mapping[str, Any]) -> None:
        """
        Show C{options} on the status page from now on (a reload).  The
        endpoint itself stays where it is (moving it takes a restart), and
        the page says where it is.
        """
        self.options = {**options, "metrics": self.description}

    def bind(self) -> None:
        """
        Open the endpoint's socket, if it is not open yet.

        @raise ListenError: if it cannot be opened (one line).
        """
        self.listener.bind(self.backlog)

    def _listening(self, port: Any) -> None:
        self.port = port
        address = port.getHost()
        host = getattr(address, "host", None)
        if host is not None:
            shown = "[{}]".format(host) if ":" in host else host
            where = "http://{}:{}/".format(shown, address.port)
        else:
            where = str(address)
        _log.info(
            "Metrics at {where}metrics, status page at {where}, health check at {where}healthz",
            where=where,
        )
        if self._extraOnListening is not None:
            self._extraOnListening(port)
        self._waitingForPort.callback(port)

    def privilegedStartService(self) -> None:
        self.bind()
        super().privilegedStartService()

    def startService(self) -> None:
        self.bind()
        super().startService()
        self.publisher.addObserver(self.observer)
        addTrigger = getattr(self.reactor, "addSystemEventTrigger", None)
        if addTrigger is not None:
            # /healthz says 503 from the moment shutdown begins, while the
            # parent service lets in-flight work finish.
            self._trigger = addTrigger("before", "shutdown", self.monitor.health.drain)
        self._listening(self.listener.adopt(self.reactor, self.site))

    def stopService(self) -> Deferred[None]:
        if self._trigger is not None:
            self.reactor.removeSystemEventTrigger(self._trigger)
            self._trigger = None
        health = self.monitor.health
        health.drain()
        d = health.whenDrained()

        def stop(result: object) -> Deferred[Any] | None:
            self.publisher.removeObserver(self.observer)
            Service.stopService(self)
            self.listener.close()
            port, self.port = self.port, None
            if port is None:
                return None
            return maybeDeferred(port.stopListening)

        return d.addCallback(stop)
