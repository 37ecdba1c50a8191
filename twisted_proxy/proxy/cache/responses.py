# -*- test-case-name: tests.test_cache_http,tests.test_cache_validation,tests.test_cache_storing -*-
"""
The response side of the cache: what to do with an upstream response
(L{HTTPCache.responseReceived}) -- store it while it is relayed, freshen
stored responses with a 304 and serve from them, serve stale on an error,
invalidate on an unsafe method -- and with an upstream that failed before
a response head (L{HTTPCache.upstreamFailed}).

Pure: no I/O of its own (the store may do some), no Twisted reactor.
"""

from __future__ import annotations

from twisted_proxy.http.errors import GatewayTimeout
from twisted_proxy.http.framing import RequestHead, ResponseHead

from .collapse import FORWARD, STORED
from .core import CacheCore
from .dates import formatHTTPDate
from .directives import RequestDirectives, ResponseDirectives
from .entry import StoredResponse
from .freshness import currentAge
from .keys import invalidationKeys, isUnsafe, primaryKey, selectStored, varyMatches
from .outcomes import (
    BYPASS,
    REVALIDATE,
    VERDICT_BYPASS,
    VERDICT_MISS,
    VERDICT_REFRESHED,
    VERDICT_REVALIDATED,
    VERDICT_STALE,
    CacheLookup,
    StoreDecision,
)
from .store import EntryUnavailable
from .storing import CacheWriter, newEntry, unstorableReason
from .validation import freshen, freshenFromHead, selectForUpdate

__all__ = ["ResponseSteps", "ERROR_STATUSES"]

# RFC 5861 4: "an error is any situation that would result in a 500, 502,
# 503, or 504 HTTP response status code being returned".
ERROR_STATUSES = frozenset([500, 502, 503, 504])

# Why a response was not stored, when the reason is the request's, not the
# URL's: the next request for the URL may well be stored.
_REQUEST_REASONS = frozenset(["method", "request-no-store", "authorization", "budget", "io-error"])


def _relayedVerdict(lk: CacheLookup) -> str:
    """
    The record's verdict for an upstream response relayed to the client.
    """
    if lk.outcome == REVALIDATE:
        return VERDICT_REFRESHED
    if lk.outcome == BYPASS:
        return VERDICT_BYPASS
    return VERDICT_MISS


