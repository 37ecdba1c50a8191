# -*- test-case-name: tests.test_cache_http,tests.test_cache_collapse -*-
"""
The request side of the cache: what to do with a request
(L{HTTPCache.lookup}) -- serve a stored response, revalidate it, wait for
a request in flight for the same URL, or forward -- and the lookup of a
request whose wait ended (L{HTTPCache.lookupAgain}).

Pure: no I/O of its own (the store may do some), no Twisted reactor.
"""

from __future__ import annotations

import math

from twisted_proxy.http.errors import GatewayTimeout
from twisted_proxy.http.framing import RequestHead
from twisted_proxy.http.target import Target

from .collapse import STORED, Waiter
from .core import CacheCore
from .directives import RequestDirectives
from .entry import StoredResponse
from .freshness import acceptable, currentAge
from .keys import primaryKey, selectStored
from .outcomes import (
    BYPASS,
    COLLAPSED,
    FRESH_HIT,
    MISS,
    NOT_MODIFIED,
    ONLY_IF_CACHED_MISS,
    REVALIDATE,
    STALE_WHILE_REVALIDATE,
    VERDICT_BYPASS,
    VERDICT_HIT,
    VERDICT_MISS,
    VERDICT_REFRESHED,
    VERDICT_STALE,
    CacheLookup,
)
from .serving import requestFields
from .store import EntryUnavailable
from .validation import CONDITIONAL_FIELDS, conditionalRequest

__all__ = ["LookupSteps"]

_NO_DIRECTIVES = RequestDirectives([])
# What the cache's own background validation leaves out of the client's
# request: its conditionals and its range.
_NOT_IN_BACKGROUND = CONDITIONAL_FIELDS | {b"range", b"if-range"}


class LookupSteps(CacheCore):
    """
    The request side of L{HTTPCache}.
    """

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
        fields = requestFields(request.headers)
        if b"cache-control" in fields or b"pragma" in fields:
            reqCC = RequestDirectives.fromHeaders(request.headers)
        else:
            reqCC = _NO_DIRECTIVES
        if b"if-match" in fields or b"if-unmodified-since" in fields:
            # Preconditions for the origin (RFC 9111 4.3.2: "A cache MUST
            # NOT evaluate conditional header fields that only apply to an
            # origin server").
            return self._bypass(request, target, reqCC, "bypass", detail="precondition")
        key = primaryKey(target)
        if collapse and self._uncacheable and not self._collapsible(key):
            collapse = False
        variants = self.store.variants(key)
        entry = selectStored(variants, request.headers)
        if entry is None:
            reason = "vary-miss" if variants else "uri-miss"
            return self._miss(request, target, reqCC, key, reason, collapse, collapsed)
        now = self._now()
        d = self._derived(entry)
        age = currentAge(entry, now)
        lifetime = d.lifetime
        fresh = lifetime > age and not entry.invalidated
        cc = d.directives
        mustValidate = cc.noCache or entry.invalidated
        if not reqCC.noCache and not mustValidate and acceptable(age, lifetime, reqCC, cc):
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
                return self._serve(lk, entry, age, VERDICT_HIT, status, collapsed)
            self.stats.staleHits += 1
            return self._serve(
                lk,
                entry,
                age,
                VERDICT_STALE,
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
        lk.verdict = VERDICT_REFRESHED
        lk._collapsed = collapsed
        if collapse and fwd == "stale" and self._canWait(request, reqCC):
            waiter = self._flights.join(key)
            if waiter is not None:
                return self._collapsedLookup(request, target, reqCC, key, waiter, fwd)
            if self._canLead(request, reqCC):
                lk._flight = self._flights.lead(key)
        lk.forward = self._validateWith(lk, entry, variants)
        lk.cacheStatus = self._status(fwd=fwd, collapsed=collapsed)
        self.stats.revalidations += 1
        return lk

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
            and not any(n.lower() in CONDITIONAL_FIELDS for n, _ in request.headers)
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
        lk.verdict = VERDICT_BYPASS
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
        lk.verdict = VERDICT_MISS
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
            VERDICT_STALE,
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
            bg.verdict = VERDICT_REFRESHED
            bg._backgroundId = entry.entryId
            bg.forward = self._validateWith(bg, entry, self.store.variants(key))
            bg.cacheStatus = self._status(fwd="stale", detail="background")
            lk.background = bg
            self.stats.revalidations += 1
        return lk

    def _validateWith(
        self, lk: CacheLookup, entry: StoredResponse, variants: list[StoredResponse]
    ) -> RequestHead:
        """
        The request that validates C{entry} for C{lk}
        (L{twisted_proxy.proxy.cache.validation.conditionalRequest}),
        remembering the validators it carries: the 304 that answers it is
        matched against them.
        """
        conditional = conditionalRequest(
            lk.request, entry, variants, lambda v: self._derived(v).etag
        )
        if conditional is None:
            return lk.request
        lk._clientETags = conditional.clientETags
        lk._sentETags = conditional.sentETags
        lk._validated = True
        return conditional.request

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
        if verdict == VERDICT_HIT:
            self.stats.hits += 1
        return lk
