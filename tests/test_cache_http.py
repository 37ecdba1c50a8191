"""
Tests for L{twisted_proxy.proxy.cache.cache.HTTPCache} as the exchange uses
it: cache keys (RFC 9111 4, RFC 9110 4.2.3), request directives (5.2.1,
5.4), serving stale (4.2.4, RFC 5861), C{Cache-Status} (RFC 9211), ranges
from stored responses (RFC 9110 14), and the counters.
"""

from __future__ import annotations

import functools

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.http.framing import RequestHead, ResponseHead
from twisted_proxy.http.target import parseTarget
from twisted_proxy.proxy.cache import (
    BYPASS,
    FRESH_HIT,
    MISS,
    ONLY_IF_CACHED_MISS,
    REVALIDATE,
    STALE_WHILE_REVALIDATE,
    CacheConfig,
    EntryUnavailable,
    MemoryStore,
    StoredResponse,
)
from twisted_proxy.proxy.cache.keys import primaryKey
from twisted_proxy.proxy.cache.memory import _MemoryBody
from twisted_proxy.proxy.cache.serving import parseRange
from twisted_proxy.proxy.cache.status import cacheStatusValue, sfItem
from twisted_proxy.proxy.cache.testing import CacheHarness, OriginAnswer

URL = b"http://example.com/r"


def key(method: bytes, target: bytes, host: bytes | None) -> str:
    return primaryKey(parseTarget(method, target, host))


class PrimaryKeyTests(SynchronousTestCase):
    """
    RFC 9111 4: the primary key is the target URI; RFC 9110 4.2.3: http
    URIs are normalised (scheme and host case, default port, empty path,
    percent-encoding).
    """

    def test_absoluteAndOriginForm(self) -> None:
        """
        RFC 9110 4.2.3: scheme and host case, the default port, an empty path.
        """
        self.assertEqual(key(b"GET", b"http://Example.COM:80/a?b", None), "http://example.com/a?b")
        self.assertEqual(key(b"GET", b"/a?b", b"example.com"), "http://example.com/a?b")
        self.assertEqual(key(b"GET", b"HTTP://example.com", None), "http://example.com/")

    def test_port(self) -> None:
        """
        RFC 9110 4.2.3: a non-default port is part of the key.
        """
        self.assertEqual(key(b"GET", b"http://example.com:8080/", None), "http://example.com:8080/")
        self.assertNotEqual(
            key(b"GET", b"/", b"example.com:8080"), key(b"GET", b"/", b"example.com")
        )

    def test_percentEncoding(self) -> None:
        """
        RFC 9110 4.2.3: percent-encoded unreserved characters decoded, others upper-
        cased.
        """
        self.assertEqual(key(b"GET", b"http://h/%7euser/a%2fb%2F", None), "http://h/~user/a%2Fb%2F")
        self.assertEqual(key(b"GET", b"http://h/%41", None), "http://h/A")

    def test_caseOfPathKept(self) -> None:
        """
        RFC 9110 4.2.3: the path is case-sensitive.
        """
        self.assertNotEqual(key(b"GET", b"http://h/A", None), key(b"GET", b"http://h/a", None))

    def test_sameEntryThroughBothForms(self) -> None:
        """
        The same URL in absolute-form and origin-form with Host hits the
        same entry.
        """
        h = CacheHarness()
        h.get(b"http://example.com/x")
        req = RequestHead(b"GET", b"/x", b"1.1", [(b"Host", b"example.com")])
        lookup = h.cache.lookup(req, parseTarget(b"GET", b"/x", b"example.com"))
        self.assertEqual(lookup.outcome, FRESH_HIT)
        assert lookup.body is not None
        lookup.body.stopProducing()
        h.cache.finished(lookup)


