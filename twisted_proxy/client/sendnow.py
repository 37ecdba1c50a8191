# -*- test-case-name: tests.test_client_sendnow -*-
"""
Writes that reach the kernel when they are made.

A Twisted TCP transport's C{write} only queues the bytes: they are sent on
the reactor's next pass, when the socket is reported writable.  For a
client that times its request, that pass is time spent in user space that
the clock would count as the network.  L{SendNow} wraps a transport: while
nothing is queued it hands the bytes straight to the socket (C{send}), and
queues only what the kernel did not take, through the transport as usual,
so that order is kept; L{SendNow.whenFlushed} says when the queue has gone
to the kernel.

Only the client uses it, for its few writes (a request, a C{CONNECT}, TLS
records); a transport without a socket (a test double, say) is written to
as usual and counts as flushed at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IPullProducer
from zope.interface import directlyProvides, implementer, providedBy

__all__ = ["SendNow"]


@implementer(IPullProducer)
class SendNow:
    """
    A transport whose writes go to the kernel at once when they can.

    Everything but L{write}, L{writeSequence} and the producer methods is
    the wrapped transport's (and so are the interfaces it provides).

    @ivar sentDirectly: bytes handed to the socket by L{write} itself.
    @ivar lastSendAt: the C{monotonic} time just before the C{send()} that
        handed the kernel the latest bytes (the bytes leave during that
        call), or when the transport's buffer was found empty for a queued
        remainder; L{None} before any write.
    @ivar _socket: the transport's socket, or L{None} if it has none.
    @ivar _queued: whether bytes wait in the transport's buffer; from then
        until it empties every write goes through the transport, so that
        nothing overtakes them.
    @ivar _registering: set while this registers itself as the transport's
        producer (which calls L{resumeProducing} at once).
    @ivar _flushed: callbacks for when the queue has gone to the kernel.
    """

    sentDirectly = 0
    lastSendAt: float | None = None
    _queued = False
    _registering = False

    def __init__(self, transport: Any, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._transport = transport
        self._monotonic = monotonic
        getHandle = getattr(transport, "getHandle", None)
        handle = getHandle() if getHandle is not None else None
        self._socket = handle if callable(getattr(handle, "send", None)) else None
        self._flushed: list[Callable[[], None]] = []
        directlyProvides(self, providedBy(transport))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    @property
    def flushed(self) -> bool:
        """
        Whether everything written so far has been handed to the kernel.
        """
        return not self._queued

    def whenFlushed(self, callback: Callable[[], None]) -> None:
        """
        Call C{callback} once everything written so far has been handed to
        the kernel: now, or when the transport's buffer empties.  (Never,
        if the connection is lost first.)
        """
        if self._queued:
            self._flushed.append(callback)
        else:
            callback()

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._socket is not None and not self._queued:
            self.lastSendAt = self._monotonic()
            try:
                sent = self._socket.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                # Let the transport meet the error and report the loss.
                sent = 0
            self.sentDirectly += sent
            if sent == len(data):
                return
            data = data[sent:]
            self._queue()
        self._transport.write(data)

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def _queue(self) -> None:
        """
        Bytes are about to wait in the transport's buffer: be told (as its
        pull producer) when it has emptied.
        """
        self._queued = True
        self._registering = True
        try:
            self._transport.registerProducer(self, False)
        finally:
            self._registering = False

    def resumeProducing(self) -> None:
        """
        The transport's buffer has gone to the kernel (or, while
        registering, nothing: the transport asks once at once).
        """
        if self._registering or not self._queued:
            return
        self.lastSendAt = self._monotonic()
        self._queued = False
        self._transport.unregisterProducer()
        callbacks, self._flushed = self._flushed, []
        for callback in callbacks:
            callback()

    def stopProducing(self) -> None:
        self._flushed = []
