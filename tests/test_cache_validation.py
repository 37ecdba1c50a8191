"""
Tests for validation (RFC 9111 4.3): the conditional requests the cache
sends (4.3.1), client conditionals it answers (4.3.2, RFC 9110 13), 304
handling and freshening (4.3.3, 4.3.4, 3.2), freshening by HEAD (4.3.5),
and the response directives that force validation (5.2.2).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.http.framing import RequestHead, ResponseHead
from twisted_proxy.proxy.cache import REVALIDATE
from twisted_proxy.proxy.cache.directives import ResponseDirectives
from twisted_proxy.proxy.cache.entry import StoredResponse
from twisted_proxy.proxy.cache.storing import updateHeaders
from twisted_proxy.proxy.cache.testing import CacheHarness, OriginAnswer
from twisted_proxy.proxy.cache.validation import (
    ANY_ETAG,
    ETag,
    notModified,
    parseETagList,
    selectForUpdate,
)

URL = b"http://example.com/doc"
NOW = 1700000000.0


def stored(
    headers: list[tuple[bytes, bytes]], date: float = NOW, responseTime: float = NOW
) -> StoredResponse:
    return StoredResponse(
        key="http://example.com/doc",
        varyNames=(),
        varyValues=(),
        status=200,
        reason=b"OK",
        version=b"1.1",
        headers=headers,
        requestTime=responseTime,
        responseTime=responseTime,
        dateValue=date,
        ageValue=0,
        entryId="e",
    )


class ETagTests(SynchronousTestCase):
    """
    RFC 9110 8.8.3.
    """

    def test_parse(self) -> None:
        """
        RFC 9110 8.8.3: entity tags, strong and weak.
        """
        self.assertEqual(ETag.parse(b'"abc"'), ETag(False, b"abc"))
        self.assertEqual(ETag.parse(b'W/"abc"'), ETag(True, b"abc"))
        self.assertEqual(ETag.parse(b'""'), ETag(False, b""))
        # Unquoted (invalid but common): taken as is.
        self.assertEqual(ETag.parse(b"abc"), ETag(False, b"abc"))
        self.assertIsNone(ETag.parse(b""))
        self.assertIsNone(ETag.parse(None))

    def test_comparison(self) -> None:
        """
        RFC 9110 8.8.3.2's table.
        """
        w1, w1b, s1, s2 = ETag(True, b"1"), ETag(True, b"1"), ETag(False, b"1"), ETag(False, b"2")
        self.assertFalse(w1.strongMatch(w1b))
        self.assertTrue(w1.weakMatch(w1b))
        self.assertFalse(w1.strongMatch(s1))
        self.assertTrue(w1.weakMatch(s1))
        self.assertFalse(s1.weakMatch(s2))
        self.assertTrue(s1.strongMatch(ETag(False, b"1")))

    def test_list(self) -> None:
        """
        RFC 9110 13.1.2: If-None-Match lists, and *.
        """
        self.assertIs(parseETagList(b" * "), ANY_ETAG)
        self.assertEqual(
            parseETagList(b'"a", W/"b,c" ,"d"'),
            [ETag(False, b"a"), ETag(True, b"b,c"), ETag(False, b"d")],
        )
        self.assertIsNone(parseETagList(None))


class NotModifiedTests(SynchronousTestCase):
    """
    RFC 9111 4.3.2: evaluating a client's conditional against a stored
    response.
    """

    def request(self, *headers: tuple[bytes, bytes], method: bytes = b"GET") -> RequestHead:
        return RequestHead(method, URL, b"1.1", list(headers))

    def test_ifNoneMatchWeak(self) -> None:
        """
        If-None-Match uses weak comparison (RFC 9110 13.1.2).
        """
        entry = stored([(b"ETag", b'W/"v1"')])
        self.assertTrue(notModified(self.request((b"If-None-Match", b'"v1"')), entry))
        self.assertTrue(notModified(self.request((b"If-None-Match", b'"x", W/"v1"')), entry))
        self.assertFalse(notModified(self.request((b"If-None-Match", b'"v2"')), entry))
        self.assertTrue(notModified(self.request((b"If-None-Match", b"*")), entry))

    def test_ifNoneMatchWithoutStoredETag(self) -> None:
        """
        RFC 9110 13.1.2: no stored ETag, no match.
        """
        self.assertFalse(notModified(self.request((b"If-None-Match", b'"v1"')), stored([])))

    def test_ifModifiedSince(self) -> None:
        """
        RFC 9110 13.1.3: not modified since the given date.
        """
        entry = stored([(b"Last-Modified", b"Sun, 06 Nov 1994 08:49:37 GMT")])
        self.assertTrue(
            notModified(
                self.request((b"If-Modified-Since", b"Sun, 06 Nov 1994 08:49:37 GMT")), entry
            )
        )
        self.assertTrue(
            notModified(
                self.request((b"If-Modified-Since", b"Mon, 07 Nov 1994 08:49:37 GMT")), entry
            )
        )
        self.assertFalse(
            notModified(
                self.request((b"If-Modified-Since", b"Sat, 05 Nov 1994 08:49:37 GMT")), entry
            )
        )

    def test_ifModifiedSinceUsesDate(self) -> None:
        """
        "If a request contains an If-Modified-Since header field and the
        Last-Modified header field is not present in a stored response, a
        cache SHOULD use the stored response's Date field value".
        """
        entry = stored([], date=784111777.0)
        self.assertTrue(
            notModified(
                self.request((b"If-Modified-Since", b"Sun, 06 Nov 1994 08:49:37 GMT")), entry
            )
        )
        self.assertFalse(
            notModified(
                self.request((b"If-Modified-Since", b"Sat, 05 Nov 1994 08:49:37 GMT")), entry
            )
        )

    def test_ifNoneMatchTakesPrecedence(self) -> None:
        """
        RFC 9110 13.1.3: "A recipient MUST ignore If-Modified-Since if the
        request contains an If-None-Match header field".
        """
        entry = stored([(b"ETag", b'"v1"'), (b"Last-Modified", b"Sun, 06 Nov 1994 08:49:37 GMT")])
        req = self.request(
            (b"If-None-Match", b'"v2"'), (b"If-Modified-Since", b"Mon, 07 Nov 1994 08:49:37 GMT")
        )
        self.assertFalse(notModified(req, entry))

    def test_invalidIfModifiedSinceIgnored(self) -> None:
        """
        RFC 9110 13.1.3: an invalid If-Modified-Since is ignored; only GET and HEAD.
        """
        entry = stored([(b"Last-Modified", b"Sun, 06 Nov 1994 08:49:37 GMT")])
        self.assertIsNone(notModified(self.request((b"If-Modified-Since", b"yesterday")), entry))
        self.assertIsNone(notModified(self.request(), entry))
        self.assertIsNone(
            notModified(self.request((b"If-None-Match", b'"v"'), method=b"POST"), entry)
        )


class SelectForUpdateTests(SynchronousTestCase):
    """
    RFC 9111 4.3.4: which stored responses a 304 identifies.
    """

    def notModified(self, *headers: tuple[bytes, bytes]) -> ResponseHead:
        return ResponseHead(304, b"Not Modified", b"1.1", list(headers), noBody=True)

    def test_strongETag(self) -> None:
        """
        RFC 9111 4.3.4: a strong ETag identifies the stored response to update.
        """
        a = stored([(b"ETag", b'"a"')])
        b = stored([(b"ETag", b'"b"')])
        self.assertEqual(selectForUpdate(self.notModified((b"ETag", b'"b"')), [a, b], NOW), [b])

    def test_strongETagMatchesNone(self) -> None:
        """
        "If none of the stored responses contain at least one of the same
        strong validators, then the cache MUST NOT use the new response to
        update any stored responses."
        """
        a = stored([(b"ETag", b'"a"')])
        self.assertEqual(selectForUpdate(self.notModified((b"ETag", b'"z"')), [a], NOW), [])
        weak = stored([(b"ETag", b'W/"z"')])
        self.assertEqual(selectForUpdate(self.notModified((b"ETag", b'"z"')), [weak], NOW), [])

    def test_weakETagMostRecent(self) -> None:
        """
        Weak validators identify "the most recent of those matching stored
        responses".
        """
        old = stored([(b"ETag", b'W/"w"')], date=NOW - 100)
        new = stored([(b"ETag", b'W/"w"')], date=NOW)
        self.assertEqual(
            selectForUpdate(self.notModified((b"ETag", b'W/"w"')), [old, new], NOW), [new]
        )

    def test_strongLastModified(self) -> None:
        """
        RFC 9111 4.3.4: a strong Last-Modified identifies it too.
        """
        lm = b"Sun, 06 Nov 1994 08:49:37 GMT"
        a = stored([(b"Last-Modified", lm)])
        response = self.notModified(
            (b"Last-Modified", lm), (b"Date", b"Tue, 14 Nov 2023 22:13:20 GMT")
        )
        self.assertEqual(selectForUpdate(response, [a], NOW), [a])

    def test_noValidators(self) -> None:
        """
        A 304 without validators updates the only stored response if it
        has none either.
        """
        bare = stored([])
        self.assertEqual(selectForUpdate(self.notModified(), [bare], NOW), [bare])
        self.assertEqual(selectForUpdate(self.notModified(), [bare, stored([])], NOW), [])
        self.assertEqual(
            selectForUpdate(self.notModified(), [stored([(b"ETag", b'"a"')])], NOW), []
        )


class UpdateHeadersTests(SynchronousTestCase):
    """
    RFC 9111 3.2: "the cache MUST add each header field in the provided
    response to the stored response, replacing field values that are
    already present", with exceptions.
    """

    def test_replaceAndAdd(self) -> None:
        """
        RFC 9111 3.2: fields replaced in place, new ones added.
        """
        result = updateHeaders(
            [(b"Cache-Control", b"max-age=10"), (b"X-A", b"1"), (b"X-A", b"2"), (b"ETag", b'"e"')],
            [(b"x-a", b"3"), (b"Cache-Control", b"max-age=20"), (b"X-New", b"n")],
        )
        self.assertEqual(
            result,
            [
                (b"Cache-Control", b"max-age=20"),
                (b"x-a", b"3"),
                (b"ETag", b'"e"'),
                (b"X-New", b"n"),
            ],
        )

    def test_exceptions(self) -> None:
        """
        Not updated: Content-Length, hop-by-hop fields, Connection's
        options, the proxy fields, Content-Range, and a qualified private's
        fields.
        """
        newHeaders = [
            (b"Content-Length", b"0"),
            (b"Connection", b"X-Hop"),
            (b"X-Hop", b"1"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Proxy-Authenticate", b"Basic"),
            (b"Content-Range", b"bytes 0-1/2"),
            (b"Cache-Control", b'private="X-User"'),
            (b"X-User", b"bob"),
        ]
        result = updateHeaders(
            [(b"X-User", b"alice")], newHeaders, ResponseDirectives.fromHeaders(newHeaders)
        )
        self.assertEqual(result, [(b"X-User", b"alice"), (b"Cache-Control", b'private="X-User"')])


class ValidationThroughCacheTests(SynchronousTestCase):
    """
    Validation, end to end.
    """

    def setUp(self) -> None:
        self.h = CacheHarness()
        self.version = b'"v1"'
        self.body = b"content"
        self.extra: list[tuple[bytes, bytes]] = []
        self.cacheControl = b"max-age=60"

        def origin(request: RequestHead) -> OriginAnswer:
            headers = [
                (b"Date", self.h.date()),
                (b"Cache-Control", self.cacheControl),
                (b"ETag", self.version),
                (b"Last-Modified", b"Sun, 06 Nov 1994 08:49:37 GMT"),
            ] + self.extra
            inm = request.get(b"if-none-match")
            if inm is not None and self.version in [t.strip() for t in inm.split(b",")]:
                return 304, headers, b""
            return 200, headers, self.body

        self.h.origin = origin

    def test_conditionalRequest(self) -> None:
        """
        4.3.1: a stale response is revalidated with its validators.
        """
        self.h.get(URL)
        self.h.advance(61)
        result = self.h.get(URL)
        self.assertEqual(result.lookup.outcome, REVALIDATE)
        sent = self.h.forwarded[-1]
        self.assertEqual(sent.get(b"if-none-match"), b'"v1"')
        self.assertEqual(sent.get(b"if-modified-since"), b"Sun, 06 Nov 1994 08:49:37 GMT")
        self.assertEqual(
            (result.status, result.body, result.verdict), (200, b"content", "revalidated")
        )
        self.assertEqual(result.cacheStatus, b"twisted-proxy; fwd=stale; fwd-status=304; ttl=60")
        self.assertEqual(result.header(b"age"), b"0")

    def test_304FreshensStoredResponse(self) -> None:
        """
        4.3.4: the stored response's fields are updated from the 304 and it
        is fresh again.
        """
        self.h.get(URL)
        self.h.advance(61)
        self.extra = [(b"X-Extra", b"new")]
        self.cacheControl = b"max-age=100"
        self.h.get(URL)
        self.h.advance(99)
        hit = self.h.get(URL)
        self.assertEqual(hit.verdict, "hit")
        self.assertEqual(hit.header(b"x-extra"), b"new")
        self.assertEqual(hit.header(b"cache-control"), b"max-age=100")
        self.assertEqual(hit.header(b"age"), b"99")
        self.assertEqual(len(self.h.forwarded), 2)

    def test_304DoesNotChangeContentLength(self) -> None:
        """
        RFC 9111 3.2: Content-Length is not updated from a 304.
        """
        self.h.get(URL)
        self.h.advance(61)
        self.extra = [(b"Content-Length", b"0")]
        result = self.h.get(URL)
        self.assertEqual(result.header(b"content-length"), b"7")
        self.assertEqual(result.body, b"content")

    def test_304WithoutValidatorsToIfModifiedSince(self) -> None:
        """
        An origin answering If-Modified-Since with a bare 304: the response
        the cache asked about is the one updated.
        """
        self.h.origin = lambda request: (
            (304, [(b"Date", self.h.date())], b"")
            if request.get(b"if-modified-since")
            else (
                200,
                [
                    (b"Date", self.h.date()),
                    (b"Cache-Control", b"max-age=60"),
                    (b"Last-Modified", b"Sun, 06 Nov 1994 08:49:37 GMT"),
                ],
                b"x",
            )
        )
        self.h.get(URL)
        self.h.advance(61)
        result = self.h.get(URL)
        self.assertEqual((result.status, result.body, result.verdict), (200, b"x", "revalidated"))
        self.h.advance(30)
        self.assertEqual(self.h.get(URL).verdict, "hit")

    def test_bare304ForTheClientsTag(self) -> None:
        """
        RFC 9111 4.3.4: a 304 without validators to a request that carried
        the client's entity tags as well as the cache's Last-Modified may be
        about the client's copy: it updates nothing, and goes to the client.
        """
        self.h.origin = lambda request: (
            (304, [(b"Date", self.h.date())], b"")
            if request.get(b"if-none-match")
            else (
                200,
                [
                    (b"Date", self.h.date()),
                    (b"Cache-Control", b"max-age=60"),
                    (b"Last-Modified", b"Sun, 06 Nov 1994 08:49:37 GMT"),
                ],
                b"x",
            )
        )
        self.h.get(URL)
        self.h.advance(61)
        result = self.h.get(URL, [(b"If-None-Match", b'"clients"')])
        self.assertEqual(self.h.forwarded[-1].get(b"if-none-match"), b'"clients"')
        self.assertEqual((result.status, result.verdict), (304, "miss"))
        self.assertEqual(self.h.get(URL).lookup.outcome, REVALIDATE)

    def test_ifNoneMatchStarForwarded(self) -> None:
        """
        C{If-None-Match: *} cannot be combined with the cache's tags: the
        request goes as it came, and its 304 updates nothing.
        """
        self.h.get(URL)
        self.h.advance(61)
        self.h.origin = lambda request: (304, [(b"Date", self.h.date())], b"")
        result = self.h.get(URL, [(b"If-None-Match", b"*")])
        self.assertEqual(self.h.forwarded[-1].get(b"if-none-match"), b"*")
        self.assertIsNone(self.h.forwarded[-1].get(b"if-modified-since"))
        self.assertEqual(result.status, 304)
        self.assertEqual(self.h.get(URL, [(b"Cache-Control", b"only-if-cached")]).status, 504)

    def test_200Replaces(self) -> None:
        """
        RFC 9111 4.3.3: a full response to a validation replaces the stored one.
        """
        self.h.get(URL)
        self.h.advance(61)
        self.version = b'"v2"'
        self.body = b"changed"
        result = self.h.get(URL)
        self.assertEqual((result.body, result.verdict), (b"changed", "refreshed"))
        self.assertEqual(result.cacheStatus, b"twisted-proxy; fwd=stale; fwd-status=200; stored")
        self.assertEqual(self.h.get(URL).body, b"changed")
        self.assertEqual(self.h.store.count, 1)

    def test_clientConditionalOnFreshEntry(self) -> None:
        """
        4.3.2: a client's conditional request is answered 304 from a fresh
        stored response when it matches, with the fields a 304 carries
        (RFC 9110 15.4.5).
        """
        self.h.get(URL)
        result = self.h.get(URL, [(b"If-None-Match", b'"v1"')])
        self.assertEqual((result.status, result.verdict, result.body), (304, "hit", b""))
        self.assertEqual(result.header(b"etag"), b'"v1"')
        self.assertEqual(result.header(b"cache-control"), b"max-age=60")
        self.assertIsNone(result.header(b"content-length"))
        self.assertIsNone(result.header(b"last-modified"))
        other = self.h.get(URL, [(b"If-None-Match", b'"v0"')])
        self.assertEqual((other.status, other.body), (200, b"content"))
        ims = self.h.get(URL, [(b"If-Modified-Since", b"Sun, 06 Nov 1994 08:49:37 GMT")])
        self.assertEqual(ims.status, 304)
        self.assertEqual(len(self.h.forwarded), 1)

    def test_clientConditionalOnlyFor2xx(self) -> None:
        """
        RFC 9110 13.2.1: conditionals are evaluated only when the response
        would otherwise be 2xx: a stored 404 is served as is.
        """
        self.h.origin = lambda request: (
            404,
            [(b"Cache-Control", b"max-age=60"), (b"ETag", b'"nf"')],
            b"not found",
        )
        self.h.get(URL)
        result = self.h.get(URL, [(b"If-None-Match", b'"nf"')])
        self.assertEqual((result.status, result.verdict, result.body), (404, "hit", b"not found"))

    def test_clientConditionalHead(self) -> None:
        """
        RFC 9111 4.3.2: a conditional HEAD is answered 304 from a fresh stored response.
        """
        self.h.get(URL)
        result = self.h.get(URL, [(b"If-None-Match", b'W/"v1"')], method=b"HEAD")
        self.assertEqual(result.status, 304)

    def test_clientConditionalWhileRevalidating(self) -> None:
        """
        4.3.2: the client's entity tags and the cache's are sent together;
        if the 304 is for the cache's response, the client gets a 304 only
        if its own condition matches the updated response.
        """
        self.h.get(URL)
        self.h.advance(61)
        result = self.h.get(URL, [(b"If-None-Match", b'"old"')])
        self.assertEqual(self.h.forwarded[-1].get(b"if-none-match"), b'"old", "v1"')
        self.assertEqual((result.status, result.body), (200, b"content"))
        self.h.advance(61)
        result = self.h.get(URL, [(b"If-None-Match", b'"v1"')])
        self.assertEqual((result.status, result.body), (304, b""))

    def test_clientETagNotOurs(self) -> None:
        """
        A 304 for the client's own entity tag (not one the cache has) is
        relayed: "If the response to the forwarded request is 304 [...] and
        has an ETag field value with an entity tag that is not in the
        client's list, the cache MUST generate a 200" -- and here it is in
        the client's list.
        """
        self.h.get(URL)
        self.h.advance(61)
        self.version = b'"v2"'
        result = self.h.get(URL, [(b"If-None-Match", b'"v2"')])
        self.assertEqual(result.status, 304)
        self.assertEqual(result.verdict, "miss")
        self.assertEqual(result.header(b"etag"), b'"v2"')

    def test_noCacheAlwaysRevalidates(self) -> None:
        """
        5.2.2.4: unqualified no-cache: "the response MUST NOT be used to
        satisfy any other request without forwarding it for validation".
        """
        self.cacheControl = b"no-cache, max-age=600"
        self.h.get(URL)
        result = self.h.get(URL)
        self.assertEqual(result.lookup.outcome, REVALIDATE)
        self.assertEqual(result.verdict, "revalidated")
        self.assertEqual(self.h.forwarded[-1].get(b"if-none-match"), b'"v1"')

    def test_qualifiedNoCache(self) -> None:
        """
        5.2.2.4 qualified: reused without validation only without the named
        fields; with them after validation.
        """
        self.cacheControl = b'no-cache="X-Secret", max-age=600'
        self.extra = [(b"X-Secret", b"s")]
        first = self.h.get(URL)
        self.assertEqual(first.header(b"x-secret"), b"s")
        hit = self.h.get(URL)
        self.assertEqual(hit.verdict, "hit")
        self.assertIsNone(hit.header(b"x-secret"))
        self.h.advance(601)
        validated = self.h.get(URL)
        self.assertEqual(validated.verdict, "revalidated")
        self.assertEqual(validated.header(b"x-secret"), b"s")

    def test_mustRevalidate(self) -> None:
        """
        5.2.2.2: once stale, never served without validation, even to a
        client that accepts stale responses.
        """
        self.cacheControl = b"max-age=10, must-revalidate"
        self.h.get(URL)
        self.h.advance(11)
        result = self.h.get(URL, [(b"Cache-Control", b"max-stale=100")])
        self.assertEqual(result.lookup.outcome, REVALIDATE)

    def test_304NoStoreDeletes(self) -> None:
        """
        A 304 that makes the stored response no-store: served this once,
        then gone.
        """
        self.h.get(URL)
        self.h.advance(61)
        self.cacheControl = b"no-store"
        result = self.h.get(URL)
        self.assertEqual((result.status, result.body), (200, b"content"))
        self.assertEqual(self.h.store.count, 0)


class HeadFreshensTests(SynchronousTestCase):
    """
    RFC 9111 4.3.5: a 200 to HEAD updates or invalidates stored GET
    responses; and HEAD is answered from a stored GET response.
    """

    def setUp(self) -> None:
        self.h = CacheHarness()
        self.etag = b'"v1"'
        self.maxAge = b"max-age=60"
        self.h.origin = lambda request: (
            200,
            [
                (b"Date", self.h.date()),
                (b"Cache-Control", self.maxAge),
                (b"ETag", self.etag),
                (b"Content-Length", b"4"),
            ],
            b"body",
        )

    def test_headFromStoredGet(self) -> None:
        """
        RFC 9111 4.3.5 / RFC 9110 9.3.2: HEAD answered from a stored GET response,
        without body.
        """
        self.h.get(URL)
        head = self.h.get(URL, method=b"HEAD")
        self.assertEqual((head.status, head.verdict, head.body), (200, "hit", b""))
        self.assertEqual(head.header(b"content-length"), b"4")
        self.assertIsNone(head.lookup.body)

    def test_headUpdates(self) -> None:
        """
        RFC 9111 4.3.5: a matching 200 to HEAD freshens the stored GET response.
        """
        self.h.get(URL)
        self.h.advance(61)
        self.maxAge = b"max-age=300"
        head = self.h.get(URL, method=b"HEAD")
        self.assertEqual(head.verdict, "refreshed")
        # The HEAD revalidation was conditional and answered 200: the
        # stored GET response matches (same ETag and length): freshened.
        self.h.advance(200)
        self.assertEqual(self.h.get(URL).verdict, "hit")

    def test_headInvalidates(self) -> None:
        """
        RFC 9111 4.3.5: a 200 to HEAD with another ETag makes the stored response stale.
        """
        self.h.get(URL)
        self.h.advance(61)
        self.etag = b'"v2"'
        self.h.get(URL, method=b"HEAD")
        # The stored GET response no longer matches: stale, revalidated.
        self.assertEqual(self.h.get(URL).lookup.outcome, REVALIDATE)
