# -*- test-case-name: tests.test_history -*-
"""
Transaction history: one record per transaction, one log event per record.

The server fills in a L{TransactionRecord} while a transaction runs (a plain
request, a CONNECT tunnel, a 101 upgrade, or a request the proxy refused),
marks each phase as it happens, and hands the record to L{emitTransaction}
when the transaction is over.  That emits one C{twisted.logger} event whose
C{"transaction"} field is the JSON-ready dict described below.  Observers of
the same event write it out:

  - L{historyObserver}: JSON Lines, one record per line, each line written
    whole to an unbuffered file (so flushed per record), rotated by size
    with L{twisted.python.logfile.LogFile}.
  - L{accessLogObserver}: one access-log line per record, in Squid's native
    format or the Apache common/combined formats.

Both observers ignore events without a C{"transaction"} field, and both have
C{reopen()} (call it on C{SIGUSR1}, after logrotate renamed the file away)
and C{close()}.

This module writes to files only through those observers; it never touches a
transport and does not import C{twisted.internet}.

Phases and clocks
=================

Each phase is marked with I{both} clocks: the wall clock (for the
timestamps, rendered in UTC, ISO 8601, to the microsecond) and a monotonic
clock (for every duration; a wall clock that steps during a transaction does
not distort them).  The phases, in order::

  accepted          the client connection was accepted (given to __init__)
  requestHead       the request head was received and parsed
  upstreamReady     an upstream connection is ready (new or from the pool)
  requestSent       the request (head and body) was fully sent upstream
  responseHead      the response head was received
  responseComplete  the response was completely sent to the client
                    (for a tunnel: the tunnel closed)
  end               responseComplete if it was marked; otherwise the moment
                    the record was finished (an abort, a refusal, an error)

Durations, in milliseconds (monotonic, rounded to the microsecond; C{null}
when a phase they need was not marked)::

  upstreamConnect   requestHead -> upstreamReady (for a reused connection:
                    the time to take it from the pool)
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
  requestHeadSize     octets of the request head (measured by the server,
                      or else its canonical serialisation: request line,
                      Name: value CRLF per field, CRLF)
  responseHeadSize    octets of the response head (likewise)
  cacheStatus         the cache's verdict ("hit", "miss",
                      "revalidated", "refreshed", "stale",
                      "bypass") or null when the cache was not asked
  proxyError          RFC 9209 error type, e.g. "dns_error"
  errorDetail         one line of text about the error
  aborted             true if the transaction was cut short (the client
                      went away, or the upstream died mid-response)
  times               object: phase name (accepted, requestHead,
                      upstreamReady, requestSent, responseHead,
                      responseComplete, end) -> UTC timestamp
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

import json
import os
import re
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.logger import ILogObserver, LogEvent, Logger, LogLevel
from twisted.python import threadable
from twisted.python.logfile import LogFile
from zope.interface import implementer

from ..http.fields import REDACTED, redactValue

__all__ = [
    "RECORD_VERSION",
    "PHASES",
    "DURATIONS",
    "REDACTED",
    "TransactionRecord",
    "emitTransaction",
    "historyObserver",
    "accessLogObserver",
    "RecordFileObserver",
    "RecordLogFile",
    "formatAccessLine",
    "ACCESS_LOG_FORMATS",
    "parseSize",
    "parseTimestamp",
    "formatTimestamp",
    "timestampMicroseconds",
]

RECORD_VERSION = 1

PHASES = (
    "requestHead",
    "upstreamReady",
    "requestSent",
    "responseHead",
    "responseComplete",
)
"""
The phases the server marks with L{TransactionRecord.mark}, in order.
"""

_ALL_PHASES = ("accepted",) + PHASES + ("end",)

DURATIONS = ("upstreamConnect", "send", "wait", "receive", "total")
"""
The keys of a record's C{"durations"} object.
"""

_DURATION_PHASES = {
    "upstreamConnect": ("requestHead", "upstreamReady"),
    "send": ("upstreamReady", "requestSent"),
    "wait": ("requestSent", "responseHead"),
    "receive": ("responseHead", "responseComplete"),
}

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def formatTimestamp(when: float) -> str:
    """
    Render a POSIX time as UTC ISO 8601 to the microsecond, with a C{Z}
    suffix: C{"2025-01-02T03:04:05.123456Z"}.
    """
    text = datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


def parseTimestamp(text: str) -> datetime:
    """
    Parse an ISO 8601 timestamp as written by L{formatTimestamp}.

    A C{Z} suffix or a numeric offset is honoured; a timestamp without an
    offset is taken to be UTC.  (Python 3.10's C{fromisoformat} does not
    accept C{Z}, hence this function.)

    @return: an aware L{datetime}.
    @raise ValueError: if C{text} is not an ISO 8601 timestamp.
    """
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
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


class TransactionRecord:
    """
    What happened in one transaction.  Mutable while the transaction runs;
    emitted once, at its end, by L{emitTransaction}.

    The server sets the public attributes directly; each defaults to L{None},
    C{0}, C{False} or an empty list (C{kind} defaults to C{"http"}).

    @ivar kind: C{"http"}, C{"tunnel"}, C{"upgrade"} or C{"refused"}.
    @ivar user: the authenticated proxy user, or L{None}.
    @ivar method: the request method.
    @ivar target: the request target as received.
    @ivar requestVersion: e.g. C{"HTTP/1.1"}.
    @ivar requestHeaders: C{(name, value)} pairs as received (text, or bytes
        as parsed: L{asDict} decodes them as Latin-1).
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
    @ivar requestHeadSize: the measured size of the request head, if the
        server knows it; otherwise L{asDict} computes the canonical one.
    @ivar responseHeadSize: likewise for the response head.
    @ivar cacheStatus: the cache's verdict (see the module docstring).
    @ivar proxyError: the RFC 9209 error type, if any.
    @ivar errorDetail: one line of text about the error.
    @ivar aborted: whether the transaction was cut short.

    @ivar _wallClock: returns POSIX time, for timestamps.
    @ivar _monoClock: returns monotonic seconds, for durations.
    @ivar _wall: phase name -> wall-clock time.
    @ivar _mono: phase name -> monotonic time.
    @ivar _emitted: whether L{emitTransaction} has emitted this record.
    """

    __slots__ = (
        "_wallClock",
        "_monoClock",
        "_wall",
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
        "requestHeadSize",
        "responseHeadSize",
        "cacheStatus",
        "proxyError",
        "errorDetail",
        "aborted",
    )

    def __init__(
        self,
        *,
        wallClock: Callable[[], float],
        monoClock: Callable[[], float],
        connectionId: str,
        sequence: int,
        clientHost: str,
        clientPort: int,
        acceptedWall: float,
        acceptedMono: float,
    ) -> None:
        """
        @param wallClock: returns POSIX time (e.g. C{time.time}).
        @param monoClock: returns monotonic seconds (e.g. C{time.monotonic}).
        @param connectionId: the server's id for the client connection.
        @param sequence: the transaction's number on that connection.
        @param clientHost: the client's IP address.
        @param clientPort: the client's port.
        @param acceptedWall: C{wallClock()} when the connection was accepted.
        @param acceptedMono: C{monoClock()} when the connection was accepted.
        """
        self._wallClock = wallClock
        self._monoClock = monoClock
        self._wall: dict[str, float] = {"accepted": acceptedWall}
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
        self.requestHeaders: list[tuple[str, str]] = []
        self.responseHeaders: list[tuple[str, str]] = []
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
        self.requestHeadSize: int | None = None
        self.responseHeadSize: int | None = None
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
            self._wall[phase] = self._wallClock()
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
        L{emitTransaction} calls this.
        """
        if "end" in self._mono:
            return
        if "responseComplete" in self._mono:
            self._wall["end"] = self._wall["responseComplete"]
            self._mono["end"] = self._mono["responseComplete"]
        else:
            self._wall["end"] = self._wallClock()
            self._mono["end"] = self._monoClock()

    def _between(self, start: str, end: str) -> float | None:
        """
        Monotonic milliseconds from C{start} to C{end}, or L{None} if either
        was not marked.
        """
        if start in self._mono and end in self._mono:
            return round((self._mono[end] - self._mono[start]) * 1000.0, 3)
        return None

    def durations(self) -> dict[str, float | None]:
        """
        The durations in milliseconds, keyed by L{DURATIONS}.
        """
        result = {
            name: self._between(start, end)
            for name, (start, end) in _DURATION_PHASES.items()
        }
        start = "requestHead" if "requestHead" in self._mono else "accepted"
        result["total"] = self._between(start, "end")
        return result

    def _headSizes(
        self, requestHeaders: list[tuple[str, str]], responseHeaders: list[tuple[str, str]]
    ) -> tuple[int | None, int | None]:
        """
        The request and response head sizes: measured if the server set
        them, otherwise the canonical serialisation of what we know.
        """
        requestSize = self.requestHeadSize
        if requestSize is None and self.method and self.target:
            requestSize = _octets(
                "{} {} {}\r\n".format(
                    self.method, self.target, self.requestVersion or "HTTP/1.1"
                )
            ) + _fieldsSize(requestHeaders)
        responseSize = self.responseHeadSize
        if responseSize is None and self.status is not None:
            responseSize = _octets(
                "{} {:03d} {}\r\n".format(
                    self.responseVersion or "HTTP/1.1", self.status, self.reason or ""
                )
            ) + _fieldsSize(responseHeaders)
        return requestSize, responseSize

    def asDict(self, redact: bool = True) -> dict[str, Any]:
        """
        The record as a JSON-ready dict, in the format the module docstring
        documents.  Pure: it reads the record and changes nothing (an
        unfinished record has a C{null} end and total).

        @param redact: replace the values of credential and cookie fields.
        """
        requestFields = _textFields(self.requestHeaders)
        responseFields = _textFields(self.responseHeaders)
        requestHeadSize, responseHeadSize = self._headSizes(requestFields, responseFields)
        if redact:
            requestHeaders = [
                [name, redactValue(name, value)] for name, value in requestFields
            ]
            responseHeaders = [
                [name, redactValue(name, value)] for name, value in responseFields
            ]
        else:
            requestHeaders = [[name, value] for name, value in requestFields]
            responseHeaders = [[name, value] for name, value in responseFields]
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
                phase: (
                    formatTimestamp(self._wall[phase]) if phase in self._wall else None
                )
                for phase in _ALL_PHASES
            },
            "offsets": {
                phase: self._between("accepted", phase) for phase in _ALL_PHASES[1:]
            },
            "durations": self.durations(),
            "headersRedacted": redact,
            "requestHeaders": requestHeaders,
            "responseHeaders": responseHeaders,
        }


