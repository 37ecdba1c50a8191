# -*- test-case-name: tests.test_framing -*-
"""
HTTP/1.1 message framing (RFC 9112), sans-IO: bytes in, events out, and the
serialisation of heads.

The parsing engine is httptools (llhttp, Node.js's parser: strict and
hardened against request smuggling).  Nothing else in the project imports
httptools.  This module adds what llhttp accepts but RFC 9112 forbids or what
it cannot know:

  - only HTTP/1.0 and HTTP/1.1 are accepted (llhttp takes C{HTTP/2.0} and
    HTTP/0.9 request lines);
  - C{Transfer-Encoding} in an HTTP/1.0 request is rejected (RFC 9112 6.1);
  - an HTTP/1.1 request must carry exactly one C{Host} (RFC 9112 3.2);
  - limits on the request-target, the header section and the header count;
  - a response to HEAD ends at its head, a 2xx response to CONNECT switches
    the connection to a tunnel (the parser is told what it answers with
    L{ResponseParser.expect});
  - a close-delimited response body ends at the end of input
    (L{ResponseParser.feedEOF});
  - request methods llhttp does not know are still accepted when they are
    valid tokens (RFC 9110 9.1: a proxy forwards methods it does not know).

Events are L{RequestHead}, L{ResponseHead}, L{Body} and L{EndOfMessage}.  A
head with a status below 200 is an interim (1xx) response; the final one
follows.  Errors are L{twisted_proxy.http.errors.ProxyError}s that carry the
status to answer with: 400/414/431/505 for requests, 502 for responses.

This module must not import C{twisted.internet}.
"""

from __future__ import annotations

import re
from typing import Generic, TypeAlias, TypeVar

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserInvalidMethodError,
    HttpParserUpgrade,
    HttpRequestParser,
    HttpResponseParser,
)

from .errors import (
    BadGateway,
    BadRequest,
    HeaderFieldsTooLarge,
    ProxyError,
    URITooLong,
    VersionNotSupported,
)

__all__ = [
    "RequestHead",
    "ResponseHead",
    "Body",
    "EndOfMessage",
    "RequestParser",
    "ResponseParser",
    "RequestEvent",
    "ResponseEvent",
    "serializeRequestHead",
    "serializeResponseHead",
    "serializeFields",
    "chunkHeader",
    "encodeChunk",
    "LAST_CHUNK",
    "headerValue",
    "headerValues",
    "tokens",
]

LAST_CHUNK = b"0\r\n\r\n"

