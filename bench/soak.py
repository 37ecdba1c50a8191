#!/usr/bin/env python3
"""
Soak and fault test for twisted-proxy (Python 3.11 stdlib only).

Mixed traffic through the proxy for --duration seconds (default 300;
--quick: 30) while the origin is SIGKILLed every ~20 s and restarted ~3 s
later, and a second "slow origin" stalls (no head, half a head, half a body)
so that the proxy's timeouts must fire.  Every response is classified; the
only acceptable failures are *clean* ones: a well-formed 5xx, or the
connection aborted after a complete response head (the documented
"If the origin fails after the response head was relayed, the client
connection is aborted").  RSS must stay flat after warm-up and the proxy's
file descriptors must return to their starting count after a drain.

    python3 bench/soak.py --quick
    python3 bench/soak.py --duration 300 --json /tmp/soak.json

Everything it starts is stopped by PID (try/finally, also on Ctrl-C); output
goes to a new directory under /tmp.  See bench/FAULTS.rst.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import re
import select
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Sequence

sys.dont_write_bytecode = True  # keep bench/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fuzz_proxy as fp  # noqa: E402  (servers, process and /proc helpers)

LOOPBACK = fp.LOOPBACK
MiB = 1 << 20
STALL = 12.0  # seconds without progress that make a hang (proxy timeouts are 5)
_STATUS = re.compile(rb"HTTP/1\.[01] ([1-9][0-9][0-9])(?: [\t -~\x80-\xff]*)?")
_FIELD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t ]*[\t -~\x80-\xff]*")


# --------------------------------------------------------------------------
# a small blocking HTTP/1.1 client that tells every way a response can end


class Ended(Exception):
    """The connection ended: .how is "eof" or "reset"."""

    def __init__(self, how: str):
        super().__init__(how)
        self.how = how


class Hang(Exception):
    pass


class Garbage(Exception):
    pass


class Head:
    def __init__(self, status: int, headers: list[tuple[bytes, bytes]]):
        self.status = status
        self.headers = headers

    def get(self, name: bytes) -> bytes | None:
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None


class Wire:
    def __init__(self, proxy: tuple[str, int], rcvbuf: int | None = None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(STALL)
        s.connect(proxy)
        self.s = s
        self.buf = bytearray()
        self.closed = False

    def close(self, rst: bool = False) -> None:
        if not self.closed:
            self.closed = True
            try:
                if rst:
                    self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.s.close()
            except OSError:
                pass

    def fill(self, n: int = 262144) -> None:
        try:
            d = self.s.recv(n)
        except ConnectionResetError as e:
            raise Ended("reset") from e
        except TimeoutError as e:
            raise Hang() from e
        if not d:
            raise Ended("eof")
        self.buf += d

    def send(self, data: bytes) -> bool:
        """sendall; False if the proxy closed/reset meanwhile (read what it said)."""
        try:
            self.s.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False
        except TimeoutError as e:
            raise Hang() from e

    def readable(self) -> bool:
        if self.buf:
            return True
        r, _, _ = select.select([self.s], [], [], 0)
        return bool(r)

    def read_head(self) -> Head:
        while True:
            prefix = bytes(self.buf[:7])
            if prefix != b"HTTP/1."[: len(prefix)]:
                raise Garbage("not an HTTP response: {!r}".format(bytes(self.buf[:60])))
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buf) > 131072:
                raise Garbage("response head over 128 KiB")
            self.fill()
        lines = bytes(self.buf[:end]).split(b"\r\n")
        del self.buf[: end + 4]
        m = _STATUS.fullmatch(lines[0])
        if not m:
            raise Garbage("bad status line {!r}".format(lines[0][:80]))
        headers = []
        for line in lines[1:]:
            if not _FIELD.fullmatch(line):
                raise Garbage("bad header line {!r}".format(line[:80]))
            n, _, v = line.partition(b":")
            headers.append((n, v.strip(b" \t")))
        return Head(int(m.group(1)), headers)

    def take(self, n: int, sink, rate: float | None = None) -> None:
        t0 = time.monotonic()
        got = 0
        while n:
            if not self.buf:
                self.fill(16384 if rate else 262144)
            k = min(n, len(self.buf))
            sink(bytes(self.buf[:k]))
            del self.buf[:k]
            n -= k
            got += k
            if rate:
                ahead = got / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)

    def line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return out
            if len(self.buf) > 8192:
                raise Garbage("line over 8 KiB")
            self.fill()

    def read_body(
        self, head: Head, sink, head_request: bool = False, rate: float | None = None
    ) -> str:
        """Read the body into sink; returns its framing."""
        if head_request or head.status in (204, 304) or 100 <= head.status < 200:
            return "none"
        te = head.get(b"transfer-encoding")
        cl = head.get(b"content-length")
        if te is not None and cl is not None:
            raise Garbage("Content-Length with Transfer-Encoding")
        if te is not None:
            if te.lower() != b"chunked":
                raise Garbage("Transfer-Encoding {!r}".format(te))
            while True:
                size = self.line().split(b";")[0].strip()
                if not re.fullmatch(rb"[0-9A-Fa-f]{1,15}", size):
                    raise Garbage("bad chunk size {!r}".format(size[:40]))
                n = int(size, 16)
                if n == 0:
                    while self.line():
                        pass
                    return "chunked"
                self.take(n, sink, rate)
                if self.line() != b"":
                    raise Garbage("chunk data not followed by CRLF")
        if cl is not None:
            if not cl.isdigit():
                raise Garbage("bad Content-Length {!r}".format(cl))
            self.take(int(cl), sink, rate)
            return "length"
        # close-delimited (we only send HTTP/1.1 requests: unexpected, but legal)
        while True:
            try:
                self.fill()
            except Ended as e:
                if e.how == "eof":
                    sink(bytes(self.buf))
                    self.buf.clear()
                    return "close"
                raise
            sink(bytes(self.buf))
            self.buf.clear()


class Result:
    """
    category: ok | 5xx | abort-after-head | client-abort | answered-early
    (clean) or one of NOT_CLEAN.
    """

    def __init__(self, category: str, status: int | None = None, detail: str = ""):
        self.category = category
        self.status = status
        self.detail = detail


CLEAN = {"ok", "5xx", "abort-after-head", "client-abort", "not-sent-after-abort"}
NOT_CLEAN = {
    "garbage",
    "hang",
    "truncated-fin",
    "body-mismatch",
    "closed-without-response",
    "truncated-head",
    "unexpected-status",
    "bad-5xx",
    "tunnel-mismatch",
    "deadline",
}


class Checker:
    """Body verification: the origin's pattern for an id (crc32), or the echo line."""

    def __init__(self, fid: str | None = None, n: int | None = None):
        self.fid, self.n = fid, n
        self.crc = 0
        self.len = 0
        self.data = bytearray()

    def __call__(self, d: bytes) -> None:
        self.crc = zlib.crc32(d, self.crc)
        self.len += len(d)
        if self.fid is None and len(self.data) < 4096:
            self.data += d

    def pattern_ok(self) -> bool:
        assert self.fid is not None, "a pattern body has an id"
        return self.len == self.n and self.crc == fp.pattern_crc(self.fid.encode(), self.n)