class RequestDirectiveTests(SynchronousTestCase):
    """
    RFC 9111 5.2.1.
    """

    def setUp(self) -> None:
        self.h = CacheHarness()
        self.h.origin = lambda request: (
            304 if request.get(b"if-none-match") == b'"e"' else 200,
            [(b"Date", self.h.date()), (b"Cache-Control", b"max-age=100"), (b"ETag", b'"e"')],
            b"body",
        )
        self.h.get(URL)

    def test_maxAge(self) -> None:
        """
        5.2.1.1: "the client prefers a response whose age is less than or
        equal to the specified number of seconds".
        """
        self.h.advance(30)
        self.assertEqual(self.h.get(URL, [(b"Cache-Control", b"max-age=30")]).verdict, "hit")
        result = self.h.get(URL, [(b"Cache-Control", b"max-age=29")])
        self.assertEqual(result.lookup.outcome, REVALIDATE)
        self.assertEqual(result.lookup.fwd, "request")
        self.assertEqual(self.h.forwarded[-1].get(b"if-none-match"), b'"e"')

    def test_maxAgeZero(self) -> None:
        """
        max-age=0 (a reload) revalidates any response older than 0 s; one
        of age 0 satisfies it.
        """
        self.assertEqual(self.h.get(URL, [(b"Cache-Control", b"max-age=0")]).verdict, "hit")
        self.h.advance(1)
        result = self.h.get(URL, [(b"Cache-Control", b"max-age=0")])
        self.assertEqual(result.cacheStatus, b"twisted-proxy; fwd=request; fwd-status=304; ttl=100")

    def test_maxStale(self) -> None:
        """
        5.2.1.2: stale responses are acceptable up to max-stale seconds, or
        of any staleness without a value.
        """
        self.h.advance(110)
        self.assertEqual(self.h.get(URL, [(b"Cache-Control", b"max-stale=10")]).verdict, "stale")
        self.assertEqual(
            self.h.get(URL, [(b"Cache-Control", b"max-stale=9")]).lookup.outcome, REVALIDATE
        )
        self.h.advance(10000)
        result = self.h.get(URL, [(b"Cache-Control", b"max-stale")])
        self.assertEqual(result.verdict, "stale")
        assert result.cacheStatus is not None
        self.assertTrue(result.cacheStatus.startswith(b"twisted-proxy; hit; ttl=-"))

    def test_maxStaleWithMaxAge(self) -> None:
        """
        With max-age and max-stale, both bound the response.
        """
        self.h.advance(110)
        self.assertEqual(
            self.h.get(URL, [(b"Cache-Control", b"max-stale=100, max-age=50")]).lookup.outcome,
            REVALIDATE,
        )

    def test_minFresh(self) -> None:
        """
        5.2.1.3: "the client prefers a response whose freshness lifetime is
        no less than its current age plus the specified time".
        """
        self.h.advance(50)
        self.assertEqual(self.h.get(URL, [(b"Cache-Control", b"min-fresh=50")]).verdict, "hit")
        self.assertEqual(
            self.h.get(URL, [(b"Cache-Control", b"min-fresh=51")]).lookup.outcome, REVALIDATE
        )

    def test_noCache(self) -> None:
        """
        5.2.1.4: "a cache MUST NOT use a stored response to satisfy the
        request without successful validation on the origin server".
        """
        result = self.h.get(URL, [(b"Cache-Control", b"no-cache")])
        self.assertEqual(result.lookup.outcome, REVALIDATE)
        self.assertEqual(result.cacheStatus, b"twisted-proxy; fwd=request; fwd-status=304; ttl=100")

    def test_pragmaNoCache(self) -> None:
        """
        5.4: Pragma: no-cache without Cache-Control is no-cache.
        """
        self.assertEqual(self.h.get(URL, [(b"Pragma", b"no-cache")]).lookup.outcome, REVALIDATE)
        self.assertEqual(
            self.h.get(URL, [(b"Pragma", b"no-cache"), (b"Cache-Control", b"max-stale")]).verdict,
            "hit",
        )

    def test_noStoreServedButNotStored(self) -> None:
        """
        5.2.1.5: no-store forbids storing the response, not using a stored
        one.
        """
        self.assertEqual(self.h.get(URL, [(b"Cache-Control", b"no-store")]).verdict, "hit")
        self.h.get(b"http://example.com/other", [(b"Cache-Control", b"no-store")])
        self.assertEqual(self.h.get(b"http://example.com/other").verdict, "miss")

    def test_onlyIfCached(self) -> None:
        """
        5.2.1.7: a stored response "consistent with the other constraints
        of the request message or a 504 (Gateway Timeout)".
        """
        self.assertEqual(self.h.get(URL, [(b"Cache-Control", b"only-if-cached")]).verdict, "hit")
        miss = self.h.get(b"http://example.com/none", [(b"Cache-Control", b"only-if-cached")])
        self.assertEqual(miss.lookup.outcome, ONLY_IF_CACHED_MISS)
        self.assertEqual(miss.status, 504)
        self.assertEqual(miss.cacheStatus, b"twisted-proxy; detail=only-if-cached")
        proxyStatus = miss.header(b"proxy-status")
        assert proxyStatus is not None
        self.assertTrue(proxyStatus.startswith(b'twisted-proxy; details="'))
        self.assertIn(b"only-if-cached", miss.body)
        self.h.advance(101)
        stale = self.h.get(URL, [(b"Cache-Control", b"only-if-cached")])
        self.assertEqual(stale.status, 504)
        self.assertEqual(
            self.h.get(URL, [(b"Cache-Control", b"only-if-cached, max-stale")]).verdict, "stale"
        )
        self.assertEqual(len(self.h.forwarded), 1)


