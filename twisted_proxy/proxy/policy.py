# -*- test-case-name: tests.test_policy -*-
"""
Access policy: who may use the proxy, as whom, and where they may go.

Data in, decision out.  This module never touches a socket, never resolves a
name and never imports C{twisted.internet}; the server calls it at three
points and acts on what it returns:

    1. L{Policy.checkClient}C{(ip)}, once per accepted connection: the client
       network rules (C{--allow}/C{--deny}).  Returns L{None} (admitted) or a
       L{Refused} (403).
    2. L{Policy.checkRequest}C{(method, host, port, proxyAuthorization)},
       once per request: proxy authentication first (C{--auth-file}), then the
       C{CONNECT} port set (C{--connect-ports}), then the destination host
       rules (C{--deny-host}/C{--allow-host}).  Returns a L{Decision}: the
       authenticated user (for logs; never the password) and either no
       refusal or an L{AuthenticationRequired} (407) / L{Refused} (403).
    3. L{Policy.checkConnectedAddress}C{(ip)}, by the upstream code once it
       knows the address it is actually connecting to, after DNS, so that
       DNS rebinding cannot bypass it (C{--deny-private-destinations}).
       Returns L{None} or a L{Refused} (403, C{destination_ip_prohibited}).

Every refusal is an L{errors.ProxyError} (so the server can render it) with a
C{rule} attribute naming the rule that matched, e.g.
C{"deny-host *.example.com"} or C{"deny 203.0.113.0/24"}, for the logs.

L{Policy.fromOptions} builds a policy from command-line values and raises a
L{ConfigurationError} (a L{ValueError}) with a message a human can act on
when they are wrong.  L{Policy.describe} renders the effective policy as one
line for the startup log.

Client networks
===============
Rules are C{("allow" | "deny", CIDR)} pairs in command-line order; the first
rule whose network contains the client address decides, and a client that
matches no rule is refused (C{rule="implicit-deny"}).  A bare address is a
C{/32} or C{/128} network; a network with host bits set (C{10.0.0.1/8}) is a
configuration error, not silently widened.  An IPv4-mapped IPv6 client
(C{::ffff:1.2.3.4}) is judged as its IPv4 address, and so are IPv4-mapped
rules.  When no C{--allow} is given, the default networks (loopback and
private: L{DEFAULT_CLIENT_NETWORKS}) are appended after the C{--deny} rules,
so C{--deny} alone carves holes out of the default; as soon as one
C{--allow} is given, the default no longer applies.

Proxy authentication
====================
L{Htpasswd} reads an Apache htpasswd file: bcrypt (C{$2y$}, C{$2b$},
C{$2a$}), SHA-512 and SHA-256 crypt (C{$6$}, C{$5$}), Apache MD5
(C{$apr1$}) and C{{SHA}}.  Any other entry (plain text, DES crypt, ...) is
refused when the file is loaded.  Hashes are verified by passlib (libpass)
and bcrypt.  Successful verifications are cached in memory (bounded, keyed by
user, holding a keyed SHA-256 of the credentials, compared in constant time)
so that bcrypt is not paid per request; recent failures are cached too, so a
misconfigured client retrying the same wrong password costs one hash, not
one per request.  L{Htpasswd.reload} re-reads the file and clears both
caches.

Destination hosts
=================
Patterns: C{example.com} (that host only), C{*.example.com} (subdomains of
example.com at any depth, I{not} example.com itself), C{.example.com} (Squid's
form: example.com I{and} its subdomains) and C{re:REGEX} (a case-insensitive
full match).  Hosts and patterns are compared in lower case without a
trailing dot; IPv6 literals in canonical form.  If any C{--deny-host} pattern
matches, the request is refused; if C{--allow-host} patterns exist and none
matches, it is refused.  These are rules about names: C{--deny-private-
destinations} is the check that holds whatever a name resolves to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from passlib.context import CryptContext

from twisted_proxy.http.errors import Forbidden, ProxyAuthenticationRequired

__all__ = [
    "DEFAULT_CLIENT_NETWORKS",
    "DEFAULT_CONNECT_PORTS",
    "DEFAULT_REALM",
    "AuthenticationRequired",
    "ClientACL",
    "ConfigurationError",
    "Decision",
    "DestinationRules",
    "Htpasswd",
    "HtpasswdError",
    "HostPatterns",
    "Policy",
    "Refusal",
    "Refused",
    "parseConnectPorts",
    "privateDestinationReason",
]

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_K = TypeVar("_K")
_V = TypeVar("_V")

DEFAULT_REALM = "twisted-proxy"
DEFAULT_CONNECT_PORTS: frozenset[int] = frozenset({443})
DEFAULT_CLIENT_NETWORKS: tuple[str, ...] = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
    "fe80::/10",
)

_DESTINATION_IP_PROHIBITED = "destination_ip_prohibited"
# Htpasswd._lookup: the caches do not know these credentials.
_UNKNOWN = object()


class ConfigurationError(ValueError):
    """
    A policy option has a value that cannot be used; the message says which
    and what to do.
    """


class HtpasswdError(ConfigurationError):
    """
    An htpasswd file cannot be used.

    @ivar path: the file.
    @ivar lineNumber: the 1-based line at fault, or L{None} when the problem
        is the whole file (unreadable, not UTF-8).
    """

    def __init__(self, path: str, lineNumber: int | None, message: str) -> None:
        where = path if lineNumber is None else f"{path}, line {lineNumber}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.lineNumber = lineNumber


class Refused(Forbidden):
    """
    A 403 by policy.

    @ivar rule: the rule that matched, for the logs, e.g.
        C{"deny-host *.example.com"}.
    """

    def __init__(
        self, detail: str, *, rule: str, proxyStatus: str | None = None
    ) -> None:
        super().__init__(detail, proxyStatus=proxyStatus)
        self.rule = rule

    def __repr__(self) -> str:
        return f"<Refused {self.proxyStatus} rule={self.rule!r}: {self.detail!r}>"


class AuthenticationRequired(ProxyAuthenticationRequired):
    """
    A 407: credentials are missing, malformed or wrong.  Carries the
    C{Proxy-Authenticate} challenge in C{headers}.

    @ivar rule: why, for the logs: C{"auth-file missing-credentials"},
        C{"auth-file malformed-credentials"},
        C{"auth-file unsupported-scheme"}, C{"auth-file unknown-user"} or
        C{"auth-file wrong-password"}.
    @ivar claimedUser: the user name the client sent (unverified; printable
        ASCII only, at most 64 characters), or L{None}.  Never the password.
    """

    def __init__(
        self,
        detail: str,
        *,
        rule: str,
        challenge: str,
        claimedUser: str | None = None,
    ) -> None:
        super().__init__(detail, headers=(("Proxy-Authenticate", challenge),))
        self.rule = rule
        self.claimedUser = claimedUser

    def __repr__(self) -> str:
        return (
            f"<AuthenticationRequired rule={self.rule!r} "
            f"claimedUser={self.claimedUser!r}>"
        )


Refusal = Refused | AuthenticationRequired


@dataclass(frozen=True)
class Decision:
    """
    The outcome of L{Policy.checkRequest}.

    @ivar user: the authenticated user name, or L{None} when authentication
        is off or failed.
    @ivar refusal: L{None} when the request may proceed, else the error to
        answer with.
    @ivar allowedBy: when the request may proceed and C{--allow-host} rules
        exist, the one that admitted it (e.g. C{"allow-host *.example.com"}).
    """

    user: str | None = None
    refusal: Refusal | None = None
    allowedBy: str | None = None

    @property
    def allowed(self) -> bool:
        return self.refusal is None

    @property
    def rule(self) -> str | None:
        """
        The rule that decided: the refusal's, or the admitting allow-host
        rule, or L{None}.
        """
        if self.refusal is not None:
            return self.refusal.rule
        return self.allowedBy


def _parseAddress(text: str) -> _IPAddress | None:
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
                raise ConfigurationError(
                    f"client rule {action!r}: expected 'allow' or 'deny'"
                )
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
        address = _parseAddress(ip)
        if address is None:
            return Refused(
                f"client address {ip!r} is not an IP address",
                rule="client-address unparseable",
            )
        for allow, network, text in self._rules:
            if address in network:
                if allow:
                    return None
                return Refused(
                    f"client {address} is not allowed to use this proxy", rule=text
                )
        return Refused(
            f"client {address} is not allowed to use this proxy",
            rule="implicit-deny",
        )

    def describe(self) -> str:
        rules = ", ".join(text for _, _, text in self._rules)
        if self._isDefault:
            rules += " (default: loopback and private networks)"
        return f"clients: {rules}, else deny"


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

    def __init__(
        self, allowHosts: Iterable[str] = (), denyHosts: Iterable[str] = ()
    ) -> None:
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


class _UnsupportedScheme(ValueError):
    """
    The C{Proxy-Authorization} value is not of the C{Basic} scheme.
    """


def _parseBasicCredentials(value: bytes) -> tuple[bytes, bytes]:
    """
    Parse a C{Proxy-Authorization} field value of the C{Basic} scheme
    (RFC 7617).

    @return: C{(user, password)} as the bytes the client sent.
    @raise _UnsupportedScheme: if the scheme is not C{Basic}.
    @raise ValueError: with a short reason, if the credentials are missing,
        not valid base64, or have no colon.
    """
    scheme, _, token = value.strip(b" \t").partition(b" ")
    if scheme.lower() != b"basic":
        raise _UnsupportedScheme("unsupported scheme")
    token = token.strip(b" \t")
    if not token:
        raise ValueError("no credentials after Basic")
    try:
        decoded = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("credentials are not valid base64") from None
    user, colon, password = decoded.partition(b":")
    if not colon:
        raise ValueError("credentials have no ':' between user and password")
    return user, password


def _b64(text: str) -> bytes:
    """
    Strict base64 decoding of C{text}.

    @raise ValueError: if it is not base64.
    """
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None


def _decodeText(raw: bytes) -> str:
    """
    Decode user-supplied credential bytes: UTF-8 (RFC 7617), else Latin-1
    (what older clients send).
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _printable(text: str, limit: int = 64) -> str:
    """
    C{text} made safe for a log line: printable ASCII only, bounded length.
    """
    return "".join(c if " " <= c <= "~" else "?" for c in text[:limit])


