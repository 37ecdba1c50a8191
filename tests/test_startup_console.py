"""
Tests for L{twisted_proxy.app.console}: the log a person reads.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ProxyAgent, readBody

from tests._twistd import accepting, pollUntil, startTwistd
from twisted_proxy.app import console
from twisted_proxy.app.console import Console, formatLine, wanted


def event(
    fmt: str, level: LogLevel = LogLevel.info, namespace: str = "twisted_proxy.x", **fields: object
) -> dict:
    return dict(log_format=fmt, log_level=level, log_namespace=namespace, log_time=0.0, **fields)


def _read(path: str) -> str:
    """
    What the file at C{path} holds, or nothing if there is no such file.
    """
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


class _Stream(io.StringIO):
    """
    A text stream that counts its writes and flushes.
    """

    writes = 0
    flushes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)

    def flush(self) -> None:
        self.flushes += 1


class FilterTests(SynchronousTestCase):
    def test_infoShowsOursAndProblems(self) -> None:
        info = LogLevel.info
        self.assertTrue(wanted(event("Connection has been accepted", log_system="proxy"), info))
        self.assertTrue(wanted(event("Access policy"), info))
        self.assertTrue(wanted(event("x", log_system="worker-1 proxy", namespace="y"), info))
        # Twisted's own chatter needs debug.
        chatter = event("Starting factory", namespace="twisted.internet.protocol")
        legacy = event("ProxyFactory starting on 8080", namespace="log_legacy", log_system="-")
        self.assertFalse(wanted(chatter, info))
        self.assertFalse(wanted(legacy, info))
        self.assertTrue(wanted(chatter, LogLevel.debug))
        # Problems from anything.
        self.assertTrue(wanted(event("Unhandled", LogLevel.critical, "twisted.internet"), info))
        self.assertTrue(wanted(event("careful", LogLevel.warn, "twisted.web"), info))
        # Our debug lines need debug.
        tunnel = event("Tunnel closed (normal) after {duration} seconds", LogLevel.debug)
        self.assertFalse(wanted(tunnel, info))
        self.assertTrue(wanted(tunnel, LogLevel.debug))

    def test_levels(self) -> None:
        brief = event("Request has been received", log_system="proxy")
        self.assertFalse(wanted(brief, LogLevel.warn))
        self.assertTrue(wanted(event("w", LogLevel.warn), LogLevel.warn))
        self.assertFalse(wanted(event("w", LogLevel.warn), LogLevel.error))
        self.assertTrue(wanted(event("e", LogLevel.error), LogLevel.error))


class FormatTests(SynchronousTestCase):
    def test_briefLineKeepsItsTag(self) -> None:
        line = formatLine(
            event("Connection has been closed.  [12:00:00.000001]", log_system="proxy")
        )
        assert line is not None
        self.assertRegex(
            line,
            r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[proxy\] "
            r"Connection has been closed\.  \[12:00:00\.000001\]\n$",
        )

    def test_tags(self) -> None:
        self.assertIn(" [proxy] Access", formatLine(event("Access policy")))
        self.assertIn(" [proxy#warn] Careful", formatLine(event("Careful", LogLevel.warn)))
        self.assertIn(
            " [twisted#debug] Starting",
            formatLine(event("Starting factory", LogLevel.debug, "twisted.internet.protocol")),
        )
        self.assertIn(" [worker-2 proxy] x", formatLine(event("x", log_system="worker-2 proxy")))

    def test_fieldsAndLines(self) -> None:
        line = formatLine(event("a {n}\nb", n=1))
        assert line is not None
        self.assertTrue(line.endswith("] a 1\n\tb\n"), line)

    def test_transactionEventsAreNotShown(self) -> None:
        """
        A transaction record (empty format) is for the files, not the
        console.
        """
        self.assertIsNone(formatLine(event("", transaction={})))

    def test_failure(self) -> None:
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            failure = Failure()
        line = formatLine(event("It broke", LogLevel.critical, log_failure=failure))
        self.assertIn("It broke\n\tTraceback", line)
        self.assertIn("ZeroDivisionError", line)


class BufferingTests(SynchronousTestCase):
    def test_atOnceBeforeTheServiceStarts(self) -> None:
        stream = _Stream()
        console = Console(stream)
        console(event("one"))
        self.assertIn("one", stream.getvalue())
        self.assertEqual(stream.writes, 1)

    def test_batches(self) -> None:
        """
        While buffering, lines wait at most flushInterval and go out in one
        write and one flush.
        """
        stream = _Stream()
        clock = Clock()
        console = Console(stream)
        console.startBuffering(clock)
        for n in range(100):
            console(event("line {n}", n=n))
        self.assertEqual(stream.getvalue(), "")
        clock.advance(console.flushInterval)
        self.assertEqual(stream.getvalue().count("\n"), 100)
        self.assertEqual((stream.writes, stream.flushes), (1, 1))
        self.assertLessEqual(console.flushInterval, 0.1)

    def test_bigBatchesGoAtOnce(self) -> None:
        stream = _Stream()
        console = Console(stream)
        console.maxBuffered = 100
        console.startBuffering(Clock())
        for n in range(10):
            console(event("a line of some length {n}", n=n))
        self.assertGreater(stream.writes, 0)

    def test_nothingLostOnStop(self) -> None:
        stream = _Stream()
        clock = Clock()
        console = Console(stream)
        console.startBuffering(clock)
        console(event("last words"))
        console.stopBuffering()
        self.assertIn("last words", stream.getvalue())
        self.assertEqual(clock.getDelayedCalls(), [])
        console(event("after"))
        self.assertIn("after", stream.getvalue())

    def test_otherThreadsWriteAtOnce(self) -> None:
        import threading

        stream = _Stream()
        console = Console(stream)
        console.startBuffering(Clock())
        thread = threading.Thread(target=console, args=(event("from a thread"),))
        thread.start()
        thread.join()
        self.assertIn("from a thread", stream.getvalue())

    def test_levelFilters(self) -> None:
        stream = _Stream()
        console = Console(stream, LogLevel.warn)
        console(event("brief", log_system="proxy"))
        console(event("careful", LogLevel.warn))
        console.setLevel(LogLevel.info)
        console(event("brief again", log_system="proxy"))
        text = stream.getvalue()
        self.assertNotIn("] brief\n", text)
        self.assertIn("careful", text)
        self.assertIn("brief again", text)

    def test_rotate(self) -> None:
        """
        On a file, rotate() writes what waits, then rotates: the next lines
        go to the new file.
        """
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        path = os.path.join(d, "twistd.log")
        logFile = LogFile.fromFullPath(path)
        self.addCleanup(logFile.close)
        console = Console(logFile)
        console.startBuffering(Clock())
        console(event("before"))
        self.assertTrue(console.rotate())
        console(event("after"))
        console.flush()
        with open(path + ".1") as f:
            self.assertIn("before", f.read())
        with open(path) as f:
            self.assertEqual(f.read().count("after"), 1)
        self.assertFalse(Console(io.StringIO()).rotate())


class TwistdObserverTests(SynchronousTestCase):
    """
    The observer twistd starts with: where it writes, as twistd's own would.
    """

    def setUp(self) -> None:
        self.patch(console, "_current", None)
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)

    def observer(self, **options: object):
        console.prepare(options, "warn")
        self.addCleanup(setattr, console, "_pending", None)
        return console.twistdObserver()

    def test_foregroundToStdout(self) -> None:
        import sys

        observer = self.observer(nodaemon=True, logfile=None)
        self.assertIs(observer.stream, sys.stdout)
        self.assertEqual(observer.level, LogLevel.warn)
        self.assertIs(console.current(), observer)

    def test_logFile(self) -> None:
        path = os.path.join(self.dir, "proxy.log")
        observer = self.observer(nodaemon=True, logfile=path)
        self.addCleanup(observer.stream.close)
        self.assertIsInstance(observer.stream, LogFile)
        self.assertEqual(observer.describe(), path)

    def test_daemonNeedsAFile(self) -> None:
        with self.assertRaises(SystemExit):
            self.observer(nodaemon=False, logfile="-")


class ConsoleOfTwistdTests(TestCase):
    """
    The console of a real twistd: what a person sees at each level.
    """

    timeout = 60

    async def runProxy(self, *args: str) -> str:
        twistd = startTwistd(
            self,
            "-n",
            "--pidfile=",
            "proxyserver",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            *args,
        )
        await twistd.waitFor("listening on 127.0.0.1:")
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", twistd.port()), reactor)
        response = await agent.request(b"GET", b"http://127.0.0.1:1/")
        await readBody(response)
        self.assertEqual(response.code, 502)
        await twistd.waitFor("Request failed: 502")
        twistd.signal("TERM")
        await twistd.ended
        return twistd.output

    async def test_default(self) -> None:
        """
        By default: the brief's lines and the proxy's own, in words; no
        debug lines, no internal class names.
        """
        output = await self.runProxy()
        self.assertIn("[proxy] Connection has been accepted from: ('127.0.0.1', ", output)
        self.assertIn("[proxy] Request has been received: GET http://127.0.0.1:1/ HTTP/1.1", output)
        for unwanted in (
            "#debug",
            "ProxyFactory",
            "starting on",
            "Starting factory",
            "reactor class",
            "Traceback",
            "twistd 2",
        ):
            self.assertNotIn(unwanted, output)

    async def test_warn(self) -> None:
        """
        At warn, the console shows problems only: not even where the proxy
        listens.
        """
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        path = os.path.join(d, "proxy.sock")
        twistd = startTwistd(
            self,
            "-n",
            "--pidfile=",
            "proxyserver",
            "--listen",
            "unix:" + path,
            "--log-level",
            "warn",
            "--connect-ports",
            "1",
        )
        # At warn the proxy prints nothing, not even where it listens: its
        # socket accepting is the only sign that it is ready (the file
        # appears when it is bound, a moment before it listens).
        await pollUntil(lambda: accepting(path), "the proxy's socket " + path)
        from twisted.internet.endpoints import UNIXClientEndpoint

        agent = ProxyAgent(UNIXClientEndpoint(reactor, path), reactor)
        response = await agent.request(b"GET", b"http://127.0.0.1:1/")
        await readBody(response)
        self.assertEqual(response.code, 502)
        twistd.signal("TERM")
        self.assertEqual(await twistd.ended, 0)
        self.assertEqual(twistd.output, "")

    async def test_sigusr1RotatesFirst(self) -> None:
        """
        With -l FILE, SIGUSR1 rotates it, and says so in the new file.
        """
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        path = os.path.join(d, "proxy.log")
        twistd = startTwistd(
            self,
            "-n",
            "--pidfile=",
            "-l",
            path,
            "proxyserver",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            cwd=d,
        )
        # With -l, twistd prints to its log file only: what it writes there
        # is looked for.
        await pollUntil(lambda: "listening on" in _read(path), "listening, in " + path)
        twistd.signal("USR1")
        await pollUntil(
            lambda: os.path.exists(path + ".1") and "Log files reopened" in _read(path),
            "the rotation of " + path,
        )
        twistd.signal("TERM")
        self.assertEqual(await twistd.ended, 0)
        with open(path) as f:
            new = f.read()
        with open(path + ".1") as f:
            old = f.read()
        self.assertIn("Log files reopened.", new)
        self.assertNotIn("Log files reopened.", old)
        self.assertIn("listening on", old)
        self.assertIn("twisted-proxy stopped.", new)