class StaleTests(SynchronousTestCase):
    """
    Serving stale responses: RFC 9111 4.2.4, RFC 5861.
    """

    def setUp(self) -> None:
        self.h = CacheHarness()
        self.cacheControl = b"max-age=10"
        self.fail_ = False
        self.status = 200
        self.body = b"v1"

        def origin(request: RequestHead) -> OriginAnswer:
            if self.fail_:
                return None
            return (
                self.status,
                [
                    (b"Date", self.h.date()),
                    (b"Cache-Control", self.cacheControl),
                    (b"ETag", b'"' + self.body + b'"'),
                ],
                self.body,
            )

        self.h.origin = origin

    def test_staleWhileRevalidate(self) -> None:
        """
        RFC 5861 3: served stale (without waiting) within the window, and
        revalidated in the background.
        """
        self.cacheControl = b"max-age=10, stale-while-revalidate=30"
        self.h.get(URL)
        self.h.advance(20)
        self.body = b"v2"
        result = self.h.get(URL)
        self.assertEqual(result.lookup.outcome, STALE_WHILE_REVALIDATE)
        self.assertEqual((result.body, result.verdict), (b"v1", "stale"))
        self.assertEqual(
            result.cacheStatus, b"twisted-proxy; hit; ttl=-10; detail=stale-while-revalidate"
        )
        self.assertEqual(self.h.forwarded[-1].get(b"if-none-match"), b'"v1"')
        # The background revalidation stored v2.
        self.assertEqual(self.h.get(URL).body, b"v2")

    def test_staleWhileRevalidateFromHead(self) -> None:
        """
        A HEAD served stale revalidates with a GET in the background, whose
        response is stored.
        """
        self.cacheControl = b"max-age=10, stale-while-revalidate=30"
        self.h.get(URL)
        self.h.advance(20)
        self.body = b"v2"
        head = self.h.get(URL, method=b"HEAD")
        self.assertEqual((head.lookup.outcome, head.body), (STALE_WHILE_REVALIDATE, b""))
        self.assertEqual(self.h.forwarded[-1].method, b"GET")
        hit = self.h.get(URL)
        self.assertEqual((hit.verdict, hit.body), ("hit", b"v2"))

    def test_staleWhileRevalidateOwnValidators(self) -> None:
        """
        RFC 5861 3: the background revalidation is the cache's own: the
        client's conditionals and range stay out of it.
        """
        self.cacheControl = b"max-age=10, stale-while-revalidate=30"
        self.h.get(URL)
        self.h.advance(20)
        result = self.h.get(URL, [(b"If-None-Match", b'"other"'), (b"Range", b"bytes=0-0")])
        self.assertEqual(result.lookup.outcome, STALE_WHILE_REVALIDATE)
        background = self.h.forwarded[-1]
        self.assertEqual(background.get(b"if-none-match"), b'"v1"')
        self.assertIsNone(background.get(b"range"))

    def test_staleWhileRevalidateWindow(self) -> None:
        """
        RFC 5861 3: beyond the window, the stale response is revalidated first.
        """
        self.cacheControl = b"max-age=10, stale-while-revalidate=30"
        self.h.get(URL)
        self.h.advance(41)
        self.assertEqual(self.h.get(URL).lookup.outcome, REVALIDATE)

    def test_oneBackgroundRevalidation(self) -> None:
        """
        While a background revalidation is in flight, others do not start
        another.
        """
        self.cacheControl = b"max-age=10, stale-while-revalidate=30"
        self.h.get(URL)
        self.h.advance(20)
        req, target = self.h.request(URL)
        first = self.h.cache.lookup(req, target)
        second = self.h.cache.lookup(req, target)
        self.assertEqual(
            (first.outcome, second.outcome), (STALE_WHILE_REVALIDATE, STALE_WHILE_REVALIDATE)
        )
        self.assertIsNotNone(first.background)
        self.assertIsNone(second.background)
        for lookup in (first, second):
            assert lookup.body is not None
            lookup.body.stopProducing()
            self.h.cache.finished(lookup)
        # The background revalidation is still in flight.
        self.assertIsNone(self.h.cache.lookup(req, target).background)
        assert first.background is not None
        self.h.cache.finished(first.background)
        third = self.h.cache.lookup(req, target)
        self.assertIsNotNone(third.background)
        assert third.body is not None
        third.body.stopProducing()
        self.h.cache.finished(third)
        assert third.background is not None
        self.h.cache.finished(third.background)

    def test_staleWhileRevalidateNotWithMustRevalidate(self) -> None:
        """
        RFC 9111 4.2.4: "A cache MUST NOT generate a stale response if it is
        prohibited by an explicit in-protocol directive".
        """
        self.cacheControl = b"max-age=10, stale-while-revalidate=30, must-revalidate"
        self.h.get(URL)
        self.h.advance(20)
        self.assertEqual(self.h.get(URL).lookup.outcome, REVALIDATE)

    def test_staleIfErrorOn5xx(self) -> None:
        """
        RFC 5861 4: on a 500, 502, 503 or 504, a stale response within the
        window is served instead.
        """
        self.cacheControl = b"max-age=10, stale-if-error=60"
        self.h.get(URL)
        self.h.advance(30)
        self.status = 503
        self.body = b"down"
        result = self.h.get(URL)
        self.assertEqual((result.status, result.body, result.verdict), (200, b"v1", "stale"))
        self.assertEqual(
            result.cacheStatus,
            b"twisted-proxy; fwd=stale; fwd-status=503; ttl=-20; detail=stale-if-error",
        )
        self.h.advance(50)
        result = self.h.get(URL)
        self.assertEqual((result.status, result.body), (503, b"down"))

    def test_staleIfErrorNotFor404(self) -> None:
        """
        RFC 5861 4: only 500, 502, 503 and 504 are errors.
        """
        self.cacheControl = b"max-age=10, stale-if-error=60"
        self.h.get(URL)
        self.h.advance(30)
        self.status = 404
        self.assertEqual(self.h.get(URL).status, 404)

    def test_staleIfErrorOnConnectionFailure(self) -> None:
        """
        RFC 5861 4: an origin that cannot be reached is an error too.
        """
        self.cacheControl = b"max-age=10, stale-if-error=60"
        self.h.get(URL)
        self.h.advance(30)
        self.fail_ = True
        result = self.h.get(URL)
        self.assertEqual((result.status, result.body, result.verdict), (200, b"v1", "stale"))
        self.assertEqual(
            result.cacheStatus, b"twisted-proxy; fwd=stale; ttl=-20; detail=stale-if-error"
        )

    def test_staleIfErrorRequestDirective(self) -> None:
        """
        RFC 5861 4: as a request directive, for that request.
        """
        self.h.get(URL)
        self.h.advance(30)
        self.fail_ = True
        self.assertEqual(self.h.get(URL).status, 502)
        self.assertEqual(self.h.get(URL, [(b"Cache-Control", b"stale-if-error=25")]).status, 200)
        self.assertEqual(self.h.get(URL, [(b"Cache-Control", b"stale-if-error=5")]).status, 502)

    def test_mustRevalidateDisconnected504(self) -> None:
        """
        RFC 9111 5.2.2.2: "if a cache is disconnected, the cache MUST
        generate an error response rather than reuse the stale response.
        The generated status code SHOULD be 504".
        """
        self.cacheControl = b"max-age=10, must-revalidate, stale-if-error=600"
        self.h.get(URL)
        self.h.advance(30)
        self.fail_ = True
        result = self.h.get(URL)
        self.assertEqual(result.status, 504)
        self.assertEqual(result.cacheStatus, b"twisted-proxy; fwd=stale; detail=must-revalidate")

    def test_proxyRevalidateAndSMaxAge(self) -> None:
        """
        5.2.2.8 and 5.2.2.10: proxy-revalidate and s-maxage act as
        must-revalidate for a shared cache.
        """
        for cc in [b"max-age=10, proxy-revalidate", b"s-maxage=10"]:
            self.setUp()
            self.cacheControl = cc
            self.h.get(URL)
            self.h.advance(30)
            self.assertEqual(
                self.h.get(URL, [(b"Cache-Control", b"max-stale")]).lookup.outcome, REVALIDATE, cc
            )
            self.h.advance(30)
            self.fail_ = True
            self.assertEqual(self.h.get(URL).status, 504, cc)

    def test_staleOnDisconnect(self) -> None:
        """
        4.2.4: a disconnected cache may serve stale when configured to.
        """
        self.h = CacheHarness(config=CacheConfig(staleOnDisconnect=100))
        self.h.origin = lambda request: (200, [(b"Cache-Control", b"max-age=10")], b"v1")
        self.h.get(URL)
        self.h.advance(30)
        self.h.origin = lambda request: None
        result = self.h.get(URL)
        self.assertEqual((result.status, result.verdict), (200, "stale"))
        self.assertIn(b"detail=disconnected", result.cacheStatus)
        self.h.advance(100)
        self.assertEqual(self.h.get(URL).status, 502)


