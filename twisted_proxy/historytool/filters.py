# -*- test-case-name: tests.test_historytool -*-
"""
The selection options (C{--host}, C{--status}, C{--since}, C{--until},
C{--client}, C{--slower-than}): their values parsed, and one predicate on a
record per option given (L{buildFilters}).
"""

from __future__ import annotations

import argparse
import fnmatch
import ipaddress
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from ..records.record import parseTimestamp
from .read import Record, startMicroseconds

__all__ = [
    "UsageError",
    "buildFilters",
    "parseWhen",
    "parseDuration",
    "parseStatus",
    "parseClients",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class UsageError(Exception):
    """
    A bad command line: reported in one line, exit status 2.
    """


_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.ASCII)
_RELATIVE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(us|ms|s|m)?", re.ASCII)
_DURATION_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, None: 1.0}
_STATUS = re.compile(r"([1-5])xx|([1-5]\d\d)", re.ASCII | re.IGNORECASE)


def parseWhen(text: str, now: float) -> int:
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
        raise UsageError(
            f"invalid time {text!r}: expected an ISO 8601 time such as "
            "2025-01-02T03:04:05Z, or a relative one such as 10m, 2h, 1d"
        ) from None
    return (value - _EPOCH) // _MICROSECOND


def parseDuration(text: str) -> float:
    """
    A duration from the command line, in milliseconds.
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise UsageError(
            f"invalid duration {text!r}: expected a number with us, ms, s or m, e.g. 500ms"
        )
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parseStatus(specs: Iterable[str]) -> Callable[[Any], bool]:
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
                raise UsageError(
                    f"invalid status {part!r}: expected a code such as 404 or a class such as 2xx"
                )
            if match.group(1):
                classes.add(int(match.group(1)))
            else:
                codes.add(int(match.group(2)))

    def matches(status: Any) -> bool:
        return isinstance(status, int) and (status in codes or status // 100 in classes)

    return matches


def parseClients(
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
                raise UsageError(
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


def buildFilters(args: argparse.Namespace, now: float) -> list[Callable[[Record], bool]]:
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
        statusMatches = parseStatus(args.status)
        result.append(lambda record: statusMatches(record.get("status")))
    if args.client:
        clientMatches = parseClients(args.client)
        result.append(lambda record: clientMatches(record.get("clientHost")))
    if args.since is not None:
        since = parseWhen(args.since, now)
        result.append(lambda record: startMicroseconds(record) >= since)
    if args.until is not None:
        until = parseWhen(args.until, now)
        result.append(lambda record: startMicroseconds(record) < until)
    if args.slowerThan is not None:
        threshold = parseDuration(args.slowerThan)

        def slower(record: Record) -> bool:
            total = record["durations"].get("total")
            return isinstance(total, (int, float)) and total > threshold

        result.append(slower)
    return result
