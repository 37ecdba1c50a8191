"""
Tests for L{twisted_proxy.proxy.cache.disk.DiskStore}: persistence across a
restart (a new store on the same directory), atomic writes, corruption and
truncation detected and never served, the budget, the maximum object size,
concurrent writers and readers, and the directory lock.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.proxy.cache import CacheDirectoryError, DiskStore, EntryUnavailable, readAll
from twisted_proxy.proxy.cache.diskfiles import bodyFileSize
from twisted_proxy.proxy.cache.entry import StoredResponse
from twisted_proxy.proxy.cache.store import CHUNK_SIZE, BodyCollector
from twisted_proxy.proxy.cache.testing import CacheHarness


def meta(
    key: str = "http://h/a", headers: list[tuple[bytes, bytes]] | None = None
) -> StoredResponse:
    return StoredResponse(
        key=key,
        varyNames=(b"accept",),
        varyValues=(b"text/html",),
        status=200,
        reason=b"OK",
        version=b"1.1",
        headers=headers or [(b"ETag", b'"e"'), (b"X-Bin", b"\xff\x00")],
        requestTime=1.0,
        responseTime=2.0,
        dateValue=2.0,
        ageValue=3,
    )


class DiskStoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.path, True)
        self.store = self.open()

    def open(self, **kwargs: int) -> DiskStore:
        store = DiskStore(self.path, **kwargs)
        self.addCleanup(store.close)
        return store

    def restart(self, **kwargs: int) -> DiskStore:
        self.store.close()
        self.store = self.open(**kwargs)
        self.store.rebuild()
        return self.store

    def put(
        self, body: bytes, key: str = "http://h/a", store: DiskStore | None = None
    ) -> StoredResponse:
        store = store or self.store
        writer = store.openWriter(meta(key))
        assert writer is not None
        for i in range(0, len(body), 10000):
            self.assertTrue(writer.write(body[i : i + 10000]))
        entry = writer.commit()
        assert entry is not None
        return entry

    def files(self, entry: StoredResponse) -> tuple[str, str]:
        d = os.path.join(self.path, "v1", entry.entryId[:2])
        return os.path.join(d, entry.entryId + ".body"), os.path.join(d, entry.entryId + ".meta")

    def test_storeAndRead(self) -> None:
        """
        A stored body reads back whole and in slices.
        """
        body = os.urandom(3 * CHUNK_SIZE + 123)
        entry = self.put(body)
        self.assertEqual(readAll(self.store.openBody(entry)), body)
        self.assertEqual(
            readAll(self.store.openBody(entry, CHUNK_SIZE - 1, 3)),
            body[CHUNK_SIZE - 1 : CHUNK_SIZE + 2],
        )
        self.assertEqual(
            readAll(self.store.openBody(entry, 2 * CHUNK_SIZE + 5)), body[2 * CHUNK_SIZE + 5 :]
        )
        self.assertEqual(self.store.variants("http://h/a"), [entry])
        bodyPath, metaPath = self.files(entry)
        self.assertEqual(os.path.getsize(bodyPath), bodyFileSize(len(body)))
        self.assertTrue(os.path.exists(metaPath))

    def test_emptyBody(self) -> None:
        """
        An empty body (e.g. a 204) is stored and survives a restart.
        """
        entry = self.put(b"")
        self.assertEqual(readAll(self.store.openBody(entry)), b"")
        self.restart()
        self.assertEqual(len(self.store.variants("http://h/a")), 1)

    def test_survivesRestart(self) -> None:
        """
        A new store on the same directory finds the entries, metadata and
        bodies intact.
        """
        body = os.urandom(100000)
        entry = self.put(body)
        self.put(b"other", key="http://h/b")
        before = self.store.size
        store = self.restart()
        self.assertEqual(store.count, 2)
        [again] = store.variants("http://h/a")
        self.assertEqual(again.toJSON(), entry.toJSON())
        self.assertEqual(again.headers, [(b"ETag", b'"e"'), (b"X-Bin", b"\xff\x00")])
        self.assertEqual(readAll(store.openBody(again)), body)
        self.assertEqual(store.size, before)

    def test_nothingVisibleBeforeCommit(self) -> None:
        """
        Writes go to tmp/ and appear only at commit; an aborted write and
        a write cut by a crash leave nothing after a restart.
        """
        writer = self.store.openWriter(meta())
        assert writer is not None
        writer.write(b"partial")
        self.assertEqual(self.store.variants("http://h/a"), [])
        self.assertEqual(os.listdir(os.path.join(self.path, "v1")), [])
        writer.abort()
        self.assertEqual(os.listdir(os.path.join(self.path, "tmp")), [])
        crashed = self.store.openWriter(meta())
        assert crashed is not None
        crashed.write(b"never committed")
        # "Crash": a new store starts on the directory.
        store = self.restart()
        self.assertEqual(store.count, 0)
        self.assertEqual(os.listdir(os.path.join(self.path, "tmp")), [])
        self.assertEqual(self.store.reserved, 0)

    def test_flippedByteDetectedAtOpen(self) -> None:
        """
        A corrupt first block is detected before anything is served: the
        entry is discarded.
        """
        entry = self.put(b"A" * 1000)
        bodyPath, metaPath = self.files(entry)
        with open(bodyPath, "r+b") as f:
            f.seek(10)
            f.write(b"B")
        self.assertRaises(EntryUnavailable, self.store.openBody, entry)
        self.assertEqual(self.store.variants("http://h/a"), [])
        self.assertFalse(os.path.exists(bodyPath) or os.path.exists(metaPath))
        self.assertEqual(self.store.corruptions, 1)

    def test_flippedByteDetectedWhileStreaming(self) -> None:
        """
        A corrupt later block is detected before it is delivered: the body
        fails (no corrupt byte is written) and the entry is discarded.
        """
        body = b"A" * (3 * CHUNK_SIZE)
        entry = self.put(body)
        bodyPath, _ = self.files(entry)
        with open(bodyPath, "r+b") as f:
            f.seek(2 * CHUNK_SIZE + 7)
            f.write(b"B")
        producer = self.store.openBody(entry)
        consumer = BodyCollector()
        producer.start(consumer)
        self.assertIsNotNone(consumer.failed)
        self.assertFalse(consumer.done)
        self.assertEqual(b"".join(consumer.chunks), body[: 2 * CHUNK_SIZE])
        self.assertEqual(self.store.count, 0)

    def test_truncatedBodyDetected(self) -> None:
        """
        A truncated body file is detected when opened and discarded, never served.
        """
        entry = self.put(os.urandom(5000))
        bodyPath, _ = self.files(entry)
        with open(bodyPath, "r+b") as f:
            f.truncate(4000)
        self.assertRaises(EntryUnavailable, self.store.openBody, entry)
        self.assertEqual(self.store.count, 0)

    def test_truncatedBodyDiscardedAtStart(self) -> None:
        """
        A truncated body file is discarded when the store starts; other entries load.
        """
        entry = self.put(os.urandom(5000))
        self.put(b"fine", key="http://h/b")
        bodyPath, metaPath = self.files(entry)
        with open(bodyPath, "r+b") as f:
            f.truncate(100)
        store = self.restart()
        self.assertEqual(store.variants("http://h/a"), [])
        self.assertEqual(len(store.variants("http://h/b")), 1)
        self.assertFalse(os.path.exists(metaPath))
        self.assertEqual(store.corruptions, 1)

    def test_corruptMetadataDiscardedAtStart(self) -> None:
        """
        Damaged or truncated metadata is discarded when the store starts.
        """
        for damage in [b"garbage", b""]:
            entry = self.put(b"data")
            _, metaPath = self.files(entry)
            with open(metaPath, "r+b") as f:
                raw = f.read()
                f.seek(0)
                f.truncate()
                f.write(raw[:-3] + damage if damage else raw[: len(raw) // 2])
            store = self.restart()
            self.assertEqual(store.count, 0, damage)

    def test_flippedMetadataByte(self) -> None:
        """
        A flipped byte in the metadata fails its checksum: discarded at start.
        """
        entry = self.put(b"data")
        _, metaPath = self.files(entry)
        with open(metaPath, "r+b") as f:
            raw = bytearray(f.read())
            raw[-5] ^= 0x01
            f.seek(0)
            f.write(raw)
        self.assertEqual(self.restart().count, 0)

    def test_corruptFooterOrTable(self) -> None:
        """
        A damaged checksum table or footer is detected when the body is opened.
        """
        body = os.urandom(2 * CHUNK_SIZE)
        for offset in [len(body) + 2, -5]:
            entry = self.put(body)
            bodyPath, _ = self.files(entry)
            with open(bodyPath, "r+b") as f:
                f.seek(offset, os.SEEK_SET if offset >= 0 else os.SEEK_END)
                byte = f.read(1)
                f.seek(-1, os.SEEK_CUR)
                f.write(bytes([byte[0] ^ 0xFF]))
            self.assertRaises(EntryUnavailable, self.store.openBody, entry)

    def test_orphansRemovedAtStart(self) -> None:
        """
        A body without metadata (a crash between the two renames) and stray files are
        removed at start.
        """
        entry = self.put(b"data")
        bodyPath, metaPath = self.files(entry)
        os.unlink(metaPath)
        stray = os.path.join(os.path.dirname(bodyPath), "0" * 32 + ".meta")
        with open(stray, "wb") as f:
            f.write(b"x")
        self.restart()
        self.assertFalse(os.path.exists(bodyPath))
        self.assertFalse(os.path.exists(stray))

    def test_budgetEviction(self) -> None:
        """
        The budget (files rounded up to 4 KiB) holds; the least recently
        used entries go first.
        """
        # Each entry: 5000 + checksums -> 8 KiB, metadata -> 4 KiB.
        store = self.restart(capacity=3 * 12288, maxObjectSize=1 << 20)
        entries = [self.put(b"x" * 5000, key="http://h/%d" % i, store=store) for i in range(3)]
        self.assertLessEqual(store.size, store.capacity)
        store.touch(entries[0])
        self.put(b"x" * 5000, key="http://h/3", store=store)
        self.assertLessEqual(store.size + store.reserved, store.capacity)
        self.assertEqual(store.variants("http://h/1"), [])
        self.assertEqual(len(store.variants("http://h/0")), 1)
        self.assertGreaterEqual(store.evictions, 1)
        # Evicted entries' files are gone.
        self.assertEqual(
            sum(len(files) for _, _, files in os.walk(os.path.join(self.path, "v1"))),
            2 * store.count,
        )

    def test_budgetEnforcedAtStart(self) -> None:
        """
        A budget smaller than what is on disk is enforced when the store starts.
        """
        for i in range(4):
            self.put(b"x" * 5000, key="http://h/%d" % i)
        store = self.restart(capacity=2 * (12288 + 4096))
        self.assertLessEqual(store.size, store.capacity)
        self.assertEqual(store.count, 2)

    def test_lruOrderApproximatedAtRestart(self) -> None:
        """
        After a restart, the least recently used order is that of the
        metadata mtimes (stored or last freshened).
        """
        entries = [self.put(b"x" * 100, key="http://h/%d" % i) for i in range(3)]
        for i, entry in enumerate(entries):
            _, metaPath = self.files(entry)
            os.utime(metaPath, (1000 + (2 - i) * 10, 1000 + (2 - i) * 10))
        store = self.restart()
        # Room for one more entry only by evicting one.
        store.capacity = store.size + 4096
        self.put(b"x" * 100, key="http://h/new", store=store)
        # http://h/2 has the oldest mtime: evicted first.
        self.assertEqual(store.variants("http://h/2"), [])
        self.assertEqual(len(store.variants("http://h/0")), 1)

    def test_maxObjectSize(self) -> None:
        """
        An object that grows past the maximum size is dropped, never truncated; one
        known too large is refused.
        """
        store = self.restart(maxObjectSize=1000)
        self.assertIsNone(store.openWriter(meta(), expectedLength=1001))
        writer = store.openWriter(meta())
        assert writer is not None
        self.assertTrue(writer.write(b"x" * 1000))
        self.assertFalse(writer.write(b"x"))
        self.assertEqual(writer.failed, "too-large")
        self.assertIsNone(writer.commit())
        self.assertEqual((store.count, store.reserved), (0, 0))
        self.assertEqual(os.listdir(os.path.join(self.path, "tmp")), [])

    def test_update(self) -> None:
        """
        New metadata replaces the old atomically and survives a restart; the
        body is kept.
        """
        entry = self.put(b"body")
        new = self.store.update(entry, entry.copy(headers=[(b"X-New", b"1")], ageValue=0))
        assert new is not None
        self.assertEqual((new.entryId, new.bodyLength), (entry.entryId, 4))
        store = self.restart()
        [again] = store.variants("http://h/a")
        self.assertEqual((again.headers, again.ageValue), ([(b"X-New", b"1")], 0))
        self.assertEqual(readAll(store.openBody(again)), b"body")

    def test_twoWritersOneKey(self) -> None:
        """
        Two writers for one key write separate files; both commit.
        """
        w1 = self.store.openWriter(meta())
        w2 = self.store.openWriter(meta())
        assert w1 is not None
        w1.write(b"first")
        assert w2 is not None
        w2.write(b"second")
        e2 = w2.commit()
        e1 = w1.commit()
        assert e1 is not None and e2 is not None
        self.assertNotEqual(e1.entryId, e2.entryId)
        bodies = sorted(readAll(self.store.openBody(e)) for e in self.store.variants("http://h/a"))
        self.assertEqual(bodies, [b"first", b"second"])

    def test_readerOfReplacedEntry(self) -> None:
        """
        A reader keeps reading the body it opened after the entry is
        deleted (its files unlinked).
        """
        body = os.urandom(3 * CHUNK_SIZE)
        entry = self.put(body)
        producer = self.store.openBody(entry)
        self.store.delete(entry)
        self.put(b"replacement")
        consumer = BodyCollector()
        producer.start(consumer)
        self.assertTrue(consumer.done)
        self.assertEqual(b"".join(consumer.chunks), body)

    def test_deleteKey(self) -> None:
        """
        Deleting a key removes all its variants, on disk too.
        """
        self.put(b"1")
        self.put(b"2")
        self.put(b"3", key="http://h/b")
        self.assertEqual(self.store.deleteKey("http://h/a"), 2)
        self.assertEqual(self.restart().count, 1)

    def test_secondProcessRefused(self) -> None:
        """
        One process per directory: another store on it is refused with a
        one-line message saying what to do.
        """
        e = self.assertRaises(CacheDirectoryError, DiskStore, self.path)
        self.assertIn("in use by another process", str(e))
        self.assertNotIn("\n", str(e))
        self.store.close()
        self.open()

    def test_unusableDirectory(self) -> None:
        """
        An unusable directory is refused with a one-line message.
        """
        blocker = os.path.join(self.path, "file")
        with open(blocker, "wb"):
            pass
        e = self.assertRaises(CacheDirectoryError, DiskStore, os.path.join(blocker, "sub"))
        self.assertIn("Cannot use cache directory", str(e))

    def test_rebuildInSteps(self) -> None:
        """
        The index is rebuilt in bounded steps a caller can spread over reactor turns.
        """
        for i in range(10):
            self.put(b"x", key="http://h/%d" % i)
        self.store.close()
        store = self.open()
        steps = list(store.rebuildSteps(batch=3))
        self.assertEqual(steps[-1], 10)
        self.assertGreaterEqual(len(steps), 4)
        self.assertEqual(steps, sorted(steps))

    def test_disabled(self) -> None:
        """
        A zero budget disables the store.
        """
        store = self.restart(capacity=0)
        self.assertIsNone(store.openWriter(meta()))


class DiskCacheRestartTests(SynchronousTestCase):
    """
    The whole cache over a disk store: a response stored before a restart
    is a hit after it.
    """

    def test_hitAfterRestart(self) -> None:
        """
        RFC 9111 4: a response stored before a restart is served after it (Vary and Age
        intact).
        """
        path = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, path, True)
        store = DiskStore(path)
        h = CacheHarness(store=store)
        h.origin = lambda request: (
            200,
            [(b"Cache-Control", b"max-age=600"), (b"Vary", b"Accept")],
            b"persisted",
        )
        self.assertEqual(h.get(b"http://example.com/p", [(b"Accept", b"a")]).verdict, "miss")
        store.close()
        store2 = DiskStore(path)
        self.addCleanup(store2.close)
        store2.rebuild()
        h2 = CacheHarness(store=store2, now=h.now + 10)
        h2.origin = lambda request: None
        hit = h2.get(b"http://example.com/p", [(b"Accept", b"a")])
        self.assertEqual((hit.verdict, hit.body, hit.header(b"age")), ("hit", b"persisted", b"10"))
        self.assertEqual(h2.get(b"http://example.com/p", [(b"Accept", b"b")]).verdict, "miss")
