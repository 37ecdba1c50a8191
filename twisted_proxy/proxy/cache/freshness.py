# -*- test-case-name: tests.test_cache_freshness -*-
"""
Freshness (RFC 9111 4.2): how long a stored response stays fresh, how old
it is, and whether a request accepts it as it is.

  - 4.2.1 / 4.2.2: L{freshnessLifetime} (explicit, then heuristic).
  - 4.2.3 / 5.1: L{currentAge}, L{parseAge}, L{dateValueOf}.
  - 4.2.4 / 5.2.1: L{acceptable} (may it be served without validation?).

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

from .dates import parseHTTPDate
from .directives import DELTA_SECONDS_MAX, RequestDirectives, ResponseDirectives
from .entry import StoredResponse

__all__ = [
    "HEURISTIC_STATUSES",
    "freshnessLifetime",
    "currentAge",
    "parseAge",
    "dateValueOf",
    "acceptable",
]

# RFC 9110 15.1: "Responses with status codes that are defined as
# heuristically cacheable (e.g., 200, 203, 204, 206, 300, 301, 308, 404, 405,
# 410, 414, and 501 in this specification) can be reused by a cache with
# heuristic expiration".  206 is never stored here (no range combination).
HEURISTIC_STATUSES = frozenset([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501])


def parseAge(headers: list[tuple[bytes, bytes]]) -> int:
    """
    C{age_value} (RFC 9111 5.1): "a cache encountering a message with a
    list-based Age field value SHOULD use the first member of the field
    value, discarding subsequent ones.  If the field value (after
    discarding additional members, as per above) is invalid (e.g., it
    contains something other than a non-negative integer), a cache SHOULD
    ignore the field."  0 when absent or ignored.
    """
    for n, v in headers:
        if n.lower() == b"age":
            first = v.split(b",")[0].strip()
            if first.isdigit():
                return min(int(first), DELTA_SECONDS_MAX)
            return 0
    return 0


def dateValueOf(headers: list[tuple[bytes, bytes]], responseTime: float) -> float:
    """
    C{date_value} (RFC 9111 4.2.3): the response's C{Date}, or the time it
    was received if it has no valid one (RFC 9110 6.6.1).
    """
    for n, v in headers:
        if n.lower() == b"date":
            parsed = parseHTTPDate(v, responseTime)
            return responseTime if parsed is None else parsed
    return responseTime


def _expires(headers: list[tuple[bytes, bytes]], responseTime: float) -> tuple[bool, float | None]:
    """
    C{(present, value)} of C{Expires}: C{value} is L{None} when it is
    invalid ("A cache recipient MUST interpret invalid date formats,
    especially the value "0", as representing a time in the past", RFC 9111
    5.3), or when it appears more than once with different values (4.2.1:
    "considered stale").
    """
    values = [v.strip() for n, v in headers if n.lower() == b"expires"]
    if not values:
        return False, None
    if len(set(values)) > 1:
        return True, None
    return True, parseHTTPDate(values[0], responseTime)


def freshnessLifetime(
    status: int,
    headers: list[tuple[bytes, bytes]],
    directives: ResponseDirectives,
    responseTime: float,
    heuristicFraction: float,
    heuristicMax: float,
) -> tuple[float, bool]:
    """
    The freshness lifetime of a response for a shared cache, in seconds, and
    whether it is heuristic.

    RFC 9111 4.2.1: "If the cache is shared and the s-maxage response
    directive is present, use its value, or if the max-age response
    directive is present, use its value, or if the Expires response header
    field is present, use its value minus the value of the Date response
    header field (using the time the message was received if it is not
    present [...]), or otherwise, no explicit expiration time is present in
    the response.  A heuristic freshness lifetime might be applicable."

    4.2.2: "a cache MAY assign a heuristic expiration time when an explicit
    time is not specified [...] only if the response status code is
    heuristically cacheable or the response is marked public [...] If the
    response has a Last-Modified header field, caches are encouraged to use
    a heuristic expiration value that is no more than some fraction of the
    interval since that time.  A typical setting of this fraction might be
    10%."  Without C{Last-Modified} the heuristic lifetime is 0.

    @param heuristicFraction: the fraction of C{Date - Last-Modified}.
    @param heuristicMax: the cap on a heuristic lifetime, in seconds.
    """
    if directives.invalidFreshness:
        return 0.0, False
    if directives.sMaxAge is not None:
        return float(directives.sMaxAge), False
    if directives.maxAge is not None:
        return float(directives.maxAge), False
    present, expires = _expires(headers, responseTime)
    if present:
        if expires is None:
            return 0.0, False
        return max(0.0, expires - dateValueOf(headers, responseTime)), False
    if status not in HEURISTIC_STATUSES and not directives.public:
        return 0.0, False
    lastModified = None
    for n, v in headers:
        if n.lower() == b"last-modified":
            lastModified = parseHTTPDate(v, responseTime)
            break
    if lastModified is None:
        return 0.0, True
    interval = dateValueOf(headers, responseTime) - lastModified
    if interval <= 0:
        return 0.0, True
    return min(interval * heuristicFraction, heuristicMax), True


def currentAge(entry: StoredResponse, now: float) -> float:
    """
    RFC 9111 4.2.3::

        apparent_age = max(0, response_time - date_value);
        response_delay = response_time - request_time;
        corrected_age_value = age_value + response_delay;
        corrected_initial_age = max(apparent_age, corrected_age_value);
        resident_time = now - response_time;
        current_age = corrected_initial_age + resident_time;

    A clock that went backwards gives no negative resident time.
    """
    apparentAge = max(0.0, entry.responseTime - entry.dateValue)
    responseDelay = max(0.0, entry.responseTime - entry.requestTime)
    correctedAgeValue = entry.ageValue + responseDelay
    correctedInitialAge = max(apparentAge, correctedAgeValue)
    residentTime = max(0.0, now - entry.responseTime)
    return min(correctedInitialAge + residentTime, float(DELTA_SECONDS_MAX))


def acceptable(
    age: float, lifetime: float, reqCC: RequestDirectives, cc: ResponseDirectives
) -> bool:
    """
    Whether a stored response may be served without validation, given
    the request's directives (RFC 9111 4.2, 4.2.4, 5.2.1).
    """
    if reqCC.maxAge is not None and age > reqCC.maxAge:
        return False
    remaining = lifetime - age
    if reqCC.minFresh is not None and remaining < reqCC.minFresh:
        return False
    if remaining > 0:
        return True
    # Stale: only if the client accepts it and no directive forbids it.
    if cc.prohibitsStale or reqCC.maxStale is None:
        return False
    return -remaining <= reqCC.maxStale
