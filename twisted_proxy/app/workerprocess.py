# -*- test-case-name: tests.test_workers -*-
"""
A worker process of C{--workers N}: C{python -m
twisted_proxy.app.workerprocess --worker-id N}, started by the parent's
L{WorkerSupervisor <twisted_proxy.app.workers.WorkerSupervisor>} (see
L{twisted_proxy.app.workers} for the whole design).

It reads its settings and the parent's commands as JSON lines on its
standard input (L{_Commands}), serves the sockets the parent opened with
the proxy (L{_Worker}), and sends its log events to the parent on its
standard output (L{_Relay}): console lines as text, events the parent's
observers read as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService
from twisted.internet import error as ierror
from twisted.internet.interfaces import IReactorFromThreads, IReadDescriptor
from twisted.logger import ILogObserver, Logger, eventAsJSON
from twisted.python.failure import Failure
from zope.interface import implementer

from .listening import Listener
from .runtime import ProxyRuntime, StartupError, raiseFileLimit
from .settings import SettingError, Settings, build
from .stopping import Draining

if TYPE_CHECKING:
    from ..proxy.config import ProxyConfig

__all__ = ["RS", "WORKER_IGNORES", "main", "parentReadsRecords", "workerConfig"]

# What separates the log records a worker writes to its parent; a record
# is a JSON event ("{...}") or TEXT followed by console lines.
RS = "\x1e"
TEXT = "T"
_log = Logger()

# Signals a worker ignores: the parent decides what they mean.
WORKER_IGNORES = {signal.SIGINT, signal.SIGHUP, signal.SIGUSR1}


@implementer(IReadDescriptor)
class _Commands:
    """
    Reads the parent's commands from standard input (an C{IReadDescriptor}
    on file descriptor 0); end of input means the parent is gone.
    """

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker
        self._buffer = b""

    def fileno(self) -> int:
        return 0

    def logPrefix(self) -> str:
        return "parent"

    def doRead(self) -> Any:
        try:
            data = os.read(0, 65536)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            return ierror.ConnectionDone()
        self.feed(data)
        return None

    def feed(self, data: bytes) -> None:
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            if line.strip():
                self.worker.command(json.loads(line))

    def connectionLost(self, reason: Failure) -> None:
        self.worker.stop(reason="the parent process is gone")


class _Worker:
    """
    A worker process's service: the proxy on the sockets the parent opened,
    driven by the parent's commands.

    @ivar initial: the settings it started with.
    @ivar built: the settings in force and what they built.
    """

    def __init__(self, reactor: Any, workerId: int, start: dict[str, Any]) -> None:
        """
        @raise StartupError: if the worker cannot serve (its cache directory
            is in use).
        """
        self.reactor = reactor
        self.workerId = workerId
        settings = self.initial = Settings.fromJSON(start["settings"])
        self.built = build(settings)
        self.runtime = ProxyRuntime(
            workerConfig(self.built.config, workerId),
            reactor,
            transactionDetail=parentReadsRecords(settings),
            connectionIdPrefix=f"w{workerId}-",
        )
        self.ports: list[Any] = []
        self.adopted = [(fd, family, description) for fd, family, description in start["listeners"]]
        self.ownAddresses = [(host, port) for host, port in start.get("ownAddresses", [])]
        self._draining: Draining | None = None
        self.relay: _Relay | None = None
        self.service = MultiService()
        if settings["metrics"] is not None:
            # The parent serves the endpoint; this worker reports its
            # gauges to it.
            from .metrics import GaugeReporter, ProxyGauges

            factory, pool = self.runtime.factory, self.runtime.pool
            GaugeReporter(reactor, ProxyGauges(factory, pool).read).setServiceParent(self.service)

    def start(self) -> None:
        raiseFileLimit(self.runtime)
        self.runtime.start()
        self.service.startService()
        factory = self.runtime.factory
        for host, port in self.ownAddresses:
            factory.addListeningAddress(host, port)
        for fd, family, description in self.adopted:
            listener = next((x for x in Listener.parse(description) if x.family == family), None)
            wrapped = listener.wrap(factory) if listener is not None else factory
            port = self.reactor.adoptStreamPort(fd, socket.AddressFamily(family), wrapped)
            if family == socket.AF_UNIX:
                # The parent owns the socket file: a worker that stops must
                # not remove it (Twisted's unix port would).
                _keepSocketFile(port)
            os.close(fd)
            address = port.getHost()
            host = getattr(address, "host", None)
            if host is not None:
                factory.addListeningAddress(host, address.port)
            self.ports.append(port)

    def command(self, message: dict[str, Any]) -> None:
        if "reload" in message:
            try:
                new = build(Settings.fromJSON(message["reload"]["settings"]))
            except SettingError as e:
                _log.error(
                    "Worker {worker} kept its configuration: {error}", worker=self.workerId, error=e
                )
                return
            self.runtime.apply(workerConfig(new.config, self.workerId))
            raiseFileLimit(self.runtime)
            settings = new.settings
            records = parentReadsRecords(settings, self.initial)
            self.runtime.factory.transactionDetail = records
            if self.relay is not None:
                from .console import LEVELS

                self.relay.level = LEVELS[settings["log-level"]]
                self.relay.records = records
            self.built = new
            # Its new requests follow the new settings from here: what a
            # test (or a person at --log-level debug) can wait for.
            _log.debug("Worker {worker} applied the reloaded configuration.", worker=self.workerId)
        elif "stop" in message:
            self.stop(message["stop"].get("timeout"))
        elif "abort" in message:
            if self._draining is not None:
                self._draining.abortNow()
            else:
                self.stop(0.0)

    def stop(self, timeout: float | None = None, reason: str = "") -> None:
        """
        Stop accepting, let what is in progress finish (at most C{timeout}
        seconds), then exit.
        """
        if self._draining is not None:
            return
        if reason:
            _log.info("Worker {worker} stopping: {reason}.", worker=self.workerId, reason=reason)
        if timeout is None:
            timeout = self.built.settings["shutdown-timeout"]
        for port in self.ports:
            port.stopListening()
        self.ports = []
        self._draining = Draining(self.runtime.factory, self.reactor, timeout)

        def stopped(result: object) -> None:
            self.service.stopService()
            self.runtime.stop()
            self.reactor.callLater(0, self.reactor.stop)

        self._draining.start().addBoth(stopped)


def parentReadsRecords(settings: Settings, initial: Settings | None = None) -> bool:
    """
    Whether the parent reads the workers' transaction records (to write the
    history or the access log, or to count them for C{--metrics}).

    @param initial: the settings the parent started with, if C{settings}
        come from a reload: its C{--metrics} endpoint is the one it started
        with (moving it takes a restart).
    """
    metrics = (initial if initial is not None else settings)["metrics"]
    return bool(settings["history"] or settings["access-log"] or metrics)


def workerConfig(config: ProxyConfig, workerId: int) -> ProxyConfig:
    """
    C{config} as worker C{workerId} runs it: a disk cache in its own
    directory, C{DIR/worker-N} (a cache directory has one process).
    """
    if config.cacheDir is None:
        return config
    return config.replace(cacheDir=os.path.join(config.cacheDir, f"worker-{workerId}"))


def _keepSocketFile(port: Any) -> None:
    from twisted.internet import tcp

    def connectionLost(reason: Failure) -> None:
        tcp.Port.connectionLost(port, reason)

    port.connectionLost = connectionLost


@implementer(ILogObserver)
class _Relay:
    """
    The worker's log observer: events the parent shows or records, on
    standard output, in batches.

    With C{text} (the parent's console is a L{Console
    <twisted_proxy.app.console.Console>}), an event that is only shown
    travels as the line the parent's console would print for it, tagged
    C{[worker-N]} as the parent tags what it publishes: the parent writes
    it out as it is, without decoding or rendering it.  (As JSON, the
    brief's two lines per request cost the worker about a fifth of its
    time and the parent a quarter of a core at 4,000 requests a second.)
    Events the parent's observers read (transaction records while it reads
    them, refusals by rule, gauges), whatever the console's level, and
    every event without C{text}, travel as JSON.

    @ivar level: the least important level the parent's console shows.
    @ivar records: whether the parent reads the transaction records.
    """

    def __init__(self, workerId: int, level: Any, records: bool, text: bool) -> None:
        from .console import BufferedWriter

        self.writer = BufferedWriter(os.fdopen(1, "w", encoding="utf-8", closefd=False))
        self.workerId = workerId
        self.level = level
        self.records = records
        self.text = text

    def __call__(self, event: dict[str, Any]) -> None:
        from .console import formatLine, wanted

        # What the parent's observers read, other than its console, travels
        # as JSON whatever the console's level: transaction records (while
        # the parent reads them: history, access log, metrics), refusals by
        # rule and the gauges (metrics).  Every other event only needs to
        # be shown, and travels (if the console shows it) as its line.
        if "transaction" in event:
            read = self.records
        else:
            read = "rule" in event or "metricsGauges" in event
        if not read:
            if not wanted(event, self.level):
                return
            if self.text:
                shown = dict(event)
                shown["log_system"] = workerSystem(self.workerId, event.get("log_system"))
                line = formatLine(shown)
                if line is not None:
                    self.writer.write(TEXT + line + RS)
                return
        if "record" in event:
            # The record object itself is for observers in this process;
            # its dict, in "transaction", is what travels.
            event = dict(event)
            del event["record"]
        self.writer.write(eventAsJSON(event) + RS)


def workerSystem(workerId: int, system: str | None) -> str:
    """
    The C{log_system} of a worker's event as the parent shows it:
    C{worker-N}, followed by the event's own system if it has one.
    """
    return "worker-{}{}".format(workerId, "" if system in (None, "-") else " " + str(system))


def _readFirstLine() -> tuple[bytes, bytes]:
    """
    The first line on standard input (the start command), and what was
    read after it, without Python's buffering (which would hide the rest
    from the reactor).
    """
    data = b""
    while b"\n" not in data:
        chunk = os.read(0, 65536)
        if not chunk:
            return data, b""
        data += chunk
    line, _, rest = data.partition(b"\n")
    return line, rest


def main(argv: list[str] | None = None) -> None:
    """
    A worker process: C{python -m twisted_proxy.app.workerprocess --worker-id N},
    with its settings and commands on standard input (see the module
    docstring).
    """
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from .console import LEVELS

    argv = list(sys.argv[1:] if argv is None else argv)
    workerId = int(argv[argv.index("--worker-id") + 1])
    for signum in WORKER_IGNORES:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_IGNORES)
    first, rest = _readFirstLine()
    if not first:
        return
    start = json.loads(first)["start"]
    settings = start["settings"]["values"]
    relay = _Relay(
        workerId,
        LEVELS[settings["log-level"]],
        parentReadsRecords(Settings.fromJSON(start["settings"])),
        bool(start.get("consoleText")),
    )
    globalLogBeginner.beginLoggingTo([relay], redirectStandardIO=False, discardBuffer=True)
    try:
        worker = _Worker(reactor, workerId, start)
    except StartupError as e:
        _log.error("Worker {worker} cannot start: {error}", worker=workerId, error=str(e))
        relay.writer.stopBuffering()
        raise SystemExit(1) from None
    worker.relay = relay
    commands = _Commands(worker)
    os.set_blocking(0, False)

    def running() -> None:
        relay.writer.startBuffering(reactor)
        worker.start()
        commands.feed(rest)
        reactor.addReader(commands)
        fromThreads = IReactorFromThreads(reactor)
        signal.signal(
            signal.SIGTERM,
            lambda *a: fromThreads.callFromThread(worker.stop, None, "SIGTERM"),
        )

    reactor.callWhenRunning(running)
    # Every Twisted reactor's run() takes installSignalHandlers; IReactorCore,
    # the reactor's declared type, does not list it.
    reactor.run(installSignalHandlers=False)  # type: ignore[call-arg]
    relay.writer.stopBuffering()


if __name__ == "__main__":
    main()
