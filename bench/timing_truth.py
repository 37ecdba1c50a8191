#!/usr/bin/env python3
"""Timing truth: do proxyclient's phase timings and the proxy's history
records agree with the wire?  (Issue 16.)

A packet capture on loopback (tcpdump, kernel timestamps, nanosecond
precision) of the same exchanges is the reference.  The script starts an
origin (bench/origin.py) and twisted-proxy with --history, starts tcpdump on
the proxy's and the origin's ports, and then drives, one after another:

  proxyclient cold   --runs runs of `proxyclient --json -x PROXY URL`, a new
                     process (and connection) each
  proxyclient warm   one `proxyclient --json --count RUNS+1` (the first run,
                     which opens the connection, is left out of this column)
  curl cold          --runs runs of `curl -x PROXY -w ... URL`, a process each
  curl warm          one curl with RUNS+1 URLs on one connection (the first
                     left out, as above)

and compares, phase by phase, what each reports with what the capture shows.
Which packet marks which phase is defined in bench/README.rst ("timing_truth.py");
in short, for a client (cumulative from the start, as curl -w reports them):

  start         the client's SYN (a new connection), else the first payload
                packet of its request
  connect       the client's handshake ACK (SYN -> SYN-ACK -> ACK)
  request sent  the first payload packet of the request, client -> proxy
  first byte    the first payload packet proxy -> client
  total         the last payload packet proxy -> client of that response
  wait          an interval, not from the start: first byte - request sent

and for the proxy's records (absolute timestamps: the records' wall clock and
the capture's are the same CLOCK_REALTIME), each mark against the packet of
the socket event it stands for; the upstream side against the capture on the
origin's port.

    python3 bench/timing_truth.py                 # 20 runs of each kind
    python3 bench/timing_truth.py --runs 50 --json bench/results/timing.json

Needs tcpdump (apt-get install -y tcpdump) and root (tcpdump opens a raw
socket on lo).  The origin answers with "Connection: close" by default, so
that the proxy opens an upstream connection for every transaction and the
upstream connect is measured every time (--upstream-reuse: let the proxy
pool it).  Loopback only; Python standard library.
"""

import argparse
import calendar
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

import benchlib
from benchlib import LOOPBACK

MS = 1e6  # nanoseconds per millisecond
PHASES = ("connect", "sent", "firstByte", "total", "wait")
PHASE_TITLES = {
    "connect": "connect",
    "sent": "request sent",
    "firstByte": "first byte",
    "total": "total",
    "wait": "wait (interval)",
}
KINDS = ("proxyclient cold", "proxyclient warm", "curl cold", "curl warm")


# --- pcap ---------------------------------------------------------------------


class Packet:
    __slots__ = ("ts", "src", "sport", "dst", "dport", "flags", "length")

    def __init__(self, ts, src, sport, dst, dport, flags, length):
        self.ts = ts  # nanoseconds since the epoch (CLOCK_REALTIME)
        self.src, self.sport, self.dst, self.dport = src, sport, dst, dport
        self.flags = flags
        self.length = length  # TCP payload octets

    @property
    def syn(self):
        return bool(self.flags & 0x02)

    @property
    def ack(self):
        return bool(self.flags & 0x10)

    @property
    def fin(self):
        return bool(self.flags & 0x01)

    @property
    def rst(self):
        return bool(self.flags & 0x04)


