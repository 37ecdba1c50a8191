# -*- test-case-name: tests.test_startup -*-
"""
The proxy as a service in one process: L{ProxyService}.  Its parts are
shared with the worker processes (C{workers.py}):

  - L{ProxyRuntime <twisted_proxy.app.runtime.ProxyRuntime>}: the factory,
    the upstream pool, the name cache and the HTTP cache;
  - L{RecordFiles <twisted_proxy.app.recordfiles.RecordFiles>}: the
    history and the access log;
  - L{ListeningPort <twisted_proxy.app.ports.ListeningPort>}: a listening
    socket served by the reactor;
  - L{Draining <twisted_proxy.app.stopping.Draining>} and L{Signals
    <twisted_proxy.app.stopping.Signals>}: a graceful stop, and the
    signals;
  - L{reloadInto <twisted_proxy.app.reloading.reloadInto>}: SIGHUP;
  - the C{--metrics} endpoint (L{twisted_proxy.app.metrics}), a child
    service.

Start-up: C{makeService} calls L{ProxyService.bind} before twistd
daemonizes, so a port that cannot be opened is reported on the terminal.
"""

from __future__ import annotations

import functools
import signal
from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.logger import Logger

from .listening import Listener, ListenError
from .ports import ListeningPort, bindAll
from .recordfiles import RecordFiles
from .reloading import openForReload, reloadInto, restartNotes
from .runtime import ProxyRuntime, StartupError, raiseFileLimit
from .settings import Built
from .stopping import STOP_SIGNALS, Draining, Signals

if TYPE_CHECKING:
    from ..proxy.factory import ProxyFactory
    from ..proxy.upstream import UpstreamPool
    from .console import Console
    from .metrics import MetricsService
    from .settings import CommandLine

__all__ = ["ProxyService", "logStart"]

_log = Logger()


