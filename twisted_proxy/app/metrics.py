# -*- test-case-name: tests.test_metrics -*-
"""
Metrics, a status page and a health check: C{--metrics STRPORT}.

One HTTP endpoint (off by default; e.g. C{tcp:9100:interface=127.0.0.1})
serves:

  - C{/metrics}: the Prometheus text format (or OpenMetrics, if the scraper
    asks for it), from C{prometheus_client}, with a registry of our own
    (never the library's global one);
  - C{/}: a status page for people (L{twisted_proxy.app.status});
  - C{/healthz}: C{200 ok} while the proxy accepts connections, C{503
    draining} once it stops accepting (L{Health}).

Where the numbers come from
===========================

Counters and histograms are another observer of the transaction events
(DESIGN.md: every transaction is one log event; the console, the history,
the access log and the metrics all observe it).  L{MetricsObserver} reads:

  - the L{TransactionRecord} in the event's C{record} field, when the event
    was emitted in this process: a few attribute reads, not the record's
    dict (which costs more than the rest of a request: the metrics never
    turn C{transactionDetail} on);
  - the record's dict in the C{transaction} field, when the event came
    from a worker process as JSON (workers always attach it);
  - the C{rule} field of the proxy's "Request refused" events, for refusals
    by the policy rule that matched;
  - the C{metricsGauges} field of the workers' periodic gauge reports.

Gauges (open client connections, tunnels, requests in progress, idle pooled
upstream connections, the cache's counters) are read from the running
factory and pool when they are asked for (L{ProxyGauges}), not counted per
request.

With C{--workers}
=================

Transactions already travel from each worker to the parent as JSON log
events (L{twisted_proxy.app.workers}), so the parent's observer sees every
worker's transactions: counters and histograms are exact and need nothing
more.  Gauges live in the workers' memory, so each worker with
C{--metrics} runs a L{GaugeReporter} that sends its gauges to the parent
every second as one more log event on the same channel; the parent keeps
each worker's latest report (L{WorkerGauges}) and a scrape sums the reports
of the workers alive now (a report from a worker process that has since
exited, matched by pid, is dropped).  So a gauge is at most a second old.
Process metrics (CPU, memory, file descriptors) of the workers are read by
the parent from C{/proc/PID} at scrape time (L{WorkerProcessCollector}),
labelled by worker.

This was chosen over C{prometheus_client}'s multiprocess mode, which would
have each worker write its own metrics to memory-mapped files in a
directory named by an environment variable set before the library is
imported, and the parent merge the files at scrape time: it needs a
directory to create and clean (stale files of dead workers count until
removed), makes every metric update a write to a shared mapping, cannot
serve custom collectors, and would count the transactions in the workers
when the parent already receives every one of them.

What it costs
=============

Nothing when C{--metrics} is off: no observer, no reporter, and the one
thing added to the hot path for everyone is a reference to the record in
the transaction event.  When on, per transaction: a few dict updates and
three C{bisect} calls into plain lists, done by this module rather than by
C{prometheus_client}'s metric objects (which take a lock and a label lookup
per update); the exposition is built from them at scrape time by a custom
collector.  C{bench/metrics_cost.py} measures it.
"""

from __future__ import annotations

import os
import platform
import re
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import twisted
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import ILogObserver, LogEvent, Logger, LogPublisher, globalLogPublisher
from zope.interface import implementer

from .. import __version__
from ..records.record import TransactionRecord

__all__ = [
    "LATENCY_BUCKETS",
    "CACHE_COUNTERS",
    "CACHE_GAUGES",
    "GAUGES",
    "GaugeReporter",
    "Health",
    "Histogram",
    "MetricsObserver",
    "MetricsService",
    "Monitor",
    "ProxyCollector",
    "ProxyGauges",
    "TransactionStats",
    "WorkerGauges",
    "WorkerProcessCollector",
    "buildRegistry",
    "histogramQuantile",
    "metricsEndpoint",
    "metricsAddress",
]

_log = Logger()

LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
"""
Histogram bucket bounds, in seconds: 1 ms (a response from a pooled
connection on the same host) to 60 s (the default response and body
timeouts); slower lands in C{+Inf}.
"""

# Request methods that get their own label value; any other token a client
# sends is counted as "other", so a client cannot create label values.
_METHODS = frozenset(
    ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
)
_KINDS = frozenset(["http", "tunnel", "upgrade", "refused"])
_STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
# Label values from the proxy's own vocabulary (rules come from the
# configuration, error types from RFC 9209) are bounded; cut them anyway.
_MAX_LABEL = 120

GAUGES: tuple[tuple[str, str, str], ...] = (
    ("clientConnections", "twisted_proxy_client_connections",
     "Client connections open now."),
    ("tunnels", "twisted_proxy_tunnels",
     "Client connections that are tunnels now (CONNECT, or a 101 upgrade)."),
    ("activeRequests", "twisted_proxy_active_requests",
     "Requests being handled now (not yet answered completely)."),
    ("idleUpstreamConnections", "twisted_proxy_upstream_idle_connections",
     "Idle upstream connections kept in the pool for reuse."),
)
"""
The proxy's gauges: C{(key, metric name, help)}; the key is how
L{ProxyGauges.read} and the workers' reports name them.
"""

CACHE_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("hits", "twisted_proxy_cache_hits",
     "Requests answered from the cache without contacting the origin (fresh responses and 304s)."),
    ("staleHits", "twisted_proxy_cache_stale_hits",
     "Stale stored responses served (max-stale, stale-while-revalidate, stale-if-error)."),
    ("misses", "twisted_proxy_cache_misses",
     "Requests forwarded because nothing usable was stored."),
    ("revalidations", "twisted_proxy_cache_revalidations",
     "Conditional requests sent to validate a stored response."),
    ("notModified", "twisted_proxy_cache_not_modified",
     "Revalidations answered 304 (the stored response was reused)."),
    ("bypasses", "twisted_proxy_cache_bypasses", "Requests the cache did not handle."),
    ("stored", "twisted_proxy_cache_stores", "Responses stored."),
    ("bytesStored", "twisted_proxy_cache_stored_bytes", "Body bytes stored."),
    ("storeFailures", "twisted_proxy_cache_store_failures",
     "Responses that were to be stored but were not (too large, no room, aborted, I/O error)."),
    ("invalidations", "twisted_proxy_cache_invalidations",
     "Stored responses removed by unsafe requests (RFC 9111 4.4)."),
    ("collapsed", "twisted_proxy_cache_collapsed",
     "Requests that waited for another request's response (collapsed forwarding)."),
    ("evictions", "twisted_proxy_cache_evictions",
     "Stored responses evicted to keep the cache within its size."),
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


# Storage: plain Python structures, updated per transaction.


