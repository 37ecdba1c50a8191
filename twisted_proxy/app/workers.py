# -*- test-case-name: tests.test_workers -*-
"""
Multi-core serving: C{--workers N}.

The parent process (L{WorkerSupervisor}) opens the listening sockets, then
starts N worker processes (C{python -m twisted_proxy.app.workers}) that
serve them (C{adoptStreamPort}); the kernel hands each new connection to
whichever worker accepts it first.

The parent is the only reader of the configuration.  It sends each worker
its settings, and later commands, as JSON lines on the worker's standard
input: C{{"start": ...}} first, then C{{"reload": ...}}, C{{"stop": ...}},
C{{"abort": true}}.  A worker whose standard input closes (the parent is
gone) stops as if told to.  Workers ignore SIGINT, SIGHUP and SIGUSR1,
which a terminal or an init system may send the whole process group: the
parent decides and tells them; a SIGTERM sent to a worker alone stops it
gracefully, and the parent starts another.

Workers do not write log files: each worker's log events travel to the
parent as JSON (on the worker's standard output, in batches), and the
parent publishes them, tagged with the worker's id, to its own observers.
So the console shows every worker, and the history and access-log files
have exactly one writer.

The parent supervises: a worker that exits unexpectedly is logged and
started again after a back-off delay (1 s, doubling up to 30 s, reset once
a worker has run for a minute).  A reload that changes the listening
addresses replaces the workers one by one (each old one finishes what it
serves), since a running worker cannot be handed a new socket.  On SIGTERM
or SIGINT the parent closes its sockets, tells every worker to stop
(gracefully, within C{--shutdown-timeout}; a second signal cuts), waits for
them, and kills any still running a few seconds after that.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, eventAsJSON, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure

from .listening import Listener, ListenError
from .service import (
    STOP_SIGNALS,
    Draining,
    ProxyRuntime,
    RecordFiles,
    Signals,
    StartupError,
    bindAll,
    listenerChanges,
    logStart,
    raiseFileLimit,
    reloadInto,
)
from .settings import Built, SettingError, Settings, build

__all__ = ["WorkerSupervisor", "main"]

_RS = "\x1e"
_log = Logger()

# Signals a worker ignores: the parent decides what they mean.
_WORKER_IGNORES = {signal.SIGINT, signal.SIGHUP, signal.SIGUSR1}


class _WorkerProcess(ProcessProtocol):
    """
    One worker: relays its log events to the parent's log publisher.

    @ivar retiring: the worker was told to stop (a rolling restart, or
        the end): it is not restarted when it ends.
    """

    def __init__(self, supervisor: WorkerSupervisor, workerId: int) -> None:
        self.supervisor = supervisor
        self.workerId = workerId
        self._buffer = b""
        self.ended: Deferred[None] = Deferred()
        self.startedAt = supervisor.reactor.seconds()
        self.retiring = False

    def send(self, message: dict[str, Any]) -> None:
        """
        Send the worker a command.
        """
        if self.transport is not None and not self.ended.called:
            try:
                self.transport.write(json.dumps(message).encode("utf-8") + b"\n")
            except OSError:
                pass

    def outReceived(self, data: bytes) -> None:
        buffer = self._buffer + data
        *records, self._buffer = buffer.split(_RS.encode())
        for record in records:
            record = record.strip()
            if not record:
                continue
            try:
                event = eventFromJSON(record.decode("utf-8"))
            except ValueError:
                _log.warn(
                    "Worker {worker} sent an unreadable log record: {record!r}",
                    worker=self.workerId,
                    record=record[:200],
                )
                continue
            event["worker"] = self.workerId
            system = event.get("log_system")
            event["log_system"] = "worker-{}{}".format(
                self.workerId, "" if system in (None, "-") else " " + system
            )
            self.supervisor.publish(event)

    def errReceived(self, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            if line.strip():
                _log.warn("worker {worker}: {line}", worker=self.workerId, line=line)

    def processEnded(self, reason: Failure) -> None:
        self.supervisor.workerEnded(self, reason)
        self.ended.callback(None)


class WorkerSupervisor(MultiService):
    """
    Opens the listening sockets, starts the workers and supervises them.

    @ivar built: the settings in force and what they built.
    @ivar source: where the settings come from (re-read on SIGHUP).
    @ivar count: how many workers.
    @ivar workers: worker id to the process serving as that worker.
    @ivar retiring: processes told to stop, not yet ended.
    @cvar killAfter: seconds past C{--shutdown-timeout} a worker is given
        to exit before it is killed.
    """

    maxBackoff = 30.0
    stableAfter = 60.0
    killAfter = 5.0
    console: Any = None

    def __init__(
        self,
        built: Built,
        reactor: Any,
        source: Any = None,
        twistdConsole: bool = False,
        publisher: Any = None,
    ) -> None:
        super().__init__()
        self.built = built
        self.reactor = reactor
        self.source = source
        self._twistdConsole = twistdConsole
        self.count: int = built.settings["workers"]
        self.publish = publisher if publisher is not None else globalLogPublisher
        self.records = RecordFiles(built.settings)
        self.listeners = list(built.listeners)
        self.signals = Signals(reactor)
        self.workers: dict[int, _WorkerProcess] = {}
        self.retiring: set[_WorkerProcess] = set()
        self._backoff: dict[int, float] = {}
        self._restartCalls: dict[int, Any] = {}
        self._stopping = False
        self._bound = False

    def bind(self) -> None:
        """
        Open the listening sockets now (before twistd daemonizes).

        @raise StartupError: if one cannot be opened.
        """
        if self._bound:
            return
        try:
            self.listeners = bindAll(self.listeners, self.built.config.maxConnections)
        except ListenError as e:
            self.records.close()
            raise StartupError(str(e)) from None
        self._bound = True

    def privilegedStartService(self) -> None:
        self.bind()
        super().privilegedStartService()

    def startService(self) -> None:
        self.bind()
        if self._twistdConsole:
            from .console import current

            self.console = current()
        super().startService()
        logStart(self.built)
        for listener in self.listeners:
            _log.info(
                "twisted-proxy listening on {address}{backlog} for {count} workers",
                address=listener.describe(),
                backlog="" if listener.effectiveBacklog is None
                else f" (listen backlog {listener.effectiveBacklog})",
                count=self.count,
            )
        self.records.start()
        if self.console is not None:
            self.console.startBuffering(self.reactor)
        if hasattr(signal, "SIGHUP"):
            self.signals.install(signal.SIGHUP, self.reload)
            self.signals.install(signal.SIGUSR1, self.reopenLogs, chain=True)
        self.reactor.callWhenRunning(self._installStopSignals)
        for workerId in range(1, self.count + 1):
            self._spawn(workerId)

    def _installStopSignals(self) -> None:
        if not self.running:
            return
        for signum in STOP_SIGNALS:
            self.signals.install(signum, lambda signum=signum: self.stopSignal(signum))

    def stopSignal(self, signum: int) -> None:
        """
        SIGTERM or SIGINT: stop gracefully; again: tell the workers to cut
        what is left.
        """
        if self._stopping or self._exiting:
            self._abortWorkers()
            return
        if self.running:
            _log.info("{signal}: stopping.", signal=signal.Signals(signum).name)
            self._exiting = True
            self.reactor.stop()

    _exiting = False
    _cutAtOnce = False

    def _abortWorkers(self) -> None:
        if not self._stopping:
            # The reactor has not called stopService yet.
            self._cutAtOnce = True
            return
        _log.warn("Stopping now: the workers cut what they still serve.")
        for process in self._processes():
            process.send({"abort": True})

    def _processes(self) -> list[_WorkerProcess]:
        return list(self.workers.values()) + list(self.retiring)

    def _spawn(self, workerId: int) -> None:
        self._restartCalls.pop(workerId, None)
        childFDs: dict[int, Any] = {0: "w", 1: "r", 2: "r"}
        listeners = []
        for listener in self.listeners:
            fd = listener.fileno()
            childFDs[fd] = fd
            listeners.append([fd, int(listener.family), listener.description])
        args = [sys.executable, "-m", "twisted_proxy.app.workers", "--worker-id", str(workerId)]
        process = _WorkerProcess(self, workerId)
        self.workers[workerId] = process
        # The worker starts with these signals blocked (a signal mask is
        # inherited; a handler or SIG_IGN is reset by spawnProcess), and
        # ignores them once it can: a Ctrl-C that reaches the whole process
        # group while it starts must not end it with a KeyboardInterrupt.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _WORKER_IGNORES)
        try:
            self.reactor.spawnProcess(
                process, sys.executable, args, env=os.environ, childFDs=childFDs
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        process.send({"start": {"settings": self.built.settings.toJSON(), "listeners": listeners}})
        _log.info("Started worker {worker} (pid {pid})", worker=workerId, pid=process.transport.pid)

    def workerEnded(self, process: _WorkerProcess, reason: Failure) -> None:
        workerId = process.workerId
        if process in self.retiring:
            self.retiring.discard(process)
            _log.info("Worker {worker} (pid {pid}) stopped.", worker=workerId,
                      pid=process.transport.pid)
            return
        if self.workers.get(workerId) is process:
            del self.workers[workerId]
        if self._stopping:
            _log.info("Worker {worker} stopped.", worker=workerId)
            return
        ranFor = self.reactor.seconds() - process.startedAt
        delay = 1.0 if ranFor >= self.stableAfter else min(
            self.maxBackoff, self._backoff.get(workerId, 0.5) * 2
        )
        self._backoff[workerId] = delay
        _log.error(
            "Worker {worker} exited unexpectedly ({reason}) after {ranFor} s; starting it "
            "again in {delay} s.",
            worker=workerId,
            reason=reason.getErrorMessage(),
            ranFor=round(ranFor, 1),
            delay=round(delay),
        )
        self._restartCalls[workerId] = self.reactor.callLater(delay, self._spawn, workerId)

    def reopenLogs(self) -> None:
        """
        SIGUSR1: rotate twistd's log file, reopen the records' files (the
        parent writes them all).
        """
        rotated = self.console.rotate() if self.console is not None else False
        self.records.reopen()
        _log.info(
            "Log files reopened{what}.",
            what="" if rotated or self.records else " (none are open)",
        )

    def reload(self) -> None:
        """
        SIGHUP: re-read the configuration and pass it on to the workers.
        """
        reloadInto(self)

    def applyBuilt(self, new: Built) -> list[str]:
        """
        Apply C{new}: open new sockets and files first (if one fails,
        nothing changes), then tell the workers; replace them one by one if
        the sockets changed.

        @raise StartupError: if a new socket or file cannot be opened.
        """
        notes = []
        added, removed = listenerChanges(self.listeners, new.listeners)
        try:
            added = bindAll(added, new.config.maxConnections)
            records = self.records.replace(new.settings)
        except (ListenError, SettingError) as e:
            for listener in added:
                listener.close()
            raise StartupError(str(e)) from None
        if new.settings["workers"] != self.count:
            notes.append("workers takes a restart to change")
        if records is not None:
            self.records.close()
            self.records = records
            records.start()
        if self.console is not None:
            from .console import LEVELS

            self.console.setLevel(LEVELS[new.settings["log-level"]])
        self.built = new
        if added or removed:
            for listener in removed:
                self.listeners.remove(listener)
                notes.append(f"stopped listening on {listener.describe()}")
                listener.close()
            for listener in added:
                self.listeners.append(listener)
                notes.append(f"listening on {listener.describe()}")
            self._replaceWorkers()
            notes.append("workers replaced one by one for the new sockets")
        else:
            for process in list(self.workers.values()):
                process.send({"reload": {"settings": new.settings.toJSON()}})
        return notes

    def _replaceWorkers(self) -> None:
        """
        Start a new worker for each running one, which is told to stop
        gracefully (it finishes what it serves, then exits).
        """
        timeout = self.built.settings["shutdown-timeout"]
        for workerId, process in list(self.workers.items()):
            process.retiring = True
            self.retiring.add(process)
            process.send({"stop": {"timeout": timeout}})
            del self.workers[workerId]
            self._spawn(workerId)

    def stopService(self) -> Deferred[None]:
        self._stopping = True
        # SIGTERM and SIGINT stay ours until the workers are gone: again,
        # they tell the workers to cut what they serve.
        self.signals.restore(*[n for n in self.signals.installed() if n not in STOP_SIGNALS])
        super().stopService()
        for call in self._restartCalls.values():
            if call.active():
                call.cancel()
        self._restartCalls.clear()
        # Stop accepting: the workers close their copies too.
        for listener in self.listeners:
            listener.close()
        timeout = self.built.settings["shutdown-timeout"]
        ended = []
        for process in self._processes():
            process.send({"stop": {"timeout": timeout}})
            ended.append(process.ended)
        if self._cutAtOnce:
            self._abortWorkers()
        killer = self.reactor.callLater(timeout + self.killAfter, self._kill)
        d: Deferred[Any] = DeferredList(ended) if ended else succeed(None)

        def stopped(result: object) -> None:
            if killer.active():
                killer.cancel()
            self.records.close()
            _log.info("twisted-proxy stopped.")
            if self.console is not None:
                self.console.stopBuffering()
            if not self._exiting:
                self.signals.restore()

        return d.addBoth(stopped)

    def _kill(self) -> None:
        for process in self._processes():
            _log.warn("Worker {worker} did not stop in time; killing it.",
                      worker=process.workerId)
            try:
                process.transport.signalProcess("KILL")
            except ierror.ProcessExitedAlready:
                pass


# -- the worker process ----------------------------------------------------------


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
    """

    def __init__(self, reactor: Any, workerId: int, start: dict[str, Any]) -> None:
        self.reactor = reactor
        self.workerId = workerId
        settings = Settings.fromJSON(start["settings"])
        self.built = build(settings)
        self.runtime = ProxyRuntime(
            self.built.config,
            reactor,
            transactionDetail=bool(settings["history"] or settings["access-log"]),
            connectionIdPrefix=f"w{workerId}-",
        )
        self.ports: list[Any] = []
        self.adopted = [(fd, family, description) for fd, family, description in start["listeners"]]
        self._draining: Draining | None = None
        self.relay: _JSONRelay | None = None

    def start(self) -> None:
        raiseFileLimit(self.runtime)
        factory = self.runtime.factory
        for fd, family, description in self.adopted:
            listener = next(
                (x for x in Listener.parse(description) if x.family == family), None
            )
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
                _log.error("Worker {worker} kept its configuration: {error}",
                           worker=self.workerId, error=e)
                return
            self.runtime.apply(new.config)
            raiseFileLimit(self.runtime)
            settings = new.settings
            records = bool(settings["history"] or settings["access-log"])
            self.runtime.factory.transactionDetail = records
            if self.relay is not None:
                from .console import LEVELS

                self.relay.level = LEVELS[settings["log-level"]]
                self.relay.records = records
            self.built = new
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
            self.runtime.pool.closeIdle()
            self.reactor.callLater(0, self.reactor.stop)

        self._draining.start().addBoth(stopped)