class ProxyService(MultiService):
    """
    The proxy in one process: a L{ListeningPort} child per socket, the
    factory and pool (L{ProxyRuntime}), the record files, the console, and
    the signals.

    @ivar built: the settings in force and what they built.
    @ivar initial: the settings the service started with (those a reload
        cannot change stay as they were).
    @ivar source: where the settings come from (re-read by L{reload}), or
        L{None} if they cannot be re-read.
    @ivar console: the console to buffer, rotate and set the level of:
        twistd's, if it is ours (found when the service starts, since
        twistd starts logging after making the service).
    @ivar metrics: the C{--metrics} endpoint (a child service), or
        L{None}.
    """

    console: Console | None = None
    metrics: MetricsService | None = None

    def __init__(
        self,
        built: Built,
        reactor: Any,
        source: CommandLine | None = None,
        twistdConsole: bool = False,
    ) -> None:
        super().__init__()
        self.built = built
        self.initial = built.settings
        self.reactor = reactor
        self.source = source
        self._twistdConsole = twistdConsole
        self.records = RecordFiles(built.settings, reactor)
        try:
            self.runtime = ProxyRuntime(built.config, reactor, transactionDetail=bool(self.records))
        except StartupError:
            self.records.close()
            raise
        self.signals = Signals(reactor)
        self._draining: Draining | None = None
        self._bound = False
        self.listeners = list(built.listeners)
        if built.settings["metrics"] is not None:
            from .metrics import MetricsService

            self.metrics = MetricsService.forProxy(
                reactor, built.settings.values, self.factory, self.pool
            )
            self.metrics.setServiceParent(self)

    @property
    def factory(self) -> ProxyFactory:
        return self.runtime.factory

    @property
    def pool(self) -> UpstreamPool:
        return self.runtime.pool

    def bind(self) -> None:
        """
        Open the listening sockets now (C{makeService} calls this before
        twistd daemonizes; otherwise the service does when it starts).

        @raise StartupError: if one cannot be opened.
        """
        if self._bound:
            return
        try:
            self.listeners = bindAll(self.listeners, self.built.config.maxConnections)
        except ListenError as e:
            self._closeAll()
            raise StartupError(str(e)) from None
        if self.metrics is not None:
            try:
                self.metrics.bind()
            except ListenError as e:
                for listener in self.listeners:
                    listener.close()
                self._closeAll()
                raise StartupError(str(e)) from None
        self._bound = True
        for listener in self.listeners:
            self._addPort(listener)

    def _addPort(self, listener: Listener) -> None:
        """
        Serve C{listener}: a L{ListeningPort} child, before the metrics
        endpoint (children start in order: the proxy's ports first).
        """
        port = ListeningPort(listener, self.reactor, self.runtime.factory)
        port.setServiceParent(self)
        if self.metrics is not None:
            self.services.remove(port)
            self.services.insert(self.services.index(self.metrics), port)

    def _closeAll(self) -> None:
        """
        Close what the service opened when it was made (a start that
        failed).
        """
        self.records.close()
        self.runtime.stop()

    def privilegedStartService(self) -> None:
        self.bind()
        super().privilegedStartService()

    def startService(self) -> None:
        self.bind()
        if self._twistdConsole:
            from .console import current

            self.console = current()
        raiseFileLimit(self.runtime)
        logStart(self.built)
        self.records.start()
        self.runtime.start()
        if self.console is not None:
            self.console.startBuffering(self.reactor)
        self._installSignals()
        super().startService()

    def _installSignals(self) -> None:
        signals = self.signals
        if hasattr(signal, "SIGHUP"):
            signals.install(signal.SIGHUP, self.reload)
            signals.install(signal.SIGUSR1, self.reopenLogs, chain=True)
        # The reactor installs its own SIGTERM and SIGINT handlers when it
        # starts running: replace them after that.
        self.reactor.callWhenRunning(self._installStopSignals)

    def _installStopSignals(self) -> None:
        if not self.running:
            return
        for signum in STOP_SIGNALS:
            self.signals.install(signum, functools.partial(self.stopSignal, signum))

    def stopSignal(self, signum: int) -> None:
        """
        SIGTERM or SIGINT: stop gracefully; again: cut what is left.
        """
        if self._draining is not None:
            self._draining.abortNow()
            return
        if self._exiting:
            # The reactor has not called stopService yet.
            self._cutAtOnce = True
            return
        if not self.running:
            return
        _log.info("{signal}: stopping.", signal=signal.Signals(signum).name)
        self._exiting = True
        self.reactor.stop()

    _exiting = False
    _cutAtOnce = False

    def reopenLogs(self) -> None:
        """
        SIGUSR1: rotate twistd's log file, reopen the records' files.
        """
        rotated = self.console.rotate() if self.console is not None else False
        self.records.reopen()
        _log.info(
            "Log files reopened{what}.",
            what="" if rotated or self.records else " (none are open)",
        )

    def reload(self) -> None:
        """
        SIGHUP: re-read the configuration file and the password file, and
        apply them to new connections and requests.
        """
        reloadInto(self)

    def applyBuilt(self, new: Built) -> list[str]:
        """
        Apply C{new}: what can fail (opening sockets and files) first, and
        if it does, nothing changes; then the rest.

        @return: what was done beyond changing settings, in words.
        @raise StartupError: if a new socket or file cannot be opened.
        """
        added, removed, records = openForReload(self.listeners, self.records, new)
        notes = restartNotes(self.initial, new.settings)
        notes += self.runtime.apply(new.config)
        raiseFileLimit(self.runtime)
        if self.metrics is not None:
            self.metrics.reconfigure(new.settings.values)
        for child in list(self):
            if isinstance(child, ListeningPort) and child.listener in removed:
                child.disownServiceParent()
                self.listeners.remove(child.listener)
                notes.append(f"stopped listening on {child.listener.describe()}")
        for listener in added:
            self.listeners.append(listener)
            self._addPort(listener)
        if records is not None:
            self.records.close()
            self.records = records
            records.start()
            self.runtime.factory.transactionDetail = bool(records)
        if self.console is not None:
            from .console import LEVELS

            self.console.setLevel(LEVELS[new.settings["log-level"]])
        self.built = new
        return notes

    def stopService(self) -> defer.Deferred[None]:
        """
        Stop accepting, let what is in progress finish (see L{Draining}),
        then stop the metrics endpoint (which says "draining" meanwhile),
        close the pool, the cache and the files.
        """
        # SIGTERM and SIGINT stay ours while what is in progress finishes:
        # again, they cut it.
        self.signals.restore(*[n for n in self.signals.installed() if n not in STOP_SIGNALS])
        metrics = self.metrics
        drained: defer.Deferred[None] = defer.Deferred()
        if metrics is not None:
            # /healthz answers 503 from now on; the endpoint stays up, live,
            # until the connections are done.
            metrics.monitor.health.drain(until=drained)
        # The listening ports stop first: no new connections.
        Service.stopService(self)
        d: defer.Deferred[Any] = defer.DeferredList(
            [
                defer.maybeDeferred(child.stopService)
                for child in reversed(list(self))
                if child is not metrics
            ]
        )
        timeout = self.built.settings["shutdown-timeout"]
        draining = self._draining = Draining(self.runtime.factory, self.reactor, timeout)

        def drain(result: object) -> defer.Deferred[None]:
            done = draining.start()
            if self._cutAtOnce:
                draining.abortNow()
            return done

        d.addBoth(drain)

        def stopMetrics(result: object) -> defer.Deferred[Any] | None:
            drained.callback(None)
            if metrics is None:
                return None
            return defer.maybeDeferred(metrics.stopService)

        d.addBoth(stopMetrics)

        def stopped(result: object) -> None:
            self.runtime.stop()
            self.records.close()
            _log.info("twisted-proxy stopped.")
            if self.console is not None:
                self.console.stopBuffering()
            if not self._exiting:
                # Stopped by a caller, not by a signal that ends the
                # process: the handlers from before come back.  (Put back
                # while the reactor stops, a second Ctrl-C would reach the
                # reactor's own handler, which raises ReactorNotRunning.)
                self.signals.restore()

        return d.addBoth(stopped)


def logStart(built: Built) -> None:
    config = built.config
    if config.parent is not None:
        _log.info("Parent proxy: {parent}", parent=config.parent.describe())
    _log.info("Access policy: {policy}", policy=config.policy.describe())
    if built.settings.configFile is not None:
        _log.info("Configuration file: {path}", path=built.settings.configFile)
