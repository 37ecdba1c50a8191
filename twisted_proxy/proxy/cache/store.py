# -*- test-case-name: tests.test_cache_memory -*-
"""
The one interface between the cache's RFC 9111 logic and where responses are
kept (L{Store}), the streaming pieces it is made of (L{StoreWriter},
L{CachedBody}, L{BodyConsumer}), and the in-memory store (L{MemoryStore}).
The disk store is in L{twisted_proxy.proxy.cache.disk}.

The interface is small so that another store (one shared over the network by
several proxies, say) can be added without touching the logic:

  - metadata calls (L{Store.variants}, L{Store.update}, L{Store.delete}...)
    are synchronous and cheap: a store keeps its index in memory (a
    networked store would keep a local replica of the index, which is
    small, and be told of changes);
  - bodies stream both ways in chunks: a L{StoreWriter} is given the chunks
    of a response as they are relayed to the client, and commits or aborts
    at the end; a committed body is read back through a L{CachedBody}, a
    push producer with the C{pauseProducing}/C{resumeProducing}/
    C{stopProducing} methods of Twisted's C{IPushProducer}, which may
    deliver synchronously (memory, disk) or later (a network store).

Guarantees every store gives:

  - a body is stored whole or not at all: nothing is visible before
    L{StoreWriter.commit}, and an aborted or oversized write leaves
    nothing;
  - the byte budget (L{Store.capacity}) holds at all times, bodies still
    being written included: room is made by evicting least recently used
    entries, and a write that cannot get room is aborted;
  - an object larger than L{Store.maxObjectSize} is never stored; a write
    that grows past it is aborted (never truncated);
  - a body being read stays readable to its end even if its entry is
    replaced, evicted or deleted meanwhile.

Pure: no Twisted imports; the memory store does no I/O.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Protocol

from .entry import StoredResponse

__all__ = [
    "CHUNK_SIZE",
    "BodyConsumer",
    "CachedBody",
    "StoreWriter",
    "Store",
    "EntryUnavailable",
    "LocalBody",
    "MemoryStore",
    "readAll",
]

# The size of the pieces bodies are kept and read in: each read a store does
# on the reactor thread is at most this long.
CHUNK_SIZE = 65536


class EntryUnavailable(Exception):
    """
    A stored body cannot be read: it is gone, or it failed its integrity
    check (the store has then discarded it).
    """


class BodyConsumer(Protocol):
    """
    What a L{CachedBody} delivers to.
    """

    def write(self, data: bytes) -> None:
        """
        The next piece of the body.
        """

    def bodyDone(self) -> None:
        """
        The whole body has been written.
        """

    def bodyFailed(self, reason: str) -> None:
        """
        The body cannot be delivered to its end (a corrupt block was found,
        or the store failed): the receiver must not treat what it got as
        complete -- abort the client connection, as for an upstream that
        died mid-body.
        """


class CachedBody(Protocol):
    """
    A stored body being read: a push producer.

    Register it with the client transport as a streaming producer, then
    call L{start}.  It writes pieces to the consumer until it is paused,
    stopped, or done.
    """

    length: int

    def start(self, consumer: BodyConsumer) -> None:
        """
        Begin delivering to C{consumer}.
        """

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def stopProducing(self) -> None:
        """
        Stop for good (the client went away); release the store's
        resources.  No further call is made on the consumer.
        """


class StoreWriter(Protocol):
    """
    A response body being stored while it is relayed.

    @ivar failed: why the writer gave up (C{"too-large"}, C{"budget"},
        C{"io-error"}, C{"aborted"}), or L{None} while it is writing or once
        committed.
    """

    failed: str | None

    def write(self, data: bytes) -> bool:
        """
        Store the next piece of the body.

        @return: C{False} once the writer has given up (the object grew too
            large, no room could be made, an I/O error): later calls are
            ignored, and L{commit} returns L{None}.
        """

    def commit(self) -> StoredResponse | None:
        """
        The body is complete: make the entry visible.

        @return: the committed entry (with its C{entryId} and
            C{bodyLength}), or L{None} if the writer had given up.
        """

    def abort(self) -> None:
        """
        The body will not be complete (the upstream transfer failed): store
        nothing.  Idempotent; a no-op after L{commit}.
        """


class Store(Protocol):
    """
    Where stored responses are kept.

    @ivar capacity: the byte budget (bodies plus metadata); 0 disables the
        store (L{openWriter} returns L{None}).
    @ivar maxObjectSize: the largest body stored.
    @ivar size: bytes used by committed entries.
    @ivar count: committed entries.
    @ivar evictions: entries evicted to keep the budget, since start.
    """

    capacity: int
    maxObjectSize: int

    @property
    def size(self) -> int: ...

    @property
    def count(self) -> int: ...

    @property
    def evictions(self) -> int: ...

    def variants(self, key: str) -> list[StoredResponse]:
        """
        The committed entries of primary key C{key}, most recently stored
        first.  The caller must not change them (see L{update}).
        """

    def openWriter(
        self, entry: StoredResponse, expectedLength: int | None = None
    ) -> StoreWriter | None:
        """
        Start storing a response with metadata C{entry}.

        @param expectedLength: the body length if known in advance
            (C{Content-Length}): a store refuses at once what cannot fit.
        @return: a writer, or L{None} if the store will not take it (it is
            disabled, or the expected length is over C{maxObjectSize}).
        """

    def openBody(
        self, entry: StoredResponse, offset: int = 0, length: int | None = None
    ) -> CachedBody:
        """
        Read C{length} bytes (default: to the end) of a committed entry's
        body from C{offset}.

        @raise EntryUnavailable: if the entry is gone or fails its
            integrity check (it is then discarded).
        """

    def update(self, entry: StoredResponse, replacement: StoredResponse) -> StoredResponse | None:
        """
        Replace the metadata of a committed entry (after a 304 or a HEAD
        freshened it), keeping its body.

        @return: the entry as now stored, or L{None} if it was gone.
        """

    def touch(self, entry: StoredResponse) -> None:
        """
        The entry was used: it is now the most recently used.
        """

    def delete(self, entry: StoredResponse) -> None:
        """
        Remove one entry (readers already reading it finish).
        """

    def deleteKey(self, key: str) -> int:
        """
        Remove every entry of a primary key.

        @return: how many were removed.
        """

    def close(self) -> None:
        """
        Release the store's resources (files, locks).
        """


class LocalBody:
    """
    A L{CachedBody} over a synchronous reader (the memory and disk stores):
    it reads one piece (at most L{CHUNK_SIZE}) per iteration and writes it,
    until the consumer pauses it.  A Twisted transport pauses its producer
    from inside C{write} once its buffer is full, so each turn of the
    reactor reads a bounded amount.

    Subclasses implement L{_read} and L{_close}.

    @ivar length: how many bytes will be delivered.
    @ivar _state: C{"NEW"}, C{"PRODUCING"}, C{"PAUSED"}, C{"DONE"} (all
        delivered), C{"FAILED"} (L{BodyConsumer.bodyFailed} was called) or
        C{"STOPPED"} (L{stopProducing}).
    @ivar _remaining: bytes still to deliver.
    @ivar _looping: the delivery loop is running (a re-entrant
        C{resumeProducing} from inside C{write} must not start another).
    """

    _state = "NEW"
    _looping = False
    _consumer: BodyConsumer | None = None

    def __init__(self, length: int) -> None:
        self.length = length
        self._remaining = length

    def _read(self, size: int) -> bytes:
        """
        The next at most C{size} (> 0) bytes; never empty.

        @raise EntryUnavailable: if the body cannot be read further.
        """
        raise NotImplementedError()

    def _close(self) -> None:
        """
        Release what the reader holds (idempotent).
        """

    def start(self, consumer: BodyConsumer) -> None:
        if self._state != "NEW":
            raise RuntimeError("start() called twice")
        self._consumer = consumer
        self._state = "PRODUCING"
        self._produce()

    def pauseProducing(self) -> None:
        if self._state == "PRODUCING":
            self._state = "PAUSED"

    def resumeProducing(self) -> None:
        if self._state == "PAUSED":
            self._state = "PRODUCING"
            self._produce()

    def stopProducing(self) -> None:
        if self._state in ("NEW", "PRODUCING", "PAUSED"):
            self._state = "STOPPED"
            self._close()

    def _produce(self) -> None:
        if self._looping:
            return
        consumer = self._consumer
        assert consumer is not None
        self._looping = True
        try:
            while self._state == "PRODUCING":
                if self._remaining <= 0:
                    self._state = "DONE"
                    self._close()
                    consumer.bodyDone()
                    return
                try:
                    data = self._read(min(CHUNK_SIZE, self._remaining))
                except EntryUnavailable as e:
                    self._state = "FAILED"
                    self._close()
                    consumer.bodyFailed(str(e))
                    return
                self._remaining -= len(data)
                consumer.write(data)
        finally:
            self._looping = False


class _Collector:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done = False
        self.failed: str | None = None

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def bodyDone(self) -> None:
        self.done = True

    def bodyFailed(self, reason: str) -> None:
        self.failed = reason


def readAll(body: CachedBody) -> bytes:
    """
    The whole of a body that delivers synchronously (memory and disk
    stores), for tests and tools.

    @raise EntryUnavailable: if the body failed, or did not finish
        synchronously.
    """
    collector = _Collector()
    body.start(collector)
    if collector.failed is not None:
        raise EntryUnavailable(collector.failed)
    if not collector.done:
        body.stopProducing()
        raise EntryUnavailable("the body did not finish synchronously")
    return b"".join(collector.chunks)


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


class MemoryStore:
    """
    Responses kept in memory, least recently used evicted first, within a
    byte budget.

    The budget counts each entry's body and an estimate of its metadata
    (L{StoredResponse.metadataSize}), and the bytes of bodies still being
    written.  Bodies evicted while a client is still being sent one are
    freed when that send ends.

    @ivar _lru: entry id -> entry, least recently used first.
    @ivar _byKey: primary key -> entry ids, most recently stored first.
    @ivar _used: bytes of committed entries.
    @ivar _reserved: bytes reserved by writers in progress.
    """

    def __init__(
        self, capacity: int = 64 * 1024 * 1024, maxObjectSize: int = 8 * 1024 * 1024
    ) -> None:
        if capacity < 0 or maxObjectSize < 0:
            raise ValueError("cache sizes must not be negative")
        self.capacity = capacity
        self.maxObjectSize = min(maxObjectSize, capacity)
        self._lru: OrderedDict[str, _MemoryEntry] = OrderedDict()
        self._byKey: dict[str, list[str]] = {}
        self._used = 0
        self._reserved = 0
        self._evictions = 0
        self._ids = itertools.count(1)

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
        """
        Bytes reserved by writes in progress.
        """
        return self._reserved

    def variants(self, key: str) -> list[StoredResponse]:
        ids = self._byKey.get(key)
        if not ids:
            return []
        return [self._lru[i].meta for i in ids]

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

    def touch(self, entry: StoredResponse) -> None:
        if entry.entryId in self._lru:
            self._lru.move_to_end(entry.entryId)

    def delete(self, entry: StoredResponse) -> None:
        self._remove(entry.entryId)

    def deleteKey(self, key: str) -> int:
        ids = list(self._byKey.get(key, ()))
        for i in ids:
            self._remove(i)
        return len(ids)

    def close(self) -> None:
        self._lru.clear()
        self._byKey.clear()
        self._used = 0

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

    def _reserve(self, size: int, keep: str | None = None) -> bool:
        """
        Reserve C{size} bytes of the budget, evicting least recently used
        entries to make room.

        @param keep: an entry id not to evict (it is the most recently
            used).
        @return: whether the room was found.
        """
        while self._used + self._reserved + size > self.capacity and self._lru:
            oldest = next(iter(self._lru))
            if oldest == keep:
                break
            self._remove(oldest)
            self._evictions += 1
        if self._used + self._reserved + size > self.capacity:
            return False
        self._reserved += size
        return True

    def _release(self, size: int) -> None:
        self._reserved -= size

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
