# -*- test-case-name: tests.test_workers -*-
"""
Multi-core serving: C{--workers N}.

The parent process (L{WorkerSupervisor}) opens the listening sockets, then
starts N worker processes (C{python -m twisted_proxy.app.workers}) that adopt
them with C{reactor.adoptStreamPort} and serve connections; the kernel hands
each new connection to whichever worker accepts it first.

Workers do not write log files themselves: each worker's log events travel
to the parent as JSON (one record per event, on the worker's stdout), and
the parent publishes them, tagged with the worker's id, to its own log
observers.  So the console shows every worker, and the history and access
log files have exactly one writer: records never interleave, and rotation
and SIGUSR1 reopening work as with one process.

The parent supervises: a worker that exits unexpectedly is logged and
restarted after a back-off delay (1 s, doubling up to 30 s, reset once a
worker has run for a minute).  On shutdown (SIGTERM to twistd) the parent
sends SIGTERM to every worker, which stops accepting, finishes what it can
and exits; workers still running after C{stopTimeout} seconds are killed.
"""

from __future__ import annotations

import os
import socket
import sys

from twisted.application.service import MultiService

from .service import LogFilesService
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.protocol import Factory, Protocol, ProcessProtocol
from twisted.logger import Logger, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure

__all__ = ["WorkerSupervisor", "main"]

_RS = b"\x1e"


class _NoAccept(Factory):
    """
    The parent listens but never accepts (its port stops reading at once);
    this factory is never asked for a protocol in practice.
    """

    noisy = False

    def buildProtocol(self, addr: object) -> Protocol | None:
        return None


