# -*- test-case-name: tests.test_history_logfiles -*-
"""
Tests for L{twisted_proxy.records.logfiles}: the history and access-log
writers (rotation, reopening, buffering, write failures), and the service
that owns them (closing at stop, reopening on C{SIGUSR1}).
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import stat
from collections.abc import Callable
from typing import IO, Any, cast

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import (
    Logger,
    LogLevel,
    capturedLogs,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile
from twisted.trial.unittest import SynchronousTestCase

from tests._records import (
    FakeClocks,
    TempDirMixin,
    numberedEvent,
    readLines,
    successfulRecord,
)
from twisted_proxy.app.recordfiles import RecordFiles
from twisted_proxy.app.service import ProxyService
from twisted_proxy.app.tap import Options
from twisted_proxy.records.emit import emitTransaction
from twisted_proxy.records.logfiles import RecordFileObserver, historyObserver


class HistoryObserverTests(TempDirMixin, SynchronousTestCase):
    """
    Tests for L{historyObserver} without a clock: each line is written as
    it comes.
    """

    def observer(self, path: str, rotateSize: int = 0, keep: int = 10) -> Any:
        observer = historyObserver(path, rotateSize, keep)
        self.addCleanup(observer.close)
        return observer

    def allRecords(self, path: str) -> list[dict[str, Any]]:
        """
        Every record in C{path} and its rotated files, oldest first; fails
        the test if a line does not parse.
        """
        directory, name = os.path.split(path)
        rotated = sorted(
            (
                int(entry.rsplit(".", 1)[1])
                for entry in os.listdir(directory)
                if entry.startswith(name + ".")
            ),
            reverse=True,
        )
        records = []
        for suffix in [*("." + str(n) for n in rotated), ""]:
            for line in readLines(path + suffix):
                records.append(json.loads(line))
        return records

    def test_writesJSONLines(self) -> None:
        """
        Each record is one line of JSON, flushed before the observer returns.
        """
        path = os.path.join(self.makeDir(), "history.jsonl")
        observer = self.observer(path)
        events = [numberedEvent(1), numberedEvent(2)]
        observer(events[0])
        # Flushed per record: another reader sees it before any close.
        self.assertEqual([json.loads(line) for line in readLines(path)], [events[0]["transaction"]])
        observer(events[1])
        with open(path, "rb") as f:
            content = f.read()
        self.assertTrue(content.endswith(b"\n"))
        self.assertEqual(content.count(b"\n"), 2)
        self.assertEqual(
            [json.loads(line) for line in content.splitlines()],
            [event["transaction"] for event in events],
        )

    def test_ignoresOtherEvents(self) -> None:
        """
        Events without a C{transaction} dict write nothing.
        """
        path = os.path.join(self.makeDir(), "history.jsonl")
        observer = self.observer(path)
        observer({"log_format": "hello"})
        observer({"log_format": "", "transaction": "not a dict"})
        self.assertEqual(readLines(path), [])

    def test_fromLogger(self) -> None:
        """
        Events from L{emitTransaction} reach the file through a logger.
        """
        path = os.path.join(self.makeDir(), "history.jsonl")
        observer = self.observer(path)
        record = successfulRecord(FakeClocks())
        emitTransaction(Logger(observer=observer), record)
        [line] = readLines(path)
        self.assertEqual(json.loads(line), record.asDict())

    def test_rotationUnderLoad(self) -> None:
        """
        Rotating every few kilobytes while 5,000 records are written loses
        none: every line of every file parses, and each record is there once.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl")
        observer = self.observer(path, rotateSize=32 * 1024, keep=1000)
        count = 5000
        for number in range(count):
            observer(numberedEvent(number, padding=number % 97))
        records = self.allRecords(path)
        self.assertEqual(len(records), count)
        self.assertEqual([record["sequence"] for record in records], list(range(count)))
        rotated = [name for name in os.listdir(directory) if name != "history.jsonl"]
        self.assertGreater(len(rotated), 50)
        for name in rotated:
            self.assertLess(os.path.getsize(os.path.join(directory, name)), 34 * 1024)

    def test_keep(self) -> None:
        """
        Only C{keep} rotated files are kept; what remains are the newest
        records, without a gap.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl")
        observer = self.observer(path, rotateSize=2000, keep=3)
        for number in range(200):
            observer(numberedEvent(number))
        self.assertEqual(
            sorted(os.listdir(directory)),
            ["history.jsonl", "history.jsonl.1", "history.jsonl.2", "history.jsonl.3"],
        )
        sequences = [record["sequence"] for record in self.allRecords(path)]
        self.assertEqual(sequences, list(range(sequences[0], 200)))
        self.assertGreater(sequences[0], 0)

    def test_noRotation(self) -> None:
        """
        A rotate size of 0 never rotates.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl")
        observer = self.observer(path, rotateSize=0, keep=1)
        for number in range(100):
            observer(numberedEvent(number))
        self.assertEqual(os.listdir(directory), ["history.jsonl"])
        self.assertEqual(len(readLines(path)), 100)

    def test_reopenAfterRename(self) -> None:
        """
        After logrotate renamed the file away, C{reopen()} continues in a new
        file at the same path; the renamed file keeps what it had.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl")
        observer = self.observer(path)
        observer(numberedEvent(1))
        os.rename(path, path + "-20250102")
        observer(numberedEvent(2))  # still the open (renamed) file
        observer.reopen()
        observer(numberedEvent(3))
        self.assertEqual(
            [json.loads(line)["sequence"] for line in readLines(path + "-20250102")],
            [1, 2],
        )
        self.assertEqual([json.loads(line)["sequence"] for line in readLines(path)], [3])

    def test_rotationWhileRenamedAway(self) -> None:
        """
        While the file is renamed away (logrotate ran, C{SIGUSR1} not yet
        handled), size rotation is skipped and records go on to the renamed
        file; after C{reopen()} rotation resumes at the path.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl")
        observer = self.observer(path, rotateSize=1, keep=5)
        observer(numberedEvent(1))
        os.rename(path, path + "-old")
        observer(numberedEvent(2))
        observer(numberedEvent(3))
        self.assertEqual(os.listdir(directory), ["history.jsonl-old"])
        observer.reopen()
        observer(numberedEvent(4))
        observer(numberedEvent(5))
        self.assertEqual(
            [json.loads(line)["sequence"] for line in readLines(path + "-old")],
            [1, 2, 3],
        )
        self.assertEqual([json.loads(line)["sequence"] for line in readLines(path + ".1")], [4])
        self.assertEqual([json.loads(line)["sequence"] for line in readLines(path)], [5])

    def test_failedReopenKeepsWriting(self) -> None:
        """
        If the path cannot be opened again, C{reopen()} raises and records go
        on to the file that was open.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl")
        observer = self.observer(path)
        observer(numberedEvent(1))
        os.rename(path, path + ".old")
        os.mkdir(path)
        self.assertRaises(OSError, observer.reopen)
        observer(numberedEvent(2))
        self.assertEqual(
            [json.loads(line)["sequence"] for line in readLines(path + ".old")],
            [1, 2],
        )

    def test_crashMidRecord(self) -> None:
        """
        After a crash that left half a record at the end of the file, the
        restarted observer starts on a new line: only the half record is lost,
        and rotated files are untouched.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl")
        first = historyObserver(path, 1500, 10)
        for number in range(20):
            first(numberedEvent(number))
        first.close()
        rotatedBefore = self.rotatedContents(directory)
        self.assertTrue(rotatedBefore)
        line = json.dumps(numberedEvent(20)["transaction"])
        with open(path, "ab") as f:
            f.write(line[: len(line) // 2].encode("ascii"))
        # Restarted with a larger rotate size, so the next record lands
        # right after the fragment.
        second = self.observer(path, 1024 * 1024, 10)
        second(numberedEvent(21))
        self.assertEqual(readLines(path)[-2], line[: len(line) // 2])
        self.assertLessEqual(rotatedBefore, self.rotatedContents(directory))
        sequences = []
        fragments = 0
        for name in os.listdir(directory):
            for text in readLines(os.path.join(directory, name)):
                if text == line[: len(line) // 2]:
                    fragments += 1
                else:
                    sequences.append(json.loads(text)["sequence"])
        self.assertEqual(fragments, 1)
        self.assertEqual(sorted(sequences), [*range(20), 21])

    def rotatedContents(self, directory: str) -> set[bytes]:
        """
        The contents of the rotated files in C{directory}.
        """
        contents = set()
        for name in os.listdir(directory):
            if name != "history.jsonl":
                with open(os.path.join(directory, name), "rb") as f:
                    contents.add(f.read())
        return contents

    def test_closeStopsWriting(self) -> None:
        """
        After C{close()}, events are ignored; closing twice is harmless.
        """
        path = os.path.join(self.makeDir(), "history.jsonl")
        observer = historyObserver(path, 0, 1)
        observer(numberedEvent(1))
        observer.close()
        observer(numberedEvent(2))
        observer.close()
        observer.reopen()
        self.assertEqual(len(readLines(path)), 1)

    def test_fileMode(self) -> None:
        """
        A new file is created readable by owner and group only; an existing
        file keeps its mode.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl")
        self.observer(path)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o640)
        other = os.path.join(directory, "other.jsonl")
        with open(other, "w"):
            pass
        os.chmod(other, 0o600)
        self.observer(other)
        self.assertEqual(stat.S_IMODE(os.stat(other).st_mode), 0o600)

    def test_invalidArguments(self) -> None:
        """
        A negative rotate size or keeping fewer than one file is refused.
        """
        path = os.path.join(self.makeDir(), "history.jsonl")
        self.assertRaises(ValueError, historyObserver, path, -1, 10)
        self.assertRaises(ValueError, historyObserver, path, 1024, 0)
        self.assertFalse(os.path.exists(path))

    def test_missingDirectory(self) -> None:
        """
        A path in a directory that does not exist is an L{OSError}.
        """
        path = os.path.join(self.makeDir(), "nowhere", "history.jsonl")
        self.assertRaises(OSError, historyObserver, path, 0, 1)


class _FlakyFile:
    """
    Stands in for a L{RecordLogFile}'s open file: passes writes through to
    the real file and counts them; told to fail (C{failAfter}), it lets that
    many more octets through and then fails every write with C{ENOSPC}, as a
    full disk does.
    """

    def __init__(self, real: Any) -> None:
        self.real = real
        self.writes: list[int] = []
        self.failAfter: int | None = None

    def write(self, data: Any) -> int:
        data = bytes(data)
        if self.failAfter is not None:
            if self.failAfter == 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            data = data[: self.failAfter]
            self.failAfter -= len(data)
        self.writes.append(len(data))
        written: int = self.real.write(data)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def lineOf(number: int, padding: int = 0) -> bytes:
    """
    The line the history writes for L{numberedEvent}C{(number, padding)}.
    """
    return (
        json.dumps(numberedEvent(number, padding)["transaction"], separators=(",", ":")).encode(
            "ascii"
        )
        + b"\n"
    )


class BufferedWriterTests(TempDirMixin, SynchronousTestCase):
    """
    With a clock, a record file observer buffers lines and writes them on a
    short timer, when enough is waiting, before reopening and at close; a
    write that fails loses nothing that can be kept.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.path = os.path.join(self.makeDir(), "history.jsonl")

    def observer(self, rotateSize: int = 0, keep: int = 10) -> RecordFileObserver:
        observer = historyObserver(self.path, rotateSize, keep, self.clock)
        self.addCleanup(observer.close)
        return observer

    def flaky(self, observer: RecordFileObserver) -> _FlakyFile:
        """
        Put a L{_FlakyFile} between C{observer} and its file.
        """
        logFile = observer._logFile
        flaky = _FlakyFile(logFile._file)
        logFile._file = flaky  # type: ignore[assignment]  # a file-like stand-in
        return flaky

    def sequences(self, path: str | None = None) -> list[int]:
        return [json.loads(line)["sequence"] for line in readLines(path or self.path)]

    def test_timerFlushes(self) -> None:
        """
        A burst of records is written with one write, C{flushInterval}
        (at most 100 ms) after its first record, and not before.
        """
        observer = self.observer()
        self.assertLessEqual(observer.flushInterval, 0.1)
        flaky = self.flaky(observer)
        count = 40
        self.assertLess(sum(len(lineOf(n)) for n in range(count)), observer.flushSize)
        for number in range(count):
            observer(numberedEvent(number))
            self.clock.advance(observer.flushInterval / 1000)
        self.assertEqual(readLines(self.path), [])
        elapsed = count * observer.flushInterval / 1000
        self.clock.advance(observer.flushInterval * 0.99 - elapsed)
        self.assertEqual(readLines(self.path), [])
        self.clock.advance(observer.flushInterval * 0.01)
        self.assertEqual(self.sequences(), list(range(count)))
        self.assertEqual(flaky.writes, [sum(len(lineOf(n)) for n in range(count))])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_nextBurst(self) -> None:
        """
        After a flush, the next record starts a new batch and a new timer.
        """
        observer = self.observer()
        observer(numberedEvent(1))
        self.clock.advance(observer.flushInterval)
        observer(numberedEvent(2))
        self.assertEqual(self.sequences(), [1])
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime(), self.clock.seconds() + observer.flushInterval)
        self.clock.advance(observer.flushInterval)
        self.assertEqual(self.sequences(), [1, 2])

    def test_sizeFlushes(self) -> None:
        """
        Once C{flushSize} octets are waiting they are written at once; the
        rest waits for the timer.
        """
        observer = self.observer()
        size = len(lineOf(0))
        observer.flushSize = 3 * size
        for number in range(4):
            observer(numberedEvent(number))
        self.assertEqual(self.sequences(), [0, 1, 2])
        self.clock.advance(observer.flushInterval)
        self.assertEqual(self.sequences(), [0, 1, 2, 3])

    def test_closeFlushes(self) -> None:
        """
        Closing writes what is buffered and cancels the timer; later
        records are ignored.
        """
        observer = self.observer()
        for number in range(3):
            observer(numberedEvent(number))
        observer.close()
        self.assertEqual(self.sequences(), [0, 1, 2])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        observer(numberedEvent(3))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.sequences(), [0, 1, 2])

    def test_reopenFlushesFirst(self) -> None:
        """
        On C{reopen()}, the buffered records go to the file they were
        emitted into (renamed away by logrotate), the later ones to the new
        file.
        """
        observer = self.observer()
        observer(numberedEvent(1))
        os.rename(self.path, self.path + ".1")
        observer(numberedEvent(2))
        observer.reopen()
        observer(numberedEvent(3))
        self.clock.advance(observer.flushInterval)
        self.assertEqual(self.sequences(self.path + ".1"), [1, 2])
        self.assertEqual(self.sequences(), [3])

    def test_rotationNeverSplitsOrLoses(self) -> None:
        """
        Rotating every few kilobytes while 2,000 records of varied sizes
        arrive in bursts of varied lengths: every line of every file is a
        whole record, each record is there once and in order, every file
        ends at the end of a line, and no file exceeds the rotate size by
        more than one record.
        """
        directory = os.path.dirname(self.path)
        rotateSize = 16 * 1024
        observer = self.observer(rotateSize=rotateSize, keep=10000)
        generator = random.Random(5)
        count = 2000
        longest = 0
        for number in range(count):
            padding = generator.randrange(400)
            longest = max(longest, len(lineOf(number, padding)))
            observer(numberedEvent(number, padding))
            if generator.random() < 0.05:
                self.clock.advance(generator.choice([0.01, observer.flushInterval, 1.0]))
        observer.close()
        names = os.listdir(directory)
        self.assertGreater(len(names), 100)
        byAge = sorted(
            names, key=lambda name: -int(name.rsplit(".", 1)[1]) if name[-1].isdigit() else 0
        )
        sequences: list[int] = []
        for name in byAge:
            with open(os.path.join(directory, name), "rb") as f:
                content = f.read()
            self.assertTrue(content.endswith(b"\n"), name)
            if name != "history.jsonl":
                self.assertLess(len(content), rotateSize + longest, name)
            sequences.extend(json.loads(line)["sequence"] for line in content.splitlines())
        self.assertEqual(sequences, list(range(count)))

    def test_writeFailureKeepsRecords(self) -> None:
        """
        A write that fails (a full disk) part way, at any point, is logged
        once; the records it did not complete are kept and written, whole,
        when the disk has room again; the part that did reach the file ends
        as a line of its own.  Nothing else is lost or repeated.
        """
        first, second = len(lineOf(5)), len(lineOf(6))
        for failAfter in (0, 30, first, first + second + 10):
            path = os.path.join(self.makeDir(), "history.jsonl")
            observer = historyObserver(path, 0, 1, self.clock)
            self.addCleanup(observer.close)
            flaky = self.flaky(observer)
            for number in range(5):
                observer(numberedEvent(number))
            self.clock.advance(observer.flushInterval)
            flaky.failAfter = failAfter
            with capturedLogs() as events:
                for number in range(5, 15):
                    observer(numberedEvent(number))
                self.clock.advance(observer.flushInterval)
                for number in range(15, 20):
                    observer(numberedEvent(number))
                self.clock.advance(observer.flushInterval)
                self.assertEqual(len(flaky.writes), 1 + (1 if failAfter else 0))
                flaky.failAfter = None
                self.clock.advance(observer.retryInterval)
            self.assertEqual(self.clock.getDelayedCalls(), [])
            [failed, again] = events
            self.assertEqual(failed["log_level"], LogLevel.error)
            self.assertEqual((failed["path"], failed["error"]), (path, "No space left on device"))
            self.assertEqual(again["log_level"], LogLevel.info)
            self.assertEqual((again["path"], again["dropped"]), (path, 0))
            sequences, fragments = [], []
            for line in readLines(path):
                try:
                    sequences.append(json.loads(line)["sequence"])
                except ValueError:
                    fragments.append(line)
            self.assertEqual(sequences, list(range(20)), failAfter)
            written = (lineOf(5) + lineOf(6) + lineOf(7))[:failAfter]
            complete = written.count(b"\n")
            expected = (
                []
                if written.endswith(b"\n") or not written
                else [written.split(b"\n")[complete].decode("ascii")]
            )
            self.assertEqual(fragments, expected, failAfter)

    def test_failureWithoutClock(self) -> None:
        """
        Without a clock, a failed write is retried with the next record.
        """
        observer = historyObserver(self.path, 0, 1)
        self.addCleanup(observer.close)
        flaky = self.flaky(observer)
        flaky.failAfter = 0
        with capturedLogs() as events:
            observer(numberedEvent(1))
            observer(numberedEvent(2))
            self.assertEqual(readLines(self.path), [])
            flaky.failAfter = None
            observer(numberedEvent(3))
        self.assertEqual(self.sequences(), [1, 2, 3])
        self.assertEqual([event["log_level"] for event in events], [LogLevel.error, LogLevel.info])

    def test_backlogBounded(self) -> None:
        """
        While writes fail, at most C{maxBacklog} octets are kept; records
        beyond are dropped and counted, and the count is logged when writing
        works again.
        """
        observer = self.observer()
        flaky = self.flaky(observer)
        observer.maxBacklog = 3 * len(lineOf(0))
        flaky.failAfter = 0
        with capturedLogs() as events:
            for number in range(5):
                observer(numberedEvent(number))
            self.clock.advance(observer.flushInterval)
            flaky.failAfter = None
            self.clock.advance(observer.retryInterval)
        self.assertEqual(self.sequences(), [0, 1, 2])
        self.assertEqual(events[-1]["log_level"], LogLevel.warn)
        self.assertEqual(events[-1]["dropped"], 2)

    def test_closeWhileFailing(self) -> None:
        """
        Records that still cannot be written at close are reported lost,
        with their number; nothing is left scheduled.
        """
        observer = self.observer()
        flaky = self.flaky(observer)
        flaky.failAfter = 0
        with capturedLogs() as events:
            observer(numberedEvent(1))
            observer(numberedEvent(2))
            observer.close()
        self.assertEqual(events[-1]["log_level"], LogLevel.error)
        self.assertEqual(events[-1]["count"], 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _ThreadCallReactor(MemoryReactorClock):
    """
    A memory reactor with just enough for signal handling:
    C{callFromThread} queues the call, L{runCalls} runs the queue in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.threadCalls: list[Callable[[], object]] = []

    def callFromThread(self, f: Callable[..., object], *args: object) -> None:
        self.threadCalls.append(lambda: f(*args))

    def runCalls(self) -> None:
        while self.threadCalls:
            self.threadCalls.pop(0)()


class LogFilesServiceTests(TempDirMixin, SynchronousTestCase):
    """
    The service that owns the record files closes them (writing what is
    buffered) when it stops, and reopens them on C{SIGUSR1}.
    """

    def test_stopFlushes(self) -> None:
        """
        A record emitted just before a clean stop is in the file after it,
        and no timer is left behind.
        """
        clock = Clock()
        path = os.path.join(self.makeDir(), "history.jsonl")
        options = Options()
        options.parseOptions(["--history", path])
        records = RecordFiles(options["settings"], clock)
        records.start()
        record = successfulRecord(FakeClocks())
        emitTransaction(Logger(namespace="tests.history"), record)
        self.assertEqual(readLines(path), [])
        records.close()
        [line] = readLines(path)
        self.assertEqual(json.loads(line), record.asDict())
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_sigusr1(self) -> None:
        """
        On C{SIGUSR1}, as twistd runs it (twistd's handler rotates its own
        log file, in the reactor thread), the record files are reopened at
        their path, and the "Log files reopened." line lands in twistd's
        NEW log file, after its rotation.
        """
        directory = self.makeDir()
        twistdLog = LogFile("twistd.log", directory)
        self.addCleanup(twistdLog.close)
        # A LogFile is file-like enough: twistd hands it over the same way.
        textObserver = textFileLogObserver(cast(IO[str], twistdLog))
        globalLogPublisher.addObserver(textObserver)
        self.addCleanup(globalLogPublisher.removeObserver, textObserver)
        reactor = _ThreadCallReactor()

        def twistdHandler(signum: int, frame: object) -> None:
            # What twistd's UnixAppLogger installs for SIGUSR1.
            reactor.callFromThread(twistdLog.rotate)

        original = signal.signal(signal.SIGUSR1, twistdHandler)
        self.addCleanup(signal.signal, signal.SIGUSR1, original)

        path = os.path.join(directory, "history.jsonl")
        options = Options()
        options.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--history", path])
        service = ProxyService(options["built"], reactor)
        service.startService()
        self.addCleanup(service.stopService)
        [history] = service.records.observers
        log = Logger(namespace="tests.history")
        emitTransaction(log, successfulRecord(FakeClocks()))
        os.rename(path, path + "-old")
        signal.raise_signal(signal.SIGUSR1)
        reactor.runCalls()
        emitTransaction(log, successfulRecord(FakeClocks()))
        history.flush()

        self.assertEqual(len(readLines(path + "-old")), 1)
        self.assertEqual(len(readLines(path)), 1)
        with open(os.path.join(directory, "twistd.log.1"), encoding="utf-8") as f:
            old = f.read()
        with open(os.path.join(directory, "twistd.log"), encoding="utf-8") as f:
            new = f.read()
        self.assertNotIn("Log files reopened.", old)
        self.assertIn("Log files reopened.", new)
        # The handler twistd installed keeps running, and is back after stop.
        self.successResultOf(service.stopService())
        self.assertIs(signal.getsignal(signal.SIGUSR1), twistdHandler)


class ServiceWiringTests(TempDirMixin, SynchronousTestCase):
    """
    The proxy built from its options buffers its record files on its
    reactor, closes them when it stops, and rotates the history by size only
    when asked to.
    """

    def runProxy(self, *args: str, records: int = 1) -> str:
        """
        Build the proxy from C{args} (on a fake reactor), emit C{records}
        transactions, and stop it.

        @return: the history file's directory.
        """
        from twisted.internet.testing import MemoryReactorClock

        from twisted_proxy.app.tap import Options, makeService

        directory = self.makeDir()
        history = os.path.join(directory, "history.jsonl")
        reactor = MemoryReactorClock()
        config = Options()
        config.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--history", history, *args])
        service = makeService(config, reactor)
        service.startService()
        log = Logger(namespace="tests.history")
        for _ in range(records):
            emitTransaction(log, successfulRecord(FakeClocks()))
            reactor.advance(0.1)
        self.successResultOf(service.stopService())
        return directory

    def test_noSizeRotationByDefault(self) -> None:
        """
        By default the history is an audit trail that only logrotate (with
        C{SIGUSR1}) rotates: however much is written, one file, every
        record in it.
        """
        from twisted_proxy.app.tap import Options

        config = Options()
        config.parseOptions(["--history", os.path.join(self.makeDir(), "h.jsonl")])
        self.assertEqual(config["history-rotate-size"], 0)
        directory = self.runProxy(records=300)
        self.assertEqual(os.listdir(directory), ["history.jsonl"])
        self.assertEqual(len(readLines(os.path.join(directory, "history.jsonl"))), 300)

    def test_sizeRotationWhenAsked(self) -> None:
        """
        C{--history-rotate-size} and C{--history-keep} still rotate and
        prune when given.
        """
        directory = self.runProxy("--history-rotate-size", "2k", "--history-keep", "2", records=30)
        self.assertEqual(
            sorted(os.listdir(directory)),
            ["history.jsonl", "history.jsonl.1", "history.jsonl.2"],
        )
        for name in os.listdir(directory):
            self.assertLess(os.path.getsize(os.path.join(directory, name)), 2048 + 1500)

    def test_bufferedOnReactor(self) -> None:
        """
        With C{--history} and C{--access-log}, a transaction reaches both
        files on the reactor's timer, not before; a record emitted after
        that reaches them at the clean stop.
        """
        from twisted.internet.testing import MemoryReactorClock

        from twisted_proxy.app.tap import Options, makeService

        directory = self.makeDir()
        history = os.path.join(directory, "history.jsonl")
        access = os.path.join(directory, "access.log")
        reactor = MemoryReactorClock()
        config = Options()
        config.parseOptions(
            ["--listen", "tcp:0:interface=127.0.0.1", "--history", history, "--access-log", access]
        )
        service = makeService(config, reactor)
        service.startService()
        log = Logger(namespace="tests.history")
        emitTransaction(log, successfulRecord(FakeClocks()))
        self.assertEqual((readLines(history), readLines(access)), ([], []))
        reactor.advance(0.1)
        self.assertEqual((len(readLines(history)), len(readLines(access))), (1, 1))
        emitTransaction(log, successfulRecord(FakeClocks()))
        self.successResultOf(service.stopService())
        self.assertEqual((len(readLines(history)), len(readLines(access))), (2, 2))
        self.assertEqual(reactor.getDelayedCalls(), [])
