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

The package, by job: L{stats <twisted_proxy.app.metrics.stats>} (what is
added up per transaction), L{gauges <twisted_proxy.app.metrics.gauges>}
(what is read when asked, and the workers' reports), L{exposition
<twisted_proxy.app.metrics.exposition>} (the registry and collectors),
L{service <twisted_proxy.app.metrics.service>} (the endpoint, the monitor,
the health check); the page itself is L{twisted_proxy.app.status}, and the
C{--metrics} endpoint string is read by L{twisted_proxy.app.listening}.
"""

from __future__ import annotations

from ..listening import metricsAddress, metricsEndpoint
from .exposition import ProxyCollector, WorkerProcessCollector, buildRegistry
from .gauges import (
    CACHE_COUNTERS,
    CACHE_GAUGES,
    GAUGES,
    GaugeReporter,
    ProxyGauges,
    WorkerGauges,
    cacheReadings,
)
from .service import Health, MetricsService, Monitor
from .stats import (
    LATENCY_BUCKETS,
    Histogram,
    MetricsObserver,
    Recent,
    TransactionStats,
    histogramQuantile,
)

__all__ = [
    "CACHE_COUNTERS",
    "CACHE_GAUGES",
    "GAUGES",
    "LATENCY_BUCKETS",
    "GaugeReporter",
    "Health",
    "Histogram",
    "MetricsObserver",
    "MetricsService",
    "Monitor",
    "ProxyCollector",
    "ProxyGauges",
    "Recent",
    "TransactionStats",
    "WorkerGauges",
    "WorkerProcessCollector",
    "buildRegistry",
    "cacheReadings",
    "histogramQuantile",
    "metricsAddress",
    "metricsEndpoint",
]
