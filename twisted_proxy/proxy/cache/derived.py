# -*- test-case-name: tests.test_cache_freshness -*-
"""
L{Derived}: what the cache computes once per stored response -- its
directives, freshness lifetime and entity tag -- kept on
L{StoredResponse.derived} until the entry changes.

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

from .directives import ResponseDirectives
from .entry import StoredResponse
from .freshness import freshnessLifetime
from .validation import ETag

__all__ = ["Derived", "derive"]


class Derived:
    """
    What the cache computes once per stored response.

    @ivar directives: its C{Cache-Control} directives.
    @ivar lifetime: its freshness lifetime, in seconds (RFC 9111 4.2.1).
    @ivar heuristic: whether C{lifetime} is heuristic (4.2.2).
    @ivar etag: its entity tag, or L{None}.
    """

    __slots__ = ("directives", "lifetime", "heuristic", "etag")

    def __init__(
        self, directives: ResponseDirectives, lifetime: float, heuristic: bool, etag: ETag | None
    ) -> None:
        self.directives = directives
        self.lifetime = lifetime
        self.heuristic = heuristic
        self.etag = etag


def derive(entry: StoredResponse, heuristicFraction: float, heuristicMax: float) -> Derived:
    """
    The L{Derived} values of C{entry}, computed the first time and kept on
    it (a changed entry is a copy, without them).

    @param heuristicFraction: see L{CacheConfig.heuristicFraction}.
    @param heuristicMax: see L{CacheConfig.heuristicMax}.
    """
    d = entry.derived
    if d is None:
        directives = ResponseDirectives.fromHeaders(entry.headers)
        lifetime, heuristic = freshnessLifetime(
            entry.status,
            entry.headers,
            directives,
            entry.responseTime,
            heuristicFraction,
            heuristicMax,
        )
        d = entry.derived = Derived(directives, lifetime, heuristic, ETag.parse(entry.get(b"etag")))
    assert isinstance(d, Derived)
    return d