def _textFields(fields: Iterable[tuple[Any, Any]]) -> list[tuple[str, str]]:
    """
    Header fields as text: the server hands over the parser's byte pairs
    as they are (decoding them costs, and most records are never read), so
    they are decoded (Latin-1, as on the wire) only here.
    """
    return [
        (n.decode("latin-1"), v.decode("latin-1")) if isinstance(n, bytes) else (n, v)
        for n, v in fields
    ]


def _fieldsSize(fields: Iterable[tuple[str, str]]) -> int:
    """
    Octets of header fields serialised as C{Name: value} CRLF, plus the
    empty line that ends the head.
    """
    return sum(_octets(name) + _octets(value) + 4 for name, value in fields) + 2


def emitEvent(log: Logger, fmt: str, fields: dict[str, Any], source: object = None) -> None:
    """
    Emit an C{info} event on C{log}: the same event C{log.info(fmt,
    **fields)} would build, without what that costs per call on a hot path
    (a level check that sorts the level constants, and, when C{log} is a
    class attribute, a new L{Logger} per attribute access).

    @param source: the event's C{log_source} (default: C{log.source}).
    """
    fields["log_logger"] = log
    fields["log_level"] = LogLevel.info
    fields["log_namespace"] = log.namespace
    fields["log_source"] = log.source if source is None else source
    fields["log_format"] = fmt
    fields["log_time"] = time.time()
    log.observer(fields)


