"""
Loopback integration tests for C{--metrics}: the real service from
L{twisted_proxy.app.tap.makeService} (in one process, and with worker
processes), a real origin, real clients, and the endpoint read over HTTP.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.logger import LogEvent
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, ProxyAgent, readBody

from tests._loopback import ProxyTestMixin, listenLocal, origin, portNumber, rawRequest
from twisted_proxy.app.metrics import MetricsService
from twisted_proxy.app.runtime import StartupError
from twisted_proxy.app.tap import Options, makeService
from twisted_proxy.testing import logEvents


def parsed(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    result = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def sample(samples: dict, name: str, **labels: str) -> float:
    """
    The value of a sample that must be there.
    """
    found = value(samples, name, **labels)
    assert found is not None, (name, labels)
    return found


def transactions(events: Iterable[LogEvent]) -> int:
    """
    How many transaction records C{events} carry.
    """
    return sum(1 for e in events if "transaction" in e)


class SingleProcessTests(ProxyTestMixin, TestCase):
    timeout = 30

    async def setUpMetrics(self, *args: str) -> None:
        await self.setUpProxy(
            "--metrics", "tcp:0:interface=127.0.0.1", "--deny-host", "*.blocked.test", *args
        )
        [metrics] = [s for s in self.service if isinstance(s, MetricsService)]
        self.metrics = metrics
        port = await metrics._waitingForPort
        self.metricsPort = port.getHost().port
        self.base = "http://127.0.0.1:%d" % (self.metricsPort,)

    async def fetch(self, path: str) -> tuple[int, bytes]:
        response = await Agent(reactor).request(b"GET", (self.base + path).encode("ascii"))
        return response.code, await readBody(response)

    async def test_scrape(self) -> None:
        """
        After known requests through the proxy, a scrape of /metrics has
        them: by method and status class, bytes, durations, the refusal.
        """
        await self.setUpMetrics()
        for path in ("/small", "/small", "/big", "/missing"):
            await self.get(path)
        answer = await rawRequest(
            self.proxyPort,
            b"GET http://x.blocked.test/ HTTP/1.1\r\nHost: x.blocked.test\r\n"
            b"Connection: close\r\n\r\n",
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 403 "))
        code, body = await self.fetch("/metrics")
        self.assertEqual(code, 200)
        samples = parsed(body)
        requests = "twisted_proxy_requests_total"
        self.assertEqual(value(samples, requests, method="GET", status_class="2xx"), 3)
        self.assertEqual(value(samples, requests, method="GET", status_class="4xx"), 2)
        self.assertGreater(
            sample(samples, "twisted_proxy_bytes_total", side="client", direction="sent"),
            1024 * 1024,
        )
        self.assertEqual(
            value(samples, "twisted_proxy_request_duration_seconds_count", kind="http"), 4
        )
        self.assertEqual(value(samples, "twisted_proxy_time_to_first_byte_seconds_count"), 4)
        self.assertEqual(
            value(samples, "twisted_proxy_refusals_total", rule="deny-host *.blocked.test"), 1
        )
        self.assertEqual(value(samples, "twisted_proxy_client_connections"), 0)
        self.assertGreater(sample(samples, "process_resident_memory_bytes") or 1, 0)

    async def test_healthAndPage(self) -> None:
        await self.setUpMetrics()
        await self.get("/small")
        self.assertEqual(await self.fetch("/healthz"), (200, b"ok\n"))
        code, page = await self.fetch("/")
        self.assertEqual(code, 200)
        self.assertIn(self.origin.encode("ascii") + b"/small", page)
        # Draining (as graceful shutdown will say): 503 while the transfers
        # finish, and the endpoint stays up until they have.
        transfers: Deferred[None] = Deferred()
        self.metrics.monitor.health.drain(until=transfers)
        self.assertEqual(await self.fetch("/healthz"), (503, b"draining\n"))
        transfers.callback(None)

    async def test_notThroughTheProxy(self) -> None:
        """
        A proxy client cannot read the status page through the proxy: the
        endpoint's address is the proxy's own.
        """
        await self.setUpMetrics()
        target = "127.0.0.1:%d" % (self.metricsPort,)
        answer = await rawRequest(
            self.proxyPort,
            (
                "GET http://%s/ HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                % (target, target)
            ).encode("ascii"),
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 508 "), answer[:100])
        self.assertNotIn(b"twisted-proxy</h1>", answer)

    async def test_portInUse(self) -> None:
        """
        A metrics port that cannot be opened stops the start with one line.
        """
        await self.setUpMetrics()
        config = Options()
        config.parseOptions(
            [
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--metrics",
                "tcp:%d:interface=127.0.0.1" % (self.metricsPort,),
            ]
        )
        service = makeService(config, reactor)
        error = self.assertRaises(StartupError, service.privilegedStartService)
        self.assertIn(
            "cannot listen on 127.0.0.1:%d for --metrics" % (self.metricsPort,), str(error)
        )
        self.assertNotIn("\n", str(error))
        # Nothing is left open: the proxy's own port was closed again.
        self.assertEqual([listener.socket for listener in service.listeners], [None])


class WorkersTests(TestCase):
    """
    With --workers 2, one scrape of the parent sees both workers.
    """

    timeout = 60

    async def test_aggregated(self) -> None:
        originPort = listenLocal(origin())
        self.addCleanup(originPort.stopListening)
        originURL = "http://127.0.0.1:%d" % (portNumber(originPort),)
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        config = Options()
        config.parseOptions(
            [
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--workers",
                "2",
                "--metrics",
                "tcp:0:interface=127.0.0.1",
                "--history",
                os.path.join(d, "history.jsonl"),
            ]
        )
        # Both workers have reported their gauges at least once.
        events = logEvents(self, clock=reactor)
        reported = events.when(
            lambda events: {e.get("worker") for e in events if "metricsGauges" in e} >= {1, 2}
        )
        service = makeService(config, reactor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        [metrics] = [s for s in service if isinstance(s, MetricsService)]
        metricsPort = portNumber(await metrics._waitingForPort)
        await reported
        proxyPort = service.listeners[0].port
        assert proxyPort is not None
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", proxyPort), reactor)
        count = 20
        before = transactions(events)
        finished = events.when(lambda events: transactions(events) >= before + count)
        for _ in range(count):
            response = await agent.request(b"GET", (originURL + "/small").encode("ascii"))
            await readBody(response)
        await finished
        response = await Agent(reactor).request(
            b"GET", b"http://127.0.0.1:%d/metrics" % (metricsPort,)
        )
        samples = parsed(await readBody(response))
        self.assertEqual(
            value(samples, "twisted_proxy_requests_total", method="GET", status_class="2xx"),
            count,
        )
        self.assertEqual(value(samples, "twisted_proxy_workers"), 2)
        if os.path.isdir("/proc/self"):
            for worker in ("1", "2"):
                self.assertGreater(
                    sample(
                        samples, "twisted_proxy_worker_process_resident_memory_bytes", worker=worker
                    ),
                    0,
                )
