# -*- test-case-name: tests.test_cache_disk -*-
"""
L{DiskStore}: stored responses in a directory, surviving restarts.

Layout (format version 1)::

    DIR/lock                      held (flock) while a process uses DIR
    DIR/tmp/                      bodies and metadata being written
    DIR/v1/XY/ID.body             body, block checksums, footer
    DIR/v1/XY/ID.meta             metadata (JSON), with its own checksum

C{ID} is 32 random hex digits, new for every stored response (never
reused: a replaced response gets a new ID, and its old files are unlinked);
C{XY} is its first two digits (256 directories keep each one small).

C{ID.body}::

    body (bodyLength bytes)
    CRC-32 of each 64 KiB block of the body, 4 bytes big-endian each
    footer, 32 bytes: b"TPCB0001", bodyLength (8), blockSize (4),
        blockCount (4), CRC-32 of the table (4), CRC-32 of the footer's
        first 28 bytes (4)

C{ID.meta}: one line C{TPCM0001 <length> <crc32 hex>\\n} then C{length}
bytes of JSON (L{StoredResponse.toJSON}).

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
import json
import os
import struct
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from typing import BinaryIO

from twisted.logger import Logger

from .entry import StoredResponse
from .store import CHUNK_SIZE, EntryUnavailable, LocalBody

__all__ = ["DiskStore", "CacheDirectoryError", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_BODY_MAGIC = b"TPCB0001"
_META_MAGIC = b"TPCM0001"
_FOOTER = struct.Struct(">8sQIII")  # magic, length, block size, blocks, table CRC
_FOOTER_SIZE = _FOOTER.size + 4  # + CRC of the rest of the footer
_MAX_META = 1024 * 1024
_FS_BLOCK = 4096


class CacheDirectoryError(Exception):
    """
    The cache directory cannot be used (one line for the user: what and what
    to do).
    """


def _roundUp(size: int) -> int:
    return max(_FS_BLOCK, (size + _FS_BLOCK - 1) // _FS_BLOCK * _FS_BLOCK)


def _blockCount(length: int, blockSize: int) -> int:
    return (length + blockSize - 1) // blockSize


def _bodyFileSize(length: int, blockSize: int = CHUNK_SIZE) -> int:
    return length + 4 * _blockCount(length, blockSize) + _FOOTER_SIZE


def _encodeMeta(entry: StoredResponse) -> bytes:
    data = json.dumps(entry.toJSON(), separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return b"%s %d %08x\n" % (_META_MAGIC, len(data), zlib.crc32(data)) + data


def _decodeMeta(raw: bytes) -> StoredResponse:
    """
    @raise ValueError: if C{raw} is not an intact metadata file.
    """
    line, sep, data = raw.partition(b"\n")
    parts = line.split(b" ")
    if not sep or len(parts) != 3 or parts[0] != _META_MAGIC:
        raise ValueError("bad metadata header")
    if int(parts[1]) != len(data) or int(parts[2], 16) != zlib.crc32(data):
        raise ValueError("metadata checksum or length mismatch")
    return StoredResponse.fromJSON(json.loads(data))


class _DiskEntry:
    __slots__ = ("meta", "cost")

    def __init__(self, meta: StoredResponse, cost: int) -> None:
        self.meta = meta
        self.cost = cost


class _DiskBody(LocalBody):
    """
    A stored body read block by block, each block checked against its
    CRC-32 before any of it is delivered.
    """

    def __init__(
        self,
        store: DiskStore,
        entry: StoredResponse,
        f: BinaryIO,
        table: list[int],
        blockSize: int,
        offset: int,
        length: int,
    ) -> None:
        super().__init__(length)
        self._store = store
        self._entry = entry
        self._file: BinaryIO | None = f
        self._table = table
        self._blockSize = blockSize
        self._block = offset // blockSize
        self._buffer = b""
        self._skip = offset - self._block * blockSize
        if length > 0:
            # Check the first block now, before the head goes out.
            self._fill()

    def _fill(self) -> None:
        f = self._file
        total = self._entry.bodyLength
        start = self._block * self._blockSize
        size = min(self._blockSize, total - start)
        try:
            assert f is not None
            f.seek(start)
            data = f.read(size)
        except OSError as e:
            self._store._corrupt(self._entry, "read error: {}".format(e))
            raise EntryUnavailable("the stored body could not be read") from None
        if len(data) != size or zlib.crc32(data) != self._table[self._block]:
            self._store._corrupt(self._entry, "block {} fails its checksum".format(self._block))
            raise EntryUnavailable("the stored body is corrupt")
        self._block += 1
        self._buffer = data[self._skip :]
        self._skip = 0

    def _read(self, size: int) -> bytes:
        if not self._buffer:
            self._fill()
        data = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return data

    def _close(self) -> None:
        f = self._file
        if f is not None:
            self._file = None
            self._buffer = b""
            f.close()


class _DiskWriter:
    """
    A body being written to C{tmp/}, with the CRC-32 of each block computed
    as it streams.

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
        self._file = open(self._path, "wb")
        self._size = 0
        self._table: list[int] = []
        self._crc = 0
        self._fill = 0

    def write(self, data: bytes) -> bool:
        if self.failed is not None or self._committed:
            return False
        if not data:
            return True
        newSize = self._size + len(data)
        if newSize > self._store.maxObjectSize:
            self._giveUp("too-large")
            return False
        # Reserve for the body bytes and their share of the checksum table,
        # so that the file as committed fits in what was reserved.
        need = _roundUp(_bodyFileSize(newSize)) - _roundUp(_bodyFileSize(self._size))
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
        self._size = newSize
        view = memoryview(data)
        block = self._store.blockSize
        while view:
            take = min(block - self._fill, len(view))
            self._crc = zlib.crc32(view[:take], self._crc)
            self._fill += take
            view = view[take:]
            if self._fill == block:
                self._table.append(self._crc)
                self._crc = 0
                self._fill = 0
        return True

    def commit(self) -> StoredResponse | None:
        if self.failed is not None or self._committed:
            return None
        if self._fill:
            self._table.append(self._crc)
        table = b"".join(struct.pack(">I", c) for c in self._table)
        footer = _FOOTER.pack(
            _BODY_MAGIC, self._size, self._store.blockSize, len(self._table), zlib.crc32(table)
        )
        footer += struct.pack(">I", zlib.crc32(footer))
        try:
            self._file.write(table)
            self._file.write(footer)
            self._file.close()
        except OSError as e:
            self._store._ioError("writing a cache entry", e)
            self._giveUp("io-error")
            return None
        self._committed = True
        entry = self._store._commit(self._entry, self._id, self._path, self._size, self._reserved)
        if entry is None:
            self.failed = "io-error"
        return entry

    def abort(self) -> None:
        if self.failed is None and not self._committed:
            self._giveUp("aborted")

    def _giveUp(self, reason: str) -> None:
        self.failed = reason
        try:
            self._file.close()
        except OSError:
            pass
        _unlink(self._path)
        self._store._release(self._reserved)
        self._reserved = 0


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        pass