def readPcap(path):
    """TCP packets of a classic pcap file (what tcpdump -w writes): link
    types Ethernet (Linux lo), Linux cooked v1/v2, BSD loopback and raw IP;
    IPv4 and IPv6 without extension headers.  Payload length is taken from
    the IP header, so a small snap length is enough."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise ValueError(f"{path}: not a pcap file (too short)")
    magic = data[:4]
    for endian in ("<", ">"):
        (m,) = struct.unpack(endian + "I", magic)
        if m in (0xA1B2C3D4, 0xA1B23C4D):
            break
    else:
        raise ValueError(f"{path}: not a classic pcap file (magic {magic.hex()})")
    nano = m == 0xA1B23C4D
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    offset = 24
    rec = struct.Struct(endian + "IIII")
    packets = []
    while offset + 16 <= len(data):
        sec, frac, incl, _orig = rec.unpack_from(data, offset)
        offset += 16
        frame = data[offset : offset + incl]
        offset += incl
        ts = sec * 1_000_000_000 + (frac if nano else frac * 1000)
        if linktype == 1:  # Ethernet
            ethertype, ip = struct.unpack_from("!H", frame, 12)[0], frame[14:]
        elif linktype == 113:  # Linux cooked (SLL)
            ethertype, ip = struct.unpack_from("!H", frame, 14)[0], frame[16:]
        elif linktype == 276:  # Linux cooked v2
            ethertype, ip = struct.unpack_from("!H", frame, 0)[0], frame[20:]
        elif linktype == 0:  # BSD loopback: host-order address family
            family = struct.unpack_from(endian + "I", frame, 0)[0]
            ethertype, ip = (0x0800 if family == 2 else 0x86DD), frame[4:]
        elif linktype in (12, 101):  # raw IP
            ethertype, ip = (0x0800 if frame[:1] and frame[0] >> 4 == 4 else 0x86DD), frame
        else:
            raise ValueError(f"{path}: unsupported link type {linktype}")
        if ethertype == 0x0800 and len(ip) >= 20:
            ihl = (ip[0] & 0x0F) * 4
            if ip[9] != 6:
                continue
            total = struct.unpack_from("!H", ip, 2)[0]
            src, dst = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
            tcp, tcpRoom = ip[ihl:], total - ihl
        elif ethertype == 0x86DD and len(ip) >= 40:
            if ip[6] != 6:
                continue
            src, dst = ip[8:24].hex(), ip[24:40].hex()
            tcp, tcpRoom = ip[40:], struct.unpack_from("!H", ip, 4)[0]
        else:
            continue
        if len(tcp) < 14:
            continue
        sport, dport = struct.unpack_from("!HH", tcp, 0)
        thl = (tcp[12] >> 4) * 4
        packets.append(Packet(ts, src, sport, dst, dport, tcp[13], max(0, tcpRoom - thl)))
    return packets


# --- connections and exchanges on the wire ---------------------------------------


class Exchange:
    """One request and its response on a connection, as packet times."""

    def __init__(self):
        self.reqFirst = self.reqLast = self.respFirst = self.respLast = None


class WireConnection:
    """The packets of one TCP connection to a server port, grouped."""

    def __init__(self, clientPort):
        self.clientPort = clientPort
        self.syn = self.synAck = self.hsAck = None
        self.exchanges = []
        self.fin = None

    def add(self, p, fromClient):
        if p.syn and not p.ack and fromClient:
            self.syn = p.ts if self.syn is None else self.syn
            return
        if p.syn and p.ack and not fromClient:
            self.synAck = p.ts if self.synAck is None else self.synAck
            return
        if fromClient and self.synAck is not None and self.hsAck is None and p.ack:
            self.hsAck = p.ts  # the handshake ACK (or the first data, if it carries it)
        if p.length:
            if fromClient:
                if not self.exchanges or self.exchanges[-1].respFirst is not None:
                    self.exchanges.append(Exchange())
                x = self.exchanges[-1]
                x.reqFirst = p.ts if x.reqFirst is None else x.reqFirst
                x.reqLast = p.ts
            elif self.exchanges:
                x = self.exchanges[-1]
                x.respFirst = p.ts if x.respFirst is None else x.respFirst
                x.respLast = p.ts
        if (p.fin or p.rst) and self.fin is None:
            self.fin = p.ts


def connectionsTo(packets, port):
    """{client port: WireConnection} for connections to 127.0.0.1:port, in
    order of their first packet; a reused client port starts a new entry."""
    out = []
    current: dict[Any, Any] = {}
    for p in packets:
        if p.dport == port and p.sport != port:
            key, fromClient = p.sport, True
        elif p.sport == port and p.dport != port:
            key, fromClient = p.dport, False
        else:
            continue
        c = current.get(key)
        if c is None or (p.syn and not p.ack and fromClient and c.syn is not None):
            c = current[key] = WireConnection(key)
            out.append(c)
        c.add(p, fromClient)
    return out


# --- running the clients ------------------------------------------------------------


def cleanEnv():
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["LC_ALL"] = "C"
    return env


def timedRun(argv, timeout=60):
    """Run argv; returns (wall start ns, wall end ns, stdout, stderr, exit code)."""
    t0 = time.time_ns()
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=cleanEnv())
        code, stdout, stderr = out.returncode, out.stdout, out.stderr
    except subprocess.TimeoutExpired:
        code, stdout, stderr = None, "", f"timed out after {timeout} s"
    return t0, time.time_ns(), stdout, stderr, code


def parseClientJson(stdout):
    """The {"type": "run"} objects of proxyclient --json, in order."""
    runs = []
    for line in stdout.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if obj.get("type") == "run":
            runs.append(obj)
    return runs


def curlFormat(posttransfer):
    fields = [
        "%{local_port}",
        "%{num_connects}",
        "%{http_code}",
        "%{time_connect}",
        "%{time_pretransfer}",
        "%{time_starttransfer}",
        "%{time_total}",
    ]
    if posttransfer:
        fields.append("%{time_posttransfer}")
    return "CURLRUN " + " ".join(fields) + "\\n"


def parseCurl(stdout, posttransfer):
    runs = []
    for line in stdout.splitlines():
        if not line.startswith("CURLRUN "):
            continue
        f = line.split()[1:]
        run: dict[str, Any] = {
            "local_port": int(f[0]),
            "new_connection": int(f[1]) > 0,
            "status": int(f[2]),
            "curl": {
                "time_connect": float(f[3]),
                "time_pretransfer": float(f[4]),
                "time_starttransfer": float(f[5]),
                "time_total": float(f[6]),
            },
        }
        if posttransfer:
            run["curl"]["time_posttransfer"] = float(f[7])
        runs.append(run)
    return runs


def curlHasPosttransfer():
    """curl >= 8.10.0 has %{time_posttransfer}."""
    try:
        out = subprocess.run(
            ["curl", "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    m = re.match(r"curl (\d+)\.(\d+)", out)
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (8, 10)


# --- matching reported runs with the wire ------------------------------------------


def exchangesIn(conns, start, end):
    """(connection, index, exchange) of every exchange whose request began
    in [start, end], in time order."""
    out = []
    for c in conns:
        for i, x in enumerate(c.exchanges):
            if x.reqFirst is not None and start <= x.reqFirst <= end:
                out.append((c, i, x))
    out.sort(key=lambda t: t[2].reqFirst)
    return out


def wirePhases(conn, index, x):
    """Cumulative wire phases in ns from the start, and whether the exchange
    opened its connection; None if the capture lacks a packet it needs."""
    if None in (x.reqFirst, x.respFirst, x.respLast):
        return None
    fresh = index == 0 and conn.syn is not None and conn.hsAck is not None
    t0 = conn.syn if fresh else x.reqFirst
    return fresh, {
        "connect": conn.hsAck - t0 if fresh else None,
        "sent": x.reqFirst - t0,
        "firstByte": x.respFirst - t0,
        "total": x.respLast - t0,
        "wait": x.respFirst - x.reqFirst,
    }


def reportedPhases(run, posttransfer=True):
    """A client's cumulative phases in ns from its curl-style variables."""
    c = run["curl"]
    sent = c.get("time_posttransfer") if posttransfer else None
    if sent is None:
        sent = c.get("time_pretransfer")

    def ns(v):
        return None if v is None else round(v * 1e9)

    phases = {
        "connect": ns(c.get("time_connect")) if run.get("new_connection") else None,
        "sent": ns(sent),
        "firstByte": ns(c.get("time_starttransfer")),
        "total": ns(c.get("time_total")),
    }
    if phases["sent"] is not None and phases["firstByte"] is not None:
        phases["wait"] = phases["firstByte"] - phases["sent"]
    else:
        phases["wait"] = None
    return phases


