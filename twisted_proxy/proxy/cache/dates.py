# -*- test-case-name: tests.test_cache_freshness -*-
"""
HTTP-date (RFC 9110 5.6.7): parse the three formats a recipient must accept,
format the one a sender generates.

  - IMF-fixdate: C{Sun, 06 Nov 1994 08:49:37 GMT} (the only one we send);
  - obsolete RFC 850: C{Sunday, 06-Nov-94 08:49:37 GMT} -- "Recipients of a
    timestamp value in rfc850-date format, which uses a two-digit year, MUST
    interpret a timestamp that appears to be more than 50 years in the
    future as representing the most recent year in the past that had the
    same last two digits";
  - ANSI C asctime: C{Sun Nov  6 08:49:37 1994}.

Day and month names are matched case-insensitively, and the day name is not
checked against the date (it carries no information).  Anything else --
another zone than GMT, a numeric offset, missing seconds, an impossible
date -- is invalid: L{parseHTTPDate} returns L{None}, and each caller
applies the RFC's rule for an invalid date (an invalid C{Expires} is in the
past, RFC 9111 5.3; an invalid C{Date} is as if absent).

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

import calendar
import re
import time

__all__ = ["parseHTTPDate", "formatHTTPDate"]

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        [
            b"jan",
            b"feb",
            b"mar",
            b"apr",
            b"may",
            b"jun",
            b"jul",
            b"aug",
            b"sep",
            b"oct",
            b"nov",
            b"dec",
        ]
    )
}
_DAYS = b"(?:mon|tue|wed|thu|fri|sat|sun)"
_LONG_DAYS = b"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTH = b"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_TIME = b"([0-9]{2}):([0-9]{2}):([0-9]{2})"

_IMF = re.compile(_DAYS + b", ([0-9]{2}) " + _MONTH + b" ([0-9]{4}) " + _TIME + b" gmt", re.I)
_RFC850 = re.compile(
    _LONG_DAYS + b", ([0-9]{2})-" + _MONTH + b"-([0-9]{2}) " + _TIME + b" gmt", re.I
)
_ASCTIME = re.compile(_DAYS + b" " + _MONTH + b" ([ 0-9][0-9]) " + _TIME + b" ([0-9]{4})", re.I)

_DAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def parseHTTPDate(value: bytes | None, now: float | None = None) -> float | None:
    """
    The POSIX time of an HTTP-date, or L{None} if C{value} is absent or not
    a valid HTTP-date.

    @param now: the current time, for the two-digit years of RFC 850 dates
        (default: the system clock).
    """
    if value is None:
        return None
    value = value.strip()
    m = _IMF.fullmatch(value)
    if m is not None:
        day, month, year, hh, mm, ss = m.groups()
        return _timestamp(int(year), _MONTHS[month.lower()], int(day), int(hh), int(mm), int(ss))
    m = _RFC850.fullmatch(value)
    if m is not None:
        day, month, yy, hh, mm, ss = m.groups()
        if now is None:
            now = time.time()
        thisYear = time.gmtime(now).tm_year
        year = (thisYear // 100) * 100 + int(yy)
        if year > thisYear + 50:
            year -= 100
        return _timestamp(year, _MONTHS[month.lower()], int(day), int(hh), int(mm), int(ss))
    m = _ASCTIME.fullmatch(value)
    if m is not None:
        month, day, hh, mm, ss, year = m.groups()
        return _timestamp(
            int(year), _MONTHS[month.lower()], int(day.strip()), int(hh), int(mm), int(ss)
        )
    return None


def _timestamp(year: int, month: int, day: int, hh: int, mm: int, ss: int) -> float | None:
    if year < 1:
        return None
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    if hh > 23 or mm > 59 or ss > 60:
        return None
    # A leap second (":60") is the last second of its minute.
    return float(calendar.timegm((year, month, day, hh, mm, min(ss, 59), 0, 0, 0)))


def formatHTTPDate(when: float) -> bytes:
    """
    C{when} (POSIX time) as an IMF-fixdate.
    """
    t = time.gmtime(when)
    return "{}, {:02d} {} {:04d} {:02d}:{:02d}:{:02d} GMT".format(
        _DAY_NAMES[t.tm_wday],
        t.tm_mday,
        _MONTH_NAMES[t.tm_mon - 1],
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    ).encode("ascii")
