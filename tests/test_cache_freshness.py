"""
Tests for freshness (RFC 9111 4.2): HTTP-date parsing (RFC 9110 5.6.7), the
freshness lifetime (4.2.1), heuristic freshness (4.2.2) and age (4.2.3), in
L{twisted_proxy.proxy.cache.dates} and L{twisted_proxy.proxy.cache.freshness},
and as the cache applies them with a fake clock.
"""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.http.framing import RequestHead, ResponseHead
from twisted_proxy.http.target import Target, parseTarget
from twisted_proxy.proxy.cache import (
    FRESH_HIT,
    REVALIDATE,
    CacheConfig,
    CacheLookup,
    HTTPCache,
    MemoryStore,
    readAll,
)
from twisted_proxy.proxy.cache.dates import formatHTTPDate, parseHTTPDate
from twisted_proxy.proxy.cache.directives import DELTA_SECONDS_MAX, ResponseDirectives
from twisted_proxy.proxy.cache.entry import StoredResponse
from twisted_proxy.proxy.cache.freshness import (
    currentAge,
    dateValueOf,
    freshnessLifetime,
    parseAge,
)

BOUNDED = settings(max_examples=200, deadline=None)
# Sun, 06 Nov 1994 08:49:37 GMT
T1994 = 784111777.0
NOW = 1700000000.0  # Tue, 14 Nov 2023 22:13:20 GMT


def lifetime(
    headers: list[tuple[bytes, bytes]], status: int = 200, responseTime: float = NOW
) -> tuple[float, bool]:
    return freshnessLifetime(
        status, headers, ResponseDirectives.fromHeaders(headers), responseTime, 0.1, 86400.0
    )


class HTTPDateTests(SynchronousTestCase):
    """
    RFC 9110 5.6.7: "A recipient that parses a timestamp value in an HTTP
    field MUST accept all three HTTP-date formats."
    """

    def test_imfFixdate(self) -> None:
        """
        RFC 9110 5.6.7: the preferred format.
        """
        self.assertEqual(parseHTTPDate(b"Sun, 06 Nov 1994 08:49:37 GMT"), T1994)

    def test_rfc850(self) -> None:
        """
        RFC 9110 5.6.7: the obsolete RFC 850 format.
        """
        self.assertEqual(parseHTTPDate(b"Sunday, 06-Nov-94 08:49:37 GMT", NOW), T1994)

    def test_rfc850TwoDigitYear(self) -> None:
        """
        "Recipients of a timestamp value in rfc850-date format, which uses a
        two-digit year, MUST interpret a timestamp that appears to be more
        than 50 years in the future as representing the most recent year in
        the past that had the same last two digits."
        """
        # In 2023: "70" is 2070 (47 years ahead), "74" is 1974 (51 ahead).
        self.assertEqual(
            parseHTTPDate(b"Thursday, 01-Jan-70 00:00:00 GMT", NOW),
            parseHTTPDate(b"Wed, 01 Jan 2070 00:00:00 GMT"),
        )
        self.assertEqual(
            parseHTTPDate(b"Tuesday, 01-Jan-74 00:00:00 GMT", NOW),
            parseHTTPDate(b"Tue, 01 Jan 1974 00:00:00 GMT"),
        )

    def test_asctime(self) -> None:
        """
        RFC 9110 5.6.7: the ANSI C asctime format.
        """
        self.assertEqual(parseHTTPDate(b"Sun Nov  6 08:49:37 1994"), T1994)
        self.assertEqual(parseHTTPDate(b"Sun Nov 16 08:49:37 1994"), T1994 + 10 * 86400)

    def test_caseOfNames(self) -> None:
        """
        Day and month names in any case.
        """
        self.assertEqual(parseHTTPDate(b"sun, 06 NOV 1994 08:49:37 gmt"), T1994)

    def test_invalid(self) -> None:
        """
        Anything else is not an HTTP-date (RFC 9110 5.6.7).
        """
        for value in [
            b"",
            b"0",
            b"-1",
            b"Sun, 06 Nov 1994 08:49:37 UTC",
            b"Sun, 06 Nov 1994 08:49:37 +0000",
            b"Sun, 06 Nov 1994 08:49 GMT",
            b"Sun, 31 Feb 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 24:49:37 GMT",
            b"Sun, 06 Foo 1994 08:49:37 GMT",
            b"Sun, 06 Nov 0000 08:49:37 GMT",
            b"1994-11-06T08:49:37Z",
            None,
        ]:
            self.assertIsNone(parseHTTPDate(value), value)

    def test_format(self) -> None:
        """
        RFC 9110 5.6.7: senders generate IMF-fixdate.
        """
        self.assertEqual(formatHTTPDate(T1994), b"Sun, 06 Nov 1994 08:49:37 GMT")

    @BOUNDED
    @given(st.integers(min_value=0, max_value=253402300799))
    def test_roundTrip(self, when: int) -> None:
        """
        Formatting then parsing gives the time back.
        """
        self.assertEqual(parseHTTPDate(formatHTTPDate(when)), float(when))

    @BOUNDED
    @given(st.binary(max_size=40))
    def test_neverRaises(self, value: bytes) -> None:
        """
        Parsing never raises, whatever the bytes.
        """
        parseHTTPDate(value)


