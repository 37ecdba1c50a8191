# -*- test-case-name: tests.test_client_session -*-
"""
Runs the requests of one invocation and times them.

L{Session} opens connections (L{twisted_proxy.client.wire}), sends the
request C{--count} times, and records each L{Run}: its marks on an injected
monotonic clock, its wall-clock times, the response, and how it failed.
A L{Reporter} is told what happens as it happens; the reporters that print
live in L{twisted_proxy.client.report}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import connectProtocol
from twisted.python.failure import Failure

from twisted_proxy.http.framing import ResponseHead, serializeResponseHead

from .address import authorityForm
from .config import Config, Environment
from .errors import (
    EXIT_HTTP_ERROR,
    EXIT_NETWORK,
    EXIT_OK,
    EXIT_USAGE,
    ClientError,
    connectFailure,
    proxyErrorOf,
)
from .mac import MacAddress, lookUpMac
from .wire import HTTPLayer, ProxyWire, RunListener

__all__ = [
    "Run",
    "PHASES",
    "PREVIEW_BYTES",
    "Reporter",
    "Recorder",
    "Session",
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

    @ivar marks: monotonic times: C{start}, C{connected}, C{tunnel}, C{tls},
        C{sent}, C{firstByte}, C{end}.
    @ivar wall: wall-clock times: C{start}, C{sent}, C{received} (the head).
    @ivar phase: what the run is waiting for (for a timeout's message).
    """

    number: int
    https: bool = False
    marks: dict[str, float] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)
    phase: str = "connect"
    newConnection: bool = False
    connectionNumber: int = 0
    localAddress: str | None = None
    tunnelHead: ResponseHead | None = None
    tlsVersion: str | None = None
    interim: list[ResponseHead] = field(default_factory=list)
    head: ResponseHead | None = None
    bodyBytes: int = 0
    preview: bytes = b""
    error: ClientError | None = None

    @property
    def complete(self) -> bool:
        return "end" in self.marks and self.error is None

    def phasesMs(self) -> dict[str, float | None]:
        """
        Each phase's duration in milliseconds: C{connect}, C{tunnel} and
        C{tls} (L{None} for a plain target), C{send}, C{wait}, C{receive} and
        C{total}.  On a reused connection the first three are 0.  A phase the
        run did not reach is L{None}.
        """
        m = self.marks

        def span(a: str, b: str) -> float | None:
            if a not in m or b not in m:
                return None
            return round((m[b] - m[a]) * 1000, 3)

        if self.newConnection:
            connect = span("start", "connected")
            tunnel = span("connected", "tunnel") if self.https else None
            tls = span("tunnel", "tls") if self.https else None
        else:
            connect = 0.0
            tunnel = tls = 0.0 if self.https else None
        if not self.newConnection:
            ready = "start"
        elif self.https:
            ready = "tls"
        else:
            ready = "connected"
        return {
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
        curl's C{-w} variables: times in seconds from the start.
        """
        m = self.marks
        start = m["start"]

        def since(name: str, default: float | None = None) -> float | None:
            value = m.get(name, default)
            return None if value is None else round(value - start, 6)

        ready = m.get("tls", m.get("connected", start))
        total = since("end")
        headerBytes = len(responseHeadBytes(self.head)) if self.head else 0
        headerBytes += sum(len(responseHeadBytes(h)) for h in self.interim)
        return {
            "time_connect": since("connected", start),
            "time_appconnect": since("tls", start),
            "time_pretransfer": round(ready - start, 6) if "sent" in m else None,
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
    ("connect", "proxy connect"),
    ("tunnel", "CONNECT established"),
    ("tls", "TLS handshake"),
    ("send", "request sent"),
    ("wait", "first response byte"),
    ("receive", "response complete"),
    ("total", "total"),
]

_WAITING_FOR = {
    "connect": "the connection to the proxy at {proxy}",
    "tunnel": "the proxy to open a tunnel to {target}",
    "tls": "the TLS handshake with {host}",
    "waiting": "the response",
    "receiving": "the rest of the response",
}


def runExitCode(run: Run) -> int:
    if run.error is not None:
        return run.error.exitCode
    assert run.head is not None
    if proxyErrorOf(proxyStatusOf(run.head)):
        return EXIT_NETWORK
    return EXIT_OK if 200 <= run.head.status < 400 else EXIT_HTTP_ERROR


def proxyStatusOf(head: ResponseHead | None) -> str | None:
    if head is None:
        return None
    value = head.get(b"proxy-status")
    return None if value is None else value.decode("latin-1")


class Reporter:
    """
    Turns what happens into output.  The base writes nothing.
    """

    def tunnelOpened(self, run: Run, wallTime: float) -> None:
        pass

    def requestSent(self, run: Run) -> None:
        pass

    def responseHead(self, run: Run) -> None:
        pass

    def bodyReceived(self, run: Run, data: bytes) -> None:
        pass

    def runFinished(self, run: Run) -> None:
        pass

    def finished(
        self, runs: list[Run], mac: MacAddress | None, connections: int
    ) -> None:
        pass


class Recorder(RunListener):
    """
    Records one run's events with the session's clocks, writes the body
    where it goes, and tells the reporter.
    """

    def __init__(self, session: Session, run: Run) -> None:
        self._session = session
        self._run = run
        self._output: Any = None

    def _mark(self, name: str) -> None:
        self._run.marks[name] = self._session.env.monotonic()

    def connected(self) -> None:
        self._mark("connected")
        self._run.phase = (
            "tunnel" if self._session.config.target.scheme == "https" else "waiting"
        )

    def tunnelOpened(self, head: ResponseHead) -> None:
        self._mark("tunnel")
        self._run.tunnelHead = head
        self._run.phase = "tls"
        self._session.reporter.tunnelOpened(self._run, self._session.env.wallClock())

    def tlsEstablished(self, version: str | None) -> None:
        self._mark("tls")
        self._run.tlsVersion = version
        self._run.phase = "waiting"

    def requestSent(self) -> None:
        self._mark("sent")
        self._run.phase = "waiting"
        self._run.wall["sent"] = self._session.env.wallClock()
        self._session.reporter.requestSent(self._run)

    def firstByte(self) -> None:
        self._mark("firstByte")
        self._run.phase = "receiving"

    def interimHead(self, head: ResponseHead) -> None:
        self._run.interim.append(head)

    def responseHead(self, head: ResponseHead) -> None:
        run = self._run
        run.head = head
        run.wall["received"] = self._session.env.wallClock()
        self._session.reporter.responseHead(run)
        path = self._session.config.output
        if path is not None and not head.noBody:
            try:
                self._output = open(path, "wb")
            except OSError as e:
                raise ClientError(
                    "Cannot write the body to {}: {}.".format(path, e.strerror or e),
                    exitCode=EXIT_USAGE,
                ) from None

    def bodyReceived(self, data: bytes) -> None:
        run = self._run
        run.bodyBytes += len(data)
        if len(run.preview) < PREVIEW_BYTES:
            run.preview += data[: PREVIEW_BYTES - len(run.preview)]
        if self._output is not None:
            try:
                self._output.write(data)
            except OSError as e:
                raise ClientError(
                    "Cannot write the body to {}: {}.".format(
                        self._session.config.output, e.strerror or e
                    ),
                    exitCode=EXIT_USAGE,
                ) from None
        self._session.reporter.bodyReceived(run, data)

    def responseComplete(self) -> None:
        self._mark("end")
        self.closeOutput()

    def closeOutput(self) -> None:
        if self._output is not None:
            self._output.close()
            self._output = None


PREVIEW_BYTES = 4096


class Session:
    """
    Runs the requests of one invocation and measures them.

    @ivar config: the validated command line.
    @ivar env: the outside world.
    @ivar reporter: gets told what happens.
    @ivar mac: the MAC address, looked up once the first connection is made.
    @ivar connections: how many connections were opened.
    @ivar _wire: the current connection, if any.
    @ivar _http: its HTTP layer.
    @ivar _connecting: the pending connection attempt, if any.
    @ivar _timedOut: whether the current run's timer fired.
    """

    mac: MacAddress | None = None
    connections = 0
    _wire: ProxyWire | None = None
    _http: HTTPLayer | None = None
    _connecting: Deferred[Any] | None = None
    _timedOut = False

    def __init__(self, config: Config, env: Environment, reporter: Reporter) -> None:
        self.config = config
        self.env = env
        self.reporter = reporter

    async def run(self) -> list[Run]:
        """
        Run the requests; stop at the first one that fails.
        """
        runs: list[Run] = []
        try:
            for number in range(1, self.config.count + 1):
                run = Run(number, https=self.config.target.scheme == "https")
                runs.append(run)
                await self._runOnce(run)
                self.reporter.runFinished(run)
                if run.error is not None:
                    break
        finally:
            await self._close()
        return runs

    async def _runOnce(self, run: Run) -> None:
        env = self.env
        run.marks["start"] = env.monotonic()
        run.wall["start"] = env.wallClock()
        self._timedOut = False
        timer = env.clock.callLater(self.config.timeout, self._timeOut)
        recorder = Recorder(self, run)
        try:
            if (
                self._http is None
                or not self._http.reusable
                or self.config.newConnection
            ):
                await self._close()
                await self._connect(run, recorder)
            else:
                run.phase = "waiting"
                run.connectionNumber = self.connections
                run.localAddress = self._wire.localAddress if self._wire else None
                run.tlsVersion = self._http.tlsVersion
            assert self._http is not None
            method = self.config.method.encode("ascii")
            await self._http.request(
                method, self.config.requestHead + self.config.requestBody, recorder
            )
        except ClientError as e:
            run.error = self._timeoutError(run) if self._timedOut else e
        except CancelledError:
            if not self._timedOut:
                raise
            run.error = self._timeoutError(run)
        finally:
            recorder.closeOutput()
            if timer.active():
                timer.cancel()
        if run.error is not None and self._wire is not None:
            if self._wire.transport is not None:
                self._wire.transport.abortConnection()

    async def _connect(self, run: Run, recorder: Recorder) -> None:
        config = self.config
        target = config.target
        https = target.scheme == "https"
        http = HTTPLayer(recorder, tlsHost=target.host if https else None)
        wire = ProxyWire(
            http,
            recorder,
            tunnelHead=config.tunnelHead() if https else None,
            tunnelTarget=authorityForm(target),
            tlsCreator=config.tlsCreator,
        )
        run.newConnection = True
        run.phase = "connect"
        assert self.env.endpointFactory is not None
        endpoint = self.env.endpointFactory(
            config.proxyHost, config.proxyPort, config.timeout
        )
        self._connecting = connectProtocol(endpoint, wire)
        try:
            await self._connecting
        except CancelledError:
            raise
        except Exception:
            if self._timedOut:
                raise CancelledError() from None
            raise connectFailure(Failure(), config.proxy) from None
        finally:
            self._connecting = None
        self._wire, self._http = wire, http
        self.connections += 1
        run.connectionNumber = self.connections
        run.localAddress = wire.localAddress
        if self.mac is None:
            self.mac = lookUpMac(wire.localAddress, self.env.interfaceTable)
        await http.ready

    def _timeOut(self) -> None:
        self._timedOut = True
        if self._connecting is not None:
            self._connecting.cancel()
        elif self._wire is not None and self._wire.transport is not None:
            self._wire.transport.abortConnection()

    def _timeoutError(self, run: Run) -> ClientError:
        what = _WAITING_FOR.get(run.phase, "the response").format(
            proxy=self.config.proxy,
            target=authorityForm(self.config.target),
            host=self.config.target.host,
        )
        seconds = "{:g}".format(self.config.timeout)
        return ClientError(
            "Timed out after {} second{} waiting for {}. Use --timeout SECONDS to "
            "wait longer.".format(seconds, "" if seconds == "1" else "s", what)
        )

    async def _close(self) -> None:
        """
        Close the current connection, if any, and wait until it is gone.
        """
        wire, self._wire, self._http = self._wire, None, None
        if wire is None or wire.closed.called:
            return
        wire.close()
        fallback = self.env.clock.callLater(2.0, _abort, wire)
        try:
            await wire.closed
        finally:
            if fallback.active():
                fallback.cancel()


def _abort(wire: ProxyWire) -> None:
    if wire.transport is not None:
        wire.transport.abortConnection()


def exitCode(runs: list[Run]) -> int:
    """
    The worst exit code of the runs.
    """
    codes = [runExitCode(r) for r in runs]
    for code in (EXIT_USAGE, EXIT_NETWORK, EXIT_HTTP_ERROR):
        if code in codes:
            return code
    return EXIT_OK
