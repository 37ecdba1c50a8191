"""
Tests for L{twisted_proxy.client.main}, L{twisted_proxy.client.options}
and L{twisted_proxy.client.config}: the command line, the prompt, the
request that is built, usage errors, and the console script.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from twisted.internet import defer
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tests._client import RefusingEndpoint, makeEnv
from twisted_proxy.client.address import parseTarget
from twisted_proxy.client.config import Config, configure
from twisted_proxy.client.errors import connectFailure
from twisted_proxy.client.main import PROMPT, runClient
from twisted_proxy.client.options import USER_AGENT, Options


class ConnectFailureTests(SynchronousTestCase):
    """
    Each way a connection to the proxy can fail gets one line saying what
    failed and what to do.
    """

    def test_messages(self) -> None:
        from twisted.internet import error
        from twisted.python.failure import Failure

        prefix = "Could not connect to the proxy at [::1]:3128: "
        for exception, expected in [
            (
                error.DNSLookupError("x"),
                "the name could not be resolved. Check --proxy or http_proxy.",
            ),
            (error.TimeoutError(), "timed out. Is the address right, and reachable?"),
            (error.NoRouteError(), "No route to host."),
        ]:
            result = connectFailure(Failure(exception), "the proxy at [::1]:3128")
            self.assertEqual(result.message, prefix + expected)
            self.assertEqual(result.exitCode, 3)


class OptionsTests(SynchronousTestCase):
    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def test_defaults(self) -> None:
        options = self.parse()
        self.assertIsNone(options["target"])
        self.assertEqual(options["count"], 1)
        self.assertEqual(options["timeout"], 30.0)
        self.assertEqual(options["headers"], [])
        self.assertFalse(options["timing"])

    def test_optionsAfterTarget(self) -> None:
        options = self.parse("example.com", "-v", "--count", "3", "-H", "A: b", "-HC:")
        self.assertEqual(options["target"], "example.com")
        self.assertTrue(options["timing"])
        self.assertEqual(options["count"], 3)
        self.assertEqual(options["headers"], [("A", "b"), ("C", "")])

    def test_bad(self) -> None:
        for argv, words in [
            (["--count", "0"], "--count must be a positive whole number"),
            (["--count", "x"], "--count must be a positive whole number"),
            (["--timeout", "-1"], "--timeout must be a positive number"),
            (["-d", "a", "--data-file", "f"], "not both"),
            (["--head", "-X", "POST"], "contradict"),
            (["--head", "-d", "x"], "cannot send --data"),
            (["-X", "GE T"], "not a method name"),
            (["-X", "CONNECT"], "https:// targets open a tunnel"),
            (["-H", "no colon"], "'Name: value'"),
            (["-H", "Bad Name: x"], "'Name: value'"),
            (["a", "b"], "Wrong number of arguments"),
            (["--frobnicate"], "frobnicate"),
        ]:
            with self.assertRaises(usage.UsageError, msg=argv) as caught:
                self.parse(*argv)
            self.assertIn(words, str(caught.exception), argv)


class RunClientUsageTests(SynchronousTestCase):
    """
    L{runClient} before any connection: help, usage errors and the prompt.
    """

    def runClient(self, argv: list[str], **kwargs: Any) -> tuple[int, str, str, RefusingEndpoint]:
        endpoints = RefusingEndpoint()
        kwargs.setdefault("endpointFactory", endpoints)
        env, out, err = makeEnv(**kwargs)
        code = self.successResultOf(defer.ensureDeferred(runClient(env, argv)))
        return code, out.getvalue(), err.getvalue(), endpoints

    def test_help(self) -> None:
        code, out, err, _ = self.runClient(["--help"])
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith("Usage: proxyclient [options] [TARGET]"))
        for words in (
            "--proxy",
            "--count",
            "--json",
            "Exit codes:",
            "Examples:",
            "time_starttransfer",
            "nearest rank",
            "Enter the website's IP:",
            "default route",
            "--cacert",
            "--insecure",
        ):
            self.assertIn(words, out)
        self.assertEqual(err, "")

    def test_version(self) -> None:
        code, out, _, _ = self.runClient(["--version"])
        self.assertEqual((code, out), (0, USER_AGENT + "\n"))

    def test_usageError(self) -> None:
        code, out, err, endpoints = self.runClient(["--count", "-3", "example.com"])
        self.assertEqual(code, 2)
        self.assertEqual(
            err,
            "proxyclient: --count must be a positive whole number, not '-3'\n"
            "Try 'proxyclient --help'.\n",
        )
        self.assertEqual(endpoints.calls, [])

    def test_badTargetArgument(self) -> None:
        code, out, err, endpoints = self.runClient(["ftp://example.com/"])
        self.assertEqual(code, 2)
        self.assertEqual(
            err,
            "proxyclient: ftp:// addresses are not supported: use http:// or https://\n",
        )
        self.assertEqual((out, endpoints.calls), ("", []))

    def test_unreadableFiles(self) -> None:
        missing = os.path.join(tempfile.gettempdir(), "proxyclient-test-does-not-exist")
        for argv, words in [
            (["--data-file", missing, "example.com"], "--data-file " + missing),
            (["--cacert", missing, "https://example.com/"], "--cacert " + missing),
        ]:
            code, _, err, endpoints = self.runClient(argv)
            self.assertEqual(code, 2)
            self.assertIn(words, err)
            self.assertEqual(err.count("\n"), 1)
            self.assertEqual(endpoints.calls, [])

    def test_badProxySetting(self) -> None:
        code, _, err, _ = self.runClient(["example.com"], environ={"http_proxy": "https://p:1/"})
        self.assertEqual(code, 2)
        self.assertEqual(
            err,
            "proxyclient: $http_proxy: 'https://p:1/': only http:// proxies are supported "
            "(proxyclient speaks plain HTTP to the proxy, and CONNECT for https:// targets)\n",
        )
        code, _, err, _ = self.runClient(["--proxy", "p:x", "example.com"])
        self.assertEqual(code, 2)
        self.assertIn("--proxy: 'p:x' is not HOST:PORT", err)

    def test_proxyChoice(self) -> None:
        """
        C{--proxy} beats C{http_proxy}, which beats C{HTTP_PROXY}, which
        beats 127.0.0.1:8080.
        """
        for argv, environ, expected in [
            (["example.com"], {}, ("127.0.0.1", 8080)),
            (
                ["example.com"],
                {"HTTP_PROXY": "http://10.0.0.2:3128"},
                ("10.0.0.2", 3128),
            ),
            (
                ["example.com"],
                {"HTTP_PROXY": "10.0.0.2:3128", "http_proxy": "10.0.0.3:1"},
                ("10.0.0.3", 1),
            ),
            (
                ["-x", "[::1]:9", "example.com"],
                {"http_proxy": "10.0.0.3:1"},
                ("::1", 9),
            ),
        ]:
            code, _, err, endpoints = self.runClient(argv, environ=environ)
            self.assertEqual(endpoints.calls, [expected])
            self.assertEqual(code, 3)

    def test_connectionRefused(self) -> None:
        code, out, err, _ = self.runClient(["example.com"])
        self.assertEqual(code, 3)
        self.assertEqual(
            err,
            "proxyclient: Could not connect to the proxy at 127.0.0.1:8080: connection refused. "
            "Is `twistd -n proxyserver` running there? "
            "(--proxy HOST:PORT chooses another proxy.)\n",
        )
        # No connection, no MAC line; nothing else either.
        self.assertEqual(out, "")

    def test_promptInteractive(self) -> None:
        """
        Interactively, a bad address gets a one-line error and the prompt
        again.
        """
        code, out, err, endpoints = self.runClient(
            [], stdin="\nnot an address!\n93.184.216.34\n", interactive=True
        )
        self.assertEqual(out, PROMPT * 3)
        self.assertEqual(
            err.splitlines()[:2],
            [
                "proxyclient: no address given: type an IP address, a host name or a URL, "
                "e.g. 93.184.216.34 or http://example.com/",
                "proxyclient: 'not an address!' is not an address: it contains spaces",
            ],
        )
        self.assertEqual(endpoints.calls, [("127.0.0.1", 8080)])
        self.assertEqual(code, 3)

    def test_promptEndOfInput(self) -> None:
        code, out, err, endpoints = self.runClient([], stdin="", interactive=True)
        self.assertEqual((code, out, err), (2, PROMPT + "\n", "proxyclient: no address given.\n"))
        self.assertEqual(endpoints.calls, [])

    def test_promptNonInteractive(self) -> None:
        """
        From a pipe, the address is echoed after the prompt (so the output
        reads like the brief's), and a bad one ends the program with code 2.
        """
        code, out, err, endpoints = self.runClient([], stdin="999.1.1.1\n93.184.216.34\n")
        self.assertEqual(code, 2)
        self.assertEqual(out, PROMPT + "999.1.1.1\n")
        self.assertEqual(err, "proxyclient: '999.1.1.1' is not a valid IPv4 address\n")
        self.assertEqual(endpoints.calls, [])

    def test_promptInterrupted(self) -> None:
        class Interrupting(io.StringIO):
            # typeshed gives StringIO's base (_IOBase) a bytes readline.
            def readline(self, size: int | None = -1, /) -> str:  # type: ignore[override]
                raise KeyboardInterrupt()

        env, out, err = makeEnv(endpointFactory=RefusingEndpoint())
        env.stdin = Interrupting()
        code = self.successResultOf(defer.ensureDeferred(runClient(env, [])))
        self.assertEqual((code, out.getvalue()), (130, PROMPT + "\n"))

    def test_promptJSON(self) -> None:
        """
        With C{--json} the prompt goes to stderr, so stdout holds only JSON.
        """
        code, out, err, _ = self.runClient(["--json"], stdin="example.com\n")
        self.assertEqual(code, 3)
        self.assertTrue(err.startswith(PROMPT + "example.com\n"))
        record = json.loads(out)
        self.assertEqual(record["exit_code"], 3)
        self.assertEqual(record["url"], "http://example.com/")
        self.assertIsNone(record["status"])
        self.assertIn("connection refused", record["error"])


class RequestTests(SynchronousTestCase):
    """
    The request that is sent.
    """

    def build(self, *argv: str) -> Config:
        options = Options()
        options.parseOptions(list(argv))
        env, _, _ = makeEnv()
        return configure(options, env, parseTarget(options["target"]))

    def test_absoluteForm(self) -> None:
        config = self.build("93.184.216.34")
        self.assertEqual(
            config.requestHead,
            b"GET http://93.184.216.34/ HTTP/1.1\r\nHost: 93.184.216.34\r\n"
            b"User-Agent: " + USER_AGENT.encode() + b"\r\nAccept: */*\r\n\r\n",
        )
        self.assertEqual((config.method, config.requestBody), ("GET", b""))

    def test_originForm(self) -> None:
        config = self.build("--origin-form", "-H", "User-Agent:", "-H", "Accept:", "93.184.216.34")
        self.assertEqual(config.requestHead, b"GET / HTTP/1.1\r\nHost: 93.184.216.34\r\n\r\n")

    def test_httpsIsOriginFormInsideTunnel(self) -> None:
        config = self.build("-k", "https://example.com:8443/a?b")
        self.assertTrue(
            config.requestHead.startswith(b"GET /a?b HTTP/1.1\r\nHost: example.com:8443\r\n")
        )
        self.assertEqual(
            config.tunnelHead(),
            b"CONNECT example.com:8443 HTTP/1.1\r\nHost: example.com:8443\r\n"
            b"User-Agent: " + USER_AGENT.encode() + b"\r\n\r\n",
        )

    def test_data(self) -> None:
        config = self.build(
            "-d",
            "a=1&b=é",
            "-H",
            "X-Trace: 1",
            "-H",
            "accept: text/plain",
            "example.com",
        )
        self.assertEqual(config.method, "POST")
        self.assertEqual(config.requestBody, "a=1&b=é".encode())
        self.assertEqual(
            config.requestHead.split(b"\r\n")[1:],
            [
                b"Host: example.com",
                b"User-Agent: " + USER_AGENT.encode(),
                b"Content-Type: application/x-www-form-urlencoded",
                b"Content-Length: 8",
                b"X-Trace: 1",
                b"accept: text/plain",
                b"",
                b"",
            ],
        )

    def test_dataFile(self) -> None:
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "body")
        with open(path, "wb") as f:
            f.write(b"\x00\x01binary")
        config = self.build("--data-file", path, "-X", "PUT", "example.com")
        self.assertEqual((config.method, config.requestBody), ("PUT", b"\x00\x01binary"))
        self.assertIn(
            b"Content-Type: application/octet-stream\r\nContent-Length: 8\r\n",
            config.requestHead,
        )

    def test_methods(self) -> None:
        self.assertTrue(self.build("--head", "example.com").requestHead.startswith(b"HEAD http://"))
        post = self.build("-X", "POST", "example.com")
        self.assertIn(b"Content-Length: 0\r\n", post.requestHead)
        self.assertNotIn(b"Content-Length", self.build("-X", "DELETE", "example.com").requestHead)

    def test_framingHeadersRefused(self) -> None:
        with self.assertRaises(usage.UsageError):
            self.build("-H", "Content-Length: 5", "example.com")


# --- The console script -------------------------------------------------------------


class ScriptTests(SynchronousTestCase):
    def test_moduleRuns(self) -> None:
        """
        C{python -m twisted_proxy.client} runs under C{react}: a usage
        error exits with code 2 and one line, never a traceback.
        """
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "twisted_proxy.client",
                "--count",
                "x",
                "example.com",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stdout, "")
        self.assertEqual(
            result.stderr,
            "proxyclient: --count must be a positive whole number, not 'x'\n"
            "Try 'proxyclient --help'.\n",
        )

    def test_noGlobalReactorOnImport(self) -> None:
        code = (
            "import sys, twisted_proxy.client; "
            "assert 'twisted.internet.reactor' not in sys.modules; "
            "assert 'twisted_proxy.proxy.server' not in sys.modules; "
            "assert 'twisted_proxy.app.tap' not in sys.modules"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        self.assertEqual(result.returncode, 0, result.stderr)
