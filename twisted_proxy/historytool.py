# -*- test-case-name: tests.test_historytool -*-
"""
C{proxyhistory}: read the proxy's transaction history (JSON Lines written by
L{twisted_proxy.records.logfiles.historyObserver}) and list, summarise or export it.

    proxyhistory [filters] FILE...                 one aligned line each
    proxyhistory [filters] --summary FILE...       totals and latency table
    proxyhistory [filters] --har OUT.har FILE...   HTTP Archive 1.2
    proxyhistory [filters] --json FILE...          the records, JSON Lines

FILEs may be rotated files and gzip-compressed files (recognised by their
content, whatever their name).  Records are shown in order of their start
(request head received, or connection accepted), whatever file they came
from.  A line that is not a record is reported on stderr with its file and
line number, and skipped.

Exit status: 0 on success, 2 for a usage error, 1 if a file could not be
read (or the HAR file written); what could be read is still shown.

Only the record format documented in L{twisted_proxy.records.record} is read.
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import ipaddress
import json
import os
import re
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import IO, Any, NoReturn
from urllib.parse import parse_qsl, urlsplit

from twisted_proxy import __version__
from twisted_proxy.http.fields import REDACTED
from twisted_proxy.records.record import (
    RECORD_VERSION,
    parseTimestamp,
    timestampMicroseconds,
)

__all__ = ["main", "run", "readRecords", "percentile", "harFromRecords"]

_PROG = "proxyhistory"

Record = dict[str, Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


class _UsageError(Exception):
    """
    A bad command line: reported in one line, exit status 2.
    """


class _Parser(argparse.ArgumentParser):
    """
    An argument parser that raises L{_UsageError} instead of printing and
    exiting, so L{main} stays in control of its streams and exit status.
    """

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _buildParser() -> _Parser:
    parser = _Parser(
        prog=_PROG,
        add_help=False,
        description=(
            "List, summarise or export the transaction history written by "
            "twisted-proxy (--history). FILEs may be rotated and .gz files."
        ),
        epilog=(
            "Times are UTC; an ISO time without an offset is taken as UTC. "
            "Relative times (10m, 2h, 1d) count back from now. Durations take "
            "us, ms, s or m (a bare number is milliseconds). Exit status: 0 ok, "
            "1 a file could not be read, 2 usage error."
        ),
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="history files")
    filters = parser.add_argument_group("filters (repeat an option to allow several)")
    filters.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="PATTERN",
        help="destination host, shell wildcards allowed (*.example.com)",
    )
    filters.add_argument(
        "--status",
        action="append",
        default=[],
        metavar="SPEC",
        help="status code or class: 404, 2xx, 4xx,5xx",
    )
    filters.add_argument(
        "--since", metavar="WHEN", help="started at or after WHEN (ISO time or 10m)"
    )
    filters.add_argument(
        "--until", metavar="WHEN", help="started before WHEN (ISO time or 10m)"
    )
    filters.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="client address or network (10.0.0.0/8)",
    )
    filters.add_argument(
        "--slower-than",
        dest="slowerThan",
        metavar="DURATION",
        help="total time above DURATION (500ms, 2s)",
    )
    output = parser.add_argument_group("output (default: one line per transaction)")
    output.add_argument(
        "--summary",
        action="store_true",
        help="totals, status classes, bytes and latency percentiles per host",
    )
    output.add_argument(
        "--har", metavar="OUT", help="write an HTTP Archive 1.2 file (- for stdout)"
    )
    output.add_argument(
        "--json",
        action="store_true",
        help="records as JSON Lines (with --summary: the summary as JSON)",
    )
    parser.add_argument("-h", "--help", action="store_true", help="show this help")
    parser.add_argument("--version", action="store_true", help="show the version")
    return parser


# Command-line values.

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.ASCII)
_RELATIVE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(us|ms|s|m)?", re.ASCII)
_DURATION_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, None: 1.0}
_STATUS = re.compile(r"([1-5])xx|([1-5]\d\d)", re.ASCII | re.IGNORECASE)


def _parseWhen(text: str, now: float) -> int:
    """
    An instant from the command line, as microseconds since the epoch.

    @param text: an ISO 8601 time (UTC unless it has an offset) or a
        relative one, C{10m}, C{2h}, C{1d}, meaning that long before C{now}.
    """
    relative = _RELATIVE.fullmatch(text.strip().lower())
    if relative:
        seconds = float(relative.group(1)) * _RELATIVE_UNITS[relative.group(2)]
        return int(round((now - seconds) * 1000000))
    try:
        value = parseTimestamp(text.strip())
    except ValueError:
        raise _UsageError(
            f"invalid time {text!r}: expected an ISO 8601 time such as "
            "2025-01-02T03:04:05Z, or a relative one such as 10m, 2h, 1d"
        ) from None
    return (value - _EPOCH) // _MICROSECOND


def _parseDuration(text: str) -> float:
    """
    A duration from the command line, in milliseconds.
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise _UsageError(
            f"invalid duration {text!r}: expected a number with us, ms, s or m, "
            "e.g. 500ms"
        )
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _parseStatus(specs: Iterable[str]) -> Callable[[Any], bool]:
    """
    A predicate on a status code from C{--status} values (C{404}, C{2xx},
    comma-separated lists).
    """
    classes: set[int] = set()
    codes: set[int] = set()
    for spec in specs:
        for part in spec.split(","):
            match = _STATUS.fullmatch(part.strip())
            if match is None:
                raise _UsageError(
                    f"invalid status {part!r}: expected a code such as 404 or a "
                    "class such as 2xx"
                )
            if match.group(1):
                classes.add(int(match.group(1)))
            else:
                codes.add(int(match.group(2)))

    def matches(status: Any) -> bool:
        return isinstance(status, int) and (status in codes or status // 100 in classes)

    return matches


def _parseClients(
    specs: Iterable[str],
) -> Callable[[Any], bool]:
    """
    A predicate on a client address from C{--client} values (addresses or
    networks).
    """
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    names: set[str] = set()
    for spec in specs:
        spec = spec.strip()
        if "/" in spec:
            try:
                networks.append(ipaddress.ip_network(spec, strict=False))
            except ValueError:
                raise _UsageError(
                    f"invalid client network {spec!r}: expected e.g. 10.0.0.0/8"
                ) from None
        else:
            names.add(_normalAddress(spec))

    def matches(host: Any) -> bool:
        if not isinstance(host, str):
            return False
        if _normalAddress(host) in names:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in networks)

    return matches


