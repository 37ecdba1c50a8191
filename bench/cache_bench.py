#!/usr/bin/env python3
"""The cache's benchmark rows: hits against misses, and memory bounded by
--cache-size.  Everything runs through the real daemon (twistd -n
proxyserver, from this checkout) and bench/origin.py, on 127.0.0.1 only.

(1) Hits against misses.  One twisted-proxy with its default options (the
    cache on, 64 MiB in memory).  wrk sends the same load -- keep-alive,
    --connections connections, one URL -- for 1 KiB and 64 KiB bodies, in
    two modes:

      hit    the URL's response has "Cache-Control: max-age=86400": stored
             at the first request, every timed request is a hit
      miss   the same URL with "Cache-Control: no-store": every request goes
             to the origin and the response is relayed, not stored

    Each round runs every (size, mode) pair once, the order of the modes
    alternating between rounds; the figures are medians over the rounds.
    The origin counts the requests it answered, so each run also shows how
    many went upstream (0 per request for hits, 1 for misses).

(2) RSS bounded by --cache-size.  For each --fill-cache-size, a fresh
    proxy with that --cache-size (and --metrics, to read the store's own
    figures) is filled with distinct cacheable URLs until --fill-factor
    times the cache size has been requested; the proxy's RSS is sampled
    after every quarter of the cache size.  Once the cache is full the
    least recently used entries are evicted, and RSS stops growing.

    python3 bench/cache_bench.py                       # both, defaults
    python3 bench/cache_bench.py --quick               # smoke test
    python3 bench/cache_bench.py --skip-fill --rounds 7
    python3 bench/cache_bench.py --skip-rates --fill-cache-sizes 16M,64M --fill-sizes 64k,1k

The proxy is pinned to CPU 0; the origin, wrk and this script to CPU 1.
The machine may be shared: figures are medians, and --quiet-wait waits
(bounded) for other processes to leave the CPUs alone before each timed
run.  Needs wrk (apt-get install -y wrk).  Python 3.11 stdlib only.
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

import benchlib
from benchlib import HERE, LOOPBACK

PROXY_CPU = 0
LOAD_CPU = 1
KiB = 1024
MiB = 1024 * 1024
SIZE_NAMES = {"1k": KiB, "64k": 64 * KiB}
MODES = {
    "hit": "max-age%3D86400",
    "miss": "no-store",
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parseSize(text):
    """'64M' -> 67108864, '16M', '512k', '1G' (binary), as the proxy's options."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 16M, 64M, 512k)")
    return int(m.group(1)) * {"": 1, "k": KiB, "m": MiB, "g": 1024 * MiB}[m.group(2).lower()]


def sizeList(text):
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if part not in SIZE_NAMES:
            raise argparse.ArgumentTypeError(f"unknown size {part!r}: use 1k and/or 64k")
        out.append(part)
    return out


def cacheSizeList(text):
    return [parseSize(p) for p in text.split(",") if p.strip()]


def fmtSize(n):
    return f"{n // MiB}M" if n % MiB == 0 else f"{n // KiB}k"


# --- the processes ------------------------------------------------------------