def exchange(
    wire: Wire,
    request: bytes,
    check,
    body_after: Sequence[bytes] = (),
    rate=None,
    head_request=False,
) -> tuple[Result, Head | None]:
    """
    Send a request (head, then body pieces, stopping early if the proxy
    answers first), read the response, classify it.  check(head, checker)
    -> None if the 2xx is right, else a reason.
    """
    early = False
    ok = wire.send(request)
    if ok:
        for piece in body_after:
            if wire.readable():
                early = True
                break
            if not wire.send(piece):
                break
    head = None
    try:
        try:
            head = wire.read_head()
        except Ended as e:
            if wire.buf:
                return Result(
                    "truncated-head", None, "connection {} inside a response head".format(e.how)
                ), None
            return Result(
                "closed-without-response",
                None,
                "connection {} before any response byte".format(e.how),
            ), None
        checker = Checker()
        if 200 <= head.status < 300:
            checker = check(head, None)
        try:
            framing = wire.read_body(head, checker, head_request=head_request, rate=rate)
        except Ended as e:
            if e.how == "reset":
                return Result(
                    "abort-after-head",
                    head.status,
                    "reset after head + {} body bytes".format(checker.len),
                ), head
            return Result(
                "truncated-fin",
                head.status,
                "FIN after head + {} body bytes (not aborted)".format(checker.len),
            ), head
        if head.status >= 500:
            proxyStatus = head.get(b"proxy-status")
            if proxyStatus is None:
                return Result("bad-5xx", head.status, "5xx without Proxy-Status"), head
            return Result("5xx", head.status, proxyStatus.decode("latin-1")), head
        if 200 <= head.status < 300:
            why = check(head, checker)
            if why:
                return Result("body-mismatch", head.status, why), head
            return Result(
                "ok",
                head.status,
                framing + (" (answered before the body was sent)" if early else ""),
            ), head
        return Result(
            "unexpected-status", head.status, (head.get(b"proxy-status") or b"").decode("latin-1")
        ), head
    except Garbage as e:
        return Result("garbage", head.status if head else None, str(e)), head
    except Hang:
        return Result(
            "hang",
            head.status if head else None,
            "no byte for {} s ({})".format(STALL, "in body" if head else "before head"),
        ), head