def compare(pairs):
    """pairs: list of (reported ns, wire ns) -> stats in ms."""
    pairs = [(r, w) for r, w in pairs if r is not None and w is not None]
    if not pairs:
        return None
    diffs = [(r - w) / MS for r, w in pairs]
    absd = [abs(d) for d in diffs]
    return {
        "n": len(pairs),
        "wireP50": benchlib.median([w / MS for _, w in pairs]),
        "reportedP50": benchlib.median([r / MS for r, _ in pairs]),
        "absP50": benchlib.median(absd),
        "absMax": max(absd),
        "biasP50": benchlib.median(diffs),
    }


def matchClientRuns(kind, windows, conns, skipFirst, problems):
    """windows: [(start ns, end ns, [reported runs])] -> [(reported, wire)]."""
    pairs = []
    for start, end, runs in windows:
        found = exchangesIn(conns, start, end)
        if len(found) != len(runs):
            problems.append(
                f"{kind}: {len(runs)} reported runs, {len(found)} exchanges on the wire "
                "in that window; window skipped"
            )
            continue
        for i, (run, (c, idx, x)) in enumerate(zip(runs, found, strict=True)):
            if "local_port" in run and run["local_port"] != c.clientPort:
                problems.append(
                    f"{kind}: curl's local port {run['local_port']} is not the wire's "
                    f"{c.clientPort}; run skipped"
                )
                continue
            if skipFirst and i == 0:
                continue
            w = wirePhases(c, idx, x)
            if w is None:
                problems.append(
                    f"{kind}: an exchange on port {c.clientPort} lacks packets; run skipped"
                )
                continue
            fresh, wire = w
            if fresh != bool(run.get("new_connection")):
                problems.append(
                    f"{kind}: the client says new_connection={run.get('new_connection')}, "
                    f"the wire says {fresh}"
                )
            pairs.append((run, wire))
    return pairs


