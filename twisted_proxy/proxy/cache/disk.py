# -*- test-case-name: tests.test_cache_disk -*-
"""
L{DiskStore}: stored responses in a directory, surviving restarts.  The
format of its files, their checksums and the checked reading and writing of
bodies are in L{twisted_proxy.proxy.cache.diskfiles}; this module keeps the
index, the budget and the directory.

What is guaranteed:

  - B{Atomic writes.}  A body is written to C{tmp/}, completed with its
    checksums, then renamed into place (C{os.replace}); its metadata is
    written the same way after it.  An entry exists once its C{.meta} is in
    place; a crash at any point leaves either the old state or the new
    one, plus at worst an orphan file that the next start removes.
  - B{Corruption is detected, never served.}  The metadata has a checksum
    and must name a body of the right size whose footer and checksum table
    check out; anything else is discarded when the store starts or when the
    entry is opened.  Each 64 KiB block of a body is checked against its
    CRC-32 before it is delivered: the first block before the response head
    is sent, later ones as they are read.  A block that fails later makes
    the body fail (L{BodyConsumer.bodyFailed}: the exchange aborts the
    client connection, as for an upstream that died mid-body), and the
    entry is discarded.  No corrupt byte reaches a client.
  - B{Restarts.}  L{DiskStore.rebuild} (or L{DiskStore.rebuildSteps}, in
    bounded steps a caller can spread over reactor turns) scans C{v1/},
    reading only the small C{.meta} files and the size of each body, and
    rebuilds the in-memory index.  Least-recently-used order is kept in
    memory while running; after a restart it is approximated by when each
    entry was stored or last freshened (the C{.meta} file's mtime).
  - B{The budget} (bodies, checksums and metadata, each file rounded up to
    4 KiB) holds at all times, bodies being written included, by evicting
    least recently used entries.
  - B{Concurrency.}  One process per directory: the C{lock} file is held
    with C{flock} and a second process is refused with a clear error.
    Within the process, two writers for the same key write separate files
    and both may commit (the cache then keeps the newer); a reader of an
    entry that is replaced or deleted keeps reading the old body through
    its open file descriptor (POSIX unlink semantics) to its end.
  - B{Bounded blocking.}  All file I/O is synchronous, on the caller's
    thread (the reactor's, in the daemon), and each call is bounded:
    writes are the chunks the upstream delivers, reads are one 64 KiB
    block, commits write a checksum table (4 bytes per 64 KiB of body) and
    a small metadata file; no call reads or writes a whole body.  There is
    no C{fsync}: after a power loss the checksums catch torn files.

Pure: no Twisted reactor; logs through C{twisted.logger}.
"""

from __future__ import annotations

import errno
import fcntl
import os
import uuid
from collections import OrderedDict
from collections.abc import Iterator

from twisted.logger import Logger

from .budget import Budget
from .diskfiles import (
    FORMAT_VERSION,
    MAX_META,
    BodyFileWriter,
    CheckedBody,
    bodyFileSize,
    decodeMeta,
    encodeMeta,
    footerBlockSize,
    readTable,
    roundUp,
    unlink,
)
from .entry import StoredResponse
from .store import CHUNK_SIZE, EntryUnavailable

__all__ = ["DiskStore", "CacheDirectoryError", "FORMAT_VERSION"]


class CacheDirectoryError(Exception):
    """
    The cache directory cannot be used (one line for the user: what and what
    to do).
    """


class _DiskEntry:
    __slots__ = ("meta", "cost")

    def __init__(self, meta: StoredResponse, cost: int) -> None:
        self.meta = meta
        self.cost = cost


