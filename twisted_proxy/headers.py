# -*- test-case-name: tests.test_headers -*-
"""
Header rules a forward proxy applies (RFC 9110, RFC 9112, RFC 7239).

  - L{parseTarget}: the request-target in absolute-, origin- (with C{Host}),
    authority- (CONNECT) and asterisk-form, with IPv6 literals, to a
    L{Target}.
  - L{forwardRequestHeaders} / L{forwardResponseHeaders}: remove hop-by-hop
    fields (C{Connection} and every field it names, C{Keep-Alive},
    C{Proxy-Connection}, C{Proxy-Authorization}, C{TE}, C{Trailer},
    C{Transfer-Encoding}, C{Upgrade} unless an upgrade is performed), rebuild
    C{Host} from the target, append C{Via} (RFC 9110 7.6.3), and optionally
    C{X-Forwarded-For} or C{Forwarded}.
  - L{viaHasPseudonym}: loop detection on C{Via}.
  - L{redactHeaders}: header values that must not reach a log.

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

import ipaddress
import re

from .errors import BadRequest

__all__ = [
    "Target",
    "parseTarget",
    "HOP_BY_HOP",
    "forwardRequestHeaders",
    "forwardResponseHeaders",
    "viaHasPseudonym",
    "redactHeaders",
    "SECRET_HEADERS",
]

# Fields that describe one connection, never the message (RFC 9110 7.6.1),
# plus the framing fields we regenerate ourselves.
HOP_BY_HOP = frozenset(
    [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    ]
)

SECRET_HEADERS = frozenset([b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"])

# RFC 3986 reg-name, without percent-encoding (no real host needs it).
_REG_NAME = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=]+")
_PORT = re.compile(rb"[0-9]{1,5}")


class Target:
    """
    Where a request goes.

    @ivar scheme: C{"http"} (or C{"https"} for a CONNECT to port 443 in
        history; the proxy only speaks plain HTTP to origins).
    @ivar host: host name (lower case) or IP address, without brackets.
    @ivar port: the TCP port.
    @ivar path: the origin-form target to send upstream (C{b"/"} when the
        absolute-form had no path; C{b"*"} for asterisk-form).
    @ivar authority: the C{Host} field value to send: C{host[:port]}, with
        brackets around an IPv6 address and no port when it is the default.
    """

    __slots__ = ("scheme", "host", "port", "path", "authority")

    def __init__(self, scheme: str, host: str, port: int, path: bytes, authority: bytes) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.path = path
        self.authority = authority

    @property
    def url(self) -> str:
        """
        The absolute URI of the target (authority only for CONNECT).
        """
        if self.path == b"":
            return self.authority.decode("ascii")
        if self.path == b"*":
            # OPTIONS for the whole server: absolute-form with an empty path
            # (RFC 9112 3.2.4).
            return "{}://{}".format(self.scheme, self.authority.decode("ascii"))
        return "{}://{}{}".format(
            self.scheme, self.authority.decode("ascii"), self.path.decode("latin-1")
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Target):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    def __repr__(self) -> str:
        return "<Target {} {}:{} {!r}>".format(self.scheme, self.host, self.port, self.path)


def _parseAuthority(authority: bytes, defaultPort: int | None) -> tuple[str, int, bytes]:
    """
    Split C{host[:port]} (host may be C{[IPv6]}) and validate both.

    @return: C{(host, port, normalised authority)}.
    @raise BadRequest: if it is not a valid authority.
    """
    if not authority:
        raise BadRequest("The request has no destination host.")
    if b"@" in authority:
        raise BadRequest("User information in the request-target is not allowed.")
    if authority.startswith(b"["):
        close = authority.find(b"]")
        if close == -1:
            raise BadRequest("Unterminated IPv6 address in the destination.")
        literal = authority[1:close]
        rest = authority[close + 1:]
        try:
            address = ipaddress.IPv6Address(literal.decode("ascii"))
        except ValueError:
            raise BadRequest("Invalid IPv6 address in the destination.") from None
        host = str(address)
        hostPart = b"[" + host.encode("ascii") + b"]"
        if rest and not rest.startswith(b":"):
            raise BadRequest("Invalid destination authority.")
        portText = rest[1:] if rest else b""
    else:
        hostPart, sep, portText = authority.rpartition(b":")
        if not sep:
            hostPart, portText = authority, b""
        if not hostPart or not _REG_NAME.fullmatch(hostPart):
            raise BadRequest("Invalid destination host name.")
        host = hostPart.decode("ascii").lower()
        hostPart = host.encode("ascii")
    if portText:
        if not _PORT.fullmatch(portText) or not 0 < int(portText) < 65536:
            raise BadRequest("Invalid destination port.")
        port = int(portText)
    elif defaultPort is None:
        raise BadRequest("A CONNECT request must name a port (host:port).")
    else:
        port = defaultPort
    if port == defaultPort:
        normalised = hostPart
    else:
        normalised = hostPart + b":%d" % (port,)
    return host, port, normalised


def parseTarget(method: bytes, target: bytes, hostHeader: bytes | None) -> Target:
    """
    Where a request goes, from its request-target and C{Host} field.

    @param method: the request method (CONNECT takes authority-form).
    @param target: the request-target as received.
    @param hostHeader: the C{Host} field value, or L{None}.
    @raise BadRequest: if the target is malformed, is not C{http}, or an
        origin-form request has no usable C{Host}.
    """
    if method == b"CONNECT":
        host, port, authority = _parseAuthority(target, None)
        return Target("https" if port == 443 else "tcp", host, port, b"", authority)
    lower = target[:8].lower()
    if lower.startswith(b"http://"):
        rest = target[7:]
        end = len(rest)
        for sep in (b"/", b"?", b"#"):
            i = rest.find(sep)
            if i != -1 and i < end:
                end = i
        authorityText, path = rest[:end], rest[end:]
        host, port, authority = _parseAuthority(authorityText, 80)
        path = path.partition(b"#")[0]
        if not path and method == b"OPTIONS":
            # RFC 9112 3.2.4: OPTIONS for the server as a whole.
            path = b"*"
        elif not path.startswith(b"/"):
            path = b"/" + path
        return Target("http", host, port, path, authority)
    if lower.startswith(b"https://"):
        raise BadRequest(
            "This proxy does not originate TLS; send https:// requests through a CONNECT tunnel."
        )
    if target.startswith(b"/") or target == b"*":
        if hostHeader is None:
            raise BadRequest(
                "An origin-form request needs a Host header field naming the destination."
            )
        host, port, authority = _parseAuthority(hostHeader.strip(), 80)
        return Target("http", host, port, target.partition(b"#")[0], authority)
    if b"://" in target:
        raise BadRequest("Only http:// targets can be proxied.")
    raise BadRequest("Invalid request-target.")


def _connectionTokens(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    """
    The field names listed in C{Connection}, lower cased.
    """
    names: set[bytes] = set()
    for n, v in headers:
        if n.lower() == b"connection":
            for t in v.split(b","):
                t = t.strip().lower()
                if t:
                    names.add(t)
    return names


def _viaValue(version: bytes, pseudonym: bytes) -> bytes:
    return version + b" " + pseudonym


def _forwardedFor(clientHost: str) -> bytes:
    """
    An RFC 7239 C{for=} node: IPv6 addresses quoted and bracketed.
    """
    if ":" in clientHost:
        return b'for="[' + clientHost.encode("ascii") + b']"'
    return b"for=" + clientHost.encode("ascii")


def forwardRequestHeaders(
    headers: list[tuple[bytes, bytes]],
    target: Target,
    version: bytes,
    pseudonym: bytes,
    *,
    upgrade: bool = False,
    chunked: bool = False,
    forwarded: str = "off",
    clientHost: str = "",
) -> list[tuple[bytes, bytes]]:
    """
    The header section to send to the origin.

    @param version: the request's version as received (for C{Via}).
    @param upgrade: keep C{Upgrade} and send C{Connection: upgrade}.
    @param chunked: the body is relayed chunked (add C{Transfer-Encoding}).
    @param forwarded: C{"off"}, C{"xff"} (append to C{X-Forwarded-For}) or
        C{"rfc7239"} (append to C{Forwarded}).
    """
    connectionTokens = _connectionTokens(headers)
    out: list[tuple[bytes, bytes]] = [(b"Host", target.authority)]
    via: bytes | None = None
    xff: bytes | None = None
    fwd: bytes | None = None
    upgradeValue: bytes | None = None
    for n, v in headers:
        ln = n.lower()
        if ln == b"host":
            continue
        if ln in HOP_BY_HOP or ln in connectionTokens:
            if ln == b"upgrade" and upgrade:
                upgradeValue = v if upgradeValue is None else upgradeValue + b", " + v
            continue
        if ln == b"via":
            via = v if via is None else via + b", " + v
            continue
        if forwarded == "xff" and ln == b"x-forwarded-for":
            xff = v if xff is None else xff + b", " + v
            continue
        if forwarded == "rfc7239" and ln == b"forwarded":
            fwd = v if fwd is None else fwd + b", " + v
            continue
        out.append((n, v))
    if chunked:
        out.append((b"Transfer-Encoding", b"chunked"))
    if upgrade and upgradeValue is not None:
        out.append((b"Connection", b"upgrade"))
        out.append((b"Upgrade", upgradeValue))
    ours = _viaValue(version, pseudonym)
    out.append((b"Via", via + b", " + ours if via else ours))
    if forwarded == "xff" and clientHost:
        me = clientHost.encode("ascii")
        out.append((b"X-Forwarded-For", xff + b", " + me if xff else me))
    elif forwarded == "rfc7239" and clientHost:
        me = _forwardedFor(clientHost) + b";proto=http;host=" + _quoteIfNeeded(target.authority)
        out.append((b"Forwarded", fwd + b", " + me if fwd else me))
    return out


def _quoteIfNeeded(value: bytes) -> bytes:
    if re.fullmatch(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", value):
        return value
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def forwardResponseHeaders(
    headers: list[tuple[bytes, bytes]],
    version: bytes,
    pseudonym: bytes,
    *,
    upgrade: bool = False,
    chunked: bool = False,
    close: bool = False,
    keepAlive10: bool = False,
) -> list[tuple[bytes, bytes]]:
    """
    The header section to send to the client.

    @param version: the response's version as received (for C{Via}).
    @param upgrade: a 101 response: keep C{Upgrade}, send
        C{Connection: upgrade}.
    @param chunked: the body is relayed chunked.
    @param close: the client connection closes after this response.
    @param keepAlive10: an HTTP/1.0 client asked for keep-alive and gets it.
    """
    connectionTokens = _connectionTokens(headers)
    out: list[tuple[bytes, bytes]] = []
    via: bytes | None = None
    upgradeValue: bytes | None = None
    for n, v in headers:
        ln = n.lower()
        if ln in HOP_BY_HOP or ln in connectionTokens:
            if ln == b"upgrade" and upgrade:
                upgradeValue = v if upgradeValue is None else upgradeValue + b", " + v
            continue
        if ln == b"via":
            via = v if via is None else via + b", " + v
            continue
        out.append((n, v))
    if chunked:
        out.append((b"Transfer-Encoding", b"chunked"))
    if upgrade:
        out.append((b"Connection", b"upgrade"))
        if upgradeValue is not None:
            out.append((b"Upgrade", upgradeValue))
    elif close:
        out.append((b"Connection", b"close"))
    elif keepAlive10:
        out.append((b"Connection", b"keep-alive"))
    ours = _viaValue(version, pseudonym)
    out.append((b"Via", via + b", " + ours if via else ours))
    return out


def viaHasPseudonym(headers: list[tuple[bytes, bytes]], pseudonym: bytes) -> bool:
    """
    Whether a C{Via} field names C{pseudonym} as a received-by: the request
    has been through this proxy already.
    """
    want = pseudonym.lower()
    for n, v in headers:
        if n.lower() != b"via":
            continue
        for entry in v.split(b","):
            parts = entry.strip().split()
            if len(parts) >= 2 and parts[1].lower() == want:
                return True
    return False


def redactHeaders(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """
    The fields as text, with the values of credentials and cookies
    replaced (for logs and history).
    """
    return [
        (
            n.decode("latin-1"),
            "<redacted>" if n.lower() in SECRET_HEADERS else v.decode("latin-1"),
        )
        for n, v in headers
    ]
