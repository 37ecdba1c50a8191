# -*- test-case-name: tests.test_tcp -*-
"""
What every TCP connection the proxy owns gets: no Nagle delay
(L{setNoDelay}), and writes that reach the kernel at once when nothing is
queued before them (L{writeNow}); and L{IStreamTransport}, the type of such
a connection's transport.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IConsumer, IPushProducer, ITCPTransport

__all__ = ["IStreamTransport", "setNoDelay", "writeNow"]


class IStreamTransport(ITCPTransport, IPushProducer, IConsumer):
    """
    The transport of a stream connection as the proxy's protocols use it: a
    TCP transport (write, close, abort, addresses) that is also a push
    producer (pause reading it) and a consumer (register a producer on it,
    the other side of a relay).  Twisted's TCP and TLS transports provide
    every part, as does C{StringTransport} in the tests.

    No transport declares this interface; it is for the type checker.
    Twisted types C{Protocol.transport} as an optional L{ITransport}, which
    has none of the producer or abort methods; a protocol that is only ever
    used connected says so with the class annotation C{transport:
    IStreamTransport}, and then needs no check at each use.
    """


# Transports whose buffering writeNow knows: Twisted's TCP connections.  A
# subclass may send differently (a unix socket passes descriptors with
# sendmsg; TLS encrypts): it gets the ordinary write.
_EAGER_TYPES = frozenset([tcp.Server, tcp.Client])


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
        # A socket that is already gone.
        pass


def writeNow(transport: Any, data: bytes) -> bool:
    """
    Write C{data} to C{transport}, handing it to the kernel at once when
    nothing is queued before it.

    C{transport.write} queues the bytes and asks the reactor to watch the
    socket for writability: two C{epoll_ctl} calls and a pass of the event
    loop later the bytes are sent.  When the transport's buffer is empty
    there is nothing to wait for: this sends them now, and queues only what
    the kernel did not take (which the transport then sends, pausing its
    producer as usual).  Order is kept: nothing is sent ahead of queued
    bytes.

    This reads the buffer state of Twisted's C{FileDescriptor}
    (C{dataBuffer}, C{offset}, C{_tempDataLen}, the disconnecting flags),
    for TCP transports only; C{tests/test_tcp.py} checks it against the
    installed Twisted.

    @return: whether every byte went to the kernel now.
    """
    if (
        type(transport) in _EAGER_TYPES
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnecting
        and not transport._writeDisconnected
    ):
        sent = transport.writeSomeData(data)
        if type(sent) is int:
            if sent == len(data):
                return True
            if sent:
                data = data[sent:]
        # A lost connection (an exception returned): the transport's own
        # write path finds it out and reports it.
    transport.write(data)
    return False
