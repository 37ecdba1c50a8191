# -*- test-case-name: tests.test_startup_cache -*-
"""
The proxy's working parts, shared by the one-process service and the
worker processes: L{ProxyRuntime} (the factory, the upstream pool, the name
cache and the HTTP cache, built from a L{ProxyConfig} and changed in place
when it changes), the file descriptor limit they need
(L{raiseFileLimit}), and L{StartupError}, what stops a start in one line.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from twisted.internet.task import Cooperator, TaskDone
from twisted.logger import Logger

if TYPE_CHECKING:
    from ..proxy.cache import HTTPCache
    from ..proxy.config import ProxyConfig
    from ..proxy.factory import ProxyFactory
    from ..proxy.upstream import UpstreamPool

__all__ = ["ProxyRuntime", "StartupError", "raiseFileLimit"]

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
            if hasattr(reactor, "nameResolver")
            else None
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
            new.cacheHeuristicMax,
            new.cacheCollapseTimeout,
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
