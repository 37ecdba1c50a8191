# -*- test-case-name: tests.test_cache_memory -*-
"""
The one interface between the cache's RFC 9111 logic and where responses are
kept (L{Store}), the streaming pieces it is made of (L{StoreWriter},
L{CachedBody}, L{BodyConsumer}), and L{LocalBody}, the body producer of the
stores that read synchronously.  The stores are
L{twisted_proxy.proxy.cache.memory.MemoryStore} and
L{twisted_proxy.proxy.cache.disk.DiskStore}.

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

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

from typing import Protocol

from .entry import StoredResponse

__all__ = [
    "CHUNK_SIZE",
    "BodyCollector",
    "BodyConsumer",
    "CachedBody",
    "StoreWriter",
    "Store",
    "EntryUnavailable",
    "LocalBody",
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


class BodyCollector:
    """
    A L{BodyConsumer} that keeps what it is given: the chunks, and whether
    the body finished or failed (and why).  For L{readAll}, tests and
    tools.
    """

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
    collector = BodyCollector()
    body.start(collector)
    if collector.failed is not None:
        raise EntryUnavailable(collector.failed)
    if not collector.done:
        body.stopProducing()
        raise EntryUnavailable("the body did not finish synchronously")
    return b"".join(collector.chunks)
