# -*- test-case-name: tests.test_policy -*-
"""
Tests for L{twisted_proxy.proxy.policy}.

Every address here is only parsed: nothing is resolved or connected to.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import bcrypt
from passlib.context import CryptContext
from passlib.hash import (
    apr_md5_crypt,
    bcrypt as passlibBcrypt,
    ldap_sha1,
    md5_crypt,
    sha256_crypt,
    sha512_crypt,
)
from twisted.trial.unittest import SynchronousTestCase

from tests._typing import TestCaseMixin
from twisted_proxy.http.errors import Forbidden, ProxyAuthenticationRequired, ProxyError
from twisted_proxy.proxy.policy import (
    DEFAULT_CONNECT_PORTS,
    AuthenticationRequired,
    ClientACL,
    ConfigurationError,
    Decision,
    DestinationRules,
    Htpasswd,
    HtpasswdError,
    Policy,
    Refused,
    parseConnectPorts,
    privateDestinationReason,
)

_PASSWORD = "correct horse"


def _basic(user: bytes | str, password: bytes | str) -> bytes:
    """
    A C{Proxy-Authorization} value for C{user} and C{password} (C{str} is
    encoded as UTF-8).
    """
    if isinstance(user, str):
        user = user.encode("utf-8")
    if isinstance(password, str):
        password = password.encode("utf-8")
    return b"Basic " + base64.b64encode(user + b":" + password)


def _fastBcrypt(password: str | bytes, prefix: bytes = b"2b") -> str:
    """
    A cheap (cost 4) bcrypt hash made by the bcrypt library.
    """
    if isinstance(password, str):
        password = password.encode("utf-8")
    return bcrypt.hashpw(password, bcrypt.gensalt(rounds=4, prefix=prefix)).decode("ascii")


# One generator per supported htpasswd format.
_FORMATS: dict[str, Callable[[str], str]] = {
    "$2y$": lambda pw: passlibBcrypt.using(ident="2y", rounds=4).hash(pw),
    "$2b$": lambda pw: _fastBcrypt(pw, b"2b"),
    "$2a$": lambda pw: _fastBcrypt(pw, b"2a"),
    "$6$": lambda pw: sha512_crypt.using(rounds=1000).hash(pw),
    "$5$": lambda pw: sha256_crypt.using(rounds=1000).hash(pw),
    "$apr1$": lambda pw: apr_md5_crypt.hash(pw),
    "{SHA}": lambda pw: ldap_sha1.hash(pw),
}


class _TempFileMixin(TestCaseMixin):
    """
    Write files under a temporary directory removed after the test.
    """

    addCleanup: Callable[..., None]

    def writeFile(self, content: str | bytes, name: str = "htpasswd") -> str:
        if not hasattr(self, "_tempDir"):
            self._tempDir = tempfile.mkdtemp()
            self.addCleanup(shutil.rmtree, self._tempDir)
        path = os.path.join(self._tempDir, name)
        if isinstance(content, str):
            content = content.encode("utf-8")
        with open(path, "wb") as f:
            f.write(content)
        return path

    def htpasswd(self, entries: Sequence[tuple[str, str]]) -> str:
        """
        Write an htpasswd file of C{(user, hash)} entries.
        """
        return self.writeFile("".join(f"{u}:{h}\n" for u, h in entries))


def _policy(**kwargs: Any) -> Policy:
    return Policy.fromOptions(**kwargs)


class ClientACLTests(SynchronousTestCase):
    """
    L{ClientACL} and L{Policy.checkClient}.
    """

    def assertAllowed(self, acl: ClientACL, *ips: str) -> None:
        for ip in ips:
            self.assertIsNone(acl.check(ip), ip)

    def assertRefused(self, acl: ClientACL, rule: str, *ips: str) -> None:
        for ip in ips:
            refusal = acl.check(ip)
            self.assertIsInstance(refusal, Refused, ip)
            assert refusal is not None
            self.assertIsInstance(refusal, Forbidden)
            self.assertEqual(refusal.status, 403)
            self.assertEqual(refusal.rule, rule, ip)

    def test_defaultAllowsLoopbackAndPrivate(self) -> None:
        """
        With no rules, loopback and private networks (IPv4 and IPv6) are
        admitted.
        """
        self.assertAllowed(
            ClientACL(),
            "127.0.0.1",
            "127.255.255.254",
            "::1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fe80::1%eth0",
        )

    def test_defaultRefusesOthers(self) -> None:
        """
        With no rules, any other client is refused by the implicit deny.
        """
        self.assertRefused(
            ClientACL(),
            "implicit-deny",
            "203.0.113.5",
            "172.32.0.1",
            "11.0.0.1",
            "169.254.1.1",
            "2001:db8::1",
            "::2",
        )

    def test_ipv4MappedJudgedAsIPv4(self) -> None:
        """
        An IPv4-mapped IPv6 client is judged as its IPv4 address, both by
        the default and by explicit rules.
        """
        self.assertAllowed(ClientACL(), "::ffff:127.0.0.1", "::ffff:10.0.0.1")
        self.assertRefused(ClientACL(), "implicit-deny", "::ffff:203.0.113.5")
        acl = ClientACL([("allow", "203.0.113.0/24")])
        self.assertAllowed(acl, "::ffff:203.0.113.5", "203.0.113.5")
        self.assertRefused(acl, "implicit-deny", "::ffff:127.0.0.1")

    def test_ipv4MappedRuleBecomesIPv4(self) -> None:
        """
        A rule written as an IPv4-mapped network applies to IPv4 clients and
        is reported in IPv4 form.
        """
        acl = ClientACL([("deny", "::ffff:10.0.0.0/104")])
        self.assertRefused(acl, "deny 10.0.0.0/8", "10.1.1.1", "::ffff:10.1.1.1")
        self.assertAllowed(acl, "192.168.0.1")

    def test_firstMatchWinsIPv4(self) -> None:
        """
        The first rule that contains the address decides.
        """
        denyFirst = ClientACL([("deny", "10.0.0.5"), ("allow", "10.0.0.0/8")])
        self.assertRefused(denyFirst, "deny 10.0.0.5/32", "10.0.0.5")
        self.assertAllowed(denyFirst, "10.0.0.6")
        allowFirst = ClientACL([("allow", "10.0.0.0/8"), ("deny", "10.0.0.5")])
        self.assertAllowed(allowFirst, "10.0.0.5", "10.0.0.6")

    def test_firstMatchWinsIPv6(self) -> None:
        """
        First match wins for IPv6 rules too.
        """
        denyFirst = ClientACL([("deny", "2001:db8::5"), ("allow", "2001:db8::/32")])
        self.assertRefused(denyFirst, "deny 2001:db8::5/128", "2001:db8::5")
        self.assertAllowed(denyFirst, "2001:db8::6")
        allowFirst = ClientACL([("allow", "2001:db8::/32"), ("deny", "2001:db8::5")])
        self.assertAllowed(allowFirst, "2001:db8::5")
        self.assertRefused(allowFirst, "implicit-deny", "2001:db9::1", "10.0.0.1")

    def test_allowReplacesDefault(self) -> None:
        """
        Once an C{allow} rule is given, the default networks no longer
        apply.
        """
        acl = ClientACL([("allow", "203.0.113.0/24")])
        self.assertAllowed(acl, "203.0.113.9")
        self.assertRefused(acl, "implicit-deny", "127.0.0.1", "::1", "10.0.0.1")

    def test_denyOnlyCarvesFromDefault(self) -> None:
        """
        C{deny} rules alone are checked before the default networks.
        """
        acl = ClientACL([("deny", "10.9.0.0/16"), ("deny", "fd00::/8")])
        self.assertRefused(acl, "deny 10.9.0.0/16", "10.9.1.1")
        self.assertRefused(acl, "deny fd00::/8", "fd00::1")
        self.assertAllowed(acl, "10.8.1.1", "127.0.0.1", "fc00::1")
        self.assertRefused(acl, "implicit-deny", "203.0.113.1")

    def test_allowEverything(self) -> None:
        """
        C{0.0.0.0/0} and C{::/0} admit every client.
        """
        acl = ClientACL([("allow", "0.0.0.0/0"), ("allow", "::/0")])
        self.assertAllowed(acl, "203.0.113.1", "2001:db8::1", "::ffff:198.51.100.1")

    def test_unparseableClient(self) -> None:
        """
        A peer address that is not an IP address is refused.
        """
        self.assertRefused(
            ClientACL([("allow", "0.0.0.0/0")]),
            "client-address unparseable",
            "",
            "localhost",
            "/run/proxy.sock",
        )

    def test_badNetworks(self) -> None:
        """
        Bad networks are configuration errors naming the option; a network
        with host bits set is not silently widened.
        """
        for action, cidr in [
            ("allow", "10.0.0.0/33"),
            ("deny", "not-an-ip"),
            ("allow", ""),
            ("deny", "2001:db8::/129"),
        ]:
            e = self.assertRaises(ConfigurationError, ClientACL, [(action, cidr)])
            self.assertIn(f"--{action}", str(e))
        e = self.assertRaises(ConfigurationError, ClientACL, [("allow", "10.0.0.1/8")])
        self.assertIn("did you mean 10.0.0.0/8", str(e))
        self.assertIsInstance(e, ValueError)

    def test_badAction(self) -> None:
        """
        Only C{allow} and C{deny} are actions.
        """
        self.assertRaises(ConfigurationError, ClientACL, [("permit", "10.0.0.0/8")])

    def test_describe(self) -> None:
        """
        The description lists the rules in order and says when the default
        applies.
        """
        self.assertEqual(
            ClientACL([("deny", "10.0.0.5"), ("allow", "10.0.0.0/8")]).describe(),
            "clients: deny 10.0.0.5/32, allow 10.0.0.0/8, else deny",
        )
        described = ClientACL().describe()
        self.assertIn("allow 127.0.0.0/8", described)
        self.assertIn("allow fe80::/10", described)
        self.assertIn("default", described)

    def test_policyCheckClient(self) -> None:
        """
        L{Policy.checkClient} applies the C{clientRules} given to
        L{Policy.fromOptions}.
        """
        policy = _policy(clientRules=[("deny", "192.168.7.0/24")])
        self.assertIsNone(policy.checkClient("192.168.6.1"))
        refusal = policy.checkClient("192.168.7.1")
        assert refusal is not None
        self.assertEqual(refusal.rule, "deny 192.168.7.0/24")
        self.assertEqual(refusal.proxyStatus, "http_request_denied")


class DestinationRulesTests(SynchronousTestCase):
    """
    L{DestinationRules}: C{--deny-host} and C{--allow-host}.
    """

    def assertAllowed(self, rules: DestinationRules, allowedBy: str | None, *hosts: str) -> None:
        for host in hosts:
            self.assertEqual(rules.check(host), (None, allowedBy), host)

    def assertRefused(self, rules: DestinationRules, rule: str, *hosts: str) -> None:
        for host in hosts:
            refusal, allowedBy = rules.check(host)
            self.assertIsInstance(refusal, Refused, host)
            assert refusal is not None
            self.assertEqual(refusal.rule, rule, host)
            self.assertEqual(refusal.status, 403)
            self.assertIsNone(allowedBy)

    def test_noRules(self) -> None:
        """
        Without rules every host is allowed.
        """
        self.assertAllowed(DestinationRules(), None, "example.com", "10.0.0.1", "")

    def test_exactHost(self) -> None:
        """
        An exact pattern matches that host only, ignoring case and a
        trailing dot on either side.
        """
        rules = DestinationRules(denyHosts=["Example.COM."])
        self.assertRefused(
            rules,
            "deny-host Example.COM.",
            "example.com",
            "EXAMPLE.com.",
            "Example.Com",
        )
        self.assertAllowed(rules, None, "www.example.com", "example.com.evil", "badexample.com")

    def test_subdomainWildcard(self) -> None:
        """
        C{*.example.com} matches subdomains at any depth, but not example.com
        itself nor names merely ending in the same letters.
        """
        rules = DestinationRules(denyHosts=["*.example.com"])
        self.assertRefused(
            rules,
            "deny-host *.example.com",
            "a.example.com",
            "a.b.example.com",
            "WWW.Example.Com.",
        )
        self.assertAllowed(rules, None, "example.com", "badexample.com", "example.com.")

    def test_squidDomain(self) -> None:
        """
        C{.example.com} (Squid's form) matches example.com and its
        subdomains.
        """
        rules = DestinationRules(denyHosts=[".example.com"])
        self.assertRefused(rules, "deny-host .example.com", "example.com", "a.b.example.com")
        self.assertAllowed(rules, None, "badexample.com", "example.org")

    def test_regex(self) -> None:
        """
        C{re:} patterns must match the whole host, case-insensitively.
        """
        rules = DestinationRules(denyHosts=[r"re:ads?\d*\.example\.(com|net)"])
        self.assertRefused(
            rules,
            r"deny-host re:ads?\d*\.example\.(com|net)",
            "ad.example.com",
            "ADS42.example.net",
        )
        self.assertAllowed(rules, None, "ads.example.org", "x.ads.example.com")

    def test_regexPartialMatchIsNotEnough(self) -> None:
        """
        A regular expression that matches only part of the host does not
        match.
        """
        rules = DestinationRules(denyHosts=["re:ads"])
        self.assertAllowed(rules, None, "ads.example.com", "myads")
        self.assertRefused(rules, "deny-host re:ads", "ads", "ADS")

    def test_allowHosts(self) -> None:
        """
        With allow patterns, a host must match one of them; the decision
        names the one that did.
        """
        rules = DestinationRules(allowHosts=["*.example.org", "example.net"])
        self.assertAllowed(rules, "allow-host *.example.org", "www.example.org")
        self.assertAllowed(rules, "allow-host example.net", "example.net")
        self.assertRefused(rules, "allow-host none-matched", "example.org", "example.com", "")

    def test_denyBeatsAllow(self) -> None:
        """
        A deny match refuses even when an allow pattern matches too.
        """
        rules = DestinationRules(allowHosts=[".example.com"], denyHosts=["secret.example.com"])
        self.assertRefused(rules, "deny-host secret.example.com", "secret.example.com")
        self.assertAllowed(rules, "allow-host .example.com", "www.example.com")

    def test_nearestParentReported(self) -> None:
        """
        When several patterns match, an exact name is reported before the
        nearest parent domain, which is reported before regexes.
        """
        rules = DestinationRules(
            denyHosts=[
                "re:.*example.*",
                "*.example.com",
                "*.b.example.com",
                "a.b.example.com",
            ]
        )
        self.assertRefused(rules, "deny-host a.b.example.com", "a.b.example.com")
        self.assertRefused(rules, "deny-host *.b.example.com", "c.b.example.com")
        self.assertRefused(rules, "deny-host *.example.com", "c.example.com")
        self.assertRefused(rules, "deny-host re:.*example.*", "example.org")

    def test_ipLiterals(self) -> None:
        """
        IP literal hosts match patterns by value: brackets and IPv6 spelling
        do not matter.
        """
        rules = DestinationRules(denyHosts=["::1", "10.0.0.1", "[2001:DB8::1]"])
        self.assertRefused(rules, "deny-host ::1", "::1", "[0:0::1]", "0::0:1")
        self.assertRefused(rules, "deny-host 10.0.0.1", "10.0.0.1")
        self.assertRefused(rules, "deny-host [2001:DB8::1]", "2001:db8:0::1")
        self.assertAllowed(rules, None, "::2", "10.0.0.2")

    def test_badPatterns(self) -> None:
        """
        Malformed patterns are configuration errors naming the option.
        """
        for pattern in [
            "*",
            "*.",
            "foo*.com",
            "",
            ".",
            "*.*.example.com",
            "..x",
            "example.com:443",
            "*.::1",
            "exa mple.com",
            "example.com/path",
        ]:
            e = self.assertRaises(ConfigurationError, DestinationRules, denyHosts=[pattern])
            self.assertIn("--deny-host", str(e))
        e = self.assertRaises(ConfigurationError, DestinationRules, allowHosts=["re:("])
        self.assertIn("--allow-host", str(e))
        self.assertIn("regular expression", str(e))

    def test_describe(self) -> None:
        """
        The description lists both kinds of pattern.
        """
        self.assertEqual(DestinationRules().describe(), "hosts: deny-host none; allow-host any")
        self.assertEqual(
            DestinationRules(allowHosts=["a.org"], denyHosts=["*.b.org"]).describe(),
            "hosts: deny-host *.b.org; allow-host a.org",
        )


class ConnectPortTests(SynchronousTestCase):
    """
    C{--connect-ports}.
    """

    def test_parse(self) -> None:
        """
        One port, a comma-separated list, or C{*} for any.
        """
        self.assertEqual(parseConnectPorts("443"), frozenset({443}))
        self.assertEqual(parseConnectPorts(" 443, 8443 "), frozenset({443, 8443}))
        self.assertEqual(parseConnectPorts("1,65535"), frozenset({1, 65535}))
        self.assertIsNone(parseConnectPorts("*"))

    def test_parseErrors(self) -> None:
        """
        Anything else is a configuration error.
        """
        for text in ["", "0", "65536", "https", "443,*", "-1", "443,", "4 43", "٤٤٣"]:
            e = self.assertRaises(ConfigurationError, parseConnectPorts, text)
            self.assertIn("--connect-ports", str(e))

    def test_defaultIs443(self) -> None:
        """
        By default, C{CONNECT} may reach port 443 only.
        """
        self.assertEqual(DEFAULT_CONNECT_PORTS, frozenset({443}))
        policy = _policy()
        self.assertTrue(policy.checkRequest(b"CONNECT", "example.com", 443, None).allowed)
        decision = policy.checkRequest(b"CONNECT", "example.com", 22, None)
        refusal = decision.refusal
        self.assertIsInstance(refusal, Refused)
        assert refusal is not None
        self.assertEqual(refusal.status, 403)
        self.assertEqual(refusal.proxyStatus, "destination_ip_prohibited")
        self.assertEqual(refusal.rule, "connect-ports 443")
        self.assertEqual(decision.rule, "connect-ports 443")

    def test_list(self) -> None:
        """
        Listed ports are allowed, others refused; the rule lists them.
        """
        policy = _policy(connectPorts="8443,443")
        for port in (443, 8443):
            self.assertTrue(policy.checkRequest(b"CONNECT", "h", port, None).allowed)
        refusal = policy.checkRequest(b"CONNECT", "h", 80, None).refusal
        assert refusal is not None
        self.assertEqual(refusal.rule, "connect-ports 443,8443")

    def test_any(self) -> None:
        """
        C{*} allows every port.
        """
        policy = _policy(connectPorts="*")
        for port in (22, 25, 443, 65535):
            self.assertTrue(policy.checkRequest(b"CONNECT", "h", port, None).allowed)

    def test_onlyConnect(self) -> None:
        """
        The port set applies to C{CONNECT} only.
        """
        policy = _policy()
        for method in (b"GET", b"POST", b"connect"):
            self.assertTrue(policy.checkRequest(method, "h", 8080, None).allowed)


class PrivateDestinationTests(SynchronousTestCase):
    """
    C{--deny-private-destinations}: L{Policy.checkConnectedAddress}.
    """

    def setUp(self) -> None:
        self.policy = _policy(denyPrivateDestinations=True)

    def assertRefused(self, ip: str, network: str) -> None:
        refusal = self.policy.checkConnectedAddress(ip)
        self.assertIsInstance(refusal, Refused, ip)
        assert refusal is not None
        self.assertEqual(refusal.status, 403)
        self.assertEqual(refusal.proxyStatus, "destination_ip_prohibited")
        self.assertEqual(refusal.rule, f"deny-private-destinations {network}", ip)

    def test_refused(self) -> None:
        """
        Loopback, private, link-local, unspecified, multicast and reserved
        addresses are refused, and the rule names the network.
        """
        for ip, network in [
            ("127.0.0.1", "127.0.0.0/8"),
            ("::1", "::/8"),
            ("::ffff:127.0.0.1", "127.0.0.0/8"),
            ("10.20.30.40", "10.0.0.0/8"),
            ("172.16.0.1", "172.16.0.0/12"),
            ("192.168.0.1", "192.168.0.0/16"),
            ("169.254.169.254", "169.254.0.0/16"),
            ("fe80::1", "fe80::/10"),
            ("fe80::1%eth0", "fe80::/10"),
            ("[fe80::1]", "fe80::/10"),
            ("0.0.0.0", "0.0.0.0/8"),
            ("::", "::/8"),
            ("100.64.0.1", "100.64.0.0/10"),
            ("224.0.0.1", "224.0.0.0/4"),
            ("255.255.255.255", "240.0.0.0/4"),
            ("fc00::1", "fc00::/7"),
            ("fd00:ec2::254", "fc00::/7"),
            ("fec0::1", "fec0::/10"),
            ("ff02::1", "ff00::/8"),
            ("2001:db8::1", "2001:db8::/32"),
            ("2001::1", "2001::/23"),
            ("::127.0.0.1", "::/8"),
            ("64:ff9b::7f00:1", "127.0.0.0/8"),
            ("64:ff9b::a9fe:a9fe", "169.254.0.0/16"),
            ("2002:a00:1::1", "10.0.0.0/8"),
            ("::ffff:169.254.169.254", "169.254.0.0/16"),
        ]:
            self.assertRefused(ip, network)

    def test_publicAllowed(self) -> None:
        """
        Public unicast addresses are allowed, including IPv6 forms that lead
        to a public IPv4 address.
        """
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "::ffff:8.8.8.8",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ]:
            self.assertIsNone(self.policy.checkConnectedAddress(ip), ip)

    def test_agreesWithIpaddress(self) -> None:
        """
        Whatever Python's C{ipaddress} classes as loopback, private,
        link-local, multicast, unspecified or reserved is refused.
        """
        samples = [
            "127.1.2.3",
            "10.255.255.255",
            "172.31.0.1",
            "192.168.255.255",
            "169.254.0.1",
            "0.1.2.3",
            "224.1.1.1",
            "239.255.255.250",
            "240.0.0.1",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::abcd",
            "fd00::1",
            "ff05::2",
            "2001:db8:1::1",
            "100::1",
        ]
        for ip in samples:
            address = ipaddress.ip_address(ip)
            self.assertTrue(
                address.is_private
                or address.is_loopback
                or address.is_link_local
                or address.is_multicast
                or address.is_unspecified
                or address.is_reserved,
                ip,
            )
            self.assertIsNotNone(self.policy.checkConnectedAddress(ip), ip)
            self.assertIsNotNone(privateDestinationReason(address), ip)

    def test_unparseable(self) -> None:
        """
        Something that is not an IP address is refused, not waved through.
        """
        refusal = self.policy.checkConnectedAddress("localhost")
        assert refusal is not None
        self.assertEqual(refusal.rule, "deny-private-destinations unparseable")
        self.assertEqual(refusal.proxyStatus, "destination_ip_prohibited")

    def test_offByDefault(self) -> None:
        """
        Without the option nothing is refused.
        """
        policy = _policy()
        for ip in ["127.0.0.1", "::1", "169.254.169.254", "nonsense"]:
            self.assertIsNone(policy.checkConnectedAddress(ip))

    def test_reason(self) -> None:
        """
        L{privateDestinationReason} says which network and why.
        """
        self.assertEqual(
            privateDestinationReason(ipaddress.ip_address("127.0.0.1")),
            ("127.0.0.0/8", "loopback"),
        )
        self.assertIsNone(privateDestinationReason(ipaddress.ip_address("8.8.4.4")))


class HtpasswdFormatTests(_TempFileMixin, SynchronousTestCase):
    """
    L{Htpasswd} loads and verifies every supported format, and refuses the
    rest at load time.
    """

    def test_everyFormat(self) -> None:
        """
        Each supported format verifies the right password and refuses a
        wrong one.
        """
        entries = [(f"user{i}", make(_PASSWORD)) for i, make in enumerate(_FORMATS.values())]
        for (_, stored), prefix in zip(entries, _FORMATS, strict=True):
            self.assertTrue(stored.startswith(prefix), stored)
        htpasswd = Htpasswd(self.htpasswd(entries))
        self.assertEqual(len(htpasswd), len(_FORMATS))
        for user, _ in entries:
            self.assertEqual(htpasswd.authenticate(user.encode(), _PASSWORD.encode()), (user, None))
            self.assertEqual(
                htpasswd.authenticate(user.encode(), b"wrong"),
                (user, "wrong-password"),
            )

    def test_everyFormatThroughPolicy(self) -> None:
        """
        L{Policy.checkRequest} admits each format's user with the right
        password and names the user.
        """
        entries = [(f"u{i}", make(_PASSWORD)) for i, make in enumerate(_FORMATS.values())]
        policy = _policy(authFile=self.htpasswd(entries))
        for user, _ in entries:
            decision = policy.checkRequest(b"GET", "h", 80, _basic(user, _PASSWORD))
            self.assertEqual(decision, Decision(user=user))

    def assertLoadError(self, content: str | bytes, lineNumber: int | None) -> str:
        path = self.writeFile(content)
        e = self.assertRaises(HtpasswdError, Htpasswd, path)
        self.assertIsInstance(e, ValueError)
        self.assertEqual(e.path, path)
        self.assertEqual(e.lineNumber, lineNumber)
        message = str(e)
        self.assertIn(path, message)
        if lineNumber is not None:
            self.assertIn(f"line {lineNumber}", message)
        return message

    def test_plainTextRefused(self) -> None:
        """
        A plain-text entry is refused with the file, the line and what to
        do; the password is not repeated.
        """
        content = "# users\n\nalice:{}\nbob:hunter2\n".format(_fastBcrypt("x"))
        message = self.assertLoadError(content, 4)
        self.assertIn("plain-text", message)
        self.assertIn("'bob'", message)
        self.assertIn("htpasswd -B", message)
        self.assertNotIn("hunter2", message)

    def test_desCryptRefused(self) -> None:
        """
        DES crypt (13 characters, indistinguishable from plain text) is
        refused.
        """
        self.assertLoadError("bob:rqXexS6ZhobKA\n", 1)

    def test_unsupportedSchemeRefused(self) -> None:
        """
        A crypt scheme outside the supported set (here MD5 crypt, C{$1$}) is
        refused as unsupported.
        """
        message = self.assertLoadError("bob:" + md5_crypt.hash("pw") + "\n", 1)
        self.assertIn("unsupported hash scheme", message)

    def test_malformedHashRefused(self) -> None:
        """
        A hash with a supported prefix but a broken body is refused.
        """
        for stored in [
            "$2y$10$short",
            "$6$salt",
            "$6$salt$",
            "$apr1$",
            "{SHA}!",
            "{SHA}",
            "{SHA}AAAA",
        ]:
            message = self.assertLoadError(f"bob:{stored}\n", 1)
            self.assertIn("'bob'", message)

    def test_lineWithoutColon(self) -> None:
        """
        A line that is not C{user:hash} is refused.
        """
        self.assertLoadError("alice:{}\njust-a-name\n".format(_fastBcrypt("x")), 2)
        self.assertLoadError(":" + _fastBcrypt("x") + "\n", 1)

    def test_duplicateUser(self) -> None:
        """
        A user listed twice is ambiguous, so refused.
        """
        stored = _fastBcrypt("x")
        message = self.assertLoadError(f"bob:{stored}\nbob:{stored}\n", 2)
        self.assertIn("twice", message)

    def test_notUTF8(self) -> None:
        """
        A file that is not UTF-8 is refused at the offending line.
        """
        self.assertLoadError(b"j\xfcrgen:" + _fastBcrypt("x").encode() + b"\n", 1)

    def test_missingFile(self) -> None:
        """
        An unreadable file is a L{HtpasswdError} without a line number.
        """
        path = os.path.join(tempfile.gettempdir(), "no-such-dir-" + os.urandom(8).hex())
        e = self.assertRaises(HtpasswdError, Htpasswd, path)
        self.assertIsNone(e.lineNumber)
        self.assertIn("cannot read", str(e))

    def test_commentsBlankLinesCRLF(self) -> None:
        """
        Comments, blank lines and CRLF line ends are accepted.
        """
        path = self.writeFile(f"# comment\r\n\r\n  alice:{_fastBcrypt(_PASSWORD)}  \r\n")
        htpasswd = Htpasswd(path)
        self.assertEqual(len(htpasswd), 1)
        self.assertEqual(htpasswd.authenticate(b"alice", _PASSWORD.encode()), ("alice", None))

    def test_emptyFile(self) -> None:
        """
        An empty file loads; nobody can authenticate.
        """
        htpasswd = Htpasswd(self.writeFile(""))
        self.assertEqual(len(htpasswd), 0)
        self.assertEqual(htpasswd.authenticate(b"a", b"b"), ("a", "unknown-user"))

    def test_nonASCII(self) -> None:
        """
        Non-ASCII user names and passwords verify whether the client sends
        them as UTF-8 or as Latin-1.
        """
        htpasswd = Htpasswd(self.htpasswd([("jürgen", _fastBcrypt("pässwörd"))]))
        for encoding in ("utf-8", "latin-1"):
            self.assertEqual(
                htpasswd.authenticate("jürgen".encode(encoding), "pässwörd".encode(encoding)),
                ("jürgen", None),
                encoding,
            )
        self.assertEqual(
            htpasswd.authenticate("jürgen".encode(), b"passwort"),
            ("jürgen", "wrong-password"),
        )

    def test_longBcryptPassword(self) -> None:
        """
        bcrypt uses the first 72 bytes of a password, as Apache's htpasswd
        does when it creates the hash; a longer password does not error.
        """
        password = b"p" * 100
        htpasswd = Htpasswd(self.htpasswd([("alice", _fastBcrypt(password[:72]))]))
        self.assertEqual(htpasswd.authenticate(b"alice", password), ("alice", None))
        self.assertEqual(htpasswd.authenticate(b"alice", b"q" * 100), ("alice", "wrong-password"))


class AuthenticationTests(_TempFileMixin, SynchronousTestCase):
    """
    Proxy authentication through L{Policy.checkRequest}.
    """

    def setUp(self) -> None:
        self.path = self.htpasswd(
            [("alice", _fastBcrypt(_PASSWORD)), ("bob", _fastBcrypt("other"))]
        )
        self.policy = _policy(authFile=self.path)

    def refusal(self, value: bytes | None, policy: Policy | None = None) -> AuthenticationRequired:
        decision = (policy or self.policy).checkRequest(b"GET", "example.com", 80, value)
        self.assertFalse(decision.allowed)
        self.assertIsNone(decision.user)
        refusal = decision.refusal
        self.assertIsInstance(refusal, AuthenticationRequired)
        assert isinstance(refusal, AuthenticationRequired)
        self.assertIsInstance(refusal, ProxyAuthenticationRequired)
        self.assertEqual(refusal.status, 407)
        return refusal

    def test_success(self) -> None:
        """
        Right credentials: allowed, and the decision names the user.
        """
        decision = self.policy.checkRequest(b"GET", "example.com", 80, _basic("alice", _PASSWORD))
        self.assertTrue(decision.allowed)
        self.assertEqual(decision.user, "alice")
        self.assertIsNone(decision.refusal)
        self.assertIsNone(decision.rule)

    def test_missing(self) -> None:
        """
        No (or an empty) C{Proxy-Authorization}: 407 with the default
        realm's challenge.
        """
        for value in (None, b""):
            refusal = self.refusal(value)
            self.assertEqual(refusal.rule, "auth-file missing-credentials")
            self.assertEqual(
                refusal.headers,
                (("Proxy-Authenticate", 'Basic realm="twisted-proxy"'),),
            )
            self.assertIsNone(refusal.claimedUser)
            self.assertIn(
                ("Proxy-Authenticate", 'Basic realm="twisted-proxy"'),
                refusal.render("tp")[2],
            )

    def test_realm(self) -> None:
        """
        The realm is configurable and quoted.
        """
        policy = _policy(authFile=self.path, realm='Corp "HQ" \\ proxy')
        self.assertEqual(
            self.refusal(None, policy).headers,
            (("Proxy-Authenticate", 'Basic realm="Corp \\"HQ\\" \\\\ proxy"'),),
        )

    def test_badRealm(self) -> None:
        """
        A realm that cannot go in a header field is a configuration error.
        """
        for realm in ["", "a\r\nb", "caf\u00e9"]:
            e = self.assertRaises(ConfigurationError, _policy, authFile=self.path, realm=realm)
            self.assertIn("--auth-realm", str(e))

    def test_malformed(self) -> None:
        """
        Bad base64, no colon, or no credentials at all: 407, malformed.
        """
        for value in [
            b"Basic !!!notbase64",
            b"Basic YWxpY2U",
            b"Basic " + base64.b64encode(b"alice"),
            b"Basic",
            b"Basic   ",
        ]:
            refusal = self.refusal(value)
            self.assertEqual(refusal.rule, "auth-file malformed-credentials", value)
            self.assertTrue(refusal.detail.startswith("malformed"), refusal.detail)

    def test_otherScheme(self) -> None:
        """
        A scheme other than Basic: 407, unsupported scheme.
        """
        for value in [b'Digest username="alice"', b"Bearer abc", b"Basicx YQ=="]:
            self.assertEqual(self.refusal(value).rule, "auth-file unsupported-scheme")

    def test_schemeCaseAndWhitespace(self) -> None:
        """
        The scheme name is case-insensitive; surrounding whitespace is
        ignored.
        """
        token = _basic("alice", _PASSWORD)[len(b"Basic ") :]
        for value in [
            b"basic " + token,
            b"BASIC " + token,
            b"  Basic   " + token + b" ",
        ]:
            decision = self.policy.checkRequest(b"GET", "h", 80, value)
            self.assertEqual(decision.user, "alice", value)

    def test_wrongPassword(self) -> None:
        """
        A wrong password: 407; the claimed user is kept for the logs, the
        password appears nowhere.
        """
        decision = self.policy.checkRequest(b"GET", "h", 80, _basic("alice", "s3cr3t-guess"))
        refusal = decision.refusal
        assert isinstance(refusal, AuthenticationRequired)
        self.assertEqual(refusal.rule, "auth-file wrong-password")
        self.assertEqual(refusal.claimedUser, "alice")
        for text in [repr(decision), repr(refusal), refusal.detail, str(vars(refusal))]:
            self.assertNotIn("s3cr3t", text)
        self.assertEqual(self.refusal(_basic("bob", _PASSWORD)).claimedUser, "bob")

    def test_unknownUser(self) -> None:
        """
        An unknown user: 407 with the same detail as a wrong password, so a
        client cannot tell the two apart; the logs can.
        """
        unknown = self.refusal(_basic("mallory", _PASSWORD))
        wrong = self.refusal(_basic("alice", "nope"))
        self.assertEqual(unknown.rule, "auth-file unknown-user")
        self.assertEqual(unknown.claimedUser, "mallory")
        self.assertEqual(unknown.detail, wrong.detail)
        self.assertEqual(unknown.render("tp"), wrong.render("tp"))

    def test_claimedUserSanitized(self) -> None:
        """
        The claimed user name is made safe for a log line.
        """
        refusal = self.refusal(_basic(b"ev\nil\x1b[31m" + b"x" * 100, "pw"))
        self.assertEqual(refusal.claimedUser, "ev?il?[31m" + "x" * 54)

    def test_successHidesPassword(self) -> None:
        """
        An accepting decision holds the user name and nothing else about the
        credentials.
        """
        decision = self.policy.checkRequest(b"GET", "h", 80, _basic("alice", _PASSWORD))
        self.assertNotIn(_PASSWORD, repr(decision))
        self.assertEqual(decision, Decision(user="alice"))

    def test_authBeforeDestination(self) -> None:
        """
        Without credentials a denied destination answers 407, not 403, so
        the host rules cannot be probed anonymously; with credentials the
        403 still names the user.
        """
        policy = _policy(authFile=self.path, denyHosts=["example.com"])
        self.assertEqual(self.refusal(None, policy).rule, "auth-file missing-credentials")
        decision = policy.checkRequest(b"GET", "example.com", 80, _basic("alice", _PASSWORD))
        self.assertEqual(decision.user, "alice")
        self.assertIsInstance(decision.refusal, Refused)
        self.assertEqual(decision.rule, "deny-host example.com")
        connect = policy.checkRequest(b"CONNECT", "h", 22, None)
        self.assertEqual(connect.rule, "auth-file missing-credentials")

    def test_authOff(self) -> None:
        """
        Without an auth file, C{Proxy-Authorization} is ignored and no user
        is named.
        """
        policy = _policy()
        self.assertFalse(policy.authenticating)
        self.assertTrue(self.policy.authenticating)
        for value in (None, b"garbage", _basic("alice", _PASSWORD)):
            self.assertEqual(policy.checkRequest(b"GET", "h", 80, value), Decision())

    def test_refusalsAreProxyErrors(self) -> None:
        """
        Every refusal renders as a response whose C{Proxy-Status} says why.
        """
        status, _, headers, body = self.refusal(None).render("tp")
        self.assertEqual(status, 407)
        self.assertIn(
            (
                "Proxy-Status",
                'tp; error=http_request_denied; details="proxy authentication required"',
            ),
            headers,
        )
        self.assertTrue(body.startswith(b"407 "))
        self.assertIsInstance(self.refusal(None), ProxyError)


class _Counter:
    """
    Wrap a function and count its calls.

    @ivar function: the wrapper, a plain function (so it also works as a
        method when patched onto a class).
    """

    def __init__(self, wrapped: Callable[..., Any]) -> None:
        self.calls = 0

        def function(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return wrapped(*args, **kwargs)

        self.function = function


class VerificationCacheTests(_TempFileMixin, SynchronousTestCase):
    """
    Successful verifications are cached; failures too; reload clears both.
    """

    def setUp(self) -> None:
        self.path = self.htpasswd(
            [
                ("alice", _fastBcrypt(_PASSWORD)),
                ("carol", sha512_crypt.using(rounds=1000).hash(_PASSWORD)),
            ]
        )
        self.policy = _policy(authFile=self.path)
        self.verify = _Counter(CryptContext.verify)
        self.patch(CryptContext, "verify", self.verify.function)

    def check(self, user: str, password: str) -> Decision:
        return self.policy.checkRequest(b"GET", "h", 80, _basic(user, password))

    def test_cacheHitSkipsBcrypt(self) -> None:
        """
        Once a bcrypt user has verified, the same credentials again do not
        call the bcrypt library.
        """
        hashpw = _Counter(bcrypt.hashpw)
        self.patch(bcrypt, "hashpw", hashpw.function)
        self.assertEqual(self.check("alice", _PASSWORD).user, "alice")
        afterFirst = hashpw.calls
        self.assertGreaterEqual(afterFirst, 1)
        for _ in range(3):
            self.assertEqual(self.check("alice", _PASSWORD).user, "alice")
        self.assertEqual(hashpw.calls, afterFirst)

    def test_cacheHitSkipsHasher(self) -> None:
        """
        The same holds for other formats: the hasher is called once.
        """
        for _ in range(3):
            self.assertEqual(self.check("carol", _PASSWORD).user, "carol")
        self.assertEqual(self.verify.calls, 1)

    def test_wrongPasswordAfterSuccess(self) -> None:
        """
        A cached success does not admit a different password, which is
        verified.
        """
        self.check("alice", _PASSWORD)
        decision = self.check("alice", "guess")
        self.assertEqual(decision.rule, "auth-file wrong-password")
        self.assertEqual(self.verify.calls, 2)
        self.assertEqual(self.check("alice", _PASSWORD).user, "alice")
        self.assertEqual(self.verify.calls, 2)

    def test_failureCached(self) -> None:
        """
        The same wrong credentials again cost no second hash, and are still
        refused for the same reason.
        """
        for _ in range(3):
            self.assertEqual(self.check("alice", "guess").rule, "auth-file wrong-password")
            self.assertEqual(self.check("mallory", "guess").rule, "auth-file unknown-user")
        self.assertEqual(self.verify.calls, 2)
        self.check("alice", "guess2")
        self.assertEqual(self.verify.calls, 3)

    def test_unknownUserCostsAHash(self) -> None:
        """
        An unknown user is verified against a real entry, so it takes as
        long as a wrong password.
        """
        self.check("mallory", _PASSWORD)
        self.assertEqual(self.verify.calls, 1)

    def test_reloadClearsCache(self) -> None:
        """
        After L{Policy.reload}, cached credentials are verified again.
        """
        self.check("alice", _PASSWORD)
        self.check("alice", "guess")
        self.check("alice", _PASSWORD)
        self.check("alice", "guess")
        self.assertEqual(self.verify.calls, 2)
        self.policy.reload()
        self.assertEqual(self.check("alice", _PASSWORD).user, "alice")
        self.assertEqual(self.verify.calls, 3)
        self.check("alice", "guess")
        self.assertEqual(self.verify.calls, 4)

    def test_reloadReadsNewPasswords(self) -> None:
        """
        After the file changes and is reloaded, the old password is refused
        and the new one accepted.
        """
        self.assertEqual(self.check("alice", _PASSWORD).user, "alice")
        self.htpasswd([("alice", _fastBcrypt("new password"))])
        self.assertEqual(self.check("alice", _PASSWORD).user, "alice")
        self.policy.reload()
        self.assertEqual(self.check("alice", _PASSWORD).rule, "auth-file wrong-password")
        self.assertEqual(self.check("alice", "new password").user, "alice")
        self.assertEqual(self.check("carol", _PASSWORD).rule, "auth-file unknown-user")

    def test_reloadFailureKeepsOldUsers(self) -> None:
        """
        If the file has become unusable, reload raises and the previous
        users and cache stay in force.
        """
        self.check("alice", _PASSWORD)
        self.writeFile("alice:plaintext\n")
        e = self.assertRaises(HtpasswdError, self.policy.reload)
        self.assertEqual(e.lineNumber, 1)
        self.assertEqual(self.check("alice", _PASSWORD).user, "alice")
        self.assertEqual(self.check("carol", _PASSWORD).user, "carol")
        self.assertEqual(self.verify.calls, 2)

    def test_cacheBounded(self) -> None:
        """
        The success cache holds at most C{cacheSize} users, evicting the
        least recently used.
        """
        htpasswd = Htpasswd(
            self.htpasswd([(name, _fastBcrypt(_PASSWORD)) for name in ("a", "b", "c")])
        )
        htpasswd.cacheSize = 2
        password = _PASSWORD.encode()
        for name in (b"a", b"b", b"a", b"c"):
            htpasswd.authenticate(name, password)
        self.assertEqual(self.verify.calls, 3)
        htpasswd.authenticate(b"a", password)
        self.assertEqual(self.verify.calls, 3)
        htpasswd.authenticate(b"b", password)
        self.assertEqual(self.verify.calls, 4)

    def test_failureCacheBounded(self) -> None:
        """
        The failure cache holds at most C{failureCacheSize} credentials.
        """
        htpasswd = Htpasswd(self.path)
        htpasswd.failureCacheSize = 1
        htpasswd.authenticate(b"alice", b"one")
        htpasswd.authenticate(b"alice", b"two")
        htpasswd.authenticate(b"alice", b"one")
        self.assertEqual(self.verify.calls, 3)

    def test_reloadWithoutAuth(self) -> None:
        """
        L{Policy.reload} without an auth file does nothing.
        """
        policy = _policy()
        policy.reload()
        self.assertEqual(policy.checkRequest(b"GET", "h", 80, None), Decision())


class PolicyTests(_TempFileMixin, SynchronousTestCase):
    """
    L{Policy} as a whole: construction from options and description.
    """

    def test_defaults(self) -> None:
        """
        The defaults: private clients, no auth, any host, CONNECT to 443,
        private destinations allowed.
        """
        policy = _policy()
        self.assertIsNone(policy.checkClient("192.168.1.1"))
        self.assertIsNotNone(policy.checkClient("203.0.113.1"))
        self.assertTrue(policy.checkRequest(b"GET", "example.com", 80, None).allowed)
        self.assertFalse(policy.checkRequest(b"CONNECT", "example.com", 80, None).allowed)
        self.assertIsNone(policy.checkConnectedAddress("127.0.0.1"))

    def test_describe(self) -> None:
        """
        One line describing every part of the effective policy.
        """
        path = self.htpasswd([("alice", _fastBcrypt("x"))])
        policy = _policy(
            clientRules=[("allow", "10.0.0.0/8")],
            authFile=path,
            realm="corp",
            allowHosts=["*.example.org"],
            denyHosts=["bad.example.org"],
            connectPorts="8443,443",
            denyPrivateDestinations=True,
        )
        self.assertEqual(
            policy.describe(),
            "clients: allow 10.0.0.0/8, else deny; "
            f'auth: Basic realm "corp", 1 user from {path}; '
            "hosts: deny-host bad.example.org; allow-host *.example.org; "
            "CONNECT ports: 443,8443; private destinations: refused",
        )
        default = _policy().describe()
        self.assertNotIn("\n", default)
        self.assertIn("auth: none", default)
        self.assertIn("CONNECT ports: 443;", default)
        self.assertIn("private destinations: allowed", default)
        self.assertIn("CONNECT ports: any", _policy(connectPorts="*").describe())

    def test_fromOptionsErrors(self) -> None:
        """
        Every bad option is a L{ConfigurationError}, a L{ValueError}.
        """
        cases: list[dict[str, Any]] = [
            {"clientRules": [("allow", "bogus")]},
            {"authFile": os.path.join(tempfile.gettempdir(), os.urandom(8).hex())},
            {"allowHosts": ["re:["]},
            {"denyHosts": ["*"]},
            {"connectPorts": "ssh"},
            {"realm": "a\nb"},
        ]
        for kwargs in cases:
            self.assertRaises(ConfigurationError, _policy, **kwargs)
            self.assertRaises(ValueError, _policy, **kwargs)

    def test_destinationsThroughPolicy(self) -> None:
        """
        L{Policy.checkRequest} applies host rules and reports the admitting
        rule.
        """
        policy = _policy(allowHosts=[".example.org"], connectPorts="*")
        decision = policy.checkRequest(b"CONNECT", "www.example.org", 22, None)
        self.assertTrue(decision.allowed)
        self.assertEqual(decision.rule, "allow-host .example.org")
        decision = policy.checkRequest(b"GET", "example.com", 80, None)
        self.assertEqual(decision.rule, "allow-host none-matched")
        assert decision.refusal is not None
        self.assertEqual(decision.refusal.proxyStatus, "http_request_denied")

    def test_pureModule(self) -> None:
        """
        Importing the module imports nothing from C{twisted.internet}.
        """
        code = (
            "import sys, twisted_proxy.proxy.policy\n"
            "bad = [m for m in sys.modules if m.startswith('twisted.internet')]\n"
            "assert not bad, bad\n"
        )
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=root, capture_output=True, text=True
        )
        self.assertEqual(result.returncode, 0, result.stderr)
