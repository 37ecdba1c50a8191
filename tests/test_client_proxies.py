"""
Tests for L{twisted_proxy.client.proxies}: proxy URLs with credentials,
the environment variables, C{no_proxy}, and the choice of a route; and for
the 407 messages of L{twisted_proxy.client.errors}.
"""

from __future__ import annotations

import base64
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.client.address import TargetError
from twisted_proxy.client.errors import authenticationError, parseChallenges
from twisted_proxy.client.proxies import (
    NoProxy,
    ProxyCredentials,
    Route,
    chooseRoute,
    parseProxyURL,
    parseProxyUser,
)
from twisted_proxy.http.framing import ResponseHead


class ParseProxyURLTests(SynchronousTestCase):
    def test_forms(self) -> None:
        for text, expected in [
            ("127.0.0.1:8080", ("127.0.0.1", 8080)),
            ("proxy.example:3128", ("proxy.example", 3128)),
            ("Proxy.Example", ("proxy.example", 8080)),
            ("[::1]:3128", ("::1", 3128)),
            ("::1", ("::1", 8080)),
            ("http://10.0.0.1:3128/", ("10.0.0.1", 3128)),
            ("HTTP://10.0.0.1", ("10.0.0.1", 8080)),
        ]:
            proxy = parseProxyURL(text)
            self.assertEqual((proxy.host, proxy.port), expected, text)
            self.assertIsNone(proxy.credentials)

    def test_credentials(self) -> None:
        """
        User and password before C{@} are percent-decoded; the password may
        contain C{:} and C{@}; a user without C{:password} has an empty
        password, as in curl.
        """
        proxy = parseProxyURL("http://alice:s3cret@127.0.0.1:8080", "$http_proxy")
        self.assertEqual((proxy.host, proxy.port), ("127.0.0.1", 8080))
        self.assertEqual(proxy.credentials, ProxyCredentials("alice", "s3cret", "$http_proxy"))
        proxy = parseProxyURL("b%C3%B6b:p%40ss:w@rd@[::1]:3128")
        assert proxy.credentials is not None
        self.assertEqual(
            (proxy.credentials.user, proxy.credentials.password, proxy.host),
            ("böb", "p@ss:w@rd", "::1"),
        )
        proxy = parseProxyURL("http://alice@10.0.0.1")
        assert proxy.credentials is not None
        self.assertEqual(proxy.credentials.password, "")

    def test_authorization(self) -> None:
        """
        Basic, with C{user:password} in UTF-8 (RFC 7617); the password is
        never in the C{repr}.
        """
        credentials = ProxyCredentials("böb", "s3cret:x")
        value = credentials.authorization()
        self.assertTrue(value.startswith(b"Basic "))
        self.assertEqual(base64.b64decode(value[6:]), "böb:s3cret:x".encode())
        self.assertNotIn("s3cret", repr(credentials))

    def test_rejected(self) -> None:
        for text, words in [
            ("", "empty"),
            ("https://10.0.0.1:3128/", "only http://"),
            ("socks5://10.0.0.1:1080", "only http://"),
            ("10.0.0.1:99999", "HOST:PORT"),
            ("10.0.0.1:0", "HOST:PORT"),
            ("2001:db8::1:3128x", "[ADDRESS]:PORT"),
            ("http://:pw@10.0.0.1", "user name before '@' is empty"),
            ("http://a%3Ab:pw@10.0.0.1", "user name with ':'"),
            ("http://a:p%0Aw@10.0.0.1", "control characters"),
            ("http://a:%FF@10.0.0.1", "percent-encoded UTF-8"),
        ]:
            with self.assertRaises(TargetError, msg=text) as caught:
                parseProxyURL(text)
            self.assertIn(words, str(caught.exception), text)

    def test_passwordNeverInMessages(self) -> None:
        for text in [
            "https://alice:s3cret@10.0.0.1:3128/",
            "http://alice:s3cret@10.0.0.1:99999",
            "alice:s3cret@2001:db8::1:3128x",
            "http://alice:s3cret@-bad-.example:1",
        ]:
            with self.assertRaises(TargetError, msg=text) as caught:
                parseProxyURL(text)
            self.assertNotIn("s3cret", str(caught.exception), text)
            self.assertIn("alice:****@", str(caught.exception), text)


class ParseProxyUserTests(SynchronousTestCase):
    def test_forms(self) -> None:
        self.assertEqual(parseProxyUser("alice:s3cret"), ("alice", "s3cret"))
        self.assertEqual(parseProxyUser("alice:a:b"), ("alice", "a:b"))
        self.assertEqual(parseProxyUser("alice:"), ("alice", ""))
        self.assertEqual(parseProxyUser("alice"), ("alice", None))

    def test_rejected(self) -> None:
        for text, words in [(":pw", "empty"), ("a\x01:pw", "control"), ("a:p\nw", "control")]:
            with self.assertRaises(TargetError) as caught:
                parseProxyUser(text)
            self.assertIn(words, str(caught.exception))
            self.assertNotIn("pw", str(caught.exception).replace("password", ""))