def isoToNs(text):
    """'2026-01-02T03:04:05.123456Z' (or +00:00) -> ns since the epoch."""
    if text is None:
        return None
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", text)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    frac = (m.group(7) or "0")[:9].ljust(9, "0")
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    tz = m.group(8)
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return secs * 1_000_000_000 + int(frac)


RECORD_MARKS = [
    # (record mark, what the wire event is,
    #  function(client conn, exchange, upstream conn, upstream exchange))
    (
        "accepted",
        "client's handshake ACK, on the proxy's port (first transaction of a connection)",
        lambda c, x, u, ux, first: c.hsAck if first else None,
    ),
    (
        "requestHead",
        "last payload packet of the request, client -> proxy",
        lambda c, x, u, ux, first: x.reqLast,
    ),
    (
        "upstreamReady",
        "proxy's handshake ACK on the origin's port (new upstream connections)",
        lambda c, x, u, ux, first: u.hsAck if u is not None and ux is u.exchanges[0] else None,
    ),
    (
        "requestSent",
        "last payload packet of the request, proxy -> origin",
        lambda c, x, u, ux, first: ux.reqLast if ux else None,
    ),
    (
        "responseHead",
        "first payload packet of the response, origin -> proxy",
        lambda c, x, u, ux, first: ux.respFirst if ux else None,
    ),
    (
        "responseComplete",
        "last payload packet of the response, proxy -> client",
        lambda c, x, u, ux, first: x.respLast,
    ),
]

