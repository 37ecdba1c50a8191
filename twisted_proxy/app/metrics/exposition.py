# -*- test-case-name: tests.test_metrics -*-
"""
The exposition: the Prometheus registry (our own, never the library's
global one) and the collectors that build the proxy's metrics from the
statistics and the gauges at scrape time.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator, Mapping

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

from ... import __version__
from .gauges import CACHE_COUNTERS, CACHE_GAUGES, GAUGES
from .stats import Histogram, TransactionStats

__all__ = [
    "ProxyCollector",
    "WorkerProcessCollector",
    "buildRegistry",
]


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
            "From the connect() call to a ready new upstream connection (name resolution, "
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
            "Transactions cut short (the client went away, or the upstream failed mid-response).",
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


def _returning(pid: int) -> Callable[[], int]:
    """
    A function that returns C{pid} (what L{ProcessCollector} asks for).
    """
    return lambda: pid


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
                    pid=_returning(pid),
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
