"""
Helpers for the tests that run C{twistd proxyserver} in a subprocess, as a
person would: its command line and environment (the checkout first on the
path), and L{TwistdProcess}, which waits for what it prints.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable

from twisted.internet import defer, reactor, task
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

# The checkout's root (the tests' parent directory).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def twistdArgv(*args: str) -> list[str]:
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *args]


def twistdEnv() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("COLUMNS", None)
    return env


class TwistdProcess(ProcessProtocol):
    """
    C{twistd} in a subprocess: its output, line by line, and its end.
    """

    transport: IProcessTransport

    def __init__(self) -> None:
        self.output = ""
        self.ended: defer.Deferred[int | None] = defer.Deferred()
        self._waiting: list[tuple[str, int, defer.Deferred[None]]] = []

    def outReceived(self, data: bytes) -> None:
        self.received(data)

    def errReceived(self, data: bytes) -> None:
        self.received(data)

    def received(self, data: bytes) -> None:
        self.output += data.decode("utf-8", "replace")
        for entry in list(self._waiting):
            text, count, d = entry
            if self.output.count(text) >= count:
                self._waiting.remove(entry)
                d.callback(None)

    def processEnded(self, reason) -> None:
        for text, _, d in self._waiting:
            d.errback(AssertionError(f"twistd ended before printing {text!r}:\n{self.output}"))
        self._waiting = []
        self.ended.callback(reason.value.exitCode)

    def waitFor(self, text: str, timeout: float = 30, count: int = 1) -> defer.Deferred[None]:
        """
        Fire once C{text} was printed (C{count} times in all).
        """
        if self.output.count(text) >= count:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append((text, count, d))
        return d.addTimeout(timeout, reactor)

    def signal(self, name: str) -> None:
        import signal

        os.kill(self.transport.pid, getattr(signal, "SIG" + name))

    def port(self) -> int:
        """
        The port of the first "listening on 127.0.0.1:PORT" line.
        """
        marker = "listening on 127.0.0.1:"
        rest = self.output[self.output.index(marker) + len(marker) :]
        return int(rest.split()[0])


async def pollUntil(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """
    Wait until C{condition()} holds, looking every 10 ms, for at most
    C{timeout} seconds (then the test fails, saying C{what} never happened).

    Only for what a subprocess does without announcing it (a file it
    creates, with nothing printed): nothing fires a Deferred for that, so it
    can only be looked for.  Everything else is waited for on the event
    itself (a line printed, a connection lost, a log event).
    """
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError(f"{what}: not within {timeout} s")


def accepting(path: str) -> bool:
    """
    Whether a unix socket at C{path} accepts connections (its file exists
    from the moment it is bound, a moment before it listens).
    """
    import socket

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def startTwistd(
    test: TestCase, *args: str, cwd: str | None = None, newSession: bool = False
) -> TwistdProcess:
    """
    Start C{twistd -n --pidfile= [args]} (args after C{proxyserver} included),
    stopped (killed) at the end of the test if still running.
    """
    if cwd is None:
        cwd = tempfile.mkdtemp()
        test.addCleanup(shutil.rmtree, cwd)
    process = TwistdProcess()
    argv = twistdArgv(*args)
    if newSession:
        # A process group of its own, as a terminal gives a command.
        argv = [
            sys.executable,
            "-c",
            "import os, sys; os.setsid(); os.execv(sys.argv[1], sys.argv[1:])",
            *argv,
        ]
    reactor.spawnProcess(process, argv[0], argv, env=twistdEnv(), path=cwd)

    async def stop() -> None:
        if not process.ended.called:
            process.signal("KILL")
            await process.ended

    test.addCleanup(lambda: defer.ensureDeferred(stop()))
    return process
