# -*- test-case-name: tests.test_metrics -*-
"""
What the metrics add up, per transaction, in plain Python structures (no
locks, no label lookups): L{Histogram}, L{TransactionStats}, and
L{MetricsObserver}, the log observer that feeds them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from prometheus_client.utils import floatToGoString
from twisted.logger import ILogObserver, LogEvent
from zope.interface import implementer

from ...records.record import TransactionRecord

if TYPE_CHECKING:
    from .gauges import WorkerGauges

__all__ = [
    "Histogram",
    "LATENCY_BUCKETS",
    "MetricsObserver",
    "Recent",
    "TransactionStats",
    "histogramQuantile",
]


LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
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
    @ivar upstreamConnect: the record's C{upstreamConnect}: from the
        connect() call to a ready new upstream connection (name resolution,
        TCP connect, a parent proxy's CONNECT), seconds.
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
            # As the record's upstreamConnect: from the connect() call for a
            # new connection, from the request head for a pooled one.
            connect = round(ready - mono.get("connectStart", start), 6)
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
        offsets = record.get("offsets")
        if not isinstance(offsets, dict):
            offsets = {}
        start, head = offsets.get("requestHead"), offsets.get("responseHead")
        firstByte = None
        if (
            isinstance(start, (int, float))
            and isinstance(head, (int, float))
            and offsets.get("requestSent") is not None
        ):
            firstByte = round((head - start) / 1000.0, 6)
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
        statusClass = _STATUS_CLASSES.get(status // 100, "other") if type(status) is int else "none"
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
            (
                when,
                client,
                user,
                method,
                target,
                status,
                error,
                clientOut,
                firstByte,
                total,
                kind,
                aborted,
                cacheStatus,
            )
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