class RangeTests(SynchronousTestCase):
    """
    RFC 9110 14: one byte range served from a complete stored response.
    """

    def setUp(self) -> None:
        self.h = CacheHarness()
        self.h.origin = lambda request: (
            200,
            [
                (b"Cache-Control", b"max-age=60"),
                (b"ETag", b'"r"'),
                (b"Date", self.h.date()),
                (b"Last-Modified", self.h.date(-100)),
            ],
            b"0123456789",
        )
        self.h.get(URL)

    def test_parseRange(self) -> None:
        """
        RFC 9110 14.1.2: byte ranges; anything else ignored (14.2).
        """
        self.assertEqual(parseRange(b"bytes=2-5", 10), (2, 5))
        self.assertEqual(parseRange(b"bytes=2-", 10), (2, 9))
        self.assertEqual(parseRange(b"bytes=-3", 10), (7, 9))
        self.assertEqual(parseRange(b"bytes=5-100", 10), (5, 9))
        self.assertEqual(parseRange(b"BYTES = 0-0", 10), (0, 0))
        for value in [
            b"bytes=10-",
            b"bytes=5-2",
            b"bytes=0-1,3-4",
            b"items=0-1",
            b"bytes=-0",
            b"bytes=a-b",
            b"bytes",
        ]:
            self.assertIsNone(parseRange(value, 10), value)

    def test_range(self) -> None:
        """
        RFC 9110 14: one range of a stored 200 served as a 206 with Content-Range.
        """
        result = self.h.get(URL, [(b"Range", b"bytes=2-5")])
        self.assertEqual((result.status, result.body, result.verdict), (206, b"2345", "hit"))
        self.assertEqual(result.header(b"content-range"), b"bytes 2-5/10")
        self.assertEqual(result.header(b"content-length"), b"4")

    def test_unsatisfiableOrMultipleGetsWhole(self) -> None:
        """
        RFC 9110 14.2: "A server MAY ignore the Range header field".
        """
        for value in [b"bytes=20-30", b"bytes=0-1,4-5"]:
            result = self.h.get(URL, [(b"Range", value)])
            self.assertEqual((result.status, result.body), (200, b"0123456789"))

    def test_ifRange(self) -> None:
        """
        RFC 9110 13.1.5: the range only if If-Range matches by strong
        comparison; else the whole response.
        """
        self.assertEqual(
            self.h.get(URL, [(b"Range", b"bytes=0-1"), (b"If-Range", b'"r"')]).status, 206
        )
        self.assertEqual(
            self.h.get(URL, [(b"Range", b"bytes=0-1"), (b"If-Range", b'"x"')]).status, 200
        )
        self.assertEqual(
            self.h.get(URL, [(b"Range", b"bytes=0-1"), (b"If-Range", b'W/"r"')]).status, 200
        )
        self.assertEqual(
            self.h.get(URL, [(b"Range", b"bytes=0-1"), (b"If-Range", self.h.date(-100))]).status,
            206,
        )

    def test_rangeMissForwarded(self) -> None:
        """
        RFC 9111 3.3: a range request on a miss is forwarded as it is.
        """
        result = self.h.get(b"http://example.com/other", [(b"Range", b"bytes=0-1")])
        self.assertEqual(result.lookup.outcome, MISS)
        assert result.forwarded is not None
        self.assertEqual(result.forwarded.get(b"range"), b"bytes=0-1")