def pattern_check(fid: str, n: int):
    def check(head: Head, checker: Checker | None):
        if checker is None:
            return Checker(fid, n)
        got = (head.get(b"x-fuzz-id") or b"").decode("latin-1")
        if got != fid:
            return "response for id {} to request {}".format(got, fid)
        if not checker.pattern_ok():
            return "body: {} bytes crc {:08x}, expected {} bytes of the pattern".format(
                checker.len, checker.crc, n
            )
        return None

    return check


def echo_check(fid: str, n: int, sha: str):
    def check(head: Head, checker: Checker | None):
        if checker is None:
            return Checker()
        got = (head.get(b"x-fuzz-id") or b"").decode("latin-1")
        if got != fid:
            return "response for id {} to request {}".format(got, fid)
        want = "{} {}\n".format(n, sha).encode()
        if bytes(checker.data) != want:
            return "origin got {!r}, we sent {!r}".format(bytes(checker.data)[:80], want)
        return None

    return check


def get_request(
    port: int, fid: str, kind: str, n: int, origin_form: bool = False, close=False
) -> bytes:
    path = "/r/{}/{}?n={}".format(fid, kind, n)
    host = "127.0.0.1:{}".format(port)
    target = path if origin_form else "http://" + host + path
    return "GET {} HTTP/1.1\r\nHost: {}\r\n{}\r\n".format(
        target, host, "Connection: close\r\n" if close else ""
    ).encode()


# --------------------------------------------------------------------------
# the soak