def _normalAddress(text: str) -> str:
    """
    An IP address in canonical form (so C{::1} matches C{0::1}); any other
    text unchanged.
    """
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return text


# Reading.


def _start(record: Record) -> int:
    """
    When a record's transaction started (request head, else connection
    accepted), in microseconds since the epoch.
    """
    times = record["times"]
    return timestampMicroseconds(times.get("requestHead") or times["accepted"])


_INTEGER_KEYS = (
    "bytesFromClient",
    "bytesToUpstream",
    "bytesFromUpstream",
    "bytesToClient",
)
_OPTIONAL_INTEGER_KEYS = ("status", "requestHeadSize", "responseHeadSize")
_OBJECT_KEYS = ("times", "offsets", "durations")


def _checkRecord(value: Any) -> Record:
    """
    Return C{value} if it is a record this tool can read: a JSON object of
    the current C{recordVersion} whose fields have the types the tool relies
    on.

    @raise ValueError: saying why not.
    """
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    version = value.get("recordVersion")
    if version != RECORD_VERSION:
        raise ValueError(f"unsupported recordVersion {version!r}")
    for key in _OBJECT_KEYS:
        if not isinstance(value.get(key), dict):
            raise ValueError(f"{key} is not an object")
    for key in _INTEGER_KEYS:
        if not isinstance(value.get(key), int):
            raise ValueError(f"{key} is not an integer")
    for key in _OPTIONAL_INTEGER_KEYS:
        if value.get(key) is not None and not isinstance(value[key], int):
            raise ValueError(f"{key} is not an integer")
    times = value["times"]
    if not isinstance(times.get("accepted"), str):
        raise ValueError("times.accepted is not a timestamp")
    if times.get("requestHead") is not None and not isinstance(
        times["requestHead"], str
    ):
        raise ValueError("times.requestHead is not a timestamp")
    _start(value)
    return value