class CacheStatusTests(SynchronousTestCase):
    """
    RFC 9211.
    """

    def test_values(self) -> None:
        """
        RFC 9211 2: the parameters, in order; ttl rounded down.
        """
        self.assertEqual(
            cacheStatusValue("twisted-proxy", hit=True, ttl=59.9), b"twisted-proxy; hit; ttl=59"
        )
        self.assertEqual(cacheStatusValue("p", hit=True, ttl=-0.5), b"p; hit; ttl=-1")
        self.assertEqual(
            cacheStatusValue("p", fwd="uri-miss", fwdStatus=200, stored=True, collapsed=False),
            b"p; fwd=uri-miss; fwd-status=200; stored; collapsed=?0",
        )
        self.assertEqual(cacheStatusValue("p", detail="a b"), b'p; detail="a b"')
        self.assertRaises(ValueError, cacheStatusValue, "p", fwd="nonsense")

    def test_name(self) -> None:
        """
        The name is an sf-token when it can be, else an sf-string.
        """
        self.assertEqual(sfItem("proxy.example.com:8080"), "proxy.example.com:8080")
        self.assertEqual(sfItem("my proxy"), '"my proxy"')
        self.assertEqual(sfItem('a"b'), '"a\\"b"')
        self.assertEqual(sfItem("1proxy"), '"1proxy"')

    def test_configuredName(self) -> None:
        """
        RFC 9211 2: the cache's identifier is configurable.
        """
        h = CacheHarness(config=CacheConfig(name="edge-1"))
        self.assertEqual(h.get(URL).cacheStatus, b"edge-1; fwd=uri-miss; fwd-status=200; stored")
        self.assertEqual(h.get(URL).cacheStatus, b"edge-1; hit; ttl=60")

    def test_method(self) -> None:
        """
        RFC 9211 2.2: fwd=method for methods the cache does not answer.
        """
        h = CacheHarness()
        result = h.get(URL, method=b"OPTIONS")
        self.assertEqual(result.lookup.outcome, BYPASS)
        self.assertEqual(result.cacheStatus, b"twisted-proxy; fwd=method; fwd-status=200")

    def test_precondition(self) -> None:
        """
        RFC 9111 4.3.2: If-Match and If-Unmodified-Since are the origin's to
        evaluate: the request goes forward untouched.
        """
        h = CacheHarness()
        h.get(URL)
        result = h.get(URL, [(b"If-Match", b'"x"')])
        self.assertEqual(result.lookup.outcome, BYPASS)
        assert result.forwarded is not None
        self.assertEqual(result.forwarded.get(b"if-match"), b'"x"')
        self.assertIn(b"detail=precondition", result.cacheStatus)


