# -*- test-case-name: tests.test_historytool -*-
"""
The default output: one aligned line per transaction (L{listing}), and the
text table both it and the summary use (L{table}).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .read import Record, clientText, formatStart

__all__ = ["listing", "table", "milliseconds"]


def milliseconds(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.1f}"


def _result(record: Record) -> str:
    if record.get("proxyError"):
        return str(record["proxyError"]) + ("+aborted" if record.get("aborted") else "")
    if record.get("aborted"):
        return "aborted"
    return "-"


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], rightAligned: set[int]
) -> list[str]:
    """
    Aligned text lines: columns two spaces apart, the columns numbered in
    C{rightAligned} right-aligned, the last column not padded.
    """
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = []
        for i, cell in enumerate(row):
            if i == len(row) - 1 and i not in rightAligned:
                cells.append(cell)
            elif i in rightAligned:
                cells.append(cell.rjust(widths[i]))
            else:
                cells.append(cell.ljust(widths[i]))
        lines.append("  ".join(cells).rstrip())
    return lines


_LIST_HEADER = (
    "START",
    "CLIENT",
    "METHOD",
    "STATUS",
    "TOTAL_MS",
    "TTFB_MS",
    "BYTES_IN",
    "BYTES_OUT",
    "CACHE",
    "RESULT",
    "TARGET",
)


def listing(records: Sequence[Record]) -> list[str]:
    rows = []
    for record in records:
        durations = record["durations"]
        status = record.get("status")
        rows.append(
            (
                formatStart(record),
                clientText(record),
                str(record.get("method") or "-"),
                "-" if status is None else str(status),
                milliseconds(durations.get("total")),
                milliseconds(durations.get("wait")),
                str(record.get("bytesFromClient", 0)),
                str(record.get("bytesToClient", 0)),
                str(record.get("cacheStatus") or "-"),
                _result(record),
                str(record.get("target") or "-"),
            )
        )
    if not rows:
        return []
    return table(_LIST_HEADER, rows, {3, 4, 5, 6, 7})
