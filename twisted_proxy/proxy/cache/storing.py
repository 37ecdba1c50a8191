# -*- test-case-name: tests.test_cache_storing -*-
"""
Storing (RFC 9111 3): whether a response may be stored, what of it is
stored, how a stored header section is updated, and the writer that copies
a relayed body into the store.

  - 3: L{unstorableReason} (may this response be stored?).
  - 3.1: L{storedHeaders} (which fields are stored), L{newEntry}.
  - 3.2: L{updateHeaders} (freshening a stored response's fields).
  - L{CacheWriter}: the body, streamed into a L{StoreWriter} as it is
    relayed.

Pure: no I/O of its own (the store may do some), no Twisted imports.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted_proxy.http.fields import HOP_BY_HOP
from twisted_proxy.http.framing import RequestHead, ResponseHead

from .dates import formatHTTPDate
from .directives import RequestDirectives, ResponseDirectives
from .entry import StoredResponse
from .freshness import HEURISTIC_STATUSES, dateValueOf, parseAge
from .keys import VARY_STAR, secondaryKey, varyNames
from .store import StoreWriter

__all__ = [
    "CACHEABLE_METHODS",
    "UNDERSTOOD_STATUSES",
    "unstorableReason",
    "storedHeaders",
    "newEntry",
    "updateHeaders",
    "CacheWriter",
]

# Methods whose responses this cache stores (RFC 9111 3: "the request method
# is understood by the cache").  HEAD is answered from a stored GET
# response; a HEAD response only freshens stored GET responses (4.3.5).
CACHEABLE_METHODS = frozenset([b"GET"])

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


def newEntry(
    key: str,
    request: RequestHead,
    response: ResponseHead,
    cc: ResponseDirectives,
    requestTime: float,
    responseTime: float,
) -> StoredResponse:
    """
    The metadata to store for C{response} to C{request} (its body length
    and id are set by the store at commit).
    """
    names = varyNames(response.headers)
    assert isinstance(names, tuple)
    headers = storedHeaders(response.headers, cc, responseTime)
    return StoredResponse(
        key=key,
        varyNames=names,
        varyValues=secondaryKey(names, request.headers),
        status=response.status,
        reason=response.reason,
        version=response.version,
        headers=headers,
        requestTime=requestTime,
        responseTime=responseTime,
        dateValue=dateValueOf(response.headers, responseTime),
        ageValue=parseAge(response.headers),
    )


class CacheWriter:
    """
    Copies a relayed response body into the store.

    Call L{write} with each chunk as it is relayed, then L{finish} at the end
    of the body (at once for a response without one), or L{abort} if the
    transfer fails.  Once the store gives up (too large, no room), writes
    are ignored and nothing is stored; relaying goes on.

    @ivar _state: C{"WRITING"}, then C{"DONE"} (committed), C{"ABORTED"}
        (L{abort}) or C{"GAVE_UP"} (the store refused more or could not
        commit).
    @ivar _stored: called with the committed entry.
    @ivar _notStored: called once nothing will be stored, with why: the
        store's reason when it gave up (C{"too-large"}, C{"budget"},
        C{"io-error"}), or L{None} for an abort.
    """

    _state = "WRITING"

    def __init__(
        self,
        writer: StoreWriter,
        stored: Callable[[StoredResponse], None],
        notStored: Callable[[str | None], None],
    ) -> None:
        self._writer = writer
        self._stored = stored
        self._notStored = notStored

    @property
    def failed(self) -> str | None:
        return self._writer.failed

    def write(self, data: bytes) -> bool:
        """
        @return: whether the writer still stores (C{False} once it gave up).
        """
        if self._state != "WRITING":
            return False
        if self._writer.write(data):
            return True
        self._state = "GAVE_UP"
        self._notStored(self._writer.failed or "failed")
        return False

    def finish(self) -> StoredResponse | None:
        """
        The body is complete: commit it.

        @return: the stored entry, or L{None} if nothing was stored.
        """
        if self._state != "WRITING":
            return None
        entry = self._writer.commit()
        if entry is None:
            self._state = "GAVE_UP"
            self._notStored(self._writer.failed or "failed")
            return None
        self._state = "DONE"
        self._stored(entry)
        return entry

    def abort(self) -> None:
        """
        The transfer failed: store nothing.  Idempotent.
        """
        if self._state != "WRITING":
            return
        self._state = "ABORTED"
        self._writer.abort()
        self._notStored(None)