def emitTransaction(
    log: Logger, record: TransactionRecord, redact: bool = True, detail: bool = True
) -> None:
    """
    Finish C{record} and emit it: one C{info} event on C{log} with the
    fields C{client}, C{method}, C{target}, C{status}, C{bytes} (sent to the
    client) and C{ms} (total), and, if C{detail}, the record's dict in
    C{"transaction"} (what the history and access-log observers write).

    The event has an empty C{log_format}: text observers (the console) do
    not print it, since the brief's lines already tell the story there, and
    do not pay for formatting it.  Building the full dict costs more than
    the rest of a proxied request, so the server asks for it only when
    something consumes it (C{--history}, C{--access-log}, workers).

    A record is emitted once: calling this again for the same record does
    nothing, so a transaction that both completes and then sees its
    connection lost is not counted twice.

    @param log: the logger to emit on.
    @param record: the finished transaction.
    @param redact: redact credential and cookie values (pass L{False} only
        for C{--history-headers=all}).
    @param detail: attach the full record as C{"transaction"}.
    """
    if record._emitted:
        return
    record._emitted = True
    record.finish()
    mono = record._mono
    start = mono.get("requestHead", mono["accepted"])
    fields = {
        "client": (record.clientHost, record.clientPort),
        "method": record.method,
        "target": record.target,
        "status": record.status,
        "bytes": record.bytesToClient,
        "ms": round((mono["end"] - start) * 1000.0, 3),
    }
    if detail:
        fields["transaction"] = record.asDict(redact)
    emitEvent(log, "", fields)


