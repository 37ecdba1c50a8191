# -*- test-case-name: tests.test_historytool -*-
"""
Tests for L{twisted_proxy.historytool}, the C{proxyhistory} program.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests._typing import TestCaseMixin
from twisted_proxy.historytool.har import harFromRecords
from twisted_proxy.historytool.main import main
from twisted_proxy.records.logfiles import historyObserver
from twisted_proxy.records.record import TransactionRecord

# 2023-11-14T22:13:20Z
T0 = 1700000000.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = os.path.join(ROOT, "tests", "har-1.2.schema.json")


def makeRecord(
    start: float,
    phases: dict[str, float],
    end: float | None = None,
    **attributes: Any,
) -> dict[str, Any]:
    """
    A record dict built by L{TransactionRecord} with fake clocks.

    @param start: seconds after T0 at which the request head arrives (the
        connection was accepted 1 ms before).
    @param phases: phase name -> milliseconds after the request head.
    @param end: milliseconds after the request head at which the record is
        finished, if not at C{responseComplete}.
    @param attributes: record attributes to set.
    """
    clock = Clock()
    clock.advance(T0 + start - 0.001)
    record = TransactionRecord(
        monoClock=clock.seconds,
        connectionId=attributes.pop("connectionId", "c1"),
        sequence=attributes.pop("sequence", 1),
        clientHost=attributes.pop("clientHost", "127.0.0.1"),
        clientPort=attributes.pop("clientPort", 40000),
        acceptedWall=clock.seconds(),
        acceptedMono=clock.seconds(),
    )
    clock.advance(0.001)
    record.mark("requestHead")
    base = clock.seconds()
    for phase, offset in sorted(phases.items(), key=lambda item: item[1]):
        clock.rightNow = base + offset / 1000.0
        record.mark(phase)
    if end is not None:
        clock.rightNow = base + end / 1000.0
    for name, value in attributes.items():
        setattr(record, name, value)
    record.finish()
    return record.asDict()


def complete(total: float, wait: float) -> dict[str, float]:
    """
    Phases of a complete transaction with the given total and wait (TTFB):
    upstream ready at 0 ms, request sent at 0 ms.
    """
    return {
        "upstreamReady": 0,
        "requestSent": 0,
        "responseHead": wait,
        "responseComplete": total,
    }


def fixtureRecords() -> list[dict[str, Any]]:
    """
    The summary fixture, one record a minute from T0:

      - example.com: totals 10, 20, ..., 100 ms, waits 5, 10, ..., 50 ms;
        statuses 200 x 8, 404, 503; 100 bytes in and 1000 out each;
      - other.org: totals 1, 2, 300 ms, waits 0.5, 1, 150 ms; statuses 200,
        301 and none (aborted after the response head);
      - a refused request without a destination: total 0.5 ms, 403.
    """
    records: list[dict[str, Any]] = []
    statuses = [200] * 8 + [404, 503]
    for i in range(10):
        records.append(
            makeRecord(
                60.0 * len(records),
                complete(10.0 * (i + 1), 5.0 * (i + 1)),
                clientHost=f"10.0.0.{i}",
                destHost="example.com",
                destPort=80,
                method="GET",
                target=f"http://example.com/{i}",
                status=statuses[i],
                bytesFromClient=100,
                bytesToClient=1000,
                peerHost="127.0.0.2",
            )
        )
    for total, wait, status in ((1.0, 0.5, 200), (2.0, 1.0, 301)):
        records.append(
            makeRecord(
                60.0 * len(records),
                complete(total, wait),
                clientHost="::1",
                destHost="other.org",
                method="GET",
                target="http://other.org/",
                status=status,
                bytesFromClient=50,
                bytesToClient=500,
            )
        )
    records.append(
        makeRecord(
            60.0 * len(records),
            {"upstreamReady": 0, "requestSent": 0, "responseHead": 150.0},
            end=300.0,
            clientHost="::1",
            destHost="other.org",
            method="GET",
            target="http://other.org/big",
            aborted=True,
            bytesFromClient=50,
            bytesToClient=7000,
        )
    )
    records.append(
        makeRecord(
            60.0 * len(records),
            {},
            end=0.5,
            kind="refused",
            clientHost="192.168.1.5",
            method="GET",
            target="http://blocked.example/",
            status=403,
            proxyError="http_request_denied",
            bytesFromClient=80,
            bytesToClient=150,
        )
    )
    return records


class ToolTestMixin(TestCaseMixin):
    """
    Run L{main} in-process on files in a temporary directory.
    """

    now = T0 + 3600.0

    def makeDir(self) -> str:
        directory = tempfile.mkdtemp(prefix="twisted-proxy-test-")
        self.addCleanup(shutil.rmtree, directory)
        return directory

    def writeRecords(self, records: list[dict[str, Any]], name: str = "h.jsonl") -> str:
        path = os.path.join(self.makeDir(), name)
        with open(path, "w", encoding="ascii") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
        return path

    def runTool(self, *argv: str) -> tuple[int, str, str]:
        stdout, stderr = io.StringIO(), io.StringIO()
        status = main(list(argv), stdout, stderr, now=lambda: self.now)
        return status, stdout.getvalue(), stderr.getvalue()

    def targets(self, *argv: str) -> list[str]:
        """
        The targets listed (one per data line) by C{proxyhistory argv}.
        """
        status, out, err = self.runTool(*argv)
        self.assertEqual((status, err), (0, ""))
        return [line.split()[-1] for line in out.splitlines()[1:]]


class ListingTests(ToolTestMixin, SynchronousTestCase):
    """
    The default output: one aligned line per transaction.
    """

    def test_listing(self) -> None:
        """
        A header and one line per record, columns aligned.
        """
        path = self.writeRecords(fixtureRecords())
        status, out, err = self.runTool(path)
        self.assertEqual((status, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(len(lines), 15)
        self.assertEqual(
            lines[0].split(),
            [
                "START",
                "CLIENT",
                "METHOD",
                "STATUS",
                "TOTAL_MS",
                "TTFB_MS",
                "BYTES_IN",
                "BYTES_OUT",
                "CACHE",
                "RESULT",
                "TARGET",
            ],
        )
        self.assertEqual(
            lines[1].split(),
            [
                "2023-11-14T22:13:20.000Z",
                "10.0.0.0:40000",
                "GET",
                "200",
                "10.0",
                "5.0",
                "100",
                "1000",
                "-",
                "-",
                "http://example.com/0",
            ],
        )
        self.assertEqual(
            lines[13].split()[1:],
            [
                "[::1]:40000",
                "GET",
                "-",
                "300.0",
                "150.0",
                "50",
                "7000",
                "-",
                "aborted",
                "http://other.org/big",
            ],
        )
        self.assertEqual(
            lines[14].split()[3:6] + lines[14].split()[-2:],
            ["403", "0.5", "-", "http_request_denied", "http://blocked.example/"],
        )
        # Aligned: every column starts at the same offset on every line.
        targetColumn = lines[0].index("TARGET")
        statusEnd = lines[0].index("STATUS") + len("STATUS")
        for line in lines[1:]:
            self.assertEqual(line[targetColumn - 2 : targetColumn], "  ")
            self.assertNotEqual(line[targetColumn], " ")
            self.assertNotEqual(line[statusEnd - 1], " ")

    def test_userShown(self) -> None:
        """
        An authenticated user is shown with the client.
        """
        path = self.writeRecords([makeRecord(0, {}, user="alice", status=200)])
        status, out, err = self.runTool(path)
        self.assertIn(" alice@127.0.0.1:40000 ", out)

    def test_orderedByStartAcrossFiles(self) -> None:
        """
        Records from several files (rotated ones named first, as a shell glob
        would) come out in the order they started.
        """
        records = fixtureRecords()
        newest = self.writeRecords(records[7:], "history.jsonl")
        oldest = self.writeRecords(records[:7], "history.jsonl.1")
        listed = self.targets(oldest, newest)
        self.assertEqual(listed, [record["target"] for record in records])
        self.assertEqual(self.targets(newest, oldest), listed)

    def test_sameFileTwice(self) -> None:
        """
        A file named twice is read once.
        """
        path = self.writeRecords(fixtureRecords()[:2])
        self.assertEqual(len(self.targets(path, path)), 2)

    def test_empty(self) -> None:
        """
        No records: no output, success.
        """
        path = self.writeRecords([])
        self.assertEqual(self.runTool(path), (0, "", ""))

    def test_historyObserverOutput(self) -> None:
        """
        The tool reads what the history observer writes, rotated files
        included.
        """
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl")
        observer = historyObserver(path, 3000, 100)
        self.addCleanup(observer.close)
        records = fixtureRecords()
        for record in records:
            observer({"transaction": record})
        files = sorted(os.path.join(directory, name) for name in os.listdir(directory))
        self.assertGreater(len(files), 2)
        self.assertEqual(self.targets(*files), [record["target"] for record in records])

    def test_json(self) -> None:
        """
        C{--json} writes the selected records, as JSON Lines, in start order.
        """
        records = fixtureRecords()
        path = self.writeRecords(list(reversed(records)))
        status, out, err = self.runTool("--json", "--host", "other.org", path)
        self.assertEqual((status, err), (0, ""))
        self.assertEqual([json.loads(line) for line in out.splitlines()], records[10:13])


class FilterTests(ToolTestMixin, SynchronousTestCase):
    """
    The filter options; several options must all match, a repeated option
    matches any of its values.
    """

    def setUp(self) -> None:
        self.records = fixtureRecords()
        self.path = self.writeRecords(self.records)

    def expected(self, indexes: list[int]) -> list[str]:
        return [self.records[i]["target"] for i in indexes]

    def test_host(self) -> None:
        """
        C{--host} matches the destination host, case-insensitively, with
        wildcards.
        """
        self.assertEqual(
            self.targets("--host", "OTHER.org", self.path), self.expected([10, 11, 12])
        )
        self.assertEqual(self.targets("--host", "*.com", self.path), self.expected(list(range(10))))
        self.assertEqual(self.targets("--host", "example", self.path), [])
        self.assertEqual(
            len(self.targets("--host", "example.com", "--host", "other.org", self.path)),
            13,
        )

    def test_status(self) -> None:
        """
        C{--status} takes codes and classes, also comma-separated.
        """
        self.assertEqual(self.targets("--status", "404", self.path), self.expected([8]))
        self.assertEqual(self.targets("--status", "4xx,5xx", self.path), self.expected([8, 9, 13]))
        self.assertEqual(
            self.targets("--status", "3XX", "--status", "503", self.path),
            self.expected([9, 11]),
        )
        self.assertEqual(len(self.targets("--status", "2xx", self.path)), 9)

    def test_sinceUntil(self) -> None:
        """
        C{--since} (inclusive) and C{--until} (exclusive) take ISO times,
        UTC unless an offset is given.
        """
        self.assertEqual(
            self.targets(
                "--since",
                "2023-11-14T22:15:20Z",
                "--until",
                "2023-11-14T22:18:20",
                self.path,
            ),
            self.expected([2, 3, 4]),
        )
        self.assertEqual(
            self.targets("--since", "2023-11-14T23:25:20+01:00", self.path),
            self.expected([12, 13]),
        )
        self.assertEqual(len(self.targets("--until", "2023-11-15", self.path)), 14)

    def test_relativeTimes(self) -> None:
        """
        A relative time counts back from now (here T0 + 1 h).
        """
        self.now = T0 + 14 * 60 + 30
        self.assertEqual(self.targets("--since", "2m", self.path), self.expected([13]))
        self.assertEqual(self.targets("--since", "2.5m", self.path), self.expected([12, 13]))
        self.assertEqual(
            self.targets("--since", "0.25h", "--until", "10.5m", self.path),
            self.expected([0, 1, 2, 3]),
        )
        self.now = T0 + 2 * 86400
        self.assertEqual(self.targets("--since", "1d", self.path), [])
        self.assertEqual(len(self.targets("--since", "2d", self.path)), 14)

    def test_client(self) -> None:
        """
        C{--client} takes addresses (IPv6 in any spelling) and networks.
        """
        self.assertEqual(self.targets("--client", "10.0.0.3", self.path), self.expected([3]))
        self.assertEqual(self.targets("--client", "0:0::1", self.path), self.expected([10, 11, 12]))
        self.assertEqual(
            self.targets("--client", "192.168.0.0/16", "--client", "10.0.0.8/31", self.path),
            self.expected([8, 9, 13]),
        )
        self.assertEqual(len(self.targets("--client", "::/0", self.path)), 3)

    def test_slowerThan(self) -> None:
        """
        C{--slower-than} compares the total time, strictly.
        """
        self.assertEqual(self.targets("--slower-than", "90ms", self.path), self.expected([9, 12]))
        self.assertEqual(self.targets("--slower-than", "0.2s", self.path), self.expected([12]))
        self.assertEqual(self.targets("--slower-than", "300", self.path), [])

    def test_combined(self) -> None:
        """
        Different filters must all match.
        """
        self.assertEqual(
            self.targets(
                "--host",
                "example.com",
                "--status",
                "2xx",
                "--slower-than",
                "50ms",
                self.path,
            ),
            self.expected([5, 6, 7]),
        )


class SummaryTests(ToolTestMixin, SynchronousTestCase):
    """
    C{--summary}: totals, status classes, bytes and nearest-rank latency
    percentiles, overall and per destination host.
    """

    def test_summaryJSON(self) -> None:
        """
        The summary numbers, computed by hand.

        Totals, sorted: 0.5, 1, 2, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100,
        300 (n = 14): p50 is rank 7 (40), p90 rank 13 (100), p99 rank 14.
        Waits (the refused request has none; n = 13): 0.5, 1, 5, 10, 15, 20,
        25, 30, 35, 40, 45, 50, 150: p50 rank 7 (25), p90 rank 12 (50), p99
        rank 13 (150).
        """
        path = self.writeRecords(fixtureRecords())
        status, out, err = self.runTool("--summary", "--json", path)
        self.assertEqual((status, err), (0, ""))
        summary = json.loads(out)
        overall = summary["overall"]
        self.assertEqual(overall["count"], 14)
        self.assertEqual(
            overall["status"],
            {"1xx": 0, "2xx": 9, "3xx": 1, "4xx": 2, "5xx": 1, "none": 1},
        )
        self.assertEqual((overall["aborted"], overall["proxyErrors"]), (1, 1))
        self.assertEqual(overall["bytesFromClient"], 10 * 100 + 3 * 50 + 80)
        self.assertEqual(overall["bytesToClient"], 10 * 1000 + 500 + 500 + 7000 + 150)
        self.assertEqual(overall["total"], {"p50": 40.0, "p90": 100.0, "p99": 300.0, "max": 300.0})
        self.assertEqual(overall["ttfb"], {"p50": 25.0, "p90": 50.0, "p99": 150.0, "max": 150.0})
        self.assertEqual(list(summary["hosts"]), ["example.com", "other.org", "-"])
        example = summary["hosts"]["example.com"]
        # 10, 20, ..., 100: ranks 5, 9, 10.  5, 10, ..., 50: likewise.
        self.assertEqual(example["total"], {"p50": 50.0, "p90": 90.0, "p99": 100.0, "max": 100.0})
        self.assertEqual(example["ttfb"], {"p50": 25.0, "p90": 45.0, "p99": 50.0, "max": 50.0})
        other = summary["hosts"]["other.org"]
        # 1, 2, 300: ranks 2, 3, 3.  0.5, 1, 150: likewise.
        self.assertEqual(other["total"], {"p50": 2.0, "p90": 300.0, "p99": 300.0, "max": 300.0})
        self.assertEqual(other["ttfb"], {"p50": 1.0, "p90": 150.0, "p99": 150.0, "max": 150.0})
        self.assertEqual(
            other["status"],
            {"1xx": 0, "2xx": 1, "3xx": 1, "4xx": 0, "5xx": 0, "none": 1},
        )
        refused = summary["hosts"]["-"]
        self.assertEqual(refused["ttfb"], {"p50": None, "p90": None, "p99": None, "max": None})
        self.assertEqual(refused["total"]["max"], 0.5)
        self.assertEqual(summary["first"], "2023-11-14T22:13:20.000Z")
        self.assertEqual(summary["last"], "2023-11-14T22:26:20.000Z")

    def test_summaryTable(self) -> None:
        """
        The text summary: totals, then an aligned table with one row overall
        and one per host.
        """
        path = self.writeRecords(fixtureRecords())
        status, out, err = self.runTool("--summary", path)
        self.assertEqual((status, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(lines[0], "transactions  14  (aborted 1, proxy errors 1)")
        self.assertEqual(
            lines[2],
            "bytes         from clients 1230, to upstreams 0, from upstreams 0, to clients 18150",
        )
        table = lines[lines.index("") + 1 :]
        self.assertEqual(table[0].split()[:3], ["HOST", "COUNT", "1XX"])
        rows = {line.split()[0]: line.split()[1:] for line in table[1:]}
        self.assertEqual(
            rows["(all)"],
            [
                "14",
                "0",
                "9",
                "1",
                "2",
                "1",
                "1",
                "1230",
                "18150",
                "40.0",
                "100.0",
                "300.0",
                "300.0",
                "25.0",
                "50.0",
                "150.0",
                "150.0",
            ],
        )
        self.assertEqual(
            rows["example.com"],
            [
                "10",
                "0",
                "8",
                "0",
                "1",
                "1",
                "0",
                "1000",
                "10000",
                "50.0",
                "90.0",
                "100.0",
                "100.0",
                "25.0",
                "45.0",
                "50.0",
                "50.0",
            ],
        )
        self.assertEqual(rows["-"][-4:], ["-", "-", "-", "-"])
        # Right-aligned numbers: every row ends at the same column.
        self.assertEqual(len({len(line) for line in table}), 1)

    def test_summaryFiltered(self) -> None:
        """
        Filters apply before summarising.
        """
        path = self.writeRecords(fixtureRecords())
        status, out, err = self.runTool("--summary", "--json", "--status", "5xx", path)
        summary = json.loads(out)
        self.assertEqual(summary["overall"]["count"], 1)
        self.assertEqual(summary["overall"]["total"]["p50"], 100.0)

    def test_summaryEmpty(self) -> None:
        """
        Summarising nothing works.
        """
        path = self.writeRecords([])
        status, out, err = self.runTool("--summary", path)
        self.assertEqual(status, 0)
        self.assertIn("transactions  0", out)


class InputTests(ToolTestMixin, SynchronousTestCase):
    """
    Compressed, corrupt, truncated and unreadable input.
    """

    def test_gzip(self) -> None:
        """
        gzip files are read, whatever their name.
        """
        records = fixtureRecords()
        directory = self.makeDir()
        named = os.path.join(directory, "history.jsonl.2.gz")
        unnamed = os.path.join(directory, "history.jsonl.1")
        with gzip.open(named, "wt", encoding="ascii") as f:
            f.writelines(json.dumps(record) + "\n" for record in records[:5])
        with gzip.open(unnamed, "wt", encoding="ascii") as f:
            f.writelines(json.dumps(record) + "\n" for record in records[5:])
        self.assertEqual(self.targets(unnamed, named), [record["target"] for record in records])

    def test_corruptLines(self) -> None:
        """
        Lines that are not records are reported with file and line number,
        and the others are still listed.
        """
        records = fixtureRecords()
        path = self.writeRecords([])
        wrong = dict(records[2], recordVersion=99)
        with open(path, "wb") as f:
            f.write(json.dumps(records[0]).encode() + b"\n")
            f.write(b"{not json\n")
            f.write(json.dumps(records[1]).encode() + b"\n")
            f.write(b"\n")
            f.write(b"[1, 2]\n")
            f.write(json.dumps(wrong).encode() + b"\n")
            f.write(b"\xff\xfe\n")
            f.write(json.dumps(records[3]).encode() + b"\n")
            f.write(json.dumps(records[4]).encode()[:50])
        status, out, err = self.runTool(path)
        self.assertEqual(status, 0)
        self.assertEqual(
            [line.split()[-1] for line in out.splitlines()[1:]],
            [records[i]["target"] for i in (0, 1, 3)],
        )
        reported = re.findall(r"^proxyhistory: (.*):(\d+): ", err, re.MULTILINE)
        self.assertEqual(
            reported, [(path, "2"), (path, "5"), (path, "6"), (path, "7"), (path, "9")]
        )
        self.assertIn("recordVersion 99", err)
        self.assertIn(":9: skipped corrupt record (truncated)", err)
        self.assertNotIn("Traceback", err)

    def test_wrongTypes(self) -> None:
        """
        A JSON object with the wrong types for the fields the tool uses is
        reported, not a crash.
        """
        records = fixtureRecords()
        broken = [
            dict(records[0], bytesToClient="many"),
            dict(records[0], status="200"),
            dict(records[0], times={"accepted": 5}),
            dict(records[0], times=dict(records[0]["times"], requestHead="soon")),
            dict(records[0], durations=None),
        ]
        path = self.writeRecords([*broken, records[1]])
        for option, shown in (
            ((), "http://example.com/1"),
            (("--summary",), "transactions  1 "),
            (("--har", "-"), '"url": "http://example.com/1"'),
            (("--json",), '"target":"http://example.com/1"'),
        ):
            status, out, err = self.runTool(*option, path)
            self.assertEqual(status, 0)
            self.assertEqual(err.count("skipped corrupt record"), 5, option)
            self.assertIn(shown, out)

    def test_missingFile(self) -> None:
        """
        A file that cannot be read: reported, exit status 1, other files are
        still listed.
        """
        path = self.writeRecords(fixtureRecords()[:1])
        missing = os.path.join(os.path.dirname(path), "nope.jsonl")
        status, out, err = self.runTool(missing, path)
        self.assertEqual(status, 1)
        self.assertEqual(err, f"proxyhistory: {missing}: cannot read: No such file or directory\n")
        self.assertIn("http://example.com/0", out)

    def test_directory(self) -> None:
        """
        A directory is a file that cannot be read.
        """
        path = self.writeRecords([])
        status, out, err = self.runTool(os.path.dirname(path))
        self.assertEqual(status, 1)
        self.assertIn("cannot read", err)

    def test_truncatedGzip(self) -> None:
        """
        A gzip file cut short (its trailer lost): what could be decompressed
        is listed, the file is reported, exit status 1.
        """
        records = fixtureRecords()
        directory = self.makeDir()
        path = os.path.join(directory, "history.jsonl.1.gz")
        data = gzip.compress(b"".join(json.dumps(record).encode() + b"\n" for record in records))
        with open(path, "wb") as f:
            f.write(data[: len(data) - 4])
        status, out, err = self.runTool(path)
        self.assertEqual(status, 1)
        self.assertIn(f"proxyhistory: {path}:", err)
        self.assertIn("cannot read", err)
        self.assertEqual(len(out.splitlines()), len(records) + 1)


class HARTests(ToolTestMixin, SynchronousTestCase):
    """
    C{--har}: HTTP Archive 1.2 export, validated against the schema in
    C{tests/har-1.2.schema.json}.
    """

    def validator(self) -> Any:
        import jsonschema

        with open(SCHEMA, encoding="utf-8") as f:
            schema = json.load(f)
        jsonschema.Draft202012Validator.check_schema(schema)
        return jsonschema.Draft202012Validator(schema)

    def export(self, records: list[dict[str, Any]], *options: str) -> dict[str, Any]:
        path = self.writeRecords(records)
        out = os.path.join(os.path.dirname(path), "out.har")
        status, stdout, err = self.runTool("--har", out, *options, path)
        self.assertEqual((status, stdout, err), (0, "", ""))
        with open(out, encoding="utf-8") as f:
            document: dict[str, Any] = json.load(f)
        return document

    def test_valid(self) -> None:
        """
        The export of every kind of record validates, and each entry's
        C{time} is the sum of its applicable timings.
        """
        records = fixtureRecords()
        records.append(
            makeRecord(
                2000,
                {"upstreamReady": 12, "responseHead": 12, "responseComplete": 5012},
                kind="tunnel",
                method="CONNECT",
                target="example.com:443",
                destHost="example.com",
                destPort=443,
                status=200,
                reason="Connection established",
                connectionReused=False,
                bytesFromClient=700,
                bytesToClient=4000,
            )
        )
        document = self.export(records)
        errors = list(self.validator().iter_errors(document))
        self.assertEqual(errors, [])
        self.assertEqual(len(document["log"]["entries"]), len(records))
        for entry in document["log"]["entries"]:
            applicable = [value for value in entry["timings"].values() if value != -1]
            self.assertAlmostEqual(entry["time"], sum(applicable), places=6)

    def test_schemaRejects(self) -> None:
        """
        The schema is not vacuous: it rejects what HAR 1.2 forbids.
        """
        validator = self.validator()
        good = harFromRecords(fixtureRecords()[:1])
        self.assertTrue(validator.is_valid(good))

        def broken(change: Any) -> dict[str, Any]:
            document: dict[str, Any] = json.loads(json.dumps(good))
            change(document["log"]["entries"][0])
            return document

        self.assertFalse(validator.is_valid(broken(lambda e: e.pop("timings"))))
        self.assertFalse(validator.is_valid(broken(lambda e: e["timings"].update(send=-1))))
        self.assertFalse(validator.is_valid(broken(lambda e: e["timings"].update(dns=-2))))
        self.assertFalse(validator.is_valid(broken(lambda e: e["request"].update(extra=1))))
        self.assertTrue(validator.is_valid(broken(lambda e: e["request"].update(_extra=1))))
        self.assertFalse(
            validator.is_valid(broken(lambda e: e.update(startedDateTime="yesterday")))
        )
        self.assertFalse(
            validator.is_valid(broken(lambda e: e["response"]["content"].pop("mimeType")))
        )
        self.assertFalse(validator.is_valid({"log": {"version": "1.2", "entries": []}}))

    def test_entry(self) -> None:
        """
        A complete transaction: heads, sizes, URL, query, cookies (when not
        redacted) and timings from the measured phases.
        """
        record = makeRecord(
            0,
            {
                "upstreamReady": 10,
                "requestSent": 12,
                "responseHead": 62,
                "responseComplete": 67,
            },
            method="GET",
            target="http://example.com/search?q=twisted&empty=",
            requestVersion="HTTP/1.1",
            requestHeaders=[("Host", "example.com"), ("Cookie", "a=1; b=2")],
            status=302,
            reason="Found",
            responseVersion="HTTP/1.1",
            responseHeaders=[
                ("Content-Type", "text/plain"),
                ("Location", "http://example.com/next"),
                ("Set-Cookie", "id=9; Path=/; HttpOnly; Secure"),
            ],
            destHost="example.com",
            destPort=80,
            peerHost="127.0.0.2",
            peerPort=80,
            connectionReused=False,
            bytesFromClient=1000,
            bytesToClient=2000,
        )
        # Round numbers for the sizes (the history has them as the record
        # computed them).
        record.update(requestHeadSize=100, responseHeadSize=150)
        document = self.export([record])
        [entry] = document["log"]["entries"]
        self.assertEqual(document["log"]["version"], "1.2")
        self.assertEqual(entry["startedDateTime"], "2023-11-14T22:13:20.000000Z")
        self.assertEqual(
            entry["timings"],
            {
                "blocked": -1,
                "dns": -1,
                "connect": 10.0,
                "send": 2.0,
                "wait": 50.0,
                "receive": 5.0,
                "ssl": -1,
            },
        )
        self.assertEqual(entry["time"], 67.0)
        self.assertEqual(entry["serverIPAddress"], "127.0.0.2")
        request, response = entry["request"], entry["response"]
        self.assertEqual(
            request["queryString"],
            [{"name": "q", "value": "twisted"}, {"name": "empty", "value": ""}],
        )
        self.assertEqual((request["headersSize"], request["bodySize"]), (100, 900))
        self.assertEqual(request["cookies"], [])  # redacted in the record
        self.assertEqual(
            (response["status"], response["statusText"], response["redirectURL"]),
            (302, "Found", "http://example.com/next"),
        )
        self.assertEqual(response["content"], {"size": 1850, "mimeType": "text/plain"})
        self.assertEqual((response["headersSize"], response["bodySize"]), (150, 1850))

    def test_cookiesWhenNotRedacted(self) -> None:
        """
        Cookies are listed from unredacted heads.
        """
        clock = Clock()
        record = TransactionRecord(
            monoClock=clock.seconds,
            connectionId="c",
            sequence=1,
            clientHost="127.0.0.1",
            clientPort=1,
            acceptedWall=0.0,
            acceptedMono=0.0,
        )
        record.requestHeaders = [("Cookie", "a=1; b=2")]
        record.responseHeaders = [("Set-Cookie", "id=9; Path=/x; HttpOnly; Secure")]
        record.finish()
        [entry] = harFromRecords([record.asDict(redact=False)])["log"]["entries"]
        self.assertEqual(
            entry["request"]["cookies"],
            [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}],
        )
        self.assertEqual(
            entry["response"]["cookies"],
            [
                {
                    "name": "id",
                    "value": "9",
                    "path": "/x",
                    "httpOnly": True,
                    "secure": True,
                }
            ],
        )
        self.assertTrue(self.validator().is_valid(harFromRecords([record.asDict(False)])))

    def test_timingsByCase(self) -> None:
        """
        Pooled connections count as blocked, not connect; a refusal is all
        wait; an abort after the response head is receive up to the end; an
        upstream failure before any response is wait.
        """
        reused = makeRecord(
            0,
            {
                "upstreamReady": 0.5,
                "requestSent": 1.5,
                "responseHead": 21.5,
                "responseComplete": 22.5,
            },
            connectionReused=True,
        )
        refused = makeRecord(0, {}, end=0.25, kind="refused", status=403)
        aborted = makeRecord(
            0,
            {"upstreamReady": 1, "requestSent": 2, "responseHead": 22},
            end=322,
            aborted=True,
        )
        failed = makeRecord(0, {}, end=30, status=502, proxyError="dns_error")
        entries = harFromRecords([reused, refused, aborted, failed])["log"]["entries"]
        timings = [
            tuple(
                entry["timings"][key] for key in ("blocked", "connect", "send", "wait", "receive")
            )
            for entry in entries
        ]
        self.assertEqual(
            timings,
            [
                (0.5, -1, 1.0, 20.0, 1.0),
                (-1, -1, 0.0, 0.25, 0.0),
                (-1, 1.0, 1.0, 20.0, 300.0),
                (-1, -1, 0.0, 30.0, 0.0),
            ],
        )
        self.assertEqual([entry["time"] for entry in entries], [22.5, 0.25, 322.0, 30.0])
        self.assertEqual(entries[2]["_error"], "aborted")
        self.assertEqual(entries[3]["_error"], "dns_error")
        self.assertEqual(entries[3]["response"]["status"], 502)

    def test_timingsWithConnectStart(self) -> None:
        """
        A new connection's record marks when it was asked for: the time
        before is blocked, the connecting itself is connect.
        """
        record = makeRecord(
            0,
            {
                "connectStart": 0.25,
                "upstreamReady": 1.25,
                "requestSent": 1.5,
                "responseHead": 2.5,
                "responseComplete": 3.0,
            },
        )
        [entry] = harFromRecords([record])["log"]["entries"]
        self.assertEqual(
            tuple(entry["timings"][k] for k in ("blocked", "connect", "send", "wait", "receive")),
            (0.25, 1.0, 0.25, 1.0, 0.5),
        )

    def test_stdout(self) -> None:
        """
        C{--har -} writes the archive to stdout.
        """
        path = self.writeRecords(fixtureRecords()[:3])
        status, out, err = self.runTool("--har", "-", path)
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(len(json.loads(out)["log"]["entries"]), 3)

    def test_unwritable(self) -> None:
        """
        A HAR file that cannot be written: exit status 1 and a message.
        """
        path = self.writeRecords(fixtureRecords()[:1])
        out = os.path.join(os.path.dirname(path), "no", "such", "dir.har")
        status, stdout, err = self.runTool("--har", out, path)
        self.assertEqual(status, 1)
        self.assertIn("cannot write", err)
        self.assertNotIn("Traceback", err)


class UsageTests(ToolTestMixin, SynchronousTestCase):
    """
    Usage errors: exit status 2, one clean message, no traceback.
    """

    def assertUsageError(self, *argv: str, message: str) -> None:
        status, out, err = self.runTool(*argv)
        self.assertEqual(status, 2, argv)
        self.assertEqual(out, "")
        self.assertTrue(err.startswith("usage: proxyhistory"), err)
        self.assertIn("proxyhistory: error: " + message, err)
        self.assertNotIn("Traceback", err)

    def test_errors(self) -> None:
        """
        Each kind of bad argument is a usage error that says what is wrong.
        """
        path = self.writeRecords([])
        self.assertUsageError(message="the following arguments are required: FILE")
        self.assertUsageError("--frobnicate", path, message="unrecognized arguments")
        self.assertUsageError("--status", "2x", path, message="invalid status '2x'")
        self.assertUsageError("--status", "600", path, message="invalid status '600'")
        self.assertUsageError("--since", "last week", path, message="invalid time")
        self.assertUsageError("--until", "10 parsecs", path, message="invalid time")
        self.assertUsageError("--slower-than", "fast", path, message="invalid duration")
        self.assertUsageError("--client", "10.0.0.0/33", path, message="invalid client network")
        self.assertUsageError(
            "--har", "x.har", "--summary", path, message="--har cannot be combined"
        )
        self.assertUsageError("--host", message="argument --host: expected one argument")

    def test_help(self) -> None:
        """
        C{--help} prints the options on stdout and succeeds.
        """
        status, out, err = self.runTool("--help")
        self.assertEqual((status, err), (0, ""))
        for option in (
            "--host",
            "--status",
            "--since",
            "--until",
            "--client",
            "--slower-than",
            "--summary",
            "--har",
            "--json",
        ):
            self.assertIn(option, out)


class ConsoleScriptTests(SynchronousTestCase):
    """
    The C{proxyhistory} console script declared in C{pyproject.toml}.
    """

    def test_entryPoint(self) -> None:
        """
        The declared entry point runs as a program: it lists a file with exit
        status 0, and exits 2 with a clean message on a usage error.
        """
        with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
            match = re.search(r'^proxyhistory\s*=\s*"([\w.]+):(\w+)"', f.read(), re.MULTILINE)
        assert match is not None
        module, function = match.groups()
        program = f"import sys; from {module} import {function}; sys.exit({function}())"
        directory = tempfile.mkdtemp(prefix="twisted-proxy-test-")
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "history.jsonl")
        with open(path, "w", encoding="ascii") as f:
            f.write(json.dumps(fixtureRecords()[0]) + "\n")
        env = dict(os.environ, PYTHONPATH=ROOT)
        done = subprocess.run(
            [sys.executable, "-c", program, path],
            capture_output=True,
            text=True,
            env=env,
            cwd=directory,
            timeout=60,
        )
        self.assertEqual((done.returncode, done.stderr), (0, ""))
        self.assertIn("http://example.com/0", done.stdout)
        done = subprocess.run(
            [sys.executable, "-c", program, "--status", "bad", path],
            capture_output=True,
            text=True,
            env=env,
            cwd=directory,
            timeout=60,
        )
        self.assertEqual(done.returncode, 2)
        self.assertEqual(done.stdout, "")
        self.assertIn("proxyhistory: error: invalid status 'bad'", done.stderr)
        self.assertNotIn("Traceback", done.stderr)

    def test_module(self) -> None:
        """
        C{python -m twisted_proxy.historytool} is the same program.
        """
        done = subprocess.run(
            [sys.executable, "-m", "twisted_proxy.historytool", "--version"],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=ROOT),
            cwd=ROOT,
            timeout=60,
        )
        self.assertEqual((done.returncode, done.stderr), (0, ""))
        self.assertTrue(done.stdout.startswith("proxyhistory "), done.stdout)