@dataclass(frozen=True)
class _Entry:
    """
    One user of an htpasswd file.

    @ivar hash: the stored hash.
    @ivar scheme: its passlib scheme name.
    """

    hash: str
    scheme: str


# The passlib schemes that verify the supported htpasswd formats.
_SCHEMES = ("bcrypt", "sha512_crypt", "sha256_crypt", "apr_md5_crypt", "ldap_sha1")
_SCHEME_NAMES = "bcrypt ($2y$, $2b$, $2a$), $6$, $5$, $apr1$ or {SHA}"
_BCRYPT_MAX_SECRET = 72


class Htpasswd:
    """
    An htpasswd file, loaded into memory, with a verification cache.

    Not thread-safe: call it from one thread (the reactor's).

    @cvar cacheSize: how many users' successful verifications to remember.
    @cvar failureCacheSize: how many recent failed credentials to remember.

    @ivar path: the file.
    @ivar _entries: user name to L{_Entry}.
    @ivar _timingEntry: an entry verified against when the user is unknown,
        so that an unknown user costs as much as a known one.
    @ivar _cacheKey: per-instance random key for the credential digests, so
        the caches hold nothing an attacker could brute-force offline.
    @ivar _verified: user to the digest of the credentials that last
        verified, most recently used last.
    @ivar _failed: digests of credentials that recently failed, most
        recently used last.
    """

    cacheSize = 1024
    failureCacheSize = 1024

    _context = CryptContext(schemes=list(_SCHEMES))

    def __init__(self, path: str) -> None:
        """
        Load C{path}.

        @raise HtpasswdError: if it cannot be read, or any entry is not a
            supported hash.
        """
        self.path = path
        self._cacheKey = os.urandom(32)
        self._verified: OrderedDict[str, bytes] = OrderedDict()
        self._failed: OrderedDict[bytes, None] = OrderedDict()
        # The caches are shared with the thread that verifies hashes.
        self._lock = threading.Lock()
        self._entries, self._timingEntry = self._load()

    def __len__(self) -> int:
        return len(self._entries)

    def reload(self) -> None:
        """
        Re-read the file and forget every cached verification.  If the file
        is now unusable, raise and keep the previous users and caches.

        @raise HtpasswdError: as L{__init__}.
        """
        entries, timingEntry = self._load()
        with self._lock:
            self._entries, self._timingEntry = entries, timingEntry
            self._verified.clear()
            self._failed.clear()

    def _load(self) -> tuple[dict[str, _Entry], _Entry | None]:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise HtpasswdError(
                self.path, None, f"cannot read the auth file: {e.strerror}"
            ) from None
        entries: dict[str, _Entry] = {}
        for number, rawLine in enumerate(data.splitlines(), 1):
            try:
                line = rawLine.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise HtpasswdError(self.path, number, "not UTF-8 text") from None
            if not line or line.startswith("#"):
                continue
            user, colon, stored = line.partition(":")
            if not colon or not user:
                raise HtpasswdError(
                    self.path,
                    number,
                    "expected 'user:hash'; create entries with "
                    f"'htpasswd -B {self.path} USER'",
                )
            if user in entries:
                raise HtpasswdError(
                    self.path,
                    number,
                    f"user {user!r} appears twice; keep one entry per user",
                )
            entries[user] = self._parseEntry(number, user, stored)
        timingEntry = next(iter(entries.values()), None)
        return entries, timingEntry

    def _parseEntry(self, number: int, user: str, stored: str) -> _Entry:
        scheme = self._context.identify(stored)
        if scheme is None:
            if stored.startswith("$"):
                what = "an unsupported hash scheme"
            else:
                what = "a plain-text (or DES crypt) password"
            raise HtpasswdError(
                self.path,
                number,
                f"user {user!r} has {what}, which twisted-proxy refuses; "
                f"store a hash instead: 'htpasswd -B {self.path} {user}' "
                f"(supported: {_SCHEME_NAMES})",
            )
        try:
            parsed = self._context.handler(scheme).from_string(stored)
            if not parsed.checksum:
                raise ValueError("it has a salt but no hash")
            if scheme == "ldap_sha1" and len(_b64(stored[5:])) != 20:
                raise ValueError("a SHA-1 digest is 20 bytes")
        except (ValueError, TypeError) as e:
            raise HtpasswdError(
                self.path,
                number,
                f"user {user!r} has a malformed {scheme} hash ({e}); "
                f"set the password again: 'htpasswd -B {self.path} {user}'",
            ) from None
        return _Entry(stored, scheme)

    def _verify(self, password: bytes, entry: _Entry) -> bool:
        if entry.scheme == "bcrypt":
            # bcrypt uses the first 72 bytes; Apache's htpasswd truncates
            # longer passwords when hashing, and bcrypt 5 refuses them.
            password = password[:_BCRYPT_MAX_SECRET]
        try:
            return bool(self._context.verify(password, entry.hash))
        except (ValueError, TypeError):
            return False

    def authenticate(
        self, rawUser: bytes, rawPassword: bytes
    ) -> tuple[str, str | None]:
        """
        Check credentials as sent by a client.

        @return: C{(user, None)} when they verify, else C{(claimedUser,
            reason)} with reason C{"unknown-user"} or C{"wrong-password"}.
        """
        user, digest, entry, known = self._lookup(rawUser, rawPassword)
        if known is not _UNKNOWN:
            return user, known  # type: ignore[return-value]
        if entry is None:
            if self._timingEntry is not None:
                self._verify(rawPassword, self._timingEntry)
            with self._lock:
                self._remember(self._failed, digest, None, self.failureCacheSize)
            return user, "unknown-user"
        candidates = [rawPassword]
        try:
            rawPassword.decode("utf-8")
        except UnicodeDecodeError:
            # Not UTF-8, so Latin-1 from an older client; the file was most
            # likely made from the UTF-8 spelling of the same password.
            candidates.append(rawPassword.decode("latin-1").encode("utf-8"))
        for candidate in candidates:
            if self._verify(candidate, entry):
                with self._lock:
                    self._remember(self._verified, user, digest, self.cacheSize)
                return user, None
        with self._lock:
            self._remember(self._failed, digest, None, self.failureCacheSize)
        return user, "wrong-password"

    def _lookup(
        self, rawUser: bytes, rawPassword: bytes
    ) -> tuple[str, bytes, _Entry | None, object]:
        """
        What the caches already know about these credentials.

        @return: C{(user, digest, entry, known)} where C{known} is L{None}
            (verified), a failure reason, or C{_UNKNOWN} (a hash must be
            checked).
        """
        user = _decodeText(rawUser)
        digest = hmac.new(
            self._cacheKey, rawUser + b":" + rawPassword, hashlib.sha256
        ).digest()
        with self._lock:
            entry = self._entries.get(user)
            cached = self._verified.get(user)
            if cached is not None and hmac.compare_digest(cached, digest):
                self._verified.move_to_end(user)
                return user, digest, entry, None
            if digest in self._failed:
                self._failed.move_to_end(digest)
                return user, digest, entry, (
                    "unknown-user" if entry is None else "wrong-password"
                )
        return user, digest, entry, _UNKNOWN

    def needsVerification(self, rawUser: bytes, rawPassword: bytes) -> bool:
        """
        Whether L{authenticate} would have to check a hash (slow: bcrypt
        takes tens to hundreds of milliseconds), rather than answer from its
        caches.
        """
        return self._lookup(rawUser, rawPassword)[3] is _UNKNOWN

    @staticmethod
    def _remember(cache: OrderedDict[_K, _V], key: _K, value: _V, size: int) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > size:
            cache.popitem(last=False)

    def describe(self) -> str:
        users = len(self._entries)
        return f"{users} user{'' if users == 1 else 's'} from {self.path}"