def _lines(path: str) -> Iterator[bytes]:
    """
    The lines of C{path}, decompressing it if it is gzip data.
    """
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield from unzipped
        else:
            yield from raw


def readRecords(paths: Iterable[str], stderr: IO[str]) -> tuple[list[Record], bool]:
    """
    Read the records in C{paths}, reporting bad lines and unreadable files
    on C{stderr}.  A file named twice is read once.

    @return: the records (in file order) and whether every file could be
        read completely.
    """
    records: list[Record] = []
    ok = True
    seen: set[str] = set()
    for path in paths:
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        lineNumber = 0
        try:
            for lineNumber, line in enumerate(_lines(path), 1):
                if not line.strip():
                    continue
                try:
                    record = _checkRecord(json.loads(line.decode("utf-8")))
                except (ValueError, KeyError, TypeError) as e:
                    truncated = "" if line.endswith(b"\n") else " (truncated)"
                    stderr.write(
                        f"{_PROG}: {path}:{lineNumber}: skipped corrupt"
                        f" record{truncated}: {e}\n"
                    )
                    continue
                records.append(record)
        except (OSError, EOFError, zlib.error) as e:
            ok = False
            where = f"{path}:{lineNumber + 1}" if lineNumber else path
            stderr.write(
                "{}: {}: cannot read: {}\n".format(
                    _PROG, where, getattr(e, "strerror", None) or e
                )
            )
    return records, ok


# Selecting.


def _filters(args: argparse.Namespace, now: float) -> list[Callable[[Record], bool]]:
    """
    One predicate per filter option given.
    """
    result: list[Callable[[Record], bool]] = []
    if args.host:
        patterns = [pattern.lower() for pattern in args.host]

        def hostMatches(record: Record) -> bool:
            host = record.get("destHost")
            return isinstance(host, str) and any(
                fnmatch.fnmatchcase(host.lower(), pattern) for pattern in patterns
            )

        result.append(hostMatches)
    if args.status:
        statusMatches = _parseStatus(args.status)
        result.append(lambda record: statusMatches(record.get("status")))
    if args.client:
        clientMatches = _parseClients(args.client)
        result.append(lambda record: clientMatches(record.get("clientHost")))
    if args.since is not None:
        since = _parseWhen(args.since, now)
        result.append(lambda record: _start(record) >= since)
    if args.until is not None:
        until = _parseWhen(args.until, now)
        result.append(lambda record: _start(record) < until)
    if args.slowerThan is not None:
        threshold = _parseDuration(args.slowerThan)

        def slower(record: Record) -> bool:
            total = record["durations"].get("total")
            return isinstance(total, (int, float)) and total > threshold

        result.append(slower)
    return result


# Listing.