class _DiskWriter:
    """
    A body being written to C{tmp/} within the store's budget.

    @ivar _reserved: bytes reserved from the store's budget so far.
    """

    failed: str | None = None
    _committed = False

    def __init__(
        self, store: DiskStore, entry: StoredResponse, entryId: str, reserved: int
    ) -> None:
        self._store = store
        self._entry = entry
        self._id = entryId
        self._reserved = reserved
        self._path = os.path.join(store._tmp, entryId + ".body")
        self._file = BodyFileWriter(self._path, store.blockSize)

    def write(self, data: bytes) -> bool:
        if self.failed is not None or self._committed:
            return False
        if not data:
            return True
        size = self._file.size
        newSize = size + len(data)
        if newSize > self._store.maxObjectSize:
            self._giveUp("too-large")
            return False
        # Reserve for the body bytes and their share of the checksum table,
        # so that the file as committed fits in what was reserved.
        need = roundUp(bodyFileSize(newSize)) - roundUp(bodyFileSize(size))
        if need > 0:
            if not self._store._reserve(need):
                self._giveUp("budget")
                return False
            self._reserved += need
        try:
            self._file.write(data)
        except OSError as e:
            self._store._ioError("writing a cache entry", e)
            self._giveUp("io-error")
            return False
        return True

    def commit(self) -> StoredResponse | None:
        if self.failed is not None or self._committed:
            return None
        try:
            self._file.finish()
        except OSError as e:
            self._store._ioError("writing a cache entry", e)
            self._giveUp("io-error")
            return None
        self._committed = True
        entry = self._store._commit(
            self._entry, self._id, self._path, self._file.size, self._reserved
        )
        if entry is None:
            self.failed = "io-error"
        return entry

    def abort(self) -> None:
        if self.failed is None and not self._committed:
            self._giveUp("aborted")

    def _giveUp(self, reason: str) -> None:
        self.failed = reason
        self._file.close()
        unlink(self._path)
        self._store._release(self._reserved)
        self._reserved = 0