class Soak:
    def __init__(self, args, workdir: str):
        self.args = args
        self.workdir = workdir
        self.rng = random.Random(args.seed)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.stats: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.examples: list[dict] = []
        self.events: list[str] = []
        self.counter = 0
        self.t0 = time.monotonic()
        self.managed: list[fp.Managed] = []
        self.origin: fp.Managed | None = None

    # bookkeeping

    def fid(self, tag: str) -> str:
        with self.lock:
            self.counter += 1
            return "{}{:x}x{:x}".format(tag, self.counter, self.rng.getrandbits(24))

    def record(self, loop: str, res: Result, what: str) -> None:
        with self.lock:
            self.stats[loop][res.category] += 1
            self.statuses[loop][res.status if res.status is not None else "-"] += 1
            if res.category not in CLEAN and len(self.examples) < 50:
                self.examples.append(
                    {
                        "t": round(time.monotonic() - self.t0, 1),
                        "loop": loop,
                        "category": res.category,
                        "status": res.status,
                        "detail": res.detail,
                        "request": what,
                    }
                )

    def running(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.end

    def event(self, text: str) -> None:
        with self.lock:
            self.events.append("t={:.1f}s {}".format(time.monotonic() - self.t0, text))

    # client loops

    def loop_small(self, idx: int) -> None:
        rng = random.Random(self.args.seed * 31 + idx)
        wire = None
        while self.running():
            try:
                if wire is None:
                    wire = Wire(self.proxy)
                fid = self.fid("s")
                kind = rng.choice(["cl", "cl", "chunked"])
                n = rng.choice([0, 10, 500, 4096, 8192, 30000])
                req = get_request(self.o, fid, kind, n, origin_form=rng.random() < 0.2)
                res, head = exchange(wire, req, pattern_check(fid, n))
                self.record("small-get", res, "GET {} {} n={}".format(fid, kind, n))
                if res.category != "ok" or (
                    head and (head.get(b"connection") or b"").lower() == b"close"
                ):
                    wire.close()
                    wire = None
                    if res.category == "5xx":
                        time.sleep(0.05)  # origin down: don't spin
            except OSError as e:
                self.record(
                    "small-get",
                    Result("closed-without-response", None, "connect: {!r}".format(e)),
                    "connect",
                )
                wire = None
                time.sleep(0.2)
        if wire:
            wire.close()

    def loop_download(self, idx: int) -> None:
        n = self.args.big_mib * MiB
        while self.running():
            fid = self.fid("d")
            try:
                wire = Wire(self.proxy)
            except OSError as e:
                self.record(
                    "big-download", Result("closed-without-response", None, repr(e)), "connect"
                )
                time.sleep(0.5)
                continue
            res, _ = exchange(
                wire, get_request(self.o, fid, "cl", n, close=True), pattern_check(fid, n)
            )
            wire.close()
            self.record("big-download", res, "GET {} {} MiB".format(fid, self.args.big_mib))
            if res.category != "ok":
                time.sleep(0.2)

    def loop_upload(self, idx: int) -> None:
        body, sha = self.upload_body, self.upload_sha
        chunked = False
        while self.running():
            fid = self.fid("u")
            chunked = not chunked
            host = "127.0.0.1:{}".format(self.o)
            head = "POST http://{}/r/{}/echo HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n".format(
                host, fid, host
            )
            step = 256 * 1024
            if chunked:
                head += "Transfer-Encoding: chunked\r\n\r\n"
                pieces = [
                    b"%x\r\n%s\r\n" % (len(body[i : i + step]), body[i : i + step])
                    for i in range(0, len(body), step)
                ]
                pieces.append(b"0\r\n\r\n")
            else:
                head += "Content-Length: {}\r\n\r\n".format(len(body))
                pieces = [body[i : i + step] for i in range(0, len(body), step)]
            try:
                wire = Wire(self.proxy)
            except OSError as e:
                self.record(
                    "big-upload", Result("closed-without-response", None, repr(e)), "connect"
                )
                time.sleep(0.5)
                continue
            res, _ = exchange(
                wire, head.encode(), echo_check(fid, len(body), sha), body_after=pieces
            )
            wire.close()
            self.record(
                "big-upload",
                res,
                "POST {} {} MiB {}".format(fid, len(body) >> 20, "chunked" if chunked else "CL"),
            )
            if res.category != "ok":
                time.sleep(0.2)

    def loop_slow_client(self, idx: int) -> None:
        n = self.args.slow_kib * 1024
        while self.running():
            fid = self.fid("w")
            try:
                wire = Wire(self.proxy, rcvbuf=32768)
            except OSError as e:
                self.record(
                    "slow-client", Result("closed-without-response", None, repr(e)), "connect"
                )
                time.sleep(0.5)
                continue
            res, _ = exchange(
                wire,
                get_request(self.o, fid, "cl", n, close=True),
                pattern_check(fid, n),
                rate=self.args.slow_rate_kib * 1024,
            )
            wire.close()
            self.record(
                "slow-client",
                res,
                "GET {} {} KiB at {} KiB/s".format(
                    fid, self.args.slow_kib, self.args.slow_rate_kib
                ),
            )

    def loop_tunnel(self, idx: int) -> None:
        rng = random.Random(self.args.seed * 37 + idx)
        while self.running():
            what = "CONNECT 127.0.0.1:{}".format(self.e)
            try:
                wire = Wire(self.proxy)
            except OSError as e:
                self.record("tunnel", Result("closed-without-response", None, repr(e)), "connect")
                time.sleep(0.5)
                continue
            req = "CONNECT 127.0.0.1:{0} HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\n\r\n".format(
                self.e
            ).encode()
            try:
                wire.send(req)
                try:
                    head = wire.read_head()
                except Ended as e:
                    self.record("tunnel", Result("closed-without-response", None, e.how), what)
                    continue
                if head.status != 200:
                    cat = (
                        "5xx"
                        if head.status >= 500 and head.get(b"proxy-status")
                        else "unexpected-status"
                    )
                    self.record("tunnel", Result(cat, head.status), what)
                    continue
                res = Result("ok", 200, "echo")
                for _ in range(rng.randint(1, 8)):
                    msg = rng.randbytes(rng.randint(1, 128 * 1024))
                    wire.send(msg)
                    got = bytearray()
                    try:
                        wire.take(len(msg), got.extend)
                    except Ended as e:
                        res = Result(
                            "tunnel-mismatch",
                            200,
                            "tunnel {} after {} of {} echoed bytes".format(
                                e.how, len(got), len(msg)
                            ),
                        )
                        break
                    if bytes(got) != msg:
                        res = Result("tunnel-mismatch", 200, "echo differs")
                        break
                if res.category == "ok":
                    # half-close: the echo server sees EOF and closes; so must the proxy
                    wire.s.shutdown(socket.SHUT_WR)
                    try:
                        while True:
                            wire.fill()
                            if wire.buf:
                                res = Result("tunnel-mismatch", 200, "bytes after half-close")
                                break
                    except Ended:
                        pass
                self.record("tunnel", res, what)
            except Garbage as e:
                self.record("tunnel", Result("garbage", None, str(e)), what)
            except Hang:
                self.record(
                    "tunnel", Result("hang", None, "tunnel silent for {} s".format(STALL)), what
                )
            except OSError as e:
                self.record("tunnel", Result("tunnel-mismatch", None, repr(e)), what)
            finally:
                wire.close()

    def loop_pipeline(self, idx: int) -> None:
        rng = random.Random(self.args.seed * 41 + idx)
        wire = None
        while self.running():
            try:
                if wire is None:
                    wire = Wire(self.proxy)
                batch = []
                for _ in range(rng.randint(2, 6)):
                    fid = self.fid("p")
                    n = rng.choice([0, 100, 5000, 20000])
                    batch.append(
                        (fid, n, get_request(self.o, fid, rng.choice(["cl", "chunked"]), n))
                    )
                if not wire.send(b"".join(b for _, _, b in batch)):
                    pass
                broken = False
                for i, (fid, n, _) in enumerate(batch):
                    if broken:
                        self.record("pipeline", Result("not-sent-after-abort", None), "GET " + fid)
                        continue
                    res, head = exchange_read(wire, pattern_check(fid, n))
                    self.record(
                        "pipeline", res, "pipelined GET {} #{} of {}".format(fid, i + 1, len(batch))
                    )
                    if res.category != "ok" and not (
                        res.category == "5xx"
                        and head is not None
                        and (head.get(b"connection") or b"").lower() != b"close"
                    ):
                        broken = True
                if broken:
                    wire.close()
                    wire = None
                    time.sleep(0.05)
            except OSError as e:
                self.record("pipeline", Result("closed-without-response", None, repr(e)), "connect")
                wire = None
                time.sleep(0.2)
        if wire:
            wire.close()

    def loop_abort(self, idx: int) -> None:
        rng = random.Random(self.args.seed * 43 + idx)
        host = "127.0.0.1:{}".format(self.o)
        while self.running():
            fid = self.fid("a")
            try:
                wire = Wire(self.proxy)
                mode = rng.choice(["upload", "download"])
                if mode == "upload":
                    n = 4 * MiB
                    wire.send(
                        (
                            "POST http://{0}/r/{1}/echo HTTP/1.1\r\n"
                            "Host: {0}\r\nContent-Length: {2}\r\n\r\n"
                        )
                        .format(host, fid, n)
                        .encode()
                    )
                    wire.send(os.urandom(rng.randint(0, 512 * 1024)))
                else:
                    wire.send(get_request(self.o, fid, "cl", 20 * MiB))
                    want = rng.randint(0, 2 * MiB)
                    got = 0
                    t = time.monotonic()
                    while got < want and time.monotonic() - t < 5:
                        try:
                            wire.fill()
                        except (Ended, Hang):
                            break
                        got += len(wire.buf)
                        wire.buf.clear()
                rst = rng.random() < 0.5
                wire.close(rst=rst)
                self.record(
                    "aborted",
                    Result("client-abort", None),
                    "{} {} closed by client ({})".format(mode, fid, "RST" if rst else "FIN"),
                )
            except OSError as e:
                self.record("aborted", Result("client-abort", None, repr(e)), "abort")
            time.sleep(rng.uniform(0.05, 0.3))

    def loop_slow_origin(self, idx: int) -> None:
        rng = random.Random(self.args.seed * 47 + idx)
        while self.running():
            mode = rng.choice(["none", "head", "body", "die"])
            try:
                wire = Wire(self.proxy)
            except OSError as e:
                self.record(
                    "slow-origin", Result("closed-without-response", None, repr(e)), "connect"
                )
                time.sleep(0.5)
                continue
            if mode == "die":
                fid = self.fid("x")
                n = rng.choice([1000, 100000, 3 * MiB])
                res, _ = exchange(
                    wire, get_request(self.o, fid, "die", n, close=True), pattern_check(fid, n)
                )
                what = "GET {} origin dies mid-body (n={})".format(fid, n)
                if res.category == "ok" or res.category == "body-mismatch":
                    res = Result(
                        "body-mismatch",
                        res.status,
                        "a body the origin cut off was relayed as complete",
                    )
            else:
                fid = "slow"
                host = "127.0.0.1:{}".format(self.slow)
                req = (
                    "GET http://{0}/stall/{1} HTTP/1.1\r\n"
                    "Host: {0}\r\nConnection: close\r\n\r\n".format(host, mode).encode()
                )
                res, _ = exchange(wire, req, lambda h, c: Checker() if c is None else None)
                what = "GET slow origin /stall/{}".format(mode)
                if res.category == "ok":
                    res = Result(
                        "body-mismatch", res.status, "a stalled response was relayed as complete"
                    )
            wire.close()
            self.record("slow-origin", res, what)

    # faults

    def fault_loop(self) -> None:
        every = self.args.kill_every
        while not self.stop.wait(every - 3.0 if every > 3 else 1.0):
            if not self.running():
                return
            self.kill_origin()
            if self.stop.wait(3.0):
                return
            self.start_origin()

    def start_origin(self) -> None:
        for _attempt in range(20):
            try:
                self.origin = fp.start_server("origin", self.o, self.workdir)
                self.managed.append(self.origin)
                self.event("origin started (pid {})".format(self.origin.pid))
                return
            except RuntimeError:
                time.sleep(0.25)
        raise RuntimeError("origin could not be restarted on port {}".format(self.o))

    def kill_origin(self) -> None:
        if self.origin is not None:
            self.origin.kill9()
            self.origin.stop()
            self.managed.remove(self.origin)
            self.event("origin SIGKILLed (pid {})".format(self.origin.pid))
            self.origin = None
            self.kills += 1

    # run

    def run(self) -> int:
        args = self.args
        self.o, self.slow, self.e, pport = (
            fp.free_port(),
            fp.free_port(),
            fp.free_port(),
            fp.free_port(),
        )
        self.kills = 0
        self.upload_body = random.Random(args.seed).randbytes(args.big_mib * MiB)
        self.upload_sha = hashlib.sha1(self.upload_body).hexdigest()
        self.start_origin()
        self.managed.append(fp.start_server("slow", self.slow, self.workdir))
        self.managed.append(fp.start_server("echo", self.e, self.workdir))
        opts = [
            "--allow-host",
            "127.0.0.1",
            "--response-timeout",
            "5",
            "--response-body-timeout",
            "5",
            "--body-timeout",
            "5",
            "--header-timeout",
            "5",
            "--idle-timeout",
            "10",
            "--connect-timeout",
            "3",
            "--pool-idle-timeout",
            "3",
            "--tunnel-idle-timeout",
            "10",
        ]
        proxy = fp.Managed(
            "proxy",
            fp.proxy_argv(pport, os.path.join(self.workdir, "proxy.log"), opts),
            os.path.join(self.workdir, "proxy.out"),
            cwd=self.workdir,
        )
        self.managed.append(proxy)
        if not fp.wait_port(pport, 30, proxy):
            raise SystemExit("proxy did not start; see " + proxy.logpath)
        self.proxy = (LOOPBACK, pport)
        pid = proxy.pid
        time.sleep(1.0)
        fds_start = fp.fd_count(pid)
        rss_boot = fp.rss_kib(pid)
        print(
            (
                "soak: duration={}s seed={} proxy=127.0.0.1:{} pid={} origin={} slow={} "
                "echo={} workdir={}"
            ).format(args.duration, args.seed, pport, pid, self.o, self.slow, self.e, self.workdir),
            flush=True,
        )
        self.t0 = time.monotonic()
        self.end = self.t0 + args.duration
        loops = (
            [(self.loop_small, i) for i in range(4)]
            + [(self.loop_download, 0), (self.loop_upload, 0)]
            + [(self.loop_slow_client, i) for i in range(2)]
            + [(self.loop_tunnel, i) for i in range(2)]
            + [(self.loop_pipeline, 0), (self.loop_abort, 0), (self.loop_slow_origin, 0)]
        )
        threads = [threading.Thread(target=f, args=(i,), daemon=True) for f, i in loops]
        threads.append(threading.Thread(target=self.fault_loop, daemon=True))
        for t in threads:
            t.start()
        warm = min(10.0, args.duration / 6)
        samples = []
        rss_start = rss_mid = None
        next_print = self.t0 + 10
        while time.monotonic() < self.end and not self.stop.is_set():
            time.sleep(1.0)
            el = time.monotonic() - self.t0
            r, f = fp.rss_kib(pid), fp.fd_count(pid)
            samples.append((round(el, 1), r, f))
            if rss_start is None and el >= warm:
                rss_start = r
            if rss_mid is None and el >= args.duration / 2:
                rss_mid = r
            if not proxy.alive():
                self.event("proxy died")
                break
            if time.monotonic() >= next_print:
                next_print += 10
                with self.lock:
                    tot = sum(sum(c.values()) for c in self.stats.values())
                    bad = sum(
                        v for c in self.stats.values() for k, v in c.items() if k not in CLEAN
                    )
                print(
                    "  t={:.0f}s requests={} not-clean={} kills={} rss={:.1f} MiB fds={}".format(
                        el, tot, bad, self.kills, (r or 0) / 1024, f
                    ),
                    flush=True,
                )
        self.stop.set()
        for t in threads:
            t.join(timeout=STALL * 3 + 30)
        stuck = [t.name for t in threads if t.is_alive()]
        if self.origin is None:
            self.start_origin()
        survived = proxy.alive()
        # drain: client connections are closed; pooled ones expire (--pool-idle-timeout 3)
        drain_t0 = time.monotonic()
        fds_end = fp.fd_count(pid)
        while time.monotonic() - drain_t0 < args.drain and (
            fds_end is None or fds_start is None or fds_end > fds_start
        ):
            time.sleep(0.5)
            fds_end = fp.fd_count(pid)
        drained_in = time.monotonic() - drain_t0
        rss_end = fp.rss_kib(pid)
        rss_max = max((s[1] for s in samples if s[1] is not None), default=None)
        totals: collections.Counter[str] = collections.Counter()
        status_totals: collections.Counter[str] = collections.Counter()
        for c in self.stats.values():
            totals.update(c)
        for c in self.statuses.values():
            status_totals.update(c)
        not_clean = sum(v for k, v in totals.items() if k not in CLEAN)
        growth = None if rss_start is None or rss_end is None else (rss_end - rss_start) / 1024
        rss_flat = growth is not None and growth <= args.rss_growth_mib
        fds_ok = fds_end is not None and fds_start is not None and fds_end <= fds_start
        progress = {k: c.get("ok", 0) for k, c in self.stats.items()}
        stalled_loops = [
            k for k, v in progress.items() if v == 0 and k not in ("aborted", "slow-origin")
        ]
        checks = {
            "proxy survived": survived,
            "not-clean errors = 0": not_clean == 0,
            "RSS growth after warm-up <= {} MiB".format(args.rss_growth_mib): rss_flat,
            "fds at end == fds at start": fds_ok,
            "every client loop finished": not stuck,
            "every traffic type had successes": not stalled_loops,
        }
        report = {
            "duration_s": round(time.monotonic() - self.t0 - drained_in, 1),
            "seed": args.seed,
            "origin_kills": self.kills,
            "total_requests": sum(totals.values()),
            "by_category": dict(totals.most_common()),
            "by_status": {
                str(k): v for k, v in sorted(status_totals.items(), key=lambda kv: str(kv[0]))
            },
            "by_loop": {k: dict(c.most_common()) for k, c in sorted(self.stats.items())},
            "by_loop_status": {
                k: {str(s): v for s, v in c.items()} for k, c in sorted(self.statuses.items())
            },
            "not_clean": not_clean,
            "not_clean_examples": self.examples[:20],
            "rss_mib": {
                "boot": _mib(rss_boot),
                "start_after_warmup": _mib(rss_start),
                "middle": _mib(rss_mid),
                "end": _mib(rss_end),
                "max": _mib(rss_max),
                "growth_after_warmup": None if growth is None else round(growth, 1),
            },
            "fds": {"start": fds_start, "end": fds_end, "drain_s": round(drained_in, 1)},
            "events": self.events,
            "stuck_threads": stuck,
            "loops_without_success": stalled_loops,
            "checks": checks,
            "passed": all(checks.values()),
            "workdir": self.workdir,
            "samples": samples,
        }
        print_report(report)
        if args.json:
            with open(args.json, "w") as out:
                json.dump(report, out, indent=2, default=str)
        return 0 if report["passed"] else 1


def exchange_read(wire: Wire, check) -> tuple[Result, Head | None]:
    return exchange(wire, b"", check)


def _mib(kib):
    return None if kib is None else round(kib / 1024, 1)


def print_report(r: dict) -> None:
    print()
    print("=== soak report (seed {}) ===".format(r["seed"]))
    print(
        "duration             {} s, origin SIGKILLed {} times".format(
            r["duration_s"], r["origin_kills"]
        )
    )
    print("total requests       {}".format(r["total_requests"]))
    print(
        "by category          "
        + ", ".join("{}={}".format(k, v) for k, v in r["by_category"].items())
    )
    print(
        "by status            " + ", ".join("{}={}".format(k, v) for k, v in r["by_status"].items())
    )
    for loop, c in r["by_loop"].items():
        st = r["by_loop_status"][loop]
        print(
            "  {:<13} {}   [{}]".format(
                loop,
                ", ".join("{}={}".format(k, v) for k, v in c.items()),
                ", ".join("{}={}".format(k, v) for k, v in sorted(st.items())),
            )
        )
    print("not clean            {}".format(r["not_clean"]))
    for e in r["not_clean_examples"][:10]:
        print(
            "  - t={}s {} {} status={}: {} ({})".format(
                e["t"], e["loop"], e["category"], e["status"], e["detail"], e["request"]
            )
        )
    m = r["rss_mib"]
    print(
        (
            "RSS (MiB)            boot {} start {} middle {} end {} max {}; "
            "growth after warm-up {} MiB"
        ).format(
            m["boot"],
            m["start_after_warmup"],
            m["middle"],
            m["end"],
            m["max"],
            m["growth_after_warmup"],
        )
    )
    print(
        "fds                  start {} end {} (after {} s drain)".format(
            r["fds"]["start"], r["fds"]["end"], r["fds"]["drain_s"]
        )
    )
    for name, ok in r["checks"].items():
        print("check                {:<4} {}".format("ok" if ok else "FAIL", name))
    print("output               {}".format(r["workdir"]))
    print("RESULT               {}".format("PASS" if r["passed"] else "FAIL"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--duration", type=float, default=300.0, help="seconds of traffic (default 300)"
    )
    ap.add_argument("--quick", action="store_true", help="30 s run (origin killed every 10 s)")
    ap.add_argument(
        "--kill-every", type=float, default=None, help="seconds between origin kills (default 20)"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--big-mib", type=int, default=20, help="large download/upload size (default 20 MiB)"
    )
    ap.add_argument(
        "--slow-kib", type=int, default=1024, help="slow-client download size (default 1024 KiB)"
    )
    ap.add_argument(
        "--slow-rate-kib", type=int, default=100, help="slow-client read rate (default 100 KiB/s)"
    )
    ap.add_argument("--rss-growth-mib", type=float, default=20.0)
    ap.add_argument(
        "--drain", type=float, default=15.0, help="max seconds to wait for fds to return"
    )
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", help="write the report as JSON here")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration = 30.0
    if args.kill_every is None:
        args.kill_every = 10.0 if args.quick else 20.0
    workdir = args.workdir or tempfile.mkdtemp(prefix="soak-proxy-", dir="/tmp")
    os.makedirs(workdir, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    soak = Soak(args, workdir)
    try:
        return soak.run()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        soak.stop.set()
        for m in reversed(soak.managed):
            m.stop()


if __name__ == "__main__":
    sys.exit(main())
