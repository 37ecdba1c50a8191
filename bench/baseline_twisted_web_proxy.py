#!/usr/bin/env python3
"""Twisted's own forward proxy, as the same-framework baseline for bench/.

This is the textbook ``twisted.web.proxy`` forward proxy: an
``twisted.web.http.HTTPFactory`` whose protocol is ``twisted.web.proxy.Proxy``.
It is not part of twisted-proxy; the benchmark harness runs it beside our
proxy so that every figure can be read as a ratio to "plain Twisted".

Usage::

    python3 bench/baseline_twisted_web_proxy.py PORT [--log FILE]

It listens on 127.0.0.1:PORT only.  Log events (one access-log line per
request, as ``HTTPFactory`` writes them) go to FILE, default standard output,
so that it does the same per-request logging work that ``twistd -l LOGFILE``
gives our proxy.
"""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="twisted.web.proxy forward proxy on 127.0.0.1:PORT (benchmark baseline)"
    )
    parser.add_argument("port", type=int, help="TCP port to listen on (127.0.0.1)")
    parser.add_argument("--log", default="-", help="log file, '-' for standard output (default)")
    args = parser.parse_args(argv)

    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver
    from twisted.web import http, proxy

    logFile = sys.stdout if args.log == "-" else open(args.log, "a", buffering=1)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(logFile)], redirectStandardIO=False)

    factory = http.HTTPFactory()
    # As Twisted's own proxy example does; its annotations cover neither the
    # protocol class assigned here nor HTTPFactory as a listenTCP factory.
    factory.protocol = proxy.Proxy  # type: ignore[method-assign, assignment]
    reactor.listenTCP(args.port, factory, interface="127.0.0.1")  # type: ignore[arg-type]
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