class LifetimeTests(SynchronousTestCase):
    """
    RFC 9111 4.2.1: s-maxage, then max-age, then Expires - Date, then a
    heuristic.
    """

    def test_sMaxAgeFirst(self) -> None:
        """
        RFC 9111 4.2.1: a shared cache uses s-maxage first.
        """
        self.assertEqual(lifetime([(b"Cache-Control", b"max-age=60, s-maxage=10")]), (10.0, False))

    def test_maxAgeOverExpires(self) -> None:
        """
        5.3: "If a response includes a Cache-Control header field with the
        max-age directive, a recipient MUST ignore the Expires header
        field" -- even an invalid one.
        """
        self.assertEqual(
            lifetime([(b"Expires", b"0"), (b"Cache-Control", b"max-age=60")]), (60.0, False)
        )

    def test_expiresMinusDate(self) -> None:
        """
        RFC 9111 4.2.1: Expires minus Date.
        """
        headers = [(b"Date", formatHTTPDate(NOW - 10)), (b"Expires", formatHTTPDate(NOW + 50))]
        self.assertEqual(lifetime(headers), (60.0, False))

    def test_expiresWithoutDate(self) -> None:
        """
        Without Date, "the time the message was received" stands in.
        """
        self.assertEqual(lifetime([(b"Expires", formatHTTPDate(NOW + 30))]), (30.0, False))

    def test_invalidExpiresIsExpired(self) -> None:
        """
        5.3: "A cache recipient MUST interpret invalid date formats,
        especially the value "0", as representing a time in the past."
        """
        for value in [b"0", b"-1", b"never", b"Thu, 01 Dec 1994 16:00:00 UTC"]:
            self.assertEqual(lifetime([(b"Expires", value)]), (0.0, False), value)

    def test_expiresInThePast(self) -> None:
        """
        RFC 9111 5.3: an Expires in the past: already stale.
        """
        self.assertEqual(lifetime([(b"Expires", formatHTTPDate(NOW - 100))]), (0.0, False))

    def test_conflictingExpires(self) -> None:
        """
        4.2.1: two different Expires lines: considered stale.
        """
        headers = [(b"Expires", formatHTTPDate(NOW + 100)), (b"Expires", formatHTTPDate(NOW + 200))]
        self.assertEqual(lifetime(headers), (0.0, False))

    def test_invalidMaxAge(self) -> None:
        """
        Invalid freshness information: stale, whatever else is there.
        """
        self.assertEqual(
            lifetime([(b"Cache-Control", b"max-age=x"), (b"Expires", formatHTTPDate(NOW + 100))]),
            (0.0, False),
        )

    def test_heuristic(self) -> None:
        """
        4.2.2: 10% of the time since Last-Modified, for heuristically
        cacheable statuses.
        """
        headers = [(b"Date", formatHTTPDate(NOW)), (b"Last-Modified", formatHTTPDate(NOW - 1000))]
        self.assertEqual(lifetime(headers), (100.0, True))
        self.assertEqual(lifetime(headers, status=404), (100.0, True))

    def test_heuristicCapped(self) -> None:
        """
        RFC 9111 4.2.2: the heuristic lifetime is capped.
        """
        headers = [
            (b"Date", formatHTTPDate(NOW)),
            (b"Last-Modified", formatHTTPDate(NOW - 100 * 86400)),
        ]
        self.assertEqual(lifetime(headers), (86400.0, True))

    def test_heuristicOnlyForSomeStatuses(self) -> None:
        """
        4.2.2: "only if the response status code is heuristically cacheable
        or the response is marked public" (here: 302 is not).
        """
        headers = [(b"Date", formatHTTPDate(NOW)), (b"Last-Modified", formatHTTPDate(NOW - 1000))]
        self.assertEqual(lifetime(headers, status=302), (0.0, False))
        self.assertEqual(
            lifetime(headers + [(b"Cache-Control", b"public")], status=302), (100.0, True)
        )

    def test_heuristicWithoutLastModified(self) -> None:
        """
        RFC 9111 4.2.2: without Last-Modified, no heuristic lifetime.
        """
        self.assertEqual(lifetime([(b"Date", formatHTTPDate(NOW))]), (0.0, True))

    def test_lastModifiedInTheFuture(self) -> None:
        """
        RFC 9111 4.2.2: a Last-Modified after Date gives no heuristic lifetime.
        """
        headers = [(b"Date", formatHTTPDate(NOW)), (b"Last-Modified", formatHTTPDate(NOW + 1000))]
        self.assertEqual(lifetime(headers), (0.0, True))


