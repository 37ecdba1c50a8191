"""
Tests for L{twisted_proxy.proxy.cache.directives}: C{Cache-Control} (RFC 9111
5.2), C{Pragma} (5.4) and delta-seconds (1.2.2).
"""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.proxy.cache.directives import (
    DELTA_SECONDS_MAX,
    MAX_STALE_ANY,
    RequestDirectives,
    ResponseDirectives,
    parseDeltaSeconds,
    parseDirectives,
    parseFieldNames,
)

BOUNDED = settings(max_examples=300, deadline=None)


def response(*values: bytes) -> ResponseDirectives:
    return ResponseDirectives.fromHeaders([(b"Cache-Control", v) for v in values])


def request(*headers: tuple[bytes, bytes]) -> RequestDirectives:
    return RequestDirectives.fromHeaders(list(headers))


class ParseDirectivesTests(SynchronousTestCase):
    """
    RFC 9111 5.2: C{#cache-directive}, C{token [ "=" ( token /
    quoted-string ) ]}, names case-insensitive.
    """

    def test_simple(self) -> None:
        """
        RFC 9111 5.2: a list of directives with and without arguments.
        """
        self.assertEqual(
            parseDirectives([b"max-age=60, no-cache"]),
            [(b"max-age", b"60"), (b"no-cache", None)],
        )

    def test_caseInsensitiveNames(self) -> None:
        """
        5.2: "Cache directives are identified by a token, to be compared
        case-insensitively".
        """
        self.assertEqual(
            parseDirectives([b"Max-Age=60, NO-STORE"]), [(b"max-age", b"60"), (b"no-store", None)]
        )

    def test_quotedArgument(self) -> None:
        """
        5.2: recipients "ought to accept both forms, even if a specific form
        is required for generation".  A quoted-string may hold commas and
        quoted-pairs.
        """
        self.assertEqual(
            parseDirectives([b'max-age="60", private="set-cookie, x-a", ext="a\\"b"']),
            [(b"max-age", b"60"), (b"private", b"set-cookie, x-a"), (b"ext", b'a"b')],
        )
        self.assertEqual(response(b'max-age="60"').maxAge, 60)

    def test_severalLines(self) -> None:
        """
        Several field lines are one list (RFC 9110 5.3).
        """
        cc = response(b"max-age=60", b"must-revalidate")
        self.assertEqual(cc.maxAge, 60)
        self.assertTrue(cc.mustRevalidate)

    def test_whitespaceAndEmptyElements(self) -> None:
        """
        Whitespace and empty elements around commas are allowed (the
        #rule of RFC 9110 5.6.1).
        """
        self.assertEqual(
            parseDirectives([b" ,, max-age=60 ,\tpublic , "]),
            [(b"max-age", b"60"), (b"public", None)],
        )

    def test_malformedKeptAsInvalid(self) -> None:
        """
        A malformed element that starts with a name stays, with an empty
        (unusable) argument, so it is read the restrictive way; an element
        without a name is skipped; the rest of the field still counts.
        """
        self.assertEqual(
            parseDirectives([b"max-age=60 junk, @@, no-store, =x, public"]),
            [(b"max-age", b""), (b"no-store", None), (b"public", None)],
        )
        self.assertEqual(
            parseDirectives([b'a="unterminated, max-age=5']),
            [(b"a", b"")],
        )
        self.assertEqual(parseDirectives([b'x=y"z", max-age=5']), [(b"x", b""), (b"max-age", b"5")])

    def test_whitespaceAroundEquals(self) -> None:
        """
        C{max-age = 60} is not C{token "=" token}: invalid freshness
        information, so stale (RFC 9111 4.2.1).
        """
        self.assertEqual(parseDirectives([b"max-age = 60"]), [(b"max-age", b"")])
        self.assertEqual(parseDirectives([b"max-age= 60"]), [(b"max-age", b"")])
        self.assertTrue(response(b"max-age = 60").invalidFreshness)
        self.assertTrue(response(b'private = "x"').private)

    @BOUNDED
    @given(st.lists(st.binary(max_size=40), max_size=4))
    def test_neverRaises(self, values: list[bytes]) -> None:
        """
        Any bytes parse; the directive objects build from them.
        """
        pairs = parseDirectives(values)
        for name, _ in pairs:
            self.assertEqual(name, name.lower())
            self.assertTrue(name)
        ResponseDirectives(pairs)
        RequestDirectives(pairs)

    @BOUNDED
    @given(
        st.lists(
            st.tuples(
                st.sampled_from([b"max-age", b"S-MaxAge", b"no-cache", b"private", b"x-ext"]),
                st.one_of(
                    st.none(),
                    st.from_regex(rb"\A[a-z0-9]{0,5}\Z"),
                    st.from_regex(rb'\A"[a-z0-9, ]{0,8}"\Z'),
                ),
            ),
            max_size=5,
        )
    )
    def test_roundTrip(self, directives: list[tuple[bytes, bytes | None]]) -> None:
        """
        Serialised directives parse back to themselves (unquoted, lower
        case).
        """
        value = b", ".join(n if a is None else n + b"=" + a for n, a in directives)
        expected = [
            (n.lower(), None if a is None else (a[1:-1] if a.startswith(b'"') else a))
            for n, a in directives
        ]
        # An empty unquoted argument ("max-age=") is a valid empty token
        # for our parser: it parses as an empty argument.
        self.assertEqual(parseDirectives([value]), expected)