# RFC 9110 5.6.2 token.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def headerValue(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """
    The value of field C{name} (lower case), combined with C{", "} if it
    occurs more than once, or L{None}.
    """
    found = None
    for n, v in headers:
        if n.lower() == name:
            found = v if found is None else found + b", " + v
    return found


def headerValues(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """
    Every value of field C{name} (lower case), in order.
    """
    return [v for n, v in headers if n.lower() == name]


def tokens(value: bytes | None) -> list[bytes]:
    """
    The comma-separated list elements of a field value, stripped and lower
    cased (e.g. the options of C{Connection}).
    """
    if not value:
        return []
    return [t for t in (p.strip().lower() for p in value.split(b",")) if t]


class _Head:
    """
    What request and response heads share: field lookup, and comparison of
    every slot (events are values, as in h11).
    """

    __slots__: tuple[str, ...] = ()
    headers: list[tuple[bytes, bytes]]

    def get(self, name: bytes) -> bytes | None:
        """
        The value of field C{name} (lower case), combined if repeated.
        """
        return headerValue(self.headers, name)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)


class RequestHead(_Head):
    """
    A request line and header section.

    @ivar method: the method token, e.g. C{b"GET"}.
    @ivar target: the request-target as sent (absolute-, origin-,
        authority- or asterisk-form).
    @ivar version: C{b"1.1"} or C{b"1.0"}.
    @ivar headers: C{(name, value)} pairs in order, names as received.
    @ivar contentLength: the body length, or L{None} if chunked or absent.
    @ivar chunked: whether the body is chunked.
    @ivar keepAlive: whether the client lets the connection persist after
        this request (version and C{Connection}).
    """

    __slots__ = ("method", "target", "version", "headers", "contentLength", "chunked", "keepAlive")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: bytes,
        headers: list[tuple[bytes, bytes]],
        contentLength: int | None = None,
        chunked: bool = False,
        keepAlive: bool = True,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.contentLength = contentLength
        self.chunked = chunked
        self.keepAlive = keepAlive

    @property
    def hasBody(self) -> bool:
        return self.chunked or bool(self.contentLength)

    def __repr__(self) -> str:
        return "<RequestHead {!r} {!r} HTTP/{} {!r}>".format(
            self.method, self.target, self.version.decode(), self.headers
        )


class ResponseHead(_Head):
    """
    A status line and header section.

    @ivar status: the status code.
    @ivar reason: the reason phrase (may be empty).
    @ivar version: C{b"1.1"} or C{b"1.0"}.
    @ivar headers: C{(name, value)} pairs in order, names as received.
    @ivar contentLength: the body length, or L{None}.
    @ivar chunked: whether the body is chunked.
    @ivar closeDelimited: whether the body ends when the connection closes.
    @ivar noBody: whether the response has no body at all (1xx, 204, 304,
        a response to HEAD, a 2xx response to CONNECT).
    """

    __slots__ = (
        "status",
        "reason",
        "version",
        "headers",
        "contentLength",
        "chunked",
        "closeDelimited",
        "noBody",
    )

    def __init__(
        self,
        status: int,
        reason: bytes,
        version: bytes,
        headers: list[tuple[bytes, bytes]],
        contentLength: int | None = None,
        chunked: bool = False,
        closeDelimited: bool = False,
        noBody: bool = False,
    ) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.contentLength = contentLength
        self.chunked = chunked
        self.closeDelimited = closeDelimited
        self.noBody = noBody

    @property
    def interim(self) -> bool:
        return self.status < 200

    def __repr__(self) -> str:
        return "<ResponseHead HTTP/{} {} {!r} {!r}>".format(
            self.version.decode(), self.status, self.reason, self.headers
        )


class Body:
    """
    A piece of a message body (chunk framing already removed).
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Body) and other.data == self.data

    def __repr__(self) -> str:
        return "<Body {} bytes>".format(len(self.data))


class EndOfMessage:
    """
    The end of a message, with the trailer fields of a chunked body.
    """

    __slots__ = ("trailers",)

    def __init__(self, trailers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.trailers = trailers or []

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EndOfMessage) and other.trailers == self.trailers

    def __repr__(self) -> str:
        return "<EndOfMessage {!r}>".format(self.trailers)


RequestEvent: TypeAlias = RequestHead | Body | EndOfMessage
"""
What L{RequestParser.feed} returns a list of.
"""

ResponseEvent: TypeAlias = ResponseHead | Body | EndOfMessage
"""
What L{ResponseParser.feed} returns a list of.
"""

_E = TypeVar("_E", RequestEvent, ResponseEvent)


def _bodyFraming(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool, bool]:
    """
    Content-Length and Transfer-Encoding as llhttp validated them.

    @return: C{(contentLength, chunked, hasTransferEncoding)}.
    """
    length = None
    te = None
    for n, v in headers:
        ln = n.lower()
        if ln == b"content-length":
            length = int(v)
        elif ln == b"transfer-encoding":
            te = v if te is None else te + b", " + v
    if te is None:
        return length, False, False
    codings = tokens(te)
    return None, bool(codings) and codings[-1] == b"chunked", True


