# -*- test-case-name: tests.test_cache_memory -*-
"""
L{MemoryStore}: stored responses in memory, least recently used evicted
first, within a byte budget (the guarantees every store gives are in
L{twisted_proxy.proxy.cache.store}).

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

import itertools

from .budget import Budget
from .entry import StoredResponse
from .store import CHUNK_SIZE, EntryUnavailable, LocalBody

__all__ = ["MemoryStore"]


class _MemoryBody(LocalBody):
    """
    A slice of a body kept as a tuple of pieces.
    """

    def __init__(self, pieces: tuple[bytes, ...], offset: int, length: int) -> None:
        super().__init__(length)
        self._pieces = pieces
        # Find the piece holding `offset`.
        index = 0
        while index < len(pieces) and offset >= len(pieces[index]):
            offset -= len(pieces[index])
            index += 1
        self._index = index
        self._offset = offset

    def _read(self, size: int) -> bytes:
        if self._index >= len(self._pieces):
            raise EntryUnavailable("the stored body is shorter than recorded")
        piece = self._pieces[self._index]
        data = piece[self._offset : self._offset + size]
        self._offset += len(data)
        if self._offset >= len(piece):
            self._index += 1
            self._offset = 0
        return data

    def _close(self) -> None:
        self._pieces = ()


class _MemoryEntry:
    __slots__ = ("meta", "pieces", "cost")

    def __init__(self, meta: StoredResponse, pieces: tuple[bytes, ...], cost: int) -> None:
        self.meta = meta
        self.pieces = pieces
        self.cost = cost


class _MemoryWriter:
    """
    A body being stored in memory: pieces of L{CHUNK_SIZE} (small writes are
    coalesced, so a chunked body of tiny chunks costs no more than a big
    one).

    @ivar _reserved: bytes reserved from the store's budget so far.
    """

    failed: str | None = None
    _committed = False

    def __init__(self, store: MemoryStore, entry: StoredResponse, reserved: int) -> None:
        self._store = store
        self._entry = entry
        self._pieces: list[bytes] = []
        self._current = bytearray()
        self._size = 0
        self._reserved = reserved

    def write(self, data: bytes) -> bool:
        if self.failed is not None or self._committed:
            return False
        if not data:
            return True
        self._size += len(data)
        if self._size > self._store.maxObjectSize:
            self._giveUp("too-large")
            return False
        if not self._store._reserve(len(data)):
            self._giveUp("budget")
            return False
        self._reserved += len(data)
        self._current += data
        while len(self._current) >= CHUNK_SIZE:
            self._pieces.append(bytes(self._current[:CHUNK_SIZE]))
            del self._current[:CHUNK_SIZE]
        return True

    def commit(self) -> StoredResponse | None:
        if self.failed is not None or self._committed:
            return None
        self._committed = True
        if self._current:
            self._pieces.append(bytes(self._current))
            self._current = bytearray()
        entry = self._store._commit(self._entry, tuple(self._pieces), self._size, self._reserved)
        self._pieces = []
        return entry

    def abort(self) -> None:
        if self.failed is None and not self._committed:
            self._giveUp("aborted")

    def _giveUp(self, reason: str) -> None:
        self.failed = reason
        self._pieces = []
        self._current = bytearray()
        self._store._release(self._reserved)
        self._reserved = 0


class MemoryStore(Budget[_MemoryEntry]):
    """
    Responses kept in memory, least recently used evicted first, within a
    byte budget.

    The budget counts each entry's body and an estimate of its metadata
    (L{StoredResponse.metadataSize}), and the bytes of bodies still being
    written.  Bodies evicted while a client is still being sent one are
    freed when that send ends.  The bookkeeping is L{Budget}'s.
    """

    def __init__(
        self, capacity: int = 64 * 1024 * 1024, maxObjectSize: int = 8 * 1024 * 1024
    ) -> None:
        if capacity < 0 or maxObjectSize < 0:
            raise ValueError("cache sizes must not be negative")
        super().__init__()
        self.capacity = capacity
        self.maxObjectSize = min(maxObjectSize, capacity)
        self._ids = itertools.count(1)

    def openWriter(
        self, entry: StoredResponse, expectedLength: int | None = None
    ) -> _MemoryWriter | None:
        if self.capacity == 0:
            return None
        if expectedLength is not None and expectedLength > self.maxObjectSize:
            return None
        overhead = entry.metadataSize()
        if not self._reserve(overhead):
            return None
        return _MemoryWriter(self, entry, overhead)

    def openBody(
        self, entry: StoredResponse, offset: int = 0, length: int | None = None
    ) -> _MemoryBody:
        stored = self._lru.get(entry.entryId)
        if stored is None:
            raise EntryUnavailable("the entry is no longer stored")
        total = stored.meta.bodyLength
        offset = max(0, min(offset, total))
        if length is None or offset + length > total:
            length = total - offset
        return _MemoryBody(stored.pieces, offset, length)

    def update(self, entry: StoredResponse, replacement: StoredResponse) -> StoredResponse | None:
        stored = self._lru.get(entry.entryId)
        if stored is None:
            return None
        new = replacement.copy(entryId=entry.entryId, bodyLength=stored.meta.bodyLength)
        cost = stored.meta.bodyLength + new.metadataSize()
        growth = cost - stored.cost
        self._lru.move_to_end(entry.entryId)
        if growth > 0:
            # Make room without evicting the entry being updated.
            if not self._reserve(growth, keep=entry.entryId):
                return None
            self._reserved -= growth
        self._used += growth
        stored.meta = new
        stored.cost = cost
        self._lru.move_to_end(entry.entryId)
        return new

    def close(self) -> None:
        self._lru.clear()
        self._byKey.clear()
        self._used = 0

    def _commit(
        self, entry: StoredResponse, pieces: tuple[bytes, ...], size: int, reserved: int
    ) -> StoredResponse:
        entryId = "m{}".format(next(self._ids))
        meta = entry.copy(entryId=entryId, bodyLength=size)
        # The reservation covered exactly the body and the metadata (whose
        # estimate does not depend on the id).
        self._reserved -= reserved
        self._used += reserved
        self._lru[entryId] = _MemoryEntry(meta, pieces, reserved)
        self._byKey.setdefault(meta.key, []).insert(0, entryId)
        return meta
