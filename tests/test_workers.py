"""
Tests for C{--workers}: real worker processes on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import ProxyAgent, readBody

from tests._loopback import listenLocal, portNumber, slowOrigin
from tests._typing import TestCaseMixin
from twisted_proxy.app.tap import Options, makeService
from twisted_proxy.app.workers import WorkerSupervisor
from twisted_proxy.testing import logEvents


class WorkersMixin(TestCaseMixin):
    """
    Start a supervisor of real workers on loopback, and talk to them.
    """

    timeout = 60

    async def startWorkers(
        self, *args: str, count: int = 2, history: bool = True
    ) -> WorkerSupervisor:
        originPort = listenLocal(slowOrigin())
        self.addCleanup(originPort.stopListening)
        self.origin = "http://127.0.0.1:%d" % (portNumber(originPort),)
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.history = os.path.join(self.dir, "history.jsonl")
        config = Options()
        config.parseOptions(
            [
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--workers",
                str(count),
                *(["--history", self.history] if history else []),
                *args,
            ]
        )
        self.events = logEvents(self, clock=reactor)
        service = makeService(config, reactor)
        assert isinstance(service, WorkerSupervisor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(self.stopWorkers, service)
        self.service = service
        sock = service.listeners[0].socket
        assert sock is not None
        self.port = sock.getsockname()[1]
        return service

    async def stopWorkers(self, service: WorkerSupervisor) -> None:
        if service.running:
            await service.stopService()

    def logged(self, text: str) -> bool:
        return self.events.logged(text)

    def count(self, text: str) -> int:
        """
        How many events logged so far say C{text}.
        """
        return sum(1 for e in self.events if text in (e.get("log_format") or ""))

    async def waitForLogged(self, text: str, count: int = 1, timeout: float = 20.0) -> None:
        """
        Wait until C{text} has been logged C{count} times in all.
        """
        await self.events.when(lambda events: self.count(text) >= count).addTimeout(
            timeout, reactor
        )

    async def request(self, path: str = "/small") -> bytes:
        """
        A request through the workers.  The parent listens before it starts
        them: while none accepts yet, the connection waits in the backlog.
        """
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), reactor)
        response = await agent.request(b"GET", (self.origin + path).encode("ascii"))
        return await readBody(response)

    def transactions(self) -> list[dict]:
        return [e["transaction"] for e in self.events if "transaction" in e]

    async def waitForTransactions(self, n: int, timeout: float = 20.0) -> None:
        """
        Wait until the parent has logged C{n} transactions from the workers.
        """
        await self.events.when(lambda events: len(self.transactions()) >= n).addTimeout(
            timeout, reactor
        )

    async def bothServe(self) -> int:
        """
        Send requests until each worker has served one (the kernel picks the
        worker that accepts); how many it took.
        """
        for count in range(1, 201):
            self.assertEqual(await self.request(), b"hello from the origin\n")
            await self.waitForTransactions(count)
            if {t["connectionId"].split("-")[0] for t in self.transactions()} == {"w1", "w2"}:
                return count
        self.fail("one worker served 200 requests in a row")


class WorkersTests(WorkersMixin, TestCase):
    async def test_bothWorkersServe(self) -> None:
        """
        Connections are served by both workers; each worker's transactions
        reach the parent's log and its single history file.
        """
        await self.startWorkers()
        count = await self.bothServe()
        self.assertEqual({e.get("worker") for e in self.events if "transaction" in e}, {1, 2})
        # The parent's history writer buffers for up to 50 ms.
        for observer in self.service.records.observers:
            observer.flush()
        with open(self.history) as f:
            records = [json.loads(line) for line in f]
        self.assertEqual(len(records), count)

    async def test_crashedWorkerRestarted(self) -> None:
        service = await self.startWorkers()
        victim = service.workers[1]
        assert victim.transport is not None
        started = self.count("Started worker")
        os.kill(victim.transport.pid, signal.SIGKILL)
        await victim.ended
        # Started again after a back-off of a second.
        await self.waitForLogged("Started worker", started + 1)
        self.assertIsNot(service.workers.get(1, victim), victim)
        self.assertTrue(self.logged("exited unexpectedly"))
        for _ in range(5):
            self.assertEqual(await self.request(), b"hello from the origin\n")

    async def test_workersIgnoreTerminalSignals(self) -> None:
        """
        SIGINT and SIGHUP sent to a worker (as a terminal's Ctrl-C or a
        closing terminal sends them to the whole process group) leave it
        running: the parent decides, and tells the workers.
        """
        if not os.path.exists("/proc/self/status"):
            raise SkipTest("needs /proc to read a process's ignored signals")
        service = await self.startWorkers()
        # Both have served: both are past the start, where they ignore them.
        await self.bothServe()
        workers = dict(service.workers)
        for worker in workers.values():
            assert worker.pid is not None
            # Ignored (SIG_IGN): the kernel discards them as they are sent,
            # so there is nothing to wait for after sending them.
            self.assertLessEqual({signal.SIGINT, signal.SIGHUP}, ignoredSignals(worker.pid))
            os.kill(worker.pid, signal.SIGINT)
            os.kill(worker.pid, signal.SIGHUP)
        self.assertEqual(service.workers, workers)
        self.assertFalse(any(worker.ended.called for worker in workers.values()))
        for _ in range(4):
            self.assertEqual(await self.request(), b"hello from the origin\n")

    async def test_gracefulStop(self) -> None:
        """
        Stopping the supervisor stops accepting at once, lets a transfer in
        progress in a worker finish, and waits for the workers to exit.
        """
        service = await self.startWorkers()
        await self.request()
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), reactor)
        response = await agent.request(b"GET", (self.origin + "/slow").encode("ascii"))
        body = defer.ensureDeferred(_read(response))
        workers = list(service.workers.values())
        stopped = service.stopService()
        self.assertFalse(any(worker.ended.called for worker in workers))
        self.assertEqual(await body, b"slow" * 10)
        await stopped
        self.assertTrue(all(worker.ended.called for worker in workers))
        self.assertTrue(self.logged("All connections finished"))

    async def test_stopWithoutRequests(self) -> None:
        """
        Workers that serve nothing stop at once.
        """
        service = await self.startWorkers()
        await self.request()
        workers = list(service.workers.values())
        await service.stopService()
        self.assertTrue(all(w.ended.called for w in workers))
        self.assertTrue(self.logged("twisted-proxy stopped."))


async def _read(response) -> bytes:
    return await readBody(response)


def ignoredSignals(pid: int) -> set[int]:
    """
    The signals process C{pid} ignores (its C{SigIgn} mask in /proc).
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigIgn:"):
                mask = int(line.split()[1], 16)
                return {n for n in range(1, 65) if mask & (1 << (n - 1))}
    return set()


