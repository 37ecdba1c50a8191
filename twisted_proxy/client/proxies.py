# -*- test-case-name: tests.test_client_proxies -*-
"""
Which proxy a request goes through, and with which credentials, the way
curl decides it.

  - The proxy: C{--proxy}, else the environment variable for the target's
    scheme (C{http_proxy} then C{HTTP_PROXY} for C{http://} targets,
    C{https_proxy} then C{HTTPS_PROXY} for C{https://} ones), else
    C{127.0.0.1:8080}.  A proxy is C{[http://][USER[:PASSWORD]@]HOST[:PORT][/]}
    (port 8080 by default); user and password are percent-decoded.
  - Credentials: C{--proxy-user USER[:PASSWORD]} if given, else those in
    the proxy URL.  They are sent as C{Proxy-Authorization: Basic} (RFC
    7617, UTF-8) on plain requests and on the C{CONNECT} of C{https://}
    targets, never inside the tunnel.
  - No proxy: C{--noproxy LIST}, else C{no_proxy}, else C{NO_PROXY}.  A
    target that matches (L{NoProxy}) is connected to directly.

Pure: no I/O.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .address import DEFAULT_PROXY, TargetError, checkHost, formatHostPort

__all__ = [
    "ProxyCredentials",
    "ProxyURL",
    "parseProxyURL",
    "parseProxyUser",
    "NoProxy",
    "Route",
    "chooseRoute",
]


@dataclass(frozen=True)
class ProxyCredentials:
    """
    A user name and password for the proxy.

    @ivar source: where they came from, for messages (C{"--proxy-user"},
        C{"--proxy"}, C{"$http_proxy"}, ...).
    """

    user: str
    password: str
    source: str = "--proxy-user"

    def authorization(self) -> bytes:
        """
        The C{Proxy-Authorization} field value: C{Basic} with
        C{user:password} in UTF-8, base64-encoded.
        """
        secret = (self.user + ":" + self.password).encode("utf-8")
        return b"Basic " + base64.b64encode(secret)

    def __repr__(self) -> str:
        # Never the password, even in a traceback or a debugger.
        return "ProxyCredentials(user={!r}, password=<redacted>, source={!r})".format(
            self.user, self.source
        )


def _checkCredential(text: str, what: str, original: str) -> None:
    """
    @raise TargetError: if C{text} cannot be sent in Basic credentials.
    """
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise TargetError("{}: the {} contains control characters".format(original, what))
    if what == "user name" and ":" in text:
        raise TargetError(
            "{}: a user name with ':' cannot be sent (Basic authentication "
            "separates user and password with ':')".format(original)
        )


@dataclass(frozen=True)
class ProxyURL:
    """
    A parsed proxy address.

    @ivar host: IP address (IPv6 without brackets) or lower-case host name.
    @ivar credentials: from the URL's user information, or L{None}.
    @ivar shown: the address as it may be shown: C{HOST:PORT}, never the
        password.
    """

    host: str
    port: int
    credentials: ProxyCredentials | None = None

    @property
    def shown(self) -> str:
        return formatHostPort(self.host, self.port)


def redactUserInfo(text: str) -> str:
    """
    C{text} with the password of any C{user:password@} replaced by
    C{****}, for messages about a proxy address.
    """
    scheme, sep, rest = text.rpartition("://")
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return text
    userinfo, _, hostport = authority.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    shown = user + (":****" if colon else "") + "@" + hostport
    return scheme + sep + shown + slash + path


def parseProxyURL(text: str, source: str = "--proxy") -> ProxyURL:
    """
    Parse a proxy address: C{HOST:PORT}, C{[IPv6]:PORT}, C{HOST} (port
    8080), optionally with C{http://} and with C{USER[:PASSWORD]@} (percent-
    encoded, as in C{http://alice:s%40cret@10.0.0.1:3128/}).

    @param source: where the text came from, recorded in the credentials.
    @raise TargetError: with a one-line explanation that never shows the
        password.
    """
    raw = text.strip()
    shown = repr(redactUserInfo(raw))
    if not raw:
        raise TargetError("the proxy address is empty")
    if "://" in raw:
        scheme, _, raw = raw.partition("://")
        if scheme.lower() != "http":
            raise TargetError(
                "{}: only http:// proxies are supported (proxyclient speaks plain "
                "HTTP to the proxy, and CONNECT for https:// targets)".format(shown)
            )
    raw = raw.split("/", 1)[0]
    credentials = None
    if "@" in raw:
        userinfo, _, raw = raw.rpartition("@")
        rawUser, _, rawPassword = userinfo.partition(":")
        try:
            user = unquote(rawUser, errors="strict")
            password = unquote(rawPassword, errors="strict")
        except UnicodeDecodeError:
            raise TargetError(
                "{}: the user name or password is not percent-encoded UTF-8".format(shown)
            ) from None
        if not user:
            raise TargetError("{}: the user name before '@' is empty".format(shown))
        _checkCredential(user, "user name", shown)
        _checkCredential(password, "password", shown)
        # As curl: a user without ':password' has an empty password.
        credentials = ProxyCredentials(user, password, source)
    if raw.count(":") > 1 and not raw.startswith("["):
        try:
            return ProxyURL(ipaddress.IPv6Address(raw).compressed, DEFAULT_PROXY[1], credentials)
        except ValueError:
            raise TargetError(
                "{}: write an IPv6 proxy address as [ADDRESS]:PORT".format(shown)
            ) from None
    try:
        parts = urlsplit("//" + raw)
        port = parts.port
    except ValueError:
        raise TargetError(
            "{} is not HOST:PORT (a port is a number from 1 to 65535)".format(shown)
        ) from None
    if not parts.hostname or port == 0:
        raise TargetError("{} is not HOST:PORT".format(shown))
    return ProxyURL(checkHost(parts.hostname, shown), port or DEFAULT_PROXY[1], credentials)


def parseProxyUser(text: str) -> tuple[str, str | None]:
    """
    Parse C{--proxy-user USER[:PASSWORD]}, as typed (not percent-encoded).

    @return: the user, and the password or L{None} when there is no C{:}
        (the password is then asked for).
    @raise TargetError: if it cannot be sent.
    """
    user, colon, password = text.partition(":")
    what = "--proxy-user " + repr(user + (":****" if colon else ""))
    if not user:
        raise TargetError("{}: the user name is empty".format(what))
    _checkCredential(user, "user name", what)
    _checkCredential(password, "password", what)
    return user, password if colon else None


# --- no_proxy -----------------------------------------------------------------


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class _Entry:
    """
    One C{no_proxy} entry: C{"*"}, a domain, or an address network; and a
    port or L{None} for any.
    """

    text: str
    domain: str | None = None
    network: _Network | None = None
    port: int | None = None
    everything: bool = False

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.everything:
            return True
        if self.network is not None:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                return False
            return address.version == self.network.version and address in self.network
        assert self.domain is not None
        return host == self.domain or host.endswith("." + self.domain)


def _parseEntry(text: str) -> _Entry | None:
    """
    Parse one entry; L{None} for one that cannot match anything (it is
    ignored, as curl ignores it).
    """
    entry = text.strip().lower()
    if not entry:
        return None
    if entry == "*":
        return _Entry(text, everything=True)
    port = None
    if entry.startswith("["):
        close = entry.find("]")
        if close == -1:
            return None
        rest = entry[close + 1 :]
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        elif rest:
            return None
        entry = entry[1:close]
    elif entry.count(":") == 1:
        name, _, portText = entry.partition(":")
        if not portText.isdigit():
            return None
        entry, port = name, int(portText)
    try:
        return _Entry(text, network=ipaddress.ip_network(entry, strict=False), port=port)
    except ValueError:
        pass
    if entry.startswith("*."):
        entry = entry[2:]
    entry = entry.strip(".")
    if not entry or "/" in entry or ":" in entry:
        return None
    return _Entry(text, domain=entry, port=port)


class NoProxy:
    """
    The hosts not to reach through a proxy: a C{no_proxy} list.

    Supported, as curl does: a comma-separated list (spaces around entries
    ignored); C{*} alone matches every host; a host name matches itself and
    its subdomains (C{example.com} and C{.example.com} both match
    C{example.com} and C{www.example.com}, not C{notexample.com});
    matching is case-insensitive and on the target's host as given, never
    on an address it resolves to; an IPv4 or IPv6 address (brackets
    optional) matches that address, and C{ADDRESS/BITS} a network (CIDR).
    Beyond curl: C{HOST:PORT} or C{[IPv6]:PORT} matches only that port.
    Entries that can match nothing are ignored.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._entries = [e for e in map(_parseEntry, text.split(",")) if e is not None]

    def match(self, host: str, port: int) -> str | None:
        """
        The first entry that matches C{host} and C{port}, as written, or
        L{None}.
        """
        for entry in self._entries:
            if entry.matches(host, port):
                return entry.text.strip()
        return None


# --- The choice -----------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """
    Where the client connects, and how.

    @ivar host: the proxy's host, or the origin's for a direct connection.
    @ivar port: its port.
    @ivar direct: whether this is the origin itself (a C{no_proxy} match).
    @ivar credentials: for the proxy, or L{None}.
    @ivar source: where the proxy came from: C{"--proxy"}, C{"$http_proxy"},
        ..., or C{"default"}.
    @ivar bypass: for a direct connection, which setting and entry asked
        for it, e.g. C{"$no_proxy entry '127.0.0.1'"}.
    """

    host: str
    port: int
    direct: bool = False
    credentials: ProxyCredentials | None = None
    source: str = "default"
    bypass: str | None = None

    @property
    def address(self) -> str:
        """
        C{HOST:PORT}, with brackets for IPv6.
        """
        return formatHostPort(self.host, self.port)

    @property
    def proxy(self) -> str | None:
        """
        The proxy's C{HOST:PORT}, or L{None} for a direct connection.
        """
        return None if self.direct else self.address

    def describe(self) -> str:
        """
        What is connected to, for a message: C{"the proxy at HOST:PORT"}, or
        C{"HOST:PORT directly ($no_proxy entry 'HOST')"}.
        """
        if self.direct:
            return "{} directly ({})".format(self.address, self.bypass)
        return "the proxy at " + self.address


_PROXY_VARIABLES = {
    "http": ("http_proxy", "HTTP_PROXY"),
    "https": ("https_proxy", "HTTPS_PROXY"),
}


def chooseRoute(
    scheme: str,
    host: str,
    port: int,
    environ: Mapping[str, str],
    proxyOption: str | None = None,
    noProxyOption: str | None = None,
    proxyUser: tuple[str, str] | None = None,
) -> Route:
    """
    Choose the route to a target.

    @param scheme: the target's scheme, C{"http"} or C{"https"}.
    @param host: the target's host (normalised, IPv6 without brackets).
    @param port: the target's port.
    @param environ: the environment (a mapping).
    @param proxyOption: C{--proxy}, if given.
    @param noProxyOption: C{--noproxy}, if given (C{""} disables C{no_proxy}).
    @param proxyUser: C{--proxy-user}'s user and password, if given.
    @raise TargetError: for an unusable setting, naming it.
    """
    get = environ.get
    if noProxyOption is not None:
        noProxy, noProxySource = noProxyOption, "--noproxy"
    else:
        noProxy, noProxySource = "", ""
        for name in ("no_proxy", "NO_PROXY"):
            value = get(name)
            if value:
                noProxy, noProxySource = value, "$" + name
                break
    entry = NoProxy(noProxy).match(host, port) if noProxy else None
    if entry is not None:
        return Route(
            host,
            port,
            direct=True,
            bypass="{} entry {!r}".format(noProxySource, entry),
        )
    proxyText, source = proxyOption, "--proxy"
    if proxyText is None:
        for name in _PROXY_VARIABLES[scheme]:
            value = get(name)
            if value:
                proxyText, source = value, "$" + name
                break
    if proxyText is None:
        proxy = ProxyURL(*DEFAULT_PROXY)
        source = "default"
    else:
        try:
            proxy = parseProxyURL(proxyText, source)
        except TargetError as e:
            raise TargetError("{}: {}".format(source, e)) from None
    credentials = proxy.credentials
    if proxyUser is not None:
        credentials = ProxyCredentials(proxyUser[0], proxyUser[1], "--proxy-user")
    return Route(proxy.host, proxy.port, credentials=credentials, source=source)
