"""
Helpers for the records tests (C{tests/test_history*.py}): fake clocks that
build records, a finished record of every field, numbered record events, and
temporary directories.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from twisted.internet.task import Clock

from tests._typing import TestCaseMixin
from twisted_proxy.records.record import TransactionRecord

# 2023-11-14T22:13:20Z
T0 = 1700000000.0

# The header fields of successfulRecord's request and response.
REQUEST_FIELDS: list[tuple[str, str]] = [
    ("Host", "example.com"),
    ("User-Agent", "curl/8.5"),
    ("Proxy-Authorization", "Basic YWxpY2U6c2VjcmV0"),
    ("Cookie", "session=abc"),
]
RESPONSE_FIELDS: list[tuple[str, str]] = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Set-Cookie", "id=7; Path=/"),
    ("Content-Length", "100"),
]


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
    record.requestHeaders = list(REQUEST_FIELDS)
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
    record.responseHeaders = list(RESPONSE_FIELDS)
    clocks.advance(0.005)
    record.mark("responseComplete")
    record.bytesFromClient = 140
    record.bytesToUpstream = 120
    record.bytesFromUpstream = 190
    record.bytesToClient = 205
    record.cacheStatus = "miss"
    return record


class TempDirMixin(TestCaseMixin):
    """
    A temporary directory removed after the test.
    """

    def makeDir(self) -> str:
        directory = tempfile.mkdtemp(prefix="twisted-proxy-test-")
        self.addCleanup(shutil.rmtree, directory)
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
