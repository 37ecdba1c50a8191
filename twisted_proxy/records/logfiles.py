# -*- test-case-name: tests.test_history_logfiles -*-
"""
The record files: the JSON-lines history (L{historyObserver}) and the access
log (L{accessLogObserver}).

Each is a L{RecordFileObserver}: a log observer that turns every event
carrying a C{"transaction"} dict (see L{twisted_proxy.records.emit}) into
one line of a L{RecordLogFile}, written whole to an unbuffered file (so
flushed per record), and ignores every other event.  Both have C{reopen()}
(call it on C{SIGUSR1}, after logrotate renamed the file away) and
C{close()}.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from twisted.logger import ILogObserver, LogEvent
from twisted.python import threadable
from twisted.python.logfile import LogFile
from zope.interface import implementer

from .accesslog import ACCESS_LOG_FORMATS

__all__ = [
    "RecordLogFile",
    "RecordFileObserver",
    "historyObserver",
    "accessLogObserver",
    "jsonLine",
]


class RecordLogFile(LogFile):
    """
    A L{LogFile} for whole-line records.

    On top of L{LogFile}'s size-based rotation (C{path} -> C{path.1} ->
    C{path.2} ..., at most C{maxRotatedFiles} kept), it:

      - writes each record completely (looping over short writes) on the
        unbuffered file, so that a rotation can only ever happen between
        records and a record is on disk when C{write} returns;
      - on opening a file whose last line is incomplete (a crash in the
        middle of a write), ends that line first, so the fragment stays a
        single unparseable line instead of corrupting the next record;
      - C{fsync}s the file before rotating it away, so that a rotated file
        is complete even after a system crash;
      - on C{reopen}, opens the new file before closing the old one, so a
        failed reopen leaves the observer writing where it was.

    A rotated file is only ever renamed, never rewritten, so a crash can lose
    at most the record being written.
    """

    synchronized = ["write", "rotate"]

    def _openFile(self) -> None:
        LogFile._openFile(self)
        if self.size:
            try:
                self._file.seek(-1, os.SEEK_END)
                last = self._file.read(1)
                self._file.seek(0, os.SEEK_END)
            except OSError:
                return
            if last != b"\n":
                self._file.write(b"\n")
                self.size += 1

    def write(self, data: bytes) -> None:
        """
        Write one complete record (rotating first if the file is full).
        """
        if self.shouldRotate():
            self.flush()
            self.rotate()
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            if not written:
                raise OSError(f"short write to {self.path}")
            view = view[written:]
        self.size += len(data)

    def rotate(self) -> None:
        """
        Make the current file durable, then rotate as L{LogFile} does.
        Like L{LogFile}, do nothing (and keep writing to the current file) if
        the file cannot be renamed, e.g. after logrotate moved it away and
        before C{reopen()}.
        """
        if not (os.access(self.directory, os.W_OK) and os.access(self.path, os.W_OK)):
            return
        try:
            os.fsync(self._file.fileno())
        except OSError:
            pass
        LogFile.rotate(self)

    def reopen(self) -> None:
        """
        Open C{self.path} afresh (after logrotate renamed it away), then
        close the old file.  If the open fails, the old file stays in use and
        the error propagates.
        """
        old = self._file
        self._openFile()
        old.close()


threadable.synchronize(RecordLogFile)


def _openLogFile(
    path: str, rotateLength: int | None, keep: int | None
) -> RecordLogFile:
    """
    Open (creating if needed) the record file at C{path}.  A new file is
    created with mode 0640: it names clients and the URLs they fetch.  An
    existing file keeps its mode.
    """
    mode = None if os.path.exists(path) else 0o640
    logFile: RecordLogFile = RecordLogFile.fromFullPath(
        path, rotateLength=rotateLength, defaultMode=mode, maxRotatedFiles=keep
    )
    return logFile


@implementer(ILogObserver)
class RecordFileObserver:
    """
    Writes one line per transaction event to a L{RecordLogFile}, formatted by
    a function of the record dict; events without a C{"transaction"} dict are
    ignored.  Built by L{historyObserver} and L{accessLogObserver}.

    @ivar path: the file written to.
    @ivar _logFile: the open file, or L{None} once closed.
    @ivar _formatter: record dict -> line (without the newline).
    """

    def __init__(
        self, logFile: RecordLogFile, formatter: Callable[[dict[str, Any]], str]
    ) -> None:
        self.path: str = logFile.path
        self._logFile: RecordLogFile | None = logFile
        self._formatter = formatter

    def __call__(self, event: LogEvent) -> None:
        record = event.get("transaction")
        if not isinstance(record, dict) or self._logFile is None:
            return
        line = self._formatter(record) + "\n"
        self._logFile.write(line.encode("utf-8", "backslashreplace"))
        self._logFile.flush()

    def reopen(self) -> None:
        """
        Reopen the file by name (for C{SIGUSR1} after logrotate).

        @raise OSError: if the file cannot be opened; the observer then keeps
            writing to the file it had.
        """
        if self._logFile is not None:
            self._logFile.reopen()

    def close(self) -> None:
        """
        Close the file; later events are ignored.
        """
        if self._logFile is not None:
            logFile, self._logFile = self._logFile, None
            logFile.close()


# A record dict is built afresh for each event and holds no cycles, so the
# encoder need not keep the table of containers it has seen (which costs
# about as much as the rest of the encoding).
_jsonEncoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False)


def jsonLine(record: dict[str, Any]) -> str:
    """
    A record as one line of compact, ASCII-only JSON (the history's format).
    """
    return _jsonEncoder.encode(record)


def historyObserver(path: str, rotateSize: int, keep: int) -> RecordFileObserver:
    """
    An observer writing transaction records to C{path} as JSON Lines.

    @param path: the history file; rotated files are C{path.1} (newest) to
        C{path.<keep>} (oldest).
    @param rotateSize: rotate when the file has reached this many octets
        (a file holds at least one record, so may exceed it by one record);
        C{0} disables rotation (use logrotate and C{reopen()} instead).
    @param keep: how many rotated files to keep (at least 1).
    @raise ValueError: for a negative size or a C{keep} below 1.
    @raise OSError: if the file cannot be opened.
    """
    if rotateSize < 0:
        raise ValueError("history rotate size must not be negative")
    if keep < 1:
        raise ValueError("number of history files to keep must be at least 1")
    return RecordFileObserver(_openLogFile(path, rotateSize or None, keep), jsonLine)


def accessLogObserver(path: str, fmt: str) -> RecordFileObserver:
    """
    An observer writing an access log to C{path} (never rotated by the
    proxy: use logrotate and C{reopen()}).

    @param fmt: C{"squid"} (Squid's native format), C{"common"} or
        C{"combined"} (Apache's).
    @raise ValueError: for an unknown format.
    @raise OSError: if the file cannot be opened.
    """
    if fmt not in ACCESS_LOG_FORMATS:
        raise ValueError(
            "unknown access log format {!r}; expected one of {}".format(
                fmt, ", ".join(ACCESS_LOG_FORMATS)
            )
        )
    return RecordFileObserver(_openLogFile(path, None, None), ACCESS_LOG_FORMATS[fmt])