def _challenge(realm: str) -> str:
    """
    The C{Proxy-Authenticate} value for C{realm}.

    @raise ConfigurationError: if the realm has non-printable or non-ASCII
        characters.
    """
    if not realm or any(not " " <= c <= "~" for c in realm):
        raise ConfigurationError(
            f"--auth-realm {realm!r}: use printable ASCII characters only"
        )
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return f'Basic realm="{quoted}"'


class Policy:
    """
    The whole access policy; see the module docstring for how the server
    uses it.

    @ivar _clients: the client network rules.
    @ivar _auth: the htpasswd file, or L{None} when authentication is off.
    @ivar _destinations: the host rules.
    @ivar _connectPorts: ports C{CONNECT} may reach, or L{None} for any.
    @ivar _denyPrivateDestinations: whether L{checkConnectedAddress} refuses
        non-public addresses.
    @ivar _realm: the authentication realm.
    @ivar _challenge: the C{Proxy-Authenticate} value.
    """

    def __init__(
        self,
        clientNetworks: ClientACL,
        auth: Htpasswd | None,
        destinations: DestinationRules,
        connectPorts: frozenset[int] | None,
        denyPrivateDestinations: bool,
        realm: str = DEFAULT_REALM,
    ) -> None:
        """
        @raise ConfigurationError: if the realm is unusable.
        """
        self._clients = clientNetworks
        self._auth = auth
        self._destinations = destinations
        self._connectPorts = connectPorts
        self._denyPrivateDestinations = denyPrivateDestinations
        self._realm = realm
        self._challenge = _challenge(realm)

    @classmethod
    def fromOptions(
        cls,
        *,
        clientRules: Sequence[tuple[str, str]] = (),
        authFile: str | None = None,
        realm: str = DEFAULT_REALM,
        allowHosts: Sequence[str] = (),
        denyHosts: Sequence[str] = (),
        connectPorts: str = "443",
        denyPrivateDestinations: bool = False,
    ) -> Policy:
        """
        Build a policy from command-line values.

        @param clientRules: C{--allow}/C{--deny} values as C{("allow" |
            "deny", CIDR)} in command-line order (order matters: first match
            wins).
        @param authFile: C{--auth-file}, or L{None} for no authentication.
        @param realm: C{--auth-realm}.
        @param allowHosts: C{--allow-host} patterns.
        @param denyHosts: C{--deny-host} patterns.
        @param connectPorts: C{--connect-ports}: C{"443"}, C{"443,8443"}, C{"*"}.
        @param denyPrivateDestinations: C{--deny-private-destinations}.

        @raise ConfigurationError: (a L{ValueError}) saying which option is
            wrong and how.
        """
        return cls(
            ClientACL(clientRules),
            Htpasswd(authFile) if authFile is not None else None,
            DestinationRules(allowHosts, denyHosts),
            parseConnectPorts(connectPorts),
            denyPrivateDestinations,
            realm,
        )

    @property
    def authenticating(self) -> bool:
        """
        Whether requests must carry proxy credentials.
        """
        return self._auth is not None

    def reload(self) -> None:
        """
        Re-read the htpasswd file (if any), clearing its cache.

        @raise HtpasswdError: if the file is now unusable; the previous users
            stay in force.
        """
        if self._auth is not None:
            self._auth.reload()

    def checkClient(self, ip: str) -> Refused | None:
        """
        Judge a newly accepted client connection.

        @param ip: the peer's address as text.
        @return: L{None}, or a L{Refused} to answer with before closing.
        """
        return self._clients.check(ip)

    def checkRequest(
        self,
        method: bytes,
        host: str,
        port: int,
        proxyAuthorization: bytes | None,
    ) -> Decision:
        """
        Judge one request from an admitted client: authentication, then the
        C{CONNECT} port, then the destination host.

        @param method: the request method, e.g. C{b"GET"}, C{b"CONNECT"}.
        @param host: the destination host name or IP literal.
        @param port: the destination port.
        @param proxyAuthorization: the C{Proxy-Authorization} field value, or
            L{None} if absent.
        """
        user = None
        if self._auth is not None:
            user, failure = self._authenticate(proxyAuthorization)
            if failure is not None:
                return Decision(refusal=failure)
        if (
            method == b"CONNECT"
            and self._connectPorts is not None
            and port not in self._connectPorts
        ):
            return Decision(
                user=user,
                refusal=Refused(
                    f"CONNECT to port {port} is not allowed "
                    f"(allowed: {_formatPorts(self._connectPorts)})",
                    rule=f"connect-ports {_formatPorts(self._connectPorts)}",
                    proxyStatus=_DESTINATION_IP_PROHIBITED,
                ),
            )
        refusal, allowedBy = self._destinations.check(host)
        return Decision(user=user, refusal=refusal, allowedBy=allowedBy)

    def pendingVerification(self, proxyAuthorization: bytes | None) -> bool:
        """
        Whether judging these credentials means checking a password hash,
        which a server should do off its event loop (L{verify}) before
        calling L{checkRequest}, which then answers from the cache.
        """
        if self._auth is None or not proxyAuthorization:
            return False
        try:
            rawUser, rawPassword = _parseBasicCredentials(proxyAuthorization)
        except ValueError:
            return False
        return self._auth.needsVerification(rawUser, rawPassword)

    def verify(self, proxyAuthorization: bytes) -> None:
        """
        Check these credentials' hash and remember the outcome, so that
        L{checkRequest} answers from the cache.  Safe to call in a thread.
        """
        if self._auth is None:
            return
        try:
            rawUser, rawPassword = _parseBasicCredentials(proxyAuthorization)
        except ValueError:
            return
        self._auth.authenticate(rawUser, rawPassword)

    def _authenticate(
        self, proxyAuthorization: bytes | None
    ) -> tuple[str | None, AuthenticationRequired | None]:
        assert self._auth is not None
        if not proxyAuthorization:
            return None, AuthenticationRequired(
                "proxy authentication required",
                rule="auth-file missing-credentials",
                challenge=self._challenge,
            )
        try:
            rawUser, rawPassword = _parseBasicCredentials(proxyAuthorization)
        except _UnsupportedScheme:
            return None, AuthenticationRequired(
                "only Basic proxy authentication is supported",
                rule="auth-file unsupported-scheme",
                challenge=self._challenge,
            )
        except ValueError as e:
            return None, AuthenticationRequired(
                f"malformed Proxy-Authorization: {e}",
                rule="auth-file malformed-credentials",
                challenge=self._challenge,
            )
        user, reason = self._auth.authenticate(rawUser, rawPassword)
        if reason is not None:
            return None, AuthenticationRequired(
                "wrong user name or password",
                rule=f"auth-file {reason}",
                challenge=self._challenge,
                claimedUser=_printable(user),
            )
        return user, None

    def checkConnectedAddress(self, ip: str) -> Refused | None:
        """
        Judge the address the upstream connection is actually being made to
        (after DNS).  Only refuses when C{--deny-private-destinations} is
        on.

        @param ip: the address as text.
        @return: L{None}, or a L{Refused} with C{destination_ip_prohibited}.
        """
        if not self._denyPrivateDestinations:
            return None
        address = _parseAddress(ip)
        if address is None:
            return Refused(
                f"destination address {ip!r} is not an IP address",
                rule="deny-private-destinations unparseable",
                proxyStatus=_DESTINATION_IP_PROHIBITED,
            )
        found = privateDestinationReason(address)
        if found is None:
            return None
        network, why = found
        return Refused(
            f"connecting to {address} ({why}) is not allowed",
            rule=f"deny-private-destinations {network}",
            proxyStatus=_DESTINATION_IP_PROHIBITED,
        )

    def describe(self) -> str:
        """
        The effective policy, in one line, for the startup log.
        """
        if self._auth is None:
            auth = "auth: none"
        else:
            auth = f'auth: Basic realm "{self._realm}", {self._auth.describe()}'
        ports = (
            "any" if self._connectPorts is None else _formatPorts(self._connectPorts)
        )
        private = "refused" if self._denyPrivateDestinations else "allowed"
        return "; ".join(
            [
                self._clients.describe(),
                auth,
                self._destinations.describe(),
                f"CONNECT ports: {ports}",
                f"private destinations: {private}",
            ]
        )


def _formatPorts(ports: frozenset[int]) -> str:
    return ",".join(str(p) for p in sorted(ports))
