"""
Cost per transaction record on the way to the history and access-log files.

Emits N finished transaction records (a keep-alive GET with typical
headers) through L{emitTransaction} into observers writing to files in a
temporary directory, and prints the CPU time per record (user + system, so
the write system calls count) of each stage:

    emit (no detail)     the summary event only (no history, no access log)
    emit (detail)        the event with the record's dict (nobody writes it)
    history              the dict written as JSON Lines by historyObserver
    access log           a Squid access-log line by accessLogObserver
    history + access     both observers (the dict is built once)

    python bench/records_cost.py [-n 100000] [--rounds 3] [--stage STAGE]

C{--stage} runs one stage (nodetail, detail, history, access, both), for
deterministic counts under a tool, e.g. instructions per record as the
difference of two runs::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python bench/records_cost.py --stage history -n 2000 --rounds 1
    (again with -n 6000; per record: the difference / 4000)

Buffered observers take a clock; this script gives them one that follows
real time and runs their timers between bursts of 100 records, as the
reactor would between reads.  Observers are closed (flushed) inside the
timed region, so the figure includes every write.  CPU time rather than
elapsed time, because the machine is shared; it is still noisy (caches,
frequency): the median of the rounds is printed, with the spread.
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, cast

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger

sys.path.insert(0, ".")

from twisted_proxy.records.emit import emitTransaction
from twisted_proxy.records.logfiles import accessLogObserver, historyObserver
from twisted_proxy.records.record import TransactionRecord

_BURST = 100

_REQUEST_HEADERS = [
    (b"Host", b"127.0.0.1:8000"),
    (b"User-Agent", b"ApacheBench/2.3"),
    (b"Accept", b"*/*"),
    (b"Proxy-Authorization", b"Basic YWxpY2U6c2VjcmV0"),
    (b"Cookie", b"session=abc"),
]
_RESPONSE_HEADERS = [
    (b"Server", b"TwistedWeb/26.10.0"),
    (b"Date", b"Tue, 01 Dec 2026 22:43:44 GMT"),
    (b"Content-Type", b"text/html"),
    (b"Content-Length", b"1024"),
    (b"Via", b"1.1 twisted-proxy"),
]


def _records(n: int) -> list[Any]:
    """
    C{n} finished records, as the server leaves them (header fields as the
    parser's bytes).
    """
    now = time.time()
    mono = time.monotonic()
    result = []
    for i in range(n):
        record = TransactionRecord(
            monoClock=time.monotonic,
            connectionId="c1",
            sequence=i,
            clientHost="127.0.0.1",
            clientPort=50312,
            acceptedWall=now,
            acceptedMono=mono,
        )
        for phase in ("requestHead", "upstreamReady", "requestSent", "responseHead"):
            record.mark(phase)
        record.method = "GET"
        record.target = "http://127.0.0.1:8000/1k"
        record.requestVersion = "HTTP/1.1"
        record.requestHeaders = _REQUEST_HEADERS
        record.destHost, record.destPort = "127.0.0.1", 8000
        record.peerHost, record.peerPort = "127.0.0.1", 8000
        record.connectionReused = True
        record.status, record.reason, record.responseVersion = 200, "OK", "HTTP/1.1"
        record.responseHeaders = _RESPONSE_HEADERS
        record.mark("responseComplete")
        record.bytesFromClient = 120
        record.bytesToUpstream = 110
        record.bytesFromUpstream = 1200
        record.bytesToClient = 1230
        result.append(record)
    return result


def _takesClock(factory: Callable[..., Any]) -> bool:
    return "clock" in inspect.signature(factory).parameters


class _RealTimeClock(Clock):
    """
    A L{Clock} that catches up with real time when told to, running the
    timers that fell due meanwhile (as a reactor does between reads).
    """

    def catchUp(self) -> None:
        self.advance(max(0.0, time.monotonic() - self.seconds()))

    def start(self) -> None:
        self.rightNow = time.monotonic()


def _observers(kind: str, directory: str, clock: _RealTimeClock) -> list[Any]:
    history = os.path.join(directory, "history.jsonl")
    access = os.path.join(directory, "access.log")
    extra: dict[str, Any] = {}
    if _takesClock(historyObserver):
        extra["clock"] = clock
    if kind == "history":
        return [historyObserver(history, 0, 1, **extra)]
    if kind == "access":
        return [accessLogObserver(access, "squid", **extra)]
    if kind == "both":
        return [
            historyObserver(history, 0, 1, **extra),
            accessLogObserver(access, "squid", **extra),
        ]
    return []


def _round(kind: str, n: int) -> float:
    """
    Seconds per record for one round of C{kind}.
    """
    records = _records(n)
    directory = tempfile.mkdtemp(prefix="records-cost-")
    try:
        clock = _RealTimeClock()
        clock.start()
        observers = _observers(kind, directory, clock)

        def publish(event: dict[str, Any]) -> None:
            for observer in observers:
                observer(event)

        # A function is an observer by its shape; it cannot declare so.
        log = Logger(namespace="bench", observer=cast(ILogObserver, publish))
        detail = kind != "nodetail"
        started = time.process_time()
        for i, record in enumerate(records):
            emitTransaction(log, record, detail=detail)
            if i % _BURST == _BURST - 1:
                clock.catchUp()
        for observer in observers:
            observer.close()
        elapsed = time.process_time() - started
        for name in os.listdir(directory):
            with open(os.path.join(directory, name), "rb") as f:
                lines = sum(1 for _ in f)
            assert lines == n, f"{name}: {lines} lines, expected {n}"
        return elapsed / n
    finally:
        shutil.rmtree(directory)


_KINDS = [
    ("nodetail", "emit (no detail)"),
    ("detail", "emit (detail)"),
    ("history", "history"),
    ("access", "access log (squid)"),
    ("both", "history + access"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100000, help="records per round (default 100000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per stage (default 3)")
    parser.add_argument("--stage", choices=[kind for kind, _ in _KINDS], help="run only this stage")
    args = parser.parse_args()
    _round("both", 1000)  # warm up imports and caches
    print(f"{'stage':<22}{'us/record':>10}  (median of {args.rounds}; min..max)")
    for kind, label in _KINDS:
        if args.stage is not None and kind != args.stage:
            continue
        figures = [_round(kind, args.n) * 1e6 for _ in range(args.rounds)]
        print(
            f"{label:<22}{statistics.median(figures):>10.2f}  "
            f"({min(figures):.2f}..{max(figures):.2f})"
        )


if __name__ == "__main__":
    main()
