"""
Tests for collapsed forwarding: L{twisted_proxy.proxy.cache.collapse} and
how L{HTTPCache} uses it.  Concurrent misses for one cacheable URL wait for
the one response in flight instead of each going to the origin.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.http.framing import ResponseHead
from twisted_proxy.proxy.cache import (
    COLLAPSED,
    FORWARD,
    FRESH_HIT,
    MISS,
    REVALIDATE,
    STORED,
    CacheConfig,
    CacheLookup,
    HTTPCache,
    MemoryStore,
    StoreDecision,
    readAll,
)
from twisted_proxy.proxy.cache.collapse import CollapseRegistry
from twisted_proxy.proxy.cache.testing import CacheHarness

URL = b"http://example.com/hot"


class RegistryTests(SynchronousTestCase):
    def test_leadAndJoin(self) -> None:
        """
        Collapsed forwarding (RFC 9111 4, RFC 9211 2.6 collapsed): one flight per key;
        waiters get its result, even late.
        """
        registry = CollapseRegistry()
        self.assertIsNone(registry.join("k"))
        flight = registry.lead("k")
        self.assertIsNotNone(flight)
        self.assertIsNone(registry.lead("k"))
        results: list[str] = []
        waiter = registry.join("k")
        assert waiter is not None
        waiter.wait(results.append)
        other = registry.join("k")
        assert flight is not None
        flight.finish(STORED)
        self.assertEqual(results, [STORED])
        self.assertFalse(registry.inFlight("k"))
        # A waiter that registers its callback after the end gets it at once.
        late: list[str] = []
        assert other is not None
        other.wait(late.append)
        self.assertEqual(late, [STORED])
        # Finishing twice does nothing more.
        flight.finish(FORWARD)
        self.assertEqual(results, [STORED])

    def test_cancel(self) -> None:
        """
        Collapsed forwarding: a cancelled waiter (timeout) is never called back.
        """
        registry = CollapseRegistry()
        flight = registry.lead("k")
        results: list[str] = []
        waiter = registry.join("k")
        assert waiter is not None
        waiter.wait(results.append)
        waiter.cancel()
        assert flight is not None
        self.assertEqual(flight.waiterCount, 0)
        flight.finish(STORED)
        self.assertEqual(results, [])
        waiter.cancel()

    def test_bounded(self) -> None:
        """
        Collapsed forwarding: a flight takes a bounded number of waiters.
        """
        registry = CollapseRegistry(maxWaiters=2)
        registry.lead("k")
        self.assertIsNotNone(registry.join("k"))
        self.assertIsNotNone(registry.join("k"))
        self.assertIsNone(registry.join("k"))
        self.assertEqual(len(registry), 1)

    def test_waitTwice(self) -> None:
        """
        Collapsed forwarding: a waiter has one callback.
        """
        registry = CollapseRegistry()
        registry.lead("k")
        waiter = registry.join("k")
        assert waiter is not None
        waiter.wait(lambda r: None)
        self.assertRaises(RuntimeError, waiter.wait, lambda r: None)


class CollapsedForwardingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.now = 1700000000.0
        self.cache = HTTPCache(MemoryStore(), lambda: self.now)
        self.h = CacheHarness()

    def lookup(self, *headers: tuple[bytes, bytes], method: bytes = b"GET") -> CacheLookup:
        req, target = self.h.request(URL, list(headers), method)
        return self.cache.lookup(req, target)

    def respond(
        self, lookup: CacheLookup, cacheControl: bytes = b"max-age=60", body: bytes = b"shared"
    ) -> StoreDecision:
        head = ResponseHead(
            200,
            b"OK",
            b"1.1",
            [(b"Cache-Control", cacheControl), (b"Content-Length", b"%d" % len(body))],
            contentLength=len(body),
        )
        return self.cache.responseReceived(lookup, head, self.now, self.now)

    def test_waitersGetTheStoredResponse(self) -> None:
        """
        The first miss goes forward; the next ones wait, and once the
        response is stored, they are hits (Cache-Status says collapsed).
        """
        leader = self.lookup()
        self.assertEqual(leader.outcome, MISS)
        waiters = [self.lookup() for _ in range(3)]
        self.assertEqual([w.outcome for w in waiters], [COLLAPSED] * 3)
        woken: list[str] = []
        for w in waiters:
            w.wait(woken.append)
        decision = self.respond(leader)
        self.assertEqual(woken, [])
        assert decision.writer is not None
        decision.writer.write(b"shared")
        decision.writer.finish()
        self.assertEqual(woken, [STORED] * 3)
        for w in waiters:
            again = self.cache.lookupAgain(w)
            self.assertEqual(again.outcome, FRESH_HIT)
            self.assertEqual(again.cacheStatus, b"twisted-proxy; hit; collapsed; ttl=60")
            assert again.body is not None
            self.assertEqual(readAll(again.body), b"shared")
            self.cache.finished(again)
        self.cache.finished(leader)
        self.assertEqual(self.cache.stats.collapsed, 3)

    def test_uncacheableWakesWaitersToForward(self) -> None:
        """
        When the leader's response cannot be shared, the waiters are told at
        once (at its head) and forward their own requests.
        """
        leader = self.lookup()
        waiter = self.lookup()
        woken: list[str] = []
        waiter.wait(woken.append)
        decision = self.respond(leader, cacheControl=b"private")
        self.assertIsNone(decision.writer)
        self.assertEqual(woken, [FORWARD])
        again = self.cache.lookupAgain(waiter)
        self.assertEqual(again.outcome, MISS)
        self.assertEqual(again.cacheStatus, b"twisted-proxy; fwd=uri-miss; collapsed=?0")
        # A retried request never leads a flight (nobody waits on it).
        self.assertEqual(self.lookup().outcome, MISS)

    def test_abortWakesWaiters(self) -> None:
        """
        An aborted upstream transfer stores nothing (RFC 9111 3.3): waiters forward.
        """
        leader = self.lookup()
        waiter = self.lookup()
        woken: list[str] = []
        waiter.wait(woken.append)
        decision = self.respond(leader)
        assert decision.writer is not None
        decision.writer.write(b"sh")
        decision.writer.abort()
        self.assertEqual(woken, [FORWARD])

    def test_tooLargeWakesWaitersEarly(self) -> None:
        """
        As soon as the store gives up, waiters stop waiting.
        """
        self.cache = HTTPCache(MemoryStore(capacity=1 << 20, maxObjectSize=4), lambda: self.now)
        leader = self.lookup()
        waiter = self.lookup()
        woken: list[str] = []
        waiter.wait(woken.append)
        head = ResponseHead(200, b"OK", b"1.1", [(b"Cache-Control", b"max-age=60")], chunked=True)
        decision = self.cache.responseReceived(leader, head, self.now, self.now)
        assert decision.writer is not None
        decision.writer.write(b"abc")
        self.assertEqual(woken, [])
        self.assertFalse(decision.writer.write(b"defg"))
        self.assertEqual(woken, [FORWARD])

    def test_upstreamFailureWakesWaiters(self) -> None:
        """
        An upstream failure of the leader: waiters forward their own requests.
        """
        leader = self.lookup()
        waiter = self.lookup()
        woken: list[str] = []
        waiter.wait(woken.append)
        self.assertIsNone(self.cache.upstreamFailed(leader))
        self.assertEqual(woken, [FORWARD])

    def test_leaderGoneWakesWaiters(self) -> None:
        """
        A leader whose client went away before the response: finished()
        releases its waiters.
        """
        leader = self.lookup()
        waiter = self.lookup()
        woken: list[str] = []
        waiter.wait(woken.append)
        self.cache.finished(leader)
        self.assertEqual(woken, [FORWARD])
        self.assertEqual(self.lookup().outcome, MISS)

    def test_timeout(self) -> None:
        """
        The exchange's timer fires: the waiter cancels and forwards; the
        leader's later response wakes nobody.
        """
        leader = self.lookup()
        waiter = self.lookup()
        woken: list[str] = []
        waiter.wait(woken.append)
        waiter.cancelWait()
        again = self.cache.lookupAgain(waiter)
        self.assertEqual(again.outcome, MISS)
        decision = self.respond(leader)
        assert decision.writer is not None
        decision.writer.write(b"shared")
        decision.writer.finish()
        self.assertEqual(woken, [])

    def test_notShared(self) -> None:
        """
        Requests that must not share (Authorization) or insist on the
        origin (no-cache) do not wait; ranges and conditional requests do
        not lead.
        """
        leader = self.lookup()
        self.assertEqual(self.lookup((b"Authorization", b"Basic x")).outcome, MISS)
        self.assertEqual(self.lookup((b"Cache-Control", b"no-cache")).outcome, MISS)
        self.assertEqual(self.lookup((b"Pragma", b"no-cache")).outcome, MISS)
        self.cache.finished(leader)
        ranged = self.lookup((b"Range", b"bytes=0-1"))
        self.assertEqual(ranged.outcome, MISS)
        self.assertEqual(self.lookup().outcome, MISS)

    def test_headWaits(self) -> None:
        """
        A HEAD may wait for a GET in flight: it is then answered from the stored GET
        (RFC 9111 4.3.5).
        """
        leader = self.lookup()
        head = self.lookup(method=b"HEAD")
        self.assertEqual(head.outcome, COLLAPSED)
        self.cache.finished(leader)

    def test_disabled(self) -> None:
        """
        Collapsed forwarding can be turned off.
        """
        self.cache = HTTPCache(
            MemoryStore(), lambda: self.now, CacheConfig(collapsedForwarding=False)
        )
        self.lookup()
        self.assertEqual(self.lookup().outcome, MISS)

    def test_notWithADisabledStore(self) -> None:
        """
        With a store that stores nothing, nobody waits.
        """
        self.cache = HTTPCache(MemoryStore(capacity=0), lambda: self.now)
        self.lookup()
        self.assertEqual(self.lookup().outcome, MISS)

    def test_staleRevalidationCollapses(self) -> None:
        """
        Several requests for one stale response: one revalidation goes
        forward; the others wait and are then served the freshened
        response.
        """
        first = self.lookup()
        decision = self.respond(first, b"max-age=10")
        assert decision.writer is not None
        decision.writer.write(b"shared")
        decision.writer.finish()
        self.cache.finished(first)
        self.now += 20
        leader = self.lookup()
        self.assertEqual(leader.outcome, REVALIDATE)
        waiter = self.lookup()
        self.assertEqual(waiter.outcome, COLLAPSED)
        woken: list[str] = []
        waiter.wait(woken.append)
        notModified = ResponseHead(
            304, b"Not Modified", b"1.1", [(b"Cache-Control", b"max-age=10")], noBody=True
        )
        served = self.cache.responseReceived(leader, notModified, self.now, self.now)
        self.assertTrue(served.fromCache)
        assert served.body is not None
        served.body.stopProducing()
        self.assertEqual(woken, [STORED])
        self.assertEqual(self.cache.lookupAgain(waiter).outcome, FRESH_HIT)

    def uncacheable(self, cacheControl: bytes = b"private") -> None:
        """
        A leader and a waiter; the leader's response is not stored.
        """
        leader = self.lookup()
        waiter = self.lookup()
        self.assertEqual(waiter.outcome, COLLAPSED)
        waiter.wait(lambda result: None)
        self.respond(leader, cacheControl=cacheControl)
        self.cache.finished(leader)
        self.cache.finished(self.cache.lookupAgain(waiter))

    def test_uncacheableRemembered(self) -> None:
        """
        Once a URL's response could not be stored, concurrent requests for
        it do not queue behind one another (each would wait for a response
        it cannot use, then go to the origin anyway) for
        C{uncacheableMemory} seconds; then they collapse again.
        """
        self.uncacheable()
        first = self.lookup()
        second = self.lookup()
        self.assertEqual([first.outcome, second.outcome], [MISS, MISS])
        self.assertEqual(self.cache.inFlight, 0)
        self.cache.finished(first)
        self.cache.finished(second)
        self.now += CacheConfig().uncacheableMemory + 1
        leader = self.lookup()
        self.assertEqual(self.lookup().outcome, COLLAPSED)
        self.cache.finished(leader)

    def test_storedResponseForgetsUncacheable(self) -> None:
        """
        A response stored for the URL ends the memory at once: a later
        revalidation of it collapses.
        """
        self.uncacheable()
        miss = self.lookup()
        decision = self.respond(miss, b"max-age=10")
        assert decision.writer is not None
        decision.writer.write(b"shared")
        decision.writer.finish()
        self.cache.finished(miss)
        self.now += 20
        leader = self.lookup()
        self.assertEqual(leader.outcome, REVALIDATE)
        self.assertEqual(self.lookup().outcome, COLLAPSED)
        self.cache.finished(leader)

    def test_tooLargeRemembered(self) -> None:
        """
        A body the store gave up on (too large) marks the URL too.
        """
        self.cache = HTTPCache(MemoryStore(capacity=1 << 20, maxObjectSize=4), lambda: self.now)
        leader = self.lookup()
        head = ResponseHead(200, b"OK", b"1.1", [(b"Cache-Control", b"max-age=60")], chunked=True)
        decision = self.cache.responseReceived(leader, head, self.now, self.now)
        assert decision.writer is not None
        self.assertFalse(decision.writer.write(b"too large"))
        self.cache.finished(leader)
        first = self.lookup()
        self.assertEqual(self.lookup().outcome, MISS)
        self.cache.finished(first)

    def test_requestReasonsNotRemembered(self) -> None:
        """
        A response not stored because of the request (its no-store, its
        Authorization) or an aborted transfer says nothing about the URL:
        the next concurrent requests still collapse.
        """
        for headers in [((b"Cache-Control", b"no-store"),), ((b"Authorization", b"Basic x"),)]:
            lookup = self.lookup(*headers)
            self.respond(lookup)
            self.cache.finished(lookup)
        leader = self.lookup()
        writer = self.respond(leader).writer
        assert writer is not None
        writer.abort()
        self.cache.finished(leader)
        leader = self.lookup()
        self.assertEqual(self.lookup().outcome, COLLAPSED)
        self.cache.finished(leader)

    def test_serverErrorNotRemembered(self) -> None:
        """
        A 5xx is not stored (no validator), but says nothing lasting about
        the URL.
        """
        leader = self.lookup()
        head = ResponseHead(503, b"Service Unavailable", b"1.1", [], contentLength=0)
        self.cache.responseReceived(leader, head, self.now, self.now)
        self.cache.finished(leader)
        leader = self.lookup()
        self.assertEqual(self.lookup().outcome, COLLAPSED)
        self.cache.finished(leader)

    def test_uncacheableMemoryBounded(self) -> None:
        """
        At most C{uncacheableKeys} URLs are remembered, the oldest forgotten
        first; C{uncacheableMemory=0} remembers none.
        """
        self.cache = HTTPCache(MemoryStore(), lambda: self.now, CacheConfig(uncacheableKeys=1))
        self.uncacheable()
        other = b"http://example.com/other"
        req, target = self.h.request(other)
        lk = self.cache.lookup(req, target)
        self.respond(lk, cacheControl=b"private")
        self.cache.finished(lk)
        leader = self.lookup()
        self.assertEqual(self.lookup().outcome, COLLAPSED)
        self.cache.finished(leader)
        self.cache = HTTPCache(MemoryStore(), lambda: self.now, CacheConfig(uncacheableMemory=0))
        self.uncacheable()
        leader = self.lookup()
        self.assertEqual(self.lookup().outcome, COLLAPSED)
        self.cache.finished(leader)

    def test_harnessRefusesToWait(self) -> None:
        """
        The test harness does not pretend to wait.
        """
        self.h = CacheHarness()
        req, target = self.h.request(URL)
        leader = self.h.cache.lookup(req, target)
        self.assertRaises(AssertionError, self.h.get, URL)
        self.h.cache.finished(leader)