class Bench:
    """The origin, the proxy under test, and what they need."""

    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.procs = benchlib.Processes()
        self.originPort = None
        self.origin = None
        ok, reason, helpText = benchlib.twistedProxyStatus()
        if not ok:
            raise SystemExit(f"twisted-proxy is not available: {reason}")
        self.helpText = helpText

    @property
    def originHost(self):
        return f"{LOOPBACK}:{self.originPort}"

    def url(self, size, mode, extra=""):
        return f"http://{self.originHost}/b/{size}?cc={MODES[mode]}{extra}"

    def startOrigin(self):
        self.originPort = benchlib.freePort()
        argv = [sys.executable, os.path.join(HERE, "origin.py"), "--port", str(self.originPort)]
        self.origin = self.procs.start(
            "origin", argv, os.path.join(self.workdir, "origin.log"), cpu=LOAD_CPU
        )
        if not benchlib.waitForPort(self.originPort, 15, self.origin):
            raise SystemExit(f"bench/origin.py did not start: {self.origin.logTail()}")
        self.origin.remember()

    def originRequests(self):
        """How many requests the origin has answered (bench/origin.py /stats)."""
        with socket.create_connection((LOOPBACK, self.originPort), timeout=10) as s:
            s.sendall(benchlib.getRequest("/stats", self.originHost))
            deadline = time.monotonic() + 10
            buf = b""
            while b"}" not in buf and time.monotonic() < deadline:
                data = s.recv(4096)
                if not data:
                    break
                buf += data
        return json.loads(buf.partition(b"\r\n\r\n")[2])["requests"]

    def startProxy(self, name, extra=()):
        """Start twisted-proxy (its defaults plus C{extra}); returns
        (port, Managed, argv)."""
        port = benchlib.freePort()
        logFile = os.path.join(self.workdir, f"{name}.log")
        argv = benchlib.twistedProxyArgv(port, logFile, self.helpText, extra=list(extra))
        m = self.procs.start(
            name,
            argv,
            os.path.join(self.workdir, f"{name}-stdout.log"),
            cpu=PROXY_CPU,
            env=benchlib.proxyEnv(),
            cwd=self.workdir,
        )
        if not benchlib.waitForPort(port, 30, m):
            code = m.proc.poll()
            self.procs.stop(m)
            raise SystemExit(
                f"the proxy did not start (exit status {code}): {benchlib.formatArgv(argv)}: "
                f"{m.logTail(5)}"
            )
        m.remember()
        return port, m, argv

    def get(self, proxyPort, url, sock=None):
        """One GET of url through the proxy; returns (Response, socket)."""
        if sock is None:
            sock = socket.create_connection((LOOPBACK, proxyPort), timeout=30)
        sock.sendall(benchlib.getRequest(url, self.originHost))
        r = benchlib.readResponse(sock, time.monotonic() + 30)
        if r.status != 200:
            raise RuntimeError(f"GET {url} through the proxy: status {r.status}")
        return r, sock

    def quiet(self):
        if self.args.quiet_wait > 0:
            benchlib.waitForQuietCpus(
                [PROXY_CPU, LOAD_CPU], limit=10, timeout=self.args.quiet_wait, say=log
            )


# --- (1) hits against misses -----------------------------------------------------


def checkModes(bench, proxyPort):
    """Each URL does what its mode says: the hit URL is a hit the second
    time, the miss URL is never stored.  Returns the Cache-Status seen."""
    seen = {}
    for name, size in SIZE_NAMES.items():
        for mode in MODES:
            url = bench.url(size, mode)
            sock = None
            for _ in range(2):
                r, sock = bench.get(proxyPort, url, sock)
            assert sock is not None
            sock.close()
            status = r.headers.get(b"cache-status", b"").decode("latin-1")
            seen[(name, mode)] = status
            if mode == "hit" and "; hit" not in status:
                raise SystemExit(f"{url} is not a hit the second time: Cache-Status {status!r}")
            if mode == "miss" and "detail=no-store" not in status:
                raise SystemExit(f"{url} is not an uncached miss: Cache-Status {status!r}")
    return seen


def runWrk(bench, proxyPort, proxyProc, url, duration):
    lua = os.path.join(HERE, "wrk_proxy.lua")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(BENCH_PATH=url, BENCH_HOST=bench.originHost, BENCH_CLOSE="0")
    argv = benchlib.pinPrefix(LOAD_CPU) + [
        "wrk",
        "-t", "1",
        "-c", str(bench.args.connections),
        "-d", f"{duration}s",
        "--timeout", "10s",
        "-s", lua,
        f"http://{LOOPBACK}:{proxyPort}/",
    ]  # fmt: skip
    upBefore = bench.originRequests()
    cpuBefore = benchlib.treeCpu(proxyProc.pid)
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=duration + 60)
    cpu = benchlib.treeCpu(proxyProc.pid) - cpuBefore
    upstream = bench.originRequests() - upBefore
    m = re.search(r"^BENCH_RESULT (\{.*\})$", out.stdout, re.M)
    if not m:
        raise RuntimeError(
            f"wrk gave no result (rc {out.returncode}): {out.stdout[-300:]} {out.stderr[-300:]}"
        )
    r = json.loads(m.group(1))
    secs = r["duration_us"] / 1e6
    n = r["requests"]
    return {
        "requests": n,
        "rps": n / secs if secs else 0.0,
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "errors": sum(r[k] for k in ("connect", "read", "write", "status", "timeout")),
        "cpu_us_per_req": cpu * 1e6 / n if n else None,
        "upstream_per_req": upstream / n if n else None,
        "rss_mib": benchlib.treeMemory(proxyProc.pid)[0] / KiB,
    }