class WorkerRollingTests(WorkersMixin, TestCase):
    """
    A reload that changes the listening sockets replaces the workers one by
    one: the old ones finish what they serve, the new ones serve the new
    sockets.
    """

    async def test_newSocketNewWorkers(self) -> None:
        config = os.path.join(tempfile.mkdtemp(), "proxy.toml")
        self.addCleanup(shutil.rmtree, os.path.dirname(config))
        with open(config, "w") as f:
            f.write('listen = ["tcp:0:interface=127.0.0.1"]\n')
        service = await self.startWorkers("--config", config)
        await self.request()
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), reactor)
        response = await agent.request(b"GET", (self.origin + "/slow").encode("ascii"))
        body = defer.ensureDeferred(_read(response))
        old = set(service.workers.values())
        service.source = _Source(
            service.source, ["tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.2"]
        )
        service.reload()
        self.assertTrue(self.logged("Configuration reloaded"))
        self.assertEqual(len(service.listeners), 2)
        self.assertFalse(set(service.workers.values()) & old)
        self.assertEqual(service.retiring, old)
        self.assertEqual(await body, b"slow" * 10)
        await defer.gatherResults([worker.ended for worker in old])
        self.assertEqual(service.retiring, set())
        sock = service.listeners[1].socket
        assert sock is not None
        second = sock.getsockname()[1]
        # The parent listens on the new socket: the request waits in its
        # backlog for a new worker.
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.2", second), reactor)
        response = await agent.request(b"GET", (self.origin + "/small").encode("ascii"))
        self.assertEqual(await readBody(response), b"hello from the origin\n")


