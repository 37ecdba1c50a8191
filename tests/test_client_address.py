"""
Tests for L{twisted_proxy.client.address}: what a user types, made into
the shared L{Target} or a proxy address, and what is refused in one line.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_proxy.client.address import (
    TargetError,
    authorityForm,
    parseTarget,
)
from twisted_proxy.http.target import Target


def fields(target: Target) -> tuple[str, str, int, bytes, bytes]:
    return (target.scheme, target.host, target.port, target.path, target.authority)


class ParseTargetTests(SynchronousTestCase):
    """
    L{parseTarget} accepts addresses, host names and URLs, returns the
    project's one L{Target} type, and explains what it rejects.
    """

    def test_sharedType(self) -> None:
        """
        The result is L{twisted_proxy.http.target.Target}, equal to what the
        proxy's own parser makes of the same absolute-form request-target.
        """
        from twisted_proxy.http.target import parseTarget as parseRequestTarget

        target = parseTarget("Example.COM:8000/a?b")
        self.assertIsInstance(target, Target)
        self.assertEqual(
            target,
            parseRequestTarget(b"GET", b"http://example.com:8000/a?b", None),
        )

    def test_ipv4(self) -> None:
        target = parseTarget(" 93.184.216.34\n")
        self.assertEqual(fields(target), ("http", "93.184.216.34", 80, b"/", b"93.184.216.34"))
        self.assertEqual(target.url, "http://93.184.216.34/")
        self.assertEqual(authorityForm(target), "93.184.216.34:80")

    def test_ipv6(self) -> None:
        self.assertEqual(
            fields(parseTarget("2001:DB8:0::1")),
            ("http", "2001:db8::1", 80, b"/", b"[2001:db8::1]"),
        )
        target = parseTarget("[2001:db8::1]:8080/x")
        self.assertEqual(
            fields(target), ("http", "2001:db8::1", 8080, b"/x", b"[2001:db8::1]:8080")
        )
        self.assertEqual(target.url, "http://[2001:db8::1]:8080/x")
        self.assertEqual(authorityForm(target), "[2001:db8::1]:8080")

    def test_hostName(self) -> None:
        target = parseTarget("Example.COM:8000/a/b?q=1#frag")
        self.assertEqual(
            fields(target), ("http", "example.com", 8000, b"/a/b?q=1", b"example.com:8000")
        )
        self.assertEqual(target.url, "http://example.com:8000/a/b?q=1")

    def test_urls(self) -> None:
        self.assertEqual(
            fields(parseTarget("http://example.com")),
            ("http", "example.com", 80, b"/", b"example.com"),
        )
        target = parseTarget("HTTPS://example.com/")
        self.assertEqual(fields(target), ("https", "example.com", 443, b"/", b"example.com"))
        self.assertEqual(authorityForm(target), "example.com:443")
        self.assertEqual(
            fields(parseTarget("https://[::1]:8443/p")),
            ("https", "::1", 8443, b"/p", b"[::1]:8443"),
        )

    def test_defaultPortOmitted(self) -> None:
        self.assertEqual(parseTarget("http://example.com:80/").url, "http://example.com/")
        self.assertEqual(parseTarget("https://example.com:80/").url, "https://example.com:80/")

    def test_internationalised(self) -> None:
        target = parseTarget("http://bücher.example/ä b".replace(" ", "%20"))
        self.assertEqual(target.host, "xn--bcher-kva.example")
        self.assertEqual(target.path, b"/%C3%A4%20b")

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
