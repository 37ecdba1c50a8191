# -*- test-case-name: tests.test_metrics -*-
"""
The gauges: read from the running factory, pool and cache when a scrape
asks (L{ProxyGauges}); with workers, reported by each worker every second
(L{GaugeReporter}) and summed by the parent (L{WorkerGauges}).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import LogEvent, Logger

__all__ = [
    "CACHE_COUNTERS",
    "CACHE_GAUGES",
    "GAUGES",
    "GaugeReporter",
    "ProxyGauges",
    "WorkerGauges",
    "cacheReadings",
]

_log = Logger()


GAUGES: tuple[tuple[str, str, str], ...] = (
    ("clientConnections", "twisted_proxy_client_connections", "Client connections open now."),
    (
        "tunnels",
        "twisted_proxy_tunnels",
        "Client connections that are tunnels now (CONNECT, or a 101 upgrade).",
    ),
    (
        "activeRequests",
        "twisted_proxy_active_requests",
        "Requests being handled now (not yet answered completely).",
    ),
    (
        "idleUpstreamConnections",
        "twisted_proxy_upstream_idle_connections",
        "Idle upstream connections kept in the pool for reuse.",
    ),
)
"""
The proxy's gauges: C{(key, metric name, help)}; the key is how
L{ProxyGauges.read} and the workers' reports name them.
"""

CACHE_COUNTERS: tuple[tuple[str, str, str], ...] = (
    (
        "hits",
        "twisted_proxy_cache_hits",
        "Requests answered from the cache without contacting the origin "
        "(fresh responses and 304s).",
    ),
    (
        "staleHits",
        "twisted_proxy_cache_stale_hits",
        "Stale stored responses served (max-stale, stale-while-revalidate, stale-if-error).",
    ),
    (
        "misses",
        "twisted_proxy_cache_misses",
        "Requests forwarded because nothing usable was stored.",
    ),
    (
        "revalidations",
        "twisted_proxy_cache_revalidations",
        "Conditional requests sent to validate a stored response.",
    ),
    (
        "notModified",
        "twisted_proxy_cache_not_modified",
        "Revalidations answered 304 (the stored response was reused).",
    ),
    ("bypasses", "twisted_proxy_cache_bypasses", "Requests the cache did not handle."),
    ("stored", "twisted_proxy_cache_stores", "Responses stored."),
    ("bytesStored", "twisted_proxy_cache_stored_bytes", "Body bytes stored."),
    (
        "storeFailures",
        "twisted_proxy_cache_store_failures",
        "Responses that were to be stored but were not (too large, no room, aborted, I/O error).",
    ),
    (
        "invalidations",
        "twisted_proxy_cache_invalidations",
        "Stored responses removed by unsafe requests (RFC 9111 4.4).",
    ),
    (
        "collapsed",
        "twisted_proxy_cache_collapsed",
        "Requests that waited for another request's response (collapsed forwarding).",
    ),
    (
        "evictions",
        "twisted_proxy_cache_evictions",
        "Stored responses evicted to keep the cache within its size.",
    ),
)
"""
The cache's counters: C{(attribute, metric name without _total, help)}.
L{cacheReadings} reads each attribute from C{factory.cache.stats} (an
object or a mapping), or else from C{factory.cache} itself.
"""

CACHE_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("entries", "twisted_proxy_cache_entries", "Responses stored in the cache now."),
    ("storedBytes", "twisted_proxy_cache_size_bytes", "Bytes the cache holds now."),
    ("capacity", "twisted_proxy_cache_capacity_bytes", "The cache's size limit in bytes."),
)
"""
The cache's gauges: C{(attribute, metric name, help)}, read from
C{factory.cache} (C{capacity} from C{factory.cache.store} if the cache has
none).
"""


class ProxyGauges:
    """
    The gauges of the proxy running in this process, read from its factory
    and pool when asked for.
    """

    def __init__(self, factory: Any, pool: Any) -> None:
        self.factory = factory
        self.pool = pool

    def read(self) -> dict[str, float]:
        """
        @return: key (see L{GAUGES}, and C{"cache.<attribute>"} for the
            cache, see L{CACHE_COUNTERS} and L{CACHE_GAUGES}) -> value.
        """
        factory = self.factory
        states = factory.connectionStates()
        gauges: dict[str, float] = {
            "clientConnections": len(factory.connections),
            "tunnels": states.get("TUNNEL", 0),
            "activeRequests": states.get("EXCHANGE", 0),
            "idleUpstreamConnections": self.pool.idleCount(),
        }
        cache = getattr(factory, "cache", None)
        if cache is not None:
            gauges.update(cacheReadings(cache))
        return gauges


def _reading(source: Any, name: str) -> float | None:
    """
    The number C{source} has under C{name} (a key of a mapping, an
    attribute, or a method without arguments), or L{None}.
    """
    if isinstance(source, Mapping):
        value = source.get(name)
    else:
        value = getattr(source, name, None)
        if callable(value):
            try:
                value = value()
            except Exception:
                _log.failure("Reading the cache's {name}", name=name)
                return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def cacheReadings(cache: Any) -> dict[str, float]:
    """
    What a cache says about itself, for the metrics: the counters of
    L{CACHE_COUNTERS} from C{cache.stats} (or C{cache}), the gauges of
    L{CACHE_GAUGES} from C{cache} (C{capacity} from C{cache.store} if need
    be).  Whatever the cache does not have is left out.

    @return: C{"cache.<attribute>"} -> value.
    """
    stats = getattr(cache, "stats", None)
    readings: dict[str, float] = {}
    for name, _, _ in CACHE_COUNTERS:
        value = _reading(stats, name) if stats is not None else None
        if value is None:
            value = _reading(cache, name)
        if value is not None:
            readings["cache." + name] = value
    for name, _, _ in CACHE_GAUGES:
        value = _reading(cache, name)
        if value is None and name == "capacity":
            store = getattr(cache, "store", None)
            value = _reading(store, name) if store is not None else None
        if value is not None:
            readings["cache." + name] = value
    return readings


class WorkerGauges:
    """
    In the parent of worker processes: each worker's latest gauge report,
    summed over the workers alive now.

    @ivar _liveWorkers: returns worker id -> pid of the workers running now.
    @ivar _reports: worker id -> C{(pid, gauges)}, its latest report.
    """

    def __init__(self, liveWorkers: Callable[[], Mapping[int, int]]) -> None:
        self._liveWorkers = liveWorkers
        self._reports: dict[int, tuple[int, dict[str, float]]] = {}

    def update(self, event: LogEvent) -> None:
        """
        Keep the report in C{event} (a worker's C{metricsGauges} event, as
        the parent received it: C{worker} says which).
        """
        worker, pid, gauges = event.get("worker"), event.get("pid"), event.get("metricsGauges")
        if type(worker) is not int or type(pid) is not int or not isinstance(gauges, dict):
            return
        self._reports[worker] = (
            pid,
            {
                str(k): v
                for k, v in gauges.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            },
        )

    def read(self) -> dict[str, float]:
        """
        The sum of the live workers' latest reports, and C{"workers"}: how
        many reports were summed.
        """
        live = self._liveWorkers()
        total: dict[str, float] = {}
        reporting = 0
        for worker, (pid, gauges) in list(self._reports.items()):
            if live.get(worker) != pid:
                # That process has exited (maybe restarted with a new pid,
                # which has not reported yet).
                del self._reports[worker]
                continue
            reporting += 1
            for key, value in gauges.items():
                total[key] = total.get(key, 0) + value
        for key, _, _ in GAUGES:
            total.setdefault(key, 0)
        total["workers"] = reporting
        return total


class GaugeReporter(Service):
    """
    In a worker process: send this worker's gauges to the parent every
    C{interval} seconds, as a log event with the fields C{metricsGauges}
    and C{pid} (and an empty format, so no console prints it).
    """

    interval = 1.0
    _log = Logger(namespace="twisted_proxy.metrics.gauges")

    def __init__(
        self, clock: Any, gauges: Callable[[], dict[str, float]], pid: int | None = None
    ) -> None:
        self._clock = clock
        self._gauges = gauges
        self._pid = os.getpid() if pid is None else pid
        self._call: LoopingCall | None = None

    def report(self) -> None:
        try:
            gauges = self._gauges()
        except Exception:
            self._log.failure("Reading the gauges")
            return
        self._log.info("", metricsGauges=gauges, pid=self._pid)

    def startService(self) -> None:
        super().startService()
        call = self._call = LoopingCall(self.report)
        call.clock = self._clock
        call.start(self.interval, now=True)

    def stopService(self) -> None:
        super().stopService()
        if self._call is not None and self._call.running:
            self._call.stop()
        self._call = None
