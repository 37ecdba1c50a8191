#!/usr/bin/env python3
"""Loopback benchmark of twisted-proxy against the direct path, Twisted's own
twisted.web.proxy, and (with --peers) tinyproxy, Squid and proxy.py.

One command starts an nginx origin in a temporary prefix, runs every row and
figure with wrk and curl, stops everything it started (by PID), and prints
aligned tables with ratios to the direct path and to twisted.web.proxy, all
measured in the same run.  See bench/README.rst for what each figure means.

    python3 bench/run_bench.py                      # default rows
    python3 bench/run_bench.py --peers              # + tinyproxy, squid, proxy.py
    python3 bench/run_bench.py --quick              # 2 s x 1 smoke test

Python 3.11 stdlib only.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import benchlib
from benchlib import HERE, LOOPBACK, REPO

PROXY_CPU = 0  # the proxy under test
LOAD_CPU = 1  # origin, wrk, curl and this harness
BOTH_CPUS = (PROXY_CPU, LOAD_CPU)  # the workers table: nothing pinned
WORKER_COUNTS = (1, 2)

ROWS = [
    "direct",
    "twisted-proxy",
    "twisted-proxy-cache",
    "twisted-web",
    "tinyproxy",
    "squid",
    "proxy.py",
]
DEFAULT_ROWS = ["direct", "twisted-proxy", "twisted-web"]
PEERS = ["tinyproxy", "squid", "proxy.py"]
ALIASES = {
    "twisted.web.proxy": "twisted-web",
    "baseline": "twisted-web",
    "proxypy": "proxy.py",
    "proxy_py": "proxy.py",
    "twisted_proxy": "twisted-proxy",
    "cache": "twisted-proxy-cache",
}
ROW_TITLES = {
    "direct": "direct (no proxy)",
    "twisted-proxy": "twisted-proxy",
    "twisted-proxy-cache": "twisted-proxy, cache hits",
    "twisted-web": "twisted.web.proxy",
    "tinyproxy": "tinyproxy",
    "squid": "squid",
    "proxy.py": "proxy.py",
}

SIZES = {"1k": 1024, "64k": 64 * 1024, "100m": 100 * 1024 * 1024}
MiB = 1024 * 1024

APT_HINT = "apt-get update && apt-get install -y nginx-light wrk curl util-linux"
PEER_APT_HINT = "apt-get install -y tinyproxy squid"

# Figures: key -> (title, unit, better, min |denominator| for a ratio).
# better: "higher" or "lower"; None means no ratio is shown.
FIGURES = {
    "a_rps": ("(a) 1 KiB keep-alive, 50 conns", "req/s", "higher", 1),
    "a_p50_ms": ("(a) p50 latency", "ms", "lower", 0.001),
    "a_p99_ms": ("(a) p99 latency", "ms", "lower", 0.001),
    "a_errors": ("(a) errors (non-2xx + socket)", "count", None, None),
    "a_upstream_per_req": ("(a) upstream connections opened per request", "conn/req", None, None),
    "a_cpu_us_per_req": ("(a) CPU per request (process tree)", "us/req", "lower", 0.01),
    "a_cpu_pct": ("(a) CPU use during the run", "% of a core", None, None),
    "a_foreign_cpu_pct": ("(a) other processes' use of the proxy CPU", "% of a core", None, None),
    "a_foreign_load_cpu_pct": (
        "(a) other processes' use of the load CPU",
        "% of a core",
        None,
        None,
    ),
    "b_rps": ("(b) 1 KiB, Connection: close, 50 conns", "req/s", "higher", 1),
    "b_p50_ms": ("(b) p50 latency", "ms", "lower", 0.001),
    "b_p99_ms": ("(b) p99 latency", "ms", "lower", 0.001),
    "b_errors": ("(b) errors", "count", None, None),
    "b_upstream_per_req": ("(b) upstream connections opened per request", "conn/req", None, None),
    "b_cpu_us_per_req": ("(b) CPU per request", "us/req", "lower", 0.01),
    "c_mibps": ("(c) 64 KiB keep-alive, 50 conns, body MiB/s", "MiB/s", "higher", 0.01),
    "c_rps": ("(c) 64 KiB req/s", "req/s", "higher", 1),
    "c_errors": ("(c) errors", "count", None, None),
    "d_mibps": ("(d) one 100 MiB download (curl)", "MiB/s", "higher", 0.01),
    "d_rss_growth_mib": ("(d) RSS growth, end - start", "MiB", "lower", 1),
    "d_peak_growth_mib": ("(d) RSS growth, peak - start", "MiB", "lower", 1),
    "t_mibps": (
        "(t) one 100 MiB download through a CONNECT tunnel (curl --proxytunnel)",
        "MiB/s",
        "higher",
        0.01,
    ),
    "s_mibps": ("(s) 100 MiB read at 25 MiB/s (curl --limit-rate 25M)", "MiB/s", None, None),
    "s_peak_growth_mib": ("(s) RSS growth, peak - start", "MiB", "lower", 1),
    "e_rps": ("(e) 1 KiB keep-alive, 1000 conns", "req/s", "higher", 1),
    "e_errors": ("(e) errors", "count", None, None),
    "e_kib_per_conn": ("(e) RSS per idle keep-alive connection", "KiB/conn", "lower", 0.5),
    "e_busy_kib_per_conn": (
        "(e) RSS per connection, peak under wrk -c 1000",
        "KiB/conn",
        "lower",
        0.5,
    ),
    "e_idle_open": ("(e) idle connections still open when measured", "count", None, None),
}

# The printed tables: (heading, [(figure key, column header, format)]).
TABLES = [
    (
        "1 KiB, 50 connections: (a) keep-alive, (b) Connection: close",
        [
            ("a_rps", "a req/s", "{:.0f}"),
            ("a_p50_ms", "a p50 ms", "{:.2f}"),
            ("a_p99_ms", "a p99 ms", "{:.2f}"),
            ("a_errors", "a err", "{:.0f}"),
            ("a_upstream_per_req", "a up/req", "{:.3f}"),
            ("a_cpu_us_per_req", "a CPU us/req", "{:.1f}"),
            ("a_cpu_pct", "a CPU %", "{:.0f}"),
            ("b_rps", "b req/s", "{:.0f}"),
            ("b_p99_ms", "b p99 ms", "{:.2f}"),
            ("b_errors", "b err", "{:.0f}"),
            ("b_upstream_per_req", "b up/req", "{:.3f}"),
        ],
    ),
    (
        "Bulk and concurrency: (c) 64 KiB, (d) 100 MiB, (t) 100 MiB in a CONNECT tunnel, "
        "(s) 100 MiB at 25 MiB/s, (e) 1000 connections",
        [
            ("c_mibps", "c MiB/s", "{:.0f}"),
            ("c_errors", "c err", "{:.0f}"),
            ("d_mibps", "d MiB/s", "{:.0f}"),
            ("d_peak_growth_mib", "d peak dRSS MiB", "{:.1f}"),
            ("d_rss_growth_mib", "d end dRSS MiB", "{:.1f}"),
            ("t_mibps", "t MiB/s", "{:.0f}"),
            ("s_peak_growth_mib", "s peak dRSS MiB", "{:.1f}"),
            ("e_rps", "e req/s", "{:.0f}"),
            ("e_errors", "e err", "{:.0f}"),
            ("e_kib_per_conn", "e KiB/conn idle", "{:.1f}"),
            ("e_idle_open", "e idle open", "{:.0f}"),
            ("e_busy_kib_per_conn", "e KiB/conn busy", "{:.1f}"),
        ],
    ),
]

RATIO_COLUMNS = [
    ("a_rps", "a req/s"),
    ("a_p99_ms", "a p99"),
    ("a_cpu_us_per_req", "a CPU/req"),
    ("b_rps", "b req/s"),
    ("b_p99_ms", "b p99"),
    ("c_mibps", "c MiB/s"),
    ("d_mibps", "d MiB/s"),
    ("d_peak_growth_mib", "d peak dRSS"),
    ("t_mibps", "t MiB/s"),
    ("s_peak_growth_mib", "s peak dRSS"),
    ("e_rps", "e req/s"),
    ("e_kib_per_conn", "e KiB/conn"),
]


class RowUnavailable(Exception):
    """A row cannot run here; the message says why (and how to fix it)."""


# --- helpers ---------------------------------------------------------------


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cleanEnv():
    """Our environment without *_proxy variables, so curl and wrk never go
    anywhere but where we point them."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return env


