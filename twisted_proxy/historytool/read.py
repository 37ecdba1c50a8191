# -*- test-case-name: tests.test_historytool -*-
"""
Reading history files: L{readRecords} turns files (plain, rotated or
gzip-compressed) into checked records, reporting what it skips; and what the
outputs need to know of a record (when it started, who the client was).
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

from ..records.record import RECORD_VERSION, timestampMicroseconds

__all__ = [
    "PROG",
    "Record",
    "readRecords",
    "checkRecord",
    "startMicroseconds",
    "formatStart",
    "clientText",
]

PROG = "proxyhistory"

Record = dict[str, Any]
"""
A history record: the dict documented in L{twisted_proxy.records.record}.
"""


def startMicroseconds(record: Record) -> int:
    """
    When a record's transaction started (request head, else connection
    accepted), in microseconds since the epoch.
    """
    times = record["times"]
    return timestampMicroseconds(times.get("requestHead") or times["accepted"])


_INTEGER_KEYS = (
    "bytesFromClient",
    "bytesToUpstream",
    "bytesFromUpstream",
    "bytesToClient",
)
_OPTIONAL_INTEGER_KEYS = ("status", "requestHeadSize", "responseHeadSize")
_OBJECT_KEYS = ("times", "offsets", "durations")


def checkRecord(value: Any) -> Record:
    """
    Return C{value} if it is a record this tool can read: a JSON object of
    the current C{recordVersion} whose fields have the types the tool relies
    on.

    @raise ValueError: saying why not.
    """
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    version = value.get("recordVersion")
    if version != RECORD_VERSION:
        raise ValueError(f"unsupported recordVersion {version!r}")
    for key in _OBJECT_KEYS:
        if not isinstance(value.get(key), dict):
            raise ValueError(f"{key} is not an object")
    for key in _INTEGER_KEYS:
        if not isinstance(value.get(key), int):
            raise ValueError(f"{key} is not an integer")
    for key in _OPTIONAL_INTEGER_KEYS:
        if value.get(key) is not None and not isinstance(value[key], int):
            raise ValueError(f"{key} is not an integer")
    times = value["times"]
    if not isinstance(times.get("accepted"), str):
        raise ValueError("times.accepted is not a timestamp")
    if times.get("requestHead") is not None and not isinstance(times["requestHead"], str):
        raise ValueError("times.requestHead is not a timestamp")
    startMicroseconds(value)
    return value


def _lines(path: str) -> Iterator[bytes]:
    """
    The lines of C{path}, decompressing it if it is gzip data.
    """
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield from unzipped
        else:
            yield from raw


def readRecords(paths: Iterable[str], stderr: IO[str]) -> tuple[list[Record], bool]:
    """
    Read the records in C{paths}, reporting bad lines and unreadable files
    on C{stderr}.  A file named twice is read once.

    @return: the records (in file order) and whether every file could be
        read completely.
    """
    records: list[Record] = []
    ok = True
    seen: set[str] = set()
    for path in paths:
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        lineNumber = 0
        try:
            for lineNumber, line in enumerate(_lines(path), 1):
                if not line.strip():
                    continue
                try:
                    record = checkRecord(json.loads(line.decode("utf-8")))
                except (ValueError, KeyError, TypeError) as e:
                    truncated = "" if line.endswith(b"\n") else " (truncated)"
                    stderr.write(
                        f"{PROG}: {path}:{lineNumber}: skipped corrupt record{truncated}: {e}\n"
                    )
                    continue
                records.append(record)
        except (OSError, EOFError, zlib.error) as e:
            ok = False
            where = f"{path}:{lineNumber + 1}" if lineNumber else path
            stderr.write(
                "{}: {}: cannot read: {}\n".format(PROG, where, getattr(e, "strerror", None) or e)
            )
    return records, ok


def formatStart(record: Record) -> str:
    micros = startMicroseconds(record)
    moment = datetime.fromtimestamp(micros // 1000000, UTC)
    return "{}.{:03d}Z".format(moment.strftime("%Y-%m-%dT%H:%M:%S"), (micros // 1000) % 1000)


def clientText(record: Record) -> str:
    host = str(record.get("clientHost") or "-")
    if ":" in host:
        host = "[" + host + "]"
    text = "{}:{}".format(host, record.get("clientPort"))
    if record.get("user"):
        text = "{}@{}".format(record["user"], text)
    return text
