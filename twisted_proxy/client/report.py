# -*- test-case-name: tests.test_client_report -*-
"""
What C{proxyclient} prints: L{TextReporter} (the brief's lines, for
people) and L{JSONReporter} (one JSON object per line, for scripts), both
L{twisted_proxy.client.session.Reporter}s.
"""

from __future__ import annotations

import codecs
import json
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TextIO

from twisted_proxy.http.framing import ResponseHead

from .address import authorityForm
from .config import Config
from .errors import printable
from .mac import MacAddress
from .runs import (
    PHASES,
    Run,
    exitCode,
    proxyStatusOf,
    responseHeadBytes,
    runExitCode,
)
from .session import PREVIEW_BYTES, Reporter, Session
from .stats import summarize

__all__ = [
    "TextOutput",
    "TextReporter",
    "JSONReporter",
    "bodyPreview",
    "escapeHead",
    "clockTime",
    "isoTime",
]


class TextOutput(Protocol):
    """
    Where a reporter writes its report: standard output, or the guarded
    standard output of C{proxyclient} (L{twisted_proxy.client.main.GuardedOutput}).
    """

    def write(self, text: str, /) -> object: ...

    def flush(self) -> object: ...


_PREVIEW_LINES = 10


def escapeHead(head: bytes) -> str:
    """
    A message head on one line, as the brief shows it: CR and LF as C{\\r}
    and C{\\n}, other control bytes as C{\\xNN}.
    """
    out = []
    for c in head.decode("latin-1"):
        if c == "\r":
            out.append("\\r")
        elif c == "\n":
            out.append("\\n")
        elif c < " " or "\x7f" <= c < "\xa0":
            out.append("\\x{:02x}".format(ord(c)))
        else:
            out.append(c)
    return "".join(out)