class NoProxyTests(SynchronousTestCase):
    """
    The C{no_proxy} rules, entry by entry.
    """

    def assertMatches(self, rules: str, host: str, port: int, entry: str | None) -> None:
        self.assertEqual(NoProxy(rules).match(host, port), entry, (rules, host, port))

    def test_everything(self) -> None:
        self.assertMatches("*", "example.com", 80, "*")
        self.assertMatches(" * ", "10.0.0.1", 443, "*")
        # Only alone: "*" as part of a name is not a wildcard.
        self.assertMatches("*example.com", "www.example.com", 80, None)

    def test_domains(self) -> None:
        for rules in ("example.com", ".example.com", "*.example.com", "EXAMPLE.com."):
            self.assertMatches(rules, "example.com", 80, rules.strip())
            self.assertMatches(rules, "www.example.com", 80, rules.strip())
            self.assertMatches(rules, "a.b.example.com", 443, rules.strip())
            self.assertMatches(rules, "notexample.com", 80, None)
            self.assertMatches(rules, "example.com.evil", 80, None)

    def test_list(self) -> None:
        rules = " localhost , ,127.0.0.1,  .internal"
        self.assertMatches(rules, "localhost", 8000, "localhost")
        self.assertMatches(rules, "127.0.0.1", 8000, "127.0.0.1")
        self.assertMatches(rules, "db.internal", 5432, ".internal")
        self.assertMatches(rules, "example.com", 80, None)

    def test_addresses(self) -> None:
        """
        An address matches itself, literally (no resolution), IPv6 with or
        without brackets, and C{ADDRESS/BITS} a network.
        """
        self.assertMatches("127.0.0.1", "127.0.0.1", 80, "127.0.0.1")
        self.assertMatches("127.0.0.1", "127.0.0.2", 80, None)
        self.assertMatches("127.0.0.1", "localhost", 80, None)
        self.assertMatches("::1", "::1", 80, "::1")
        self.assertMatches("[::1]", "::1", 80, "[::1]")
        self.assertMatches("10.0.0.0/8", "10.20.30.40", 80, "10.0.0.0/8")
        self.assertMatches("10.0.0.0/8", "11.0.0.1", 80, None)
        self.assertMatches("fd00::/8", "fd12::1", 80, "fd00::/8")
        self.assertMatches("fd00::/8", "10.0.0.1", 80, None)
        self.assertMatches("192.168.0.0/16", "www.example.com", 80, None)

    def test_ports(self) -> None:
        self.assertMatches("example.com:8080", "example.com", 8080, "example.com:8080")
        self.assertMatches("example.com:8080", "www.example.com", 8080, "example.com:8080")
        self.assertMatches("example.com:8080", "example.com", 80, None)
        self.assertMatches("10.0.0.1:443", "10.0.0.1", 443, "10.0.0.1:443")
        self.assertMatches("10.0.0.1:443", "10.0.0.1", 80, None)
        self.assertMatches("[::1]:8000", "::1", 8000, "[::1]:8000")
        self.assertMatches("[::1]:8000", "::1", 80, None)

    def test_ignored(self) -> None:
        """
        Entries that can match nothing are skipped; the others still work.
        """
        self.assertMatches(
            "a:b:c/x,[::1,example.com:http,., ok.example", "ok.example", 1, "ok.example"
        )
        self.assertMatches("., *.", "example.com", 80, None)


