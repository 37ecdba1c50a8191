"""
What one console line costs: twistd's own text observer (a write and a
flush per line) against the proxy's console (twisted_proxy.app.console:
filtered, formatted with a cached timestamp, written in batches).

Emits the brief's kind of line (rendered text, log_system "proxy") through
a log publisher to each observer, writing to a real file, and prints the
median cost per line over several rounds.

    python bench/console_cost.py [-n 200000] [--rounds 5] [--dir /tmp]

The buffered console is flushed by a test clock every --batch lines (at
load, a 50 ms timer flushes hundreds of lines at once; at 1 line per 50 ms
it flushes one, and then the cost does not matter).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from twisted.internet.task import Clock
from twisted.logger import Logger, LogPublisher, textFileLogObserver

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted_proxy.app.console import Console
from twisted_proxy.records.emit import emitEvent

LINE = (
    "Request has been received: GET http://127.0.0.1:8000/index.txt HTTP/1.1\\r\\n"
    "Host: 127.0.0.1:8000\\r\\nUser-Agent: curl/7.88.1\\r\\nAccept: */*\\r\\n\\r\\n"
    "  [03:24:48.206578]"
)


def perLine(observer, n: int, clock: Clock | None, batch: int) -> float:
    publisher = LogPublisher(observer)
    log = Logger(namespace="twisted_proxy.proxy.server.ProxyServerProtocol", observer=publisher)
    start = time.perf_counter()
    for i in range(n):
        emitEvent(log, LINE, {"log_system": "proxy", "peer": ("127.0.0.1", 5000)})
        if clock is not None and i % batch == batch - 1:
            clock.advance(1)
    if clock is not None:
        clock.advance(1)
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200000, help="lines per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=200, help="lines per flush (buffered)")
    parser.add_argument("--dir", default=None, help="where to write the files")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(dir=args.dir)
    results: dict[str, list[float]] = {"twistd text observer": [], "proxy console": []}
    try:
        for _ in range(args.rounds):
            path = os.path.join(directory, "twistd.log")
            with open(path, "w") as f:
                results["twistd text observer"].append(
                    perLine(textFileLogObserver(f), args.n, None, args.batch)
                )
            with open(path, "w") as f:
                clock = Clock()
                console = Console(f)
                console.startBuffering(clock)
                results["proxy console"].append(perLine(console, args.n, clock, args.batch))
                console.stopBuffering()
    finally:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)
    for name, values in results.items():
        print(
            "{:22s} median {:6.2f} us per line (min {:.2f}, max {:.2f}; {} rounds of {})".format(
                name,
                statistics.median(values) * 1e6,
                min(values) * 1e6,
                max(values) * 1e6,
                args.rounds,
                args.n,
            )
        )


if __name__ == "__main__":
    main()
