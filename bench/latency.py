#!/usr/bin/env python3
"""Per-request latency of sequential keep-alive requests: what a user of
requests.Session, a browser tab or a package manager feels.

One connection, one request at a time, through the proxy and (alternating
request by request, on a second connection) straight to the origin, so both
paths see the same moment's machine.  The origin (bench/origin.py) writes
the response the way each mode asks:

  split    head and body in two sends --gap-ms apart (default 5 ms): the
           shape that exposes Nagle's algorithm + delayed ACK, whose
           signature is a request that takes >= 30 ms (~40 ms on Linux)
  split0   head and body in two sends back to back (nginx with sendfile)
  whole    head and body in one send
  upload   POST with an --upload-size body, sent as head then body (two
           sends, as curl does), answered in one send
  session  requests.Session: --session-requests GETs (split0), the whole
           run timed, direct and through the proxy

For each mode: mean, p50, p99 and max per request (milliseconds), the count
of requests that took >= 30 ms, and the latency the proxy adds (proxy minus
direct, per statistic).  Each figure is the median over --repeats repeats.
Target (issue 10): added p99 <= 1 ms on loopback; requests.Session within
2x direct.

    python3 bench/latency.py                         # starts twisted-proxy (--proxy-cmd default)
    python3 bench/latency.py --proxy 127.0.0.1:3128  # an already running proxy (e.g. Squid)
    python3 bench/latency.py --proxy-cmd squid       # starts Squid itself

Bounded: at most --requests per mode and repeat, and at most --time-limit
seconds each; every read has a 10 s timeout.  Loopback only.  Python
standard library (plus requests for the session mode, if installed).
"""

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from typing import Any

import benchlib
from benchlib import LOOPBACK

STALL_MS = 30.0
MODES = ("split", "split0", "whole", "upload", "session")
READ_TIMEOUT = 10.0


class Connection:
    """A kept-alive client connection (reopened if the server closes it)."""

    def __init__(self, address):
        self.address = address
        self.sock = None
        self.opened = 0

    def _open(self):
        self.sock = socket.create_connection(self.address, timeout=READ_TIMEOUT)
        # As curl and urllib3 do: the client itself never holds a send back.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.opened += 1

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, parts, expectLength):
        """Send parts (one send each) and read the response; returns the
        milliseconds from the first send to the last response byte.  Raises
        OSError or ValueError."""
        if self.sock is None:
            self._open()
        sock = self.sock
        assert sock is not None
        try:
            t0 = time.perf_counter_ns()
            for part in parts:
                sock.sendall(part)
            r = benchlib.readResponse(sock, time.monotonic() + READ_TIMEOUT)
            t1 = time.perf_counter_ns()
        except (OSError, ValueError):
            self.close()
            raise
        if r.close:
            self.close()
        if r.status != 200 or r.bodyLength != expectLength:
            raise ValueError(
                f"status {r.status}, {r.bodyLength} body bytes (expected 200, {expectLength})"
            )
        return (t1 - t0) / 1e6


def requestParts(mode, args, originPort, viaProxy):
    """(parts to send, expected body length) for one request of mode."""
    query = {"split": f"?split={args.gap_ms:g}", "split0": "?split=0"}.get(mode, "")
    path = f"/b/{args.size}{query}"
    host = f"{LOOPBACK}:{originPort}"
    target = f"http://{host}{path}" if viaProxy else path
    if mode != "upload":
        return [benchlib.getRequest(target, host)], args.size
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: twisted-proxy-bench\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {args.upload_size}\r\n\r\n"
    ).encode("ascii")
    return [head, b"u" * args.upload_size], args.size


def runSocketMode(mode, args, originPort, proxy):
    """One repeat of a socket mode: alternate direct and proxied requests."""
    paths = {
        "direct": (Connection((LOOPBACK, originPort)), requestParts(mode, args, originPort, False)),
        "proxy": (Connection(proxy.address), requestParts(mode, args, originPort, True)),
    }
    samples: dict[str, list[Any]] = {"direct": [], "proxy": []}
    errors: dict[str, list[Any]] = {"direct": [], "proxy": []}
    deadline = time.monotonic() + args.time_limit
    try:
        for i in range(args.warmup + args.requests):
            if time.monotonic() > deadline:
                break
            for name, (conn, (parts, length)) in paths.items():
                try:
                    ms = conn.exchange(parts, length)
                except (OSError, ValueError) as e:
                    errors[name].append(str(e) or type(e).__name__)
                    continue
                if i >= args.warmup:
                    samples[name].append(ms)
    finally:
        for conn, _ in paths.values():
            conn.close()
    out = {}
    for name, (conn, _) in paths.items():
        s = benchlib.summarize(samples[name])
        s["stalled"] = sum(1 for v in samples[name] if v >= STALL_MS)
        s["errors"] = len(errors[name])
        s["firstError"] = errors[name][0] if errors[name] else None
        s["connections"] = conn.opened
        s["samples"] = [round(v, 4) for v in samples[name]]
        out[name] = s
    out["timedOut"] = len(samples["proxy"]) < args.requests
    return out


