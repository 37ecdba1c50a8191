# -*- test-case-name: tests.test_history -*-
"""
Tests for L{twisted_proxy.records.record} (the transaction record) and
L{twisted_proxy.records.emit} (its event).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any, cast

from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests._records import REQUEST_FIELDS, RESPONSE_FIELDS, T0, FakeClocks, successfulRecord
from twisted_proxy.http.fields import REDACTED, redactHeaders
from twisted_proxy.records.emit import emitTransaction
from twisted_proxy.records.record import (
    DURATIONS,
    PHASES,
    TransactionRecord,
    formatTimestamp,
    parseTimestamp,
    timestampMicroseconds,
)


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
                    "connectStart": None,
                    "upstreamReady": "2023-11-14T22:13:20.011000Z",
                    "requestSent": "2023-11-14T22:13:20.013000Z",
                    "responseHead": "2023-11-14T22:13:20.063000Z",
                    "responseComplete": "2023-11-14T22:13:20.068000Z",
                    "end": "2023-11-14T22:13:20.068000Z",
                },
                "offsets": {
                    "requestHead": 1.0,
                    "connectStart": None,
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
        import twisted_proxy.records.record

        doc = twisted_proxy.records.record.__doc__ or ""
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
        Durations are measured on the monotonic clock, and the timestamps
        are the acceptance's wall-clock time plus monotonic time since: a
        wall clock stepped back by an hour mid-transaction changes neither,
        so timestamps always agree with durations.
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
        self.assertEqual(data["times"]["requestSent"], "2023-11-14T22:13:20.875000Z")

    def test_upstreamConnectFromConnectStart(self) -> None:
        """
        For a new upstream connection, upstreamConnect is the connecting
        itself (connectStart -> upstreamReady), not the work before it.
        """
        clocks = FakeClocks()
        record = clocks.record()
        clocks.advance(0.001)
        record.mark("requestHead")
        clocks.advance(0.0005)
        record.mark("connectStart")
        clocks.advance(0.00025)
        record.mark("upstreamReady")
        record.finish()
        data = record.asDict()
        self.assertEqual(data["durations"]["upstreamConnect"], 0.25)
        self.assertEqual(data["offsets"]["connectStart"], 1.5)

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
        self.assertEqual([data["durations"][name] for name in DURATIONS[:-1]], [None] * 4)
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

    def test_headSizesFromBytes(self) -> None:
        """
        Header fields as the parser's bytes (as the server hands them over)
        are measured and decoded the same as the same fields as text.
        """
        asText = successfulRecord(FakeClocks())
        asBytes = successfulRecord(FakeClocks())
        asBytes.requestHeaders = [
            (n.encode("latin-1"), v.encode("latin-1")) for n, v in REQUEST_FIELDS
        ]
        asBytes.responseHeaders = [
            *((n.encode("latin-1"), v.encode("latin-1")) for n, v in RESPONSE_FIELDS),
            (b"X-Name", b"caf\xe9"),
        ]
        asText.responseHeaders = [*RESPONSE_FIELDS, ("X-Name", "caf\xe9")]
        for redact in (True, False):
            self.assertEqual(asBytes.asDict(redact), asText.asDict(redact))

    def test_markEmitted(self) -> None:
        """
        A record is claimed for emission once.
        """
        record = FakeClocks().record()
        self.assertTrue(record.markEmitted())
        self.assertFalse(record.markEmitted())


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

    def test_oneRule(self) -> None:
        """
        The record redacts by the proxy's one rule, the one its log lines
        use (L{twisted_proxy.http.fields.redactHeaders}).
        """
        record = self.record()
        data = record.asDict()
        self.assertEqual(
            data["requestHeaders"], [list(pair) for pair in redactHeaders(record.requestHeaders)]
        )
        self.assertEqual(
            data["responseHeaders"],
            [list(pair) for pair in redactHeaders(record.responseHeaders)],
        )

    def test_notRedacted(self) -> None:
        """
        With C{redact=False} (C{--history-headers=all}), values are kept.
        """
        record = self.record()
        data = record.asDict(redact=False)
        self.assertIs(data["headersRedacted"], False)
        self.assertEqual(data["requestHeaders"], [list(pair) for pair in record.requestHeaders])
        self.assertEqual(data["responseHeaders"], [list(pair) for pair in record.responseHeaders])


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

    def test_formatLikeDatetime(self) -> None:
        """
        The formatter gives exactly what C{datetime} gives, rounding the
        fraction half to even to the microsecond and carrying into the
        seconds (and the date), for instants spread over years and for
        those next to a second's edge.
        """

        def reference(when: float) -> str:
            text = datetime.fromtimestamp(when, UTC).isoformat(timespec="microseconds")
            return text.replace("+00:00", "Z")

        generator = random.Random(12)
        instants = [generator.uniform(0, 4e9) for _ in range(2000)]
        for second in (0, 59, 86399, 951782399, 1700000000, 4102444799):
            for fraction in (
                0.0,
                0.4999995,
                0.5000005,
                0.9999994,
                0.9999995,
                0.9999996,
                0.9999999999,
                1e-7,
                5e-7,
            ):
                instants.append(second + fraction)
        instants.append(-1.5)
        for when in instants:
            self.assertEqual(formatTimestamp(when), reference(when), repr(when))

    def test_parse(self) -> None:
        """
        Z, offsets and naive (UTC) timestamps are accepted.
        """
        self.assertEqual(timestampMicroseconds("2023-11-14T22:13:20.123456Z"), 1700000000123456)
        self.assertEqual(timestampMicroseconds("2023-11-14T23:13:20.5+01:00"), 1700000000500000)
        self.assertEqual(timestampMicroseconds("2023-11-14T22:13:20"), 1700000000000000)
        self.assertEqual(parseTimestamp("1970-01-01T00:00:00Z").timestamp(), 0)
        self.assertRaises(ValueError, parseTimestamp, "yesterday")


class PurityTests(SynchronousTestCase):
    """
    The records layer stays out of the reactor's way.
    """

    def test_noTwistedInternet(self) -> None:
        """
        Importing every module of L{twisted_proxy.records} imports nothing
        from C{twisted.internet}: the clock that drives buffered writes is
        passed in.
        """
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        output = subprocess.check_output(
            [
                sys.executable,
                "-c",
                "import sys, twisted_proxy.records.record, twisted_proxy.records.emit, "
                "twisted_proxy.records.logfiles, twisted_proxy.records.accesslog, "
                "twisted_proxy.records.stats, twisted_proxy.records.units; "
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
                "connectStart",
                "upstreamReady",
                "requestSent",
                "responseHead",
                "responseComplete",
            ),
        )