class WorkerRollingCacheTests(WorkersMixin, TestCase):
    """
    With a disk cache, a worker's directory has one process: on a reload
    that changes the sockets, each new worker starts once the one it
    replaces has ended, one at a time, the others serving meanwhile.
    """

    async def test_oneAtATime(self) -> None:
        config = os.path.join(tempfile.mkdtemp(), "proxy.toml")
        self.addCleanup(shutil.rmtree, os.path.dirname(config))
        with open(config, "w") as f:
            f.write('listen = ["tcp:0:interface=127.0.0.1"]\n')
        cache = os.path.join(os.path.dirname(config), "cache")
        service = await self.startWorkers("--config", config, "--cache-dir", cache, history=False)
        await self.request()
        self.assertEqual(sorted(os.listdir(cache)), ["worker-1", "worker-2"])
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), reactor)
        response = await agent.request(b"GET", (self.origin + "/slow").encode("ascii"))
        body = defer.ensureDeferred(_read(response))
        old = dict(service.workers)
        started = self.count("Started worker")
        service.source = _Source(
            service.source, ["tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.2"]
        )
        service.reload()
        self.assertTrue(self.logged("Configuration reloaded"))
        # Worker 1 is retiring, worker 2 still serves; no new worker yet.
        self.assertEqual(service.retiring, {old[1]})
        self.assertEqual(service.workers, {2: old[2]})
        self.assertEqual(await body, b"slow" * 10)
        # Worker 2 retires once the new worker 1 is started; the new worker 2
        # starts once it has ended.
        await self.waitForLogged("Started worker", started + 2)
        self.assertEqual((len(service.workers), service.retiring), (2, set()))
        self.assertFalse(set(service.workers.values()) & set(old.values()))
        self.assertFalse(self.logged("exited unexpectedly"))
        self.assertFalse(any("in use" in str(e.get("line", "")) for e in self.events))
        self.assertEqual(await self.request(), b"hello from the origin\n")


class WorkerMetricsTests(WorkersMixin, TestCase):
    async def test_recordsReachTheParentForMetrics(self) -> None:
        """
        With C{--metrics} alone (no history, no access log), the workers
        still send their transactions to the parent, which counts them.
        """
        from twisted_proxy.app.metrics import MetricsService

        service = await self.startWorkers("--metrics", "tcp:0:interface=127.0.0.1", history=False)
        metrics = service.metrics
        assert isinstance(metrics, MetricsService)
        for _ in range(3):
            self.assertEqual(await self.request(), b"hello from the origin\n")
        # The metrics observe the same log events, as they are published.
        await self.waitForTransactions(3)
        self.assertEqual(metrics.monitor.stats.total, 3)
        self.assertTrue(all("record" not in e for e in self.events if "transaction" in e))

    async def test_drainingWhileWorkersFinish(self) -> None:
        """
        Stopping the parent: C{/healthz} answers 503 while the workers
        finish what they serve; the endpoint closes once they are gone.
        """
        from twisted.internet.error import ConnectionRefusedError
        from twisted.web.client import Agent

        service = await self.startWorkers("--metrics", "tcp:0:interface=127.0.0.1", history=False)
        assert service.metrics is not None
        metricsPort = (await service.metrics._waitingForPort).getHost().port

        async def health() -> tuple[int, bytes]:
            response = await Agent(reactor).request(
                b"GET", b"http://127.0.0.1:%d/healthz" % (metricsPort,)
            )
            return response.code, await readBody(response)

        await self.request()
        self.assertEqual(await health(), (200, b"ok\n"))
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), reactor)
        response = await agent.request(b"GET", (self.origin + "/slow").encode("ascii"))
        body = defer.ensureDeferred(_read(response))
        stopped = service.stopService()
        self.assertEqual(await health(), (503, b"draining\n"))
        self.assertEqual(await body, b"slow" * 10)
        await stopped
        with self.assertRaises(ConnectionRefusedError):
            await health()


