# -*- test-case-name: tests.test_history_accesslog -*-
"""
Access-log lines from transaction records: Squid's native format and
Apache's common and combined formats (L{ACCESS_LOG_FORMATS}).

Each format is a function from a record dict (as
L{twisted_proxy.records.record.TransactionRecord.asDict} builds it, or as
read back from the history) to one line without its newline;
L{twisted_proxy.records.logfiles.accessLogObserver} writes them.  Every
field that comes from the request is escaped so that it cannot shift the
fields after it or start a new line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from .record import parseTimestamp, timestampMicroseconds

__all__ = ["ACCESS_LOG_FORMATS", "formatAccessLine"]

_SQUID_CACHE_TAGS = {
    "hit": "TCP_HIT",
    "revalidated": "TCP_REFRESH_UNMODIFIED",
    "refreshed": "TCP_REFRESH_MODIFIED",
    "stale": "TCP_REFRESH_FAIL_OLD",
}

_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()

# What a Squid token percent-encodes (as Squid escapes what is not escaped
# yet: a request-target's own %XX stays as it came), and what an Apache
# quoted field escapes.
_SQUID_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_QUOTE_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\]')


def _percentEncoded(match: re.Match[str]) -> str:
    return f"%{ord(match.group()):02X}"


def _quoteEscaped(match: re.Match[str]) -> str:
    c = match.group()
    if c in '"\\':
        return "\\" + c
    return f"\\x{ord(c):02x}"


def _squidToken(value: object) -> str:
    """
    A space-free token for a Squid log field: C{-} when empty, and
    whitespace and control characters percent-encoded.
    """
    if value is None or value == "":
        return "-"
    text = str(value)
    if _SQUID_UNSAFE.search(text) is None:
        return text
    return _SQUID_UNSAFE.sub(_percentEncoded, text)


def _quoted(value: str | None) -> str:
    """
    An Apache-style quoted field: C{"..."} with C{"} and C{\\} escaped and
    control characters as C{\\xhh}; C{"-"} when absent.
    """
    if value is None:
        return '"-"'
    if _QUOTE_UNSAFE.search(value) is None:
        return '"' + value + '"'
    return '"' + _QUOTE_UNSAFE.sub(_quoteEscaped, value) + '"'


def _header(fields: Iterable[Any], name: str) -> str | None:
    """
    The first value of header field C{name} in C{[name, value]} pairs.
    """
    name = name.lower()
    for fieldName, value in fields:
        if fieldName.lower() == name:
            return str(value)
    return None


def _squidTag(record: dict[str, Any]) -> str:
    """
    Squid's result code for a record (C{TCP_MISS}, C{TCP_TUNNEL}, ...).
    """
    kind = record.get("kind")
    if kind == "refused":
        tag = "TCP_DENIED" if record.get("status") in (403, 407) else "NONE_NONE"
    elif kind == "tunnel":
        tag = "TCP_TUNNEL"
    else:
        cache = (record.get("cacheStatus") or "").strip().lower()
        tag = _SQUID_CACHE_TAGS.get(cache, "TCP_MISS")
    if record.get("aborted"):
        tag += "_ABORTED"
    return tag


def _squidLine(record: dict[str, Any]) -> str:
    """
    Squid's native format::

        time.ms elapsed client code/status bytes method URL user
        hierarchy/peer type

    C{time} is the end of the transaction, C{elapsed} its total in whole
    milliseconds, C{bytes} the octets sent to the client.
    """
    times = record.get("times") or {}
    when = times.get("end") or times.get("accepted")
    micros = timestampMicroseconds(when) if when else 0
    total = (record.get("durations") or {}).get("total") or 0
    peer = record.get("peerHost")
    contentType = _header(record.get("responseHeaders") or (), "content-type")
    mediaType = contentType.split(";")[0].strip().lower() if contentType else None
    return "{}.{:03d} {:6d} {} {}/{:03d} {} {} {} {} {} {}".format(
        micros // 1000000,
        (micros // 1000) % 1000,
        int(total),
        _squidToken(record.get("clientHost")),
        _squidTag(record),
        record.get("status") or 0,
        int(record.get("bytesToClient") or 0),
        _squidToken(record.get("method")),
        _squidToken(record.get("target")),
        _squidToken(record.get("user")),
        "HIER_DIRECT/" + _squidToken(peer) if peer else "HIER_NONE/-",
        _squidToken(mediaType),
    )


def _commonLine(record: dict[str, Any], combined: bool) -> str:
    """
    Apache's common (or combined) log format::

        client - user [02/Jan/2025:03:04:05 +0000] "request line" status bytes
        [ "referer" "user-agent" ]

    The time is when the request head arrived (in UTC); C{bytes} is the
    octets sent to the client, C{-} for none.
    """
    times = record.get("times") or {}
    when = parseTimestamp(times.get("requestHead") or times["accepted"])
    month = _MONTHS[when.month - 1]
    stamp = f"{when.day:02d}/{month}/{when.year:04d}:{when:%H:%M:%S} +0000"
    if record.get("method"):
        requestLine = " ".join(
            part
            for part in (
                record.get("method"),
                record.get("target"),
                record.get("requestVersion"),
            )
            if part
        )
    else:
        requestLine = "-"
    status = record.get("status")
    sent = int(record.get("bytesToClient") or 0)
    line = "{} - {} [{}] {} {} {}".format(
        _squidToken(record.get("clientHost")),
        _squidToken(record.get("user")),
        stamp,
        _quoted(requestLine),
        "-" if status is None else status,
        sent or "-",
    )
    if combined:
        headers = record.get("requestHeaders") or ()
        line += " {} {}".format(
            _quoted(_header(headers, "referer")),
            _quoted(_header(headers, "user-agent")),
        )
    return line


ACCESS_LOG_FORMATS: dict[str, Callable[[dict[str, Any]], str]] = {
    "squid": _squidLine,
    "common": lambda record: _commonLine(record, False),
    "combined": lambda record: _commonLine(record, True),
}
"""
Access-log format name -> function from a record dict to one line.
"""


def formatAccessLine(record: dict[str, Any], fmt: str) -> str:
    """
    One access-log line (without newline) for a transaction record dict.

    @param fmt: a key of L{ACCESS_LOG_FORMATS}.
    """
    return ACCESS_LOG_FORMATS[fmt](record)
