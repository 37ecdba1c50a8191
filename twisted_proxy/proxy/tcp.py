# -*- test-case-name: tests.test_integration -*-
"""
Socket options every connection the proxy owns gets.
"""

from __future__ import annotations

from typing import Any

__all__ = ["setNoDelay"]


def setNoDelay(transport: Any) -> None:
    """
    Turn off Nagle's algorithm on C{transport}, if it is a TCP transport.

    With Nagle on, a small write that follows another whose bytes are not
    yet acknowledged waits for that acknowledgement, and the peer delays it
    (~40 ms on Linux): a response head relayed as it arrives, followed by
    its body a moment later, stalls every reused connection.  A proxy
    writes what it has when it has it; it never needs the kernel to
    coalesce its writes.
    """
    setTcpNoDelay = getattr(transport, "setTcpNoDelay", None)
    if setTcpNoDelay is None:
        return
    try:
        setTcpNoDelay(True)
    except OSError:
        # A socket that is already gone, or not TCP after all (a unix
        # socket wrapped in a TCP-looking transport).
        pass