class UnreadableBodyTests(SynchronousTestCase):
    """
    A stored body that cannot be read (gone, or failing its check) is never
    served: the request becomes a miss.
    """

    def test_fallsBackToMiss(self) -> None:
        """
        RFC 9111 4: a stored response that cannot be read is not used; the request is a
        miss.
        """

        class FlakyStore(MemoryStore):
            broken = False

            def openBody(
                self, entry: StoredResponse, offset: int = 0, length: int | None = None
            ) -> _MemoryBody:
                if self.broken:
                    raise EntryUnavailable("corrupt")
                return super().openBody(entry, offset, length)

        store = FlakyStore()
        h = CacheHarness(store=store)
        h.get(URL)
        store.broken = True
        result = h.get(URL)
        self.assertEqual((result.lookup.outcome, result.verdict), (MISS, "miss"))
        self.assertEqual(h.cache.stats.unavailable, 1)
        self.assertEqual(len(h.forwarded), 2)


class StatsTests(SynchronousTestCase):
    def test_counters(self) -> None:
        """
        The counters behind the metrics.
        """
        h = CacheHarness()
        h.origin = lambda request: (
            200,
            [(b"Cache-Control", b"max-age=10"), (b"ETag", b'"e"')],
            b"12345",
        )
        h.get(URL)
        h.get(URL)
        h.advance(11)
        h.get(URL)
        h.get(URL, method=b"POST")
        stats = h.cache.stats.asDict()
        self.assertEqual(stats["lookups"], 4)
        self.assertEqual(stats["misses"], 1)
        self.assertEqual(stats["hits"], 1)
        self.assertEqual(stats["revalidations"], 1)
        self.assertEqual(stats["notModified"], 0)
        self.assertEqual(stats["stored"], 2)
        self.assertEqual(stats["bytesStored"], 10)
        self.assertEqual(stats["bypasses"], 1)
        self.assertEqual(stats["invalidations"], 1)
        self.assertEqual(h.cache.entries, 0)
        self.assertEqual(h.cache.storedBytes, 0)