class _HeadCollector(Generic[_E]):
    """
    Shared state of both parsers: the header section being collected, with
    its limits.

    @ivar _inHead: a message has begun and its head is not complete.
    @ivar _headBytes: bytes fed while a head was incomplete (bounds the
        memory llhttp's callbacks accumulate for one huge field).
    @ivar _chunkedBody: the body being parsed is chunked.
    @ivar _sinceData: bytes of a chunked body fed since the last body data:
        chunk lines and trailer fields (bounds a huge trailer field the same
        way).
    """

    _events: list[_E]
    _headers: list[tuple[bytes, bytes]]
    _trailers: list[tuple[bytes, bytes]] | None
    _inHead = False
    _inMessage = False
    _headBytes = 0
    _headerBytes = 0
    _chunkedBody = False
    _sinceData = 0
    _maxHeaderBytes: int
    _maxHeaderCount: int
    _maxHeadBytes: int

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp drops the OWS before a field value but keeps the OWS after
        # it, which is not part of the value (RFC 9112 section 5).
        value = value.rstrip(b" \t")
        fields = self._headers if self._trailers is None else self._trailers
        fields.append((name, value))
        self._headerBytes += len(name) + len(value) + 4
        if len(fields) > self._maxHeaderCount or self._headerBytes > self._maxHeaderBytes:
            raise self._headTooLarge()

    def _headTooLarge(self) -> ProxyError:
        raise NotImplementedError

    def _checkHeadSize(self) -> None:
        if self._inHead and self._headBytes > self._maxHeadBytes:
            raise self._headTooLarge()
        if self._chunkedBody and self._sinceData > self._maxHeadBytes:
            raise self._headTooLarge()