def toolVersion(argv, pattern=None):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout + out.stderr).strip()
    if pattern:
        m = re.search(pattern, text)
        return m.group(1) if m else text.splitlines()[0] if text else None
    return text.splitlines()[0] if text else None


def readResponse(sock, deadline):
    """Read one HTTP/1.x response with a Content-Length body from sock.

    Returns (status, bodyLength) or raises OSError/ValueError."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("connection closed before the response head")
        buf += chunk
        if len(buf) > 65536:
            raise ValueError("response head too large")
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise ValueError("response without Content-Length")
    got = len(body)
    while got < length:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(min(65536, length - got))
        if not chunk:
            raise ValueError("connection closed mid-body")
        got += len(chunk)
    return status, got


def requestBytes(target, host, close=False):
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", "User-Agent: bench"]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# --- the origin ------------------------------------------------------------

NGINX_CONF = """\
# Generated by bench/run_bench.py; a private nginx, never the system service.
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
worker_rlimit_nofile 65536;
events {{
    worker_connections 16384;
    multi_accept on;
}}
http {{
    default_type application/octet-stream;
    log_format bench '$connection $connection_requests $status $body_bytes_sent';
    access_log {prefix}/logs/access.log bench;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 600s;
    keepalive_requests 1000000000;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    server {{
        listen {host}:{port} backlog=4096;
        server_name localhost;
        root {prefix}/html;
        location / {{ }}
        # The same files, cacheable for a day (Cache-Control: max-age=86400
        # and Expires): the twisted-proxy-cache row's targets.
        location /c/ {{
            alias {prefix}/html/;
            expires 1d;
        }}
    }}
}}
"""


class Origin:
    """nginx serving /1k, /64k and /100m from its own prefix on 127.0.0.1."""

    def __init__(self, procs, workdir):
        self.procs = procs
        self.prefix = os.path.join(workdir, "nginx")
        self.port = benchlib.freePort()
        self.proc = None

    @property
    def hostport(self):
        return f"{LOOPBACK}:{self.port}"

    def url(self, name):
        return f"http://{self.hostport}/{name}"

    def start(self):
        p = self.prefix
        for d in ("html", "logs", "tmp/body", "tmp/proxy", "conf"):
            os.makedirs(os.path.join(p, d), exist_ok=True)
        pattern = bytes(range(256)) * 256  # 64 KiB
        for name, size in SIZES.items():
            with open(os.path.join(p, "html", name), "wb") as f:
                left = size
                while left:
                    n = min(left, len(pattern))
                    f.write(pattern[:n])
                    left -= n
        conf = os.path.join(p, "conf", "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(prefix=p, host=LOOPBACK, port=self.port))
        # nginx workers run as an unprivileged user: they must read html/.
        for root, _dirs, files in os.walk(p):
            os.chmod(root, 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
        self.proc = self.procs.start(
            "nginx",
            ["nginx", "-p", p, "-c", conf, "-g", "daemon off;"],
            os.path.join(p, "logs", "stdout.log"),
            cpu=LOAD_CPU,
        )
        if not benchlib.waitForPort(self.port, 15, self.proc):
            raise SystemExit(
                f"nginx did not start:\n{self.proc.logTail()}\n"
                f"{open(os.path.join(p, 'logs', 'error.log')).read()[-2000:]}"
            )
        self.proc.remember()

    @property
    def accessLog(self):
        return os.path.join(self.prefix, "logs", "access.log")

    def logOffset(self):
        try:
            return os.path.getsize(self.accessLog)
        except OSError:
            return 0

    def upstreamStats(self, offset):
        """(requests, new connections) logged by nginx since offset."""
        time.sleep(0.2)  # let the last responses be logged
        requests = newConns = 0
        with open(self.accessLog, "rb") as f:
            f.seek(offset)
            for line in f:
                parts = line.split()
                if len(parts) < 2:
                    continue
                requests += 1
                if parts[1] == b"1":
                    newConns += 1
        return requests, newConns


# --- rows (what is measured) -----------------------------------------------


class Row:
    """One line of the table: how to start it and where to send requests."""

    name = "?"
    title = "?"
    cpu: int | tuple[int, ...] = PROXY_CPU

    def __init__(self, ctx):
        self.ctx = ctx
        self.proc = None
        self.port = None
        self.command = None
        self.version = None

    # Subclasses: check() raises RowUnavailable; argv(port) returns the argv.
    def check(self):
        pass

    def argv(self, port):
        raise NotImplementedError

    def env(self):
        return cleanEnv()

    def cwd(self):
        return None

    def prepare(self, prefix):
        """Write config files into prefix (its own directory)."""

    @property
    def viaProxy(self):
        return True

    @property
    def measuredPid(self):
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self):
        prefix = os.path.join(self.ctx.workdir, self.name)
        os.makedirs(prefix, exist_ok=True)
        os.chmod(prefix, 0o777)  # squid/tinyproxy drop privileges and log here
        self.prefix = prefix
        self.port = benchlib.freePort()
        self.prepare(prefix)
        argv = self.argv(self.port)
        self.command = benchlib.formatArgv(argv)
        self.proc = self.ctx.procs.start(
            self.name,
            argv,
            os.path.join(prefix, "stdout.log"),
            cpu=self.cpu,
            env=self.env(),
            cwd=self.cwd(),
        )
        if not benchlib.waitForPort(self.port, 30, self.proc):
            tail = self.proc.logTail()
            self.stop()
            raise RowUnavailable(f"did not start listening on {self.port}: {tail[-600:]}")
        time.sleep(0.2)
        self.proc.remember()
        # One request through it, to be sure it proxies at all.
        try:
            self.fetch("1k")
        except (OSError, ValueError) as e:
            tail = self.proc.logTail()
            self.stop()
            raise RowUnavailable(f"a GET /1k through it failed ({e}); log: {tail[-600:]}") from e

    def stop(self):
        if self.proc is not None:
            self.ctx.procs.stop(self.proc)
            self.proc = None

    def restart(self):
        self.stop()
        self.start()

    def alive(self):
        return self.proc is not None and self.proc.alive()

    # Where clients connect, and what they ask for.
    @property
    def connectPort(self):
        return self.port

    def target(self, name):
        return self.ctx.origin.url(name)

    def fetch(self, name, close=True, keep=False, timeout=10):
        """One GET through this row on a new connection; returns the socket
        if keep, else closes it.  Raises on anything but 200 + full body."""
        deadline = time.monotonic() + timeout
        s = socket.create_connection((LOOPBACK, self.connectPort), timeout=timeout)
        try:
            s.sendall(requestBytes(self.target(name), self.ctx.origin.hostport, close))
            status, n = readResponse(s, deadline)
            if status != 200 or n != SIZES[name]:
                raise ValueError(f"status {status}, {n} body bytes")
        except BaseException:
            s.close()
            raise
        if keep:
            return s
        s.close()
        return None


class DirectRow(Row):
    """No proxy: wrk and curl straight at nginx, the limit of the load side.
    Memory and CPU figures are those of nginx (master + worker)."""

    name = "direct"
    title = ROW_TITLES["direct"]

    @property
    def viaProxy(self):
        return False

    @property
    def connectPort(self):
        return self.ctx.origin.port

    def target(self, name):
        return "/" + name

    def check(self):
        self.version = "nginx " + (toolVersion(["nginx", "-v"], r"nginx/([\d.]+)") or "?")

    def start(self):
        self.proc = self.ctx.origin.proc
        self.port = self.ctx.origin.port
        self.command = self.ctx.origin.proc.argv and benchlib.formatArgv(self.ctx.origin.proc.argv)

    def stop(self):
        self.proc = None

    def restart(self):
        self.start()

    def alive(self):
        return self.ctx.origin.proc.alive()


class TwistedProxyRow(Row):
    name = "twisted-proxy"
    title = ROW_TITLES["twisted-proxy"]

    def check(self):
        ok, reason, helpText = benchlib.twistedProxyStatus()
        if not ok:
            raise RowUnavailable(
                f"not available: {reason} (install with `pip install -e {REPO}` "
                "from a checkout with twisted_proxy/app/tap.py)"
            )
        self.helpText = helpText
        try:
            import importlib.metadata

            self.version = importlib.metadata.version("twisted_proxy")
        except Exception:
            m = re.search(
                r'__version__\s*=\s*"([^"]+)"',
                open(os.path.join(REPO, "twisted_proxy", "__init__.py")).read(),
            )
            self.version = m.group(1) if m else None

    def argv(self, port):
        # The relay is measured, as for the peers, whose caches are off: with
        # its cache on (the default) twisted-proxy would answer nginx's files
        # from memory, fresh for 10% of their age (Last-Modified) and then
        # revalidated with 304s.  The twisted-proxy-cache row measures hits.
        extra = ["--cache-size", "0"] if "--cache-size" in self.helpText else []
        return benchlib.twistedProxyArgv(
            port,
            os.path.join(self.prefix, "twistd.log"),
            self.helpText,
            extra=extra + self.connectPorts(),
        )

    def connectPorts(self):
        # (t): CONNECT to the origin's port, as the peers are configured.
        if "--connect-ports" not in self.helpText:
            return []
        return ["--connect-ports", f"443,{self.ctx.origin.port}"]

    def env(self):
        env = benchlib.proxyEnv()
        return {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}

    def cwd(self):
        # twistd -n from the prefix, so nothing is written into the checkout
        # but Twisted's dropin.cache.
        return self.prefix


class TwistedProxyWorkersRow(TwistedProxyRow):
    """twisted-proxy with C{--workers N} (1: one process, no parent), free to
    use both CPUs, as wrk and nginx are in the workers table."""

    cpu = BOTH_CPUS

    def __init__(self, ctx, workers):
        super().__init__(ctx)
        self.workers = workers
        self.name = f"twisted-proxy-w{workers}"
        self.title = f"twisted-proxy --workers {workers}"

    def argv(self, port):
        # A later --workers overrides the one twistedProxyArgv puts first.
        return super().argv(port) + ["--workers", str(self.workers)]


class TwistedProxyCacheRow(TwistedProxyRow):
    """twisted-proxy with its default configuration (the cache on, 64 MiB
    in memory), asked for nginx's files under /c/, which are cacheable for a
    day: after the first request of each, every figure but (d) is served
    from the cache.  (d)'s 100 MiB is over --cache-max-object (8 MiB): it
    is relayed, not stored."""

    name = "twisted-proxy-cache"
    title = ROW_TITLES["twisted-proxy-cache"]

    def check(self):
        super().check()
        if "--cache-size" not in self.helpText:
            raise RowUnavailable("this twisted-proxy has no cache (no --cache-size option)")

    def argv(self, port):
        return benchlib.twistedProxyArgv(
            port, os.path.join(self.prefix, "twistd.log"), self.helpText, extra=self.connectPorts()
        )

    def target(self, name):
        return self.ctx.origin.url("c/" + name)


class TwistedWebRow(Row):
    name = "twisted-web"
    title = ROW_TITLES["twisted-web"]

    def check(self):
        try:
            import twisted

            self.version = twisted.__version__
        except ImportError as e:
            raise RowUnavailable("Twisted is not installed (pip install Twisted)") from e

    def argv(self, port):
        return [
            sys.executable,
            os.path.join(HERE, "baseline_twisted_web_proxy.py"),
            str(port),
            "--log",
            os.path.join(self.prefix, "twistd.log"),
        ]


TINYPROXY_CONF = """\
# Generated by bench/run_bench.py; a private tinyproxy, never the system service.
User nobody
Group nogroup
Port {port}
Listen {host}
Timeout 600
LogFile "{prefix}/tinyproxy.log"
LogLevel Notice
PidFile "{prefix}/tinyproxy.pid"
MaxClients 4096
Allow {host}
ConnectPort 443
# (t): a CONNECT tunnel to the origin's port.
ConnectPort {originPort}
"""


class TinyproxyRow(Row):
    name = "tinyproxy"
    title = "tinyproxy"

    def check(self):
        if shutil.which("tinyproxy") is None:
            raise RowUnavailable(f"tinyproxy not installed ({PEER_APT_HINT})")
        self.version = toolVersion(["tinyproxy", "-v"], r"tinyproxy ([\d.]+)")

    def prepare(self, prefix):
        self.conf = os.path.join(prefix, "tinyproxy.conf")
        with open(self.conf, "w") as f:
            f.write(
                TINYPROXY_CONF.format(
                    port=self.port,
                    host=LOOPBACK,
                    prefix=prefix,
                    originPort=self.ctx.origin.port,
                )
            )

    def argv(self, port):
        return ["tinyproxy", "-d", "-c", self.conf]


SQUID_CONF = """\
# Generated by bench/run_bench.py; a private squid, never the system service.
# Cache off, loopback only, no DNS beyond /etc/hosts and 127.0.0.1.
http_port {host}:{port}
pid_filename {prefix}/squid.pid
cache_effective_user proxy
cache deny all
cache_mem 0 MB
memory_cache_shared off
access_log stdio:{prefix}/access.log
cache_log {prefix}/cache.log
cache_store_log none
logfile_rotate 0
coredump_dir {prefix}
acl bench_clients src {host}/32
http_access allow bench_clients
http_access deny all
visible_hostname localhost
dns_nameservers {host}
pinger_enable off
icp_port 0
htcp_port 0
netdb_filename none
max_filedescriptors 16384
shutdown_lifetime 1 seconds
client_persistent_connections on
server_persistent_connections on
workers 1
"""


class SquidRow(Row):
    name = "squid"
    title = "squid"

    def check(self):
        if shutil.which("squid") is None:
            raise RowUnavailable(f"squid not installed ({PEER_APT_HINT})")
        self.version = toolVersion(["squid", "-v"], r"Version ([\d.]+)")

    def prepare(self, prefix):
        self.conf = os.path.join(prefix, "squid.conf")
        with open(self.conf, "w") as f:
            f.write(SQUID_CONF.format(port=self.port, host=LOOPBACK, prefix=prefix))

    def argv(self, port):
        # -N: no daemon, no SMP kids: one process.
        return ["squid", "-N", "-f", self.conf]


class ProxyPyRow(Row):
    name = "proxy.py"
    title = "proxy.py"

    def check(self):
        venv = self.ctx.args.proxypy_venv
        exe = os.path.join(venv, "bin", "proxy")
        if not os.path.exists(exe):
            if self.ctx.args.no_install:
                raise RowUnavailable(
                    f"proxy.py not installed in {venv} (python3 -m venv {venv} && "
                    f"{venv}/bin/pip install proxy.py)"
                )
            log(f"installing proxy.py into its own venv {venv}")
            try:
                subprocess.run(
                    [sys.executable, "-m", "venv", venv],
                    check=True,
                    timeout=300,
                    capture_output=True,
                )
                subprocess.run(
                    [os.path.join(venv, "bin", "pip"), "install", "-q", "proxy.py"],
                    check=True,
                    timeout=600,
                    capture_output=True,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
                raise RowUnavailable(f"could not install proxy.py into {venv}: {e}") from e
        self.exe = exe
        self.version = toolVersion([exe, "--version"], r"([\d.]+\S*)")

    def argv(self, port):
        # One acceptor that also executes its connections (--local-executor 1,
        # threadless): one worker process, pinned with the launcher to one core.
        return [
            self.exe,
            "--hostname",
            LOOPBACK,
            "--port",
            str(port),
            "--num-acceptors",
            "1",
            "--num-workers",
            "1",
            "--threadless",
            "--local-executor",
            "1",
            "--backlog",
            "4096",
            "--open-file-limit",
            "16384",
            "--log-file",
            os.path.join(self.prefix, "proxy.log"),
        ]


ROW_CLASSES = {
    "direct": DirectRow,
    "twisted-proxy": TwistedProxyRow,
    "twisted-proxy-cache": TwistedProxyCacheRow,
    "twisted-web": TwistedWebRow,
    "tinyproxy": TinyproxyRow,
    "squid": SquidRow,
    "proxy.py": ProxyPyRow,
}


# --- load generators -------------------------------------------------------


class Context:
    def __init__(self, args, procs, workdir, origin):
        self.args = args
        self.procs = procs
        self.workdir = workdir
        self.origin = origin


def runWrk(ctx, row, name, connections, duration, close=False, cpu=LOAD_CPU):
    """Run wrk (pinned to C{cpu}) through row; returns wrk's figures plus
    process CPU and the origin's count of new upstream connections."""
    lua = os.path.join(HERE, "wrk_proxy.lua")
    env = cleanEnv()
    env["BENCH_PATH"] = row.target(name)
    env["BENCH_HOST"] = ctx.origin.hostport
    env["BENCH_CLOSE"] = "1" if close else "0"
    argv = benchlib.pinPrefix(cpu) + [
        "wrk",
        "-t",
        str(ctx.args.wrk_threads),
        "-c",
        str(connections),
        "-d",
        f"{duration}s",
        "--timeout",
        "10s",
        "-s",
        lua,
        f"http://{LOOPBACK}:{row.connectPort}/",
    ]
    offset = ctx.origin.logOffset()
    pid = row.measuredPid
    quiet(ctx)
    before = cpuAccount(ctx, pid)
    t0 = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=duration + 60)
    wall = time.monotonic() - t0
    after = cpuAccount(ctx, pid)
    cpu0, cpu1 = before["measured"], after["measured"]
    # The workers table's columns: the parent alone, wrk, nginx, both CPUs.
    parentCpu = after["parent"] - before["parent"]
    wrkCpu = after["children"] - before["children"]
    originCpu = after["origin"] - before["origin"]
    machineBusy = after["proxyCpu"] + after["loadCpu"] - before["proxyCpu"] - before["loadCpu"]
    # Busy time of each CPU that none of our processes account for.
    oursOnProxyCpu = (cpu1 - cpu0) if row.viaProxy else 0.0
    oursOnLoadCpu = sum(after[k] - before[k] for k in ("origin", "children", "self"))
    foreignPct = max(0.0, (after["proxyCpu"] - before["proxyCpu"] - oursOnProxyCpu) * 100 / wall)
    foreignLoadPct = max(0.0, (after["loadCpu"] - before["loadCpu"] - oursOnLoadCpu) * 100 / wall)
    m = re.search(r"^BENCH_RESULT (\{.*\})$", out.stdout, re.M)
    if not m:
        raise RuntimeError(
            f"wrk gave no result (rc {out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}"
        )
    r = json.loads(m.group(1))
    upReqs, upConns = ctx.origin.upstreamStats(offset)
    secs = r["duration_us"] / 1e6
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return {
        "requests": r["requests"],
        "seconds": secs,
        "rps": r["requests"] / secs if secs else 0.0,
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "errors": errors,
        "error_detail": {k: r[k] for k in ("connect", "read", "write", "status", "timeout")},
        "body_mibps": r["requests"] * SIZES[name] / secs / MiB if secs else 0.0,
        "cpu_s": cpu1 - cpu0,
        "cpu_us_per_req": (cpu1 - cpu0) * 1e6 / r["requests"] if r["requests"] else None,
        "cpu_pct": (cpu1 - cpu0) * 100 / wall,
        "foreign_cpu_pct": foreignPct,
        "foreign_load_cpu_pct": foreignLoadPct,
        "parent_cpu_pct": parentCpu * 100 / wall,
        "wrk_cpu_pct": wrkCpu * 100 / wall,
        "origin_cpu_pct": originCpu * 100 / wall,
        "machine_busy_pct": machineBusy * 100 / wall,
        "upstream_requests": upReqs,
        "upstream_new_conns": upConns,
        "upstream_per_req": upConns / upReqs if upReqs else None,
    }