class WorkerRecordsTests(WorkersMixin, TestCase):
    async def test_historyStartedByReload(self) -> None:
        """
        A history file named by a reload gets the workers' transactions
        (the workers start sending their records).
        """
        config = os.path.join(tempfile.mkdtemp(), "proxy.toml")
        self.addCleanup(shutil.rmtree, os.path.dirname(config))
        # At debug level each worker says when it has applied a reload.
        with open(config, "w") as f:
            f.write('log-level = "debug"\n')
        service = await self.startWorkers("--config", config, history=False)
        await self.request()
        with open(config, "w") as f:
            f.write(f'log-level = "debug"\nhistory = {json.dumps(self.history)}\n')
        service.reload()
        self.assertTrue(self.logged("Configuration reloaded"))
        # The workers get the reload through their pipes, a moment later;
        # until then they send no records (only the summary events).
        await self.waitForLogged("applied the reloaded configuration", 2)
        self.assertEqual(self.transactions(), [])
        for _ in range(4):
            self.assertEqual(await self.request(), b"hello from the origin\n")
        await self.waitForTransactions(4)
        # The parent's history writer buffers for up to 50 ms.
        for observer in service.records.observers:
            observer.flush()
        with open(self.history) as f:
            self.assertEqual(len(f.read().splitlines()), 4)


class _Source:
    """
    The service's settings source, with other --listen values (the tests
    listen on port 0, which a file cannot name twice).
    """

    def __init__(self, source, listen: list[str]) -> None:
        self.source = source
        self.listen = listen

    def read(self):
        from twisted_proxy.app.settings import CommandLine

        values = dict(self.source.values)
        values["listen"] = self.listen
        return CommandLine(values, self.source.clientOrder).read()


class ParentReadsRecordsTests(TestCase):
    """
    Whether workers send their transactions to the parent: while the parent
    writes the history or the access log, or serves --metrics (the endpoint
    it started with: a reload cannot add one).
    """

    def test_when(self) -> None:
        from twisted_proxy.app.workerprocess import parentReadsRecords

        def settings(*args: str):
            config = Options()
            config.parseOptions(list(args))
            return config["settings"]

        plain = settings()
        metrics = settings("--metrics", "9100")
        self.assertFalse(parentReadsRecords(plain))
        self.assertTrue(parentReadsRecords(settings("--access-log", os.devnull)))
        self.assertTrue(parentReadsRecords(metrics))
        self.assertTrue(parentReadsRecords(plain, metrics))
        self.assertFalse(parentReadsRecords(metrics, plain))


class _Supervisor:
    """
    What a L{_WorkerProcess} reads of its supervisor: the console, and the
    publisher it hands JSON events to.
    """

    def __init__(self, console) -> None:
        from twisted.internet.task import Clock

        self.reactor = Clock()
        self.console = console
        self.published: list[dict] = []

    def publish(self, event: dict) -> None:
        self.published.append(event)