class HeadMissTests(SynchronousTestCase):
    def test_headForwardedAsHead(self) -> None:
        """
        RFC 9111 4.3.5: a HEAD on a miss is forwarded as HEAD, and its response not
        stored.
        """
        h = CacheHarness()
        result = h.get(URL, method=b"HEAD")
        assert result.forwarded is not None
        self.assertEqual(result.forwarded.method, b"HEAD")
        self.assertEqual(result.lookup.outcome, MISS)
        self.assertEqual(h.store.count, 0)


class ResponseHeadTests(SynchronousTestCase):
    def test_relayedHeadKeepsFraming(self) -> None:
        """
        The relayed head is the upstream one plus Cache-Status: its framing
        is untouched.
        """
        h = CacheHarness()
        req, target = h.request(URL)
        lookup = h.cache.lookup(req, target)
        upstream = ResponseHead(
            200, b"OK", b"1.0", [(b"Cache-Control", b"max-age=5")], closeDelimited=True
        )
        decision = h.cache.responseReceived(lookup, upstream, h.now, h.now)
        assert decision.head is not None
        self.assertTrue(decision.head.closeDelimited)
        self.assertEqual(decision.head.version, b"1.0")
        assert decision.writer is not None
        decision.writer.write(b"abc")
        decision.writer.write(b"def")
        entry = decision.writer.finish()
        assert entry is not None
        self.assertEqual(entry.bodyLength, 6)
        h.cache.finished(lookup)
        hit = h.get(URL)
        self.assertEqual((hit.body, hit.header(b"content-length")), (b"abcdef", b"6"))

    def test_unfinishedWriterAbortedWhenFinished(self) -> None:
        """
        RFC 9111 3.3: a transaction that ends before its body did (the
        exchange never called finish or abort) stores nothing, and releases
        the store's reservation.
        """
        store = MemoryStore()
        h = CacheHarness(store)
        req, target = h.request(URL)
        lookup = h.cache.lookup(req, target)
        upstream = ResponseHead(
            200, b"OK", b"1.1", [(b"Cache-Control", b"max-age=5")], chunked=True
        )
        decision = h.cache.responseReceived(lookup, upstream, h.now, h.now)
        assert decision.writer is not None
        decision.writer.write(b"abc")
        h.cache.finished(lookup)
        self.assertIsNone(decision.writer.finish())
        self.assertEqual((store.count, store.reserved), (0, 0))

    def test_abortedStoresNothing(self) -> None:
        """
        RFC 9111 3.3: an incomplete (aborted) response is not stored.
        """
        store = MemoryStore()
        h = CacheHarness(store)
        req, target = h.request(URL)
        lookup = h.cache.lookup(req, target)
        upstream = ResponseHead(
            200,
            b"OK",
            b"1.1",
            [(b"Cache-Control", b"max-age=5"), (b"Content-Length", b"10")],
            contentLength=10,
        )
        decision = h.cache.responseReceived(lookup, upstream, h.now, h.now)
        assert decision.writer is not None
        decision.writer.write(b"abc")
        decision.writer.abort()
        self.assertIsNone(decision.writer.finish())
        h.cache.finished(lookup)
        self.assertEqual(store.count, 0)
        self.assertEqual(store.reserved, 0)


