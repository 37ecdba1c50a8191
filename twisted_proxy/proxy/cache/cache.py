# -*- test-case-name: tests.test_cache_http -*-
"""
L{HTTPCache}: the shared HTTP cache the exchange consults, over a
L{Store}.  Its request side is L{twisted_proxy.proxy.cache.lookup}, its
response side L{twisted_proxy.proxy.cache.responses}; the RFC 9111 rules
they apply are in C{keys}, C{freshness}, C{storing}, C{validation} and
C{serving}; the values they answer with in C{outcomes}.

How the exchange uses it, for one transaction::

    lookup = cache.lookup(requestHead, target)
    match lookup.outcome:
      FRESH_HIT, NOT_MODIFIED:
          send lookup.head, then stream lookup.body (None: no body)
      STALE_WHILE_REVALIDATE:
          send lookup.head and lookup.body as for a hit; and, if
          lookup.background is not None, revalidate in the background with
          that second lookup (a REVALIDATE whose answers go to nobody): send
          lookup.background.forward upstream, hand its response to
          responseReceived(lookup.background, ...) and feed the decision's
          writer, if any, or call upstreamFailed(lookup.background); then
          finished(lookup.background)
      COLLAPSED:
          lookup.wait(callback) with a timer of config.collapseTimeout;
          on callback or timeout (then lookup.cancelWait()):
          lookup = cache.lookupAgain(lookup) and start over with it
      ONLY_IF_CACHED_MISS:
          answer lookup.error (a 504 ProxyError carrying Cache-Status)
      MISS, REVALIDATE, BYPASS:
          send lookup.forward upstream (the request to send: REVALIDATE
          adds the cache's validators); then
          decision = cache.responseReceived(lookup, responseHead,
                                            requestTime, responseTime)
          if decision.fromCache: discard the upstream body; send
              decision.head and stream decision.body
          elif decision.error: answer decision.error
          else: send decision.head (the upstream head plus Cache-Status),
              relay the body, and give every chunk to decision.writer
              (if not None): writer.write(chunk) as it is relayed,
              writer.finish() at the end (at once for a bodiless
              response), writer.abort() if the transfer fails
      if the upstream cannot be reached or fails before a response head:
          decision = cache.upstreamFailed(lookup)  -> serve it as above,
          or its error, or (None) answer with the exchange's own error
    cache.finished(lookup)   # always, at the end of the transaction

Heads the cache gives (C{lookup.head}, C{decision.head}) hold end-to-end
fields only, with C{Content-Length} for bodies the cache serves; the
exchange applies C{forwardResponseHeaders} (C{Via}, connection fields) as
for any upstream response.  The cache is told the upstream response head as
received (before C{forwardResponseHeaders}); it removes the connection's
fields itself before storing.

Times (C{now()}, C{requestTime}, C{responseTime}) are POSIX seconds
(C{reactor.seconds()}): freshness compares them with C{Date} and
C{Expires}.

Pure: no I/O of its own (the store may do some), no Twisted reactor.
"""

from __future__ import annotations

from twisted_proxy.http.target import Target

from .keys import primaryKey
from .lookup import LookupSteps
from .outcomes import CacheLookup
from .responses import ResponseSteps

__all__ = ["HTTPCache"]


class HTTPCache(LookupSteps, ResponseSteps):
    """
    A shared HTTP cache (RFC 9111, RFC 5861, RFC 9211) over a L{Store}.

    See the module docstring for the protocol the exchange follows:
    L{lookup} and L{lookupAgain} (L{LookupSteps}), L{responseReceived} and
    L{upstreamFailed} (L{ResponseSteps}), L{finished}.  The state both
    sides share is described by L{CacheCore}.
    """

    # Metrics that the store keeps.

    @property
    def entries(self) -> int:
        return self.store.count

    @property
    def storedBytes(self) -> int:
        return self.store.size

    @property
    def evictions(self) -> int:
        return self.store.evictions

    # What is in progress now.

    @property
    def inFlight(self) -> int:
        """
        Requests in flight that others may wait for (collapsed forwarding).
        """
        return len(self._flights)

    @property
    def revalidating(self) -> int:
        """
        Background revalidations (C{stale-while-revalidate}) in flight.
        """
        return len(self._revalidating)

    # Invalidation and bookkeeping.

    def invalidate(self, target: Target) -> int:
        """
        Remove every stored response for C{target}'s URI (all variants).

        @return: how many were removed.
        """
        removed = self.store.deleteKey(primaryKey(target))
        self.stats.invalidations += removed
        return removed

    def finished(self, lookup: CacheLookup) -> None:
        """
        The transaction of C{lookup} is over (served, failed, or the client
        went away): release whatever it still holds -- a store writer whose
        body never finished (aborted: nothing is stored), its place as the
        request others wait for (they are told to forward), its background
        revalidation slot, its wait.  Idempotent.
        """
        self._finish(lookup)
