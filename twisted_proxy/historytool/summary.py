# -*- test-case-name: tests.test_historytool -*-
"""
C{--summary}: totals, status classes, bytes and latency percentiles, overall
and per destination host (L{summarize}), as a table (L{summaryText}) or
JSON.  Percentiles are nearest-rank (L{twisted_proxy.records.stats}).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..records.stats import percentile
from .listing import milliseconds, table
from .read import Record, formatStart

__all__ = ["summarize", "summaryText"]


_PERCENTILES = (50, 90, 99)
_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "none")


def _group(records: Sequence[Record]) -> dict[str, Any]:
    """
    Counts, bytes and latency percentiles of C{records}.
    """
    status = dict.fromkeys(_CLASSES, 0)
    for record in records:
        code = record.get("status")
        key = f"{code // 100}xx" if isinstance(code, int) else "none"
        status[key if key in status else "none"] += 1
    result: dict[str, Any] = {
        "count": len(records),
        "status": status,
        "aborted": sum(1 for record in records if record.get("aborted")),
        "proxyErrors": sum(1 for record in records if record.get("proxyError")),
    }
    for key in (
        "bytesFromClient",
        "bytesToUpstream",
        "bytesFromUpstream",
        "bytesToClient",
    ):
        result[key] = sum(int(record.get(key) or 0) for record in records)
    for name, durationKey in (("total", "total"), ("ttfb", "wait")):
        values = [
            record["durations"][durationKey]
            for record in records
            if isinstance(record["durations"].get(durationKey), (int, float))
        ]
        stats: dict[str, float | None] = {f"p{p}": percentile(values, p) for p in _PERCENTILES}
        stats["max"] = max(values) if values else None
        result[name] = stats
    return result


def summarize(records: Sequence[Record]) -> dict[str, Any]:
    """
    The summary of C{records} (in start order): overall figures, the period
    covered, and the same figures per destination host (C{"-"} for records
    without one), hosts ordered by count, then name.
    """
    byHost: dict[str, list[Record]] = {}
    for record in records:
        byHost.setdefault(str(record.get("destHost") or "-"), []).append(record)
    hosts = sorted(byHost, key=lambda host: (-len(byHost[host]), host))
    return {
        "first": formatStart(records[0]) if records else None,
        "last": formatStart(records[-1]) if records else None,
        "overall": _group(records),
        "hosts": {host: _group(byHost[host]) for host in hosts},
    }


_SUMMARY_HEADER = (
    "HOST",
    "COUNT",
    "1XX",
    "2XX",
    "3XX",
    "4XX",
    "5XX",
    "NONE",
    "BYTES_IN",
    "BYTES_OUT",
    "TOTAL_P50",
    "TOTAL_P90",
    "TOTAL_P99",
    "TOTAL_MAX",
    "TTFB_P50",
    "TTFB_P90",
    "TTFB_P99",
    "TTFB_MAX",
)


def _summaryRow(name: str, group: dict[str, Any]) -> list[str]:
    row = [name, str(group["count"])]
    row.extend(str(group["status"][key]) for key in _CLASSES)
    row.append(str(group["bytesFromClient"]))
    row.append(str(group["bytesToClient"]))
    for key in ("total", "ttfb"):
        row.extend(milliseconds(group[key][stat]) for stat in ("p50", "p90", "p99", "max"))
    return row


def summaryText(summary: dict[str, Any]) -> list[str]:
    overall = summary["overall"]
    lines = [
        "transactions  {}  (aborted {}, proxy errors {})".format(
            overall["count"], overall["aborted"], overall["proxyErrors"]
        ),
        "period        {} .. {}".format(summary["first"] or "-", summary["last"] or "-"),
        "bytes         from clients {}, to upstreams {}, from upstreams {}, to clients {}".format(
            overall["bytesFromClient"],
            overall["bytesToUpstream"],
            overall["bytesFromUpstream"],
            overall["bytesToClient"],
        ),
        "latency       milliseconds; TTFB is request sent -> response head; "
        "percentiles by nearest rank",
        "",
    ]
    rows = [_summaryRow("(all)", overall)]
    rows.extend(_summaryRow(host, group) for host, group in summary["hosts"].items())
    lines.extend(table(_SUMMARY_HEADER, rows, set(range(1, len(_SUMMARY_HEADER)))))
    return lines
