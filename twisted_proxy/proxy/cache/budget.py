# -*- test-case-name: tests.test_cache_memory -*-
"""
L{Budget}: the bookkeeping both stores share: their entries, least recently
used first, each with its cost in bytes, within a byte budget, and the
bytes reserved by writes in progress.

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Protocol, TypeVar

from .entry import StoredResponse

__all__ = ["Budget"]


class _Entry(Protocol):
    meta: StoredResponse
    cost: int


_E = TypeVar("_E", bound=_Entry)


class Budget(Generic[_E]):
    """
    Entries in least-recently-used order within C{capacity} bytes.

    A store removes an entry with L{_remove} (the bookkeeping); what the
    entry holds outside this object (a disk store's files) is let go in
    L{_dropped}, which L{delete}, L{deleteKey} and eviction call.

    @ivar capacity: the byte budget.
    @ivar _lru: entry id -> entry, least recently used first.
    @ivar _byKey: primary key -> entry ids, most recently stored first.
    @ivar _used: bytes of committed entries.
    @ivar _reserved: bytes reserved by writers in progress.
    """

    capacity: int

    def __init__(self) -> None:
        self._lru: OrderedDict[str, _E] = OrderedDict()
        self._byKey: dict[str, list[str]] = {}
        self._used = 0
        self._reserved = 0
        self._evictions = 0

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

    def touch(self, entry: StoredResponse) -> None:
        if entry.entryId in self._lru:
            self._lru.move_to_end(entry.entryId)

    def delete(self, entry: StoredResponse) -> None:
        if self._remove(entry.entryId):
            self._dropped(entry.entryId)

    def deleteKey(self, key: str) -> int:
        ids = list(self._byKey.get(key, ()))
        for i in ids:
            if self._remove(i):
                self._dropped(i)
        return len(ids)

    def _dropped(self, entryId: str) -> None:
        """
        Entry C{entryId} is no longer stored: let go of what it holds
        outside this bookkeeping.
        """

    def _remove(self, entryId: str) -> bool:
        """
        Forget entry C{entryId}; whether it was there.
        """
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

    def _evict(self, size: int = 0, keep: str | None = None) -> None:
        """
        Evict least recently used entries until C{size} more bytes fit, or
        until the next one is C{keep} (it is the most recently used).
        """
        while self._used + self._reserved + size > self.capacity and self._lru:
            oldest = next(iter(self._lru))
            if oldest == keep:
                break
            self._remove(oldest)
            self._dropped(oldest)
            self._evictions += 1

    def _reserve(self, size: int, keep: str | None = None) -> bool:
        """
        Reserve C{size} bytes of the budget, evicting least recently used
        entries to make room.

        @param keep: an entry id not to evict (it is the most recently
            used).
        @return: whether the room was found.
        """
        self._evict(size, keep)
        if self._used + self._reserved + size > self.capacity:
            return False
        self._reserved += size
        return True

    def _release(self, size: int) -> None:
        self._reserved -= size
