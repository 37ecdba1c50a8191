# -*- test-case-name: tests.test_client_session -*-
"""
Runs the requests of one invocation and times them.

L{Session} opens connections (L{twisted_proxy.client.wire}), sends the
request C{--count} times, and records each L{twisted_proxy.client.runs.Run}:
its marks on an injected monotonic clock, its wall-clock times, the
response, and how it failed.
A L{Reporter} is told what happens as it happens; the reporters that print
live in L{twisted_proxy.client.report}.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IOpenSSLContextFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from twisted_proxy.http.framing import ResponseHead

from .address import authorityForm
from .config import Config, Environment
from .errors import (
    EXIT_INTERRUPTED,
    EXIT_OUTPUT_CLOSED,
    EXIT_USAGE,
    ClientError,
    authenticationError,
    connectFailure,
    printable,
    proxyErrorOf,
)
from .mac import MacAddress, lookUpMac
from .network import isAddress
from .runs import Run, proxyStatusOf
from .wire import HTTPLayer, ProxyWire, RunListener

__all__ = ["PREVIEW_BYTES", "OUTPUT_GRACE", "Reporter", "Recorder", "Session"]


_WAITING_FOR = {
    "namelookup": "the address of {name}",
    "connect": "the connection to {where}",
    "tunnel": "the proxy to open a tunnel to {target}",
    "tls": "the TLS handshake with {host}",
    "waiting": "the response",
    "receiving": "the rest of the response",
}


class Reporter:
    """
    Turns what happens into output.  The base writes nothing.

    @ivar streamsBody: whether L{bodyReceived} prints the body as it
        arrives (it is not called otherwise).
    """

    streamsBody = False

    def prepare(self) -> None:
        """
        Before the clock starts: do once what the first output would do
        for the first time (load the time zone, say).
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

    def finished(self, runs: list[Run], mac: MacAddress | None, connections: int) -> None:
        pass


class Recorder(RunListener):
    """
    Records one run's events with the session's clocks, writes the body
    where it goes, and tells the reporter.

    What the reporter prints while the exchange is on (the tunnel, the
    request and response lines) is held back and written when the run
    ends, or L{OUTPUT_GRACE} seconds after the first held line if the run
    is still going: a write to a slow terminal or pipe then never sits
    between the request and the read of its response, where it would delay
    the read and so the marks.  A body that is printed as it arrives
    (C{--show-body}) releases them first.

    @ivar _held: the held reporter calls, in order.
    @ivar _timer: releases them after L{OUTPUT_GRACE}, if set.
    """

    _timer: Any = None

    def __init__(self, session: Session, run: Run) -> None:
        self._session = session
        self._run = run
        self._held: list[tuple[Callable[..., None], tuple[Any, ...]]] = []

    def _report(self, call: Callable[..., None], *args: Any) -> None:
        self._held.append((call, args))
        if self._timer is None:
            self._timer = self._session.env.clock.callLater(OUTPUT_GRACE, self.release)

    def release(self) -> None:
        """
        Write what is held.
        """
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        held, self._held = self._held, []
        for call, args in held:
            call(*args)

    def _mark(self, name: str, at: float | None = None) -> None:
        self._run.marks[name] = self._session.env.monotonic() if at is None else at

    def connected(self) -> None:
        self._mark("connected")
        self._run.phase = "tunnel" if self._session.config.tunnelHead() else "waiting"

    def tunnelOpened(self, head: ResponseHead, at: float | None = None) -> None:
        self._mark("tunnel", at)
        self._run.tunnelHead = head
        self._run.phase = "tls"
        self._report(self._session.reporter.tunnelOpened, self._run, self._session.env.wallClock())

    def tlsEstablished(self, version: str | None, at: float | None = None) -> None:
        self._mark("tls", at)
        self._run.tlsVersion = version
        self._run.phase = "waiting"

    def requestStarting(self) -> None:
        self._mark("pretransfer")

    def requestSent(self, at: float | None = None) -> None:
        self._mark("sent", at)
        self._run.phase = "waiting"
        self._run.wall["sent"] = self._session.env.wallClock()
        self._report(self._session.reporter.requestSent, self._run)

    def firstByte(self, at: float | None = None) -> None:
        self._mark("firstByte", at)
        self._run.phase = "receiving"

    def interimHead(self, head: ResponseHead) -> None:
        self._run.interim.append(head)

    def responseHead(self, head: ResponseHead) -> None:
        run = self._run
        run.head = head
        run.wall["received"] = self._session.env.wallClock()
        self._report(self._session.reporter.responseHead, run)
        output = self._session.config.output
        if output is not None and not head.noBody:
            self._writing(output.start)

    def bodyReceived(self, data: bytes) -> None:
        run = self._run
        run.bodyBytes += len(data)
        if len(run.preview) < PREVIEW_BYTES:
            run.preview += data[: PREVIEW_BYTES - len(run.preview)]
        output = self._session.config.output
        if output is not None:
            self._writing(output.write, data)
        reporter = self._session.reporter
        if reporter.streamsBody:
            self.release()
            reporter.bodyReceived(run, data)

    def _writing(self, write: Callable[..., None], *args: bytes) -> None:
        """
        Call C{write} on the output file, making a failure a L{ClientError}.
        """
        output = self._session.config.output
        assert output is not None
        try:
            write(*args)
        except OSError as e:
            raise ClientError(
                "Cannot write the body to {}: {}.".format(output.path, e.strerror or e),
                exitCode=EXIT_USAGE,
            ) from None

    def responseComplete(self, at: float | None = None) -> None:
        self._mark("end", at)


