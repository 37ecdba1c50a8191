# -*- test-case-name: tests.test_policy -*-
"""
Addresses: the client network rules (C{--allow}/C{--deny}, L{ClientACL})
and the special-purpose address blocks a proxy must not be steered into
(L{privateDestinationReason}).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from .refusals import ConfigurationError, Refused

__all__ = ["DEFAULT_CLIENT_NETWORKS", "ClientACL", "parseAddress", "privateDestinationReason"]

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_CLIENT_NETWORKS: tuple[str, ...] = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
    "fe80::/10",
)


def parseAddress(text: str) -> _IPAddress | None:
    """
    Parse an IP address, judging an IPv4-mapped IPv6 address as its IPv4
    address.  Brackets and an IPv6 zone (C{%eth0}) are accepted.

    @return: the address, or L{None} if C{text} is not one.
    """
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return mapped
    return address


def _parseNetwork(text: str, option: str) -> _IPNetwork:
    """
    Parse a CIDR (or a bare address) from option C{option}.

    @raise ConfigurationError: if it is not one, or has host bits set.
    """
    try:
        network = ipaddress.ip_network(text.strip())
    except ValueError as e:
        try:
            loose = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise ConfigurationError(
                f"--{option} {text!r}: not an IPv4 or IPv6 network ({e}); "
                "write an address or a CIDR such as 10.0.0.0/8 or fd00::/8"
            ) from None
        raise ConfigurationError(
            f"--{option} {text!r}: host bits are set; did you mean {loose}?"
        ) from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            network = ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


class ClientACL:
    """
    Client network rules: first match wins, no match is refused.

    @ivar _rules: C{(allow, network, text)} in evaluation order.
    @ivar _isDefault: whether the default networks were appended.
    """

    def __init__(self, rules: Iterable[tuple[str, str]] = ()) -> None:
        """
        @param rules: C{("allow" | "deny", CIDR)} pairs in command-line
            order.  If none is an C{"allow"}, L{DEFAULT_CLIENT_NETWORKS} are
            allowed after them.

        @raise ConfigurationError: on an unknown action or a bad network.
        """
        parsed: list[tuple[bool, _IPNetwork, str]] = []
        for action, cidr in rules:
            if action not in ("allow", "deny"):
                raise ConfigurationError(f"client rule {action!r}: expected 'allow' or 'deny'")
            network = _parseNetwork(cidr, action)
            parsed.append((action == "allow", network, f"{action} {network}"))
        self._isDefault = not any(allow for allow, _, _ in parsed)
        if self._isDefault:
            for cidr in DEFAULT_CLIENT_NETWORKS:
                network = ipaddress.ip_network(cidr)
                parsed.append((True, network, f"allow {network}"))
        self._rules: tuple[tuple[bool, _IPNetwork, str], ...] = tuple(parsed)

    def check(self, ip: str) -> Refused | None:
        """
        Judge a client address.

        @param ip: the client's address as text (C{transport.getPeer().host}).
        @return: L{None} if admitted, else a L{Refused}.
        """
        address = parseAddress(ip)
        if address is None:
            return Refused(
                f"client address {ip!r} is not an IP address",
                rule="client-address unparseable",
            )
        for allow, network, text in self._rules:
            if address in network:
                if allow:
                    return None
                return Refused(f"client {address} is not allowed to use this proxy", rule=text)
        return Refused(
            f"client {address} is not allowed to use this proxy",
            rule="implicit-deny",
        )

    def describe(self) -> str:
        rules = ", ".join(text for _, _, text in self._rules)
        if self._isDefault:
            rules += " (default: loopback and private networks)"
        return f"clients: {rules}, else deny"


def _v4(cidr: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(cidr)


def _v6(cidr: str) -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network(cidr)


# Addresses a forward proxy must not be steered into connecting to: the IANA
# IPv4/IPv6 special-purpose registries' non-globally-reachable blocks, plus
# multicast and reserved space.  Explicit (rather than ipaddress.is_global) so
# that the result and the rule named do not depend on the Python version.
_PRIVATE_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_v4("0.0.0.0/8"), "this network (unspecified)"),
    (_v4("10.0.0.0/8"), "private"),
    (_v4("100.64.0.0/10"), "shared address space (carrier-grade NAT)"),
    (_v4("127.0.0.0/8"), "loopback"),
    (_v4("169.254.0.0/16"), "link-local (incl. cloud metadata)"),
    (_v4("172.16.0.0/12"), "private"),
    (_v4("192.0.0.0/24"), "IETF protocol assignments"),
    (_v4("192.0.2.0/24"), "documentation"),
    (_v4("192.168.0.0/16"), "private"),
    (_v4("198.18.0.0/15"), "benchmarking"),
    (_v4("198.51.100.0/24"), "documentation"),
    (_v4("203.0.113.0/24"), "documentation"),
    (_v4("224.0.0.0/4"), "multicast"),
    (_v4("240.0.0.0/4"), "reserved (incl. broadcast)"),
)
_PRIVATE_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_v6("::/8"), "reserved (incl. unspecified, loopback, IPv4-compatible)"),
    (_v6("100::/64"), "discard-only"),
    (_v6("2001::/23"), "IETF protocol assignments (incl. Teredo)"),
    (_v6("2001:db8::/32"), "documentation"),
    (_v6("3fff::/20"), "documentation"),
    (_v6("5f00::/16"), "segment routing"),
    (_v6("fc00::/7"), "unique-local (private)"),
    (_v6("fe80::/10"), "link-local"),
    (_v6("fec0::/10"), "site-local (deprecated)"),
    (_v6("ff00::/8"), "multicast"),
)
_NAT64 = _v6("64:ff9b::/96")


def privateDestinationReason(address: _IPAddress) -> tuple[str, str] | None:
    """
    Whether a destination address is loopback, private, link-local,
    unspecified, multicast or otherwise not a public unicast address.

    IPv6 addresses that embed an IPv4 destination (IPv4-mapped
    C{::ffff:0:0/96}, NAT64 C{64:ff9b::/96}, 6to4 C{2002::/16}) are judged by
    the IPv4 address they lead to.

    @return: L{None} for a public address, else C{(network, why)}, e.g.
        C{("127.0.0.0/8", "loopback")}.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return privateDestinationReason(embedded)
        for network6, why in _PRIVATE_V6:
            if address in network6:
                return str(network6), why
        return None
    for network4, why in _PRIVATE_V4:
        if address in network4:
            return str(network4), why
    return None
