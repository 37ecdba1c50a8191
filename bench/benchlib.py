"""Shared helpers for the scripts in bench/ (stdlib only).

Processes: every process a bench script starts is a L{Managed} object that
remembers its PID (and its descendants' PIDs, with their start times, so a
recycled PID is never signalled) and is stopped by PID, SIGTERM first and
SIGKILL after a grace period.  Nothing here signals a process by name.

Memory and CPU: read from /proc/PID/status (VmRSS, VmHWM) and /proc/PID/stat
(utime + stime), summed over the process and its descendants, so multi-process
servers (nginx master + worker, proxy.py main + acceptor) are counted whole.

Addresses: loopback only; nothing here resolves a name.
"""

import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

LOOPBACK = "127.0.0.1"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- ports -----------------------------------------------------------------


def freePort():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def waitForPort(port, timeout=15.0, proc=None):
    """Wait until 127.0.0.1:port accepts a connection; False on timeout or if
    C{proc} (a L{Managed}) exited meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            return False
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# --- /proc -----------------------------------------------------------------


def _startTime(pid):
    """Field 22 of /proc/PID/stat (start time in ticks), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after ")" are fixed.
    rest = data[data.rindex(b")") + 2 :].split()
    return int(rest[19])


def children(pid):
    """Direct children of pid (all threads)."""
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return kids


def processTree(pid):
    """pid and all its descendants, bounded at 10,000 entries."""
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 10000:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def readStatus(pid):
    """{'VmRSS': KiB, 'VmHWM': KiB} for one process, or {} if it is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def treeMemory(pid):
    """(VmRSS, VmHWM) in KiB summed over pid's process tree."""
    rss = hwm = 0
    for p in processTree(pid):
        st = readStatus(p)
        rss += st.get("VmRSS", 0)
        hwm += st.get("VmHWM", 0)
    return rss, hwm


def cpuSeconds(pid):
    """utime + stime of one process, in seconds (0.0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0.0
    rest = data[data.rindex(b")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def treeCpu(pid):
    """utime + stime summed over pid's process tree, in seconds."""
    return sum(cpuSeconds(p) for p in processTree(pid))


