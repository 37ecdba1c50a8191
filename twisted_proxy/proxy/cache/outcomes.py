# -*- test-case-name: tests.test_cache_http -*-
"""
What the cache answers the exchange: the outcomes of a lookup
(L{CacheLookup}) and the decision about an upstream response
(L{StoreDecision}), with the verdicts the transaction record keeps.  The
protocol the exchange follows with them is in
L{twisted_proxy.proxy.cache.cache}.

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted_proxy.http.errors import ProxyError
from twisted_proxy.http.framing import RequestHead, ResponseHead
from twisted_proxy.http.target import Target

from .collapse import Flight, Waiter
from .directives import RequestDirectives
from .entry import StoredResponse
from .store import CachedBody
from .validation import ETag

if TYPE_CHECKING:
    from .storing import CacheWriter

__all__ = [
    "CacheLookup",
    "StoreDecision",
    "FRESH_HIT",
    "NOT_MODIFIED",
    "REVALIDATE",
    "STALE_WHILE_REVALIDATE",
    "MISS",
    "COLLAPSED",
    "ONLY_IF_CACHED_MISS",
    "BYPASS",
    "VERDICT_HIT",
    "VERDICT_MISS",
    "VERDICT_REVALIDATED",
    "VERDICT_REFRESHED",
    "VERDICT_STALE",
    "VERDICT_BYPASS",
]

# Lookup outcomes.
FRESH_HIT = "FRESH_HIT"
"""Serve C{lookup.head} and C{lookup.body} from the cache (a fresh
response, or a stale one the client accepts with C{max-stale}; 200, 206 or
the stored status)."""
NOT_MODIFIED = "NOT_MODIFIED"
"""The client's own conditional request matches a usable stored response:
send C{lookup.head}, a 304."""
REVALIDATE = "REVALIDATE"
"""A stored response was selected but cannot be used without validation
(stale, C{no-cache}, or the client asked): send C{lookup.forward}, a
conditional request, upstream."""
STALE_WHILE_REVALIDATE = "STALE_WHILE_REVALIDATE"
"""Serve the stale response now (RFC 5861 3) and revalidate in the
background with C{lookup.background}, a L{REVALIDATE} lookup of its own
(L{None} if a revalidation of that response is already in flight)."""
MISS = "MISS"
"""Nothing usable is stored: forward C{lookup.forward} (the request as
received); the response may be stored."""
COLLAPSED = "COLLAPSED"
"""Another request for the same URL is in flight: wait for it
(C{lookup.wait}), then call L{HTTPCache.lookupAgain}."""
ONLY_IF_CACHED_MISS = "ONLY_IF_CACHED_MISS"
"""The client sent C{only-if-cached} and nothing usable is stored: answer
C{lookup.error}, a 504 (RFC 9111 5.2.1.7)."""
BYPASS = "BYPASS"
"""The cache does not answer this request (its method, or a precondition
only the origin can evaluate): forward it untouched.  Its response still
goes to L{HTTPCache.responseReceived} (an unsafe method's response
invalidates, RFC 9111 4.4)."""


# Verdicts for the transaction record (records.record "cacheStatus").
VERDICT_HIT = "hit"
"""Served from the cache without contacting the origin."""
VERDICT_MISS = "miss"
"""Forwarded: nothing usable was stored."""
VERDICT_REVALIDATED = "revalidated"
"""Validated with the origin (a 304) and served from the cache."""
VERDICT_REFRESHED = "refreshed"
"""Validated with the origin, which sent a new response."""
VERDICT_STALE = "stale"
"""A stale response served (C{max-stale}, C{stale-while-revalidate},
C{stale-if-error})."""
VERDICT_BYPASS = "bypass"
"""The cache did not handle the request."""


class CacheLookup:
    """
    What the cache says about a request (see the module docstring for what
    the exchange does with each outcome).

    @ivar outcome: one of L{FRESH_HIT}, L{NOT_MODIFIED}, L{REVALIDATE},
        L{STALE_WHILE_REVALIDATE}, L{MISS}, L{COLLAPSED},
        L{ONLY_IF_CACHED_MISS}, L{BYPASS}.
    @ivar request: the request as received.
    @ivar target: where it goes.
    @ivar key: its primary cache key, or L{None} (bypassed).
    @ivar head: the response head to send from the cache, or L{None}.
    @ivar body: the stored body to stream after C{head}, or L{None}.
    @ivar forward: the request head to send upstream, or L{None}.
    @ivar error: the error to answer with (L{ONLY_IF_CACHED_MISS}).
    @ivar cacheStatus: the C{Cache-Status} member of this answer (already
        in C{head} when the cache answers).
    @ivar verdict: the record's cache verdict: C{"hit"}, C{"miss"},
        C{"revalidated"}, C{"refreshed"}, C{"stale"} or C{"bypass"}.
    @ivar fwd: why the request goes forward (RFC 9211 C{fwd}), if it does.
    @ivar background: for L{STALE_WHILE_REVALIDATE}, the lookup of the
        background revalidation (a L{REVALIDATE} whose decisions serve
        nobody), or L{None}.
    @ivar isBackground: this lookup is such a background revalidation.
    """

    head: ResponseHead | None = None
    body: CachedBody | None = None
    forward: RequestHead | None = None
    error: ProxyError | None = None
    cacheStatus: bytes | None = None
    verdict: str = VERDICT_MISS
    fwd: str | None = None
    key: str | None = None
    background: CacheLookup | None = None
    isBackground = False

    # Internal state.
    _entry: StoredResponse | None = None
    _flight: Flight | None = None
    _waiter: Waiter | None = None
    _collapsed: bool | None = None
    _backgroundId: str | None = None
    _sentETags: tuple[ETag, ...] = ()
    _clientETags: tuple[ETag, ...] = ()
    _detail: str | None = None
    _fields: dict[bytes, list[bytes]] | None = None
    _validated = False
    _writer: CacheWriter | None = None

    def __init__(
        self,
        outcome: str,
        request: RequestHead,
        target: Target,
        directives: RequestDirectives | None,
    ) -> None:
        self.outcome = outcome
        self.request = request
        self.target = target
        self._directives = directives

    def wait(self, callback: Callable[[str], None]) -> None:
        """
        For L{COLLAPSED}: call C{callback(result)} once the request waited
        for has its answer (C{"stored"} or C{"forward"}); then call
        L{HTTPCache.lookupAgain}.
        """
        if self._waiter is None:
            raise RuntimeError("only a COLLAPSED lookup can wait")
        self._waiter.wait(callback)

    def cancelWait(self) -> None:
        """
        Stop waiting (the exchange's timer fired, or the client left).
        """
        if self._waiter is not None:
            self._waiter.cancel()

    def __repr__(self) -> str:
        return "<CacheLookup {} {} {!r}>".format(self.outcome, self.key, self.cacheStatus)


class StoreDecision:
    """
    What to do with an upstream response (or an upstream failure).

    @ivar head: the response head to send the client: the upstream head with
        C{Cache-Status} (and C{Date} if it had none) when relaying, or the
        cache's own when C{fromCache}.
    @ivar fromCache: send C{head} and C{body} from the cache and discard the
        upstream response's body.
    @ivar body: the stored body to stream (C{fromCache}), or L{None}.
    @ivar writer: where to copy the relayed body, or L{None}.
    @ivar error: answer with this error instead (a stale response that must
        be revalidated, and the origin failed: 504).
    @ivar cacheStatus: the C{Cache-Status} member added.
    @ivar verdict: the record's cache verdict.
    """

    def __init__(
        self,
        head: ResponseHead | None,
        cacheStatus: bytes | None,
        verdict: str,
        *,
        fromCache: bool = False,
        body: CachedBody | None = None,
        writer: CacheWriter | None = None,
        error: ProxyError | None = None,
    ) -> None:
        self.head = head
        self.cacheStatus = cacheStatus
        self.verdict = verdict
        self.fromCache = fromCache
        self.body = body
        self.writer = writer
        self.error = error

    def __repr__(self) -> str:
        return "<StoreDecision {} fromCache={} writer={} {!r}>".format(
            self.verdict, self.fromCache, self.writer is not None, self.cacheStatus
        )