class ResponseSteps(CacheCore):
    """
    The response side of L{HTTPCache}.
    """

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
        if isUnsafe(method):
            removed = 0
            for key in invalidationKeys(request, lk.target, response):
                removed += self.store.deleteKey(key)
            self.stats.invalidations += removed
        if lk.outcome == BYPASS and method not in (b"GET", b"HEAD"):
            return self._relay(lk, response, responseTime, lk.fwd or "method", VERDICT_BYPASS)
        key = lk.key if lk.key is not None else primaryKey(lk.target)
        if status == 304:
            return self._notModifiedReceived(lk, request, key, response, requestTime, responseTime)
        if method == b"HEAD":
            if status == 200:
                freshenFromHead(self.store, request, key, response, requestTime, responseTime)
            self._flightEnded(lk, FORWARD)
            self._releaseBackground(lk)
            verdict = _relayedVerdict(lk)
            return self._relay(lk, response, responseTime, lk.fwd or "uri-miss", verdict)
        if (
            lk.outcome == REVALIDATE
            and status in ERROR_STATUSES
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
        verdict = _relayedVerdict(lk)
        reason = unstorableReason(request, reqCC, response, cc)
        entry: StoredResponse | None = None
        if reason is None:
            entry = newEntry(key, request, response, cc, requestTime, responseTime)
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
                writer = CacheWriter(
                    storeWriter,
                    lambda stored: self._committed(lk, stored, request),
                    lambda why: self._notStored(lk, why),
                )
                lk._writer = writer
        if writer is None:
            self._notStorable(lk, request, response, reason)
            if lk.outcome == REVALIDATE and lk._entry is not None and response.status < 500:
                # The origin sent a new response instead of a 304: the
                # stored one is superseded.
                self.store.delete(lk._entry)
            self._flightEnded(lk, FORWARD)
            self._releaseBackground(lk)
            return self._relay(lk, response, responseTime, fwd, verdict, detail=reason)
        return self._relay(lk, response, responseTime, fwd, verdict, stored=True, writer=writer)

    def _committed(self, lk: CacheLookup, entry: StoredResponse, request: RequestHead) -> None:
        """
        A response was stored: drop the stored responses it supersedes,
        those the same request would have selected (and, if it has no
        C{Vary}, all of them: it matches every request and is the most
        recent), and wake the waiters.
        """
        self.stats.stored += 1
        self.stats.bytesStored += entry.bodyLength
        self._uncacheable.pop(entry.key, None)
        for other in self.store.variants(entry.key):
            if other.entryId == entry.entryId:
                continue
            if not entry.varyNames or varyMatches(other, request.headers):
                if (other.dateValue, other.responseTime) > (entry.dateValue, entry.responseTime):
                    # Two writes raced and the other is more recent (by
                    # Date, as 4.1 selects): it stays, this one goes.
                    self.store.delete(entry)
                    break
                self.store.delete(other)
        self._flightEnded(lk, STORED)
        self._releaseBackground(lk)

    def _notStored(self, lk: CacheLookup, why: str | None) -> None:
        """
        The writer of C{lk} will store nothing: the store gave up (C{why}
        says why) or the transfer was aborted (L{None}).  Its waiters are
        told to forward.
        """
        if why is not None:
            self.stats.storeFailures += 1
            if why not in _REQUEST_REASONS and lk.key is not None:
                self._rememberUncacheable(lk.key)
        self._flightEnded(lk, FORWARD)

    def _notStorable(
        self, lk: CacheLookup, request: RequestHead, response: ResponseHead, reason: str | None
    ) -> None:
        """
        A final response to a GET is not stored, for a reason of its own
        (not the request's, nor a server error's): remember its URL, so that
        the next concurrent requests for it do not queue behind one another
        (L{CacheConfig.uncacheableMemory}).
        """
        if (
            reason is not None
            and reason not in _REQUEST_REASONS
            and request.method == b"GET"
            and lk.key is not None
            and response.status < 500
        ):
            self._rememberUncacheable(lk.key)

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
        selected = selectForUpdate(response, candidates, responseTime)
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
            new, keep = freshen(stored, response, requestTime, responseTime, request.headers)
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
                verdict = VERDICT_BYPASS if lk.outcome == BYPASS else VERDICT_MISS
                return self._relay(lk, response, responseTime, fwd, verdict)
            self.stats.notModified += 1
            if lk.isBackground:
                # A background revalidation: nobody to answer.
                self._flightEnded(lk, STORED)
                return StoreDecision(None, None, VERDICT_REVALIDATED)
            chosen = None
            if entry is not None:
                chosen = next((u for u in updated if u.entryId == entry.entryId), None)
            if chosen is None:
                chosen = selectStored(updated, request.headers) or updated[0]
            d = self._derived(chosen)
            age = currentAge(chosen, self._now())
            status = self._status(
                fwd=fwd, fwdStatus=304, collapsed=lk._collapsed, ttl=d.lifetime - age
            )
            try:
                head, body = self._answer(lk.request, chosen, age, status, validated=True)
            except EntryUnavailable:
                self.stats.unavailable += 1
                self.store.delete(chosen)
                self._flightEnded(lk, FORWARD)
                return self._relay(
                    lk, response, responseTime, fwd, VERDICT_MISS, detail="unavailable"
                )
            self._flightEnded(lk, FORWARD if chosen in doomed else STORED)
            self.store.touch(chosen)
            return StoreDecision(head, status, VERDICT_REVALIDATED, fromCache=True, body=body)
        finally:
            for stored in doomed:
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
        age = currentAge(entry, self._now())
        if (
            d.directives.mustRevalidate
            or d.directives.proxyRevalidate
            or d.directives.sMaxAge is not None
        ) and age >= d.lifetime:
            status = self._status(fwd="stale", detail="must-revalidate")
            return StoreDecision(
                None,
                status,
                VERDICT_MISS,
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
        age = currentAge(entry, self._now())
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
        return StoreDecision(head, status, VERDICT_STALE, fromCache=True, body=body)