class RecordLogFile(LogFile):
    """
    A L{LogFile} for whole-line records.

    On top of L{LogFile}'s size-based rotation (C{path} -> C{path.1} ->
    C{path.2} ..., at most C{maxRotatedFiles} kept), it:

      - writes each record completely (looping over short writes) on the
        unbuffered file, so that a rotation can only ever happen between
        records and a record is on disk when C{write} returns;
      - on opening a file whose last line is incomplete (a crash in the
        middle of a write), ends that line first, so the fragment stays a
        single unparseable line instead of corrupting the next record;
      - C{fsync}s the file before rotating it away, so that a rotated file
        is complete even after a system crash;
      - on C{reopen}, opens the new file before closing the old one, so a
        failed reopen leaves the observer writing where it was.

    A rotated file is only ever renamed, never rewritten, so a crash can lose
    at most the record being written.
    """

    synchronized = ["write", "rotate"]

    def _openFile(self) -> None:
        LogFile._openFile(self)
        if self.size:
            try:
                self._file.seek(-1, os.SEEK_END)
                last = self._file.read(1)
                self._file.seek(0, os.SEEK_END)
            except OSError:
                return
            if last != b"\n":
                self._file.write(b"\n")
                self.size += 1

    def write(self, data: bytes) -> None:
        """
        Write one complete record (rotating first if the file is full).
        """
        if self.shouldRotate():
            self.flush()
            self.rotate()
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            if not written:
                raise OSError(f"short write to {self.path}")
            view = view[written:]
        self.size += len(data)

    def rotate(self) -> None:
        """
        Make the current file durable, then rotate as L{LogFile} does.
        Like L{LogFile}, do nothing (and keep writing to the current file) if
        the file cannot be renamed, e.g. after logrotate moved it away and
        before C{reopen()}.
        """
        if not (os.access(self.directory, os.W_OK) and os.access(self.path, os.W_OK)):
            return
        try:
            os.fsync(self._file.fileno())
        except OSError:
            pass
        LogFile.rotate(self)

    def reopen(self) -> None:
        """
        Open C{self.path} afresh (after logrotate renamed it away), then
        close the old file.  If the open fails, the old file stays in use and
        the error propagates.
        """
        old = self._file
        self._openFile()
        old.close()


threadable.synchronize(RecordLogFile)


def _openLogFile(
    path: str, rotateLength: int | None, keep: int | None
) -> RecordLogFile:
    """
    Open (creating if needed) the record file at C{path}.  A new file is
    created with mode 0640: it names clients and the URLs they fetch.  An
    existing file keeps its mode.
    """
    mode = None if os.path.exists(path) else 0o640
    logFile: RecordLogFile = RecordLogFile.fromFullPath(
        path, rotateLength=rotateLength, defaultMode=mode, maxRotatedFiles=keep
    )
    return logFile