RECORD_DURATIONS = [
    (
        "upstreamConnect",
        "SYN -> handshake ACK on the origin's port (new upstream connections)",
        lambda c, x, u, ux: (
            (u.hsAck - u.syn) if u is not None and ux is u.exchanges[0] and u.syn else None
        ),
    ),
    (
        "wait",
        "last request packet proxy -> origin -> first response packet origin -> proxy",
        lambda c, x, u, ux: (
            (ux.respFirst - ux.reqLast) if ux and ux.respFirst and ux.reqLast else None
        ),
    ),
    (
        "total",
        "last request packet client -> proxy -> last response packet proxy -> client",
        lambda c, x, u, ux: (x.respLast - x.reqLast) if x.respLast and x.reqLast else None,
    ),
]


def matchRecords(records, clientConns, upstreamConns, problems):
    """Pair every http record with its client and upstream exchange."""
    byPort: dict[int, list[Any]] = {}
    for c in clientConns:
        byPort.setdefault(c.clientPort, []).append(c)
    upstream = [(u, ux) for u in upstreamConns for ux in u.exchanges if ux.reqFirst is not None]
    matched = []
    for rec in records:
        if rec.get("kind") != "http":
            continue
        seq = rec.get("sequence") or 1
        accepted = isoToNs(rec["times"].get("accepted"))
        cands = [c for c in byPort.get(rec.get("clientPort"), []) if len(c.exchanges) >= seq]
        if accepted is not None and len(cands) > 1:
            cands.sort(key=lambda c: abs((c.hsAck or c.syn or 0) - accepted))
        if not cands:
            problems.append(
                f"record {rec.get('connectionId')}/{seq}: no connection from port "
                f"{rec.get('clientPort')} in the capture"
            )
            continue
        c = cands[0]
        x = c.exchanges[seq - 1]
        if x.reqLast is None or x.respFirst is None:
            continue
        ups = [(u, ux) for u, ux in upstream if x.reqLast <= ux.reqFirst <= x.respFirst]
        u, ux = ups[0] if len(ups) == 1 else (None, None)
        if len(ups) != 1:
            problems.append(
                f"record {rec.get('connectionId')}/{seq}: {len(ups)} upstream exchanges "
                "in its window; upstream marks skipped"
            )
        matched.append((rec, c, x, u, ux, seq == 1))
    return matched


def compareRecords(matched):
    marks, durations = {}, {}
    for name, _, wire in RECORD_MARKS:
        pairs = []
        for rec, c, x, u, ux, first in matched:
            pairs.append((isoToNs(rec["times"].get(name)), wire(c, x, u, ux, first)))
        marks[name] = compare(pairs)
    for name, _, span in RECORD_DURATIONS:
        pairs = []
        for rec, c, x, u, ux, _first in matched:
            v = rec["durations"].get(name)
            pairs.append((None if v is None else round(v * MS), span(c, x, u, ux)))
        durations[name] = compare(pairs)
    return marks, durations


# --- output -------------------------------------------------------------------------


def f3(v, spec="{:.3f}"):
    return "-" if v is None else spec.format(v)


def cell(s):
    return "-" if s is None else f"{s['absP50']:.3f} / {s['absMax']:.3f}"