class DiskStore:
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
    @ivar _lru: entry id -> entry, least recently used first.
    @ivar _byKey: primary key -> entry ids, most recently stored first.
    @ivar _used: bytes of committed entries (files rounded up to 4 KiB).
    @ivar _reserved: bytes reserved by writers in progress.
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
        self.path = os.path.abspath(path)
        self.capacity = capacity
        self.maxObjectSize = min(maxObjectSize, capacity)
        self.corruptions = 0
        self.ioErrors = 0
        self._lru: OrderedDict[str, _DiskEntry] = OrderedDict()
        self._byKey: dict[str, list[str]] = {}
        self._used = 0
        self._reserved = 0
        self._evictions = 0
        self._lockFile: int | None = None
        self._dirs: set[str] = set()
        self._entries = os.path.join(self.path, "v{}".format(FORMAT_VERSION))
        self._tmp = os.path.join(self.path, "tmp")
        try:
            os.makedirs(self._entries, exist_ok=True)
            os.makedirs(self._tmp, exist_ok=True)
            self._lock()
            for name in os.listdir(self._tmp):
                _unlink(os.path.join(self._tmp, name))
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

    @property
    def size(self) -> int:
        return self._used

    @property
    def count(self) -> int:
        return len(self._lru)

    @property
    def evictions(self) -> int:
        return self._evictions

    @property
    def reserved(self) -> int:
        return self._reserved

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
                _unlink(os.path.join(directory, orphan + ".body"))
            for orphan in metas - bodies:
                _unlink(os.path.join(directory, orphan + ".meta"))
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
        self._evictToBudget()
        yield self.count

    def _load(self, entryId: str) -> float | None:
        metaPath = self._metaPath(entryId)
        bodyPath = self._bodyPath(entryId)
        try:
            st = os.stat(metaPath)
            if st.st_size > _MAX_META:
                raise ValueError("metadata file too large")
            with open(metaPath, "rb") as f:
                raw = f.read(_MAX_META + 1)
            meta = _decodeMeta(raw)
            if meta.entryId != entryId:
                raise ValueError("metadata names another entry")
            bodySize = os.stat(bodyPath).st_size
            if bodySize != _bodyFileSize(
                meta.bodyLength, self._footerBlockSize(bodyPath, bodySize)
            ):
                raise ValueError("body file has the wrong size")
        except (OSError, ValueError) as e:
            self._discard(entryId, "unreadable at start: {}".format(e))
            return None
        if self._used + _roundUp(bodySize) + _roundUp(len(raw)) > self.capacity:
            # Over budget (the budget shrank): drop rather than load.
            self._removeFiles(entryId)
            self._evictions += 1
            return None
        self._insert(meta, _roundUp(bodySize) + _roundUp(len(raw)))
        return st.st_mtime

    def _footerBlockSize(self, bodyPath: str, bodySize: int) -> int:
        """
        The block size a body file's footer records (checked fully when it
        is opened).
        """
        if bodySize < _FOOTER_SIZE:
            raise ValueError("body file too short")
        with open(bodyPath, "rb") as f:
            f.seek(bodySize - _FOOTER_SIZE)
            footer = f.read(_FOOTER_SIZE)
        magic, _, blockSize, _, _ = _FOOTER.unpack(footer[: _FOOTER.size])
        if magic != _BODY_MAGIC or blockSize <= 0:
            raise ValueError("bad body footer")
        return int(blockSize)

    # The Store interface.

    def variants(self, key: str) -> list[StoredResponse]:
        ids = self._byKey.get(key)
        if not ids:
            return []
        return [self._lru[i].meta for i in ids]

    def openWriter(
        self, entry: StoredResponse, expectedLength: int | None = None
    ) -> _DiskWriter | None:
        if self.capacity == 0:
            return None
        if expectedLength is not None and expectedLength > self.maxObjectSize:
            return None
        entryId = uuid.uuid4().hex
        overhead = _roundUp(len(_encodeMeta(entry.copy(entryId=entryId)))) + _roundUp(
            _bodyFileSize(0)
        )
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
    ) -> _DiskBody:
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
            table, blockSize = self._readTable(f, meta)
        except (OSError, ValueError) as e:
            f.close()
            self._corrupt(meta, str(e))
            raise EntryUnavailable("the stored body is corrupt") from None
        try:
            return _DiskBody(self, meta, f, table, blockSize, offset, length)
        except EntryUnavailable:
            f.close()
            raise

    def _readTable(self, f: BinaryIO, meta: StoredResponse) -> tuple[list[int], int]:
        """
        Check a body file's size and footer and read its checksum table.

        @raise ValueError: if they do not check out.
        """
        size = os.fstat(f.fileno()).st_size
        if size < _FOOTER_SIZE:
            raise ValueError("body file truncated")
        f.seek(size - _FOOTER_SIZE)
        footer = f.read(_FOOTER_SIZE)
        (footerCrc,) = struct.unpack(">I", footer[_FOOTER.size :])
        if zlib.crc32(footer[: _FOOTER.size]) != footerCrc:
            raise ValueError("body footer fails its checksum")
        magic, length, blockSize, blocks, tableCrc = _FOOTER.unpack(footer[: _FOOTER.size])
        if magic != _BODY_MAGIC or length != meta.bodyLength or blockSize <= 0:
            raise ValueError("body footer does not match the metadata")
        if blocks != _blockCount(length, blockSize) or size != _bodyFileSize(length, blockSize):
            raise ValueError("body file has the wrong size")
        f.seek(length)
        raw = f.read(4 * blocks)
        if len(raw) != 4 * blocks or zlib.crc32(raw) != tableCrc:
            raise ValueError("checksum table is corrupt")
        return list(struct.unpack(">%dI" % (blocks,), raw)), int(blockSize)

    def update(self, entry: StoredResponse, replacement: StoredResponse) -> StoredResponse | None:
        stored = self._lru.get(entry.entryId)
        if stored is None:
            return None
        new = replacement.copy(entryId=entry.entryId, bodyLength=stored.meta.bodyLength)
        raw = _encodeMeta(new)
        bodyCost = _roundUp(_bodyFileSize(new.bodyLength))
        cost = bodyCost + _roundUp(len(raw))
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
            _unlink(tmp)
            raise

    def touch(self, entry: StoredResponse) -> None:
        if entry.entryId in self._lru:
            self._lru.move_to_end(entry.entryId)

    def delete(self, entry: StoredResponse) -> None:
        if self._remove(entry.entryId):
            self._removeFiles(entry.entryId)

    def deleteKey(self, key: str) -> int:
        ids = list(self._byKey.get(key, ()))
        for i in ids:
            if self._remove(i):
                self._removeFiles(i)
        return len(ids)

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
        raw = _encodeMeta(meta)
        cost = _roundUp(_bodyFileSize(size)) + _roundUp(len(raw))
        try:
            self._ensureDir(entryId)
            os.replace(tmpPath, self._bodyPath(entryId))
            self._writeMeta(entryId, raw)
        except OSError as e:
            self._ioError("committing a cache entry", e)
            _unlink(tmpPath)
            _unlink(self._bodyPath(entryId))
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

    def _remove(self, entryId: str) -> bool:
        stored = self._lru.pop(entryId, None)
        if stored is None:
            return False
        self._used -= stored.cost
        ids = self._byKey.get(stored.meta.key)
        if ids is not None:
            ids.remove(entryId)
            if not ids:
                del self._byKey[stored.meta.key]
        return True

    def _removeFiles(self, entryId: str) -> None:
        # Metadata first: without it the entry no longer exists for a scan.
        _unlink(self._metaPath(entryId))
        _unlink(self._bodyPath(entryId))

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

    def _evictToBudget(self) -> None:
        while self._used + self._reserved > self.capacity and self._lru:
            oldest = next(iter(self._lru))
            self._remove(oldest)
            self._removeFiles(oldest)
            self._evictions += 1

    def _reserve(self, size: int, keep: str | None = None) -> bool:
        while self._used + self._reserved + size > self.capacity and self._lru:
            oldest = next(iter(self._lru))
            if oldest == keep:
                break
            self._remove(oldest)
            self._removeFiles(oldest)
            self._evictions += 1
        if self._used + self._reserved + size > self.capacity:
            return False
        self._reserved += size
        return True

    def _release(self, size: int) -> None:
        self._reserved -= size