def runSessionMode(args, originPort, proxy):
    """One repeat of the requests.Session mode; None if requests is missing."""
    try:
        import requests
    except ImportError:
        return None
    url = f"http://{LOOPBACK}:{originPort}/b/{args.size}?split=0"
    out = {}
    for name in ("direct", "proxy"):
        session = requests.Session()
        session.trust_env = False  # no proxy from the environment, no .netrc
        if name == "proxy":
            session.proxies = {"http": f"http://{proxy.host}:{proxy.port}"}
        samples, errors = [], []
        deadline = time.monotonic() + args.time_limit
        t0 = time.perf_counter()
        try:
            for _ in range(args.session_requests):
                if time.monotonic() > deadline:
                    break
                r0 = time.perf_counter_ns()
                try:
                    r = session.get(url, timeout=READ_TIMEOUT)
                    body = r.content
                except requests.RequestException as e:
                    errors.append(str(e))
                    continue
                samples.append((time.perf_counter_ns() - r0) / 1e6)
                if r.status_code != 200 or len(body) != args.size:
                    errors.append(f"status {r.status_code}, {len(body)} body bytes")
        finally:
            session.close()
        s = benchlib.summarize(samples)
        s["seconds"] = time.perf_counter() - t0
        s["stalled"] = sum(1 for v in samples if v >= STALL_MS)
        s["errors"] = len(errors)
        s["firstError"] = errors[0] if errors else None
        s["completed"] = len(samples)
        out[name] = s
    return out


def fmt(v, spec="{:.3f}"):
    return "-" if v is None else spec.format(v)


def medianOf(repeats, path, key):
    return benchlib.median([r[path][key] for r in repeats if r and r[path][key] is not None])


def modeTitle(mode, args):
    return {
        "split": f"split {args.gap_ms:g} ms",
        "split0": "split 0 ms",
        "whole": "whole",
        "upload": f"upload {args.upload_size} B",
    }[mode]


def report(results, args):
    """The printed tables (medians over repeats)."""
    out = []
    rows = []
    verdicts = []
    for mode in [m for m in args.modes if m != "session"]:
        reps = results.get(mode) or []
        if not reps:
            continue
        added = {}
        for path in ("direct", "proxy"):
            rows.append(
                [
                    modeTitle(mode, args),
                    path,
                    sum(r[path]["n"] for r in reps),
                    fmt(medianOf(reps, path, "mean")),
                    fmt(medianOf(reps, path, "p50")),
                    fmt(medianOf(reps, path, "p99")),
                    fmt(medianOf(reps, path, "max")),
                    sum(r[path]["stalled"] for r in reps),
                    sum(r[path]["errors"] for r in reps),
                ]
            )
        for key in ("mean", "p50", "p99", "max"):
            d, p = medianOf(reps, "direct", key), medianOf(reps, "proxy", key)
            added[key] = None if d is None or p is None else p - d
        rows.append(
            [
                modeTitle(mode, args),
                "added",
                "",
                fmt(added["mean"], "{:+.3f}"),
                fmt(added["p50"], "{:+.3f}"),
                fmt(added["p99"], "{:+.3f}"),
                fmt(added["max"], "{:+.3f}"),
                "",
                "",
            ]
        )
        if added["p99"] is not None:
            ok = added["p99"] <= 1.0
            verdicts.append(
                f"  {modeTitle(mode, args)}: added p99 {added['p99']:+.3f} ms "
                f"({'meets' if ok else 'misses'} the 1 ms target)"
            )
        for r in reps:
            for path in ("direct", "proxy"):
                if r[path]["firstError"]:
                    verdicts.append(
                        f"  {modeTitle(mode, args)} {path}: {r[path]['errors']} failed, "
                        f"first: {r[path]['firstError']}"
                    )
            if r["timedOut"]:
                verdicts.append(
                    f"  {modeTitle(mode, args)}: a repeat hit --time-limit "
                    f"({args.time_limit:g} s) before {args.requests} requests"
                )
    if rows:
        out.append(
            f"Sequential keep-alive requests, {args.size}-byte bodies, ms per request "
            f"(n = requests over {args.repeats} repeat(s); figures: median of the repeats; "
            f">=30ms and err: totals)"
        )
        out.append(
            benchlib.textTable(
                ["mode", "path", "n", "mean", "p50", "p99", "max", ">=30ms", "err"], rows, left=2
            )
        )
    sess = [r for r in results.get("session", []) if r]
    if "session" in args.modes:
        out.append("")
        if not sess:
            out.append(
                "requests.Session: skipped, requests is not installed "
                "(pip install requests, in the environment that runs this script)"
            )
        else:
            d = benchlib.median([r["direct"]["seconds"] for r in sess])
            p = benchlib.median([r["proxy"]["seconds"] for r in sess])
            out.append(
                f"requests.Session, {args.session_requests} GETs "
                "(origin: head and body back to back), "
                f"whole run in seconds, median of {len(sess)} repeat(s)"
            )
            srows = []
            for path in ("direct", "proxy"):
                srows.append(
                    [
                        path,
                        fmt(benchlib.median([r[path]["seconds"] for r in sess])),
                        fmt(medianOf(sess, path, "p50")),
                        fmt(medianOf(sess, path, "p99")),
                        sum(r[path]["stalled"] for r in sess),
                        sum(r[path]["errors"] for r in sess),
                    ]
                )
            out.append(
                benchlib.textTable(
                    ["path", "seconds", "p50 ms", "p99 ms", ">=30ms", "err"], srows, left=1
                )
            )
            ratio = p / d if d else None
            if ratio is not None:
                verdicts.append(
                    f"  requests.Session: proxy/direct {ratio:.2f}x "
                    f"({'meets' if ratio <= 2 else 'misses'} the 2x target)"
                )
            for r in sess:
                for path in ("direct", "proxy"):
                    if r[path]["firstError"]:
                        verdicts.append(
                            f"  session {path}: {r[path]['errors']} failed, first: "
                            f"{r[path]['firstError']}"
                        )
    if verdicts:
        out.append("")
        out.append("Against the targets:")
        out.extend(verdicts)
    return "\n".join(out)