def renderReport(results, args):
    out = []
    out.append(
        "How far each reported phase is from the wire: |reported - wire| in ms, "
        "median / max over the runs (bias: median of reported - wire)"
    )
    for kind in KINDS:
        stats = results["clients"].get(kind)
        if stats is None:
            continue
        out.append("")
        out.append(f"{kind} ({results['runsByKind'].get(kind, 0)} runs)")
        rows = []
        for ph in PHASES:
            s = stats.get(ph)
            if s is None:
                continue
            rows.append(
                [
                    PHASE_TITLES[ph],
                    s["n"],
                    f3(s["wireP50"]),
                    f3(s["reportedP50"]),
                    f3(s["absP50"]),
                    f3(s["absMax"]),
                    f3(s["biasP50"], "{:+.3f}"),
                ]
            )
        out.append(
            benchlib.textTable(
                ["phase", "n", "wire p50", "reported p50", "|d| p50", "|d| max", "bias"], rows
            )
        )
    first = results.get("firstColdTotal")
    if first:
        out.append("")
        out.append(
            f"first cold proxyclient run: total reported {first['reported']:.3f} ms, wire "
            f"{first['wire']:.3f} ms, |d| {abs(first['reported'] - first['wire']):.3f} ms "
            "(target 0.5 ms)"
        )
    rec = results.get("records")
    if rec:
        out.append("")
        out.append(f"proxy history records ({rec['count']} http records matched), ms")
        rows = []
        for name, what, _ in RECORD_MARKS:
            s = rec["marks"].get(name)
            rows.append(
                [
                    name,
                    what,
                    "-" if s is None else s["n"],
                    f3(s and s["absP50"]),
                    f3(s and s["absMax"]),
                    f3(s and s["biasP50"], "{:+.3f}"),
                ]
            )
        for name, what, _ in RECORD_DURATIONS:
            s = rec["durations"].get(name)
            rows.append(
                [
                    f"durations.{name}",
                    what,
                    "-" if s is None else s["n"],
                    f3(s and s["absP50"]),
                    f3(s and s["absMax"]),
                    f3(s and s["biasP50"], "{:+.3f}"),
                ]
            )
        out.append(
            benchlib.textTable(
                ["record field", "wire event", "n", "|d| p50", "|d| max", "bias"], rows, left=2
            )
        )
    out.append("")
    out.append("Summary, |reported - wire| ms, median / max (target: median <= 0.2 ms)")
    rows = []
    for ph in PHASES:
        row = [PHASE_TITLES[ph]]
        for kind in KINDS:
            row.append(cell((results["clients"].get(kind) or {}).get(ph)))
        rows.append(row)
    out.append(benchlib.textTable(["phase"] + list(KINDS), rows))
    if rec:
        s = rec["durations"]
        out.append(
            f"proxy record: upstreamConnect {cell(s.get('upstreamConnect'))}, "
            f"wait {cell(s.get('wait'))} (target 0.2 ms)"
        )
    if results["problems"]:
        out.append("")
        out.append("Problems (runs or records left out):")
        out.extend(f"  {p}" for p in results["problems"][:20])
        if len(results["problems"]) > 20:
            out.append(f"  ... and {len(results['problems']) - 20} more")
    return "\n".join(out)


# --- main ---------------------------------------------------------------------------


def findProxyclient():
    here = os.path.join(os.path.dirname(sys.executable), "proxyclient")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("proxyclient")


def waitForText(path, text, timeout, proc):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                if text.encode() in f.read():
                    return True
        except OSError:
            pass
        if not proc.alive():
            return False
        time.sleep(0.05)
    return False


class Capture:
    """What one run of the drivers left: the pcap, the history file, the
    reported runs per kind with their wall-clock windows, and the ports."""

    def __init__(self):
        self.windows: dict[str, list[Any]] = {k: [] for k in KINDS}
        self.problems = []
        self.pcap = self.history = None
        self.proxyPort = self.originPort = None
        self.proxyDesc = self.url = None
        self.started = None  # wall ns when the capture was running


