"""
Tests for secondary keys (RFC 9111 4.1): C{Vary}, normalisation of the
selecting request fields, several variants of one URL.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.http.framing import RequestHead
from twisted_proxy.proxy.cache import MISS, CacheConfig
from twisted_proxy.proxy.cache.keys import VARY_STAR, secondaryKey, varyNames
from twisted_proxy.proxy.cache.testing import CacheHarness, OriginAnswer, Result

URL = b"http://example.com/v"


class VaryNamesTests(SynchronousTestCase):
    def test_names(self) -> None:
        """
        Field names are case-insensitive; lines combine; duplicates drop.
        """
        self.assertEqual(
            varyNames(
                [(b"Vary", b"Accept-Encoding, ACCEPT-language"), (b"vary", b"accept-encoding, X-A")]
            ),
            (b"accept-encoding", b"accept-language", b"x-a"),
        )
        self.assertEqual(varyNames([]), ())
        self.assertEqual(varyNames([(b"Vary", b"")]), ())

    def test_star(self) -> None:
        """
        RFC 9110 12.5.5: Vary: * anywhere.
        """
        self.assertIs(varyNames([(b"Vary", b"Accept, *")]), VARY_STAR)


class SecondaryKeyTests(SynchronousTestCase):
    """
    4.1: "The header fields from two requests are defined to match if and
    only if those in the first request can be transformed to those in the
    second request by applying any of the following: adding or removing
    whitespace, where allowed in the header field's syntax; combining
    multiple header field lines with the same field name; normalizing both
    header field values in a way that is known to have identical
    semantics".
    """

    def key(
        self, *headers: tuple[bytes, bytes], names: tuple[bytes, ...] = (b"accept-encoding",)
    ) -> tuple[bytes | None, ...]:
        return secondaryKey(names, list(headers))

    def test_whitespace(self) -> None:
        """
        RFC 9111 4.1: whitespace differences do not matter.
        """
        self.assertEqual(
            self.key((b"Accept-Encoding", b"gzip,deflate")),
            self.key((b"Accept-Encoding", b" gzip ,  deflate ")),
        )

    def test_combinedLines(self) -> None:
        """
        RFC 9111 4.1: combining field lines does not matter.
        """
        self.assertEqual(
            self.key((b"Accept-Encoding", b"gzip, deflate")),
            self.key((b"Accept-Encoding", b"gzip"), (b"accept-encoding", b"deflate")),
        )

    def test_caseOfCaselessFields(self) -> None:
        """
        RFC 9111 4.1: case-normalisation where values are case-insensitive (the Accept
        fields).
        """
        self.assertEqual(
            self.key((b"Accept-Encoding", b"GZIP")), self.key((b"Accept-Encoding", b"gzip"))
        )
        # Other fields' values stay case-sensitive.
        self.assertNotEqual(
            self.key((b"X-A", b"A"), names=(b"x-a",)), self.key((b"X-A", b"a"), names=(b"x-a",))
        )

    def test_parameters(self) -> None:
        """
        RFC 9111 4.1: whitespace around parameters does not matter.
        """
        self.assertEqual(
            self.key((b"Accept", b"text/html; q=0.9"), names=(b"accept",)),
            self.key((b"Accept", b"text/html;q=0.9"), names=(b"accept",)),
        )

    def test_absent(self) -> None:
        """
        RFC 9111 4.1: an absent field matches only an absent field.
        """
        self.assertEqual(self.key(), (None,))
        self.assertNotEqual(self.key(), self.key((b"Accept-Encoding", b"")))


class VaryThroughCacheTests(SynchronousTestCase):
    """
    Variants stored and selected by the cache.
    """

    def setUp(self, config: CacheConfig | None = None) -> None:
        self.h = CacheHarness(config=config)

        def origin(request: RequestHead) -> OriginAnswer:
            lang = request.get(b"accept-language") or b"none"
            return (
                200,
                [
                    (b"Date", self.h.date()),
                    (b"Cache-Control", b"max-age=60"),
                    (b"Vary", b"Accept-Language"),
                ],
                lang,
            )

        self.h.origin = origin

    def lang(self, value: bytes | None) -> Result:
        headers = [] if value is None else [(b"Accept-Language", value)]
        return self.h.get(URL, headers)

    def test_variants(self) -> None:
        """
        Several responses for one URL are stored, each served only to
        requests that match it.
        """
        self.assertEqual(
            self.lang(b"en").cacheStatus, b"twisted-proxy; fwd=uri-miss; fwd-status=200; stored"
        )
        fr = self.lang(b"fr")
        self.assertEqual(fr.cacheStatus, b"twisted-proxy; fwd=vary-miss; fwd-status=200; stored")
        self.assertEqual(self.lang(b"en").body, b"en")
        self.assertEqual(self.lang(b"fr").body, b"fr")
        self.assertEqual(self.lang(b" fr ").verdict, "hit")
        self.assertEqual(len(self.h.forwarded), 2)
        self.assertEqual(self.h.store.count, 2)

    def test_absentMatchesAbsent(self) -> None:
        """
        RFC 9111 4.1: a request without the field matches a response stored for one
        without it.
        """
        self.lang(None)
        hit = self.lang(None)
        self.assertEqual((hit.verdict, hit.body), ("hit", b"none"))
        self.assertEqual(self.lang(b"en").verdict, "miss")

    def test_newResponseReplacesSameVariant(self) -> None:
        """
        A new response for the same secondary key replaces the old one.
        """
        self.lang(b"en")
        self.h.advance(61)
        self.h.origin = lambda request: (
            200,
            [
                (b"Date", self.h.date()),
                (b"Cache-Control", b"max-age=60"),
                (b"Vary", b"Accept-Language"),
            ],
            b"new",
        )
        self.assertEqual(self.lang(b"en").body, b"new")
        self.assertEqual(self.h.store.count, 1)
        self.assertEqual(self.lang(b"en").body, b"new")

    def test_varyStarNeverServed(self) -> None:
        """
        RFC 9111 4.1: Vary: * always fails to match: not stored, never served.
        """
        self.h.origin = lambda request: (
            200,
            [(b"Cache-Control", b"max-age=60"), (b"Vary", b"*")],
            b"x",
        )
        first = self.lang(b"en")
        self.assertIn(b"detail=vary-star", first.cacheStatus)
        self.assertEqual(self.lang(b"en").verdict, "miss")

    def test_responseWithoutVaryReplacesVariants(self) -> None:
        """
        A response without Vary matches every request and is the most
        recent: the variants it supersedes are dropped.
        """
        self.lang(b"en")
        self.lang(b"fr")
        self.h.advance(61)
        self.h.origin = lambda request: (
            200,
            [(b"Date", self.h.date()), (b"Cache-Control", b"max-age=60")],
            b"all",
        )
        self.assertEqual(self.lang(b"de").body, b"all")
        self.assertEqual(self.h.store.count, 1)
        self.assertEqual(self.lang(b"en").body, b"all")

    def test_mostRecentSelected(self) -> None:
        """
        4.1: among several matching responses "the most recent response (as
        determined by the Date header field) is used".
        """
        # Two responses for the same request, stored by two concurrent
        # writers (not collapsed): the first to commit has the later Date.
        self.setUp(CacheConfig(collapsedForwarding=False))
        req, target = self.h.request(URL, [(b"Accept-Language", b"en")])
        from twisted_proxy.http.framing import ResponseHead

        lookups = [self.h.cache.lookup(req, target) for _ in range(2)]
        self.assertEqual([lk.outcome for lk in lookups], [MISS, MISS])
        writers = []
        for i, lk in enumerate(lookups):
            head = ResponseHead(
                200,
                b"OK",
                b"1.1",
                [
                    (b"Date", self.h.date(i)),
                    (b"Cache-Control", b"max-age=60"),
                    (b"Content-Length", b"1"),
                ],
                contentLength=1,
            )
            writers.append(self.h.cache.responseReceived(lk, head, self.h.now, self.h.now).writer)
        first, second = writers
        assert first is not None and second is not None
        second.write(b"2")
        second.finish()
        first.write(b"1")
        first.finish()
        for lk in lookups:
            self.h.cache.finished(lk)
        # One response per variant is kept: the more recent by Date, though
        # the older one committed last.
        self.assertEqual(self.h.store.count, 1)
        hit = self.lang(b"en")
        self.assertEqual((hit.verdict, hit.body), ("hit", b"2"))
