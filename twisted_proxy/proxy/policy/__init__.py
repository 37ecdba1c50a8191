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

from collections.abc import Sequence
from dataclasses import dataclass

from .auth import (
    DEFAULT_REALM,
    Htpasswd,
    UnsupportedScheme,
    challenge,
    parseBasicCredentials,
    printable,
)
from .clients import DEFAULT_CLIENT_NETWORKS, ClientACL, parseAddress, privateDestinationReason
from .destinations import DEFAULT_CONNECT_PORTS, DestinationRules, HostPatterns, parseConnectPorts
from .refusals import AuthenticationRequired, ConfigurationError, HtpasswdError, Refusal, Refused

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

_DESTINATION_IP_PROHIBITED = "destination_ip_prohibited"


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
        self._challenge = challenge(realm)

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
            rawUser, rawPassword = parseBasicCredentials(proxyAuthorization)
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
            rawUser, rawPassword = parseBasicCredentials(proxyAuthorization)
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
            rawUser, rawPassword = parseBasicCredentials(proxyAuthorization)
        except UnsupportedScheme:
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
                claimedUser=printable(user),
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
        address = parseAddress(ip)
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
        ports = "any" if self._connectPorts is None else _formatPorts(self._connectPorts)
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