PREVIEW_BYTES = 4096
# Seconds output may be held back while an exchange is on (see Recorder).
OUTPUT_GRACE = 0.05


class Session:
    """
    Runs the requests of one invocation and measures them.

    A session can be stopped from outside (L{stop}): by its timer for one
    run (C{"timeout"}), by Ctrl-C (C{"interrupt"}) or by a closed standard
    output (C{"output"}); the current run then fails with what stopped it,
    and no other run starts after an interruption or a closed output.

    @ivar config: the validated command line.
    @ivar env: the outside world.
    @ivar reporter: gets told what happens.
    @ivar mac: the MAC address, looked up once the first connection is made.
    @ivar connections: how many connections were opened.
    @ivar _wire: the current connection, if any.
    @ivar _http: its HTTP layer.
    @ivar _connecting: the pending name lookup or connection attempt, if
        any.
    @ivar _addresses: the addresses the proxy's name resolved to, once
        looked up (later connections reuse them, as curl's DNS cache does).
    @ivar _stopping: why the current run is being stopped: L{None} (it is
        not), C{"timeout"}, C{"interrupt"} or C{"output"}.
    """

    mac: MacAddress | None = None
    connections = 0
    _wire: ProxyWire | None = None
    _http: HTTPLayer | None = None
    _connecting: Deferred[Any] | None = None
    _stopping: str | None = None
    _addresses: list[str] | None = None

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
            await self._prepare()
            for number in range(1, self.config.count + 1):
                run = Run(number, https=self.config.https)
                runs.append(run)
                if self._stopping is not None:
                    run.error = self._stopError(run)
                else:
                    await self._runOnce(run)
                    self._judge(run)
                if self.mac is None and run.localAddress is not None:
                    self.mac = lookUpMac(
                        run.localAddress,
                        self.env.interfaceTable,
                        peer="the server" if self.config.route.direct else "the proxy",
                    )
                self.reporter.runFinished(run)
                if run.problem is not None:
                    break
        finally:
            await self._close()
        return runs

    def stop(self, reason: str) -> None:
        """
        Stop the current run (and, unless C{reason} is C{"timeout"}, the
        session): cancel the connection attempt or abort the connection.

        @param reason: C{"timeout"}, C{"interrupt"} or C{"output"}.
        """
        if self._stopping in ("interrupt", "output"):
            return
        self._stopping = reason
        if self._connecting is not None:
            self._connecting.cancel()
        elif self._wire is not None and self._wire.transport is not None:
            self._wire.transport.abortConnection()

    def interrupt(self) -> None:
        """
        Ctrl-C: stop.
        """
        self.stop("interrupt")

    def outputClosed(self) -> None:
        """
        Nobody reads the standard output any more: stop, quietly.
        """
        self.stop("output")

    async def _prepare(self) -> None:
        """
        Before the clock starts, the one-time costs of a cold client that
        would otherwise land in the first run's phases: the netifaces import
        and interface table, the TLS context and a first TLS connection
        object, the reporter's first formatting, the resolver's thread pool
        when the proxy is a name, and (in the real process) a full garbage
        collection, after which the start-up's objects are frozen out of
        later ones.  (The MAC address itself is looked up after each run's
        last mark.)
        """
        if self.env.quietCollector:
            gc.collect()
            gc.freeze()
        with contextlib.suppress(Exception):
            self.env.interfaceTable()
        creator = self.config.tlsCreator
        with contextlib.suppress(Exception):
            if IOpenSSLClientConnectionCreator.providedBy(creator):
                # Twisted's creator ignores the protocol but for its
                # handshake callbacks, which this connection never runs.
                creator.clientConnectionForTLS(None)  # type: ignore[arg-type]
            elif IOpenSSLContextFactory.providedBy(creator):
                creator.getContext()
        self.reporter.prepare()
        if not isAddress(self.config.route.host) and not self._stopping:
            self._connecting = self.env.resolver.prepare()
            try:
                await self._connecting
            except CancelledError:
                if not self._stopping:
                    raise
            except Exception:
                pass  # The lookup itself will say what is wrong.
            finally:
                self._connecting = None

    def _start(self, run: Run) -> None:
        """
        Start the run's clock.
        """
        run.marks["start"] = self.env.monotonic()
        run.wall["start"] = self.env.wallClock()

    async def _runOnce(self, run: Run) -> None:
        env = self.env
        timer = env.clock.callLater(self.config.timeout, self.stop, "timeout")
        recorder = Recorder(self, run)
        # No garbage collection pass in the middle of a timed exchange (a
        # full one after a cold start takes milliseconds); it runs between
        # runs instead.
        collecting = env.quietCollector and gc.isenabled()
        if collecting:
            gc.disable()
        try:
            if self._http is None or not self._http.reusable or self.config.newConnection:
                await self._close()
                await self._connect(run, recorder)
            else:
                self._start(run)
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
            run.error = self._stopError(run) if self._stopping else e
        except CancelledError:
            if not self._stopping:
                raise
            run.error = self._stopError(run)
        finally:
            if collecting:
                gc.enable()
            recorder.release()
            if timer.active():
                timer.cancel()
            if self._stopping == "timeout":
                self._stopping = None
        if run.error is not None and self._wire is not None:
            if self._wire.transport is not None:
                self._wire.transport.abortConnection()

    def _judge(self, run: Run) -> None:
        """
        Tell a refusal from the proxy: a 407 (to the request, or to the
        C{CONNECT}), or a response with C{Proxy-Status: ...; error=}.
        """
        route = self.config.route
        user = route.credentials.user if route.credentials is not None else None
        error = run.error
        if error is not None:
            if error.status == 407 and error.head is not None and not route.direct:
                run.error = authenticationError(error.head, route.describe(), user)
            return
        head = run.head
        if head is None:
            return
        if head.status == 407 and not route.direct:
            run.refusal = authenticationError(head, route.describe(), user)
            return
        proxyStatus = proxyStatusOf(head)
        if proxyErrorOf(proxyStatus):
            run.refusal = ClientError(
                "the proxy could not complete the request: {} {} (Proxy-Status: {})".format(
                    head.status,
                    printable(head.reason.decode("latin-1")),
                    printable(proxyStatus or ""),
                ),
                proxyStatus=proxyStatus,
            )

    async def _connect(self, run: Run, recorder: Recorder) -> None:
        """
        Open a connection for C{run}: resolve the name if the address is
        one (the C{namelookup} phase), then connect to each address in turn
        until one answers (the C{connect} phase, from the first connect
        call), then wait for the tunnel and TLS if any.  Everything that is
        not the network is done before the marks around it.
        """
        config, env = self.config, self.env
        route = config.route
        http = HTTPLayer(recorder, tlsHost=config.target.host if config.https else None)
        wire = ProxyWire(
            http,
            recorder,
            tunnelHead=config.tunnelHead(),
            tunnelTarget=authorityForm(config.target),
            tlsCreator=config.tlsCreator,
            monotonic=env.monotonic,
        )
        factory = _OneProtocol(wire)
        run.newConnection = True
        assert env.endpointFactory is not None
        addresses = [route.host] if isAddress(route.host) else self._addresses
        if addresses is not None:
            endpoints = [env.endpointFactory(a, route.port, config.timeout) for a in addresses]
            self._start(run)
            run.marks["resolved"] = run.marks["start"]
            run.lookedUp = not isAddress(route.host)
        else:
            self._start(run)
            run.phase = "namelookup"
            run.lookedUp = True
            self._connecting = env.resolver.resolve(route.host, route.port)
            try:
                addresses = await self._connecting
            except CancelledError:
                raise
            except Exception:
                if self._stopping:
                    raise CancelledError() from None
                raise connectFailure(Failure(), route.describe(), route.direct) from None
            finally:
                self._connecting = None
            assert addresses is not None
            self._addresses = addresses
            endpoints = [env.endpointFactory(a, route.port, config.timeout) for a in addresses]
            run.marks["resolved"] = env.monotonic()
        run.phase = "connect"
        failure: Failure | None = None
        for attempt, endpoint in enumerate(endpoints):
            self._connecting = endpoint.connect(factory)
            calledAt = getattr(endpoint, "connectCalledAt", None)
            if attempt == 0 and calledAt is not None:
                # The connection starts with the connect() call (the socket
                # set-up before it is not the network); with no name to
                # look up, so does the run.
                run.marks["resolved"] = calledAt
                if not run.lookedUp:
                    run.marks["start"] = calledAt
            try:
                await self._connecting
            except CancelledError:
                raise
            except Exception:
                if self._stopping:
                    raise CancelledError() from None
                failure = Failure()
                continue
            finally:
                self._connecting = None
            connectedAt = getattr(endpoint, "connectedAt", None)
            if connectedAt is not None:
                # The kernel's word (see ConnectNowEndpoint.connectedAt), not
                # the later connectionMade of the adopted transport.
                run.marks["connected"] = connectedAt
            break
        else:
            assert failure is not None
            raise connectFailure(failure, route.describe(), route.direct)
        self._wire, self._http = wire, http
        self.connections += 1
        run.connectionNumber = self.connections
        run.localAddress = wire.localAddress
        await http.ready

    def _stopError(self, run: Run) -> ClientError:
        """
        The error of a run stopped by L{stop}.
        """
        what = _WAITING_FOR.get(run.phase, "the response").format(
            name=self.config.route.host,
            where=self.config.route.describe(),
            target=authorityForm(self.config.target),
            host=self.config.target.host,
        )
        if self._stopping == "output":
            return ClientError(
                "The standard output was closed.", exitCode=EXIT_OUTPUT_CLOSED, quiet=True
            )
        if self._stopping == "interrupt":
            return ClientError(
                "Interrupted while waiting for {}.".format(what), exitCode=EXIT_INTERRUPTED
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


class _OneProtocol(Factory):
    """
    Builds the one protocol it was given, quietly: Twisted's
    L{connectProtocol} defines a class and logs "Starting factory" on each
    call, in the middle of the timed connect.
    """

    noisy = False

    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: object) -> Protocol:
        return self._protocol


def _abort(wire: ProxyWire) -> None:
    if wire.transport is not None:
        wire.transport.abortConnection()
