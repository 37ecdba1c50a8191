# -*- test-case-name: tests.test_cache_http -*-
"""
The C{Cache-Status} response field (RFC 9211): one list member per cache,
naming the cache and saying how it handled the request::

    Cache-Status: twisted-proxy; hit; ttl=376
    Cache-Status: twisted-proxy; fwd=uri-miss; fwd-status=200; stored
    Cache-Status: twisted-proxy; fwd=stale; fwd-status=304; ttl=60
    Cache-Status: twisted-proxy; fwd=uri-miss; collapsed; ttl=60

"Caches SHOULD preserve the existing field value" (RFC 9211 2): a member
is added after those of caches nearer the origin.

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

import functools
import math
import re
from typing import TypedDict

__all__ = ["CacheStatusParams", "cacheStatusValue", "sfItem"]

_SF_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9:/!#$%&'*+\-.^_`|~]*")

# RFC 9211 2.2: the fwd parameter's values.
FWD_REASONS = frozenset(
    ["bypass", "method", "uri-miss", "vary-miss", "miss", "request", "stale", "partial"]
)


def sfItem(text: str) -> str:
    """
    C{text} as an RFC 8941 token if it is one, else as a string (printable
    ASCII; anything else becomes C{?}).
    """
    if _SF_TOKEN.fullmatch(text):
        return text
    clean = "".join(c if " " <= c <= "~" else "?" for c in text)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


class CacheStatusParams(TypedDict, total=False):
    """
    The parameters of L{cacheStatusValue} after the cache's name, for a
    helper that passes them on.
    """

    hit: bool
    fwd: str | None
    fwdStatus: int | None
    stored: bool
    collapsed: bool | None
    ttl: float | None
    detail: str | None


@functools.lru_cache(maxsize=1024)
def cacheStatusValue(
    name: str,
    *,
    hit: bool = False,
    fwd: str | None = None,
    fwdStatus: int | None = None,
    stored: bool = False,
    collapsed: bool | None = None,
    ttl: float | None = None,
    detail: str | None = None,
) -> bytes:
    """
    One C{Cache-Status} list member (RFC 9211 2).

    @param name: the cache's identifier (our C{Via} pseudonym).
    @param hit: the request was satisfied by the cache, not forwarded.
    @param fwd: why the request went forward (one of L{FWD_REASONS}).
    @param fwdStatus: the status the next hop answered with.
    @param stored: the cache stored the response.
    @param collapsed: the request was collapsed with another (C{True}:
        the other's response was reused; C{False}: it had to be forwarded
        after all); L{None} to omit.
    @param ttl: the response's remaining freshness lifetime in seconds,
        negative when stale (rounded down).
    @param detail: implementation-specific detail, a short token.

    Values repeat (a few reasons and statuses; ttl in whole seconds), so
    the latest are kept, built once each.
    """
    if fwd is not None and fwd not in FWD_REASONS:
        raise ValueError("unknown Cache-Status fwd reason: {!r}".format(fwd))
    parts = [sfItem(name)]
    if hit:
        parts.append("hit")
    if fwd is not None:
        parts.append("fwd=" + fwd)
    if fwdStatus is not None:
        parts.append("fwd-status={:d}".format(fwdStatus))
    if stored:
        parts.append("stored")
    if collapsed is not None:
        parts.append("collapsed" if collapsed else "collapsed=?0")
    if ttl is not None:
        parts.append("ttl={:d}".format(max(-(2**31), min(2**31, math.floor(ttl)))))
    if detail:
        parts.append("detail=" + sfItem(detail))
    return "; ".join(parts).encode("ascii")
