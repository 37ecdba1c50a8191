# -*- test-case-name: tests.test_upstream -*-
"""
L{Deadline}: a timeout that costs nothing to move later.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["Deadline"]


class Deadline:
    """
    A timeout that is cheap to move: at most one pending C{DelayedCall},
    which, when it fires early (the deadline moved later since it was
    scheduled), schedules itself again for the new deadline.

    Moving a deadline later, or clearing it, costs no reactor call at all,
    so the per-request timeouts of a busy keep-alive connection (idle,
    response, stalled body) do not create and cancel a timer each time.
    Moving it earlier cancels the pending call and schedules a new one
    (cheaper in Twisted's reactor than C{DelayedCall.reset} to an earlier
    time, which searches the timer heap).

    @ivar _when: the deadline (clock time), or L{None}.
    @ivar _callback: what to call at the deadline, with C{_args}.
    """

    __slots__ = ("_clock", "_call", "_when", "_callback", "_args")

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._call: IDelayedCall | None = None
        self._when: float | None = None
        self._callback: Callable[..., None] | None = None
        self._args: tuple[object, ...] = ()

    def set(self, seconds: float | None, callback: Callable[..., None], *args: object) -> None:
        """
        Call C{callback(*args)} C{seconds} from now, replacing any deadline
        set before.  L{None} or 0 clears it instead.
        """
        if not seconds:
            self.clear()
            return
        clock = self._clock
        when = clock.seconds() + seconds
        self._when = when
        self._callback = callback
        self._args = args
        call = self._call
        if call is None:
            self._call = clock.callLater(seconds, self._fire)
        elif call.getTime() > when:
            call.cancel()
            self._call = clock.callLater(seconds, self._fire)

    def clear(self) -> None:
        """
        No deadline (the pending call, if any, will find nothing to do).
        """
        self._when = None
        self._callback = None
        self._args = ()

    def cancel(self) -> None:
        """
        No deadline, and no pending call (when the connection is gone).
        """
        self.clear()
        call = self._call
        if call is not None:
            self._call = None
            if call.active():
                call.cancel()

    def _fire(self) -> None:
        self._call = None
        when = self._when
        if when is None:
            return
        now = self._clock.seconds()
        if now < when:
            self._call = self._clock.callLater(when - now, self._fire)
            return
        callback, args = self._callback, self._args
        assert callback is not None  # set() sets both, clear() clears both
        self.clear()
        callback(*args)