class RequestParser(_HeadCollector[RequestEvent]):
    """
    Frames the requests a client sends on one connection.

    C{feed(data)} returns the events the bytes complete.  Pipelined requests
    come out in order; the caller answers them one at a time.  After a
    CONNECT request or a request asking to upgrade the protocol the parser
    stops: L{switched} is true, and the bytes after that request are in
    L{trailingData}.  If the switch does not happen (the CONNECT failed, the
    origin did not answer 101), L{resume} parses them as HTTP again.

    @ivar switched: the connection may be about to leave HTTP.
    @ivar trailingData: bytes received after the request that switched.
    """

    maxTargetLength = 8192
    maxHeaderBytes = 32768
    maxHeaderCount = 100

    switched = False
    trailingData = b""
    _tail = b""
    _bodyRemaining = 0

    def __init__(
        self,
        maxTargetLength: int | None = None,
        maxHeaderBytes: int | None = None,
        maxHeaderCount: int | None = None,
    ) -> None:
        if maxTargetLength is not None:
            self.maxTargetLength = maxTargetLength
        if maxHeaderBytes is not None:
            self.maxHeaderBytes = maxHeaderBytes
        if maxHeaderCount is not None:
            self.maxHeaderCount = maxHeaderCount
        self._maxHeaderBytes = self.maxHeaderBytes
        self._maxHeaderCount = self.maxHeaderCount
        self._maxHeadBytes = self.maxHeaderBytes + self.maxTargetLength
        self._events = []
        self._headers = []
        self._trailers = None
        self._target = b""
        self._lineBytes: bytes | None = None
        self._substituteMethod: bytes | None = None
        self._pendingMethodBytes = b""
        self._parser = HttpRequestParser(self)

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._inHead = True
        self._inMessage = True
        self._headers = []
        self._trailers = None
        self._target = b""
        self._headerBytes = 0

    def on_url(self, url: bytes) -> None:
        self._target += url
        if len(self._target) > self.maxTargetLength:
            raise URITooLong(
                "The request-target is longer than {} bytes.".format(self.maxTargetLength)
            )

    def on_headers_complete(self) -> None:
        self._inHead = False
        self._headBytes = 0
        parser = self._parser
        version = parser.get_http_version()
        if version == "1.1":
            v = b"1.1"
        elif version == "1.0":
            v = b"1.0"
        elif version == "0.9":
            raise BadRequest("HTTP/0.9 requests are not supported; send HTTP/1.1.")
        else:
            raise VersionNotSupported(
                "HTTP/{} is not supported; this proxy speaks HTTP/1.1 and 1.0.".format(version)
            )
        method = self._substituteMethod or parser.get_method()
        self._substituteMethod = None
        headers = self._headers
        # One pass over the fields: framing (as llhttp validated it) and Host.
        length = te = None
        hosts = 0
        for n, value in headers:
            n = n.lower()
            if n == b"host":
                hosts += 1
            elif n == b"content-length":
                length = int(value)
            elif n == b"transfer-encoding":
                te = value if te is None else te + b", " + value
        chunked = False
        if te is not None:
            if v == b"1.0":
                raise BadRequest("Transfer-Encoding is not allowed in an HTTP/1.0 request.")
            codings = tokens(te)
            chunked = bool(codings) and codings[-1] == b"chunked"
            length = None
        if v == b"1.1":
            if hosts != 1:
                raise BadRequest(
                    "An HTTP/1.1 request must have exactly one Host header field; "
                    "it has {}.".format(hosts)
                )
        self._events.append(
            RequestHead(
                method,
                self._target,
                v,
                headers,
                length,
                chunked,
                parser.should_keep_alive(),
            )
        )
        # Any field after the header section is a trailer field.
        self._trailers = []
        self._headerBytes = 0
        self._bodyRemaining = 0 if chunked else (length or 0)
        self._chunkedBody = chunked
        self._sinceData = 0

    def on_body(self, data: bytes) -> None:
        if self._bodyRemaining:
            self._bodyRemaining -= len(data)
        self._sinceData = 0
        self._events.append(Body(data))

    def on_message_complete(self) -> None:
        self._inHead = False
        self._inMessage = False
        self._bodyRemaining = 0
        self._chunkedBody = False
        self._headBytes = 0
        self._events.append(EndOfMessage(self._trailers))
        self._trailers = None

    def _headTooLarge(self) -> ProxyError:
        return HeaderFieldsTooLarge(
            "The request header section is larger than {} bytes or {} fields.".format(
                self.maxHeaderBytes, self.maxHeaderCount
            )
        )

    # public API

    def feed(self, data: bytes) -> list[RequestEvent]:
        """
        Parse C{data}; return the events it completes.

        @raise ProxyError: the bytes are not a well-framed request.  Its
            C{events} attribute holds the complete requests that came before
            the bad one in C{data}, to be answered before the error.
        """
        # llhttp does not say where in its input one message ended and the
        # next began, and the next may need a stand-in method
        # (_feedUnknownMethod), so it is fed pieces that never span a message
        # boundary: a message ends at the end of its declared Content-Length
        # or at a CRLF CRLF (the end of a head, or of a chunked body).
        events: list[RequestEvent] = []
        while data and not self.switched:
            piece, data = self._nextPiece(data)
            try:
                events += self._feedPiece(piece)
            except ProxyError as e:
                # The requests completed before the bad one are still
                # answered; nothing of the bad one is returned.
                last = max(
                    (i for i, event in enumerate(events) if type(event) is EndOfMessage),
                    default=-1,
                )
                e.events = events[: last + 1]
                raise
            self._tail = piece[-3:] if len(piece) >= 3 else (self._tail + piece)[-3:]
        if self.switched:
            # After a switch (CONNECT, Upgrade) the rest belongs to the tunnel.
            self.trailingData += data
        return events

    @property
    def bodyRemaining(self) -> int | None:
        """
        How many bytes of the Content-Length body being parsed are still to
        come (0 between messages), or L{None} for a chunked body, whose
        length is not known in advance.
        """
        if self._chunkedBody:
            return None
        return self._bodyRemaining

    def _nextPiece(self, data: bytes) -> tuple[bytes, bytes]:
        """
        Split C{data} after the first place the current message may end.
        """
        remaining = self._bodyRemaining
        if remaining:
            return data[:remaining], data[remaining:]
        if self._tail:
            i = (self._tail + data[:3]).find(b"\r\n\r\n")
            if i != -1:
                end = i + 4 - len(self._tail)
                return data[:end], data[end:]
        i = data.find(b"\r\n\r\n")
        if i == -1:
            return data, b""
        return data[: i + 4], data[i + 4 :]

    def _feedPiece(self, data: bytes) -> list[RequestEvent]:
        """
        Parse one piece of input (see L{feed}); return the events it
        completes.
        """
        if self._pendingMethodBytes:
            data = self._pendingMethodBytes + data
            self._pendingMethodBytes = b""
            return self._feedUnknownMethod(data)
        if not self._inMessage:
            # A request may begin here: keep its first bytes in case llhttp
            # does not know its method.
            self._lineBytes = data
        elif self._lineBytes is not None and not self._target:
            self._lineBytes += data
        else:
            self._lineBytes = None
        if self._inHead or not self._inMessage:
            self._headBytes += len(data)
        elif self._chunkedBody:
            self._sinceData += len(data)
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade as e:
            self.switched = True
            self.trailingData = data[e.args[0] :]
        except HttpParserCallbackError as e:
            self._raiseFromCallback(e)
        except HttpParserInvalidMethodError as e:
            if self._lineBytes is not None and not self._events:
                return self._feedUnknownMethod(self._lineBytes)
            raise BadRequest("The request method is not a valid token.") from e
        except HttpParserError as e:
            raise BadRequest("Malformed request: {}.".format(str(e).rstrip("."))) from e
        self._checkHeadSize()
        events = self._events
        self._events = []
        return events

    def _feedUnknownMethod(self, data: bytes) -> list[RequestEvent]:
        """
        A request method llhttp does not know: if it is a valid token, parse
        the request with a stand-in method and report the real one.
        """
        stripped = data.lstrip(b"\r\n")
        space = stripped.find(b" ")
        if space == -1:
            if len(stripped) > 64 or not _TOKEN.fullmatch(stripped or b"x"):
                raise BadRequest("The request method is not a valid token.")
            self._pendingMethodBytes = data
            return []
        method = stripped[:space]
        if not _TOKEN.fullmatch(method) or len(method) > 64:
            raise BadRequest("The request method is not a valid token.")
        self._parser = HttpRequestParser(self)
        self._substituteMethod = method
        self._inHead = self._inMessage = False
        self._headBytes = 0
        return self._feedPiece(b"OPTIONS" + stripped[space:])

    def _raiseFromCallback(self, e: Exception) -> None:
        cause = e.__context__
        if isinstance(cause, ProxyError):
            # Our own error, raised in a callback: llhttp's wrapper adds nothing.
            raise cause from None
        raise BadRequest("Malformed request: {}.".format(cause or e)) from e

    def resume(self) -> list[RequestEvent]:
        """
        The switch did not happen: parse the bytes after the switching
        request as HTTP again.
        """
        data = self.trailingData
        self.switched = False
        self.trailingData = b""
        self._parser = HttpRequestParser(self)
        self._inHead = self._inMessage = False
        self._headBytes = 0
        self._tail = b""
        self._bodyRemaining = 0
        return self.feed(data) if data else []


