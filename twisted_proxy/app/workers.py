# -*- test-case-name: tests.test_workers -*-
"""
Multi-core serving: C{--workers N}.

The parent process (L{WorkerSupervisor}) opens the listening sockets, then
starts N worker processes (C{python -m twisted_proxy.app.workerprocess}) that
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
parent (on the worker's standard output, in batches), tagged with the
worker's id.  Those the parent's observers read travel as JSON, and the
parent publishes them; those it only shows (the brief's lines, most
messages) travel as the console line, which the parent writes to its
console as it is.  So the console shows every worker, and the console,
history and access-log files have exactly one writer.  The transaction records travel too while
something in the parent reads them (the history, the access log, or the
C{--metrics} endpoint, which the parent serves; each worker also sends it
its gauges every second: L{twisted_proxy.app.metrics}).

A disk cache (C{--cache-dir DIR}) has one process per directory: worker N
keeps its cache in C{DIR/worker-N}, which the parent creates and checks
before it starts the workers.

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

import functools
import json
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService, Service
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure

from .listening import ListenError
from .ports import bindAll
from .recordfiles import RecordFiles
from .reloading import openForReload, reloadInto, restartNotes
from .runtime import StartupError
from .service import logStart
from .settings import Built
from .stopping import STOP_SIGNALS, Signals
from .workerprocess import RS, TEXT, WORKER_IGNORES, workerConfig, workerSystem

if TYPE_CHECKING:
    from ..proxy.config import ProxyConfig
    from .metrics import MetricsService

__all__ = ["WorkerSupervisor", "checkWorkerCaches"]

_log = Logger()


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

    @property
    def pid(self) -> int | None:
        """
        The worker's process id, once it was spawned.
        """
        return None if self.transport is None else self.transport.pid

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
        *records, self._buffer = buffer.split(RS.encode())
        console = self.supervisor.console
        text = TEXT.encode()
        for record in records:
            if record[:1] == text and console is not None:
                # A console line, rendered by the worker.
                console.write(record[1:].decode("utf-8", "replace"))
                continue
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
            event["log_system"] = workerSystem(self.workerId, event.get("log_system"))
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
    @ivar initial: the settings the supervisor started with (those a
        reload cannot change stay as they were).
    @ivar source: where the settings come from (re-read on SIGHUP).
    @ivar count: how many workers.
    @ivar workers: worker id to the process serving as that worker.
    @ivar retiring: processes told to stop, not yet ended.
    @ivar metrics: the C{--metrics} endpoint (a child service), or
        L{None}.
    @cvar killAfter: seconds past C{--shutdown-timeout} a worker is given
        to exit before it is killed.
    """

    maxBackoff = 30.0
    stableAfter = 60.0
    killAfter = 5.0
    console: Any = None
    metrics: MetricsService | None = None

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
        self.initial = built.settings
        self.reactor = reactor
        self.source = source
        self._twistdConsole = twistdConsole
        self.count: int = built.settings["workers"]
        self.publish = publisher if publisher is not None else globalLogPublisher
        self.records = RecordFiles(built.settings, reactor)
        self.listeners = list(built.listeners)
        self.signals = Signals(reactor)
        self.workers: dict[int, _WorkerProcess] = {}
        self.retiring: set[_WorkerProcess] = set()
        self._backoff: dict[int, float] = {}
        self._restartCalls: dict[int, Any] = {}
        self._stopping = False
        self._bound = False
        if built.settings["metrics"] is not None:
            from .metrics import MetricsService

            self.metrics = MetricsService.forWorkers(reactor, built.settings.values, self)
            self.metrics.setServiceParent(self)

    @property
    def stopping(self) -> bool:
        """
        Whether the proxy is stopping (the workers no longer accept).
        """
        return self._stopping

    def bind(self) -> None:
        """
        Open the listening sockets now (before twistd daemonizes), and
        check the workers' cache directories.

        @raise StartupError: if a socket cannot be opened, or a cache
            directory used.
        """
        if self._bound:
            return
        try:
            checkWorkerCaches(self.built.config, self.count)
            self.listeners = bindAll(self.listeners, self.built.config.maxConnections)
        except (ListenError, StartupError) as e:
            self.records.close()
            raise StartupError(str(e)) from None
        if self.metrics is not None:
            try:
                self.metrics.bind()
            except ListenError as e:
                for listener in self.listeners:
                    listener.close()
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
                backlog=""
                if listener.effectiveBacklog is None
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
            self.signals.install(signum, functools.partial(self.stopSignal, signum))

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
        args = [
            sys.executable,
            "-m",
            "twisted_proxy.app.workerprocess",
            "--worker-id",
            str(workerId),
        ]
        process = _WorkerProcess(self, workerId)
        self.workers[workerId] = process
        own = []
        if self.metrics is not None and self.metrics.port is not None:
            # Requests to the parent's metrics endpoint are loops.
            address = self.metrics.port.getHost()
            if getattr(address, "host", None) is not None:
                own.append([address.host, address.port])
        # The worker starts with these signals blocked (a signal mask is
        # inherited; a handler or SIG_IGN is reset by spawnProcess), and
        # ignores them once it can: a Ctrl-C that reaches the whole process
        # group while it starts must not end it with a KeyboardInterrupt.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_IGNORES)
        try:
            self.reactor.spawnProcess(
                process, sys.executable, args, env=os.environ, childFDs=childFDs
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        process.send(
            {
                "start": {
                    "settings": self.built.settings.toJSON(),
                    "listeners": listeners,
                    "ownAddresses": own,
                    # Console lines travel as text when the console
                    # writes text (not with --syslog).
                    "consoleText": self.console is not None,
                }
            }
        )
        _log.info("Started worker {worker} (pid {pid})", worker=workerId, pid=process.pid)

    def workerEnded(self, process: _WorkerProcess, reason: Failure) -> None:
        workerId = process.workerId
        if process in self.retiring:
            self.retiring.discard(process)
            _log.info("Worker {worker} (pid {pid}) stopped.", worker=workerId, pid=process.pid)
            return
        if self.workers.get(workerId) is process:
            del self.workers[workerId]
        if self._stopping:
            _log.info("Worker {worker} stopped.", worker=workerId)
            return
        ranFor = self.reactor.seconds() - process.startedAt
        delay = (
            1.0
            if ranFor >= self.stableAfter
            else min(self.maxBackoff, self._backoff.get(workerId, 0.5) * 2)
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
        added, removed, records = openForReload(self.listeners, self.records, new)
        notes = restartNotes(self.initial, new.settings)
        if self.metrics is not None:
            self.metrics.reconfigure(new.settings.values)
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

        With a disk cache, a new worker must wait for the one it replaces
        to end (a cache directory has one process): workers are then
        replaced one at a time, the others serving meanwhile.
        """
        self._generation += 1
        if self.built.config.cacheDir is None:
            for workerId, process in list(self.workers.items()):
                self._retire(process)
                self._spawn(workerId)
            return
        generation = self._generation
        waiting = sorted(self.workers)

        def replaceNext(result: object = None) -> None:
            while waiting and not self._stopping and generation == self._generation:
                workerId = waiting.pop(0)
                process = self.workers.get(workerId)
                if process is None:
                    continue  # it crashed meanwhile: restarted as usual
                self._retire(process)
                process.ended.addCallback(spawn, workerId)
                return

        def spawn(result: object, workerId: int) -> None:
            if not self._stopping and workerId not in self.workers:
                self._spawn(workerId)
            replaceNext()

        replaceNext()

    _generation = 0

    def _retire(self, process: _WorkerProcess) -> None:
        """
        Tell C{process} to stop gracefully; it is not restarted when it
        ends.
        """
        process.retiring = True
        self.retiring.add(process)
        process.send({"stop": {"timeout": self.built.settings["shutdown-timeout"]}})
        if self.workers.get(process.workerId) is process:
            del self.workers[process.workerId]

    def stopService(self) -> Deferred[None]:
        self._stopping = True
        # SIGTERM and SIGINT stay ours until the workers are gone: again,
        # they tell the workers to cut what they serve.
        self.signals.restore(*[n for n in self.signals.installed() if n not in STOP_SIGNALS])
        metrics = self.metrics
        drained: Deferred[None] = Deferred()
        if metrics is not None:
            # /healthz answers 503 from now on; the endpoint stays up until
            # the workers are gone.
            metrics.monitor.health.drain(until=drained)
        Service.stopService(self)
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

        def stopMetrics(result: object) -> Deferred[Any] | None:
            drained.callback(None)
            if metrics is None:
                return None
            return maybeDeferred(metrics.stopService)

        d.addBoth(stopMetrics)

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
            _log.warn("Worker {worker} did not stop in time; killing it.", worker=process.workerId)
            assert process.transport is not None  # every worker listed was spawned
            try:
                process.transport.signalProcess("KILL")
            except ierror.ProcessExitedAlready:
                pass


def checkWorkerCaches(config: ProxyConfig, count: int) -> None:
    """
    Make the workers' cache directories and check that each can be used
    (that no other process uses it), so that a problem is reported at
    start rather than by workers that keep failing.

    @raise StartupError: saying which directory and why.
    """
    if config.cacheDir is None or config.cacheDiskSize <= 0:
        return
    from ..proxy.cache import CacheDirectoryError, DiskStore

    for workerId in range(1, count + 1):
        own = workerConfig(config, workerId)
        assert own.cacheDir is not None
        try:
            store = DiskStore(own.cacheDir, own.cacheDiskSize, own.cacheMaxObject)
        except CacheDirectoryError as e:
            raise StartupError(str(e)) from None
        store.close()
