"""
The exchange against the protocol of L{twisted_proxy.proxy.cache.cache}
(docs/cache.rst, "The API the exchange uses"), path by path: every lookup
is finished however its transaction ends; a writer left open is aborted
and stores nothing; collapsed waiters are woken from the clock, never
inside the leader's calls; background revalidations give their slot back
when they fail; a stored body that fails mid-stream aborts the client;
every outcome reaches the transaction record.

After each scenario L{ProtocolTestCase.assertSettled} checks that nothing
is left behind: no lookup unfinished, no flight others could wait for, no
background revalidation, no store reservation (an open writer).
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from typing import Any

from twisted.internet import error as ierror
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.http.framing import RequestHead
from twisted_proxy.http.target import Target
from twisted_proxy.proxy.cache import CacheLookup, DiskStore, HTTPCache, MemoryStore
from twisted_proxy.testing import Harness, logEvents

GET = b"GET http://a.test/page HTTP/1.1\r\nHost: a.test\r\n\r\n"
CACHEABLE = (
    b'HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: "v1"\r\n'
    b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Length: 5\r\n\r\nhello"
)


def splitResponse(data: bytes) -> tuple[list[bytes], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


def field(lines: list[bytes], name: bytes) -> bytes | None:
    for line in lines[1:]:
        n, _, v = line.partition(b":")
        if n.strip().lower() == name:
            return v.strip()
    return None


class SpiedHarness(Harness):
    """
    A harness with a cache whose C{lookup}, C{lookupAgain} and C{finished}
    calls are recorded, and no idle upstream connections kept (every
    request that goes upstream is a new connection attempt).

    @ivar handedOut: every lookup the cache gave the exchange.
    @ivar closed: ids of the lookups that were finished, or replaced by
        C{lookupAgain} (which finishes its argument).
    """

    def __init__(self, **settings: Any) -> None:
        settings.setdefault("poolMinIdlePerHost", 0)
        super().__init__(cache=True, transactionDetail=True, **settings)
        cache = self.factory.cache
        assert cache is not None
        self.cache: HTTPCache = cache
        store = cache.store
        assert isinstance(store, (MemoryStore, DiskStore))
        self.store = store
        self.handedOut: list[Any] = []
        self.closed: set[int] = set()
        lookup, lookupAgain, finished = cache.lookup, cache.lookupAgain, cache.finished

        def spiedLookup(request: RequestHead, target: Target) -> CacheLookup:
            lk = lookup(request, target)
            self.handedOut.append(lk)
            if lk.background is not None:
                self.handedOut.append(lk.background)
            return lk

        def spiedLookupAgain(previous: CacheLookup) -> CacheLookup:
            self.closed.add(id(previous))
            lk = lookupAgain(previous)
            self.handedOut.append(lk)
            return lk

        def spiedFinished(lk: CacheLookup) -> None:
            self.closed.add(id(lk))
            finished(lk)

        # Spies in place of the cache's methods, on this instance only.
        cache.lookup = spiedLookup  # type: ignore[method-assign]
        cache.lookupAgain = spiedLookupAgain  # type: ignore[method-assign]
        cache.finished = spiedFinished  # type: ignore[method-assign, assignment]

    def fetch(self, request: bytes = GET, answer: bytes | None = CACHEABLE) -> tuple[bytes, int]:
        """
        Send C{request} on a new client connection; if it goes upstream,
        answer it with C{answer}.

        @return: what the client received, and how many connection
            attempts it made.
        """
        proto, client = self.client()
        before = self.pool.opened
        proto.dataReceived(request)
        opened = self.pool.opened - before
        if self.attempts and answer is not None:
            up, _ = self.connect()
            up.dataReceived(answer)
        return client.value(), opened


class ProtocolTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.events = logEvents(self)

    def records(self) -> list[dict[str, Any]]:
        return [e["transaction"] for e in self.events if "transaction" in e]

    def assertSettled(self, h: SpiedHarness) -> None:
        """
        Nothing of the transactions so far is left open in the cache.
        """
        unfinished = [lk for lk in h.handedOut if id(lk) not in h.closed]
        self.assertEqual(unfinished, [])
        self.assertEqual(h.cache.inFlight, 0)
        self.assertEqual(h.cache.revalidating, 0)
        self.assertEqual(h.store.reserved, 0)


class FinishedTests(ProtocolTestCase):
    """
    C{finished()} is called for every lookup, on every path, and leaves
    nothing open.
    """

    def test_missThenHit(self) -> None:
        h = SpiedHarness()
        h.fetch()
        data, opened = h.fetch(answer=None)
        self.assertEqual(opened, 0)
        self.assertTrue(data.endswith(b"hello"))
        h.fetch(b"HEAD http://a.test/page HTTP/1.1\r\nHost: a.test\r\n\r\n", None)
        self.assertEqual([r["cacheStatus"] for r in self.records()], ["miss", "hit", "hit"])
        self.assertSettled(h)

    def test_revalidatedAndRefreshed(self) -> None:
        """
        A 304 served from the cache (revalidated), then a new response
        (refreshed): both finished, the upstream connection of the 304
        reused for nothing left over.
        """
        h = SpiedHarness()
        h.fetch()
        h.clock.advance(120)
        data, _ = h.fetch(answer=b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n')
        self.assertTrue(data.endswith(b"hello"))
        h.clock.advance(120)
        data, _ = h.fetch(
            answer=b'HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: "v2"\r\n'
            b"Content-Length: 3\r\n\r\nnew"
        )
        self.assertTrue(data.endswith(b"new"))
        self.assertEqual(
            [r["cacheStatus"] for r in self.records()], ["miss", "revalidated", "refreshed"]
        )
        self.assertSettled(h)

    def test_errorsAndBypass(self) -> None:
        """
        An C{only-if-cached} miss (504), a bypassed POST, and an origin that
        cannot be reached: each finished.
        """
        h = SpiedHarness()
        data, opened = h.fetch(
            b"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n"
            b"Cache-Control: only-if-cached\r\n\r\n",
            None,
        )
        self.assertTrue(data.startswith(b"HTTP/1.1 504 "), data)
        h.fetch(
            b"POST http://a.test/page HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        )
        proto, client = h.client()
        proto.dataReceived(GET)
        h.fail(ierror.ConnectionRefusedError())
        self.assertTrue(client.value().startswith(b"HTTP/1.1 502 "), client.value())
        self.assertEqual([r["cacheStatus"] for r in self.records()], ["miss", "bypass", "miss"])
        self.assertSettled(h)

    def test_staleIfErrorOn5xx(self) -> None:
        """
        A stale response with C{stale-if-error} answers an origin's 503 (RFC
        5861 4): the stored body is served, the 503's body is never read
        (its connection is dropped, not pooled), the record says stale.
        """
        h = SpiedHarness(poolMinIdlePerHost=4)
        proto, client = h.client()
        proto.dataReceived(GET)
        up, upTransport = h.connect()
        up.dataReceived(
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=1, stale-if-error=600\r\n"
            b'ETag: "a"\r\nContent-Length: 5\r\n\r\nhello'
        )
        self.assertEqual(h.pool.idleCount(), 1)
        h.clock.advance(30)
        proto, client = h.client()
        proto.dataReceived(GET)
        # The stale response is validated on the pooled connection.
        self.assertEqual(h.attempts, [])
        self.assertIn(b"If-None-Match", upTransport.value())
        up.dataReceived(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100\r\n\r\nnot all of it"
        )
        lines, body = splitResponse(client.value())
        self.assertEqual(lines[0], b"HTTP/1.1 200 OK")
        self.assertEqual(body, b"hello")
        self.assertIn(b"fwd-status=503", field(lines, b"cache-status"))
        self.assertIn(b"detail=stale-if-error", field(lines, b"cache-status"))
        self.assertTrue(upTransport.disconnecting or upTransport.disconnected)
        self.assertEqual(h.pool.idleCount(), 0)
        self.assertEqual(self.records()[-1]["cacheStatus"], "stale")
        self.assertSettled(h)

    def test_clientLeavesMidBody(self) -> None:
        """
        A client that goes away while a cacheable response is relayed:
        the writer is aborted, nothing is stored.
        """
        h = SpiedHarness()
        proto, client = h.client()
        proto.dataReceived(GET)
        up, upTransport = h.connect()
        up.dataReceived(CACHEABLE[:-3])
        self.assertEqual(h.cache.inFlight, 1)
        self.assertGreater(h.store.reserved, 0)
        proto.connectionLost(Failure(ierror.ConnectionLost()))
        self.assertEqual(h.store.count, 0)
        self.assertSettled(h)

    def test_bodyStallStoresNothing(self) -> None:
        """
        A response body that stalls past --response-body-timeout: the client
        is cut off, the writer aborted, nothing stored.
        """
        h = SpiedHarness(responseBodyTimeout=5.0)
        proto, client = h.client()
        proto.dataReceived(GET)
        up, upTransport = h.connect()
        up.dataReceived(CACHEABLE[:-3])
        h.clock.advance(6)
        self.assertTrue(client.disconnected or client.disconnecting)
        self.assertEqual(h.store.count, 0)
        self.assertSettled(h)
        again, opened = h.fetch()
        self.assertEqual(opened, 1)

    def test_closeDelimitedCutIsNotStored(self) -> None:
        """
        RFC 9112 8: a response without Content-Length or chunked coding
        ends when the connection closes, and "is considered complete unless
        an error was indicated by the underlying connection"; RFC 9111 3.3:
        an incomplete response is not stored as complete.  An origin
        connection reset mid-body is such an error: nothing is stored (and
        the client is cut off rather than told the body is complete).
        """
        h = SpiedHarness()
        proto, client = h.client()
        proto.dataReceived(GET)
        up, upTransport = h.connect()
        up.dataReceived(
            b'HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: "c"\r\n\r\nthe first hal'
        )
        up.connectionLost(Failure(ierror.ConnectionLost("reset by peer")))
        self.assertEqual(h.store.count, 0)
        self.assertTrue(client.disconnected)
        self.assertSettled(h)

    def test_closeDelimitedCleanCloseIsStored(self) -> None:
        """
        The same response ended by a clean close is complete: stored.
        """
        h = SpiedHarness()
        proto, client = h.client()
        proto.dataReceived(GET)
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\nall of it")
        up.connectionLost(Failure(ierror.ConnectionDone()))
        self.assertEqual(h.store.count, 1)
        again, opened = h.fetch(answer=None)
        self.assertEqual(opened, 0)
        self.assertTrue(again.endswith(b"all of it"), again)
        self.assertSettled(h)


class CollapsedTests(ProtocolTestCase):
    """
    Waiters are woken from the clock (scheduled, never inside the leader's
    calls into the cache), and are released as soon as it is known that
    the leader's response will not be stored.
    """

    def test_leaderClientLeaves(self) -> None:
        """
        The leader's client goes away mid-body: its writer is aborted and
        the waiter, woken on the next turn, sends its own request.
        """
        h = SpiedHarness()
        p1, c1 = h.client()
        p1.dataReceived(GET)
        p2, c2 = h.client()
        p2.dataReceived(GET)
        up, upTransport = h.connect()
        up.dataReceived(CACHEABLE[:-3])
        p1.connectionLost(Failure(ierror.ConnectionLost()))
        self.assertEqual(h.attempts, [])
        self.assertEqual(c2.value(), b"")
        h.clock.advance(0)
        self.assertEqual(len(h.attempts), 1)
        up2, _ = h.connect()
        up2.dataReceived(CACHEABLE)
        lines, body = splitResponse(c2.value())
        self.assertEqual(body, b"hello")
        self.assertIn(b"collapsed=?0", field(lines, b"cache-status"))
        self.assertSettled(h)

    def test_uncacheableReleasesWaitersAtTheHead(self) -> None:
        """
        A leader's response that will not be stored (no-store) releases
        its waiters at its head, while its body is still on its way: they
        do not wait for a body they could not use.
        """
        h = SpiedHarness()
        p1, c1 = h.client()
        p1.dataReceived(GET)
        p2, c2 = h.client()
        p2.dataReceived(GET)
        up, upTransport = h.connect()
        up.dataReceived(
            b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 10\r\n\r\n12"
        )
        self.assertEqual(h.attempts, [])
        h.clock.advance(0)
        self.assertEqual(len(h.attempts), 1)
        up2, _ = h.connect()
        up2.dataReceived(
            b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 2\r\n\r\nok"
        )
        self.assertTrue(c2.value().endswith(b"ok"))
        up.dataReceived(b"34567890")
        self.assertTrue(c1.value().endswith(b"1234567890"))
        self.assertSettled(h)

    def test_uncacheableURLNotCollapsedAgain(self) -> None:
        """
        Once a URL's response was not stored, the next concurrent requests
        for it each go to the origin at once, instead of waiting a round
        trip for a response they could not use.
        """
        h = SpiedHarness()
        h.fetch(answer=b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 2\r\n\r\nok")
        p1, c1 = h.client()
        p1.dataReceived(GET)
        p2, c2 = h.client()
        p2.dataReceived(GET)
        self.assertEqual(len(h.attempts), 2)
        for _ in range(2):
            up, _ = h.connect()
            up.dataReceived(
                b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 2\r\n\r\nok"
            )
        self.assertTrue(c1.value().endswith(b"ok"))
        self.assertTrue(c2.value().endswith(b"ok"))
        self.assertNotIn(b"collapsed", c2.value())
        self.assertSettled(h)

    def test_wakeIsScheduled(self) -> None:
        """
        When the leader's body is stored, the waiter's answer is not
        written from inside the leader's call (the upstream's data
        delivery); it comes on the next turn of the clock.
        """
        h = SpiedHarness()
        p1, c1 = h.client()
        p1.dataReceived(GET)
        p2, c2 = h.client()
        p2.dataReceived(GET)
        up, _ = h.connect()
        up.dataReceived(CACHEABLE)
        self.assertTrue(c1.value().endswith(b"hello"))
        self.assertEqual(c2.value(), b"")
        self.assertEqual(h.clock.getDelayedCalls()[0].getTime(), h.clock.seconds())
        h.clock.advance(0)
        lines, body = splitResponse(c2.value())
        self.assertEqual(body, b"hello")
        self.assertIn(b"hit; collapsed", field(lines, b"cache-status"))
        self.assertSettled(h)


class BackgroundRevalidationTests(ProtocolTestCase):
    """
    A background revalidation (C{stale-while-revalidate}) that fails gives
    its slot back, so a later request can try again; nothing half-stored.
    """

    SWR = (
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=1, stale-while-revalidate=600\r\n"
        b'ETag: "a"\r\nContent-Length: 5\r\n\r\nhello'
    )

    def staleEntry(self) -> SpiedHarness:
        h = SpiedHarness()
        h.fetch(answer=self.SWR)
        h.clock.advance(30)
        return h

    def test_connectFailureReleasesTheSlot(self) -> None:
        h = self.staleEntry()
        data, opened = h.fetch(answer=None)
        self.assertTrue(data.endswith(b"hello"))
        self.assertEqual(h.cache.revalidating, 1)
        h.fail(ierror.ConnectionRefusedError())
        self.assertEqual(h.cache.revalidating, 0)
        # The next stale hit starts another background revalidation.
        data, opened = h.fetch(answer=None)
        self.assertTrue(data.endswith(b"hello"))
        self.assertEqual(len(h.attempts), 1)
        h.fail(ierror.ConnectionRefusedError())
        self.assertSettled(h)

    def test_bodyCutStoresNothing(self) -> None:
        """
        The origin's new response dies mid-body: nothing stored, the stale
        response is still served, the slot is free.
        """
        h = self.staleEntry()
        h.fetch(answer=None)
        up, _ = h.connect()
        up.dataReceived(
            b'HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: "b"\r\n'
            b"Content-Length: 5\r\n\r\nwor"
        )
        self.assertEqual(h.cache.revalidating, 1)
        up.connectionLost(Failure(ierror.ConnectionLost()))
        self.assertSettled(h)
        data, opened = h.fetch(answer=None)
        self.assertTrue(data.endswith(b"hello"))
        self.assertIn(b"stale-while-revalidate", data)
        up2, _ = h.connect()
        up2.dataReceived(
            b'HTTP/1.1 304 Not Modified\r\nETag: "a"\r\nCache-Control: max-age=60\r\n\r\n'
        )
        data, opened = h.fetch(answer=None)
        self.assertEqual(opened, 0)
        self.assertIn(b"; hit; ttl=", data)
        self.assertSettled(h)

    def test_timeoutReleasesTheSlot(self) -> None:
        h = self.staleEntry()
        h.fetch(answer=None)
        up, upTransport = h.connect()
        self.assertEqual(h.cache.revalidating, 1)
        h.clock.advance(h.config.responseTimeout + 1)
        self.assertTrue(upTransport.disconnected or upTransport.disconnecting)
        self.assertSettled(h)


class StoredBodyFailureTests(ProtocolTestCase):
    """
    A stored body that fails its checksum after the head went out aborts
    the client connection (it must not take a truncated body for a whole
    one), and the entry is discarded.
    """

    def test_corruptBlockAbortsTheClient(self) -> None:
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        h = SpiedHarness(cacheDir=directory)
        self.addCleanup(h.store.close)
        body = bytes(range(256)) * 1024  # 256 KiB: four 64 KiB blocks
        answer = (
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: %d\r\n\r\n"
            % (len(body),)
            + body
        )
        h.fetch(answer=answer)
        [path] = glob.glob(os.path.join(directory, "v1", "*", "*.body"))
        with open(path, "r+b") as f:
            f.seek(3 * 65536 + 10)
            byte = f.read(1)
            f.seek(3 * 65536 + 10)
            f.write(bytes([byte[0] ^ 0xFF]))

        class Slow(StringTransport):
            # Pauses its producer after each write, as a full socket buffer
            # would, so that the body is read one block per resume.
            def write(self, data: bytes) -> None:
                super().write(data)
                if self.producer is not None:
                    self.producer.pauseProducing()

        proto = h.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50001))
        client = Slow(peerAddress=IPv4Address("TCP", "127.0.0.1", 50001))
        proto.makeConnection(client)
        proto.dataReceived(GET)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 200 OK"))
        while client.producer is not None and not client.disconnected:
            client.producer.resumeProducing()
        self.assertTrue(client.disconnected)
        received = splitResponse(client.value())[1]
        self.assertEqual(received, body[: 3 * 65536])
        record = self.records()[-1]
        self.assertTrue(record["aborted"])
        self.assertTrue(record["errorDetail"].startswith("cached body unreadable"), record)
        self.assertEqual(h.store.count, 0)
        self.assertSettled(h)
        again, opened = h.fetch(answer=answer)
        self.assertEqual(opened, 1)