def runCapture(args, workdir, proxyclient, useCurl, posttransfer):
    """Start the origin, the proxy and tcpdump; drive every client; stop
    everything (by PID).  Returns a L{Capture}."""
    cap = Capture()
    cap.history = os.path.join(workdir, "history.jsonl")
    cap.pcap = os.path.join(workdir, "lo.pcap")
    procs = benchlib.Processes()
    try:
        cap.originPort, _ = benchlib.startOrigin(procs, workdir)
        proxyArgs = argparse.Namespace(proxy=None, proxy_cmd="default")
        proxy = benchlib.startProxy(
            proxyArgs, procs, workdir, extra=["--history", cap.history] + args.proxy_arg
        )
        cap.proxyPort, cap.proxyDesc = proxy.port, proxy.desc
        query = "" if args.upstream_reuse else "?close=1"
        url = cap.url = f"http://{LOOPBACK}:{cap.originPort}/b/{args.size}{query}"
        proxyAddr = f"{LOOPBACK}:{proxy.port}"
        print(f"proxy: {proxy.desc}")
        print(f"origin: bench/origin.py on {LOOPBACK}:{cap.originPort}; URL {url}")
        # Warm the proxy up: its first-use costs are not what is measured.
        for _ in range(3):
            timedRun([proxyclient, "--json", "-x", proxyAddr, url])
        benchlib.waitQuiet(args)
        tcpdumpArgv = [
            "tcpdump",
            "-i",
            "lo",
            "-n",
            "-s",
            "128",
            "-U",
            "--immediate-mode",
            "-B",
            "16384",
            "--time-stamp-precision=nano",
            "-w",
            cap.pcap,
            f"tcp and (port {proxy.port} or port {cap.originPort})",
        ]
        tlog = os.path.join(workdir, "tcpdump.log")
        tcpdump = procs.start("tcpdump", tcpdumpArgv, tlog)
        if not waitForText(tlog, "listening on", 15, tcpdump):
            raise SystemExit(f"tcpdump did not start: {tcpdump.logTail(5)}")
        time.sleep(0.2)
        cap.started = time.time_ns()
        print(f"capture: {benchlib.formatArgv(tcpdumpArgv)}", flush=True)

        def record(kind, argv, parse):
            t0, t1, stdout, stderr, code = timedRun(argv)
            runs = parse(stdout)
            if not runs:
                cap.problems.append(
                    f"{kind}: no result from {benchlib.formatArgv(argv)[:100]} "
                    f"(exit {code}): {stderr.strip()[-200:]}"
                )
                return
            cap.windows[kind].append((t0, t1, runs))
            time.sleep(0.02)

        for _ in range(args.runs):
            record(
                "proxyclient cold", [proxyclient, "--json", "-x", proxyAddr, url], parseClientJson
            )
        record(
            "proxyclient warm",
            [proxyclient, "--json", "--count", str(args.runs + 1), "-x", proxyAddr, url],
            parseClientJson,
        )
        if useCurl:
            base = ["curl", "-s", "-x", f"http://{proxyAddr}", "-w", curlFormat(posttransfer)]

            def parse(s):
                return parseCurl(s, posttransfer)

            for _ in range(args.runs):
                record("curl cold", base + ["-o", "/dev/null", url], parse)
            many = []
            for _ in range(args.runs + 1):
                many += ["-o", "/dev/null", url]
            record("curl warm", base + many, parse)
        # With --immediate-mode every packet is handed to tcpdump as it is
        # captured (without it, TPACKET_V3 hands over blocks after up to a
        # second, and a stop loses the last block); -U writes each one.
        time.sleep(0.5)
        procs.stop(tcpdump)
        dropped = re.search(r"(\d+) packets? dropped by kernel", tcpdump.logTail(10))
        if dropped and int(dropped.group(1)):
            cap.problems.append(f"tcpdump: {dropped.group(1)} packets dropped by the kernel")
    finally:
        procs.stopAll()
    return cap