def _formatStart(record: Record) -> str:
    micros = _start(record)
    moment = datetime.fromtimestamp(micros // 1000000, timezone.utc)
    return "{}.{:03d}Z".format(
        moment.strftime("%Y-%m-%dT%H:%M:%S"), (micros // 1000) % 1000
    )


def _ms(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.1f}"


def _client(record: Record) -> str:
    host = str(record.get("clientHost") or "-")
    if ":" in host:
        host = "[" + host + "]"
    text = "{}:{}".format(host, record.get("clientPort"))
    if record.get("user"):
        text = "{}@{}".format(record["user"], text)
    return text


def _result(record: Record) -> str:
    if record.get("proxyError"):
        return str(record["proxyError"]) + ("+aborted" if record.get("aborted") else "")
    if record.get("aborted"):
        return "aborted"
    return "-"


def _table(
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


def _listing(records: Sequence[Record]) -> list[str]:
    rows = []
    for record in records:
        durations = record["durations"]
        status = record.get("status")
        rows.append(
            (
                _formatStart(record),
                _client(record),
                str(record.get("method") or "-"),
                "-" if status is None else str(status),
                _ms(durations.get("total")),
                _ms(durations.get("wait")),
                str(record.get("bytesFromClient", 0)),
                str(record.get("bytesToClient", 0)),
                str(record.get("cacheStatus") or "-"),
                _result(record),
                str(record.get("target") or "-"),
            )
        )
    if not rows:
        return []
    return _table(_LIST_HEADER, rows, {3, 4, 5, 6, 7})


# Summary.


def percentile(values: Sequence[float], p: int) -> float | None:
    """
    The C{p}th percentile of C{values} by the nearest-rank method: the
    smallest value such that at least C{p} percent of the values are less
    than or equal to it (the value at rank M{ceil(p/100 * n)} in sorted
    order).  L{None} for no values.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-p * len(ordered) // 100))
    return ordered[rank - 1]


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
        stats: dict[str, float | None] = {
            f"p{p}": percentile(values, p) for p in _PERCENTILES
        }
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
        "first": _formatStart(records[0]) if records else None,
        "last": _formatStart(records[-1]) if records else None,
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
        row.extend(_ms(group[key][stat]) for stat in ("p50", "p90", "p99", "max"))
    return row


def _summaryText(summary: dict[str, Any]) -> list[str]:
    overall = summary["overall"]
    lines = [
        "transactions  {}  (aborted {}, proxy errors {})".format(
            overall["count"], overall["aborted"], overall["proxyErrors"]
        ),
        "period        {} .. {}".format(
            summary["first"] or "-", summary["last"] or "-"
        ),
        "bytes         from clients {}, to upstreams {}, from upstreams {}, "
        "to clients {}".format(
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
    lines.extend(_table(_SUMMARY_HEADER, rows, set(range(1, len(_SUMMARY_HEADER)))))
    return lines


# HAR.


def _pairs(fields: Any) -> list[dict[str, str]]:
    return [{"name": str(name), "value": str(value)} for name, value in fields or ()]


def _headerValue(fields: Any, name: str) -> str | None:
    for fieldName, value in fields or ():
        if str(fieldName).lower() == name:
            return str(value)
    return None


def _requestCookies(fields: Any) -> list[dict[str, str]]:
    cookies = []
    for name, value in fields or ():
        if str(name).lower() != "cookie" or value == REDACTED:
            continue
        for part in str(value).split(";"):
            cookieName, sep, cookieValue = part.strip().partition("=")
            if sep and cookieName:
                cookies.append({"name": cookieName, "value": cookieValue})
    return cookies


def _responseCookies(fields: Any) -> list[dict[str, Any]]:
    cookies = []
    for name, value in fields or ():
        if str(name).lower() != "set-cookie" or value == REDACTED:
            continue
        first, *attributes = str(value).split(";")
        cookieName, sep, cookieValue = first.strip().partition("=")
        if not (sep and cookieName):
            continue
        cookie: dict[str, Any] = {"name": cookieName, "value": cookieValue}
        for attribute in attributes:
            key, _, attributeValue = attribute.strip().partition("=")
            key = key.lower()
            if key in ("path", "domain"):
                cookie[key] = attributeValue
            elif key == "httponly":
                cookie["httpOnly"] = True
            elif key == "secure":
                cookie["secure"] = True
        cookies.append(cookie)
    return cookies


def _harUrl(record: Record) -> str:
    target = record.get("target") or ""
    host = record.get("destHost")
    if target.startswith("/") and host:
        if ":" in host and not host.startswith("["):
            host = "[" + host + "]"
        port = record.get("destPort")
        return "http://{}{}{}".format(
            host, "" if port in (None, 80) else f":{port}", target
        )
    return str(target)


def _harTimings(record: Record) -> dict[str, float]:
    """
    HAR timings from the monotonic offsets: each interval between two marked
    phases goes to the bucket of the later one (requestHead -> upstreamReady
    is C{connect}, or C{blocked} for a pooled connection; -> requestSent is
    C{send}; -> responseHead is C{wait}; -> end is C{receive}, or C{wait}
    when no response head came).  C{dns} and C{ssl} are not measured apart
    (they are inside C{connect}): -1.
    """
    offsets = record["offsets"]
    start = offsets.get("requestHead")
    previous = float(start) if isinstance(start, (int, float)) else 0.0
    buckets = {"pre": 0.0, "send": 0.0, "wait": 0.0, "receive": 0.0}
    owner = (
        ("upstreamReady", "pre"),
        ("requestSent", "send"),
        ("responseHead", "wait"),
        ("end", "receive" if offsets.get("responseHead") is not None else "wait"),
    )
    for phase, bucket in owner:
        offset = offsets.get(phase)
        if not isinstance(offset, (int, float)):
            continue
        buckets[bucket] += max(0.0, offset - previous)
        previous = max(previous, offset)
    connected = offsets.get("upstreamReady") is not None
    reused = bool(record.get("connectionReused"))
    pre = round(buckets["pre"], 3)
    return {
        "blocked": pre if connected and reused else -1,
        "dns": -1,
        "connect": pre if connected and not reused else -1,
        "send": round(buckets["send"], 3),
        "wait": round(buckets["wait"], 3),
        "receive": round(buckets["receive"], 3),
        "ssl": -1,
    }


def _harEntry(record: Record) -> dict[str, Any]:
    requestHeaders = record.get("requestHeaders") or []
    responseHeaders = record.get("responseHeaders") or []
    requestHeadSize = record.get("requestHeadSize")
    responseHeadSize = record.get("responseHeadSize")
    requestBody = (
        max(0, int(record.get("bytesFromClient") or 0) - requestHeadSize)
        if isinstance(requestHeadSize, int)
        else -1
    )
    responseBody = (
        max(0, int(record.get("bytesToClient") or 0) - responseHeadSize)
        if isinstance(responseHeadSize, int)
        else -1
    )
    url = _harUrl(record)
    timings = _harTimings(record)
    times = record["times"]
    entry: dict[str, Any] = {
        "startedDateTime": times.get("requestHead") or times["accepted"],
        "time": round(sum(value for value in timings.values() if value > 0), 3),
        "request": {
            "method": str(record.get("method") or ""),
            "url": url,
            "httpVersion": str(record.get("requestVersion") or ""),
            "cookies": _requestCookies(requestHeaders),
            "headers": _pairs(requestHeaders),
            "queryString": [
                {"name": name, "value": value}
                for name, value in parse_qsl(
                    urlsplit(url).query if "://" in url else "",
                    keep_blank_values=True,
                )
            ],
            "headersSize": requestHeadSize if isinstance(requestHeadSize, int) else -1,
            "bodySize": requestBody,
        },
        "response": {
            "status": int(record.get("status") or 0),
            "statusText": str(record.get("reason") or ""),
            "httpVersion": str(record.get("responseVersion") or ""),
            "cookies": _responseCookies(responseHeaders),
            "headers": _pairs(responseHeaders),
            "content": {
                "size": max(0, responseBody),
                "mimeType": _headerValue(responseHeaders, "content-type") or "",
            },
            "redirectURL": _headerValue(responseHeaders, "location") or "",
            "headersSize": (
                responseHeadSize if isinstance(responseHeadSize, int) else -1
            ),
            "bodySize": responseBody,
        },
        "cache": {},
        "timings": timings,
        "connection": str(record.get("connectionId")),
        "_twistedProxy": {
            "kind": record.get("kind"),
            "client": _client(record),
            "cacheStatus": record.get("cacheStatus"),
            "proxyError": record.get("proxyError"),
            "errorDetail": record.get("errorDetail"),
            "aborted": bool(record.get("aborted")),
            "durations": record["durations"],
        },
    }
    if record.get("peerHost"):
        entry["serverIPAddress"] = str(record["peerHost"])
    if record.get("proxyError") or record.get("aborted"):
        entry["_error"] = str(record.get("proxyError") or "aborted")
    return entry


def harFromRecords(records: Sequence[Record]) -> dict[str, Any]:
    """
    An HTTP Archive 1.2 document (as a JSON-ready dict) with one entry per
    record, in the given order.
    """
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "twisted-proxy proxyhistory", "version": __version__},
            "pages": [],
            "entries": [_harEntry(record) for record in records],
            "comment": "exported from the twisted-proxy transaction history",
        }
    }


def _writeHar(document: dict[str, Any], out: str, stdout: IO[str]) -> None:
    """
    Write the HAR file C{out} (C{-}: stdout), replacing it atomically.
    """
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if out == "-":
        stdout.write(text)
        return
    directory = os.path.dirname(os.path.abspath(out))
    fd, temporary = tempfile.mkstemp(prefix=".proxyhistory-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, out)
    except BaseException:
        os.unlink(temporary)
        raise


# The program.


def main(
    argv: Sequence[str],
    stdout: IO[str],
    stderr: IO[str],
    now: Callable[[], float] = time.time,
) -> int:
    """
    Run C{proxyhistory}.

    @param argv: the arguments (without the program name).
    @param stdout: where output goes.
    @param stderr: where diagnostics go.
    @param now: the current POSIX time, for relative C{--since}/C{--until}.
    @return: the exit status: 0 ok, 1 a file could not be read or the HAR
        file written, 2 usage error.
    """
    parser = _buildParser()
    if any(arg in ("-h", "--help") for arg in argv):
        stdout.write(parser.format_help())
        return 0
    if "--version" in argv:
        stdout.write(f"{_PROG} {__version__}\n")
        return 0
    try:
        args = parser.parse_args(list(argv))
        if args.har is not None and (args.summary or args.json):
            raise _UsageError("--har cannot be combined with --summary or --json")
        filters = _filters(args, now())
    except _UsageError as e:
        stderr.write(parser.format_usage())
        stderr.write(f"{_PROG}: error: {e}\n")
        return 2

    records, ok = readRecords(args.files, stderr)
    selected = [record for record in records if all(check(record) for check in filters)]
    selected.sort(key=_start)

    if args.har is not None:
        try:
            _writeHar(harFromRecords(selected), args.har, stdout)
        except OSError as e:
            stderr.write(f"{_PROG}: {args.har}: cannot write: {e.strerror or e}\n")
            return 1
    elif args.summary:
        summary = summarize(selected)
        if args.json:
            stdout.write(json.dumps(summary, indent=2) + "\n")
        else:
            stdout.write("\n".join(_summaryText(summary)) + "\n")
    elif args.json:
        for record in selected:
            stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    else:
        for line in _listing(selected):
            stdout.write(line + "\n")
    return 0 if ok else 1


def run() -> NoReturn:
    """
    The C{proxyhistory} console script.
    """
    try:
        status = main(sys.argv[1:], sys.stdout, sys.stderr)
        sys.stdout.flush()
    except BrokenPipeError:
        # Output piped into something like head(1) that stopped reading.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        status = 1
    except KeyboardInterrupt:
        status = 130
    sys.exit(status)


if __name__ == "__main__":
    run()
