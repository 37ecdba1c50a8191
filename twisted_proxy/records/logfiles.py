# -*- test-case-name: tests.test_history_logfiles -*-
"""
The record files: the JSON-lines history (L{historyObserver}) and the access
log (L{accessLogObserver}).

Each is a L{RecordFileObserver}: a log observer that turns every event
carrying a C{"transaction"} dict (see L{twisted_proxy.records.emit}) into
one line of a L{RecordLogFile}, and ignores every other event.

Buffering
=========

Given a clock (the reactor), an observer collects lines and writes them
together: at most L{RecordFileObserver.flushInterval} (50 ms) after the
first line of a batch, at once when L{RecordFileObserver.flushSize} (64 KiB)
is waiting, before a C{reopen()} and at C{close()}.  A burst of records thus
costs one C{write(2)} instead of one each; a record reaches the file within
50 ms; and nothing is lost on a clean stop, since the service that owns the
observers closes them when it stops.  A process that is killed loses at most
the last 50 ms of records.  Without a clock, each line is written as it
comes.

Files
=====

Size rotation (C{path} -> C{path.1} -> ... C{path.<keep>}, the history only,
off unless asked for) happens only between records, so a record is never
split across files.  For rotation by time or by an outside tool (logrotate),
rename the file and call C{reopen()} (the service does on C{SIGUSR1}): the
records before go to the renamed file, the records after to a new file at
the path.

If a write fails (a full disk), the error is logged once and the records
stay in memory, up to L{RecordFileObserver.maxBacklog} octets, and are
written when writing works again (retried every second); records beyond that
are counted, and the count is logged when writing resumes.

Observers are called in the reactor thread (transaction events are emitted
there); they are not thread-safe.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.logger import ILogObserver, LogEvent, Logger
from twisted.python.logfile import LogFile
from zope.interface import implementer

from .accesslog import ACCESS_LOG_FORMATS

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = [
    "RecordLogFile",
    "RecordFileObserver",
    "historyObserver",
    "accessLogObserver",
    "jsonLine",
]

_log = Logger()


class RecordLogFile(LogFile):
    """
    A L{LogFile} of whole-line records, written in batches.

    On top of L{LogFile}'s size-based rotation (C{path} -> C{path.1} ->
    C{path.2} ..., at most C{maxRotatedFiles} kept), it:

      - writes a batch of records with one C{write} per file they land in
        (L{writeRecords}), rotating only between records, so that a record
        is never split across files and a file exceeds the rotate size by at
        most one record;
      - ends an incomplete last line before writing more, whether a crash
        left it (found when the file is opened) or a failed write (a full
        disk) did, so that a fragment stays one unparseable line instead of
        corrupting the record after it;
      - C{fsync}s the file before rotating it away, so that a rotated file
        is complete even after a system crash;
      - on C{reopen}, opens the new file before closing the old one, so a
        failed reopen leaves the writer writing where it was.

    A rotated file is only ever renamed, never rewritten.

    @ivar _fragment: whether the open file ends in part of a record (a write
        failed half way); the next write starts a new line first.
    """

    _fragment = False

    def _openFile(self) -> None:
        LogFile._openFile(self)
        self._fragment = False
        if self.size:
            try:
                self._file.seek(-1, os.SEEK_END)
                last = self._file.read(1)
                self._file.seek(0, os.SEEK_END)
            except OSError:
                return
            self._fragment = last != b"\n"

    def write(self, data: bytes) -> None:
        """
        Write one complete record (rotating first if the file is full).
        """
        self.writeRecords([data])

    def writeRecords(self, records: list[bytes]) -> None:
        """
        Write C{records} (each a complete line) in order, with one C{write}
        per file they land in.  Before each record, the file is rotated if it
        has reached the rotate size, as L{LogFile.write} does; a rotation
        that cannot happen (the file was renamed away) is retried before
        each record after it, as before every record written unbatched.

        Records are removed from C{records} as they are written.  If a write
        fails, the error propagates and C{records} holds, whole, every record
        not completely written; the part of a record that did reach the file
        is ended as a line of its own before the next write.

        @raise OSError: if a write fails.
        """
        while records:
            if self.shouldRotate():
                self.rotate()
            count = self._fitting(records)
            chunk = b"".join(records[:count]) if count > 1 else records[0]
            newline = 1 if self._fragment else 0
            if newline:
                chunk = b"\n" + chunk
            view = memoryview(chunk)
            written = 0
            try:
                while written < len(chunk):
                    some = self._file.write(view[written:])
                    if not some:
                        raise OSError(errno.EIO, f"short write to {self.path}")
                    written += some
            except OSError:
                self._keepUnwritten(records, count, written, newline)
                raise
            finally:
                self.size += written
            self._fragment = False
            del records[:count]

    def _keepUnwritten(self, records: list[bytes], count: int, written: int, newline: int) -> None:
        """
        After a failed write of the first C{count} of C{records} (preceded
        by C{newline} octets ending a fragment): remove the records that were
        written completely, and remember whether the file now ends in part
        of one.
        """
        if written < newline:
            return
        written -= newline
        self._fragment = False
        done = 0
        for record in records[:count]:
            if written < len(record):
                break
            written -= len(record)
            done += 1
        del records[:done]
        self._fragment = written > 0

    def _fitting(self, records: list[bytes]) -> int:
        """
        How many of C{records} go into the current file: at least one, and
        then each one that starts before the rotate size is reached.
        """
        limit = self.rotateLength
        if not limit:
            return len(records)
        size = self.size
        count = 0
        for record in records:
            if count and size >= limit:
                break
            size += len(record)
            count += 1
        return count

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
        old, fragment = self._file, self._fragment
        try:
            self._openFile()
        except OSError:
            self._fragment = fragment
            raise
        old.close()


def _openLogFile(path: str, rotateLength: int | None, keep: int | None) -> RecordLogFile:
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
    ignored.  Built by L{historyObserver} and L{accessLogObserver}; see the
    module docstring for when lines are written.

    @cvar flushInterval: seconds from the first buffered line to the write.
    @cvar flushSize: octets of buffered lines that are written at once.
    @cvar maxBacklog: octets kept in memory while writes fail.
    @cvar retryInterval: seconds between attempts while writes fail.

    @ivar path: the file written to.
    @ivar _state: C{"WRITING"}; C{"FAILING"} after a write failed (the error
        was logged; lines are kept and retried) until one succeeds;
        C{"CLOSED"} after L{close} (events are ignored).
    @ivar _logFile: the open file.
    @ivar _formatter: record dict -> line (without the newline).
    @ivar _clock: schedules flushes, or L{None} to write every line at once.
    @ivar _pending: encoded lines not yet written, oldest first.
    @ivar _pendingSize: their total size.
    @ivar _timer: the scheduled flush, if any.
    @ivar _dropped: lines dropped while failing (the backlog was full).
    """

    flushInterval = 0.05
    flushSize = 64 * 1024
    maxBacklog = 16 * 1024 * 1024
    retryInterval = 1.0

    _state = "WRITING"
    _timer: IDelayedCall | None = None
    _dropped = 0

    def __init__(
        self,
        logFile: RecordLogFile,
        formatter: Callable[[dict[str, Any]], str],
        clock: IReactorTime | None = None,
    ) -> None:
        self.path: str = logFile.path
        self._logFile = logFile
        self._formatter = formatter
        self._clock = clock
        self._pending: list[bytes] = []
        self._pendingSize = 0

    def __call__(self, event: LogEvent) -> None:
        record = event.get("transaction")
        if not isinstance(record, dict) or self._state == "CLOSED":
            return
        line = (self._formatter(record) + "\n").encode("utf-8", "backslashreplace")
        if self._pendingSize + len(line) > self.maxBacklog:
            self._dropped += 1
            return
        self._pending.append(line)
        self._pendingSize += len(line)
        clock = self._clock
        if clock is None:
            self.flush()
        elif self._state == "WRITING":
            if self._pendingSize >= self.flushSize:
                self.flush()
            elif self._timer is None:
                self._timer = clock.callLater(self.flushInterval, self._flushDue)

    def _flushDue(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """
        Write the buffered lines now.  If the write fails, log it (once, until
        a write succeeds again) and keep the lines for the next attempt.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        try:
            self._logFile.writeRecords(self._pending)
        except OSError as e:
            self._pendingSize = sum(map(len, self._pending))
            if self._state == "WRITING":
                self._state = "FAILING"
                _log.error(
                    "Cannot write to {path} ({error}); keeping up to {backlog} MiB of "
                    "records in memory until it can be written.",
                    path=self.path,
                    error=e.strerror or e,
                    backlog=self.maxBacklog // (1024 * 1024),
                )
            if self._clock is not None:
                self._timer = self._clock.callLater(self.retryInterval, self._flushDue)
            return
        self._pendingSize = 0
        if self._state == "FAILING":
            self._state = "WRITING"
            if self._dropped:
                _log.warn(
                    "Writing to {path} again; {dropped} records that did not fit in "
                    "memory meanwhile are missing from it.",
                    path=self.path,
                    dropped=self._dropped,
                )
            else:
                _log.info(
                    "Writing to {path} again; no record was lost.",
                    path=self.path,
                    dropped=0,
                )
            self._dropped = 0

    def reopen(self) -> None:
        """
        Reopen the file by name (for C{SIGUSR1} after logrotate), once the
        buffered lines are written to the file they were emitted into.

        @raise OSError: if the file cannot be opened; the observer then keeps
            writing to the file it had.
        """
        if self._state == "CLOSED":
            return
        self.flush()
        self._logFile.reopen()

    def close(self) -> None:
        """
        Write the buffered lines and close the file; later events are
        ignored.  Closing again does nothing.
        """
        if self._state == "CLOSED":
            return
        self.flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            _log.error(
                "Could not write the last {count} records to {path}; they are lost.",
                count=len(self._pending),
                path=self.path,
            )
            self._pending = []
        self._state = "CLOSED"
        self._logFile.close()


# A record dict is built afresh for each event and holds no cycles, so the
# encoder need not keep the table of containers it has seen (which costs
# about as much as the rest of the encoding).
_jsonEncoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False)


def jsonLine(record: dict[str, Any]) -> str:
    """
    A record as one line of compact, ASCII-only JSON (the history's format).
    """
    return _jsonEncoder.encode(record)


def historyObserver(
    path: str, rotateSize: int, keep: int, clock: IReactorTime | None = None
) -> RecordFileObserver:
    """
    An observer writing transaction records to C{path} as JSON Lines.

    @param path: the history file; rotated files are C{path.1} (newest) to
        C{path.<keep>} (oldest).
    @param rotateSize: rotate when the file has reached this many octets
        (a file holds at least one record, so may exceed it by one record);
        C{0} disables rotation (use logrotate and C{reopen()} instead).
    @param keep: how many rotated files to keep (at least 1).
    @param clock: the reactor, to buffer lines and write them on a timer;
        L{None} writes each line as it comes.
    @raise ValueError: for a negative size or a C{keep} below 1.
    @raise OSError: if the file cannot be opened.
    """
    if rotateSize < 0:
        raise ValueError("history rotate size must not be negative")
    if keep < 1:
        raise ValueError("number of history files to keep must be at least 1")
    return RecordFileObserver(_openLogFile(path, rotateSize or None, keep), jsonLine, clock)


def accessLogObserver(path: str, fmt: str, clock: IReactorTime | None = None) -> RecordFileObserver:
    """
    An observer writing an access log to C{path} (never rotated by the
    proxy: use logrotate and C{reopen()}).

    @param fmt: C{"squid"} (Squid's native format), C{"common"} or
        C{"combined"} (Apache's).
    @param clock: as for L{historyObserver}.
    @raise ValueError: for an unknown format.
    @raise OSError: if the file cannot be opened.
    """
    if fmt not in ACCESS_LOG_FORMATS:
        raise ValueError(
            "unknown access log format {!r}; expected one of {}".format(
                fmt, ", ".join(ACCESS_LOG_FORMATS)
            )
        )
    return RecordFileObserver(_openLogFile(path, None, None), ACCESS_LOG_FORMATS[fmt], clock)
