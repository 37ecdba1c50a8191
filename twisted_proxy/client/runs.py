# -*- test-case-name: tests.test_client_session -*-
"""
One measured request (L{Run}): its marks, the phases and curl variables
made of them, and what its exit code is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted_proxy.http.framing import ResponseHead, serializeResponseHead

from .errors import (
    EXIT_HTTP_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NETWORK,
    EXIT_OK,
    EXIT_OUTPUT_CLOSED,
    EXIT_USAGE,
    ClientError,
)

__all__ = [
    "Run",
    "PHASES",
    "runExitCode",
    "exitCode",
    "proxyStatusOf",
    "responseHeadBytes",
]


def responseHeadBytes(head: ResponseHead) -> bytes:
    """
    A response head as it came (names and values as received).
    """
    return serializeResponseHead(head.status, head.reason, head.headers, head.version)


@dataclass
class Run:
    """
    One request and its response, as measured.

    The marks are taken at the events that define them (see
    L{twisted_proxy.client.wire.RunListener}), on the session's monotonic
    clock, in this order:

      - C{start}: the clock starts (everything one-time is done by then):
        before the name lookup, or for an IP address the C{connect()} call;
      - C{resolved}: the C{connect()} call, after the name lookup if any;
      - C{connected}: the connection established, as the kernel tells
        (L{twisted_proxy.client.network.ConnectNowEndpoint.connectedAt}),
        else C{connectionMade};
      - C{tunnel}, C{tls}: the C{CONNECT} answered, the TLS handshake done;
      - C{pretransfer}: the request is about to be written;
      - C{sent}: the C{send()} call that handed the kernel its last byte;
      - C{firstByte}: the read that brought the first response byte returned;
      - C{end}: the read that brought the last one returned.

    @ivar marks: those monotonic times.
    @ivar wall: wall-clock times: C{start}, C{sent}, C{received} (the head).
    @ivar phase: what the run is waiting for (for a timeout's message).
    @ivar lookedUp: whether a name was resolved for this run.
    @ivar error: what ended the run early, if anything did.
    @ivar refusal: for a complete response that is the proxy's refusal or
        failure (407, or C{Proxy-Status} with C{error=}), what it means.
    """

    number: int
    https: bool = False
    marks: dict[str, float] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)
    phase: str = "connect"
    newConnection: bool = False
    lookedUp: bool = False
    connectionNumber: int = 0
    localAddress: str | None = None
    tunnelHead: ResponseHead | None = None
    tlsVersion: str | None = None
    interim: list[ResponseHead] = field(default_factory=list)
    head: ResponseHead | None = None
    bodyBytes: int = 0
    preview: bytes = b""
    error: ClientError | None = None
    refusal: ClientError | None = None

    @property
    def complete(self) -> bool:
        return "end" in self.marks and self.error is None

    @property
    def problem(self) -> ClientError | None:
        """
        What went wrong: the L{error} that ended the run, or the L{refusal}
        of a complete response the proxy generated (a 407, or an error with
        C{Proxy-Status}); L{None} if nothing did.
        """
        return self.error or self.refusal

    def phasesMs(self) -> dict[str, float | None]:
        """
        Each phase's duration in milliseconds: C{namelookup} (L{None} when
        the address was an IP address), C{connect} (from the connect call
        to the connection), C{tunnel} and C{tls} (L{None} for a plain
        target), C{send} (from ready to the whole request in the kernel),
        C{wait} (to the first response byte), C{receive} (to the last) and
        C{total}; they add up to C{total}.  On a reused connection the
        first four are 0.  A phase the run did not reach is L{None}.
        """
        m = self.marks

        def span(a: str, b: str) -> float | None:
            if a not in m or b not in m:
                return None
            return round((m[b] - m[a]) * 1000, 3)

        if self.newConnection:
            namelookup = span("start", "resolved") if self.lookedUp else None
            connect = span("resolved", "connected")
            tunnel = span("connected", "tunnel") if self.https else None
            tls = span("tunnel" if "tunnel" in m else "connected", "tls") if self.https else None
        else:
            namelookup = None
            connect = 0.0
            tunnel = tls = 0.0 if self.https else None
        if not self.newConnection:
            ready = "start"
        elif self.https:
            ready = "tls"
        else:
            ready = "connected"
        return {
            "namelookup": namelookup,
            "connect": connect,
            "tunnel": tunnel,
            "tls": tls,
            "send": span(ready, "sent"),
            "wait": span("sent", "firstByte"),
            "receive": span("firstByte", "end"),
            "total": span("start", "end"),
        }

    def curlVariables(self) -> dict[str, float | int | None]:
        """
        curl's C{-w} variables: times in seconds from the start, cumulative,
        as curl defines them (C{time_appconnect} is 0 without TLS).
        """
        m = self.marks
        start = m["start"]

        def since(name: str, default: float | None = None) -> float | None:
            value = m.get(name, default)
            return None if value is None else round(value - start, 6)

        total = since("end")
        headerBytes = len(responseHeadBytes(self.head)) if self.head else 0
        headerBytes += sum(len(responseHeadBytes(h)) for h in self.interim)
        return {
            "time_namelookup": since("resolved", start),
            "time_connect": since("connected", start),
            "time_appconnect": since("tls", start),
            "time_pretransfer": since("pretransfer"),
            "time_posttransfer": since("sent"),
            "time_starttransfer": since("firstByte"),
            "time_total": total,
            "http_code": self.head.status if self.head else 0,
            "size_download": self.bodyBytes,
            "size_header": headerBytes,
            "speed_download": round(self.bodyBytes / total) if total else 0,
            "num_connects": 1 if self.newConnection else 0,
        }


PHASES = [
    ("namelookup", "name lookup"),
    ("connect", "proxy connect"),
    ("tunnel", "CONNECT established"),
    ("tls", "TLS handshake"),
    ("send", "request sent"),
    ("wait", "first response byte"),
    ("receive", "response complete"),
    ("total", "total"),
]


def runExitCode(run: Run) -> int:
    """
    The exit code of one run: its problem's, else by the response status.
    """
    problem = run.problem
    if problem is not None:
        return problem.exitCode
    assert run.head is not None
    return EXIT_OK if 200 <= run.head.status < 400 else EXIT_HTTP_ERROR


def proxyStatusOf(head: ResponseHead | None) -> str | None:
    if head is None:
        return None
    value = head.get(b"proxy-status")
    return None if value is None else value.decode("latin-1")


def exitCode(runs: list[Run]) -> int:
    """
    The exit code of the invocation: the most telling of its runs'.
    """
    codes = [runExitCode(r) for r in runs]
    for code in (
        EXIT_OUTPUT_CLOSED,
        EXIT_INTERRUPTED,
        EXIT_USAGE,
        EXIT_NETWORK,
        EXIT_HTTP_ERROR,
    ):
        if code in codes:
            return code
    return EXIT_OK
