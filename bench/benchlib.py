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
    kids = []
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
    out, todo = [], [pid]
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
        pcts = [(cpuBusy(c) - b) * 100 / probe for c, b in zip(cpus, b0)]
        shown = ", ".join(f"CPU {c} {p:.0f}%" for c, p in zip(cpus, pcts))
        if max(pcts) < limit or time.monotonic() >= deadline:
            if waited:
                say(f"  other processes: {shown}; going on")
            return pcts
        if not waited:
            say(f"  busy with other processes ({shown}); waiting up to {timeout:.0f} s")
            waited = True
        time.sleep(1.0)


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
    """['taskset', '-c', N] if taskset exists and the CPU does, else []."""
    if cpu is None or shutil.which("taskset") is None:
        return []
    if cpu not in os.sched_getaffinity(0) and cpu >= os.cpu_count():
        return []
    return ["taskset", "-c", str(cpu)]


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


def twistedProxyArgv(port, logFile, helpText=None):
    """The documented way to start twisted-proxy on 127.0.0.1:port."""
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
    if helpText and "--max-connections-per-client" in helpText:
        # Every benchmark client is 127.0.0.1; the default per-client cap
        # (256) would refuse most of figure (e)'s 1000 connections.  The
        # peers get the same room (tinyproxy MaxClients, squid descriptors).
        argv += ["--max-connections-per-client", "4096"]
    return argv


def formatArgv(argv):
    return " ".join(shlex.quote(a) for a in argv)
