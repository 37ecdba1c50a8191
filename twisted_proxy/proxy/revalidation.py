# -*- test-case-name: tests.test_exchange_cache -*-
"""
L{BackgroundRevalidation}: the conditional request a cache sends for a
stale response it has just served under C{stale-while-revalidate} (RFC
5861 3), with no client waiting for it.

It takes an upstream connection from the same pool as the exchanges, sends
the cache's conditional request, hands the response to the cache (a 304
freshens the stored response; a 200 replaces it, its body copied into the
store as it arrives) and gives the connection back.  It is bounded by the
same connect and response timeouts as any request, and it writes no
transaction record: no client asked for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from ..http.errors import ProxyError
from ..http.fields import forwardRequestHeaders
from ..http.framing import ResponseHead, serializeRequestHead
from .cache import CacheLookup, CacheWriter, HTTPCache
from .parent import ParentProxy
from .upstream import UpstreamProtocol

if TYPE_CHECKING:
    from .factory import ProxyFactory

__all__ = ["BackgroundRevalidation"]


class BackgroundRevalidation:
    """
    One background revalidation; the L{IResponseReceiver
    <twisted_proxy.proxy.upstream.IResponseReceiver>} of its upstream
    connection.

    States (C{_state}): C{CONNECTING}, C{WAITING} (request sent),
    C{RECEIVING} (storing the new response's body), C{DONE}.
    """

    _log = Logger()
    _state = "CONNECTING"
    _writer: CacheWriter | None = None
    _upstream: UpstreamProtocol | None = None
    _timer: Any = None

    def __init__(
        self,
        factory: ProxyFactory,
        cache: HTTPCache,
        lookup: CacheLookup,
        parent: ParentProxy | None,
    ) -> None:
        self._factory = factory
        self._cache = cache
        self._lookup = lookup
        self._parent = parent
        self._requestTime = 0.0

    def start(self) -> None:
        target, parent = self._lookup.target, self._parent
        if parent is not None:
            key = ("proxy", parent.host, parent.port)
        else:
            key = (target.scheme, target.host, target.port)
        pool = self._factory.pool
        proto = pool.takeIdle(key)
        if proto is not None:
            self._connected(proto, True)
            return
        pool.connect(key).addCallbacks(self._connected, self._failed, (False,))

    def _connected(self, proto: UpstreamProtocol, reused: bool) -> None:
        if self._state != "CONNECTING":
            self._factory.pool.release(proto)
            return
        factory = self._factory
        if not reused and self._parent is None:
            refusal = factory.config.policy.checkConnectedAddress(
                getattr(proto.transport.getPeer(), "host", "")
            )
            if refusal is not None:
                proto.abort()
                self._end(refusal.detail)
                return
        self._state = "WAITING"
        self._upstream = proto
        forward = self._lookup.forward
        assert forward is not None
        target = self._lookup.target
        proto.startRequest(self, forward.method)
        headers = forwardRequestHeaders(forward.headers, target, forward.version, factory.pseudonym)
        if self._parent is not None:
            requestTarget = target.url.encode("latin-1")
            if self._parent.authorization is not None:
                headers.append((b"Proxy-Authorization", self._parent.authorization))
        else:
            requestTarget = target.path
        self._requestTime = factory.clock.seconds()
        proto.write(serializeRequestHead(forward.method, requestTarget, headers))
        self._timer = factory.clock.callLater(factory.config.responseTimeout, self._timedOut)

    def _failed(self, failure: Failure) -> None:
        if self._state == "CONNECTING":
            self._end(failure.getErrorMessage())

    def _timedOut(self) -> None:
        self._timer = None
        if self._upstream is not None:
            self._upstream.abort()
            self._upstream = None
        self._end("no response within {} seconds".format(self._factory.config.responseTimeout))

    # IResponseReceiver

    def responseHead(self, head: ResponseHead) -> None:
        if self._state != "WAITING" or head.status < 200:
            return
        factory = self._factory
        decision = self._cache.responseReceived(
            self._lookup, head, self._requestTime, factory.clock.seconds()
        )
        self._writer = decision.writer
        self._state = "RECEIVING"
        self._rearm()

    def _rearm(self) -> None:
        # A stalled body is given up after --response-body-timeout.
        timeout = self._factory.config.responseBodyTimeout
        if self._timer is not None and self._timer.active():
            if timeout is None:
                self._timer.cancel()
                self._timer = None
            else:
                self._timer.reset(timeout)

    def responseBody(self, data: bytes) -> None:
        self._rearm()
        writer = self._writer
        if writer is not None and not writer.write(data):
            self._writer = None

    def readDone(self) -> None:
        pass

    def responseEnd(self, trailers: list[tuple[bytes, bytes]]) -> None:
        if self._state != "RECEIVING":
            return
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.finish()
        proto, self._upstream = self._upstream, None
        if proto is not None:
            self._factory.pool.release(proto)
        self._end(None)

    def responseSwitched(self, trailingData: bytes) -> None:
        if self._upstream is not None:
            self._upstream.abort()
            self._upstream = None
        self._end("the origin switched protocols")

    def responseFailed(self, error: ProxyError, responseStarted: bool) -> None:
        self._upstream = None
        self._end(error.detail)

    def _end(self, failure: str | None) -> None:
        if self._state == "DONE":
            return
        self._state = "DONE"
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        cache = self._cache
        if failure is not None:
            self._log.info(
                "Background revalidation of {url} failed: {why}",
                url=self._lookup.target.url,
                why=failure,
            )
            if self._writer is None:
                cache.upstreamFailed(self._lookup)
        cache.finished(self._lookup)
