"""
CPU cost of one proxied transaction, in process, without sockets.

Drives the real ProxyServerProtocol and UpstreamProtocol over in-memory
transports: a client sends a keep-alive GET, the upstream answers with a
1 KiB body, repeated N times on one connection (so the pooled upstream
connection is reused, as in the benchmark's figure (a)).  Prints the cost
per transaction; with --profile, the top functions by cumulative and by
own time (cProfile).

    python bench/microbench.py [-n 20000] [--profile] [--history PATH]

This measures the proxy's own code (parsing, policy, header rewriting,
logging and history events); kernel and reactor costs come on top and are
measured by run_bench.py.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time

from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, globalLogBeginner
from zope.interface import implementer

sys.path.insert(0, ".")

from twisted_proxy.proxy.config import ProxyConfig
from twisted_proxy.proxy.factory import ProxyFactory
from twisted_proxy.proxy.upstream import UpstreamPool


class _Transport:
    """
    The least a transport must do: collect writes, accept a producer.
    """

    disconnecting = False

    def __init__(self, peer: tuple[str, int]) -> None:
        self._peer = IPv4Address("TCP", *peer)
        self.written = 0
        self.producer = None

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writeSequence(self, seq) -> None:
        for data in seq:
            self.written += len(data)

    def getPeer(self):
        return self._peer

    def getHost(self):
        return IPv4Address("TCP", "127.0.0.1", 40000)

    def registerProducer(self, producer, streaming) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def loseConnection(self) -> None:
        self.disconnecting = True

    def abortConnection(self) -> None:
        self.disconnecting = True


@implementer(IStreamClientEndpoint)
class _Endpoint:
    def __init__(self, box: list) -> None:
        self.box = box

    def connect(self, factory):
        proto = factory.buildProtocol(None)
        proto.makeConnection(_Transport(("127.0.0.1", 8000)))
        self.box.append(proto)
        return succeed(proto)


REQUEST = (
    b"GET http://127.0.0.1:8000/1k HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
    b"User-Agent: wrk\r\nAccept: */*\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 26 Nov 2026 03:00:00 GMT\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: 1024\r\n"
    b"Last-Modified: Thu, 26 Nov 2026 02:00:00 GMT\r\nConnection: keep-alive\r\n"
    b'ETag: "abc-400"\r\nAccept-Ranges: bytes\r\n\r\n' + b"x" * 1024
)
# The same response, which a cache must not store.
UNCACHEABLE = RESPONSE.replace(b"Accept-Ranges: bytes\r\n", b"Cache-Control: no-store\r\n")


def run(n: int, cache: str = "off", detail: bool = False) -> float:
    clock = Clock()
    box: list = []
    pool = UpstreamPool(clock, lambda host, port: _Endpoint(box))
    config = ProxyConfig(pseudonym="bench")
    factory = ProxyFactory(
        config,
        clock,
        pool,
        cache=None if cache == "off" else config.newCache(clock.seconds),
        transactionDetail=detail,
    )
    response = RESPONSE if cache != "miss" else UNCACHEABLE
    proto = factory.buildProtocol(None)
    proto.makeConnection(_Transport(("127.0.0.1", 50000)))
    # Warm up: open the upstream connection.
    proto.dataReceived(REQUEST)
    box[0].dataReceived(response)
    upstream = box[0]
    hit = cache == "hit"
    start = time.perf_counter()
    for _ in range(n):
        proto.dataReceived(REQUEST)
        if not hit:
            upstream.dataReceived(response)
    elapsed = time.perf_counter() - start
    assert len(box) == 1, "the upstream connection was not reused"
    return elapsed / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20000, help="transactions (default 20000)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile breakdown")
    parser.add_argument(
        "--history", help="also write the JSON history to this file (as --history would)"
    )
    parser.add_argument(
        "--console",
        action="store_true",
        help="format every event as twistd's text log would (to /dev/null)",
    )
    parser.add_argument(
        "--cache",
        choices=("off", "miss", "hit"),
        default="off",
        help="no cache (default); a cache and responses it must not store; a cache that "
        "answers every request after the first",
    )
    args = parser.parse_args()
    observers: list[ILogObserver] = []
    if args.history:
        from twisted_proxy.records.logfiles import historyObserver

        observers.append(historyObserver(args.history, 0, 1))
    if args.console:
        from twisted.logger import textFileLogObserver

        observers.append(textFileLogObserver(open("/dev/null", "w")))
    globalLogBeginner.beginLoggingTo(observers, redirectStandardIO=False, discardBuffer=True)
    detail = bool(args.history)
    run(1000, args.cache, detail)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        per = run(args.n, args.cache, detail)
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(25)
    else:
        per = min(run(args.n, args.cache, detail) for _ in range(3))
    print(
        "{:.1f} us per proxied transaction ({} transactions, cache: {}, observers: {})".format(
            per * 1e6,
            args.n,
            args.cache,
            ", ".join(
                name for name, on in (("history", args.history), ("console", args.console)) if on
            )
            or "none",
        )
    )


if __name__ == "__main__":
    main()