def entry(
    requestTime: float,
    responseTime: float,
    date: float,
    age: int = 0,
) -> StoredResponse:
    return StoredResponse(
        key="http://h/",
        varyNames=(),
        varyValues=(),
        status=200,
        reason=b"OK",
        version=b"1.1",
        headers=[],
        requestTime=requestTime,
        responseTime=responseTime,
        dateValue=date,
        ageValue=age,
    )


class AgeTests(SynchronousTestCase):
    """
    RFC 9111 4.2.3.
    """

    def test_residentTime(self) -> None:
        """
        RFC 9111 4.2.3: resident_time = now - response_time.
        """
        self.assertEqual(currentAge(entry(NOW, NOW, NOW), NOW + 30), 30.0)

    def test_apparentAge(self) -> None:
        """
        apparent_age = max(0, response_time - date_value)
        """
        self.assertEqual(currentAge(entry(NOW, NOW, NOW - 20), NOW), 20.0)
        # A Date in the future gives no negative age.
        self.assertEqual(currentAge(entry(NOW, NOW, NOW + 20), NOW), 0.0)

    def test_correctedAgeValue(self) -> None:
        """
        corrected_age_value = age_value + response_delay; the initial age is
        the larger of it and the apparent age.
        """
        self.assertEqual(currentAge(entry(NOW - 2, NOW, NOW, age=100), NOW + 1), 103.0)
        self.assertEqual(currentAge(entry(NOW - 2, NOW, NOW - 500, age=100), NOW), 500.0)

    def test_capped(self) -> None:
        """
        RFC 9111 1.2.2: ages are capped at 2^31.
        """
        self.assertEqual(
            currentAge(entry(NOW, NOW, NOW, age=DELTA_SECONDS_MAX), NOW + 5),
            float(DELTA_SECONDS_MAX),
        )

    def test_parseAge(self) -> None:
        """
        5.1: the first member of a list; an invalid value is ignored.
        """
        self.assertEqual(parseAge([(b"Age", b"30")]), 30)
        self.assertEqual(parseAge([(b"Age", b"30, 50")]), 30)
        self.assertEqual(parseAge([(b"Age", b"-3")]), 0)
        self.assertEqual(parseAge([(b"Age", b"abc")]), 0)
        self.assertEqual(parseAge([]), 0)
        self.assertEqual(parseAge([(b"Age", b"99999999999999")]), DELTA_SECONDS_MAX)

    def test_dateValue(self) -> None:
        """
        RFC 9111 4.2.3 date_value: Date, or the receipt time without a valid one (RFC
        9110 6.6.1).
        """
        self.assertEqual(dateValueOf([(b"Date", formatHTTPDate(T1994))], NOW), T1994)
        self.assertEqual(dateValueOf([(b"Date", b"garbage")], NOW), NOW)
        self.assertEqual(dateValueOf([], NOW), NOW)

    @BOUNDED
    @given(
        st.floats(min_value=0, max_value=1e6),
        st.floats(min_value=0, max_value=1e6),
        st.floats(min_value=-1e6, max_value=1e6),
        st.integers(min_value=0, max_value=10**6),
        st.floats(min_value=0, max_value=1e6),
        st.floats(min_value=0, max_value=1e6),
    )
    def test_monotonic(
        self, delay: float, sinceRequest: float, dateOffset: float, age: int, t1: float, dt: float
    ) -> None:
        """
        The age never decreases as time passes, and is never below the
        resident time: freshness is monotonic in time (a response fresh at
        one moment was fresh at every earlier one).
        """
        e = entry(NOW - delay, NOW, NOW + dateOffset, age)
        a1 = currentAge(e, NOW + t1)
        a2 = currentAge(e, NOW + t1 + dt)
        self.assertGreaterEqual(a2, a1)
        self.assertGreaterEqual(a1, t1 - 1e-6)


def get(path: bytes = b"/r", *headers: tuple[bytes, bytes]) -> tuple[RequestHead, Target]:
    req = RequestHead(
        b"GET", b"http://example.com" + path, b"1.1", [(b"Host", b"example.com")] + list(headers)
    )
    return req, parseTarget(req.method, req.target, None)