def rates(bench):
    args = bench.args
    port, proc, argv = bench.startProxy("proxy-rates")
    log(f"proxy: {benchlib.formatArgv(argv)} (pid {proc.pid})")
    seen = checkModes(bench, port)
    for (name, mode), status in sorted(seen.items()):
        log(f"  {name} {mode}: Cache-Status: {status}")
    runs: dict[tuple[str, str], list[Any]] = {
        (name, mode): [] for name in args.sizes for mode in MODES
    }
    if args.warmup:
        for name in args.sizes:
            for mode in MODES:
                runWrk(bench, port, proc, bench.url(SIZE_NAMES[name], mode), args.warmup)
    for rnd in range(args.rounds):
        order = list(MODES) if rnd % 2 == 0 else list(reversed(MODES))
        for name in args.sizes:
            for mode in order:
                bench.quiet()
                r = runWrk(bench, port, proc, bench.url(SIZE_NAMES[name], mode), args.duration)
                runs[(name, mode)].append(r)
                log(
                    f"  round {rnd + 1}/{args.rounds} {name:>3} {mode:4}: {r['rps']:8.0f} req/s  "
                    f"p99 {r['p99_ms']:6.2f} ms  CPU {r['cpu_us_per_req']:6.1f} us/req  "
                    f"upstream/req {r['upstream_per_req']:.3f}  errors {r['errors']}"
                )
    bench.procs.stop(proc)
    return {
        "command": benchlib.formatArgv(argv),
        "cache_status": {f"{n} {m}": s for (n, m), s in seen.items()},
        "runs": {f"{n} {m}": v for (n, m), v in runs.items()},
    }


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def reportRates(result, args):
    runs = result["runs"]
    print()
    print(
        f"Hits against misses: keep-alive, {args.connections} connections, one URL, "
        f"{args.duration} s per run, median of {args.rounds} rounds"
    )
    print(f"  {result['command']}")
    headers = [
        "size",
        "mode",
        "req/s",
        "p50 ms",
        "p99 ms",
        "CPU us/req",
        "upstream/req",
        "errors",
        "RSS MiB",
    ]
    rows = []
    for name in args.sizes:
        for mode in MODES:
            rs = runs[f"{name} {mode}"]
            rows.append([
                name, mode,
                f"{med(r['rps'] for r in rs):.0f}",
                f"{med(r['p50_ms'] for r in rs):.2f}",
                f"{med(r['p99_ms'] for r in rs):.2f}",
                f"{med(r['cpu_us_per_req'] for r in rs):.1f}",
                f"{med(r['upstream_per_req'] for r in rs):.3f}",
                f"{sum(r['errors'] for r in rs)}",
                f"{rs[-1]['rss_mib']:.1f}",
            ])  # fmt: skip
    print(benchlib.textTable(headers, rows, left=2))
    print()
    for name in args.sizes:
        hits, misses = runs[f"{name} hit"], runs[f"{name} miss"]
        perRound = [h["rps"] / m["rps"] for h, m in zip(hits, misses, strict=True) if m["rps"]]
        cpu = med(m["cpu_us_per_req"] for m in misses) / med(h["cpu_us_per_req"] for h in hits)
        print(
            f"  {name}: hits / misses = {med(perRound):.2f}x req/s (median of per-round ratios; "
            f"range {min(perRound):.2f}-{max(perRound):.2f}), {cpu:.2f}x less proxy CPU per "
            f"request; target >= 1.5x req/s"
        )