_NO_BODY_STATUS = (204, 304)

# RFC 9112 4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
_BAD_REASON = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _persistent(head: ResponseHead) -> bool:
    """
    Whether the connection persists after C{head}'s message, by its version
    and C{Connection} (RFC 9112 9.3).
    """
    options = tokens(head.get(b"connection"))
    if head.version == b"1.1":
        return b"close" not in options
    return b"keep-alive" in options and b"close" not in options


class _Unsolicited(Exception):
    """
    A response began after the one that was expected had ended.
    """


class ResponseParser(_HeadCollector[ResponseEvent]):
    """
    Frames the responses an origin sends on one connection.

    Call L{expect} with the request method before each request is sent: a
    response to HEAD ends at its head, and a 2xx response to CONNECT switches
    the connection (L{switched}, L{trailingData}).  A 101 response also
    switches it.  At the end of input call L{feedEOF}: it ends a
    close-delimited body, or raises if a message was cut short.

    @ivar keepAlive: after a message ends, whether the connection may carry
        another request.
    """

    maxHeaderBytes = 65536
    maxHeaderCount = 200

    switched = False
    trailingData = b""
    keepAlive = True
    # Bytes of the Content-Length body being parsed still to come (0 for
    # any other framing, and between messages).
    _bodyLeft = 0

    def __init__(
        self, maxHeaderBytes: int | None = None, maxHeaderCount: int | None = None
    ) -> None:
        if maxHeaderBytes is not None:
            self.maxHeaderBytes = maxHeaderBytes
        if maxHeaderCount is not None:
            self.maxHeaderCount = maxHeaderCount
        self._maxHeaderBytes = self.maxHeaderBytes
        self._maxHeaderCount = self.maxHeaderCount
        self._maxHeadBytes = self.maxHeaderBytes + 1024
        self._events = []
        self._headers = []
        self._trailers = None
        self._reason = b""
        self._method = b"GET"
        self._scanHead = False
        self._scanBuffer = b""
        self._closeDelimited = False
        self._done = False
        self._lastHead: ResponseHead | None = None
        self._parser = HttpResponseParser(self)

    def expect(self, method: bytes) -> None:
        """
        The next response answers a request with this method.
        """
        self._method = method
        self._scanHead = method in (b"HEAD", b"CONNECT")
        self._done = False
        if self._scanHead:
            self._scanBuffer = b""

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._done:
            # More bytes in the same input as a complete response: nobody
            # asked for them (the same as the bytes L{feed} gets after
            # the end of a response).
            raise _Unsolicited()
        self._inHead = True
        self._inMessage = True
        self._headers = []
        self._trailers = None
        self._reason = b""
        self._headerBytes = 0

    def on_status(self, reason: bytes) -> None:
        self._reason += reason
        if len(self._reason) > 1024:
            raise BadGateway(
                "The origin's status line is too long.",
                proxyStatus="http_response_header_section_size",
            )

    def on_headers_complete(self) -> None:
        self._inHead = False
        self._headBytes = 0
        parser = self._parser
        version = parser.get_http_version()
        if version == "1.1":
            v = b"1.1"
        elif version == "1.0":
            v = b"1.0"
        else:
            raise BadGateway(
                "The origin answered with HTTP/{}, which this proxy cannot relay.".format(version),
                proxyStatus="http_protocol_error",
            )
        status = parser.get_status_code()
        if status < 100:
            # llhttp takes any three digits; a status below 100 would be
            # taken for an interim response (RFC 9110 section 15).
            raise BadGateway(
                "The origin answered with status {:03d}, which is not valid.".format(status),
                proxyStatus="http_protocol_error",
            )
        if _BAD_REASON.search(self._reason):
            raise BadGateway(
                "The origin's reason phrase contains control characters.",
                proxyStatus="http_protocol_error",
            )
        headers = self._headers
        length, chunked, hasTE = _bodyFraming(headers)
        noBody = status < 200 or status in _NO_BODY_STATUS or self._method == b"HEAD"
        if self._method == b"CONNECT" and 200 <= status < 300:
            noBody = True
        closeDelimited = not noBody and not chunked and (length is None or hasTE)
        if noBody:
            length, chunked = None, False
        if closeDelimited:
            length = None
        self._closeDelimited = closeDelimited
        self._chunkedBody = chunked
        self._sinceData = 0
        # Only a Content-Length body has a length by now (no body, chunked
        # and close-delimited ones have none).
        self._bodyLeft = length or 0
        head = self._lastHead = ResponseHead(
            status, self._reason, v, headers, length, chunked, closeDelimited, noBody
        )
        self._events.append(head)
        if status < 200 and status != 101:
            self._inMessage = False
        self._trailers = []
        self._headerBytes = 0

    def on_body(self, data: bytes) -> None:
        self._sinceData = 0
        if self._bodyLeft:
            self._bodyLeft -= len(data)
        self._events.append(Body(data))

    def on_message_complete(self) -> None:
        self._inHead = False
        self._headBytes = 0
        self._chunkedBody = False
        self._bodyLeft = 0
        if not self._inMessage:
            # An interim (1xx) response: its head was the whole message.
            return
        self._inMessage = False
        self._done = True
        self.keepAlive = self._parser.should_keep_alive()
        self._events.append(EndOfMessage(self._trailers))
        self._trailers = None

    def _headTooLarge(self) -> ProxyError:
        return BadGateway(
            "The origin's response header section is larger than {} bytes or {} fields.".format(
                self.maxHeaderBytes, self.maxHeaderCount
            ),
            proxyStatus="http_response_header_section_size",
        )

    # public API

    def feed(self, data: bytes) -> list[ResponseEvent]:
        """
        Parse C{data}; return the events it completes.

        @raise ProxyError: a L{BadGateway} if the bytes are not a well-framed
            response.
        """
        if self.switched:
            self.trailingData += data
            return []
        if self._scanHead:
            self._feedScanning(data)
        elif self._done:
            # Bytes after a complete response that nobody asked for.
            if data:
                self.keepAlive = False
        elif self._bodyLeft and not self._inHead:
            self._feedCounted(data)
        else:
            self._feed(data)
        events = self._events
        self._events = []
        return events

    def _feedCounted(self, data: bytes) -> None:
        """
        Input that continues a Content-Length body whose head llhttp parsed
        in an earlier input: the body is counted here.  Its bytes go on as
        they came (a read that is all body is passed on as it is), without
        a callback and a copy per read in llhttp; at the end of the count
        the message ends, and llhttp, which still expects that body, is
        replaced by a new parser for the next response.  (A body that
        arrives with its head is parsed by llhttp: nothing to gain there.)
        """
        remaining = self._bodyLeft
        if len(data) <= remaining:
            self._bodyLeft = remaining - len(data)
            self._events.append(Body(data))
            if self._bodyLeft:
                return
            rest = b""
        else:
            self._bodyLeft = 0
            self._events.append(Body(data[:remaining]))
            rest = data[remaining:]
        head = self._lastHead
        assert head is not None  # counting starts at a head
        self._inMessage = False
        self._done = True
        self.keepAlive = _persistent(head)
        self._events.append(EndOfMessage([]))
        self._trailers = None
        self._parser = HttpResponseParser(self)
        if rest:
            # More than the response: nobody asked for it.
            self.keepAlive = False

    def _feed(self, data: bytes) -> None:
        if self._inHead or not self._inMessage:
            self._headBytes += len(data)
        elif self._chunkedBody:
            self._sinceData += len(data)
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade as e:
            self._switch(data[e.args[0] :])
        except HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _Unsolicited):
                self.keepAlive = False
                return
            if isinstance(cause, ProxyError):
                # Our own error, raised in a callback: llhttp's wrapper adds nothing.
                raise cause from None
            raise self._malformed(cause or e) from e
        except HttpParserError as e:
            raise self._malformed(e) from e
        self._checkHeadSize()

    def _malformed(self, e: object) -> ProxyError:
        self.keepAlive = False
        return BadGateway(
            "The origin's response is not valid HTTP/1.1 ({}).".format(str(e).rstrip(".")),
            proxyStatus="http_protocol_error",
        )

    def _switch(self, rest: bytes) -> None:
        self.switched = True
        self.keepAlive = False
        self.trailingData = rest

    def _feedScanning(self, data: bytes) -> None:
        """
        For a response to HEAD or CONNECT: find each head's end ourselves,
        since llhttp would go on to read a body that is not there.
        """
        buf = self._scanBuffer + data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end == -1:
                if len(buf) > self._maxHeadBytes:
                    raise self._headTooLarge()
                self._scanBuffer = buf
                return
            head, buf = buf[: end + 4], buf[end + 4 :]
            self._parser = HttpResponseParser(self)
            self._feed(head)
            if self.switched:
                # A 101: llhttp stopped at the end of the head.
                self.trailingData += buf
                self._scanHead = False
                self._scanBuffer = b""
                return
            if self._lastHead is not None and self._lastHead.status >= 200:
                break
            # An interim response; the final one follows.
        self._scanHead = False
        self._scanBuffer = b""
        status = self._lastHead.status
        if self._method == b"HEAD" or 200 <= status < 300:
            # The message ends here, whatever llhttp thinks of its framing.
            events = self._events
            if events and isinstance(events[-1], EndOfMessage):
                events.pop()
            self._inMessage = False
            self._done = True
            events.append(EndOfMessage())
            if self._method == b"CONNECT":
                self._switch(buf)
            else:
                # llhttp would have read a body, or until the close.
                self.keepAlive = _persistent(self._lastHead) and not buf
                self._parser = HttpResponseParser(self)
            return
        # A refused CONNECT: its body is framed as usual.
        if buf:
            self._feed(buf)

    def feedEOF(self) -> list[ResponseEvent]:
        """
        The connection closed.  End a close-delimited body, or raise if a
        message was cut short.

        @raise ProxyError: a L{BadGateway} with C{http_response_incomplete}.
        """
        self.keepAlive = False
        if self.switched:
            return []
        if self._inMessage and self._closeDelimited and not self._inHead:
            self._inMessage = False
            self._done = True
            events = self._events
            events.append(EndOfMessage())
            self._events = []
            return events
        # An interim (1xx) response promises a final one.
        interimOnly = not self._done and self._lastHead is not None and self._lastHead.interim
        if self._inMessage or self._inHead or self._scanBuffer or interimOnly:
            raise BadGateway(
                "The origin closed the connection before the response was complete.",
                proxyStatus="http_response_incomplete",
            )
        return []

    @property
    def inMessage(self) -> bool:
        """
        Whether a response has begun and not ended.
        """
        return self._inMessage or self._inHead or bool(self._scanBuffer)