def parseArgs(argv):
    p = argparse.ArgumentParser(
        description="Latency of sequential keep-alive requests through a proxy and direct "
        "(see bench/README.rst).",
    )
    benchlib.addProxyArguments(p)
    p.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated, from {', '.join(MODES)} (default: all)",
    )
    p.add_argument(
        "--requests", type=int, default=200, help="requests per path, mode and repeat (default 200)"
    )
    p.add_argument("--warmup", type=int, default=10, help="untimed requests first (default 10)")
    p.add_argument(
        "--repeats", type=int, default=3, help="repeats; figures are their medians (default 3)"
    )
    p.add_argument(
        "--gap-ms", type=float, default=5.0, help="split mode: ms between head and body (default 5)"
    )
    p.add_argument("--size", type=int, default=1024, help="response body bytes (default 1024)")
    p.add_argument(
        "--upload-size",
        type=int,
        default=4096,
        help="upload mode: request body bytes (default 4096)",
    )
    p.add_argument(
        "--session-requests", type=int, default=500, help="session mode: GETs per run (default 500)"
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=60.0,
        help="seconds at most per mode and repeat (default 60)",
    )
    benchlib.addQuietArgument(p)
    p.add_argument("--json", metavar="PATH", help="also write every sample and figure as JSON")
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in args.modes if m not in MODES]
    if bad:
        p.error(f"unknown mode {bad[0]!r}; choose from {', '.join(MODES)}")
    for name in ("requests", "repeats", "session_requests", "size", "upload_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0 or args.gap_ms < 0 or args.time_limit <= 0:
        p.error("--warmup and --gap-ms must not be negative, --time-limit must be positive")
    return args


def main(argv=None):
    args = parseArgs(sys.argv[1:] if argv is None else argv)
    benchlib.sigtermAsInterrupt()
    procs = benchlib.Processes()
    workdir = tempfile.mkdtemp(prefix="bench-latency-")
    results: dict[str, list[Any]] = {m: [] for m in args.modes}
    try:
        originPort, _ = benchlib.startOrigin(procs, workdir)
        proxy = benchlib.startProxy(args, procs, workdir)
        print(f"proxy: {proxy.desc}")
        print(
            f"origin: bench/origin.py on {LOOPBACK}:{originPort}; load average at start "
            f"{os.getloadavg()[0]:.2f} (2 shared CPUs: figures are noisy, read the medians)",
            flush=True,
        )
        for rep in range(args.repeats):
            for mode in args.modes:
                benchlib.waitQuiet(args, say=lambda m: print(m, flush=True))
                if mode == "session":
                    r = runSessionMode(args, originPort, proxy)
                    results[mode].append(r)
                    if r:
                        print(
                            f"  repeat {rep + 1} session: direct {r['direct']['seconds']:.3f} s, "
                            f"proxy {r['proxy']['seconds']:.3f} s",
                            flush=True,
                        )
                    continue
                r = runSocketMode(mode, args, originPort, proxy)
                results[mode].append(r)
                print(
                    f"  repeat {rep + 1} {modeTitle(mode, args)}: "
                    f"direct p50 {fmt(r['direct']['p50'])} "
                    f"p99 {fmt(r['direct']['p99'])}, proxy p50 {fmt(r['proxy']['p50'])} "
                    f"p99 {fmt(r['proxy']['p99'])} ms, "
                    f"{r['proxy']['stalled']} of {r['proxy']['n']} proxied >= 30 ms",
                    flush=True,
                )
            if proxy.proc is not None and not proxy.proc.alive():
                raise SystemExit(f"the proxy exited: {proxy.proc.logTail(5)}")
    finally:
        procs.stopAll()
        shutil.rmtree(workdir, ignore_errors=True)
    text = report(results, args)
    print()
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "settings": {k: v for k, v in vars(args).items() if k != "proxy"},
                    "proxy": proxy.desc,
                    "results": results,
                    "report": text,
                },
                f,
                indent=1,
            )
        print(f"\nJSON: {args.json}")
    failed = any(
        r and r[p]["errors"] for reps in results.values() for r in reps for p in ("direct", "proxy")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
