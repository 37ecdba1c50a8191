# -*- test-case-name: tests.test_headers -*-
"""
Header rules a forward proxy applies (RFC 9110, RFC 9112, RFC 7239).

  - L{forwardRequestHeaders} / L{forwardResponseHeaders}: remove hop-by-hop
    fields (C{Connection} and every field it names, C{Keep-Alive},
    C{Proxy-Connection}, C{Proxy-Authorization}, C{TE}, C{Trailer},
    C{Transfer-Encoding}, C{Upgrade} unless an upgrade is performed), rebuild
    C{Host} from the target, append C{Via} (RFC 9110 7.6.3), and optionally
    C{X-Forwarded-For} or C{Forwarded}.
  - L{viaHasPseudonym}: loop detection on C{Via}.
  - L{redactHeaders} / L{redactValue}: THE redaction rule, for every log
    and record the proxy writes (see L{SECRET_HEADERS}).

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .target import Target

__all__ = [
    "HOP_BY_HOP",
    "forwardRequestHeaders",
    "forwardResponseHeaders",
    "viaHasPseudonym",
    "redactHeaders",
    "redactValue",
    "REDACTED",
    "SECRET_HEADERS",
    "CREDENTIAL_HEADERS",
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

REDACTED = "<redacted>"
"""
What a redacted value (or the credentials after a kept scheme) reads as.
"""

CREDENTIAL_HEADERS = frozenset([b"authorization", b"proxy-authorization"])
"""
Fields that carry credentials (RFC 9110 11.6.2, 11.7.2): their
authentication scheme is kept (C{Basic <redacted>}) when it is a known one.
"""

SECRET_HEADERS = CREDENTIAL_HEADERS | frozenset([b"cookie", b"set-cookie"])
"""
Fields whose values are secrets, lower case: credentials, and the session
state of cookies (RFC 6265).  This is the one rule for what the proxy keeps
out of its logs, its history and its TRACE echoes.

Not in it, deliberately: C{WWW-Authenticate} and C{Proxy-Authenticate} are
challenges the server sends to anyone who asks (their realm is what an
operator needs to see when debugging a 401 or 407), and
C{Authentication-Info}/C{Proxy-Authentication-Info} (RFC 9110 11.6.3,
11.7.3) carry a server's proof and next nonce, which cannot be replayed as
credentials.  Site-specific token fields (C{X-Api-Key} and the like) are
not standard and so not known here; C{--history-headers} governs them no
differently from any other field.
"""

_SECRET_NAMES = frozenset(name.decode("ascii") for name in SECRET_HEADERS)
_CREDENTIAL_NAMES = frozenset(name.decode("ascii") for name in CREDENTIAL_HEADERS)

# Authentication schemes shown in front of redacted credentials: the IANA
# HTTP Authentication Scheme Registry, plus common unregistered ones.  An
# unknown first word might be the secret itself (a client that sends a bare
# token followed by something), so it is redacted with the rest.
_KNOWN_SCHEMES = frozenset(
    [
        "basic",
        "bearer",
        "concealed",
        "digest",
        "dpop",
        "hoba",
        "mutual",
        "negotiate",
        "oauth",
        "privatetoken",
        "scram-sha-1",
        "scram-sha-256",
        "vapid",
        # Not registered, widely sent.
        "ntlm",
        "aws4-hmac-sha256",
        "token",
    ]
)


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
    contentLength: int | None = None,
    chunked: bool = False,
    forwarded: str = "off",
    clientHost: str = "",
) -> list[tuple[bytes, bytes]]:
    """
    The header section to send to the origin.

    The message's framing is the proxy's own, computed from what it parsed,
    whatever C{Connection} lists (RFC 9112 6.3, RFC 9110 7.6.1): C{Host} is
    rebuilt from the target, C{Content-Length} is the parsed length, and
    C{Transfer-Encoding} is C{chunked} when the body is relayed chunked.  A
    C{Connection} option naming one of them removes nothing.

    @param version: the request's version as received (for C{Via}).
    @param upgrade: keep C{Upgrade} and send C{Connection: upgrade}.
    @param contentLength: the body's length as parsed, or L{None} if the
        request has no Content-Length.
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
    length = None if contentLength is None else b"%d" % (contentLength,)
    for n, v in headers:
        ln = n.lower()
        if ln == b"host":
            continue
        if ln == b"content-length":
            if length is not None:
                out.append((n, length))
                length = None
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
    if length is not None:
        out.append((b"Content-Length", length))
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
    contentLength: int | None = None,
    chunked: bool = False,
    close: bool = False,
    keepAlive10: bool = False,
) -> list[tuple[bytes, bytes]]:
    """
    The header section to send to the client.

    As for requests (L{forwardRequestHeaders}), C{Connection} options never
    remove the message's framing: C{Content-Length} is the parsed length
    when the body is relayed by length, is kept as received otherwise (the
    length of the representation, in a response to HEAD or a 304), and
    C{Transfer-Encoding} is the proxy's own.

    @param version: the response's version as received (for C{Via}).
    @param upgrade: a 101 response: keep C{Upgrade}, send
        C{Connection: upgrade}.
    @param contentLength: the body is relayed by length: this one.
    @param chunked: the body is relayed chunked.
    @param close: the client connection closes after this response.
    @param keepAlive10: an HTTP/1.0 client asked for keep-alive and gets it.
    """
    connectionTokens = _connectionTokens(headers)
    out: list[tuple[bytes, bytes]] = []
    via: bytes | None = None
    upgradeValue: bytes | None = None
    length = None if contentLength is None else b"%d" % (contentLength,)
    for n, v in headers:
        ln = n.lower()
        if ln == b"content-length":
            if contentLength is None:
                out.append((n, v))
            elif length is not None:
                out.append((n, length))
                length = None
            continue
        if ln in HOP_BY_HOP or ln in connectionTokens:
            if ln == b"upgrade" and upgrade:
                upgradeValue = v if upgradeValue is None else upgradeValue + b", " + v
            continue
        if ln == b"via":
            via = v if via is None else via + b", " + v
            continue
        out.append((n, v))
    if length is not None:
        out.append((b"Content-Length", length))
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


def redactValue(name: str, value: str) -> str:
    """
    The value of the field C{name} as a log may show it: L{REDACTED} for a
    field in L{SECRET_HEADERS}, except that for credentials a known
    authentication scheme stays visible (C{"Basic <redacted>"}); any other
    value unchanged.

    @param name: the field name, in any case.
    """
    lower = name.lower()
    if lower not in _SECRET_NAMES:
        return value
    if lower in _CREDENTIAL_NAMES:
        scheme, sep, _ = value.strip().partition(" ")
        if sep and scheme.lower() in _KNOWN_SCHEMES:
            return scheme + " " + REDACTED
    return REDACTED


def redactHeaders(
    headers: Iterable[tuple[bytes, bytes]] | Iterable[tuple[str, str]],
) -> list[tuple[str, str]]:
    """
    Header fields as text (bytes are decoded as ISO-8859-1, as on the
    wire), their values redacted by L{redactValue}: what every log line and
    history record shows unless C{--history-headers=all} was asked for.
    """
    out: list[tuple[str, str]] = []
    for n, v in headers:
        if isinstance(n, bytes):
            n = n.decode("latin-1")
        if isinstance(v, bytes):
            v = v.decode("latin-1")
        if n.lower() in _SECRET_NAMES:
            v = redactValue(n, v)
        out.append((n, v))
    return out
