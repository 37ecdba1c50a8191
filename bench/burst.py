#!/usr/bin/env python3
"""Bursts and crowds from one address: what a page load, a CI fan-out or an
office behind NAT does to a proxy (issue 10, items 2 and 3).

(a) Connect burst: --burst connections (default 300) opened at once,
    non-blocking, as fast as the loop can call connect(); each sends one GET
    for a 1 KiB body as soon as it is connected.  A SYN the kernel drops
    because the proxy's listen queue is full is resent after ~1 s, so
    per connection: the connect time, and the time from connect() to the
    last response byte (a connection whose handshake ACK was dropped looks
    connected but is answered ~1 s late).  Printed: how many waited >= 1 s,
    the maxima, the statuses, the kernel's ListenOverflows/ListenDrops
    counters over the round (system-wide, from /proc/net/netstat), and the
    proxy's listen backlog as `ss -ltn` shows it (Send-Q of the listening
    socket).  Target: none waits >= 1 s.

(b) Crowd: --connections keep-alive connections (default 1000) from
    127.0.0.1 for --duration seconds (default 10), with wrk if it is
    installed (apt-get install -y wrk) and else with the asyncio driver
    written here (--driver python forces it; it also counts each status).
    Printed: requests, req/s, non-2xx responses and socket errors.  Target:
    0 non-2xx with the proxy's default options.

    python3 bench/burst.py                          # starts twisted-proxy with its defaults
    python3 bench/burst.py --proxy 127.0.0.1:3128   # an already running proxy
    python3 bench/burst.py --only a --rounds 5

Bounded: every round of (a) ends after --round-timeout seconds, (b) after
--duration plus a grace; the soft file-descriptor limit is raised to the
hard limit (the proxy inherits it when this script starts it).  Loopback
only; Python standard library plus the programs named.
"""

import argparse
import asyncio
import json
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import benchlib
from benchlib import HERE, LOOPBACK

SLOW_S = 1.0


# --- (a) connect burst -------------------------------------------------------


