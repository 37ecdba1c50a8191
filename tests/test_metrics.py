"""
Tests for L{twisted_proxy.app.metrics}: what the metrics count after a
known sequence of transactions through the real factory (the protocol
harness), the workers' aggregation, the cache hook, the exposition format
(parsed by C{prometheus_client}'s own parsers), the health flag and the
C{--metrics} option.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generateOpenMetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parseOpenMetrics,
)
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogPublisher, globalLogPublisher
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from tests._loopback import proxyService
from twisted_proxy.app.metrics import (
    LATENCY_BUCKETS,
    GaugeReporter,
    Health,
    Histogram,
    MetricsObserver,
    MetricsService,
    ProxyGauges,
    TransactionStats,
    WorkerGauges,
    WorkerProcessCollector,
    buildRegistry,
    cacheReadings,
    histogramQuantile,
    metricsAddress,
    metricsEndpoint,
)
from twisted_proxy.app.tap import Options, makeService
from twisted_proxy.proxy.policy import Policy
from twisted_proxy.testing import Harness, logEvents


def samples(registry: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """
    Every sample of C{registry}'s text exposition, parsed back by
    C{prometheus_client}'s parser: C{(name, sorted labels)} -> value.
    """
    text = generate_latest(registry).decode("utf-8")
    result = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


def value(parsed: dict, name: str, **labels: str) -> float | None:
    return parsed.get((name, tuple(sorted(labels.items()))))


def sample(parsed: dict, name: str, **labels: str) -> float:
    """
    The value of a sample that must be there.
    """
    found = value(parsed, name, **labels)
    assert found is not None, (name, labels)
    return found


class ObservedHarness(Harness):
    """
    The protocol harness, with a L{MetricsObserver} on the global log
    publisher for the test's duration.
    """

    def __init__(self, test: SynchronousTestCase, **settings: Any) -> None:
        super().__init__(**settings)
        self.stats = TransactionStats()
        self.observer = MetricsObserver(self.stats)
        globalLogPublisher.addObserver(self.observer)
        test.addCleanup(globalLogPublisher.removeObserver, self.observer)
        self.gauges = ProxyGauges(self.factory, self.pool)
        self.registry = buildRegistry(self.stats, self.gauges.read)


class KnownSequenceTests(SynchronousTestCase):
    """
    Drive the real factory through a known sequence of transactions and
    check every metric it should move.
    """

    def setUp(self) -> None:
        self.events = logEvents(self)
        h = self.h = ObservedHarness(self, policy=Policy.fromOptions(denyHosts=["*.blocked.test"]))
        self.upstreamSent = 0
        self.upstreamReceived = 0
        self.clientReceived = 0

        # 1. A GET on a new upstream connection: 50 ms to connect, 200 ms
        # for the response head.
        proto, client = h.client()
        self.proto, self.client = proto, client
        first = b"GET http://a.test/one HTTP/1.1\r\nHost: a.test\r\n\r\n"
        proto.dataReceived(first)
        # The reactor's next pass: Twisted calls connect() (connectStart).
        h.clock.advance(0)
        h.clock.advance(0.05)
        up, upTransport = h.connect()
        h.clock.advance(0.2)
        response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        up.dataReceived(response)
        self.upstreamReceived += len(response)
        # 2. The same client again: the pooled connection, 3 ms to a 404.
        second = b"GET http://a.test/two HTTP/1.1\r\nHost: a.test\r\n\r\n"
        proto.dataReceived(second)
        h.clock.advance(0.003)
        response = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        up.dataReceived(response)
        self.upstreamReceived += len(response)
        self.upstreamSent += len(upTransport.value())
        # 3. Refused by a rule.
        third = b"GET http://x.blocked.test/ HTTP/1.1\r\nHost: x.blocked.test\r\n\r\n"
        proto.dataReceived(third)
        # 4. The name does not resolve.
        fourth = b"GET http://no.such.test/ HTTP/1.1\r\nHost: no.such.test\r\n\r\n"
        proto.dataReceived(fourth)
        h.fail(ierror.DNSLookupError("no.such.test"))
        self.clientReceived += len(client.value())
        # 5. A tunnel, open while the gauges are read.
        tproto, tclient = h.client()
        connect = b"CONNECT secure.test:443 HTTP/1.1\r\nHost: secure.test:443\r\n\r\n"
        tproto.dataReceived(connect + b"12345")
        h.clock.advance(0)
        h.clock.advance(0.01)
        tup, tupTransport = h.connect(peer=("93.184.216.34", 443))
        tup.dataReceived(b"0123456789")
        self.tunnel = (tproto, tclient, tup, tupTransport, connect)

    def closeTunnel(self) -> None:
        tproto, tclient, tup, tupTransport, connect = self.tunnel
        self.h.clock.advance(2)
        tproto.connectionLost(Failure(ierror.ConnectionDone()))
        tup.connectionLost(Failure(ierror.ConnectionDone()))
        self.upstreamSent += len(tupTransport.value())
        self.upstreamReceived += 10
        self.clientReceived += len(tclient.value())

    def test_gauges(self) -> None:
        """
        With the tunnel open: two client connections, one of them a tunnel,
        none handling a request, one idle pooled upstream connection.
        """
        parsed = samples(self.h.registry)
        self.assertEqual(value(parsed, "twisted_proxy_client_connections"), 2)
        self.assertEqual(value(parsed, "twisted_proxy_tunnels"), 1)
        self.assertEqual(value(parsed, "twisted_proxy_active_requests"), 0)
        self.assertEqual(value(parsed, "twisted_proxy_upstream_idle_connections"), 1)
        self.closeTunnel()
        parsed = samples(self.h.registry)
        self.assertEqual(value(parsed, "twisted_proxy_client_connections"), 1)
        self.assertEqual(value(parsed, "twisted_proxy_tunnels"), 0)

    def test_requests(self) -> None:
        """
        Transactions by method and status class; the tunnel counts once it
        has closed.
        """
        parsed = samples(self.h.registry)
        self.assertIsNone(
            value(parsed, "twisted_proxy_requests_total", method="CONNECT", status_class="2xx")
        )
        self.closeTunnel()
        parsed = samples(self.h.registry)
        counts = {
            labels: v
            for (name, labels), v in parsed.items()
            if name == "twisted_proxy_requests_total"
        }
        self.assertEqual(
            counts,
            {
                (("method", "GET"), ("status_class", "2xx")): 1,
                (("method", "GET"), ("status_class", "4xx")): 2,
                (("method", "GET"), ("status_class", "5xx")): 1,
                (("method", "CONNECT"), ("status_class", "2xx")): 1,
            },
        )

    def test_durations(self) -> None:
        """
        Total durations by kind, time to first byte and connect times land
        in the buckets they should.
        """
        self.closeTunnel()
        parsed = samples(self.h.registry)
        name = "twisted_proxy_request_duration_seconds"
        # http: 250 ms, 3 ms, and the DNS failure (0 ms on the fake clock).
        self.assertEqual(value(parsed, name + "_count", kind="http"), 3)
        self.assertAlmostEqual(value(parsed, name + "_sum", kind="http"), 0.253)
        self.assertEqual(value(parsed, name + "_bucket", kind="http", le="0.001"), 1)
        self.assertEqual(value(parsed, name + "_bucket", kind="http", le="0.005"), 2)
        self.assertEqual(value(parsed, name + "_bucket", kind="http", le="0.25"), 3)
        self.assertEqual(value(parsed, name + "_count", kind="refused"), 1)
        # The tunnel: 10 ms to connect, 2 s open.
        self.assertAlmostEqual(value(parsed, name + "_sum", kind="tunnel"), 2.01)
        self.assertEqual(value(parsed, name + "_bucket", kind="tunnel", le="2.5"), 1)
        self.assertEqual(value(parsed, name + "_bucket", kind="tunnel", le="1.0"), 0)
        ttfb = "twisted_proxy_time_to_first_byte_seconds"
        self.assertEqual(value(parsed, ttfb + "_count"), 3)
        self.assertAlmostEqual(value(parsed, ttfb + "_sum"), 0.25 + 0.003 + 0.01)
        self.assertEqual(value(parsed, ttfb + "_bucket", le="0.005"), 1)
        self.assertEqual(value(parsed, ttfb + "_bucket", le="0.01"), 2)
        self.assertEqual(value(parsed, ttfb + "_bucket", le="0.1"), 2)
        self.assertEqual(value(parsed, ttfb + "_bucket", le="0.25"), 3)
        connect = "twisted_proxy_upstream_connect_seconds"
        self.assertEqual(value(parsed, connect + "_count"), 2)
        self.assertAlmostEqual(value(parsed, connect + "_sum"), 0.06)
        self.assertEqual(value(parsed, connect + "_bucket", le="0.01"), 1)
        self.assertEqual(value(parsed, connect + "_bucket", le="0.05"), 2)
        upstream = "twisted_proxy_upstream_requests_total"
        self.assertEqual(value(parsed, upstream, connection="new"), 2)
        self.assertEqual(value(parsed, upstream, connection="reused"), 1)

    def test_bytes(self) -> None:
        """
        Octets per side and direction, as the transports saw them (octets
        from clients: as the records count them, which is the request heads
        as serialised again, see the report).
        """
        self.closeTunnel()
        parsed = samples(self.h.registry)
        name = "twisted_proxy_bytes_total"
        self.assertEqual(
            value(parsed, name, side="client", direction="received"),
            sum(e["record"].bytesFromClient for e in self.events if "record" in e),
        )
        self.assertEqual(value(parsed, name, side="client", direction="sent"), self.clientReceived)
        self.assertEqual(value(parsed, name, side="upstream", direction="sent"), self.upstreamSent)
        self.assertEqual(
            value(parsed, name, side="upstream", direction="received"), self.upstreamReceived
        )

    def test_errorsAndRefusals(self) -> None:
        """
        Errors by Proxy-Status type; refusals by the rule that matched.
        """
        parsed = samples(self.h.registry)
        self.assertEqual(value(parsed, "twisted_proxy_errors_total", error="dns_error"), 1)
        self.assertEqual(
            value(parsed, "twisted_proxy_errors_total", error="http_request_denied"), 1
        )
        self.assertEqual(
            value(parsed, "twisted_proxy_refusals_total", rule="deny-host *.blocked.test"), 1
        )
        self.assertEqual(value(parsed, "twisted_proxy_aborted_total"), 0)

    def test_recent(self) -> None:
        """
        The status page's list: newest last, with timings.
        """
        self.closeTunnel()
        recent = list(self.h.stats.recent)
        self.assertEqual(
            [(r.method, r.target, r.status) for r in recent],
            [
                ("GET", "http://a.test/one", 200),
                ("GET", "http://a.test/two", 404),
                ("GET", "http://x.blocked.test/", 403),
                ("GET", "http://no.such.test/", 502),
                ("CONNECT", "secure.test:443", 200),
            ],
        )
        self.assertAlmostEqual(recent[0].firstByte, 0.25)
        self.assertAlmostEqual(recent[0].total, 0.25)
        self.assertIsNone(recent[2].firstByte)
        self.assertEqual(recent[2].error, "http_request_denied")
        self.assertEqual(recent[4].kind, "tunnel")


class ObserverTests(SynchronousTestCase):
    """
    L{MetricsObserver} reads a record in this process and a record's dict
    from a worker the same way.
    """

    def recordEvents(self) -> list[dict]:
        """
        The events of a few transactions, with both the record and its
        dict (as with --history).
        """
        events = logEvents(self)
        h = Harness(transactionDetail=True)
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        h.clock.advance(0.02)
        up, _ = h.connect()
        h.clock.advance(0.1)
        up.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        proto.dataReceived(
            b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\n\r\n"
        )
        proto.dataReceived(b"da")
        h.clock.advance(1)
        proto.connectionLost(Failure(ierror.ConnectionLost()))
        proto, client = h.client()
        proto.dataReceived(b"BREW http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        h.fail(ierror.ConnectionRefusedError())
        return [dict(e) for e in events if "transaction" in e]

    def test_sameFromEitherSource(self) -> None:
        """
        The same events give the same numbers read as records (this
        process) or as dicts (from workers, where C{record} did not survive
        JSON).
        """
        events = self.recordEvents()
        self.assertEqual(len(events), 3)
        fromRecords, fromDicts = TransactionStats(), TransactionStats()
        for event in events:
            MetricsObserver(fromRecords)({k: v for k, v in event.items() if k != "transaction"})
            MetricsObserver(fromDicts)(dict(event, record={"unpersistable": True}))
        for stats in (fromRecords, fromDicts):
            self.assertEqual(stats.total, 3)
        registries = [
            samples(buildRegistry(stats, lambda: {})) for stats in (fromRecords, fromDicts)
        ]
        ours = [
            {k: v for k, v in parsed.items() if k[0].startswith("twisted_proxy_")}
            for parsed in registries
        ]
        # The same keys, the same values (the dicts' durations are rounded
        # to the microsecond).
        self.assertEqual(sorted(ours[0]), sorted(ours[1]))
        for key, v in ours[0].items():
            self.assertAlmostEqual(v, ours[1][key], places=6, msg=key)
        for a, b in zip(fromRecords.recent, fromDicts.recent, strict=True):
            self.assertEqual(
                a._replace(firstByte=None, total=None), b._replace(firstByte=None, total=None)
            )
            self.assertAlmostEqual(a.total, b.total, places=6)

    def test_methodsBounded(self) -> None:
        """
        A method the proxy does not know is counted as C{other} (a client
        cannot create label values); an aborted transaction is counted.
        """
        stats = TransactionStats()
        for event in self.recordEvents():
            MetricsObserver(stats)(event)
        self.assertEqual(
            stats.requests,
            {
                ("GET", "2xx"): 1,
                ("POST", "none"): 1,
                ("other", "5xx"): 1,
            },
        )
        self.assertEqual(stats.aborted, 1)
        self.assertEqual(stats.errors, {"connection_refused": 1})

    def test_otherEventsIgnored(self) -> None:
        stats = TransactionStats()
        observer = MetricsObserver(stats)
        observer({"log_format": "hello", "log_time": 1.0})
        observer({"rule": None, "error": "dns_error"})
        observer({"metricsGauges": {"tunnels": 3}, "worker": 1, "pid": 5})
        observer({"transaction": "not a dict"})
        self.assertEqual((stats.total, stats.refusals), (0, {}))

    def test_eventCarriesRecord(self) -> None:
        """
        The transaction event carries the record itself (what the observer
        reads instead of building the dict) even without detail.
        """
        events = logEvents(self)
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        h.fail(ierror.ConnectionRefusedError())
        [event] = [e for e in events if "record" in e]
        self.assertNotIn("transaction", event)
        self.assertEqual(event["record"].status, 502)


class HistogramTests(SynchronousTestCase):
    def test_bucketsCumulative(self) -> None:
        """
        A value lands in the first bucket whose bound is not below it
        (C{le}); buckets are cumulative, ending with C{+Inf}.
        """
        h = Histogram((0.1, 1.0))
        for v in (0.05, 0.1, 0.5, 1.0, 7.0):
            h.observe(v)
        self.assertEqual(h.buckets(), [("0.1", 2), ("1.0", 4), ("+Inf", 5)])
        self.assertEqual(h.count, 5)
        self.assertAlmostEqual(h.sum, 8.65)

    def test_bucketsFitAProxy(self) -> None:
        self.assertEqual((LATENCY_BUCKETS[0], LATENCY_BUCKETS[-1]), (0.001, 60.0))
        self.assertEqual(list(LATENCY_BUCKETS), sorted(LATENCY_BUCKETS))

    def test_quantile(self) -> None:
        """
        Linear interpolation inside the bucket, as Prometheus'
        histogram_quantile; the +Inf bucket gives the highest bound.
        """
        bounds = (1.0, 2.0, 4.0)
        self.assertIsNone(histogramQuantile(0.5, bounds, [0, 0, 0, 0]))
        self.assertEqual(histogramQuantile(0.5, bounds, [0, 4, 0, 0]), 1.5)
        self.assertEqual(histogramQuantile(0.5, bounds, [2, 0, 2, 0]), 1.0)
        self.assertEqual(histogramQuantile(0.75, bounds, [2, 0, 2, 0]), 3.0)
        self.assertEqual(histogramQuantile(0.99, bounds, [1, 0, 0, 9]), 4.0)


class RateTests(SynchronousTestCase):
    def test_lastMinute(self) -> None:
        stats = TransactionStats()
        for i in range(120):
            stats._rate.add(1000.0 + i * 0.5)
        self.assertEqual(stats.rate(1059.9), 2.0)
        self.assertAlmostEqual(stats.rate(1089.9), 1.0)
        self.assertEqual(stats.rate(2000.0), 0.0)


class WorkerGaugesTests(SynchronousTestCase):
    """
    The parent sums the live workers' latest gauge reports.
    """

    def report(self, gauges: WorkerGauges, worker: int, pid: int, **values: float) -> None:
        MetricsObserver(TransactionStats(), gauges)(
            {"metricsGauges": values, "worker": worker, "pid": pid}
        )

    def test_summed(self) -> None:
        live = {1: 101, 2: 102}
        gauges = WorkerGauges(lambda: live)
        self.report(gauges, 1, 101, clientConnections=3, tunnels=1)
        self.report(gauges, 2, 102, clientConnections=4, tunnels=0, **{"cache.hits": 5})
        self.report(gauges, 1, 101, clientConnections=5, tunnels=2)
        read = gauges.read()
        self.assertEqual(read["clientConnections"], 9)
        self.assertEqual(read["tunnels"], 2)
        self.assertEqual(read["cache.hits"], 5)
        self.assertEqual(read["workers"], 2)
        self.assertEqual(read["idleUpstreamConnections"], 0)

    def test_deadWorkerDropped(self) -> None:
        """
        A report from a process that has exited is not counted, even once a
        new process has taken its worker id.
        """
        live = {1: 101, 2: 102}
        gauges = WorkerGauges(lambda: live)
        self.report(gauges, 1, 101, clientConnections=3)
        self.report(gauges, 2, 102, clientConnections=4)
        live[1] = 201
        read = gauges.read()
        self.assertEqual((read["clientConnections"], read["workers"]), (4, 1))
        self.report(gauges, 1, 201, clientConnections=1)
        del live[2]
        read = gauges.read()
        self.assertEqual((read["clientConnections"], read["workers"]), (1, 1))

    def test_malformedIgnored(self) -> None:
        gauges = WorkerGauges(lambda: {1: 101})
        # A malformed report, as a broken worker could send.
        self.report(gauges, 1, 101, clientConnections="many")  # type: ignore[arg-type]
        MetricsObserver(TransactionStats(), gauges)({"metricsGauges": [], "worker": 1, "pid": 101})
        self.assertEqual(gauges.read()["clientConnections"], 0)

    def test_reporter(self) -> None:
        """
        A worker's reporter sends its gauges at once, then every second.
        """
        events = logEvents(self)
        clock = Clock()
        readings = iter(range(100))
        reporter = GaugeReporter(clock, lambda: {"tunnels": next(readings)}, pid=4242)
        reporter.startService()
        clock.advance(1)
        clock.advance(1)
        reporter.stopService()
        clock.advance(5)
        reports = [e for e in events if "metricsGauges" in e]
        self.assertEqual(
            [e["metricsGauges"] for e in reports], [{"tunnels": 0}, {"tunnels": 1}, {"tunnels": 2}]
        )
        self.assertEqual({e["pid"] for e in reports}, {4242})
        self.assertEqual({e["log_format"] for e in reports}, {""})
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_workerProcesses(self) -> None:
        """
        The workers' process metrics are read from /proc, labelled by
        worker.
        """
        if not os.path.isdir("/proc/self"):
            self.skipTest("no /proc here")
        collector = WorkerProcessCollector(lambda: {1: os.getpid(), 2: os.getpid()})
        families = {family.name: family for family in collector.collect()}
        cpu = families["twisted_proxy_worker_process_cpu_seconds"]
        self.assertEqual(sorted(s.labels["worker"] for s in cpu.samples), ["1", "2"])
        rss = families["twisted_proxy_worker_process_resident_memory_bytes"]
        self.assertTrue(all(s.value > 0 for s in rss.samples))


class FakeCacheStats:
    def __init__(self) -> None:
        self.hits = 7
        self.misses = 3
        self.revalidations = 2
        self.bytesStored = 4096
        self.lookups = 12


def cachedTwice() -> Harness:
    """
    A harness with the real cache, after one request stored a response and
    a second was a hit.
    """
    h = Harness(cache=True)
    for _ in range(2):
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/c HTTP/1.1\r\nHost: a.test\r\n\r\n")
        if h.attempts:
            up, upTransport = h.connect()
            up.dataReceived(
                b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 4\r\n\r\nbody"
            )
    return h


class CacheHookTests(SynchronousTestCase):
    """
    The cache's metrics appear when the factory has a cache.
    """

    def test_readings(self) -> None:
        readings = cacheReadings(cachedTwice().factory.cache)
        self.assertEqual(
            {
                k: readings[k]
                for k in (
                    "cache.hits",
                    "cache.misses",
                    "cache.stored",
                    "cache.bytesStored",
                    "cache.entries",
                    "cache.capacity",
                )
            },
            {
                "cache.hits": 1,
                "cache.misses": 1,
                "cache.stored": 1,
                "cache.bytesStored": 4,
                "cache.entries": 1,
                "cache.capacity": 64 << 20,
            },
        )
        self.assertGreater(readings["cache.storedBytes"], 4)

    def test_mappingStats(self) -> None:
        class Cache:
            stats = {"hits": 1, "misses": 2, "notModified": True}

            def entries(self) -> int:
                return 9

        self.assertEqual(
            cacheReadings(Cache()), {"cache.hits": 1, "cache.misses": 2, "cache.entries": 9}
        )

    def test_exposed(self) -> None:
        h = cachedTwice()
        parsed = samples(buildRegistry(TransactionStats(), ProxyGauges(h.factory, h.pool).read))
        self.assertEqual(value(parsed, "twisted_proxy_cache_hits_total"), 1)
        self.assertEqual(value(parsed, "twisted_proxy_cache_misses_total"), 1)
        self.assertEqual(value(parsed, "twisted_proxy_cache_stored_bytes_total"), 4)
        self.assertEqual(value(parsed, "twisted_proxy_cache_evictions_total"), 0)
        self.assertEqual(value(parsed, "twisted_proxy_cache_entries"), 1)
        self.assertGreater(sample(parsed, "twisted_proxy_cache_size_bytes"), 4)
        self.assertEqual(value(parsed, "twisted_proxy_cache_capacity_bytes"), 64 << 20)
        self.assertEqual(value(parsed, "twisted_proxy_cache_stale_hits_total"), 0)

    def test_absentWithoutCache(self) -> None:
        h = Harness()
        parsed = samples(buildRegistry(TransactionStats(), ProxyGauges(h.factory, h.pool).read))
        self.assertFalse([k for k in parsed if k[0].startswith("twisted_proxy_cache_")])


class ExpositionTests(SynchronousTestCase):
    """
    The exposition parses, in both formats, and has the families a
    dashboard expects.
    """

    def registry(self) -> Any:
        h = ObservedHarness(self)
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, _ = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return h.registry

    def test_textFormat(self) -> None:
        text = generate_latest(self.registry()).decode("utf-8")
        families = {f.name: f.type for f in text_string_to_metric_families(text)}
        expected = {
            "twisted_proxy_build": "info",
            "twisted_proxy_requests": "counter",
            "twisted_proxy_request_duration_seconds": "histogram",
            "twisted_proxy_time_to_first_byte_seconds": "histogram",
            "twisted_proxy_upstream_connect_seconds": "histogram",
            "twisted_proxy_upstream_requests": "counter",
            "twisted_proxy_bytes": "counter",
            "twisted_proxy_errors": "counter",
            "twisted_proxy_refusals": "counter",
            "twisted_proxy_aborted": "counter",
            "twisted_proxy_client_connections": "gauge",
            "twisted_proxy_tunnels": "gauge",
            "twisted_proxy_active_requests": "gauge",
            "twisted_proxy_upstream_idle_connections": "gauge",
        }
        # The text format has no "info" type: it is a gauge there.
        expected["twisted_proxy_build_info"] = expected.pop("twisted_proxy_build").replace(
            "info", "gauge"
        )
        for name, kind in expected.items():
            self.assertEqual(families.get(name), kind, name)
        if os.path.isdir("/proc/self"):
            self.assertEqual(families.get("process_cpu_seconds"), "counter")
            self.assertEqual(families.get("process_resident_memory_bytes"), "gauge")
        self.assertEqual(families.get("python_info"), "gauge")

    def test_openMetrics(self) -> None:
        """
        OpenMetrics (what Prometheus asks for first) parses with the strict
        parser, histograms included.
        """
        text = generateOpenMetrics(self.registry()).decode("utf-8")
        families = {f.name: f for f in parseOpenMetrics(text)}
        self.assertEqual(families["twisted_proxy_request_duration_seconds"].type, "histogram")
        self.assertEqual(families["twisted_proxy_build"].type, "info")
        [count] = [
            s
            for s in families["twisted_proxy_requests"].samples
            if s.name == "twisted_proxy_requests_total"
        ]
        self.assertEqual((count.labels, count.value), ({"method": "GET", "status_class": "2xx"}, 1))

    def test_ownRegistry(self) -> None:
        """
        Nothing is registered in prometheus_client's global registry.
        """
        from prometheus_client import REGISTRY

        before = generate_latest(REGISTRY)
        self.registry()
        self.assertNotIn(b"twisted_proxy", generate_latest(REGISTRY))
        self.assertNotIn(b"twisted_proxy", before)


class HealthTests(SynchronousTestCase):
    def test_flag(self) -> None:
        stopping = [False]
        health = Health(lambda: stopping[0])
        self.assertFalse(health.draining)
        stopping[0] = True
        self.assertTrue(health.draining)
        health = Health()
        health.drain()
        self.assertTrue(health.draining)
        self.successResultOf(health.whenDrained())

    def test_until(self) -> None:
        """
        C{drain(until)}: whenDrained waits for it; its result is passed on.
        """
        health = Health()
        until: Deferred[str] = Deferred()
        health.drain(until)
        waiting = health.whenDrained()
        self.assertNoResult(waiting)
        until.callback("done")
        self.successResultOf(waiting)
        self.assertEqual(self.successResultOf(until), "done")


class ServiceTests(SynchronousTestCase):
    """
    L{MetricsService} in memory: it observes while it runs, listens where
    it is told, drains on shutdown.
    """

    def service(self) -> tuple[MetricsService, MemoryReactorClock, Harness, LogPublisher]:
        reactor = MemoryReactorClock()
        h = Harness()
        config = Options()
        config.parseOptions(["--listen", "tcp:0", "--metrics", "tcp:0:interface=127.0.0.1"])
        publisher = LogPublisher()
        service = MetricsService.forProxy(reactor, config, h.factory, h.pool, publisher)
        # The socket is real (bound to a port the system chose); the memory
        # reactor serves it.
        self.addCleanup(service.listener.close)
        return service, reactor, h, publisher

    def test_listensAndGuards(self) -> None:
        """
        It listens on its endpoint (the socket it bound, served by the
        reactor); once listening, a proxied request to that address is
        refused as a loop.
        """
        service, reactor, h, publisher = self.service()
        service.privilegedStartService()
        assert service.listener.socket is not None
        bound = service.listener.socket.getsockname()
        self.assertEqual(bound[0], "127.0.0.1")
        service.startService()
        [(fileno, family, factory)] = reactor.adoptedPorts
        self.assertIs(factory, service.site)
        # The memory reactor's port says it is 0.0.0.0:1234.
        self.assertTrue(h.factory.isOwnAddress("127.0.0.1", 1234))
        self.successResultOf(service._waitingForPort)
        self.successResultOf(service.stopService())

    def test_observesWhileRunning(self) -> None:
        service, reactor, h, publisher = self.service()
        service.startService()
        publisher(
            {"transaction": {"method": "GET", "status": 200, "durations": {}}, "log_time": 1.0}
        )
        self.successResultOf(service.stopService())
        publisher(
            {"transaction": {"method": "GET", "status": 200, "durations": {}}, "log_time": 1.0}
        )
        self.assertEqual(service.monitor.stats.total, 1)

    def test_drainsOnShutdown(self) -> None:
        """
        Shutdown flips /healthz to draining at once ("before" trigger);
        stopping waits for what the shutdown code said to wait for.
        """
        service, reactor, h, publisher = self.service()
        service.startService()
        [(drain, args, kw)] = reactor.triggers["before"]["shutdown"]
        health = service.monitor.health
        self.assertFalse(health.draining)
        drain(*args, **kw)
        self.assertTrue(health.draining)
        transfers: Deferred[None] = Deferred()
        health.drain(until=transfers)
        stopped = service.stopService()
        self.assertNoResult(stopped)
        self.assertTrue(service.running)
        transfers.callback(None)
        self.successResultOf(stopped)
        self.assertFalse(service.running)

    def test_factoryStopping(self) -> None:
        service, reactor, h, publisher = self.service()
        self.assertFalse(service.monitor.health.draining)
        h.factory.stopping = True
        self.assertTrue(service.monitor.health.draining)


class OptionTests(SynchronousTestCase):
    def test_offByDefault(self) -> None:
        config = Options()
        config.parseOptions([])
        self.assertIsNone(config["metrics"])
        service = makeService(config, MemoryReactorClock())
        self.assertIsNone(service.metrics)
        self.assertEqual(list(service), [])

    def test_barePortIsLoopback(self) -> None:
        config = Options()
        config.parseOptions(["--metrics", "9100"])
        self.assertEqual(config["metrics"], "tcp:9100:interface=127.0.0.1")

    def test_endpointString(self) -> None:
        self.assertEqual(
            metricsEndpoint("tcp6:9100:interface=\\:\\:1"), "tcp6:9100:interface=\\:\\:1"
        )
        self.assertEqual(
            metricsEndpoint("unix:/run/proxy-metrics.sock"), "unix:/run/proxy-metrics.sock"
        )

    def test_invalid(self) -> None:
        """
        A bad endpoint is one line naming the option.
        """
        for bad in ("tcp:notaport", "nosuchendpoint:1", "tcp:70000", "", "tcp:port=x"):
            e = self.assertRaises(UsageError, Options().parseOptions, ["--metrics", bad])
            self.assertTrue(str(e).startswith("--metrics"), str(e))
            self.assertNotIn("\n", str(e))

    def test_address(self) -> None:
        self.assertEqual(metricsAddress("tcp:9100:interface=127.0.0.1"), ("127.0.0.1", 9100))
        self.assertEqual(metricsAddress("tcp6:port=9100:interface=\\:\\:1"), ("::1", 9100))
        self.assertEqual(metricsAddress("tcp:9100"), ("", 9100))
        self.assertIsNone(metricsAddress("tcp:0:interface=127.0.0.1"))
        self.assertIsNone(metricsAddress("unix:/run/m.sock"))

    def test_makeService(self) -> None:
        """
        The endpoint is one more child of the proxy service, after the
        listening ports; with workers, a child of the supervisor.
        """
        config = Options()
        config.parseOptions(
            ["--listen", "tcp:0:interface=127.0.0.1", "--metrics", "tcp:0:interface=127.0.0.1"]
        )
        service = proxyService(config, MemoryReactorClock())
        service.bind()
        assert service.metrics is not None
        self.addCleanup(service.metrics.listener.close)
        self.addCleanup(service.listeners[0].close)
        children = list(service)
        self.assertEqual(len(children), 2)
        self.assertIs(children[1], service.metrics)
        self.assertIsInstance(children[1], MetricsService)
        self.assertIs(children[0].factory, service.factory)
        config = Options()
        config.parseOptions(["--workers", "2", "--metrics", "9100"])
        supervisor = makeService(config, MemoryReactorClock())
        [child] = list(supervisor)
        self.assertIs(child, supervisor.metrics)
        self.assertIsInstance(child, MetricsService)
        self.assertIsNotNone(child.observer.workerGauges)