@implementer(ILogObserver)
class RecordFileObserver:
    """
    Writes one line per transaction event to a L{RecordLogFile}, formatted by
    a function of the record dict; events without a C{"transaction"} dict are
    ignored.  Built by L{historyObserver} and L{accessLogObserver}.

    @ivar path: the file written to.
    @ivar _logFile: the open file, or L{None} once closed.
    @ivar _formatter: record dict -> line (without the newline).
    """

    def __init__(
        self, logFile: RecordLogFile, formatter: Callable[[dict[str, Any]], str]
    ) -> None:
        self.path: str = logFile.path
        self._logFile: RecordLogFile | None = logFile
        self._formatter = formatter

    def __call__(self, event: LogEvent) -> None:
        record = event.get("transaction")
        if not isinstance(record, dict) or self._logFile is None:
            return
        line = self._formatter(record) + "\n"
        self._logFile.write(line.encode("utf-8", "backslashreplace"))
        self._logFile.flush()

    def reopen(self) -> None:
        """
        Reopen the file by name (for C{SIGUSR1} after logrotate).

        @raise OSError: if the file cannot be opened; the observer then keeps
            writing to the file it had.
        """
        if self._logFile is not None:
            self._logFile.reopen()

    def close(self) -> None:
        """
        Close the file; later events are ignored.
        """
        if self._logFile is not None:
            logFile, self._logFile = self._logFile, None
            logFile.close()


def _jsonLine(record: dict[str, Any]) -> str:
    """
    A record as one line of compact, ASCII-only JSON.
    """
    return json.dumps(record, separators=(",", ":"), allow_nan=False)


def historyObserver(path: str, rotateSize: int, keep: int) -> RecordFileObserver:
    """
    An observer writing transaction records to C{path} as JSON Lines.

    @param path: the history file; rotated files are C{path.1} (newest) to
        C{path.<keep>} (oldest).
    @param rotateSize: rotate when the file has reached this many octets
        (a file holds at least one record, so may exceed it by one record);
        C{0} disables rotation (use logrotate and C{reopen()} instead).
    @param keep: how many rotated files to keep (at least 1).
    @raise ValueError: for a negative size or a C{keep} below 1.
    @raise OSError: if the file cannot be opened.
    """
    if rotateSize < 0:
        raise ValueError("history rotate size must not be negative")
    if keep < 1:
        raise ValueError("number of history files to keep must be at least 1")
    return RecordFileObserver(_openLogFile(path, rotateSize or None, keep), _jsonLine)


def accessLogObserver(path: str, fmt: str) -> RecordFileObserver:
    """
    An observer writing an access log to C{path} (never rotated by the
    proxy: use logrotate and C{reopen()}).

    @param fmt: C{"squid"} (Squid's native format), C{"common"} or
        C{"combined"} (Apache's).
    @raise ValueError: for an unknown format.
    @raise OSError: if the file cannot be opened.
    """
    if fmt not in ACCESS_LOG_FORMATS:
        raise ValueError(
            "unknown access log format {!r}; expected one of {}".format(
                fmt, ", ".join(ACCESS_LOG_FORMATS)
            )
        )
    return RecordFileObserver(_openLogFile(path, None, None), ACCESS_LOG_FORMATS[fmt])


# Access-log lines.

_SQUID_CACHE_TAGS = {
    "hit": "TCP_HIT",
    "revalidated": "TCP_REFRESH_UNMODIFIED",
    "refreshed": "TCP_REFRESH_MODIFIED",
    "stale": "TCP_REFRESH_FAIL_OLD",
}

_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def _squidToken(value: object) -> str:
    """
    A space-free token for a Squid log field: C{-} when empty, and
    whitespace, control characters and C{%} percent-encoded.
    """
    if value is None or value == "":
        return "-"
    return "".join(
        f"%{ord(c):02X}" if c <= " " or c == "\x7f" or c == "%" else c
        for c in str(value)
    )


def _quoted(value: str | None) -> str:
    """
    An Apache-style quoted field: C{"..."} with C{"} and C{\\} escaped and
    control characters as C{\\xhh}; C{"-"} when absent.
    """
    if value is None:
        return '"-"'
    out = []
    for c in value:
        if c in '"\\':
            out.append("\\" + c)
        elif c < " " or c == "\x7f":
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _header(fields: Iterable[Any], name: str) -> str | None:
    """
    The first value of header field C{name} in C{[name, value]} pairs.
    """
    name = name.lower()
    for fieldName, value in fields:
        if fieldName.lower() == name:
            return str(value)
    return None


def _squidTag(record: dict[str, Any]) -> str:
    """
    Squid's result code for a record (C{TCP_MISS}, C{TCP_TUNNEL}, ...).
    """
    kind = record.get("kind")
    if kind == "refused":
        tag = "TCP_DENIED" if record.get("status") in (403, 407) else "NONE_NONE"
    elif kind == "tunnel":
        tag = "TCP_TUNNEL"
    else:
        cache = (record.get("cacheStatus") or "").strip().lower()
        tag = _SQUID_CACHE_TAGS.get(cache, "TCP_MISS")
    if record.get("aborted"):
        tag += "_ABORTED"
    return tag