def netstatCounters(names=("ListenOverflows", "ListenDrops")):
    """TcpExt counters from /proc/net/netstat (system-wide), {} if unreadable."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    # A kernel file: read what pairs up rather than fail on an odd line.
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        if header.startswith("TcpExt:"):
            counts = (int(v) for v in values.split()[1:])
            table = dict(zip(header.split()[1:], counts, strict=False))
            return {n: table.get(n) for n in names}
    return {}


class BurstConnection:
    """One connection of the burst: its times and what it received."""

    def __init__(self, sock, started):
        self.sock = sock
        self.started = started
        self.connected = None
        self.finished = None
        self.status = None
        self.error = None
        self.buf = bytearray()
        self.expect = None  # total bytes of head + body, once the head is in

    def received(self, data, now):
        """Take bytes; True when the response is complete."""
        self.buf.extend(data)
        if self.expect is None and b"\r\n\r\n" in self.buf:
            end = self.buf.index(b"\r\n\r\n") + 4
            head = bytes(self.buf[:end]).split(b"\r\n")
            try:
                self.status = int(head[0].split()[1])
            except (IndexError, ValueError):
                self.error = f"bad status line {head[0][:60]!r}"
                return True
            m = re.search(rb"\r\ncontent-length:\s*(\d+)", bytes(self.buf[:end]), re.I)
            self.expect = end + int(m.group(1)) if m else None
            if self.expect is None:
                return False  # read to the close
        if self.expect is not None and len(self.buf) >= self.expect:
            self.finished = now
            return True
        return False


def connectBurst(address, count, request, timeout):
    """Open count connections at once; returns the list of BurstConnection."""
    sel = selectors.DefaultSelector()
    conns = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            c = BurstConnection(s, time.perf_counter())
            err = s.connect_ex(address)
            conns.append(c)
            if err not in (0, 115):  # EINPROGRESS
                c.error = os.strerror(err)
                s.close()
                continue
            sel.register(s, selectors.EVENT_WRITE, c)
        deadline = time.perf_counter() + timeout
        pending = sum(1 for c in conns if c.error is None)
        while pending and time.perf_counter() < deadline:
            for key, _mask in sel.select(timeout=max(0.0, deadline - time.perf_counter())):
                c = key.data
                now = time.perf_counter()
                done = False
                if c.connected is None:
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        c.error = f"connect: {os.strerror(err)}"
                        done = True
                    else:
                        c.connected = now
                        try:
                            c.sock.send(request)  # a few hundred bytes: one send
                            sel.modify(c.sock, selectors.EVENT_READ, c)
                        except OSError as e:
                            c.error = f"send: {e}"
                            done = True
                else:
                    try:
                        data = c.sock.recv(65536)
                    except OSError as e:
                        c.error = f"recv: {e}"
                        done = True
                    else:
                        if not data:
                            if c.status is not None and c.expect is None:
                                c.finished = now  # close-delimited body
                            else:
                                c.error = "closed before the response was complete"
                            done = True
                        else:
                            done = c.received(data, now)
                if done:
                    sel.unregister(c.sock)
                    pending -= 1
        for c in conns:
            if c.error is None and c.finished is None:
                c.error = f"no complete response within {timeout:g} s"
    finally:
        for c in conns:
            c.sock.close()
        sel.close()
    return conns


def burstRound(proxy, originPort, args):
    host = f"{LOOPBACK}:{originPort}"
    request = benchlib.getRequest(f"http://{host}/b/1024", host, ["Connection: close"])
    before = netstatCounters()
    conns = connectBurst(proxy.address, args.burst, request, args.round_timeout)
    after = netstatCounters()
    connectMs = [(c.connected - c.started) * 1000 for c in conns if c.connected is not None]
    responseMs = [(c.finished - c.started) * 1000 for c in conns if c.finished is not None]
    statuses: dict[int, int] = {}
    for c in conns:
        if c.status is not None and c.error is None:
            statuses[c.status] = statuses.get(c.status, 0) + 1
    errors = [c.error for c in conns if c.error is not None]
    return {
        "connections": len(conns),
        "connected": len(connectMs),
        "slowConnects": sum(1 for v in connectMs if v >= SLOW_S * 1000),
        "maxConnectMs": max(connectMs, default=None),
        "p50ConnectMs": benchlib.median(connectMs),
        "slowResponses": sum(1 for v in responseMs if v >= SLOW_S * 1000),
        "maxResponseMs": max(responseMs, default=None),
        "statuses": statuses,
        "ok": sum(n for s, n in statuses.items() if 200 <= s < 300),
        "non2xx": sum(n for s, n in statuses.items() if not 200 <= s < 300),
        "failed": len(errors),
        "firstError": errors[0] if errors else None,
        "counters": {k: (after.get(k) or 0) - (before.get(k) or 0) for k in after},
    }


# --- (b) crowd ------------------------------------------------------------------


def runWrk(proxy, originPort, args):
    host = f"{LOOPBACK}:{originPort}"
    env = dict(os.environ, BENCH_PATH=f"http://{host}/b/1024", BENCH_HOST=host, BENCH_CLOSE="0")
    argv = [
        "wrk",
        f"-t{args.wrk_threads}",
        f"-c{args.connections}",
        f"-d{args.duration:g}s",
        "--timeout",
        "10s",
        "-s",
        os.path.join(HERE, "wrk_proxy.lua"),
        f"http://{proxy.host}:{proxy.port}",
    ]
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=args.duration + 60
        )
    except subprocess.TimeoutExpired:
        return {"driver": benchlib.formatArgv(argv), "error": "wrk did not finish in time"}
    m = re.search(r"BENCH_RESULT (\{.*\})", out.stdout)
    if out.returncode != 0 or not m:
        return {
            "driver": benchlib.formatArgv(argv),
            "error": f"wrk failed (exit {out.returncode}): "
            f"{(out.stderr or out.stdout).strip()[-300:]}",
        }
    r = json.loads(m.group(1))
    seconds = r["duration_us"] / 1e6
    return {
        "driver": benchlib.formatArgv(argv),
        "requests": r["requests"],
        "rps": r["requests"] / seconds if seconds else None,
        "non2xx": r["status"],
        "statuses": None,
        "socketErrors": {k: r[k] for k in ("connect", "read", "write", "timeout")},
        "p99Ms": r["p99_us"] / 1000,
        "note": "wrk counts responses with status >= 400 (none in 3xx are expected here)",
    }


async def _crowdConnection(address, request, deadline, stats):
    """Keep one connection busy until deadline; reconnect when it is closed."""
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), 10)
        except (TimeoutError, OSError):
            stats["connect"] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            while time.monotonic() < deadline:
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                status = int(head.split(b" ", 2)[1])
                m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
                if m:
                    await asyncio.wait_for(reader.readexactly(int(m.group(1))), 10)
                stats["statuses"][status] = stats["statuses"].get(status, 0) + 1
                stats["requests"] += 1
                if time.monotonic() <= deadline:
                    stats["inTime"] += 1
                if not m or re.search(rb"\r\nconnection:[^\r]*close", head, re.I):
                    break
        except TimeoutError:
            stats["timeout"] += 1
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            IndexError,
        ):
            stats["read"] += 1
        finally:
            writer.close()


async def _crowd(proxy, originPort, args):
    host = f"{LOOPBACK}:{originPort}"
    request = benchlib.getRequest(f"http://{host}/b/1024", host)
    stats = {"requests": 0, "inTime": 0, "statuses": {}, "connect": 0, "read": 0, "timeout": 0}
    t0 = time.monotonic()
    deadline = t0 + args.duration
    tasks = [
        asyncio.ensure_future(_crowdConnection(proxy.address, request, deadline, stats))
        for _ in range(args.connections)
    ]
    done, pending = await asyncio.wait(tasks, timeout=args.duration + 30)
    for t in pending:
        t.cancel()
    return stats


def runPythonCrowd(proxy, originPort, args):
    stats = asyncio.run(_crowd(proxy, originPort, args))
    statuses = stats["statuses"]
    return {
        "driver": f"bench/burst.py asyncio driver, {args.connections} connections "
        "(timeout: no response within 10 s)",
        "requests": stats["requests"],
        "rps": stats["inTime"] / args.duration,
        "non2xx": sum(n for s, n in statuses.items() if not 200 <= s < 300),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "socketErrors": {k: stats[k] for k in ("connect", "read", "timeout")},
        "p99Ms": None,
    }


# --- main -------------------------------------------------------------------------


def fmt(v, spec="{:.1f}"):
    return "-" if v is None else spec.format(v)


def sysctl(name):
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return f.read().strip()
    except OSError:
        return "?"


def parseArgs(argv):
    p = argparse.ArgumentParser(
        description="Connect bursts and 1000-connection crowds "
        "from one address through a proxy (see bench/README.rst)."
    )
    benchlib.addProxyArguments(p)
    p.add_argument("--only", choices=["a", "b"], help="run only (a) the burst or (b) the crowd")
    p.add_argument(
        "--burst", type=int, default=300, help="(a) connections opened at once (default 300)"
    )
    p.add_argument(
        "--rounds", type=int, default=3, help="(a) bursts, one after another (default 3)"
    )
    p.add_argument(
        "--round-timeout",
        type=float,
        default=15.0,
        help="(a) seconds a round may take at most (default 15)",
    )
    p.add_argument(
        "--connections", type=int, default=1000, help="(b) concurrent connections (default 1000)"
    )
    p.add_argument("--duration", type=float, default=10.0, help="(b) seconds (default 10)")
    p.add_argument(
        "--driver",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="(b) wrk, the asyncio driver here, or wrk when installed (default)",
    )
    p.add_argument("--wrk-threads", type=int, default=2, help="(b) wrk threads (default 2)")
    benchlib.addQuietArgument(p)
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    if min(args.burst, args.rounds, args.connections, args.wrk_threads) < 1:
        p.error("--burst, --rounds, --connections and --wrk-threads must be at least 1")
    if args.duration <= 0 or args.round_timeout <= 0:
        p.error("--duration and --round-timeout must be positive")
    if args.driver == "wrk" and shutil.which("wrk") is None:
        p.error("wrk is not installed: apt-get install -y wrk (or use --driver python)")
    return args


def main(argv=None):
    args = parseArgs(sys.argv[1:] if argv is None else argv)
    benchlib.sigtermAsInterrupt()
    benchlib.raiseFileLimit()
    procs = benchlib.Processes()
    workdir = tempfile.mkdtemp(prefix="bench-burst-")
    result: dict[str, Any] = {"rounds": [], "crowd": None}
    try:
        originPort, _ = benchlib.startOrigin(procs, workdir)
        proxy = benchlib.startProxy(args, procs, workdir)
        backlog = benchlib.listenBacklog(proxy.port)
        result.update(
            proxy=proxy.desc,
            backlog=backlog,
            somaxconn=sysctl("net.core.somaxconn"),
            synBacklog=sysctl("net.ipv4.tcp_max_syn_backlog"),
        )
        print(f"proxy: {proxy.desc}")
        print(
            f"origin: bench/origin.py on {LOOPBACK}:{originPort}; load average "
            f"{os.getloadavg()[0]:.2f} (2 shared CPUs: timings are noisy)"
        )
        print(
            f"listen backlog of {proxy.host}:{proxy.port} (ss -ltn Send-Q): {fmt(backlog, '{}')}; "
            f"net.core.somaxconn {result['somaxconn']}, "
            f"net.ipv4.tcp_max_syn_backlog {result['synBacklog']}",
            flush=True,
        )
        if args.only in (None, "a"):
            print(
                f"\n(a) {args.burst} simultaneous connects, one GET (1 KiB) each, "
                f"{args.rounds} round(s)"
            )
            rows = []
            for i in range(args.rounds):
                benchlib.waitQuiet(args)
                r = burstRound(proxy, originPort, args)
                result["rounds"].append(r)
                statuses = " ".join(f"{s}x{n}" for s, n in sorted(r["statuses"].items())) or "-"
                rows.append(
                    [
                        i + 1,
                        r["connected"],
                        r["slowConnects"],
                        fmt(r["p50ConnectMs"], "{:.2f}"),
                        fmt(r["maxConnectMs"]),
                        r["slowResponses"],
                        fmt(r["maxResponseMs"]),
                        statuses,
                        r["failed"],
                        fmt(r["counters"].get("ListenOverflows"), "{}"),
                        fmt(r["counters"].get("ListenDrops"), "{}"),
                    ]
                )
                time.sleep(1.0)  # let the proxy close this round's connections
            print(
                benchlib.textTable(
                    [
                        "round",
                        "connected",
                        ">=1s conn",
                        "p50 conn ms",
                        "max conn ms",
                        ">=1s resp",
                        "max resp ms",
                        "statuses",
                        "failed",
                        "ListenOverflows",
                        "ListenDrops",
                    ],
                    rows,
                )
            )
            for i, r in enumerate(result["rounds"]):
                if r["firstError"]:
                    print(f"  round {i + 1}: {r['failed']} failed, first: {r['firstError']}")
            worst = max(r["slowConnects"] + r["slowResponses"] for r in result["rounds"])
            print(
                f"  target: none waits >= 1 s: {'met' if worst == 0 else 'missed'}"
                ' ("resp": from connect() to the last response byte)'
            )
        if args.only in (None, "b"):
            useWrk = args.driver == "wrk" or (args.driver == "auto" and shutil.which("wrk"))
            print(
                f"\n(b) {args.connections} keep-alive connections from {LOOPBACK}, "
                f"{args.duration:g} s, "
                + (
                    "wrk"
                    if useWrk
                    else "asyncio driver"
                    + (
                        ""
                        if args.driver == "python"
                        else " (wrk is not installed: apt-get install -y wrk)"
                    )
                ),
                flush=True,
            )
            benchlib.waitQuiet(args)
            c = (
                runWrk(proxy, originPort, args)
                if useWrk
                else runPythonCrowd(proxy, originPort, args)
            )
            result["crowd"] = c
            print(f"  driver: {c['driver']}")
            if c.get("error"):
                print(f"  {c['error']}")
            else:
                errs = ", ".join(f"{k} {v}" for k, v in c["socketErrors"].items())
                print(
                    f"  requests {c['requests']}, {c['rps']:.0f} req/s, non-2xx {c['non2xx']}, "
                    f"socket errors: {errs}" + (f", p99 {c['p99Ms']:.1f} ms" if c["p99Ms"] else "")
                )
                if c["statuses"]:
                    print(f"  statuses: {c['statuses']}")
                print(f"  target: 0 non-2xx: {'met' if c['non2xx'] == 0 else 'missed'}")
        if proxy.proc is not None and not proxy.proc.alive():
            print(f"the proxy exited during the run: {proxy.proc.logTail(5)}")
    finally:
        procs.stopAll()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