class Histogram:
    """
    A cumulative histogram as Prometheus defines it, without locks or
    labels: per-bucket counts (each value lands in the first bucket whose
    upper bound is not below it) and the sum.

    @ivar bounds: the upper bounds, increasing (C{+Inf} is implied).
    @ivar counts: per bucket (not cumulative), one more than C{bounds}.
    @ivar sum: the sum of the values observed.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, float]]:
        """
        The cumulative buckets, as C{HistogramMetricFamily} takes them:
        C{[("0.001", n), ..., ("+Inf", total)]}.
        """
        result: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds + (float("inf"),), self.counts, strict=True):
            running += count
            result.append((floatToGoString(bound), running))
        return result

    def quantile(self, q: float) -> float | None:
        """
        The estimated C{q}-quantile; see L{histogramQuantile}.
        """
        return histogramQuantile(q, self.bounds, self.counts)


def histogramQuantile(q: float, bounds: tuple[float, ...], counts: list[int]) -> float | None:
    """
    Estimate the C{q}-quantile (0..1) of a histogram as Prometheus'
    C{histogram_quantile} does: find the bucket holding the rank, and
    interpolate linearly inside it (the first bucket starts at 0).  A rank
    in the C{+Inf} bucket gives the highest finite bound.

    @param counts: per-bucket counts (not cumulative), C{len(bounds) + 1}.
    @return: the estimate, or L{None} for an empty histogram.
    """
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    running = 0
    for index, count in enumerate(counts):
        if running + count >= rank and count:
            if index == len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index else 0.0
            return lower + (bounds[index] - lower) * (rank - running) / count
        running += count
    return bounds[-1]


class _RateWindow:
    """
    Transactions per one-second slot over the last C{seconds} seconds: the
    status page's "per second, last minute".
    """

    __slots__ = ("_counts", "_second")

    def __init__(self, seconds: int = 60) -> None:
        self._counts = [0] * seconds
        self._second: int | None = None

    def _advance(self, second: int) -> None:
        last = self._second
        counts = self._counts
        if last is None or second - last >= len(counts):
            counts[:] = [0] * len(counts)
        elif second > last:
            for s in range(last + 1, second + 1):
                counts[s % len(counts)] = 0
        else:
            return
        self._second = second

    def add(self, now: float) -> None:
        second = int(now)
        if second != self._second:
            self._advance(second)
        self._counts[second % len(self._counts)] += 1

    def rate(self, now: float) -> float:
        """
        Transactions per second over the last C{seconds} seconds.
        """
        self._advance(int(now))
        return sum(self._counts) / len(self._counts)


class TransactionStats:
    """
    What the finished transactions add up to: the counters and histograms
    behind C{/metrics}, and the last transactions for the status page.

    @ivar requests: C{(method, status class)} -> count.  The method is one
        of the common ones, C{"other"}, or C{"none"} (no request line was
        read); the status class C{"2xx"} ... or C{"none"} (no response).
    @ivar durations: transaction kind (C{"http"}, C{"tunnel"},
        C{"upgrade"}, C{"refused"}) -> L{Histogram} of total durations, in
        seconds (request head to end).
    @ivar firstByte: request head to response head, in seconds, for
        transactions that reached an upstream (relayed responses,
        tunnels): what the client waited for its first byte.
    @ivar upstreamConnect: request head to a ready new upstream connection
        (name resolution, TCP connect, a parent proxy's CONNECT), seconds.
    @ivar newConnections: transactions that opened an upstream connection.
    @ivar reusedConnections: transactions that reused a pooled one.
    @ivar clientIn: octets received from clients.
    @ivar clientOut: octets sent to clients.
    @ivar upstreamIn: octets received from upstreams.
    @ivar upstreamOut: octets sent to upstreams.
    @ivar errors: RFC 9209 error type (C{Proxy-Status}) -> count.
    @ivar refusals: policy rule -> count of requests it refused.
    @ivar aborted: transactions cut short.
    @ivar total: transactions.
    @ivar _recent: the last transactions, newest last, as tuples (see
        L{recent}).
    """

    def __init__(self, recent: int = 50) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        self.durations: dict[str, Histogram] = {}
        self.firstByte = Histogram()
        self.upstreamConnect = Histogram()
        self.newConnections = 0
        self.reusedConnections = 0
        self.clientIn = 0
        self.clientOut = 0
        self.upstreamIn = 0
        self.upstreamOut = 0
        self.errors: dict[str, int] = {}
        self.refusals: dict[str, int] = {}
        self.aborted = 0
        self.total = 0
        self._recent: deque[tuple[Any, ...]] = deque(maxlen=recent)
        self._rate = _RateWindow()

    def addRecord(self, record: TransactionRecord, when: float) -> None:
        """
        Count a record emitted in this process (finished: its C{end} is
        marked).

        @param when: when it ended (POSIX time).
        """
        # The phases' monotonic instants, read as emitTransaction reads
        # them: record.durations() would cost as much as all the rest.
        # Rounded to the microsecond as the record's dict is, so that a
        # transaction lands in the same bucket whichever way it is counted.
        mono = record._mono
        start = mono.get("requestHead")
        total = round(mono["end"] - (mono["accepted"] if start is None else start), 6)
        connect = firstByte = None
        ready = mono.get("upstreamReady")
        if ready is not None and start is not None:
            connect = round(ready - start, 6)
            head = mono.get("responseHead")
            if head is not None and "requestSent" in mono:
                firstByte = round(head - start, 6)
        self._add(
            when,
            record.kind,
            record.method,
            record.status,
            record.proxyError,
            record.aborted,
            record.connectionReused,
            total,
            connect,
            firstByte,
            record.bytesFromClient,
            record.bytesToClient,
            record.bytesFromUpstream,
            record.bytesToUpstream,
            record.clientHost,
            record.user,
            record.target,
            record.cacheStatus,
        )

    def addDict(self, record: Mapping[str, Any], when: float) -> None:
        """
        Count a record's dict (as a worker sends it; see
        L{TransactionRecord.asDict}): the same numbers as L{addRecord}, from
        its durations in milliseconds.
        """
        durations = record.get("durations")
        if not isinstance(durations, dict):
            durations = {}
        total = durations.get("total")
        connect = durations.get("upstreamConnect")
        send, wait = durations.get("send"), durations.get("wait")
        firstByte = None
        if connect is not None and send is not None and wait is not None:
            firstByte = round((connect + send + wait) / 1000.0, 6)
        self._add(
            when,
            record.get("kind"),
            record.get("method"),
            record.get("status"),
            record.get("proxyError"),
            bool(record.get("aborted")),
            record.get("connectionReused"),
            None if total is None else total / 1000.0,
            None if connect is None else connect / 1000.0,
            firstByte,
            _int(record.get("bytesFromClient")),
            _int(record.get("bytesToClient")),
            _int(record.get("bytesFromUpstream")),
            _int(record.get("bytesToUpstream")),
            record.get("clientHost"),
            record.get("user"),
            record.get("target"),
            record.get("cacheStatus"),
        )

    def _add(
        self,
        when: float,
        kind: Any,
        method: Any,
        status: Any,
        error: Any,
        aborted: bool,
        reused: Any,
        total: float | None,
        connect: float | None,
        firstByte: float | None,
        clientIn: int,
        clientOut: int,
        upstreamIn: int,
        upstreamOut: int,
        client: Any,
        user: Any,
        target: Any,
        cacheStatus: Any,
    ) -> None:
        """
        Count one transaction; durations in seconds (L{None}: that phase
        did not happen).  The histograms' C{observe} is inlined: this runs
        once per request.
        """
        self.total += 1
        label = method if method in _METHODS else ("none" if method is None else "other")
        statusClass = (
            _STATUS_CLASSES.get(status // 100, "other") if type(status) is int else "none"
        )
        key = (label, statusClass)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        if kind not in _KINDS:
            kind = "other"
        if total is not None:
            histogram = self.durations.get(kind)
            if histogram is None:
                histogram = self.durations[kind] = Histogram()
            histogram.counts[bisect_left(histogram.bounds, total)] += 1
            histogram.sum += total
        if connect is not None:
            if reused:
                self.reusedConnections += 1
            else:
                self.newConnections += 1
                histogram = self.upstreamConnect
                histogram.counts[bisect_left(histogram.bounds, connect)] += 1
                histogram.sum += connect
            if firstByte is not None:
                histogram = self.firstByte
                histogram.counts[bisect_left(histogram.bounds, firstByte)] += 1
                histogram.sum += firstByte
        if error:
            error = str(error)[:_MAX_LABEL]
            self.errors[error] = self.errors.get(error, 0) + 1
        if aborted:
            self.aborted += 1
        self.clientIn += clientIn
        self.clientOut += clientOut
        self.upstreamIn += upstreamIn
        self.upstreamOut += upstreamOut
        # A plain tuple (a Recent when read): building a named tuple costs
        # a microsecond.
        self._recent.append(
            (when, client, user, method, target, status, error, clientOut, firstByte,
             total, kind, aborted, cacheStatus)
        )
        self._rate.add(when)

    @property
    def recent(self) -> list[Recent]:
        """
        The last transactions, oldest first.
        """
        return [Recent._make(t) for t in self._recent]

    def addRefusal(self, rule: str) -> None:
        """
        Count a request the policy refused by C{rule}.
        """
        rule = rule[:_MAX_LABEL]
        self.refusals[rule] = self.refusals.get(rule, 0) + 1

    def statusClasses(self) -> dict[str, int]:
        """
        Transactions by status class (C{"2xx"}, ..., C{"none"}).
        """
        classes: dict[str, int] = {}
        for (_, statusClass), count in self.requests.items():
            classes[statusClass] = classes.get(statusClass, 0) + count
        return classes

    def rate(self, now: float) -> float:
        """
        Transactions per second over the minute before C{now}.
        """
        return self._rate.rate(now)


class Recent(NamedTuple):
    """
    One finished transaction, as the status page lists it.  Durations in
    seconds, L{None} when that phase did not happen.
    """

    when: float
    client: Any
    user: Any
    method: Any
    target: Any
    status: Any
    error: Any
    bytesOut: int
    firstByte: float | None
    total: float | None
    kind: str
    aborted: bool
    cacheStatus: Any


def _int(value: Any) -> int:
    return value if type(value) is int else 0


# Observing the events.


@implementer(ILogObserver)
class MetricsObserver:
    """
    Feeds the transaction events (and the refusal events, and the workers'
    gauge reports) to a L{TransactionStats}; see the module docstring.
    Every other event costs a few dict lookups.

    @ivar stats: what it adds up.
    @ivar workerGauges: where the workers' gauge reports go (L{None} in a
        single process).
    """

    def __init__(self, stats: TransactionStats, workerGauges: WorkerGauges | None = None) -> None:
        self.stats = stats
        self.workerGauges = workerGauges

    def __call__(self, event: LogEvent) -> None:
        record = event.get("record")
        if record.__class__ is TransactionRecord:
            self.stats.addRecord(record, event.get("log_time") or 0.0)
            return
        transaction = event.get("transaction")
        if transaction is not None:
            if isinstance(transaction, dict):
                self.stats.addDict(transaction, event.get("log_time") or 0.0)
            return
        if "rule" in event:
            rule = event["rule"]
            if rule is not None and "error" in event:
                self.stats.addRefusal(str(rule))
            return
        if "metricsGauges" in event and self.workerGauges is not None:
            self.workerGauges.update(event)


# Gauges.


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
                str(k): v for k, v in gauges.items()
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


# Exposition.


class ProxyCollector(Collector):
    """
    The proxy's own metrics, built at scrape time from a
    L{TransactionStats} and the gauges.  The metric names and what they
    count are listed in the README ("Metrics and status").
    """

    def __init__(
        self,
        stats: TransactionStats,
        gauges: Callable[[], Mapping[str, float]],
        workers: bool = False,
    ) -> None:
        self.stats = stats
        self.gauges = gauges
        self.workers = workers

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        yield InfoMetricFamily(
            "twisted_proxy_build",
            "The running twisted-proxy.",
            value={
                "version": __version__,
                "twisted": twisted.__version__,
                "python": platform.python_version(),
            },
        )
        requests = CounterMetricFamily(
            "twisted_proxy_requests",
            "Transactions finished (requests answered, refused, failed or cut short; "
            "tunnels when closed), by request method and response status class.",
            labels=["method", "status_class"],
        )
        for (method, statusClass), count in sorted(stats.requests.items()):
            requests.add_metric([method, statusClass], count)
        yield requests
        durations = HistogramMetricFamily(
            "twisted_proxy_request_duration_seconds",
            "From the request head to the end of the response (of a tunnel: to its close), "
            "by transaction kind (http, tunnel, upgrade, refused).",
            labels=["kind"],
        )
        for kind, histogram in sorted(stats.durations.items()):
            durations.add_metric([kind], histogram.buckets(), histogram.sum)
        yield durations
        yield _histogramFamily(
            "twisted_proxy_time_to_first_byte_seconds",
            "From the request head to the response head, for transactions that reached an "
            "upstream (relayed responses, tunnels).",
            stats.firstByte,
        )
        yield _histogramFamily(
            "twisted_proxy_upstream_connect_seconds",
            "From the request head to a ready new upstream connection (name resolution, "
            "TCP connect, a parent proxy's CONNECT).",
            stats.upstreamConnect,
        )
        connections = CounterMetricFamily(
            "twisted_proxy_upstream_requests",
            "Transactions that reached an upstream, by whether the connection was new or "
            "reused from the pool.",
            labels=["connection"],
        )
        connections.add_metric(["new"], stats.newConnections)
        connections.add_metric(["reused"], stats.reusedConnections)
        yield connections
        traffic = CounterMetricFamily(
            "twisted_proxy_bytes",
            "Octets received and sent, on the client side and the upstream side (counted "
            "when a transaction ends).",
            labels=["side", "direction"],
        )
        traffic.add_metric(["client", "received"], stats.clientIn)
        traffic.add_metric(["client", "sent"], stats.clientOut)
        traffic.add_metric(["upstream", "received"], stats.upstreamIn)
        traffic.add_metric(["upstream", "sent"], stats.upstreamOut)
        yield traffic
        errors = CounterMetricFamily(
            "twisted_proxy_errors",
            "Transactions that ended in an error, by its Proxy-Status error type (RFC 9209).",
            labels=["error"],
        )
        for error, count in sorted(stats.errors.items()):
            errors.add_metric([error], count)
        yield errors
        refusals = CounterMetricFamily(
            "twisted_proxy_refusals",
            "Requests refused by the access policy, by the rule that refused them.",
            labels=["rule"],
        )
        for rule, count in sorted(stats.refusals.items()):
            refusals.add_metric([rule], count)
        yield refusals
        yield CounterMetricFamily(
            "twisted_proxy_aborted",
            "Transactions cut short (the client went away, or the upstream failed "
            "mid-response).",
            value=stats.aborted,
        )
        gauges = self.gauges()
        for key, name, documentation in GAUGES:
            yield GaugeMetricFamily(name, documentation, value=gauges.get(key, 0))
        if self.workers:
            yield GaugeMetricFamily(
                "twisted_proxy_workers",
                "Worker processes whose gauges are summed here.",
                value=gauges.get("workers", 0),
            )
        for key, name, documentation in CACHE_COUNTERS:
            value = gauges.get("cache." + key)
            if value is not None:
                yield CounterMetricFamily(name, documentation, value=value)
        for key, name, documentation in CACHE_GAUGES:
            value = gauges.get("cache." + key)
            if value is not None:
                yield GaugeMetricFamily(name, documentation, value=value)


def _histogramFamily(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], histogram.buckets(), histogram.sum)
    return family


class WorkerProcessCollector(Collector):
    """
    The worker processes' C{process_*} metrics, read from C{/proc/PID} by
    the parent at scrape time, as C{twisted_proxy_worker_process_*}
    labelled by C{worker}.
    """

    def __init__(self, workerPids: Callable[[], Mapping[int, int]], proc: str = "/proc") -> None:
        self._workerPids = workerPids
        self._proc = proc
        self._collectors: dict[int, ProcessCollector] = {}

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        collectors: dict[int, ProcessCollector] = {}
        for worker, pid in sorted(self._workerPids().items()):
            collector = self._collectors.get(pid)
            if collector is None:
                collector = ProcessCollector(
                    namespace="twisted_proxy_worker",
                    pid=lambda pid=pid: pid,  # type: ignore[misc]
                    proc=self._proc,
                    registry=None,
                )
            collectors[pid] = collector
            for metric in collector.collect():
                family = families.get(metric.name)
                if family is None:
                    family = families[metric.name] = Metric(
                        metric.name, metric.documentation + " (per worker)", metric.type
                    )
                for sample in metric.samples:
                    family.add_sample(sample.name, {"worker": str(worker)}, sample.value)
        self._collectors = collectors
        return iter(families.values())


def buildRegistry(
    stats: TransactionStats,
    gauges: Callable[[], Mapping[str, float]],
    workerPids: Callable[[], Mapping[int, int]] | None = None,
) -> CollectorRegistry:
    """
    A registry of our own (not C{prometheus_client}'s global one) with the
    proxy's metrics, this process's C{process_*}, C{python_gc_*} and
    C{python_info}, and with C{workerPids}, the workers' processes.
    """
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ProxyCollector(stats, gauges, workers=workerPids is not None))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    if workerPids is not None:
        registry.register(WorkerProcessCollector(workerPids))
    return registry


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
        from .listening import Listener
        from .status import statusSite

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
    def forProxy(cls, reactor: Any, options: Mapping[str, Any], factory: Any, pool: Any,
                 publisher: LogPublisher | None = None) -> MetricsService:
        """
        The endpoint of a proxy serving in this process.

        @param options: the settings (setting name to value), for the
            endpoint and the status page.
        """
        from .status import configurationSummary

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

        service = cls(reactor, options["metrics"], monitor, MetricsObserver(stats), publisher,
                      guard, options)
        return service

    @classmethod
    def forWorkers(cls, reactor: Any, options: Mapping[str, Any], supervisor: Any,
                   publisher: LogPublisher | None = None) -> MetricsService:
        """
        The endpoint of the parent of worker processes (see the module
        docstring): C{supervisor} has C{workers} (worker id to its process
        protocol), C{built} (the settings in force) and C{stopping}.
        """
        from .status import configurationSummary

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
        service = cls(reactor, options["metrics"], monitor,
                      MetricsObserver(stats, workerGauges), publisher, options=options)
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


# Options.

_SEPARATOR = re.compile(r"(?<!\\):")


def _strportFields(description: str) -> tuple[str, list[str], dict[str, str]]:
    """
    Split an endpoint description into its type, positional and keyword
    arguments (C{\\:} escapes a colon).
    """
    parts = [p.replace("\\:", ":") for p in _SEPARATOR.split(description)]
    kind, args, kwargs = parts[0].lower(), [], {}
    for part in parts[1:]:
        name, sep, value = part.partition("=")
        if sep:
            kwargs[name] = value
        else:
            args.append(part)
    return kind, args, kwargs


def metricsEndpoint(description: str) -> str:
    """
    The endpoint description for C{--metrics}: a bare port number listens
    on 127.0.0.1 only (the status page names clients and the URLs they
    fetch), anything else is a Twisted endpoint string.

    @raise ValueError: with a message saying what is wrong.
    """
    from twisted.internet.endpoints import serverFromString

    text = description.strip()
    if text.isdigit():
        text = "tcp:{}:interface=127.0.0.1".format(text)
    try:
        # Parsing needs no reactor; listening happens at start.
        serverFromString(None, text)
    except Exception as e:
        raise ValueError(str(e) or e.__class__.__name__) from None
    kind, args, kwargs = _strportFields(text)
    if kind in ("tcp", "tcp6", "ssl"):
        port = kwargs.get("port", args[0] if args else "")
        if not port.isdigit() or int(port) > 65535:
            raise ValueError("the port must be a number from 0 to 65535")
    return text


def metricsAddress(description: str) -> tuple[str, int] | None:
    """
    The TCP address C{description} (see L{metricsEndpoint}) listens on,
    C{(interface, port)} with C{""} for every interface, or L{None} if it
    is not a TCP endpoint with a fixed port.  Workers use it to refuse
    requests to the parent's metrics endpoint, as a loop.
    """
    kind, args, kwargs = _strportFields(description)
    if kind not in ("tcp", "tcp6", "ssl"):
        return None
    port = kwargs.get("port", args[0] if args else "")
    if not port.isdigit() or not 0 < int(port) <= 65535:
        return None
    interface = kwargs.get("interface", "")
    return interface, int(port)

