# -*- test-case-name: tests.test_cache_validation -*-
"""
Validation (RFC 9111 4.3, RFC 9110 8.8 and 13): validators, the
conditional request that validates a stored response, evaluating a client's
own conditional against one, and freshening stored responses with a 304 or
a response to HEAD.

  - RFC 9110 8.8.3: L{ETag}, L{parseETagList}; 8.8.2.2:
    L{isStrongLastModified}.
  - 4.3.1: L{conditionalRequest}.
  - 4.3.2 / RFC 9110 13.2.2: L{notModified}.
  - 4.3.4: L{selectForUpdate} (which stored responses a 304 freshens),
    L{freshen}.
  - 4.3.5: L{freshenFromHead}.

What the cache does with a 304 as a whole (serve the freshened response,
or relay the 304) is L{twisted_proxy.proxy.cache.responses}.

Pure: no I/O of its own (the store may do some), no Twisted imports.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

from twisted_proxy.http.framing import RequestHead, ResponseHead

from .dates import formatHTTPDate, parseHTTPDate
from .directives import ResponseDirectives
from .entry import StoredResponse
from .freshness import dateValueOf, parseAge
from .keys import VARY_STAR, secondaryKey, varyMatches, varyNames
from .store import Store
from .storing import updateHeaders

__all__ = [
    "CONDITIONAL_FIELDS",
    "ETag",
    "ANY_ETAG",
    "parseETagList",
    "isStrongLastModified",
    "entryLastModified",
    "notModified",
    "Conditional",
    "conditionalRequest",
    "selectForUpdate",
    "freshen",
    "freshenFromHead",
]

# The conditional fields a cache evaluates itself, and sends when it
# validates (RFC 9111 4.3.1, 4.3.2).
CONDITIONAL_FIELDS = frozenset([b"if-none-match", b"if-modified-since"])


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


class Conditional(NamedTuple):
    """
    The request that validates a stored response (L{conditionalRequest}).

    @ivar request: the request to send upstream.
    @ivar clientETags: the entity tags the client's own C{If-None-Match}
        listed.
    @ivar sentETags: the entity tags of the cache's stored responses added
        to it.
    """

    request: RequestHead
    clientETags: tuple[ETag, ...]
    sentETags: tuple[ETag, ...]


def conditionalRequest(
    request: RequestHead,
    entry: StoredResponse,
    variants: list[StoredResponse],
    etagOf: Callable[[StoredResponse], ETag | None],
) -> Conditional | None:
    """
    The request that validates C{entry} (RFC 9111 4.3.1): the client's
    request with C{If-None-Match} listing the entity tags of every
    stored response for the URI (so that the origin can pick the one it
    would send, 4.3.1 and 4.3.4) and the client's own (4.3.2: "the cache
    MAY combine the received list with a list of entity tags from its
    own stored set of responses"), and C{If-Modified-Since} with the
    selected response's C{Last-Modified}.

    @param etagOf: the parsed C{ETag} of a stored response.
    @return: L{None} when the cache has no validator of its own, or when
        the client sent C{If-None-Match: *} (which no list of tags can be
        combined with): then the request is forwarded as it came.
    """
    lastModified = entry.get(b"last-modified")
    ours: list[ETag] = []
    for v in variants:
        tag = etagOf(v)
        if tag is not None and tag not in ours:
            ours.append(tag)
    client = parseETagList(request.get(b"if-none-match"))
    if (not ours and lastModified is None) or client is ANY_ETAG:
        return None
    clientTags: list[ETag] = list(client) if isinstance(client, list) else []
    headers = [(n, v) for n, v in request.headers if n.lower() not in CONDITIONAL_FIELDS]
    tags = clientTags + [t for t in ours if t not in clientTags]
    if tags:
        headers.append((b"If-None-Match", b", ".join(t.serialise() for t in tags)))
    if lastModified is not None:
        headers.append((b"If-Modified-Since", lastModified))
    forward = RequestHead(
        request.method,
        request.target,
        request.version,
        headers,
        contentLength=request.contentLength,
        chunked=request.chunked,
        keepAlive=request.keepAlive,
    )
    return Conditional(forward, tuple(clientTags), tuple(ours))


def freshen(
    entry: StoredResponse,
    response: ResponseHead,
    requestTime: float,
    responseTime: float,
    requestHeaders: list[tuple[bytes, bytes]],
) -> tuple[StoredResponse, bool]:
    """
    C{entry} freshened by C{response} (a 304 or a 200 to HEAD): its
    fields updated (RFC 9111 3.2), its times those of this exchange;
    and whether it may be kept (not if the new fields say C{no-store},
    C{private} or C{Vary: *}: it may then be served this once, and is
    deleted).
    """
    newCC = ResponseDirectives.fromHeaders(response.headers)
    headers = updateHeaders(entry.headers, response.headers, newCC)
    if not any(n.lower() == b"date" for n, _ in response.headers):
        headers = [(n, v) for n, v in headers if n.lower() != b"date"]
        headers.append((b"Date", formatHTTPDate(responseTime)))
    merged = ResponseDirectives.fromHeaders(headers)
    names = varyNames(headers)
    keep = not (
        names is VARY_STAR or (merged.noStore and not merged.mustUnderstand) or merged.private
    )
    if not isinstance(names, tuple):
        names = entry.varyNames
    varyValues = entry.varyValues
    if names != entry.varyNames:
        varyValues = secondaryKey(names, requestHeaders)
    fresh = entry.copy(
        headers=headers,
        varyNames=names,
        varyValues=varyValues,
        requestTime=requestTime,
        responseTime=responseTime,
        dateValue=dateValueOf(headers, responseTime),
        ageValue=parseAge(response.headers),
        invalidated=False,
    )
    return fresh, keep


def freshenFromHead(
    store: Store,
    request: RequestHead,
    key: str,
    response: ResponseHead,
    requestTime: float,
    responseTime: float,
) -> None:
    """
    RFC 9111 4.3.5: on a 200 to HEAD, "the cache SHOULD update or
    invalidate each of its stored GET responses that could have been
    chosen for that request [...] if the stored response and HEAD
    response have matching values for any received validator fields
    (ETag and Last-Modified) and, if the HEAD response has a
    Content-Length header field, the value of Content-Length matches
    that of the stored response, the cache SHOULD update the stored
    response [...]; otherwise, the cache SHOULD consider the stored
    response to be stale."
    """
    etag = response.get(b"etag")
    lastModified = response.get(b"last-modified")
    length = response.get(b"content-length")
    for stored in store.variants(key):
        if not varyMatches(stored, request.headers):
            continue
        matches = (
            (etag is None or stored.get(b"etag") == etag)
            and (lastModified is None or stored.get(b"last-modified") == lastModified)
            and (length is None or length.strip() == b"%d" % (stored.bodyLength,))
        )
        if matches:
            new, keep = freshen(stored, response, requestTime, responseTime, request.headers)
        else:
            new, keep = stored.copy(invalidated=True), True
        if keep:
            store.update(stored, new)
        else:
            store.delete(stored)