def quiet(ctx):
    """Before a timed run: wait (bounded) until other processes leave both
    CPUs alone; other engineers' test runs may share this machine."""
    if ctx.args.quiet_wait > 0:
        benchlib.waitForQuietCpus(
            [PROXY_CPU, LOAD_CPU], limit=10, timeout=ctx.args.quiet_wait, say=log
        )


def cpuAccount(ctx, pid):
    """CPU seconds so far: of the measured process tree, the origin, our
    finished children (wrk, curl), this harness, and each CPU in total."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "measured": benchlib.treeCpu(pid),
        "parent": benchlib.cpuSeconds(pid),
        "origin": benchlib.treeCpu(ctx.origin.proc.pid),
        "children": ru.ru_utime + ru.ru_stime,
        "self": me.ru_utime + me.ru_stime,
        "proxyCpu": benchlib.cpuBusy(PROXY_CPU),
        "loadCpu": benchlib.cpuBusy(LOAD_CPU),
    }


def runCurl(ctx, row, name, limitRate=None, tunnel=False, timeout=600):
    """One download with curl; returns (MiB/s, bytes).  With C{tunnel}, through
    a CONNECT tunnel the proxy opens to the origin (direct: as without)."""
    argv = benchlib.pinPrefix(LOAD_CPU) + [
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "--max-time",
        str(timeout),
    ]
    if row.viaProxy:
        argv += ["-x", f"http://{LOOPBACK}:{row.connectPort}", "--noproxy", ""]
        if tunnel:
            argv.append("--proxytunnel")
    else:
        argv += ["--noproxy", "*"]
    if limitRate:
        argv += ["--limit-rate", limitRate]
    argv += ["-w", "%{http_code} %{size_download} %{time_total}", ctx.origin.url(name)]
    quiet(ctx)
    out = subprocess.run(argv, capture_output=True, text=True, env=cleanEnv(), timeout=timeout + 30)
    code, sizeText, totalText = out.stdout.split()
    size, total = int(sizeText), float(totalText)
    ok = out.returncode == 0 and code == "200" and size == SIZES[name]
    if not ok:
        raise RuntimeError(
            f"curl {name}: rc {out.returncode} code {code} size {size}: {out.stderr[-300:]}"
        )
    return size / total / MiB, size


def memoryDuring(row, action):
    """Run action() while sampling row's RSS; returns (result, start KiB,
    end KiB, peak KiB)."""
    pid = row.measuredPid
    resetOk = benchlib.resetPeak(pid)  # VmHWM := VmRSS, so it is this run's peak
    start, _ = benchlib.treeMemory(pid)
    with benchlib.RssSampler(pid, 0.1) as sampler:
        result = action()
    end, hwm = benchlib.treeMemory(pid)
    peak = max(sampler.peak, end, hwm if resetOk else 0)
    return result, start, end, peak


def warmUp(ctx, row, seconds):
    runWrk(ctx, row, "1k", 50, max(1, int(seconds)))


def lightWarmUp(row, n=20):
    for _ in range(n):
        row.fetch("1k", close=True)


def idleConnections(row, n, timeout, batch=50):
    """Open n keep-alive connections, one completed 1 KiB request on each,
    and leave them open.  Works in batches of C{batch} connections whose
    requests are in flight together, so that opening 1000 connections takes
    about a second even through a proxy with a slow event-loop tick (an idle
    timeout must not close the first ones before the last are open).

    Returns (sockets, failures)."""
    deadline = time.monotonic() + timeout
    request = requestBytes(row.target("1k"), row.ctx.origin.hostport)
    want = SIZES["1k"]
    socks: list[socket.socket] = []
    failures = 0
    while len(socks) + failures < n and time.monotonic() < deadline:
        count = min(batch, n - len(socks) - failures)
        pending = {}
        sel = selectors.DefaultSelector()
        try:
            for _ in range(count):
                try:
                    s = socket.create_connection((LOOPBACK, row.connectPort), timeout=10)
                    s.sendall(request)
                    s.setblocking(False)
                    pending[s] = b""
                    sel.register(s, selectors.EVENT_READ)
                except OSError:
                    failures += 1
            while pending and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=0.5):
                    ready = key.fileobj
                    assert isinstance(ready, socket.socket)
                    s = ready
                    try:
                        chunk = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        chunk = b""
                    buf = pending[s] + chunk
                    done = complete = False
                    if not chunk:
                        done = True
                    elif b"\r\n\r\n" in buf:
                        head, _, body = buf.partition(b"\r\n\r\n")
                        if len(body) >= want:
                            statusLine = head.split(b"\r\n", 1)[0]
                            complete = statusLine.split()[1:2] == [b"200"]
                            done = True
                    if done:
                        sel.unregister(s)
                        del pending[s]
                        if complete:
                            s.setblocking(True)
                            socks.append(s)
                        else:
                            s.close()
                            failures += 1
                    else:
                        pending[s] = buf
        finally:
            for s in pending:
                s.close()
            failures += len(pending)
            sel.close()
    return socks, n - len(socks)


def stillOpen(socks):
    """How many of these sockets the server has not closed."""
    count = 0
    for s in socks:
        try:
            s.setblocking(False)
            data = s.recv(1, socket.MSG_PEEK)
            if data:
                count += 1  # unexpected bytes, but open
        except BlockingIOError:
            count += 1
        except OSError:
            pass
        finally:
            s.setblocking(True)
    return count


# --- figures ---------------------------------------------------------------


def measureRow(ctx, row):
    """All figures for one row; returns {"figures": medians, "samples": ...}."""
    args = ctx.args
    samples: dict[str, list[Any]] = {k: [] for k in FIGURES}
    extra: dict[str, Any] = {"wrk": {}, "notes": []}

    def add(key, value):
        samples[key].append(value)

    def ensureAlive(what):
        if not row.alive():
            raise RuntimeError(
                f"{row.title} died during {what}: {row.proc.logTail() if row.proc else ''}"
            )

    # (e) idle connections, on a fresh process each repeat (memory figures
    # are measured from a clean start so one repeat cannot hide the next).
    for i in range(args.repeats):
        row.restart()
        lightWarmUp(row)
        time.sleep(0.3)
        base, _ = benchlib.treeMemory(row.measuredPid)
        t0 = time.monotonic()
        socks, failures = idleConnections(row, args.connections, timeout=120)
        opened = time.monotonic() - t0
        try:
            time.sleep(0.5)
            withConns, _ = benchlib.treeMemory(row.measuredPid)
            openNow = stillOpen(socks)
        finally:
            for s in socks:
                s.close()
        perConn = (withConns - base) / openNow if openNow else None
        add("e_kib_per_conn", perConn)
        add("e_idle_open", openNow)
        note = (
            f"idle run {i + 1}: {len(socks)} of {args.connections} got a response in "
            f"{opened:.1f} s, {openNow} still open when measured"
        )
        extra["notes"].append(note)
        log(
            f"  {row.name} (e) idle: "
            + (f"{perConn:.1f} KiB/conn" if perConn is not None else "no connection stayed open")
            + f"; {note}"
        )
        ensureAlive("(e) idle connections")

    # (d) one 100 MiB download and (s) the same read at 25 MB/s, fresh each.
    for _ in range(args.repeats):
        row.restart()
        lightWarmUp(row)
        time.sleep(0.3)
        (mibps, _), start, end, peak = memoryDuring(row, lambda: runCurl(ctx, row, "100m"))
        add("d_mibps", mibps)
        add("d_rss_growth_mib", (end - start) / 1024)
        add("d_peak_growth_mib", (peak - start) / 1024)
        log(f"  {row.name} (d) {mibps:.0f} MiB/s, RSS +{(peak - start) / 1024:.1f} MiB peak")
        ensureAlive("(d)")
    # (t) the same download through a CONNECT tunnel, on one fresh process.
    row.restart()
    lightWarmUp(row)
    for _ in range(args.repeats):
        try:
            mibps, _ = runCurl(ctx, row, "100m", tunnel=True)
        except RuntimeError as e:
            # twisted.web.proxy has no CONNECT.
            extra["notes"].append(f"(t) CONNECT tunnel: {e}")
            log(f"  {row.name} (t) no tunnel: {e}")
            break
        add("t_mibps", mibps)
        log(f"  {row.name} (t) {mibps:.0f} MiB/s through a CONNECT tunnel")
        ensureAlive("(t)")
    for _ in range(args.repeats):
        row.restart()
        lightWarmUp(row)
        time.sleep(0.3)
        (mibps, _), start, end, peak = memoryDuring(
            row, lambda: runCurl(ctx, row, "100m", limitRate="25M")
        )
        add("s_mibps", mibps)
        add("s_peak_growth_mib", (peak - start) / 1024)
        log(f"  {row.name} (s) {mibps:.1f} MiB/s, RSS +{(peak - start) / 1024:.1f} MiB peak")
        ensureAlive("(s)")

    # Throughput figures on one process, after a warm-up.
    row.restart()
    warmUp(ctx, row, args.warmup)
    base, _ = benchlib.treeMemory(row.measuredPid)
    for fig, name, conns, close in (
        ("a", "1k", 50, False),
        ("b", "1k", 50, True),
        ("c", "64k", 50, False),
    ):
        for _ in range(args.repeats):
            r = runWrk(ctx, row, name, conns, args.duration, close)
            extra["wrk"].setdefault(fig, []).append(r)
            if fig in ("a", "b"):
                add(f"{fig}_rps", r["rps"])
                add(f"{fig}_p50_ms", r["p50_ms"])
                add(f"{fig}_p99_ms", r["p99_ms"])
                add(f"{fig}_errors", r["errors"])
                add(f"{fig}_upstream_per_req", r["upstream_per_req"])
                add(f"{fig}_cpu_us_per_req", r["cpu_us_per_req"])
                if fig == "a":
                    add("a_cpu_pct", r["cpu_pct"])
                    add("a_foreign_cpu_pct", r["foreign_cpu_pct"])
                    add("a_foreign_load_cpu_pct", r["foreign_load_cpu_pct"])
            else:
                add("c_mibps", r["body_mibps"])
                add("c_rps", r["rps"])
                add("c_errors", r["errors"])
            log(
                f"  {row.name} ({fig}) {r['rps']:.0f} req/s, p99 {r['p99_ms']:.2f} ms, "
                f"{r['errors']} errors, {r['upstream_per_req'] or 0:.3f} up/req, "
                f"{r['cpu_us_per_req'] or 0:.1f} us CPU/req, "
                f"others on CPU {PROXY_CPU}/{LOAD_CPU}: "
                f"{r['foreign_cpu_pct']:.0f}%/{r['foreign_load_cpu_pct']:.0f}%"
            )
            ensureAlive(f"({fig})")
    for _ in range(args.repeats):
        rss0, _ = benchlib.treeMemory(row.measuredPid)
        r, start, end, peak = memoryDuring(
            row, lambda: runWrk(ctx, row, "1k", args.connections, args.duration)
        )
        extra["wrk"].setdefault("e", []).append(r)
        add("e_rps", r["rps"])
        add("e_errors", r["errors"])
        add("e_busy_kib_per_conn", (peak - base) / args.connections)
        log(
            f"  {row.name} (e) {r['rps']:.0f} req/s with {args.connections} conns, "
            f"{r['errors']} errors"
        )
        ensureAlive("(e)")

    figures = {k: median(v) for k, v in samples.items() if v}
    return {"figures": figures, "samples": samples, "detail": extra}


WORKER_FIGURES = [
    # (result key, column header, format)
    ("rps", "req/s", "{:.0f}"),
    ("p99_ms", "p99 ms", "{:.2f}"),
    ("cpu_us_per_req", "proxy CPU us/req", "{:.1f}"),
    ("cpu_pct", "proxy CPU %", "{:.0f}"),
    ("parent_cpu_pct", "parent CPU %", "{:.1f}"),
    ("wrk_cpu_pct", "wrk CPU %", "{:.0f}"),
    ("origin_cpu_pct", "nginx CPU %", "{:.0f}"),
    ("machine_busy_pct", "both CPUs busy %", "{:.0f}"),
    ("errors", "err", "{:.0f}"),
]


def setAffinity(pids, cpus):
    """Let these processes run on C{cpus} (best effort: one may be gone)."""
    for pid in pids:
        try:
            os.sched_setaffinity(pid, set(cpus))
        except OSError:
            pass


def measureWorkers(ctx):
    """The workers table: (a) and (c) through C{--workers 1} and C{--workers
    2}, with the proxy, wrk and nginx all free to use both CPUs (on a 2-CPU
    machine the load generator competes with the workers: its CPU is shown).
    With C{--workers 2} the parent only supervises: its CPU is shown too."""
    args = ctx.args
    originPids = benchlib.processTree(ctx.origin.proc.pid)
    setAffinity(originPids, BOTH_CPUS)
    out = {}
    try:
        for n in WORKER_COUNTS:
            row = TwistedProxyWorkersRow(ctx, n)
            log(f"workers table: {row.title}")
            res: dict[str, Any] = {}
            try:
                row.check()
                row.start()
                runWrk(ctx, row, "1k", 50, max(1, args.warmup), cpu=BOTH_CPUS)
                for fig, name in (("a", "1k"), ("c", "64k")):
                    runs = [
                        runWrk(ctx, row, name, 50, args.duration, cpu=BOTH_CPUS)
                        for _ in range(args.repeats)
                    ]
                    res[fig] = {
                        "figures": {
                            k: median([r[k] for r in runs if r.get(k) is not None])
                            for k, _, _ in WORKER_FIGURES
                            if any(r.get(k) is not None for r in runs)
                        },
                        "runs": runs,
                    }
                    f = res[fig]["figures"]
                    log(
                        f"  {row.title} ({fig}) {f['rps']:.0f} req/s, proxy CPU "
                        f"{f['cpu_pct']:.0f}% (parent {f['parent_cpu_pct']:.1f}%), "
                        f"wrk {f['wrk_cpu_pct']:.0f}%, nginx {f['origin_cpu_pct']:.0f}%"
                    )
                res.update(available=True, command=row.command)
            except (RowUnavailable, RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                log(f"  {row.title}: {e}")
                res = {"available": False, "reason": str(e)}
            finally:
                row.stop()
            out[n] = res
    finally:
        setAffinity(originPids, (LOAD_CPU,))
    return out


def renderWorkers(workers):
    lines = []
    for fig, heading in (
        ("a", "(a) 1 KiB keep-alive, 50 connections"),
        ("c", "(c) 64 KiB keep-alive, 50 connections"),
    ):
        headers = ["workers"] + [h for _, h, _ in WORKER_FIGURES]
        body = []
        for n, res in workers.items():
            figs = res.get(fig, {}).get("figures", {}) if res.get("available") else {}
            # One worker is one process: no parent to show apart.
            body.append(
                [str(n)]
                + [
                    fmt.format(figs[k])
                    if figs.get(k) is not None and not (n == 1 and k == "parent_cpu_pct")
                    else "-"
                    for k, _, fmt in WORKER_FIGURES
                ]
            )
        lines += [
            f"Workers, {heading}; proxy, wrk and nginx on both CPUs (CPU % of one core)",
            formatTable(headers, body),
            "",
        ]
    for n, res in workers.items():
        if not res.get("available"):
            lines.append(f"--workers {n}: {res.get('reason')}")
    return "\n".join(lines)


def computeRatios(results):
    """Each figure as a ratio to direct and to twisted.web.proxy."""
    ratios: dict[str, dict[str, Any]] = {"to_direct": {}, "to_baseline": {}}
    for refKey, refName in (("to_direct", "direct"), ("to_baseline", "twisted-web")):
        ref = results.get(refName, {}).get("figures")
        if not ref:
            continue
        for name, res in results.items():
            figs = res.get("figures")
            if not figs:
                continue
            out = {}
            for key, (_, _, better, minDen) in FIGURES.items():
                if better is None or key not in figs or ref.get(key) is None or figs[key] is None:
                    continue
                if abs(ref[key]) < minDen:
                    continue
                out[key] = figs[key] / ref[key]
            ratios[refKey][name] = out
    return ratios


# --- output ----------------------------------------------------------------


def formatTable(headers, rows):
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    out = []
    for n, r in enumerate([headers] + rows):
        cells = [
            str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(r)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def renderReport(results, order):
    lines = []
    for heading, cols in TABLES:
        headers = ["row"] + [c[1] for c in cols]
        body = []
        for name in order:
            res = results[name]
            if not res.get("available"):
                body.append([ROW_TITLES[name]] + ["-"] * len(cols))
                continue
            figs = res["figures"]
            body.append(
                [ROW_TITLES[name]]
                + [fmt.format(figs[k]) if figs.get(k) is not None else "-" for k, _, fmt in cols]
            )
        lines += [heading, formatTable(headers, body), ""]
    ratios = results.get("_ratios", {})
    for refKey, heading in (
        ("to_direct", "Ratio to direct (no proxy) = row / direct"),
        ("to_baseline", "Ratio to twisted.web.proxy = row / twisted.web.proxy"),
    ):
        table = ratios.get(refKey) or {}
        if not table:
            continue
        headers = ["row"] + [c[1] for c in RATIO_COLUMNS]
        body = []
        for name in order:
            if name not in table:
                continue
            body.append(
                [ROW_TITLES[name]]
                + [f"{table[name][k]:.2f}" if k in table[name] else "-" for k, _ in RATIO_COLUMNS]
            )
        lines += [
            heading + " (req/s, MiB/s: higher is better; latency, CPU, RSS: lower)",
            formatTable(headers, body),
            "",
        ]
    for name in order:
        runs = [d for rs in results[name].get("detail", {}).get("wrk", {}).values() for d in rs]
        proxyBusy = max((d["foreign_cpu_pct"] for d in runs), default=0) if name != "direct" else 0
        loadBusy = max((d["foreign_load_cpu_pct"] for d in runs), default=0)
        if proxyBusy > 10 or loadBusy > 10:
            lines.append(
                f"warning: during {ROW_TITLES[name]}'s wrk runs other processes used up to "
                f"{proxyBusy:.0f}% of CPU {PROXY_CPU} (proxy) and {loadBusy:.0f}% of CPU "
                f"{LOAD_CPU} (load); its figures may be low"
            )
    missing = [(n, results[n]["reason"]) for n in order if not results[n].get("available")]
    for name, reason in missing:
        lines.append(f"{ROW_TITLES[name]}: {reason}")
    return "\n".join(lines).rstrip() + "\n"


# --- main ------------------------------------------------------------------


def parseArgs(argv):
    p = argparse.ArgumentParser(
        description=(
            "Benchmark twisted-proxy on loopback against the direct path, "
            "twisted.web.proxy and (with --peers) tinyproxy, squid and proxy.py."
        ),
        epilog="Rows: " + ", ".join(ROWS) + ". See bench/README.rst.",
    )
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    p.add_argument(
        "--repeats", type=int, default=3, help="runs per figure; the median is reported (default 3)"
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke test: --duration 2 --repeats 1 --warmup 1"
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="seconds of untimed wrk before the timed runs (default 2)",
    )
    p.add_argument("--peers", action="store_true", help="also run tinyproxy, squid and proxy.py")
    p.add_argument(
        "--workers",
        action="store_true",
        help="add the workers table: (a) and (c) through --workers 1 and --workers 2, "
        "nothing pinned (about 3 minutes with the default duration)",
    )
    p.add_argument(
        "--cache",
        action="store_true",
        help="also run twisted-proxy-cache: the default configuration, every request a "
        "cache hit (bench/cache_bench.py compares hits with misses)",
    )
    p.add_argument(
        "--only", metavar="ROW[,ROW]", help="run only these rows (" + ", ".join(ROWS) + ")"
    )
    p.add_argument(
        "--json",
        metavar="PATH",
        help="write results as JSON here (default bench/results/bench-YYYYmmdd-HHMMSS.json)",
    )
    p.add_argument(
        "--connections", type=int, default=1000, help="connections for (e) (default 1000)"
    )
    p.add_argument(
        "--wrk-threads", type=int, default=1, help="wrk threads (default 1; all on the load CPU)"
    )
    p.add_argument(
        "--proxypy-venv",
        default=os.path.join(HERE, "results", "venv-proxypy"),
        help="virtualenv holding proxy.py (created if missing; default bench/results/venv-proxypy)",
    )
    p.add_argument("--no-install", action="store_true", help="never create the proxy.py venv")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=20,
        help="before each timed run, wait up to this many seconds for other processes "
        "to use less than 10%% of each CPU (default 20; 0 disables)",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (configs, logs)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.repeats, args.warmup = 2, 1, 1
    if args.duration < 1 or args.repeats < 1:
        p.error("--duration and --repeats must be >= 1")
    if args.only:
        rows = []
        for name in args.only.split(","):
            name = ALIASES.get(name.strip(), name.strip())
            if name not in ROWS:
                p.error(f"unknown row {name!r}; rows: {', '.join(ROWS)}")
            rows.append(name)
        args.rows = [r for r in ROWS if r in rows]
    else:
        rows = DEFAULT_ROWS + (["twisted-proxy-cache"] if args.cache else [])
        rows += PEERS if args.peers else []
        args.rows = [r for r in ROWS if r in rows]
    return args


def checkPrerequisites():
    missing = [t for t in ("nginx", "wrk", "curl", "taskset") if shutil.which(t) is None]
    if missing:
        print(f"missing: {', '.join(missing)}\ninstall with: {APT_HINT}", file=sys.stderr)
        raise SystemExit(2)
    if (os.cpu_count() or 1) < 2:
        print("warning: fewer than 2 CPUs; proxy and load cannot be pinned apart", file=sys.stderr)


def machineInfo():
    return {
        "cpus": os.cpu_count(),
        "cpu_model": next(
            (
                line.split(":", 1)[1].strip()
                for line in open("/proc/cpuinfo")
                if line.startswith("model name")
            ),
            None,
        ),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": toolVersion(["nginx", "-v"], r"nginx/([\d.]+)"),
        "wrk": toolVersion(["wrk", "--version"], r"wrk (\S+)"),
        "curl": toolVersion(["curl", "--version"], r"curl ([\d.]+)"),
        "loadavg_at_end": open("/proc/loadavg").read().split()[:3],
    }


def main(argv=None):
    args = parseArgs(sys.argv[1:] if argv is None else argv)
    checkPrerequisites()
    benchlib.raiseFileLimit()
    benchlib.sigtermAsInterrupt()
    if not benchlib.pinSelf(LOAD_CPU):
        log("warning: could not pin the harness to CPU 1")
    jsonPath = args.json or os.path.join(HERE, "results", time.strftime("bench-%Y%m%d-%H%M%S.json"))
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    loadStart = open("/proc/loadavg").read().split()[:3]
    workdir = tempfile.mkdtemp(prefix="twisted-proxy-bench-")
    os.chmod(workdir, 0o755)
    procs = benchlib.Processes()
    results = {}
    workers = None
    try:
        origin = Origin(procs, workdir)
        origin.start()
        assert origin.proc is not None
        log(f"origin: nginx on {origin.hostport} (pid {origin.proc.pid}), workdir {workdir}")
        ctx = Context(args, procs, workdir, origin)
        for name in args.rows:
            row = ROW_CLASSES[name](ctx)
            log(f"row {row.title}")
            try:
                row.check()
                row.start()
                res = measureRow(ctx, row)
                res.update(available=True, command=row.command, version=row.version)
            except RowUnavailable as e:
                log(f"  {row.title}: {e}")
                res = {"available": False, "reason": str(e), "version": row.version}
            except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
                log(f"  {row.title}: failed: {e}")
                res = {"available": False, "reason": f"failed: {e}", "version": row.version}
            finally:
                row.stop()
            results[name] = res
        if args.workers:
            workers = measureWorkers(ctx)
    finally:
        procs.stopAll()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    ratios = computeRatios(results)
    results["_ratios"] = ratios
    report = renderReport(results, args.rows)
    if workers is not None:
        report += "\n" + renderWorkers(workers) + "\n"
    settings = {k: v for k, v in vars(args).items()}
    doc = {
        "schema": 1,
        "started": started,
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": [
            os.path.relpath(sys.argv[0], REPO) if sys.argv[0].startswith(REPO) else sys.argv[0]
        ]
        + sys.argv[1:],
        "settings": settings,
        "machine": {**machineInfo(), "loadavg_at_start": loadStart},
        "pinning": {"proxy_cpu": PROXY_CPU, "load_cpu": LOAD_CPU},
        "figures": {k: {"title": t, "unit": u, "better": b} for k, (t, u, b, _) in FIGURES.items()},
        "rows": {k: v for k, v in results.items() if not k.startswith("_")},
        "workers": workers,
        "ratios": ratios,
        "report": report,
    }
    os.makedirs(os.path.dirname(os.path.abspath(jsonPath)), exist_ok=True)
    with open(jsonPath, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    print()
    print(report)
    print(f"JSON: {jsonPath}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
