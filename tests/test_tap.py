"""
Tests for L{twisted_proxy.app.tap}, its L{Options} and the twistd plugin:
what the command line means, and how its errors read.
"""

from __future__ import annotations

import io
import sys

from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.app import console
from twisted_proxy.app.options import OptionError
from twisted_proxy.app.service import ProxyService
from twisted_proxy.app.tap import Options, makeService


def parse(*args: str) -> Options:
    config = Options()
    config.parseOptions(list(args))
    return config


class PluginTests(SynchronousTestCase):
    def test_discovered(self) -> None:
        """
        twistd finds the plugin under the tapname C{proxyserver}.
        """
        makers = [p for p in getPlugins(IServiceMaker) if p.tapname == "proxyserver"]
        self.assertTrue(makers)
        self.assertEqual(makers[0].options, Options)


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        config = parse()
        self.assertEqual(config["listen"], ["8080"])
        self.assertEqual(
            [listener.describe() for listener in config["built"].listeners],
            ["0.0.0.0:8080", "[::]:8080"],
        )
        self.assertEqual(config["connect-timeout"], 10.0)
        self.assertEqual(config["response-timeout"], 30.0)
        self.assertEqual(config["pool-min-idle-per-host"], 8)
        self.assertEqual(config["workers"], 1)
        self.assertEqual(config["log-level"], "info")
        self.assertEqual(config["shutdown-timeout"], 30.0)
        self.assertIsNone(config["max-connections-per-client"])
        self.assertIsNone(config["proxyConfig"].maxConnectionsPerClient)
        self.assertTrue(config["proxyConfig"].pseudonym.endswith(":8080"))

    def test_valuesReachTheConfiguration(self) -> None:
        """
        Each option sets its field of the L{ProxyConfig}, in the field's
        units (sizes in bytes).
        """
        config = parse(
            "--connect-timeout",
            "2.5",
            "--max-body",
            "10M",
            "--linger-timeout",
            "1",
            "--dns-cache-ttl",
            "0",
            "--forwarded",
            "xff",
            "--pseudonym",
            "p1",
        )
        proxyConfig = config["proxyConfig"]
        self.assertEqual(proxyConfig.connectTimeout, 2.5)
        self.assertEqual(proxyConfig.maxBody, 10 << 20)
        self.assertEqual(proxyConfig.lingerTimeout, 1.0)
        self.assertEqual(proxyConfig.dnsCacheTtl, 0.0)
        self.assertEqual(proxyConfig.forwarded, "xff")
        self.assertEqual(proxyConfig.pseudonym, "p1")

    def test_formerPoolOptionName(self) -> None:
        """
        --pool-max-idle-per-host, the former name of
        --pool-min-idle-per-host, still sets it.
        """
        config = parse("--pool-max-idle-per-host", "3")
        self.assertEqual(config["proxyConfig"].poolMinIdlePerHost, 3)

    def test_repeatableListen(self) -> None:
        config = parse("--listen", "tcp:3128:interface=127.0.0.1", "--listen", "tcp6:8080")
        self.assertEqual(config["listen"], ["tcp:3128:interface=127.0.0.1", "tcp6:8080"])
        self.assertEqual(
            [listener.describe() for listener in config["built"].listeners],
            ["127.0.0.1:3128", "[::]:8080"],
        )
        self.assertTrue(config["proxyConfig"].pseudonym.endswith(":3128"))

    def test_barePort(self) -> None:
        """
        A bare port listens on IPv4 and IPv6 (the IPv6 socket is optional:
        a host without IPv6 serves IPv4 alone).
        """
        listeners = parse("--listen", "3128")["built"].listeners
        self.assertEqual([x.describe() for x in listeners], ["0.0.0.0:3128", "[::]:3128"])
        self.assertEqual([x.optional for x in listeners], [False, True])

    def test_clientRulesInOrder(self) -> None:
        """
        On the command line, --allow and --deny are one list, checked in the
        order given.
        """
        policy = parse("--allow", "10.0.0.0/8", "--deny", "10.1.0.0/16")["proxyConfig"].policy
        self.assertIsNone(policy.checkClient("10.1.2.3"))
        policy = parse("--deny", "10.1.0.0/16", "--allow", "10.0.0.0/8")["proxyConfig"].policy
        self.assertIsNotNone(policy.checkClient("10.1.2.3"))
        self.assertIsNone(policy.checkClient("10.2.2.3"))

    # Each bad command line, and the one line that says what is wrong.
    BAD = [
        (
            ["--connect-timeout", "-5"],
            "--connect-timeout -5: expected a positive number of seconds",
        ),
        (
            ["--connect-timeout", "soon"],
            "--connect-timeout soon: expected a positive number of seconds",
        ),
        (["--idle-timeout", "0"], "--idle-timeout 0: expected a positive number of seconds"),
        (["--dns-cache-ttl", "-1"], "--dns-cache-ttl -1: expected a number of seconds, 0 or more"),
        (["--max-connections", "0"], "--max-connections 0: expected a whole number, at least 1"),
        (
            ["--max-connections", "1.5"],
            "--max-connections 1.5: expected a whole number, at least 1",
        ),
        (
            ["--pool-max-idle-per-host", "-2"],
            "--pool-min-idle-per-host -2: expected a whole number, 0 or more",
        ),
        (
            ["--max-body", "10X"],
            "--max-body 10X: expected a size in bytes, optionally followed by k, M or G "
            "(e.g. 64M), more than 0",
        ),
        (["--forwarded", "maybe"], "--forwarded maybe: expected one of off, xff, rfc7239"),
        (["--log-level", "loud"], "--log-level loud: expected one of debug, info, warn, error"),
        (
            ["--pseudonym", "bad name"],
            "--pseudonym bad name: expected letters, digits and - . _ : ~ only",
        ),
        (
            ["--workers", "zero"],
            "--workers zero: expected a whole number, at least 1, or auto (one per CPU)",
        ),
        (
            ["--listen", "tcp:notaport"],
            "--listen tcp:notaport: the port is not a number; use tcp:PORT",
        ),
        (["--listen", "nosuchendpoint:1"], "--listen nosuchendpoint:1: unknown endpoint type"),
        (["--listen", "tcp:80000"], "--listen tcp:80000: a port is 0-65535"),
        (["--listen", "70000"], "--listen 70000: a port is 0-65535"),
        (
            ["--listen", "unix:/nonexistent/p.sock"],
            "--listen unix:/nonexistent/p.sock: cannot make a socket there: /nonexistent is not "
            "a directory",
        ),
        (
            ["--listen", "tcp:8080:interface=localhost"],
            "--listen tcp:8080:interface=localhost: interface=localhost is not an IP address",
        ),
        (["--history", "/"], "--history /: is a directory"),
        (
            ["--access-log", "/nonexistent/dir/access.log"],
            "--access-log /nonexistent/dir/access.log: cannot write there: the directory "
            "/nonexistent/dir does not exist",
        ),
        (
            ["--allow", "10.0.0.1/8"],
            "--allow 10.0.0.1/8: host bits are set; did you mean 10.0.0.0/8?",
        ),
        (["--deny-host", "bad host"], "--deny-host bad host: expected a host (example.com"),
        (["--connect-ports", "443,x"], "--connect-ports 443,x: expected port numbers (1-65535)"),
        (
            ["--upstream-proxy", "https://p.test:1"],
            "--upstream-proxy https://p.test:1: the parent proxy must be an http:// URL",
        ),
        (
            ["--auth-file", "/nonexistent"],
            "--auth-file /nonexistent: cannot read the auth file: No such file or directory",
        ),
        (
            ["--conect-timeout", "5"],
            "unknown option --conect-timeout (did you mean --connect-timeout?)",
        ),
        (["--listen"], "--listen needs a value"),
        (["--check-config=yes"], "--check-config takes no value"),
        (["stray"], "unexpected argument 'stray'"),
        (["--config", "/nonexistent.toml"], "--config /nonexistent.toml: no such file"),
    ]

    def test_badValues(self) -> None:
        """
        Every invalid option is a L{UsageError} whose message is one line
        naming the option, the value and what is expected.
        """
        for args, expected in self.BAD:
            with self.subTest(args=args):
                with self.assertRaises(UsageError) as caught:
                    Options().parseOptions(args)
                message = str(caught.exception)
                self.assertIsInstance(caught.exception, OptionError)
                self.assertTrue(message.startswith(expected), message)
                self.assertNotIn("\n", message)

    def test_help(self) -> None:
        """
        -h and --help print the help, each option with its default, and
        exit 0.
        """
        for flag in ("-h", "--help"):
            out = io.StringIO()
            self.patch(sys, "stdout", out)
            with self.assertRaises(SystemExit) as caught:
                Options().parseOptions([flag])
            self.assertEqual(caught.exception.code, 0)
            text = out.getvalue()
            self.assertIn("--connect-timeout=", text)
            self.assertIn("(default: 10)", text)
            self.assertIn("--config=", text)

    def test_checkConfig(self) -> None:
        """
        --check-config prints the effective configuration and exits 0.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        with self.assertRaises(SystemExit) as caught:
            parse("--check-config", "--connect-timeout", "4")
        self.assertEqual(caught.exception.code, 0)
        text = out.getvalue()
        self.assertIn("connect-timeout = 4  # from the command line\n", text)
        self.assertIn("idle-timeout = 60\n", text)
        self.assertIn('listen = ["8080"]', text)


class TwistdOptionsTests(SynchronousTestCase):
    """
    Parsed by twistd, the options report their own errors in one line and
    exit 2, and make the console twistd's logger.
    """

    def setUp(self) -> None:
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)
        self.patch(console, "_pending", None)

    def test_errorInOneLine(self) -> None:
        with self.assertRaises(SystemExit) as caught:
            ServerOptions().parseOptions(["-n", "proxyserver", "--connect-timeout", "-5"])
        self.assertEqual(caught.exception.code, 2)
        self.assertEqual(
            self.stderr.getvalue(),
            "twistd proxyserver: --connect-timeout -5: expected a positive number of seconds; "
            "see twistd proxyserver --help\n",
        )

    def test_consoleIsTheLogger(self) -> None:
        config = ServerOptions()
        config.parseOptions(["-n", "proxyserver", "--log-level", "warn"])
        self.assertEqual(config["logger"], console.twistdObserver)
        assert console._pending is not None
        self.assertEqual(console._pending["level"], "warn")
        self.assertTrue(config.subOptions.runByTwistd)

    def test_ownLoggerKept(self) -> None:
        """
        A --logger given to twistd is left alone.
        """
        config = ServerOptions()
        config.parseOptions(["-n", "--logger", "twisted.logger.textFileLogObserver", "proxyserver"])
        from twisted.logger import textFileLogObserver

        self.assertIs(config["logger"], textFileLogObserver)


class MakeServiceTests(SynchronousTestCase):
    def test_makeService(self) -> None:
        """
        One listening service per socket, sharing one factory; nothing is
        opened before the service starts (unless twistd runs it).
        """
        config = parse("--listen", "tcp:0", "--listen", "tcp:0", "--pseudonym", "p1")
        service = makeService(config, MemoryReactorClock())
        assert isinstance(service, ProxyService)
        self.assertEqual(list(service), [])
        self.assertEqual([x.socket for x in service.listeners], [None, None])
        self.assertEqual(service.factory.pseudonymText, "p1")

    def test_workers(self) -> None:
        from twisted_proxy.app.workers import WorkerSupervisor

        config = parse("--listen", "tcp:0", "--workers", "2")
        service = makeService(config, MemoryReactorClock())
        assert isinstance(service, WorkerSupervisor)
        self.assertEqual(service.count, 2)
