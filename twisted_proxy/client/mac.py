# -*- test-case-name: tests.test_client_mac -*-
"""
The MAC address of the network interface that carried the connection,
from a netifaces-like interface table (the C{netifaces} module, from the
maintained C{netifaces-plus} distribution, by default).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["MacAddress", "findMacAddress", "netifacesTable", "lookUpMac"]


@dataclass(frozen=True)
class MacAddress:
    """
    The result of L{findMacAddress}.

    @ivar address: C{"aa:bb:cc:dd:ee:ff"}, or L{None} if none was found.
    @ivar interface: the interface it belongs to, or L{None}.
    @ivar note: why it is not the interface holding the connection's local
        address (e.g. C{"default route; the proxy is on loopback"}), or
        L{None} if it is.
    @ivar reason: when C{address} is L{None}, why.
    """

    address: str | None
    interface: str | None = None
    note: str | None = None
    reason: str | None = None

    def describe(self) -> str:
        """
        The text after C{Physical MAC Address: }.
        """
        if self.address is None:
            return "not found ({})".format(self.reason)
        where = self.interface or "?"
        if self.note:
            where += ", " + self.note
        return "{} ({})".format(self.address, where)

    def asJSON(self) -> dict[str, str | None]:
        return {
            "address": self.address,
            "interface": self.interface,
            "note": self.note,
            "reason": self.reason,
        }


def _ipAddress(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """
    Parse an address as netifaces or a socket reports it: strip a C{%scope}
    and map C{::ffff:a.b.c.d} to IPv4.
    """
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _linkAddress(table: Any, interface: str) -> str | None:
    """
    The interface's MAC address, or L{None} if it has none (or only zeros,
    as the loopback does).
    """
    for entry in table.ifaddresses(interface).get(table.AF_LINK, []):
        mac = (entry.get("addr") or "").lower()
        octets = mac.split(":")
        if len(octets) == 6 and all(re.fullmatch(r"[0-9a-f]{1,2}", o) for o in octets):
            if any(int(o, 16) for o in octets):
                return ":".join(o.zfill(2) for o in octets)
    return None


def findMacAddress(localAddress: str | None, table: Any, peer: str = "the proxy") -> MacAddress:
    """
    Find the MAC address of the interface that carried a connection.

    The interface is the one holding the socket's local address (IPv4 or
    IPv6).  If that is the loopback (the proxy runs on this machine), has no
    MAC address (a VPN tunnel, say) or cannot be found, the interface of the
    default route is reported instead, with a note saying so.  Nothing is
    ever made up: if no MAC address can be found, the result says why.

    @param localAddress: the local address of the connection to the proxy
        (C{transport.getHost().host}), or L{None} if there was none.
    @param peer: what is at the other end, for the loopback note:
        C{"the proxy"}, or C{"the server"} for a direct connection.
    @param table: a netifaces-like object: C{interfaces()},
        C{ifaddresses(name)}, C{gateways()}, C{AF_LINK}, C{AF_INET},
        C{AF_INET6}.
    """
    local = _ipAddress(localAddress) if localAddress else None
    owner = None
    if local is not None:
        for name in table.interfaces():
            addresses = table.ifaddresses(name)
            for family in (table.AF_INET, table.AF_INET6):
                for entry in addresses.get(family, []):
                    if _ipAddress(entry.get("addr", "")) == local:
                        owner = name
                        break
                if owner:
                    break
            if owner:
                break

    if local is not None and owner is not None and not local.is_loopback:
        mac = _linkAddress(table, owner)
        if mac is not None:
            return MacAddress(mac, owner)
        why = "{}, which carries the connection, has no MAC address".format(owner)
    elif local is None:
        why = "no connection was made"
    elif local.is_loopback:
        why = "{} is on loopback".format(peer)
    else:
        why = "no interface holds the local address {}".format(local)

    defaults = table.gateways().get("default", {})
    families = [table.AF_INET, table.AF_INET6]
    if isinstance(local, ipaddress.IPv6Address) and not local.is_loopback:
        families.reverse()
    for family in families:
        route = defaults.get(family)
        if route:
            interface = route[1]
            mac = _linkAddress(table, interface)
            if mac is not None:
                return MacAddress(mac, interface, "default route; " + why)
            return MacAddress(
                None,
                reason="{}; {}, the default-route interface, has no MAC address".format(
                    why, interface
                ),
            )
    return MacAddress(None, reason=why + " and there is no default route")


def netifacesTable() -> Any:
    """
    The real interface table: the netifaces module.
    """
    import netifaces

    return netifaces


def lookUpMac(
    localAddress: str | None, tableProvider: Callable[[], Any], peer: str = "the proxy"
) -> MacAddress:
    """
    L{findMacAddress}, turning a missing or failing netifaces into a reason.
    """
    try:
        table = tableProvider()
    except ImportError:
        return MacAddress(None, reason="the netifaces module is not installed")
    try:
        return findMacAddress(localAddress, table, peer)
    except (OSError, ValueError) as e:
        return MacAddress(None, reason="the interface table could not be read: {}".format(e))
