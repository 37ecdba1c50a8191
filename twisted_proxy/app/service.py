# -*- test-case-name: tests.test_startup -*-
"""
The proxy as a service: L{ProxyService} runs it in one process; the parts
it is made of are shared with the worker processes (C{workers.py}).

  - L{ProxyRuntime}: the factory, the upstream pool and the name cache,
    built from the settings and changed in place when they change.
  - L{RecordFiles}: the history and access-log files, reopened on SIGUSR1,
    replaced when their settings change.
  - L{Draining}: a graceful stop: no new connections, idle ones closed at
    once, the others given C{--shutdown-timeout} seconds, then cut.
  - L{Signals}: the process's signal handlers.  SIGHUP reloads, SIGUSR1
    reopens the log files, SIGTERM and SIGINT stop gracefully (a second
    one cuts what is left).  The proxy installs its own SIGTERM and SIGINT
    handlers instead of the reactor's, so that a second signal does not
    raise C{ReactorNotRunning}, and so that a stop on a signal exits 0, as
    a stop that went as planned.

Start-up: C{makeService} calls L{ProxyService.bind} before twistd
daemonizes, so a port that cannot be opened is reported on the terminal.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.task import Cooperator, LoopingCall, TaskDone
from twisted.logger import Logger, globalLogPublisher

from .. import __version__
from .listening import Listener, ListenError, listenBacklog
from .settings import SETTINGS, BY_NAME, Built, SettingError, Settings

if TYPE_CHECKING:
    from ..proxy.cache import HTTPCache
    from ..proxy.config import ProxyConfig
    from ..proxy.factory import ProxyFactory
    from ..proxy.upstream import UpstreamPool
    from .console import Console
    from .metrics import MetricsService
    from .settings import CommandLine

__all__ = [
    "Draining",
    "ProxyRuntime",
    "ProxyService",
    "RecordFiles",
    "Signals",
    "StartupError",
    "describeChanges",
    "raiseFileLimit",
]

_log = Logger()


class StartupError(Exception):
    """
    The proxy cannot start; the message is one line.

    @ivar exitCode: 2 for a setting that cannot work (as a usage error), 1
        for a condition of the machine (a port in use).
    """

    def __init__(self, message: str, exitCode: int = 1) -> None:
        super().__init__(message)
        self.exitCode = exitCode


# -- the proxy's parts ----------------------------------------------------------


class _EndpointFactory:
    """
    The pool's endpoint factory, with a connect timeout that a reload can
    change.
    """

    def __init__(self, reactor: Any, connectTimeout: float, resolver: Any) -> None:
        from ..proxy.dns import hostnameEndpointFactory

        self._reactor = reactor
        self._resolver = resolver
        self._make = hostnameEndpointFactory
        self.reconfigure(connectTimeout)

    def reconfigure(self, connectTimeout: float) -> None:
        self.connectTimeout = connectTimeout
        self._factory = self._make(self._reactor, connectTimeout, self._resolver)

    def __call__(self, host: str, port: int) -> Any:
        return self._factory(host, port)


class ProxyRuntime:
    """
    The proxy's factory, upstream pool and cache, built from a
    L{ProxyConfig}, and changed in place by L{apply} (new connections and
    requests see the new configuration; none is dropped).

    The cache lives as long as the runtime: L{start} rebuilds a disk
    cache's index (in bounded steps, between requests), L{stop} closes its
    store.  A reload changes the cache's limits in place but never replaces
    it (an exchange in flight keeps using the cache it looked up in): see
    L{_reconfigureCache}.

    @ivar factory: the L{ProxyFactory}.
    @ivar pool: the L{UpstreamPool}.
    """

    def __init__(
        self,
        config: ProxyConfig,
        reactor: Any,
        *,
        transactionDetail: bool = False,
        connectionIdPrefix: str = "",
    ) -> None:
        from ..proxy.cache import CacheDirectoryError
        from ..proxy.dns import CachingResolver
        from ..proxy.factory import ProxyFactory
        from ..proxy.upstream import UpstreamPool

        self.reactor = reactor
        try:
            cache = config.newCache(reactor.seconds)
        except CacheDirectoryError as e:
            raise StartupError(str(e)) from None
        self._rebuild: Any = None
        ttl = config.dnsCacheTtl
        self.resolver = (
            CachingResolver(reactor.nameResolver, reactor, ttl=ttl, negativeTtl=min(5.0, ttl))
            if hasattr(reactor, "nameResolver") else None
        )
        self._endpoints = _EndpointFactory(reactor, config.connectTimeout, self.resolver)
        self.pool: UpstreamPool = UpstreamPool(
            reactor,
            self._endpoints,
            minIdlePerHost=config.poolMinIdlePerHost,
            idleTimeout=config.poolIdleTimeout,
        )
        self.pool.maxResponseHeaderBytes = config.maxResponseHeaderBytes
        self.factory: ProxyFactory = ProxyFactory(
            config,
            reactor,
            self.pool,
            transactionDetail=transactionDetail,
            connectionIdPrefix=connectionIdPrefix,
            cache=cache,
        )

    @property
    def cache(self) -> HTTPCache | None:
        return self.factory.cache

    def start(self) -> None:
        """
        Start rebuilding a disk cache's index: entries become usable as
        they are found.
        """
        cache = self.factory.cache
        rebuildSteps = getattr(cache.store, "rebuildSteps", None) if cache is not None else None
        if rebuildSteps is None or self._rebuild is not None:
            return
        reactor = self.reactor
        cooperator = Cooperator(scheduler=lambda work: reactor.callLater(0, work))
        self._rebuild = cooperator.cooperate(rebuildSteps())

    def stop(self) -> None:
        """
        Close the idle upstream connections and the cache's store (once no
        transaction uses them).
        """
        self.pool.closeIdle()
        if self._rebuild is not None:
            try:
                self._rebuild.stop()
            except TaskDone:
                pass  # the index was rebuilt already
            self._rebuild = None
        cache = self.factory.cache
        if cache is not None:
            cache.store.close()

    def apply(self, config: ProxyConfig) -> list[str]:
        """
        Use C{config} from now on.

        @return: what could not be changed, or was changed in a way worth
            saying, in words.
        """
        old = self.factory.config
        self.factory.reconfigure(config)
        pool = self.pool
        pool.minIdlePerHost = config.poolMinIdlePerHost
        pool.idleTimeout = config.poolIdleTimeout
        pool.maxResponseHeaderBytes = config.maxResponseHeaderBytes
        if self.resolver is not None:
            self.resolver.ttl = config.dnsCacheTtl
            self.resolver.negativeTtl = min(5.0, config.dnsCacheTtl)
        if self._endpoints.connectTimeout != config.connectTimeout:
            self._endpoints.reconfigure(config.connectTimeout)
        return self._reconfigureCache(old, config)

    def _reconfigureCache(self, old: ProxyConfig, new: ProxyConfig) -> list[str]:
        """
        Apply C{new}'s cache settings to the cache in use, in place: its
        byte budget and largest object (a smaller budget is reached by
        evicting the least recently used entries as new responses are
        stored), its heuristic freshness cap and collapse timeout.  What
        would need another cache takes a restart: turning it on or off, or
        moving it (C{cache-dir}, which names one process's directory).

        @return: notes for the reload's log line.
        """
        cache = self.factory.cache
        capacity = new.cacheDiskSize if new.cacheDir is not None else new.cacheSize
        if cache is None:
            return ["turning the cache on takes a restart"] if capacity > 0 else []
        directory = None if new.cacheDir is None else os.path.abspath(new.cacheDir)
        if directory != getattr(cache.store, "path", None):
            return []  # cache-dir takes a restart; the reload says so
        if capacity <= 0:
            return ["turning the cache off takes a restart; it stays on with its old size"]
        notes = []
        store = cache.store
        if (store.capacity, store.maxObjectSize) != (capacity, min(new.cacheMaxObject, capacity)):
            store.capacity = capacity
            store.maxObjectSize = min(new.cacheMaxObject, capacity)
            if store.size > capacity:
                notes.append(
                    "the cache holds more than its new size until new responses evict "
                    "the least recently used"
                )
        if (cache.config.heuristicMax, cache.config.collapseTimeout) != (
            new.cacheHeuristicMax, new.cacheCollapseTimeout
        ):
            cache.config = dataclasses.replace(
                cache.config,
                heuristicMax=new.cacheHeuristicMax,
                collapseTimeout=new.cacheCollapseTimeout,
            )
        if new.pseudonym != old.pseudonym:
            notes.append("the cache keeps its old name in Cache-Status until a restart")
        return notes


def raiseFileLimit(runtime: ProxyRuntime) -> None:
    """
    Make sure the process may open a file descriptor for every connection
    it is configured to serve (two per proxied connection, plus logs and
    listening sockets): raise the soft RLIMIT_NOFILE as far as the hard
    limit allows, and if that is not far enough, lower --max-connections to
    fit, saying so, rather than fail later with EMFILE.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover (not POSIX)
        return
    factory = runtime.factory
    config = factory.config
    needed = 2 * config.maxConnections + 128
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            _log.warn("Could not raise the file descriptor limit: {error}", error=e)
    if soft != resource.RLIM_INFINITY and soft < needed:
        fitting = max(1, (soft - 128) // 2)
        _log.warn(
            "The file descriptor limit ({limit}) is too low for --max-connections "
            "{wanted}; serving at most {fitting} connections.  Raise the hard limit "
            "(ulimit -Hn, LimitNOFILE=) to serve more.",
            limit=soft,
            wanted=config.maxConnections,
            fitting=fitting,
        )
        factory.reconfigure(config.replace(maxConnections=fitting))


class RecordFiles:
    """
    The history and access-log files: log observers on the global log
    publisher while started.
    """

    def __init__(self, settings: Settings, clock: Any = None) -> None:
        """
        Open the files C{settings} name.

        @param clock: the writers' timer (they write within 50 ms, in
            batches), or L{None} to write every record at once.
        @raise SettingError: naming the option, if a file cannot be opened.
        """
        self.settings = settings
        self.clock = clock
        self.observers = _openRecordFiles(settings, clock)
        self._started = False

    def __bool__(self) -> bool:
        return bool(self.observers)

    def start(self) -> None:
        for observer in self.observers:
            globalLogPublisher.addObserver(observer)
        self._started = True

    def reopen(self) -> None:
        """
        Reopen the files by name (SIGUSR1, after logrotate moved them).
        """
        for observer in self.observers:
            try:
                observer.reopen()
            except OSError as e:
                _log.error(
                    "Could not reopen {path} ({error}); still writing to the old file.",
                    path=observer.path,
                    error=e.strerror or e,
                )

    def replace(self, settings: Settings) -> RecordFiles | None:
        """
        The files C{settings} name, if they differ from these: opened (not
        started); else L{None}.

        @raise SettingError: if a file cannot be opened.
        """
        if _recordKey(settings) == _recordKey(self.settings):
            return None
        return RecordFiles(settings, self.clock)

    def close(self) -> None:
        for observer in self.observers:
            if self._started:
                globalLogPublisher.removeObserver(observer)
            observer.close()
        self.observers = []
        self._started = False


_RECORD_SETTINGS = (
    "history", "history-rotate-size", "history-keep", "access-log", "access-log-format"
)


def _recordKey(settings: Settings) -> tuple[Any, ...]:
    return tuple(settings[name] for name in _RECORD_SETTINGS)


def _openRecordFiles(settings: Settings, clock: Any) -> list[Any]:
    """
    The observers writing the files C{settings} name.

    @raise SettingError: naming the option, if a file cannot be opened (the
        others are closed again).
    """
    from ..records.logfiles import accessLogObserver, historyObserver

    opening = []
    if settings["history"]:
        opening.append(("history", lambda: historyObserver(
            settings["history"], settings["history-rotate-size"], settings["history-keep"],
            clock,
        )))
    if settings["access-log"]:
        opening.append(("access-log", lambda: accessLogObserver(
            settings["access-log"], settings["access-log-format"], clock
        )))
    observers: list[Any] = []
    for name, open_ in opening:
        try:
            observers.append(open_())
        except OSError as e:
            for observer in observers:
                observer.close()
            raise settings.error(name, f"cannot open it ({e.strerror or e})") from None
    return observers


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
            backlog="" if listener.effectiveBacklog is None
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
    bound = []
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


# -- stopping ------------------------------------------------------------------


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
            if tunnels else "",
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
            if chained is not None:
                chained(number, frame)
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


def describeChanges(old: Settings, new: Settings) -> list[str]:
    """
    The settings that differ, in words: C{connect-timeout 10 -> 5}.
    """
    changes = []
    for name in old.changed(new):
        setting = BY_NAME[name]
        if setting.kind.repeatable:
            before, after = old.itemsOf(name), new.itemsOf(name)
            if len(before) + len(after) <= 6:
                changes.append(f"{name} {setting.shown(before)} -> {setting.shown(after)}")
            else:
                changes.append(f"{name} ({len(before)} -> {len(after)} items)")
        else:
            changes.append(f"{name} {setting.shown(old[name])} -> {setting.shown(new[name])}")
    return changes


def restartNotes(initial: Settings, new: Settings) -> list[str]:
    """
    The settings of C{new} that a reload cannot apply (L{Setting.restart})
    and that differ from what the process started with, in words.
    """
    return [
        f"{s.name} takes a restart to change (still {s.shown(initial[s.name])})"
        for s in SETTINGS
        if s.restart and s.inFile and initial[s.name] != new[s.name]
    ]


# -- one process ----------------------------------------------------------------


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
            self.runtime = ProxyRuntime(
                built.config, reactor, transactionDetail=bool(self.records)
            )
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
            self.signals.install(signum, lambda signum=signum: self.stopSignal(signum))

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
        notes = []
        added, removed = listenerChanges(self.listeners, new.listeners)
        try:
            added = bindAll(added, new.config.maxConnections)
            records = self.records.replace(new.settings)
        except (ListenError, SettingError) as e:
            for listener in added:
                listener.close()
            raise StartupError(str(e)) from None
        notes += restartNotes(self.initial, new.settings)
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
            [defer.maybeDeferred(child.stopService) for child in reversed(list(self))
             if child is not metrics]
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


def reloadInto(service: Any) -> None:
    """
    Re-read the settings of C{service} (a L{ProxyService} or a worker
    supervisor) and apply them, saying what changed; an invalid new
    configuration is refused and the previous one kept.
    """
    old: Built = service.built
    settings = old.settings
    if service.source is None or (
        settings.configFile is None
        and settings["auth-file"] is None
        and not any(
            item.startswith("@")
            for s in SETTINGS if s.kind.repeatable
            for item in settings[s.name]
        )
    ):
        _log.info(
            "SIGHUP: nothing to reload (no --config file, no --auth-file, no included "
            "files); the proxy carries on as it is."
        )
        return
    try:
        new = service.source.read()
    except SettingError as e:
        _log.error(
            "Configuration not reloaded: {error}.  The previous configuration stays in force.",
            error=str(e).rstrip("."),
        )
        return
    try:
        changes = service.applyBuilt(new)
    except (SettingError, StartupError) as e:
        _log.error(
            "Configuration not reloaded: {error}.  The previous configuration stays in force.",
            error=str(e).rstrip("."),
        )
        return
    words = describeChanges(old.settings, new.settings) + changes
    if new.settings["auth-file"] is not None:
        words.append(f"password file {new.settings['auth-file']} re-read")
    _log.info(
        "Configuration reloaded{source}: {changes}.",
        source="" if new.settings.configFile is None else f" from {new.settings.configFile}",
        changes="; ".join(words) if words else "nothing changed",
    )


