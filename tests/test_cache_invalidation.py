"""
Tests for invalidation (RFC 9111 4.4): unsafe methods with a non-error
response invalidate the target URI and same-origin C{Location} and
C{Content-Location}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.http.framing import RequestHead, ResponseHead
from twisted_proxy.http.target import parseTarget
from twisted_proxy.proxy.cache.keys import invalidationKeys, isUnsafe
from twisted_proxy.proxy.cache.testing import CacheHarness, OriginAnswer


def keys(
    method: bytes,
    status: int,
    headers: list[tuple[bytes, bytes]],
    url: bytes = b"http://example.com/a/b",
) -> list[str]:
    req = RequestHead(method, url, b"1.1", [])
    return invalidationKeys(
        req, parseTarget(method, url, None), ResponseHead(status, b"", b"1.1", headers)
    )


class InvalidationKeysTests(SynchronousTestCase):
    def test_unsafe(self) -> None:
        """
        RFC 9110 9.2.1: GET, HEAD, OPTIONS and TRACE are safe; every other
        method, known or not, invalidates.
        """
        for method in [b"GET", b"HEAD", b"OPTIONS", b"TRACE"]:
            self.assertFalse(isUnsafe(method))
        for method in [b"POST", b"PUT", b"DELETE", b"PATCH", b"PROPFIND", b"FOO"]:
            self.assertTrue(isUnsafe(method))

    def test_targetURI(self) -> None:
        """
        "A cache MUST invalidate the target URI when it receives a non-error
        status code in response to an unsafe request method".
        """
        self.assertEqual(keys(b"POST", 200, []), ["http://example.com/a/b"])
        self.assertEqual(keys(b"DELETE", 204, []), ["http://example.com/a/b"])
        self.assertEqual(keys(b"PUT", 302, []), ["http://example.com/a/b"])

    def test_errorsDoNotInvalidate(self) -> None:
        """
        RFC 9111 4.4: only non-error statuses (2xx, 3xx) of unsafe methods invalidate.
        """
        self.assertEqual(keys(b"POST", 404, []), [])
        self.assertEqual(keys(b"POST", 500, []), [])
        self.assertEqual(keys(b"GET", 200, []), [])

    def test_locationAndContentLocation(self) -> None:
        """
        "the URI(s) in the Location and Content-Location response header
        fields (if present) are candidates for invalidation"; relative
        references resolve against the target URI.
        """
        self.assertEqual(
            keys(b"POST", 201, [(b"Location", b"/new"), (b"Content-Location", b"c?x=1")]),
            ["http://example.com/a/b", "http://example.com/new", "http://example.com/a/c?x=1"],
        )
        self.assertEqual(
            keys(b"POST", 200, [(b"Content-Location", b"http://EXAMPLE.com:80/z")]),
            ["http://example.com/a/b", "http://example.com/z"],
        )

    def test_otherOriginNotInvalidated(self) -> None:
        """
        "a cache MUST NOT trigger an invalidation under these conditions if
        the origin [...] of the URI to be invalidated differs from that of
        the target URI".
        """
        for other in [
            b"http://evil.example/x",
            b"//evil.example/x",
            b"http://example.com:8080/x",
            b"https://example.com/x",
        ]:
            self.assertEqual(
                keys(b"POST", 200, [(b"Location", other)]), ["http://example.com/a/b"], other
            )

    def test_garbageLocationIgnored(self) -> None:
        """
        RFC 9111 4.4: an unparseable Location invalidates nothing more.
        """
        self.assertEqual(
            keys(b"POST", 200, [(b"Location", b"http://[bad")]), ["http://example.com/a/b"]
        )


class InvalidationThroughCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = CacheHarness()
        self.status = 200
        self.headers: list[tuple[bytes, bytes]] = []

        def origin(request: RequestHead) -> OriginAnswer:
            if request.method == b"GET":
                return 200, [(b"Cache-Control", b"max-age=600")], b"page"
            return self.status, list(self.headers), b""

        self.h.origin = origin

    def test_postInvalidates(self) -> None:
        """
        RFC 9111 4.4: a POST invalidates the stored response of its target URI.
        """
        self.h.get(b"http://example.com/a")
        self.assertEqual(self.h.get(b"http://example.com/a").verdict, "hit")
        posted = self.h.get(b"http://example.com/a", method=b"POST")
        self.assertEqual(posted.verdict, "bypass")
        self.assertEqual(self.h.get(b"http://example.com/a").verdict, "miss")
        self.assertEqual(self.h.cache.stats.invalidations, 1)

    def test_allVariantsInvalidated(self) -> None:
        """
        RFC 9111 4.4: every stored response of the URI is invalidated (all variants).
        """
        self.h.origin = lambda request: (
            (200, [(b"Cache-Control", b"max-age=600"), (b"Vary", b"X-V")], b"v")
            if request.method == b"GET"
            else (204, [], b"")
        )
        self.h.get(b"http://example.com/a", [(b"X-V", b"1")])
        self.h.get(b"http://example.com/a", [(b"X-V", b"2")])
        self.assertEqual(self.h.store.count, 2)
        self.h.get(b"http://example.com/a", method=b"DELETE")
        self.assertEqual(self.h.store.count, 0)

    def test_locationInvalidated(self) -> None:
        """
        RFC 9111 4.4: the same-origin Location is invalidated.
        """
        self.h.get(b"http://example.com/list")
        self.headers = [(b"Location", b"/list")]
        self.status = 303
        self.h.get(b"http://example.com/form", method=b"POST")
        self.assertEqual(self.h.get(b"http://example.com/list").verdict, "miss")

    def test_errorKeeps(self) -> None:
        """
        RFC 9111 4.4: an error response to an unsafe method invalidates nothing.
        """
        self.h.get(b"http://example.com/a")
        self.status = 403
        self.h.get(b"http://example.com/a", method=b"PUT")
        self.assertEqual(self.h.get(b"http://example.com/a").verdict, "hit")

    def test_originFormAndAbsoluteFormSameKey(self) -> None:
        """
        The same URL in origin-form with Host invalidates the entry stored
        for the absolute-form request.
        """
        self.h.get(b"http://example.com/a")
        req = RequestHead(b"POST", b"/a", b"1.1", [(b"Host", b"EXAMPLE.com:80")])
        lookup = self.h.cache.lookup(req, parseTarget(b"POST", b"/a", b"EXAMPLE.com:80"))
        self.h.cache.responseReceived(
            lookup, ResponseHead(200, b"OK", b"1.1", [], contentLength=0), self.h.now, self.h.now
        )
        self.h.cache.finished(lookup)
        self.assertEqual(self.h.get(b"http://example.com/a").verdict, "miss")

    def test_explicitInvalidate(self) -> None:
        """
        Explicit invalidation of a URI (RFC 9111 4.4's effect, on demand).
        """
        self.h.get(b"http://example.com/a")
        _, target = self.h.request(b"http://example.com/a")
        self.assertEqual(self.h.cache.invalidate(target), 1)
        self.assertEqual(self.h.store.count, 0)
