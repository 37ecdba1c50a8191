"""
End to end on loopback: C{proxyclient} through the real proxy service
built by L{twisted_proxy.app.tap.makeService}, to origins on 127.0.0.1,
with the client's default endpoints (real sockets).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import PrivateCertificate
from twisted.trial.unittest import TestCase

from tests._client import (
    MACHINE_MAC_LINE,
    FakeProxyFactory,
    certificates,
    makeEnv,
    ok,
    writeCA,
)
from tests._loopback import listenLocal, portNumber
from tests._typing import TestCaseMixin
from twisted_proxy.client.main import runClient


class LoopbackTestsMixin(TestCaseMixin):
    """
    Listen on 127.0.0.1 and run the client against it with real sockets.
    """

    def listen(self, factory: Factory, tls: Any = None) -> int:
        port = listenLocal(factory, tls)
        self.addCleanup(port.stopListening)
        return portNumber(port)

    def startProxy(self, respond: Callable[..., None]) -> tuple[FakeProxyFactory, int]:
        factory = FakeProxyFactory(respond)
        port = self.listen(factory)
        self.addCleanup(lambda: defer.ensureDeferred(factory.allClosed(reactor)))
        return factory, port

    async def runAgainst(self, port: int, *argv: str, **kwargs: Any) -> tuple[int, str, str]:
        kwargs.setdefault("reactor", reactor)
        kwargs.setdefault("clock", reactor)
        env, out, err = makeEnv(**kwargs)
        code = await runClient(env, ["--proxy", "127.0.0.1:%d" % (port,), *argv])
        return code, out.getvalue(), err.getvalue()


class DefaultEndpointTests(LoopbackTestsMixin, TestCase):
    """
    The client's own connections, on real sockets.
    """

    async def test_refusing(self) -> None:
        """
        A closed port: exit code 3 and one line saying what to do, through
        the default L{HostnameEndpoint}.
        """
        port = listenLocal(Factory.forProtocol(Protocol))
        number = portNumber(port)
        await defer.maybeDeferred(port.stopListening)
        env, out, err = makeEnv(reactor=reactor, clock=reactor)
        code = await runClient(env, ["--proxy", "127.0.0.1:%d" % (number,), "example.com"])
        self.assertEqual(code, 3)
        self.assertEqual(
            err.getvalue(),
            "proxyclient: Could not connect to the proxy at 127.0.0.1:%d: connection refused. "
            "Is `twistd -n proxyserver` running there? (--proxy HOST:PORT chooses another proxy.)\n"
            % (number,),
        )


class RealProxyTests(LoopbackTestsMixin, TestCase):
    """
    End to end: the client through the proxy service built by
    L{twisted_proxy.app.tap.makeService}, to an origin on loopback.
    """

    async def test_throughProxy(self) -> None:
        from twisted_proxy.app.tap import Options as ProxyOptions, makeService

        origin, originPort = self.startProxy(ok(b"from the origin\n", b"text/plain"))
        config = ProxyOptions()
        config.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--pseudonym", "e2e"])
        service = makeService(config, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        port = (await list(service)[0]._waitingForPort).getHost().port

        url = "http://127.0.0.1:%d/page" % (originPort,)
        code, out, err = await self.runAgainst(
            port, "--count", "2", "--json", url, monotonic=time.monotonic
        )
        self.assertEqual(code, 0, err)
        first, second, summary = [json.loads(line) for line in out.splitlines()]
        self.assertEqual(first["status"], 200)
        self.assertIn(["Via", "1.1 e2e"], first["headers"])
        self.assertEqual(second["new_connection"], False)
        self.assertEqual(summary["connections"], 1)
        self.assertEqual(origin.requests[0][0].split(b"\r\n")[0], b"GET /page HTTP/1.1")

        code, out, err = await self.runAgainst(port, url)
        self.assertEqual(code, 0)
        self.assertIn("  from the origin\n", out)
        self.assertTrue(out.endswith(MACHINE_MAC_LINE + "\n"))

        # Nothing listens on the origin's port any more: the proxy answers
        # 502 with Proxy-Status, which the client shows, with exit code 3.
        closed = listenLocal(Factory.forProtocol(Protocol))
        deadPort = portNumber(closed)
        await defer.maybeDeferred(closed.stopListening)
        code, out, err = await self.runAgainst(port, "http://127.0.0.1:%d/" % (deadPort,))
        self.assertEqual(code, 3)
        self.assertIn("\nProxy-Status: e2e; error=", out)
        self.assertTrue(
            err.startswith("proxyclient: the proxy could not complete the request: 502"),
            err,
        )

    async def test_httpsThroughProxy(self) -> None:
        """
        An C{https://} target through the real proxy's CONNECT tunnel, to a
        TLS origin on loopback, verified with C{--cacert}.
        """
        from twisted_proxy.app.tap import Options as ProxyOptions, makeService

        caPEM, serverPEM = certificates()
        origin = FakeProxyFactory(ok(b"secret\n", b"text/plain"))
        originPort = self.listen(origin, tls=PrivateCertificate.loadPEM(serverPEM).options())
        self.addCleanup(lambda: defer.ensureDeferred(origin.allClosed(reactor)))
        config = ProxyOptions()
        config.parseOptions(
            [
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--connect-ports",
                str(originPort),
            ]
        )
        service = makeService(config, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        port = (await list(service)[0]._waitingForPort).getHost().port
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        caFile = os.path.join(directory, "ca.pem")
        with open(caFile, "wb") as f:
            f.write(caPEM)

        code, out, err = await self.runAgainst(
            port, "--cacert", caFile, "https://localhost:%d/s" % (originPort,)
        )
        self.assertEqual((code, err), (0, ""))
        self.assertTrue(
            out.startswith(
                "Tunnel has been opened: CONNECT localhost:%d HTTP/1.1 -> HTTP/1.1 200 "
                % (originPort,)
            ),
            out,
        )
        self.assertIn("  secret\n", out)
        self.assertEqual(origin.requests[0][0].split(b"\r\n")[0], b"GET /s HTTP/1.1")


def writeHtpasswd(test: TestCase) -> str:
    """
    A temporary htpasswd file: user alice, password s3cret (bcrypt, cheap
    cost).
    """
    import bcrypt

    directory = tempfile.mkdtemp()
    test.addCleanup(shutil.rmtree, directory)
    path = os.path.join(directory, "htpasswd")
    with open(path, "wb") as f:
        f.write(b"alice:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)) + b"\n")
    return path


class ProxyAuthTests(LoopbackTestsMixin, TestCase):
    """
    Credentials against the real proxy with C{--auth-file}: plain requests
    and C{CONNECT}, right, wrong and missing, from C{--proxy}, C{-U} and the
    environment; and a C{no_proxy} target that skips the proxy.
    """

    async def startAuthProxy(self, *extra: str) -> int:
        from twisted_proxy.app.tap import Options as ProxyOptions, makeService

        config = ProxyOptions()
        config.parseOptions(
            [
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--auth-file",
                writeHtpasswd(self),
                "--auth-realm",
                "office",
                *extra,
            ]
        )
        service = makeService(config, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        return (await list(service)[0]._waitingForPort).getHost().port

    async def runClient(self, *argv: str, **kwargs: Any) -> tuple[int, str, str]:
        kwargs.setdefault("reactor", reactor)
        kwargs.setdefault("clock", reactor)
        env, out, err = makeEnv(**kwargs)
        code = await runClient(env, list(argv))
        return code, out.getvalue(), err.getvalue()

    async def test_plain(self) -> None:
        origin, originPort = self.startProxy(ok(b"authorised\n", b"text/plain"))
        port = await self.startAuthProxy()
        url = "http://127.0.0.1:%d/" % (originPort,)
        proxy = "127.0.0.1:%d" % (port,)

        code, out, err = await self.runClient("-x", "http://alice:s3cret@" + proxy, url)
        self.assertEqual((code, err), (0, ""))
        self.assertIn("  authorised\n", out)
        self.assertIn("\\r\\nProxy-Authorization: Basic <redacted>\\r\\n", out)
        self.assertNotIn("s3cret", out)
        # The proxy never forwards the credentials.
        self.assertNotIn(b"proxy-authorization", origin.requests[0][0].lower())

        code, out, err = await self.runClient(
            url, environ={"http_proxy": "http://alice:s3cret@" + proxy}
        )
        self.assertEqual((code, err), (0, ""))

        code, out, err = await self.runClient("-x", proxy, url)
        self.assertEqual(code, 3)
        self.assertEqual(
            err,
            'proxyclient: The proxy at %s requires credentials (Basic realm "office") and '
            "none were sent (407). Give them with --proxy-user USER or --proxy "
            "http://USER:PASSWORD@HOST:PORT.\n" % (proxy,),
        )

        code, out, err = await self.runClient("-x", proxy, "-U", "alice:wrong", url)
        self.assertEqual(code, 3)
        self.assertEqual(
            err,
            "proxyclient: The proxy at %s refused the credentials of user 'alice' (Basic "
            'realm "office") (407). Check the user name and password.\n' % (proxy,),
        )
        self.assertEqual(len(origin.requests), 2)

    async def test_connect(self) -> None:
        origin = FakeProxyFactory(ok(b"secret\n", b"text/plain"))
        originPort = self.listen(
            origin, tls=PrivateCertificate.loadPEM(certificates()[1]).options()
        )
        self.addCleanup(lambda: defer.ensureDeferred(origin.allClosed(reactor)))
        port = await self.startAuthProxy("--connect-ports", str(originPort))
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        url = "https://localhost:%d/s" % (originPort,)
        proxy = "127.0.0.1:%d" % (port,)

        code, out, err = await self.runClient(
            "--cacert",
            writeCA(directory),
            url,
            environ={"HTTPS_PROXY": "http://alice:s3cret@" + proxy},
        )
        self.assertEqual((code, err), (0, ""))
        self.assertIn("  secret\n", out)
        self.assertNotIn(b"proxy-authorization", origin.requests[0][0].lower())

        for argv, words in [
            ([], 'requires credentials (Basic realm "office") and none were sent (407)'),
            (
                ["-U", "alice:wrong"],
                "refused the credentials of user 'alice' (Basic realm \"office\")",
            ),
        ]:
            code, out, err = await self.runClient("-x", proxy, *argv, "-k", url)
            self.assertEqual(code, 3)
            self.assertTrue(err.startswith("proxyclient: The proxy at %s " % (proxy,)), err)
            self.assertIn(words, err)
            self.assertEqual(err.count("\n"), 1)
        self.assertEqual(len(origin.requests), 1)

    async def test_noProxy(self) -> None:
        """
        A target in C{no_proxy} goes to the origin directly, past a proxy
        that would have asked for credentials.
        """
        origin, originPort = self.startProxy(ok(b"direct\n", b"text/plain"))
        port = await self.startAuthProxy()
        code, out, err = await self.runClient(
            "http://127.0.0.1:%d/d" % (originPort,),
            environ={"http_proxy": "127.0.0.1:%d" % (port,), "no_proxy": "localhost, 127.0.0.1"},
        )
        self.assertEqual((code, err), (0, ""))
        self.assertIn("  direct\n", out)
        self.assertEqual(origin.requests[0][0].split(b"\r\n")[0], b"GET /d HTTP/1.1")
        self.assertNotIn(b"via:", origin.requests[0][0].lower())
