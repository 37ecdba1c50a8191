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
from twisted.trial.unittest import TestCase
from twisted.web.client import ProxyAgent, readBody

from tests._loopback import listenLocal, portNumber, sleep, slowOrigin
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
        self.events = logEvents(self)
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
        return any(text in (e.get("log_format") or "") for e in self.events)

    async def waitFor(self, condition, timeout: float = 20.0) -> None:
        for _ in range(int(timeout / 0.01)):
            if condition():
                return
            await sleep(0.01)

    async def request(self, path: str = "/small") -> bytes:
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), reactor)
        response = await agent.request(b"GET", (self.origin + path).encode("ascii"))
        return await readBody(response)

    async def requestUntilServed(self, path: str = "/small") -> bytes:
        """
        Workers start asynchronously: retry a refused connection for a while.
        """
        from twisted.internet.error import ConnectionRefusedError

        for _ in range(200):
            try:
                return await self.request(path)
            except ConnectionRefusedError:
                await sleep(0.05)
        return await self.request(path)

    def transactions(self) -> list[dict]:
        return [e["transaction"] for e in self.events if "transaction" in e]

    async def waitForTransactions(self, n: int) -> None:
        await self.waitFor(lambda: len(self.transactions()) >= n)


class WorkersTests(WorkersMixin, TestCase):
    async def test_bothWorkersServe(self) -> None:
        """
        Connections are served by both workers; each worker's transactions
        reach the parent's log and its single history file.
        """
        await self.startWorkers()
        seen: set[str] = set()
        count = 0
        for count in range(1, 201):
            self.assertEqual(await self.requestUntilServed(), b"hello from the origin\n")
            await self.waitForTransactions(count)
            seen = {t["connectionId"].split("-")[0] for t in self.transactions()}
            if seen == {"w1", "w2"}:
                break
        self.assertEqual(seen, {"w1", "w2"})
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
        os.kill(victim.transport.pid, signal.SIGKILL)
        await victim.ended
        await self.waitFor(lambda: 1 in service.workers and service.workers[1] is not victim)
        self.assertIsNot(service.workers.get(1, victim), victim)
        self.assertTrue(self.logged("exited unexpectedly"))
        for _ in range(5):
            self.assertEqual(await self.requestUntilServed(), b"hello from the origin\n")

    async def test_workersIgnoreTerminalSignals(self) -> None:
        """
        SIGINT and SIGHUP sent to a worker (as a terminal's Ctrl-C or a
        closing terminal sends them to the whole process group) leave it
        running: the parent decides, and tells the workers.
        """
        service = await self.startWorkers()
        await self.requestUntilServed()
        workers = dict(service.workers)
        for worker in workers.values():
            assert worker.transport is not None
            os.kill(worker.transport.pid, signal.SIGINT)
            os.kill(worker.transport.pid, signal.SIGHUP)
        await sleep(0.3)
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
        await self.requestUntilServed()
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
        await self.requestUntilServed()
        workers = list(service.workers.values())
        await service.stopService()
        self.assertTrue(all(w.ended.called for w in workers))
        self.assertTrue(self.logged("twisted-proxy stopped."))


async def _read(response) -> bytes:
    return await readBody(response)


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
        await self.requestUntilServed()
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
        await self.waitFor(lambda: not service.retiring)
        self.assertEqual(service.retiring, set())
        sock = service.listeners[1].socket
        assert sock is not None
        second = sock.getsockname()[1]
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.2", second), reactor)
        for _ in range(200):
            try:
                response = await agent.request(b"GET", (self.origin + "/small").encode("ascii"))
                break
            except Exception:
                await sleep(0.05)
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
        await self.requestUntilServed()
        self.assertEqual(sorted(os.listdir(cache)), ["worker-1", "worker-2"])
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), reactor)
        response = await agent.request(b"GET", (self.origin + "/slow").encode("ascii"))
        body = defer.ensureDeferred(_read(response))
        old = dict(service.workers)
        service.source = _Source(
            service.source, ["tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.2"]
        )
        service.reload()
        self.assertTrue(self.logged("Configuration reloaded"))
        # Worker 1 is retiring, worker 2 still serves; no new worker yet.
        self.assertEqual(service.retiring, {old[1]})
        self.assertEqual(service.workers, {2: old[2]})
        self.assertEqual(await body, b"slow" * 10)
        await self.waitFor(lambda: len(service.workers) == 2 and not service.retiring)
        self.assertFalse(set(service.workers.values()) & set(old.values()))
        self.assertFalse(self.logged("exited unexpectedly"))
        self.assertFalse(any("in use" in str(e.get("line", "")) for e in self.events))
        self.assertEqual(await self.requestUntilServed(), b"hello from the origin\n")


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
            self.assertEqual(await self.requestUntilServed(), b"hello from the origin\n")
        await self.waitForTransactions(3)
        await self.waitFor(lambda: metrics.monitor.stats.total >= 3)
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

        await self.requestUntilServed()
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
        with open(config, "w") as f:
            f.write('log-level = "info"\n')
        service = await self.startWorkers("--config", config, history=False)
        await self.requestUntilServed()
        with open(config, "w") as f:
            f.write(f"history = {json.dumps(self.history)}\n")
        service.reload()
        self.assertTrue(self.logged("Configuration reloaded"))

        def records() -> int:
            if not os.path.exists(self.history):
                return 0
            with open(self.history) as f:
                return len(f.read().splitlines())

        # The workers get the reload through their pipes, a moment later.
        for _ in range(100):
            await self.request()
            await self.waitFor(lambda: records() > 0, timeout=0.1)
            if records():
                break
        before = records()
        self.assertGreater(before, 0)
        for _ in range(4):
            self.assertEqual(await self.request(), b"hello from the origin\n")
        await self.waitFor(lambda: records() >= before + 4)
        self.assertEqual(records(), before + 4)


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