_FIELD = st.one_of(
    st.sampled_from(
        [
            b"max-age=60",
            b"max-age=0",
            b"no-store",
            b"no-cache",
            b"private",
            b'private="set-cookie"',
            b"public",
            b"s-maxage=30",
            b"must-revalidate",
            b"stale-while-revalidate=30",
            b"stale-if-error=30",
            b"max-stale",
            b"min-fresh=5",
            b"only-if-cached",
            b"must-understand",
            b'max-age="5", no-cache="x"',
        ]
    ),
    st.binary(max_size=20),
)
_NAMES = st.sampled_from(
    [
        b"Cache-Control",
        b"Pragma",
        b"Expires",
        b"Date",
        b"Age",
        b"ETag",
        b"Last-Modified",
        b"Vary",
        b"If-None-Match",
        b"If-Modified-Since",
        b"Range",
        b"If-Range",
        b"Authorization",
        b"Content-Location",
        b"Location",
    ]
)
_FIELDS = st.lists(st.tuples(_NAMES, _FIELD), max_size=5)
# One step of test_neverRaises: method, request fields, status, response
# fields, seconds to advance, whether the origin answers.
_Step = tuple[bytes, list[tuple[bytes, bytes]], int, list[tuple[bytes, bytes]], float, bool]


def _answerWith(
    status: int, fields: list[tuple[bytes, bytes]], reachable: bool, request: RequestHead
) -> OriginAnswer:
    """
    test_neverRaises's origin: C{status} with C{fields}, or no answer.
    """
    return (status, list(fields), b"payload") if reachable else None


class RobustnessTests(SynchronousTestCase):
    """
    Whatever fields requests and responses carry, the cache answers: it
    never raises, and what it serves obeys the basic rules.
    """

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.lists(
            st.tuples(
                st.sampled_from([b"GET", b"HEAD", b"POST"]),
                _FIELDS,
                st.sampled_from([200, 203, 204, 206, 301, 304, 404, 500, 503]),
                _FIELDS,
                st.integers(min_value=0, max_value=100),
                st.booleans(),
            ),
            min_size=1,
            max_size=5,
        )
    )
    def test_neverRaises(self, steps: list[_Step]) -> None:
        """
        RFC 9111 as a whole: any sequence of exchanges goes through; no
        stored response marked no-store is ever served; every answer has
        Cache-Status; Age is never negative.
        """
        store = MemoryStore()
        h = CacheHarness(store)
        for method, requestFields, status, responseFields, advance, reachable in steps:
            h.advance(advance)
            h.origin = functools.partial(_answerWith, status, responseFields, reachable)
            result = h.get(URL, list(requestFields), method=method)
            if result.status == 502:
                continue
            self.assertIsNotNone(result.cacheStatus)
            age = result.header(b"age")
            if result.verdict in ("hit", "stale"):
                assert age is not None
                self.assertGreaterEqual(int(age), 0)
                cc = (result.header(b"cache-control") or b"").lower()
                if b"no-store" in cc and b"must-understand" not in cc:
                    self.fail("served a no-store response from the cache: {!r}".format(result))
            self.assertTrue(result.complete)
        self.assertLessEqual(store.size, store.capacity)
        self.assertEqual(store.reserved, 0)
