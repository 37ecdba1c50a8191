# -*- test-case-name: tests.test_history -*-
"""
Tests for L{twisted_proxy.records.history}.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from typing import Any, cast

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.records.history import (
    DURATIONS,
    PHASES,
    REDACTED,
    TransactionRecord,
    accessLogObserver,
    emitTransaction,
    formatAccessLine,
    formatTimestamp,
    historyObserver,
    parseSize,
    parseTimestamp,
    timestampMicroseconds,
)

# 2023-11-14T22:13:20Z
T0 = 1700000000.0


class FakeClocks:
    """
    A wall clock and a monotonic clock that advance together, unless told
    otherwise.
    """

    def __init__(self, wall: float = T0, mono: float = 5000.0) -> None:
        self.wall = Clock()
        self.wall.advance(wall)
        self.mono = Clock()
        self.mono.advance(mono)

    def advance(self, seconds: float) -> None:
        self.wall.advance(seconds)
        self.mono.advance(seconds)

    def record(self, **kwargs: Any) -> TransactionRecord:
        arguments: dict[str, Any] = dict(
            wallClock=self.wall.seconds,
            monoClock=self.mono.seconds,
            connectionId="c1",
            sequence=1,
            clientHost="127.0.0.1",
            clientPort=50312,
            acceptedWall=self.wall.seconds(),
            acceptedMono=self.mono.seconds(),
        )
        arguments.update(kwargs)
        return TransactionRecord(**arguments)


def successfulRecord(clocks: FakeClocks) -> TransactionRecord:
    """
    A plain GET through a new upstream connection: accepted at T0, then
    1 ms, 10 ms, 2 ms, 50 ms and 5 ms between the phases.
    """
    record = clocks.record()
    clocks.advance(0.001)
    record.mark("requestHead")
    record.method = "GET"
    record.target = "http://example.com/a?x=1"
    record.requestVersion = "HTTP/1.1"
    record.requestHeaders = [
        ("Host", "example.com"),
        ("User-Agent", "curl/8.5"),
        ("Proxy-Authorization", "Basic YWxpY2U6c2VjcmV0"),
        ("Cookie", "session=abc"),
    ]
    record.user = "alice"
    record.destHost = "example.com"
    record.destPort = 80
    clocks.advance(0.010)
    record.mark("upstreamReady")
    record.peerHost = "127.0.0.2"
    record.peerPort = 80
    record.connectionReused = False
    clocks.advance(0.002)
    record.mark("requestSent")
    clocks.advance(0.050)
    record.mark("responseHead")
    record.status = 200
    record.reason = "OK"
    record.responseVersion = "HTTP/1.1"
    record.responseHeaders = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Set-Cookie", "id=7; Path=/"),
        ("Content-Length", "100"),
    ]
    clocks.advance(0.005)
    record.mark("responseComplete")
    record.bytesFromClient = 140
    record.bytesToUpstream = 120
    record.bytesFromUpstream = 190
    record.bytesToClient = 205
    record.cacheStatus = "miss"
    return record


class TransactionRecordTests(SynchronousTestCase):
    """
    Tests for L{TransactionRecord}: phases, durations and its dict.
    """

    def test_defaults(self) -> None:
        """
        A new record knows its connection and client and nothing else yet.
        """
        record = FakeClocks().record()
        self.assertEqual(record.kind, "http")
        for name in (
            "user",
            "method",
            "target",
            "requestVersion",
            "status",
            "reason",
            "responseVersion",
            "destHost",
            "destPort",
            "peerHost",
            "peerPort",
            "connectionReused",
            "cacheStatus",
            "proxyError",
            "errorDetail",
        ):
            self.assertIsNone(getattr(record, name), name)
        for name in (
            "bytesFromClient",
            "bytesToUpstream",
            "bytesFromUpstream",
            "bytesToClient",
        ):
            self.assertEqual(getattr(record, name), 0, name)
        self.assertIs(record.aborted, False)
        self.assertEqual(record.requestHeaders, [])
        self.assertEqual(record.responseHeaders, [])
        self.assertEqual(
            (
                record.connectionId,
                record.sequence,
                record.clientHost,
                record.clientPort,
            ),
            ("c1", 1, "127.0.0.1", 50312),
        )

    def test_slots(self) -> None:
        """
        A misspelt attribute is an error, not a silently lost value.
        """
        record = FakeClocks().record()
        self.assertRaises(AttributeError, setattr, record, "bytesToClients", 1)

    def test_success(self) -> None:
        """
        A complete transaction: every timestamp, offset and duration, the
        heads with secrets redacted, and everything the server set.
        """
        clocks = FakeClocks()
        record = successfulRecord(clocks)
        record.finish()
        self.assertEqual(
            record.asDict(),
            {
                "recordVersion": 1,
                "connectionId": "c1",
                "sequence": 1,
                "kind": "http",
                "clientHost": "127.0.0.1",
                "clientPort": 50312,
                "user": "alice",
                "method": "GET",
                "target": "http://example.com/a?x=1",
                "requestVersion": "HTTP/1.1",
                "status": 200,
                "reason": "OK",
                "responseVersion": "HTTP/1.1",
                "destHost": "example.com",
                "destPort": 80,
                "peerHost": "127.0.0.2",
                "peerPort": 80,
                "connectionReused": False,
                "bytesFromClient": 140,
                "bytesToUpstream": 120,
                "bytesFromUpstream": 190,
                "bytesToClient": 205,
                # "GET http://example.com/a?x=1 HTTP/1.1\r\n" is 39 octets;
                # the fields "Name: value\r\n" are 19 + 22 + 45 + 21, and the
                # final CRLF 2.
                "requestHeadSize": 39 + 19 + 22 + 45 + 21 + 2,
                # "HTTP/1.1 200 OK\r\n" 17; fields 40 + 26 + 21; CRLF 2.
                "responseHeadSize": 17 + 40 + 26 + 21 + 2,
                "cacheStatus": "miss",
                "proxyError": None,
                "errorDetail": None,
                "aborted": False,
                "times": {
                    "accepted": "2023-11-14T22:13:20.000000Z",
                    "requestHead": "2023-11-14T22:13:20.001000Z",
                    "upstreamReady": "2023-11-14T22:13:20.011000Z",
                    "requestSent": "2023-11-14T22:13:20.013000Z",
                    "responseHead": "2023-11-14T22:13:20.063000Z",
                    "responseComplete": "2023-11-14T22:13:20.068000Z",
                    "end": "2023-11-14T22:13:20.068000Z",
                },
                "offsets": {
                    "requestHead": 1.0,
                    "upstreamReady": 11.0,
                    "requestSent": 13.0,
                    "responseHead": 63.0,
                    "responseComplete": 68.0,
                    "end": 68.0,
                },
                "durations": {
                    "upstreamConnect": 10.0,
                    "send": 2.0,
                    "wait": 50.0,
                    "receive": 5.0,
                    "total": 67.0,
                },
                "headersRedacted": True,
                "requestHeaders": [
                    ["Host", "example.com"],
                    ["User-Agent", "curl/8.5"],
                    ["Proxy-Authorization", "Basic <redacted>"],
                    ["Cookie", "<redacted>"],
                ],
                "responseHeaders": [
                    ["Content-Type", "text/html; charset=utf-8"],
                    ["Set-Cookie", "<redacted>"],
                    ["Content-Length", "100"],
                ],
            },
        )

    def test_documentedKeys(self) -> None:
        """
        The key table in the module docstring lists exactly the record's
        keys, in order.
        """
        import twisted_proxy.records.history

        doc = twisted_proxy.records.history.__doc__ or ""
        table = doc.split("the order they are written::", 1)[1].split("\n\n")[1]
        documented = re.findall(r"^  (\w+) ", table, re.MULTILINE)
        record = successfulRecord(FakeClocks())
        self.assertEqual(documented, list(record.asDict()))

    def test_jsonRoundTrip(self) -> None:
        """
        The dict survives JSON unchanged.
        """
        record = successfulRecord(FakeClocks())
        record.finish()
        data = record.asDict()
        self.assertEqual(json.loads(json.dumps(data)), data)

    def test_durationsUseMonotonicClock(self) -> None:
        """
        Durations are measured on the monotonic clock: a wall clock stepped
        back by an hour mid-transaction changes the timestamps, not the
        durations.
        """
        clocks = FakeClocks()
        record = clocks.record()
        clocks.advance(0.25)
        record.mark("requestHead")
        clocks.advance(0.5)
        record.mark("upstreamReady")
        # NTP steps the wall clock back; the monotonic clock is unmoved.
        clocks.wall.rightNow -= 3600
        clocks.advance(0.125)
        record.mark("requestSent")
        clocks.advance(1.0)
        record.mark("responseHead")
        clocks.advance(0.0625)
        record.mark("responseComplete")
        record.finish()
        data = record.asDict()
        self.assertEqual(
            data["durations"],
            {
                "upstreamConnect": 500.0,
                "send": 125.0,
                "wait": 1000.0,
                "receive": 62.5,
                "total": 1687.5,
            },
        )
        self.assertEqual(data["times"]["requestHead"], "2023-11-14T22:13:20.250000Z")
        self.assertEqual(data["times"]["requestSent"], "2023-11-14T21:13:20.875000Z")

    def test_markTwiceKeepsFirst(self) -> None:
        """
        Marking a phase again does not move it.
        """
        clocks = FakeClocks()
        record = clocks.record()
        clocks.advance(1)
        record.mark("requestHead")
        clocks.advance(1)
        record.mark("requestHead")
        self.assertEqual(record.asDict()["offsets"]["requestHead"], 1000.0)
        self.assertTrue(record.marked("requestHead"))
        self.assertFalse(record.marked("responseHead"))

    def test_unknownPhase(self) -> None:
        """
        Marking a phase that does not exist is a programming error.
        """
        record = FakeClocks().record()
        error = self.assertRaises(ValueError, record.mark, "responseDone")
        self.assertIn("responseDone", str(error))
        self.assertRaises(ValueError, record.mark, "end")
        self.assertRaises(ValueError, record.mark, "accepted")

    def test_upstreamFailure(self) -> None:
        """
        A connection that could not be made: no upstream phases, the error
        and a generated 502, and the end is when the record was finished.
        """
        clocks = FakeClocks()
        record = clocks.record()
        clocks.advance(0.002)
        record.mark("requestHead")
        record.method = "GET"
        record.target = "http://down.example/"
        record.destHost = "down.example"
        record.destPort = 80
        clocks.advance(0.030)
        record.status = 502
        record.reason = "Bad Gateway"
        record.proxyError = "connection_refused"
        record.errorDetail = "connection refused by 127.0.0.9:80"
        record.bytesToClient = 180
        record.finish()
        data = record.asDict()
        self.assertEqual(
            data["durations"],
            {
                "upstreamConnect": None,
                "send": None,
                "wait": None,
                "receive": None,
                "total": 30.0,
            },
        )
        self.assertEqual(data["times"]["end"], "2023-11-14T22:13:20.032000Z")
        self.assertIsNone(data["times"]["upstreamReady"])
        self.assertIsNone(data["times"]["responseComplete"])
        self.assertEqual(data["offsets"]["end"], 32.0)
        self.assertEqual(
            (data["status"], data["proxyError"], data["errorDetail"], data["peerHost"]),
            (502, "connection_refused", "connection refused by 127.0.0.9:80", None),
        )
        self.assertIs(data["aborted"], False)

    def test_clientAbort(self) -> None:
        """
        A client that went away mid-response: the record is aborted, has no
        C{responseComplete} and no C{receive}, and ends when finished.
        """
        clocks = FakeClocks()
        record = clocks.record()
        clocks.advance(0.001)
        record.mark("requestHead")
        clocks.advance(0.001)
        record.mark("upstreamReady")
        record.connectionReused = True
        clocks.advance(0.001)
        record.mark("requestSent")
        clocks.advance(0.020)
        record.mark("responseHead")
        record.status = 200
        clocks.advance(0.300)
        record.aborted = True
        record.bytesToClient = 65536
        record.finish()
        data = record.asDict()
        self.assertIs(data["aborted"], True)
        self.assertIs(data["connectionReused"], True)
        self.assertIsNone(data["times"]["responseComplete"])
        self.assertEqual(data["times"]["end"], "2023-11-14T22:13:20.323000Z")
        self.assertEqual(
            data["durations"],
            {
                "upstreamConnect": 1.0,
                "send": 1.0,
                "wait": 20.0,
                "receive": None,
                "total": 322.0,
            },
        )

    def test_tunnel(self) -> None:
        """
        A CONNECT tunnel: the phases the server marks, the byte counts in
        both directions, and C{responseComplete} when the tunnel closed.
        """
        clocks = FakeClocks()
        record = clocks.record(connectionId="c9", sequence=3)
        record.kind = "tunnel"
        clocks.advance(0.001)
        record.mark("requestHead")
        record.method = "CONNECT"
        record.target = "example.com:443"
        record.destHost = "example.com"
        record.destPort = 443
        clocks.advance(0.015)
        record.mark("upstreamReady")
        record.peerHost = "::1"
        record.peerPort = 443
        record.connectionReused = False
        record.mark("responseHead")
        record.status = 200
        record.reason = "Connection established"
        clocks.advance(2.5)
        record.mark("responseComplete")
        record.bytesFromClient = 1000
        record.bytesToUpstream = 900
        record.bytesFromUpstream = 5000
        record.bytesToClient = 5039
        record.finish()
        data = record.asDict()
        self.assertEqual(
            (data["kind"], data["connectionId"], data["sequence"], data["method"]),
            ("tunnel", "c9", 3, "CONNECT"),
        )
        self.assertEqual(
            data["durations"],
            {
                "upstreamConnect": 15.0,
                "send": None,
                "wait": None,
                "receive": 2500.0,
                "total": 2515.0,
            },
        )
        self.assertEqual(
            [
                data[key]
                for key in (
                    "bytesFromClient",
                    "bytesToUpstream",
                    "bytesFromUpstream",
                    "bytesToClient",
                )
            ],
            [1000, 900, 5000, 5039],
        )
        self.assertEqual((data["peerHost"], data["peerPort"]), ("::1", 443))

    def test_refused(self) -> None:
        """
        A refused request has only the request head and the end.
        """
        clocks = FakeClocks()
        record = clocks.record()
        record.kind = "refused"
        clocks.advance(0.004)
        record.mark("requestHead")
        record.method = "GET"
        record.target = "http://blocked.example/"
        clocks.advance(0.0005)
        record.status = 403
        record.proxyError = "http_request_denied"
        record.finish()
        data = record.asDict()
        present = {phase for phase, value in data["times"].items() if value}
        self.assertEqual(present, {"accepted", "requestHead", "end"})
        self.assertEqual(data["durations"]["total"], 0.5)
        self.assertEqual(
            [data["durations"][name] for name in DURATIONS[:-1]], [None] * 4
        )
        # No response fields: "HTTP/1.1 403 " CRLF, then the empty line.
        self.assertEqual(data["responseHeadSize"], len("HTTP/1.1 403 \r\n\r\n"))

    def test_totalWithoutRequestHead(self) -> None:
        """
        A transaction that ended before any request head arrived counts its
        total from the accepted connection.
        """
        clocks = FakeClocks()
        record = clocks.record()
        record.kind = "refused"
        clocks.advance(0.75)
        record.finish()
        data = record.asDict()
        self.assertEqual(data["durations"]["total"], 750.0)
        self.assertIsNone(data["requestHeadSize"])
        self.assertIsNone(data["responseHeadSize"])

    def test_unfinished(self) -> None:
        """
        L{TransactionRecord.asDict} does not finish the record; finishing
        takes C{responseComplete} as the end, and only once.
        """
        clocks = FakeClocks()
        record = clocks.record()
        clocks.advance(1)
        record.mark("requestHead")
        clocks.advance(1)
        record.mark("responseComplete")
        clocks.advance(1)
        data = record.asDict()
        self.assertIsNone(data["times"]["end"])
        self.assertIsNone(data["durations"]["total"])
        self.assertFalse(record.marked("end"))
        record.finish()
        clocks.advance(1)
        record.finish()
        self.assertEqual(record.asDict()["durations"]["total"], 1000.0)
        self.assertEqual(record.asDict()["times"]["end"], "2023-11-14T22:13:22.000000Z")

    def test_measuredHeadSizes(self) -> None:
        """
        Head sizes the server measured win over the computed ones.
        """
        record = successfulRecord(FakeClocks())
        record.requestHeadSize = 999
        record.responseHeadSize = 111
        data = record.asDict()
        self.assertEqual(
            (data["requestHeadSize"], data["responseHeadSize"]), (999, 111)
        )

    def test_headSizeLatin1(self) -> None:
        """
        Header text counts one octet per ISO-8859-1 character.
        """
        record = FakeClocks().record()
        record.status = 200
        record.reason = "OK"
        record.responseHeaders = [("X-Name", "caf\xe9")]
        # "HTTP/1.1 200 OK\r\n" + "X-Name: caf\xe9\r\n" + "\r\n"
        self.assertEqual(record.asDict()["responseHeadSize"], 17 + 14 + 2)


class RedactionTests(SynchronousTestCase):
    """
    Secrets in header values are redacted unless asked otherwise.
    """

    def record(self) -> TransactionRecord:
        record = FakeClocks().record()
        record.requestHeaders = [
            ("authorization", "Bearer eyJhbGciOi"),
            ("PROXY-AUTHORIZATION", "Basic YWxpY2U6c2VjcmV0"),
            ("Proxy-Authorization", "sometoken"),
            ("Cookie", "a=1; b=2"),
            ("Accept", "*/*"),
            ("X-Cookie-Like", "not a cookie"),
        ]
        record.responseHeaders = [
            ("set-cookie", "id=1; HttpOnly"),
            ("Set-Cookie", "other=2"),
            ("ETag", '"abc"'),
        ]
        return record

    def test_redactedByDefault(self) -> None:
        """
        C{Authorization} and C{Proxy-Authorization} keep only their scheme,
        C{Cookie} and C{Set-Cookie} lose their values, whatever the case of
        the name; other fields are untouched.
        """
        data = self.record().asDict()
        self.assertIs(data["headersRedacted"], True)
        self.assertEqual(
            data["requestHeaders"],
            [
                ["authorization", "Bearer " + REDACTED],
                ["PROXY-AUTHORIZATION", "Basic " + REDACTED],
                ["Proxy-Authorization", REDACTED],
                ["Cookie", REDACTED],
                ["Accept", "*/*"],
                ["X-Cookie-Like", "not a cookie"],
            ],
        )
        self.assertEqual(
            data["responseHeaders"],
            [["set-cookie", REDACTED], ["Set-Cookie", REDACTED], ["ETag", '"abc"']],
        )
        text = json.dumps(data)
        for secret in ("eyJhbGciOi", "YWxpY2U6c2VjcmV0", "sometoken", "a=1", "id=1"):
            self.assertNotIn(secret, text)

    def test_notRedacted(self) -> None:
        """
        With C{redact=False} (C{--history-headers=all}), values are kept.
        """
        record = self.record()
        data = record.asDict(redact=False)
        self.assertIs(data["headersRedacted"], False)
        self.assertEqual(
            data["requestHeaders"], [list(pair) for pair in record.requestHeaders]
        )
        self.assertEqual(
            data["responseHeaders"], [list(pair) for pair in record.responseHeaders]
        )


class EmitTransactionTests(SynchronousTestCase):
    """
    Tests for L{emitTransaction}.
    """

    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.log = Logger(
            namespace="twisted_proxy.test",
            observer=cast(ILogObserver, self.events.append),
        )

    def test_oneEvent(self) -> None:
        """
        One info event carries the record's dict in C{transaction}, with a
        console line for text readers.
        """
        record = successfulRecord(FakeClocks())
        emitTransaction(self.log, record)
        [event] = self.events
        self.assertEqual(event["log_level"], LogLevel.info)
        self.assertEqual(event["transaction"], record.asDict())
        self.assertEqual(event["transaction"]["durations"]["total"], 67.0)
        self.assertEqual(
            (event["client"], event["method"], event["target"], event["status"]),
            (("127.0.0.1", 50312), "GET", "http://example.com/a?x=1", 200),
        )
        self.assertEqual((event["bytes"], event["ms"]), (205, 67.0))
        # No console line: the brief's lines already say it.
        self.assertEqual(formatEvent(event), "")

    def test_withoutDetail(self) -> None:
        """
        With C{detail=False} the event has the summary fields but not the
        (costly) full record.
        """
        emitTransaction(self.log, successfulRecord(FakeClocks()), detail=False)
        [event] = self.events
        self.assertNotIn("transaction", event)
        self.assertEqual((event["status"], event["ms"]), (200, 67.0))

    def test_finishesAtEmission(self) -> None:
        """
        A record without C{responseComplete} ends when it is emitted.
        """
        clocks = FakeClocks()
        record = clocks.record()
        clocks.advance(1)
        record.mark("requestHead")
        clocks.advance(0.5)
        emitTransaction(self.log, record)
        [event] = self.events
        self.assertEqual(event["transaction"]["durations"]["total"], 500.0)
        self.assertEqual(event["ms"], 500.0)

    def test_once(self) -> None:
        """
        Emitting the same record again does nothing.
        """
        record = successfulRecord(FakeClocks())
        emitTransaction(self.log, record)
        emitTransaction(self.log, record)
        self.assertEqual(len(self.events), 1)

    def test_redact(self) -> None:
        """
        The C{redact} argument is passed through to the record.
        """
        emitTransaction(self.log, successfulRecord(FakeClocks()), redact=False)
        emitTransaction(self.log, successfulRecord(FakeClocks()))
        first, second = (event["transaction"] for event in self.events)
        self.assertIn(["Cookie", "session=abc"], first["requestHeaders"])
        self.assertIn(["Cookie", REDACTED], second["requestHeaders"])


class TempDirMixin:
    """
    A temporary directory removed after the test.
    """

    def makeDir(self) -> str:
        directory = tempfile.mkdtemp(prefix="twisted-proxy-test-")
        self.addCleanup(shutil.rmtree, directory)  # type: ignore[attr-defined]
        return directory


def readLines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def numberedEvent(number: int, padding: int = 0) -> dict[str, Any]:
    """
    A log event carrying a record whose C{sequence} is C{number}.
    """
    clocks = FakeClocks()
    record = clocks.record(sequence=number)
    clocks.advance(0.001)
    record.mark("requestHead")
    record.method = "GET"
    record.target = "http://example.com/" + "x" * padding
    record.finish()
    return {"log_format": "", "transaction": record.asDict()}


class HistoryObserverTests(TempDirMixin, SynchronousTestCase):
    """
    Tests for L{historyObserver}.
    """

    def observer(self, path: str, rotateSize: int = 0, keep: int = 10) -> Any:
        observer = historyObserver(path, rotateSize, keep)
        self.addCleanup(observer.close)
        return observer

    def allRecords(self, path: str) -> list[dict[str, Any]]:
        """
        Every record in C{path} and its rotated files, oldest first; fails
        the test if a line does not parse.
        """
        directory, name = os.path.split(path)
        rotated = sorted(
            (
                int(entry.rsplit(".", 1)[1])
                for entry in os.listdir(directory)
                if entry.startswith(name + ".")
            ),
            reverse=True,
        )
        records = []
        for suffix in [*("." + str(n) for n in rotated), ""]:
            for line in readLines(path + suffix):
                records.append(json.loads(line))
        return records

    def test_writesJSONLines(self) -> None:
        """
        Each record is one line of JSON, flushed before the observer returns.
        """
        path = os.path.join(self.makeDir(), "history.jsonl")
        observer = self.observer(path)
        events = [numberedEvent(1), numberedEvent(2)]
        observer(events[0])
        # Flushed per record: another reader sees it before any close.
        self.assertEqual(
            [json.loads(line) for line in readLines(path)], [events[0]["transaction"]]
        )
        observer(events[1])
        with open(path, "rb") as f:
            content = f.read()
        self.assertTrue(content.endswith(b"\n"))
        self.assertEqual(content.count(b"\n"), 2)
        self.assertEqual(
            [json.loads(line) for line in content.splitlines()],
            [event["transaction"] for event in events],
        )

    def test_ignoresOtherEvents(self) -> None:
        """
        Events without a C{transaction} dict write nothing.
        """
        path = os.path.join(self.makeDir(), "history.jsonl")
        observer = self.observer(path)
        observer({"log_format": "hello"})
        observer({"log_format": "", "transaction": "not a dict"})
        self.assertEqual(readLines(path), [])

    def test_fromLogger(self) -> None:
        """
        Events from L{emitTransaction} reach the file through a logger.
        """
        path = os.path.join(self.makeDir(), "history.jsonl")
        observer = self.observer(path)
        record = successfulRecord(FakeClocks())
        emitTransaction(Logger(observer=observer), record)
        [line] = readLines(path)
        self.assertEqual(json.loads(line), record.asDict())

    def test_rotationUnderLoad(self) -> None:
        """
        Rotating every few kilobytes while 5,000 records are written loses
        none: every line of every file parses, and each record is there once.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl")
        observer = self.observer(path, rotateSize=32 * 1024, keep=1000)
        count = 5000
        for number in range(count):
            observer(numberedEvent(number, padding=number % 97))
        records = self.allRecords(path)
        self.assertEqual(len(records), count)
        self.assertEqual([record["sequence"] for record in records], list(range(count)))
        rotated = [name for name in os.listdir(directory) if name != "history.jsonl"]
        self.assertGreater(len(rotated), 50)
        for name in rotated:
            self.assertLess(os.path.getsize(os.path.join(directory, name)), 34 * 1024)

    def test_keep(self) -> None:
        """
        Only C{keep} rotated files are kept; what remains are the newest
        records, without a gap.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl")
        observer = self.observer(path, rotateSize=2000, keep=3)
        for number in range(200):
            observer(numberedEvent(number))
        self.assertEqual(
            sorted(os.listdir(directory)),
            ["history.jsonl", "history.jsonl.1", "history.jsonl.2", "history.jsonl.3"],
        )
        sequences = [record["sequence"] for record in self.allRecords(path)]
        self.assertEqual(sequences, list(range(sequences[0], 200)))
        self.assertGreater(sequences[0], 0)

    def test_noRotation(self) -> None:
        """
        A rotate size of 0 never rotates.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl")
        observer = self.observer(path, rotateSize=0, keep=1)
        for number in range(100):
            observer(numberedEvent(number))
        self.assertEqual(os.listdir(directory), ["history.jsonl"])
        self.assertEqual(len(readLines(path)), 100)

    def test_reopenAfterRename(self) -> None:
        """
        After logrotate renamed the file away, C{reopen()} continues in a new
        file at the same path; the renamed file keeps what it had.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl")
        observer = self.observer(path)
        observer(numberedEvent(1))
        os.rename(path, path + "-20250102")
        observer(numberedEvent(2))  # still the open (renamed) file
        observer.reopen()
        observer(numberedEvent(3))
        self.assertEqual(
            [json.loads(line)["sequence"] for line in readLines(path + "-20250102")],
            [1, 2],
        )
        self.assertEqual(
            [json.loads(line)["sequence"] for line in readLines(path)], [3]
        )

    def test_rotationWhileRenamedAway(self) -> None:
        """
        While the file is renamed away (logrotate ran, C{SIGUSR1} not yet
        handled), size rotation is skipped and records go on to the renamed
        file; after C{reopen()} rotation resumes at the path.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl")
        observer = self.observer(path, rotateSize=1, keep=5)
        observer(numberedEvent(1))
        os.rename(path, path + "-old")
        observer(numberedEvent(2))
        observer(numberedEvent(3))
        self.assertEqual(os.listdir(directory), ["history.jsonl-old"])
        observer.reopen()
        observer(numberedEvent(4))
        observer(numberedEvent(5))
        self.assertEqual(
            [json.loads(line)["sequence"] for line in readLines(path + "-old")],
            [1, 2, 3],
        )
        self.assertEqual(
            [json.loads(line)["sequence"] for line in readLines(path + ".1")], [4]
        )
        self.assertEqual(
            [json.loads(line)["sequence"] for line in readLines(path)], [5]
        )

    def test_failedReopenKeepsWriting(self) -> None:
        """
        If the path cannot be opened again, C{reopen()} raises and records go
        on to the file that was open.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl")
        observer = self.observer(path)
        observer(numberedEvent(1))
        os.rename(path, path + ".old")
        os.mkdir(path)
        self.assertRaises(OSError, observer.reopen)
        observer(numberedEvent(2))
        self.assertEqual(
            [json.loads(line)["sequence"] for line in readLines(path + ".old")],
            [1, 2],
        )

    def test_crashMidRecord(self) -> None:
        """
        After a crash that left half a record at the end of the file, the
        restarted observer starts on a new line: only the half record is lost,
        and rotated files are untouched.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl")
        first = historyObserver(path, 1500, 10)
        for number in range(20):
            first(numberedEvent(number))
        first.close()
        rotatedBefore = self.rotatedContents(directory)
        self.assertTrue(rotatedBefore)
        line = json.dumps(numberedEvent(20)["transaction"])
        with open(path, "ab") as f:
            f.write(line[: len(line) // 2].encode("ascii"))
        # Restarted with a larger rotate size, so the next record lands
        # right after the fragment.
        second = self.observer(path, 1024 * 1024, 10)
        second(numberedEvent(21))
        self.assertEqual(readLines(path)[-2], line[: len(line) // 2])
        self.assertLessEqual(rotatedBefore, self.rotatedContents(directory))
        sequences = []
        fragments = 0
        for name in os.listdir(directory):
            for text in readLines(os.path.join(directory, name)):
                if text == line[: len(line) // 2]:
                    fragments += 1
                else:
                    sequences.append(json.loads(text)["sequence"])
        self.assertEqual(fragments, 1)
        self.assertEqual(sorted(sequences), [*range(20), 21])

    def rotatedContents(self, directory: str) -> set[bytes]:
        """
        The contents of the rotated files in C{directory}.
        """
        contents = set()
        for name in os.listdir(directory):
            if name != "history.jsonl":
                with open(os.path.join(directory, name), "rb") as f:
                    contents.add(f.read())
        return contents

    def test_closeStopsWriting(self) -> None:
        """
        After C{close()}, events are ignored; closing twice is harmless.
        """
        path = os.path.join(self.makeDir(), "history.jsonl")
        observer = historyObserver(path, 0, 1)
        observer(numberedEvent(1))
        observer.close()
        observer(numberedEvent(2))
        observer.close()
        observer.reopen()
        self.assertEqual(len(readLines(path)), 1)

    def test_fileMode(self) -> None:
        """
        A new file is created readable by owner and group only; an existing
        file keeps its mode.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl")
        self.observer(path)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o640)
        other = os.path.join(directory, "other.jsonl")
        with open(other, "w"):
            pass
        os.chmod(other, 0o600)
        self.observer(other)
        self.assertEqual(stat.S_IMODE(os.stat(other).st_mode), 0o600)

    def test_invalidArguments(self) -> None:
        """
        A negative rotate size or keeping fewer than one file is refused.
        """
        path = os.path.join(self.makeDir(), "history.jsonl")
        self.assertRaises(ValueError, historyObserver, path, -1, 10)
        self.assertRaises(ValueError, historyObserver, path, 1024, 0)
        self.assertFalse(os.path.exists(path))

    def test_missingDirectory(self) -> None:
        """
        A path in a directory that does not exist is an L{OSError}.
        """
        path = os.path.join(self.makeDir(), "nowhere", "history.jsonl")
        self.assertRaises(OSError, historyObserver, path, 0, 1)


class AccessLogTests(TempDirMixin, SynchronousTestCase):
    """
    Tests for L{accessLogObserver} and L{formatAccessLine}.
    """

    def test_squid(self) -> None:
        """
        Squid's native format: end time with milliseconds, elapsed, client,
        code/status, bytes, method, URL, user, hierarchy/peer, type.
        """
        record = successfulRecord(FakeClocks())
        record.finish()
        self.assertEqual(
            formatAccessLine(record.asDict(), "squid"),
            "1700000000.068     67 127.0.0.1 TCP_MISS/200 205 GET "
            "http://example.com/a?x=1 alice HIER_DIRECT/127.0.0.2 text/html",
        )

    def test_squidCodes(self) -> None:
        """
        Refusals, tunnels, cache hits and aborts get Squid's result codes.
        """
        clocks = FakeClocks()

        def line(**attributes: Any) -> str:
            record = clocks.record()
            clocks.advance(0.001)
            record.mark("requestHead")
            for name, value in attributes.items():
                setattr(record, name, value)
            record.finish()
            return formatAccessLine(record.asDict(), "squid").split()[3]

        self.assertEqual(line(kind="refused", status=407), "TCP_DENIED/407")
        self.assertEqual(line(kind="refused", status=400), "NONE_NONE/400")
        self.assertEqual(line(kind="tunnel", status=200), "TCP_TUNNEL/200")
        self.assertEqual(line(cacheStatus="hit", status=200), "TCP_HIT/200")
        self.assertEqual(
            line(cacheStatus="revalidated", status=200), "TCP_REFRESH_UNMODIFIED/200"
        )
        self.assertEqual(line(status=200, aborted=True), "TCP_MISS_ABORTED/200")
        self.assertEqual(line(aborted=True), "TCP_MISS_ABORTED/000")

    def test_squidFieldsHaveNoSpaces(self) -> None:
        """
        A value with spaces cannot shift the fields: it is percent-encoded.
        """
        clocks = FakeClocks()
        record = clocks.record()
        record.user = "alice smith"
        record.target = "http://example.com/a b"
        record.method = "GET"
        record.finish()
        fields = formatAccessLine(record.asDict(), "squid").split(" ")
        fields = [field for field in fields if field]
        self.assertEqual(len(fields), 10)
        self.assertEqual(fields[6], "http://example.com/a%20b")
        self.assertEqual(fields[7], "alice%20smith")
        self.assertEqual(fields[8], "HIER_NONE/-")
        self.assertEqual(fields[9], "-")

    def test_common(self) -> None:
        """
        Apache's common log format, time of the request head, in UTC.
        """
        record = successfulRecord(FakeClocks())
        record.finish()
        self.assertEqual(
            formatAccessLine(record.asDict(), "common"),
            "127.0.0.1 - alice [14/Nov/2023:22:13:20 +0000] "
            '"GET http://example.com/a?x=1 HTTP/1.1" 200 205',
        )

    def test_combined(self) -> None:
        """
        The combined format adds the referer and user agent, quoted with
        escapes.
        """
        record = successfulRecord(FakeClocks())
        record.requestHeaders.append(("Referer", 'http://r.example/"x"\\'))
        record.finish()
        self.assertEqual(
            formatAccessLine(record.asDict(), "combined"),
            "127.0.0.1 - alice [14/Nov/2023:22:13:20 +0000] "
            '"GET http://example.com/a?x=1 HTTP/1.1" 200 205 '
            '"http://r.example/\\"x\\"\\\\" "curl/8.5"',
        )

    def test_commonWithoutRequest(self) -> None:
        """
        Nothing known but the connection: dashes.
        """
        record = FakeClocks().record()
        record.finish()
        self.assertEqual(
            formatAccessLine(record.asDict(), "combined"),
            '127.0.0.1 - - [14/Nov/2023:22:13:20 +0000] "-" - - "-" "-"',
        )

    def test_unknownFormat(self) -> None:
        """
        An unknown format name is a L{ValueError} naming the choices.
        """
        path = os.path.join(self.makeDir(), "access.log")
        error = self.assertRaises(ValueError, accessLogObserver, path, "apache")
        self.assertIn("squid, common, combined", str(error))

    def test_observer(self) -> None:
        """
        The observer writes one line per transaction event, ignores other
        events, and continues in a new file after C{reopen()}.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "access.log")
        observer = accessLogObserver(path, "common")
        self.addCleanup(observer.close)
        log = Logger(observer=observer)
        emitTransaction(log, successfulRecord(FakeClocks()))
        log.info("not a transaction")
        os.rename(path, path + ".1")
        observer.reopen()
        emitTransaction(log, successfulRecord(FakeClocks(wall=T0 + 86400)))
        [first] = readLines(path + ".1")
        [second] = readLines(path)
        self.assertIn("[14/Nov/2023:22:13:20 +0000]", first)
        self.assertIn("[15/Nov/2023:22:13:20 +0000]", second)


class ParseSizeTests(SynchronousTestCase):
    """
    Tests for L{parseSize}.
    """

    def test_sizes(self) -> None:
        """
        Plain bytes and binary multiples, any case, optional B or iB.
        """
        for text, expected in [
            ("10M", 10485760),
            ("512k", 524288),
            ("512K", 524288),
            ("1G", 1073741824),
            ("2T", 2 << 40),
            ("1048576", 1048576),
            ("0", 0),
            ("1.5G", 1610612736),
            ("10MB", 10485760),
            ("10MiB", 10485760),
            ("100b", 100),
            (" 3 k ", 3072),
        ]:
            self.assertEqual(parseSize(text), expected, text)

    def test_invalid(self) -> None:
        """
        Anything else is a L{ValueError} that says what is expected.
        """
        for text in ["", "M", "-1", "1e3", "1_000", "10X", "1.", "ten", "10 MB B"]:
            error = self.assertRaises(ValueError, parseSize, text)
            self.assertIn(repr(text), str(error))
            self.assertIn("e.g. 10M", str(error))


class TimestampTests(SynchronousTestCase):
    """
    Tests for the timestamp helpers.
    """

    def test_format(self) -> None:
        """
        UTC, to the microsecond, with a Z.
        """
        self.assertEqual(formatTimestamp(T0 + 0.123456), "2023-11-14T22:13:20.123456Z")
        self.assertEqual(formatTimestamp(0), "1970-01-01T00:00:00.000000Z")

    def test_parse(self) -> None:
        """
        Z, offsets and naive (UTC) timestamps are accepted.
        """
        self.assertEqual(
            timestampMicroseconds("2023-11-14T22:13:20.123456Z"), 1700000000123456
        )
        self.assertEqual(
            timestampMicroseconds("2023-11-14T23:13:20.5+01:00"), 1700000000500000
        )
        self.assertEqual(timestampMicroseconds("2023-11-14T22:13:20"), 1700000000000000)
        self.assertEqual(parseTimestamp("1970-01-01T00:00:00Z").timestamp(), 0)
        self.assertRaises(ValueError, parseTimestamp, "yesterday")


class PurityTests(SynchronousTestCase):
    """
    The history module stays out of the reactor's way.
    """

    def test_noTwistedInternet(self) -> None:
        """
        Importing L{twisted_proxy.records.history} imports nothing from
        C{twisted.internet}.
        """
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        output = subprocess.check_output(
            [
                sys.executable,
                "-c",
                "import sys, twisted_proxy.records.history; "
                "print(sorted(m for m in sys.modules "
                "if m.startswith('twisted.internet')))",
            ],
            cwd=root,
        )
        self.assertEqual(output.strip(), b"[]")

    def test_phases(self) -> None:
        """
        The documented phases, in order.
        """
        self.assertEqual(
            PHASES,
            (
                "requestHead",
                "upstreamReady",
                "requestSent",
                "responseHead",
                "responseComplete",
            ),
        )
