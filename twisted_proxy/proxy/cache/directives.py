# -*- test-case-name: tests.test_cache_directives -*-
"""
C{Cache-Control} (RFC 9111 5.2), C{Pragma} (5.4) and delta-seconds (1.2.2),
parsed the way a recipient must: tolerant of case, of quoting, of
whitespace, of duplicates and of garbage.  Parsing never raises.

The grammar (RFC 9111 5.2)::

    Cache-Control   = #cache-directive
    cache-directive = token [ "=" ( token / quoted-string ) ]

  - Directive names are compared case-insensitively.
  - "For the cache directives defined below that define arguments,
    recipients ought to accept both forms [token and quoted-string], even if
    a specific form is required for generation" (5.2): C{max-age="60"} is
    C{max-age=60}.
  - Several field lines are one list (RFC 9110 5.3): the caller passes every
    value.
  - An element that is not a valid directive is skipped up to the next
    comma outside a quoted string; the rest of the field still counts.
  - Unknown directives are ignored (5.2.3).

Duplicates and conflicts (RFC 9111 4.2.1: "When there is more than one
value present for a given directive (e.g., two Expires header field lines
or multiple Cache-Control: max-age directives), either the first
occurrence should be used or the response should be considered stale.  If
directives conflict (e.g., both max-age and no-cache are present), the most
restrictive directive should be honored."):

  - a response's C{max-age} or C{s-maxage} given twice with different
    values, or with an invalid value (not a delta-seconds), makes the
    response stale: its freshness lifetime is 0 (we take the "considered
    stale" branch, the restrictive one; the same value twice is no
    conflict).  Caches "are encouraged to consider responses that have
    invalid freshness information (e.g., a max-age directive with
    non-integer content) to be stale" (4.2.1);
  - a boolean directive counts if it occurs anywhere (C{no-store} anywhere
    is C{no-store});
  - C{no-cache} and C{private}: the unqualified form anywhere wins over any
    qualified form (it restricts more); qualified forms add up their field
    names;
  - request C{max-age} and C{max-stale}: the smallest value; C{min-fresh}:
    the largest (each the most restrictive); an invalid request C{max-age}
    counts as C{max-age=0} (revalidate), an invalid C{min-fresh} or
    C{max-stale} value is ignored (so no stale response is accepted on its
    account);
  - C{stale-while-revalidate} and C{stale-if-error} (RFC 5861): the smallest
    valid value; an invalid one is ignored.

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

import re

__all__ = [
    "DELTA_SECONDS_MAX",
    "MAX_STALE_ANY",
    "parseDirectives",
    "parseDeltaSeconds",
    "parseFieldNames",
    "RequestDirectives",
    "ResponseDirectives",
]

# RFC 9111 1.2.2: "If a cache receives a delta-seconds value greater than the
# greatest integer it can represent, or if any of its subsequent calculations
# overflows, the cache MUST consider the value to be 2147483648 (2^31) or the
# greatest positive integer it can conveniently represent."
DELTA_SECONDS_MAX = 2147483648

# max-stale without a value: "the client is willing to accept a stale
# response of any age" (5.2.1.2).
MAX_STALE_ANY = DELTA_SECONDS_MAX

_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_DIGITS = re.compile(rb"[0-9]+")
_WS = b" \t"

# Marker for "the directive is present but its argument is unusable".
_INVALID = -1

# The field names of an unqualified or absent no-cache / private: one shared
# object, since every stored response keeps its directives (an empty
# frozenset is not a singleton in CPython 3.11: 216 bytes each).
_NO_FIELDS: frozenset[bytes] = frozenset()


def parseDirectives(values: list[bytes]) -> list[tuple[bytes, bytes | None]]:
    """
    Split C{Cache-Control} field values into C{(name, argument)} pairs, in
    order, names lower-cased, quoted arguments unquoted.

    An element that starts with a token but does not follow C{token [ "="
    ( token / quoted-string ) ]} -- whitespace around C{=}, junk after the
    argument, an unterminated quoted string -- is kept as C{(name, b"")}: a
    directive present with an unusable argument, which every reader takes
    the restrictive way (an invalid C{max-age} makes the response stale, an
    empty C{private} or C{no-cache} list is unqualified).  An element that
    does not start with a token is skipped up to the next comma outside a
    quoted string.  Never raises.

    @param values: every C{Cache-Control} (or C{Pragma}) field line value.
    """
    out: list[tuple[bytes, bytes | None]] = []
    for value in values:
        _parseOne(value, out)
    return out


def _parseOne(value: bytes, out: list[tuple[bytes, bytes | None]]) -> None:
    n = len(value)
    i = 0
    while i < n:
        # Skip separators and whitespace between elements.
        while i < n and value[i] in b" \t,":
            i += 1
        if i >= n:
            return
        start = i
        while i < n and value[i] in _TOKEN_CHARS:
            i += 1
        name = value[start:i].lower()
        if not name:
            i = _skipElement(value, i)
            continue
        j = i
        while j < n and value[j] in _WS:
            j += 1
        if j >= n or value[j] == 0x2C:  # ","
            out.append((name, None))
            i = j
            continue
        if j != i or value[j] != 0x3D:  # not "=" right after the name
            out.append((name, b""))
            i = _skipElement(value, j)
            continue
        j += 1
        if j < n and value[j] == 0x22:  # '"'
            arg, j, ok = _quotedString(value, j)
            if not ok:
                # Unterminated quoted string: the rest of the field is one
                # broken element.
                out.append((name, b""))
                return
        else:
            k = j
            while k < n and value[k] in _TOKEN_CHARS:
                k += 1
            arg = value[j:k]
            j = k
        # After the argument: only whitespace, then a comma or the end.
        while j < n and value[j] in _WS:
            j += 1
        if j < n and value[j] != 0x2C:
            out.append((name, b""))
            i = _skipElement(value, j)
            continue
        out.append((name, arg))
        i = j


def _quotedString(value: bytes, i: int) -> tuple[bytes, int, bool]:
    """
    The unquoted content of the quoted-string starting at C{value[i]} (a
    C{"}), the index after it, and whether it was terminated.
    """
    n = len(value)
    i += 1
    chunks = bytearray()
    while i < n:
        c = value[i]
        if c == 0x5C and i + 1 < n:  # backslash: quoted-pair
            chunks.append(value[i + 1])
            i += 2
            continue
        if c == 0x22:
            return bytes(chunks), i + 1, True
        chunks.append(c)
        i += 1
    return bytes(chunks), i, False


def _skipElement(value: bytes, i: int) -> int:
    """
    The index of the comma ending the (broken) element at C{i}, skipping
    quoted strings, or the end of C{value}.
    """
    n = len(value)
    while i < n:
        c = value[i]
        if c == 0x2C:
            return i
        if c == 0x22:
            _, i, ok = _quotedString(value, i)
            if not ok:
                return n
            continue
        i += 1
    return n


def parseDeltaSeconds(arg: bytes | None) -> int | None:
    """
    A delta-seconds value (RFC 9111 1.2.2: C{1*DIGIT}), capped at 2^31, or
    L{None} if C{arg} is absent or not a valid delta-seconds (negative,
    fractional, empty, with a sign or other characters).
    """
    if arg is None or not _DIGITS.fullmatch(arg):
        return None
    if len(arg) > 10:
        return DELTA_SECONDS_MAX
    return min(int(arg), DELTA_SECONDS_MAX)


def parseFieldNames(arg: bytes | None) -> frozenset[bytes]:
    """
    The field names listed in a qualified C{no-cache} or C{private}
    argument (a comma-separated list of tokens), lower-cased.
    """
    if not arg:
        return _NO_FIELDS
    return frozenset(
        t
        for t in (p.strip().lower() for p in arg.split(b","))
        if t and all(c in _TOKEN_CHARS for c in t)
    )


def _deltaValues(pairs: list[tuple[bytes, bytes | None]], name: bytes) -> list[int] | None:
    """
    Every value of directive C{name}, with L{_INVALID} for unusable ones, or
    L{None} if the directive is absent.
    """
    found: list[int] | None = None
    for n, arg in pairs:
        if n == name:
            if found is None:
                found = []
            v = parseDeltaSeconds(arg)
            found.append(_INVALID if v is None else v)
    return found


class ResponseDirectives:
    """
    The response directives of RFC 9111 5.2.2 and RFC 5861, as a shared
    cache reads them.

    @ivar noStore: C{no-store} (5.2.2.5).
    @ivar noCache: unqualified C{no-cache} (5.2.2.4): never reuse without
        validation.
    @ivar noCacheFields: the field names of qualified C{no-cache} (empty
        when unqualified or absent): reuse without validation only without
        those fields.
    @ivar private: unqualified C{private} (5.2.2.7): a shared cache must not
        store the response.
    @ivar privateFields: the field names of qualified C{private}: a shared
        cache may store the response without those fields.
    @ivar public: C{public} (5.2.2.9).
    @ivar mustRevalidate: C{must-revalidate} (5.2.2.2).
    @ivar proxyRevalidate: C{proxy-revalidate} (5.2.2.8).
    @ivar mustUnderstand: C{must-understand} (5.2.2.3).
    @ivar immutable: C{immutable} (RFC 8246).
    @ivar noTransform: C{no-transform} (5.2.2.6; we never transform).
    @ivar maxAge: C{max-age} in seconds, or L{None} if absent.
    @ivar sMaxAge: C{s-maxage} in seconds, or L{None} if absent.
    @ivar invalidFreshness: C{max-age} or C{s-maxage} is present with an
        invalid value or with conflicting values: the response is stale
        (4.2.1).  C{maxAge}/C{sMaxAge} are then 0.
    @ivar staleWhileRevalidate: RFC 5861 3, seconds, or L{None}.
    @ivar staleIfError: RFC 5861 4, seconds, or L{None}.
    """

    __slots__ = (
        "noStore",
        "noCache",
        "noCacheFields",
        "private",
        "privateFields",
        "public",
        "mustRevalidate",
        "proxyRevalidate",
        "mustUnderstand",
        "immutable",
        "noTransform",
        "maxAge",
        "sMaxAge",
        "invalidFreshness",
        "staleWhileRevalidate",
        "staleIfError",
    )

    def __init__(self, pairs: list[tuple[bytes, bytes | None]]) -> None:
        names = {n for n, _ in pairs}
        self.noStore = b"no-store" in names
        self.public = b"public" in names
        self.mustRevalidate = b"must-revalidate" in names
        self.proxyRevalidate = b"proxy-revalidate" in names
        self.mustUnderstand = b"must-understand" in names
        self.immutable = b"immutable" in names
        self.noTransform = b"no-transform" in names
        self.noCache, self.noCacheFields = _qualified(pairs, b"no-cache")
        self.private, self.privateFields = _qualified(pairs, b"private")
        self.invalidFreshness = False
        self.maxAge = self._freshness(pairs, b"max-age")
        self.sMaxAge = self._freshness(pairs, b"s-maxage")
        self.staleWhileRevalidate = _smallest(_deltaValues(pairs, b"stale-while-revalidate"))
        self.staleIfError = _smallest(_deltaValues(pairs, b"stale-if-error"))

    def _freshness(self, pairs: list[tuple[bytes, bytes | None]], name: bytes) -> int | None:
        values = _deltaValues(pairs, name)
        if values is None:
            return None
        if _INVALID in values or len(set(values)) > 1:
            self.invalidFreshness = True
            return 0
        return values[0]

    @classmethod
    def fromHeaders(cls, headers: list[tuple[bytes, bytes]]) -> ResponseDirectives:
        """
        The directives of every C{Cache-Control} line of C{headers}.

        Responses of one site repeat a few C{Cache-Control} values, and the
        directives are values (read, never changed): each distinct set of
        lines is parsed once, from a bounded table.
        """
        lines = tuple([v for n, v in headers if n.lower() == b"cache-control"])
        known = _RESPONSE_DIRECTIVES.get(lines)
        if known is None:
            if len(_RESPONSE_DIRECTIVES) >= _KNOWN_DIRECTIVES:
                _RESPONSE_DIRECTIVES.clear()
            known = _RESPONSE_DIRECTIVES[lines] = cls(parseDirectives(list(lines)))
        return known

    @property
    def prohibitsStale(self) -> bool:
        """
        Whether a shared cache must never serve this response stale: RFC 9111
        4.2.4 ("A cache MUST NOT generate a stale response if it is
        prohibited by an explicit in-protocol directive (e.g., by a
        no-cache response directive, a must-revalidate response directive,
        or an applicable s-maxage or proxy-revalidate response
        directive").  s-maxage "incorporates the semantics of the
        proxy-revalidate response directive" (5.2.2.10).
        """
        return (
            self.noCache or self.mustRevalidate or self.proxyRevalidate or self.sMaxAge is not None
        )

    def __repr__(self) -> str:
        set_ = [a for a in self.__slots__ if getattr(self, a) not in (None, False, frozenset())]
        return "<ResponseDirectives {}>".format(
            ", ".join("{}={!r}".format(a, getattr(self, a)) for a in set_)
        )


# ResponseDirectives.fromHeaders: Cache-Control lines -> their directives,
# at most this many (cleared when full: a miss costs one parse).
_KNOWN_DIRECTIVES = 512
_RESPONSE_DIRECTIVES: dict[tuple[bytes, ...], ResponseDirectives] = {}


class RequestDirectives:
    """
    The request directives of RFC 9111 5.2.1 and RFC 5861 4.

    @ivar noCache: C{no-cache} (5.2.1.4), or C{Pragma: no-cache} when the
        request has no C{Cache-Control} (5.4).
    @ivar noStore: C{no-store} (5.2.1.5).
    @ivar onlyIfCached: C{only-if-cached} (5.2.1.7).
    @ivar maxAge: C{max-age} (5.2.1.1), or L{None}.
    @ivar maxStale: C{max-stale} (5.2.1.2): seconds, L{MAX_STALE_ANY} when
        given without a value, or L{None}.
    @ivar minFresh: C{min-fresh} (5.2.1.3), or L{None}.
    @ivar staleIfError: RFC 5861 4, or L{None}.
    """

    __slots__ = (
        "noCache",
        "noStore",
        "onlyIfCached",
        "maxAge",
        "maxStale",
        "minFresh",
        "staleIfError",
    )

    def __init__(
        self, pairs: list[tuple[bytes, bytes | None]], pragmaNoCache: bool = False
    ) -> None:
        names = {n for n, _ in pairs}
        self.noCache = b"no-cache" in names or pragmaNoCache
        self.noStore = b"no-store" in names
        self.onlyIfCached = b"only-if-cached" in names
        maxAge = _deltaValues(pairs, b"max-age")
        if maxAge is None:
            self.maxAge: int | None = None
        else:
            # An invalid value is taken as 0: the most restrictive reading.
            self.maxAge = min(0 if v == _INVALID else v for v in maxAge)
        self.maxStale: int | None = None
        for n, arg in pairs:
            if n != b"max-stale":
                continue
            if arg is None:
                v: int | None = MAX_STALE_ANY
            else:
                v = parseDeltaSeconds(arg)
            if v is not None:
                self.maxStale = v if self.maxStale is None else min(self.maxStale, v)
        minFresh = [v for v in (_deltaValues(pairs, b"min-fresh") or []) if v != _INVALID]
        self.minFresh = max(minFresh) if minFresh else None
        self.staleIfError = _smallest(_deltaValues(pairs, b"stale-if-error"))

    @classmethod
    def fromHeaders(cls, headers: list[tuple[bytes, bytes]]) -> RequestDirectives:
        """
        The directives of a request's C{Cache-Control} lines; with none,
        C{Pragma: no-cache} counts as C{Cache-Control: no-cache} (RFC 9111
        5.4: "When the Cache-Control header field is not present in a
        request, caches MUST consider the no-cache request pragma-directive
        as having the same effect as if "Cache-Control: no-cache" were
        present").
        """
        cc = []
        pragma = []
        for n, v in headers:
            ln = n.lower()
            if ln == b"cache-control":
                cc.append(v)
            elif ln == b"pragma":
                pragma.append(v)
        if cc:
            return cls(parseDirectives(cc))
        noCache = any(name == b"no-cache" for name, _ in parseDirectives(pragma))
        return cls([], pragmaNoCache=noCache)

    @property
    def empty(self) -> bool:
        """
        Whether no directive that matters to a cache is present.
        """
        return not (
            self.noCache
            or self.noStore
            or self.onlyIfCached
            or self.maxAge is not None
            or self.maxStale is not None
            or self.minFresh is not None
            or self.staleIfError is not None
        )

    def __repr__(self) -> str:
        set_ = [a for a in self.__slots__ if getattr(self, a) not in (None, False)]
        return "<RequestDirectives {}>".format(
            ", ".join("{}={!r}".format(a, getattr(self, a)) for a in set_)
        )


def _qualified(
    pairs: list[tuple[bytes, bytes | None]], name: bytes
) -> tuple[bool, frozenset[bytes]]:
    """
    C{(unqualified, fieldNames)} for C{no-cache} or C{private}: an
    unqualified occurrence anywhere (or a qualified one listing no valid
    field name) wins; otherwise the union of the listed names.
    """
    present = False
    fields: set[bytes] = set()
    for n, arg in pairs:
        if n != name:
            continue
        present = True
        listed = parseFieldNames(arg)
        if not listed:
            return True, _NO_FIELDS
        fields |= listed
    if not present:
        return False, _NO_FIELDS
    return False, frozenset(fields)


def _smallest(values: list[int] | None) -> int | None:
    if not values:
        return None
    valid = [v for v in values if v != _INVALID]
    return min(valid) if valid else None