class RelayTests(TestCase):
    """
    A worker's log events on their way to the parent: console lines as
    text, rendered by the worker; what the parent's observers read as
    JSON.
    """

    def relay(self, text: bool = True, records: bool = True):
        import io

        from twisted.logger import LogLevel

        from twisted_proxy.app.console import BufferedWriter
        from twisted_proxy.app.workerprocess import _Relay

        relay = _Relay(2, LogLevel.info, records, text)
        self.out = io.StringIO()
        relay.writer = BufferedWriter(self.out)
        return relay

    def event(self, fmt: str, **fields):
        from twisted.logger import LogLevel

        return {
            "log_format": fmt,
            "log_level": fields.pop("level", LogLevel.info),
            "log_namespace": "twisted_proxy.proxy.server.ProxyServerProtocol",
            "log_system": "proxy",
            "log_time": 1796177540.25,
            **fields,
        }

    def records(self) -> list[str]:
        from twisted_proxy.app.workerprocess import RS

        return self.out.getvalue().split(RS)[:-1]

    def test_consoleLineAsText(self) -> None:
        """
        An event that is only shown travels as the parent's console line
        for it, tagged with the worker.
        """
        from twisted_proxy.app.console import formatLine

        self.relay()(self.event("Request has been received: GET / at 03:00:00.000001"))
        [record] = self.records()
        expected = formatLine(
            self.event(
                "Request has been received: GET / at 03:00:00.000001", log_system="worker-2 proxy"
            )
        )
        assert expected is not None
        self.assertEqual(record, "T" + expected)
        self.assertIn("[worker-2 proxy] Request has been received", record)

    def test_whatTheParentReadsAsJSON(self) -> None:
        """
        Transaction records, refusals (C{rule}) and gauges travel as JSON
        events, which the parent publishes to its observers.
        """
        from twisted.logger import eventFromJSON

        relay = self.relay()
        relay(self.event("", transaction={"status": 200}, record=object()))
        relay(self.event("Refused: 403", rule="deny-host", error="destination_denied"))
        relay(self.event("", metricsGauges={"open": 1.0}, pid=7))
        events = [eventFromJSON(r) for r in self.records()]
        self.assertEqual(events[0]["transaction"], {"status": 200})
        self.assertNotIn("record", events[0])
        self.assertEqual(events[1]["rule"], "deny-host")
        self.assertEqual(events[2]["metricsGauges"], {"open": 1.0})

    def test_withoutTextEverythingIsJSON(self) -> None:
        """
        When the parent's console is not a text console (C{--syslog}),
        every event travels as JSON, for the parent to render.
        """
        from twisted.logger import eventFromJSON

        self.relay(text=False)(self.event("Request has been received"))
        [record] = self.records()
        self.assertEqual(eventFromJSON(record)["log_format"], "Request has been received")

    def test_levelFilters(self) -> None:
        """
        What the parent's console does not show does not travel, nor do
        transaction records the parent does not read; what its metrics
        read travels whatever the console's level.
        """
        from twisted.logger import LogLevel, eventFromJSON

        relay = self.relay(records=False)
        relay.level = LogLevel.warn
        relay(self.event("Request has been received"))
        relay(self.event("", transaction={"status": 200}))
        relay(self.event("", metricsGauges={"open": 1.0}, pid=7))
        [record] = self.records()
        self.assertEqual(eventFromJSON(record)["metricsGauges"], {"open": 1.0})

    def test_parentWritesTextPublishesJSON(self) -> None:
        """
        The parent writes a text record to its console as it is, and
        publishes a JSON record, tagged with the worker.
        """
        import io

        from twisted.logger import eventAsJSON

        from twisted_proxy.app.console import Console
        from twisted_proxy.app.workerprocess import RS
        from twisted_proxy.app.workers import _WorkerProcess

        stream = io.StringIO()
        supervisor = _Supervisor(Console(stream))
        process = _WorkerProcess(supervisor, 3)  # type: ignore[arg-type]
        line = "2026-12-02T03:00:00+0000 [worker-3 proxy] Request has been received\n"
        data = ("T" + line + RS + eventAsJSON(self.event("", transaction={"a": 1})) + RS).encode()
        # Records may arrive cut anywhere.
        process.outReceived(data[:10])
        process.outReceived(data[10:])
        self.assertEqual(stream.getvalue(), line)
        [event] = supervisor.published
        self.assertEqual((event["worker"], event["log_system"]), (3, "worker-3 proxy"))
        self.assertEqual(event["transaction"], {"a": 1})


class WorkerConsoleTests(TestCase):
    """
    The console of C{twistd -n proxyserver --workers 2}.
    """

    timeout = 60

    async def test_workersLinesOnTheConsole(self) -> None:
        """
        The brief's lines of a request a worker served reach the parent's
        console, tagged with the worker, as the parent writes its own.
        """
        import re

        from tests._twistd import startTwistd

        originPort = listenLocal(slowOrigin())
        self.addCleanup(originPort.stopListening)
        twistd = startTwistd(
            self,
            "-n",
            "--pidfile=",
            "proxyserver",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--workers",
            "2",
        )
        await twistd.waitFor("Started worker 2")
        listening = re.search(r"listening on 127\.0\.0\.1:(\d+)", twistd.output)
        assert listening is not None
        port = int(listening.group(1))
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", port), reactor)
        url = "http://127.0.0.1:%d/small" % (portNumber(originPort),)
        response = await agent.request(b"GET", url.encode("ascii"))
        self.assertEqual(await readBody(response), b"hello from the origin\n")
        await twistd.waitFor("Destination IP address: 127.0.0.1")
        self.assertRegex(
            twistd.output,
            r"\[worker-[12] proxy\] Request has been received: GET " + re.escape(url),
        )
        twistd.signal("TERM")
        self.assertEqual(await twistd.ended, 0, twistd.output)
