# -*- test-case-name: tests.test_cache_disk -*-
"""
L{StoredResponse}: what a store keeps about one stored response besides its
body -- the cache key, the request field values its C{Vary} selected on, the
status line and header section, and the four times RFC 9111 4.2.3 needs to
compute its age.  Stores keep it as they are given it (memory) or serialise
it (L{StoredResponse.toJSON}, disk).

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .derived import Derived

__all__ = ["StoredResponse"]


class StoredResponse:
    """
    The metadata of one stored response.

    @ivar key: the primary cache key (the normalised target URI, see
        L{twisted_proxy.proxy.cache.keys.primaryKey}).
    @ivar varyNames: the field names the response's C{Vary} lists (lower
        case, in order, without duplicates); empty if it has no C{Vary}.
    @ivar varyValues: for each of C{varyNames}, the normalised value of that
        field in the request that elicited the response, or L{None} if the
        request did not have it (RFC 9111 4.1).
    @ivar status: the status code.
    @ivar reason: the reason phrase.
    @ivar version: the HTTP version of the response as received
        (C{b"1.1"}), used for C{Via} when it is served.
    @ivar headers: the stored header section: the end-to-end fields as
        received, without C{Connection} and the fields it names, other
        hop-by-hop fields, C{Content-Length}, C{Transfer-Encoding}, C{Age}
        and the fields C{private="..."} names; with C{Date} added if the
        origin sent none (RFC 9110 6.6.1).
    @ivar requestTime: when the request that elicited it (or its last
        validation) was sent (POSIX time; RFC 9111 4.2.3 C{request_time}).
    @ivar responseTime: when the response (or the 304 that last validated
        it) was received (C{response_time}).
    @ivar dateValue: its C{Date} as POSIX time (C{date_value}).
    @ivar ageValue: its C{Age} as received, in seconds (C{age_value}).
    @ivar bodyLength: the length of the stored body (set at commit).
    @ivar entryId: the store's identifier for this entry (set at commit).
    @ivar invalidated: the entry must not be served without validation:
        a C{HEAD} response contradicted it (RFC 9111 4.3.5).
    @ivar derived: what the cache derives from the headers (directives,
        lifetime), computed the first time the entry is served; never
        stored.
    """

    __slots__ = (
        "key",
        "varyNames",
        "varyValues",
        "status",
        "reason",
        "version",
        "headers",
        "requestTime",
        "responseTime",
        "dateValue",
        "ageValue",
        "bodyLength",
        "entryId",
        "invalidated",
        # Derived from the headers, computed once by the cache: not stored.
        "derived",
    )

    def __init__(
        self,
        key: str,
        varyNames: tuple[bytes, ...],
        varyValues: tuple[bytes | None, ...],
        status: int,
        reason: bytes,
        version: bytes,
        headers: list[tuple[bytes, bytes]],
        requestTime: float,
        responseTime: float,
        dateValue: float,
        ageValue: int,
        bodyLength: int = 0,
        entryId: str = "",
        invalidated: bool = False,
    ) -> None:
        self.key = key
        self.varyNames = varyNames
        self.varyValues = varyValues
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.requestTime = requestTime
        self.responseTime = responseTime
        self.dateValue = dateValue
        self.ageValue = ageValue
        self.bodyLength = bodyLength
        self.entryId = entryId
        self.invalidated = invalidated
        self.derived: Derived | None = None

    def get(self, name: bytes) -> bytes | None:
        """
        The value of field C{name} (lower case), combined with C{", "} if
        repeated, or L{None}.
        """
        found = None
        for n, v in self.headers:
            if n.lower() == name:
                found = v if found is None else found + b", " + v
        return found

    def copy(self, **changes: Any) -> StoredResponse:
        """
        A copy with some attributes changed (the derived values are
        dropped: they may depend on what changed).
        """
        values = {a: getattr(self, a) for a in self.__slots__ if a != "derived"}
        values["headers"] = list(values["headers"])
        values.update(changes)
        return StoredResponse(**values)

    def metadataSize(self) -> int:
        """
        An estimate of the bytes this metadata costs to keep in memory (for
        the stores' budgets), from CPython 3.11's object sizes: about 1 KiB
        for the object itself, its times, id and status line (~370 bytes),
        the directives and lifetime derived from it once it is served
        (~300), and a store's index entries and body container (~350); the
        key; and for each field line its tuple, two bytes objects and list
        slot (~130 bytes besides the text).  Checked against the daemon's
        RSS by C{bench/cache_bench.py} (a cache of 1 KiB objects costs what
        it counts, within a few percent).
        """
        return (
            1024
            + 50
            + len(self.key)
            + sum(len(n) + len(v) + 130 for n, v in self.headers)
            + sum(
                len(n) + len(v or b"") + 90
                for n, v in zip(self.varyNames, self.varyValues, strict=True)
            )
        )

    def toJSON(self) -> dict[str, Any]:
        """
        A JSON-serialisable form (bytes as Latin-1 text, which maps every
        byte to one character and back).
        """
        return {
            "key": self.key,
            "varyNames": [n.decode("latin-1") for n in self.varyNames],
            "varyValues": [None if v is None else v.decode("latin-1") for v in self.varyValues],
            "status": self.status,
            "reason": self.reason.decode("latin-1"),
            "version": self.version.decode("latin-1"),
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in self.headers],
            "requestTime": self.requestTime,
            "responseTime": self.responseTime,
            "dateValue": self.dateValue,
            "ageValue": self.ageValue,
            "bodyLength": self.bodyLength,
            "entryId": self.entryId,
            "invalidated": self.invalidated,
        }

    @classmethod
    def fromJSON(cls, data: dict[str, Any]) -> StoredResponse:
        """
        The inverse of L{toJSON}.

        @raise ValueError: if C{data} is not a valid serialised entry.
        """
        try:
            varyNames = tuple(n.encode("latin-1") for n in data["varyNames"])
            varyValues = tuple(
                None if v is None else v.encode("latin-1") for v in data["varyValues"]
            )
            if len(varyNames) != len(varyValues):
                raise ValueError("vary names and values differ in length")
            entry = cls(
                key=str(data["key"]),
                varyNames=varyNames,
                varyValues=varyValues,
                status=int(data["status"]),
                reason=data["reason"].encode("latin-1"),
                version=data["version"].encode("latin-1"),
                headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in data["headers"]],
                requestTime=float(data["requestTime"]),
                responseTime=float(data["responseTime"]),
                dateValue=float(data["dateValue"]),
                ageValue=int(data["ageValue"]),
                bodyLength=int(data["bodyLength"]),
                entryId=str(data["entryId"]),
                invalidated=bool(data["invalidated"]),
            )
        except (KeyError, TypeError, AttributeError, UnicodeError) as e:
            raise ValueError("not a stored response: {}".format(e)) from None
        if entry.bodyLength < 0 or not 100 <= entry.status <= 999:
            raise ValueError("not a stored response: bad length or status")
        return entry

    def __repr__(self) -> str:
        return "<StoredResponse {} {} vary={!r} id={} length={}>".format(
            self.key,
            self.status,
            dict(zip(self.varyNames, self.varyValues, strict=True)),
            self.entryId,
            self.bodyLength,
        )
