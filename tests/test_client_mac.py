"""
Tests for L{twisted_proxy.client.mac}: the MAC address of the interface
that carried the connection, never made up.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests._client import (
    AF_INET,
    AF_INET6,
    AF_LINK,
    LOOPBACK,
    MACHINE_MAC_LINE,
    FakeInterfaces,
    ethernet,
    machine,
)
from twisted_proxy.client.mac import (
    MacAddress,
    findMacAddress,
    lookUpMac,
    netifacesTable,
)


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
        self.assertEqual(findMacAddress("::ffff:198.51.100.7", machine()).interface, "wlan0")

    def test_loopback(self) -> None:
        mac = findMacAddress("127.0.0.1", machine())
        self.assertEqual(
            mac,
            MacAddress("02:00:00:00:00:01", "eth0", "default route; the proxy is on loopback"),
        )
        self.assertEqual("Physical MAC Address: " + mac.describe(), MACHINE_MAC_LINE)
        self.assertEqual(findMacAddress("::1", machine()).interface, "eth0")

    def test_loopbackOnly(self) -> None:
        mac = findMacAddress("127.0.0.1", FakeInterfaces({"lo": LOOPBACK}, {"default": {}}))
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

        mac = lookUpMac("127.0.0.1", missing)
        self.assertEqual(mac.describe(), "not found (the netifaces module is not installed)")

    def test_realTable(self) -> None:
        """
        On this machine the lookup gives a MAC address (six octets) or a
        reason, never anything else.
        """
        mac = lookUpMac("127.0.0.1", netifacesTable)
        if mac.address is None:
            self.assertTrue(mac.reason)
        else:
            self.assertRegex(mac.address, r"\A([0-9a-f]{2}:){5}[0-9a-f]{2}\Z")
            self.assertNotEqual(mac.address, "00:00:00:00:00:00")


class NetifacesDependencyTests(SynchronousTestCase):
    """
    The interface table comes from netifaces-plus, the maintained fork of
    netifaces (same C{import netifaces}, binary wheels).
    """

    def test_distribution(self) -> None:
        from importlib.metadata import PackageNotFoundError, distribution

        dist = distribution("netifaces-plus")
        self.assertTrue(any(str(f).startswith("netifaces/") for f in dist.files or []), dist.files)
        with self.assertRaises(
            PackageNotFoundError,
            msg="netifaces and netifaces-plus both install the module netifaces: "
            "pip uninstall netifaces, then reinstall netifaces-plus",
        ):
            distribution("netifaces")

    def test_interface(self) -> None:
        """
        The module has what L{findMacAddress} uses.
        """
        table = netifacesTable()
        for name in ("interfaces", "ifaddresses", "gateways", "AF_LINK", "AF_INET", "AF_INET6"):
            self.assertTrue(hasattr(table, name), name)
        self.assertIsInstance(table.interfaces(), list)
