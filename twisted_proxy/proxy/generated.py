# -*- test-case-name: tests.test_server -*-
"""
Responses the proxy makes itself: errors (L{errorResponse}), the answer to
a TRACE or OPTIONS whose C{Max-Forwards} reached 0 (L{maxForwardsResponse}),
and the C{503} for a connection over a limit.

Each function returns a L{Generated}: the status, reason, fields and body,
ready to record and to serialise in one write.
"""

from __future__ import annotations

from ..http.errors import BadRequest, ProxyError
from ..http.fields import SECRET_HEADERS
from ..http.framing import RequestHead, serializeRequestHead, serializeResponseHead

__all__ = ["Generated", "errorResponse", "maxForwards", "maxForwardsResponse"]


class Generated:
    """
    A response made by the proxy.

    @ivar status: the status code.
    @ivar reason: the reason phrase.
    @ivar headers: the header fields, as bytes.
    @ivar body: the body (empty for a response to HEAD).
    @ivar close: whether the client connection closes after it.
    """

    __slots__ = ("status", "reason", "headers", "body", "close")

    def __init__(
        self,
        status: int,
        reason: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        close: bool,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.close = close

    def bytes(self) -> bytes:
        """
        The response as sent: head and body in one piece (one write, so
        that they leave in one segment).
        """
        return (
            serializeResponseHead(self.status, self.reason.encode("ascii"), self.headers)
            + self.body
        )


def errorResponse(
    error: ProxyError,
    proxyName: str,
    request: RequestHead | None,
    close: bool,
    extraHeaders: tuple[tuple[str, str], ...] = (),
) -> Generated:
    """
    The response for C{error}: status, C{Proxy-Status} and a one-line body
    saying why (RFC 9209).

    @param request: the request answered (for HEAD and the HTTP/1.0
        keep-alive reply), or L{None} if there was no readable request.
    @param close: the connection closes after this response: say
        C{Connection: close} (the error may say so itself).
    """
    status, reason, headers, body = error.render(proxyName)
    headers.extend(extraHeaders)
    if close and not error.closeConnection:
        headers.append(("Connection", "close"))
    elif not close and request is not None and request.version == b"1.0":
        headers.append(("Connection", "keep-alive"))
    if request is not None and request.method == b"HEAD":
        body = b""
    return Generated(
        status,
        reason,
        [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers],
        body,
        close,
    )


def maxForwards(head: RequestHead) -> int | None:
    """
    The Max-Forwards of a TRACE or OPTIONS request (RFC 9110 7.6.2; other
    methods ignore it), or L{None}.

    @raise BadRequest: if it is not a non-negative integer.
    """
    if head.method not in (b"TRACE", b"OPTIONS"):
        return None
    value = head.get(b"max-forwards")
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 9:
        raise BadRequest("Max-Forwards must be a non-negative integer.")
    return int(value)


def maxForwardsResponse(head: RequestHead, pseudonym: bytes, close: bool) -> Generated:
    """
    The answer to a TRACE or OPTIONS whose Max-Forwards reached 0: this
    proxy is its final recipient (RFC 9110 7.6.2).  TRACE gets the request
    back as C{message/http}, without credentials and cookies (RFC 9110
    9.3.8); OPTIONS gets an empty 200.
    """
    headers = [(b"Via", b"1.1 " + pseudonym)]
    if head.method == b"TRACE":
        body = serializeRequestHead(
            head.method,
            head.target,
            [(n, v) for n, v in head.headers if n.lower() not in SECRET_HEADERS],
            head.version,
        )
        headers.append((b"Content-Type", b"message/http"))
    else:
        body = b""
    headers.append((b"Content-Length", b"%d" % (len(body),)))
    if close:
        headers.append((b"Connection", b"close"))
    return Generated(200, "OK", headers, body, close)
