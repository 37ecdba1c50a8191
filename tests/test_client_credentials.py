"""
Tests for proxy credentials and C{no_proxy} end to end over an
in-memory network: C{Proxy-Authorization} where it belongs and nowhere
else, never shown; a 407 explained; a C{no_proxy} target reached
directly.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from collections.abc import Callable

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from tests._client import (
    FakeProxyFactory,
    FakeProxyProtocol,
    FakeResolver,
    Network,
    NetworkTestsMixin,
    RefusingEndpoint,
    Responder,
    makeEnv,
    ok,
    serverTLS,
    tlsServer,
    writeCA,
)
from twisted_proxy.client.main import runClient

AUTHORIZATION = b"Basic " + base64.b64encode(b"alice:s3cret")


def requireAuth(
    respond: Responder, realm: bytes = b"office"
) -> Callable[[FakeProxyProtocol, bytes, bytes], None]:
    """
    A responder that answers 407 unless the request carries alice's
    credentials.
    """

    def check(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
        if b"\r\nProxy-Authorization: " + AUTHORIZATION + b"\r\n" in head:
            respond(proto, head, body)
            return
        text = b"407 Proxy Authentication Required\n"
        proto.transport.write(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b'Proxy-Authenticate: Basic realm="%s"\r\n'
            b"Proxy-Status: proxy.test; error=http_request_denied\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (realm, len(text), text)
        )

    return check


class CredentialsTests(NetworkTestsMixin, SynchronousTestCase):
    """
    Proxy credentials, from the proxy URL, the environment or
    C{--proxy-user}: sent as C{Proxy-Authorization} on plain requests and
    on the C{CONNECT}, never shown; a 407 says which realm and why.
    """

    def test_plainInURL(self) -> None:
        proxy, port = self.startProxy(requireAuth(ok()))
        code, out, err = self.net.run(
            self, ["-x", "http://alice:s3cret@127.0.0.1:%d" % (port,), "example.com"]
        )
        self.assertEqual((code, err), (0, ""))
        self.assertIn(b"\r\nProxy-Authorization: " + AUTHORIZATION + b"\r\n", proxy.requests[0][0])
        self.assertIn("\\r\\nProxy-Authorization: Basic <redacted>\\r\\n", out)
        self.assertNotIn(AUTHORIZATION.decode(), out)

    def test_plainJSONRedacted(self) -> None:
        proxy, port = self.startProxy(requireAuth(ok()))
        code, out, err = self.net.run(
            self,
            ["--json", "-x", "127.0.0.1:%d" % (port,), "-U", "alice:s3cret", "example.com"],
        )
        self.assertEqual(code, 0)
        record = json.loads(out)
        self.assertIn("\r\nProxy-Authorization: Basic <redacted>\r\n", record["request"])
        self.assertEqual(record["proxy_user"], "alice")
        self.assertNotIn("s3cret", out)
        self.assertNotIn(AUTHORIZATION.decode(), out)
        self.assertEqual(record["curl"]["size_request"], len(proxy.requests[0][0]))

    def test_environment(self) -> None:
        proxy, port = self.startProxy(requireAuth(ok()))
        code, out, err = self.net.run(
            self,
            ["example.com"],
            environ={"http_proxy": "http://alice:s3cret@10.0.0.1:%d/" % (port,)},
        )
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(self.net.connects, [("10.0.0.1", port)])

    def test_missing(self) -> None:
        proxy, port = self.startProxy(requireAuth(ok()))
        code, out, err = self.runAgainst(port, "example.com")
        self.assertEqual(code, 3)
        self.assertIn("Response has been received: HTTP/1.1 407 Proxy Authentication Required", out)
        self.assertEqual(
            err,
            "proxyclient: The proxy at 127.0.0.1:3128 requires credentials (Basic realm "
            '"office") and none were sent (407). Give them with --proxy-user USER or --proxy '
            "http://USER:PASSWORD@HOST:PORT.\n",
        )

    def test_refused(self) -> None:
        proxy, port = self.startProxy(requireAuth(ok()))
        code, out, err = self.runAgainst(port, "-U", "alice:wrong", "--json", "example.com")
        self.assertEqual(code, 3)
        message = (
            "The proxy at 127.0.0.1:3128 refused the credentials of user 'alice' (Basic "
            'realm "office") (407). Check the user name and password.'
        )
        self.assertEqual(err, "proxyclient: " + message + "\n")
        record = json.loads(out)
        self.assertEqual(
            (record["status"], record["exit_code"], record["error"]), (407, 3, message)
        )

    def test_promptForPassword(self) -> None:
        """
        C{--proxy-user USER} asks for the password on a terminal.
        """
        asked = []

        def getpass(prompt: str) -> str:
            asked.append(prompt)
            return "s3cret"

        proxy, port = self.startProxy(requireAuth(ok()))
        code, out, err = self.runAgainst(
            port, "-U", "alice", "example.com", interactive=True, getpass=getpass
        )
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(asked, ["Enter proxy password for user 'alice': "])

    def test_noTerminalForPassword(self) -> None:
        """
        Without a terminal to ask on, a missing password is a usage error,
        before anything is sent.
        """
        proxy, port = self.startProxy(requireAuth(ok()))
        code, out, err = self.runAgainst(
            port, "-U", "alice", "example.com", interactive=False, getpass=self.fail
        )
        self.assertEqual(
            (code, out, err),
            (
                2,
                "",
                "proxyclient: --proxy-user alice: no password given, and stdin is not a "
                "terminal to ask for one; write --proxy-user alice:PASSWORD\n",
            ),
        )
        self.assertEqual(self.net.connects, [])

    def test_connect(self) -> None:
        """
        For https://, the credentials go on the C{CONNECT} only, not to the
        origin inside the tunnel.
        """
        proxy, port = self.startProxy(ok(b"tls\n", b"text/plain"), tls=serverTLS())
        code, out, err = self.runAgainst(port, "-U", "alice:s3cret", "-k", "https://localhost/")
        self.assertEqual((code, err), (0, ""))
        [tunnel] = proxy.tunnels
        self.assertIn(b"\r\nProxy-Authorization: " + AUTHORIZATION + b"\r\n", tunnel)
        [(request, body)] = proxy.requests
        self.assertNotIn(b"Proxy-Authorization", request)

    def test_connectRefused(self) -> None:
        refusal = (
            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b'Proxy-Authenticate: Basic realm="office"\r\nContent-Length: 0\r\n\r\n'
        )
        for argv, words in [
            ([], 'requires credentials (Basic realm "office") and none were sent (407)'),
            (
                ["-U", "alice:wrong"],
                "refused the credentials of user 'alice' (Basic realm \"office\")",
            ),
        ]:
            proxy, port = self.startProxy(ok(), tls=serverTLS(), refuse=refusal)
            code, out, err = self.runAgainst(port, *argv, "-k", "https://localhost/")
            self.assertEqual(code, 3)
            self.assertTrue(err.startswith("proxyclient: The proxy at 127.0.0.1:3128 "), err)
            self.assertIn(words, err)
            self.assertEqual(err.count("\n"), 1)


class NoProxyTests(NetworkTestsMixin, SynchronousTestCase):
    """
    A target in C{no_proxy} is connected to directly: origin-form, no
    credentials, TLS at once for https://, and the output says so.
    """

    def test_plain(self) -> None:
        origin, port = self.startProxy(ok())
        code, out, err = self.net.run(
            self,
            ["-x", "http://alice:s3cret@10.0.0.1:3128", "http://127.0.0.1:%d/x" % (port,)],
            environ={"no_proxy": "localhost,127.0.0.1"},
        )
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(self.net.connects, [("127.0.0.1", port)])
        [(request, body)] = origin.requests
        self.assertTrue(request.startswith(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (port,)))
        self.assertNotIn(b"Proxy-Authorization", request)
        lines = out.splitlines()
        self.assertEqual(
            lines[0],
            "Connected to 127.0.0.1:%d directly, not through a proxy ($no_proxy entry "
            "'127.0.0.1')." % (port,),
        )
        self.assertTrue(lines[1].startswith("Request has been sent: GET /x HTTP/1.1"))
        self.assertEqual(
            lines[-1],
            "Physical MAC Address: 02:00:00:00:00:01 "
            "(eth0, default route; the server is on loopback)",
        )

    def test_json(self) -> None:
        origin, port = self.startProxy(ok())
        code, out, err = self.net.run(
            self, ["--json", "--noproxy", "*", "http://127.0.0.1:%d/" % (port,)]
        )
        record = json.loads(out)
        self.assertEqual(
            (record["proxy"], record["no_proxy"], record["proxy_user"]),
            (None, "--noproxy entry '*'", None),
        )

    def test_https(self) -> None:
        origin = FakeProxyFactory(ok(b"direct tls\n", b"text/plain"))
        self.net, port = Network(tlsServer(origin)), 8443
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        code, out, err = self.net.run(
            self,
            ["--cacert", writeCA(directory), "https://localhost:%d/" % (port,)],
            environ={"NO_PROXY": "localhost"},
        )
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(origin.tunnels, [])
        self.assertIn("  direct tls", out)
        self.assertNotIn("Tunnel has been opened", out)

    def test_refused(self) -> None:
        self.net = Network(FakeProxyFactory(ok()))
        env, out, err = makeEnv(
            endpointFactory=RefusingEndpoint(),
            environ={"no_proxy": "example.com"},
            resolver=FakeResolver({"example.com": ["192.0.2.10"]}),
        )
        code = self.successResultOf(defer.ensureDeferred(runClient(env, ["example.com:81"])))
        self.assertEqual(code, 3)
        self.assertEqual(
            err.getvalue(),
            "proxyclient: Could not connect to example.com:81 directly ($no_proxy entry "
            "'example.com'): connection refused.\n",
        )
