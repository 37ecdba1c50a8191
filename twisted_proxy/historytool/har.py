# -*- test-case-name: tests.test_historytool -*-
"""
C{--har}: the records as an HTTP Archive 1.2 document (L{harFromRecords}),
written atomically (L{writeHar}).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

from .. import __version__
from ..http.fields import REDACTED
from .read import Record, clientText

__all__ = ["harFromRecords", "writeHar"]


def _pairs(fields: Any) -> list[dict[str, str]]:
    return [{"name": str(name), "value": str(value)} for name, value in fields or ()]


def _headerValue(fields: Any, name: str) -> str | None:
    for fieldName, value in fields or ():
        if str(fieldName).lower() == name:
            return str(value)
    return None


def _requestCookies(fields: Any) -> list[dict[str, str]]:
    cookies = []
    for name, value in fields or ():
        if str(name).lower() != "cookie" or value == REDACTED:
            continue
        for part in str(value).split(";"):
            cookieName, sep, cookieValue = part.strip().partition("=")
            if sep and cookieName:
                cookies.append({"name": cookieName, "value": cookieValue})
    return cookies


def _responseCookies(fields: Any) -> list[dict[str, Any]]:
    cookies = []
    for name, value in fields or ():
        if str(name).lower() != "set-cookie" or value == REDACTED:
            continue
        first, *attributes = str(value).split(";")
        cookieName, sep, cookieValue = first.strip().partition("=")
        if not (sep and cookieName):
            continue
        cookie: dict[str, Any] = {"name": cookieName, "value": cookieValue}
        for attribute in attributes:
            key, _, attributeValue = attribute.strip().partition("=")
            key = key.lower()
            if key in ("path", "domain"):
                cookie[key] = attributeValue
            elif key == "httponly":
                cookie["httpOnly"] = True
            elif key == "secure":
                cookie["secure"] = True
        cookies.append(cookie)
    return cookies


def _harUrl(record: Record) -> str:
    target = record.get("target") or ""
    host = record.get("destHost")
    if target.startswith("/") and host:
        if ":" in host and not host.startswith("["):
            host = "[" + host + "]"
        port = record.get("destPort")
        return "http://{}{}{}".format(host, "" if port in (None, 80) else f":{port}", target)
    return str(target)


def _harTimings(record: Record) -> dict[str, float]:
    """
    HAR timings from the monotonic offsets: each interval between two marked
    phases goes to the bucket of the later one (requestHead -> connectStart
    is C{blocked}; connectStart -> upstreamReady is C{connect}, or, for a
    pooled connection, requestHead -> upstreamReady is C{blocked}; ->
    requestSent is C{send}; -> responseHead is C{wait}; -> end is
    C{receive}, or C{wait} when no response head came).  C{dns} and C{ssl}
    are not measured apart (they are inside C{connect}): -1.
    """
    offsets = record["offsets"]
    start = offsets.get("requestHead")
    previous = float(start) if isinstance(start, (int, float)) else 0.0
    buckets = {"blocked": 0.0, "pre": 0.0, "send": 0.0, "wait": 0.0, "receive": 0.0}
    owner = (
        ("connectStart", "blocked"),
        ("upstreamReady", "pre"),
        ("requestSent", "send"),
        ("responseHead", "wait"),
        ("end", "receive" if offsets.get("responseHead") is not None else "wait"),
    )
    for phase, bucket in owner:
        offset = offsets.get(phase)
        if not isinstance(offset, (int, float)):
            continue
        buckets[bucket] += max(0.0, offset - previous)
        previous = max(previous, offset)
    connected = offsets.get("upstreamReady") is not None
    reused = bool(record.get("connectionReused"))
    pre = round(buckets["pre"], 3)
    blocked = round(buckets["blocked"], 3) if offsets.get("connectStart") is not None else -1
    return {
        "blocked": pre if connected and reused else blocked,
        "dns": -1,
        "connect": pre if connected and not reused else -1,
        "send": round(buckets["send"], 3),
        "wait": round(buckets["wait"], 3),
        "receive": round(buckets["receive"], 3),
        "ssl": -1,
    }


def _harEntry(record: Record) -> dict[str, Any]:
    requestHeaders = record.get("requestHeaders") or []
    responseHeaders = record.get("responseHeaders") or []
    requestHeadSize = record.get("requestHeadSize")
    responseHeadSize = record.get("responseHeadSize")
    requestBody = (
        max(0, int(record.get("bytesFromClient") or 0) - requestHeadSize)
        if isinstance(requestHeadSize, int)
        else -1
    )
    responseBody = (
        max(0, int(record.get("bytesToClient") or 0) - responseHeadSize)
        if isinstance(responseHeadSize, int)
        else -1
    )
    url = _harUrl(record)
    timings = _harTimings(record)
    times = record["times"]
    entry: dict[str, Any] = {
        "startedDateTime": times.get("requestHead") or times["accepted"],
        "time": round(sum(value for value in timings.values() if value > 0), 3),
        "request": {
            "method": str(record.get("method") or ""),
            "url": url,
            "httpVersion": str(record.get("requestVersion") or ""),
            "cookies": _requestCookies(requestHeaders),
            "headers": _pairs(requestHeaders),
            "queryString": [
                {"name": name, "value": value}
                for name, value in parse_qsl(
                    urlsplit(url).query if "://" in url else "",
                    keep_blank_values=True,
                )
            ],
            "headersSize": requestHeadSize if isinstance(requestHeadSize, int) else -1,
            "bodySize": requestBody,
        },
        "response": {
            "status": int(record.get("status") or 0),
            "statusText": str(record.get("reason") or ""),
            "httpVersion": str(record.get("responseVersion") or ""),
            "cookies": _responseCookies(responseHeaders),
            "headers": _pairs(responseHeaders),
            "content": {
                "size": max(0, responseBody),
                "mimeType": _headerValue(responseHeaders, "content-type") or "",
            },
            "redirectURL": _headerValue(responseHeaders, "location") or "",
            "headersSize": (responseHeadSize if isinstance(responseHeadSize, int) else -1),
            "bodySize": responseBody,
        },
        "cache": {},
        "timings": timings,
        "connection": str(record.get("connectionId")),
        "_twistedProxy": {
            "kind": record.get("kind"),
            "client": clientText(record),
            "cacheStatus": record.get("cacheStatus"),
            "proxyError": record.get("proxyError"),
            "errorDetail": record.get("errorDetail"),
            "aborted": bool(record.get("aborted")),
            "durations": record["durations"],
        },
    }
    if record.get("peerHost"):
        entry["serverIPAddress"] = str(record["peerHost"])
    if record.get("proxyError") or record.get("aborted"):
        entry["_error"] = str(record.get("proxyError") or "aborted")
    return entry


def harFromRecords(records: Sequence[Record]) -> dict[str, Any]:
    """
    An HTTP Archive 1.2 document (as a JSON-ready dict) with one entry per
    record, in the given order.
    """
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "twisted-proxy proxyhistory", "version": __version__},
            "pages": [],
            "entries": [_harEntry(record) for record in records],
            "comment": "exported from the twisted-proxy transaction history",
        }
    }


def writeHar(document: dict[str, Any], out: str, stdout: IO[str]) -> None:
    """
    Write the HAR file C{out} (C{-}: stdout), replacing it atomically.
    """
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if out == "-":
        stdout.write(text)
        return
    directory = os.path.dirname(os.path.abspath(out))
    fd, temporary = tempfile.mkstemp(prefix=".proxyhistory-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, out)
    except BaseException:
        os.unlink(temporary)
        raise
