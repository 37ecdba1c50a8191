"""
C{proxyclient} as a process (C{python -m twisted_proxy.client}), where the
behaviour is the process's: a reader that goes away (C{| head -1}),
Ctrl-C, and how it ends; against a fake proxy on loopback that answers
only when the test says.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests._client import FakeProxyFactory, FakeProxyProtocol
from tests._loopback import listenLocal, portNumber

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ClientProcess(ProcessProtocol):
    """
    A C{proxyclient} process: what it writes, when a line appears, and how
    it ended.
    """

    transport: IProcessTransport

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: defer.Deferred[BaseException] = defer.Deferred()
        self._waiting: list[tuple[bytes, defer.Deferred[None]]] = []

    def waitFor(self, text: bytes) -> defer.Deferred[None]:
        """
        Fire when stdout contains C{text}.
        """
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append((text, d))
        self._check()
        return d

    def _check(self) -> None:
        for text, d in list(self._waiting):
            if text in self.out:
                self._waiting.remove((text, d))
                d.callback(None)

    def outReceived(self, data: bytes) -> None:
        self.out += data
        self._check()

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        for text, d in self._waiting:
            d.errback(AssertionError("ended before writing {!r}: {!r}".format(text, self.out)))
        self._waiting = []
        assert reason.value is not None
        self.ended.callback(reason.value)


def environment() -> dict[str, str]:
    """
    This environment without proxy settings, with the checkout importable.
    """
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


class ProcessTests(TestCase):
    timeout = 60

    def startProxy(self) -> tuple[FakeProxyFactory, list[FakeProxyProtocol], int]:
        """
        A fake proxy that holds each request until the test answers it;
        L{requested} fires when it has one.
        """
        held: list[FakeProxyProtocol] = []
        self.requested: defer.Deferred[None] = defer.Deferred()

        def hold(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            held.append(proto)
            if not self.requested.called:
                self.requested.callback(None)

        factory = FakeProxyFactory(hold)
        port = listenLocal(factory)
        self.addCleanup(port.stopListening)

        def abortAll() -> defer.Deferred[None]:
            for proto in factory.connections:
                proto.transport.abortConnection()
            return defer.ensureDeferred(factory.allClosed(reactor))

        self.addCleanup(abortAll)
        return factory, held, portNumber(port)

    def spawn(self, *argv: str, **kwargs: Any) -> ClientProcess:
        process = ClientProcess()
        transport = reactor.spawnProcess(
            process,
            sys.executable,
            [sys.executable, "-m", "twisted_proxy.client", *argv],
            env=environment(),
            path=ROOT,
            **kwargs,
        )
        process.transport = transport

        def kill() -> defer.Deferred[BaseException] | None:
            if process.ended.called:
                return None
            transport.signalProcess("KILL")
            return process.ended

        self.addCleanup(kill)
        return process

    async def test_readerGoes(self) -> None:
        """
        C{proxyclient URL | head -1}: when the reader has gone, the client
        stops at its next write, prints nothing (no BrokenPipeError
        traceback) and ends by SIGPIPE, as coreutils do (shell status 141).
        """
        factory, held, port = self.startProxy()
        process = self.spawn("-x", "127.0.0.1:%d" % (port,), "http://example.com/")
        await process.waitFor(b"Request has been sent: ")
        await self.requested
        process.transport.closeChildFD(1)
        [proto] = held
        proto.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        ended = await process.ended
        assert isinstance(ended, ProcessTerminated)
        self.assertEqual(ended.signal, signal.SIGPIPE, (ended, process.err))
        self.assertEqual(process.err, b"")

    async def test_interrupted(self) -> None:
        """
        Ctrl-C while waiting for the response: one line saying so, exit
        code 130 (not "the proxy closed the connection").
        """
        factory, held, port = self.startProxy()
        process = self.spawn("-x", "127.0.0.1:%d" % (port,), "http://example.com/")
        await process.waitFor(b"Request has been sent: ")
        await self.requested
        process.transport.signalProcess("INT")
        ended = await process.ended
        assert isinstance(ended, ProcessTerminated)
        self.assertEqual(ended.exitCode, 130, process.err)
        self.assertEqual(process.err, b"proxyclient: Interrupted while waiting for the response.\n")
        self.assertNotIn(b"closed", process.out)

    async def test_interruptedAtPrompt(self) -> None:
        factory, held, port = self.startProxy()
        process = self.spawn("-x", "127.0.0.1:%d" % (port,))
        await process.waitFor(b"Enter the website's IP: ")
        process.transport.signalProcess("INT")
        ended = await process.ended
        self.assertEqual(getattr(ended, "exitCode", None), 130, process.err)
        self.assertEqual((process.out, process.err), (b"Enter the website's IP: \n", b""))
        self.assertEqual(factory.connections, [])

    async def test_badOutputPath(self) -> None:
        """
        C{-o /bad/path}: one line, exit code 2, nothing sent.
        """
        factory, held, port = self.startProxy()
        bad = os.path.join(os.sep, "nonexistent-proxyclient-dir", "body")
        process = self.spawn("-x", "127.0.0.1:%d" % (port,), "-o", bad, "http://example.com/")
        ended = await process.ended
        self.assertEqual(getattr(ended, "exitCode", None), 2)
        self.assertEqual(
            (process.out, process.err),
            (b"", b"proxyclient: --output " + bad.encode() + b": No such file or directory\n"),
        )
        self.assertEqual(factory.connections, [])

    async def test_success(self) -> None:
        """
        A normal run ends with code 0 (and the reactor's own SIGINT handling
        is not in the way).
        """
        factory, held, port = self.startProxy()
        process = self.spawn("-x", "127.0.0.1:%d" % (port,), "http://example.com/")
        await self.requested
        held[0].transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        ended = await process.ended
        self.assertIsInstance(ended, ProcessDone, process.err)
        self.assertIn(b"Round-trip time: ", process.out)
        self.assertIn(b"Physical MAC Address: ", process.out)
