# -*- test-case-name: tests.test_client_address -*-
"""
What a user types, made into an address: the target (L{parseTarget}, which
returns the project's one L{twisted_proxy.http.target.Target}).  Proxy
addresses are L{twisted_proxy.client.proxies}'.

The client is more forgiving than the proxy's request-target parser, as a
person types: no scheme means C{http://}, a bare IPv6 address is accepted,
a non-ASCII host name is IDNA-encoded and a non-ASCII path is
percent-encoded.  Whatever is refused gets a one-line L{TargetError}.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote, urlsplit

from twisted_proxy.http.target import Target

__all__ = [
    "DEFAULT_PORTS",
    "DEFAULT_PROXY",
    "TargetError",
    "parseTarget",
    "makeTarget",
    "authorityForm",
    "bracketed",
    "formatHostPort",
    "checkHost",
]

DEFAULT_PORTS = {"http": 80, "https": 443}
DEFAULT_PROXY = ("127.0.0.1", 8080)

_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
# Characters left as they are in a request-target; everything else is
# percent-encoded (RFC 3986 pchar, "/" and "?" plus "%" of existing escapes).
_PATH_SAFE = "/?%:@!$&'()*+,;=-._~"


class TargetError(ValueError):
    """
    An address the user gave that cannot be requested.  C{str()} is a
    one-line explanation for a human.
    """


def bracketed(host: str) -> str:
    """
    The host as it appears in a URL or C{Host} field (IPv6 in brackets).
    """
    return "[" + host + "]" if ":" in host else host


def formatHostPort(host: str, port: int) -> str:
    """
    C{host:port}, with an IPv6 address in brackets.
    """
    return "{}:{}".format(bracketed(host), port)


def makeTarget(scheme: str, host: str, port: int, path: str = "/") -> Target:
    """
    The shared L{Target} for a normalised C{scheme}, C{host} (IPv6 without
    brackets), C{port} and ASCII origin-form C{path}: its C{authority} (the
    C{Host} field value) leaves out the scheme's default port.
    """
    if port == DEFAULT_PORTS[scheme]:
        authority = bracketed(host)
    else:
        authority = formatHostPort(host, port)
    return Target(scheme, host, port, path.encode("ascii"), authority.encode("ascii"))


def authorityForm(target: Target) -> str:
    """
    C{host:port} always: the request-target of a C{CONNECT} to C{target}.
    """
    return formatHostPort(target.host, target.port)


def checkHost(host: str, original: str) -> str:
    """
    Validate and normalise a host from a URL.

    @param host: the host, without brackets.
    @param original: what the user typed, for the error message.
    @return: a normalised IP address or ASCII host name.
    @raise TargetError: if C{host} is neither.
    """
    if ":" in host:
        if "%" in host:
            raise TargetError(
                "{!r}: IPv6 zone identifiers (%...) are not supported".format(original)
            )
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            raise TargetError("{!r} is not a valid IPv6 address".format(host)) from None
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    try:
        ascii = name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise TargetError("{!r} is not a valid IP address or host name".format(original)) from None
    labels = ascii.split(".")
    if len(ascii) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise TargetError("{!r} is not a valid IP address or host name".format(original))
    if labels[-1].isdigit():
        raise TargetError("{!r} is not a valid IPv4 address".format(host))
    return ascii


def parseTarget(text: str) -> Target:
    """
    Parse what a user typed at the prompt or on the command line.

    Accepted: an IPv4 address (C{93.184.216.34}), an IPv6 address
    (C{2001:db8::1} or C{[2001:db8::1]:8080}), a host name
    (C{example.com:8080/path}), or an C{http://} or C{https://} URL with
    optional port, path and query.  A fragment is dropped; non-ASCII in the
    path is percent-encoded and a non-ASCII host name IDNA-encoded.

    @return: the shared L{Target}, C{path} never empty.
    @raise TargetError: with a one-line explanation.
    """
    text = text.strip()
    if not text:
        raise TargetError(
            "no address given: type an IP address, a host name or a URL, "
            "e.g. 93.184.216.34 or http://example.com/"
        )
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        raise TargetError("{!r} is not an address: it contains spaces".format(text))
    if "://" in text:
        scheme, _, rest = text.partition("://")
        scheme = scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise TargetError(
                "{}:// addresses are not supported: use http:// or https://".format(scheme)
            )
    else:
        try:
            bare = ipaddress.IPv6Address(text)
        except ValueError:
            scheme, rest = "http", text
        else:
            return makeTarget("http", bare.compressed, 80)
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if not netloc:
        raise TargetError("{!r} has no host".format(text))
    if "@" in netloc:
        raise TargetError(
            "{!r}: user names and passwords in the address are not supported".format(text)
        )
    if netloc.count(":") > 1 and not netloc.startswith("["):
        raise TargetError(
            "{!r}: put an IPv6 address with a port or path in brackets, "
            "e.g. [2001:db8::1]:8080".format(text)
        )
    try:
        parts = urlsplit(scheme + "://" + rest)
        port = parts.port
    except ValueError:
        raise TargetError(
            "{!r} has an invalid host or port (a port is a number from 1 to 65535)".format(text)
        ) from None
    if port == 0:
        raise TargetError("{!r}: port 0 cannot be connected to".format(text))
    rawHost = parts.hostname
    if not rawHost:
        raise TargetError("{!r} has no host".format(text))
    host = checkHost(rawHost, text)
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_PATH_SAFE)
    return makeTarget(scheme, host, port or DEFAULT_PORTS[scheme], path)
