# -*- test-case-name: tests.test_cache_http -*-
"""
L{CacheConfig}, the choices RFC 9111 leaves to a cache, and L{CacheStats},
the cache's counters.

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CacheConfig", "CacheStats"]


@dataclass(frozen=True)
class CacheConfig:
    """
    How the cache behaves where RFC 9111 leaves a choice.

    @ivar name: the cache's identifier in C{Cache-Status} (the proxy's
        C{Via} pseudonym).
    @ivar heuristicFraction: heuristic freshness is this fraction of the
        time since C{Last-Modified} (RFC 9111 4.2.2 suggests 10%; Squid's
        default C{refresh_pattern} uses 20%).
    @ivar heuristicMax: the cap on a heuristic freshness lifetime, in
        seconds (Squid's default C{refresh_pattern . 0 20% 4320}: 3 days;
        ours: 1 day).
    @ivar collapsedForwarding: whether concurrent misses wait for one
        request in flight.
    @ivar collapseTimeout: how long the exchange lets a collapsed request
        wait before it forwards its own (the cache does not time; the
        exchange does).
    @ivar maxCollapsedWaiters: the most requests that wait for one.
    @ivar uncacheableMemory: seconds a URL whose response was not stored
        (C{no-store}, C{private}, too large...) is remembered as such, so
        that concurrent requests for it go to the origin together instead
        of queueing behind one another (Varnish's "hit-for-miss"); 0
        forgets at once.
    @ivar uncacheableKeys: the most such URLs remembered (least recently
        remembered forgotten first).
    @ivar staleOnDisconnect: seconds of staleness the cache may serve when
        the origin cannot be reached and no directive allows or forbids it
        (RFC 9111 4.2.4 allows a disconnected cache to serve stale unless a
        directive prohibits it); 0 (the default) never does.
    """

    name: str = "twisted-proxy"
    heuristicFraction: float = 0.1
    heuristicMax: float = 86400.0
    collapsedForwarding: bool = True
    collapseTimeout: float = 10.0
    maxCollapsedWaiters: int = 1000
    uncacheableMemory: float = 120.0
    uncacheableKeys: int = 10000
    staleOnDisconnect: float = 0.0


class CacheStats:
    """
    Counters since start, for metrics.

    @ivar lookups: requests looked up.
    @ivar hits: answered from the cache without contacting the origin
        (fresh responses and 304s).
    @ivar staleHits: stale responses served (C{max-stale},
        C{stale-while-revalidate}, C{stale-if-error}, disconnected).
    @ivar misses: forwarded because nothing usable was stored.
    @ivar revalidations: conditional requests sent to validate a stored
        response (background ones included).
    @ivar notModified: revalidations answered 304 (the stored response was
        reused).
    @ivar bypasses: requests the cache did not handle.
    @ivar stored: responses stored.
    @ivar bytesStored: body bytes stored.
    @ivar storeFailures: responses that were to be stored but were not
        (too large, no room, aborted, I/O error).
    @ivar invalidations: stored responses removed by unsafe requests (RFC
        9111 4.4).
    @ivar collapsed: requests that waited for another's response.
    @ivar unavailable: stored bodies that could not be read (corrupt or
        gone) when about to be served.
    """

    def __init__(self) -> None:
        self.lookups = 0
        self.hits = 0
        self.staleHits = 0
        self.misses = 0
        self.revalidations = 0
        self.notModified = 0
        self.bypasses = 0
        self.stored = 0
        self.bytesStored = 0
        self.storeFailures = 0
        self.invalidations = 0
        self.collapsed = 0
        self.unavailable = 0

    def asDict(self) -> dict[str, int]:
        return dict(vars(self))