class DeltaSecondsTests(SynchronousTestCase):
    """
    RFC 9111 1.2.2: C{delta-seconds = 1*DIGIT}.
    """

    def test_valid(self) -> None:
        """
        RFC 9111 1.2.2: delta-seconds is 1*DIGIT (leading zeros allowed).
        """
        self.assertEqual(parseDeltaSeconds(b"0"), 0)
        self.assertEqual(parseDeltaSeconds(b"0060"), 60)

    def test_invalid(self) -> None:
        """
        RFC 9111 1.2.2: anything but digits is not a delta-seconds.
        """
        for value in [b"", b"-1", b"1.5", b"+5", b" 5", b"5s", b"0x10", None]:
            self.assertIsNone(parseDeltaSeconds(value), value)

    def test_overflow(self) -> None:
        """
        "If a cache receives a delta-seconds value greater than the greatest
        integer it can represent [...] the cache MUST consider the value to
        be 2147483648 (2^31)".
        """
        self.assertEqual(parseDeltaSeconds(b"2147483648"), DELTA_SECONDS_MAX)
        self.assertEqual(parseDeltaSeconds(b"99999999999999999999999"), DELTA_SECONDS_MAX)
        self.assertEqual(parseDeltaSeconds(b"2147483647"), 2147483647)


class ResponseDirectivesTests(SynchronousTestCase):
    """
    RFC 9111 5.2.2 and RFC 5861.
    """

    def test_booleans(self) -> None:
        """
        RFC 9111 5.2.2: the directives without arguments.
        """
        cc = response(
            b"no-store, public, must-revalidate, proxy-revalidate, must-understand, "
            b"immutable, no-transform"
        )
        for attr in [
            "noStore",
            "public",
            "mustRevalidate",
            "proxyRevalidate",
            "mustUnderstand",
            "immutable",
            "noTransform",
        ]:
            self.assertTrue(getattr(cc, attr), attr)
        empty = response()
        self.assertFalse(empty.noStore or empty.noCache or empty.private or empty.public)

    def test_maxAgeSMaxAge(self) -> None:
        """
        RFC 9111 5.2.2.1 and 5.2.2.10: max-age and s-maxage.
        """
        cc = response(b"max-age=60, s-maxage=30")
        self.assertEqual((cc.maxAge, cc.sMaxAge, cc.invalidFreshness), (60, 30, False))

    def test_invalidMaxAgeIsStale(self) -> None:
        """
        4.2.1: "Caches are encouraged to consider responses that have
        invalid freshness information (e.g., a max-age directive with
        non-integer content) to be stale."
        """
        for value in [b"max-age=abc", b"max-age=-1", b"max-age=1.5", b"max-age", b"s-maxage=x"]:
            cc = response(value)
            self.assertTrue(cc.invalidFreshness, value)

    def test_conflictingDuplicatesAreStale(self) -> None:
        """
        4.2.1: with several values, "either the first occurrence should be
        used or the response should be considered stale": we consider it
        stale; the same value twice is no conflict.
        """
        self.assertTrue(response(b"max-age=3600, max-age=1").invalidFreshness)
        self.assertTrue(response(b"max-age=1", b"max-age=3600").invalidFreshness)
        same = response(b"max-age=60", b"max-age=60")
        self.assertEqual((same.maxAge, same.invalidFreshness), (60, False))

    def test_noCacheQualified(self) -> None:
        """
        5.2.2.4: the qualified form lists field names.
        """
        cc = response(b'no-cache="Set-Cookie, X-Foo"')
        self.assertFalse(cc.noCache)
        self.assertEqual(cc.noCacheFields, frozenset([b"set-cookie", b"x-foo"]))
        self.assertTrue(response(b"no-cache").noCache)

    def test_unqualifiedWins(self) -> None:
        """
        The unqualified form anywhere is the most restrictive: it wins.
        """
        cc = response(b'no-cache="x", no-cache')
        self.assertTrue(cc.noCache)
        self.assertEqual(cc.noCacheFields, frozenset())
        cc = response(b'private="a"', b'private="b"')
        self.assertFalse(cc.private)
        self.assertEqual(cc.privateFields, frozenset([b"a", b"b"]))
        self.assertTrue(response(b'private=""').private)
        self.assertTrue(response(b'private, private="a"').private)

    def test_tokenFormOfFieldList(self) -> None:
        """
        A single field name may come as a token (recipients accept both
        forms).
        """
        self.assertEqual(response(b"private=set-cookie").privateFields, frozenset([b"set-cookie"]))

    def test_staleExtensions(self) -> None:
        """
        RFC 5861 3 and 4: the smallest valid value; invalid ones ignored.
        """
        cc = response(b"stale-while-revalidate=30, stale-if-error=600")
        self.assertEqual((cc.staleWhileRevalidate, cc.staleIfError), (30, 600))
        cc = response(b"stale-while-revalidate=x, stale-if-error=10, stale-if-error=5")
        self.assertEqual((cc.staleWhileRevalidate, cc.staleIfError), (None, 5))

    def test_prohibitsStale(self) -> None:
        """
        4.2.4: no-cache, must-revalidate, s-maxage and proxy-revalidate
        forbid serving stale (for a shared cache).
        """
        for value in [b"no-cache", b"must-revalidate", b"proxy-revalidate", b"s-maxage=5"]:
            self.assertTrue(response(value).prohibitsStale, value)
        self.assertFalse(response(b"max-age=5, public").prohibitsStale)

    def test_unknownIgnored(self) -> None:
        """
        5.2.3: unknown extensions are ignored.
        """
        cc = response(b"community=UCI, max-age=5")
        self.assertEqual(cc.maxAge, 5)


