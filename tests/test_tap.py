"""
Tests for L{twisted_proxy.app.tap} and the twistd plugin.
"""

from __future__ import annotations

from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.app.tap import Options, makeService


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
        config = Options()
        config.parseOptions([])
        self.assertEqual(config["ports"], ["tcp:8080"])
        self.assertEqual(config["connect-timeout"], 10.0)
        self.assertEqual(config["response-timeout"], 30.0)
        self.assertEqual(config["pool-min-idle-per-host"], 8)
        self.assertIsNone(config["max-connections-per-client"])
        self.assertIsNone(config["config"].maxConnectionsPerClient)

    def test_formerPoolOptionName(self) -> None:
        """
        --pool-max-idle-per-host, the former name of
        --pool-min-idle-per-host, still sets it.
        """
        config = Options()
        config.parseOptions(["--pool-max-idle-per-host", "3"])
        self.assertEqual(config["config"].poolMinIdlePerHost, 3)
        self.assertEqual(config["forwarded"], "off")
        self.assertTrue(config["pseudonym"].endswith(":8080"))

    def test_repeatableListen(self) -> None:
        config = Options()
        config.parseOptions(["--listen", "tcp:3128:interface=127.0.0.1", "--listen", "tcp6:8080"])
        self.assertEqual(config["ports"], ["tcp:3128:interface=127.0.0.1", "tcp6:8080"])
        self.assertTrue(config["pseudonym"].endswith(":3128"))

    def test_badValues(self) -> None:
        for args in (
            ["--connect-timeout", "-1"],
            ["--connect-timeout", "soon"],
            ["--forwarded", "maybe"],
            ["--pseudonym", "bad name"],
            ["--pool-max-idle-per-host", "-2"],
            ["--listen", "tcp:notaport"],
            ["--listen", "nosuchendpoint:1"],
            ["--history", "/nonexistent/dir/history.jsonl"],
            ["--access-log", "/nonexistent/dir/access.log"],
            ["--max-body", "10X"],
            ["--workers", "zero"],
            ["--upstream-proxy", "https://p.test:1"],
        ):
            self.assertRaises(UsageError, Options().parseOptions, args)

    def test_makeService(self) -> None:
        """
        One listening service per --listen, sharing one factory.
        """
        config = Options()
        config.parseOptions(["--listen", "tcp:0", "--listen", "tcp:0", "--pseudonym", "p1"])
        service = makeService(config, MemoryReactorClock())
        children = list(service)
        self.assertEqual(len(children), 2)
        self.assertIs(children[0].factory, children[1].factory)
        self.assertEqual(service.factory.pseudonymText, "p1")