class _WorkerProcess(ProcessProtocol):
    """
    One worker: relays its log events to the parent's log publisher.
    """

    _log = Logger()

    def __init__(self, supervisor: WorkerSupervisor, workerId: int) -> None:
        self.supervisor = supervisor
        self.workerId = workerId
        self._buffer = b""
        self.ended: Deferred[None] = Deferred()
        self.startedAt = supervisor.clock.seconds()

    def outReceived(self, data: bytes) -> None:
        buffer = self._buffer + data
        *records, self._buffer = buffer.split(_RS)
        for record in records:
            record = record.strip()
            if not record:
                continue
            try:
                event = eventFromJSON(record.decode("utf-8"))
            except ValueError:
                self._log.warn(
                    "worker {worker}: unreadable log record {record!r}",
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
                self._log.warn("worker {worker}: {line}", worker=self.workerId, line=line)

    def processEnded(self, reason: Failure) -> None:
        self.supervisor.workerEnded(self, reason)
        self.ended.callback(None)


class WorkerSupervisor(LogFilesService):
    """
    Opens the listening sockets, starts and supervises the workers.

    @ivar argv: the C{proxyserver} arguments, given to every worker.
    @ivar descriptions: the endpoint descriptions to listen on.
    @ivar count: how many workers.
    """

    _log = Logger()
    stopTimeout = 15.0
    maxBackoff = 30.0
    stableAfter = 60.0

    def __init__(
        self,
        reactor,
        argv: list[str],
        descriptions: list[str],
        count: int,
        observers=(),
        publisher=None,
    ) -> None:
        super().__init__(observers, reactor)
        self.reactor = reactor
        self.clock = reactor
        self.argv = argv
        self.descriptions = descriptions
        self.count = count
        self.publish = publisher if publisher is not None else globalLogPublisher
        self.ports: list = []
        self.workers: dict[int, _WorkerProcess] = {}
        self._backoff: dict[int, float] = {}
        self._restartCalls: dict[int, object] = {}
        self._stopping = False

    def privilegedStartService(self) -> None:
        from twisted.internet.endpoints import serverFromString

        waiting = []
        for description in self.descriptions:
            d = serverFromString(self.reactor, description).listen(_NoAccept())
            failed: list[Failure] = []
            d.addErrback(lambda f, failed=failed: failed.append(f) or f)
            if failed and failed[0].check(ierror.CannotListenError):
                # TCP and unix ports are opened at once: fail the start, as
                # the single-process service does, and twistd exits 1.
                e = failed[0].value
                d.addErrback(lambda f: None)
                for other in waiting:
                    other.addCallback(lambda port: port.stopListening())
                raise SystemExit(
                    "twisted-proxy: cannot listen on {}:{}: {}.  Is another proxy running "
                    "there? Choose another port with --listen.".format(
                        e.interface or "*", e.port, e.socketError
                    )
                )
            waiting.append(d)
        self._listening = DeferredList(waiting, fireOnOneErrback=True, consumeErrors=True)
        self._listening.addCallback(self._gotPorts)
        self._listening.addErrback(self._listenFailed)
        super().privilegedStartService()

    def _listenFailed(self, failure: Failure) -> None:
        error = failure.value.subFailure if hasattr(failure.value, "subFailure") else failure
        self._log.failure("Could not listen; stopping.", error)
        self.reactor.stop()

    def _gotPorts(self, results) -> None:
        for _, port in results:
            port.stopReading()
            self.ports.append(port)
            self._log.info("twisted-proxy listening on {address} for {count} workers",
                           address=port.getHost(), count=self.count)
        if not self._stopping:
            for workerId in range(1, self.count + 1):
                self._spawn(workerId)

    def _spawn(self, workerId: int) -> None:
        self._restartCalls.pop(workerId, None)
        adopt = []
        childFDs: dict[int, object] = {0: "w", 1: "r", 2: "r"}
        for port in self.ports:
            fd = port.fileno()
            family = port.socket.family
            adopt += ["--worker-adopt", "{}:{}".format(fd, int(family))]
            childFDs[fd] = fd
        args = [
            sys.executable, "-m", "twisted_proxy.app.workers",
            "--worker-id", str(workerId), *adopt, "--", *self.argv,
        ]
        process = _WorkerProcess(self, workerId)
        self.workers[workerId] = process
        self.reactor.spawnProcess(process, sys.executable, args, env=os.environ, childFDs=childFDs)
        self._log.info("Started worker {worker} (pid {pid})", worker=workerId,
                       pid=process.transport.pid)

    def workerEnded(self, process: _WorkerProcess, reason: Failure) -> None:
        workerId = process.workerId
        if self.workers.get(workerId) is process:
            del self.workers[workerId]
        if self._stopping:
            self._log.info("Worker {worker} stopped.", worker=workerId)
            return
        ranFor = self.clock.seconds() - process.startedAt
        delay = 1.0 if ranFor >= self.stableAfter else min(
            self.maxBackoff, self._backoff.get(workerId, 0.5) * 2
        )
        self._backoff[workerId] = delay
        self._log.error(
            "Worker {worker} exited unexpectedly ({reason}) after {ranFor:.1f} s; "
            "restarting it in {delay:.0f} s.",
            worker=workerId,
            reason=reason.getErrorMessage(),
            ranFor=ranFor,
            delay=delay,
        )
        self._restartCalls[workerId] = self.clock.callLater(delay, self._spawn, workerId)

    _previousHUP = None

    def stopService(self) -> Deferred:
        import signal

        self._stopping = True
        if self._previousHUP is not None:
            signal.signal(signal.SIGHUP, self._previousHUP)
            self._previousHUP = None
        for call in self._restartCalls.values():
            if call.active():
                call.cancel()
        self._restartCalls.clear()
        ended = []
        for process in list(self.workers.values()):
            try:
                process.transport.signalProcess("TERM")
            except ierror.ProcessExitedAlready:
                continue
            ended.append(process.ended)
        killer = self.clock.callLater(self.stopTimeout, self._kill)
        d = DeferredList(ended) if ended else succeed(None)

        def stopped(result):
            if killer.active():
                killer.cancel()
            for port in self.ports:
                port.stopListening()
            self.ports = []
            return LogFilesService.stopService(self)

        return d.addBoth(stopped)

    def startService(self) -> None:
        import signal

        super().startService()
        if hasattr(signal, "SIGHUP"):
            # Each worker holds its own copy of the password file.
            self._previousHUP = signal.signal(
                signal.SIGHUP,
                lambda signum, frame: self.reactor.callFromThread(self._signalWorkers, "HUP"),
            )

    def _signalWorkers(self, name: str) -> None:
        for process in list(self.workers.values()):
            try:
                process.transport.signalProcess(name)
            except ierror.ProcessExitedAlready:
                pass

    def _kill(self) -> None:
        for process in list(self.workers.values()):
            self._log.warn("Worker {worker} did not stop in time; killing it.",
                           worker=process.workerId)
            try:
                process.transport.signalProcess("KILL")
            except ierror.ProcessExitedAlready:
                pass


class _AdoptedPorts(MultiService):
    """
    In a worker: serve connections on listening sockets the parent opened.
    """

    def __init__(self, reactor, factory, adopted: list[tuple[int, int]]) -> None:
        super().__init__()
        self.reactor = reactor
        self.factory = factory
        self.adopted = adopted
        self.ports: list = []

    def startService(self) -> None:
        super().startService()
        for fd, family in self.adopted:
            port = self.reactor.adoptStreamPort(fd, socket.AddressFamily(family), self.factory)
            address = port.getHost()
            host = getattr(address, "host", None)
            if host is not None:
                self.factory.addListeningAddress(host, address.port)
            self.ports.append(port)

    def stopService(self):
        super().stopService()
        return DeferredList([d for d in (p.stopListening() for p in self.ports) if d is not None])


def main(argv: list[str] | None = None) -> None:
    """
    A worker process: C{python -m twisted_proxy.app.workers --worker-id N
    --worker-adopt FD:FAMILY ... -- PROXYSERVER-ARGS}.
    """
    import signal

    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, jsonFileLogObserver

    from .options import Options
    from .service import buildProxy, raiseFileLimit

    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--")
    own, proxyArgs = argv[:split], argv[split + 1:]
    workerId = 0
    adopted: list[tuple[int, int]] = []
    while own:
        flag = own.pop(0)
        value = own.pop(0)
        if flag == "--worker-id":
            workerId = int(value)
        elif flag == "--worker-adopt":
            fd, family = value.split(":")
            adopted.append((int(fd), int(family)))
    config = Options()
    config.parseOptions(proxyArgs)

    globalLogBeginner.beginLoggingTo(
        [jsonFileLogObserver(os.fdopen(1, "w", closefd=False), _RS.decode())],
        redirectStandardIO=False,
        discardBuffer=True,
    )
    proxyConfig = config["config"]
    if proxyConfig.cacheDir is not None:
        # A disk cache has one process per directory.
        proxyConfig = proxyConfig.replace(
            cacheDir=os.path.join(proxyConfig.cacheDir, "worker-{}".format(workerId))
        )
        os.makedirs(proxyConfig.cacheDir, exist_ok=True)
    # The parent writes the history and access log from these records.
    factory, pool = buildProxy(
        proxyConfig,
        reactor,
        transactionDetail=True,
        connectionIdPrefix="w{}-".format(workerId),
    )
    raiseFileLimit(factory)
    service = MultiService()
    _AdoptedPorts(reactor, factory, adopted).setServiceParent(service)
    if config["metrics"] is not None:
        # The parent serves the endpoint; this worker reports its gauges.
        from .metrics import GaugeReporter, ProxyGauges, metricsAddress

        GaugeReporter(reactor, ProxyGauges(factory, pool).read).setServiceParent(service)
        address = metricsAddress(config["metrics"])
        if address is not None:
            factory.addListeningAddress(*address)
    # The parent writes the log files; it reopens them on SIGUSR1.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    if factory.config.policy.authenticating:
        from .service import onSignal, reloadPolicy

        onSignal(signal.SIGHUP, reactor, lambda: reloadPolicy(factory.config.policy))
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.addSystemEventTrigger("before", "shutdown", pool.closeIdle)
    reactor.run()


if __name__ == "__main__":
    main()
