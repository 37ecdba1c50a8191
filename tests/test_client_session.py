"""
Tests for L{twisted_proxy.client.session}, L{twisted_proxy.client.wire}
and L{twisted_proxy.client.report} together: L{runClient} against fake
proxies over an in-memory network (L{twisted.test.iosim}), so each byte,
close and timeout happens when the test says: the brief's output, exit
codes, failures, repeats, stopping, and where each timing mark is taken.
"""

from __future__ import annotations

import gc
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests._client import (
    MACHINE_MAC_LINE,
    FakeMonotonic,
    FakeProxyProtocol,
    FakeResolver,
    NetworkTestsMixin,
    RefusingEndpoint,
    makeEnv,
    ok,
)
from twisted_proxy.client.main import runClient
from twisted_proxy.client.options import USER_AGENT
from twisted_proxy.client.session import OUTPUT_GRACE


class FakeProxyTests(NetworkTestsMixin, SynchronousTestCase):
    """
    The client against fake proxies, over an in-memory network.
    """

    def test_good(self) -> None:
        """
        The brief's output: the request sent (absolute-form), the response,
        the first lines of the body, the round-trip time and the MAC
        address, with local timestamps; exit code 0.
        """
        proxy, port = self.startProxy(ok())
        code, out, err = self.runAgainst(port, "93.184.216.34")
        self.assertEqual((code, err), (0, ""))
        request = (
            b"GET http://93.184.216.34/ HTTP/1.1\r\nHost: 93.184.216.34\r\n"
            b"User-Agent: " + USER_AGENT.encode() + b"\r\nAccept: */*\r\n\r\n"
        )
        self.assertEqual(proxy.requests, [(request, b"")])
        lines = out.splitlines()
        stamp = "  [12:34:56.123]"
        self.assertEqual(
            lines[0],
            "Request has been sent: GET http://93.184.216.34/ HTTP/1.1\\r\\n"
            "Host: 93.184.216.34\\r\\n"
            "User-Agent: " + USER_AGENT + "\\r\\nAccept: */*\\r\\n\\r\\n" + stamp,
        )
        self.assertEqual(
            lines[1],
            "Response has been received: HTTP/1.1 200 OK\\r\\nContent-Type: text/html\\r\\n"
            "Content-Length: 34\\r\\n\\r\\n" + stamp,
        )
        self.assertEqual(lines[2:5], ["  <html>", "  <body>hello</body>", "  </html>"])
        self.assertRegex(lines[5], r"\ARound-trip time: \d+\.\d{3} seconds\Z")
        self.assertEqual(lines[6:], [MACHINE_MAC_LINE])

    def test_timingOutput(self) -> None:
        """
        C{-v} adds each phase in milliseconds with curl's variables, the
        status, sizes and speed.
        """
        clock = FakeMonotonic()

        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            clock.advance(0.25)
            ok(b"x" * 500)(proto, head, body)

        proxy, port = self.startProxy(respond)
        code, out, err = self.runAgainst(port, "-v", "example.com", monotonic=clock)
        self.assertEqual(code, 0)
        timing = out.split("Timing:\n", 1)[1].splitlines()
        self.assertEqual(
            timing,
            [
                "  proxy connect             0.000 ms  time_connect=0.000000",
                "  request sent              0.000 ms  "
                "time_pretransfer=0.000000 time_posttransfer=0.000000",
                "  first response byte     250.000 ms  time_starttransfer=0.250000",
                "  response complete         0.000 ms  time_total=0.250000",
                "  total                   250.000 ms",
                "  http_code=200 size_download=500 size_header=65 size_request=99 "
                "speed_download=2000 num_connects=1",
                MACHINE_MAC_LINE,
            ],
        )
        self.assertIn("Round-trip time: 0.250 seconds\n", out)

    def test_slowPhases(self) -> None:
        """
        Time is attributed to the phase it passes in: a proxy that waits
        before the head and again in the middle of the body shows it in
        C{wait} and C{receive}, nowhere else.  (The proxy's delays are
        C{callLater}s on the network's clock; the client's monotonic clock is
        advanced by the proxy, so the numbers are exact.)
        """
        clock = FakeMonotonic()

        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            def sendHead() -> None:
                clock.advance(2.0)
                proto.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
                self.net.clock.callLater(0.02, sendRest)

            def sendRest() -> None:
                clock.advance(1.0)
                proto.transport.write(b"56789")

            self.net.clock.callLater(0.02, sendHead)

        proxy, port = self.startProxy(respond)
        result, out, err = self.start(port, "--json", "example.com", monotonic=clock)
        self.net.advance(0.02)
        self.assertNoResult(result)
        self.net.advance(0.02)
        self.assertEqual(self.successResultOf(result), 0)
        record = json.loads(out.getvalue())
        self.assertEqual(
            record["timings_ms"],
            {
                "namelookup": None,
                "connect": 0.0,
                "tunnel": None,
                "tls": None,
                "send": 0.0,
                "wait": 2000.0,
                "receive": 1000.0,
                "total": 3000.0,
            },
        )
        self.assertEqual(record["curl"]["time_starttransfer"], 2.0)
        self.assertEqual(record["curl"]["time_total"], 3.0)
        self.assertEqual(record["curl"]["speed_download"], 3)
        self.assertEqual(record["body_bytes"], 10)

    def test_phaseOrder(self) -> None:
        """
        With the real clock, phases are non-negative and add up, and the
        cumulative curl times never decrease.
        """
        proxy, port = self.startProxy(ok(b"y" * 100))
        code, out, err = self.runAgainst(port, "--json", "example.com", monotonic=time.monotonic)
        record = json.loads(out)
        phases = record["timings_ms"]
        for name in ("connect", "send", "wait", "receive", "total"):
            self.assertGreaterEqual(phases[name], 0, name)
        self.assertAlmostEqual(
            phases["connect"] + phases["send"] + phases["wait"] + phases["receive"],
            phases["total"],
            places=2,
        )
        curl = record["curl"]
        times = [
            curl[n]
            for n in (
                "time_connect",
                "time_pretransfer",
                "time_posttransfer",
                "time_starttransfer",
                "time_total",
            )
        ]
        self.assertEqual(times, sorted(times))

    def test_json(self) -> None:
        proxy, port = self.startProxy(ok())
        code, out, err = self.runAgainst(port, "--json", "http://[::1]:8080/x?y")
        self.assertEqual(code, 0)
        [line] = out.splitlines()
        record = json.loads(line)
        self.assertEqual(record["type"], "run")
        self.assertEqual(record["url"], "http://[::1]:8080/x?y")
        self.assertEqual(record["proxy"], "127.0.0.1:%d" % (port,))
        self.assertEqual(record["request"].split("\r\n")[0], "GET http://[::1]:8080/x?y HTTP/1.1")
        self.assertEqual(record["status"], 200)
        self.assertEqual(record["reason"], "OK")
        self.assertEqual(
            record["headers"], [["Content-Type", "text/html"], ["Content-Length", "34"]]
        )
        self.assertEqual(record["local_address"], "127.0.0.1")
        self.assertEqual(record["sent_at"][:23], "2024-05-06T12:34:56.123")
        self.assertEqual(
            record["mac"],
            {
                "address": "02:00:00:00:00:01",
                "interface": "eth0",
                "note": "default route; the proxy is on loopback",
                "reason": None,
            },
        )
        self.assertEqual(
            (record["exit_code"], record["error"], record["complete"]), (0, None, True)
        )
        self.assertEqual(record["curl"]["http_code"], 200)
        self.assertEqual(record["curl"]["num_connects"], 1)

    def test_proxyError502(self) -> None:
        """
        An error the proxy generated (RFC 9209 C{Proxy-Status} with
        C{error=}) is a proxy failure: exit code 3, and the C{Proxy-Status}
        is shown.
        """
        status = b'proxy.test:8080; error=dns_error; details="no such host"'

        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            text = b"502 Bad Gateway: no such host\n"
            proto.transport.write(
                b"HTTP/1.1 502 Bad Gateway\r\nProxy-Status: %s\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (status, len(text), text)
            )

        proxy, port = self.startProxy(respond)
        code, out, err = self.runAgainst(port, "nosuchhost.example")
        self.assertEqual(code, 3)
        self.assertIn(
            "\nProxy-Status: " + status.decode() + "\n  502 Bad Gateway: no such host\n",
            out,
        )
        self.assertEqual(
            err,
            "proxyclient: the proxy could not complete the request: 502 Bad Gateway "
            "(Proxy-Status: " + status.decode() + ")\n",
        )
        code, out, err = self.runAgainst(port, "--json", "nosuchhost.example")
        record = json.loads(out)
        self.assertEqual((record["exit_code"], record["status"]), (3, 502))
        self.assertEqual(record["proxy_status"], status.decode())

    def test_httpErrorStatus(self) -> None:
        """
        An error status from the server (no C{Proxy-Status} error): exit
        code 1.  A 3xx is a success.
        """
        statuses = [
            b"404 Not Found",
            b"503 Service Unavailable",
            b"301 Moved Permanently",
        ]

        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            proto.transport.write(
                b"HTTP/1.1 %s\r\nProxy-Status: proxy.test; received-status=404\r\n"
                b"Content-Length: 0\r\n\r\n" % (statuses.pop(0),)
            )

        proxy, port = self.startProxy(respond)
        self.assertEqual((self.runAgainst(port, "example.com"))[0], 1)
        self.assertEqual((self.runAgainst(port, "example.com"))[0], 1)
        code, out, err = self.runAgainst(port, "example.com")
        self.assertEqual((code, err), (0, ""))

    def test_closingMidBody(self) -> None:
        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            proto.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"a" * 40)
            proto.transport.loseConnection()

        proxy, port = self.startProxy(respond)
        code, out, err = self.runAgainst(port, "example.com")
        self.assertEqual(code, 3)
        self.assertEqual(
            err,
            "proxyclient: The connection closed after 40 body bytes, before the end of the "
            "response: the body is incomplete.\n",
        )
        self.assertIn("Response has been received: HTTP/1.1 200 OK", out)
        self.assertNotIn("Round-trip time", out)
        self.assertTrue(out.endswith(MACHINE_MAC_LINE + "\n"))

    def test_closingWithoutResponse(self) -> None:
        proxy, port = self.startProxy(lambda proto, head, body: proto.transport.loseConnection())
        code, out, err = self.runAgainst(port, "example.com")
        self.assertEqual(code, 3)
        self.assertEqual(
            err,
            "proxyclient: The proxy closed the connection without sending a response.\n",
        )

    def test_closingMidHead(self) -> None:
        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            proto.transport.write(b"HTTP/1.1 200 OK\r\nContent-")
            proto.transport.loseConnection()

        proxy, port = self.startProxy(respond)
        code, out, err = self.runAgainst(port, "example.com")
        self.assertEqual(code, 3)
        self.assertIn("in the middle of the response head", err)

    def test_garbage(self) -> None:
        proxy, port = self.startProxy(
            lambda proto, head, body: proto.transport.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        )
        code, out, err = self.runAgainst(port, "example.com")
        self.assertEqual(code, 3)
        # The detail in parentheses is llhttp's.
        self.assertRegex(
            err, r"\Aproxyclient: The response is not valid HTTP/1\.1 \([^\n]+\)\.\n\Z"
        )
        self.assertEqual(err.count("\n"), 1)

    def test_closeDelimitedAndInterim(self) -> None:
        """
        A body that ends when the connection closes is complete; an interim
        response before the final one is skipped (but counted in
        C{size_header}).
        """

        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            proto.transport.write(
                b"HTTP/1.1 100 Continue\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"
            )
            proto.transport.loseConnection()

        proxy, port = self.startProxy(respond)
        code, out, err = self.runAgainst(port, "--json", "example.com")
        record = json.loads(out)
        self.assertEqual((code, record["status"], record["body_bytes"]), (0, 200, 9))
        self.assertEqual(record["curl"]["size_header"], 25 + 38)

    def test_keepAliveCount(self) -> None:
        """
        C{--count 3} sends three requests on one connection, then prints
        ab-style statistics.
        """
        proxy, port = self.startProxy(ok(b"z" * 10))
        code, out, err = self.runAgainst(port, "--count", "3", "example.com")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(len(proxy.connections), 1)
        self.assertEqual(len(proxy.requests), 3)
        lines = out.splitlines()
        self.assertTrue(
            lines[0].startswith("Request has been sent: GET http://example.com/ HTTP/1.1")
        )
        self.assertRegex(
            lines[1],
            r"\ARun 1/3: 200 OK, 10 body bytes, \d+\.\d{3} ms, new connection\Z",
        )
        self.assertRegex(
            lines[2],
            r"\ARun 2/3: 200 OK, 10 body bytes, \d+\.\d{3} ms, reused connection\Z",
        )
        self.assertRegex(lines[3], r"\ARun 3/3: .*, reused connection\Z")
        self.assertEqual(
            lines[4],
            "Statistics over 3 of 3 runs on 1 connection "
            "(median: middle value; p90: nearest rank):",
        )
        self.assertEqual(lines[5].split(), ["phase", "(ms)", "min", "mean", "median", "p90", "max"])
        self.assertEqual(
            [line.split()[0] for line in lines[6:12]],
            ["proxy", "request", "first", "response", "total", "status"],
        )
        self.assertEqual(lines[11], "  status 200 x3; 30 body bytes in all")
        self.assertEqual(lines[12:], [MACHINE_MAC_LINE])

    def test_keepAliveJSON(self) -> None:
        clock = FakeMonotonic()
        delays = [0.010, 0.030, 0.020]

        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            clock.advance(delays.pop(0))
            ok(b"z")(proto, head, body)

        proxy, port = self.startProxy(respond)
        code, out, err = self.runAgainst(
            port, "--count", "3", "--json", "example.com", monotonic=clock
        )
        records = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([r["type"] for r in records], ["run", "run", "run", "summary"])
        self.assertEqual([r["new_connection"] for r in records[:3]], [True, False, False])
        self.assertEqual([r["connection"] for r in records[:3]], [1, 1, 1])
        self.assertEqual([r["curl"]["num_connects"] for r in records[:3]], [1, 0, 0])
        summary = records[3]
        self.assertEqual((summary["runs"], summary["completed"], summary["connections"]), (3, 3, 1))
        self.assertEqual(summary["statuses"], {"200": 3})
        self.assertEqual(summary["percentile_method"], "nearest-rank")
        self.assertEqual(
            summary["phases_ms"]["wait"],
            {"min": 10.0, "mean": 20.0, "median": 20.0, "p90": 30.0, "max": 30.0},
        )
        self.assertEqual(summary["exit_code"], 0)
        self.assertEqual(len(proxy.connections), 1)

    def test_newConnection(self) -> None:
        proxy, port = self.startProxy(ok())
        code, out, err = self.runAgainst(
            port, "--count", "3", "--new-connection", "--json", "example.com"
        )
        self.assertEqual(code, 0)
        self.assertEqual(len(proxy.connections), 3)
        records = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([r["connection"] for r in records[:3]], [1, 2, 3])
        self.assertEqual(records[3]["connections"], 3)

    def test_proxyClosesBetweenRuns(self) -> None:
        """
        When the proxy does not keep the connection alive, the next run opens
        a new one by itself.
        """

        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            proto.transport.write(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"
            )
            proto.transport.loseConnection()

        proxy, port = self.startProxy(respond)
        code, out, err = self.runAgainst(port, "--count", "2", "example.com")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(len(proxy.connections), 2)
        self.assertIn("Statistics over 2 of 2 runs on 2 connections", out)

    def test_failureStopsRepeats(self) -> None:
        calls = []

        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            calls.append(head)
            if len(calls) == 2:
                proto.transport.abortConnection()
            else:
                ok(b"a")(proto, head, body)

        proxy, port = self.startProxy(respond)
        code, out, err = self.runAgainst(port, "--count", "5", "--json", "example.com")
        self.assertEqual(code, 3)
        records = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([r["type"] for r in records], ["run", "run", "summary"])
        self.assertEqual(records[1]["exit_code"], 3)
        self.assertIn("without sending a response", records[1]["error"])
        self.assertEqual((records[2]["completed"], records[2]["exit_code"]), (1, 3))

    def test_timeout(self) -> None:
        """
        A proxy that never answers: after C{--timeout} seconds on the
        (injected) clock the run fails with code 3, naming the phase, and
        leaves no timer behind.
        """
        proxy, port = self.startProxy(lambda proto, head, body: None)
        result, out, err = self.start(port, "--timeout", "5", "example.com")
        self.net.advance(4.9)
        self.assertNoResult(result)
        self.net.advance(0.1)
        self.assertEqual(self.successResultOf(result), 3)
        self.assertEqual(
            err.getvalue(),
            "proxyclient: Timed out after 5 seconds waiting for the response. "
            "Use --timeout SECONDS to wait longer.\n",
        )
        self.assertEqual(self.net.clock.getDelayedCalls(), [])

    def test_connectTimeout(self) -> None:
        """
        A connection that never completes is cancelled at the timeout.
        """
        timeouts = Clock()

        class Hanging:
            def connect(self, factory: Any) -> defer.Deferred[Any]:
                return defer.Deferred()

        env, out, err = makeEnv(clock=timeouts, endpointFactory=lambda h, p, t: Hanging())
        result = defer.ensureDeferred(runClient(env, ["--timeout", "2.5", "example.com"]))
        self.assertNoResult(result)
        timeouts.advance(2.5)
        self.assertEqual(self.successResultOf(result), 3)
        self.assertEqual(
            err.getvalue(),
            "proxyclient: Timed out after 2.5 seconds waiting for the connection to the proxy "
            "at 127.0.0.1:8080. Use --timeout SECONDS to wait longer.\n",
        )

    def test_headDataAndHeaders(self) -> None:
        proxy, port = self.startProxy(ok(b"ignored"))
        code, out, err = self.runAgainst(port, "--head", "example.com")
        self.assertEqual(code, 0)
        self.assertTrue(proxy.requests[0][0].startswith(b"HEAD http://example.com/ HTTP/1.1\r\n"))
        self.assertIn("Round-trip time", out)
        self.assertNotIn("ignored", out)

        code, out, err = self.runAgainst(
            port, "-d", "a=1", "-H", "X-Trace: 7", "--origin-form", "example.com"
        )
        self.assertEqual(code, 0)
        head, body = proxy.requests[1]
        self.assertTrue(head.startswith(b"POST / HTTP/1.1\r\nHost: example.com\r\n"))
        self.assertIn(b"\r\nX-Trace: 7\r\n", head)
        self.assertEqual(body, b"a=1")
        self.assertIn("\\r\\n\\r\\n + 3-byte body  [", out)

    def test_outputAndShowBody(self) -> None:
        """
        C{--output} streams the body to a file (here a chunked one);
        C{--show-body} prints all of it.
        """
        lines = b"".join(b"row %d\n" % i for i in range(50))

        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            proto.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            for i in range(0, len(lines), 100):
                piece = lines[i : i + 100]
                proto.transport.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            proto.transport.write(b"0\r\n\r\n")

        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "body.txt")
        proxy, port = self.startProxy(respond)
        code, out, err = self.runAgainst(port, "--output", path, "example.com")
        self.assertEqual(code, 0)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), lines)
        self.assertIn(
            "  row 9\n  [... %d bytes in all; --show-body prints the whole body]\n" % (len(lines),),
            out,
        )

        code, out, err = self.runAgainst(port, "--show-body", "example.com")
        self.assertEqual(code, 0)
        self.assertIn(
            "Transfer-Encoding: chunked\\r\\n\\r\\n  [12:34:56.123]\n"
            + lines.decode()
            + "Round-trip time",
            out,
        )

    def test_outputUnwritable(self) -> None:
        """
        A C{--output} path that cannot be written is a usage error (one
        line, exit code 2) before anything is sent.
        """
        proxy, port = self.startProxy(ok())
        missing = os.path.join(tempfile.gettempdir(), "proxyclient-no-such-dir", "x", "body")
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        for path, why in [(missing, "No such file or directory"), (directory, "Is a directory")]:
            code, out, err = self.runAgainst(port, "--output", path, "example.com")
            self.assertEqual(
                (code, out, err), (2, "", "proxyclient: --output {}: {}\n".format(path, why))
            )
        self.assertEqual(self.net.connects, [])

    def test_outputKeptUntilABodyStarts(self) -> None:
        """
        An existing C{--output} file is truncated only when a response body
        starts, and a file the client created is removed again when no
        response came.
        """
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        existing = os.path.join(directory, "existing")
        with open(existing, "wb") as f:
            f.write(b"keep me")
        created = os.path.join(directory, "created")
        proxy, port = self.startProxy(lambda proto, head, body: proto.transport.loseConnection())
        for path in (existing, created):
            code, out, err = self.runAgainst(port, "--output", path, "example.com")
            self.assertEqual(code, 3)
        with open(existing, "rb") as f:
            self.assertEqual(f.read(), b"keep me")
        self.assertFalse(os.path.exists(created))

        proxy, port = self.startProxy(ok(b"new body"))
        code, out, err = self.runAgainst(port, "--output", existing, "example.com")
        self.assertEqual(code, 0)
        with open(existing, "rb") as f:
            self.assertEqual(f.read(), b"new body")

    def test_environmentProxy(self) -> None:
        proxy, port = self.startProxy(ok())
        code, out, err = self.net.run(
            self, ["example.com"], environ={"http_proxy": "http://10.1.2.3:%d/" % (port,)}
        )
        self.assertEqual(code, 0)
        self.assertEqual(self.net.connects, [("10.1.2.3", port)])
        self.assertEqual(len(proxy.requests), 1)