def cpuBusy(cpu):
    """Seconds one CPU spent running processes (user + nice + system) since
    boot, from /proc/stat.  Interrupt and softirq time is left out: loopback
    networking is accounted there and belongs to whoever sends the packets."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                # user nice system idle iowait irq softirq steal ...
                return (v[0] + v[1] + v[2]) / CLK_TCK
    return 0.0


def waitForQuietCpus(cpus, limit=10.0, timeout=60.0, probe=0.5, say=print):
    """Wait (at most timeout seconds) until other processes use less than
    limit percent of each CPU in cpus, measured over probe seconds.  Call it
    only while nothing of ours is busy.  Returns the last measured percents."""
    deadline = time.monotonic() + timeout
    waited = False
    while True:
        b0 = [cpuBusy(c) for c in cpus]
        time.sleep(probe)
        pcts = [(cpuBusy(c) - b) * 100 / probe for c, b in zip(cpus, b0, strict=True)]
        shown = ", ".join(f"CPU {c} {p:.0f}%" for c, p in zip(cpus, pcts, strict=True))
        if max(pcts) < limit or time.monotonic() >= deadline:
            if waited:
                say(f"  other processes: {shown}; going on")
            return pcts
        if not waited:
            say(f"  busy with other processes ({shown}); waiting up to {timeout:.0f} s")
            waited = True
        time.sleep(1.0)


def addQuietArgument(parser, default=20.0):
    """--quiet-wait S, for scripts that call L{waitQuiet} before timed runs."""
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=default,
        metavar="S",
        help="before each timed run, wait up to S seconds until other processes use less "
        f"than 10%% of each CPU (default {default:g}; 0 disables)",
    )


def waitQuiet(args, say=print):
    """Wait as --quiet-wait says (all CPUs this process may use); returns
    the percent of each CPU other processes used, or None if disabled."""
    if not args.quiet_wait or args.quiet_wait <= 0:
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return waitForQuietCpus(cpus, timeout=args.quiet_wait, say=say)


def resetPeak(pid):
    """Reset VmHWM of pid's tree to the current RSS (root, Linux >= 4.0).

    Returns True if every write worked."""
    ok = True
    for p in processTree(pid):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


class RssSampler:
    """Samples the tree RSS of a PID every C{interval} seconds in a thread.

    Use as a context manager; afterwards C{samples} is a list of
    (seconds since start, rss KiB, hwm KiB), C{peak} the largest rss seen."""

    def __init__(self, pid, interval=0.1, onSample=None):
        self.pid = pid
        self.interval = interval
        self.onSample = onSample
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        t0 = time.monotonic()
        while True:
            rss, hwm = treeMemory(self.pid)
            sample = (time.monotonic() - t0, rss, hwm)
            self.samples.append(sample)
            if self.onSample is not None:
                self.onSample(sample)
            if self._stop.wait(self.interval):
                return

    @property
    def peak(self):
        return max((s[1] for s in self.samples), default=0)

    @property
    def peakHwm(self):
        return max((s[2] for s in self.samples), default=0)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        rss, hwm = treeMemory(self.pid)
        self.samples.append((self.samples[-1][0] if self.samples else 0.0, rss, hwm))
        return False


# --- processes -------------------------------------------------------------


def raiseFileLimit():
    """Raise RLIMIT_NOFILE to its hard limit (1000 connections need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pinSelf(cpu):
    """Pin this (harness) process to one CPU if the machine has it."""
    try:
        if cpu in os.sched_getaffinity(0):
            os.sched_setaffinity(0, {cpu})
            return True
    except (AttributeError, OSError):
        pass
    return False


def pinPrefix(cpu):
    """['taskset', '-c', N] if taskset exists and the CPU does, else [].
    C{cpu} is one CPU number or a tuple of them (e.g. (0, 1): both CPUs,
    for a process that must not inherit the harness's own pinning)."""
    if cpu is None or shutil.which("taskset") is None:
        return []
    cpus = cpu if isinstance(cpu, tuple) else (cpu,)
    if any(c not in os.sched_getaffinity(0) and c >= os.cpu_count() for c in cpus):
        return []
    return ["taskset", "-c", ",".join(str(c) for c in cpus)]


class Managed:
    """A process we started; stopped by its own PID (and its recorded
    descendants), never by name."""

    def __init__(self, name, argv, logPath, cpu=None, env=None, cwd=None):
        self.name = name
        self.argv = pinPrefix(cpu) + list(argv)
        self.logPath = logPath
        self._log = open(logPath, "ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            # Own session: a Ctrl-C in the terminal reaches only the harness,
            # which then stops everything in its finally blocks, in order.
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self._known = {}  # pid -> start time, descendants seen while running

    def alive(self):
        return self.proc.poll() is None

    def remember(self):
        """Record the current descendants (called before stopping and by
        samplers), so that a child the parent leaves behind is still ours."""
        for p in processTree(self.pid):
            if p != self.pid and p not in self._known:
                st = _startTime(p)
                if st is not None:
                    self._known[p] = st

    def logTail(self, n=15):
        try:
            with open(self.logPath, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def stop(self, grace=5.0):
        """SIGTERM the PID, wait, SIGKILL if needed; then any recorded
        descendant still alive (same PID and start time) gets the same."""
        if self.alive():
            self.remember()
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    print(f"warning: {self.name} pid {self.pid} did not exit", file=sys.stderr)
        for pid, start in self._known.items():
            deadline = time.monotonic() + grace
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if _startTime(pid) != start:
                    break
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                while time.monotonic() < deadline and _startTime(pid) == start:
                    time.sleep(0.05)
                deadline = time.monotonic() + grace
        self._log.close()


class Processes:
    """All processes a run started, stopped in reverse order by stopAll()."""

    def __init__(self):
        self.items = []

    def start(self, *args, **kwargs):
        m = Managed(*args, **kwargs)
        self.items.append(m)
        return m

    def stop(self, m):
        m.stop()
        if m in self.items:
            self.items.remove(m)

    def stopAll(self):
        while self.items:
            self.stop(self.items[-1])


def sigtermAsInterrupt():
    """Make SIGTERM unwind like Ctrl-C, so finally blocks stop our children."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


# --- twisted-proxy ---------------------------------------------------------


def proxyEnv():
    """Environment for running twistd from this checkout: the repo root on
    PYTHONPATH (what an editable install's .pth does), so Twisted's plugin
    loader finds twisted/plugins/twisted_proxy_plugin.py."""
    env = dict(os.environ)
    parts = [REPO] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def twistedProxyStatus(timeout=60):
    """(available, reason, helpText) for `twistd proxyserver`."""
    twistd = shutil.which("twistd")
    if twistd is None:
        return False, "twistd not found (pip install Twisted)", ""
    try:
        out = subprocess.run(
            [twistd, "proxyserver", "--help"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=proxyEnv(),
            cwd=REPO,
        )
    except subprocess.TimeoutExpired:
        return False, "`twistd proxyserver --help` timed out", ""
    text = out.stdout + out.stderr
    if out.returncode != 0 or "--listen" not in text:
        last = text.strip().splitlines()[-1:] or [""]
        return False, f"`twistd proxyserver --help` failed: {last[0][:120]}", text
    return True, "", text


def twistedProxyArgv(port, logFile, helpText=None, extra=()):
    """The documented way to start twisted-proxy on 127.0.0.1:port, with its
    defaults (no per-address connection limit: 1000 connections from
    127.0.0.1 are served as Squid serves them).  C{extra} is appended
    (proxyserver options)."""
    argv = [
        shutil.which("twistd") or "twistd",
        "-n",
        "--pidfile=",
        "-l",
        logFile,
        "proxyserver",
        "--listen",
        f"tcp:{port}:interface={LOOPBACK}",
    ]
    if helpText and "--workers" in helpText:
        argv += ["--workers", "1"]
    return argv + list(extra)


def formatArgv(argv):
    return " ".join(shlex.quote(a) for a in argv)


# --- statistics ------------------------------------------------------------


def percentile(values, pct):
    """Nearest-rank percentile: the ceil(pct/100 * n)-th smallest value
    (so p99 of 200 values is the 198th).  None for no values."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    rank = max(1, -(-len(values) * pct // 100))
    return values[int(rank) - 1]


def median(values):
    """The median (mean of the two middle values for an even count), or None."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    n = len(values)
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2


def summarize(values):
    """{'n', 'mean', 'p50', 'p99', 'max'} of a list of numbers (None if empty)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p99": None, "max": None}
    return {
        "n": len(values),
        "mean": sum(values) / len(values),
        "p50": median(values),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def textTable(headers, rows, left=1):
    """A plain-text table; the first C{left} columns left-aligned, the rest
    right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]

    def line(cells):
        return "  ".join(
            str(c).ljust(w) if i < left else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


# --- addresses -------------------------------------------------------------


def loopbackHostPort(text):
    """argparse type: 'HOST:PORT' where HOST is a loopback address or
    'localhost' (taken as 127.0.0.1; never resolved).  Returns (host, port)."""
    import argparse
    import ipaddress

    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if host == "localhost":
        host = LOOPBACK
    try:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError
        portNumber = int(port)
        if not 0 < portNumber < 65536:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a loopback HOST:PORT, e.g. 127.0.0.1:3128"
        ) from None
    return host, portNumber


# --- HTTP over blocking sockets --------------------------------------------


class Response:
    """What L{readResponse} read: C{status}, C{headers} (lower-case name ->
    value, bytes), C{bodyLength}, C{close} (the connection ends after it)."""

    def __init__(self, status, headers, bodyLength, close):
        self.status = status
        self.headers = headers
        self.bodyLength = bodyLength
        self.close = close


def readResponse(sock, deadline, head=False):
    """Read one HTTP/1.x response from a blocking socket, body included
    (Content-Length, chunked, or up to the close).  Interim 1xx responses
    are skipped.  Raises OSError (including socket.timeout at C{deadline},
    a time.monotonic() value) or ValueError (malformed or cut short)."""
    buf = bytearray()

    def more():
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        data = sock.recv(65536)
        if not data:
            raise ValueError("the connection closed before the response was complete")
        buf.extend(data)

    while True:
        while b"\r\n\r\n" not in buf:
            if len(buf) > 262144:
                raise ValueError("response head larger than 256 KiB")
            more()
        end = buf.index(b"\r\n\r\n")
        lines = bytes(buf[:end]).split(b"\r\n")
        del buf[: end + 4]
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(parts[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = headers[name] + b", " + value if name in headers else value
        if 100 <= status < 200 and status != 101:
            continue
        break
    close = b"close" in headers.get(b"connection", b"").lower() or parts[0] == b"HTTP/1.0"
    if head or status in (204, 304) or status == 101:
        return Response(status, headers, 0, close)
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        total = 0
        while True:
            while b"\r\n" not in buf:
                more()
            end = buf.index(b"\r\n")
            size = int(bytes(buf[:end]).split(b";")[0], 16)
            del buf[: end + 2]
            if size == 0:
                while b"\r\n" not in buf:
                    more()
                while not buf.startswith(b"\r\n"):  # trailer fields
                    end = buf.index(b"\r\n")
                    del buf[: end + 2]
                    while b"\r\n" not in buf:
                        more()
                return Response(status, headers, total, close)
            while len(buf) < size + 2:
                more()
            del buf[: size + 2]
            total += size
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        got = len(buf)
        while got < length:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            data = sock.recv(min(1 << 20, length - got))
            if not data:
                raise ValueError(f"the connection closed after {got} of {length} body bytes")
            got += len(data)
        return Response(status, headers, length, close)
    got = len(buf)
    while True:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        data = sock.recv(1 << 20)
        if not data:
            return Response(status, headers, got, True)
        got += len(data)


def getRequest(target, host, extra=()):
    """A GET request head: target as given (absolute-form through a proxy)."""
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", "User-Agent: twisted-proxy-bench"]
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


# --- the benchmark origin (bench/origin.py) --------------------------------


def startOrigin(procs, workdir, name="origin"):
    """Start bench/origin.py on a free port; returns (port, Managed)."""
    port = freePort()
    argv = [sys.executable, os.path.join(HERE, "origin.py"), "--port", str(port)]
    m = procs.start(name, argv, os.path.join(workdir, f"{name}.log"))
    if not waitForPort(port, 15, m):
        raise SystemExit(f"bench/origin.py did not start: {m.logTail()}")
    return port, m


# --- the proxy under test --------------------------------------------------


def addProxyArguments(parser):
    """--proxy HOST:PORT | --proxy-cmd CMD, shared by the scripts that
    measure one proxy (latency.py, burst.py)."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument(
        "--proxy",
        type=loopbackHostPort,
        metavar="HOST:PORT",
        help="measure an already running proxy on loopback (e.g. Squid) as it is",
    )
    g.add_argument(
        "--proxy-cmd",
        metavar="CMD",
        help="start the proxy on a free port: 'default' (twisted-proxy from this checkout "
        "with its default options: twistd -n proxyserver --listen "
        "tcp:PORT:interface=127.0.0.1), 'squid' (Squid with bench/run_bench.py's "
        "configuration), or a command line in which {port} and {log} are replaced. "
        "Default: 'default'",
    )


class ProxyUnderTest:
    """Where the proxy listens, and (if we started it) its process."""

    def __init__(self, host, port, desc, proc=None, logFile=None):
        self.host = host
        self.port = port
        self.desc = desc
        self.proc = proc
        self.logFile = logFile

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    @property
    def address(self):
        return (self.host, self.port)


def startProxy(args, procs, workdir, extra=()):
    """Start (or adopt, with --proxy) the proxy that args name.

    C{extra}: proxyserver options added to the 'default' command.  Raises
    SystemExit with a one-line reason if it cannot be started."""
    if args.proxy is not None:
        host, port = args.proxy
        if not waitForPort(port, 2):
            raise SystemExit(f"nothing accepts connections on {host}:{port}; start the proxy first")
        return ProxyUnderTest(host, port, f"{host}:{port} (already running)")
    cmd = args.proxy_cmd or "default"
    port = freePort()
    logFile = os.path.join(workdir, "proxy.log")
    env, cwd = None, workdir
    if cmd == "default":
        ok, reason, helpText = twistedProxyStatus()
        if not ok:
            raise SystemExit(f"twisted-proxy is not available: {reason}")
        argv = twistedProxyArgv(port, logFile, helpText, extra=extra)
        env = proxyEnv()
    elif cmd == "squid":
        if shutil.which("squid") is None:
            raise SystemExit("squid is not installed: apt-get install -y squid")
        from run_bench import SQUID_CONF

        prefix = os.path.join(workdir, "squid")
        os.makedirs(prefix, exist_ok=True)
        # squid drops privileges (to "proxy") and logs here: it must be able
        # to reach the prefix through the (mkdtemp, 0700) work directory.
        os.chmod(workdir, 0o755)
        os.chmod(prefix, 0o777)
        conf = os.path.join(prefix, "squid.conf")
        with open(conf, "w") as f:
            f.write(SQUID_CONF.format(port=port, host=LOOPBACK, prefix=prefix))
        argv = ["squid", "-N", "-f", conf]
        logFile = os.path.join(prefix, "cache.log")
    else:
        argv = [a.format(port=port, log=logFile) for a in shlex.split(cmd)]
    m = procs.start("proxy", argv, os.path.join(workdir, "proxy-stdout.log"), env=env, cwd=cwd)
    if not waitForPort(port, 30, m):
        code = m.proc.poll()
        tail = m.logTail(5).replace("\n", " | ") or "no output"
        procs.stop(m)
        how = (
            f"it exited with status {code}" if code is not None else "it did not listen within 30 s"
        )
        raise SystemExit(
            f"the proxy did not start on port {port} ({how}): {formatArgv(argv)}: {tail}"
        )
    m.remember()
    return ProxyUnderTest(LOOPBACK, port, f"{formatArgv(argv)} (pid {m.pid})", m, logFile)


def listenBacklog(port):
    """The backlog of the socket listening on TCP port (Send-Q of its
    `ss -ltn` line), or None if ss is missing or shows no such socket."""
    if shutil.which("ss") is None:
        return None
    try:
        out = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == "LISTEN":
            return int(fields[2])
    return None
