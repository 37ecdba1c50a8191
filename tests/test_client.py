# -*- test-case-name: tests.test_client -*-
"""
Tests for L{twisted_proxy.client}: address parsing, MAC selection,
statistics and output in memory; phase timing, output and exit codes against
fake proxies on loopback; and one run through the real proxy service.
"""

from __future__ import annotations

import datetime
import functools
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import PrivateCertificate
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_proxy import client
from twisted_proxy.client import (
    PROMPT,
    Environment,
    MacAddress,
    Options,
    Target,
    TargetError,
    bodyPreview,
    findMacAddress,
    parseProxyAddress,
    parseTarget,
    percentile,
    proxyErrorOf,
    runClient,
    summarize,
)
from twisted_proxy.http.framing import ResponseHead

# --- Helpers -------------------------------------------------------------------


AF_INET, AF_INET6, AF_LINK = 2, 10, 17


class FakeInterfaces:
    """
    A netifaces-like interface table.
    """

    AF_INET = AF_INET
    AF_INET6 = AF_INET6
    AF_LINK = AF_LINK

    def __init__(
        self,
        table: dict[str, dict[int, list[dict[str, str]]]],
        gateways: dict[Any, Any],
    ) -> None:
        self._table = table
        self._gateways = gateways

    def interfaces(self) -> list[str]:
        return list(self._table)

    def ifaddresses(self, name: str) -> dict[int, list[dict[str, str]]]:
        return self._table[name]

    def gateways(self) -> dict[Any, Any]:
        return self._gateways


