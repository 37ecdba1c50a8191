# -*- test-case-name: tests.test_cache_storing,tests.test_cache_validation -*-
"""
The rules of RFC 9111 for a B{shared} cache, as pure functions over heads
and stored metadata.  L{twisted_proxy.proxy.cache.cache.HTTPCache} strings
them together; each is here on its own so that it can be read next to the
section it implements and tested alone.

  - 4 / RFC 9110 4.2.3: L{primaryKey}, the normalised target URI.
  - 3: L{unstorableReason} (may this response be stored?), and
    L{storedHeaders} (3.1: which fields are stored).
  - 3.2: L{updateHeaders} (freshening a stored response's fields).
  - 4.1: L{varyNames}, L{secondaryKey}, L{varyMatches}.
  - 4.2.1 / 4.2.2: L{freshnessLifetime} (explicit, then heuristic).
  - 4.2.3: L{currentAge}.
  - 4.3.1 / 4.3.2 / RFC 9110 13: L{ETag}, L{parseETagList},
    L{notModified} (evaluating a client's conditional against a stored
    response), L{isStrongLastModified}.
  - 4.3.4: L{selectForUpdate} (which stored responses a 304 freshens).
  - 4.4: L{isUnsafe}, L{invalidationKeys}.
  - RFC 9110 14: L{parseRange} (one byte range served from a complete
    stored response).

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

from twisted_proxy.http.errors import ProxyError
from twisted_proxy.http.fields import HOP_BY_HOP
from twisted_proxy.http.framing import RequestHead, ResponseHead
from twisted_proxy.http.target import Target, parseTarget

from .dates import formatHTTPDate, parseHTTPDate
from .directives import DELTA_SECONDS_MAX, RequestDirectives, ResponseDirectives
from .entry import StoredResponse

__all__ = [
    "CACHEABLE_METHODS",
    "SAFE_METHODS",
    "HEURISTIC_STATUSES",
    "UNDERSTOOD_STATUSES",
    "primaryKey",
    "unstorableReason",
    "storedHeaders",
    "updateHeaders",
    "varyNames",
    "VARY_STAR",
    "secondaryKey",
    "varyMatches",
    "freshnessLifetime",
    "currentAge",
    "parseAge",
    "dateValueOf",
    "ETag",
    "parseETagList",
    "ANY_ETAG",
    "notModified",
    "isStrongLastModified",
    "selectForUpdate",
    "isUnsafe",
    "invalidationKeys",
    "parseRange",
]

# Methods whose responses this cache stores (RFC 9111 3: "the request method
# is understood by the cache").  HEAD is answered from a stored GET
# response; a HEAD response only freshens stored GET responses (4.3.5).
CACHEABLE_METHODS = frozenset([b"GET"])

# RFC 9110 9.2.1.  Any other method, known or not, is unsafe for 4.4.
SAFE_METHODS = frozenset([b"GET", b"HEAD", b"OPTIONS", b"TRACE"])

# RFC 9110 15.1: "Responses with status codes that are defined as
# heuristically cacheable (e.g., 200, 203, 204, 206, 300, 301, 308, 404, 405,
# 410, 414, and 501 in this specification) can be reused by a cache with
# heuristic expiration".  206 is never stored here (no range combination).
HEURISTIC_STATUSES = frozenset([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501])

# The final status codes whose caching requirements this cache implements
# (RFC 9111 5.2.2.3 must-understand): those defined by RFC 9110, except 206
# (not stored) and 304 (never stored; it updates).
UNDERSTOOD_STATUSES = frozenset(
    [200, 201, 202, 203, 204, 205]
    + [300, 301, 302, 303, 305, 307, 308]
    + list(range(400, 418))
    + [421, 422, 426]
    + [500, 501, 502, 503, 504, 505]
)

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


def _fieldNames(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    return {n.lower() for n, _ in headers}


def unstorableReason(
    request: RequestHead,
    requestDirectives: RequestDirectives,
    response: ResponseHead,
    directives: ResponseDirectives,
) -> str | None:
    """
    Why a shared cache must not (or will not) store C{response}, as a short
    token for C{Cache-Status}'s C{detail}, or L{None} if it may.

    RFC 9111 3: "A cache MUST NOT store a response to a request unless:

      - the request method is understood by the cache;
      - the response status code is final;
      - if the response status code is 206 or 304, or the must-understand
        cache directive is present: the cache understands the response
        status code;
      - the no-store cache directive is not present in the response;
      - if the cache is shared: the private response directive is either
        not present or allows a shared cache to store a modified response;
      - if the cache is shared: the Authorization header field is not
        present in the request or a response directive is present that
        explicitly allows shared caching;
      - the response contains at least one of: a public response directive;
        [...] an Expires header field; a max-age response directive; if the
        cache is shared: an s-maxage response directive; [...] or a status
        code that is defined as heuristically cacheable."

    And, beyond section 3: the request's C{no-store} (5.2.1.5: "a cache
    MUST NOT store any part of either this request or any response to
    it"); C{Vary: *} (4.1: it "always fails to match", so storing it is
    useless); 206 (a partial response: this cache does not combine ranges,
    3.4); a must-understand response with a status this cache does not
    implement; and C{Content-Range} on a non-206 response (ambiguous).
    The caller also refuses a response that is useless to keep (no
    freshness, no validator): see L{HTTPCache}.
    """
    if request.method not in CACHEABLE_METHODS:
        return "method"
    status = response.status
    if status < 200:
        return "interim"
    if status == 304:
        return "not-modified"
    if status == 206:
        return "partial"
    if directives.mustUnderstand:
        # 5.2.2.3: "the cache SHOULD ignore the no-store directive if it
        # understands and implements the status code's caching
        # requirements".
        if status not in UNDERSTOOD_STATUSES:
            return "must-understand"
    elif directives.noStore:
        return "no-store"
    if requestDirectives.noStore:
        return "request-no-store"
    if directives.private:
        return "private"
    if request.get(b"authorization") is not None and not (
        # 3.5: public, s-maxage and must-revalidate allow it.
        directives.public or directives.sMaxAge is not None or directives.mustRevalidate
    ):
        return "authorization"
    if response.get(b"content-range") is not None:
        return "content-range"
    if varyNames(response.headers) is VARY_STAR:
        return "vary-star"
    if not (
        directives.public
        or directives.maxAge is not None
        or directives.sMaxAge is not None
        or response.get(b"expires") is not None
        or status in HEURISTIC_STATUSES
    ):
        return "no-freshness"
    return None


def storedHeaders(
    headers: list[tuple[bytes, bytes]],
    directives: ResponseDirectives,
    responseTime: float,
) -> list[tuple[bytes, bytes]]:
    """
    The header section to store for a response (RFC 9111 3.1).

    "Caches MUST include all received response header fields -- including
    unrecognized ones -- when storing a response", except: C{Connection}
    and the fields it names and the other hop-by-hop fields (which "MAY be
    implemented by doing so before storage"); the fields of a qualified
    C{private} (5.2.2.7, for a shared cache); C{Proxy-Authenticate},
    C{Proxy-Authentication-Info} and C{Proxy-Authorization} ("MUST NOT be
    stored").  We also drop the framing (C{Content-Length},
    C{Transfer-Encoding}: the stored body's length is known, and a served
    response gets C{Content-Length}) and C{Age} (kept as
    L{StoredResponse.ageValue}, replaced when served), and add C{Date} when
    the origin sent none (RFC 9110 6.6.1: a recipient with a clock "MUST
    record the time it was received and append a corresponding Date header
    field to the message's header section if it is cached").
    """
    drop = set(HOP_BY_HOP) | {
        b"proxy-authentication-info",
        b"content-length",
        b"age",
    }
    for n, v in headers:
        if n.lower() == b"connection":
            drop.update(t.strip().lower() for t in v.split(b",") if t.strip())
    drop |= directives.privateFields
    out = [(n, v) for n, v in headers if n.lower() not in drop]
    if not any(n.lower() == b"date" for n, _ in out):
        out.append((b"Date", formatHTTPDate(responseTime)))
    return out


# Fields a 304 or HEAD response never changes in a stored response (RFC 9111
# 3.2: fields excepted from storage, "the Content-Length header field", and
# fields "automatically processed and removed by the recipient" such as
# Content-Range).  Age is kept apart (StoredResponse.ageValue).
_NOT_UPDATED = set(HOP_BY_HOP) | {
    b"proxy-authentication-info",
    b"content-length",
    b"content-range",
    b"age",
}


def updateHeaders(
    stored: list[tuple[bytes, bytes]],
    new: list[tuple[bytes, bytes]],
    directives: ResponseDirectives | None = None,
) -> list[tuple[bytes, bytes]]:
    """
    Freshen a stored header section with the fields of a newer response
    (a 304, or a 200 to HEAD): RFC 9111 3.2, "the cache MUST add each header
    field in the provided response to the stored response, replacing field
    values that are already present", except the fields above and those a
    C{Connection} or a qualified C{private} in the new response names.

    A replaced field keeps the position of its first stored line.

    @param directives: the new response's directives (for C{private}).
    """
    skip = set(_NOT_UPDATED)
    for n, v in new:
        if n.lower() == b"connection":
            skip.update(t.strip().lower() for t in v.split(b",") if t.strip())
    if directives is not None:
        skip |= directives.privateFields
    replacements: dict[bytes, list[tuple[bytes, bytes]]] = {}
    for n, v in new:
        ln = n.lower()
        if ln in skip:
            continue
        replacements.setdefault(ln, []).append((n, v))
    out: list[tuple[bytes, bytes]] = []
    placed: set[bytes] = set()
    for n, v in stored:
        ln = n.lower()
        if ln in replacements:
            if ln not in placed:
                out.extend(replacements[ln])
                placed.add(ln)
            continue
        out.append((n, v))
    for ln, lines in replacements.items():
        if ln not in placed:
            out.extend(lines)
    return out


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


def parseAge(headers: list[tuple[bytes, bytes]]) -> int:
    """
    C{age_value} (RFC 9111 5.1): "a cache encountering a message with a
    list-based Age field value SHOULD use the first member of the field
    value, discarding subsequent ones.  If the field value (after
    discarding additional members, as per above) is invalid (e.g., it
    contains something other than a non-negative integer), a cache SHOULD
    ignore the field."  0 when absent or ignored.
    """
    for n, v in headers:
        if n.lower() == b"age":
            first = v.split(b",")[0].strip()
            if first.isdigit():
                return min(int(first), DELTA_SECONDS_MAX)
            return 0
    return 0


def dateValueOf(headers: list[tuple[bytes, bytes]], responseTime: float) -> float:
    """
    C{date_value} (RFC 9111 4.2.3): the response's C{Date}, or the time it
    was received if it has no valid one (RFC 9110 6.6.1).
    """
    for n, v in headers:
        if n.lower() == b"date":
            parsed = parseHTTPDate(v, responseTime)
            return responseTime if parsed is None else parsed
    return responseTime


def _expires(headers: list[tuple[bytes, bytes]], responseTime: float) -> tuple[bool, float | None]:
    """
    C{(present, value)} of C{Expires}: C{value} is L{None} when it is
    invalid ("A cache recipient MUST interpret invalid date formats,
    especially the value "0", as representing a time in the past", RFC 9111
    5.3), or when it appears more than once with different values (4.2.1:
    "considered stale").
    """
    values = [v.strip() for n, v in headers if n.lower() == b"expires"]
    if not values:
        return False, None
    if len(set(values)) > 1:
        return True, None
    return True, parseHTTPDate(values[0], responseTime)


def freshnessLifetime(
    status: int,
    headers: list[tuple[bytes, bytes]],
    directives: ResponseDirectives,
    responseTime: float,
    heuristicFraction: float,
    heuristicMax: float,
) -> tuple[float, bool]:
    """
    The freshness lifetime of a response for a shared cache, in seconds, and
    whether it is heuristic.

    RFC 9111 4.2.1: "If the cache is shared and the s-maxage response
    directive is present, use its value, or if the max-age response
    directive is present, use its value, or if the Expires response header
    field is present, use its value minus the value of the Date response
    header field (using the time the message was received if it is not
    present [...]), or otherwise, no explicit expiration time is present in
    the response.  A heuristic freshness lifetime might be applicable."

    4.2.2: "a cache MAY assign a heuristic expiration time when an explicit
    time is not specified [...] only if the response status code is
    heuristically cacheable or the response is marked public [...] If the
    response has a Last-Modified header field, caches are encouraged to use
    a heuristic expiration value that is no more than some fraction of the
    interval since that time.  A typical setting of this fraction might be
    10%."  Without C{Last-Modified} the heuristic lifetime is 0.

    @param heuristicFraction: the fraction of C{Date - Last-Modified}.
    @param heuristicMax: the cap on a heuristic lifetime, in seconds.
    """
    if directives.invalidFreshness:
        return 0.0, False
    if directives.sMaxAge is not None:
        return float(directives.sMaxAge), False
    if directives.maxAge is not None:
        return float(directives.maxAge), False
    present, expires = _expires(headers, responseTime)
    if present:
        if expires is None:
            return 0.0, False
        return max(0.0, expires - dateValueOf(headers, responseTime)), False
    if status not in HEURISTIC_STATUSES and not directives.public:
        return 0.0, False
    lastModified = None
    for n, v in headers:
        if n.lower() == b"last-modified":
            lastModified = parseHTTPDate(v, responseTime)
            break
    if lastModified is None:
        return 0.0, True
    interval = dateValueOf(headers, responseTime) - lastModified
    if interval <= 0:
        return 0.0, True
    return min(interval * heuristicFraction, heuristicMax), True


def currentAge(entry: StoredResponse, now: float) -> float:
    """
    RFC 9111 4.2.3::

        apparent_age = max(0, response_time - date_value);
        response_delay = response_time - request_time;
        corrected_age_value = age_value + response_delay;
        corrected_initial_age = max(apparent_age, corrected_age_value);
        resident_time = now - response_time;
        current_age = corrected_initial_age + resident_time;

    A clock that went backwards gives no negative resident time.
    """
    apparentAge = max(0.0, entry.responseTime - entry.dateValue)
    responseDelay = max(0.0, entry.responseTime - entry.requestTime)
    correctedAgeValue = entry.ageValue + responseDelay
    correctedInitialAge = max(apparentAge, correctedAgeValue)
    residentTime = max(0.0, now - entry.responseTime)
    return min(correctedInitialAge + residentTime, float(DELTA_SECONDS_MAX))


class ETag:
    """
    An entity tag (RFC 9110 8.8.3).

    @ivar weak: whether it has the C{W/} prefix.
    @ivar opaque: the opaque-tag without its quotes.
    """

    __slots__ = ("weak", "opaque")

    def __init__(self, weak: bool, opaque: bytes) -> None:
        self.weak = weak
        self.opaque = opaque

    @classmethod
    def parse(cls, value: bytes | None) -> ETag | None:
        """
        An entity tag from a field value.  An unquoted value (invalid, but
        sent by some servers) is taken as a strong tag of that text.
        """
        if value is None:
            return None
        value = value.strip()
        weak = value.startswith(b"W/")
        if weak:
            value = value[2:]
        if len(value) >= 2 and value[:1] == b'"' and value[-1:] == b'"':
            return cls(weak, value[1:-1])
        if not value or b'"' in value or b"," in value:
            return None
        return cls(weak, value)

    def strongMatch(self, other: ETag) -> bool:
        """
        Strong comparison (RFC 9110 8.8.3.2): both strong, same opaque-tag.
        """
        return not self.weak and not other.weak and self.opaque == other.opaque

    def weakMatch(self, other: ETag) -> bool:
        """
        Weak comparison: same opaque-tag, either or both weak.
        """
        return self.opaque == other.opaque

    def serialise(self) -> bytes:
        return (b"W/" if self.weak else b"") + b'"' + self.opaque + b'"'

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ETag):
            return NotImplemented
        return self.weak == other.weak and self.opaque == other.opaque

    def __hash__(self) -> int:
        return hash((self.weak, self.opaque))

    def __repr__(self) -> str:
        return "<ETag {}>".format(self.serialise().decode("latin-1"))


class _AnyETag:
    def __repr__(self) -> str:
        return "ANY_ETAG"


ANY_ETAG = _AnyETag()
_ETAG_ITEM = re.compile(rb'\s*((?:W/)?"[^"]*"|[^,"\s]+)\s*(?:,|$)')


def parseETagList(value: bytes | None) -> list[ETag] | _AnyETag | None:
    """
    The entity tags of an C{If-None-Match} (or C{If-Match}) value: a list,
    L{ANY_ETAG} for C{*}, or L{None} when absent or unparseable.  Commas
    inside quoted tags are part of the tag.
    """
    if value is None:
        return None
    if value.strip() == b"*":
        return ANY_ETAG
    tags: list[ETag] = []
    pos = 0
    value = value.strip()
    while pos < len(value):
        if value[pos : pos + 1] in (b",", b" ", b"\t"):
            pos += 1
            continue
        m = _ETAG_ITEM.match(value, pos)
        if m is None:
            return None
        tag = ETag.parse(m.group(1))
        if tag is not None:
            tags.append(tag)
        pos = m.end()
    return tags


def isStrongLastModified(lastModified: float | None, date: float) -> bool:
    """
    Whether a C{Last-Modified} is a strong validator for a cache comparing
    it with its stored entry (RFC 9110 8.8.2.2: "that cache entry includes a
    Date value that is at least one second after the Last-Modified value").
    """
    return lastModified is not None and date - lastModified >= 1


def entryETag(entry: StoredResponse) -> ETag | None:
    return ETag.parse(entry.get(b"etag"))


def entryLastModified(entry: StoredResponse) -> float | None:
    for n, v in entry.headers:
        if n.lower() == b"last-modified":
            return parseHTTPDate(v, entry.responseTime)
    return None


def notModified(request: RequestHead, entry: StoredResponse) -> bool | None:
    """
    Evaluate a client's own conditional GET or HEAD against a stored
    response (RFC 9111 4.3.2, RFC 9110 13.2.2): C{True} if the client's
    copy is current (answer 304), C{False} if not (answer with the stored
    response), L{None} if the request has no condition a cache evaluates.

      - C{If-None-Match} (RFC 9110 13.1.2): weak comparison with the stored
        C{ETag}; C{*} matches any stored response.  When present,
        C{If-Modified-Since} is ignored.
      - C{If-Modified-Since} (13.1.3): compared with the stored
        C{Last-Modified}, or without one with its C{Date} (RFC 9111 4.3.2:
        "a cache SHOULD use the stored response's Date field value (or, if
        no Date field is present, the time that the stored response was
        received)").  Ignored if invalid or a list.
    """
    if request.method not in (b"GET", b"HEAD"):
        return None
    inm = request.get(b"if-none-match")
    if inm is not None:
        tags = parseETagList(inm)
        if tags is ANY_ETAG:
            return True
        if tags is None:
            return False
        assert isinstance(tags, list)
        mine = entryETag(entry)
        return mine is not None and any(mine.weakMatch(t) for t in tags)
    ims = [v for n, v in request.headers if n.lower() == b"if-modified-since"]
    if len(ims) != 1:
        return None
    since = parseHTTPDate(ims[0], entry.responseTime)
    if since is None:
        return None
    lastModified = entryLastModified(entry)
    if lastModified is None:
        lastModified = entry.dateValue
    return lastModified <= since


def selectForUpdate(
    response: ResponseHead,
    candidates: list[StoredResponse],
    responseTime: float,
) -> list[StoredResponse]:
    """
    The stored responses a 304 freshens (RFC 9111 4.3.4):

      - "If the new response contains one or more strong validators [...],
        then each of those strong validators identifies a selected
        representation for update.  All the stored responses with one of
        those same strong validators are identified for update.  If none of
        the stored responses contain at least one of the same strong
        validators, then the cache MUST NOT use the new response to update
        any stored responses."
      - "If the new response contains no strong validators but does contain
        one or more weak validators, and those validators correspond to one
        of the cache's stored responses, then the most recent of those
        matching stored responses is identified for update."
      - "If the new response does not include any form of validator [...],
        and there is only one stored response, and that stored response
        also lacks a validator, then that stored response is identified for
        update."

    Where a stored response and the 304 both have entity tags, the tags
    decide: an equal C{Last-Modified} does not identify a response whose
    tag differs.  (The cache adds one case for a 304 without validators
    that answers a conditional request it made for one stored response:
    see L{HTTPCache}.)
    """
    etag = ETag.parse(response.get(b"etag"))
    lastModified = None
    lm = response.get(b"last-modified")
    if lm is not None:
        lastModified = parseHTTPDate(lm, responseTime)
    date = dateValueOf(response.headers, responseTime)
    strongETag = etag is not None and not etag.weak
    strongLM = isStrongLastModified(lastModified, date)
    if strongETag or strongLM:
        out = []
        for c in candidates:
            mine = entryETag(c)
            if etag is not None and mine is not None:
                # Both have entity tags: they decide (a Last-Modified that
                # happens to be equal does not make different tags match).
                if strongETag and mine.strongMatch(etag):
                    out.append(c)
            elif strongLM and entryLastModified(c) == lastModified:
                out.append(c)
        return out
    if etag is not None or lastModified is not None:
        matching = []
        for c in candidates:
            mine = entryETag(c)
            if etag is not None and mine is not None and mine.weakMatch(etag):
                matching.append(c)
            elif etag is None and lastModified is not None and entryLastModified(c) == lastModified:
                matching.append(c)
        if not matching:
            return []
        return [max(matching, key=lambda c: (c.dateValue, c.responseTime))]
    if len(candidates) == 1:
        only = candidates[0]
        if entryETag(only) is None and entryLastModified(only) is None:
            return [only]
    return []


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


def parseRange(value: bytes | None, length: int) -> tuple[int, int] | None:
    """
    The one byte range of a C{Range} value that a cache serves from a
    complete stored response (RFC 9110 14.1.2), as C{(first, last)}
    inclusive, or L{None} to serve the whole response instead (RFC 9110
    14.2: "A server MAY ignore the Range header field"): several ranges,
    another unit, an invalid or unsatisfiable range.
    """
    if value is None or length <= 0:
        return None
    unit, sep, spec = value.partition(b"=")
    if not sep or unit.strip().lower() != b"bytes" or b"," in spec:
        return None
    spec = spec.strip()
    first, dash, last = spec.partition(b"-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if first:
        if not first.isdigit() or (last and not last.isdigit()):
            return None
        start = int(first)
        end = int(last) if last else length - 1
        if start > end or start >= length:
            return None
        return start, min(end, length - 1)
    if not last.isdigit():
        return None
    suffix = int(last)
    if suffix == 0:
        return None
    return max(0, length - suffix), length - 1
