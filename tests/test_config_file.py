"""
Tests for the configuration file (C{--config}): reading it, every error it
can cause, C{--check-config}, the example file, and SIGHUP reloading it
while the proxy serves.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ProxyAgent, readBody

from tests._loopback import connectionsClosed, listenLocal, portNumber, proxyService, slowOrigin
from tests._twistd import ROOT, startTwistd, twistdArgv, twistdEnv
from tests._typing import TestCaseMixin
from twisted_proxy.app.options import OptionError
from twisted_proxy.app.settings import (
    SETTINGS,
    defaultOf,
    exampleFile,
    readConfigFile,
)
from twisted_proxy.app.tap import Options, makeService
from twisted_proxy.testing import logEvents


class ConfigDirMixin(TestCaseMixin):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.path = os.path.join(self.dir, "proxy.toml")

    def write(self, text: str, name: str = "proxy.toml") -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def parse(self, text: str, *args: str) -> Options:
        self.write(text)
        config = Options()
        config.parseOptions(["--config", self.path, *args])
        return config

    def error(self, text: str, *args: str) -> str:
        with self.assertRaises(OptionError) as caught:
            self.parse(text, *args)
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        return message


class ReadTests(ConfigDirMixin, SynchronousTestCase):
    def test_everyKindOfValue(self) -> None:
        config = self.parse(
            """
            listen = ["tcp:3128:interface=127.0.0.1", "tcp6:3128:interface=\\\\:\\\\:1"]
            workers = 1
            connect-timeout = 2.5
            idle-timeout = 30
            max-connections = 100
            max-body = "10M"
            discard-body-max = 1024
            forwarded = "rfc7239"
            pseudonym = "edge1"
            allow = ["10.0.0.0/8"]
            deny = ["10.66.0.0/16"]
            allow-host = ["*.example.com", "example.org"]
            deny-host = "ads.example.com"
            deny-private-destinations = true
            connect-ports = "443,8443"
            history = "history.jsonl"
            log-level = "warn"
            shutdown-timeout = 0
            """
        )
        proxyConfig = config["proxyConfig"]
        self.assertEqual(
            [x.describe() for x in config["built"].listeners], ["127.0.0.1:3128", "[::1]:3128"]
        )
        self.assertEqual(proxyConfig.connectTimeout, 2.5)
        self.assertEqual(proxyConfig.idleTimeout, 30.0)
        self.assertEqual(proxyConfig.maxConnections, 100)
        self.assertEqual(proxyConfig.maxBody, 10 << 20)
        self.assertEqual(proxyConfig.discardBodyMax, 1024)
        self.assertEqual(proxyConfig.forwarded, "rfc7239")
        self.assertEqual(proxyConfig.pseudonym, "edge1")
        self.assertEqual(config["deny-host"], ["ads.example.com"])
        self.assertEqual(config["log-level"], "warn")
        self.assertEqual(config["shutdown-timeout"], 0.0)
        # Relative to the file's directory.
        self.assertEqual(config["history"], os.path.join(self.dir, "history.jsonl"))
        policy = proxyConfig.policy
        # In a file, deny is checked before allow.
        self.assertIsNotNone(policy.checkClient("10.66.1.1"))
        self.assertIsNone(policy.checkClient("10.1.1.1"))
        self.assertIsNotNone(policy.checkClient("127.0.0.1"))
        self.assertIsNotNone(policy.checkRequest(b"GET", "ads.example.com", 80, None).refusal)
        self.assertIsNone(policy.checkRequest(b"GET", "www.example.com", 80, None).refusal)
        self.assertIsNotNone(policy.checkRequest(b"GET", "other.net", 80, None).refusal)

    def test_commandLineWins(self) -> None:
        """
        An option on the command line wins over the file's key; a list on
        the command line replaces the file's list; --allow or --deny
        replace both of the file's client rules.
        """
        config = self.parse(
            'connect-timeout = 5\nidle-timeout = 7\ndeny-host = ["a.example"]\n'
            'allow = ["10.0.0.0/8"]\ndeny = ["10.66.0.0/16"]\n',
            "--connect-timeout",
            "9",
            "--deny-host",
            "b.example",
            "--allow",
            "192.0.2.0/24",
        )
        settings = config["settings"]
        self.assertEqual(config["connect-timeout"], 9.0)
        self.assertEqual(config["idle-timeout"], 7.0)
        self.assertEqual(config["deny-host"], ["b.example"])
        self.assertEqual(settings.clientRules, [("allow", "192.0.2.0/24")])
        self.assertEqual(settings.sources["connect-timeout"], "command line")
        self.assertEqual(settings.sources["idle-timeout"], self.path)
        self.assertEqual(settings.sources["header-timeout"], "default")

    def test_workersAuto(self) -> None:
        config = self.parse('workers = "auto"\n')
        self.assertEqual(config["workers"], os.cpu_count() or 1)

    def test_empty(self) -> None:
        config = self.parse("")
        for setting in SETTINGS:
            if setting.inFile and setting.name != "pseudonym":
                self.assertEqual(config[setting.name], defaultOf(setting), setting.name)

    def test_errors(self) -> None:
        """
        Each mistake in a file is one line naming the file, the key, the
        value and what is expected.
        """
        p = self.path
        for text, expected in [
            (
                "conect-timeout = 5",
                f"{p}: unknown key 'conect-timeout' (did you mean connect-timeout?)",
            ),
            (
                '[proxy]\nlisten = ["8080"]',
                f"{p}: unknown key 'proxy' (write every key at the top level",
            ),
            (
                "check-config = true",
                f"{p}: unknown key 'check-config' (it is a command-line option only)",
            ),
            ('config = "x.toml"', f"{p}: unknown key 'config' (it is a command-line option only)"),
            (
                'connect-timeout = "10"',
                f'{p}: connect-timeout = "10": expected a positive number of seconds',
            ),
            (
                "connect-timeout = -5",
                f"{p}: connect-timeout = -5: expected a positive number of seconds",
            ),
            (
                "connect-timeout = true",
                f"{p}: connect-timeout = true: expected a positive number of seconds",
            ),
            (
                "max-connections = 2.5",
                f"{p}: max-connections = 2.5: expected a whole number, at least 1",
            ),
            (
                'max-body = "lots"',
                f'{p}: max-body = "lots": expected a size in bytes, '
                "optionally followed by k, M or G",
            ),
            ('forwarded = "maybe"', f'{p}: forwarded = "maybe": expected one of off, xff, rfc7239'),
            (
                'deny-private-destinations = "yes"',
                f'{p}: deny-private-destinations = "yes": expected true or false',
            ),
            ("workers = 0", f"{p}: workers = 0: expected a whole number, at least 1, or auto"),
            ("allow-host = 5", f"{p}: allow-host = 5: expected a list of host patterns"),
            (
                'allow-host = ["bad host"]',
                f'{p}: allow-host item "bad host": expected a host (example.com',
            ),
            (
                'allow = ["10.0.0.1/8"]',
                f'{p}: allow item "10.0.0.1/8": host bits are set; did you mean 10.0.0.0/8?',
            ),
            ('listen = ["tcp:80000"]', f'{p}: listen item "tcp:80000": a port is 0-65535'),
            ("listen = []", f"{p}: listen = []: expected at least one endpoint"),
            ('history = "/"', f'{p}: history = "/": is a directory'),
            (
                'access-log = "nodir/access.log"',
                f'{p}: access-log = "{self.dir}/nodir/access.log": cannot write there',
            ),
            (
                'upstream-proxy = "ftp://x"',
                f'{p}: upstream-proxy = "ftp://x": the parent proxy must be an http:// URL',
            ),
            ('connect-ports = "x"', f'{p}: connect-ports = "x": expected port numbers (1-65535)'),
            (
                'auth-file = "missing"',
                f"{p}: auth-file = {self.dir}/missing: cannot read the auth file",
            ),
            (
                'pseudonym = "a b"',
                f'{p}: pseudonym = "a b": expected letters, digits and - . _ : ~ only',
            ),
            ("connect-timeout = ", f"{p}: not valid TOML: "),
        ]:
            with self.subTest(text=text):
                message = self.error(text)
                self.assertTrue(message.startswith(expected), message)

    def test_fileErrors(self) -> None:
        missing = os.path.join(self.dir, "missing.toml")
        config = Options()
        with self.assertRaises(OptionError) as caught:
            config.parseOptions(["--config", missing])
        self.assertEqual(str(caught.exception), f"--config {missing}: no such file")
        with self.assertRaises(OptionError) as caught:
            Options().parseOptions(["--config", self.dir])
        self.assertEqual(
            str(caught.exception), f"--config {self.dir}: is a directory; expected a TOML file"
        )
        with open(self.path, "wb") as f:
            f.write(b'pseudonym = "\xff"\n')
        with self.assertRaises(OptionError) as caught:
            Options().parseOptions(["--config", self.path])
        self.assertTrue(str(caught.exception).startswith(f"{self.path}: not valid TOML"))

    def test_includes(self) -> None:
        """
        "@PATH" in a list of networks or host patterns stands for the lines
        of PATH (relative to the configuration file), comments ignored.
        """
        self.write("# blocked\nads.example.com\n\n*.tracker.example  # all of them\n", "deny.txt")
        self.write("192.0.2.0/24\n", "clients.txt")
        config = self.parse('deny-host = ["@deny.txt", "x.example"]\nallow = ["@clients.txt"]\n')
        settings = config["settings"]
        self.assertEqual(settings["deny-host"], ["@deny.txt", "x.example"])
        self.assertEqual(
            settings.itemsOf("deny-host"), ["ads.example.com", "*.tracker.example", "x.example"]
        )
        self.assertEqual(settings.clientRules, [("allow", "192.0.2.0/24")])
        policy = config["proxyConfig"].policy
        self.assertIsNotNone(policy.checkRequest(b"GET", "a.tracker.example", 80, None).refusal)
        # On the command line, relative to the current directory.
        config = Options()
        config.parseOptions(["--deny-host", "@" + os.path.join(self.dir, "deny.txt")])
        self.assertEqual(len(config["settings"].itemsOf("deny-host")), 2)

    def test_includeErrors(self) -> None:
        inc = os.path.join(self.dir, "hosts.txt")
        self.write("ok.example\n\nbad host\n", "hosts.txt")
        self.assertEqual(
            self.error('allow-host = ["@hosts.txt"]'),
            f"{inc} line 3: allow-host 'bad host': expected a host (example.com, no port), "
            "*.example.com (subdomains), .example.com (the domain and its subdomains) or re:REGEX",
        )
        self.write("@other.txt\n", "hosts.txt")
        self.assertEqual(
            self.error('allow-host = ["@hosts.txt"]'),
            f"{inc} line 1: an included file cannot include another",
        )
        self.assertEqual(
            self.error('deny-host = ["@nothere.txt"]'),
            f'{self.path}: deny-host item "@nothere.txt": cannot read '
            f"{self.dir}/nothere.txt (No such file or directory)",
        )


class CacheReverseMetricsTests(ConfigDirMixin, SynchronousTestCase):
    """
    The cache, reverse-proxy and C{--metrics} settings: in a file and on the
    command line, with the checks and messages they had as plain options.
    """

    def test_fromTheFile(self) -> None:
        config = self.parse(
            """
            cache-size = "128M"
            cache-max-object = 1048576
            cache-dir = "cache"
            cache-disk-size = "2G"
            cache-heuristic-max = 3600
            cache-collapse-timeout = 2.5
            reverse = "http://127.0.0.1:8000/"
            reverse-host = ["WWW.Example.COM.=http://127.0.0.1:8001", "api.example.com=http://[::1]"]
            reverse-rewrite-host = true
            metrics = 9100
            """
        )
        proxyConfig = config["proxyConfig"]
        self.assertEqual(proxyConfig.cacheSize, 128 << 20)
        self.assertEqual(proxyConfig.cacheMaxObject, 1 << 20)
        # Relative to the file's directory, as every file name in it.
        self.assertEqual(proxyConfig.cacheDir, os.path.join(self.dir, "cache"))
        self.assertEqual(proxyConfig.cacheDiskSize, 2 << 30)
        self.assertEqual(proxyConfig.cacheHeuristicMax, 3600.0)
        self.assertEqual(proxyConfig.cacheCollapseTimeout, 2.5)
        self.assertEqual((proxyConfig.reverse.host, proxyConfig.reverse.port), ("127.0.0.1", 8000))
        self.assertEqual(
            [(name, origin.host, origin.port) for name, origin in proxyConfig.reverseHosts],
            [("www.example.com", "127.0.0.1", 8001), ("api.example.com", "::1", 80)],
        )
        self.assertTrue(proxyConfig.reverseRewriteHost)
        self.assertTrue(proxyConfig.reversing)
        # A bare port listens on loopback only.
        self.assertEqual(config["metrics"], "tcp:9100:interface=127.0.0.1")

    def test_defaults(self) -> None:
        config = Options()
        config.parseOptions([])
        proxyConfig = config["proxyConfig"]
        self.assertEqual(
            (
                proxyConfig.cacheSize,
                proxyConfig.cacheMaxObject,
                proxyConfig.cacheDir,
                proxyConfig.cacheDiskSize,
                proxyConfig.cacheHeuristicMax,
                proxyConfig.cacheCollapseTimeout,
            ),
            (64 << 20, 8 << 20, None, 1 << 30, 86400.0, 10.0),
        )
        self.assertEqual((proxyConfig.reverse, proxyConfig.reverseHosts), (None, ()))
        self.assertFalse(proxyConfig.reverseRewriteHost)
        self.assertIsNone(config["metrics"])
        self.assertEqual(config["history-rotate-size"], 0)

    def test_commandLine(self) -> None:
        config = Options()
        config.parseOptions(
            [
                "--cache-size",
                "0",
                "--reverse-host",
                "a.example=http://127.0.0.1:81",
                "--reverse-host",
                "b.example=http://127.0.0.1:82",
                "--reverse-rewrite-host",
                "--metrics",
                "unix:" + os.path.join(self.dir, "metrics.sock"),
            ]
        )
        proxyConfig = config["proxyConfig"]
        self.assertEqual(proxyConfig.cacheSize, 0)
        self.assertIsNone(proxyConfig.newCache(lambda: 0.0))
        self.assertEqual([name for name, _ in proxyConfig.reverseHosts], ["a.example", "b.example"])
        self.assertTrue(proxyConfig.reverseRewriteHost)
        self.assertEqual(config["metrics"], "unix:" + os.path.join(self.dir, "metrics.sock"))

    def test_errors(self) -> None:
        """
        One line each, naming the option (or the file and key), the value
        and what is expected.
        """
        nowhere = os.path.join(self.dir, "no", "such")
        for args, expected in [
            (
                ["--cache-dir", nowhere],
                f"--cache-dir {nowhere}: cannot create or write it (is {self.dir}/no an existing, "
                "writable directory?)",
            ),
            (
                ["--cache-size", "lots"],
                "--cache-size lots: expected a size in bytes, optionally followed by k, M or G",
            ),
            (
                ["--cache-heuristic-max", "0"],
                "--cache-heuristic-max 0: expected a positive number of seconds",
            ),
            (
                ["--reverse", "ftp://x"],
                "--reverse ftp://x: must be an http:// URL, e.g. http://127.0.0.1:8000",
            ),
            (
                ["--reverse", "http://h/path"],
                "--reverse http://h/path: must be an origin without a path",
            ),
            (
                ["--reverse-host", "nourl"],
                "--reverse-host nourl: expected NAME=http://host[:port], e.g. "
                "www.example.com=http://127.0.0.1:8000",
            ),
            (
                ["--reverse-host", "a=https://x"],
                "--reverse-host a=https://x: must be an http:// URL",
            ),
            (["--metrics", "nosuch:1"], "--metrics nosuch:1: not a valid endpoint ("),
            (["--metrics", "tcp:70000"], "--metrics tcp:70000: not a valid endpoint ("),
        ]:
            with self.subTest(args=args):
                with self.assertRaises(OptionError) as caught:
                    Options().parseOptions(args)
                message = str(caught.exception)
                self.assertNotIn("\n", message)
                self.assertTrue(message.startswith(expected), message)
        p = self.path
        cases: list[tuple[str, str | None]] = [
            (
                'cache-dir = "no/such"',
                f'{p}: cache-dir = "{self.dir}/no/such": cannot create or write it',
            ),
            ("metrics = true", f"{p}: metrics = true: expected an endpoint such as 9100"),
            ('metrics = "tcp:x"', f'{p}: metrics = "tcp:x": not a valid endpoint'),
            ('reverse-host = "a=http://x"', None),
            ('reverse-host = ["a"]', f'{p}: reverse-host item "a": expected NAME=http://host'),
            ("reverse-rewrite-host = 1", f"{p}: reverse-rewrite-host = 1: expected true or false"),
        ]
        for text, prefix in cases:
            with self.subTest(text=text):
                if prefix is None:
                    self.parse(text)
                    continue
                message = self.error(text)
                self.assertTrue(message.startswith(prefix), message)

    def test_checkConfig(self) -> None:
        """
        C{--check-config} shows the new settings, as a file would set them.
        """
        self.write('cache-size = "32M"\nmetrics = 9100\n')
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        with self.assertRaises(SystemExit):
            Options().parseOptions(["--config", self.path, "--check-config"])
        text = out.getvalue()
        self.assertIn('cache-size = "32M"  # from the file', text)
        self.assertIn('metrics = "tcp:9100:interface=127.0.0.1"  # from the file', text)
        self.assertIn("# cache-dir is not set: the cache is in memory", text)
        # What it printed is a valid file with the same settings.
        self.write(text, "effective.toml")
        again = Options()
        again.parseOptions(["--config", os.path.join(self.dir, "effective.toml")])
        self.assertEqual(again["cache-size"], 32 << 20)
        self.assertEqual(again["metrics"], "tcp:9100:interface=127.0.0.1")


class MetricsReloadTests(ConfigDirMixin, SynchronousTestCase):
    """
    A reload and the C{--metrics} endpoint: the status page shows the new
    configuration; the endpoint stays where it is, as the log says.
    """

    def test_statusPageFollows(self) -> None:
        from twisted.internet.testing import MemoryReactorClock

        self.write('metrics = "tcp:0:interface=127.0.0.1"\nhistory-headers = "redacted"\n')
        config = Options()
        config.parseOptions(["--config", self.path, "--listen", "tcp:0:interface=127.0.0.1"])
        service = makeService(config, MemoryReactorClock())
        service.startService()
        self.addCleanup(service.stopService)
        assert service.metrics is not None
        self.addCleanup(service.metrics.listener.close)
        summary = dict(service.metrics.monitor.summary())
        self.assertEqual(summary["Header values in logs"], "redacted")
        self.write('metrics = "tcp:9999:interface=127.0.0.1"\nhistory-headers = "all"\n')
        events = logEvents(self)
        service.reload()
        [reloaded] = [e for e in events if "changes" in e]
        self.assertIn(
            'metrics takes a restart to change (still "tcp:0:interface=127.0.0.1")',
            reloaded["changes"],
        )
        summary = dict(service.metrics.monitor.summary())
        self.assertEqual(summary["Header values in logs"], "all")
        self.assertEqual(summary["Metrics endpoint"], "tcp:0:interface=127.0.0.1")


class ExampleFileTests(SynchronousTestCase):
    """
    proxyserver.example.toml documents every key, with its real default.
    """

    def setUp(self) -> None:
        with open(os.path.join(ROOT, "proxyserver.example.toml")) as f:
            self.text = f.read()

    def test_upToDate(self) -> None:
        """
        The file is what the settings table writes (regenerate it with
        C{python -c "from twisted_proxy.app.settings import exampleFile;
        print(exampleFile(), end='')" > proxyserver.example.toml}).
        """
        self.assertEqual(self.text, exampleFile())

    def test_everyOption(self) -> None:
        """
        Every command-line option (but --config and --check-config) has its
        key in the example, and every key there is an option.
        """
        documented = re.findall(r"^#([a-z0-9-]+) = ", self.text, re.M)
        fileOptions = [s.name for s in SETTINGS if s.inFile]
        self.assertEqual(documented, fileOptions)
        options = {o[0] for o in Options.optParameters + Options.optFlags} | {
            name[4:].replace("_", "-") for name in dir(Options) if name.startswith("opt_")
        }
        self.assertEqual(
            options - set(fileOptions),
            {"config", "check-config", "help", "h", "version", "pool-max-idle-per-host"},
        )

    def test_defaultsAreTheDefaults(self) -> None:
        """
        Uncommented, the example's default lines are a valid file that sets
        every key to its default.
        """
        lines = self.text.splitlines()
        chosen = []
        for previous, line in zip([""] + lines, lines, strict=False):
            if line.startswith("#") and " = " in line and "For example" not in previous:
                chosen.append(line[1:])
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        path = os.path.join(d, "defaults.toml")
        with open(path, "w") as f:
            f.write("\n".join(chosen) + "\n")
        values = readConfigFile(path)
        for name, value in values.items():
            self.assertEqual(value, defaultOf(next(s for s in SETTINGS if s.name == name)), name)
        self.assertGreater(len(values), 25)


class CheckConfigTests(ConfigDirMixin, SynchronousTestCase):
    def test_printsWhatItChecked(self) -> None:
        """
        --check-config prints the effective configuration, as a TOML file
        that gives the same settings.
        """
        self.write('connect-timeout = 5\ndeny-host = ["a.example"]\nmax-body = "1M"\n')
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        with self.assertRaises(SystemExit) as caught:
            Options().parseOptions(["--config", self.path, "--check-config", "--idle-timeout", "7"])
        self.assertEqual(caught.exception.code, 0)
        text = out.getvalue()
        self.assertIn(f"from {self.path} and the command line", text)
        self.assertIn("connect-timeout = 5  # from the file", text)
        self.assertIn("idle-timeout = 7  # from the command line", text)
        self.assertIn('max-body = "1M"  # from the file', text)
        written = os.path.join(self.dir, "effective.toml")
        with open(written, "w") as f:
            f.write(text)
        again = Options()
        again.parseOptions(["--config", written])
        original = Options()
        original.parseOptions(["--config", self.path, "--idle-timeout", "7"])
        for setting in SETTINGS:
            if setting.inFile and setting.name != "pseudonym":
                self.assertEqual(again[setting.name], original[setting.name], setting.name)
        self.assertEqual(again["proxyConfig"].pseudonym, original["proxyConfig"].pseudonym)

    def test_passwordsHidden(self) -> None:
        """
        A parent proxy's password is not printed (--check-config output
        goes to logs, e.g. systemd's journal on reload), nor in errors.
        """
        self.write('upstream-proxy = "http://alice:s3cret@127.0.0.1:3128"\n')
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        with self.assertRaises(SystemExit):
            Options().parseOptions(["--config", self.path, "--check-config"])
        self.assertIn(
            'upstream-proxy = "http://alice:***@127.0.0.1:3128"  # from the file; password hidden',
            out.getvalue(),
        )
        self.assertNotIn("s3cret", out.getvalue())
        message = self.error('upstream-proxy = "https://alice:s3cret@127.0.0.1:3128"\n')
        self.assertNotIn("s3cret", message)
        self.assertIn("https://alice:***@127.0.0.1:3128", message)

    def test_throughTwistd(self) -> None:
        self.write("connect-timeout = 5\n")
        result = subprocess.run(
            twistdArgv("-n", "proxyserver", "--check-config", "--config", self.path),
            capture_output=True,
            text=True,
            env=twistdEnv(),
            cwd=self.dir,
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("connect-timeout = 5  # from the file", result.stdout)
        self.assertEqual(tomllib.loads(result.stdout)["connect-timeout"], 5)
        self.write('connect-timeout = "soon"\n')
        result = subprocess.run(
            twistdArgv("-n", "proxyserver", "--check-config", "--config", self.path),
            capture_output=True,
            text=True,
            env=twistdEnv(),
            cwd=self.dir,
            timeout=60,
        )
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr,
            f'twistd proxyserver: {self.path}: connect-timeout = "soon": expected a positive '
            "number of seconds; see twistd proxyserver --help\n",
        )


class ReloadTests(ConfigDirMixin, TestCase):
    """
    SIGHUP re-reads the file: changes apply to new requests, nothing in
    progress is dropped, and an invalid file is refused.
    """

    timeout = 60

    def setUp(self) -> None:
        ConfigDirMixin.setUp(self)

    async def startProxy(self, text: str, *args: str):
        originPort = listenLocal(slowOrigin())
        self.addCleanup(originPort.stopListening)
        self.origin = "http://127.0.0.1:%d" % (portNumber(originPort),)
        self.write(text)
        config = Options()
        config.parseOptions(["--config", self.path, *args])
        self.events = logEvents(self, clock=reactor)
        service = proxyService(config)
        service.startService()

        async def stop() -> None:
            if service.running:
                await service.stopService()

        self.addCleanup(lambda: defer.ensureDeferred(stop()))
        self.service = service
        return service

    def agent(self, port: int) -> ProxyAgent:
        return ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", port), reactor)

    async def get(self, port: int, path: str = "/small") -> tuple[int, bytes]:
        response = await self.agent(port).request(b"GET", (self.origin + path).encode())
        return response.code, await readBody(response)

    async def sighup(self) -> None:
        """
        Send SIGHUP to this process (the service's handler reloads), and
        wait for the outcome to be logged.
        """
        seen = len(self.logged())
        os.kill(os.getpid(), signal.SIGHUP)
        outcome = self.events.when(lambda events: len(self.logged()) > seen)
        await outcome.addTimeout(10, reactor)

    def logged(self) -> list[str]:
        """
        What the reloads said: the outcome of each, in order.
        """
        from twisted.logger import formatEvent

        return [
            formatEvent(e)
            for e in self.events
            if (e.get("log_format") or "").startswith(("Configuration", "SIGHUP"))
        ]

    async def port(self, index: int = 0) -> int:
        return (await list(self.service)[index]._waitingForPort).getHost().port

    async def test_reloadWhileTransferring(self) -> None:
        """
        A changed rule applies to new requests at once; the transfer in
        progress completes.
        """
        await self.startProxy('listen = ["tcp:0:interface=127.0.0.1"]\nconnect-timeout = 10\n')
        port = await self.port()
        response = await self.agent(port).request(b"GET", (self.origin + "/slow").encode())
        body = defer.ensureDeferred(_read(response))
        self.write(
            'listen = ["tcp:0:interface=127.0.0.1"]\nconnect-timeout = 3\n'
            'deny-host = ["127.0.0.1"]\n'
        )
        await self.sighup()
        self.assertEqual(
            self.logged()[-1],
            f"Configuration reloaded from {self.path}: connect-timeout 10 -> 3; "
            'deny-host [] -> ["127.0.0.1"].',
        )
        self.write(
            'listen = ["tcp:0:interface=127.0.0.1"]\nconnect-timeout = 3\n'
            'deny-host = ["127.0.0.1"]\nupstream-proxy = "http://u:pw@127.0.0.1:9"\n'
        )
        await self.sighup()
        self.assertIn('upstream-proxy (not set) -> "http://u:***@127.0.0.1:9"', self.logged()[-1])
        code, _ = await self.get(port)
        self.assertEqual(code, 403)
        self.assertEqual(await body, b"slow" * 10)
        self.assertEqual(self.service.runtime._endpoints.connectTimeout, 3.0)
        self.assertEqual(self.service.factory.config.connectTimeout, 3.0)

    async def test_invalidFileRefused(self) -> None:
        """
        An invalid file is refused with the reason logged; the previous
        configuration stays, and the transfer in progress completes.
        """
        await self.startProxy('listen = ["tcp:0:interface=127.0.0.1"]\n')
        port = await self.port()
        response = await self.agent(port).request(b"GET", (self.origin + "/slow").encode())
        body = defer.ensureDeferred(_read(response))
        self.write('listen = ["tcp:0:interface=127.0.0.1"]\nconnect-timeout = -1\n')
        await self.sighup()
        self.assertEqual(
            self.logged()[-1],
            f"Configuration not reloaded: {self.path}: connect-timeout = -1: expected a "
            "positive number of seconds.  The previous configuration stays in force.",
        )
        self.assertEqual(await self.get(port), (200, b"hello from the origin\n"))
        self.assertEqual(await body, b"slow" * 10)

    async def test_listeningAddressesFollow(self) -> None:
        """
        A listening address added to the file is opened; one removed is
        closed (its connections carry on).
        """
        await self.startProxy('listen = ["tcp:0:interface=127.0.0.1"]\n')
        first = await self.port()
        response = await self.agent(first).request(b"GET", (self.origin + "/slow").encode())
        body = defer.ensureDeferred(_read(response))
        self.write('listen = ["tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.2"]\n')
        await self.sighup()
        self.assertEqual(len(list(self.service)), 2)
        second = await self.port(1)
        self.assertEqual(
            self.logged()[-1],
            f"Configuration reloaded from {self.path}: listen "
            '["tcp:0:interface=127.0.0.1"] -> '
            '["tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.2"].',
        )
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.2", second), reactor)
        response = await agent.request(b"GET", (self.origin + "/small").encode())
        self.assertEqual(await readBody(response), b"hello from the origin\n")
        self.write('listen = ["tcp:0:interface=127.0.0.2"]\n')
        await self.sighup()
        self.assertIn(f"stopped listening on 127.0.0.1:{first}", self.logged()[-1])
        from twisted.internet.error import ConnectionRefusedError

        with self.assertRaises(ConnectionRefusedError):
            await self.get(first)
        self.assertEqual(await body, b"slow" * 10)

    async def test_portInUseRefused(self) -> None:
        """
        A new listening address that cannot be opened refuses the whole
        reload: nothing changes.
        """
        taken = listenLocal(slowOrigin())
        self.addCleanup(taken.stopListening)
        await self.startProxy('listen = ["tcp:0:interface=127.0.0.1"]\n')
        port = await self.port()
        busy = portNumber(taken)
        self.write(
            f'listen = ["tcp:0:interface=127.0.0.1", "tcp:{busy}:interface=127.0.0.1"]\n'
            "connect-timeout = 3\n"
        )
        await self.sighup()
        self.assertIn(
            "Configuration not reloaded: cannot listen on 127.0.0.1:%d" % busy, self.logged()[-1]
        )
        self.assertEqual(self.service.factory.config.connectTimeout, 10.0)
        self.assertEqual(await self.get(port), (200, b"hello from the origin\n"))

    async def test_recordFilesFollow(self) -> None:
        await self.startProxy('listen = ["tcp:0:interface=127.0.0.1"]\n')
        port = await self.port()
        await self.get(port)
        self.write('listen = ["tcp:0:interface=127.0.0.1"]\nhistory = "history.jsonl"\n')
        await self.sighup()
        await self.get(port)
        # Every record of a connection is out once the connection is closed.
        await connectionsClosed(self.service.factory)
        # The history writer buffers for up to 50 ms.
        for observer in self.service.records.observers:
            observer.flush()
        with open(os.path.join(self.dir, "history.jsonl")) as f:
            records = [json.loads(line) for line in f]
        self.assertEqual(len(records), 1)

    async def test_nothingToReload(self) -> None:
        """
        Without a file, SIGHUP says there is nothing to reload.
        """
        originPort = listenLocal(slowOrigin())
        self.addCleanup(originPort.stopListening)
        config = Options()
        config.parseOptions(["--listen", "tcp:0:interface=127.0.0.1"])
        self.events = logEvents(self, clock=reactor)
        service = proxyService(config)
        service.startService()
        self.addCleanup(service.stopService)
        self.service = service
        await self.sighup()
        self.assertTrue(self.logged()[-1].startswith("SIGHUP: nothing to reload"))


class WorkerReloadTests(ConfigDirMixin, TestCase):
    """
    With --workers, the parent reads the file and passes it on.
    """

    timeout = 60

    def setUp(self) -> None:
        ConfigDirMixin.setUp(self)

    async def test_reloadReachesTheWorkers(self) -> None:
        originPort = listenLocal(slowOrigin())
        self.addCleanup(originPort.stopListening)
        origin = "http://127.0.0.1:%d/small" % (portNumber(originPort),)
        # At debug level each worker says when it has applied a reload.
        self.write('listen = ["tcp:0:interface=127.0.0.1"]\nworkers = 2\nlog-level = "debug"\n')
        twistd = startTwistd(
            self, "-n", "--pidfile=", "proxyserver", "--config", self.path, cwd=self.dir
        )
        await twistd.waitFor("Started worker 2")
        port = twistd.port()
        agent = ProxyAgent(TCP4ClientEndpoint(reactor, "127.0.0.1", port), reactor)

        async def status() -> int:
            # The parent listens before it says where: a connection waits
            # in the backlog until a worker accepts it.
            response = await agent.request(b"GET", origin.encode())
            await readBody(response)
            return response.code

        self.assertEqual(await status(), 200)
        self.write(
            'listen = ["tcp:0:interface=127.0.0.1"]\nworkers = 2\nlog-level = "debug"\n'
            'deny-host = ["127.0.0.1"]\n'
        )
        twistd.signal("HUP")
        await twistd.waitFor("Configuration reloaded")
        await twistd.waitFor("applied the reloaded configuration", count=2)
        # Every new connection, whichever worker takes it, is refused.
        codes = [await status() for _ in range(6)]
        self.assertEqual(codes, [403] * 6)
        twistd.signal("TERM")
        self.assertEqual(await twistd.ended, 0)
        self.assertNotIn("Traceback", twistd.output)


async def _read(response) -> bytes:
    return await readBody(response)
