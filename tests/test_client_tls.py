"""
Tests for C{https://} targets over an in-memory network: the C{CONNECT}
tunnel, then real TLS (OpenSSL) with verification, through
L{twisted_proxy.client.wire.ProxyWire}.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time

from twisted.trial.unittest import SynchronousTestCase

from tests._client import (
    FakeProxyFactory,
    NetworkTestsMixin,
    ok,
    serverTLS,
    writeCA,
)
from twisted_proxy.client.options import USER_AGENT


class HTTPSTests(NetworkTestsMixin, SynchronousTestCase):
    """
    C{https://} targets: a CONNECT tunnel through the (fake) proxy, then
    TLS with verification (real OpenSSL, over the in-memory network).
    """

    def startTunnel(self, refuse: bytes | None = None) -> tuple[FakeProxyFactory, int, str]:
        """
        A fake proxy that answers C{CONNECT} 200 and then is the TLS origin
        itself (certificate for C{localhost}, from the test CA in C{caFile}),
        or answers C{refuse}.
        """
        proxy, port = self.startProxy(
            ok(b"hello over TLS\n", b"text/plain"), tls=serverTLS(), refuse=refuse
        )
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        return proxy, port, writeCA(directory)

    def test_verified(self) -> None:
        proxy, port, caFile = self.startTunnel()
        code, out, err = self.runAgainst(
            port, "--cacert", caFile, "-v", "https://localhost:%d/a" % (port,)
        )
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(
            proxy.tunnels,
            [
                b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\nUser-Agent: %s\r\n\r\n"
                % (port, port, USER_AGENT.encode())
            ],
        )
        self.assertTrue(
            proxy.requests[0][0].startswith(b"GET /a HTTP/1.1\r\nHost: localhost:%d\r\n" % (port,))
        )
        lines = out.splitlines()
        self.assertEqual(
            lines[0],
            "Tunnel has been opened: CONNECT localhost:%d HTTP/1.1 -> "
            "HTTP/1.1 200 Connection established"
            "  [12:34:56.123]" % (port,),
        )
        self.assertTrue(lines[1].startswith("Request has been sent: GET /a HTTP/1.1\\r\\n"))
        self.assertIn("  hello over TLS", lines)
        for label in (
            "proxy connect",
            "CONNECT established",
            "TLS handshake",
            "request sent",
        ):
            self.assertTrue(any(line.startswith("  " + label + " ") for line in lines), label)
        self.assertTrue(any("time_appconnect=" in line for line in lines))

    def test_verifiedJSONAndKeepAlive(self) -> None:
        """
        Repeated runs reuse the tunnel and its TLS session; the phases are in
        order.
        """
        proxy, port, caFile = self.startTunnel()
        code, out, err = self.runAgainst(
            port,
            "--cacert",
            caFile,
            "--json",
            "--count",
            "2",
            "https://localhost/",
            monotonic=time.monotonic,
        )
        self.assertEqual(code, 0, err)
        first, second, summary = [json.loads(line) for line in out.splitlines()]
        self.assertEqual(len(proxy.connections), 1)
        self.assertEqual((first["tunnel_status"], first["status"]), (200, 200))
        self.assertIn(first["tls_version"], ("TLSv1.2", "TLSv1.3"))
        curl = first["curl"]
        times = [
            curl[n]
            for n in (
                "time_connect",
                "time_appconnect",
                "time_pretransfer",
                "time_posttransfer",
                "time_starttransfer",
                "time_total",
            )
        ]
        self.assertEqual(times, sorted(times))
        self.assertGreater(curl["time_appconnect"], curl["time_connect"])
        self.assertGreaterEqual(first["timings_ms"]["tunnel"], 0)
        self.assertGreater(first["timings_ms"]["tls"], 0)
        self.assertEqual((second["new_connection"], second["timings_ms"]["tls"]), (False, 0.0))
        self.assertIn("tls", summary["phases_ms"])

    def test_unverified(self) -> None:
        """
        Without C{--cacert} the test CA is not trusted: exit code 3, and the
        message says what to do.
        """
        proxy, port, caFile = self.startTunnel()
        code, out, err = self.runAgainst(port, "https://localhost/")
        self.assertEqual(code, 3)
        self.assertTrue(err.startswith("proxyclient: TLS verification of localhost failed: "), err)
        self.assertIn("certificate verify failed", err)
        self.assertTrue(
            err.endswith("Use --cacert FILE to trust its CA, or --insecure to skip verification.\n")
        )
        self.assertEqual(proxy.requests, [])

    def test_insecure(self) -> None:
        proxy, port, caFile = self.startTunnel()
        code, out, err = self.runAgainst(port, "--insecure", "https://localhost/")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("  hello over TLS\n", out)

    def test_wrongHostName(self) -> None:
        """
        A trusted certificate for another name fails verification.
        """
        proxy, port, caFile = self.startTunnel()
        code, out, err = self.runAgainst(port, "--cacert", caFile, "https://127.0.0.1/")
        self.assertEqual(code, 3)
        self.assertTrue(
            err.startswith(
                "proxyclient: The TLS certificate of 127.0.0.1 does not match that name"
            ),
            err,
        )
        self.assertEqual(proxy.requests, [])

    def test_garbageAnswer(self) -> None:
        proxy, port, caFile = self.startTunnel(refuse=b"220 smtp.example ESMTP\r\n\r\n")
        code, out, err = self.runAgainst(port, "https://localhost/")
        self.assertEqual(code, 3)
        self.assertRegex(
            err,
            r"\Aproxyclient: The proxy's answer to CONNECT: The response is not valid "
            r"HTTP/1\.1 \([^\n]+\)\.\n\Z",
        )

    def test_refused(self) -> None:
        text = b"403 Forbidden: CONNECT to port 8443 is not allowed.\n"
        refusal = (
            b"HTTP/1.1 403 Forbidden\r\nProxy-Status: proxy.test; error=http_request_denied; "
            b'details="CONNECT to port 8443 is not allowed"\r\nContent-Length: %d\r\n\r\n%s'
            % (len(text), text)
        )
        proxy, port, caFile = self.startTunnel(refuse=refusal)
        code, out, err = self.runAgainst(port, "--json", "https://localhost:8443/")
        self.assertEqual(code, 3)
        self.assertEqual(
            err,
            "proxyclient: The proxy refused to open a tunnel to localhost:8443: 403 Forbidden "
            '(Proxy-Status: proxy.test; error=http_request_denied; details="CONNECT to port 8443 '
            'is not allowed"): 403 Forbidden: CONNECT to port 8443 is not allowed.\n',
        )
        record = json.loads(out)
        self.assertTrue(record["proxy_status"].startswith("proxy.test; error=http_request_denied"))
        self.assertEqual(record["exit_code"], 3)