def analyse(args, cap, posttransfer):
    """Match the reported runs and records with the capture; print the report."""
    packets = readPcap(cap.pcap)
    clientConns = connectionsTo(packets, cap.proxyPort)
    upstreamConns = connectionsTo(packets, cap.originPort)
    problems = cap.problems
    results = {"clients": {}, "runsByKind": {}, "problems": problems, "pairs": {}}
    for kind in KINDS:
        pairs = matchClientRuns(
            kind, cap.windows[kind], clientConns, kind.endswith("warm"), problems
        )
        results["runsByKind"][kind] = len(pairs)
        if not cap.windows[kind]:
            continue
        reported = [(reportedPhases(r, posttransfer), w) for r, w in pairs]
        results["clients"][kind] = {
            ph: compare([(r[ph], w[ph]) for r, w in reported]) for ph in PHASES
        }
        results["pairs"][kind] = [
            {
                "reported_ms": {k: (v / MS if v is not None else None) for k, v in r.items()},
                "wire_ms": {k: (v / MS if v is not None else None) for k, v in w.items()},
            }
            for r, w in reported
        ]
        if kind == "proxyclient cold" and reported:
            r, w = reported[0]
            results["firstColdTotal"] = {"reported": r["total"] / MS, "wire": w["total"] / MS}
    records = []
    if os.path.exists(cap.history):
        with open(cap.history) as f:
            records = [json.loads(line) for line in f if line.strip()]
    # Only the transactions of the capture (not the warm-up before it).
    records = [r for r in records if (isoToNs(r["times"].get("accepted")) or 0) >= cap.started]
    matched = matchRecords(records, clientConns, upstreamConns, problems)
    marks, durations = compareRecords(matched)
    results["records"] = {"count": len(matched), "marks": marks, "durations": durations}
    results["settings"] = {
        "runs": args.runs,
        "url": cap.url,
        "curlPosttransfer": posttransfer,
        "proxy": cap.proxyDesc,
        "packets": len(packets),
    }
    text = renderReport(results, args)
    print()
    print(
        f"{len(packets)} packets captured; curl's 'request sent' is "
        + (
            "time_posttransfer"
            if posttransfer
            else "time_pretransfer (this curl has no time_posttransfer; it needs 8.10)"
        )
    )
    print(text)
    if args.json:
        results["report"] = text
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"\nJSON: {args.json}")


def parseArgs(argv):
    p = argparse.ArgumentParser(
        description="Compare proxyclient's, curl's and the proxy's history "
        "timings with a loopback packet capture (see bench/README.rst)."
    )
    p.add_argument("--runs", type=int, default=20, help="runs of each kind (default 20)")
    p.add_argument("--size", type=int, default=1024, help="response body bytes (default 1024)")
    p.add_argument(
        "--upstream-reuse",
        action="store_true",
        help="let the proxy reuse its upstream connection (default: the origin closes "
        "after every response, so every upstream connect is measured)",
    )
    p.add_argument("--no-curl", action="store_true", help="leave curl out")
    p.add_argument(
        "--proxy-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra proxyserver option for twisted-proxy (repeatable)",
    )
    benchlib.addQuietArgument(p)
    p.add_argument(
        "--keep", action="store_true", help="keep the work directory (capture, history, logs)"
    )
    p.add_argument("--json", metavar="PATH", help="also write the figures (and every pair) as JSON")
    args = p.parse_args(argv)
    if not 1 <= args.runs <= 1000:
        p.error("--runs must be between 1 and 1000")
    return args


def main(argv=None):
    args = parseArgs(sys.argv[1:] if argv is None else argv)
    if shutil.which("tcpdump") is None:
        print(
            "timing_truth.py: tcpdump is not installed: apt-get install -y tcpdump", file=sys.stderr
        )
        return 2
    if os.geteuid() != 0:
        print(
            "timing_truth.py: tcpdump needs root (a raw socket on lo): run this script as root",
            file=sys.stderr,
        )
        return 2
    proxyclient = findProxyclient()
    if proxyclient is None:
        print(
            "timing_truth.py: proxyclient not found: pip install -e . in this checkout",
            file=sys.stderr,
        )
        return 2
    useCurl = not args.no_curl and shutil.which("curl") is not None
    posttransfer = useCurl and curlHasPosttransfer()
    benchlib.sigtermAsInterrupt()
    workdir = tempfile.mkdtemp(prefix="bench-timing-")
    try:
        capture = runCapture(args, workdir, proxyclient, useCurl, posttransfer)
        analyse(args, capture, posttransfer)
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
