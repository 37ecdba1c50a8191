# -*- test-case-name: tests.test_cache_http -*-
"""
Test doubles for the cache (as C{treq.testing} ships its own): a fake clock
and L{CacheHarness}, which plays the exchange's part of the protocol in
L{twisted_proxy.proxy.cache.cache} against an origin given as a function.

    h = CacheHarness()
    h.origin = lambda request: (200, [(b"Cache-Control", b"max-age=60")], b"hi")
    first = h.get(b"http://example.com/")      # forwarded, stored
    h.advance(10)
    second = h.get(b"http://example.com/")     # a hit
    assert second.verdict == "hit" and second.header(b"age") == b"10"
    assert len(h.forwarded) == 1

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted_proxy.http.framing import RequestHead, ResponseHead
from twisted_proxy.http.target import Target, parseTarget

from .cache import HTTPCache
from .config import CacheConfig
from .dates import formatHTTPDate
from .memory import MemoryStore
from .outcomes import (
    BYPASS,
    COLLAPSED,
    FRESH_HIT,
    MISS,
    NOT_MODIFIED,
    ONLY_IF_CACHED_MISS,
    REVALIDATE,
    STALE_WHILE_REVALIDATE,
    CacheLookup,
    StoreDecision,
)
from .store import BodyCollector, CachedBody, Store

__all__ = ["CacheHarness", "Result", "OriginAnswer"]

# An origin's answer: status, header fields, body; or None for "the
# upstream could not be reached".
OriginAnswer = tuple[int, list[tuple[bytes, bytes]], bytes] | None


class Result:
    """
    What a client got for one request through the cache.

    @ivar status: the status sent.
    @ivar headers: the header fields sent (before C{Via} and connection
        fields, which are the exchange's).
    @ivar body: the body sent.
    @ivar complete: whether the body was sent whole (C{False}: the exchange
        would have aborted the connection).
    @ivar lookup: the L{CacheLookup}.
    @ivar decision: the L{StoreDecision}, if the request went upstream.
    @ivar forwarded: the request sent upstream for it, or L{None}.
    @ivar verdict: the record's cache verdict.
    """

    def __init__(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        complete: bool,
        lookup: CacheLookup,
        decision: StoreDecision | None,
        forwarded: RequestHead | None,
        verdict: str,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.complete = complete
        self.lookup = lookup
        self.decision = decision
        self.forwarded = forwarded
        self.verdict = verdict

    def header(self, name: bytes) -> bytes | None:
        """
        The value of field C{name} (lower case), combined if repeated.
        """
        values = [v for n, v in self.headers if n.lower() == name]
        return b", ".join(values) if values else None

    @property
    def cacheStatus(self) -> bytes | None:
        return self.header(b"cache-status")

    def __repr__(self) -> str:
        return "<Result {} {} {!r} {!r}>".format(
            self.status, self.verdict, self.cacheStatus, self.body[:20]
        )


class CacheHarness:
    """
    An L{HTTPCache} with a fake clock and a fake origin, driven the way the
    exchange drives it.

    @ivar now: the fake clock (POSIX seconds).
    @ivar cache: the cache.
    @ivar origin: C{request -> OriginAnswer}; by default a 200 with
        C{max-age=60}.
    @ivar forwarded: every request sent upstream, in order (background
        revalidations included).
    @ivar latency: seconds between a request sent upstream and its
        response.
    """

    def __init__(
        self,
        store: Store | None = None,
        config: CacheConfig | None = None,
        now: float = 1700000000.0,
    ) -> None:
        self.now = now
        self.store = store if store is not None else MemoryStore()
        self.cache = HTTPCache(self.store, lambda: self.now, config)
        self.forwarded: list[RequestHead] = []
        self.latency = 0.0
        self.origin: Callable[[RequestHead], OriginAnswer] = lambda request: (
            200,
            [(b"Cache-Control", b"max-age=60")],
            b"body",
        )

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def date(self, offset: float = 0.0) -> bytes:
        """
        An HTTP-date C{offset} seconds from now.
        """
        return formatHTTPDate(self.now + offset)

    def request(
        self, url: bytes, headers: list[tuple[bytes, bytes]] | None = None, method: bytes = b"GET"
    ) -> tuple[RequestHead, Target]:
        host = url.split(b"/")[2] if url.startswith(b"http://") else b"example.com"
        req = RequestHead(method, url, b"1.1", [(b"Host", host)] + list(headers or []))
        return req, parseTarget(method, url, host)

    def get(
        self,
        url: bytes = b"http://example.com/",
        headers: list[tuple[bytes, bytes]] | None = None,
        method: bytes = b"GET",
    ) -> Result:
        """
        One transaction through the cache.
        """
        req, target = self.request(url, headers, method)
        lookup = self.cache.lookup(req, target)
        try:
            return self._run(lookup)
        finally:
            self.cache.finished(lookup)

    def _run(self, lookup: CacheLookup) -> Result:
        outcome = lookup.outcome
        if outcome == COLLAPSED:
            raise AssertionError(
                "the harness does not wait: test collapsing with the cache directly"
            )
        if outcome in (FRESH_HIT, NOT_MODIFIED, STALE_WHILE_REVALIDATE):
            assert lookup.head is not None
            body, complete = self._drain(lookup.body)
            result = Result(
                lookup.head.status,
                lookup.head.headers,
                body,
                complete,
                lookup,
                None,
                None,
                lookup.verdict,
            )
            if outcome == STALE_WHILE_REVALIDATE and lookup.background is not None:
                try:
                    self._background(lookup.background)
                finally:
                    self.cache.finished(lookup.background)
            return result
        if outcome == ONLY_IF_CACHED_MISS:
            assert lookup.error is not None
            status, _, headers, body = lookup.error.render("twisted-proxy")
            return Result(
                status,
                [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers],
                body,
                True,
                lookup,
                None,
                None,
                lookup.verdict,
            )
        assert outcome in (MISS, REVALIDATE, BYPASS), outcome
        forward = lookup.forward
        assert forward is not None
        self.forwarded.append(forward)
        requestTime = self.now
        answer = self.origin(forward)
        self.now += self.latency
        if answer is None:
            decision = self.cache.upstreamFailed(lookup)
            if decision is None:
                return Result(502, [], b"", True, lookup, None, forward, lookup.verdict)
        else:
            decision = self.cache.responseReceived(
                lookup, self._head(forward, answer), requestTime, self.now
            )
        return self._deliver(lookup, decision, forward, answer)

    def _head(
        self, forward: RequestHead, answer: tuple[int, list[tuple[bytes, bytes]], bytes]
    ) -> ResponseHead:
        status, headers, body = answer
        noBody = forward.method == b"HEAD" or status in (204, 304)
        if not any(n.lower() == b"content-length" for n, _ in headers) and not noBody:
            headers = headers + [(b"Content-Length", b"%d" % (len(body),))]
        return ResponseHead(
            status, b"", b"1.1", headers, contentLength=None if noBody else len(body), noBody=noBody
        )

    def _deliver(
        self,
        lookup: CacheLookup,
        decision: StoreDecision,
        forward: RequestHead,
        answer: OriginAnswer,
    ) -> Result:
        if decision.error is not None:
            status, _, headers, body = decision.error.render("twisted-proxy")
            return Result(
                status,
                [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers],
                body,
                True,
                lookup,
                decision,
                forward,
                decision.verdict,
            )
        assert decision.head is not None
        if decision.fromCache:
            body, complete = self._drain(decision.body)
            return Result(
                decision.head.status,
                decision.head.headers,
                body,
                complete,
                lookup,
                decision,
                forward,
                decision.verdict,
            )
        assert answer is not None
        relayed = b"" if decision.head.noBody else answer[2]
        self._feed(decision, relayed)
        return Result(
            decision.head.status,
            decision.head.headers,
            relayed,
            True,
            lookup,
            decision,
            forward,
            decision.verdict,
        )

    def _feed(self, decision: StoreDecision, body: bytes, chunk: int = 7) -> None:
        writer = decision.writer
        if writer is None:
            return
        for i in range(0, len(body), chunk):
            writer.write(body[i : i + chunk])
        writer.finish()

    def _background(self, lookup: CacheLookup) -> None:
        forward = lookup.forward
        assert forward is not None
        self.forwarded.append(forward)
        requestTime = self.now
        answer = self.origin(forward)
        if answer is None:
            self.cache.upstreamFailed(lookup)
            return
        decision = self.cache.responseReceived(
            lookup, self._head(forward, answer), requestTime, self.now
        )
        if decision.body is not None:
            decision.body.stopProducing()
        if decision.writer is not None:
            self._feed(decision, answer[2])

    @staticmethod
    def _drain(body: CachedBody | None) -> tuple[bytes, bool]:
        if body is None:
            return b"", True
        sink = BodyCollector()
        body.start(sink)
        return b"".join(sink.chunks), sink.done and sink.failed is None
