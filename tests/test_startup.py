"""
Starting and stopping: the listening sockets (opened before twistd
daemonizes, IPv6-only beside IPv4, a backlog that fits the connection
limit), start-up errors as twistd reports them (in a subprocess), and a
graceful stop with transfers and tunnels in progress.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.client import ProxyAgent, readBody

from tests._loopback import (
    RawClient,
    connectionsClosed,
    listenLocal,
    origin,
    portNumber,
    proxyService,
    slowOrigin,
)
from tests._twistd import startTwistd, twistdArgv, twistdEnv
from twisted_proxy.app import listening
from twisted_proxy.app.listening import Listener, ListenError, listenBacklog
from twisted_proxy.app.runtime import StartupError
from twisted_proxy.app.service import ProxyService
from twisted_proxy.app.tap import Options, makeService
from twisted_proxy.testing import logEvents


def hasIPv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def listenQueue(port: int) -> int | None:
    """
    The backlog of the socket listening on C{port}, as C{ss -ltn} shows it
    (Send-Q of a listening socket), or L{None} without C{ss}.
    """
    ss = shutil.which("ss")
    if ss is None:
        return None
    out = subprocess.run(
        [ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=30
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[3].endswith(f":{port}"):
            return int(fields[2])
    return None


class ListenerTests(SynchronousTestCase):
    def bound(self, description: str, backlog: int = 50) -> Listener:
        [listener] = Listener.parse(description)
        listener.bind(backlog)
        self.addCleanup(listener.close)
        return listener

    def test_backlogFitsTheConnectionLimit(self) -> None:
        """
        The listen backlog is --max-connections, capped by the kernel's
        somaxconn.
        """
        self.patch(listening, "somaxconn", lambda: 4096)
        self.assertEqual(listenBacklog(300), 300)
        self.assertEqual(listenBacklog(10000), 4096)
        self.patch(listening, "somaxconn", lambda: None)
        self.assertEqual(listenBacklog(10000), 10000)

    def test_backlogOnTheSocket(self) -> None:
        """
        The socket listens with the backlog it is given, unless the
        endpoint string sets one; C{ss} shows it.
        """
        ours = self.bound("tcp:0:interface=127.0.0.1", backlog=77)
        theirs = self.bound("tcp:0:interface=127.0.0.1:backlog=5", backlog=77)
        self.assertEqual((ours.effectiveBacklog, theirs.effectiveBacklog), (77, 5))
        assert ours.socket is not None
        shown = listenQueue(ours.socket.getsockname()[1])
        if shown is None:
            raise SkipTest("ss is not installed")
        self.assertEqual(shown, 77)
        assert theirs.socket is not None
        self.assertEqual(listenQueue(theirs.socket.getsockname()[1]), 5)

    def test_ipv6BesideIPv4(self) -> None:
        """
        The IPv6 socket of a port is IPv6-only, so the IPv4 one can be open
        too (with Linux's default dual-stack sockets, binding [::]:P after
        0.0.0.0:P fails).
        """
        if not hasIPv6():
            raise SkipTest("no IPv6 here")
        v4, v6 = Listener.parse("0")
        v4.bind(10)
        self.addCleanup(v4.close)
        assert v4.socket is not None
        v6.port = v4.socket.getsockname()[1]
        v6.bind(10)
        self.addCleanup(v6.close)
        assert v6.socket is not None
        self.assertEqual(v6.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY), 1)
        self.assertEqual(v6.describe(), "[::]:%d" % (v6.port,))

    def test_ipv6IsOptionalForABarePort(self) -> None:
        """
        The IPv6 half of a bare port that cannot be opened is left out with
        a warning; the IPv4 half serves.
        """

        from twisted_proxy.app.ports import bindAll

        if not hasIPv6():
            raise SkipTest("no IPv6 here")
        blocker = socket.socket(socket.AF_INET6)
        blocker.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        blocker.bind(("::", 0))
        blocker.listen()
        self.addCleanup(blocker.close)
        v4, v6 = Listener.parse("0")
        v6.port = blocker.getsockname()[1]
        events = logEvents(self)
        bound = bindAll([v4, v6], 100)
        self.addCleanup(v4.close)
        self.assertEqual(bound, [v4])
        [warning] = [e for e in events if "IPv6 is not available" in e["log_format"]]
        self.assertEqual(warning["reason"], "Address already in use")

    def test_addressInUse(self) -> None:
        taken = self.bound("tcp:0:interface=127.0.0.1")
        assert taken.socket is not None
        port = taken.socket.getsockname()[1]
        [again] = Listener.parse("tcp:%d:interface=127.0.0.1" % (port,))
        with self.assertRaises(ListenError) as caught:
            again.bind(10)
        self.assertEqual(
            str(caught.exception),
            "cannot listen on 127.0.0.1:%d: the address is already in use.  Is another proxy "
            "running there?  Stop it, or choose another port with --listen." % (port,),
        )

    def test_staleUnixSocket(self) -> None:
        """
        A unix socket file nobody listens on (left by a proxy that was
        killed) is replaced; one in use is not.
        """
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        path = os.path.join(d, "proxy.sock")
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)
        stale.close()
        listener = self.bound("unix:" + path)
        self.assertEqual(listener.describe(), "unix:" + path)
        [second] = Listener.parse("unix:" + path)
        with self.assertRaises(ListenError):
            second.bind(10)
        listener.close()
        self.assertFalse(os.path.exists(path))


class DualStackTests(TestCase):
    """
    A bare port listens on both families; the proxy sees each client by its
    own address, and a request to itself is a loop on either.
    """

    async def test_bothFamilies(self) -> None:
        if not hasIPv6():
            raise SkipTest("no IPv6 here")
        originPort = listenLocal(origin())
        self.addCleanup(originPort.stopListening)
        target = "http://127.0.0.1:%d/small" % (portNumber(originPort),)
        config = Options()
        config.parseOptions(["--listen", "0"])
        v4, v6 = config["built"].listeners
        v4.bind(50)
        v6.port = port = v4.socket.getsockname()[1]
        events = logEvents(self)
        service = proxyService(config)
        service.startService()
        self.addCleanup(service.stopService)
        for endpoint in (
            TCP4ClientEndpoint(reactor, "127.0.0.1", port),
            TCP6ClientEndpoint(reactor, "::1", port),
        ):
            agent = ProxyAgent(endpoint, reactor)
            response = await agent.request(b"GET", target.encode())
            self.assertEqual(await readBody(response), b"hello from the origin\n")
            for host in ("127.0.0.1", "[::1]"):
                response = await agent.request(b"GET", b"http://%s:%d/" % (host.encode(), port))
                await readBody(response)
                self.assertEqual(response.code, 508)
        peers = [
            e["peer"][0]
            for e in events
            if (e.get("log_format") or "").startswith("Connection has been accepted")
        ]
        self.assertIn("127.0.0.1", peers)
        self.assertIn("::1", peers)
        self.assertFalse([p for p in peers if p.startswith("::ffff:")])
        await connectionsClosed(service.factory)


class ServiceStartTests(TestCase):
    async def test_portInUse(self) -> None:
        """
        A port that cannot be opened stops the start with one line saying
        which and why.
        """
        taken = listenLocal(origin())
        self.addCleanup(taken.stopListening)
        port = portNumber(taken)
        config = Options()
        config.parseOptions(["--listen", "tcp:%d:interface=127.0.0.1" % (port,)])
        service = makeService(config, reactor)
        with self.assertRaises(StartupError) as caught:
            service.privilegedStartService()
        self.assertEqual(caught.exception.exitCode, 1)
        self.assertIn("cannot listen on 127.0.0.1:%d" % (port,), str(caught.exception))

    async def test_recordFileCannotBeOpened(self) -> None:
        """
        A history file that passes the checks but cannot be opened (as
        C{/proc/nope} for root) is a setting error naming the option.
        """
        from twisted_proxy.app.settings import SettingError

        config = Options()
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        path = os.path.join(d, "history.jsonl")
        config.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--history", path])
        os.rmdir(d)  # gone between the check and the start
        self.addCleanup(os.makedirs, d)
        with self.assertRaises(SettingError) as caught:
            makeService(config, reactor)
        self.assertTrue(
            str(caught.exception).startswith("--history %s: cannot open it (" % (path,)),
            str(caught.exception),
        )


# -- twistd in a subprocess -----------------------------------------------------


class StartupErrorTests(SynchronousTestCase):
    """
    What a person sees when the proxy cannot start: one line on the
    terminal, and the exit status, with and without C{-n} and C{--workers}.
    """

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)

    def twistd(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            twistdArgv(*args),
            cwd=self.dir,
            env=twistdEnv(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def takenPort(self) -> int:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.addCleanup(taken.close)
        return taken.getsockname()[1]

    def assertOneLine(self, result, status: int, start: str) -> None:
        lines = result.stderr.splitlines()
        self.assertEqual(result.returncode, status, result.stderr + result.stdout)
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith(start), lines[0])
        self.assertNotIn("Traceback", result.stdout + result.stderr)

    def test_portInUse(self) -> None:
        """
        A port in use: one line and exit 1, in the foreground, as a daemon
        (the launcher does not wait forever; no pid file is left) and with
        workers.
        """
        port = self.takenPort()
        listen = "tcp:%d:interface=127.0.0.1" % (port,)
        expected = (
            "twistd proxyserver: cannot listen on 127.0.0.1:%d: the address is already in use."
            % (port,)
        )
        pidfile = os.path.join(self.dir, "twistd.pid")
        for args in (
            ["-n", "--pidfile", pidfile, "proxyserver", "--listen", listen],
            [
                "--pidfile",
                pidfile,
                "-l",
                os.path.join(self.dir, "twistd.log"),
                "proxyserver",
                "--listen",
                listen,
            ],
            ["-n", "--pidfile", pidfile, "proxyserver", "--listen", listen, "--workers", "2"],
            [
                "--pidfile",
                pidfile,
                "-l",
                os.path.join(self.dir, "twistd.log"),
                "proxyserver",
                "--listen",
                listen,
                "--workers",
                "2",
            ],
        ):
            with self.subTest(args=args):
                result = self.twistd(*args)
                self.assertOneLine(result, 1, expected)
                self.assertFalse(os.path.exists(pidfile))

    def test_metricsOrCacheUnusable(self) -> None:
        """
        A C{--metrics} port in use, or a cache directory another process
        holds: one line and exit 1 too, as a daemon (no pid file left) and
        with workers.
        """
        port = self.takenPort()
        metrics = "tcp:%d:interface=127.0.0.1" % (port,)
        cache = os.path.join(self.dir, "cache")
        from twisted_proxy.proxy.cache import DiskStore

        holder = DiskStore(cache)
        self.addCleanup(holder.close)
        os.makedirs(os.path.join(cache, "worker-1"))
        workerHolder = DiskStore(os.path.join(cache, "worker-1"))
        self.addCleanup(workerHolder.close)
        pidfile = os.path.join(self.dir, "twistd.pid")
        daemon = [
            "--pidfile",
            pidfile,
            "-l",
            os.path.join(self.dir, "twistd.log"),
            "proxyserver",
            "--listen",
            "tcp:0:interface=127.0.0.1",
        ]
        inUse = (
            "twistd proxyserver: cannot listen on 127.0.0.1:%d for --metrics: the address "
            "is already in use." % (port,)
        )
        for args, expected in [
            (daemon + ["--metrics", metrics], inUse),
            (daemon + ["--metrics", metrics, "--workers", "2"], inUse),
            (
                daemon + ["--cache-dir", cache],
                f"twistd proxyserver: Cache directory {cache} is in use by another process",
            ),
            (
                daemon + ["--cache-dir", cache, "--workers", "2"],
                f"twistd proxyserver: Cache directory {cache}/worker-1 is in use by another "
                "process",
            ),
        ]:
            with self.subTest(args=args):
                result = self.twistd(*args)
                self.assertOneLine(result, 1, expected)
                self.assertFalse(os.path.exists(pidfile))

    def test_badOptions(self) -> None:
        """
        An invalid option: one line naming it, what was given and what is
        expected, and exit 2, without the help text.
        """
        for args, start in [
            (
                ["--connect-timeout", "-5"],
                "twistd proxyserver: --connect-timeout -5: expected a positive number of seconds; "
                "see twistd proxyserver --help",
            ),
            (
                ["--access-log", self.dir],
                f"twistd proxyserver: --access-log {self.dir}: is a directory",
            ),
            (["--history", "/proc/nope"], "twistd proxyserver: --history /proc/nope: cannot "),
            (
                ["--listen", "tcp:80000"],
                "twistd proxyserver: --listen tcp:80000: a port is 0-65535",
            ),
            (
                ["--listen", "unix:/nonexistent/p.sock"],
                "twistd proxyserver: --listen unix:/nonexistent/p.sock: cannot make a socket there",
            ),
            (["--metrics", "tcp:x"], "twistd proxyserver: --metrics tcp:x: not a valid endpoint"),
            (
                ["--cache-dir", "/proc/nope/cache"],
                "twistd proxyserver: --cache-dir /proc/nope/cache: cannot create or write it",
            ),
        ]:
            with self.subTest(args=args):
                result = self.twistd("-n", "--pidfile=", "proxyserver", *args)
                self.assertOneLine(result, 2, start)
                self.assertEqual(result.stdout, "")

    def test_help(self) -> None:
        for flag in ("-h", "--help"):
            result = self.twistd("-n", "proxyserver", flag)
            self.assertEqual(result.returncode, 0)
            self.assertIn("--shutdown-timeout=", result.stdout)


class SignalTests(TestCase):
    """
    The signals an operator sends, to a real twistd.
    """

    timeout = 120

    async def test_sighupKeepsRunning(self) -> None:
        """
        SIGHUP never stops the proxy: without a configuration file or a
        password file there is nothing to reload, and it says so; SIGTERM
        then stops it, with status 0 and its pid file removed.
        """
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        pidfile = os.path.join(d, "twistd.pid")
        twistd = startTwistd(
            self,
            "-n",
            "--pidfile",
            pidfile,
            "proxyserver",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            cwd=d,
        )
        await twistd.waitFor("listening on 127.0.0.1:")
        self.assertTrue(os.path.exists(pidfile))
        twistd.signal("HUP")
        await twistd.waitFor("SIGHUP: nothing to reload")
        twistd.signal("HUP")
        await twistd.waitFor("SIGHUP: nothing to reload", count=2)
        self.assertFalse(twistd.ended.called)
        twistd.signal("TERM")
        self.assertEqual(await twistd.ended, 0)
        self.assertIn("twisted-proxy stopped.", twistd.output)
        self.assertNotIn("Traceback", twistd.output)
        self.assertFalse(os.path.exists(pidfile))

    async def test_ctrlCWithWorkers(self) -> None:
        """
        Ctrl-C (SIGINT to the whole process group) with --workers 2 stops
        the parent and the workers cleanly: status 0, no traceback; twice,
        as the failure this guards against was intermittent.
        """
        for _attempt in range(2):
            twistd = startTwistd(
                self,
                "-n",
                "--pidfile=",
                "proxyserver",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--workers",
                "2",
                newSession=True,
            )
            await twistd.waitFor("Started worker 2")
            # At once: the workers are still starting (importing), as when a
            # person presses Ctrl-C right after starting the proxy.
            os.killpg(twistd.transport.pid, __import__("signal").SIGINT)
            self.assertEqual(await twistd.ended, 0, twistd.output)
            self.assertNotIn("Traceback", twistd.output)
            self.assertNotIn("ReactorNotRunning", twistd.output)
            self.assertIn("Worker 1 stopped.", twistd.output)
            self.assertIn("Worker 2 stopped.", twistd.output)


class SecondSignalTests(TestCase):
    """
    A second Ctrl-C while the proxy waits for a tunnel cuts it at once, and
    the proxy exits 0 without a traceback, with and without workers.
    """

    timeout = 120

    async def test_secondCtrlC(self) -> None:
        originPort = listenLocal(slowOrigin())
        self.addCleanup(originPort.stopListening)
        port = portNumber(originPort)
        for extra, cut in (
            ([], "Stopping now: cutting 1 connection still in progress."),
            (["--workers", "2"], "Stopping now: the workers cut what they still serve."),
        ):
            twistd = startTwistd(
                self,
                "-n",
                "--pidfile=",
                "proxyserver",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--connect-ports",
                str(port),
                *extra,
            )
            await twistd.waitFor("listening on 127.0.0.1:")
            proxy = TCP4ClientEndpoint(reactor, "127.0.0.1", twistd.port())
            tunnel = RawClient()
            # Listening before it says so (with workers, in the parent).
            await connectProtocol(proxy, tunnel)
            tunnel.transport.write(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % (port,))
            await tunnel.waitFor(b"\r\n\r\n")
            twistd.signal("INT")
            await twistd.waitFor("SIGINT: stopping.")
            twistd.signal("INT")
            await tunnel.done
            self.assertEqual(await twistd.ended, 0, twistd.output)
            self.assertIn(cut, twistd.output)
            self.assertNotIn("Traceback", twistd.output)
            self.assertNotIn("ReactorNotRunning", twistd.output)


class GracefulStopTests(TestCase):
    """
    Stopping with work in progress: nothing new is accepted, idle
    keep-alive connections close at once, transfers and tunnels finish,
    then the service stops; what runs past --shutdown-timeout is cut.
    """

    timeout = 60

    async def startProxy(self, *args: str) -> ProxyService:
        originPort = listenLocal(slowOrigin())
        self.addCleanup(originPort.stopListening)
        self.originPort = portNumber(originPort)
        self.origin = "http://127.0.0.1:%d" % (self.originPort,)
        config = Options()
        config.parseOptions(
            [
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--connect-ports",
                str(self.originPort),
                *args,
            ]
        )
        self.events = logEvents(self)
        service = proxyService(config)
        service.startService()
        self.service = service

        async def stop() -> None:
            if service.running:
                await service.stopService()

        self.addCleanup(lambda: defer.ensureDeferred(stop()))
        self.port = (await list(service)[0]._waitingForPort).getHost().port
        return service

    def logged(self, text: str) -> bool:
        return any(text in (e.get("log_format") or "") for e in self.events)

    async def rawConnection(self) -> RawClient:
        proto = RawClient()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), proto)
        return proto

    async def openTunnel(self) -> RawClient:
        tunnel = await self.rawConnection()
        tunnel.transport.write(
            b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
            % (self.originPort, self.originPort)
        )
        await tunnel.waitFor(b"\r\n\r\n")
        self.assertTrue(tunnel.received.startswith(b"HTTP/1.1 200"), tunnel.received)
        tunnel.received = b""
        return tunnel

    async def test_inFlightWorkFinishes(self) -> None:
        service = await self.startProxy()
        # An idle keep-alive connection: one answered request, then nothing.
        idle = await self.rawConnection()
        idle.transport.write(b"GET %s/small HTTP/1.1\r\nHost: x\r\n\r\n" % (self.origin.encode(),))
        await idle.waitFor(b"hello from the origin\n")
        # A slow transfer and a tunnel in progress.
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), reactor)
        response = await agent.request(b"GET", (self.origin + "/slow").encode())
        body = defer.ensureDeferred(_readBody(response))
        tunnel = await self.openTunnel()

        done: list[bool] = []

        def ended(result: object) -> object:
            done.append(True)
            return result

        stopped = service.stopService().addBoth(ended)
        # The idle connection is closed at once, and nothing new accepted.
        await idle.done
        self.assertEqual(done, [])
        from twisted.internet.error import ConnectionRefusedError

        with self.assertRaises(ConnectionRefusedError):
            await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), Protocol())
        # The tunnel still carries bytes, both ways.
        tunnel.transport.write(b"GET /small HTTP/1.0\r\n\r\n")
        self.assertIn(b"hello from the origin", await tunnel.done)
        self.assertEqual(await body, b"slow" * 10)
        await stopped
        self.assertTrue(self.logged("All connections finished after"))
        self.assertFalse(self.logged("cutting"))

    async def test_metricsSayDraining(self) -> None:
        """
        With C{--metrics}: C{/healthz} answers 503 while what is in progress
        finishes; the endpoint stays up, live, meanwhile, and closes once
        the service has stopped.
        """
        from twisted.internet.error import ConnectionRefusedError
        from twisted.web.client import Agent

        service = await self.startProxy("--metrics", "tcp:0:interface=127.0.0.1")
        assert service.metrics is not None
        metricsPort = (await service.metrics._waitingForPort).getHost().port

        async def fetch(path: bytes) -> tuple[int, bytes]:
            response = await Agent(reactor).request(
                b"GET", b"http://127.0.0.1:%d%s" % (metricsPort, path)
            )
            return response.code, await readBody(response)

        self.assertEqual(await fetch(b"/healthz"), (200, b"ok\n"))
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), reactor)
        response = await agent.request(b"GET", (self.origin + "/slow").encode())
        body = defer.ensureDeferred(_readBody(response))
        stopped = service.stopService()
        self.assertEqual(await fetch(b"/healthz"), (503, b"draining\n"))
        code, metrics = await fetch(b"/metrics")
        self.assertEqual(code, 200)
        self.assertIn(b"\ntwisted_proxy_client_connections 1.0\n", metrics)
        self.assertEqual(await body, b"slow" * 10)
        await stopped
        with self.assertRaises(ConnectionRefusedError):
            await fetch(b"/healthz")

    async def test_timeoutCutsTheRest(self) -> None:
        """
        A tunnel still open after --shutdown-timeout is cut, and the
        service stops.
        """
        service = await self.startProxy("--shutdown-timeout", "0.3")
        tunnel = await self.openTunnel()
        start = time.monotonic()
        await service.stopService()
        await tunnel.done
        self.assertGreaterEqual(time.monotonic() - start, 0.25)
        self.assertTrue(self.logged("Shutdown timeout ({timeout} s): cutting"))

    async def test_secondSignalCutsAtOnce(self) -> None:
        import signal

        service = await self.startProxy("--shutdown-timeout", "30")
        tunnel = await self.openTunnel()
        self.patch(reactor, "stop", lambda: None)
        stopped = service.stopService()
        service.stopSignal(signal.SIGTERM)
        await tunnel.done
        await stopped
        self.assertTrue(self.logged("Stopping now: cutting"))


async def _readBody(response) -> bytes:
    return await readBody(response)


class SigtermTests(TestCase):
    """
    SIGTERM to a real twistd with a transfer and a tunnel in progress: both
    carry on, new connections are refused, and twistd exits 0 once they are
    done.
    """

    timeout = 60

    async def test_sigtermLetsWorkFinish(self) -> None:
        originPort = listenLocal(slowOrigin())
        self.addCleanup(originPort.stopListening)
        port = portNumber(originPort)
        twistd = startTwistd(
            self,
            "-n",
            "--pidfile=",
            "proxyserver",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--connect-ports",
            str(port),
        )
        await twistd.waitFor("listening on 127.0.0.1:")
        proxy = TCP4ClientEndpoint(reactor, "127.0.0.1", twistd.port())
        response = await ProxyAgent(proxy, reactor).request(
            b"GET", b"http://127.0.0.1:%d/slow" % (port,)
        )
        body = defer.ensureDeferred(_readBody(response))
        tunnel = RawClient()
        await connectProtocol(proxy, tunnel)
        tunnel.transport.write(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % (port,))
        await tunnel.waitFor(b"\r\n\r\n")
        self.assertTrue(tunnel.received.startswith(b"HTTP/1.1 200"), tunnel.received)
        twistd.signal("TERM")
        await twistd.waitFor("SIGTERM: stopping.")
        from twisted.internet.error import ConnectionRefusedError

        with self.assertRaises(ConnectionRefusedError):
            await connectProtocol(proxy, Protocol())
        tunnel.transport.write(b"GET /small HTTP/1.0\r\n\r\n")
        self.assertIn(b"hello from the origin", await tunnel.done)
        self.assertEqual(await body, b"slow" * 10)
        self.assertEqual(await twistd.ended, 0)
        self.assertIn(
            "waiting up to 30 s for 2 connections in progress (1 of them a tunnel)", twistd.output
        )
        self.assertIn("All connections finished after", twistd.output)
        self.assertNotIn("cutting", twistd.output)
