# -*- test-case-name: tests.test_console -*-
"""
The log a person reads: twistd's console (its standard output with C{-n},
else C{twistd.log} or the C{-l} file).

L{Console} is the log observer twistd starts with when it runs the proxy
(L{Options <twisted_proxy.app.options.Options>} names L{twistdObserver} as
twistd's C{--logger}, unless the user named another).  Compared with
twistd's own text observer it:

  - shows what C{--log-level} asks for (L{wanted}): at C{info}, the
    default, the brief's lines and the proxy's own messages, and warnings
    and errors from anything; Twisted's own chatter ("Starting factory",
    "TCP Port 8080 closed", "reactor class: ...") only at C{debug};
  - tags lines C{[proxy]} (the brief's lines keep their tag), with the
    level added when it is not C{info}: C{[proxy#warn]};
  - writes in batches: lines are collected and written with one C{write}
    and one C{flush} every L{Console.flushInterval} seconds (or sooner when
    many are waiting), instead of a write and a flush per line, which cost
    about a quarter of a proxied request.  Lines are written at once until
    the service starts, and again from when it stops (L{stopBuffering}),
    so nothing is lost on a clean stop;
  - rotates its file on SIGUSR1 when the service asks (L{rotate}), before
    the records' files are reopened, so that "Log files reopened." lands in
    the new file.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time
from typing import IO, Any, cast

from twisted.logger import (
    ILogFilterPredicate,
    ILogObserver,
    LogLevel,
    PredicateResult,
    formatEvent,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer

__all__ = [
    "BufferedWriter",
    "Console",
    "LEVELS",
    "current",
    "formatLine",
    "prepare",
    "twistdObserver",
    "wanted",
]

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}

_ORDER = {
    LogLevel.debug: 0,
    LogLevel.info: 1,
    LogLevel.warn: 2,
    LogLevel.error: 3,
    LogLevel.critical: 4,
}

_LEVEL_TAGS = {
    LogLevel.debug: "#debug",
    LogLevel.info: "",
    LogLevel.warn: "#warn",
    LogLevel.error: "#error",
    LogLevel.critical: "#critical",
}


def _ours(event: dict[str, Any]) -> bool:
    """
    Whether C{event} is one of the proxy's own (or something printed),
    rather than Twisted's.
    """
    namespace = event.get("log_namespace") or ""
    if namespace.startswith("twisted_proxy") or namespace in ("stdout", "stderr"):
        return True
    system = event.get("log_system")
    return system is not None and system.startswith(("proxy", "worker-"))


@implementer(ILogFilterPredicate)
class _Wanted:
    """
    L{wanted} as a log filter predicate.
    """

    def __init__(self, level: LogLevel) -> None:
        self.level = level

    def __call__(self, event: dict[str, Any]) -> Any:  # a PredicateResult
        return PredicateResult.yes if wanted(event, self.level) else PredicateResult.no


def wanted(event: dict[str, Any], level: LogLevel) -> bool:
    """
    Whether the console shows C{event} at C{level}: everything at or above
    the level, except that Twisted's own informational events need
    C{debug}.
    """
    eventLevel = event.get("log_level", LogLevel.info)
    rank = _ORDER.get(eventLevel, 1)
    threshold = _ORDER[level]
    if rank < threshold:
        return False
    if rank == 1 and threshold == 1:
        return _ours(event)
    return True


class _TimeText:
    """
    twistd's timestamp (C{2026-11-26T03:24:46+0000}), formatted once per
    second.
    """

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, when: float) -> str:
        second = int(when)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(second))
        return self._text


def formatLine(event: dict[str, Any], timeText: Any = None) -> str | None:
    """
    C{event} as one console line (continuation lines indented), or L{None}
    if it has no text (a transaction record is for the files, not for the
    console: the brief's lines already tell its story).
    """
    fmt = event.get("log_format")
    failure = event.get("log_failure")
    if fmt and failure is None and "{" not in fmt and "}" not in fmt:
        # The brief's lines are rendered when they are emitted: their
        # format is their text.
        text = fmt
    elif fmt or failure is not None:
        text = formatEvent(event) if fmt else ""
        if failure is not None:
            try:
                text = (text + "\n" + failure.getTraceback()).strip("\n")
            except Exception:  # a failure that cannot render itself
                text += "\n(a traceback that could not be formatted)"
    else:
        return None
    if not text:
        return None
    system = event.get("log_system")
    if system is None or system == "-":
        namespace = event.get("log_namespace") or ""
        system = "proxy" if namespace.startswith("twisted_proxy") else namespace.split(".")[0]
    tag = system + _LEVEL_TAGS.get(event.get("log_level", LogLevel.info), "")
    stamp = (timeText or _timeText)(event.get("log_time") or time.time())
    return "{} [{}] {}\n".format(stamp, tag, text.replace("\n", "\n\t"))


_timeText = _TimeText()


class BufferedWriter:
    """
    Text written in batches: L{write} collects, and one C{write} and one
    C{flush} of the stream send a batch, at most L{flushInterval} seconds
    later, or at once when L{maxBuffered} characters wait, when the writer
    is not buffering (before L{startBuffering}, after L{stopBuffering}),
    or when the text comes from another thread than the clock's.

    @ivar stream: a text file.
    @cvar flushInterval: the longest text waits, in seconds.
    @cvar maxBuffered: characters buffered before a write that cannot wait.
    @ivar _clock: while buffering, what schedules the flush; L{None} while
        text is written at once.
    @ivar _thread: the thread the clock runs in.
    """

    flushInterval = 0.05
    maxBuffered = 1 << 16

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._buffer: list[str] = []
        self._size = 0
        self._lock = threading.Lock()
        self._clock: Any = None
        self._thread: int | None = None
        self._call: Any = None

    def write(self, text: str) -> None:
        with self._lock:
            self._buffer.append(text)
            self._size += len(text)
            if (
                self._clock is None
                or self._size >= self.maxBuffered
                or threading.get_ident() != self._thread
            ):
                self._flushLocked()
            elif self._call is None:
                self._call = self._clock.callLater(self.flushInterval, self._timerFlush)

    def startBuffering(self, clock: Any) -> None:
        """
        From now on, write in batches, flushed by C{clock} (which must run
        in this thread).
        """
        with self._lock:
            self._clock = clock
            self._thread = threading.get_ident()

    def stopBuffering(self) -> None:
        """
        Write what is buffered, and all text at once from now on.
        """
        with self._lock:
            self._flushLocked()
            self._clock = None
            self._thread = None

    def flush(self) -> None:
        with self._lock:
            self._flushLocked()

    def _timerFlush(self) -> None:
        with self._lock:
            self._call = None
            self._flushLocked()

    def _flushLocked(self) -> None:
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        if not self._buffer:
            return
        text = "".join(self._buffer)
        self._buffer = []
        self._size = 0
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            # A closed or broken console must not take the proxy down;
            # there is nowhere left to say so.
            pass


@implementer(ILogObserver)
class Console(BufferedWriter):
    """
    The console's log observer: the events C{level} wants, one line each,
    written in batches (see L{BufferedWriter}).

    @ivar level: the least important level shown.
    """

    def __init__(self, stream: IO[str] | LogFile, level: LogLevel = LogLevel.info) -> None:
        super().__init__(stream)
        self.level = level
        self._timeText = _TimeText()

    def __call__(self, event: dict[str, Any]) -> None:
        if not wanted(event, self.level):
            return
        line = formatLine(event, self._timeText)
        if line is not None:
            self.write(line)

    def setLevel(self, level: LogLevel) -> None:
        self.level = level

    def rotate(self) -> bool:
        """
        If the console is a file, rotate it (as twistd does on SIGUSR1:
        C{twistd.log} becomes C{twistd.log.1}) after writing what is
        buffered to it.

        @return: whether there was a file to rotate.
        """
        with self._lock:
            self._flushLocked()
            if isinstance(self.stream, LogFile):
                self.stream.rotate()
                return True
        return False

    def describe(self) -> str:
        if isinstance(self.stream, LogFile):
            return str(self.stream.path)
        return "standard output"


# -- the console of a twistd run ------------------------------------------------
#
# twistd's --logger names a factory that takes no arguments; Options (which
# twistd parses before it starts logging) leaves here what the factory
# needs, and the service finds the console here.

_pending: dict[str, Any] | None = None
_current: Console | None = None


def prepare(serverOptions: Any, level: str) -> str:
    """
    Called when twistd parses the proxy's options: remember what
    L{twistdObserver} needs.

    @param serverOptions: twistd's own options (C{-n}, C{-l}, C{--syslog}).
    @param level: the C{--log-level}.
    @return: the name to give twistd's C{--logger}.
    """
    global _pending
    _pending = {"options": serverOptions, "level": level}
    return __name__ + ".twistdObserver"


def twistdObserver() -> Any:
    """
    The log observer twistd starts logging to: a L{Console} on standard
    output (C{-n}, or C{-l -}) or on the log file (C{-l PATH}, by default
    C{twistd.log}), rotated on SIGUSR1; or, with C{--syslog}, twistd's
    syslog observer behind the same filter.
    """
    global _current
    pending = _pending or {"options": {}, "level": "info"}
    options = pending["options"]
    level = LEVELS[pending["level"]]
    if options.get("syslog"):
        from twisted.logger import FilteringLogObserver, LegacyLogObserverWrapper
        from twisted.python import log, syslog

        # A bound method cannot declare the (legacy) observer interface it
        # provides by its shape.
        emit = cast(
            log.ILogObserver, syslog.SyslogObserver(options.get("prefix") or "twisted").emit
        )
        return FilteringLogObserver(LegacyLogObserverWrapper(emit), [_Wanted(level)])
    logfile = options.get("logfile") or ""
    nodaemon = bool(options.get("nodaemon"))
    stream: IO[str] | LogFile
    if logfile == "-":
        if not nodaemon:
            sys.exit("Daemons cannot log to stdout, exiting!")
        stream = sys.stdout
    elif nodaemon and not logfile:
        stream = sys.stdout
    else:
        stream = LogFile.fromFullPath(logfile or "twistd.log")
    console = Console(stream, level)
    _current = console
    atexit.register(console.flush)
    return console


def current() -> Console | None:
    """
    The console of this twistd run, if it is a L{Console}.
    """
    return _current
