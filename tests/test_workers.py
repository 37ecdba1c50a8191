"""
Tests for C{--workers}: real worker processes on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.logger import globalLogPublisher
from twisted.internet.testing import EventLoggingObserver
from twisted.trial.unittest import TestCase
from twisted.web.client import ProxyAgent, readBody

from tests.test_integration import origin, sleep
from twisted_proxy.app.tap import Options, makeService


class WorkersTests(TestCase):
    timeout = 60

    async def startWorkers(self, *args: str):
        originPort = reactor.listenTCP(0, origin(), interface="127.0.0.1")
        self.addCleanup(originPort.stopListening)
        self.origin = "http://127.0.0.1:%d" % (originPort.getHost().port,)
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        self.history = os.path.join(d, "history.jsonl")
        config = Options()
        config.parseOptions(
            ["--listen", "tcp:0:interface=127.0.0.1", "--workers", "2", "--history", self.history,
             *args]
        )
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        service = makeService(config, reactor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        for _ in range(1000):
            if service.ports and len(service.workers) == 2:
                break
            await sleep(0.01)
        self.service = service
        self.port = service.ports[0].getHost().port
        return service

    async def request(self) -> bytes:
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), reactor)
        response = await agent.request(b"GET", (self.origin + "/small").encode("ascii"))
        return await readBody(response)

    def transactions(self) -> list[dict]:
        return [e["transaction"] for e in self.events if "transaction" in e]

    async def waitForTransactions(self, n: int) -> None:
        for _ in range(1000):
            if len(self.transactions()) >= n:
                return
            await sleep(0.01)

    async def test_bothWorkersServe(self) -> None:
        """
        Connections are served by both workers; each worker's transactions
        reach the parent's log and its single history file.
        """
        await self.startWorkers()
        seen: set[str] = set()
        count = 0
        for count in range(1, 201):
            self.assertEqual(await self.request(), b"hello from the origin\n")
            await self.waitForTransactions(count)
            seen = {t["connectionId"].split("-")[0] for t in self.transactions()}
            if seen == {"w1", "w2"}:
                break
        self.assertEqual(seen, {"w1", "w2"})
        self.assertEqual({e.get("worker") for e in self.events if "transaction" in e}, {1, 2})
        # The parent's history writer buffers for up to 50 ms.
        for observer in self.service.observers:
            observer.flush()
        with open(self.history) as f:
            records = [json.loads(line) for line in f]
        self.assertEqual(len(records), count)

    async def test_crashedWorkerRestarted(self) -> None:
        service = await self.startWorkers()
        victim = service.workers[1]
        os.kill(victim.transport.pid, signal.SIGKILL)
        await victim.ended
        for _ in range(500):
            if 1 in service.workers and service.workers[1] is not victim:
                break
            await sleep(0.01)
        self.assertIsNot(service.workers.get(1, victim), victim)
        self.assertTrue(
            any("exited unexpectedly" in e.get("log_format", "") for e in self.events)
        )
        for _ in range(5):
            self.assertEqual(await self.request(), b"hello from the origin\n")