# --- (2) RSS bounded by --cache-size -----------------------------------------------


def metricsValue(text, name):
    m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else None


def readMetrics(port):
    # The metrics endpoint is ours, on loopback; no proxy in between.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{LOOPBACK}:{port}/metrics", timeout=10) as f:
        text = f.read().decode("utf-8")
    return {
        "entries": metricsValue(text, "twisted_proxy_cache_entries"),
        "store_bytes": metricsValue(text, "twisted_proxy_cache_size_bytes"),
        "evictions": metricsValue(text, "twisted_proxy_cache_evictions_total"),
    }


def fillBatch(bench, proxyPort, sockets, size, start, count):
    """Request URLs start..start+count-1 (distinct, cacheable) over the
    keep-alive sockets, one thread per socket."""
    errors = []

    def worker(i):
        sock = sockets[i]
        try:
            for n in range(start + i, start + count, len(sockets)):
                r, _ = bench.get(proxyPort, bench.url(size, "hit", f"&n={n}"), sock)
                if r.bodyLength != size:
                    raise RuntimeError(f"{r.bodyLength} body bytes, not {size}")
        except (OSError, ValueError, RuntimeError) as e:
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(sockets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"filling the cache: {errors[0]}")


def fill(bench, cacheSize, sizeName):
    args = bench.args
    size = SIZE_NAMES[sizeName]
    metricsPort = benchlib.freePort()
    port, proc, argv = bench.startProxy(
        f"proxy-fill-{fmtSize(cacheSize)}-{sizeName}",
        ["--cache-size", fmtSize(cacheSize), "--metrics",
         f"tcp:{metricsPort}:interface={LOOPBACK}"],
    )  # fmt: skip
    log(f"fill: {benchlib.formatArgv(argv)} (pid {proc.pid}), {sizeName} objects")
    sockets = [socket.create_connection((LOOPBACK, port), timeout=30) for _ in range(4)]
    try:
        # Warm the relay path (buffers, code) with bodies that are not stored.
        for i in range(64):
            bench.get(port, bench.url(size, "miss", f"&w={i}"), sockets[i % 4])
        time.sleep(0.5)
        start = benchlib.treeMemory(proc.pid)[0]
        perQuarter = max(1, cacheSize // 4 // size)
        quarters = int(args.fill_factor * 4)
        samples = []
        requested = 0
        for _ in range(quarters):
            fillBatch(bench, port, sockets, size, requested, perQuarter)
            requested += perQuarter
            rss = benchlib.treeMemory(proc.pid)[0]
            metrics = readMetrics(metricsPort)
            samples.append({
                "requested_bytes": requested * size,
                "rss_kib": rss,
                "growth_mib": (rss - start) / KiB,
                **metrics,
            })  # fmt: skip
            log(
                f"  {requested * size / cacheSize:4.2f}x the cache size requested: "
                f"{metrics['entries']:.0f} entries, store {metrics['store_bytes'] / MiB:.1f} MiB, "
                f"evictions {metrics['evictions']:.0f}, RSS {rss / KiB:.1f} MiB "
                f"({(rss - start) / KiB:+.1f})"
            )
    finally:
        for s in sockets:
            s.close()
        bench.procs.stop(proc)
    return {
        "command": benchlib.formatArgv(argv),
        "cache_size": cacheSize,
        "object_size": size,
        "rss_start_kib": start,
        "samples": samples,
    }


def reportFill(results):
    print()
    print("RSS while the cache is filled past its size with distinct cacheable URLs")
    headers = ["--cache-size", "object", "requested", "entries", "store MiB", "RSS MiB",
               "RSS - start MiB", "minus cache size"]  # fmt: skip
    rows = []
    for res in results:
        cache = res["cache_size"]
        for s in res["samples"]:
            factor = s["requested_bytes"] / cache
            if abs(factor * 2 - round(factor * 2)) > 1e-6:
                continue  # every half cache size is enough for the table
            rows.append([
                fmtSize(cache), fmtSize(res["object_size"]), f"{factor:.1f}x",
                f"{s['entries']:.0f}", f"{s['store_bytes'] / MiB:.1f}",
                f"{s['rss_kib'] / KiB:.1f}", f"{s['growth_mib']:+.1f}",
                f"{s['growth_mib'] - cache / MiB:+.1f}",
            ])  # fmt: skip
    print(benchlib.textTable(headers, rows, left=2))
    print()
    for res in results:
        samples = res["samples"]
        full = [s for s in samples if s["requested_bytes"] >= 2 * res["cache_size"]]
        if not full:
            continue
        growth = [s["growth_mib"] for s in full]
        print(
            f"  --cache-size {fmtSize(res['cache_size'])}, {fmtSize(res['object_size'])} objects: "
            f"from 2x to {samples[-1]['requested_bytes'] / res['cache_size']:.0f}x requested, "
            f"RSS - start stays within {min(growth):+.1f}..{max(growth):+.1f} MiB "
            f"(cache size {res['cache_size'] / MiB:.0f} MiB)"
        )
        print(f"    {res['command']}")


# --- main -------------------------------------------------------------------------


def parseArgs(argv):
    p = argparse.ArgumentParser(
        description="twisted-proxy's cache: hits against misses, and RSS bounded by "
        "--cache-size (see the module docstring and bench/README.rst).",
    )
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    p.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="rounds of hit and miss runs; medians are reported (default 5)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="seconds of untimed wrk per (size, mode) first (default 2)",
    )
    p.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    p.add_argument(
        "--sizes",
        type=sizeList,
        default=["1k", "64k"],
        help="body sizes for (1): 1k, 64k or both (default 1k,64k)",
    )
    p.add_argument(
        "--fill-cache-sizes",
        type=cacheSizeList,
        default=[16 * MiB, 64 * MiB],
        metavar="SIZES",
        help="--cache-size values for (2) (default 16M,64M)",
    )
    p.add_argument(
        "--fill-sizes",
        type=sizeList,
        default=["64k", "1k"],
        help="object sizes for (2) (default 64k,1k)",
    )
    p.add_argument(
        "--fill-factor",
        type=float,
        default=4.0,
        help="fill until this many times the cache size was requested (default 4)",
    )
    p.add_argument("--skip-rates", action="store_true", help="skip (1)")
    p.add_argument("--skip-fill", action="store_true", help="skip (2)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: --duration 2 --rounds 1 --warmup 0, (2) with 16M only",
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    benchlib.addQuietArgument(p, default=20.0)
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.warmup = 2, 1, 0
        args.fill_cache_sizes = [16 * MiB]
    if args.rounds < 1 or args.duration < 1 or args.fill_factor < 1:
        p.error("--rounds, --duration and --fill-factor must be at least 1")
    return args


def main(argv=None):
    args = parseArgs(sys.argv[1:] if argv is None else argv)
    if not args.skip_rates and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (or use --skip-rates)")
    benchlib.sigtermAsInterrupt()
    benchlib.raiseFileLimit()
    benchlib.pinSelf(LOAD_CPU)
    workdir = tempfile.mkdtemp(prefix="cache-bench-")
    bench = Bench(args, workdir)
    doc: dict[str, Any] = {"args": {k: v for k, v in vars(args).items()}}
    try:
        bench.startOrigin()
        if not args.skip_rates:
            doc["rates"] = rates(bench)
        if not args.skip_fill:
            doc["fill"] = [
                fill(bench, cacheSize, sizeName)
                for sizeName in args.fill_sizes
                for cacheSize in args.fill_cache_sizes
            ]
    finally:
        bench.procs.stopAll()
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if "rates" in doc:
        reportRates(doc["rates"], args)
    if "fill" in doc:
        reportFill(doc["fill"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
