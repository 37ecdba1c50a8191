# -*- test-case-name: tests.test_tap -*-
"""
The services that run the proxy in one process: L{ProxyService} (the
listening services, the upstream pool, the log files) and what it is built
from (L{buildProxy}); signal handling shared with the worker processes.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.task import TaskFinished, cooperate
from twisted.logger import Logger
from twisted.python import usage

from .. import __version__

if TYPE_CHECKING:
    from ..proxy.config import ProxyConfig
    from ..proxy.factory import ProxyFactory
    from ..proxy.upstream import UpstreamPool

__all__ = [
    "ProxyService",
    "LogFilesService",
    "buildProxy",
    "logObservers",
    "onSignal",
    "raiseFileLimit",
    "reloadPolicy",
]

_log = Logger()


class _ListeningService(StreamServerEndpointService):
    """
    A listening service that tells the factory where it listens, for loop
    detection.
    """

    # As strports.service does: a port that cannot be opened fails the start
    # (twistd exits) instead of being logged while the process runs on deaf.
    _raiseSynchronously = True

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            raise SystemExit(
                "twisted-proxy: cannot listen on {}:{}: {}.  Is another proxy running there? "
                "Choose another port with --listen.".format(
                    e.interface or "*", e.port, e.socketError
                )
            ) from None
        self._waitingForPort.addCallback(self._listening)

    def _listening(self, port):
        address = port.getHost()
        host = getattr(address, "host", None)
        if host is not None:
            self.factory.addListeningAddress(host, address.port)
        _log.info(
            "twisted-proxy {version} listening on {address}",
            version=__version__,
            address=address,
        )
        return port


def raiseFileLimit(factory: ProxyFactory) -> None:
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
        config = config.replace(maxConnections=fitting)
        factory.reconfigure(config)
    _log.info(
        "Limits: {maxConnections} connections ({perClient} per client), file descriptors "
        "{limit}",
        maxConnections=config.maxConnections,
        perClient=config.maxConnectionsPerClient or "no limit",
        limit="unlimited" if soft == resource.RLIM_INFINITY else soft,
    )


class LogFilesService(MultiService):
    """
    A service that writes the history and access-log files (its
    C{observers}), reopening them on SIGUSR1 so that logrotate can move
    them, and closing them once its children have stopped.
    """

    def __init__(self, observers=(), reactor=None) -> None:
        super().__init__()
        self.observers = list(observers)
        self._reactor = reactor
        self._previousHandler = None

    def startService(self) -> None:
        from twisted.logger import globalLogPublisher

        for observer in self.observers:
            globalLogPublisher.addObserver(observer)
        if self.observers and self._reactor is not None and hasattr(signal, "SIGUSR1"):
            reactor = self._reactor
            # twistd rotates its own log file (-l) on SIGUSR1: onSignal keeps
            # its handler running.
            self._previousHandler = onSignal(signal.SIGUSR1, reactor, self.reopenLogs)
        super().startService()

    def reopenLogs(self) -> None:
        """
        Reopen the history and access-log files by name (SIGUSR1).
        """
        for observer in self.observers:
            try:
                observer.reopen()
            except OSError as e:
                _log.error("Could not reopen a log file ({error}); still writing to the old one.",
                           error=e)
        _log.info("Log files reopened.")

    def stopService(self):
        from twisted.logger import globalLogPublisher

        d = defer.maybeDeferred(super().stopService)
        if self._previousHandler is not None:
            signal.signal(signal.SIGUSR1, self._previousHandler)
            self._previousHandler = None

        def closeObservers(result):
            for observer in self.observers:
                globalLogPublisher.removeObserver(observer)
                observer.close()
            return result

        return d.addBoth(closeObservers)


def reloadPolicy(policy) -> None:
    """
    Re-read the htpasswd file (SIGHUP); if it is now unusable, say so and
    keep the users loaded before.
    """
    from ..proxy.policy import ConfigurationError

    try:
        policy.reload()
    except (ConfigurationError, OSError) as e:
        _log.error("Could not reload the password file ({error}); the previous users stay "
                   "in force.", error=e)
    else:
        _log.info("Password file reloaded.")


def onSignal(signum: int, reactor, action) -> object:
    """
    Run C{action} in the reactor thread on signal C{signum}, after whatever
    handler was installed before (which keeps running too, and whatever it
    schedules in the reactor thread runs before C{action}).

    @return: the previous handler, to restore.
    """
    previous = signal.getsignal(signum)

    def handler(number, frame):
        # The previous handler first: twistd's own SIGUSR1 handler schedules
        # the rotation of its log file, and what action logs belongs in the
        # new file.
        try:
            if callable(previous):
                previous(number, frame)
        finally:
            reactor.callFromThread(action)

    return signal.signal(signum, handler)


class ProxyService(LogFilesService):
    """
    The proxy in one process: its listening services, the upstream pool to
    close at shutdown, and the log files.  With an htpasswd file, SIGHUP
    reloads it.
    """

    _previousHUP = None

    def __init__(self, factory, pool, observers=(), reactor=None) -> None:
        super().__init__(observers, reactor)
        self.factory = factory
        self.pool = pool

    def startService(self) -> None:
        raiseFileLimit(self.factory)
        cache = self.factory.cache
        if cache is not None and hasattr(cache.store, "rebuildSteps"):
            # The disk cache's index is rebuilt in bounded steps, between
            # requests; entries become usable as they are found.
            self._rebuild = cooperate(cache.store.rebuildSteps())
        policy = self.factory.config.policy
        if policy.authenticating and self._reactor is not None and hasattr(signal, "SIGHUP"):
            self._previousHUP = onSignal(
                signal.SIGHUP, self._reactor, lambda: reloadPolicy(policy)
            )
        super().startService()

    def stopService(self):
        self.factory.stopping = True
        if self._previousHUP is not None:
            signal.signal(signal.SIGHUP, self._previousHUP)
            self._previousHUP = None
        d = super().stopService()
        self.pool.closeIdle()
        cache = self.factory.cache
        if cache is not None:
            rebuild = getattr(self, "_rebuild", None)
            if rebuild is not None:
                try:
                    rebuild.stop()
                except TaskFinished:
                    pass  # the index was rebuilt already
            cache.store.close()
        return d


def buildProxy(
    config: ProxyConfig,
    reactor: Any,
    *,
    transactionDetail: bool = False,
    connectionIdPrefix: str = "",
) -> tuple[ProxyFactory, UpstreamPool]:
    """
    The proxy's factory and upstream pool, as C{config} says.

    @return: C{(factory, pool)}.
    """
    from ..proxy.factory import ProxyFactory
    from ..proxy.dns import CachingResolver, hostnameEndpointFactory
    from ..proxy.upstream import UpstreamPool

    ttl = config.dnsCacheTtl
    resolver = CachingResolver(
        reactor.nameResolver, reactor, ttl=ttl, negativeTtl=min(5.0, ttl)
    ) if hasattr(reactor, "nameResolver") else None
    pool = UpstreamPool(
        reactor,
        hostnameEndpointFactory(reactor, config.connectTimeout, resolver),
        minIdlePerHost=config.poolMinIdlePerHost,
        idleTimeout=config.poolIdleTimeout,
    )
    pool.maxResponseHeaderBytes = config.maxResponseHeaderBytes
    factory = ProxyFactory(
        config,
        reactor,
        pool,
        transactionDetail=transactionDetail,
        connectionIdPrefix=connectionIdPrefix,
        cache=config.newCache(reactor.seconds),
    )
    return factory, pool


def logObservers(config, clock=None) -> list:
    from ..records.logfiles import accessLogObserver, historyObserver

    observers = []
    try:
        if config["history"]:
            observers.append(
                historyObserver(config["history"], config["history-rotate-size"], config["history-keep"],
                                clock)
            )
        if config["access-log"]:
            observers.append(accessLogObserver(config["access-log"], config["access-log-format"], clock))
    except OSError as e:
        raise usage.UsageError("cannot open log file: {}".format(e)) from None
    return observers
