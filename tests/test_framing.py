"""
Tests for L{twisted_proxy.http.framing}.

Every accepted message is also fed byte at a time and split in two at every
position (as Twisted's C{test_http.py} byte-at-a-time tests do): the events,
with adjacent L{Body} pieces joined, and the parser's final state must not
depend on how the bytes arrive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.http.errors import ProxyError
from twisted_proxy.http.framing import (
    LAST_CHUNK,
    Body,
    EndOfMessage,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
    chunkHeader,
    encodeChunk,
    headerValue,
    headerValues,
    lastChunk,
    serializeFields,
    serializeRequestHead,
    serializeResponseHead,
    tokens,
)


def joinBodies(events: list[Any]) -> list[Any]:
    """
    C{events} with each run of adjacent L{Body} events joined into one.
    """
    out: list[Any] = []
    for e in events:
        if isinstance(e, Body) and out and isinstance(out[-1], Body):
            out[-1] = Body(out[-1].data + e.data)
        else:
            out.append(e)
    return out


def deliveries(data: bytes) -> list[tuple[str, list[bytes]]]:
    """
    Every way the tests deliver C{data}: whole, byte at a time, and split in
    two at each position.
    """
    ways = [("whole", [data]), ("byte at a time", [data[i : i + 1] for i in range(len(data))])]
    for i in range(1, len(data)):
        ways.append(("split at {}".format(i), [data[:i], data[i:]]))
    return ways


def parserState(parser: Any) -> dict[str, Any]:
    state = {"switched": parser.switched, "trailingData": parser.trailingData}
    if isinstance(parser, ResponseParser):
        state["keepAlive"] = parser.keepAlive
    return state


def request(data: bytes) -> list[Any]:
    """
    The events of C{data} fed whole to a new L{RequestParser}.
    """
    return RequestParser().feed(data)


def response(method: bytes, data: bytes, eof: bool = False) -> tuple[list[Any], ResponseParser]:
    parser = ResponseParser()
    parser.expect(method)
    events = parser.feed(data)
    if eof:
        events += parser.feedEOF()
    return events, parser


class FramingAssertions:
    """
    Assertions that feed a message every way L{deliveries} knows.
    """

    assertEqual: Callable[..., None]
    assertRaises: Callable[..., Any]
    fail: Callable[..., None]

    def assertParses(
        self,
        makeParser: Callable[[], Any],
        data: bytes,
        expected: list[Any],
        eof: bool = False,
        **state: Any,
    ) -> Any:
        """
        Whatever way C{data} arrives, the parser produces C{expected} (and
        ends in C{state}).  Returns the last parser used.
        """
        parser = None
        for how, pieces in deliveries(data):
            parser = makeParser()
            events: list[Any] = []
            try:
                for piece in pieces:
                    events += parser.feed(piece)
                if eof:
                    events += parser.feedEOF()
            except ProxyError as e:
                self.fail("{}: {!r} rejected: {!r}".format(how, data, e))
            self.assertEqual(joinBodies(events), expected, how)
            got = parserState(parser)
            for k, v in state.items():
                self.assertEqual(got[k], v, "{}: {}".format(how, k))
        return parser

    def assertRejects(
        self,
        makeParser: Callable[[], Any],
        data: bytes,
        status: int,
        proxyStatus: str | None = None,
        eof: bool = False,
    ) -> ProxyError:
        """
        Whatever way C{data} arrives, the parser raises a L{ProxyError} with
        C{status} (and C{proxyStatus}).
        """
        error = None
        for how, pieces in deliveries(data):

            def feedAll(parser: Any, pieces: list[bytes]) -> None:
                for piece in pieces:
                    parser.feed(piece)
                if eof:
                    parser.feedEOF()

            error = self.assertRaises(ProxyError, feedAll, makeParser(), pieces)
            self.assertEqual(error.status, status, "{}: {!r}".format(how, error))
            if proxyStatus is not None:
                self.assertEqual(error.proxyStatus, proxyStatus, "{}: {!r}".format(how, error))
        assert error is not None
        return error


def responseParser(method: bytes) -> Callable[[], ResponseParser]:
    def make() -> ResponseParser:
        p = ResponseParser()
        p.expect(method)
        return p

    return make


class RequestFramingTests(SynchronousTestCase, FramingAssertions):
    """
    L{RequestParser} frames well-formed requests.
    """

    def test_noBody(self) -> None:
        """
        A GET without framing fields has no body; names and values are kept
        as received.
        """
        self.assertParses(
            RequestParser,
            b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Mixed-Case: v\r\n\r\n",
            [
                RequestHead(
                    b"GET",
                    b"/a?b=c",
                    b"1.1",
                    [(b"Host", b"example.com"), (b"X-Mixed-Case", b"v")],
                ),
                EndOfMessage(),
            ],
            switched=False,
            trailingData=b"",
        )

    def test_contentLength(self) -> None:
        """
        A Content-Length body is delivered exactly.
        """
        self.assertParses(
            RequestParser,
            b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
            [
                RequestHead(
                    b"POST",
                    b"http://h/",
                    b"1.1",
                    [(b"Host", b"h"), (b"Content-Length", b"5")],
                    contentLength=5,
                ),
                Body(b"hello"),
                EndOfMessage(),
            ],
        )

    def test_contentLengthZero(self) -> None:
        [head, end] = request(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(head.contentLength, 0)
        self.assertFalse(head.hasBody)
        self.assertEqual(end, EndOfMessage())

    def test_chunkedWithExtensionsAndTrailers(self) -> None:
        """
        Chunk extensions are dropped, the chunk data is the body, and the
        trailer fields come with L{EndOfMessage}.
        """
        data = (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;name=value\r\nhello\r\n"
            b'6;a=1;b="x y"\r\n world\r\n'
            b"0;last\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"
        )
        self.assertParses(
            RequestParser,
            data,
            [
                RequestHead(
                    b"POST",
                    b"/",
                    b"1.1",
                    [(b"Host", b"h"), (b"Transfer-Encoding", b"chunked")],
                    chunked=True,
                ),
                Body(b"hello world"),
                EndOfMessage([(b"X-Checksum", b"abc"), (b"X-Other", b"1")]),
            ],
        )

    def test_chunkedFinalCoding(self) -> None:
        """
        Codings before the final C{chunked} are the origin's business
        (RFC 9112 6.1): the body is framed by the chunks.
        """
        [head, body, end] = request(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"2\r\nxy\r\n0\r\n\r\n"
        )
        self.assertTrue(head.chunked)
        self.assertIsNone(head.contentLength)
        self.assertEqual(body, Body(b"xy"))

    def test_http10(self) -> None:
        """
        An HTTP/1.0 request needs no Host and closes unless it asks for
        keep-alive.
        """
        self.assertParses(
            RequestParser,
            b"GET http://h/ HTTP/1.0\r\n\r\n",
            [RequestHead(b"GET", b"http://h/", b"1.0", [], keepAlive=False), EndOfMessage()],
        )
        [head, _] = request(b"GET http://h/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        self.assertTrue(head.keepAlive)

    def test_connectionClose(self) -> None:
        [head, _] = request(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        self.assertFalse(head.keepAlive)

    def test_trailingWhitespaceNotInValue(self) -> None:
        """
        The whitespace around a field value is not part of it (RFC 9112 5);
        whitespace inside it is.
        """
        self.assertParses(
            RequestParser,
            b"GET / HTTP/1.1\r\nHost:  h \r\nX: \ta \t b\t \r\n\r\n",
            [
                RequestHead(b"GET", b"/", b"1.1", [(b"Host", b"h"), (b"X", b"a \t b")]),
                EndOfMessage(),
            ],
        )

    def test_emptyValue(self) -> None:
        [head, _] = request(b"GET / HTTP/1.1\r\nHost: h\r\nX:\r\nY: \r\n\r\n")
        self.assertEqual(head.headers, [(b"Host", b"h"), (b"X", b""), (b"Y", b"")])

    def test_obsTextInValue(self) -> None:
        """
        obs-text (bytes >= 0x80) is allowed in a field value (RFC 9110 5.5).
        """
        [head, _] = request(b"GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\r\n\r\n")
        self.assertEqual(head.get(b"x"), b"caf\xc3\xa9")

    def test_leadingEmptyLines(self) -> None:
        """
        An empty line before a request line is ignored (RFC 9112 2.2).
        """
        self.assertParses(
            RequestParser,
            b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
            [RequestHead(b"GET", b"/", b"1.1", [(b"Host", b"h")]), EndOfMessage()],
        )

    def test_pipelined(self) -> None:
        """
        Pipelined requests come out in order with their bodies.
        """
        data = (
            b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
            b"POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n\r\n\r\n"
            b"PUT /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\n\r\n\r\n\r\n0\r\n\r\n"
            b"DELETE /4 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        )
        self.assertParses(
            RequestParser,
            data,
            [
                RequestHead(b"GET", b"/1", b"1.1", [(b"Host", b"h")]),
                EndOfMessage(),
                RequestHead(
                    b"POST", b"/2", b"1.1", [(b"Host", b"h"), (b"Content-Length", b"4")], 4
                ),
                Body(b"\r\n\r\n"),
                EndOfMessage(),
                RequestHead(
                    b"PUT",
                    b"/3",
                    b"1.1",
                    [(b"Host", b"h"), (b"Transfer-Encoding", b"chunked")],
                    chunked=True,
                ),
                Body(b"\r\n\r\n"),
                EndOfMessage(),
                RequestHead(
                    b"DELETE",
                    b"/4",
                    b"1.1",
                    [(b"Host", b"h"), (b"Connection", b"close")],
                    keepAlive=False,
                ),
                EndOfMessage(),
            ],
        )

    def test_unknownMethods(self) -> None:
        """
        Methods llhttp does not know are accepted when they are tokens
        (RFC 9110 9.1), also with a body and when the method arrives in
        pieces.
        """
        for method in [b"BREW", b"PROPFIND-X", b"get", b"X", b"M" * 64, b"A!#$%&'*+-.^_`|~9"]:
            self.assertParses(
                RequestParser,
                method + b" /pot HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
                [
                    RequestHead(
                        method, b"/pot", b"1.1", [(b"Host", b"h"), (b"Content-Length", b"3")], 3
                    ),
                    Body(b"abc"),
                    EndOfMessage(),
                ],
            )

    def test_unknownMethodPipelined(self) -> None:
        """
        An unknown method is accepted in a pipelined request too, whether or
        not it arrives in the same piece as the request before it.  (This
        failed with 400 when both arrived together: the stand-in method was
        only tried on the first request of a piece.)
        """
        data = (
            b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
            b"BREW /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab"
            b"PROPFIND-X /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1\r\nc\r\n0\r\n\r\n"
            b"WHEN /4 HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        self.assertParses(
            RequestParser,
            data,
            [
                RequestHead(b"GET", b"/1", b"1.1", [(b"Host", b"h")]),
                EndOfMessage(),
                RequestHead(
                    b"BREW", b"/2", b"1.1", [(b"Host", b"h"), (b"Content-Length", b"2")], 2
                ),
                Body(b"ab"),
                EndOfMessage(),
                RequestHead(
                    b"PROPFIND-X",
                    b"/3",
                    b"1.1",
                    [(b"Host", b"h"), (b"Transfer-Encoding", b"chunked")],
                    chunked=True,
                ),
                Body(b"c"),
                EndOfMessage(),
                RequestHead(b"WHEN", b"/4", b"1.1", [(b"Host", b"h")]),
                EndOfMessage(),
            ],
        )

    def test_unknownMethodIsNotConnect(self) -> None:
        """
        A method that only starts like CONNECT does not switch.
        """
        parser = self.assertParses(
            RequestParser,
            b"CONNECTX /x HTTP/1.1\r\nHost: h\r\n\r\nmore",
            [RequestHead(b"CONNECTX", b"/x", b"1.1", [(b"Host", b"h")]), EndOfMessage()],
            switched=False,
        )
        self.assertFalse(parser.switched)

    def test_connectSwitches(self) -> None:
        """
        After a CONNECT request the parser stops: the bytes after it are
        L{RequestParser.trailingData}, also those fed later.
        """
        data = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01GET /"
        parser = self.assertParses(
            RequestParser,
            data,
            [
                RequestHead(
                    b"CONNECT", b"example.com:443", b"1.1", [(b"Host", b"example.com:443")]
                ),
                EndOfMessage(),
            ],
            switched=True,
            trailingData=b"\x16\x03\x01GET /",
        )
        self.assertEqual(parser.feed(b"more"), [])
        self.assertEqual(parser.trailingData, b"\x16\x03\x01GET /more")

    def test_upgradeSwitches(self) -> None:
        self.assertParses(
            RequestParser,
            b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            b"\x81\x05hello",
            [
                RequestHead(
                    b"GET",
                    b"/ws",
                    b"1.1",
                    [(b"Host", b"h"), (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")],
                ),
                EndOfMessage(),
            ],
            switched=True,
            trailingData=b"\x81\x05hello",
        )

    def test_resumeAfterUpgradeThatDidNotHappen(self) -> None:
        """
        L{RequestParser.resume} parses the bytes after a switching request as
        HTTP, including a pipelined request with an unknown method split
        across the switch.
        """
        head = b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        rest = b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\nBREW /3 HTTP/1.1\r\nHost: h\r\n\r\n"
        expected = [
            RequestHead(b"GET", b"/2", b"1.1", [(b"Host", b"h")]),
            EndOfMessage(),
            RequestHead(b"BREW", b"/3", b"1.1", [(b"Host", b"h")]),
            EndOfMessage(),
        ]
        for split in range(len(rest) + 1):
            parser = RequestParser()
            [first, end] = parser.feed(head + rest[:split])
            assert isinstance(first, RequestHead)
            self.assertEqual(first.target, b"/ws")
            self.assertTrue(parser.switched)
            events = parser.resume()
            self.assertFalse(parser.switched, split)
            self.assertEqual(parser.trailingData, b"", split)
            events += parser.feed(rest[split:])
            self.assertEqual(events, expected, split)

    def test_resumeAfterRefusedConnect(self) -> None:
        parser = RequestParser()
        parser.feed(b"CONNECT h:25 HTTP/1.1\r\nHost: h:25\r\n\r\n")
        self.assertTrue(parser.switched)
        self.assertEqual(parser.resume(), [])
        self.assertEqual(
            parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            [RequestHead(b"GET", b"/", b"1.1", [(b"Host", b"h")]), EndOfMessage()],
        )

    def test_incomplete(self) -> None:
        """
        Nothing is reported for a head that is not complete; the body comes
        as it arrives.
        """
        parser = RequestParser()
        self.assertEqual(parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n"), [])
        events = parser.feed(b"\r\nab")
        self.assertEqual(events[1:], [Body(b"ab")])
        self.assertEqual(parser.feed(b"cd"), [Body(b"cd"), EndOfMessage()])

    def test_headAccessors(self) -> None:
        [head, _] = request(b"GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\naccept: b\r\n\r\n")
        self.assertEqual(head.get(b"accept"), b"a, b")
        self.assertIsNone(head.get(b"cookie"))
        self.assertFalse(head.hasBody)
        self.assertIn(b"GET", repr(head).encode())


class RequestRejectionTests(SynchronousTestCase, FramingAssertions):
    """
    L{RequestParser} rejects what RFC 9112 forbids or leaves ambiguous, with
    the status to answer.
    """

    def assertBadRequest(self, data: bytes, status: int = 400) -> ProxyError:
        e = self.assertRejects(RequestParser, data, status, "http_request_error")
        self.assertTrue(e.closeConnection)
        return e

    def test_contentLengthConflicts(self) -> None:
        for fields in [
            b"Content-Length: 3\r\nContent-Length: 4\r\n",
            b"Content-Length: 3\r\nContent-Length: 3\r\n",
            b"Content-Length: 3, 3\r\n",
            b"Content-Length: 3, 4\r\n",
            b"Content-Length: +3\r\n",
            b"Content-Length: -3\r\n",
            b"Content-Length: 0x3\r\n",
            b"Content-Length: 3 3\r\n",
            b"Content-Length: 99999999999999999999999\r\n",
        ]:
            self.assertBadRequest(b"POST / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\nabcd")

    def test_contentLengthAndTransferEncoding(self) -> None:
        for fields in [
            b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
        ]:
            self.assertBadRequest(b"POST / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n0\r\n\r\n")

    def test_transferEncodingInHTTP10(self) -> None:
        """
        RFC 9112 6.1: a server must treat Transfer-Encoding in an HTTP/1.0
        request as faulty.
        """
        e = self.assertBadRequest(
            b"POST http://h/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        self.assertIn("HTTP/1.0", e.detail)

    def test_transferEncodingNotChunked(self) -> None:
        """
        A request whose final coding is not chunked cannot be framed (RFC
        9112 6.3).
        """
        for te in [
            b"gzip",
            b"chunked, gzip",
            b"identity",
            b"chunked;q=1x",
            b"",
            b"chunked, chunked",
        ]:
            self.assertBadRequest(
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: " + te + b"\r\n\r\n0\r\n\r\n"
            )

    def test_badChunks(self) -> None:
        head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        for body in [
            b"zz\r\n",
            b"-1\r\n",
            b"0x3\r\nabc\r\n",
            b"3 \r\nabc\r\n",
            b" 3\r\nabc\r\n",
            b"3\nabc\r\n",
            b"3\r\nabcX\r\n",
            b"3\r\nabc\n0\r\n\r\n",
            b"fffffffffffffffffff\r\n",
            b"3\r\nabc\r\n0\r\nT : v\r\n\r\n",
        ]:
            self.assertBadRequest(head + body)

    def test_whitespaceBeforeColon(self) -> None:
        self.assertBadRequest(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n")
        self.assertBadRequest(b"GET / HTTP/1.1\r\nHost: h\r\nX\t: v\r\n\r\n")

    def test_obsFold(self) -> None:
        self.assertBadRequest(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n")
        self.assertBadRequest(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n")

    def test_bareCR(self) -> None:
        self.assertBadRequest(b"GET / HTTP/1.1\r\nHost: h\rX: a\r\n\r\n")
        self.assertBadRequest(b"GET / HTTP/1.1\rHost: h\r\n\r\n")
        self.assertBadRequest(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n")

    def test_bareLF(self) -> None:
        self.assertBadRequest(b"GET / HTTP/1.1\nHost: h\n\n")
        self.assertBadRequest(b"GET / HTTP/1.1\r\nHost: h\nX: a\r\n\r\n")
        self.assertBadRequest(b"GET / HTTP/1.1\r\nHost: h\r\n\n")

    def test_controlCharacters(self) -> None:
        for c in [b"\x00", b"\x01", b"\x1f", b"\x7f"]:
            self.assertBadRequest(b"GET / HTTP/1.1\r\nHost: h\r\nX: a" + c + b"b\r\n\r\n")
            self.assertBadRequest(b"GET / HTTP/1.1\r\nHost: h\r\nX" + c + b"Y: a\r\n\r\n")
            self.assertBadRequest(b"GET /a" + c + b"b HTTP/1.1\r\nHost: h\r\n\r\n")

    def test_invalidFieldNames(self) -> None:
        for name in [b"", b"X(Y", b"X Y", b"X/Y", b"\xc3\xa9"]:
            self.assertBadRequest(b"GET / HTTP/1.1\r\nHost: h\r\n" + name + b": v\r\n\r\n")

    def test_invalidMethods(self) -> None:
        """
        A method that is not a token is rejected, also when llhttp does not
        know it and after a pipelined request.
        """
        for method in [b"GE(T", b"G@T", b"G\x00T", b"G\tET", b"\xc3\xa9", b"M" * 65, b"{}"]:
            self.assertBadRequest(method + b" / HTTP/1.1\r\nHost: h\r\n\r\n")
            self.assertBadRequest(
                b"GET / HTTP/1.1\r\nHost: h\r\n\r\n" + method + b" / HTTP/1.1\r\nHost: h\r\n\r\n"
            )
        self.assertBadRequest(b" GET / HTTP/1.1\r\nHost: h\r\n\r\n")

    def test_http09(self) -> None:
        self.assertBadRequest(b"GET /\r\n\r\n")
        self.assertBadRequest(b"GET / HTTP/0.9\r\nHost: h\r\n\r\n")

    def test_http2(self) -> None:
        e = self.assertBadRequest(b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505)
        self.assertEqual(e.reason, "HTTP Version Not Supported")

    def test_http2Preface(self) -> None:
        """
        The HTTP/2 connection preface (prior knowledge) is refused.
        """
        e = self.assertRaises(ProxyError, request, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        self.assertIn(e.status, (400, 505))
        self.assertTrue(e.closeConnection)

    def test_malformedVersion(self) -> None:
        for line in [b"GET / http/1.1", b"GET / HTTP/1.1 ", b"GET / HTTP/11", b"GET / FTP/1.1"]:
            self.assertBadRequest(line + b"\r\nHost: h\r\n\r\n")

    def test_hostMissing(self) -> None:
        e = self.assertBadRequest(b"GET / HTTP/1.1\r\nX: y\r\n\r\n")
        self.assertIn("Host", e.detail)

    def test_hostTwice(self) -> None:
        self.assertBadRequest(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n")

    def test_garbage(self) -> None:
        self.assertBadRequest(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        self.assertBadRequest(b"SSH-2.0-OpenSSH_9.6\r\n")


class RequestLimitsTests(SynchronousTestCase, FramingAssertions):
    """
    L{RequestParser} bounds the request-target, the header section and the
    number of fields.
    """

    def test_targetTooLong(self) -> None:
        target = b"/" + b"a" * 8192
        e = self.assertRaises(
            ProxyError, request, b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        self.assertEqual(e.status, 414)
        [head, _] = request(b"GET " + target[:-1] + b" HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(len(head.target), 8192)

    def test_targetTooLongInPieces(self) -> None:
        parser = RequestParser()

        def feed() -> None:
            parser.feed(b"GET /")
            for _ in range(1000):
                parser.feed(b"a" * 100)

        self.assertEqual(self.assertRaises(ProxyError, feed).status, 414)

    def test_headerSectionTooLarge(self) -> None:
        e = self.assertRaises(
            ProxyError,
            request,
            b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 32768 + b"\r\n\r\n",
        )
        self.assertEqual(e.status, 431)
        self.assertEqual(e.proxyStatus, "http_request_error")

    def test_headerSectionTooLargeManyFields(self) -> None:
        field = b"X-Field: " + b"v" * 1000 + b"\r\n"
        e = self.assertRaises(
            ProxyError, request, b"GET / HTTP/1.1\r\nHost: h\r\n" + field * 40 + b"\r\n"
        )
        self.assertEqual(e.status, 431)

    def test_hugeValueInSmallPieces(self) -> None:
        """
        One endless field value arriving in small pieces is refused once the
        head passes its limit: the parser does not wait for the field to end.
        """
        parser = RequestParser()
        fed = 0
        limit = RequestParser.maxHeaderBytes + RequestParser.maxTargetLength
        with self.assertRaises(ProxyError) as cm:
            parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX: ")
            while fed < 10 * limit:
                parser.feed(b"a" * 64)
                fed += 64
        self.assertEqual(cm.exception.status, 431)
        self.assertLessEqual(fed, limit + 64)

    def test_hugeTrailerInSmallPieces(self) -> None:
        """
        The same for a trailer field, which llhttp also buffers whole.  (It
        used to be buffered without bound.)
        """
        parser = RequestParser()
        parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: ")
        fed = 0
        with self.assertRaises(ProxyError) as cm:
            while fed < 200000:
                parser.feed(b"a" * 64)
                fed += 64
        self.assertEqual(cm.exception.status, 431)
        self.assertLessEqual(fed, RequestParser.maxHeaderBytes + RequestParser.maxTargetLength + 64)

    def test_manySmallChunksAreNotLimited(self) -> None:
        """
        The bound on chunk lines does not limit a body of many small chunks
        with long extensions.
        """
        parser = RequestParser()
        parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        total = 0
        for _ in range(2000):
            for e in parser.feed(b"1;ext=" + b"e" * 100 + b"\r\nx\r\n"):
                assert isinstance(e, Body)
                total += len(e.data)
        self.assertEqual(total, 2000)

    def test_tooManyFields(self) -> None:
        head = b"GET / HTTP/1.1\r\nHost: h\r\n"
        [ok, _] = request(head + b"X: 1\r\n" * 99 + b"\r\n")
        self.assertEqual(len(ok.headers), 100)
        e = self.assertRaises(ProxyError, request, head + b"X: 1\r\n" * 100 + b"\r\n")
        self.assertEqual(e.status, 431)

    def test_tooManyTrailers(self) -> None:
        data = (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
            + b"T: 1\r\n" * 101
            + b"\r\n"
        )
        self.assertEqual(self.assertRaises(ProxyError, request, data).status, 431)

    def test_configuredLimits(self) -> None:
        parser = RequestParser(maxTargetLength=10, maxHeaderBytes=100, maxHeaderCount=2)
        self.assertEqual(
            self.assertRaises(ProxyError, parser.feed, b"GET /0123456789 HTTP/1.1\r\n").status,
            414,
        )
        parser = RequestParser(maxTargetLength=10, maxHeaderBytes=100, maxHeaderCount=2)
        self.assertEqual(
            self.assertRaises(
                ProxyError, parser.feed, b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n"
            ).status,
            431,
        )
        parser = RequestParser(maxTargetLength=10, maxHeaderBytes=100, maxHeaderCount=2)
        self.assertEqual(
            self.assertRaises(
                ProxyError, parser.feed, b"GET / HTTP/1.1\r\nHost: h\r\nA: " + b"a" * 100 + b"\r\n"
            ).status,
            431,
        )

    def test_bodyIsNotLimited(self) -> None:
        """
        The limits are on the head: a large body streams through.
        """
        parser = RequestParser()
        parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n")
        total = 0
        for _ in range(100):
            for e in parser.feed(b"x" * 10000):
                if isinstance(e, Body):
                    total += len(e.data)
        self.assertEqual(total, 1000000)


class ResponseFramingTests(SynchronousTestCase, FramingAssertions):
    """
    L{ResponseParser} frames well-formed responses, told what they answer.
    """

    def test_contentLength(self) -> None:
        self.assertParses(
            responseParser(b"GET"),
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello",
            [
                ResponseHead(200, b"OK", b"1.1", [(b"Content-Length", b"5"), (b"Server", b"x")], 5),
                Body(b"hello"),
                EndOfMessage(),
            ],
            keepAlive=True,
            switched=False,
        )

    def test_contentLengthBodyCounted(self) -> None:
        """
        A Content-Length body is counted by the parser, not by llhttp: a
        read that is all body is passed on as it came (the same bytes
        object, no copy), and the message ends at the count, with the
        connection persistent as its head says.
        """
        parser = ResponseParser()
        parser.expect(b"GET")
        [head] = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        assert isinstance(head, ResponseHead)
        self.assertEqual(head.contentLength, 10)
        piece = b"abcdef"
        [body] = parser.feed(piece)
        assert isinstance(body, Body)
        self.assertIs(body.data, piece)
        self.assertTrue(parser.inMessage)
        self.assertEqual(parser.feed(b"ghij"), [Body(b"ghij"), EndOfMessage()])
        self.assertFalse(parser.inMessage)
        self.assertTrue(parser.keepAlive)
        # The next response on the connection is parsed afresh.
        parser.expect(b"GET")
        self.assertEqual(
            parser.feed(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            [
                ResponseHead(200, b"OK", b"1.0", [(b"Content-Length", b"2")], 2),
                Body(b"ok"),
                EndOfMessage(),
            ],
        )
        # HTTP/1.0 without keep-alive: the connection closes after it.
        self.assertFalse(parser.keepAlive)

    def test_countedBodyThenUnaskedBytes(self) -> None:
        """
        Bytes after a counted body, in the same read, were not asked for:
        they are dropped and the connection is not reused.
        """
        self.assertParses(
            responseParser(b"GET"),
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n",
            [
                ResponseHead(200, b"OK", b"1.1", [(b"Content-Length", b"2")], 2),
                Body(b"ok"),
                EndOfMessage(),
            ],
            keepAlive=False,
        )

    def test_countedBodyCutShort(self) -> None:
        """
        The connection closing before the counted body is complete is an
        incomplete response.
        """
        self.assertRejects(
            responseParser(b"GET"),
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            502,
            "http_response_incomplete",
            eof=True,
        )

    def test_countedAfterInterim(self) -> None:
        """
        A final response after an interim one in the same read is counted
        too; Connection: close says the connection ends after it.
        """
        self.assertParses(
            responseParser(b"POST"),
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\nConnection: close\r\n\r\nnew",
            [
                ResponseHead(100, b"Continue", b"1.1", [], noBody=True),
                ResponseHead(
                    201,
                    b"Created",
                    b"1.1",
                    [(b"Content-Length", b"3"), (b"Connection", b"close")],
                    3,
                ),
                Body(b"new"),
                EndOfMessage(),
            ],
            keepAlive=False,
        )

    def test_emptyReason(self) -> None:
        self.assertParses(
            responseParser(b"GET"),
            b"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n",
            [ResponseHead(404, b"", b"1.1", [(b"Content-Length", b"0")], 0), EndOfMessage()],
        )
        [head, _], _ = response(b"GET", b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual((head.status, head.reason), (404, b""))

    def test_chunkedWithExtensionsAndTrailers(self) -> None:
        self.assertParses(
            responseParser(b"GET"),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nExpires: never\r\n\r\n",
            [
                ResponseHead(
                    200, b"OK", b"1.1", [(b"Transfer-Encoding", b"chunked")], chunked=True
                ),
                Body(b"abcde"),
                EndOfMessage([(b"Expires", b"never")]),
            ],
            keepAlive=True,
        )

    def test_closeDelimited(self) -> None:
        """
        Without framing fields the body ends when the connection closes.
        """
        self.assertParses(
            responseParser(b"GET"),
            b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nall of it",
            [
                ResponseHead(200, b"OK", b"1.1", [(b"Server", b"x")], closeDelimited=True),
                Body(b"all of it"),
                EndOfMessage(),
            ],
            eof=True,
            keepAlive=False,
        )

    def test_closeDelimitedEmpty(self) -> None:
        events, parser = response(b"GET", b"HTTP/1.0 200 OK\r\n\r\n", eof=True)
        self.assertEqual(
            events,
            [ResponseHead(200, b"OK", b"1.0", [], closeDelimited=True), EndOfMessage()],
        )

    def test_closeDelimitedOtherCoding(self) -> None:
        """
        A response whose final coding is not chunked is close-delimited (RFC
        9112 6.3 rule 4).
        """
        events, parser = response(
            b"GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz", eof=True
        )
        self.assertTrue(events[0].closeDelimited)
        self.assertIsNone(events[0].contentLength)
        self.assertEqual(joinBodies(events[1:]), [Body(b"zz"), EndOfMessage()])
        self.assertFalse(parser.keepAlive)

    def test_headEndsAtHead(self) -> None:
        """
        A response to HEAD ends at its head whatever its framing fields say,
        and the connection stays usable.
        """
        for fields in [
            [(b"Content-Length", b"1000")],
            [(b"Transfer-Encoding", b"chunked")],
            [],
        ]:
            data = serializeResponseHead(200, b"OK", fields)
            self.assertParses(
                responseParser(b"HEAD"),
                data,
                [ResponseHead(200, b"OK", b"1.1", fields, noBody=True), EndOfMessage()],
                keepAlive=True,
                switched=False,
            )

    def test_headResponseThenNext(self) -> None:
        """
        After a HEAD response the parser frames the next response normally.
        """
        parser = ResponseParser()
        parser.expect(b"HEAD")
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")
        self.assertTrue(parser.keepAlive)
        self.assertFalse(parser.inMessage)
        parser.expect(b"GET")
        self.assertEqual(
            joinBodies(parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")),
            [
                ResponseHead(200, b"OK", b"1.1", [(b"Content-Length", b"3")], 3),
                Body(b"abc"),
                EndOfMessage(),
            ],
        )

    def test_headResponseWithBytesAfter(self) -> None:
        """
        Bytes after a HEAD response's head (a body the origin should not have
        sent) make the connection unusable.
        """
        events, parser = response(b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
        self.assertEqual(len(events), 2)
        self.assertFalse(parser.keepAlive)

    def test_interimResponses(self) -> None:
        """
        1xx responses (100, 103) come before the final one, for GET and HEAD.
        """
        interim = (
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        )
        heads = [
            ResponseHead(100, b"Continue", b"1.1", [], noBody=True),
            ResponseHead(
                103, b"Early Hints", b"1.1", [(b"Link", b"</s.css>; rel=preload")], noBody=True
            ),
        ]
        self.assertTrue(heads[0].interim)
        self.assertParses(
            responseParser(b"POST"),
            interim + b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
            heads
            + [
                ResponseHead(201, b"Created", b"1.1", [(b"Content-Length", b"2")], 2),
                Body(b"ok"),
                EndOfMessage(),
            ],
            keepAlive=True,
        )
        self.assertParses(
            responseParser(b"HEAD"),
            interim + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            heads
            + [
                ResponseHead(200, b"OK", b"1.1", [(b"Content-Length", b"2")], noBody=True),
                EndOfMessage(),
            ],
            keepAlive=True,
        )

    def test_interimOnly(self) -> None:
        events, parser = response(b"GET", b"HTTP/1.1 100 Continue\r\n\r\n")
        self.assertEqual(events, [ResponseHead(100, b"Continue", b"1.1", [], noBody=True)])
        self.assertRaises(ProxyError, parser.feedEOF)

    def test_noContentAndNotModified(self) -> None:
        """
        204 and 304 have no body even with a Content-Length.
        """
        for status, reason in [(204, b"No Content"), (304, b"Not Modified")]:
            self.assertParses(
                responseParser(b"GET"),
                b"HTTP/1.1 %d %s\r\nContent-Length: 5\r\n\r\n" % (status, reason),
                [
                    ResponseHead(status, reason, b"1.1", [(b"Content-Length", b"5")], noBody=True),
                    EndOfMessage(),
                ],
                keepAlive=True,
            )

    def test_switchingProtocols(self) -> None:
        """
        A 101 switches the connection: what follows is L{trailingData}.
        """
        parser = self.assertParses(
            responseParser(b"GET"),
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            b"\x81\x02hi",
            [
                ResponseHead(
                    101,
                    b"Switching Protocols",
                    b"1.1",
                    [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")],
                    noBody=True,
                ),
                EndOfMessage(),
            ],
            switched=True,
            trailingData=b"\x81\x02hi",
            keepAlive=False,
        )
        self.assertEqual(parser.feed(b"!"), [])
        self.assertEqual(parser.trailingData, b"\x81\x02hi!")
        self.assertEqual(parser.feedEOF(), [])

    def test_connectEstablished(self) -> None:
        """
        A 2xx to CONNECT switches at its head, whatever its framing fields
        say; interim responses before it are reported.
        """
        for fields in [[], [(b"Content-Length", b"5")], [(b"Transfer-Encoding", b"chunked")]]:
            head = serializeResponseHead(200, b"Connection established", fields)
            self.assertParses(
                responseParser(b"CONNECT"),
                b"HTTP/1.1 100 Continue\r\n\r\n" + head + b"\x16\x03\x03tls",
                [
                    ResponseHead(100, b"Continue", b"1.1", [], noBody=True),
                    ResponseHead(200, b"Connection established", b"1.1", fields, noBody=True),
                    EndOfMessage(),
                ],
                switched=True,
                trailingData=b"\x16\x03\x03tls",
                keepAlive=False,
            )

    def test_connectRefused(self) -> None:
        """
        A refused CONNECT has an ordinary body and does not switch.
        """
        self.assertParses(
            responseParser(b"CONNECT"),
            b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 5\r\n\r\nnope!",
            [
                ResponseHead(
                    407,
                    b"Proxy Authentication Required",
                    b"1.1",
                    [(b"Content-Length", b"5")],
                    5,
                ),
                Body(b"nope!"),
                EndOfMessage(),
            ],
            switched=False,
            keepAlive=True,
        )
        self.assertParses(
            responseParser(b"CONNECT"),
            b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nno!\r\n0\r\n\r\n",
            [
                ResponseHead(
                    403, b"Forbidden", b"1.1", [(b"Transfer-Encoding", b"chunked")], chunked=True
                ),
                Body(b"no!"),
                EndOfMessage(),
            ],
            switched=False,
        )
        self.assertParses(
            responseParser(b"CONNECT"),
            b"HTTP/1.1 502 Bad Gateway\r\n\r\nclosed",
            [
                ResponseHead(502, b"Bad Gateway", b"1.1", [], closeDelimited=True),
                Body(b"closed"),
                EndOfMessage(),
            ],
            eof=True,
            switched=False,
            keepAlive=False,
        )

    def test_keepAlive(self) -> None:
        """
        L{ResponseParser.keepAlive} after a response: C{Connection: close},
        HTTP/1.0 without keep-alive and close-delimited bodies end the
        connection.
        """
        cases = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", False, True),
            (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", False, False),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", False, False),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
                False,
                True,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\nx", True, False),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", False, True),
        ]
        for data, eof, keepAlive in cases:
            self.assertParses(
                responseParser(b"GET"), data, self._any(data, eof), eof=eof, keepAlive=keepAlive
            )

    def _any(self, data: bytes, eof: bool) -> list[Any]:
        events, _ = response(b"GET", data, eof)
        self.assertIsInstance(events[-1], EndOfMessage)
        return joinBodies(events)

    def test_unsolicitedBytes(self) -> None:
        """
        Bytes after a complete response, even a whole second response in the
        same piece, are not reported and make the connection unusable.  (A
        second response in the same piece used to be reported as an answer
        to nobody, with C{keepAlive} still true.)
        """
        data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n"
        self.assertParses(
            responseParser(b"GET"),
            data,
            [
                ResponseHead(200, b"OK", b"1.1", [(b"Content-Length", b"2")], 2),
                Body(b"ok"),
                EndOfMessage(),
            ],
            keepAlive=False,
        )

    def test_multipleResponses(self) -> None:
        """
        One parser frames successive responses, each announced by
        L{ResponseParser.expect}.
        """
        parser = ResponseParser()
        for method, data, n in [
            (b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na", 3),
            (b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", 2),
            (b"POST", b"HTTP/1.1 204 No Content\r\n\r\n", 2),
            (
                b"GET",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n",
                3,
            ),
        ]:
            parser.expect(method)
            self.assertFalse(parser.inMessage)
            events = parser.feed(data)
            self.assertEqual(len(events), n, method)
            self.assertTrue(parser.keepAlive)
        self.assertEqual(parser.feedEOF(), [])

    def test_inMessage(self) -> None:
        parser = ResponseParser()
        parser.expect(b"GET")
        parser.feed(b"HTTP/1.1 200 OK\r\n")
        self.assertTrue(parser.inMessage)
        parser.feed(b"Content-Length: 1\r\n\r\n")
        self.assertTrue(parser.inMessage)
        parser.feed(b"x")
        self.assertFalse(parser.inMessage)

    def test_trailingWhitespaceNotInValue(self) -> None:
        [head, _], _ = response(b"GET", b"HTTP/1.1 200 OK\r\nX: a \t\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(head.headers[0], (b"X", b"a"))


class ResponseRejectionTests(SynchronousTestCase, FramingAssertions):
    """
    L{ResponseParser} answers a response it cannot relay with a 502 that
    says why (RFC 9209).
    """

    def assertBadGateway(
        self, method: bytes, data: bytes, proxyStatus: str, eof: bool = False
    ) -> ProxyError:
        return self.assertRejects(responseParser(method), data, 502, proxyStatus, eof=eof)

    def test_notHTTP(self) -> None:
        """
        An SSH banner (or anything else that is not a status line) is a
        protocol error.
        """
        self.assertBadGateway(b"GET", b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3\r\n", "http_protocol_error")
        self.assertBadGateway(b"HEAD", b"SSH-2.0-OpenSSH_9.6p1\r\n\r\n", "http_protocol_error")
        self.assertBadGateway(b"CONNECT", b"220 smtp ESMTP\r\n\r\n", "http_protocol_error")

    def test_badStatusLine(self) -> None:
        for line in [
            b"HTTP/1.1 20 OK",
            b"HTTP/1.1 2000 OK",
            b"HTTP/1.1 abc OK",
            b"HTTP/1.1 099 Low",
            b"HTTP/1.1 000 Zero",
            b"HTTP/2.0 200 OK",
            b"HTTP/1.1 200 O\x00K",
        ]:
            self.assertBadGateway(
                b"GET", line + b"\r\nContent-Length: 0\r\n\r\n", "http_protocol_error"
            )

    def test_badFraming(self) -> None:
        for fields in [
            b"Content-Length: 1\r\nContent-Length: 2\r\n",
            b"Content-Length: 1\r\nContent-Length: 1\r\n",
            b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n",
            b"Content-Length: x\r\n",
            b"Host : h\r\n",
            b"X: a\r\n b\r\n",
            b"X: a\rb\r\n",
        ]:
            self.assertBadGateway(
                b"GET", b"HTTP/1.1 200 OK\r\n" + fields + b"\r\nxx", "http_protocol_error"
            )
        self.assertBadGateway(
            b"GET",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
            "http_protocol_error",
        )

    def test_headTooLarge(self) -> None:
        """
        A head over 64 KiB is refused, in one piece or in two.  (Too large
        to feed split at every position.)
        """
        data = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 65536 + b"\r\n\r\n"
        for method in [b"GET", b"HEAD", b"CONNECT"]:
            for split in [len(data), 1, 30000, len(data) - 2]:

                def feed(parser: ResponseParser, split: int) -> None:
                    parser.feed(data[:split])
                    parser.feed(data[split:])

                e = self.assertRaises(ProxyError, feed, responseParser(method)(), split)
                self.assertEqual(
                    (e.status, e.proxyStatus),
                    (502, "http_response_header_section_size"),
                    (method, split),
                )

    def test_hugeTrailerInPieces(self) -> None:
        """
        A trailer field that never ends is refused once it passes the head
        limit, not buffered.  (It used to be buffered without bound: only a
        head was counted.)
        """
        parser = ResponseParser()
        parser.expect(b"GET")
        parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nT: ")
        fed = 0
        with self.assertRaises(ProxyError) as cm:
            while fed < 1000000:
                parser.feed(b"a" * 100)
                fed += 100
        self.assertEqual(cm.exception.proxyStatus, "http_response_header_section_size")
        self.assertLessEqual(fed, 70000)

    def test_headTooLargeInPieces(self) -> None:
        for method in [b"GET", b"HEAD"]:
            parser = ResponseParser()
            parser.expect(method)
            fed = 0
            with self.assertRaises(ProxyError) as cm:
                parser.feed(b"HTTP/1.1 200 OK\r\nX: ")
                while fed < 1000000:
                    parser.feed(b"a" * 100)
                    fed += 100
            self.assertEqual(cm.exception.proxyStatus, "http_response_header_section_size")
            self.assertLessEqual(fed, 70000)

    def test_tooManyFields(self) -> None:
        self.assertEqual(
            self.assertRaises(
                ProxyError,
                response,
                b"GET",
                b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 201 + b"\r\n",
            ).proxyStatus,
            "http_response_header_section_size",
        )

    def test_incompleteBody(self) -> None:
        """
        The end of input in the middle of a body is an incomplete response.
        """
        for data in [
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n",
        ]:
            self.assertBadGateway(b"GET", data, "http_response_incomplete", eof=True)

    def test_incompleteHead(self) -> None:
        for method in [b"GET", b"HEAD", b"CONNECT"]:
            self.assertBadGateway(
                method,
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n",
                "http_response_incomplete",
                eof=True,
            )

    def test_noResponse(self) -> None:
        """
        The end of input before any response is not an error of the parser
        (the caller knows whether it was waiting).
        """
        parser = ResponseParser()
        parser.expect(b"GET")
        self.assertEqual(parser.feedEOF(), [])
        self.assertFalse(parser.keepAlive)


class SerialisationTests(SynchronousTestCase):
    """
    Serialised heads and chunks parse back to what was serialised.
    """

    def test_requestHeadRoundTrip(self) -> None:
        for method, target, headers, version in [
            (b"GET", b"/", [(b"Host", b"h")], b"1.1"),
            (
                b"POST",
                b"http://h:8080/a?b#",
                [(b"Host", b"h:8080"), (b"Content-Length", b"0")],
                b"1.1",
            ),
            (b"BREW", b"/pot", [(b"Host", b"h"), (b"X", b"")], b"1.1"),
            (b"OPTIONS", b"*", [(b"Host", b"h")], b"1.1"),
            (b"GET", b"http://h/", [], b"1.0"),
        ]:
            data = serializeRequestHead(method, target, headers, version)
            parsed = request(data)
            self.assertEqual(
                parsed,
                [
                    RequestHead(
                        method,
                        target,
                        version,
                        headers,
                        0 if headerValue(headers, b"content-length") is not None else None,
                        keepAlive=version == b"1.1",
                    ),
                    EndOfMessage(),
                ],
                data,
            )

    def test_requestHeadBytes(self) -> None:
        self.assertEqual(
            serializeRequestHead(b"GET", b"/", [(b"Host", b"h"), (b"A", b"b")]),
            b"GET / HTTP/1.1\r\nHost: h\r\nA: b\r\n\r\n",
        )

    def test_responseHeadRoundTrip(self) -> None:
        for status, reason, headers, version in [
            (200, b"OK", [(b"Content-Length", b"0")], b"1.1"),
            (404, b"Not Found", [(b"Content-Length", b"0"), (b"X", b"y")], b"1.0"),
            (599, b"", [(b"Content-Length", b"0")], b"1.1"),
        ]:
            data = serializeResponseHead(status, reason, headers, version)
            self.assertTrue(data.startswith(b"HTTP/" + version + b" %d " % (status,)))
            events, _ = response(b"GET", data)
            self.assertEqual(
                events, [ResponseHead(status, reason, version, headers, 0), EndOfMessage()]
            )

    def test_chunkedBodyRoundTrip(self) -> None:
        head = serializeRequestHead(
            b"POST", b"/", [(b"Host", b"h"), (b"Transfer-Encoding", b"chunked")]
        )
        pieces = [b"a", b"\r\n", b"x" * 300, b"0"]
        trailers = [(b"X-Sum", b"1"), (b"Y", b"")]
        data = head + b"".join(encodeChunk(p) for p in pieces) + lastChunk(trailers)
        events = joinBodies(request(data))
        self.assertEqual(events[1:], [Body(b"".join(pieces)), EndOfMessage(trailers)])
        self.assertEqual(
            joinBodies(request(head + chunkHeader(3) + b"abc\r\n" + LAST_CHUNK))[1:],
            [Body(b"abc"), EndOfMessage()],
        )

    def test_chunkBytes(self) -> None:
        self.assertEqual(chunkHeader(255), b"ff\r\n")
        self.assertEqual(encodeChunk(b"x" * 16), b"10\r\n" + b"x" * 16 + b"\r\n")
        self.assertEqual(lastChunk([]), b"0\r\n\r\n")
        self.assertEqual(lastChunk([(b"A", b"b")]), b"0\r\nA: b\r\n\r\n")
        self.assertEqual(serializeFields([(b"A", b"b"), (b"C", b"d")]), b"A: b\r\nC: d\r\n")

    def test_fieldHelpers(self) -> None:
        headers = [(b"Connection", b"close, X-A"), (b"X", b"1"), (b"connection", b" Upgrade ,")]
        self.assertEqual(headerValue(headers, b"connection"), b"close, X-A,  Upgrade ,")
        self.assertEqual(headerValues(headers, b"connection"), [b"close, X-A", b" Upgrade ,"])
        self.assertIsNone(headerValue(headers, b"y"))
        self.assertEqual(
            tokens(headerValue(headers, b"connection")), [b"close", b"x-a", b"upgrade"]
        )
        self.assertEqual(tokens(None), [])
        self.assertEqual(tokens(b" , ,"), [])
