# -*- test-case-name: tests.test_history -*-
"""
The transaction record: what happened in one transaction, and its format.

The server fills in a L{TransactionRecord} while a transaction runs (a plain
request, a CONNECT tunnel, a 101 upgrade, or a request the proxy refused),
marks each phase as it happens, and hands the record to
L{twisted_proxy.records.emit.emitTransaction} when the transaction is over.
That emits one C{twisted.logger} event whose C{"transaction"} field is the
JSON-ready dict described below (L{TransactionRecord.asDict}); the observers
of L{twisted_proxy.records.logfiles} write it to the history file (JSON
Lines) and the access log (L{twisted_proxy.records.accesslog}).

Pure: no I/O, nothing from C{twisted.internet}.

Phases and clocks
=================

Each phase is marked on a monotonic clock (every duration comes from it: a
wall clock that steps during a transaction does not distort them).  The
wall-clock timestamps (rendered in UTC, ISO 8601, to the microsecond) are
the connection's acceptance on the wall clock plus the monotonic time since:
one clock read per phase, and timestamps that always agree with the
durations.  The phases, in order::

  accepted          the client connection was accepted (given to __init__)
  requestHead       the request head was received and parsed
  connectStart      a new upstream connection was asked of the kernel
                    (its connect() call, which sends the SYN; not marked
                    for a connection taken from the pool)
  upstreamReady     an upstream connection is ready (new or from the pool)
  requestSent       the request (head and body) was fully sent upstream
  responseHead      the response head was received
  responseComplete  the response was completely sent to the client
                    (for a tunnel: the tunnel closed)
  end               responseComplete if it was marked; otherwise the moment
                    the record was finished (an abort, a refusal, an error)

Durations, in milliseconds (monotonic, rounded to the microsecond; C{null}
when a phase they need was not marked)::

  upstreamConnect   connectStart -> upstreamReady: connecting (for a
                    reused connection, requestHead -> upstreamReady: the
                    time to take it from the pool)
  send              upstreamReady -> requestSent
  wait              requestSent -> responseHead  (time to first byte, TTFB)
  receive           responseHead -> responseComplete
  total             requestHead -> end (accepted -> end when no request head
                    was received)

The record (C{recordVersion} 1)
===============================

Every key is always present; values that are unknown are C{null}.  Keys, in
the order they are written::

  recordVersion       1; incremented on an incompatible change
  connectionId        the server's id for the client connection (string)
  sequence            the transaction's number on that connection (int)
  kind                "http", "tunnel" (CONNECT), "upgrade" (101)
                      or "refused" (answered by the proxy itself)
  clientHost          client IP address (string)
  clientPort          client port (int)
  user                authenticated proxy user, or null
  method              request method, e.g. "GET"
  target              request target as received (absolute-form, or
                      authority-form for CONNECT)
  requestVersion      e.g. "HTTP/1.1"
  status              response status sent to the client (int)
  reason              its reason phrase
  responseVersion     e.g. "HTTP/1.1"
  destHost            destination host name from the target
  destPort            destination port (int)
  peerHost            the IP address actually connected to
  peerPort            the port actually connected to
  connectionReused    true if the upstream connection came from the pool
  bytesFromClient     octets received from the client (head and body)
  bytesToUpstream     octets sent to the upstream
  bytesFromUpstream   octets received from the upstream
  bytesToClient       octets sent to the client (head and body)
  requestHeadSize     octets of the request head as serialised: request
                      line, Name: value CRLF per field, CRLF (null when
                      no request line was received)
  responseHeadSize    octets of the response head, likewise (null when no
                      status was sent)
  cacheStatus         the cache's verdict ("hit", "miss",
                      "revalidated", "refreshed", "stale",
                      "bypass") or null when the cache was not asked
  proxyError          RFC 9209 error type, e.g. "dns_error"
  errorDetail         one line of text about the error
  aborted             true if the transaction was cut short (the client
                      went away, or the upstream died mid-response)
  times               object: phase name (accepted, requestHead,
                      connectStart, upstreamReady, requestSent,
                      responseHead, responseComplete, end) -> UTC timestamp
                      "2025-01-02T03:04:05.123456Z" or null
  offsets             object: the same phases except accepted -> monotonic
                      milliseconds since accepted, or null
  durations           object: upstreamConnect, send, wait,
                      receive, total -> milliseconds or null
  headersRedacted     true if the values below were redacted
  requestHeaders      list of [name, value] pairs, in received order
  responseHeaders     list of [name, value] pairs, in sent order

When C{headersRedacted} is true, header values are redacted by the proxy's
one rule, L{twisted_proxy.http.fields.redactValue}: the values of
C{Authorization}, C{Proxy-Authorization}, C{Cookie} and C{Set-Cookie} are
replaced by C{"<redacted>"}, and for the two authorization fields a known
scheme is kept (C{"Basic <redacted>"}).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ..http.fields import redactHeaders

__all__ = [
    "RECORD_VERSION",
    "PHASES",
    "DURATIONS",
    "Fields",
    "TransactionRecord",
    "formatTimestamp",
    "parseTimestamp",
    "timestampMicroseconds",
]

RECORD_VERSION = 1

PHASES = (
    "requestHead",
    "connectStart",
    "upstreamReady",
    "requestSent",
    "responseHead",
    "responseComplete",
)
"""
The phases the server marks with L{TransactionRecord.mark}, in order.
"""

_ALL_PHASES = ("accepted", *PHASES, "end")

DURATIONS = ("upstreamConnect", "send", "wait", "receive", "total")
"""
The keys of a record's C{"durations"} object.
"""

_DURATION_PHASES = (
    ("upstreamConnect", "requestHead", "upstreamReady"),
    ("send", "upstreamReady", "requestSent"),
    ("wait", "requestSent", "responseHead"),
    ("receive", "responseHead", "responseComplete"),
)

Fields = Sequence[tuple[bytes, bytes]] | Sequence[tuple[str, str]]
"""
Header fields as a record holds them: the parser's byte pairs as the server
hands them over, or text pairs.
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class _TimestampText:
    """
    L{formatTimestamp}'s engine.  The date and time of day are formatted
    once per second (a record's phases nearly always fall in the same
    second), the microseconds every time.  The text is exactly that of
    C{datetime.fromtimestamp(when, timezone.utc).isoformat()} with a C{Z}:
    the fraction is rounded half to even to the microsecond, carrying into
    the seconds, as C{datetime} does.

    @ivar _last: C{(second, "YYYY-MM-DDTHH:MM:SS")} for the last second
        formatted, in one tuple, so that a caller in another thread never
        reads half an update.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[int, str] = (0, "1970-01-01T00:00:00")

    def __call__(self, when: float) -> str:
        fraction, whole = math.modf(when)
        micros = round(fraction * 1e6)
        second = int(whole)
        if micros >= 1000000:
            micros -= 1000000
            second += 1
        elif micros < 0:
            micros += 1000000
            second -= 1
        last = self._last
        if last[0] != second:
            last = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._last = last
        return "%s.%06dZ" % (last[1], micros)


_timestampText = _TimestampText()


def formatTimestamp(when: float) -> str:
    """
    Render a POSIX time as UTC ISO 8601 to the microsecond, with a C{Z}
    suffix: C{"2025-01-02T03:04:05.123456Z"}.
    """
    return _timestampText(when)


def parseTimestamp(text: str) -> datetime:
    """
    Parse an ISO 8601 timestamp as written by L{formatTimestamp}.

    A C{Z} suffix or a numeric offset is honoured; a timestamp without an
    offset is taken to be UTC.

    @return: an aware L{datetime}.
    @raise ValueError: if C{text} is not an ISO 8601 timestamp.
    """
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def timestampMicroseconds(text: str) -> int:
    """
    Microseconds since the epoch for an ISO 8601 timestamp (see
    L{parseTimestamp}), computed exactly, without float rounding, so that
    truncating it to milliseconds is exact too.

    @raise ValueError: if C{text} is not an ISO 8601 timestamp.
    """
    return (parseTimestamp(text) - _EPOCH) // _MICROSECOND


def _octets(text: str) -> int:
    """
    The length of C{text} on the wire: header text is ISO-8859-1, and
    anything else was decoded from UTF-8.
    """
    try:
        return len(text.encode("latin-1"))
    except UnicodeEncodeError:
        return len(text.encode("utf-8", "surrogatepass"))


def _fieldsSize(fields: Fields) -> int:
    """
    Octets of header fields serialised as C{Name: value} CRLF, plus the
    empty line that ends the head.  The parser's byte pairs are measured as
    they are, text as its encoding.
    """
    size = 2
    for name, value in fields:
        if isinstance(name, bytes) and isinstance(value, bytes):
            size += len(name) + len(value) + 4
        else:
            size += _octets(str(name)) + _octets(str(value)) + 4
    return size


def _textFields(fields: Fields) -> list[list[str]]:
    """
    Header fields as C{[name, value]} text, unredacted.  The server hands
    over the parser's byte pairs as they are (decoding them costs, and most
    records are never read), so they are decoded (ISO-8859-1, as on the
    wire) only here.
    """
    return [
        [
            n.decode("latin-1") if isinstance(n, bytes) else n,
            v.decode("latin-1") if isinstance(v, bytes) else v,
        ]
        for n, v in fields
    ]


class TransactionRecord:
    """
    What happened in one transaction.  Mutable while the transaction runs;
    emitted once, at its end, by
    L{twisted_proxy.records.emit.emitTransaction}.

    The server sets the public attributes directly; each defaults to L{None},
    C{0}, C{False} or an empty list (C{kind} defaults to C{"http"}).

    @ivar kind: C{"http"}, C{"tunnel"}, C{"upgrade"} or C{"refused"}.
    @ivar user: the authenticated proxy user, or L{None}.
    @ivar method: the request method.
    @ivar target: the request target as received.
    @ivar requestVersion: e.g. C{"HTTP/1.1"}.
    @ivar requestHeaders: C{(name, value)} pairs as received (text, or bytes
        as parsed: L{asDict} decodes them as ISO-8859-1).
    @ivar responseHeaders: C{(name, value)} pairs as sent to the client
        (likewise).
    @ivar status: the status sent to the client.
    @ivar reason: its reason phrase.
    @ivar responseVersion: e.g. C{"HTTP/1.1"}.
    @ivar destHost: the destination host from the target.
    @ivar destPort: the destination port.
    @ivar peerHost: the IP address actually connected to.
    @ivar peerPort: the port actually connected to.
    @ivar connectionReused: whether the upstream connection came from the
        pool.
    @ivar bytesFromClient: octets received from the client.
    @ivar bytesToUpstream: octets sent upstream.
    @ivar bytesFromUpstream: octets received from upstream.
    @ivar bytesToClient: octets sent to the client.
    @ivar cacheStatus: the cache's verdict (see the module docstring).
    @ivar proxyError: the RFC 9209 error type, if any.
    @ivar errorDetail: one line of text about the error.
    @ivar aborted: whether the transaction was cut short.

    @ivar _monoClock: returns monotonic seconds: every phase is marked on it.
    @ivar _acceptedWall: the wall-clock time of the connection's acceptance,
        from which every timestamp is derived.
    @ivar _mono: phase name -> monotonic time.
    @ivar _emitted: whether the record was claimed for emission
        (L{markEmitted}).
    """

    __slots__ = (
        "_monoClock",
        "_acceptedWall",
        "_mono",
        "_emitted",
        "connectionId",
        "sequence",
        "clientHost",
        "clientPort",
        "kind",
        "user",
        "method",
        "target",
        "requestVersion",
        "requestHeaders",
        "responseHeaders",
        "status",
        "reason",
        "responseVersion",
        "destHost",
        "destPort",
        "peerHost",
        "peerPort",
        "connectionReused",
        "bytesFromClient",
        "bytesToUpstream",
        "bytesFromUpstream",
        "bytesToClient",
        "cacheStatus",
        "proxyError",
        "errorDetail",
        "aborted",
    )

    def __init__(
        self,
        *,
        monoClock: Callable[[], float],
        connectionId: str,
        sequence: int,
        clientHost: str,
        clientPort: int,
        acceptedWall: float,
        acceptedMono: float,
    ) -> None:
        """
        @param monoClock: returns monotonic seconds (e.g. C{time.monotonic}).
        @param connectionId: the server's id for the client connection.
        @param sequence: the transaction's number on that connection.
        @param clientHost: the client's IP address.
        @param clientPort: the client's port.
        @param acceptedWall: the wall-clock (POSIX) time when the connection
            was accepted.
        @param acceptedMono: C{monoClock()} when the connection was accepted.
        """
        self._monoClock = monoClock
        self._acceptedWall = acceptedWall
        self._mono: dict[str, float] = {"accepted": acceptedMono}
        self._emitted = False
        self.connectionId = connectionId
        self.sequence = sequence
        self.clientHost = clientHost
        self.clientPort = clientPort
        self.kind = "http"
        self.user: str | None = None
        self.method: str | None = None
        self.target: str | None = None
        self.requestVersion: str | None = None
        self.requestHeaders: Fields = []
        self.responseHeaders: Fields = []
        self.status: int | None = None
        self.reason: str | None = None
        self.responseVersion: str | None = None
        self.destHost: str | None = None
        self.destPort: int | None = None
        self.peerHost: str | None = None
        self.peerPort: int | None = None
        self.connectionReused: bool | None = None
        self.bytesFromClient = 0
        self.bytesToUpstream = 0
        self.bytesFromUpstream = 0
        self.bytesToClient = 0
        self.cacheStatus: str | None = None
        self.proxyError: str | None = None
        self.errorDetail: str | None = None
        self.aborted = False

    def __repr__(self) -> str:
        return (
            f"<TransactionRecord {self.connectionId}#{self.sequence} {self.kind}"
            f" {self.method} {self.target} {self.status}>"
        )

    def mark(self, phase: str) -> None:
        """
        Record that C{phase} happened now, on both clocks.  Marking a phase
        again keeps the first instant.

        @param phase: one of L{PHASES}.
        @raise ValueError: for any other name.
        """
        if phase not in PHASES:
            raise ValueError(
                "unknown transaction phase {!r}; expected one of {}".format(
                    phase, ", ".join(PHASES)
                )
            )
        if phase not in self._mono:
            self._mono[phase] = self._monoClock()

    def marked(self, phase: str) -> bool:
        """
        Whether C{phase} (or C{"accepted"}, C{"end"}) has been marked.
        """
        return phase in self._mono

    def finish(self) -> None:
        """
        Fix the end of the transaction: the C{responseComplete} instant if it
        was marked, otherwise now.  Finishing again changes nothing.
        L{twisted_proxy.records.emit.emitTransaction} calls this.
        """
        if "end" in self._mono:
            return
        if "responseComplete" in self._mono:
            self._mono["end"] = self._mono["responseComplete"]
        else:
            self._mono["end"] = self._monoClock()

    def markEmitted(self) -> bool:
        """
        Claim the record for emission: L{True} the first time, L{False}
        after, so that a transaction that completes and then sees its
        connection lost is recorded once.
        """
        if self._emitted:
            return False
        self._emitted = True
        return True

    def _between(self, start: str, end: str) -> float | None:
        """
        Monotonic milliseconds from C{start} to C{end}, or L{None} if either
        was not marked.
        """
        mono = self._mono
        if start in mono and end in mono:
            return round((mono[end] - mono[start]) * 1000.0, 3)
        return None

    def total(self) -> float | None:
        """
        The total duration in milliseconds (request head, or else accepted,
        to end), or L{None} before L{finish}.
        """
        mono = self._mono
        end = mono.get("end")
        if end is None:
            return None
        return round((end - mono.get("requestHead", mono["accepted"])) * 1000.0, 3)

    def durations(self) -> dict[str, float | None]:
        """
        The durations in milliseconds, keyed by L{DURATIONS}.
        """
        between = self._between
        result = {name: between(start, end) for name, start, end in _DURATION_PHASES}
        if "connectStart" in self._mono:
            result["upstreamConnect"] = between("connectStart", "upstreamReady")
        result["total"] = self.total()
        return result

    def _headSizes(self) -> tuple[int | None, int | None]:
        """
        The request and response head sizes, as serialised (see the module
        docstring).
        """
        requestSize = responseSize = None
        if self.method and self.target:
            requestSize = _octets(
                "{} {} {}\r\n".format(self.method, self.target, self.requestVersion or "HTTP/1.1")
            ) + _fieldsSize(self.requestHeaders)
        if self.status is not None:
            responseSize = _octets(
                "{} {:03d} {}\r\n".format(
                    self.responseVersion or "HTTP/1.1", self.status, self.reason or ""
                )
            ) + _fieldsSize(self.responseHeaders)
        return requestSize, responseSize

    def asDict(self, redact: bool = True) -> dict[str, Any]:
        """
        The record as a JSON-ready dict, in the format the module docstring
        documents.  Pure: it reads the record and changes nothing (an
        unfinished record has a C{null} end and total).

        @param redact: redact header values by the proxy's one rule
            (L{twisted_proxy.http.fields.redactHeaders}).
        """
        requestHeadSize, responseHeadSize = self._headSizes()
        if redact:
            requestHeaders = [[n, v] for n, v in redactHeaders(self.requestHeaders)]
            responseHeaders = [[n, v] for n, v in redactHeaders(self.responseHeaders)]
        else:
            requestHeaders = _textFields(self.requestHeaders)
            responseHeaders = _textFields(self.responseHeaders)
        mono = self._mono
        accepted = mono["accepted"]
        acceptedWall = self._acceptedWall
        return {
            "recordVersion": RECORD_VERSION,
            "connectionId": self.connectionId,
            "sequence": self.sequence,
            "kind": self.kind,
            "clientHost": self.clientHost,
            "clientPort": self.clientPort,
            "user": self.user,
            "method": self.method,
            "target": self.target,
            "requestVersion": self.requestVersion,
            "status": self.status,
            "reason": self.reason,
            "responseVersion": self.responseVersion,
            "destHost": self.destHost,
            "destPort": self.destPort,
            "peerHost": self.peerHost,
            "peerPort": self.peerPort,
            "connectionReused": self.connectionReused,
            "bytesFromClient": self.bytesFromClient,
            "bytesToUpstream": self.bytesToUpstream,
            "bytesFromUpstream": self.bytesFromUpstream,
            "bytesToClient": self.bytesToClient,
            "requestHeadSize": requestHeadSize,
            "responseHeadSize": responseHeadSize,
            "cacheStatus": self.cacheStatus,
            "proxyError": self.proxyError,
            "errorDetail": self.errorDetail,
            "aborted": self.aborted,
            "times": {
                phase: _timestampText(acceptedWall + (mono[phase] - accepted))
                if phase in mono
                else None
                for phase in _ALL_PHASES
            },
            "offsets": {
                phase: round((mono[phase] - accepted) * 1000.0, 3) if phase in mono else None
                for phase in _ALL_PHASES[1:]
            },
            "durations": self.durations(),
            "headersRedacted": redact,
            "requestHeaders": requestHeaders,
            "responseHeaders": responseHeaders,
        }
