# -*- test-case-name: tests.test_policy -*-
"""
Destination rules: host patterns (C{--allow-host}, C{--deny-host},
C{--no-upstream-proxy-for}) and the ports CONNECT may reach
(C{--connect-ports}).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from .refusals import ConfigurationError, Refused

__all__ = ["DEFAULT_CONNECT_PORTS", "DestinationRules", "HostPatterns", "parseConnectPorts"]

DEFAULT_CONNECT_PORTS: frozenset[int] = frozenset({443})


def _normalizeHost(host: str) -> str:
    """
    The form hosts and patterns are compared in: lower case, no trailing
    dot, no brackets, IPv6 literals canonical.
    """
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.rstrip(".").lower()
    if ":" in host:
        try:
            host = ipaddress.IPv6Address(host).compressed
        except ValueError:
            pass
    return host


def _isIPv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


class HostPatterns:
    """
    A compiled set of host patterns from one option.

    @ivar _exact: normalized host to the rule text, for C{example.com} and
        the apex of C{.example.com}.
    @ivar _parents: domain to rule text, for C{*.example.com} and
        C{.example.com}: a host matches if one of its proper parent domains
        is here.
    @ivar _regexes: C{(compiled, rule text)} for C{re:} patterns, in order.
    @ivar _texts: the rule texts, in the order given.
    """

    def __init__(self, option: str, patterns: Iterable[str]) -> None:
        self._exact: dict[str, str] = {}
        self._parents: dict[str, str] = {}
        self._regexes: list[tuple[re.Pattern[str], str]] = []
        self._texts: list[str] = []
        for pattern in patterns:
            pattern = pattern.strip()
            text = f"{option} {pattern}"
            self._texts.append(text)
            if pattern.startswith("re:"):
                try:
                    compiled = re.compile(pattern[3:], re.IGNORECASE)
                except re.error as e:
                    raise ConfigurationError(
                        f"--{option} {pattern!r}: invalid regular expression: {e}"
                    ) from None
                self._regexes.append((compiled, text))
                continue
            if pattern.startswith("*."):
                domain, exact, parent = pattern[2:], False, True
            elif pattern.startswith("."):
                domain, exact, parent = pattern[1:], True, True
            else:
                domain, exact, parent = pattern, True, False
            domain = _normalizeHost(domain)
            if (
                not domain
                or domain.startswith(".")
                or any(c in "*/ \t" for c in domain)
                or (":" in domain and (parent or not _isIPv6(domain)))
            ):
                raise ConfigurationError(
                    f"--{option} {pattern!r}: expected a host (example.com, "
                    "no port), *.example.com (subdomains), .example.com (the "
                    "domain and its subdomains) or re:REGEX"
                )
            if exact:
                self._exact.setdefault(domain, text)
            if parent:
                self._parents.setdefault(domain, text)

    def __bool__(self) -> bool:
        return bool(self._texts)

    def matchHost(self, host: str) -> str | None:
        """
        L{match} for a host as it came in a request (not yet normalized).
        """
        return self.match(_normalizeHost(host))

    def match(self, host: str) -> str | None:
        """
        The rule text of the first pattern matching a normalized C{host}:
        an exact name first, then the nearest parent domain, then the regular
        expressions in the order given.  L{None} if none matches.
        """
        rule = self._exact.get(host)
        if rule is not None:
            return rule
        if self._parents:
            dot = host.find(".")
            while dot != -1:
                rule = self._parents.get(host[dot + 1 :])
                if rule is not None:
                    return rule
                dot = host.find(".", dot + 1)
        for regex, text in self._regexes:
            if regex.fullmatch(host):
                return text
        return None

    def describe(self) -> str:
        return ", ".join(self._texts)


class DestinationRules:
    """
    C{--deny-host} and C{--allow-host}: any deny match refuses; if allow
    patterns exist, one of them must match.
    """

    def __init__(self, allowHosts: Iterable[str] = (), denyHosts: Iterable[str] = ()) -> None:
        """
        @raise ConfigurationError: on a malformed pattern.
        """
        self._allow = HostPatterns("allow-host", allowHosts)
        self._deny = HostPatterns("deny-host", denyHosts)

    def check(self, host: str) -> tuple[Refused | None, str | None]:
        """
        Judge a destination host name (or IP literal).

        @return: C{(refusal, allowedBy)}: a L{Refused} or L{None}, and when
            admitted by an allow-host rule, that rule.
        """
        if not self._allow and not self._deny:
            return None, None
        normalized = _normalizeHost(host)
        denied = self._deny.match(normalized)
        if denied is not None:
            return (
                Refused(
                    f"requests to {normalized} are refused by this proxy's policy",
                    rule=denied,
                ),
                None,
            )
        if not self._allow:
            return None, None
        allowed = self._allow.match(normalized)
        if allowed is None:
            return (
                Refused(
                    f"{normalized} is not among the hosts this proxy serves",
                    rule="allow-host none-matched",
                ),
                None,
            )
        return None, allowed

    def describe(self) -> str:
        deny = self._deny.describe() or "deny-host none"
        allow = self._allow.describe() or "allow-host any"
        return f"hosts: {deny}; {allow}"


def parseConnectPorts(text: str) -> frozenset[int] | None:
    """
    Parse C{--connect-ports}: C{"443"}, C{"443,8443"}, or C{"*"} for any.

    @return: the allowed ports, or L{None} for any port.
    @raise ConfigurationError: on anything else.
    """
    text = text.strip()
    if text == "*":
        return None
    ports = set()
    for item in text.split(","):
        item = item.strip()
        if not (item.isascii() and item.isdigit()) or not 1 <= int(item) <= 65535:
            raise ConfigurationError(
                f"--connect-ports {text!r}: expected port numbers (1-65535) "
                "separated by commas, such as 443,8443, or * for any port"
            )
        ports.add(int(item))
    return frozenset(ports)