class StoppingTests(NetworkTestsMixin, SynchronousTestCase):
    """
    Ctrl-C and a closed standard output stop the client: the first says
    so, the second quietly.
    """

    def test_interrupted(self) -> None:
        handlers: list[Callable[[], None]] = []
        removed: list[bool] = []

        def interrupts(callback: Callable[[], None]) -> Callable[[], None]:
            handlers.append(callback)
            return lambda: removed.append(True)

        proxy, port = self.startProxy(lambda proto, head, body: None)
        result, out, err = self.start(port, "example.com", interrupts=interrupts)
        self.assertNoResult(result)
        [interrupt] = handlers
        interrupt()
        self.net.flush()
        self.assertEqual(self.successResultOf(result), 130)
        self.assertEqual(
            err.getvalue(), "proxyclient: Interrupted while waiting for the response.\n"
        )
        self.assertNotIn("closed", out.getvalue())
        self.assertEqual(removed, [True])
        self.assertEqual(self.net.clock.getDelayedCalls(), [])

    def test_interruptedWhileConnecting(self) -> None:
        handlers: list[Callable[[], None]] = []

        class Hanging:
            def connect(self, factory: Any) -> defer.Deferred[Any]:
                return defer.Deferred()

        def interrupts(callback: Callable[[], None]) -> Callable[[], None]:
            handlers.append(callback)
            return lambda: None

        env, out, err = makeEnv(
            endpointFactory=lambda h, p, t: Hanging(),
            interrupts=interrupts,
        )
        result = defer.ensureDeferred(runClient(env, ["--count", "3", "example.com"]))
        handlers[0]()
        self.assertEqual(self.successResultOf(result), 130)
        self.assertEqual(
            err.getvalue(),
            "proxyclient: Interrupted while waiting for the connection to the proxy at "
            "127.0.0.1:8080.\n",
        )

    def test_outputClosed(self) -> None:
        """
        When the reader of stdout goes, the run stops at the next write: no
        traceback, no message, code 141; no other run starts.
        """

        class Pipe(io.StringIO):
            writes = 0

            def flush(self) -> None:
                self.writes += 1
                if self.writes > 1:
                    raise BrokenPipeError(32, "Broken pipe")

        proxy, port = self.startProxy(ok(b"x" * 100))
        pipe = Pipe()
        code, out, err = self.net.run(
            self, ["-x", "127.0.0.1:1", "--count", "5", "example.com"], stdout=pipe
        )
        self.assertEqual((code, err), (141, ""))
        self.assertEqual(pipe.getvalue().count("\n"), 2)
        self.assertEqual(len(proxy.requests), 1)

    def test_outputClosedBeforeStart(self) -> None:
        class Closed(io.StringIO):
            def write(self, text: str) -> int:
                raise BrokenPipeError(32, "Broken pipe")

        proxy, port = self.startProxy(ok())
        code, out, err = self.net.run(self, ["--help"], stdout=Closed())
        self.assertEqual((code, err), (141, ""))


