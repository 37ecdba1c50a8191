"""
What --metrics costs per request.

Three figures, each the median of several runs:

  1. the observer alone, per transaction event: a record emitted in this
     process (what a single-process proxy pays), a record's dict from a
     worker (what the parent of workers pays), and any other log event
     (the brief's lines: four per request);
  2. a whole proxied transaction in process, without sockets (as
     microbench.py: keep-alive GET, 1 KiB response), with and without the
     metrics observer on the log publisher, runs interleaved, timed in CPU
     time of this process;
  3. one scrape of /metrics (the exposition, built in the reactor thread)
     and one render of the status page, with 50 recent transactions.

    python bench/metrics_cost.py [-n 20000] [--repeats 7]

The machine is shared and has 2 cores: expect noise of several percent
between runs; compare medians, not single runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.logger import globalLogBeginner, globalLogPublisher

sys.path.insert(0, ".")
sys.path.insert(0, "bench")

import microbench
from twisted_proxy.app.metrics import (
    Health,
    MetricsObserver,
    Monitor,
    ProxyGauges,
    TransactionStats,
    buildRegistry,
)
from twisted_proxy.app.status import renderStatusPage
from twisted_proxy.records.record import TransactionRecord


def sampleRecord() -> TransactionRecord:
    now = [1000.0]

    def clock() -> float:
        now[0] += 0.001
        return now[0]

    record = TransactionRecord(
        monoClock=clock,
        connectionId="1",
        sequence=1,
        clientHost="127.0.0.1",
        clientPort=50000,
        acceptedWall=clock(),
        acceptedMono=clock(),
    )
    record.method, record.target, record.status = "GET", "http://127.0.0.1:8000/1k", 200
    record.requestHeaders = [(b"Host", b"127.0.0.1:8000"), (b"Accept", b"*/*")]
    record.bytesFromClient, record.bytesToClient = 90, 1300
    record.bytesFromUpstream, record.bytesToUpstream = 1280, 110
    record.connectionReused = True
    for phase in (
        "requestHead",
        "upstreamReady",
        "requestSent",
        "responseHead",
        "responseComplete",
    ):
        record.mark(phase)
    record.finish()
    return record


def _noConnections(host: str, port: int) -> IStreamClientEndpoint:
    """
    The endpoint factory of a pool that is only read (the gauges).
    """
    raise AssertionError("no connection is made here")


def perCall(function, n: int, repeats: int) -> float:
    """
    Median CPU seconds per call of C{function()} over C{repeats} runs of
    C{n} (CPU time of this process: less disturbed by the other processes
    on a shared machine than the wall clock).
    """
    runs = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(n):
            function()
        runs.append((time.process_time() - start) / n)
    return statistics.median(runs)


def transactions(n: int) -> float:
    """
    CPU seconds per proxied transaction: microbench.run's loop, timed with
    the process's CPU time.
    """
    from twisted_proxy.proxy.config import ProxyConfig
    from twisted_proxy.proxy.factory import ProxyFactory
    from twisted_proxy.proxy.upstream import UpstreamPool

    clock = Clock()
    box: list = []
    pool = UpstreamPool(clock, lambda host, port: microbench._Endpoint(box))
    factory = ProxyFactory(ProxyConfig(pseudonym="bench"), clock, pool)
    proto = factory.buildProtocol(None)
    proto.makeConnection(microbench._Transport(("127.0.0.1", 50000)))
    proto.dataReceived(microbench.REQUEST)
    box[0].dataReceived(microbench.RESPONSE)
    upstream = box[0]
    request, response = microbench.REQUEST, microbench.RESPONSE
    start = time.process_time()
    for _ in range(n):
        proto.dataReceived(request)
        upstream.dataReceived(response)
    elapsed = time.process_time() - start
    assert len(box) == 1, "the upstream connection was not reused"
    return elapsed / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20000, help="events or transactions per run")
    parser.add_argument("--repeats", type=int, default=7, help="runs per figure (median)")
    args = parser.parse_args()
    globalLogBeginner.beginLoggingTo([], redirectStandardIO=False, discardBuffer=True)

    # 1. The observer alone.
    record = sampleRecord()
    stats = TransactionStats()
    observer = MetricsObserver(stats)
    recordEvent = {"record": record, "log_time": 1000.0, "status": 200}
    dictEvent = {
        "record": {"unpersistable": True},
        "transaction": record.asDict(),
        "log_time": 1000.0,
    }
    otherEvent = {
        "log_format": "Response received: ...",
        "log_time": 1000.0,
        "log_system": "proxy",
        "peer": ("127.0.0.1", 50000),
    }
    print("observer, per event (median of {} x {}):".format(args.repeats, args.n))
    for name, event in (
        ("record (single process)", recordEvent),
        ("record dict (from a worker)", dictEvent),
        ("any other event", otherEvent),
    ):
        per = perCall(lambda event=event: observer(event), args.n, args.repeats)
        print("  {:<30} {:6.2f} us".format(name, per * 1e6))

    # 2. A whole proxied transaction, metrics on and off, interleaved; the
    # difference is the median of the pairs' differences.
    transactions(1000)
    off, on = [], []
    for _ in range(args.repeats):
        off.append(transactions(args.n))
        proxyStats = TransactionStats()
        metrics = MetricsObserver(proxyStats)
        globalLogPublisher.addObserver(metrics)
        try:
            on.append(transactions(args.n))
        finally:
            globalLogPublisher.removeObserver(metrics)
        assert proxyStats.total >= args.n, proxyStats.total
    offMedian, onMedian = statistics.median(off), statistics.median(on)
    difference = statistics.median(b - a for a, b in zip(off, on, strict=True))
    print(
        "proxied transaction in process, CPU time (median of {} x {}):".format(args.repeats, args.n)
    )
    print(
        "  metrics off  {:6.1f} us   (runs: {})".format(
            offMedian * 1e6, ", ".join("{:.1f}".format(x * 1e6) for x in off)
        )
    )
    print(
        "  metrics on   {:6.1f} us   (runs: {})".format(
            onMedian * 1e6, ", ".join("{:.1f}".format(x * 1e6) for x in on)
        )
    )
    print(
        "  difference   {:+6.1f} us ({:+.1f}%); of the fastest runs: {:+.1f} us".format(
            difference * 1e6, 100.0 * difference / offMedian, (min(on) - min(off)) * 1e6
        )
    )

    # 3. A scrape and a page.
    from twisted_proxy.proxy.config import ProxyConfig
    from twisted_proxy.proxy.factory import ProxyFactory
    from twisted_proxy.proxy.upstream import UpstreamPool

    clock = Clock()
    pool = UpstreamPool(clock, _noConnections)
    factory = ProxyFactory(ProxyConfig(pseudonym="bench"), clock, pool)
    gauges = ProxyGauges(factory, pool).read
    registry = buildRegistry(stats, gauges)
    monitor = Monitor(
        stats=stats,
        gauges=gauges,
        health=Health(),
        summary=lambda: [],
        registry=registry,
        clock=clock,
        wallClock=time.time,
        pseudonym="bench",
    )
    from prometheus_client.exposition import generate_latest

    scrape = perCall(lambda: generate_latest(registry), 200, args.repeats)
    page = perCall(lambda: renderStatusPage(monitor), 200, args.repeats)
    print("per request to the endpoint (median of {} x 200):".format(args.repeats))
    print(
        "  /metrics     {:6.2f} ms ({} bytes)".format(scrape * 1e3, len(generate_latest(registry)))
    )
    print("  /            {:6.2f} ms ({} bytes)".format(page * 1e3, len(renderStatusPage(monitor))))


if __name__ == "__main__":
    main()
