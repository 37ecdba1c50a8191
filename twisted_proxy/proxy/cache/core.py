# -*- test-case-name: tests.test_cache_http -*-
"""
L{CacheCore}: the state of an L{HTTPCache} and the helpers both of its
sides use -- the request side (L{twisted_proxy.proxy.cache.lookup}) and the
response side (L{twisted_proxy.proxy.cache.responses}).

Pure: no I/O of its own (the store may do some), no Twisted reactor.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Unpack

from twisted.logger import Logger

from twisted_proxy.http.framing import RequestHead, ResponseHead

from .collapse import FORWARD, CollapseRegistry
from .config import CacheConfig, CacheStats
from .derived import Derived, derive
from .entry import StoredResponse
from .outcomes import CacheLookup
from .serving import answer
from .status import CacheStatusParams, cacheStatusValue
from .store import CachedBody, Store

__all__ = ["CacheCore"]


class CacheCore:
    """
    What an L{HTTPCache} holds, and what its request and response sides
    share.

    @ivar store: where responses are kept.
    @ivar config: the L{CacheConfig}.
    @ivar stats: the L{CacheStats}.
    @ivar _now: the clock (POSIX seconds).
    @ivar _flights: the collapsed-forwarding registry.
    @ivar _revalidating: entry ids with a background revalidation in
        flight (stale-while-revalidate).
    @ivar _hitPrefix: the start of a fresh hit's C{Cache-Status}, up to its
        C{ttl} value (the common case, built once).
    @ivar _uncacheable: primary key -> until when requests for it are not
        collapsed (its last response could not be stored), oldest first.
    """

    _log = Logger()

    def __init__(
        self, store: Store, now: Callable[[], float], config: CacheConfig | None = None
    ) -> None:
        self.store = store
        self.config = config if config is not None else CacheConfig()
        self.stats = CacheStats()
        self._now = now
        self._flights = CollapseRegistry(self.config.maxCollapsedWaiters)
        self._hitPrefix = self._status(hit=True) + b"; ttl="
        self._revalidating: set[str] = set()
        self._uncacheable: OrderedDict[str, float] = OrderedDict()

    def _derived(self, entry: StoredResponse) -> Derived:
        d = entry.derived
        if d is not None:
            # The common case (a stored response served again), without a call.
            return d
        return derive(entry, self.config.heuristicFraction, self.config.heuristicMax)

    def _status(self, **params: Unpack[CacheStatusParams]) -> bytes:
        return cacheStatusValue(self.config.name, **params)

    def _answer(
        self,
        request: RequestHead,
        entry: StoredResponse,
        age: float,
        status: bytes,
        validated: bool,
        fields: dict[bytes, list[bytes]] | None = None,
    ) -> tuple[ResponseHead, CachedBody | None]:
        """
        The head (and body) that answers C{request} from C{entry}: see
        L{twisted_proxy.proxy.cache.serving.answer}.

        @raise EntryUnavailable: if the body cannot be read.
        """
        return answer(
            self.store, request, entry, self._derived(entry), age, status, validated, fields
        )

    def _collapsible(self, key: str) -> bool:
        """
        Whether requests for C{key} may wait for one another: not while its
        last response is remembered as one that could not be stored.
        """
        until = self._uncacheable.get(key)
        if until is None:
            return True
        if until > self._now():
            return False
        del self._uncacheable[key]
        return True

    def _rememberUncacheable(self, key: str) -> None:
        """
        C{key}'s response could not be stored: for
        L{CacheConfig.uncacheableMemory} seconds, requests for it do not
        wait for one another (each would wait for a response it cannot
        use, then go to the origin anyway).
        """
        memory = self.config.uncacheableMemory
        if memory <= 0:
            return
        remembered = self._uncacheable
        remembered.pop(key, None)
        remembered[key] = self._now() + memory
        while len(remembered) > self.config.uncacheableKeys:
            remembered.popitem(last=False)

    def _finish(self, lk: CacheLookup) -> None:
        """
        Release what C{lk} still holds: a writer whose body never finished
        (aborted), its flight, its background slot, its wait.
        """
        writer = lk._writer
        if writer is not None:
            # A body never finished: the transfer was cut short.
            lk._writer = None
            writer.abort()
        lk.cancelWait()
        self._flightEnded(lk, FORWARD)
        self._releaseBackground(lk)

    def _flightEnded(self, lk: CacheLookup, result: str) -> None:
        flight = lk._flight
        if flight is not None:
            lk._flight = None
            flight.finish(result)

    def _releaseBackground(self, lk: CacheLookup) -> None:
        entryId = lk._backgroundId
        if entryId is not None:
            lk._backgroundId = None
            self._revalidating.discard(entryId)
