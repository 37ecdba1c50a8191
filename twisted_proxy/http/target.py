# -*- test-case-name: tests.test_headers -*-
"""
Where a request goes: L{Target} and L{parseTarget}, the request-target in
absolute-, origin- (with C{Host}), authority- (CONNECT) and asterisk-form,
with IPv6 literals; and L{parseAuthority} for C{host[:port]}.

One type and one parser, used by the proxy and by the client.

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

import ipaddress
import re

from .errors import BadRequest

__all__ = ["Target", "parseTarget", "parseAuthority"]

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


def parseAuthority(authority: bytes, defaultPort: int | None) -> tuple[str, int, bytes]:
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
        rest = authority[close + 1 :]
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


def parseTarget(
    method: bytes, target: bytes, hostHeader: bytes | None, websocket: bool = False
) -> Target:
    """
    Where a request goes, from its request-target and C{Host} field.

    @param method: the request method (CONNECT takes authority-form).
    @param target: the request-target as received.
    @param hostHeader: the C{Host} field value, or L{None}.
    @param websocket: the request asks to upgrade to WebSocket: a C{ws://}
        target means C{http://} (RFC 6455 3: same default port, same
        semantics; clients such as aiohttp send it to a proxy).
    @raise BadRequest: if the target is malformed, is not C{http} (or
        C{ws} for a WebSocket upgrade), or an origin-form request has no
        usable C{Host}.
    """
    if method == b"CONNECT":
        host, port, authority = parseAuthority(target, None)
        return Target("https" if port == 443 else "tcp", host, port, b"", authority)
    lower = target[:8].lower()
    if lower.startswith(b"http://") or websocket and lower.startswith(b"ws://"):
        rest = target[lower.index(b"://") + 3 :]
        end = len(rest)
        for sep in (b"/", b"?", b"#"):
            i = rest.find(sep)
            if i != -1 and i < end:
                end = i
        authorityText, path = rest[:end], rest[end:]
        host, port, authority = parseAuthority(authorityText, 80)
        path = path.partition(b"#")[0]
        if not path and method == b"OPTIONS":
            # RFC 9112 3.2.4: OPTIONS for the server as a whole.
            path = b"*"
        elif not path.startswith(b"/"):
            path = b"/" + path
        return Target("http", host, port, path, authority)
    if lower.startswith(b"https://") or lower.startswith(b"wss://"):
        scheme = lower.partition(b":")[0].decode("ascii")
        raise BadRequest(
            "This proxy does not originate TLS; send {}:// requests through a CONNECT "
            "tunnel.".format(scheme)
        )
    if target.startswith(b"/") or target == b"*":
        if hostHeader is None:
            raise BadRequest(
                "An origin-form request needs a Host header field naming the destination."
            )
        host, port, authority = parseAuthority(hostHeader.strip(), 80)
        return Target("http", host, port, target.partition(b"#")[0], authority)
    if lower.startswith(b"ws://"):
        raise BadRequest(
            "A ws:// target is accepted only on a request to upgrade to WebSocket "
            "(Connection: Upgrade, Upgrade: websocket)."
        )
    if b"://" in target:
        raise BadRequest("Only http:// targets can be proxied.")
    raise BadRequest("Invalid request-target.")