def _keepSocketFile(port: Any) -> None:
    from twisted.internet import tcp

    def connectionLost(reason: Failure) -> None:
        tcp.Port.connectionLost(port, reason)

    port.connectionLost = connectionLost


class _JSONRelay:
    """
    The worker's log observer: events the parent shows or records, as JSON
    records on standard output, in batches.
    """

    def __init__(self, level: Any, records: bool) -> None:
        from .console import BufferedWriter

        self.writer = BufferedWriter(os.fdopen(1, "w", encoding="utf-8", closefd=False))
        self.level = level
        self.records = records

    def __call__(self, event: dict[str, Any]) -> None:
        from .console import wanted

        if not (wanted(event, self.level) or (self.records and "transaction" in event)):
            return
        self.writer.write(eventAsJSON(event) + _RS)


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
    A worker process: C{python -m twisted_proxy.app.workers --worker-id N},
    with its settings and commands on standard input (see the module
    docstring).
    """
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from .console import LEVELS

    argv = list(sys.argv[1:] if argv is None else argv)
    workerId = int(argv[argv.index("--worker-id") + 1])
    for signum in _WORKER_IGNORES:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _WORKER_IGNORES)
    first, rest = _readFirstLine()
    if not first:
        return
    start = json.loads(first)["start"]
    settings = start["settings"]["values"]
    relay = _JSONRelay(LEVELS[settings["log-level"]], bool(settings["history"] or settings["access-log"]))
    globalLogBeginner.beginLoggingTo([relay], redirectStandardIO=False, discardBuffer=True)
    worker = _Worker(reactor, workerId, start)
    worker.relay = relay
    commands = _Commands(worker)
    os.set_blocking(0, False)

    def running() -> None:
        relay.writer.startBuffering(reactor)
        worker.start()
        commands.feed(rest)
        reactor.addReader(commands)
        signal.signal(
            signal.SIGTERM,
            lambda *a: reactor.callFromThread(worker.stop, None, "SIGTERM"),
        )

    reactor.callWhenRunning(running)
    reactor.run(installSignalHandlers=False)
    relay.writer.stopBuffering()


if __name__ == "__main__":
    main()
