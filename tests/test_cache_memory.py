"""
Tests for L{twisted_proxy.proxy.cache.memory}: the in-memory store (LRU
within a byte budget, a maximum object size, bodies stored whole or not at
all) and, in L{twisted_proxy.proxy.cache.store}, the body producer every
local store uses.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.proxy.cache.entry import StoredResponse
from twisted_proxy.proxy.cache.memory import MemoryStore, _MemoryWriter
from twisted_proxy.proxy.cache.store import CHUNK_SIZE, CachedBody, EntryUnavailable, readAll


def meta(
    key: str = "http://h/a", headers: list[tuple[bytes, bytes]] | None = None
) -> StoredResponse:
    return StoredResponse(
        key=key,
        varyNames=(),
        varyValues=(),
        status=200,
        reason=b"OK",
        version=b"1.1",
        headers=headers or [],
        requestTime=1.0,
        responseTime=2.0,
        dateValue=2.0,
        ageValue=0,
    )


def put(store: MemoryStore, key: str, body: bytes, pieces: int = 1) -> StoredResponse:
    """
    Store C{body} under C{key}, in C{pieces} writes; the test fails if the
    store refuses it.
    """
    writer = opened(store, meta(key))
    step = max(1, len(body) // pieces)
    for i in range(0, len(body), step):
        assert writer.write(body[i : i + step]), "the store refused a write"
    entry = writer.commit()
    assert entry is not None, "the store refused the body"
    return entry


def opened(store: MemoryStore, response: StoredResponse) -> _MemoryWriter:
    """
    A writer for C{response}; the test fails if the store refuses one.
    """
    writer = store.openWriter(response)
    assert writer is not None, "the store refused a writer"
    return writer


class Consumer:
    """
    A consumer that pauses its producer after each write when told to.
    """

    def __init__(self, pauseEach: bool = False) -> None:
        self.chunks: list[bytes] = []
        self.done = False
        self.failed: str | None = None
        self.pauseEach = pauseEach
        self.producer: CachedBody | None = None

    def write(self, data: bytes) -> None:
        self.chunks.append(data)
        if self.pauseEach and self.producer is not None:
            self.producer.pauseProducing()

    def bodyDone(self) -> None:
        self.done = True

    def bodyFailed(self, reason: str) -> None:
        self.failed = reason


class MemoryStoreTests(SynchronousTestCase):
    def test_storeAndRead(self) -> None:
        """
        A stored body reads back whole and in slices; the budget counts it.
        """
        store = MemoryStore()
        entry = put(store, "http://h/a", b"hello world", pieces=3)
        self.assertEqual(entry.bodyLength, 11)
        self.assertTrue(entry.entryId)
        self.assertEqual(store.variants("http://h/a"), [entry])
        self.assertEqual(readAll(store.openBody(entry)), b"hello world")
        self.assertEqual(readAll(store.openBody(entry, 6)), b"world")
        self.assertEqual(readAll(store.openBody(entry, 2, 3)), b"llo")
        self.assertEqual(store.count, 1)
        self.assertEqual(store.size, 11 + entry.metadataSize())

    def test_nothingVisibleBeforeCommit(self) -> None:
        """
        A body is visible only once committed; an aborted one leaves nothing (RFC 9111
        3.3).
        """
        store = MemoryStore()
        writer = opened(store, meta())
        writer.write(b"partial")
        self.assertEqual(store.variants("http://h/a"), [])
        writer.abort()
        self.assertEqual(store.variants("http://h/a"), [])
        self.assertEqual((store.size, store.reserved), (0, 0))
        self.assertIsNone(writer.commit())
        self.assertEqual(writer.failed, "aborted")

    def test_largeBodyAcrossPieces(self) -> None:
        """
        Bodies are kept in pieces of CHUNK_SIZE (small writes coalesced);
        slices across pieces read back exactly.
        """
        body = bytes(range(256)) * (3 * CHUNK_SIZE // 256 + 7)
        store = MemoryStore()
        writer = opened(store, meta())
        for i in range(0, len(body), 1000):
            writer.write(body[i : i + 1000])
        entry = writer.commit()
        assert entry is not None
        self.assertEqual(readAll(store.openBody(entry)), body)
        self.assertEqual(
            readAll(store.openBody(entry, CHUNK_SIZE - 5, 10)),
            body[CHUNK_SIZE - 5 : CHUNK_SIZE + 5],
        )
        self.assertEqual(readAll(store.openBody(entry, len(body) - 3)), body[-3:])
        self.assertEqual(readAll(store.openBody(entry, len(body))), b"")

    def test_lruEviction(self) -> None:
        """
        The budget holds: the least recently used entries go first; a read
        makes an entry recently used.
        """
        size = 1000 + meta("http://h/0").metadataSize()
        store = MemoryStore(capacity=3 * size, maxObjectSize=2000)
        entries = [put(store, "http://h/%d" % i, b"x" * 1000) for i in range(3)]
        self.assertEqual(store.count, 3)
        store.touch(entries[0])
        put(store, "http://h/3", b"x" * 1000)
        self.assertEqual(store.count, 3)
        self.assertEqual(store.variants("http://h/1"), [])
        self.assertTrue(store.variants("http://h/0"))
        self.assertEqual(store.evictions, 1)
        self.assertLessEqual(store.size, store.capacity)

    def test_budgetHoldsWhileWriting(self) -> None:
        """
        Bytes being written count against the budget: room is made as the
        body grows.
        """
        size = 1000 + meta("http://h/0").metadataSize()
        store = MemoryStore(capacity=2 * size, maxObjectSize=2 * size)
        put(store, "http://h/0", b"x" * 1000)
        put(store, "http://h/1", b"x" * 1000)
        writer = opened(store, meta("http://h/2"))
        for _ in range(10):
            writer.write(b"y" * 100)
            self.assertLessEqual(store.size + store.reserved, store.capacity)
        self.assertEqual(store.count, 1)
        writer.commit()
        self.assertEqual(store.count, 2)

    def test_overMaxObjectSizeDropped(self) -> None:
        """
        An object that grows past the maximum while streaming is dropped,
        never truncated.
        """
        store = MemoryStore(capacity=1 << 20, maxObjectSize=10)
        writer = opened(store, meta())
        self.assertTrue(writer.write(b"0123456789"))
        self.assertFalse(writer.write(b"x"))
        self.assertEqual(writer.failed, "too-large")
        self.assertFalse(writer.write(b"y"))
        self.assertIsNone(writer.commit())
        self.assertEqual((store.count, store.size, store.reserved), (0, 0, 0))

    def test_knownTooLargeRefused(self) -> None:
        """
        A response known (Content-Length) to exceed the maximum is refused at once.
        """
        store = MemoryStore(capacity=1 << 20, maxObjectSize=10)
        self.assertIsNone(store.openWriter(meta(), expectedLength=11))
        self.assertIsNotNone(store.openWriter(meta(), expectedLength=10))

    def test_disabled(self) -> None:
        """
        A zero budget disables the store.
        """
        store = MemoryStore(capacity=0)
        self.assertIsNone(store.openWriter(meta()))

    def test_noRoomAborts(self) -> None:
        """
        A write that cannot get room even after evicting everything is
        aborted.
        """
        store = MemoryStore(capacity=meta().metadataSize() + 50, maxObjectSize=10**6)
        writer = opened(store, meta())
        self.assertTrue(writer.write(b"x" * 50))
        self.assertFalse(writer.write(b"x"))
        self.assertEqual(writer.failed, "budget")

    def test_readerSurvivesEviction(self) -> None:
        """
        A body being read stays readable after its entry is deleted.
        """
        store = MemoryStore()
        entry = put(store, "http://h/a", b"abc" * 100000)
        body = store.openBody(entry)
        store.delete(entry)
        self.assertEqual(len(readAll(body)), 300000)
        self.assertRaises(EntryUnavailable, store.openBody, entry)

    def test_update(self) -> None:
        """
        Freshening (RFC 9111 3.2) replaces the metadata and keeps the body.
        """
        store = MemoryStore()
        entry = put(store, "http://h/a", b"body")
        new = store.update(
            entry, entry.copy(headers=[(b"X-New", b"1")], bodyLength=0, entryId="other")
        )
        assert new is not None
        self.assertEqual(
            (new.entryId, new.bodyLength, new.headers), (entry.entryId, 4, [(b"X-New", b"1")])
        )
        self.assertEqual(store.variants("http://h/a"), [new])
        self.assertEqual(store.size, 4 + new.metadataSize())
        store.delete(entry)
        self.assertIsNone(store.update(entry, entry))

    def test_updateDoesNotEvictItself(self) -> None:
        """
        Freshening that cannot find room fails rather than evict the entry itself.
        """
        store = MemoryStore(capacity=meta().metadataSize() + 10, maxObjectSize=10)
        entry = put(store, "http://h/a", b"body")
        bigger = entry.copy(headers=[(b"X-Big", b"x" * 100)])
        self.assertIsNone(store.update(entry, bigger))
        self.assertEqual(store.variants("http://h/a"), [entry])

    def test_deleteKey(self) -> None:
        """
        Variants come most recent first; deleting a key removes them all.
        """
        store = MemoryStore()
        put(store, "http://h/a", b"1")
        put(store, "http://h/a", b"2")
        put(store, "http://h/b", b"3")
        self.assertEqual(
            [readAll(store.openBody(e)) for e in store.variants("http://h/a")], [b"2", b"1"]
        )
        self.assertEqual(store.deleteKey("http://h/a"), 2)
        self.assertEqual(store.count, 1)
        self.assertEqual(store.deleteKey("http://h/none"), 0)


class BodyProducerTests(SynchronousTestCase):
    """
    L{LocalBody}: a push producer that honours pauses.
    """

    def setUp(self) -> None:
        self.store = MemoryStore()
        self.body = b"z" * (3 * CHUNK_SIZE + 10)
        self.entry = put(self.store, "http://h/a", self.body)

    def test_pauseResume(self) -> None:
        """
        The body producer writes one piece per turn when the consumer pauses it.
        """
        producer = self.store.openBody(self.entry)
        consumer = Consumer(pauseEach=True)
        consumer.producer = producer
        producer.start(consumer)
        self.assertEqual(len(consumer.chunks), 1)
        self.assertFalse(consumer.done)
        while not consumer.done:
            producer.resumeProducing()
        self.assertEqual(b"".join(consumer.chunks), self.body)
        self.assertEqual(len(consumer.chunks), 4)
        # Calls after the end are harmless.
        producer.resumeProducing()
        producer.stopProducing()

    def test_stop(self) -> None:
        """
        A stopped producer writes nothing more.
        """
        producer = self.store.openBody(self.entry)
        consumer = Consumer(pauseEach=True)
        consumer.producer = producer
        producer.start(consumer)
        producer.stopProducing()
        producer.resumeProducing()
        self.assertEqual(len(consumer.chunks), 1)
        self.assertFalse(consumer.done)

    def test_reentrantResume(self) -> None:
        """
        A consumer that pauses and resumes inside write does not start a
        second delivery loop.
        """
        producer = self.store.openBody(self.entry)
        depth = [0, 0]

        class Bouncy(Consumer):
            def write(self, data: bytes) -> None:
                depth[0] += 1
                depth[1] = max(depth[1], depth[0])
                super().write(data)
                producer.pauseProducing()
                producer.resumeProducing()
                depth[0] -= 1

        consumer = Bouncy()
        producer.start(consumer)
        self.assertTrue(consumer.done)
        self.assertEqual(depth[1], 1)
        self.assertEqual(b"".join(consumer.chunks), self.body)

    def test_startTwice(self) -> None:
        """
        A body is delivered once.
        """
        producer = self.store.openBody(self.entry)
        producer.start(Consumer())
        self.assertRaises(RuntimeError, producer.start, Consumer())
