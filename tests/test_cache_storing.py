"""
Tests for storing responses (RFC 9111 3): what a shared cache may store, and
which fields it stores (3.1), through L{twisted_proxy.proxy.cache.storing} and
the cache as a whole.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.http.framing import RequestHead, ResponseHead
from twisted_proxy.proxy.cache.directives import RequestDirectives, ResponseDirectives
from twisted_proxy.proxy.cache.freshness import HEURISTIC_STATUSES
from twisted_proxy.proxy.cache.storing import storedHeaders, unstorableReason
from twisted_proxy.proxy.cache.testing import CacheHarness, Result

URL = b"http://example.com/thing"


def reason(
    responseHeaders: list[tuple[bytes, bytes]],
    status: int = 200,
    requestHeaders: list[tuple[bytes, bytes]] | None = None,
    method: bytes = b"GET",
) -> str | None:
    req = RequestHead(method, URL, b"1.1", requestHeaders or [])
    resp = ResponseHead(status, b"", b"1.1", responseHeaders)
    return unstorableReason(
        req,
        RequestDirectives.fromHeaders(req.headers),
        resp,
        ResponseDirectives.fromHeaders(resp.headers),
    )


class UnstorableReasonTests(SynchronousTestCase):
    """
    RFC 9111 3: "A cache MUST NOT store a response to a request unless"...
    """

    def test_methodUnderstood(self) -> None:
        """
        "the request method is understood by the cache": GET only (HEAD
        responses freshen stored GET responses instead, 4.3.5).
        """
        self.assertIsNone(reason([(b"Cache-Control", b"max-age=60")]))
        for method in [b"HEAD", b"POST", b"PUT", b"OPTIONS", b"FOO"]:
            self.assertEqual(reason([(b"Cache-Control", b"max-age=60")], method=method), "method")

    def test_finalStatus(self) -> None:
        """
        "the response status code is final"; 206 and 304 are not stored.
        """
        self.assertEqual(reason([(b"Cache-Control", b"max-age=60")], status=100), "interim")
        self.assertEqual(reason([(b"Cache-Control", b"max-age=60")], status=304), "not-modified")
        self.assertEqual(reason([(b"Cache-Control", b"max-age=60")], status=206), "partial")

    def test_noStore(self) -> None:
        """
        "the no-store cache directive is not present in the response".
        """
        self.assertEqual(reason([(b"Cache-Control", b"max-age=60, no-store")]), "no-store")
        self.assertEqual(
            reason([(b"Cache-Control", b"max-age=60"), (b"Cache-Control", b"NO-STORE")]), "no-store"
        )

    def test_requestNoStore(self) -> None:
        """
        5.2.1.5: "a cache MUST NOT store any part of either this request or
        any response to it".
        """
        self.assertEqual(
            reason(
                [(b"Cache-Control", b"max-age=60")],
                requestHeaders=[(b"Cache-Control", b"no-store")],
            ),
            "request-no-store",
        )

    def test_private(self) -> None:
        """
        "if the cache is shared: the private response directive is either
        not present or allows a shared cache to store a modified response".
        """
        self.assertEqual(reason([(b"Cache-Control", b"private, max-age=60")]), "private")
        self.assertIsNone(reason([(b"Cache-Control", b'private="set-cookie", max-age=60')]))

    def test_authorization(self) -> None:
        """
        3.5: a shared cache stores a response to a request with
        Authorization only with public, s-maxage or must-revalidate.
        """
        auth = [(b"Authorization", b"Basic dTpw")]
        self.assertEqual(
            reason([(b"Cache-Control", b"max-age=60")], requestHeaders=auth), "authorization"
        )
        for allowing in [b"public, max-age=60", b"s-maxage=60", b"max-age=60, must-revalidate"]:
            self.assertIsNone(reason([(b"Cache-Control", allowing)], requestHeaders=auth), allowing)

    def test_needsFreshnessOrHeuristicStatus(self) -> None:
        """
        The response needs public, Expires, max-age, s-maxage, or a status
        "defined as heuristically cacheable".
        """
        for status in sorted(HEURISTIC_STATUSES - {206}):
            self.assertIsNone(reason([], status=status), status)
        for status in [201, 302, 303, 307, 400, 403, 500, 503]:
            self.assertEqual(reason([], status=status), "no-freshness", status)
            self.assertIsNone(reason([(b"Cache-Control", b"max-age=60")], status=status), status)
            self.assertIsNone(reason([(b"Expires", b"0")], status=status), status)
            self.assertIsNone(reason([(b"Cache-Control", b"public")], status=status), status)
            self.assertIsNone(reason([(b"Cache-Control", b"s-maxage=5")], status=status), status)

    def test_mustUnderstand(self) -> None:
        """
        5.2.2.3: with must-understand, store only statuses the cache
        implements, and then ignore no-store.
        """
        self.assertIsNone(reason([(b"Cache-Control", b"must-understand, no-store, max-age=60")]))
        self.assertEqual(
            reason([(b"Cache-Control", b"must-understand, no-store, max-age=60")], status=299),
            "must-understand",
        )
        self.assertEqual(
            reason([(b"Cache-Control", b"must-understand, max-age=60")], status=599),
            "must-understand",
        )

    def test_varyStar(self) -> None:
        """
        4.1: "A stored response with a Vary header field value containing a
        member "*" always fails to match": not stored.
        """
        self.assertEqual(
            reason([(b"Cache-Control", b"max-age=60"), (b"Vary", b"Accept, *")]), "vary-star"
        )


class StoredHeadersTests(SynchronousTestCase):
    """
    RFC 9111 3.1: which fields are stored.
    """

    def test_allFieldsKeptExceptConnectionFields(self) -> None:
        """
        "Caches MUST include all received response header fields --
        including unrecognized ones"; Connection and the fields it names
        may be removed before storage; the proxy-specific fields MUST NOT be
        stored.
        """
        headers = [
            (b"Date", b"Sun, 06 Nov 1994 08:49:37 GMT"),
            (b"Connection", b"close, X-Hop"),
            (b"X-Hop", b"1"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Proxy-Authenticate", b"Basic"),
            (b"Proxy-Authentication-Info", b"x"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Content-Length", b"5"),
            (b"Age", b"3"),
            (b"X-Unknown", b"kept"),
            (b"Set-Cookie", b"a=b"),
        ]
        stored = storedHeaders(headers, ResponseDirectives.fromHeaders(headers), 0.0)
        self.assertEqual(
            stored,
            [
                (b"Date", b"Sun, 06 Nov 1994 08:49:37 GMT"),
                (b"X-Unknown", b"kept"),
                (b"Set-Cookie", b"a=b"),
            ],
        )

    def test_privateFieldsDropped(self) -> None:
        """
        5.2.2.7: a qualified private lets a shared cache store the response
        without the fields it names.
        """
        headers = [
            (b"Cache-Control", b'private="set-cookie, x-user", max-age=60'),
            (b"Set-Cookie", b"a=b"),
            (b"X-User", b"alice"),
            (b"Date", b"Sun, 06 Nov 1994 08:49:37 GMT"),
        ]
        stored = storedHeaders(headers, ResponseDirectives.fromHeaders(headers), 0.0)
        self.assertEqual([n for n, _ in stored], [b"Cache-Control", b"Date"])

    def test_dateAdded(self) -> None:
        """
        RFC 9110 6.6.1: a recipient with a clock "MUST record the time it
        was received and append a corresponding Date header field [...] if
        it is cached".
        """
        stored = storedHeaders([(b"X-A", b"1")], ResponseDirectives([]), 784111777.0)
        self.assertEqual(stored, [(b"X-A", b"1"), (b"Date", b"Sun, 06 Nov 1994 08:49:37 GMT")])


class StoringThroughCacheTests(SynchronousTestCase):
    """
    Storing, end to end through the cache.
    """

    def setUp(self) -> None:
        self.h = CacheHarness()

    def answer(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"body"
    ) -> None:
        self.h.origin = lambda request: (status, [(b"Date", self.h.date())] + headers, body)

    def twice(
        self, requestHeaders: list[tuple[bytes, bytes]] | None = None
    ) -> tuple[Result, Result]:
        first = self.h.get(URL, requestHeaders)
        self.h.advance(1)
        second = self.h.get(URL, requestHeaders)
        return first, second

    def test_stored(self) -> None:
        """
        RFC 9111 3 and RFC 9211: a cacheable response is stored (fwd=uri-miss; stored)
        and then a hit.
        """
        self.answer(200, [(b"Cache-Control", b"max-age=60")])
        first, second = self.twice()
        self.assertEqual(first.cacheStatus, b"twisted-proxy; fwd=uri-miss; fwd-status=200; stored")
        self.assertEqual(first.verdict, "miss")
        self.assertEqual(second.verdict, "hit")
        self.assertEqual(second.body, b"body")
        self.assertEqual(len(self.h.forwarded), 1)

    def test_noStoreNotStored(self) -> None:
        """
        RFC 9111 5.2.2.5: no-store.
        """
        self.answer(200, [(b"Cache-Control", b"max-age=60, no-store")])
        first, second = self.twice()
        self.assertEqual(
            first.cacheStatus, b"twisted-proxy; fwd=uri-miss; fwd-status=200; detail=no-store"
        )
        self.assertEqual(second.verdict, "miss")
        self.assertEqual(len(self.h.forwarded), 2)

    def test_privateNotStored(self) -> None:
        """
        RFC 9111 5.2.2.7: private, for a shared cache.
        """
        self.answer(200, [(b"Cache-Control", b"private, max-age=60")])
        _, second = self.twice()
        self.assertEqual(second.verdict, "miss")

    def test_privateFieldsNotServed(self) -> None:
        """
        5.2.2.7: the named fields are not stored, so never served from the
        cache; the first response (relayed) still has them.
        """
        self.answer(
            200, [(b"Cache-Control", b'private="set-cookie", max-age=60'), (b"Set-Cookie", b"s=1")]
        )
        first, second = self.twice()
        self.assertEqual(first.header(b"set-cookie"), b"s=1")
        self.assertEqual(second.verdict, "hit")
        self.assertIsNone(second.header(b"set-cookie"))

    def test_authorizationNotStored(self) -> None:
        """
        RFC 9111 3.5: a response to a request with Authorization is not stored by
        default.
        """
        self.answer(200, [(b"Cache-Control", b"max-age=60")])
        _, second = self.twice([(b"Authorization", b"Basic dTpw")])
        self.assertEqual(second.verdict, "miss")

    def test_authorizationPublicStored(self) -> None:
        """
        RFC 9111 3.5: public allows storing it.
        """
        self.answer(200, [(b"Cache-Control", b"public, max-age=60")])
        _, second = self.twice([(b"Authorization", b"Basic dTpw")])
        self.assertEqual(second.verdict, "hit")

    def test_noFreshnessNoValidatorNotStored(self) -> None:
        """
        A 200 with no freshness information and no validator may be stored
        (heuristically cacheable status) but could never be reused without a
        full transfer: the cache does not keep it.
        """
        self.answer(200, [])
        first, second = self.twice()
        self.assertIn(b"detail=no-validator", first.cacheStatus)
        self.assertEqual(second.verdict, "miss")

    def test_validatorOnlyStored(self) -> None:
        """
        With a validator, a response without freshness is stored and
        revalidated on each use.
        """
        self.answer(200, [(b"ETag", b'"v1"')])
        first, second = self.twice()
        self.assertIn(b"stored", first.cacheStatus)
        self.assertEqual(self.h.forwarded[1].get(b"if-none-match"), b'"v1"')

    def test_explicitlyCacheableStatus(self) -> None:
        """
        A status not cacheable by default is stored when the response has
        explicit freshness.
        """
        self.answer(302, [(b"Location", b"/elsewhere"), (b"Cache-Control", b"max-age=60")], b"")
        _, second = self.twice()
        self.assertEqual(second.verdict, "hit")
        self.assertEqual(second.status, 302)
        self.assertEqual(second.header(b"location"), b"/elsewhere")

    def test_heuristicStatus404(self) -> None:
        """
        RFC 9110 15.1 / RFC 9111 4.2.2: a 404 is heuristically cacheable.
        """
        self.answer(404, [(b"Last-Modified", self.h.date(-10000))], b"gone")
        _, second = self.twice()
        self.assertEqual((second.verdict, second.status, second.body), ("hit", 404, b"gone"))

    def test_status500NotStoredByDefault(self) -> None:
        """
        RFC 9111 3: a 500 without explicit freshness is not stored.
        """
        self.answer(500, [(b"Last-Modified", self.h.date(-10000))])
        _, second = self.twice()
        self.assertEqual(second.verdict, "miss")

    def test_partialNotStored(self) -> None:
        """
        206 responses are never stored (no range combination, 3.3/3.4).
        """
        self.answer(
            206, [(b"Cache-Control", b"max-age=60"), (b"Content-Range", b"bytes 0-3/10")], b"body"
        )
        first, second = self.twice([(b"Range", b"bytes=0-3")])
        self.assertIn(b"detail=partial", first.cacheStatus)
        self.assertEqual(second.verdict, "miss")

    def test_204Stored(self) -> None:
        """
        RFC 9110 15.3.5: a 204 is heuristically cacheable; served without Content-
        Length.
        """
        self.answer(204, [(b"Cache-Control", b"max-age=60")], b"")
        _, second = self.twice()
        self.assertEqual((second.verdict, second.status), ("hit", 204))
        self.assertIsNone(second.header(b"content-length"))

    def test_headNotStored(self) -> None:
        """
        A HEAD response is not stored (GET responses serve HEAD).
        """
        self.answer(200, [(b"Cache-Control", b"max-age=60")])
        self.h.get(URL, method=b"HEAD")
        self.assertEqual(self.h.get(URL).verdict, "miss")

    def test_postNotStored(self) -> None:
        """
        RFC 9111 3: POST responses are not stored (fwd=method).
        """
        self.answer(200, [(b"Cache-Control", b"max-age=60")])
        first = self.h.get(URL, method=b"POST")
        self.assertEqual(first.verdict, "bypass")
        self.assertEqual(first.cacheStatus, b"twisted-proxy; fwd=method; fwd-status=200")
        self.assertEqual(self.h.get(URL).verdict, "miss")

    def test_dateAddedWhenMissing(self) -> None:
        """
        RFC 9110 6.6.1: Date is added when the origin sent none, and kept.
        """
        self.h.origin = lambda request: (200, [(b"Cache-Control", b"max-age=60")], b"x")
        first, second = self.twice()
        self.assertIsNotNone(first.header(b"date"))
        self.assertEqual(second.header(b"date"), first.header(b"date"))

    def test_setCookieStored(self) -> None:
        """
        3.1: all fields are stored, Set-Cookie included (the origin marks
        what must not be shared, with private or no-cache="Set-Cookie").
        """
        self.answer(200, [(b"Cache-Control", b"max-age=60"), (b"Set-Cookie", b"a=b")])
        _, second = self.twice()
        self.assertEqual(second.header(b"set-cookie"), b"a=b")

    def test_cacheStatusNotStored(self) -> None:
        """
        Our Cache-Status is added to the response sent, not stored; an
        upstream cache's member is kept, ours after it (RFC 9211 2).
        """
        self.answer(
            200, [(b"Cache-Control", b"max-age=60"), (b"Cache-Status", b"origin-cache; hit")]
        )
        first, second = self.twice()
        self.assertEqual(
            first.cacheStatus,
            b"origin-cache; hit, twisted-proxy; fwd=uri-miss; fwd-status=200; stored",
        )
        self.assertEqual(second.cacheStatus, b"origin-cache; hit, twisted-proxy; hit; ttl=59")