class ChooseRouteTests(SynchronousTestCase):
    """
    L{chooseRoute}: C{--proxy}, the scheme's variables, the default; the
    credentials; C{no_proxy}.
    """

    def choose(
        self, scheme: str = "http", host: str = "example.com", port: int = 80, **kwargs: Any
    ) -> Route:
        environ = kwargs.pop("environ", {})
        return chooseRoute(scheme, host, port, environ, **kwargs)

    def test_proxyVariables(self) -> None:
        environ = {
            "http_proxy": "10.0.0.1:1",
            "HTTP_PROXY": "10.0.0.2:2",
            "https_proxy": "10.0.0.3:3",
            "HTTPS_PROXY": "10.0.0.4:4",
        }
        self.assertEqual(self.choose(environ=environ).address, "10.0.0.1:1")
        self.assertEqual(self.choose("https", environ=environ).address, "10.0.0.3:3")
        del environ["http_proxy"], environ["https_proxy"]
        self.assertEqual(self.choose(environ=environ).source, "$HTTP_PROXY")
        self.assertEqual(self.choose("https", environ=environ).address, "10.0.0.4:4")
        # As curl: https:// targets do not fall back to http_proxy.
        route = self.choose("https", environ={"http_proxy": "10.0.0.1:1"})
        self.assertEqual((route.address, route.source), ("127.0.0.1:8080", "default"))
        # Empty is unset.
        self.assertEqual(self.choose(environ={"http_proxy": ""}).source, "default")
        route = self.choose(environ=environ, proxyOption="[::1]:9")
        self.assertEqual(
            (route.address, route.source, route.proxy), ("[::1]:9", "--proxy", "[::1]:9")
        )

    def test_credentials(self) -> None:
        route = self.choose(environ={"http_proxy": "http://alice:s3cret@10.0.0.1:3128/"})
        self.assertEqual(route.credentials, ProxyCredentials("alice", "s3cret", "$http_proxy"))
        route = self.choose(
            proxyOption="http://alice:s3cret@10.0.0.1:3128/", proxyUser=("bob", "pw")
        )
        self.assertEqual(route.credentials, ProxyCredentials("bob", "pw", "--proxy-user"))
        self.assertIsNone(self.choose().credentials)

    def test_badSetting(self) -> None:
        with self.assertRaises(TargetError) as caught:
            self.choose("https", environ={"HTTPS_PROXY": "https://alice:s3cret@p:1"})
        self.assertTrue(str(caught.exception).startswith("$HTTPS_PROXY: 'https://alice:****@p:1'"))

    def test_noProxy(self) -> None:
        """
        A target that matches C{--noproxy}, C{no_proxy} or C{NO_PROXY} (in
        that order) is reached directly, whatever the proxy setting.
        """
        environ = {
            "no_proxy": "example.com",
            "NO_PROXY": "other.example",
            "http_proxy": "10.0.0.1:1",
        }
        route = self.choose(environ=environ, port=8000)
        self.assertEqual(
            (route.direct, route.address, route.proxy, route.bypass),
            (True, "example.com:8000", None, "$no_proxy entry 'example.com'"),
        )
        self.assertEqual(
            route.describe(), "example.com:8000 directly ($no_proxy entry 'example.com')"
        )
        self.assertTrue(self.choose(environ=environ, proxyOption="10.9.9.9:9").direct)
        self.assertFalse(self.choose(host="other.example", environ=environ).direct)
        del environ["no_proxy"]
        self.assertEqual(
            self.choose(host="other.example", environ=environ).bypass,
            "$NO_PROXY entry 'other.example'",
        )
        # --noproxy replaces the variables; '' turns them off.
        route = self.choose(host="other.example", environ=environ, noProxyOption="")
        self.assertEqual((route.direct, route.address), (False, "10.0.0.1:1"))
        route = self.choose(host="a.test", environ=environ, noProxyOption="a.test")
        self.assertEqual(route.bypass, "--noproxy entry 'a.test'")
        # The default proxy too.
        self.assertTrue(self.choose(host="127.0.0.1", environ={"no_proxy": "127.0.0.1"}).direct)


def head407(*challenges: bytes) -> ResponseHead:
    return ResponseHead(
        407,
        b"Proxy Authentication Required",
        b"1.1",
        [(b"Proxy-Authenticate", c) for c in challenges] + [(b"Content-Length", b"0")],
    )


class AuthenticationErrorTests(SynchronousTestCase):
    """
    A 407 says which realm asked and whether the credentials were missing
    or refused, in one line.
    """

    def test_challenges(self) -> None:
        self.assertEqual(
            parseChallenges([b'Basic realm="twisted-proxy"']),
            [("basic", {"realm": "twisted-proxy"})],
        )
        self.assertEqual(
            parseChallenges([b'Digest realm="a, \\"b\\"", qop=auth, basic REALM=r2', b"Negotiate"]),
            [
                ("digest", {"realm": 'a, "b"', "qop": "auth"}),
                ("basic", {"realm": "r2"}),
                ("negotiate", {}),
            ],
        )
        self.assertEqual(parseChallenges([b"", b" , "]), [])

    def test_missing(self) -> None:
        error = authenticationError(
            head407(b'Basic realm="office"'), "the proxy at 10.0.0.1:3128", None
        )
        self.assertEqual(
            error.message,
            'The proxy at 10.0.0.1:3128 requires credentials (Basic realm "office") and none '
            "were sent (407). Give them with --proxy-user USER or --proxy "
            "http://USER:PASSWORD@HOST:PORT.",
        )
        self.assertEqual((error.exitCode, error.status), (3, 407))

    def test_refused(self) -> None:
        error = authenticationError(
            head407(b'Negotiate, Basic realm="of\\"fice\x1b"'),
            "the proxy at 10.0.0.1:3128",
            "alice",
        )
        self.assertEqual(
            error.message,
            "The proxy at 10.0.0.1:3128 refused the credentials of user 'alice' "
            '(Basic realm "of"fice?") (407). Check the user name and password.',
        )

    def test_otherSchemes(self) -> None:
        error = authenticationError(
            head407(b'Digest realm="r", nonce="n"'), "the proxy at p:1", None
        )
        self.assertEqual(
            error.message,
            'The proxy at p:1 asks for Digest authentication (realm "r"), which proxyclient '
            "does not support (it sends Basic credentials) (407).",
        )
        error = authenticationError(head407(), "the proxy at p:1", None)
        self.assertIn("requires credentials (no Proxy-Authenticate challenge)", error.message)
