# -*- test-case-name: tests.test_cache_http -*-
"""
L{HTTPCache}: the shared HTTP cache the exchange consults, built on the
rules of L{twisted_proxy.proxy.cache.rules} and a L{Store}.

How the exchange uses it, for one transaction::

    lookup = cache.lookup(requestHead, target)
    match lookup.outcome:
      FRESH_HIT, NOT_MODIFIED:
          send lookup.head, then stream lookup.body (None: no body)
      STALE_WHILE_REVALIDATE:
          send lookup.head and lookup.body as for a hit; and, if
          lookup.background is not None, revalidate in the background with
          that second lookup (a REVALIDATE whose answers go to nobody): send
          lookup.background.forward upstream, hand its response to
          responseReceived(lookup.background, ...) and feed the decision's
          writer, if any, or call upstreamFailed(lookup.background); then
          finished(lookup.background)
      COLLAPSED:
          lookup.wait(callback) with a timer of config.collapseTimeout;
          on callback or timeout (then lookup.cancelWait()):
          lookup = cache.lookupAgain(lookup) and start over with it
      ONLY_IF_CACHED_MISS:
          answer lookup.error (a 504 ProxyError carrying Cache-Status)
      MISS, REVALIDATE, BYPASS:
          send lookup.forward upstream (the request to send: REVALIDATE
          adds the cache's validators); then
          decision = cache.responseReceived(lookup, responseHead,
                                            requestTime, responseTime)
          if decision.fromCache: discard the upstream body; send
              decision.head and stream decision.body
          elif decision.error: answer decision.error
          else: send decision.head (the upstream head plus Cache-Status),
              relay the body, and give every chunk to decision.writer
              (if not None): writer.write(chunk) as it is relayed,
              writer.finish() at the end (at once for a bodiless
              response), writer.abort() if the transfer fails
      if the upstream cannot be reached or fails before a response head:
          decision = cache.upstreamFailed(lookup)  -> serve it as above,
          or its error, or (None) answer with the exchange's own error
    cache.finished(lookup)   # always, at the end of the transaction

Heads the cache gives (C{lookup.head}, C{decision.head}) hold end-to-end
fields only, with C{Content-Length} for bodies the cache serves; the
exchange applies C{forwardResponseHeaders} (C{Via}, connection fields) as
for any upstream response.  The cache is told the upstream response head as
received (before C{forwardResponseHeaders}); it removes the connection's
fields itself before storing.

Times (C{now()}, C{requestTime}, C{responseTime}) are POSIX seconds
(C{reactor.seconds()}): freshness compares them with C{Date} and
C{Expires}.

Pure: no I/O of its own (the store may do some), no Twisted reactor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from twisted.logger import Logger

from twisted_proxy.http.errors import GatewayTimeout, ProxyError
from twisted_proxy.http.framing import RequestHead, ResponseHead
from twisted_proxy.http.target import Target

from . import rules
from .collapse import FORWARD, STORED, CollapseRegistry, Flight, Waiter
from .dates import formatHTTPDate, parseHTTPDate
from .directives import RequestDirectives, ResponseDirectives
from .entry import StoredResponse
from .rules import ANY_ETAG, ETag
from .status import cacheStatusValue
from .store import CachedBody, EntryUnavailable, Store, StoreWriter

__all__ = [
    "HTTPCache",
    "CacheConfig",
    "CacheLookup",
    "StoreDecision",
    "CacheWriter",
    "CacheStats",
    "FRESH_HIT",
    "NOT_MODIFIED",
    "REVALIDATE",
    "STALE_WHILE_REVALIDATE",
    "MISS",
    "COLLAPSED",
    "ONLY_IF_CACHED_MISS",
    "BYPASS",
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
_HIT, _MISS, _REVALIDATED, _REFRESHED, _STALE, _BYPASS = (
    "hit",
    "miss",
    "revalidated",
    "refreshed",
    "stale",
    "bypass",
)

# RFC 5861 4: "an error is any situation that would result in a 500, 502,
# 503, or 504 HTTP response status code being returned".
_ERROR_STATUSES = frozenset([500, 502, 503, 504])

# RFC 9110 15.4.5: the fields a 304 carries (those "that would have been sent
# in a 200 (OK) response to the same request"), plus Last-Modified (useful to
# the client when there is no ETag).
_NOT_MODIFIED_FIELDS = frozenset(
    [b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary", b"last-modified"]
)
_CONDITIONAL_FIELDS = frozenset([b"if-none-match", b"if-modified-since"])
_NOT_IN_BACKGROUND = _CONDITIONAL_FIELDS | {b"range", b"if-range"}
# The request fields the cache's decisions read, gathered in one pass.
_LOOKED_AT = frozenset(
    [
        b"cache-control",
        b"pragma",
        b"authorization",
        b"range",
        b"if-range",
        b"if-match",
        b"if-unmodified-since",
        b"if-none-match",
        b"if-modified-since",
    ]
)


def _requestFields(headers: list[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    """
    The values of the request fields the cache reads (L{_LOOKED_AT}), by
    lower-case name: one pass over the header section.
    """
    found: dict[bytes, list[bytes]] = {}
    for n, v in headers:
        ln = n.lower()
        if ln in _LOOKED_AT:
            found.setdefault(ln, []).append(v)
    return found


_STATUSES_WITHOUT_BODY = frozenset([204, 304])


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


class _Derived:
    """
    What the cache computes once per stored response (kept on
    L{StoredResponse.derived}).
    """

    __slots__ = ("directives", "lifetime", "heuristic", "etag")

    def __init__(
        self, directives: ResponseDirectives, lifetime: float, heuristic: bool, etag: ETag | None
    ) -> None:
        self.directives = directives
        self.lifetime = lifetime
        self.heuristic = heuristic
        self.etag = etag


_NO_DIRECTIVES = RequestDirectives([])


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
    verdict: str = _MISS
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


class CacheWriter:
    """
    Copies a relayed response body into the store.

    Call L{write} with each chunk as it is relayed, then L{finish} at the end
    of the body (at once for a response without one), or L{abort} if the
    transfer fails.  Once the store gives up (too large, no room), writes
    are ignored and nothing is stored; relaying goes on.
    """

    _state = "WRITING"  # -> "DONE" | "ABORTED" | "GAVE_UP"

    def __init__(
        self,
        cache: HTTPCache,
        lookup: CacheLookup,
        writer: StoreWriter,
        entry: StoredResponse,
        request: RequestHead,
    ) -> None:
        self._cache = cache
        self._lookup = lookup
        self._writer = writer
        self._entry = entry
        self._request = request

    @property
    def failed(self) -> str | None:
        return self._writer.failed

    def write(self, data: bytes) -> bool:
        """
        @return: whether the writer still stores (C{False} once it gave up).
        """
        if self._state != "WRITING":
            return False
        if self._writer.write(data):
            return True
        self._state = "GAVE_UP"
        self._cache.stats.storeFailures += 1
        self._cache._flightEnded(self._lookup, FORWARD)
        return False

    def finish(self) -> StoredResponse | None:
        """
        The body is complete: commit it.

        @return: the stored entry, or L{None} if nothing was stored.
        """
        if self._state != "WRITING":
            return None
        entry = self._writer.commit()
        if entry is None:
            self._state = "GAVE_UP"
            self._cache.stats.storeFailures += 1
            self._cache._flightEnded(self._lookup, FORWARD)
            return None
        self._state = "DONE"
        self._cache._committed(self._lookup, entry, self._request)
        return entry

    def abort(self) -> None:
        """
        The transfer failed: store nothing.  Idempotent.
        """
        if self._state != "WRITING":
            return
        self._state = "ABORTED"
        self._writer.abort()
        self._cache._flightEnded(self._lookup, FORWARD)


class HTTPCache:
    """
    A shared HTTP cache (RFC 9111, RFC 5861, RFC 9211) over a L{Store}.

    See the module docstring for the protocol the exchange follows.

    @ivar store: where responses are kept.
    @ivar config: the L{CacheConfig}.
    @ivar stats: the L{CacheStats}.
    @ivar _now: the clock (POSIX seconds).
    @ivar _flights: the collapsed-forwarding registry.
    @ivar _revalidating: entry ids with a background revalidation in
        flight (stale-while-revalidate).
    """

    _log = Logger()

    def __init__(
        self, store: Store, now: Callable[[], float], config: CacheConfig | None = None
    ) -> None:
        self.store = store
        self.config = config if config is not None else CacheConfig()
        self.stats = CacheStats()
        self._now = now
        self._flights = CollapseRegistry(self.config.maxCollapsedWaiters)
        self._hitPrefix = self._status(hit=True) + b"; ttl="
        self._revalidating: set[str] = set()

    # Metrics that the store keeps.

    @property
    def entries(self) -> int:
        return self.store.count

    @property
    def storedBytes(self) -> int:
        return self.store.size

    @property
    def evictions(self) -> int:
        return self.store.evictions

    # Derived values of stored responses.

    def _derived(self, entry: StoredResponse) -> _Derived:
        d = entry.derived
        if d is None:
            directives = ResponseDirectives.fromHeaders(entry.headers)
            lifetime, heuristic = rules.freshnessLifetime(
                entry.status,
                entry.headers,
                directives,
                entry.responseTime,
                self.config.heuristicFraction,
                self.config.heuristicMax,
            )
            d = entry.derived = _Derived(
                directives, lifetime, heuristic, ETag.parse(entry.get(b"etag"))
            )
        assert isinstance(d, _Derived)
        return d

    def _status(self, **params: object) -> bytes:
        return cacheStatusValue(self.config.name, **params)  # type: ignore[arg-type]

    # Lookup.

    def lookup(self, request: RequestHead, target: Target) -> CacheLookup:
        """
        What to do with a request: see L{CacheLookup} and the outcomes.
        """
        # Nobody waits for a response that cannot be stored.
        collapse = self.config.collapsedForwarding and self.store.capacity > 0
        return self._lookup(request, target, collapse=collapse, collapsed=None)

    def lookupAgain(self, previous: CacheLookup) -> CacheLookup:
        """
        Look a L{COLLAPSED} request up again after its wait ended (or timed
        out): it never waits a second time.
        """
        previous.cancelWait()
        waiter = previous._waiter
        collapsed = waiter is not None and waiter.result == STORED
        self._finish(previous)
        return self._lookup(previous.request, previous.target, collapse=False, collapsed=collapsed)

    def _lookup(
        self, request: RequestHead, target: Target, collapse: bool, collapsed: bool | None
    ) -> CacheLookup:
        self.stats.lookups += 1
        method = request.method
        if method not in (b"GET", b"HEAD"):
            return self._bypass(request, target, None, "method")
        if target.scheme != "http" or target.path in (b"", b"*"):
            return self._bypass(request, target, None, "bypass")
        fields = _requestFields(request.headers)
        if b"cache-control" in fields or b"pragma" in fields:
            reqCC = RequestDirectives.fromHeaders(request.headers)
        else:
            reqCC = _NO_DIRECTIVES
        if b"if-match" in fields or b"if-unmodified-since" in fields:
            # Preconditions for the origin (RFC 9111 4.3.2: "A cache MUST
            # NOT evaluate conditional header fields that only apply to an
            # origin server").
            return self._bypass(request, target, reqCC, "bypass", detail="precondition")
        key = rules.primaryKey(target)
        variants = self.store.variants(key)
        entry = self._select(variants, request.headers)
        if entry is None:
            reason = "vary-miss" if variants else "uri-miss"
            return self._miss(request, target, reqCC, key, reason, collapse, collapsed)
        now = self._now()
        d = self._derived(entry)
        age = rules.currentAge(entry, now)
        lifetime = d.lifetime
        fresh = lifetime > age and not entry.invalidated
        cc = d.directives
        mustValidate = cc.noCache or entry.invalidated
        if not reqCC.noCache and not mustValidate and self._acceptable(age, lifetime, reqCC, cc):
            lk = CacheLookup(FRESH_HIT, request, target, reqCC)
            lk._fields = fields
            lk.key = key
            lk._entry = entry
            if fresh:
                if collapsed:
                    status = self._status(hit=True, ttl=lifetime - age, collapsed=True)
                else:
                    # The common case, without the general builder.
                    status = self._hitPrefix + b"%d" % (math.floor(lifetime - age),)
                return self._serve(lk, entry, age, _HIT, status, collapsed)
            self.stats.staleHits += 1
            return self._serve(
                lk,
                entry,
                age,
                _STALE,
                self._status(hit=True, ttl=lifetime - age, detail="max-stale"),
                collapsed,
            )
        fwd = "stale" if (mustValidate or not fresh) else "request"
        if reqCC.onlyIfCached:
            return self._onlyIfCachedMiss(request, target, reqCC, key, fwd)
        if (
            not fresh
            and not mustValidate
            and not reqCC.noCache
            and cc.staleWhileRevalidate is not None
            and not cc.prohibitsStale
            and age - lifetime <= cc.staleWhileRevalidate
            and (reqCC.maxAge is None or age <= reqCC.maxAge)
            and reqCC.minFresh is None
        ):
            return self._staleWhileRevalidate(request, target, reqCC, key, entry, age, lifetime)
        lk = CacheLookup(REVALIDATE, request, target, reqCC)
        lk.key = key
        lk._entry = entry
        lk.fwd = fwd
        lk.verdict = _REFRESHED
        lk._collapsed = collapsed
        if collapse and fwd == "stale" and self._canWait(request, reqCC):
            waiter = self._flights.join(key)
            if waiter is not None:
                return self._collapsedLookup(request, target, reqCC, key, waiter, fwd)
            if self._canLead(request, reqCC):
                lk._flight = self._flights.lead(key)
        lk.forward = self._conditionalRequest(lk, entry, variants)
        lk.cacheStatus = self._status(fwd=fwd, collapsed=collapsed)
        self.stats.revalidations += 1
        return lk

    def _select(
        self, variants: list[StoredResponse], headers: list[tuple[bytes, bytes]]
    ) -> StoredResponse | None:
        """
        The stored response to use for a request (RFC 9111 4.1): of those
        whose C{Vary} matches, "the most recent response (as determined by
        the Date header field)".
        """
        best: StoredResponse | None = None
        for entry in variants:
            if not rules.varyMatches(entry, headers):
                continue
            if best is None or (entry.dateValue, entry.responseTime) > (
                best.dateValue,
                best.responseTime,
            ):
                best = entry
        return best

    @staticmethod
    def _acceptable(
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

    def _canLead(self, request: RequestHead, reqCC: RequestDirectives) -> bool:
        """
        Whether a request may be the one others wait for: a plain GET whose
        response can be shared.
        """
        return (
            request.method == b"GET"
            and request.get(b"authorization") is None
            and request.get(b"range") is None
            and not reqCC.noStore
            and not any(n.lower() in _CONDITIONAL_FIELDS for n, _ in request.headers)
        )

    def _canWait(self, request: RequestHead, reqCC: RequestDirectives) -> bool:
        """
        Whether a request may wait for another's response (then be answered
        from the cache): not one that must not share (C{Authorization}) or
        insists on the origin (C{no-cache}).
        """
        return request.get(b"authorization") is None and not reqCC.noCache

    def _bypass(
        self,
        request: RequestHead,
        target: Target,
        reqCC: RequestDirectives | None,
        fwd: str,
        detail: str | None = None,
    ) -> CacheLookup:
        self.stats.bypasses += 1
        lk = CacheLookup(BYPASS, request, target, reqCC)
        lk.fwd = fwd
        lk.verdict = _BYPASS
        lk.forward = request
        lk.cacheStatus = self._status(fwd=fwd, detail=detail)
        lk._detail = detail
        return lk

    def _miss(
        self,
        request: RequestHead,
        target: Target,
        reqCC: RequestDirectives,
        key: str,
        reason: str,
        collapse: bool,
        collapsed: bool | None,
    ) -> CacheLookup:
        if reqCC.onlyIfCached:
            return self._onlyIfCachedMiss(request, target, reqCC, key, reason)
        if collapse and self._canWait(request, reqCC):
            waiter = self._flights.join(key)
            if waiter is not None:
                return self._collapsedLookup(request, target, reqCC, key, waiter, reason)
        self.stats.misses += 1
        lk = CacheLookup(MISS, request, target, reqCC)
        lk.key = key
        lk.fwd = reason
        lk.forward = request
        lk._collapsed = collapsed
        if collapse and self._canLead(request, reqCC):
            lk._flight = self._flights.lead(key)
        lk.cacheStatus = self._status(fwd=reason, collapsed=collapsed)
        return lk

    def _collapsedLookup(
        self,
        request: RequestHead,
        target: Target,
        reqCC: RequestDirectives,
        key: str,
        waiter: Waiter,
        reason: str,
    ) -> CacheLookup:
        self.stats.collapsed += 1
        lk = CacheLookup(COLLAPSED, request, target, reqCC)
        lk.key = key
        lk.fwd = reason
        lk._waiter = waiter
        return lk

    def _onlyIfCachedMiss(
        self, request: RequestHead, target: Target, reqCC: RequestDirectives, key: str, reason: str
    ) -> CacheLookup:
        """
        RFC 9111 5.2.1.7: "a cache SHOULD [...] respond with either a stored
        response consistent with the other constraints of the request
        message or a 504 (Gateway Timeout) status code".
        """
        self.stats.misses += 1
        lk = CacheLookup(ONLY_IF_CACHED_MISS, request, target, reqCC)
        lk.key = key
        lk.verdict = _MISS
        status = self._status(detail="only-if-cached")
        lk.cacheStatus = status
        lk.error = GatewayTimeout(
            "The request allows only a cached response (only-if-cached) and none can be used; "
            "retry without only-if-cached.",
            proxyStatus="",
            headers=(("Cache-Status", status.decode("ascii")),),
        )
        return lk

    def _staleWhileRevalidate(
        self,
        request: RequestHead,
        target: Target,
        reqCC: RequestDirectives,
        key: str,
        entry: StoredResponse,
        age: float,
        lifetime: float,
    ) -> CacheLookup:
        """
        RFC 5861 3: "caches MAY serve the response in which it appears after
        it becomes stale, up to the indicated number of seconds [...] If a
        cached response is served stale due to the presence of this
        extension, the cache SHOULD attempt to revalidate it while still
        serving stale responses (i.e., without blocking)."
        """
        self.stats.staleHits += 1
        lk = CacheLookup(STALE_WHILE_REVALIDATE, request, target, reqCC)
        lk.key = key
        lk._entry = entry
        served = self._serve(
            lk,
            entry,
            age,
            _STALE,
            self._status(hit=True, ttl=lifetime - age, detail="stale-while-revalidate"),
            None,
        )
        if served.outcome not in (FRESH_HIT, NOT_MODIFIED):
            # The body could not be read: it was a miss after all.
            return served
        lk.outcome = STALE_WHILE_REVALIDATE
        if entry.entryId not in self._revalidating:
            self._revalidating.add(entry.entryId)
            # The cache's own validation: a GET, without the client's range
            # or conditionals, with a lookup of its own.
            request = RequestHead(
                b"GET",
                request.target,
                request.version,
                [(n, v) for n, v in request.headers if n.lower() not in _NOT_IN_BACKGROUND],
            )
            bg = CacheLookup(
                REVALIDATE, request, target, RequestDirectives.fromHeaders(request.headers)
            )
            bg.isBackground = True
            bg.key = key
            bg._entry = entry
            bg.fwd = "stale"
            bg.verdict = _REFRESHED
            bg._backgroundId = entry.entryId
            bg.forward = self._conditionalRequest(bg, entry, self.store.variants(key))
            bg.cacheStatus = self._status(fwd="stale", detail="background")
            lk.background = bg
            self.stats.revalidations += 1
        return lk

    def _conditionalRequest(
        self,
        lk: CacheLookup,
        entry: StoredResponse,
        variants: list[StoredResponse],
        request: RequestHead | None = None,
    ) -> RequestHead:
        """
        The request that validates C{entry} (RFC 9111 4.3.1): the client's
        request with C{If-None-Match} listing the entity tags of every
        stored response for the URI (so that the origin can pick the one it
        would send, 4.3.1 and 4.3.4) and the client's own (4.3.2: "the cache
        MAY combine the received list with a list of entity tags from its
        own stored set of responses"), and C{If-Modified-Since} with the
        selected response's C{Last-Modified}.

        Without any validator of its own, or when the client sent
        C{If-None-Match: *} (which no list of tags can be combined with),
        the cache forwards the request as it came.
        """
        request = request if request is not None else lk.request
        lastModified = entry.get(b"last-modified")
        ours: list[ETag] = []
        for v in variants:
            tag = self._derived(v).etag
            if tag is not None and tag not in ours:
                ours.append(tag)
        client = rules.parseETagList(request.get(b"if-none-match"))
        if (not ours and lastModified is None) or client is ANY_ETAG:
            return request
        clientTags: list[ETag] = list(client) if isinstance(client, list) else []
        lk._clientETags = tuple(clientTags)
        lk._sentETags = tuple(ours)
        lk._validated = True
        headers = [(n, v) for n, v in request.headers if n.lower() not in _CONDITIONAL_FIELDS]
        tags = clientTags + [t for t in ours if t not in clientTags]
        if tags:
            headers.append((b"If-None-Match", b", ".join(t.serialise() for t in tags)))
        if lastModified is not None:
            headers.append((b"If-Modified-Since", lastModified))
        return RequestHead(
            request.method,
            request.target,
            request.version,
            headers,
            contentLength=request.contentLength,
            chunked=request.chunked,
            keepAlive=request.keepAlive,
        )

    # Serving stored responses.

    def _serve(
        self,
        lk: CacheLookup,
        entry: StoredResponse,
        age: float,
        verdict: str,
        status: bytes,
        collapsed: bool | None,
        validated: bool = False,
    ) -> CacheLookup:
        """
        Fill C{lk} to serve C{entry}: a 304 if the client's own conditional
        matches (RFC 9111 4.3.2), else the stored response (the whole, its
        head only for HEAD, or one byte range).  If the stored body cannot
        be read, the entry is dropped and the request becomes a miss.
        """
        try:
            head, body = self._answer(lk.request, entry, age, status, validated, lk._fields)
        except EntryUnavailable:
            self.stats.unavailable += 1
            self.store.delete(entry)
            reqCC = lk._directives or RequestDirectives([])
            return self._miss(lk.request, lk.target, reqCC, entry.key, "uri-miss", False, collapsed)
        self.store.touch(entry)
        lk.outcome = NOT_MODIFIED if head.status == 304 else FRESH_HIT
        lk.head = head
        lk.body = body
        lk.cacheStatus = status
        lk.verdict = verdict
        if verdict == _HIT:
            self.stats.hits += 1
        return lk

    def _answer(
        self,
        request: RequestHead,
        entry: StoredResponse,
        age: float,
        status: bytes,
        validated: bool,
        fields: dict[bytes, list[bytes]] | None = None,
    ) -> tuple[ResponseHead, CachedBody | None]:
        """
        The head (and body) that answers C{request} from C{entry}.

        @param validated: the entry was just validated with the origin, so
            the fields of a qualified C{no-cache} may be sent (RFC 9111
            5.2.2.4).
        @param fields: the request's fields the cache reads, if known.
        @raise EntryUnavailable: if the body cannot be read.
        """
        if fields is None:
            fields = _requestFields(request.headers)
        d = self._derived(entry)
        headers = entry.headers
        if d.directives.noCacheFields and not validated:
            headers = [(n, v) for n, v in headers if n.lower() not in d.directives.noCacheFields]
        ageField = (b"Age", b"%d" % (int(age),))
        cacheStatus = (b"Cache-Status", status)
        if (
            (b"if-none-match" in fields or b"if-modified-since" in fields)
            and 200 <= entry.status < 300
            and rules.notModified(request, entry)
        ):
            # (RFC 9110 13.2.1: conditionals are evaluated only when the
            # response would otherwise be 2xx.)
            kept = [(n, v) for n, v in headers if n.lower() in _NOT_MODIFIED_FIELDS]
            if d.etag is not None:
                kept = [(n, v) for n, v in kept if n.lower() != b"last-modified"]
            return ResponseHead(
                304, b"Not Modified", entry.version, kept + [ageField, cacheStatus], noBody=True
            ), None
        length = entry.bodyLength
        if entry.status in _STATUSES_WITHOUT_BODY:
            return (
                ResponseHead(
                    entry.status,
                    entry.reason,
                    entry.version,
                    headers + [ageField, cacheStatus],
                    noBody=True,
                ),
                None,
            )
        if request.method == b"HEAD":
            return (
                ResponseHead(
                    entry.status,
                    entry.reason,
                    entry.version,
                    headers + [(b"Content-Length", b"%d" % (length,)), ageField, cacheStatus],
                    contentLength=length,
                    noBody=True,
                ),
                None,
            )
        byteRange = None
        if entry.status == 200 and b"range" in fields and self._ifRangeHolds(request, entry):
            byteRange = rules.parseRange(request.get(b"range"), length)
        if byteRange is not None:
            first, last = byteRange
            size = last - first + 1
            body = self.store.openBody(entry, first, size)
            return (
                ResponseHead(
                    206,
                    b"Partial Content",
                    entry.version,
                    headers
                    + [
                        (b"Content-Range", b"bytes %d-%d/%d" % (first, last, length)),
                        (b"Content-Length", b"%d" % (size,)),
                        ageField,
                        cacheStatus,
                    ],
                    contentLength=size,
                ),
                body,
            )
        body = self.store.openBody(entry)
        return (
            ResponseHead(
                entry.status,
                entry.reason,
                entry.version,
                headers + [(b"Content-Length", b"%d" % (length,)), ageField, cacheStatus],
                contentLength=length,
            ),
            body,
        )

    def _ifRangeHolds(self, request: RequestHead, entry: StoredResponse) -> bool:
        """
        RFC 9110 13.1.5: a C{Range} with C{If-Range} is honoured only if the
        validator matches the stored response by strong comparison (an
        entity tag, or a strong C{Last-Modified} date equal to the one
        given).
        """
        ifRange = request.get(b"if-range")
        if ifRange is None:
            return True
        ifRange = ifRange.strip()
        if ifRange.startswith((b'"', b"W/")):
            given = ETag.parse(ifRange)
            mine = self._derived(entry).etag
            return given is not None and mine is not None and mine.strongMatch(given)
        date = parseHTTPDate(ifRange, entry.responseTime)
        lastModified = rules.entryLastModified(entry)
        return (
            date is not None
            and lastModified == date
            and rules.isStrongLastModified(lastModified, entry.dateValue)
        )

    # Responses.

    def responseReceived(
        self,
        lookup: CacheLookup,
        response: ResponseHead,
        requestTime: float,
        responseTime: float,
    ) -> StoreDecision:
        """
        The final response to C{lookup.forward} arrived (not for 1xx).

        @param response: the head as received from upstream.
        @param requestTime: when the request was sent.
        @param responseTime: when the response head arrived.
        """
        lk = lookup
        request = lk.request
        method = request.method
        status = response.status
        if rules.isUnsafe(method):
            removed = 0
            for key in rules.invalidationKeys(request, lk.target, response):
                removed += self.store.deleteKey(key)
            self.stats.invalidations += removed
        if lk.outcome == BYPASS and method not in (b"GET", b"HEAD"):
            return self._relay(lk, response, responseTime, lk.fwd or "method", _BYPASS)
        key = lk.key if lk.key is not None else rules.primaryKey(lk.target)
        if status == 304:
            return self._notModifiedReceived(lk, request, key, response, requestTime, responseTime)
        if method == b"HEAD":
            if status == 200:
                self._freshenFromHead(request, key, response, requestTime, responseTime)
            self._flightEnded(lk, FORWARD)
            self._releaseBackground(lk)
            verdict = (
                _REFRESHED
                if lk.outcome == REVALIDATE
                else (_BYPASS if lk.outcome == BYPASS else _MISS)
            )
            return self._relay(lk, response, responseTime, lk.fwd or "uri-miss", verdict)
        if (
            lk.outcome == REVALIDATE
            and status in _ERROR_STATUSES
            and lk._entry is not None
            and not lk.isBackground
        ):
            served = self._serveStaleOnError(lk, fwdStatus=status)
            if served is not None:
                self._flightEnded(lk, FORWARD)
                return served
        return self._maybeStore(lk, request, key, response, requestTime, responseTime)

    def _relay(
        self,
        lk: CacheLookup,
        response: ResponseHead,
        responseTime: float,
        fwd: str,
        verdict: str,
        *,
        stored: bool = False,
        detail: str | None = None,
        writer: CacheWriter | None = None,
    ) -> StoreDecision:
        status = self._status(
            fwd=fwd,
            fwdStatus=response.status,
            stored=stored,
            collapsed=lk._collapsed,
            detail=detail if detail is not None else lk._detail,
        )
        headers = list(response.headers)
        if not any(n.lower() == b"date" for n, _ in headers):
            headers.append((b"Date", formatHTTPDate(responseTime)))
        headers.append((b"Cache-Status", status))
        head = ResponseHead(
            response.status,
            response.reason,
            response.version,
            headers,
            contentLength=response.contentLength,
            chunked=response.chunked,
            closeDelimited=response.closeDelimited,
            noBody=response.noBody,
        )
        return StoreDecision(head, status, verdict, writer=writer)

    def _maybeStore(
        self,
        lk: CacheLookup,
        request: RequestHead,
        key: str,
        response: ResponseHead,
        requestTime: float,
        responseTime: float,
    ) -> StoreDecision:
        reqCC = lk._directives or RequestDirectives.fromHeaders(request.headers)
        cc = ResponseDirectives.fromHeaders(response.headers)
        fwd = lk.fwd or "uri-miss"
        verdict = (
            _REFRESHED if lk.outcome == REVALIDATE else (_BYPASS if lk.outcome == BYPASS else _MISS)
        )
        reason = rules.unstorableReason(request, reqCC, response, cc)
        entry: StoredResponse | None = None
        if reason is None:
            entry = self._newEntry(key, request, response, cc, requestTime, responseTime)
            d = self._derived(entry)
            if (
                (d.lifetime <= 0 or d.directives.noCache)
                and d.etag is None
                and entry.get(b"last-modified") is None
                and cc.staleIfError is None
            ):
                # Never fresh and impossible to validate: storing it could
                # never save a transfer.
                reason = "no-validator"
                entry = None
        writer: CacheWriter | None = None
        if entry is not None:
            expected = (
                None if (response.chunked or response.closeDelimited) else response.contentLength
            )
            if response.noBody:
                expected = 0
            storeWriter = self.store.openWriter(entry, expected)
            if storeWriter is None:
                if self.store.capacity:
                    reason = "too-large"
                    self.stats.storeFailures += 1
                else:
                    reason = "disabled"
            else:
                writer = CacheWriter(self, lk, storeWriter, entry, request)
                lk._writer = writer
        if writer is None:
            if lk.outcome == REVALIDATE and lk._entry is not None and response.status < 500:
                # The origin sent a new response instead of a 304: the
                # stored one is superseded.
                self.store.delete(lk._entry)
            self._flightEnded(lk, FORWARD)
            self._releaseBackground(lk)
            return self._relay(lk, response, responseTime, fwd, verdict, detail=reason)
        return self._relay(lk, response, responseTime, fwd, verdict, stored=True, writer=writer)

    def _newEntry(
        self,
        key: str,
        request: RequestHead,
        response: ResponseHead,
        cc: ResponseDirectives,
        requestTime: float,
        responseTime: float,
    ) -> StoredResponse:
        names = rules.varyNames(response.headers)
        assert isinstance(names, tuple)
        headers = rules.storedHeaders(response.headers, cc, responseTime)
        return StoredResponse(
            key=key,
            varyNames=names,
            varyValues=rules.secondaryKey(names, request.headers),
            status=response.status,
            reason=response.reason,
            version=response.version,
            headers=headers,
            requestTime=requestTime,
            responseTime=responseTime,
            dateValue=rules.dateValueOf(response.headers, responseTime),
            ageValue=rules.parseAge(response.headers),
        )

    def _committed(self, lk: CacheLookup, entry: StoredResponse, request: RequestHead) -> None:
        """
        A response was stored: drop the stored responses it supersedes,
        those the same request would have selected (and, if it has no
        C{Vary}, all of them: it matches every request and is the most
        recent), and wake the waiters.
        """
        self.stats.stored += 1
        self.stats.bytesStored += entry.bodyLength
        for other in self.store.variants(entry.key):
            if other.entryId == entry.entryId:
                continue
            if not entry.varyNames or rules.varyMatches(other, request.headers):
                if (other.dateValue, other.responseTime) > (entry.dateValue, entry.responseTime):
                    # Two writes raced and the other is more recent (by
                    # Date, as 4.1 selects): it stays, this one goes.
                    self.store.delete(entry)
                    break
                self.store.delete(other)
        self._flightEnded(lk, STORED)
        self._releaseBackground(lk)

    def _freshen(
        self,
        entry: StoredResponse,
        response: ResponseHead,
        requestTime: float,
        responseTime: float,
        requestHeaders: list[tuple[bytes, bytes]],
    ) -> tuple[StoredResponse, bool]:
        """
        C{entry} freshened by C{response} (a 304 or a 200 to HEAD): its
        fields updated (RFC 9111 3.2), its times those of this exchange;
        and whether it may be kept (not if the new fields say C{no-store},
        C{private} or C{Vary: *}: it may then be served this once, and is
        deleted).
        """
        newCC = ResponseDirectives.fromHeaders(response.headers)
        headers = rules.updateHeaders(entry.headers, response.headers, newCC)
        if not any(n.lower() == b"date" for n, _ in response.headers):
            headers = [(n, v) for n, v in headers if n.lower() != b"date"]
            headers.append((b"Date", formatHTTPDate(responseTime)))
        merged = ResponseDirectives.fromHeaders(headers)
        names = rules.varyNames(headers)
        keep = not (
            names is rules.VARY_STAR
            or (merged.noStore and not merged.mustUnderstand)
            or merged.private
        )
        if not isinstance(names, tuple):
            names = entry.varyNames
        varyValues = entry.varyValues
        if names != entry.varyNames:
            varyValues = rules.secondaryKey(names, requestHeaders)
        fresh = entry.copy(
            headers=headers,
            varyNames=names,
            varyValues=varyValues,
            requestTime=requestTime,
            responseTime=responseTime,
            dateValue=rules.dateValueOf(headers, responseTime),
            ageValue=rules.parseAge(response.headers),
            invalidated=False,
        )
        return fresh, keep

    def _notModifiedReceived(
        self,
        lk: CacheLookup,
        request: RequestHead,
        key: str,
        response: ResponseHead,
        requestTime: float,
        responseTime: float,
    ) -> StoreDecision:
        """
        A 304 (RFC 9111 4.3.3, 4.3.4): freshen the stored responses it
        identifies; then, if it answered the cache's own validation, serve
        the freshened response (or a 304 if the client's own conditional
        matches it, 4.3.2); otherwise relay it (it answered the client's
        conditional).
        """
        candidates = self.store.variants(key)
        selected = rules.selectForUpdate(response, candidates, responseTime)
        entry = lk._entry
        if (
            not selected
            and entry is not None
            and lk._validated
            and not lk._clientETags
            and response.get(b"etag") is None
            and response.get(b"last-modified") is None
            and all(t == self._derived(entry).etag for t in lk._sentETags)
        ):
            # A 304 without validators to a validation that named only this
            # response's validators (its ETag, its Last-Modified; none of
            # the client's): it can only be about this one.  (RFC 9111 4.3.4
            # does not cover this common case: origins often answer
            # If-Modified-Since with a bare 304.)
            selected = [entry]
        updated: list[StoredResponse] = []
        doomed: list[StoredResponse] = []
        for stored in selected:
            new, keep = self._freshen(stored, response, requestTime, responseTime, request.headers)
            if keep:
                result = self.store.update(stored, new)
                if result is not None:
                    updated.append(result)
            else:
                # Served this once (it was validated), then deleted.
                doomed.append(stored)
                updated.append(new)
        self._releaseBackground(lk)
        fwd = lk.fwd or "uri-miss"
        try:
            if lk.outcome != REVALIDATE or not updated:
                self._flightEnded(lk, STORED if updated and not doomed else FORWARD)
                verdict = _BYPASS if lk.outcome == BYPASS else _MISS
                return self._relay(lk, response, responseTime, fwd, verdict)
            self.stats.notModified += 1
            if lk.isBackground:
                # A background revalidation: nobody to answer.
                self._flightEnded(lk, STORED)
                return StoreDecision(None, None, _REVALIDATED)
            chosen = None
            if entry is not None:
                chosen = next((u for u in updated if u.entryId == entry.entryId), None)
            if chosen is None:
                chosen = self._select(updated, request.headers) or updated[0]
            d = self._derived(chosen)
            age = rules.currentAge(chosen, self._now())
            status = self._status(
                fwd=fwd, fwdStatus=304, collapsed=lk._collapsed, ttl=d.lifetime - age
            )
            try:
                head, body = self._answer(lk.request, chosen, age, status, validated=True)
            except EntryUnavailable:
                self.stats.unavailable += 1
                self.store.delete(chosen)
                self._flightEnded(lk, FORWARD)
                return self._relay(lk, response, responseTime, fwd, _MISS, detail="unavailable")
            self._flightEnded(lk, FORWARD if chosen in doomed else STORED)
            self.store.touch(chosen)
            return StoreDecision(head, status, _REVALIDATED, fromCache=True, body=body)
        finally:
            for stored in doomed:
                self.store.delete(stored)

    def _freshenFromHead(
        self,
        request: RequestHead,
        key: str,
        response: ResponseHead,
        requestTime: float,
        responseTime: float,
    ) -> None:
        """
        RFC 9111 4.3.5: on a 200 to HEAD, "the cache SHOULD update or
        invalidate each of its stored GET responses that could have been
        chosen for that request [...] if the stored response and HEAD
        response have matching values for any received validator fields
        (ETag and Last-Modified) and, if the HEAD response has a
        Content-Length header field, the value of Content-Length matches
        that of the stored response, the cache SHOULD update the stored
        response [...]; otherwise, the cache SHOULD consider the stored
        response to be stale."
        """
        etag = response.get(b"etag")
        lastModified = response.get(b"last-modified")
        length = response.get(b"content-length")
        for stored in self.store.variants(key):
            if not rules.varyMatches(stored, request.headers):
                continue
            matches = (
                (etag is None or stored.get(b"etag") == etag)
                and (lastModified is None or stored.get(b"last-modified") == lastModified)
                and (length is None or length.strip() == b"%d" % (stored.bodyLength,))
            )
            if matches:
                new, keep = self._freshen(
                    stored, response, requestTime, responseTime, request.headers
                )
            else:
                new, keep = stored.copy(invalidated=True), True
            if keep:
                self.store.update(stored, new)
            else:
                self.store.delete(stored)

    # Failures.

    def upstreamFailed(self, lookup: CacheLookup) -> StoreDecision | None:
        """
        The upstream could not be reached, or failed before a response head
        (for C{lookup.forward}).

        @return: a decision to serve a stale response (RFC 5861 4
            C{stale-if-error}, or L{CacheConfig.staleOnDisconnect}); a
            decision carrying a 504 error when the stored response must not
            be served stale (RFC 9111 5.2.2.2: "if a cache is disconnected,
            the cache MUST generate an error response rather than reuse the
            stale response.  The generated status code SHOULD be 504");
            or L{None}: answer with the exchange's own error.
        """
        lk = lookup
        self._flightEnded(lk, FORWARD)
        self._releaseBackground(lk)
        if lk.outcome != REVALIDATE or lk._entry is None or lk.isBackground:
            return None
        served = self._serveStaleOnError(lk, fwdStatus=None)
        if served is not None:
            return served
        entry = lk._entry
        d = self._derived(entry)
        age = rules.currentAge(entry, self._now())
        if (
            d.directives.mustRevalidate
            or d.directives.proxyRevalidate
            or d.directives.sMaxAge is not None
        ) and age >= d.lifetime:
            status = self._status(fwd="stale", detail="must-revalidate")
            return StoreDecision(
                None,
                status,
                _MISS,
                error=GatewayTimeout(
                    "The cached response must be revalidated (must-revalidate) and the origin "
                    "could not be reached; retry later.",
                    headers=(("Cache-Status", status.decode("ascii")),),
                ),
            )
        return None

    def _serveStaleOnError(self, lk: CacheLookup, fwdStatus: int | None) -> StoreDecision | None:
        """
        Serve the selected stored response after an error (RFC 5861 4): if
        C{stale-if-error} in the response or the request covers its
        staleness, or (when the origin could not be reached)
        L{CacheConfig.staleOnDisconnect} does; never when a directive
        forbids serving it stale (RFC 9111 4.2.4: "A cache MUST NOT generate
        a stale response if it is prohibited by an explicit in-protocol
        directive"), and, when the client asked for validation (C{no-cache},
        C{max-age}), only if the client's own C{stale-if-error} allows it.
        """
        entry = lk._entry
        assert entry is not None
        reqCC = lk._directives or RequestDirectives([])
        d = self._derived(entry)
        age = rules.currentAge(entry, self._now())
        staleness = age - d.lifetime
        limits: list[tuple[float, str]] = []
        if reqCC.staleIfError is not None:
            limits.append((reqCC.staleIfError, "stale-if-error"))
        if lk.fwd != "request":
            if d.directives.prohibitsStale or entry.invalidated:
                return None
            if d.directives.staleIfError is not None:
                limits.append((d.directives.staleIfError, "stale-if-error"))
            if fwdStatus is None and self.config.staleOnDisconnect > 0:
                limits.append((self.config.staleOnDisconnect, "disconnected"))
        elif d.directives.prohibitsStale and staleness >= 0:
            return None
        allowed = [detail for limit, detail in limits if staleness <= limit]
        if not allowed:
            return None
        status = self._status(
            fwd=lk.fwd or "stale",
            fwdStatus=fwdStatus,
            ttl=d.lifetime - age,
            detail=allowed[0],
        )
        try:
            head, body = self._answer(lk.request, entry, age, status, validated=False)
        except EntryUnavailable:
            self.stats.unavailable += 1
            self.store.delete(entry)
            return None
        self.stats.staleHits += 1
        return StoreDecision(head, status, _STALE, fromCache=True, body=body)

    # Invalidation and bookkeeping.

    def invalidate(self, target: Target) -> int:
        """
        Remove every stored response for C{target}'s URI (all variants).

        @return: how many were removed.
        """
        removed = self.store.deleteKey(rules.primaryKey(target))
        self.stats.invalidations += removed
        return removed

    def finished(self, lookup: CacheLookup) -> None:
        """
        The transaction of C{lookup} is over (served, failed, or the client
        went away): release whatever it still holds -- a store writer whose
        body never finished (aborted: nothing is stored), its place as the
        request others wait for (they are told to forward), its background
        revalidation slot, its wait.  Idempotent.
        """
        self._finish(lookup)

    def _finish(self, lk: CacheLookup) -> None:
        writer = lk._writer
        if writer is not None:
            # A body never finished: the transfer was cut short.
            lk._writer = None
            writer.abort()
        lk.cancelWait()
        self._flightEnded(lk, FORWARD)
        self._releaseBackground(lk)

    def _flightEnded(self, lk: CacheLookup, result: str) -> None:
        flight = lk._flight
        if flight is not None:
            lk._flight = None
            flight.finish(result)

    def _releaseBackground(self, lk: CacheLookup) -> None:
        entryId = lk._backgroundId
        if entryId is not None:
            lk._backgroundId = None
            self._revalidating.discard(entryId)
