# -*- test-case-name: tests.test_cache_http -*-
"""
A shared HTTP cache (RFC 9111, RFC 5861, RFC 9211) for the proxy: the rules
(pure, time injected), the stores behind one interface (memory, disk), and
the L{HTTPCache} the exchange consults.  See C{docs/cache.rst}.

Nothing in this package imports C{twisted.internet}.
"""

from .cache import (
    BYPASS,
    COLLAPSED,
    FRESH_HIT,
    MISS,
    NOT_MODIFIED,
    ONLY_IF_CACHED_MISS,
    REVALIDATE,
    STALE_WHILE_REVALIDATE,
    CacheConfig,
    CacheLookup,
    CacheStats,
    CacheWriter,
    HTTPCache,
    StoreDecision,
)
from .collapse import FORWARD, STORED
from .disk import CacheDirectoryError, DiskStore
from .entry import StoredResponse
from .store import (
    BodyConsumer,
    CachedBody,
    EntryUnavailable,
    MemoryStore,
    Store,
    StoreWriter,
    readAll,
)

__all__ = [
    "HTTPCache",
    "CacheConfig",
    "CacheLookup",
    "CacheStats",
    "CacheWriter",
    "StoreDecision",
    "FRESH_HIT",
    "NOT_MODIFIED",
    "REVALIDATE",
    "STALE_WHILE_REVALIDATE",
    "MISS",
    "COLLAPSED",
    "ONLY_IF_CACHED_MISS",
    "BYPASS",
    "STORED",
    "FORWARD",
    "Store",
    "StoreWriter",
    "CachedBody",
    "BodyConsumer",
    "EntryUnavailable",
    "MemoryStore",
    "DiskStore",
    "CacheDirectoryError",
    "StoredResponse",
    "readAll",
]
