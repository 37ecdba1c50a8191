"""
Differential tests of L{twisted_proxy.http.framing} against h11 0.16, an
independent HTTP/1.1 implementation used here as the oracle.

Hypothesis generates requests and responses within the RFC 9110/9112
grammar, pipelined sequences and mutated variants, and splits the bytes at
random positions.  The property: our parser produces exactly the messages h11
produces from the same bytes, or rejects them with a L{ProxyError}.  It
may reject what h11 accepts (it is stricter on purpose: duplicate
Content-Length, two Host fields, Transfer-Encoding in HTTP/1.0), but it must
not accept what h11 rejects, except where RFC 9112 allows it; each such case
is named in L{justifiedAcceptance}.

The examples are derandomised and bounded, so the file is deterministic and
quick.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import h11
from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.http.errors import ProxyError
from twisted_proxy.http.framing import (
    Body,
    EndOfMessage,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
    lastChunk,
    serializeRequestHead,
    serializeResponseHead,
)

BOUNDED = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# A message as compared: head fields, body, trailers (None while
# incomplete).
Message = dict[str, Any]

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# VCHAR and obs-text (RFC 9110 5.5).
VCHARS = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
# Characters of a request-target (RFC 3986 pchar, "/", "?", "%").
TARGET_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/?%"

METHODS = [
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"OPTIONS",
    b"PATCH",
    b"TRACE",
    b"PROPFIND",
    b"MKCOL",
    b"BREW",
    b"PROPFIND-X",
    b"get",
    b"X",
]
# Fields whose meaning the generator controls itself.
RESERVED = {
    b"host",
    b"content-length",
    b"transfer-encoding",
    b"connection",
    b"upgrade",
    b"keep-alive",
    b"te",
    b"trailer",
    b"expect",
}

# What a mutation may insert.
INSERTIONS = [b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b"\x00", b",", b"0", b"\x7f", b"\xff", b";"]


def lowerNames(fields: Any) -> list[tuple[bytes, bytes]]:
    """
    Fields with names lower cased and C{Transfer-Encoding} values lower
    cased (h11 normalises both).
    """
    out = []
    for n, v in fields:
        n = bytes(n).lower()
        v = bytes(v)
        if n == b"transfer-encoding":
            v = v.lower()
        out.append((n, v))
    return out


# Our side


def ourRequests(data: bytes, splits: list[int]) -> tuple[list[Message], bool]:
    """
    Feed C{data} split at C{splits}; the messages reported and whether the
    parser rejected the bytes.
    """
    parser = RequestParser()
    messages: list[Message] = []
    bounds = [0] + sorted(set(splits)) + [len(data)]
    try:
        for a, b in itertools.pairwise(bounds):
            for e in parser.feed(data[a:b]):
                addEvent(messages, e)
    except ProxyError:
        return messages, True
    return messages, False


def addEvent(messages: list[Message], e: Any) -> None:
    if isinstance(e, RequestHead):
        messages.append(
            {
                "head": (e.method, e.target, e.version, lowerNames(e.headers)),
                "body": b"",
                "trailers": None,
                "keepAlive": e.keepAlive,
                "parsed": e,
            }
        )
    elif isinstance(e, ResponseHead):
        messages.append(
            {
                "head": (e.status, e.reason, e.version, lowerNames(e.headers)),
                "body": b"",
                "trailers": [] if e.interim else None,
                "keepAlive": True,
            }
        )
    elif isinstance(e, Body):
        messages[-1]["body"] += e.data
    elif isinstance(e, EndOfMessage):
        messages[-1]["trailers"] = lowerNames(e.trailers)


def ourResponse(method: bytes, data: bytes, splits: list[int]) -> tuple[list[Message], bool]:
    parser = ResponseParser()
    parser.expect(method)
    messages: list[Message] = []
    bounds = [0] + sorted(set(splits)) + [len(data)]
    try:
        for a, b in itertools.pairwise(bounds):
            for e in parser.feed(data[a:b]):
                addEvent(messages, e)
        for e in parser.feedEOF():
            addEvent(messages, e)
    except ProxyError:
        return messages, True
    return messages, False


# h11's side


def h11Requests(data: bytes) -> tuple[list[Message], bool]:
    """
    The requests h11 reads from C{data} (answering each with an empty
    response so that it reads the next), and whether it rejected them.
    Reading stops after a request that ends the connection.
    """
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    messages: list[Message] = []
    try:
        while True:
            e = conn.next_event()
            if e is h11.NEED_DATA or e is h11.PAUSED:
                return messages, False
            if isinstance(e, h11.Request):
                messages.append(
                    {
                        "head": (
                            bytes(e.method),
                            bytes(e.target),
                            bytes(e.http_version),
                            lowerNames(e.headers.raw_items()),
                        ),
                        "body": b"",
                        "trailers": None,
                    }
                )
            elif isinstance(e, h11.Data):
                messages[-1]["body"] += bytes(e.data)
            elif isinstance(e, h11.EndOfMessage):
                messages[-1]["trailers"] = lowerNames(e.headers.raw_items())
                conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                conn.send(h11.EndOfMessage())
                if conn.their_state is not h11.DONE or conn.our_state is not h11.DONE:
                    return messages, False
                conn.start_next_cycle()
    except h11.RemoteProtocolError:
        return messages, True


def h11Response(method: bytes, data: bytes) -> tuple[list[Message], bool]:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "h")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    conn.receive_data(b"")
    messages: list[Message] = []
    try:
        while True:
            e = conn.next_event()
            if e is h11.NEED_DATA or e is h11.PAUSED or isinstance(e, h11.ConnectionClosed):
                return messages, False
            if isinstance(e, (h11.Response, h11.InformationalResponse)):
                messages.append(
                    {
                        "head": (
                            e.status_code,
                            bytes(e.reason),
                            bytes(e.http_version),
                            lowerNames(e.headers.raw_items()),
                        ),
                        "body": b"",
                        "trailers": [] if isinstance(e, h11.InformationalResponse) else None,
                    }
                )
            elif isinstance(e, h11.Data):
                messages[-1]["body"] += bytes(e.data)
            elif isinstance(e, h11.EndOfMessage):
                messages[-1]["trailers"] = lowerNames(e.headers.raw_items())
                return messages, False
    except h11.RemoteProtocolError:
        return messages, True


# Where we accept what h11 rejects, and RFC 9112 allows it.

_MULTI_SP_REQUEST_LINE = re.compile(rb"(?:^|\n)[!-~]+(?: [!-~]+)*  +[!-~]")
_JUNK_BEFORE_START_LINE = re.compile(rb"(?:^|\r\n\r\n)[\r\n]")
_ANY_TRANSFER_ENCODING = re.compile(rb"(?im)^transfer-encoding:")
_TRANSFER_ENCODING_LINE = re.compile(rb"(?im)^transfer-encoding:([^\r\n]*)\r?$")


def _codingsThenChunked(data: bytes) -> bool:
    """
    Whether C{data} has Transfer-Encoding field lines that list codings
    before a final C{chunked} (in one line or several).
    """
    codings = [
        c.strip().lower()
        for value in _TRANSFER_ENCODING_LINE.findall(data)
        for c in value.split(b",")
    ]
    return len(codings) > 1 and codings[-1] == b"chunked"


def justifiedAcceptance(data: bytes, response: bool = False) -> str | None:
    """
    Why accepting C{data} is right although h11 rejects it, or L{None}.
    """
    if response and _ANY_TRANSFER_ENCODING.search(data):
        # RFC 9112 6.3 rule 4: a response whose final transfer coding is not
        # chunked is read until the connection closes; the proxy relays it
        # close-delimited.  h11 answers 501 to any coding but "chunked".
        return "RFC 9112 section 6.3: response with other transfer codings"
    if _MULTI_SP_REQUEST_LINE.search(data):
        # RFC 9112 3: "recipients MAY instead parse on whitespace-delimited
        # word boundaries" of a request-line; llhttp does.  The proxy
        # re-serialises the line with single spaces, so nothing ambiguous
        # is forwarded.
        return "RFC 9112 section 3: request-line split on whitespace"
    if _codingsThenChunked(data):
        # RFC 9112 6.1/6.3: a Transfer-Encoding whose final coding is
        # chunked frames the body by the chunks; the other codings are the
        # origin's business.  h11 implements only "chunked" and answers 501.
        return "RFC 9112 section 6.3: final transfer coding is chunked"
    if _JUNK_BEFORE_START_LINE.search(data):
        # RFC 9112 2.2: a server SHOULD ignore empty lines (CRLF) before a
        # request-line; llhttp discards any run of CR and LF before a start
        # line (request or status), also a bare one.  The bytes are dropped,
        # never forwarded, so nothing ambiguous reaches the other side.
        return "RFC 9112 section 2.2: CR/LF before a start line ignored"
    return None


def complete(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m["trailers"] is not None]


def comparable(m: Message) -> tuple[Any, ...]:
    return (m["head"], m["body"], m["trailers"])


# Strategies

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12).map(lambda s: s.encode("ascii"))
fieldNames = tokens.filter(lambda n: n.lower() not in RESERVED)
words = st.binary(min_size=1, max_size=8).map(lambda b: bytes(VCHARS[c % len(VCHARS)] for c in b))
fieldValues = st.lists(
    st.tuples(words, st.sampled_from([b" ", b"\t", b"  ", b" \t"])), max_size=3
).map(lambda parts: b"".join(w + s for w, s in parts).rstrip(b" \t")) | st.just(b"")
fields = st.lists(st.tuples(fieldNames, fieldValues), max_size=5)
targets = st.one_of(
    st.text(TARGET_CHARS, max_size=20).map(lambda s: b"/" + s.encode("ascii")),
    st.tuples(
        st.sampled_from([b"example.com", b"h", b"127.0.0.1:8080", b"[::1]:8000"]),
        st.text(TARGET_CHARS, max_size=10),
    ).map(lambda t: b"http://" + t[0] + b"/" + t[1].encode("ascii")),
    st.just(b"*"),
)


@st.composite
def bodies(draw: Any) -> tuple[list[tuple[bytes, bytes]], bytes, list[tuple[bytes, bytes]]]:
    """
    Framing fields, the body bytes as sent, and trailers.
    """
    body = draw(st.binary(max_size=40))
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    if framing == "none" or (framing == "none" and body):
        return [], b"", []
    if framing == "length":
        return [(b"Content-Length", b"%d" % len(body))], body, []
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
    pieces = [body[a:b] for a, b in itertools.pairwise([0, *cuts, len(body)]) if body[a:b]]
    wire = b""
    for p in pieces:
        ext = draw(st.sampled_from([b"", b";a=b", b";x", b';q="v w"']))
        wire += b"%x%s\r\n%s\r\n" % (len(p), ext, p)
    trailers = draw(st.lists(st.tuples(fieldNames, fieldValues), max_size=2))
    wire += lastChunk(trailers)
    return [(b"Transfer-Encoding", b"chunked")], wire, trailers


@st.composite
def requests(draw: Any) -> bytes:
    method = draw(st.sampled_from(METHODS))
    target = draw(targets)
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.1", b"1.0"]))
    headers = draw(fields)
    framing, wire, _ = draw(bodies())
    if version == b"1.0" and framing and framing[0][0] == b"Transfer-Encoding":
        framing, wire = [(b"Content-Length", b"0")], b""
    if version == b"1.1":
        headers.insert(draw(st.integers(0, len(headers))), (b"Host", b"example.com"))
    for f in framing:
        headers.insert(draw(st.integers(0, len(headers))), f)
    if draw(st.integers(0, 9)) == 0:
        headers.append((b"Connection", b"close"))
    return serializeRequestHead(method, target, headers, version) + wire


@st.composite
def responses(draw: Any) -> tuple[bytes, bytes]:
    """
    C{(request method, response bytes)}: optional interim responses, then a
    final one framed by length, chunks or the end of input.
    """
    method = draw(st.sampled_from([b"GET", b"HEAD", b"POST"]))
    data = b""
    for status in draw(st.lists(st.sampled_from([100, 102, 103]), max_size=2)):
        data += serializeResponseHead(status, b"Info", draw(fields))
    status = draw(st.sampled_from([200, 201, 204, 206, 301, 304, 404, 500, 503]))
    reason = draw(st.sampled_from([b"OK", b"", b"Some Reason", b"r\xe9sum\xe9"]))
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    headers = draw(fields)
    framing, wire, _ = draw(bodies())
    if not framing and draw(st.booleans()):
        wire = draw(st.binary(max_size=20))  # close-delimited
    if status in (204, 304) or method == b"HEAD":
        wire = b""
        framing = [f for f in framing if f[0] == b"Content-Length"]
    for f in framing:
        headers.insert(draw(st.integers(0, len(headers))), f)
    return method, data + serializeResponseHead(status, reason, headers, version) + wire


@st.composite
def mutated(draw: Any, base: st.SearchStrategy[bytes]) -> bytes:
    """
    C{base} with a few byte flips, insertions or duplicated/conflicting
    framing fields.
    """
    data = draw(base)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "insert", "insert", "duplicate", "conflict", "te"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            pos = min(pos, len(data) - 1)
            data = data[:pos] + bytes([draw(st.integers(0, 255))]) + data[pos + 1 :]
        elif op == "insert":
            data = data[:pos] + draw(st.sampled_from(INSERTIONS)) + data[pos:]
        else:
            end = data.find(b"\r\n")
            if end == -1:
                continue
            extra = {
                "duplicate": re.search(
                    rb"(?i)\r\n((?:content-length|transfer-encoding|host):[^\r\n]*)\r\n", data
                ),
                "conflict": None,
                "te": None,
            }[op]
            if op == "duplicate" and extra is not None:
                line = extra.group(1)
            elif op == "conflict":
                line = b"Content-Length: %d" % draw(st.integers(0, 50))
            elif op == "te":
                line = b"Transfer-Encoding: " + draw(
                    st.sampled_from(
                        [b"chunked", b"gzip", b"gzip, chunked", b"chunked, gzip", b"identity"]
                    )
                )
            else:
                continue
            data = data[: end + 2] + line + b"\r\n" + data[end + 2 :]
    return data


def splitsOf(data: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, len(data)), max_size=4)


class RequestDifferentialTests(SynchronousTestCase):
    """
    L{RequestParser} agrees with h11 on requests.
    """

    def assertAgrees(self, data: bytes, splits: list[int]) -> None:
        ours, oursRejected = ourRequests(data, splits)
        theirs, theirsRejected = h11Requests(data)
        # h11 stops after a request that ends the connection; so do we.
        for i, m in enumerate(ours):
            if not m["keepAlive"]:
                if m["trailers"] is not None:
                    # Complete: a rejection came from the bytes after it.
                    oursRejected = False
                ours = ours[: i + 1]
                break
        oursDone, theirsDone = complete(ours), complete(theirs)
        context = "{!r} split at {}: ours {} {!r}, h11 {} {!r}".format(
            data,
            splits,
            "rejected" if oursRejected else "accepted",
            [comparable(m) for m in ours],
            "rejected" if theirsRejected else "accepted",
            [comparable(m) for m in theirs],
        )
        # Every message we completed, h11 completed identically.
        for i, m in enumerate(oursDone):
            if i < len(theirsDone) and comparable(m) == comparable(theirsDone[i]):
                continue
            if justifiedAcceptance(data):
                return
            self.fail("message {} differs or h11 rejected it: {}".format(i, context))
        # Every head we reported, h11 reported identically.
        for i, m in enumerate(ours):
            if i < len(theirs) and m["head"] == theirs[i]["head"]:
                continue
            if justifiedAcceptance(data):
                return
            self.fail("head {} differs or h11 rejected it: {}".format(i, context))
        if oursRejected:
            return
        if theirsRejected:
            # We are waiting for more of a message h11 has already refused:
            # we have reported nothing h11 did not (checked above).
            self.assertLessEqual(len(oursDone), len(theirsDone), context)
            return
        self.assertEqual(
            [comparable(m) for m in oursDone], [comparable(m) for m in theirsDone], context
        )
        self.assertEqual(len(ours), len(theirs), context)

    @BOUNDED
    @given(st.data())
    def test_valid(self, data: st.DataObject) -> None:
        """
        Generated pipelined requests, split anywhere, parse as h11 parses
        them; each is accepted by both.
        """
        messages = data.draw(st.lists(requests(), min_size=1, max_size=3))
        # Nothing may follow a request that ends the connection.
        for i, m in enumerate(messages):
            if b"Connection: close" in m or b" HTTP/1.0\r\n" in m:
                messages = messages[: i + 1]
                break
        wire = b"".join(messages)
        splits = data.draw(splitsOf(wire))
        ours, rejected = ourRequests(wire, splits)
        self.assertFalse(rejected, wire)
        self.assertAgrees(wire, splits)

    @BOUNDED
    @given(st.data())
    def test_mutated(self, data: st.DataObject) -> None:
        """
        Mutated requests: we agree with h11 or reject.
        """
        wire = data.draw(mutated(st.lists(requests(), min_size=1, max_size=2).map(b"".join)))
        self.assertAgrees(wire, data.draw(splitsOf(wire)))

    @BOUNDED
    @given(st.data())
    def test_reserialisedHead(self, data: st.DataObject) -> None:
        """
        Any request head we accept, serialised again, is one well-framed
        request that parses to the same head.
        """
        wire = data.draw(st.one_of(requests(), mutated(requests())))
        ours, _ = ourRequests(wire, [])
        for m in ours:
            head: RequestHead = m["parsed"]
            again = serializeRequestHead(head.method, head.target, head.headers, head.version)
            events = RequestParser().feed(again)
            self.assertEqual(events[0], head, again)
            if not head.hasBody:
                self.assertEqual(events[1:], [EndOfMessage()], again)

    def test_justifiedCases(self) -> None:
        """
        The cases L{justifiedAcceptance} names are accepted by us and
        rejected by h11 (if h11 changes, the exemption can go).
        """
        for data in [
            b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            b"\rGET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\n"
            b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ]:
            self.assertIsNotNone(justifiedAcceptance(data), data)
            self.assertEqual(ourRequests(data, [])[1], False, data)
            self.assertEqual(h11Requests(data)[1], True, data)
        self.assertIsNone(justifiedAcceptance(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
        gzipped = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz"
        self.assertIsNotNone(justifiedAcceptance(gzipped, response=True))
        self.assertEqual(ourResponse(b"GET", gzipped, [])[1], False)
        self.assertEqual(h11Response(b"GET", gzipped)[1], True)


class ResponseDifferentialTests(SynchronousTestCase):
    """
    L{ResponseParser} agrees with h11 on responses.
    """

    def assertAgrees(self, method: bytes, data: bytes, splits: list[int]) -> None:
        ours, oursRejected = ourResponse(method, data, splits)
        theirs, theirsRejected = h11Response(method, data)
        context = "{!r} {!r} split at {}: ours {} {!r}, h11 {} {!r}".format(
            method,
            data,
            splits,
            "rejected" if oursRejected else "accepted",
            [comparable(m) for m in ours],
            "rejected" if theirsRejected else "accepted",
            [comparable(m) for m in theirs],
        )
        for i, m in enumerate(ours):
            agrees = i < len(theirs) and m["head"] == theirs[i]["head"]
            if agrees and m["trailers"] is not None:
                agrees = comparable(m) == comparable(theirs[i])
            if not agrees:
                if justifiedAcceptance(data, response=True):
                    return
                self.fail("message {} differs or h11 rejected it: {}".format(i, context))
        if oursRejected:
            return
        if theirsRejected and justifiedAcceptance(data, response=True):
            return
        self.assertFalse(theirsRejected, context)
        self.assertEqual([comparable(m) for m in ours], [comparable(m) for m in theirs], context)

    @BOUNDED
    @given(st.data())
    def test_valid(self, data: st.DataObject) -> None:
        method, wire = data.draw(responses())
        splits = data.draw(splitsOf(wire))
        _, rejected = ourResponse(method, wire, splits)
        self.assertFalse(rejected, wire)
        self.assertAgrees(method, wire, splits)

    @BOUNDED
    @given(st.data())
    def test_mutated(self, data: st.DataObject) -> None:
        method, wire = data.draw(responses())
        wire = data.draw(mutated(st.just(wire)))
        self.assertAgrees(method, wire, data.draw(splitsOf(wire)))