def _squidLine(record: dict[str, Any]) -> str:
    """
    Squid's native format::

        time.ms elapsed client code/status bytes method URL user
        hierarchy/peer type

    C{time} is the end of the transaction, C{elapsed} its total in whole
    milliseconds, C{bytes} the octets sent to the client.
    """
    times = record.get("times") or {}
    when = times.get("end") or times.get("accepted")
    micros = timestampMicroseconds(when) if when else 0
    total = (record.get("durations") or {}).get("total") or 0
    peer = record.get("peerHost")
    contentType = _header(record.get("responseHeaders") or (), "content-type")
    mediaType = contentType.split(";")[0].strip().lower() if contentType else None
    return "{}.{:03d} {:6d} {} {}/{:03d} {} {} {} {} {} {}".format(
        micros // 1000000,
        (micros // 1000) % 1000,
        int(total),
        _squidToken(record.get("clientHost")),
        _squidTag(record),
        record.get("status") or 0,
        int(record.get("bytesToClient") or 0),
        _squidToken(record.get("method")),
        _squidToken(record.get("target")),
        _squidToken(record.get("user")),
        "HIER_DIRECT/" + _squidToken(peer) if peer else "HIER_NONE/-",
        _squidToken(mediaType),
    )


def _commonLine(record: dict[str, Any], combined: bool) -> str:
    """
    Apache's common (or combined) log format::

        client - user [02/Jan/2025:03:04:05 +0000] "request line" status bytes
        [ "referer" "user-agent" ]

    The time is when the request head arrived (in UTC); C{bytes} is the
    octets sent to the client, C{-} for none.
    """
    times = record.get("times") or {}
    when = parseTimestamp(times.get("requestHead") or times["accepted"])
    month = _MONTHS[when.month - 1]
    stamp = f"{when.day:02d}/{month}/{when.year:04d}:{when:%H:%M:%S} +0000"
    if record.get("method"):
        requestLine = " ".join(
            part
            for part in (
                record.get("method"),
                record.get("target"),
                record.get("requestVersion"),
            )
            if part
        )
    else:
        requestLine = "-"
    status = record.get("status")
    sent = int(record.get("bytesToClient") or 0)
    line = "{} - {} [{}] {} {} {}".format(
        _squidToken(record.get("clientHost")),
        _squidToken(record.get("user")),
        stamp,
        _quoted(requestLine),
        "-" if status is None else status,
        sent or "-",
    )
    if combined:
        headers = record.get("requestHeaders") or ()
        line += " {} {}".format(
            _quoted(_header(headers, "referer")),
            _quoted(_header(headers, "user-agent")),
        )
    return line


ACCESS_LOG_FORMATS: dict[str, Callable[[dict[str, Any]], str]] = {
    "squid": _squidLine,
    "common": lambda record: _commonLine(record, False),
    "combined": lambda record: _commonLine(record, True),
}
"""
Access-log format name -> function from a record dict to one line.
"""


def formatAccessLine(record: dict[str, Any], fmt: str) -> str:
    """
    One access-log line (without newline) for a transaction record dict.

    @param fmt: a key of L{ACCESS_LOG_FORMATS}.
    """
    return ACCESS_LOG_FORMATS[fmt](record)


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?", re.ASCII)


def parseSize(text: str) -> int:
    """
    Parse a size in octets: a plain number, or a number followed by C{k},
    C{M}, C{G} or C{T} (powers of 1024; case does not matter, and a trailing
    C{B} or C{iB} is allowed): C{"10M"} is 10485760, C{"512k"} 524288,
    C{"1.5G"} 1610612736.

    @raise ValueError: with a message saying what is expected.
    """
    match = _SIZE.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(
            f"invalid size {text!r}: expected a number of bytes, optionally followed"
            " by k, M, G or T (powers of 1024), e.g. 10M"
        )
    number, unit = match.groups()
    multiplier = _SIZE_UNITS[unit or ""]
    if "." in number:
        return int(float(number) * multiplier)
    return int(number) * multiplier
