"""
Loopback integration tests: a real C{twisted.web} origin on 127.0.0.1, the
proxy service built by L{twisted_proxy.app.tap.makeService}, and real clients.
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    ITCPTransport,
    ITLSTransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, ProxyAgent, readBody
from twisted.web.http_headers import Headers

from tests._loopback import (
    Big,
    ProxyTestMixin,
    RawClient,
    connectionsClosed,
    listenLocal,
    origin,
    portNumber,
    proxyService,
)
from twisted_proxy.app.tap import Options
from twisted_proxy.proxy.tcp import IStreamTransport
from twisted_proxy.testing import logEvents


class IntegrationTests(ProxyTestMixin, TestCase):
    async def test_smallGet(self) -> None:
        """
        A GET through the proxy returns the origin's body, with our Via, and
        the brief's log lines are emitted as structured events.
        """
        events = logEvents(self)
        await self.setUpProxy("--pseudonym", "itest")
        response, content = await self.get("/small")
        self.assertEqual(response.code, 200)
        self.assertEqual(content, b"hello from the origin\n")
        self.assertEqual(response.headers.getRawHeaders(b"via"), [b"1.1 itest"])
        from twisted.logger import formatEvent

        texts = [formatEvent(e) for e in events]
        for line in (
            "Connection has been accepted from: ('127.0.0.1', ",
            "Request has been received: GET " + self.origin + "/small HTTP/1.1\\r\\n",
            "Destination IP address: 127.0.0.1  [",
            "Response received: HTTP/1.1 200 OK ...  [",
        ):
            self.assertTrue(any(t.startswith(line) for t in texts), (line, texts))

    async def test_bigStreamed(self) -> None:
        await self.setUpProxy()
        response, content = await self.get("/big")
        self.assertEqual(len(content), Big.size)
        self.assertEqual(content.count(b"z"), Big.size)

    async def test_chunkedAndPost(self) -> None:
        await self.setUpProxy()
        response, content = await self.get("/chunked")
        self.assertEqual(content, b"part one, part two")
        from io import BytesIO

        from twisted.web.client import FileBodyProducer

        response, content = await self.get(
            "/echo", b"POST", FileBodyProducer(BytesIO(b"x" * 100000))
        )
        self.assertEqual(content, b"got 100000 bytes: " + b"x" * 32)

    async def test_refused(self) -> None:
        await self.setUpProxy()
        closed = listenLocal(origin())
        port = portNumber(closed)
        await defer.maybeDeferred(closed.stopListening)
        response = await self.agent.request(b"GET", b"http://127.0.0.1:%d/" % (port,))
        content = await readBody(response)
        self.assertEqual(response.code, 502)
        self.assertIn(
            b"error=connection_refused", response.headers.getRawHeaders(b"proxy-status")[0]
        )
        self.assertIn(b"refused the connection", content)

    async def test_loopToItself(self) -> None:
        await self.setUpProxy()
        response = await self.agent.request(b"GET", b"http://127.0.0.1:%d/" % (self.proxyPort,))
        await readBody(response)
        self.assertEqual(response.code, 508)

    async def test_concurrentClients(self) -> None:
        """
        200 clients at once, each on its own connection, all answered.
        """
        await self.setUpProxy()
        agents = [
            ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxyPort), reactor)
            for _ in range(200)
        ]

        async def one(agent):
            response = await agent.request(b"GET", (self.origin + "/small").encode("ascii"))
            return response.code, await readBody(response)

        results = await defer.gatherResults([defer.ensureDeferred(one(a)) for a in agents])
        self.assertEqual(len(results), 200)
        self.assertEqual({r for r in results}, {(200, b"hello from the origin\n")})

    async def test_rawBriefRequest(self) -> None:
        """
        The brief's raw origin-form request, byte for byte.
        """
        await self.setUpProxy()
        originPort = self.origin.rsplit(":", 1)[1]
        received: list[bytes] = []
        done: defer.Deferred[bytes] = defer.Deferred()

        class Raw(Protocol):
            transport: ITCPTransport

            def connectionMade(self) -> None:
                self.transport.write(
                    b"GET /small HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n"
                    % (originPort.encode(),)
                )

            def dataReceived(self, data: bytes) -> None:
                received.append(data)

            def connectionLost(self, reason: Failure = connectionDone) -> None:
                done.callback(b"".join(received))

        from twisted.internet.endpoints import connectProtocol

        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxyPort), Raw())
        data = await done
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data)
        self.assertTrue(data.endswith(b"hello from the origin\n"))
        self.assertIn(b"Connection: close\r\n", data)

    async def test_directAgentSanity(self) -> None:
        """
        The origin itself works without the proxy (so a failure above is the
        proxy's).
        """
        await self.setUpProxy()
        response = await Agent(reactor).request(b"GET", (self.origin + "/small").encode("ascii"))
        self.assertEqual(await readBody(response), b"hello from the origin\n")


class _HTTPSThroughConnect(RawClient):
    """
    CONNECT, then TLS (verified) on the same connection, then one GET.
    """

    transport: ITLSTransport

    def __init__(
        self, target: bytes, tlsOptions: IOpenSSLClientConnectionCreator, get: bytes
    ) -> None:
        super().__init__(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target))
        self.tlsOptions = tlsOptions
        self.get = get
        self.established = False

    def dataReceived(self, data: bytes) -> None:
        if self.established:
            self.received += data
            return
        self.received += data
        if b"\r\n\r\n" in self.received:
            head, _, rest = self.received.partition(b"\r\n\r\n")
            self.connectHead = head
            self.received = rest
            if head.startswith(b"HTTP/1.1 200 "):
                self.established = True
                self.transport.startTLS(self.tlsOptions)
                self.transport.write(self.get)


class _UpgradeEchoOrigin(Protocol):
    """
    Answers an upgrade request with 101, then echoes bytes.
    """

    transport: IStreamTransport

    buffer = b""
    switched = False

    def dataReceived(self, data: bytes) -> None:
        if self.switched:
            self.transport.write(data)
            return
        self.buffer += data
        if b"\r\n\r\n" in self.buffer:
            _, _, rest = self.buffer.partition(b"\r\n\r\n")
            self.switched = True
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"
            )
            if rest:
                self.transport.write(rest)


class TunnelIntegrationTests(ProxyTestMixin, TestCase):
    async def test_httpsThroughConnect(self) -> None:
        """
        curl -x style HTTPS: CONNECT to a loopback TLS origin, verify its
        certificate for localhost through the tunnel, GET a page.
        """
        from twisted.internet.endpoints import connectProtocol
        from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS

        from tests._tls import selfSignedLocalhost

        certPEM, keyPEM = selfSignedLocalhost()
        tlsPort = listenLocal(origin(), PrivateCertificate.loadPEM(keyPEM + certPEM).options())
        self.addCleanup(tlsPort.stopListening)
        await self.setUpProxy("--connect-ports", "*")
        target = b"localhost:%d" % (portNumber(tlsPort),)
        client = _HTTPSThroughConnect(
            target,
            optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(certPEM)),
            b"GET /small HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (target,),
        )
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxyPort), client)
        data = await client.done
        self.assertEqual(client.connectHead, b"HTTP/1.1 200 Connection Established")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data)
        self.assertTrue(data.endswith(b"hello from the origin\n"))

    async def test_connectPortRefusedByDefault(self) -> None:
        from twisted.internet.endpoints import connectProtocol

        await self.setUpProxy()
        client = RawClient(b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n")
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxyPort), client)
        client.transport.loseWriteConnection()
        data = await client.done
        self.assertTrue(data.startswith(b"HTTP/1.1 403 Forbidden\r\n"), data)
        self.assertIn(b"error=destination_ip_prohibited", data)

    async def test_upgradeEcho(self) -> None:
        from twisted.internet.endpoints import connectProtocol
        from twisted.internet.protocol import Factory

        echoPort = listenLocal(Factory.forProtocol(_UpgradeEchoOrigin))
        self.addCleanup(echoPort.stopListening)
        await self.setUpProxy()
        port = portNumber(echoPort)
        client = RawClient(
            b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: echo\r\n"
            b"Connection: Upgrade\r\n\r\nping" % (port, port)
        )
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxyPort), client)
        await client.waitFor(b"\r\n\r\nping")
        client.transport.write(b"pong")
        await client.waitFor(b"pingpong")
        client.transport.loseConnection()
        data = await client.done
        self.assertTrue(data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), data)
        self.assertTrue(data.endswith(b"\r\n\r\npingpong"), data)


class ChainingTests(ProxyTestMixin, TestCase):
    async def test_chainedThroughSecondProxy(self) -> None:
        """
        A proxy with --upstream-proxy sends plain requests and CONNECT
        tunnels through a second proxy instance.
        """
        await self.setUpProxy("--pseudonym", "parent", "--connect-ports", "*")
        parentPort = self.proxyPort
        parentService = self.service
        config = Options()
        config.parseOptions(
            [
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--pseudonym",
                "child",
                "--connect-ports",
                "*",
                "--upstream-proxy",
                "http://127.0.0.1:%d" % (parentPort,),
            ]
        )
        child = proxyService(config)
        child.startService()
        self.addCleanup(child.stopService)
        port = await list(child)[0]._waitingForPort
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), reactor)
        response = await agent.request(b"GET", (self.origin + "/small").encode("ascii"))
        self.assertEqual(await readBody(response), b"hello from the origin\n")
        self.assertEqual(response.headers.getRawHeaders(b"via"), [b"1.1 parent, 1.1 child"])
        self.assertEqual(parentService.factory.requests, 1)

        from twisted.internet.endpoints import connectProtocol
        from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS

        from tests._tls import selfSignedLocalhost

        certPEM, keyPEM = selfSignedLocalhost()
        tlsPort = listenLocal(origin(), PrivateCertificate.loadPEM(keyPEM + certPEM).options())
        self.addCleanup(tlsPort.stopListening)
        target = b"localhost:%d" % (portNumber(tlsPort),)
        client = _HTTPSThroughConnect(
            target,
            optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(certPEM)),
            b"GET /small HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (target,),
        )
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
        data = await client.done
        self.assertTrue(data.endswith(b"hello from the origin\n"), data)
        await connectionsClosed(child.factory)


class HistoryIntegrationTests(ProxyTestMixin, TestCase):
    async def test_historyAndAccessLog(self) -> None:
        """
        With --history and --access-log, each transaction is written to both
        files; SIGUSR1 reopens them by name after logrotate moved them.
        """
        import json
        import os
        import shutil
        import signal
        import tempfile

        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        history = os.path.join(d, "history.jsonl")
        access = os.path.join(d, "access.log")
        # As twistd does when it logs to a file: its own SIGUSR1 handler
        # rotates that file, and must still run.
        twistdRotations = []
        previous = signal.signal(signal.SIGUSR1, lambda s, f: twistdRotations.append(s))
        self.addCleanup(signal.signal, signal.SIGUSR1, previous)
        await self.setUpProxy("--history", history, "--access-log", access)
        response, content = await self.get("/small")
        self.assertEqual(response.code, 200)
        # The writers buffer for up to 50 ms; write what they hold now.
        for observer in self.service.records.observers:
            observer.flush()
        with open(history) as f:
            [record] = [json.loads(line) for line in f]
        self.assertEqual(record["status"], 200)
        self.assertEqual(record["target"], self.origin + "/small")
        with open(access) as f:
            [line] = f.read().splitlines()
        self.assertIn(" TCP_MISS/200 ", line)
        self.assertIn(" GET " + self.origin + "/small ", line)

        os.rename(history, history + ".old")
        os.rename(access, access + ".old")
        events = logEvents(self, clock=reactor)
        os.kill(os.getpid(), signal.SIGUSR1)
        # Said once both files are open again at their paths.
        await events.whenLogged("Log files reopened").addTimeout(10, reactor)
        self.assertTrue(os.path.exists(history) and os.path.exists(access))
        await self.get("/small")
        for observer in self.service.records.observers:
            observer.flush()
        with open(history) as f:
            self.assertEqual(len(f.read().splitlines()), 1)
        with open(access) as f:
            self.assertEqual(len(f.read().splitlines()), 1)
        self.assertEqual(twistdRotations, [signal.SIGUSR1])


class ReloadIntegrationTests(ProxyTestMixin, TestCase):
    async def test_sighupReloadsPasswordFile(self) -> None:
        """
        With --auth-file, SIGHUP reloads the file: a user added to it is
        let in without restarting the proxy.
        """
        import base64
        import os
        import shutil
        import signal
        import tempfile

        import bcrypt

        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        path = os.path.join(d, "htpasswd")

        def write(*users: bytes) -> None:
            with open(path, "wb") as f:
                for user in users:
                    f.write(user + b":" + bcrypt.hashpw(b"pw-" + user, bcrypt.gensalt(4)) + b"\n")

        write(b"alice")
        previous = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, previous)
        await self.setUpProxy("--auth-file", path)
        bob = Headers({b"proxy-authorization": [b"Basic " + base64.b64encode(b"bob:pw-bob")]})

        async def asBob() -> int:
            response = await self.agent.request(
                b"GET", (self.origin + "/small").encode("ascii"), bob
            )
            await readBody(response)
            return response.code

        self.assertEqual(await asBob(), 407)
        write(b"alice", b"bob")
        events = logEvents(self, clock=reactor)
        os.kill(os.getpid(), signal.SIGHUP)
        # The signal is handled on the reactor's next turn; the reload says
        # when it is done.
        await events.whenLogged("Configuration reloaded").addTimeout(10, reactor)
        self.assertEqual(await asBob(), 200)