class TimingTests(NetworkTestsMixin, SynchronousTestCase):
    """
    Each mark is taken at the event that defines it; work that is not the
    network (output, the MAC lookup, one-time preparation) falls outside
    the phases.
    """

    def test_nameLookup(self) -> None:
        """
        A proxy given by name is resolved first, as the C{namelookup}
        phase; C{connect} starts after it.  The resolver is prepared
        before the clock starts, and a second connection reuses the
        addresses.
        """
        clock = FakeMonotonic()
        resolver = FakeResolver(pending=True)
        proxy, port = self.startProxy(ok())
        result, out, err = self.net.start(
            [
                "-x",
                "proxy.test:%d" % (port,),
                "--json",
                "--count",
                "2",
                "--new-connection",
                "example.com",
            ],
            resolver=resolver,
            monotonic=clock,
        )
        self.assertEqual((resolver.prepared, resolver.lookups), (1, ["proxy.test"]))
        clock.advance(0.5)
        assert resolver.pending is not None
        resolver.pending[0].callback(["10.0.0.7"])
        self.net.flush()
        self.assertEqual(self.successResultOf(result), 0)
        first, second, summary = [json.loads(line) for line in out.getvalue().splitlines()]
        self.assertEqual(self.net.connects, [("10.0.0.7", port), ("10.0.0.7", port)])
        self.assertEqual(resolver.lookups, ["proxy.test"])
        self.assertEqual(first["timings_ms"]["namelookup"], 500.0)
        self.assertEqual(first["timings_ms"]["connect"], 0.0)
        self.assertEqual(first["timings_ms"]["total"], 500.0)
        self.assertEqual(first["curl"]["time_namelookup"], 0.5)
        self.assertEqual(first["curl"]["time_connect"], 0.5)
        self.assertEqual(second["timings_ms"]["namelookup"], 0.0)
        self.assertEqual(first["proxy"], "proxy.test:%d" % (port,))

    def test_addressSkipsLookup(self) -> None:
        resolver = FakeResolver()
        proxy, port = self.startProxy(ok())
        code, out, err = self.runAgainst(port, "--json", "example.com", resolver=resolver)
        record = json.loads(out)
        self.assertEqual((resolver.prepared, resolver.lookups), (0, []))
        self.assertIsNone(record["timings_ms"]["namelookup"])
        self.assertEqual(record["curl"]["time_namelookup"], 0.0)

    def test_lookupFails(self) -> None:
        proxy, port = self.startProxy(ok())
        code, out, err = self.net.run(self, ["-x", "nowhere.test:3128", "example.com"])
        self.assertEqual(
            (code, err),
            (
                3,
                "proxyclient: Could not connect to the proxy at nowhere.test:3128: the name "
                "could not be resolved. Check --proxy or http_proxy.\n",
            ),
        )
        self.assertEqual(self.net.connects, [])

    def test_lookupTimesOut(self) -> None:
        resolver = FakeResolver(pending=True)
        proxy, port = self.startProxy(ok())
        result, out, err = self.net.start(
            ["-x", "slow.test:3128", "--timeout", "5", "example.com"], resolver=resolver
        )
        self.net.advance(5)
        self.assertEqual(self.successResultOf(result), 3)
        self.assertEqual(
            err.getvalue(),
            "proxyclient: Timed out after 5 seconds waiting for the address of slow.test. "
            "Use --timeout SECONDS to wait longer.\n",
        )

    def test_nextAddress(self) -> None:
        """
        When the first address refuses, the next one is tried; the connect
        phase counts from the first attempt.
        """
        proxy, port = self.startProxy(ok())
        refused: list[str] = []

        def endpoints(host: str, port: int, timeout: float) -> Any:
            if host == "10.0.0.1":
                refused.append(host)
                return RefusingEndpoint()(host, port, timeout)
            return self.net.endpointFactory(host, port, timeout)

        code, out, err = self.net.run(
            self,
            ["-x", "twice.test:3128", "example.com"],
            resolver=FakeResolver({"twice.test": ["10.0.0.1", "10.0.0.2"]}),
            endpointFactory=endpoints,
        )
        self.assertEqual((code, err), (0, ""))
        self.assertEqual((refused, self.net.connects), (["10.0.0.1"], [("10.0.0.2", 3128)]))

    def test_outputIsNotTheNetwork(self) -> None:
        """
        Slow output (a terminal, a pipe), the MAC lookup and the one-time
        preparation take time, but none of it lands in a phase: the
        response's marks are the time of the read that brought it.
        """
        clock = FakeMonotonic()

        class SlowTerminal(io.StringIO):
            def write(self, text: str) -> int:
                clock.advance(1.0)
                return super().write(text)

        def slowTable() -> Any:
            clock.advance(10.0)
            from tests._client import machine

            return machine()

        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            clock.advance(0.25)
            ok()(proto, head, body)

        proxy, port = self.startProxy(respond)
        code, out, err = self.runAgainst(
            port,
            "-v",
            "example.com",
            monotonic=clock,
            stdout=SlowTerminal(),
            interfaceTable=slowTable,
        )
        self.assertEqual(code, 0)
        self.assertIn("Round-trip time: 0.250 seconds\n", out)
        self.assertIn("  response complete         0.000 ms  time_total=0.250000\n", out)

    def test_connectedWhenTheKernelSaysSo(self) -> None:
        """
        An endpoint that knows when the kernel reported the connection
        (L{ConnectNowEndpoint.connectedAt}) gives the C{connected} mark,
        not the later C{connectionMade}.
        """
        clock = FakeMonotonic()
        proxy, port = self.startProxy(ok())

        class Timed:
            connectedAt: float | None = None

            def __init__(self, inner: Any) -> None:
                self._inner = inner

            def connect(self, factory: Any) -> defer.Deferred[Any]:
                clock.advance(0.001)
                self.connectedAt = clock()
                clock.advance(0.002)  # adopting the socket, connectionMade
                return self._inner.connect(factory)

        code, out, err = self.runAgainst(
            port,
            "--json",
            "example.com",
            monotonic=clock,
            endpointFactory=lambda h, p, t: Timed(self.net.endpointFactory(h, p, t)),
        )
        record = json.loads(out)
        self.assertEqual(record["timings_ms"]["connect"], 1.0)
        self.assertEqual(record["timings_ms"]["send"], 2.0)
        self.assertEqual(record["curl"]["time_connect"], 0.001)

    def test_heldOutputIsWrittenAfterAGrace(self) -> None:
        """
        While the response is awaited, the request line is written once
        L{OUTPUT_GRACE} has passed, not at the instant the request went.
        """
        held: list[FakeProxyProtocol] = []
        proxy, port = self.startProxy(lambda proto, head, body: held.append(proto))
        result, out, err = self.start(port, "example.com")
        self.assertEqual(out.getvalue(), "")
        self.net.advance(OUTPUT_GRACE)
        self.assertTrue(out.getvalue().startswith("Request has been sent: GET http://example.com/"))
        ok()(held[0], b"", b"")
        self.net.flush()
        self.assertEqual(self.successResultOf(result), 0)
        self.assertIn("Round-trip time", out.getvalue())

    def test_noCollectionDuringAnExchange(self) -> None:
        """
        In the real process (C{quietCollector}), the garbage collector is
        run and its objects frozen before the clock, and it is off while an
        exchange is timed, on again after.
        """
        self.addCleanup(gc.unfreeze)
        self.assertTrue(gc.isenabled())
        seen: list[tuple[bool, int]] = []

        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            seen.append((gc.isenabled(), gc.get_freeze_count()))
            ok()(proto, head, body)

        proxy, port = self.startProxy(respond)
        code, out, err = self.runAgainst(port, "--count", "2", "example.com", quietCollector=True)
        self.assertEqual(code, 0)
        self.assertEqual([enabled for enabled, frozen in seen], [False, False])
        self.assertGreater(seen[0][1], 0)
        self.assertTrue(gc.isenabled())
        gc.unfreeze()
        proxy, port = self.startProxy(respond)
        self.runAgainst(port, "example.com")
        self.assertEqual(seen[-1], (True, 0))
