"""
The status page in a real headless browser (Debian's C{chromium}): its DOM
holds no element injected through a request, and a screenshot is taken
for a person to look at (its path is printed).  Skipped when chromium is
not installed.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from tests._loopback import ProxyTestMixin, rawRequest
from twisted_proxy.app.metrics import MetricsService

CHROMIUM_NAMES = ("chromium", "chromium-browser")
HOSTILE = b'/"><script>alert(1)</script><img/src=x/onerror=alert(2)>?token=abc123'


def findChromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    raise SkipTest("chromium is not installed (apt-get install chromium)")


class _Collect(ProcessProtocol):
    """
    Collects a process's output; kills it if it runs past C{timeout}.
    """

    transport: IProcessTransport

    def __init__(self, timeout: float) -> None:
        self.out = b""
        self.err = b""
        self.ended: Deferred[int] = Deferred()
        self._timer = reactor.callLater(timeout, self._kill)

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def _kill(self) -> None:
        self.transport.signalProcess("KILL")

    def processEnded(self, reason: Failure) -> None:
        if self._timer.active():
            self._timer.cancel()
        self.ended.callback(getattr(reason.value, "exitCode", None) or 0)


async def runChromium(chromium: str, profile: str, *args: str) -> tuple[int, bytes, bytes]:
    """
    Run headless chromium with a throwaway profile, nothing in the
    background, no proxy, on loopback only.
    """
    argv = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-breakpad",
        "--no-proxy-server",
        "--user-data-dir=" + profile,
        *args,
    ]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": profile, "LANG": "C.UTF-8"}
    collect = _Collect(timeout=60)
    reactor.spawnProcess(collect, chromium, argv, env=env)
    code = await collect.ended
    return code, collect.out, collect.err


def pngSize(path: str) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", head[16:24])
    return width, height


class BrowserTests(ProxyTestMixin, TestCase):
    timeout = 120

    async def setUpPage(self) -> tuple[str, str]:
        chromium = findChromium()
        await self.setUpProxy(
            "--metrics",
            "tcp:0:interface=127.0.0.1",
            "--deny-host",
            "*.blocked.test",
            "--pseudonym",
            "proxy.test-3128",
        )
        [metrics] = [s for s in self.service if isinstance(s, MetricsService)]
        port = (await metrics._waitingForPort).getHost().port
        for path in ("/small", "/big", "/small", "/chunked", "/missing", "/small"):
            await self.get(path)
        answer = await rawRequest(
            self.proxyPort,
            b"GET http://x.blocked.test" + HOSTILE + b" HTTP/1.1\r\nHost: x.blocked.test\r\n"
            b"Connection: close\r\n\r\n",
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 403 "), answer[:80])
        for path in ("/small", "/echo"):
            await self.get(path, b"POST" if path == "/echo" else b"GET")
        return chromium, "http://127.0.0.1:%d/?refresh=0" % (port,)

    def profile(self) -> str:
        d = tempfile.mkdtemp(prefix="twisted-proxy-chromium-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    async def test_domHasNoInjectedElements(self) -> None:
        """
        The browser's DOM of the page: the hostile target is text, not
        elements; the token in it is redacted.
        """
        chromium, url = await self.setUpPage()
        code, dom, err = await runChromium(chromium, self.profile(), "--dump-dom", url)
        self.assertEqual(code, 0, err[-2000:])
        self.assertIn(b"twisted-proxy", dom)
        self.assertIn(b"x.blocked.test", dom)
        self.assertNotIn(b"<script", dom)
        self.assertNotIn(b"<img", dom)
        self.assertIn(b"&lt;script&gt;alert(1)&lt;/script&gt;", dom)
        self.assertNotIn(b"abc123", dom)

    async def test_screenshot(self) -> None:
        """
        A screenshot of the page, kept in a temporary directory whose path
        is printed, for a person to look at.
        """
        chromium, url = await self.setUpPage()
        out = tempfile.mkdtemp(prefix="twisted-proxy-status-")
        path = os.path.join(out, "status-page.png")
        code, _, err = await runChromium(
            chromium,
            self.profile(),
            "--hide-scrollbars",
            "--window-size=1366,1500",
            "--screenshot=" + path,
            url,
        )
        self.assertEqual(code, 0, err[-2000:])
        self.assertEqual(pngSize(path), (1366, 1500))
        # A blank page compresses to a few kilobytes.
        self.assertGreater(os.path.getsize(path), 40_000)
        sys.stdout.write("\nstatus page screenshot: {}\n".format(path))
        sys.stdout.flush()