class DiskStore(Budget[_DiskEntry]):
    """
    Responses in a directory (see the module docstring for the format and
    the guarantees).

    Call L{rebuild} (or run L{rebuildSteps}) after creating it to load the
    entries a previous run left; until then it holds only what is stored
    from now on.

    @ivar path: the directory.
    @ivar capacity: the byte budget on disk.
    @ivar maxObjectSize: the largest body stored.
    @ivar blockSize: the checksummed block size of new bodies.
    @ivar corruptions: entries discarded because they failed a check.
    @ivar ioErrors: file operations that failed.

    The bookkeeping is L{Budget}'s; an entry's cost is its two files'
    sizes, each rounded up to 4 KiB.
    """

    _log = Logger()
    blockSize = CHUNK_SIZE

    def __init__(
        self,
        path: str,
        capacity: int = 1024 * 1024 * 1024,
        maxObjectSize: int = 64 * 1024 * 1024,
    ) -> None:
        if capacity < 0 or maxObjectSize < 0:
            raise ValueError("cache sizes must not be negative")
        super().__init__()
        self.path = os.path.abspath(path)
        self.capacity = capacity
        self.maxObjectSize = min(maxObjectSize, capacity)
        self.corruptions = 0
        self.ioErrors = 0
        self._lockFile: int | None = None
        self._dirs: set[str] = set()
        self._entries = os.path.join(self.path, "v{}".format(FORMAT_VERSION))
        self._tmp = os.path.join(self.path, "tmp")
        try:
            os.makedirs(self._entries, exist_ok=True)
            os.makedirs(self._tmp, exist_ok=True)
            self._lock()
            for name in os.listdir(self._tmp):
                unlink(os.path.join(self._tmp, name))
        except CacheDirectoryError:
            raise
        except OSError as e:
            self.close()
            raise CacheDirectoryError(
                "Cannot use cache directory {}: {}; give a writable directory.".format(
                    self.path, e.strerror or e
                )
            ) from None

    def _lock(self) -> None:
        fd = os.open(os.path.join(self.path, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise CacheDirectoryError(
                    "Cache directory {} is in use by another process; give each process "
                    "its own cache directory.".format(self.path)
                ) from None
            raise
        self._lockFile = fd

    def _dir(self, entryId: str) -> str:
        return os.path.join(self._entries, entryId[:2])

    def _ensureDir(self, entryId: str) -> None:
        """
        Create C{entryId}'s directory, once per run.
        """
        prefix = entryId[:2]
        if prefix not in self._dirs:
            os.makedirs(os.path.join(self._entries, prefix), exist_ok=True)
            self._dirs.add(prefix)

    def _bodyPath(self, entryId: str) -> str:
        return os.path.join(self._dir(entryId), entryId + ".body")

    def _metaPath(self, entryId: str) -> str:
        return os.path.join(self._dir(entryId), entryId + ".meta")

    # Rebuilding the index.

    def rebuild(self) -> int:
        """
        Load every intact entry left in the directory (all steps of
        L{rebuildSteps} at once).

        @return: how many entries were loaded.
        """
        for _ in self.rebuildSteps():
            pass
        return self.count

    def rebuildSteps(self, batch: int = 128) -> Iterator[int]:
        """
        Load the entries left in the directory, C{batch} files at a time:
        each C{next()} does a bounded amount of I/O (at most C{batch}
        metadata files of at most 1 MiB), so a caller can spread the scan
        over reactor turns (e.g. with C{twisted.internet.task.cooperate}).
        Entries become visible as they are loaded.  Broken entries and
        orphan files are removed.  When done, the least-recently-used order
        is that of the entries' metadata mtimes and the budget is enforced.

        @return: an iterator yielding the number of entries loaded so far.
        """
        mtimes: dict[str, float] = {}
        done = 0
        try:
            subdirs = sorted(os.listdir(self._entries))
        except OSError as e:
            self._ioError("listing the cache directory", e)
            return
        for sub in subdirs:
            directory = os.path.join(self._entries, sub)
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            metas = {n[:-5] for n in names if n.endswith(".meta")}
            bodies = {n[:-5] for n in names if n.endswith(".body")}
            for orphan in bodies - metas:
                unlink(os.path.join(directory, orphan + ".body"))
            for orphan in metas - bodies:
                unlink(os.path.join(directory, orphan + ".meta"))
            for entryId in sorted(metas & bodies):
                if entryId in self._lru:
                    continue
                mtime = self._load(entryId)
                if mtime is not None:
                    mtimes[entryId] = mtime
                done += 1
                if done % batch == 0:
                    yield self.count
        # Least recently used first: by mtime; entries stored while the
        # scan ran are newer than all of these.
        order = sorted(self._lru, key=lambda i: mtimes.get(i, float("inf")))
        self._lru = OrderedDict((i, self._lru[i]) for i in order)
        self._evict()
        yield self.count

    def _load(self, entryId: str) -> float | None:
        metaPath = self._metaPath(entryId)
        bodyPath = self._bodyPath(entryId)
        try:
            st = os.stat(metaPath)
            if st.st_size > MAX_META:
                raise ValueError("metadata file too large")
            with open(metaPath, "rb") as f:
                raw = f.read(MAX_META + 1)
            meta = decodeMeta(raw)
            if meta.entryId != entryId:
                raise ValueError("metadata names another entry")
            bodySize = os.stat(bodyPath).st_size
            if bodySize != bodyFileSize(meta.bodyLength, footerBlockSize(bodyPath, bodySize)):
                raise ValueError("body file has the wrong size")
        except (OSError, ValueError) as e:
            self._discard(entryId, "unreadable at start: {}".format(e))
            return None
        if self._used + roundUp(bodySize) + roundUp(len(raw)) > self.capacity:
            # Over budget (the budget shrank): drop rather than load.
            self._removeFiles(entryId)
            self._evictions += 1
            return None
        self._insert(meta, roundUp(bodySize) + roundUp(len(raw)))
        return st.st_mtime

    # The Store interface.

    def openWriter(
        self, entry: StoredResponse, expectedLength: int | None = None
    ) -> _DiskWriter | None:
        if self.capacity == 0:
            return None
        if expectedLength is not None and expectedLength > self.maxObjectSize:
            return None
        entryId = uuid.uuid4().hex
        overhead = roundUp(len(encodeMeta(entry.copy(entryId=entryId)))) + roundUp(bodyFileSize(0))
        if not self._reserve(overhead):
            return None
        try:
            return _DiskWriter(self, entry, entryId, overhead)
        except OSError as e:
            self._release(overhead)
            self._ioError("creating a cache entry", e)
            return None

    def openBody(
        self, entry: StoredResponse, offset: int = 0, length: int | None = None
    ) -> CheckedBody:
        stored = self._lru.get(entry.entryId)
        if stored is None:
            raise EntryUnavailable("the entry is no longer stored")
        meta = stored.meta
        total = meta.bodyLength
        offset = max(0, min(offset, total))
        if length is None or offset + length > total:
            length = total - offset
        path = self._bodyPath(meta.entryId)
        try:
            f = open(path, "rb")
        except OSError as e:
            self._corrupt(meta, "cannot open body: {}".format(e))
            raise EntryUnavailable("the stored body is missing") from None
        try:
            table, blockSize = readTable(f, meta.bodyLength)
        except (OSError, ValueError) as e:
            f.close()
            self._corrupt(meta, str(e))
            raise EntryUnavailable("the stored body is corrupt") from None
        try:
            return CheckedBody(
                f,
                meta.bodyLength,
                table,
                blockSize,
                offset,
                length,
                lambda why: self._corrupt(meta, why),
            )
        except EntryUnavailable:
            f.close()
            raise

    def update(self, entry: StoredResponse, replacement: StoredResponse) -> StoredResponse | None:
        stored = self._lru.get(entry.entryId)
        if stored is None:
            return None
        new = replacement.copy(entryId=entry.entryId, bodyLength=stored.meta.bodyLength)
        raw = encodeMeta(new)
        bodyCost = roundUp(bodyFileSize(new.bodyLength))
        cost = bodyCost + roundUp(len(raw))
        growth = cost - stored.cost
        self._lru.move_to_end(entry.entryId)
        if growth > 0:
            if not self._reserve(growth, keep=entry.entryId):
                return None
            self._reserved -= growth
        try:
            self._writeMeta(new.entryId, raw)
        except OSError as e:
            # The old metadata is still in place and in the index (and any
            # room reserved for the growth was given back above).
            self._ioError("updating a cache entry", e)
            return None
        self._used += growth
        stored.meta = new
        stored.cost = cost
        return new

    def _writeMeta(self, entryId: str, raw: bytes) -> None:
        tmp = os.path.join(self._tmp, entryId + ".meta")
        try:
            with open(tmp, "wb") as f:
                f.write(raw)
            self._ensureDir(entryId)
            os.replace(tmp, self._metaPath(entryId))
        except OSError:
            unlink(tmp)
            raise

    def close(self) -> None:
        """
        Release the directory lock.  The entries stay on disk.
        """
        if self._lockFile is not None:
            os.close(self._lockFile)
            self._lockFile = None

    # Bookkeeping.

    def _commit(
        self, entry: StoredResponse, entryId: str, tmpPath: str, size: int, reserved: int
    ) -> StoredResponse | None:
        meta = entry.copy(entryId=entryId, bodyLength=size)
        raw = encodeMeta(meta)
        cost = roundUp(bodyFileSize(size)) + roundUp(len(raw))
        try:
            self._ensureDir(entryId)
            os.replace(tmpPath, self._bodyPath(entryId))
            self._writeMeta(entryId, raw)
        except OSError as e:
            self._ioError("committing a cache entry", e)
            unlink(tmpPath)
            unlink(self._bodyPath(entryId))
            self._release(reserved)
            return None
        self._reserved -= reserved
        if cost > reserved:
            # The metadata grew past its estimate (e.g. a longer id
            # encoding): make room for the difference.
            if not self._reserve(cost - reserved, keep=None):
                self._removeFiles(entryId)
                return None
            self._reserved -= cost - reserved
        self._insert(meta, cost)
        return meta

    def _insert(self, meta: StoredResponse, cost: int) -> None:
        self._used += cost
        self._lru[meta.entryId] = _DiskEntry(meta, cost)
        self._byKey.setdefault(meta.key, [])
        ids = self._byKey[meta.key]
        # Most recently stored first.
        ids.insert(0, meta.entryId)
        ids.sort(key=lambda i: -self._lru[i].meta.responseTime)

    def _dropped(self, entryId: str) -> None:
        self._removeFiles(entryId)

    def _removeFiles(self, entryId: str) -> None:
        # Metadata first: without it the entry no longer exists for a scan.
        unlink(self._metaPath(entryId))
        unlink(self._bodyPath(entryId))

    def _discard(self, entryId: str, why: str) -> None:
        self.corruptions += 1
        self._log.warn("Discarding cache entry {entryId}: {why}", entryId=entryId, why=why)
        self._remove(entryId)
        self._removeFiles(entryId)

    def _corrupt(self, entry: StoredResponse, why: str) -> None:
        self._discard(entry.entryId, why)

    def _ioError(self, doing: str, e: OSError) -> None:
        self.ioErrors += 1
        self._log.warn("Cache I/O error {doing}: {error}", doing=doing, error=e.strerror or str(e))