LOOPBACK = {
    AF_LINK: [{"addr": "00:00:00:00:00:00", "peer": "00:00:00:00:00:00"}],
    AF_INET: [{"addr": "127.0.0.1", "netmask": "255.0.0.0"}],
    AF_INET6: [
        {"addr": "::1", "netmask": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"}
    ],
}


def ethernet(mac: str, *addresses: str) -> dict[int, list[dict[str, str]]]:
    table: dict[int, list[dict[str, str]]] = {
        AF_LINK: [{"addr": mac, "broadcast": "ff:ff:ff:ff:ff:ff"}]
    }
    for address in addresses:
        family = AF_INET6 if ":" in address else AF_INET
        table.setdefault(family, []).append({"addr": address})
    return table


def machine() -> FakeInterfaces:
    """
    Loopback, eth0 (default route) and wlan0.
    """
    return FakeInterfaces(
        {
            "lo": LOOPBACK,
            "eth0": ethernet("02:00:00:00:00:01", "192.0.2.2", "fe80::1%eth0"),
            "wlan0": ethernet("02:00:00:00:00:02", "198.51.100.7", "2001:db8::7"),
        },
        {
            "default": {AF_INET: ("192.0.2.1", "eth0")},
            AF_INET: [("192.0.2.1", "eth0", True)],
        },
    )


MACHINE_MAC_LINE = "Physical MAC Address: 02:00:00:00:00:01 (eth0, default route; the proxy is on loopback)"


class FakeMonotonic:
    """
    A monotonic clock that moves only when told to.
    """

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


WALL_TIME = datetime.datetime(2024, 5, 6, 12, 34, 56, 123000).timestamp()


def makeEnv(
    stdin: str = "", interactive: bool = False, **kwargs: Any
) -> tuple[Environment, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    kwargs.setdefault("interfaceTable", machine)
    kwargs.setdefault("wallClock", lambda: WALL_TIME)
    env = Environment(
        reactor=kwargs.pop("reactor", reactor),
        stdin=io.StringIO(stdin),
        stdout=out,
        stderr=err,
        interactive=interactive,
        **kwargs,
    )
    return env, out, err


class RefusingEndpoint:
    """
    An endpoint whose connection attempts are refused at once; it records
    where it was asked to connect.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int, timeout: float) -> RefusingEndpoint:
        self.calls.append((host, port))
        return self

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        return defer.fail(ConnectionRefusedError())


def loopbackEndpoints(host: str, port: int, timeout: float) -> TCP4ClientEndpoint:
    assert host == "127.0.0.1", host
    return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)


# --- What the user typed ------------------------------------------------------


class ParseTargetTests(SynchronousTestCase):
    """
    L{parseTarget} accepts addresses, host names and URLs, and explains what
    it rejects.
    """

    def test_ipv4(self) -> None:
        target = parseTarget(" 93.184.216.34\n")
        self.assertEqual(target, Target("http", "93.184.216.34", 80, "/"))
        self.assertEqual(target.url, "http://93.184.216.34/")
        self.assertEqual(target.authority, "93.184.216.34")
        self.assertEqual(target.hostAndPort, "93.184.216.34:80")

    def test_ipv6(self) -> None:
        self.assertEqual(
            parseTarget("2001:DB8:0::1"), Target("http", "2001:db8::1", 80, "/")
        )
        target = parseTarget("[2001:db8::1]:8080/x")
        self.assertEqual(target, Target("http", "2001:db8::1", 8080, "/x"))
        self.assertEqual(target.url, "http://[2001:db8::1]:8080/x")
        self.assertEqual(target.authority, "[2001:db8::1]:8080")

    def test_hostName(self) -> None:
        target = parseTarget("Example.COM:8000/a/b?q=1#frag")
        self.assertEqual(target, Target("http", "example.com", 8000, "/a/b?q=1"))
        self.assertEqual(target.url, "http://example.com:8000/a/b?q=1")

    def test_urls(self) -> None:
        self.assertEqual(
            parseTarget("http://example.com"), Target("http", "example.com", 80, "/")
        )
        target = parseTarget("HTTPS://example.com/")
        self.assertEqual(target, Target("https", "example.com", 443, "/"))
        self.assertEqual(target.authority, "example.com")
        self.assertEqual(target.hostAndPort, "example.com:443")
        self.assertEqual(
            parseTarget("https://[::1]:8443/p"), Target("https", "::1", 8443, "/p")
        )

    def test_defaultPortOmitted(self) -> None:
        self.assertEqual(
            parseTarget("http://example.com:80/").url, "http://example.com/"
        )
        self.assertEqual(
            parseTarget("https://example.com:80/").url, "https://example.com:80/"
        )

    def test_internationalised(self) -> None:
        target = parseTarget("http://bücher.example/ä b".replace(" ", "%20"))
        self.assertEqual(target.host, "xn--bcher-kva.example")
        self.assertEqual(target.path, "/%C3%A4%20b")

    def test_rejected(self) -> None:
        for text, words in [
            ("", "no address given"),
            ("   ", "no address given"),
            ("93.184 .216.34", "contains spaces"),
            ("ftp://example.com/", "use http:// or https://"),
            ("999.1.1.1", "not a valid IPv4 address"),
            ("1.2.3", "not a valid IPv4 address"),
            ("example.com:99999", "invalid host or port"),
            ("example.com:http", "invalid host or port"),
            ("example.com:0", "port 0"),
            ("http://", "has no host"),
            ("http:///path", "has no host"),
            ("user:pw@example.com", "user names and passwords"),
            ("2001:db8::1:80/x", "in brackets"),
            ("http://[2001:db8::zz]/", "invalid host or port"),
            ("-bad-.example", "not a valid IP address or host name"),
            ("under_score.example", "not a valid IP address or host name"),
            ("http://[fe80::1%25eth0]/", "zone identifiers"),
        ]:
            with self.assertRaises(TargetError, msg=text) as caught:
                parseTarget(text)
            self.assertIn(words, str(caught.exception), text)
            self.assertNotIn("\n", str(caught.exception))


class ParseProxyAddressTests(SynchronousTestCase):
    def test_forms(self) -> None:
        self.assertEqual(parseProxyAddress("127.0.0.1:8080"), ("127.0.0.1", 8080))
        self.assertEqual(
            parseProxyAddress("proxy.example:3128"), ("proxy.example", 3128)
        )
        self.assertEqual(parseProxyAddress("proxy.example"), ("proxy.example", 8080))
        self.assertEqual(parseProxyAddress("[::1]:3128"), ("::1", 3128))
        self.assertEqual(parseProxyAddress("::1"), ("::1", 8080))
        self.assertEqual(parseProxyAddress("http://10.0.0.1:3128/"), ("10.0.0.1", 3128))

    def test_rejected(self) -> None:
        for text, words in [
            ("", "empty"),
            ("https://10.0.0.1:3128/", "only http://"),
            ("socks5://10.0.0.1:1080", "only http://"),
            ("10.0.0.1:99999", "HOST:PORT"),
            ("10.0.0.1:0", "HOST:PORT"),
            ("u:p@10.0.0.1:3128", "passwords"),
            ("2001:db8::1:3128x", "[ADDRESS]:PORT"),
        ]:
            with self.assertRaises(TargetError, msg=text) as caught:
                parseProxyAddress(text)
            self.assertIn(words, str(caught.exception), text)


# --- MAC address ---------------------------------------------------------------


class FindMacAddressTests(SynchronousTestCase):
    """
    L{findMacAddress} reports the interface holding the connection's local
    address, or the default route's with a note, and never makes one up.
    """

    def test_interfaceHoldingAddress(self) -> None:
        self.assertEqual(
            findMacAddress("198.51.100.7", machine()),
            MacAddress("02:00:00:00:00:02", "wlan0"),
        )
        self.assertEqual(
            findMacAddress("192.0.2.2", machine()).describe(),
            "02:00:00:00:00:01 (eth0)",
        )

    def test_ipv6Address(self) -> None:
        self.assertEqual(findMacAddress("2001:db8::7", machine()).interface, "wlan0")
        # A scoped link-local address, as sockets and netifaces write it.
        self.assertEqual(findMacAddress("fe80::1%eth0", machine()).interface, "eth0")
        # An IPv4-mapped address from a dual-stack socket.
        self.assertEqual(
            findMacAddress("::ffff:198.51.100.7", machine()).interface, "wlan0"
        )

    def test_loopback(self) -> None:
        mac = findMacAddress("127.0.0.1", machine())
        self.assertEqual(
            mac,
            MacAddress(
                "02:00:00:00:00:01", "eth0", "default route; the proxy is on loopback"
            ),
        )
        self.assertEqual("Physical MAC Address: " + mac.describe(), MACHINE_MAC_LINE)
        self.assertEqual(findMacAddress("::1", machine()).interface, "eth0")

    def test_loopbackOnly(self) -> None:
        mac = findMacAddress(
            "127.0.0.1", FakeInterfaces({"lo": LOOPBACK}, {"default": {}})
        )
        self.assertIsNone(mac.address)
        self.assertEqual(
            mac.describe(),
            "not found (the proxy is on loopback and there is no default route)",
        )

    def test_noInterfaces(self) -> None:
        mac = findMacAddress("192.0.2.9", FakeInterfaces({}, {}))
        self.assertEqual(
            mac.describe(),
            "not found (no interface holds the local address 192.0.2.9 and there is "
            "no default route)",
        )

    def test_unknownAddressUsesDefaultRoute(self) -> None:
        mac = findMacAddress("203.0.113.5", machine())
        self.assertEqual(mac.interface, "eth0")
        self.assertEqual(
            mac.note, "default route; no interface holds the local address 203.0.113.5"
        )

    def test_ipv6Only(self) -> None:
        table = FakeInterfaces(
            {
                "lo": {AF_LINK: LOOPBACK[AF_LINK], AF_INET6: LOOPBACK[AF_INET6]},
                "eth0": ethernet("02:00:00:00:00:06", "2001:db8::6"),
            },
            {"default": {AF_INET6: ("fe80::1", "eth0")}},
        )
        self.assertEqual(
            findMacAddress("2001:db8::6", table),
            MacAddress("02:00:00:00:00:06", "eth0"),
        )
        self.assertEqual(
            findMacAddress("::1", table).describe(),
            "02:00:00:00:00:06 (eth0, default route; the proxy is on loopback)",
        )

    def test_ipv6PrefersIPv6DefaultRoute(self) -> None:
        table = FakeInterfaces(
            {
                "eth0": ethernet("02:00:00:00:00:01", "192.0.2.2"),
                "eth1": ethernet("02:00:00:00:00:0a", "2001:db8::a"),
                "tun0": {AF_INET6: [{"addr": "2001:db8:ffff::1"}]},
            },
            {
                "default": {
                    AF_INET: ("192.0.2.1", "eth0"),
                    AF_INET6: ("2001:db8::1", "eth1"),
                }
            },
        )
        mac = findMacAddress("2001:db8:ffff::1", table)
        self.assertEqual(
            mac.describe(),
            "02:00:00:00:00:0a (eth1, default route; tun0, which carries the "
            "connection, has no MAC address)",
        )

    def test_defaultRouteWithoutMac(self) -> None:
        table = FakeInterfaces(
            {"lo": LOOPBACK, "ppp0": {AF_INET: [{"addr": "10.64.0.2"}]}},
            {"default": {AF_INET: ("10.64.0.1", "ppp0")}},
        )
        self.assertEqual(
            findMacAddress("127.0.0.1", table).describe(),
            "not found (the proxy is on loopback; ppp0, the default-route interface, "
            "has no MAC address)",
        )

    def test_noConnection(self) -> None:
        self.assertEqual(
            findMacAddress(None, machine()).note,
            "default route; no connection was made",
        )

    def test_netifacesMissing(self) -> None:
        def missing() -> Any:
            raise ImportError("No module named 'netifaces'")

        mac = client._lookUpMac("127.0.0.1", missing)
        self.assertEqual(
            mac.describe(), "not found (the netifaces module is not installed)"
        )

    def test_realTable(self) -> None:
        """
        On this machine the lookup gives a MAC address (six octets) or a
        reason, never anything else.
        """
        mac = client._lookUpMac("127.0.0.1", client._netifacesTable)
        if mac.address is None:
            self.assertTrue(mac.reason)
        else:
            self.assertRegex(mac.address, r"\A([0-9a-f]{2}:){5}[0-9a-f]{2}\Z")
            self.assertNotEqual(mac.address, "00:00:00:00:00:00")


# --- Statistics ------------------------------------------------------------------


class StatisticsTests(SynchronousTestCase):
    def test_nearestRank(self) -> None:
        values = list(range(1, 11))
        self.assertEqual(percentile(values, 90), 9)
        self.assertEqual(percentile(list(reversed(values)), 90), 9)
        self.assertEqual(percentile(list(range(1, 21)), 90), 18)
        self.assertEqual(percentile([7.5], 90), 7.5)
        self.assertEqual(percentile([3, 1, 2], 90), 3)
        self.assertEqual(percentile([3, 1, 2], 0), 1)
        # Nearest rank rounds the rank up: ceil(0.25 * 10) = 3, ceil(0.9 * 5) = 5.
        self.assertEqual(percentile(values, 25), 3)
        self.assertEqual(percentile([1, 2, 3, 4, 5], 90), 5)

    def test_summarize(self) -> None:
        self.assertEqual(
            summarize([4.0, 1.0, 3.0, 2.0]),
            {"min": 1.0, "mean": 2.5, "median": 2.5, "p90": 4.0, "max": 4.0},
        )
        self.assertEqual(summarize([5.0])["median"], 5.0)


# --- Output pieces --------------------------------------------------------------


def head(headers: list[tuple[bytes, bytes]], status: int = 200) -> ResponseHead:
    return ResponseHead(status, b"OK", b"1.1", headers)


class OutputTests(SynchronousTestCase):
    def test_escapeHead(self) -> None:
        self.assertEqual(
            client._escapeHead(b"GET / HTTP/1.1\r\nHost: 93.184.216.34\r\n\r\n"),
            "GET / HTTP/1.1\\r\\nHost: 93.184.216.34\\r\\n\\r\\n",
        )
        self.assertEqual(client._escapeHead(b"X: \x1b[31m\r\n"), "X: \\x1b[31m\\r\\n")

    def test_clockTime(self) -> None:
        self.assertEqual(client._clockTime(WALL_TIME), "12:34:56.123")

    def test_previewText(self) -> None:
        body = b"".join(b"line %d\n" % i for i in range(1, 31))
        lines = bodyPreview(head([(b"Content-Type", b"text/plain")]), body, len(body))
        self.assertEqual(lines[:2], ["  line 1", "  line 2"])
        self.assertEqual(len(lines), 11)
        self.assertEqual(
            lines[-1],
            "  [... {} bytes in all; --show-body prints the whole body]".format(
                len(body)
            ),
        )

    def test_previewShort(self) -> None:
        self.assertEqual(
            bodyPreview(head([(b"Content-Type", b"application/json")]), b'{"a": 1}', 8),
            ['  {"a": 1}'],
        )
        self.assertEqual(bodyPreview(head([]), b"", 0), [])

    def test_previewBinary(self) -> None:
        self.assertEqual(
            bodyPreview(head([(b"Content-Type", b"image/png")]), b"\x89PNG", 4000),
            ["[4000 bytes of image/png: not shown; --output FILE saves the body]"],
        )
        self.assertEqual(
            bodyPreview(
                head([(b"Content-Type", b"text/html"), (b"Content-Encoding", b"gzip")]),
                b"\x1f\x8b",
                20,
            ),
            [
                "[20 bytes of text/html, gzip-encoded: not shown; --output FILE saves the body]"
            ],
        )
        self.assertEqual(
            bodyPreview(head([]), b"\xff\xfe\x00", 3),
            ["[3 bytes of unknown type: not shown; --output FILE saves the body]"],
        )

    def test_previewControlCharacters(self) -> None:
        """
        A server cannot drive the terminal through the preview.
        """
        self.assertEqual(
            bodyPreview(
                head([(b"Content-Type", b"text/plain; charset=latin-1")]),
                b"a\x1b[2Jb\xe9",
                7,
            ),
            ["  a?[2Jb\xe9"],
        )

    def test_proxyError(self) -> None:
        self.assertEqual(
            proxyErrorOf('p:8080; error=dns_error; details="no such host"'), "dns_error"
        )
        self.assertIsNone(proxyErrorOf("p:8080; received-status=200"))
        self.assertIsNone(proxyErrorOf('p:8080; details="a; error=x"'))
        self.assertEqual(
            proxyErrorOf("a, b; error=connection_refused"), "connection_refused"
        )
        self.assertIsNone(proxyErrorOf(None))


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
            result = client._connectFailure(Failure(exception), "[::1]:3128")
            self.assertEqual(result.message, prefix + expected)
            self.assertEqual(result.exitCode, 3)


# --- Command line ------------------------------------------------------------------


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

    def runClient(
        self, argv: list[str], **kwargs: Any
    ) -> tuple[int, str, str, RefusingEndpoint]:
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
        self.assertEqual((code, out), (0, client.USER_AGENT + "\n"))

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
        code, _, err, _ = self.runClient(
            ["example.com"], environ={"http_proxy": "https://p:1/"}
        )
        self.assertEqual(code, 2)
        self.assertEqual(
            err,
            "proxyclient: $http_proxy: 'https://p:1/': only http:// proxies are supported\n",
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
            "Is `twistd -n proxyserver` running there? (--proxy HOST:PORT chooses another proxy.)\n",
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
        self.assertEqual(
            (code, out, err), (2, PROMPT + "\n", "proxyclient: no address given.\n")
        )
        self.assertEqual(endpoints.calls, [])

    def test_promptNonInteractive(self) -> None:
        """
        From a pipe, the address is echoed after the prompt (so the output
        reads like the brief's), and a bad one ends the program with code 2.
        """
        code, out, err, endpoints = self.runClient(
            [], stdin="999.1.1.1\n93.184.216.34\n"
        )
        self.assertEqual(code, 2)
        self.assertEqual(out, PROMPT + "999.1.1.1\n")
        self.assertEqual(err, "proxyclient: '999.1.1.1' is not a valid IPv4 address\n")
        self.assertEqual(endpoints.calls, [])

    def test_promptInterrupted(self) -> None:
        class Interrupting(io.StringIO):
            def readline(self, *args: Any) -> str:
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

    def build(self, *argv: str) -> client._Config:
        options = Options()
        options.parseOptions(list(argv))
        env, _, _ = makeEnv()
        return client._configure(options, env, parseTarget(options["target"]))

    def test_absoluteForm(self) -> None:
        config = self.build("93.184.216.34")
        self.assertEqual(
            config.requestHead,
            b"GET http://93.184.216.34/ HTTP/1.1\r\nHost: 93.184.216.34\r\n"
            b"User-Agent: " + client.USER_AGENT.encode() + b"\r\nAccept: */*\r\n\r\n",
        )
        self.assertEqual((config.method, config.requestBody), ("GET", b""))

    def test_originForm(self) -> None:
        config = self.build(
            "--origin-form", "-H", "User-Agent:", "-H", "Accept:", "93.184.216.34"
        )
        self.assertEqual(
            config.requestHead, b"GET / HTTP/1.1\r\nHost: 93.184.216.34\r\n\r\n"
        )

    def test_httpsIsOriginFormInsideTunnel(self) -> None:
        config = self.build("-k", "https://example.com:8443/a?b")
        self.assertTrue(
            config.requestHead.startswith(
                b"GET /a?b HTTP/1.1\r\nHost: example.com:8443\r\n"
            )
        )
        self.assertEqual(
            config.tunnelHead(),
            b"CONNECT example.com:8443 HTTP/1.1\r\nHost: example.com:8443\r\n"
            b"User-Agent: " + client.USER_AGENT.encode() + b"\r\n\r\n",
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
                b"User-Agent: " + client.USER_AGENT.encode(),
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
        self.assertEqual(
            (config.method, config.requestBody), ("PUT", b"\x00\x01binary")
        )
        self.assertIn(
            b"Content-Type: application/octet-stream\r\nContent-Length: 8\r\n",
            config.requestHead,
        )

    def test_methods(self) -> None:
        self.assertTrue(
            self.build("--head", "example.com").requestHead.startswith(b"HEAD http://")
        )
        post = self.build("-X", "POST", "example.com")
        self.assertIn(b"Content-Length: 0\r\n", post.requestHead)
        self.assertNotIn(
            b"Content-Length", self.build("-X", "DELETE", "example.com").requestHead
        )

    def test_framingHeadersRefused(self) -> None:
        with self.assertRaises(usage.UsageError):
            self.build("-H", "Content-Length: 5", "example.com")


# --- Loopback fake proxies -----------------------------------------------------


class FakeProxyProtocol(Protocol):
    """
    Reads requests (head and Content-Length body) and lets the factory's
    C{respond} answer each.
    """

    def connectionMade(self) -> None:
        self.buffer = b""
        self.factory.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, rest = self.buffer.split(b"\r\n\r\n", 1)
            match = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
            length = int(match.group(1)) if match else 0
            if len(rest) < length:
                return
            body, self.buffer = rest[:length], rest[length:]
            self.factory.requests.append((head + b"\r\n\r\n", body))
            self.factory.respond(self, head + b"\r\n\r\n", body)

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.lost.append(reason)
        for d in self.factory.waiting:
            if not d.called:
                d.callback(None)


class FakeProxyFactory(Factory):
    protocol = FakeProxyProtocol

    def __init__(
        self, respond: Callable[[FakeProxyProtocol, bytes, bytes], None]
    ) -> None:
        self.respond = respond
        self.connections: list[FakeProxyProtocol] = []
        self.requests: list[tuple[bytes, bytes]] = []
        self.lost: list[Any] = []
        self.waiting: list[defer.Deferred[None]] = []

    async def allClosed(self) -> None:
        """
        Wait until every connection this proxy accepted is closed.
        """
        while len(self.lost) < len(self.connections):
            d: defer.Deferred[None] = defer.Deferred()
            self.waiting.append(d)
            timeout = reactor.callLater(5, d.callback, None)
            await d
            if timeout.active():
                timeout.cancel()
            else:
                for p in self.connections:
                    p.transport.abortConnection()


def ok(
    body: bytes = b"<html>\n<body>hello</body>\n</html>\n",
    contentType: bytes = b"text/html",
) -> Callable[..., None]:
    def respond(proto: FakeProxyProtocol, head: bytes, requestBody: bytes) -> None:
        proto.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (contentType, len(body), b"" if head.startswith(b"HEAD ") else body)
        )

    return respond


class LoopbackTestsMixin:
    """
    Start fake proxies on 127.0.0.1 and run the client against them.
    """

    def listen(self, factory: Factory, tls: Any = None) -> int:
        if tls is None:
            port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        else:
            port = reactor.listenSSL(0, factory, tls, interface="127.0.0.1")
        self.addCleanup(port.stopListening)  # type: ignore[attr-defined]
        return port.getHost().port  # type: ignore[no-any-return]

    def startProxy(self, respond: Callable[..., None]) -> tuple[FakeProxyFactory, int]:
        factory = FakeProxyFactory(respond)
        port = self.listen(factory)
        self.addCleanup(lambda: defer.ensureDeferred(factory.allClosed()))  # type: ignore[attr-defined]
        return factory, port

    async def runAgainst(
        self, port: int, *argv: str, **kwargs: Any
    ) -> tuple[int, str, str]:
        kwargs.setdefault("endpointFactory", loopbackEndpoints)
        env, out, err = makeEnv(**kwargs)
        code = await runClient(env, ["--proxy", "127.0.0.1:%d" % (port,), *argv])
        return code, out.getvalue(), err.getvalue()


class FakeProxyTests(LoopbackTestsMixin, TestCase):
    """
    The client against fake proxies on loopback.
    """

    async def test_good(self) -> None:
        """
        The brief's output: the request sent (absolute-form), the response,
        the first lines of the body, the round-trip time and the MAC
        address, with local timestamps; exit code 0.
        """
        proxy, port = self.startProxy(ok())
        code, out, err = await self.runAgainst(port, "93.184.216.34")
        self.assertEqual((code, err), (0, ""))
        request = (
            b"GET http://93.184.216.34/ HTTP/1.1\r\nHost: 93.184.216.34\r\n"
            b"User-Agent: " + client.USER_AGENT.encode() + b"\r\nAccept: */*\r\n\r\n"
        )
        self.assertEqual(proxy.requests, [(request, b"")])
        lines = out.splitlines()
        stamp = "  [12:34:56.123]"
        self.assertEqual(
            lines[0],
            "Request has been sent: GET http://93.184.216.34/ HTTP/1.1\\r\\nHost: 93.184.216.34\\r\\n"
            "User-Agent: "
            + client.USER_AGENT
            + "\\r\\nAccept: */*\\r\\n\\r\\n"
            + stamp,
        )
        self.assertEqual(
            lines[1],
            "Response has been received: HTTP/1.1 200 OK\\r\\nContent-Type: text/html\\r\\n"
            "Content-Length: 34\\r\\n\\r\\n" + stamp,
        )
        self.assertEqual(lines[2:5], ["  <html>", "  <body>hello</body>", "  </html>"])
        self.assertRegex(lines[5], r"\ARound-trip time: \d+\.\d{3} seconds\Z")
        self.assertEqual(lines[6:], [MACHINE_MAC_LINE])

    async def test_timingOutput(self) -> None:
        """
        C{-v} adds each phase in milliseconds with curl's variables, the
        status, sizes and speed.
        """
        clock = FakeMonotonic()
        proxy, port = self.startProxy(
            lambda p, h, b: (clock.advance(0.25), ok(b"x" * 500)(p, h, b))
        )
        code, out, err = await self.runAgainst(
            port, "-v", "example.com", monotonic=clock
        )
        self.assertEqual(code, 0)
        timing = out.split("Timing:\n", 1)[1].splitlines()
        self.assertEqual(
            timing,
            [
                "  proxy connect             0.000 ms  time_connect=0.000000",
                "  request sent              0.000 ms  time_pretransfer=0.000000 time_posttransfer=0.000000",
                "  first response byte     250.000 ms  time_starttransfer=0.250000",
                "  response complete         0.000 ms  time_total=0.250000",
                "  total                   250.000 ms",
                "  http_code=200 size_download=500 size_header=65 size_request=99 "
                "speed_download=2000 num_connects=1",
                MACHINE_MAC_LINE,
            ],
        )
        self.assertIn("Round-trip time: 0.250 seconds\n", out)

    async def test_slowPhases(self) -> None:
        """
        Time is attributed to the phase it passes in: a proxy that waits
        before the head and again in the middle of the body shows it in
        C{wait} and C{receive}, nowhere else.  (The proxy's delays are real
        C{callLater}s; the client's clock is advanced by the proxy, so the
        numbers are exact.)
        """
        clock = FakeMonotonic()

        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            def sendHead() -> None:
                clock.advance(2.0)
                proto.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"
                )
                reactor.callLater(0.02, sendRest)

            def sendRest() -> None:
                clock.advance(1.0)
                proto.transport.write(b"56789")

            reactor.callLater(0.02, sendHead)

        proxy, port = self.startProxy(respond)
        code, out, err = await self.runAgainst(
            port, "--json", "example.com", monotonic=clock
        )
        self.assertEqual(code, 0)
        record = json.loads(out)
        self.assertEqual(
            record["timings_ms"],
            {
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

    async def test_phaseOrder(self) -> None:
        """
        With the real clock, phases are non-negative and add up, and the
        cumulative curl times never decrease.
        """
        proxy, port = self.startProxy(ok(b"y" * 100))
        code, out, err = await self.runAgainst(
            port, "--json", "example.com", monotonic=client.time.monotonic
        )
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

    async def test_json(self) -> None:
        proxy, port = self.startProxy(ok())
        code, out, err = await self.runAgainst(port, "--json", "http://[::1]:8080/x?y")
        self.assertEqual(code, 0)
        [line] = out.splitlines()
        record = json.loads(line)
        self.assertEqual(record["type"], "run")
        self.assertEqual(record["url"], "http://[::1]:8080/x?y")
        self.assertEqual(record["proxy"], "127.0.0.1:%d" % (port,))
        self.assertEqual(
            record["request"].split("\r\n")[0], "GET http://[::1]:8080/x?y HTTP/1.1"
        )
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

    async def test_refusing(self) -> None:
        """
        A closed port: exit code 3 and one line saying what to do, through
        the default L{HostnameEndpoint}.
        """
        port = reactor.listenTCP(
            0, Factory.forProtocol(Protocol), interface="127.0.0.1"
        )
        number = port.getHost().port
        await port.stopListening()
        env, out, err = makeEnv()
        code = await runClient(
            env, ["--proxy", "127.0.0.1:%d" % (number,), "example.com"]
        )
        self.assertEqual(code, 3)
        self.assertEqual(
            err.getvalue(),
            "proxyclient: Could not connect to the proxy at 127.0.0.1:%d: connection refused. "
            "Is `twistd -n proxyserver` running there? (--proxy HOST:PORT chooses another proxy.)\n"
            % (number,),
        )

    async def test_proxyError502(self) -> None:
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
        code, out, err = await self.runAgainst(port, "nosuchhost.example")
        self.assertEqual(code, 3)
        self.assertIn(
            "\nProxy-Status: "
            + status.decode()
            + "\n  502 Bad Gateway: no such host\n",
            out,
        )
        self.assertEqual(
            err,
            "proxyclient: the proxy could not complete the request: 502 Bad Gateway "
            "(Proxy-Status: " + status.decode() + ")\n",
        )
        code, out, err = await self.runAgainst(port, "--json", "nosuchhost.example")
        record = json.loads(out)
        self.assertEqual((record["exit_code"], record["status"]), (3, 502))
        self.assertEqual(record["proxy_status"], status.decode())

    async def test_httpErrorStatus(self) -> None:
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
        self.assertEqual((await self.runAgainst(port, "example.com"))[0], 1)
        self.assertEqual((await self.runAgainst(port, "example.com"))[0], 1)
        code, out, err = await self.runAgainst(port, "example.com")
        self.assertEqual((code, err), (0, ""))

    async def test_closingMidBody(self) -> None:
        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            proto.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"a" * 40
            )
            proto.transport.loseConnection()

        proxy, port = self.startProxy(respond)
        code, out, err = await self.runAgainst(port, "example.com")
        self.assertEqual(code, 3)
        self.assertEqual(
            err,
            "proxyclient: The connection closed after 40 body bytes, before the end of the "
            "response: the body is incomplete.\n",
        )
        self.assertIn("Response has been received: HTTP/1.1 200 OK", out)
        self.assertNotIn("Round-trip time", out)
        self.assertTrue(out.endswith(MACHINE_MAC_LINE + "\n"))

    async def test_closingWithoutResponse(self) -> None:
        proxy, port = self.startProxy(
            lambda proto, head, body: proto.transport.loseConnection()
        )
        code, out, err = await self.runAgainst(port, "example.com")
        self.assertEqual(code, 3)
        self.assertEqual(
            err,
            "proxyclient: The proxy closed the connection without sending a response.\n",
        )

    async def test_closingMidHead(self) -> None:
        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            proto.transport.write(b"HTTP/1.1 200 OK\r\nContent-")
            proto.transport.loseConnection()

        proxy, port = self.startProxy(respond)
        code, out, err = await self.runAgainst(port, "example.com")
        self.assertEqual(code, 3)
        self.assertIn("in the middle of the response head", err)

    async def test_garbage(self) -> None:
        proxy, port = self.startProxy(
            lambda proto, head, body: proto.transport.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        )
        code, out, err = await self.runAgainst(port, "example.com")
        self.assertEqual(code, 3)
        # The detail in parentheses is llhttp's.
        self.assertRegex(
            err, r"\Aproxyclient: The response is not valid HTTP/1\.1 \([^\n]+\)\.\n\Z"
        )
        self.assertEqual(err.count("\n"), 1)

    async def test_closeDelimitedAndInterim(self) -> None:
        """
        A body that ends when the connection closes is complete; an interim
        response before the final one is skipped (but counted in
        C{size_header}).
        """

        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            proto.transport.write(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"
            )
            proto.transport.loseConnection()

        proxy, port = self.startProxy(respond)
        code, out, err = await self.runAgainst(port, "--json", "example.com")
        record = json.loads(out)
        self.assertEqual((code, record["status"], record["body_bytes"]), (0, 200, 9))
        self.assertEqual(record["curl"]["size_header"], 25 + 38)

    async def test_keepAliveCount(self) -> None:
        """
        C{--count 3} sends three requests on one connection, then prints
        ab-style statistics.
        """
        proxy, port = self.startProxy(ok(b"z" * 10))
        code, out, err = await self.runAgainst(port, "--count", "3", "example.com")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(len(proxy.connections), 1)
        self.assertEqual(len(proxy.requests), 3)
        lines = out.splitlines()
        self.assertTrue(
            lines[0].startswith(
                "Request has been sent: GET http://example.com/ HTTP/1.1"
            )
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
            "Statistics over 3 of 3 runs on 1 connection (median: middle value; p90: nearest rank):",
        )
        self.assertEqual(
            lines[5].split(), ["phase", "(ms)", "min", "mean", "median", "p90", "max"]
        )
        self.assertEqual(
            [line.split()[0] for line in lines[6:12]],
            ["proxy", "request", "first", "response", "total", "status"],
        )
        self.assertEqual(lines[11], "  status 200 x3; 30 body bytes in all")
        self.assertEqual(lines[12:], [MACHINE_MAC_LINE])

    async def test_keepAliveJSON(self) -> None:
        clock = FakeMonotonic()
        delays = [0.010, 0.030, 0.020]

        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            clock.advance(delays.pop(0))
            ok(b"z")(proto, head, body)

        proxy, port = self.startProxy(respond)
        code, out, err = await self.runAgainst(
            port, "--count", "3", "--json", "example.com", monotonic=clock
        )
        records = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([r["type"] for r in records], ["run", "run", "run", "summary"])
        self.assertEqual(
            [r["new_connection"] for r in records[:3]], [True, False, False]
        )
        self.assertEqual([r["connection"] for r in records[:3]], [1, 1, 1])
        self.assertEqual([r["curl"]["num_connects"] for r in records[:3]], [1, 0, 0])
        summary = records[3]
        self.assertEqual(
            (summary["runs"], summary["completed"], summary["connections"]), (3, 3, 1)
        )
        self.assertEqual(summary["statuses"], {"200": 3})
        self.assertEqual(summary["percentile_method"], "nearest-rank")
        self.assertEqual(
            summary["phases_ms"]["wait"],
            {"min": 10.0, "mean": 20.0, "median": 20.0, "p90": 30.0, "max": 30.0},
        )
        self.assertEqual(summary["exit_code"], 0)
        self.assertEqual(len(proxy.connections), 1)

    async def test_newConnection(self) -> None:
        proxy, port = self.startProxy(ok())
        code, out, err = await self.runAgainst(
            port, "--count", "3", "--new-connection", "--json", "example.com"
        )
        self.assertEqual(code, 0)
        self.assertEqual(len(proxy.connections), 3)
        records = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([r["connection"] for r in records[:3]], [1, 2, 3])
        self.assertEqual(records[3]["connections"], 3)

    async def test_proxyClosesBetweenRuns(self) -> None:
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
        code, out, err = await self.runAgainst(port, "--count", "2", "example.com")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(len(proxy.connections), 2)
        self.assertIn("Statistics over 2 of 2 runs on 2 connections", out)

    async def test_failureStopsRepeats(self) -> None:
        calls = []

        def respond(proto: FakeProxyProtocol, head: bytes, body: bytes) -> None:
            calls.append(head)
            if len(calls) == 2:
                proto.transport.abortConnection()
            else:
                ok(b"a")(proto, head, body)

        proxy, port = self.startProxy(respond)
        code, out, err = await self.runAgainst(
            port, "--count", "5", "--json", "example.com"
        )
        self.assertEqual(code, 3)
        records = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([r["type"] for r in records], ["run", "run", "summary"])
        self.assertEqual(records[1]["exit_code"], 3)
        self.assertIn("without sending a response", records[1]["error"])
        self.assertEqual((records[2]["completed"], records[2]["exit_code"]), (1, 3))

    async def test_timeout(self) -> None:
        """
        A proxy that never answers: after C{--timeout} seconds on the
        (injected) clock the run fails with code 3, naming the phase.
        """
        timeouts = task.Clock()
        proxy, port = self.startProxy(lambda proto, head, body: timeouts.advance(5))
        code, out, err = await self.runAgainst(
            port, "--timeout", "5", "example.com", clock=timeouts
        )
        self.assertEqual(code, 3)
        self.assertEqual(
            err,
            "proxyclient: Timed out after 5 seconds waiting for the response. "
            "Use --timeout SECONDS to wait longer.\n",
        )
        self.assertEqual(timeouts.getDelayedCalls(), [])

    async def test_connectTimeout(self) -> None:
        """
        A connection that never completes is cancelled at the timeout.
        """
        timeouts = task.Clock()

        class Hanging:
            def connect(self, factory: Any) -> defer.Deferred[Any]:
                return defer.Deferred()

        env, out, err = makeEnv(
            clock=timeouts, endpointFactory=lambda h, p, t: Hanging()
        )
        result = defer.ensureDeferred(
            runClient(env, ["--timeout", "2.5", "example.com"])
        )
        self.assertNoResult(result)
        timeouts.advance(2.5)
        self.assertEqual(self.successResultOf(result), 3)
        self.assertEqual(
            err.getvalue(),
            "proxyclient: Timed out after 2.5 seconds waiting for the connection to the proxy "
            "at 127.0.0.1:8080. Use --timeout SECONDS to wait longer.\n",
        )

    async def test_headDataAndHeaders(self) -> None:
        proxy, port = self.startProxy(ok(b"ignored"))
        code, out, err = await self.runAgainst(port, "--head", "example.com")
        self.assertEqual(code, 0)
        self.assertTrue(
            proxy.requests[0][0].startswith(b"HEAD http://example.com/ HTTP/1.1\r\n")
        )
        self.assertIn("Round-trip time", out)
        self.assertNotIn("ignored", out)

        code, out, err = await self.runAgainst(
            port, "-d", "a=1", "-H", "X-Trace: 7", "--origin-form", "example.com"
        )
        self.assertEqual(code, 0)
        head, body = proxy.requests[1]
        self.assertTrue(head.startswith(b"POST / HTTP/1.1\r\nHost: example.com\r\n"))
        self.assertIn(b"\r\nX-Trace: 7\r\n", head)
        self.assertEqual(body, b"a=1")
        self.assertIn("\\r\\n\\r\\n + 3-byte body  [", out)

    async def test_outputAndShowBody(self) -> None:
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
        code, out, err = await self.runAgainst(port, "--output", path, "example.com")
        self.assertEqual(code, 0)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), lines)
        self.assertIn(
            "  row 9\n  [... %d bytes in all; --show-body prints the whole body]\n"
            % (len(lines),),
            out,
        )

        code, out, err = await self.runAgainst(port, "--show-body", "example.com")
        self.assertEqual(code, 0)
        self.assertIn(
            "Transfer-Encoding: chunked\\r\\n\\r\\n  [12:34:56.123]\n"
            + lines.decode()
            + "Round-trip time",
            out,
        )

    async def test_outputUnwritable(self) -> None:
        proxy, port = self.startProxy(ok())
        missing = os.path.join(
            tempfile.gettempdir(), "proxyclient-no-such-dir", "x", "body"
        )
        code, out, err = await self.runAgainst(port, "--output", missing, "example.com")
        self.assertEqual(code, 2)
        self.assertTrue(
            err.startswith("proxyclient: Cannot write the body to " + missing), err
        )

    async def test_environmentProxy(self) -> None:
        proxy, port = self.startProxy(ok())
        env, out, err = makeEnv(
            endpointFactory=loopbackEndpoints,
            environ={"http_proxy": "http://127.0.0.1:%d/" % (port,)},
        )
        self.assertEqual(await runClient(env, ["example.com"]), 0)
        self.assertEqual(len(proxy.requests), 1)


# --- HTTPS through CONNECT -------------------------------------------------------


@functools.cache
def certificates() -> tuple[bytes, bytes]:
    """
    A test CA, and a server certificate and key for "localhost" signed by
    it: C{(caPEM, serverKeyAndCertPEM)}.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxyclient test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(caName)
        .issuer_name(caName)
        .public_key(caKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(caKey.public_key()),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(caName)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(caKey.public_key()),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    keyPEM = key.private_bytes(
        pem,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return ca.public_bytes(pem), keyPEM + leaf.public_bytes(pem)


class Relay(Protocol):
    """
    One side of a CONNECT tunnel: what it receives goes to C{peer}.
    """

    peer: Protocol | None = None

    def __init__(self, lost: list[defer.Deferred[None]]) -> None:
        self.closed: defer.Deferred[None] = defer.Deferred()
        lost.append(self.closed)

    def dataReceived(self, data: bytes) -> None:
        assert self.peer is not None
        self.peer.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self.peer is not None:
            self.peer.transport.loseConnection()
        self.closed.callback(None)


class ConnectProxyProtocol(Protocol):
    """
    A fake proxy that answers C{CONNECT} by relaying to the TLS origin on
    loopback (whatever host the request names: nothing is resolved).
    """

    def connectionMade(self) -> None:
        self.buffer = b""
        self.relay: Relay | None = None
        self.factory.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay.transport.write(data)
            return
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        head, rest = self.buffer.split(b"\r\n\r\n", 1)
        self.factory.requests.append(head + b"\r\n\r\n")
        if self.factory.refuse is not None:
            self.transport.write(self.factory.refuse)
            return
        self.transport.pauseProducing()
        self.relay = relay = Relay(self.factory.lost)
        relay.peer = self
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.factory.originPort)

        def connected(_: object) -> None:
            self.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                relay.transport.write(rest)
            self.transport.resumeProducing()

        connectProtocol(endpoint, relay).addCallback(connected)

    def connectionLost(self, reason: Any = None) -> None:
        if self.relay is not None and self.relay.transport is not None:
            self.relay.transport.loseConnection()
        self.closed.callback(None)


class ConnectProxyFactory(Factory):
    protocol = ConnectProxyProtocol

    def __init__(self, originPort: int, refuse: bytes | None = None) -> None:
        self.originPort = originPort
        self.refuse = refuse
        self.connections: list[ConnectProxyProtocol] = []
        self.requests: list[bytes] = []
        self.lost: list[defer.Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> Protocol:
        proto = super().buildProtocol(addr)
        proto.closed = defer.Deferred()
        self.lost.append(proto.closed)
        return proto


class HTTPSTests(LoopbackTestsMixin, TestCase):
    """
    C{https://} targets: a CONNECT tunnel through the (fake) proxy, then
    TLS with verification, to a TLS origin on loopback.
    """

    async def startTunnel(
        self, refuse: bytes | None = None
    ) -> tuple[ConnectProxyFactory, int, str]:
        caPEM, serverPEM = certificates()
        origin = FakeProxyFactory(ok(b"hello over TLS\n", b"text/plain"))
        originPort = self.listen(
            origin, tls=PrivateCertificate.loadPEM(serverPEM).options()
        )
        proxy = ConnectProxyFactory(originPort, refuse)
        port = self.listen(proxy)

        async def closed() -> None:
            await defer.gatherResults(proxy.lost)
            await origin.allClosed()

        self.addCleanup(lambda: defer.ensureDeferred(closed()))
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        caFile = os.path.join(directory, "ca.pem")
        with open(caFile, "wb") as f:
            f.write(caPEM)
        self.origin = origin
        return proxy, port, caFile

    async def test_verified(self) -> None:
        proxy, port, caFile = await self.startTunnel()
        code, out, err = await self.runAgainst(
            port, "--cacert", caFile, "-v", "https://localhost:%d/a" % (port,)
        )
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(
            proxy.requests,
            [
                b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\nUser-Agent: %s\r\n\r\n"
                % (port, port, client.USER_AGENT.encode())
            ],
        )
        self.assertTrue(
            self.origin.requests[0][0].startswith(
                b"GET /a HTTP/1.1\r\nHost: localhost:%d\r\n" % (port,)
            )
        )
        lines = out.splitlines()
        self.assertEqual(
            lines[0],
            "Tunnel has been opened: CONNECT localhost:%d HTTP/1.1 -> HTTP/1.1 200 Connection established"
            "  [12:34:56.123]" % (port,),
        )
        self.assertTrue(
            lines[1].startswith("Request has been sent: GET /a HTTP/1.1\\r\\n")
        )
        self.assertIn("  hello over TLS", lines)
        for label in (
            "proxy connect",
            "CONNECT established",
            "TLS handshake",
            "request sent",
        ):
            self.assertTrue(
                any(line.startswith("  " + label + " ") for line in lines), label
            )
        self.assertTrue(any("time_appconnect=" in line for line in lines))

    async def test_verifiedJSONAndKeepAlive(self) -> None:
        """
        Repeated runs reuse the tunnel and its TLS session; the phases are in
        order.
        """
        proxy, port, caFile = await self.startTunnel()
        code, out, err = await self.runAgainst(
            port,
            "--cacert",
            caFile,
            "--json",
            "--count",
            "2",
            "https://localhost/",
            monotonic=client.time.monotonic,
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
        self.assertEqual(curl["time_appconnect"], curl["time_pretransfer"])
        self.assertGreaterEqual(first["timings_ms"]["tunnel"], 0)
        self.assertGreater(first["timings_ms"]["tls"], 0)
        self.assertEqual(
            (second["new_connection"], second["timings_ms"]["tls"]), (False, 0.0)
        )
        self.assertIn("tls", summary["phases_ms"])

    async def test_unverified(self) -> None:
        """
        Without C{--cacert} the test CA is not trusted: exit code 3, and the
        message says what to do.
        """
        proxy, port, caFile = await self.startTunnel()
        code, out, err = await self.runAgainst(port, "https://localhost/")
        self.assertEqual(code, 3)
        self.assertTrue(
            err.startswith("proxyclient: TLS verification of localhost failed: "), err
        )
        self.assertIn("certificate verify failed", err)
        self.assertTrue(
            err.endswith(
                "Use --cacert FILE to trust its CA, or --insecure to skip verification.\n"
            )
        )
        self.assertEqual(self.origin.requests, [])

    async def test_insecure(self) -> None:
        proxy, port, caFile = await self.startTunnel()
        code, out, err = await self.runAgainst(port, "--insecure", "https://localhost/")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("  hello over TLS\n", out)

    async def test_wrongHostName(self) -> None:
        """
        A trusted certificate for another name fails verification.
        """
        proxy, port, caFile = await self.startTunnel()
        code, out, err = await self.runAgainst(
            port, "--cacert", caFile, "https://127.0.0.1/"
        )
        self.assertEqual(code, 3)
        self.assertTrue(
            err.startswith(
                "proxyclient: The TLS certificate of 127.0.0.1 does not match that name"
            ),
            err,
        )
        self.assertEqual(self.origin.requests, [])

    async def test_garbageAnswer(self) -> None:
        proxy, port, caFile = await self.startTunnel(
            refuse=b"220 smtp.example ESMTP\r\n\r\n"
        )
        code, out, err = await self.runAgainst(port, "https://localhost/")
        self.assertEqual(code, 3)
        self.assertRegex(
            err,
            r"\Aproxyclient: The proxy's answer to CONNECT: The response is not valid "
            r"HTTP/1\.1 \([^\n]+\)\.\n\Z",
        )

    async def test_refused(self) -> None:
        text = b"403 Forbidden: CONNECT to port 8443 is not allowed.\n"
        refusal = (
            b"HTTP/1.1 403 Forbidden\r\nProxy-Status: proxy.test; error=http_request_denied; "
            b'details="CONNECT to port 8443 is not allowed"\r\nContent-Length: %d\r\n\r\n%s'
            % (len(text), text)
        )
        proxy, port, caFile = await self.startTunnel(refuse=refusal)
        code, out, err = await self.runAgainst(
            port, "--json", "https://localhost:8443/"
        )
        self.assertEqual(code, 3)
        self.assertEqual(
            err,
            "proxyclient: The proxy refused to open a tunnel to localhost:8443: 403 Forbidden "
            '(Proxy-Status: proxy.test; error=http_request_denied; details="CONNECT to port 8443 '
            'is not allowed"): 403 Forbidden: CONNECT to port 8443 is not allowed.\n',
        )
        record = json.loads(out)
        self.assertTrue(
            record["proxy_status"].startswith("proxy.test; error=http_request_denied")
        )
        self.assertEqual(record["exit_code"], 3)


# --- Through the real proxy ----------------------------------------------------


class RealProxyTests(LoopbackTestsMixin, TestCase):
    """
    End to end: the client through the proxy service built by
    L{twisted_proxy.app.tap.makeService}, to an origin on loopback.
    """

    async def test_throughProxy(self) -> None:
        from twisted_proxy.app.tap import Options as ProxyOptions, makeService

        origin, originPort = self.startProxy(ok(b"from the origin\n", b"text/plain"))
        config = ProxyOptions()
        config.parseOptions(
            ["--listen", "tcp:0:interface=127.0.0.1", "--pseudonym", "e2e"]
        )
        service = makeService(config, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        port = (await list(service)[0]._waitingForPort).getHost().port

        url = "http://127.0.0.1:%d/page" % (originPort,)
        code, out, err = await self.runAgainst(
            port, "--count", "2", "--json", url, monotonic=client.time.monotonic
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
        closed = reactor.listenTCP(
            0, Factory.forProtocol(Protocol), interface="127.0.0.1"
        )
        deadPort = closed.getHost().port
        await closed.stopListening()
        code, out, err = await self.runAgainst(
            port, "http://127.0.0.1:%d/" % (deadPort,)
        )
        self.assertEqual(code, 3)
        self.assertIn("\nProxy-Status: e2e; error=", out)
        self.assertTrue(
            err.startswith(
                "proxyclient: the proxy could not complete the request: 502"
            ),
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
        originPort = self.listen(
            origin, tls=PrivateCertificate.loadPEM(serverPEM).options()
        )
        self.addCleanup(lambda: defer.ensureDeferred(origin.allClosed()))
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
            "proxyclient: --count must be a positive whole number, not 'x'\nTry 'proxyclient --help'.\n",
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
