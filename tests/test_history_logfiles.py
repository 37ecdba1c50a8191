# -*- test-case-name: tests.test_history_logfiles -*-
"""
Tests for L{twisted_proxy.records.logfiles}: the history and access-log
writers (rotation, reopening).
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from twisted.logger import (
    Logger,
)
from twisted.trial.unittest import SynchronousTestCase

from tests._records import (
    FakeClocks,
    TempDirMixin,
    numberedEvent,
    readLines,
    successfulRecord,
)
from twisted_proxy.records.emit import emitTransaction
from twisted_proxy.records.logfiles import historyObserver


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
        self.assertEqual(
            [json.loads(line) for line in readLines(path)], [events[0]["transaction"]]
        )
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
        self.assertEqual(
            [json.loads(line)["sequence"] for line in readLines(path)], [3]
        )

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
        self.assertEqual(
            [json.loads(line)["sequence"] for line in readLines(path + ".1")], [4]
        )
        self.assertEqual(
            [json.loads(line)["sequence"] for line in readLines(path)], [5]
        )

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