def clockTime(seconds: float) -> str:
    """
    A local time of day with milliseconds: C{12:34:56.123}.
    """
    moment = datetime.fromtimestamp(seconds)
    return moment.strftime("%H:%M:%S.") + "{:03d}".format(moment.microsecond // 1000)


def isoTime(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="milliseconds")


_TEXT_TYPES = (
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
)


def bodyPreview(
    head: ResponseHead, data: bytes, total: int, maxLines: int = _PREVIEW_LINES
) -> list[str]:
    """
    The lines that show a body by default: the first C{maxLines} lines of a
    text body, or a note for a binary one.

    @param data: the start of the body.
    @param total: the body's full length.
    """
    if total == 0:
        return []
    contentType = (head.get(b"content-type") or b"").decode("latin-1").lower()
    mime, _, params = contentType.partition(";")
    mime = mime.strip()
    charset = "utf-8"
    match = re.search(r"charset\s*=\s*\"?([A-Za-z0-9._:-]+)", params)
    if match:
        charset = match.group(1)
    encoded = (head.get(b"content-encoding") or b"identity").strip().lower()
    textual = encoded == b"identity" and (
        mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith(("+json", "+xml"))
    )
    if encoded == b"identity" and not mime:
        try:
            data.decode("utf-8")
            textual = True
        except UnicodeDecodeError as e:
            # A character cut at the end of the preview is still text.
            textual = e.start >= len(data) - 3 and len(data) == PREVIEW_BYTES
    if not textual:
        kind = mime or "unknown type"
        if encoded != b"identity":
            kind += ", " + encoded.decode("latin-1") + "-encoded"
        return ["[{} bytes of {}: not shown; --output FILE saves the body]".format(total, kind)]
    try:
        text = data.decode(charset, "replace")
    except LookupError:
        text = data.decode("utf-8", "replace")
    lines = text.splitlines()
    shown = ["  " + printable(line) for line in lines[:maxLines]]
    if len(lines) > maxLines or total > len(data):
        shown.append("  [... {} bytes in all; --show-body prints the whole body]".format(total))
    return shown


class TextReporter(Reporter):
    """
    The brief's output, for people.  With C{--count}, one line per run and a
    statistics table instead of the full exchange.
    """

    def __init__(
        self,
        config: Config,
        out: TextOutput,
        err: TextIO,
        wallClock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._wallClock = wallClock
        self._out = out
        self._err = err
        self._single = config.count == 1
        self.streamsBody = self._single and config.showBody
        self._decoder: Any = None
        self._endsLine = True

    def _write(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()

    def prepare(self) -> None:
        clockTime(self._wallClock())

    def tunnelOpened(self, run: Run, wallTime: float) -> None:
        if run.number != 1:
            return
        head = run.tunnelHead
        assert head is not None
        self._write(
            "Tunnel has been opened: CONNECT {} HTTP/1.1 -> HTTP/{} {} {}  [{}]".format(
                authorityForm(self._config.target),
                head.version.decode(),
                head.status,
                printable(head.reason.decode("latin-1")),
                clockTime(wallTime),
            )
        )

    def requestSent(self, run: Run) -> None:
        if run.number != 1:
            return
        route = self._config.route
        if route.direct:
            self._write(
                "Connected to {} directly, not through a proxy ({}).".format(
                    route.address, route.bypass
                )
            )
        line = "Request has been sent: " + escapeHead(self._config.shownHead)
        if self._config.requestBody:
            line += " + {}-byte body".format(len(self._config.requestBody))
        self._write(line + "  [{}]".format(clockTime(run.wall["sent"])))

    def responseHead(self, run: Run) -> None:
        if not self._single:
            return
        head = run.head
        assert head is not None
        self._write(
            "Response has been received: {}  [{}]".format(
                escapeHead(responseHeadBytes(head)), clockTime(run.wall["received"])
            )
        )
        proxyStatus = proxyStatusOf(head)
        if proxyStatus is not None:
            self._write("Proxy-Status: " + printable(proxyStatus))
        if self._config.showBody:
            charset = "utf-8"
            match = re.search(
                rb"charset\s*=\s*\"?([A-Za-z0-9._:-]+)",
                head.get(b"content-type") or b"",
            )
            if match:
                charset = match.group(1).decode("ascii")
            try:
                self._decoder = codecs.getincrementaldecoder(charset)("replace")
            except LookupError:
                self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def bodyReceived(self, run: Run, data: bytes) -> None:
        if self._single and self._decoder is not None:
            self._writeBody(self._decoder.decode(data))

    def _writeBody(self, text: str) -> None:
        if text:
            self._out.write(text)
            self._out.flush()
            self._endsLine = text.endswith("\n")

    def runFinished(self, run: Run) -> None:
        if self._single:
            self._finishSingle(run)
        else:
            self._finishOne(run)
        self._reportProblem(run)

    def _finishSingle(self, run: Run) -> None:
        if self._decoder is not None:
            self._writeBody(self._decoder.decode(b"", True))
            if not self._endsLine:
                self._write("")
            self._decoder = None
        elif run.head is not None:
            for line in bodyPreview(run.head, run.preview, run.bodyBytes):
                self._write(line)
        if run.complete:
            total = run.marks["end"] - run.marks["start"]
            self._write("Round-trip time: {:.3f} seconds".format(total))
            if self._config.timing:
                self._writeTiming(run)

    def _writeTiming(self, run: Run) -> None:
        phases = run.phasesMs()
        curl = run.curlVariables()
        curlFor = {
            "namelookup": ["time_namelookup"],
            "connect": ["time_connect"],
            "tls": ["time_appconnect"],
            "send": ["time_pretransfer", "time_posttransfer"],
            "wait": ["time_starttransfer"],
            "receive": ["time_total"],
        }
        self._write("Timing:")
        for key, label in PHASES:
            value = phases[key]
            if value is None:
                continue
            names = curlFor.get(key, [])
            variables = " ".join(
                "{}={:.6f}".format(n, v) for n in names if (v := curl[n]) is not None
            )
            self._write("  {:<20} {:>10.3f} ms  {}".format(label, value, variables).rstrip())
        self._write(
            "  http_code={http_code} size_download={size_download} "
            "size_header={size_header} size_request={size_request} "
            "speed_download={speed_download} num_connects={num_connects}".format(
                size_request=len(self._config.requestHead) + len(self._config.requestBody),
                **curl,
            )
        )

    def _finishOne(self, run: Run) -> None:
        count = self._config.count
        if run.head is None:
            self._write("Run {}/{}: failed".format(run.number, count))
            return
        state = "complete" if run.complete else "incomplete"
        line = "Run {}/{}: {} {}, {} body bytes, ".format(
            run.number,
            count,
            run.head.status,
            printable(run.head.reason.decode("latin-1")),
            run.bodyBytes,
        )
        total = run.phasesMs()["total"] if run.complete else None
        if total is not None:
            line += "{:.3f} ms".format(total)
        else:
            line += state
        line += ", " + ("new connection" if run.newConnection else "reused connection")
        self._write(line)
        if self._config.timing and run.complete:
            phases = run.phasesMs()
            self._write(
                "  "
                + "  ".join(
                    "{} {:.3f}".format(key, value)
                    for key, _ in PHASES
                    if (value := phases[key]) is not None
                )
                + " (ms)"
            )

    def _reportProblem(self, run: Run) -> None:
        problem = run.problem
        if problem is not None and not problem.quiet:
            self._err.write("proxyclient: {}\n".format(problem.message))
            self._err.flush()

    def finished(self, runs: list[Run], mac: MacAddress | None, connections: int) -> None:
        if not self._single:
            self._writeStatistics(runs, connections)
        if mac is not None:
            self._write("Physical MAC Address: " + mac.describe())

    def _writeStatistics(self, runs: list[Run], connections: int) -> None:
        complete = [r for r in runs if r.complete]
        self._write(
            "Statistics over {} of {} runs on {} connection{} "
            "(median: middle value; p90: nearest rank):".format(
                len(complete),
                self._config.count,
                connections,
                "" if connections == 1 else "s",
            )
        )
        if not complete:
            self._write("  no run completed")
            return
        self._write(
            "  {:<20} {:>10} {:>10} {:>10} {:>10} {:>10}".format(
                "phase (ms)", "min", "mean", "median", "p90", "max"
            )
        )
        for key, values in _phaseValues(complete).items():
            s = summarize(values)
            label = dict(PHASES)[key]
            self._write(
                "  {:<20} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f}".format(
                    label, s["min"], s["mean"], s["median"], s["p90"], s["max"]
                )
            )
        statuses = _statusCounts(complete)
        bodyBytes = sum(r.bodyBytes for r in complete)
        self._write(
            "  status {}; {} body bytes in all".format(
                ", ".join("{} x{}".format(k, v) for k, v in statuses.items()), bodyBytes
            )
        )


def _phaseValues(runs: list[Run]) -> dict[str, list[float]]:
    """
    Each phase's durations over C{runs} (phases that did not happen left
    out), in the order of L{PHASES}.
    """
    values: dict[str, list[float]] = {}
    for key, _ in PHASES:
        got = [v for v in (r.phasesMs()[key] for r in runs) if v is not None]
        if got:
            values[key] = got
    return values


def _statusCounts(runs: list[Run]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in runs:
        if r.head is not None:
            key = str(r.head.status)
            counts[key] = counts.get(key, 0) + 1
    return counts


class JSONReporter(Reporter):
    """
    One JSON object per line: one per run, then a summary after C{--count}
    runs.
    """

    def __init__(self, config: Config, out: TextOutput, err: TextIO, session: Session) -> None:
        self._config = config
        self._out = out
        self._err = err
        self._session = session

    def prepare(self) -> None:
        isoTime(self._session.env.wallClock())
        json.dumps({"warm": [1.5, None]})

    def _emit(self, obj: dict[str, Any]) -> None:
        self._out.write(json.dumps(obj) + "\n")
        self._out.flush()

    def runFinished(self, run: Run) -> None:
        config = self._config
        head = run.head
        mac = self._session.mac
        error = run.error
        problem = run.problem
        if problem is not None and not problem.quiet:
            self._err.write("proxyclient: {}\n".format(problem.message))
            self._err.flush()
        self._emit(
            {
                "type": "run",
                "run": run.number,
                "of": config.count,
                "url": config.target.url,
                "proxy": config.proxy,
                "no_proxy": config.route.bypass,
                "proxy_user": config.route.credentials.user
                if config.route.credentials is not None and not config.route.direct
                else None,
                "method": config.method,
                "request": config.shownHead.decode("latin-1"),
                "request_body_bytes": len(config.requestBody),
                "new_connection": run.newConnection,
                "connection": run.connectionNumber,
                "local_address": run.localAddress,
                "tunnel_status": run.tunnelHead.status if run.tunnelHead else None,
                "tls_version": run.tlsVersion,
                "status": head.status if head else None,
                "reason": head.reason.decode("latin-1") if head else None,
                "http_version": head.version.decode() if head else None,
                "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in head.headers]
                if head
                else None,
                "proxy_status": proxyStatusOf(head) or (error.proxyStatus if error else None),
                "started_at": isoTime(run.wall.get("start")),
                "sent_at": isoTime(run.wall.get("sent")),
                "received_at": isoTime(run.wall.get("received")),
                "timings_ms": run.phasesMs(),
                "curl": dict(
                    run.curlVariables(),
                    size_request=len(config.requestHead) + len(config.requestBody),
                ),
                "body_bytes": run.bodyBytes,
                "complete": run.complete,
                "output": config.output.path if config.output is not None else None,
                "mac": mac.asJSON() if mac else None,
                "exit_code": runExitCode(run),
                "error": problem.message if problem else None,
            }
        )

    def finished(self, runs: list[Run], mac: MacAddress | None, connections: int) -> None:
        if self._config.count == 1:
            return
        complete = [r for r in runs if r.complete]
        self._emit(
            {
                "type": "summary",
                "url": self._config.target.url,
                "proxy": self._config.proxy,
                "runs": self._config.count,
                "completed": len(complete),
                "connections": connections,
                "statuses": _statusCounts(complete),
                "percentile_method": "nearest-rank",
                "phases_ms": {
                    key: {k: round(v, 3) for k, v in summarize(values).items()}
                    for key, values in _phaseValues(complete).items()
                },
                "body_bytes": sum(r.bodyBytes for r in complete),
                "mac": mac.asJSON() if mac else None,
                "exit_code": exitCode(runs),
            }
        )
