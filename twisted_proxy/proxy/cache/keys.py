# -*- test-case-name: tests.test_cache_http,tests.test_cache_vary,tests.test_cache_invalidation -*-
"""
Which stored responses a request names: the primary key (RFC 9111 4, the
normalised target URI), the secondary key (4.1, the request fields a
response's C{Vary} selects on) and the choice among variants, and the keys
an unsafe request invalidates (4.4).

  - 4 / RFC 9110 4.2.3: L{primaryKey}.
  - 4.1: L{varyNames}, L{secondaryKey}, L{varyMatches}, L{selectStored}.
  - 4.4: L{isUnsafe}, L{invalidationKeys}.

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

from twisted_proxy.http.errors import ProxyError
from twisted_proxy.http.framing import RequestHead, ResponseHead
from twisted_proxy.http.target import Target, parseTarget

from .entry import StoredResponse

__all__ = [
    "SAFE_METHODS",
    "primaryKey",
    "varyNames",
    "VARY_STAR",
    "secondaryKey",
    "varyMatches",
    "selectStored",
    "isUnsafe",
    "invalidationKeys",
]

# RFC 9110 9.2.1.  Any other method, known or not, is unsafe for 4.4.
SAFE_METHODS = frozenset([b"GET", b"HEAD", b"OPTIONS", b"TRACE"])

# RFC 3986 2.3 unreserved characters: percent-encoded, they are equivalent to
# themselves (RFC 9110 4.2.3).
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")


def primaryKey(target: Target) -> str:
    """
    The primary cache key of a request: its target URI, normalised as RFC
    9110 4.2.3 allows for C{http} URIs -- scheme and host lower case, the
    default port omitted, an empty path as C{/}, percent-encoded unreserved
    characters decoded and other percent-encodings in upper case.  The same
    URL in absolute-form and in origin-form with C{Host} gives the same key.
    """
    path = target.path or b"/"
    if b"%" in path:
        path = _PERCENT.sub(_normalisePercent, path)
    return "{}://{}{}".format(
        target.scheme, target.authority.decode("ascii"), path.decode("latin-1")
    )


def _normalisePercent(m: re.Match[bytes]) -> bytes:
    byte = int(m.group(1), 16)
    if byte in _UNRESERVED:
        return bytes([byte])
    return b"%" + m.group(1).upper()


def isUnsafe(method: bytes) -> bool:
    """
    Whether C{method} is unsafe, or of unknown safety (RFC 9111 4.4).
    """
    return method not in SAFE_METHODS


class _VaryStar:
    def __repr__(self) -> str:
        return "VARY_STAR"


VARY_STAR = _VaryStar()

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_WS_RUN = re.compile(rb"[ \t]+")
# Request fields whose values are case-insensitive lists (RFC 9110 12.5):
# their values are lower-cased before comparison.
_CASELESS = frozenset([b"accept", b"accept-charset", b"accept-encoding", b"accept-language"])


def varyNames(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, ...] | _VaryStar:
    """
    The field names a response's C{Vary} lists (RFC 9110 12.5.5), lower
    case, in order, without duplicates; L{VARY_STAR} if one member is
    C{*}; an empty tuple without C{Vary}.
    """
    names: list[bytes] = []
    for n, v in headers:
        if n.lower() != b"vary":
            continue
        for member in v.split(b","):
            member = member.strip().lower()
            if member == b"*":
                return VARY_STAR
            if member and _TOKEN.fullmatch(member) and member not in names:
                names.append(member)
    return tuple(names)


def _normalisedField(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """
    The value of request field C{name} for Vary matching (RFC 9111 4.1:
    "The header fields from two requests are defined to match if and only
    if those in the first request can be transformed to those in the second
    request by applying any of the following: adding or removing whitespace,
    where allowed in the header field's syntax; combining multiple header
    field lines with the same field name (see Section 5.2 of [HTTP]);
    normalizing both header field values in a way that is known to have
    identical semantics, according to the header field's specification
    (e.g., reordering field values when order is not significant;
    case-normalization, where values are defined to be case-insensitive)").

    Lines are combined, list members stripped and inner runs of whitespace
    collapsed; the C{Accept*} fields are lower-cased.  L{None} if absent.
    """
    values = [v for n, v in headers if n.lower() == name]
    if not values:
        return None
    members = []
    for v in values:
        for member in v.split(b","):
            member = _WS_RUN.sub(b" ", member.strip())
            member = (
                member.replace(b" ;", b";")
                .replace(b"; ", b";")
                .replace(b" =", b"=")
                .replace(b"= ", b"=")
            )
            if member:
                members.append(member)
    joined = b",".join(members)
    if name in _CASELESS:
        joined = joined.lower()
    return joined


def secondaryKey(
    names: tuple[bytes, ...], requestHeaders: list[tuple[bytes, bytes]]
) -> tuple[bytes | None, ...]:
    """
    The normalised values of the fields C{names} in a request: what a stored
    response with that C{Vary} remembers of the request that elicited it.
    """
    return tuple(_normalisedField(requestHeaders, name) for name in names)


def varyMatches(entry: StoredResponse, requestHeaders: list[tuple[bytes, bytes]]) -> bool:
    """
    Whether a stored response may be selected for a request (RFC 9111 4.1):
    every field its C{Vary} names has the same normalised value in both
    requests (absent in both counts as the same).
    """
    if not entry.varyNames:
        return True
    return secondaryKey(entry.varyNames, requestHeaders) == entry.varyValues


def selectStored(
    variants: list[StoredResponse], headers: list[tuple[bytes, bytes]]
) -> StoredResponse | None:
    """
    The stored response to use for a request (RFC 9111 4.1): of those
    whose C{Vary} matches, "the most recent response (as determined by
    the Date header field)".
    """
    best: StoredResponse | None = None
    for entry in variants:
        if not varyMatches(entry, headers):
            continue
        if best is None or (entry.dateValue, entry.responseTime) > (
            best.dateValue,
            best.responseTime,
        ):
            best = entry
    return best


def _sameOrigin(a: Target, b: Target) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def invalidationKeys(
    request: RequestHead,
    target: Target,
    response: ResponseHead,
) -> list[str]:
    """
    The primary keys an unsafe request's response invalidates (RFC 9111
    4.4): "A cache MUST invalidate the target URI when it receives a
    non-error status code in response to an unsafe request method
    (including methods whose safety is unknown)", and "the URI(s) in the
    Location and Content-Location response header fields (if present) are
    candidates for invalidation [...] However, a cache MUST NOT trigger an
    invalidation under these conditions if the origin [...] of the URI to
    be invalidated differs from that of the target URI."

    Non-error is 2xx and 3xx.  Relative references are resolved against the
    target URI.
    """
    if not isUnsafe(request.method) or not 200 <= response.status < 400:
        return []
    keys = [primaryKey(target)]
    base = target.url
    for name in (b"location", b"content-location"):
        value = response.get(name)
        if not value or b"," in value:
            continue
        try:
            absolute = urljoin(base, value.strip().decode("ascii"))
            other = parseTarget(b"GET", absolute.encode("ascii"), None)
        except (UnicodeError, ValueError, ProxyError):
            continue
        if _sameOrigin(target, other):
            key = primaryKey(other)
            if key not in keys:
                keys.append(key)
    return keys
