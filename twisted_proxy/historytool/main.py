# -*- test-case-name: tests.test_historytool -*-
"""
The C{proxyhistory} command line: L{main} (testable: argument list and
streams in, exit status out) and L{run} (the console script).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, NoReturn

from .. import __version__
from .filters import UsageError, buildFilters
from .har import harFromRecords, writeHar
from .listing import listing
from .read import PROG, readRecords, startMicroseconds
from .summary import summarize, summaryText

__all__ = ["main", "run"]


class _Parser(argparse.ArgumentParser):
    """
    An argument parser that raises L{UsageError} instead of printing and
    exiting, so L{main} stays in control of its streams and exit status.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def buildParser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        add_help=False,
        description=(
            "List, summarise or export the transaction history written by "
            "twisted-proxy (--history). FILEs may be rotated and .gz files."
        ),
        epilog=(
            "Times are UTC; an ISO time without an offset is taken as UTC. "
            "Relative times (10m, 2h, 1d) count back from now. Durations take "
            "us, ms, s or m (a bare number is milliseconds). Exit status: 0 ok, "
            "1 a file could not be read, 2 usage error."
        ),
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="history files")
    filters = parser.add_argument_group("filters (repeat an option to allow several)")
    filters.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="PATTERN",
        help="destination host, shell wildcards allowed (*.example.com)",
    )
    filters.add_argument(
        "--status",
        action="append",
        default=[],
        metavar="SPEC",
        help="status code or class: 404, 2xx, 4xx,5xx",
    )
    filters.add_argument(
        "--since", metavar="WHEN", help="started at or after WHEN (ISO time or 10m)"
    )
    filters.add_argument("--until", metavar="WHEN", help="started before WHEN (ISO time or 10m)")
    filters.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="client address or network (10.0.0.0/8)",
    )
    filters.add_argument(
        "--slower-than",
        dest="slowerThan",
        metavar="DURATION",
        help="total time above DURATION (500ms, 2s)",
    )
    output = parser.add_argument_group("output (default: one line per transaction)")
    output.add_argument(
        "--summary",
        action="store_true",
        help="totals, status classes, bytes and latency percentiles per host",
    )
    output.add_argument(
        "--har", metavar="OUT", help="write an HTTP Archive 1.2 file (- for stdout)"
    )
    output.add_argument(
        "--json",
        action="store_true",
        help="records as JSON Lines (with --summary: the summary as JSON)",
    )
    parser.add_argument("-h", "--help", action="store_true", help="show this help")
    parser.add_argument("--version", action="store_true", help="show the version")
    return parser


def main(
    argv: Sequence[str],
    stdout: IO[str],
    stderr: IO[str],
    now: Callable[[], float] = time.time,
) -> int:
    """
    Run C{proxyhistory}.

    @param argv: the arguments (without the program name).
    @param stdout: where output goes.
    @param stderr: where diagnostics go.
    @param now: the current POSIX time, for relative C{--since}/C{--until}.
    @return: the exit status: 0 ok, 1 a file could not be read or the HAR
        file written, 2 usage error.
    """
    parser = buildParser()
    if any(arg in ("-h", "--help") for arg in argv):
        stdout.write(parser.format_help())
        return 0
    if "--version" in argv:
        stdout.write(f"{PROG} {__version__}\n")
        return 0
    try:
        args = parser.parse_args(list(argv))
        if args.har is not None and (args.summary or args.json):
            raise UsageError("--har cannot be combined with --summary or --json")
        filters = buildFilters(args, now())
    except UsageError as e:
        stderr.write(parser.format_usage())
        stderr.write(f"{PROG}: error: {e}\n")
        return 2

    records, ok = readRecords(args.files, stderr)
    selected = [record for record in records if all(check(record) for check in filters)]
    selected.sort(key=startMicroseconds)

    if args.har is not None:
        try:
            writeHar(harFromRecords(selected), args.har, stdout)
        except OSError as e:
            stderr.write(f"{PROG}: {args.har}: cannot write: {e.strerror or e}\n")
            return 1
    elif args.summary:
        summary = summarize(selected)
        if args.json:
            stdout.write(json.dumps(summary, indent=2) + "\n")
        else:
            stdout.write("\n".join(summaryText(summary)) + "\n")
    elif args.json:
        for record in selected:
            stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    else:
        for line in listing(selected):
            stdout.write(line + "\n")
    return 0 if ok else 1


def run() -> NoReturn:
    """
    The C{proxyhistory} console script.
    """
    try:
        status = main(sys.argv[1:], sys.stdout, sys.stderr)
        sys.stdout.flush()
    except BrokenPipeError:
        # Output piped into something like head(1) that stopped reading.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        status = 1
    except KeyboardInterrupt:
        status = 130
    sys.exit(status)