class CacheFreshnessTests(SynchronousTestCase):
    """
    Freshness as the cache applies it, with a fake clock.
    """

    def setUp(self) -> None:
        self.now = NOW
        self.cache = HTTPCache(MemoryStore(), lambda: self.now, CacheConfig(heuristicMax=3600))

    def store(
        self, headers: list[tuple[bytes, bytes]], body: bytes = b"body", delay: float = 0.0
    ) -> None:
        req, target = get()
        lk = self.cache.lookup(req, target)
        response = ResponseHead(
            200,
            b"OK",
            b"1.1",
            headers + [(b"Content-Length", b"%d" % len(body))],
            contentLength=len(body),
        )
        decision = self.cache.responseReceived(lk, response, self.now - delay, self.now)
        assert decision.writer is not None, decision
        decision.writer.write(body)
        self.assertIsNotNone(decision.writer.finish())
        self.cache.finished(lk)

    def lookup(self, *headers: tuple[bytes, bytes]) -> CacheLookup:
        req, target = get(b"/r", *headers)
        return self.cache.lookup(req, target)

    def test_freshUntilMaxAge(self) -> None:
        """
        4.2: "response_is_fresh = (freshness_lifetime > current_age)".
        """
        self.store([(b"Date", formatHTTPDate(self.now)), (b"Cache-Control", b"max-age=60")])
        self.now += 59
        self.assertEqual(self.lookup().outcome, FRESH_HIT)
        self.now += 1
        self.assertEqual(self.lookup().outcome, REVALIDATE)

    def test_ageSent(self) -> None:
        """
        5.1 / 4: "When a stored response is used to satisfy a request
        without validation, a cache MUST generate an Age header field,
        replacing any present in the response with a value equal to the
        stored response's current_age".
        """
        self.store(
            [
                (b"Date", formatHTTPDate(self.now - 5)),
                (b"Age", b"10"),
                (b"Cache-Control", b"max-age=600"),
            ],
            delay=2,
        )
        self.now += 20
        lk = self.lookup()
        self.assertEqual(lk.outcome, FRESH_HIT)
        assert lk.head is not None and lk.body is not None
        ages = [v for n, v in lk.head.headers if n.lower() == b"age"]
        # corrected_age_value = 10 + 2; resident 20.
        self.assertEqual(ages, [b"32"])
        self.assertEqual(readAll(lk.body), b"body")

    def test_ageBeyondLifetime(self) -> None:
        """
        An Age from upstream counts against the lifetime.
        """
        self.store(
            [
                (b"Date", formatHTTPDate(self.now)),
                (b"Age", b"100"),
                (b"Cache-Control", b"max-age=60"),
            ]
        )
        self.assertEqual(self.lookup().outcome, REVALIDATE)

    def test_dateInThePast(self) -> None:
        """
        RFC 9111 4.2.3: apparent_age counts a Date in the past against the lifetime.
        """
        self.store(
            [
                (b"Date", formatHTTPDate(self.now - 100)),
                (b"Cache-Control", b"max-age=60"),
                (b"ETag", b'"e"'),
            ]
        )
        self.assertEqual(self.lookup().outcome, REVALIDATE)

    def test_expires(self) -> None:
        """
        RFC 9111 4.2.1: fresh until Expires.
        """
        self.store(
            [(b"Date", formatHTTPDate(self.now)), (b"Expires", formatHTTPDate(self.now + 30))]
        )
        self.now += 29
        self.assertEqual(self.lookup().outcome, FRESH_HIT)
        self.now += 2
        self.assertEqual(self.lookup().outcome, REVALIDATE)

    def test_heuristicReuse(self) -> None:
        """
        4.2.2 heuristic freshness: 10% of Date - Last-Modified (capped by the
        configured maximum, here 1 hour).
        """
        self.store(
            [
                (b"Date", formatHTTPDate(self.now)),
                (b"Last-Modified", formatHTTPDate(self.now - 500)),
            ]
        )
        self.now += 49
        lk = self.lookup()
        self.assertEqual(lk.outcome, FRESH_HIT)
        self.assertIn(b"ttl=1", lk.cacheStatus)
        self.now += 2
        self.assertEqual(self.lookup().outcome, REVALIDATE)

    @BOUNDED
    @given(st.integers(min_value=0, max_value=10000), st.integers(min_value=0, max_value=10000))
    def test_freshnessMonotonic(self, maxAge: int, elapsed: int) -> None:
        """
        A response the cache serves fresh at some time, it serves fresh at
        every earlier time.
        """
        self.setUp()
        self.store(
            [
                (b"Date", formatHTTPDate(self.now)),
                (b"Cache-Control", b"max-age=%d" % maxAge),
                (b"ETag", b'"e"'),
            ]
        )
        start = self.now
        self.now = start + elapsed
        later = self.lookup().outcome == FRESH_HIT
        self.now = start + elapsed // 2
        earlier = self.lookup().outcome == FRESH_HIT
        if later:
            self.assertTrue(earlier)
        self.assertEqual(later, elapsed < maxAge)
