#!/usr/bin/env python3
"""
Byte-level fuzz driver for twisted-proxy (Python 3.11 stdlib only).

Throws valid, mutated and random traffic at a proxy over loopback for a
bounded time and checks that the proxy stays up, answers a health request
every second, never emits anything but well-formed HTTP/1.1 responses (or a
close), never hangs past its own timeouts, never answers for a request the
origin did not receive, never lets a smuggled request through, and that its
RSS and file descriptors stay bounded.

    python3 bench/fuzz_proxy.py --duration 60 --seed 1
    python3 bench/fuzz_proxy.py --proxy 127.0.0.1:8080 --pid 1234 --hang-deadline 70

Everything it starts (origin, echo server, proxy) is stopped by PID in a
finally block, also on Ctrl-C.  Output goes to a directory under /tmp.
See bench/FAULTS.rst.

The module also holds the servers and helpers bench/soak.py uses:
``python3 bench/fuzz_proxy.py --serve origin|echo|slow --port P [--log F]``.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import itertools
import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from typing import Any

# Shared with run_bench.py (bench/ is on sys.path: these scripts run from it).
from benchlib import freePort as free_port, waitForPort

LOOPBACK = "127.0.0.1"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


# --------------------------------------------------------------------------
# processes and measurements


def wait_port(port: int, timeout: float = 20.0, proc: Managed | None = None) -> bool:
    return waitForPort(port, timeout, proc)


class Managed:
    """
    A child process we started, signalled only by its own PID (we never
    wait() it before stopping it, so the PID cannot have been recycled).
    """

    def __init__(self, name: str, argv: list[str], logpath: str, cwd: str | None = None):
        self.name = name
        self.argv = argv
        self.logpath = logpath
        self._log = open(logpath, "ab")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,  # Ctrl-C reaches us only; we stop it
        )
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, grace: float = 5.0) -> int | None:
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill9()
            except ProcessLookupError:
                pass
        self._log.close()
        return self.proc.returncode


def rss_kib(pid: int) -> int | None:
    try:
        with open("/proc/{}/status".format(pid)) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir("/proc/{}/fd".format(pid)))
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            return f.read().split(") ")[-1][:1] not in ("Z", "X")
    except OSError:
        return False


def proxy_argv(port: int, logfile: str, extra: list[str]) -> list[str]:
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    if not os.path.exists(twistd):
        twistd = "twistd"
    return [
        twistd,
        "-n",
        "--pidfile=",
        "-l",
        logfile,
        "proxyserver",
        "--listen",
        "tcp:{}:interface={}".format(port, LOOPBACK),
        "--connect-ports",
        "*",
    ] + extra


def start_server(kind: str, port: int, workdir: str, log: str | None = None) -> Managed:
    argv = [sys.executable, os.path.abspath(__file__), "--serve", kind, "--port", str(port)]
    if log:
        argv += ["--log", log]
    m = Managed(kind, argv, os.path.join(workdir, "{}-{}.out".format(kind, port)), cwd=workdir)
    if not wait_port(port, 15, m):
        m.stop()
        raise RuntimeError("{} server did not start on {}".format(kind, port))
    return m


# --------------------------------------------------------------------------
# servers: origin, echo, slow origin (run as child processes)

ORIGIN_SOCKET_TIMEOUT = 20.0
_ID = re.compile(rb"/r/([0-9A-Za-z]{1,40})/([a-z]+)")


def pattern_unit(fid: bytes) -> bytes:
    return fid + b"."


def pattern_block(fid: bytes, size: int = 65536) -> bytes:
    unit = pattern_unit(fid)
    return unit * max(1, size // len(unit))


def pattern_bytes(fid: bytes, n: int) -> bytes:
    unit = pattern_unit(fid)
    return (unit * (n // len(unit) + 1))[:n]


def pattern_crc(fid: bytes, n: int) -> int:
    block = pattern_block(fid)
    crc = 0
    while n >= len(block):
        crc = zlib.crc32(block, crc)
        n -= len(block)
    return zlib.crc32(block[:n], crc)


class _Reader:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()

    def fill(self) -> bool:
        d = self.sock.recv(262144)
        if not d:
            return False
        self.buf += d
        return True

    def head(self, limit: int = 131072) -> bytes | None:
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                h = bytes(self.buf[:i])
                del self.buf[: i + 4]
                return h
            if len(self.buf) > limit:
                raise ValueError("head too long")
            if not self.fill():
                if self.buf:
                    raise ValueError("eof in head")
                return None

    def line(self, limit: int = 4096) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                h = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return h
            if len(self.buf) > limit:
                raise ValueError("line too long")
            if not self.fill():
                raise ValueError("eof in line")

    def exact(self, n: int, sink) -> None:
        while n:
            if not self.buf and not self.fill():
                raise ValueError("eof in body")
            take = min(n, len(self.buf))
            sink(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take


def _respond(sock, status: int, headers: list[tuple[str, str]], body: bytes = b"") -> None:
    reason = {
        200: "OK",
        201: "Created",
        204: "No Content",
        301: "Moved Permanently",
        400: "Bad Request",
        404: "Not Found",
        431: "Too Large",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }.get(status, "Whatever")
    head = (
        "HTTP/1.1 {} {}\r\n".format(status, reason)
        + "".join("{}: {}\r\n".format(n, v) for n, v in headers)
        + "\r\n"
    )
    sock.sendall(head.encode("latin-1") + body)


class _BodyDigest:
    """
    The SHA-1 and length of one request body, fed piece by piece (a fresh one
    per request on a kept-alive connection).
    """

    def __init__(self) -> None:
        self.sha = hashlib.sha1()
        self.length = 0

    def __call__(self, data: bytes) -> None:
        self.sha.update(data)
        self.length += len(data)


def origin_connection(sock: socket.socket, logf, lock: threading.Lock) -> None:
    sock.settimeout(ORIGIN_SOCKET_TIMEOUT)
    r = _Reader(sock)
    while True:
        try:
            head = r.head()
        except ValueError:
            _respond(sock, 400, [("Content-Length", "0"), ("Connection", "close")])
            return
        if head is None:
            return
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            _respond(sock, 400, [("Content-Length", "0"), ("Connection", "close")])
            return
        method, target, version = parts
        fields: dict[bytes, list[bytes]] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                _respond(sock, 400, [("Content-Length", "0"), ("Connection", "close")])
                return
            fields.setdefault(name.strip().lower(), []).append(value.strip())
        sink = _BodyDigest()
        try:
            te = b",".join(fields.get(b"transfer-encoding", [])).lower()
            if te:
                if not te.replace(b" ", b"").endswith(b"chunked"):
                    raise ValueError("te")
                while True:
                    size = int(r.line().split(b";")[0].strip(), 16)
                    if size < 0:
                        raise ValueError("neg")
                    if size == 0:
                        while r.line(65536):
                            pass
                        break
                    r.exact(size, sink)
                    if r.line() != b"":
                        raise ValueError("chunk end")
            elif b"content-length" in fields:
                cl = fields[b"content-length"]
                if len(set(cl)) != 1:
                    raise ValueError("cl")
                r.exact(int(cl[0]), sink)
        except (ValueError, OverflowError):
            _respond(sock, 400, [("Content-Length", "0"), ("Connection", "close")])
            return
        conn = b",".join(fields.get(b"connection", [])).lower()
        keep = (version == b"HTTP/1.1" and b"close" not in conn) or (
            version == b"HTTP/1.0" and b"keep-alive" in conn
        )
        m = _ID.search(target)
        fid, kind = (m.group(1), m.group(2).decode()) if m else (b"none", "cl")
        if target.split(b"?")[0].endswith(b"/health"):
            fid, kind = b"health", "health"
        with lock:
            logf.write(fid + b" " + method[:20].replace(b"\n", b"?") + b"\n")
            logf.flush()
        q = {}
        if b"?" in target:
            for kv in target.split(b"?", 1)[1].split(b"&"):
                k, _, v = kv.partition(b"=")
                q[k] = v
        try:
            n = min(int(q.get(b"n", b"0")), 256 << 20)
        except ValueError:
            n = 0
        try:
            code = int(q.get(b"code", b"200"))
            if not 200 <= code <= 599:
                code = 200
        except ValueError:
            code = 200
        hdrs = [
            ("X-Fuzz-Id", fid.decode()),
            ("X-Req-Body-Len", str(sink.length)),
            ("X-Req-Body-Sha1", sink.sha.hexdigest()),
        ]
        if kind == "health":
            _respond(sock, 200, hdrs + [("Content-Length", "3")], b"ok\n")
        elif kind == "echo":
            body = "{} {}\n".format(sink.length, sink.sha.hexdigest()).encode()
            _respond(
                sock,
                200,
                hdrs + [("X-Body-Kind", "echo"), ("Content-Length", str(len(body)))],
                body,
            )
        elif kind == "chunked":
            _respond(
                sock, 200, hdrs + [("X-Body-Kind", "pattern"), ("Transfer-Encoding", "chunked")]
            )
            data = pattern_bytes(fid, n)
            step = 1000
            for i in range(0, len(data), step):
                piece = data[i : i + step]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        elif kind == "close":
            _respond(
                sock,
                200,
                hdrs + [("X-Body-Kind", "pattern"), ("Connection", "close")],
                pattern_bytes(fid, n),
            )
            sock.shutdown(socket.SHUT_WR)
            return
        elif kind == "die":
            # head, half the body, then a reset: the proxy must abort the client
            _respond(sock, 200, hdrs + [("X-Body-Kind", "pattern"), ("Content-Length", str(n))])
            sock.sendall(pattern_bytes(fid, n // 2))
            time.sleep(0.05)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        elif method == b"HEAD":
            _respond(sock, code, hdrs + [("Content-Length", str(n))])
        elif code in (204, 304):
            _respond(sock, code, hdrs)
        else:
            _respond(sock, code, hdrs + [("X-Body-Kind", "pattern"), ("Content-Length", str(n))])
            if n <= 65536:
                sock.sendall(pattern_bytes(fid, n))
            else:
                block = pattern_block(fid)
                left = n
                while left:
                    piece = block[: min(left, len(block))]
                    sock.sendall(piece)
                    left -= len(piece)
        if not keep:
            return


def echo_connection(sock: socket.socket) -> None:
    sock.settimeout(60)
    while True:
        d = sock.recv(65536)
        if not d:
            sock.shutdown(socket.SHUT_WR)
            return
        sock.sendall(d)


def slow_connection(sock: socket.socket) -> None:
    """
    The stalling origin: /stall/none sends nothing, /stall/head half a head,
    /stall/body a head and part of the body; then it waits (bounded) for the
    proxy to give up.
    """
    sock.settimeout(60)
    r = _Reader(sock)
    head = r.head()
    if head is None:
        return
    if b"/stall/head" in head:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")
    elif b"/stall/body" in head:
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nX-Fuzz-Id: slow\r\n\r\n" + b"x" * 1000
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not sock.recv(65536):
            return


def serve(kind: str, port: int, logpath: str | None) -> None:
    lock = threading.Lock()
    logf = open(logpath, "ab") if logpath else open(os.devnull, "wb")
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((LOOPBACK, port))
    ls.listen(1024)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    target = {
        "origin": lambda s: origin_connection(s, logf, lock),
        "echo": echo_connection,
        "slow": slow_connection,
    }[kind]

    def run(s: socket.socket) -> None:
        try:
            target(s)
        except (OSError, ValueError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    while True:
        s, _ = ls.accept()
        threading.Thread(target=run, args=(s,), daemon=True).start()


# --------------------------------------------------------------------------
# parsing what the proxy sends back

_STATUS = re.compile(rb"HTTP/1\.[01] ([1-9][0-9][0-9])(?: [\t -~\x80-\xff]*)?")
_FIELD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t ]*[\t -~\x80-\xff]*")


class Garbage(Exception):
    pass


class Response:
    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], raw_head: bytes):
        self.status = status
        self.headers = headers
        self.raw_head = raw_head
        self.body = b""
        self.framing = ""

    def get(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name]

    def first(self, name: bytes) -> bytes | None:
        v = self.get(name)
        return v[0] if v else None


class ResponseParser:
    """
    Incremental, strict parser for what a client reads from the proxy: a
    sequence of HTTP/1.x responses (interim ones included), then either a
    close or (after a 2xx to CONNECT / a 101) tunnel bytes.
    """

    def __init__(self, first_is_connect: bool = False, head_request: bool = False):
        self.head_request = head_request
        self.buf = bytearray()
        self.responses: list[Response] = []
        self.first_is_connect = first_is_connect
        self.tunnel = False
        self.tunnel_bytes = bytearray()
        self.error: str | None = None
        self.after_close = False

    def feed(self, data: bytes, eof: bool = False) -> None:
        if self.tunnel:
            self.tunnel_bytes += data
            return
        self.buf += data
        if self.error is None:
            try:
                self._parse(eof)
            except Garbage as e:
                self.error = str(e)

    def _parse(self, eof: bool) -> None:
        buf = self.buf
        while buf and not self.tunnel:
            if (
                self.responses
                and self.responses[-1].first(b"connection")
                and b"close" in (self.responses[-1].first(b"connection") or b"").lower()
            ):
                raise Garbage("bytes after a response with Connection: close")
            prefix = bytes(buf[:7])
            if prefix != b"HTTP/1."[: len(prefix)]:
                raise Garbage("not an HTTP response")
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                first = buf.find(b"\r\n")
                if first >= 0 and not _STATUS.fullmatch(bytes(buf[:first])):
                    raise Garbage("bad status line")
                if len(buf) > 131072:
                    raise Garbage("response head over 128 KiB")
                return
            raw = bytes(buf[:end])
            lines = raw.split(b"\r\n")
            m = _STATUS.fullmatch(lines[0])
            if not m:
                raise Garbage("bad status line")
            headers = []
            for line in lines[1:]:
                if not _FIELD.fullmatch(line):
                    raise Garbage("bad header line {!r}".format(line[:80]))
                n, _, v = line.partition(b":")
                headers.append((n, v.strip(b" \t")))
            resp = Response(int(m.group(1)), headers, raw)
            pos = end + 4
            status = resp.status
            if status == 101 or (
                self.first_is_connect and not self.responses and 200 <= status < 300
            ):
                resp.framing = "tunnel"
                self.responses.append(resp)
                self.tunnel = True
                self.tunnel_bytes += buf[pos:]
                del buf[:]
                return
            if 100 <= status < 200:
                resp.framing = "interim"
                self.responses.append(resp)
                del buf[:pos]
                continue
            te = resp.get(b"transfer-encoding")
            cl = resp.get(b"content-length")
            if te and cl:
                raise Garbage("response with both Content-Length and Transfer-Encoding")
            if len(set(cl)) > 1:
                raise Garbage("response with conflicting Content-Length")
            if status in (204, 304) or (
                self.head_request and not self.responses and status not in (400, 408, 414, 431, 505)
            ):
                resp.framing = "none"
                if cl and cl[0] != b"0" and status == 204:
                    raise Garbage("204 with a non-zero Content-Length")
            elif te:
                if te[-1].lower() != b"chunked":
                    raise Garbage("response Transfer-Encoding not chunked")
                resp.framing = "chunked"
                body = bytearray()
                p = pos
                while True:
                    e = buf.find(b"\r\n", p)
                    if e < 0:
                        if len(buf) - p > 1024:
                            raise Garbage("bad chunk size line")
                        return
                    sizeline = bytes(buf[p:e]).split(b";")[0].strip()
                    if not re.fullmatch(rb"[0-9A-Fa-f]{1,15}", sizeline):
                        raise Garbage("bad chunk size {!r}".format(sizeline[:40]))
                    size = int(sizeline, 16)
                    if size == 0:
                        # trailers until an empty line
                        q = e + 2
                        while True:
                            e2 = buf.find(b"\r\n", q)
                            if e2 < 0:
                                return
                            if e2 == q:
                                pos = e2 + 2
                                break
                            if not _FIELD.fullmatch(bytes(buf[q:e2])):
                                raise Garbage("bad trailer")
                            q = e2 + 2
                        break
                    if len(buf) < e + 2 + size + 2:
                        return
                    body += buf[e + 2 : e + 2 + size]
                    if buf[e + 2 + size : e + 4 + size] != b"\r\n":
                        raise Garbage("chunk not followed by CRLF")
                    p = e + 4 + size
                resp.body = bytes(body)
            elif cl:
                if not cl[0].isdigit():
                    raise Garbage("bad Content-Length")
                length = int(cl[0])
                if len(buf) < pos + length:
                    return
                resp.framing = "length"
                resp.body = bytes(buf[pos : pos + length])
                pos += length
            else:
                if not eof:
                    return
                resp.framing = "close"
                resp.body = bytes(buf[pos:])
                pos = len(buf)
            self.responses.append(resp)
            del buf[:pos]

    def pending(self) -> bool:
        return bool(self.buf) and not self.tunnel


# --------------------------------------------------------------------------
# request generators


class Ctx:
    def __init__(self, origin_port: int, echo_port: int):
        self.o = origin_port
        self.e = echo_port


class Case:
    """One fuzz connection: what to send and what we may expect."""

    def __init__(self, gen: str):
        self.gen = gen
        self.segments: list[bytes] = []
        self.delays: list[float] = []
        self.ids: list[str] = []  # ids in the requests, in order
        self.expect: int | None = None  # exact number of final responses (valid only)
        self.valid = False
        self.connect = False
        self.tunnel_payload = b""
        self.abort_after_send = False
        self.rst_abort = False
        self.half_close = False
        self.expect_status: set[int] | None = None
        self.forbidden_ids: list[str] = []  # must never reach the origin
        self.requests = 0
        self.echo_expect = b""  # valid CONNECT: bytes the echo server must return
        self.head_request = False  # a single HEAD: its response has no body
        self.ops = ""

    def payload(self) -> bytes:
        return b"".join(self.segments)


def _fid(rng: random.Random) -> str:
    return "%012x" % rng.getrandbits(48)


_SIZES = [0, 1, 7, 100, 1000, 4096, 20000, 70000]


def build_get(
    rng, ctx, fid, *, form="abs", version="1.1", kind=None, close=False, method="GET", extra=()
) -> bytes:
    kind = kind or rng.choice(["cl", "cl", "chunked", "close", "status"])
    n = rng.choice(_SIZES)
    path = "/r/{}/{}?n={}".format(fid, kind, n)
    if kind == "status":
        path += "&code={}".format(rng.choice([200, 201, 204, 404, 500, 503]))
    host = "127.0.0.1:{}".format(ctx.o)
    target = "http://{}{}".format(host, path) if form == "abs" else path
    lines = [
        "{} {} HTTP/{}".format(method, target, version),
        "Host: " + host,
        "User-Agent: fuzz/1",
        "Accept: */*",
    ]
    if close:
        lines.append("Connection: close")
    elif version == "1.0" and rng.random() < 0.5:
        lines.append("Connection: keep-alive")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def build_post(rng, ctx, fid, *, chunked=False, form="abs", close=False, n=None) -> bytes:
    n = rng.choice(_SIZES) if n is None else n
    body = rng.randbytes(n)
    host = "127.0.0.1:{}".format(ctx.o)
    path = "/r/{}/echo".format(fid)
    target = "http://{}{}".format(host, path) if form == "abs" else path
    lines = [
        "{} {} HTTP/1.1".format(rng.choice(["POST", "PUT", "PATCH"]), target),
        "Host: " + host,
        "Content-Type: application/octet-stream",
    ]
    if close:
        lines.append("Connection: close")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        out = bytearray()
        p = 0
        while p < len(body):
            k = rng.randint(1, 9000)
            piece = body[p : p + k]
            out += b"%x\r\n%s\r\n" % (len(piece), piece)
            p += k
        out += b"0\r\n\r\n"
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + bytes(out)
    lines.append("Content-Length: {}".format(n))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def gen_valid(rng: random.Random, ctx: Ctx, allow_head: bool = True) -> Case:
    c = Case("valid")
    c.valid = True
    choice = rng.choice(
        ["abs", "origin", "http10", "post", "chunkedpost", "connect", "pipeline", "pipeline"]
        + (["head"] if allow_head else [])
    )
    data = b""
    if choice == "connect":
        c.connect = True
        c.gen = "valid-connect"
        data = "CONNECT 127.0.0.1:{0} HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\n\r\n".format(
            ctx.e
        ).encode()
        c.tunnel_payload = b"ping " + rng.randbytes(rng.randint(1, 20000))
        c.echo_expect = c.tunnel_payload
        if rng.random() < 0.3:
            data += c.tunnel_payload  # early data, sent before the 200
            c.tunnel_payload = b""
        c.requests = c.expect = 1
        c.segments = [data]
        return c
    if choice == "pipeline":
        c.gen = "valid-pipeline"
        parts = []
        for _ in range(rng.randint(2, 8)):
            fid = _fid(rng)
            c.ids.append(fid)
            r = rng.random()
            if r < 0.6:
                parts.append(build_get(rng, ctx, fid, form=rng.choice(["abs", "origin"])))
            else:
                parts.append(build_post(rng, ctx, fid, chunked=r < 0.8))
        data = b"".join(parts)
    else:
        c.gen = "valid-" + choice
        fid = _fid(rng)
        c.ids.append(fid)
        close = rng.random() < 0.3
        if choice == "abs":
            data = build_get(rng, ctx, fid, close=close)
        elif choice == "origin":
            data = build_get(rng, ctx, fid, form="origin", close=close)
        elif choice == "http10":
            data = build_get(rng, ctx, fid, version="1.0")
        elif choice == "head":
            data = build_get(rng, ctx, fid, method="HEAD", kind="cl", close=True)
            c.head_request = True
        elif choice == "post":
            data = build_post(rng, ctx, fid, close=close)
        else:
            data = build_post(rng, ctx, fid, chunked=True, close=close)
    c.requests = c.expect = len(c.ids)
    c.segments = [data]
    if rng.random() < 0.4:
        split(rng, c)
    if rng.random() < 0.1:
        c.half_close = True
    return c


def split(rng: random.Random, c: Case) -> None:
    """Cut the payload at random positions, written with small delays (< 1 s total)."""
    data = c.payload()
    if len(data) < 2:
        return
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 12))))
    c.segments = [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]
    c.delays = [rng.choice([0, 0.001, 0.01, 0.05]) for _ in c.segments]


_INSERTS = [b"\r", b"\n", b"\x00", b" ", b":", b"\t", b"\r\n", b"\x7f", b"\xff", b";", b'"', b","]


def mutate(rng: random.Random, original: bytes) -> tuple[bytes, str]:
    data = bytearray(original)
    ops = []
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(
            [
                "flip",
                "bitflip",
                "truncate",
                "dupline",
                "insert",
                "insert",
                "delete",
                "swapcase",
                "dupblock",
            ]
        )
        ops.append(op)
        if not data:
            break
        p = rng.randrange(len(data))
        if op == "flip":
            data[p] = rng.randrange(256)
        elif op == "bitflip":
            data[p] ^= 1 << rng.randrange(8)
        elif op == "truncate":
            del data[p:]
        elif op == "dupline":
            lines = bytes(data).split(b"\r\n")
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i])
            data = bytearray(b"\r\n".join(lines))
        elif op == "insert":
            data[p:p] = rng.choice(_INSERTS) * rng.choice([1, 1, 2, 5])
        elif op == "delete":
            del data[p : p + rng.randint(1, 4)]
        elif op == "swapcase":
            data[p : p + 8] = bytes(data[p : p + 8]).swapcase()
        elif op == "dupblock":
            q = min(len(data), p + rng.randint(1, 200))
            data[q:q] = data[p:q]
    return bytes(data), "+".join(ops)


# Host spellings that pass --allow-host 127.0.0.1 (it ignores a trailing dot
# and brackets) but are not an address literal, so the proxy would ask DNS.
_UNSAFE_HOST = re.compile(rb"127\.0\.0\.1\.+(?![0-9])|\[127\.0\.0\.1|127\.0\.0\.1\]")


def gen_mutated(rng: random.Random, ctx: Ctx) -> Case:
    base = gen_valid(rng, ctx, allow_head=False)
    c = Case("mutated")
    c.connect = base.connect
    c.requests = base.requests
    c.ids = base.ids
    for _ in range(20):
        data, ops = mutate(rng, base.payload())
        if not _UNSAFE_HOST.search(data):
            break
    else:
        data, ops = base.payload(), "none"
    c.ops = ops
    c.segments = [data]
    if rng.random() < 0.4:
        split(rng, c)
    if rng.random() < 0.1:
        c.half_close = True
    return c


def gen_hostile(rng: random.Random, ctx: Ctx) -> Case:
    """Hand-made malformed requests, each with the status it must get."""
    host = "127.0.0.1:{}".format(ctx.o)
    fid, smug = _fid(rng), _fid(rng)
    smuggled = (
        "GET http://{0}/r/{1}/cl?n=5 HTTP/1.1\r\nHost: {0}\r\n\r\n".format(host, smug)
    ).encode()
    start = "POST http://{0}/r/{1}/echo HTTP/1.1\r\nHost: {0}\r\n".format(host, fid)
    kind = rng.choice(
        [
            "cl+te",
            "cl+cl",
            "te-bad",
            "te-space",
            "te-10",
            "ws-colon",
            "obs-fold",
            "bad-chunk",
            "neg-chunk",
            "huge-chunk",
            "chunk-ext-junk",
            "huge-header",
            "many-headers",
            "long-target",
            "bare-lf",
            "bare-cr",
            "nul-header",
            "no-host",
            "two-hosts",
            "bad-version",
            "http2",
            "space-target",
            "cl-plus",
            "cl-hex",
            "te-chunked-chunked",
            "te-identity",
        ]
    )
    c = Case("hostile-" + kind)
    c.requests = 1
    expect = {400}
    # Each case builds its bytes from text, or as bytes where it must.
    data: str | bytes
    if kind == "cl+te":
        data = start + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        data = data.encode() + smuggled
        c.forbidden_ids = [smug]
    elif kind == "cl+cl":
        data = (
            start + "Content-Length: 0\r\nContent-Length: {}\r\n\r\n".format(len(smuggled))
        ).encode() + smuggled
        c.forbidden_ids = [smug]
    elif kind == "te-bad":
        data = (start + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n").encode() + smuggled
        c.forbidden_ids = [smug]
        expect = {400, 501}
    elif kind == "te-space":
        data = (start + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n").encode() + smuggled
        c.forbidden_ids = [smug]
    elif kind == "te-10":
        data = (
            "POST http://{0}/r/{1}/echo HTTP/1.0\r\nHost: {0}\r\nTransfer-Encoding: chunked\r\n\r\n"
            "0\r\n\r\n".format(host, fid)
        ).encode() + smuggled
        c.forbidden_ids = [smug]
    elif kind == "te-chunked-chunked":
        data = (start + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n").encode() + smuggled
        c.forbidden_ids = [smug]
        expect = {400, 501}
    elif kind == "te-identity":
        data = (
            start + "Transfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc"
        ).encode() + smuggled
        c.forbidden_ids = [smug]
        expect = {400, 501}
    elif kind == "ws-colon":
        data = (start + "Content-Length : 3\r\n\r\nabc").encode()
    elif kind == "obs-fold":
        data = (start + "X-A: a\r\n b\r\nContent-Length: 0\r\n\r\n").encode()
    elif kind == "bad-chunk":
        data = (start + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n").encode()
    elif kind == "neg-chunk":
        data = (start + "Transfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n").encode()
    elif kind == "huge-chunk":
        data = (
            start + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nabc\r\n"
        ).encode()
    elif kind == "chunk-ext-junk":
        data = (start + "Transfer-Encoding: chunked\r\n\r\n3;\x00\x01\r\nabc\r\n0\r\n\r\n").encode()
    elif kind == "huge-header":
        data = (
            start
            + "X-Big: "
            + "a" * rng.choice([40000, 70000, 300000])
            + "\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        expect = {431, 400}
    elif kind == "many-headers":
        data = (
            start
            + "".join("X-H{}: v\r\n".format(i) for i in range(rng.choice([101, 150, 1000])))
            + "Content-Length: 0\r\n\r\n"
        ).encode()
        expect = {431, 400}
    elif kind == "long-target":
        data = "GET http://{0}/r/{1}/cl?x={2} HTTP/1.1\r\nHost: {0}\r\n\r\n".format(
            host, fid, "a" * rng.choice([9000, 20000, 100000])
        ).encode()
        expect = {414, 431, 400}
    elif kind == "bare-lf":
        data = "GET http://{0}/r/{1}/cl?n=1 HTTP/1.1\nHost: {0}\n\n".format(host, fid).encode()
    elif kind == "bare-cr":
        data = "GET http://{0}/r/{1}/cl?n=1 HTTP/1.1\r\nHost: {0}\rX: y\r\n\r\n".format(
            host, fid
        ).encode()
    elif kind == "nul-header":
        data = "GET http://{0}/r/{1}/cl?n=1 HTTP/1.1\r\nHost: {0}\r\nX: a\x00b\r\n\r\n".format(
            host, fid
        ).encode()
    elif kind == "no-host":
        data = "GET /r/{}/cl?n=1 HTTP/1.1\r\n\r\n".format(fid).encode()
    elif kind == "two-hosts":
        data = "GET /r/{1}/cl?n=1 HTTP/1.1\r\nHost: {0}\r\nHost: {0}\r\n\r\n".format(
            host, fid
        ).encode()
    elif kind == "bad-version":
        data = "GET http://{0}/r/{1}/cl?n=1 HTTP/1.x\r\nHost: {0}\r\n\r\n".format(
            host, fid
        ).encode()
    elif kind == "http2":
        data = "GET http://{0}/r/{1}/cl?n=1 HTTP/2.0\r\nHost: {0}\r\n\r\n".format(
            host, fid
        ).encode()
        expect = {505, 400}
    elif kind == "space-target":
        data = "GET http://{0}/r/{1}/cl?n=1 x HTTP/1.1\r\nHost: {0}\r\n\r\n".format(
            host, fid
        ).encode()
    elif kind == "cl-plus":
        data = (start + "Content-Length: +3\r\n\r\nabc").encode()
    else:  # cl-hex
        data = (start + "Content-Length: 0x3\r\n\r\nabc").encode()
    if isinstance(data, str):
        data = data.encode()
    c.segments = [data]
    c.expect_status = expect
    if rng.random() < 0.3:
        split(rng, c)
    return c


def gen_random(rng: random.Random, ctx: Ctx) -> Case:
    c = Case("random")
    data = rng.randbytes(rng.randint(1, 8192))
    r = rng.random()
    if r < 0.3:
        data = (
            "GET http://127.0.0.1:{}/r/{}/cl?n=3 HTTP/1.1\r\n".format(ctx.o, _fid(rng)).encode()
            + data
        )
    elif r < 0.4:
        data = bytes(rng.choice(b"GET /:\r\n\x00 HTTP1.") for _ in range(rng.randint(1, 400)))
    c.segments = [data]
    c.requests = 1
    if rng.random() < 0.3:
        split(rng, c)
    return c


def gen_abort(rng: random.Random, ctx: Ctx) -> Case:
    base = rng.choice([gen_mutated, gen_hostile, lambda r, x: gen_valid(r, x, False)])(rng, ctx)
    c = Case("abort")
    data = base.payload()
    c.segments = [data[: rng.randint(0, max(0, len(data) - 1))]]
    c.requests = base.requests
    c.abort_after_send = True
    c.rst_abort = rng.random() < 0.5
    if rng.random() < 0.3:
        split(rng, c)
    return c


GENERATORS = [
    (gen_valid, 30),
    (gen_mutated, 35),
    (gen_hostile, 15),
    (gen_random, 10),
    (gen_abort, 10),
]


# --------------------------------------------------------------------------
# running one connection


class Outcome:
    def __init__(self):
        self.kind = ""  # ok | clean-close | reset | client-abort | aborted-mid-response | anomaly
        self.anomalies: list[str] = []
        self.statuses: list[int] = []
        self.sent = 0
        self.received = b""
        self.origin_ids: list[str] = []  # X-Fuzz-Id of relayed responses
        self.trace: list[str] = []  # (time, event) for anomaly reports
        self.local_port = 0


def run_case(
    c: Case, proxy: tuple[str, int], hang_deadline: float, max_life: float, all_ids: dict
) -> Outcome:
    out = Outcome()
    try:
        s = socket.create_connection(proxy, timeout=5)
    except OSError as e:
        out.kind = "anomaly"
        out.anomalies.append("connect to proxy failed: {}".format(e))
        return out
    s.setblocking(False)
    out.local_port = s.getsockname()[1]
    parser = ResponseParser(first_is_connect=c.connect, head_request=c.head_request)
    segs = list(c.segments)
    delays = list(c.delays) if c.delays else [0.0] * len(segs)
    seg_off = 0
    next_send = time.monotonic()
    start = last = time.monotonic()
    tunnel_sent = False
    received = bytearray()
    eof = reset = False
    sent_all = not segs
    try:
        while True:
            now = time.monotonic()
            if not sent_all and not segs:
                sent_all = True
                if c.abort_after_send:
                    if c.rst_abort:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    out.kind = "client-abort"
                    return out
                if c.half_close:
                    try:
                        s.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
            if c.connect and parser.tunnel and not tunnel_sent and c.valid:
                tunnel_sent = True
                if c.tunnel_payload:
                    segs.append(c.tunnel_payload)
                    delays.append(0.0)
                    sent_all = False
            want_w = bool(segs) and now >= next_send
            timeout = max(0.0, min(0.5, next_send - now)) if segs and not want_w else 0.5
            r, w, _ = select.select([s], [s] if want_w else [], [], timeout)
            now = time.monotonic()
            if r:
                try:
                    d = s.recv(262144)
                except ConnectionResetError:
                    reset = True
                    break
                except BlockingIOError:
                    d = None
                if d == b"":
                    eof = True
                    break
                if d:
                    received += d
                    parser.feed(d)
                    last = now
                    out.trace.append("{:.3f} recv {}".format(now - start, len(d)))
                    if parser.error:
                        break
            if w and segs:
                try:
                    n = s.send(segs[0][seg_off : seg_off + 65536])
                except (BlockingIOError, InterruptedError):
                    n = 0
                except (BrokenPipeError, ConnectionResetError):
                    reset = True
                    break
                out.sent += n
                if n:
                    last = now
                    out.trace.append("{:.3f} sent {}".format(now - start, n))
                seg_off += n
                if seg_off >= len(segs[0]):
                    segs.pop(0)
                    seg_off = 0
                    next_send = now + delays.pop(0) if delays else now
            if c.valid and c.expect is not None:
                finals = [x for x in parser.responses if x.status >= 200 or x.framing == "tunnel"]
                if c.connect:
                    if (
                        parser.tunnel
                        and not segs
                        and len(parser.tunnel_bytes) >= len(c.echo_expect)
                    ):
                        break
                elif len(finals) >= c.expect and not parser.pending():
                    break
            if now - last > hang_deadline:
                out.kind = "anomaly"
                out.anomalies.append(
                    "hang: connection open and silent for {:.1f} s (sent {} of {} bytes)".format(
                        now - last, out.sent, len(c.payload())
                    )
                )
                break
            if now - start > max_life:
                out.kind = "anomaly"
                out.anomalies.append(
                    "hang: connection still busy after {:.0f} s".format(now - start)
                )
                break
    except OSError as e:
        out.kind = "anomaly"
        out.anomalies.append("client socket error: {!r}".format(e))
    finally:
        try:
            s.close()
        except OSError:
            pass
    if eof:
        parser.feed(b"", eof=True)
    out.received = bytes(received)
    classify(c, parser, out, eof, reset, all_ids)
    return out


def classify(
    c: Case, parser: ResponseParser, out: Outcome, eof: bool, reset: bool, all_ids: dict
) -> None:
    a = out.anomalies
    if parser.error:
        a.append("garbage from proxy: " + parser.error)
    finals = [r for r in parser.responses if r.status >= 200]
    out.statuses = [r.status for r in finals]
    mine = set(c.ids)
    for i, r in enumerate(finals):
        fidBytes = r.first(b"x-fuzz-id")
        if r.framing == "tunnel":
            continue
        fid = None if fidBytes is None else fidBytes.decode("latin-1")
        if fid is not None:
            out.origin_ids.append(fid)
            owner = all_ids.get(fid)
            if owner is not None and fid not in mine and fid not in c.forbidden_ids:
                a.append("cross-talk: response carries id {} of another connection".format(fid))
            kind = r.first(b"x-body-kind")
            if (
                kind == b"pattern"
                and r.status != 204
                and r.body != pattern_bytes(fid.encode(), len(r.body))
            ):
                a.append("response body is not the origin's bytes for id {}".format(fid))
            if fid in c.forbidden_ids:
                a.append("smuggled request {} was answered".format(fid))
        elif r.first(b"proxy-status") is None:
            a.append(
                "response {} neither from the origin nor generated by the proxy".format(r.status)
            )
        if c.valid and not c.connect:
            if i < len(c.ids) and fid is not None and fid != c.ids[i]:
                a.append("desync: response {} carries id {}, expected {}".format(i, fid, c.ids[i]))
            if r.status < 500 and fid is None:
                a.append(
                    "valid request refused with {} ({})".format(
                        r.status, (r.first(b"proxy-status") or b"").decode("latin-1")
                    )
                )
    if c.valid and c.connect and finals:
        if finals[0].status == 200 and bytes(parser.tunnel_bytes) != c.echo_expect:
            a.append(
                "tunnel echo mismatch: got {} of {} bytes back".format(
                    len(parser.tunnel_bytes), len(c.echo_expect)
                )
            )
    if c.expect_status is not None and finals and finals[0].status not in c.expect_status:
        a.append(
            "hostile request got {} (expected one of {})".format(
                finals[0].status, sorted(c.expect_status)
            )
        )
    if (
        c.valid
        and not c.connect
        and c.expect
        and (eof or reset)
        and len(finals) < c.expect
        and not parser.error
    ):
        if not any(r.status >= 500 for r in finals):
            a.append(
                "valid requests: {} responses to {} requests, then {}".format(
                    len(finals), c.expect, "reset" if reset else "close"
                )
            )
    if parser.pending() and not parser.error:
        if eof:
            a.append(
                "truncated response ended by a clean close (FIN) after {} bytes".format(
                    len(parser.buf)
                )
            )
        elif reset:
            out.kind = out.kind or "aborted-mid-response"
    if a:
        out.kind = "anomaly"
    elif not out.kind:
        if finals or parser.tunnel:
            out.kind = "ok"
        elif reset:
            out.kind = "reset"
        else:
            out.kind = "clean-close"


# --------------------------------------------------------------------------
# health and sampling


def health_check(
    proxy: tuple[str, int], origin_port: int, timeout: float = 5.0
) -> tuple[bool, str, float]:
    t0 = time.monotonic()
    req = (
        "GET http://127.0.0.1:{0}/health HTTP/1.1\r\n"
        "Host: 127.0.0.1:{0}\r\nConnection: close\r\n\r\n".format(origin_port)
    ).encode()
    try:
        with socket.create_connection(proxy, timeout=timeout) as s:
            s.settimeout(max(0.1, timeout - (time.monotonic() - t0)))
            s.sendall(req)
            p = ResponseParser()
            while time.monotonic() - t0 < timeout:
                s.settimeout(max(0.05, timeout - (time.monotonic() - t0)))
                d = s.recv(65536)
                if not d:
                    p.feed(b"", eof=True)
                    break
                p.feed(d)
                if p.responses:
                    break
            dt = time.monotonic() - t0
            if p.responses and p.responses[0].status == 200 and p.responses[0].body == b"ok\n":
                return True, "", dt
            if p.responses:
                return (
                    False,
                    "status {} {}".format(
                        p.responses[0].status,
                        (p.responses[0].first(b"proxy-status") or b"").decode(),
                    ),
                    dt,
                )
            return False, "no response ({})".format(p.error or "closed"), dt
    except OSError as e:
        return False, repr(e), time.monotonic() - t0


class Sampler(threading.Thread):
    def __init__(self, pid: int, every: float):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int | None, int | None]] = []
        self.stop_ev = threading.Event()
        self.t0 = time.monotonic()

    def sample(self):
        s = (round(time.monotonic() - self.t0, 1), rss_kib(self.pid), fd_count(self.pid))
        self.samples.append(s)
        return s

    def run(self):
        while not self.stop_ev.wait(self.every):
            self.sample()


# --------------------------------------------------------------------------
# main


def read_origin_log(path: str) -> set[str]:
    ids = set()
    try:
        with open(path, "rb") as f:
            for line in f:
                ids.add(line.split(b" ")[0].decode("latin-1"))
    except OSError:
        pass
    return ids


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of fuzzing (default 60)")
    ap.add_argument("--seed", type=int, default=None, help="RNG seed (default: random, printed)")
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--proxy", help="measure an already running proxy HOST:PORT (loopback)")
    ap.add_argument("--pid", type=int, help="its PID (for RSS/fds/liveness), with --proxy")
    ap.add_argument(
        "--hang-deadline",
        type=float,
        default=None,
        help="seconds of silence on an open connection that count as a hang "
        "(default: the largest proxy timeout we set + 5 = 10)",
    )
    ap.add_argument("--health-every", type=float, default=1.0)
    ap.add_argument("--health-timeout", type=float, default=5.0)
    ap.add_argument(
        "--rss-growth-limit-mib",
        type=float,
        default=50.0,
        help="fail if RSS max - start exceeds this (default 50)",
    )
    ap.add_argument(
        "--workdir", default=None, help="output directory (default: a new /tmp/fuzz-proxy-*)"
    )
    ap.add_argument("--json", help="also write the report as JSON to this path")
    ap.add_argument("--serve", choices=["origin", "echo", "slow"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--log", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.log)
        return 0
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    workdir = args.workdir or tempfile.mkdtemp(prefix="fuzz-proxy-", dir="/tmp")
    os.makedirs(workdir, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    managed: list[Managed] = []
    stop = threading.Event()
    try:
        return run(args, seed, workdir, managed, stop)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        stop.set()
        for m in reversed(managed):
            m.stop()


# --allow-host 127.0.0.1: a mutated target host ("12?.0.0.1", "127.0.0.l")
# is refused with 403 by policy, before any name resolution, so the proxy
# never resolves a name or leaves loopback because of what we send.
PROXY_TIMEOUTS = [
    "--allow-host",
    "127.0.0.1",
    "--header-timeout",
    "2",
    "--idle-timeout",
    "3",
    "--body-timeout",
    "3",
    "--response-timeout",
    "5",
    "--response-body-timeout",
    "5",
    "--tunnel-idle-timeout",
    "4",
    "--connect-timeout",
    "3",
    "--pool-idle-timeout",
    "2",
]


def run(args, seed: int, workdir: str, managed: list, stop: threading.Event) -> int:
    origin_port, echo_port = free_port(), free_port()
    origin_log = os.path.join(workdir, "origin-requests.log")
    managed.append(start_server("origin", origin_port, workdir, origin_log))
    managed.append(start_server("echo", echo_port, workdir))
    if args.proxy:
        host, _, port = args.proxy.rpartition(":")
        if host not in ("127.0.0.1", "localhost"):
            raise SystemExit("--proxy must be on loopback")
        proxy = (LOOPBACK, int(port))
        pid = args.pid
        hang = args.hang_deadline or 65.0
    else:
        port = free_port()
        logfile = os.path.join(workdir, "proxy.log")
        m = Managed(
            "proxy",
            proxy_argv(port, logfile, PROXY_TIMEOUTS),
            os.path.join(workdir, "proxy.out"),
            cwd=workdir,
        )
        managed.append(m)
        if not wait_port(port, 30, m):
            raise SystemExit("proxy did not start; see {}".format(m.logpath))
        proxy = (LOOPBACK, port)
        pid = m.pid
        hang = args.hang_deadline or 10.0
    max_life = hang * 3 + 10
    print(
        (
            "fuzz: seed={} duration={}s concurrency={} proxy={}:{} pid={} "
            "origin={} echo={} workdir={}"
        ).format(
            seed,
            args.duration,
            args.concurrency,
            proxy[0],
            proxy[1],
            pid,
            origin_port,
            echo_port,
            workdir,
        ),
        flush=True,
    )
    ctx = Ctx(origin_port, echo_port)
    time.sleep(0.5)
    sampler = Sampler(pid, 3.0) if pid else None
    start_sample = sampler.sample() if sampler else (0, None, None)
    if sampler:
        sampler.start()

    lock = threading.Lock()
    stats: dict[str, Any] = {
        "connections": collections.Counter(),
        "requests": collections.Counter(),
        "bytes_sent": 0,
        "outcomes": collections.Counter(),
        "status_classes": collections.Counter(),
        "statuses": collections.Counter(),
        "by_gen_outcome": collections.Counter(),
    }
    anomalies: list[dict] = []
    notes: list[dict] = []  # aborted-mid-response examples (not anomalies)
    all_ids: dict[str, int] = {}
    forbidden: list[tuple[str, dict]] = []
    relayed_ids: list[tuple[str, int]] = []
    health: dict[str, Any] = {"ok": 0, "failed": 0, "failures": [], "max_latency": 0.0}
    end_at = time.monotonic() + args.duration
    anomaly_dir = os.path.join(workdir, "anomalies")

    def record_anomaly(c: Case, out: Outcome, extra: str = "") -> None:
        os.makedirs(anomaly_dir, exist_ok=True)
        n = len(anomalies)
        path = os.path.join(anomaly_dir, "{:03d}-{}".format(n, c.gen))
        if n < 200:
            with open(path + ".request.bin", "wb") as f:
                f.write(c.payload())
            with open(path + ".response.bin", "wb") as f:
                f.write(out.received)
        anomalies.append(
            {
                "generator": c.gen,
                "ops": getattr(c, "ops", ""),
                "why": out.anomalies + ([extra] if extra else []),
                "request": repr(c.payload()[:400]),
                "response": repr(out.received[:400]),
                "segments": len(c.segments),
                "delays": c.delays,
                "half_close": c.half_close,
                "client_port": out.local_port,
                "trace": out.trace[:40],
                "files": path + ".*",
            }
        )

    def worker(idx: int) -> None:
        rng = random.Random(seed * 1000003 + idx)
        gens = [g for g, _ in GENERATORS]
        weights = [w for _, w in GENERATORS]
        while time.monotonic() < end_at and not stop.is_set():
            gen = rng.choices(gens, weights)[0]
            c = gen(rng, ctx)
            with lock:
                for fid in c.ids + c.forbidden_ids:
                    all_ids[fid] = idx
            out = run_case(c, proxy, hang, max_life, all_ids)
            with lock:
                stats["connections"][c.gen] += 1
                stats["requests"][c.gen] += c.requests
                stats["bytes_sent"] += out.sent
                stats["outcomes"][out.kind] += 1
                stats["by_gen_outcome"][(c.gen.split("-")[0], out.kind)] += 1
                for st in out.statuses:
                    stats["status_classes"]["{}xx".format(st // 100)] += 1
                    stats["statuses"][st] += 1
                for fid in out.origin_ids:
                    relayed_ids.append((fid, len(anomalies)))
                for fid in c.forbidden_ids:
                    forbidden.append(
                        (fid, {"generator": c.gen, "request": repr(c.payload()[:300])})
                    )
                if out.anomalies:
                    record_anomaly(c, out)
                elif out.kind == "aborted-mid-response" and len(notes) < 5:
                    notes.append(
                        {
                            "generator": c.gen,
                            "ops": c.ops,
                            "request": repr(c.payload()[:300]),
                            "response": repr(out.received[:300]),
                            "received": len(out.received),
                            "trace": out.trace[-6:],
                        }
                    )

    def health_loop() -> None:
        while time.monotonic() < end_at and not stop.is_set():
            t = time.monotonic()
            ok, why, dt = health_check(proxy, origin_port, args.health_timeout)
            with lock:
                health["max_latency"] = max(health["max_latency"], dt)
                if ok:
                    health["ok"] += 1
                else:
                    health["failed"] += 1
                    if len(health["failures"]) < 20:
                        health["failures"].append(
                            "t={:.1f}s {} ({:.2f}s)".format(t - (end_at - args.duration), why, dt)
                        )
            stop.wait(max(0.0, args.health_every - (time.monotonic() - t)))

    threads = [
        threading.Thread(target=worker, args=(i,), daemon=True) for i in range(args.concurrency)
    ]
    threads.append(threading.Thread(target=health_loop, daemon=True))
    t_start = time.monotonic()
    for t in threads:
        t.start()
    last_print = t_start
    while any(t.is_alive() for t in threads):
        time.sleep(0.5)
        now = time.monotonic()
        if now - last_print >= 10:
            last_print = now
            with lock:
                print(
                    (
                        "  t={:.0f}s connections={} anomalies={} health ok/failed={}/{} "
                        "rss={} KiB fds={}"
                    ).format(
                        now - t_start,
                        sum(stats["connections"].values()),
                        len(anomalies),
                        health["ok"],
                        health["failed"],
                        rss_kib(pid) if pid else "-",
                        fd_count(pid) if pid else "-",
                    ),
                    flush=True,
                )
        if now - t_start > args.duration + max_life + 30:
            print("workers did not finish; giving up on them", file=sys.stderr)
            break
    elapsed = time.monotonic() - t_start
    survived_run = pid_alive(pid) if pid else True
    # drain: idle client connections and pooled upstream connections expire
    drain = 8.0 if not args.proxy else 5.0
    time.sleep(drain)
    final_health = health_check(proxy, origin_port, args.health_timeout)
    if final_health[0]:
        health["ok"] += 1
    else:
        health["failed"] += 1
        health["failures"].append("after drain: {}".format(final_health[1]))
    # the health check's pooled upstream connection expires after
    # --pool-idle-timeout (2 s): wait (bounded) for fds to return
    if sampler:
        sampler.stop_ev.set()
        t_drain = time.monotonic()
        while time.monotonic() - t_drain < 10 and (fd_count(pid) or 0) > (start_sample[2] or 0):
            time.sleep(0.5)
    end_sample = sampler.sample() if sampler else (0, None, None)
    survived = survived_run and (pid_alive(pid) if pid else True)

    # origin-side checks: answered-but-never-received, smuggled-and-received
    origin_ids = read_origin_log(os.path.join(workdir, "origin-requests.log"))
    phantom = sorted(
        {fid for fid, _ in relayed_ids if fid not in origin_ids and fid not in ("none", "slow")}
    )
    for fid in phantom[:20]:
        anomalies.append(
            {"generator": "?", "why": ["response with id {} the origin never received".format(fid)]}
        )
    for fid, info in forbidden:
        if fid in origin_ids:
            anomalies.append(dict(info, why=["smuggled request {} reached the origin".format(fid)]))

    rss = [s[1] for s in (sampler.samples if sampler else []) if s[1] is not None]
    fds_start, fds_end = start_sample[2], end_sample[2]
    rss_start, rss_end = start_sample[1], end_sample[1]
    rss_max = max(rss) if rss else None
    rss_growth_ok = (
        rss_start is None
        or rss_max is None
        or (rss_max - rss_start) / 1024 <= args.rss_growth_limit_mib
    )
    fds_ok = fds_start is None or fds_end is None or fds_end <= fds_start
    ok = survived and health["failed"] == 0 and not anomalies and rss_growth_ok and fds_ok

    report = {
        "seed": seed,
        "duration_s": round(elapsed, 1),
        "concurrency": args.concurrency,
        "connections": sum(stats["connections"].values()),
        "connections_by_generator": dict(sorted(stats["connections"].items())),
        "requests_by_generator": dict(sorted(stats["requests"].items())),
        "bytes_sent": stats["bytes_sent"],
        "outcomes": dict(stats["outcomes"]),
        "outcomes_by_generator": {
            "{}/{}".format(*k): v for k, v in sorted(stats["by_gen_outcome"].items())
        },
        "responses_by_class": dict(sorted(stats["status_classes"].items())),
        "responses_by_status": {str(k): v for k, v in sorted(stats["statuses"].items())},
        "anomalies": len(anomalies),
        "anomaly_examples": anomalies[:10],
        "aborted_mid_response_examples": notes,
        "health_ok": health["ok"],
        "health_failed": health["failed"],
        "health_failures": health["failures"],
        "health_max_latency_s": round(health["max_latency"], 3),
        "proxy_survived": survived,
        "rss_kib": {"start": rss_start, "max": rss_max, "end": rss_end},
        "fds": {"start": fds_start, "end": fds_end},
        "rss_samples": sampler.samples if sampler else [],
        "workdir": workdir,
        "passed": ok,
    }
    print_report(report, args.rss_growth_limit_mib)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, default=str)
    return 0 if ok else 1


def print_report(r: dict, limit: float) -> None:
    print()
    print("=== fuzz report (seed {}) ===".format(r["seed"]))
    print(
        "duration            {} s, {} concurrent connections".format(
            r["duration_s"], r["concurrency"]
        )
    )
    print("connections         {}  ({} bytes sent)".format(r["connections"], r["bytes_sent"]))
    print(
        "by generator        "
        + ", ".join("{}={}".format(k, v) for k, v in r["connections_by_generator"].items())
    )
    print(
        "requests sent       "
        + ", ".join("{}={}".format(k, v) for k, v in r["requests_by_generator"].items())
    )
    print(
        "outcomes            "
        + ", ".join("{}={}".format(k, v) for k, v in sorted(r["outcomes"].items()))
    )
    print(
        "outcomes/generator  "
        + ", ".join("{}={}".format(k, v) for k, v in r["outcomes_by_generator"].items())
    )
    print(
        "responses by class  "
        + ", ".join("{}={}".format(k, v) for k, v in r["responses_by_class"].items())
    )
    print(
        "responses by status "
        + ", ".join("{}={}".format(k, v) for k, v in r["responses_by_status"].items())
    )
    print(
        (
            "clean closes        {} (no bytes, FIN); resets without a response {}; "
            "aborted mid-response {}"
        ).format(
            r["outcomes"].get("clean-close", 0),
            r["outcomes"].get("reset", 0),
            r["outcomes"].get("aborted-mid-response", 0),
        )
    )
    print("anomalies           {}".format(r["anomalies"]))
    for a in r["anomaly_examples"]:
        print("  - {}: {}".format(a.get("generator"), "; ".join(a.get("why", []))))
        if a.get("request"):
            print("      request  {}".format(a["request"][:300]))
        if a.get("response"):
            print("      response {}".format(a["response"][:300]))
    print(
        "health checks       ok={} failed={} (max latency {} s)".format(
            r["health_ok"], r["health_failed"], r["health_max_latency_s"]
        )
    )
    for f in r["health_failures"][:10]:
        print("  - " + f)
    rk = r["rss_kib"]

    def fmt(v: float | None) -> str:
        return "-" if v is None else "{:.1f} MiB".format(v / 1024)

    print(
        "proxy RSS           start {} max {} end {} (growth limit {} MiB)".format(
            fmt(rk["start"]), fmt(rk["max"]), fmt(rk["end"]), limit
        )
    )
    print("proxy fds           start {} end {}".format(r["fds"]["start"], r["fds"]["end"]))
    print("proxy survived      {}".format(r["proxy_survived"]))
    print("output              {}".format(r["workdir"]))
    print("RESULT              {}".format("PASS" if r["passed"] else "FAIL"))


if __name__ == "__main__":
    sys.exit(main())