def serializeFields(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join([n + b": " + v + b"\r\n" for n, v in headers])


def serializeRequestHead(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], version: bytes = b"1.1"
) -> bytes:
    """
    A request line and header section, ending with the empty line.
    """
    return b"".join(
        [method, b" ", target, b" HTTP/", version, b"\r\n"]
        + [n + b": " + v + b"\r\n" for n, v in headers]
        + [b"\r\n"]
    )


def serializeResponseHead(
    status: int, reason: bytes, headers: list[tuple[bytes, bytes]], version: bytes = b"1.1"
) -> bytes:
    """
    A status line and header section, ending with the empty line.
    """
    return b"".join(
        [b"HTTP/", version, b" %d " % (status,), reason, b"\r\n"]
        + [n + b": " + v + b"\r\n" for n, v in headers]
        + [b"\r\n"]
    )


def chunkHeader(size: int) -> bytes:
    """
    The line that starts a chunk of C{size} bytes.
    """
    return b"%x\r\n" % (size,)


def encodeChunk(data: bytes) -> bytes:
    """
    C{data} as one chunk (the caller must not pass an empty string: that
    would end the body).
    """
    return b"%x\r\n%s\r\n" % (len(data), data)


def lastChunk(trailers: list[tuple[bytes, bytes]]) -> bytes:
    """
    The last chunk, with trailer fields.
    """
    if not trailers:
        return LAST_CHUNK
    return b"0\r\n" + serializeFields(trailers) + b"\r\n"