class RequestDirectivesTests(SynchronousTestCase):
    """
    RFC 9111 5.2.1 and 5.4.
    """

    def test_directives(self) -> None:
        """
        RFC 9111 5.2.1: the request directives.
        """
        cc = request(
            (b"Cache-Control", b"no-cache, no-store, only-if-cached, max-age=5, min-fresh=3")
        )
        self.assertTrue(cc.noCache and cc.noStore and cc.onlyIfCached)
        self.assertEqual((cc.maxAge, cc.minFresh, cc.maxStale), (5, 3, None))
        self.assertFalse(cc.empty)
        self.assertTrue(request().empty)

    def test_maxStale(self) -> None:
        """
        5.2.1.2: "If no value is assigned to max-stale, then the client will
        accept a stale response of any age."
        """
        self.assertEqual(request((b"Cache-Control", b"max-stale")).maxStale, MAX_STALE_ANY)
        self.assertEqual(request((b"Cache-Control", b"max-stale=10")).maxStale, 10)
        self.assertEqual(request((b"Cache-Control", b"max-stale=10, max-stale")).maxStale, 10)
        self.assertIsNone(request((b"Cache-Control", b"max-stale=x")).maxStale)

    def test_mostRestrictive(self) -> None:
        """
        Duplicates: the most restrictive value; an invalid max-age is 0.
        """
        cc = request((b"Cache-Control", b"max-age=50, max-age=10, min-fresh=1, min-fresh=9"))
        self.assertEqual((cc.maxAge, cc.minFresh), (10, 9))
        self.assertEqual(request((b"Cache-Control", b"max-age=abc")).maxAge, 0)
        self.assertIsNone(request((b"Cache-Control", b"min-fresh=abc")).minFresh)

    def test_pragmaWithoutCacheControl(self) -> None:
        """
        5.4: "When the Cache-Control header field is not present in a
        request, caches MUST consider the no-cache request pragma-directive
        as having the same effect as if "Cache-Control: no-cache" were
        present."
        """
        self.assertTrue(request((b"Pragma", b"no-cache")).noCache)
        self.assertTrue(request((b"pragma", b"NO-CACHE, x=1")).noCache)
        self.assertFalse(request((b"Pragma", b"x-other")).noCache)

    def test_pragmaIgnoredWithCacheControl(self) -> None:
        """
        RFC 9111 5.4: Pragma counts only without Cache-Control.
        """
        cc = request((b"Pragma", b"no-cache"), (b"Cache-Control", b"max-age=5"))
        self.assertFalse(cc.noCache)
        self.assertEqual(cc.maxAge, 5)

    def test_staleIfError(self) -> None:
        """
        RFC 5861 4: stale-if-error as a request directive.
        """
        self.assertEqual(request((b"Cache-Control", b"stale-if-error=30")).staleIfError, 30)


class FieldNamesTests(SynchronousTestCase):
    def test_parse(self) -> None:
        """
        The field names of a qualified private or no-cache (RFC 9111 5.2.2.4, 5.2.2.7).
        """
        self.assertEqual(parseFieldNames(b" A, b ,,c d"), frozenset([b"a", b"b"]))
        self.assertEqual(parseFieldNames(None), frozenset())
