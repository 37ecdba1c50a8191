"""
Tests for L{twisted_proxy.http.fields} and L{twisted_proxy.http.target}.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.http.errors import BadRequest
from twisted_proxy.http.fields import (
    HOP_BY_HOP,
    REDACTED,
    SECRET_HEADERS,
    forwardRequestHeaders,
    forwardResponseHeaders,
    redactHeaders,
    redactValue,
    viaHasPseudonym,
)
from twisted_proxy.http.target import Target, parseTarget


class ParseTargetTests(SynchronousTestCase):
    """
    L{parseTarget} turns every request-target form into a L{Target}.
    """

    def assertTarget(
        self,
        method: bytes,
        target: bytes,
        host: bytes | None,
        expected: tuple[str, str, int, bytes, bytes],
    ) -> Target:
        t = parseTarget(method, target, host)
        self.assertEqual(
            (t.scheme, t.host, t.port, t.path, t.authority), expected, (method, target, host)
        )
        self.assertEqual(t, Target(*expected))
        return t

    def test_absoluteForm(self) -> None:
        for target, expected in [
            (b"http://example.com", ("http", "example.com", 80, b"/", b"example.com")),
            (b"http://example.com/", ("http", "example.com", 80, b"/", b"example.com")),
            (b"http://Example.COM/A/B", ("http", "example.com", 80, b"/A/B", b"example.com")),
            (b"HTTP://h/", ("http", "h", 80, b"/", b"h")),
            (b"http://h:8080/p?q=1", ("http", "h", 8080, b"/p?q=1", b"h:8080")),
            (b"http://h:80/p", ("http", "h", 80, b"/p", b"h")),
            (b"http://h?q=1", ("http", "h", 80, b"/?q=1", b"h")),
            (b"http://h/p?q#frag", ("http", "h", 80, b"/p?q", b"h")),
            (b"http://h#frag", ("http", "h", 80, b"/", b"h")),
            (b"http://127.0.0.1:65535/", ("http", "127.0.0.1", 65535, b"/", b"127.0.0.1:65535")),
            (b"http://h:1/", ("http", "h", 1, b"/", b"h:1")),
        ]:
            self.assertTarget(b"GET", target, b"ignored.example", expected)

    def test_absoluteFormIPv6(self) -> None:
        t = self.assertTarget(
            b"GET", b"http://[::1]:8000/", None, ("http", "::1", 8000, b"/", b"[::1]:8000")
        )
        self.assertEqual(t.url, "http://[::1]:8000/")
        self.assertTarget(b"GET", b"http://[::1]/x", None, ("http", "::1", 80, b"/x", b"[::1]"))
        self.assertTarget(
            b"GET",
            b"http://[2001:DB8:0::1]:80/",
            None,
            ("http", "2001:db8::1", 80, b"/", b"[2001:db8::1]"),
        )

    def test_originForm(self) -> None:
        t = self.assertTarget(
            b"GET",
            b"/x?y#z",
            b"Example.com:8080",
            ("http", "example.com", 8080, b"/x?y", b"example.com:8080"),
        )
        self.assertEqual(t.url, "http://example.com:8080/x?y")
        self.assertTarget(b"POST", b"/", b" h ", ("http", "h", 80, b"/", b"h"))
        self.assertTarget(b"GET", b"/", b"[::1]:8080", ("http", "::1", 8080, b"/", b"[::1]:8080"))
        self.assertTarget(b"GET", b"/", b"[::1]", ("http", "::1", 80, b"/", b"[::1]"))

    def test_asteriskForm(self) -> None:
        self.assertTarget(b"OPTIONS", b"*", b"h:81", ("http", "h", 81, b"*", b"h:81"))

    def test_authorityForm(self) -> None:
        t = self.assertTarget(
            b"CONNECT",
            b"example.com:443",
            None,
            ("https", "example.com", 443, b"", b"example.com:443"),
        )
        self.assertEqual(t.url, "example.com:443")
        self.assertTarget(b"CONNECT", b"h:22", b"h:22", ("tcp", "h", 22, b"", b"h:22"))
        self.assertTarget(
            b"CONNECT",
            b"[2001:db8::1]:443",
            None,
            ("https", "2001:db8::1", 443, b"", b"[2001:db8::1]:443"),
        )

    def test_errors(self) -> None:
        for method, target, host in [
            (b"GET", b"http://user@h/", None),
            (b"GET", b"http://user:pw@h/", None),
            (b"CONNECT", b"user@h:443", None),
            (b"GET", b"http://h:0/", None),
            (b"GET", b"http://h:65536/", None),
            (b"GET", b"http://h:abc/", None),
            (b"GET", b"http://h:123456/", None),
            (b"GET", b"http://h:-1/", None),
            (b"GET", b"https://h/", None),
            (b"GET", b"HTTPS://h/", None),
            (b"GET", b"ftp://h/", None),
            (b"GET", b"/", None),
            (b"GET", b"*", None),
            (b"GET", b"/", b""),
            (b"GET", b"/", b"a b"),
            (b"GET", b"/", b"h:0"),
            (b"GET", b"garbage", b"h"),
            (b"GET", b"", b"h"),
            (b"GET", b"http:///", None),
            (b"GET", b"http://h%41/", None),
            (b"GET", b"http://[zz]/", None),
            (b"GET", b"http://[::1/", None),
            (b"GET", b"http://[::1]x/", None),
            (b"GET", b"http://[127.0.0.1]/", None),
            (b"CONNECT", b"h", None),
            (b"CONNECT", b"h:", None),
            (b"CONNECT", b"h:443x", None),
            (b"CONNECT", b"[::1", None),
            (b"CONNECT", b":443", None),
            (b"CONNECT", b"/", b"h"),
        ]:
            e = self.assertRaises(BadRequest, parseTarget, method, target, host)
            self.assertEqual(e.status, 400, (method, target, host))
            self.assertTrue(e.detail, (method, target, host))


PSEUDONYM = b"proxy1"


class ForwardRequestHeadersTests(SynchronousTestCase):
    """
    L{forwardRequestHeaders} builds the header section sent to the origin.
    """

    target = Target("http", "origin.example", 8080, b"/", b"origin.example:8080")

    def forward(self, headers: list[tuple[bytes, bytes]], **kw: Any) -> list[tuple[bytes, bytes]]:
        return forwardRequestHeaders(headers, self.target, b"1.1", PSEUDONYM, **kw)

    def test_plain(self) -> None:
        """
        Host comes first, rebuilt from the target; end-to-end fields keep
        their order and case; Via is appended.
        """
        self.assertEqual(
            self.forward(
                [(b"Accept", b"*/*"), (b"Host", b"elsewhere"), (b"X-A", b"1"), (b"x-a", b"2")]
            ),
            [
                (b"Host", b"origin.example:8080"),
                (b"Accept", b"*/*"),
                (b"X-A", b"1"),
                (b"x-a", b"2"),
                (b"Via", b"1.1 proxy1"),
            ],
        )

    def test_hopByHop(self) -> None:
        """
        Every hop-by-hop field and every field named in Connection is
        removed, in any case.
        """
        headers = [
            (b"Connection", b"keep-alive, X-Secret, x-other"),
            (b"connection", b"Foo"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Proxy-Connection", b"keep-alive"),
            (b"TE", b"trailers"),
            (b"Trailer", b"X-Sum"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Upgrade", b"websocket"),
            (b"Proxy-Authenticate", b"Basic"),
            (b"X-Secret", b"s"),
            (b"X-OTHER", b"o"),
            (b"foo", b"f"),
            (b"X-Kept", b"k"),
        ]
        out = self.forward(headers)
        self.assertEqual(
            out, [(b"Host", b"origin.example:8080"), (b"X-Kept", b"k"), (b"Via", b"1.1 proxy1")]
        )
        for n, _ in out:
            self.assertNotIn(n.lower(), HOP_BY_HOP)

    def test_proxyAuthorizationNeverForwarded(self) -> None:
        """
        Proxy-Authorization is for this proxy, even when Connection does not
        name it and even when upgrading.
        """
        kws: list[dict[str, Any]] = [
            {},
            {"upgrade": True},
            {"forwarded": "xff", "clientHost": "10.0.0.1"},
        ]
        for kw in kws:
            out = self.forward(
                [(b"Proxy-Authorization", b"Basic dTpw"), (b"PROXY-AUTHORIZATION", b"x")], **kw
            )
            self.assertEqual([n for n, _ in out if n.lower() == b"proxy-authorization"], [], kw)

    def test_authorizationForwarded(self) -> None:
        out = self.forward([(b"Authorization", b"Bearer t")])
        self.assertIn((b"Authorization", b"Bearer t"), out)

    def test_viaAppended(self) -> None:
        """
        Our Via entry goes after the existing ones, combined into one field
        (RFC 9110 7.6.3), with the version as received.
        """
        out = forwardRequestHeaders(
            [(b"Via", b"1.1 a"), (b"X", b"y"), (b"via", b"1.0 b (comment)")],
            self.target,
            b"1.0",
            PSEUDONYM,
        )
        self.assertEqual(
            out,
            [
                (b"Host", b"origin.example:8080"),
                (b"X", b"y"),
                (b"Via", b"1.1 a, 1.0 b (comment), 1.0 proxy1"),
            ],
        )

    def test_upgradeKeptOnlyWhenUpgrading(self) -> None:
        headers = [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket"), (b"upgrade", b"h2c")]
        self.assertEqual(
            self.forward(headers, upgrade=True),
            [
                (b"Host", b"origin.example:8080"),
                (b"Connection", b"upgrade"),
                (b"Upgrade", b"websocket, h2c"),
                (b"Via", b"1.1 proxy1"),
            ],
        )
        self.assertEqual(
            self.forward(headers), [(b"Host", b"origin.example:8080"), (b"Via", b"1.1 proxy1")]
        )
        # Nothing to upgrade to: no Connection: upgrade either.
        self.assertEqual(
            self.forward([], upgrade=True),
            [(b"Host", b"origin.example:8080"), (b"Via", b"1.1 proxy1")],
        )

    def test_chunked(self) -> None:
        out = self.forward([(b"Transfer-Encoding", b"gzip, chunked"), (b"X", b"y")], chunked=True)
        self.assertEqual(
            out,
            [
                (b"Host", b"origin.example:8080"),
                (b"X", b"y"),
                (b"Transfer-Encoding", b"chunked"),
                (b"Via", b"1.1 proxy1"),
            ],
        )

    def test_xForwardedFor(self) -> None:
        out = self.forward(
            [(b"X-Forwarded-For", b"192.0.2.1"), (b"x-forwarded-for", b"192.0.2.2")],
            forwarded="xff",
            clientHost="10.0.0.7",
        )
        self.assertEqual(out[-1], (b"X-Forwarded-For", b"192.0.2.1, 192.0.2.2, 10.0.0.7"))
        out = self.forward([], forwarded="xff", clientHost="::1")
        self.assertEqual(out[-1], (b"X-Forwarded-For", b"::1"))

    def test_forwardedRFC7239(self) -> None:
        """
        RFC 7239: our element is appended; an IPv6 node is quoted and
        bracketed; a host with a colon is quoted.
        """
        out = self.forward(
            [(b"Forwarded", b"for=192.0.2.60;proto=http")],
            forwarded="rfc7239",
            clientHost="10.0.0.7",
        )
        self.assertEqual(
            out[-1],
            (
                b"Forwarded",
                b'for=192.0.2.60;proto=http, for=10.0.0.7;proto=http;host="origin.example:8080"',
            ),
        )
        target = Target("http", "h", 80, b"/", b"h")
        out = forwardRequestHeaders(
            [], target, b"1.1", PSEUDONYM, forwarded="rfc7239", clientHost="2001:db8::7"
        )
        self.assertEqual(out[-1], (b"Forwarded", b'for="[2001:db8::7]";proto=http;host=h'))

    def test_forwardedOff(self) -> None:
        """
        By default the client's address is not disclosed, and existing
        fields pass through unchanged.
        """
        out = self.forward(
            [(b"X-Forwarded-For", b"192.0.2.1"), (b"Forwarded", b"for=x")], clientHost="10.0.0.7"
        )
        self.assertEqual(
            out,
            [
                (b"Host", b"origin.example:8080"),
                (b"X-Forwarded-For", b"192.0.2.1"),
                (b"Forwarded", b"for=x"),
                (b"Via", b"1.1 proxy1"),
            ],
        )


class ForwardResponseHeadersTests(SynchronousTestCase):
    """
    L{forwardResponseHeaders} builds the header section sent to the client.
    """

    def test_hopByHopAndVia(self) -> None:
        out = forwardResponseHeaders(
            [
                (b"Connection", b"close, X-Hop"),
                (b"X-Hop", b"1"),
                (b"Keep-Alive", b"timeout=5"),
                (b"Transfer-Encoding", b"chunked"),
                (b"Proxy-Authenticate", b"Basic"),
                (b"Content-Type", b"text/plain"),
                (b"Via", b"1.1 origin-cache"),
                (b"Set-Cookie", b"a=b"),
            ],
            b"1.1",
            PSEUDONYM,
        )
        self.assertEqual(
            out,
            [
                (b"Content-Type", b"text/plain"),
                (b"Set-Cookie", b"a=b"),
                (b"Via", b"1.1 origin-cache, 1.1 proxy1"),
            ],
        )

    def test_connectionOptions(self) -> None:
        self.assertEqual(
            forwardResponseHeaders([], b"1.0", PSEUDONYM, close=True),
            [(b"Connection", b"close"), (b"Via", b"1.0 proxy1")],
        )
        self.assertEqual(
            forwardResponseHeaders([], b"1.1", PSEUDONYM, keepAlive10=True),
            [(b"Connection", b"keep-alive"), (b"Via", b"1.1 proxy1")],
        )

    def test_chunked(self) -> None:
        self.assertEqual(
            forwardResponseHeaders(
                [(b"Transfer-Encoding", b"chunked")], b"1.1", PSEUDONYM, chunked=True
            ),
            [(b"Transfer-Encoding", b"chunked"), (b"Via", b"1.1 proxy1")],
        )

    def test_upgrade(self) -> None:
        headers = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")]
        self.assertEqual(
            forwardResponseHeaders(headers, b"1.1", PSEUDONYM, upgrade=True, close=True),
            [(b"Connection", b"upgrade"), (b"Upgrade", b"websocket"), (b"Via", b"1.1 proxy1")],
        )
        self.assertEqual(
            forwardResponseHeaders(headers, b"1.1", PSEUDONYM),
            [(b"Via", b"1.1 proxy1")],
        )


class ViaTests(SynchronousTestCase):
    """
    L{viaHasPseudonym} detects a request that has been through us.
    """

    def test_found(self) -> None:
        for headers in [
            [(b"Via", b"1.1 proxy1")],
            [(b"via", b"1.0 a, HTTP/1.1 PROXY1 (twisted-proxy)")],
            [(b"Via", b"1.1 a"), (b"Via", b" 1.1 proxy1 ")],
        ]:
            self.assertTrue(viaHasPseudonym(headers, PSEUDONYM), headers)

    def test_notFound(self) -> None:
        for headers in [
            [],
            [(b"Via", b"1.1 proxy10")],
            [(b"Via", b"proxy1")],
            [(b"Via", b"1.1 other (proxy1)")],
            [(b"X-Via", b"1.1 proxy1")],
            [(b"Via", b"")],
        ]:
            self.assertFalse(viaHasPseudonym(headers, PSEUDONYM), headers)

    def test_roundTrip(self) -> None:
        """
        What L{forwardRequestHeaders} appends is what L{viaHasPseudonym}
        finds.
        """
        target = Target("http", "h", 80, b"/", b"h")
        out = forwardRequestHeaders([(b"Via", b"1.1 a")], target, b"1.1", PSEUDONYM)
        self.assertTrue(viaHasPseudonym(out, PSEUDONYM))
        self.assertFalse(viaHasPseudonym(out, b"proxy2"))


class RedactTests(SynchronousTestCase):
    """
    L{redactHeaders} and L{redactValue}: the one rule for what logs,
    history records and TRACE echoes never show.
    """

    def test_redact(self) -> None:
        """
        Credentials keep a known scheme; cookies lose their whole value;
        names keep their case; other fields are decoded as ISO-8859-1 and
        untouched.
        """
        self.assertEqual(
            redactHeaders(
                [
                    (b"Authorization", b"Basic dTpw"),
                    (b"PROXY-AUTHORIZATION", b"Basic dTpw"),
                    (b"Cookie", b"s=1"),
                    (b"set-cookie", b"s=1"),
                    (b"Accept", b"caf\xe9"),
                ]
            ),
            [
                ("Authorization", "Basic <redacted>"),
                ("PROXY-AUTHORIZATION", "Basic <redacted>"),
                ("Cookie", "<redacted>"),
                ("set-cookie", "<redacted>"),
                ("Accept", "caf\xe9"),
            ],
        )

    def test_text(self) -> None:
        """
        Text pairs (a record built from text) get the same rule.
        """
        self.assertEqual(
            redactHeaders([("cookie", "a=1"), ("Proxy-Authorization", "Bearer x.y.z")]),
            [("cookie", REDACTED), ("Proxy-Authorization", "Bearer " + REDACTED)],
        )

    def test_schemes(self) -> None:
        """
        The scheme stays visible only when it is a known one, in the case it
        was sent; an unknown first word might be the secret itself, and a
        value without credentials after the scheme shows nothing.
        """
        for value, expected in [
            ("Basic YWxpY2U6c2VjcmV0", "Basic <redacted>"),
            ("bearer eyJhbGciOi", "bearer <redacted>"),
            ('Digest username="alice", response="6629fae4"', "Digest <redacted>"),
            ("Negotiate YIIB", "Negotiate <redacted>"),
            ("NTLM TlRMTVNT", "NTLM <redacted>"),
            ("AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=ab", "AWS4-HMAC-SHA256 <redacted>"),
            ("  Basic   YWxp  ", "Basic <redacted>"),
            ("sometoken", REDACTED),
            ("s3cr3t-token trailing", REDACTED),
            ("Basic", REDACTED),
            ("", REDACTED),
        ]:
            self.assertEqual(redactValue("Authorization", value), expected, value)
            self.assertEqual(redactValue("proxy-authorization", value), expected, value)

    def test_whatIsSecret(self) -> None:
        """
        Exactly Authorization, Proxy-Authorization, Cookie and Set-Cookie
        are secret; challenges (WWW-Authenticate, Proxy-Authenticate), whose
        realm an operator needs to see, are not.
        """
        self.assertEqual(
            SECRET_HEADERS,
            {b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"},
        )
        for name in (
            "WWW-Authenticate",
            "Proxy-Authenticate",
            "Authentication-Info",
            "X-Cookie-Like",
            "Cookies",
        ):
            self.assertEqual(redactValue(name, 'Basic realm="proxy"'), 'Basic realm="proxy"')
        for name in ("Cookie", "SET-COOKIE"):
            self.assertEqual(redactValue(name, "Basic abc"), REDACTED)

    def test_noSecretSurvives(self) -> None:
        """
        Whatever the value, no octet of a secret field's credentials reaches
        the output.
        """
        for value in ["Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "Bearer a b c", "x y", "a=1; b=2"]:
            for name in ("Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie"):
                shown = redactValue(name, value)
                secret = value.split(" ", 1)[-1]
                self.assertNotIn(secret, shown.replace(REDACTED, ""), (name, value))
