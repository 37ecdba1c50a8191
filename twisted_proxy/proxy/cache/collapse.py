# -*- test-case-name: tests.test_cache_collapse -*-
"""
Collapsed forwarding: when several clients miss on the same URL at once,
one request (the I{leader}'s) goes to the origin and the others (I{waiters})
wait for its response instead of each sending their own.

The registry is pure bookkeeping: in-flight primary keys, and the waiters of
each with a plain callback.  The exchange does the waiting, with its own
timer (L{twisted_proxy.proxy.cache.cache.CacheConfig.collapseTimeout}):

  - a waiter's callback is called once, with L{STORED} (the leader's
    response was stored: look up again, it is a hit) or L{FORWARD} (the
    leader's response could not be shared -- not cacheable, too large,
    aborted, the upstream failed, the leader went away -- or the wait was
    cut short: forward your own request).  Either way the exchange then
    calls L{HTTPCache.lookupAgain}, which never makes it wait a second
    time;
  - the callback may run synchronously inside a call the leader's exchange
    makes into the cache (C{responseReceived}, C{CacheWriter.finish}, ...):
    it should only schedule work (e.g. C{reactor.callLater(0, ...)}) or do
    little;
  - a waiter that times out calls L{Waiter.cancel} (its callback is then
    never called) and carries on by itself.

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["STORED", "FORWARD", "CollapseRegistry", "Flight", "Waiter"]

STORED = "stored"
FORWARD = "forward"


class Waiter:
    """
    A request waiting for another's response.

    @ivar result: L{STORED} or L{FORWARD} once the flight ended, else
        L{None}.
    @ivar _callback: what to call with the result, once set.
    @ivar _state: C{"WAITING"}, C{"DONE"} (result known; the callback has
        been or will be called when set) or C{"CANCELLED"}.
    """

    _state = "WAITING"
    result: str | None = None
    _callback: Callable[[str], None] | None = None

    def __init__(self, flight: Flight) -> None:
        self._flight: Flight | None = flight

    def wait(self, callback: Callable[[str], None]) -> None:
        """
        Call C{callback(result)} when the flight ends (at once if it has
        already ended).
        """
        if self._callback is not None:
            raise RuntimeError("wait() called twice")
        self._callback = callback
        if self._state == "DONE":
            assert self.result is not None
            callback(self.result)

    def cancel(self) -> None:
        """
        Stop waiting (timeout, or the client went away).  Idempotent.
        """
        if self._state == "WAITING" and self._flight is not None:
            self._flight._removeWaiter(self)
        self._state = "CANCELLED"
        self._flight = None

    def _end(self, result: str) -> None:
        if self._state != "WAITING":
            return
        self._state = "DONE"
        self.result = result
        self._flight = None
        if self._callback is not None:
            self._callback(result)

    @property
    def waiting(self) -> bool:
        return self._state == "WAITING"


class Flight:
    """
    One request in flight to the origin, and those waiting for it.

    @ivar key: the primary key it is for.
    @ivar result: how it ended, or L{None} while in flight.
    """

    result: str | None = None

    def __init__(self, registry: CollapseRegistry, key: str) -> None:
        self._registry = registry
        self.key = key
        self._waiters: list[Waiter] = []

    @property
    def waiterCount(self) -> int:
        return len(self._waiters)

    def finish(self, result: str) -> None:
        """
        The flight ended: wake every waiter with C{result}.  Idempotent
        (only the first call counts).
        """
        if self.result is not None:
            return
        self.result = result
        self._registry._ended(self)
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w._end(result)

    def _removeWaiter(self, waiter: Waiter) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass


class CollapseRegistry:
    """
    The flights in progress, by primary key.

    @ivar maxWaiters: the most waiters one flight takes; later requests
        are not made to wait (they forward).
    """

    def __init__(self, maxWaiters: int = 1000) -> None:
        self.maxWaiters = maxWaiters
        self._flights: dict[str, Flight] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def inFlight(self, key: str) -> bool:
        return key in self._flights

    def lead(self, key: str) -> Flight | None:
        """
        Start a flight for C{key}, or L{None} if one is in progress.
        """
        if key in self._flights:
            return None
        flight = self._flights[key] = Flight(self, key)
        return flight

    def join(self, key: str) -> Waiter | None:
        """
        Wait for the flight of C{key}, or L{None} if there is none or it has
        as many waiters as it takes.
        """
        flight = self._flights.get(key)
        if flight is None or len(flight._waiters) >= self.maxWaiters:
            return None
        waiter = Waiter(flight)
        flight._waiters.append(waiter)
        return waiter

    def _ended(self, flight: Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
