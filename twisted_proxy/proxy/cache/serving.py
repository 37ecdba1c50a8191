# -*- test-case-name: tests.test_cache_http,tests.test_cache_validation -*-
"""
Serving a stored response: the head (and body) that answers a request from
the cache -- the whole response, its head for C{HEAD}, a 304 when the
client's own conditional matches (RFC 9111 4.3.2), or one byte range (RFC
9110 14) -- with C{Age} and C{Cache-Status}.

Pure: no I/O of its own (the store opens bodies), no Twisted imports.
"""

from __future__ import annotations

from twisted_proxy.http.framing import RequestHead, ResponseHead

from .dates import parseHTTPDate
from .derived import Derived
from .entry import StoredResponse
from .store import CachedBody, Store
from .validation import ETag, entryLastModified, isStrongLastModified, notModified

__all__ = ["answer", "ifRangeHolds", "parseRange", "requestFields"]

# RFC 9110 15.4.5: the fields a 304 carries (those "that would have been sent
# in a 200 (OK) response to the same request"), plus Last-Modified (useful to
# the client when there is no ETag).
_NOT_MODIFIED_FIELDS = frozenset(
    [b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary", b"last-modified"]
)
_STATUSES_WITHOUT_BODY = frozenset([204, 304])
# The request fields the cache's decisions read, gathered in one pass.
_LOOKED_AT = frozenset(
    [
        b"cache-control",
        b"pragma",
        b"authorization",
        b"range",
        b"if-range",
        b"if-match",
        b"if-unmodified-since",
        b"if-none-match",
        b"if-modified-since",
    ]
)


def requestFields(headers: list[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    """
    The values of the request fields the cache reads (L{_LOOKED_AT}), by
    lower-case name: one pass over the header section.
    """
    found: dict[bytes, list[bytes]] = {}
    for n, v in headers:
        ln = n.lower()
        if ln in _LOOKED_AT:
            found.setdefault(ln, []).append(v)
    return found


def answer(
    store: Store,
    request: RequestHead,
    entry: StoredResponse,
    derived: Derived,
    age: float,
    status: bytes,
    validated: bool,
    fields: dict[bytes, list[bytes]] | None = None,
) -> tuple[ResponseHead, CachedBody | None]:
    """
    The head (and body) that answers C{request} from C{entry}.

    @param derived: what the cache computed of C{entry}.
    @param validated: the entry was just validated with the origin, so
        the fields of a qualified C{no-cache} may be sent (RFC 9111
        5.2.2.4).
    @param fields: the request's fields the cache reads, if known.
    @raise EntryUnavailable: if the body cannot be read.
    """
    if fields is None:
        fields = requestFields(request.headers)
    d = derived
    headers = entry.headers
    if d.directives.noCacheFields and not validated:
        headers = [(n, v) for n, v in headers if n.lower() not in d.directives.noCacheFields]
    ageField = (b"Age", b"%d" % (int(age),))
    cacheStatus = (b"Cache-Status", status)
    if (
        (b"if-none-match" in fields or b"if-modified-since" in fields)
        and 200 <= entry.status < 300
        and notModified(request, entry)
    ):
        # (RFC 9110 13.2.1: conditionals are evaluated only when the
        # response would otherwise be 2xx.)
        kept = [(n, v) for n, v in headers if n.lower() in _NOT_MODIFIED_FIELDS]
        if d.etag is not None:
            kept = [(n, v) for n, v in kept if n.lower() != b"last-modified"]
        return ResponseHead(
            304, b"Not Modified", entry.version, kept + [ageField, cacheStatus], noBody=True
        ), None
    length = entry.bodyLength
    if entry.status in _STATUSES_WITHOUT_BODY:
        return (
            ResponseHead(
                entry.status,
                entry.reason,
                entry.version,
                headers + [ageField, cacheStatus],
                noBody=True,
            ),
            None,
        )
    if request.method == b"HEAD":
        return (
            ResponseHead(
                entry.status,
                entry.reason,
                entry.version,
                headers + [(b"Content-Length", b"%d" % (length,)), ageField, cacheStatus],
                contentLength=length,
                noBody=True,
            ),
            None,
        )
    byteRange = None
    if entry.status == 200 and b"range" in fields and ifRangeHolds(request, entry, d.etag):
        byteRange = parseRange(request.get(b"range"), length)
    if byteRange is not None:
        first, last = byteRange
        size = last - first + 1
        body = store.openBody(entry, first, size)
        return (
            ResponseHead(
                206,
                b"Partial Content",
                entry.version,
                headers
                + [
                    (b"Content-Range", b"bytes %d-%d/%d" % (first, last, length)),
                    (b"Content-Length", b"%d" % (size,)),
                    ageField,
                    cacheStatus,
                ],
                contentLength=size,
            ),
            body,
        )
    body = store.openBody(entry)
    return (
        ResponseHead(
            entry.status,
            entry.reason,
            entry.version,
            headers + [(b"Content-Length", b"%d" % (length,)), ageField, cacheStatus],
            contentLength=length,
        ),
        body,
    )


def ifRangeHolds(request: RequestHead, entry: StoredResponse, etag: ETag | None) -> bool:
    """
    RFC 9110 13.1.5: a C{Range} with C{If-Range} is honoured only if the
    validator matches the stored response by strong comparison (an
    entity tag, or a strong C{Last-Modified} date equal to the one
    given).
    """
    ifRange = request.get(b"if-range")
    if ifRange is None:
        return True
    ifRange = ifRange.strip()
    if ifRange.startswith((b'"', b"W/")):
        given = ETag.parse(ifRange)
        return given is not None and etag is not None and etag.strongMatch(given)
    date = parseHTTPDate(ifRange, entry.responseTime)
    lastModified = entryLastModified(entry)
    return (
        date is not None
        and lastModified == date
        and isStrongLastModified(lastModified, entry.dateValue)
    )


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
