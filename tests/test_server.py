"""
Protocol tests for L{twisted_proxy.proxy.server}: StringTransports on both sides,
a L{MemoryReactorClock}, and an injected endpoint factory, so every path is
exact and no socket is opened.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import error as ierror
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests._server import OK_RESPONSE, writeHtpasswd
from twisted_proxy.testing import Harness, logEvents

GET_ABSOLUTE = (
    b"GET http://example.com/path?q=1 HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Proxy-Connection: keep-alive\r\n"
    b"Connection: X-Hop\r\n"
    b"X-Hop: secret\r\n"
    b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
    b"Accept: */*\r\n"
    b"\r\n"
)


def headLines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


class RelayTests(SynchronousTestCase):
    def test_absoluteForm(self) -> None:
        """
        An absolute-form request goes upstream in origin-form with Host from
        the target, hop-by-hop fields removed and Via appended; the response
        comes back with its hop-by-hop fields removed and Via appended.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(GET_ABSOLUTE)
        [(host, port, _, _)] = h.attempts
        self.assertEqual((host, port), ("example.com", 80))
        up, upTransport = h.connect()
        self.assertEqual(
            headLines(upTransport.value()),
            [
                b"GET /path?q=1 HTTP/1.1",
                b"Host: example.com",
                b"Accept: */*",
                b"Via: 1.1 test-proxy",
            ],
        )
        up.dataReceived(OK_RESPONSE)
        self.assertEqual(
            client.value(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nVia: 1.1 test-proxy\r\n\r\nhello",
        )
        self.assertFalse(client.disconnecting)
        self.assertEqual(h.pool.idleCount(), 1)

    def test_originFormBrief(self) -> None:
        """
        The brief's request: origin-form with a Host naming an IP address.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: 93.184.216.34\r\n\r\n")
        [(host, port, _, _)] = h.attempts
        self.assertEqual((host, port), ("93.184.216.34", 80))
        up, upTransport = h.connect()
        self.assertEqual(
            upTransport.value(),
            b"GET / HTTP/1.1\r\nHost: 93.184.216.34\r\nVia: 1.1 test-proxy\r\n\r\n",
        )

    def test_ipv6Target(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://[::1]:8000/x HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n")
        [(host, port, _, _)] = h.attempts
        self.assertEqual((host, port), ("::1", 8000))
        up, upTransport = h.connect()
        self.assertIn(b"Host: [::1]:8000\r\n", upTransport.value())

    def test_keepAliveReusesUpstream(self) -> None:
        """
        A second request to the same origin goes over the pooled connection.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(GET_ABSOLUTE)
        up, upTransport = h.connect()
        up.dataReceived(OK_RESPONSE)
        upTransport.clear()
        client.clear()
        proto.dataReceived(GET_ABSOLUTE)
        self.assertEqual(h.attempts, [])
        self.assertTrue(upTransport.value().startswith(b"GET /path?q=1 HTTP/1.1\r\n"))
        up.dataReceived(OK_RESPONSE)
        self.assertTrue(client.value().endswith(b"hello"))
        self.assertEqual(h.pool.opened, 1)

    def test_pipelinedRequestsInOrder(self) -> None:
        """
        Pipelined requests are answered in order; the second goes upstream
        only after the first response, and reading pauses meanwhile.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"GET http://a.test/1 HTTP/1.1\r\nHost: a.test\r\n\r\n"
            b"GET http://a.test/2 HTTP/1.1\r\nHost: a.test\r\n\r\n"
        )
        self.assertEqual(client.producerState, "paused")
        up, upTransport = h.connect()
        self.assertEqual(upTransport.value().count(b"GET "), 1)
        up.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
        self.assertIn(b"GET /2 HTTP/1.1", upTransport.value())
        up.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
        body = client.value()
        self.assertLess(body.index(b"one"), body.index(b"two"))
        self.assertEqual(client.producerState, "producing")

    def test_contentLengthUpload(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"POST http://a.test/u HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n01234"
        )
        up, upTransport = h.connect()
        proto.dataReceived(b"56789")
        data = upTransport.value()
        self.assertIn(b"Content-Length: 10\r\n", data)
        self.assertTrue(data.endswith(b"\r\n\r\n0123456789"))

    def test_chunkedUploadWithTrailers(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"POST http://a.test/u HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n"
        )
        up, upTransport = h.connect()
        data = upTransport.value()
        self.assertIn(b"Transfer-Encoding: chunked\r\n", data)
        self.assertTrue(data.endswith(b"\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n"))

    def test_closeDelimitedToHTTP11IsChunked(self) -> None:
        """
        A close-delimited response reaches an HTTP/1.1 client chunked, so the
        client connection can persist.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.0 200 OK\r\n\r\nabc")
        up.connectionLost(Failure(ierror.ConnectionDone()))
        self.assertEqual(
            client.value(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVia: 1.0 test-proxy\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n",
        )
        self.assertFalse(client.disconnecting)

    def test_closeDelimitedToHTTP10(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.0\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\n\r\nabc")
        up.connectionLost(Failure(ierror.ConnectionDone()))
        self.assertEqual(
            client.value(),
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nVia: 1.1 test-proxy\r\n\r\nabc",
        )
        self.assertTrue(client.disconnecting)

    def test_http10KeepAlive(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(OK_RESPONSE)
        self.assertIn(b"Connection: keep-alive\r\n", client.value())
        self.assertFalse(client.disconnecting)

    def test_headResponse(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"HEAD http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        self.assertEqual(
            client.value(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nVia: 1.1 test-proxy\r\n\r\n",
        )
        self.assertEqual(h.pool.idleCount(), 1)

    def test_interimResponses(self) -> None:
        """
        100 Continue and 103 Early Hints reach an HTTP/1.1 client as interim
        responses before the final one.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\n"
            b"Content-Length: 2\r\n\r\n"
        )
        up, upTransport = h.connect()
        self.assertIn(b"Expect: 100-continue\r\n", upTransport.value())
        up.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.assertEqual(client.value(), b"HTTP/1.1 100 Continue\r\nVia: 1.1 test-proxy\r\n\r\n")
        proto.dataReceived(b"ok")
        up.dataReceived(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + OK_RESPONSE)
        self.assertEqual(client.value().count(b"HTTP/1.1 "), 3)
        self.assertTrue(client.value().endswith(b"hello"))

    def test_interimNotSentToHTTP10(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.0\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + OK_RESPONSE)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 200 OK\r\n"))


class ConnectionsClosedTests(SynchronousTestCase):
    """
    L{ProxyFactory.whenConnectionsClosed}: a Deferred for the moment the
    last client connection is gone.
    """

    def test_noneOpen(self) -> None:
        """
        With no connection open it has fired already.
        """
        self.assertIsNone(self.successResultOf(Harness().factory.whenConnectionsClosed()))

    def test_lastOneCloses(self) -> None:
        """
        It fires when the last open connection is lost, not before; each
        waiter fires once, and a later call waits for the connections open
        then.
        """
        h = Harness()
        first, _ = h.client()
        second, _ = h.client()
        closed = h.factory.whenConnectionsClosed()
        alsoClosed = h.factory.whenConnectionsClosed()
        first.connectionLost(Failure(ierror.ConnectionDone()))
        self.assertNoResult(closed)
        second.connectionLost(Failure(ierror.ConnectionLost()))
        self.assertIsNone(self.successResultOf(closed))
        self.assertIsNone(self.successResultOf(alsoClosed))
        third, _ = h.client()
        again = h.factory.whenConnectionsClosed()
        self.assertNoResult(again)
        third.connectionLost()
        self.assertIsNone(self.successResultOf(again))


class ErrorTests(SynchronousTestCase):
    def assertError(self, data: bytes, status: bytes, proxyStatus: bytes) -> None:
        self.assertTrue(data.startswith(b"HTTP/1.1 " + status), data)
        self.assertIn(b"Proxy-Status: test-proxy; error=" + proxyStatus, data)
        self.assertIn(b"Content-Type: text/plain", data)

    def test_malformedRequest(self) -> None:
        """
        An ambiguous request gets 400 and the connection closes; nothing
        reaches an origin.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            b"GET http://a.test/smuggled HTTP/1.1\r\n\r\n"
        )
        self.assertError(client.value(), b"400", b"http_request_error")
        self.assertTrue(client.disconnecting)
        self.assertEqual(h.attempts, [])

    def test_badTarget(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET ftp://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertError(client.value(), b"400", b"http_request_error")
        self.assertEqual(h.attempts, [])

    def test_dnsError(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://no.such.test/ HTTP/1.1\r\nHost: no.such.test\r\n\r\n")
        h.fail(ierror.DNSLookupError("no.such.test"))
        self.assertError(client.value(), b"502", b"dns_error")
        self.assertIn(b"no.such.test could not be resolved", client.value())
        # A refused request without a body keeps the connection.
        self.assertFalse(client.disconnecting)

    def test_connectionRefused(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test:81/ HTTP/1.1\r\nHost: a.test:81\r\n\r\n")
        h.fail(ierror.ConnectionRefusedError())
        self.assertError(client.value(), b"502", b"connection_refused")

    def test_unreachable(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        h.fail(ierror.ConnectError("Network is unreachable"))
        self.assertError(client.value(), b"502", b"destination_unavailable")

    def test_connectTimeout(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        h.fail(ierror.TimeoutError())
        self.assertError(client.value(), b"504", b"connection_timeout")

    def test_responseTimeout(self) -> None:
        h = Harness(responseTimeout=30)
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        h.clock.advance(29.9)
        self.assertEqual(client.value(), b"")
        h.clock.advance(0.2)
        self.assertError(client.value(), b"504", b"http_response_timeout")
        self.assertTrue(upTransport.disconnected)
        self.assertEqual(h.pool.idleCount(), 0)

    def test_malformedResponse(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test:22/ HTTP/1.1\r\nHost: a.test:22\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"SSH-2.0-OpenSSH_9.2\r\n")
        self.assertError(client.value(), b"502", b"http_protocol_error")
        self.assertTrue(upTransport.disconnected)

    def test_originClosesBeforeResponse(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n"
        )
        up, upTransport = h.connect()
        up.connectionLost(Failure(ierror.ConnectionDone()))
        self.assertError(client.value(), b"502", b"http_response_incomplete")

    def test_originDiesMidBody(self) -> None:
        """
        If the origin fails after the response head was relayed, the client
        connection is aborted: a truncated body can never look complete.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        up.connectionLost(Failure(ierror.ConnectionLost()))
        self.assertTrue(client.value().endswith(b"partial"))
        self.assertTrue(client.disconnected)

    def test_loopViaPseudonym(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nVia: 1.1 other, 1.1 test-proxy\r\n\r\n"
        )
        self.assertError(client.value(), b"508", b"proxy_loop_detected")
        self.assertEqual(h.attempts, [])

    def test_loopOwnAddress(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://127.0.0.1:8080/ HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
        self.assertError(client.value(), b"508", b"proxy_loop_detected")
        self.assertEqual(h.attempts, [])

    def test_loopByName(self) -> None:
        """
        A name that resolves to the proxy's own address is caught once the
        connection shows where it went.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://me.test:8080/ HTTP/1.1\r\nHost: me.test:8080\r\n\r\n")
        up, upTransport = h.connect(peer=("127.0.0.1", 8080))
        self.assertError(client.value(), b"508", b"proxy_loop_detected")
        self.assertEqual(upTransport.value(), b"")
        self.assertTrue(upTransport.disconnected)

    def test_headerTimeout(self) -> None:
        h = Harness(headerTimeout=10)
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a")
        h.clock.advance(9.9)
        self.assertEqual(client.value(), b"")
        h.clock.advance(0.2)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 408 "))
        self.assertTrue(client.disconnecting)

    def test_idleTimeout(self) -> None:
        h = Harness(idleTimeout=60)
        proto, client = h.client()
        h.clock.advance(59)
        self.assertFalse(client.disconnecting)
        h.clock.advance(2)
        self.assertTrue(client.disconnecting)
        self.assertEqual(client.value(), b"")

    def test_retryIdempotentOnDeadReusedConnection(self) -> None:
        """
        A GET on a reused connection that dies before any response byte is
        sent again on a fresh connection.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(GET_ABSOLUTE)
        up, upTransport = h.connect()
        up.dataReceived(OK_RESPONSE)
        client.clear()
        proto.dataReceived(GET_ABSOLUTE)
        up.connectionLost(Failure(ierror.ConnectionLost()))
        self.assertEqual(len(h.attempts), 1)
        up2, upTransport2 = h.connect()
        self.assertTrue(upTransport2.value().startswith(b"GET /path?q=1 HTTP/1.1\r\n"))
        up2.dataReceived(OK_RESPONSE)
        self.assertTrue(client.value().endswith(b"hello"))

    def test_noRetryForPost(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(GET_ABSOLUTE)
        up, upTransport = h.connect()
        up.dataReceived(OK_RESPONSE)
        client.clear()
        proto.dataReceived(
            b"POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\nContent-Length: 1\r\n\r\nx"
        )
        up.connectionLost(Failure(ierror.ConnectionLost()))
        self.assertEqual(h.attempts, [])
        self.assertTrue(client.value().startswith(b"HTTP/1.1 502 "))


class BackpressureTests(SynchronousTestCase):
    def test_slowClientPausesOrigin(self) -> None:
        """
        While a response body is relayed, the upstream connection is the
        client transport's producer: when the client cannot keep up, the
        origin stops being read.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 65536)
        self.assertIs(client.producer, up)
        assert client.producer is not None
        client.producer.pauseProducing()
        self.assertEqual(upTransport.producerState, "paused")
        client.producer.resumeProducing()
        self.assertEqual(upTransport.producerState, "producing")
        up.dataReceived(b"x" * (1000000 - 65536))
        self.assertIsNone(client.producer)

    def test_slowOriginPausesClient(self) -> None:
        """
        While a request body is relayed, the exchange is the upstream
        transport's producer: when the origin cannot keep up, the client
        stops being read.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"PUT http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1000000\r\n\r\n"
        )
        up, upTransport = h.connect()
        self.assertIsNotNone(upTransport.producer)
        proto.dataReceived(b"y" * 65536)
        assert upTransport.producer is not None
        upTransport.producer.pauseProducing()
        self.assertEqual(client.producerState, "paused")
        upTransport.producer.resumeProducing()
        self.assertEqual(client.producerState, "producing")
        proto.dataReceived(b"y" * (1000000 - 65536))
        self.assertIsNone(upTransport.producer)

    def test_pausedUpstreamResumedWhenPooled(self) -> None:
        """
        An upstream connection paused by a slow client is resumed when it
        goes back to the pool, or it could never read again.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        assert client.producer is not None
        client.producer.pauseProducing()
        up.dataReceived(b"cd")
        self.assertEqual(h.pool.idleCount(), 1)
        self.assertEqual(upTransport.producerState, "producing")

    def test_clientGoneAbortsUpstream(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nab")
        proto.connectionLost(Failure(ierror.ConnectionLost()))
        self.assertTrue(upTransport.disconnected)
        self.assertEqual(h.pool.idleCount(), 0)


class LoggingTests(SynchronousTestCase):
    def test_briefLinesWithRedaction(self) -> None:
        """
        The brief's lines are structured events; secrets in the logged request
        head are redacted, and times are rendered to the microsecond.
        """
        from twisted.logger import formatEvent

        events = logEvents(self)
        h = Harness()
        h.clock.advance(1234.5)
        proto, client = h.client()
        proto.dataReceived(
            b"GET / HTTP/1.1\r\nHost: 93.184.216.34\r\nCookie: sid=42\r\n"
            b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\r\n"
        )
        up, upTransport = h.connect()
        up.dataReceived(OK_RESPONSE)
        proto.connectionLost(Failure(ierror.ConnectionDone()))
        texts = [formatEvent(e) for e in events]
        request = [t for t in texts if t.startswith("Request has been received: ")]
        self.assertEqual(len(request), 1)
        self.assertIn(
            "GET / HTTP/1.1\\r\\nHost: 93.184.216.34\\r\\nCookie: <redacted>\\r\\n"
            "Proxy-Authorization: Basic <redacted>\\r\\n\\r\\n",
            request[0],
        )
        self.assertNotIn("sid=42", "".join(texts))
        self.assertRegex(request[0], r"\[\d\d:\d\d:\d\d\.\d{6}\]$")
        for line in (
            "Connection has been accepted from: ('127.0.0.1', 50000)",
            "Destination IP address: 93.184.216.34",
            "Response received: HTTP/1.1 200 OK ...",
            "Connection has been closed.",
        ):
            self.assertTrue(any(t.startswith(line) for t in texts), (line, texts))

    def test_generatedResponsesInWords(self) -> None:
        """
        A response the proxy makes itself is logged as what it is: a
        refusal (policy, limits), a request the client got wrong, or a
        request that failed on the way to the origin -- never a timeout as
        a "refusal".
        """
        from twisted.logger import formatEvent

        events = logEvents(self)
        h = Harness(responseTimeout=30)
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        h.connect()
        h.clock.advance(31)
        proto, client = h.client(peer="203.0.113.9")
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\n\r\n")
        texts = [formatEvent(e) for e in events]
        outcomes = [
            t.split(" (")[0] for t in texts if t.startswith("Request ") and "has been" not in t
        ]
        self.assertEqual(
            outcomes,
            [
                "Request failed: 504 Gateway Timeout",
                "Request refused: 403 Forbidden",
                "Request rejected: 400 Bad Request",
            ],
        )


class PolicyTests(SynchronousTestCase):
    def policy(self, **kwargs):
        from twisted_proxy.proxy.policy import Policy

        return Policy.fromOptions(**kwargs)

    def test_clientNotAllowed(self) -> None:
        """
        A client outside the allowed networks gets 403 and is disconnected;
        nothing is connected upstream.
        """
        h = Harness(policy=self.policy())
        proto, client = h.client(peer="203.0.113.7")
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 403 "))
        self.assertIn(b"error=http_request_denied", client.value())
        self.assertTrue(client.disconnecting)
        self.assertEqual(h.attempts, [])

    def test_clientAllowedByRule(self) -> None:
        h = Harness(policy=self.policy(clientRules=[("allow", "203.0.113.0/24")]))
        proto, client = h.client(peer="203.0.113.7")
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(len(h.attempts), 1)

    def test_authRequired(self) -> None:
        path = writeHtpasswd(self)
        h = Harness(policy=self.policy(authFile=path, realm="office"))
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 407 "))
        self.assertIn(b'Proxy-Authenticate: Basic realm="office"\r\n', client.value())
        self.assertFalse(client.disconnecting)
        client.clear()
        proto.dataReceived(
            b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n"
            b"Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\r\n"
        )
        self.assertEqual(client.value(), b"")
        up, upTransport = h.connect()
        self.assertNotIn(b"Proxy-Authorization", upTransport.value())

    def test_denyHost(self) -> None:
        h = Harness(policy=self.policy(denyHosts=["*.blocked.test"]))
        proto, client = h.client()
        proto.dataReceived(
            b"GET http://ads.blocked.test/ HTTP/1.1\r\nHost: ads.blocked.test\r\n\r\n"
        )
        self.assertTrue(client.value().startswith(b"HTTP/1.1 403 "))
        self.assertEqual(h.attempts, [])

    def test_privateDestinationCheckedOnConnectedAddress(self) -> None:
        """
        With --deny-private-destinations the address actually connected to is
        checked, so a name that resolves to a public address once and to a
        private one the next time (DNS rebinding) is still refused.
        """
        h = Harness(policy=self.policy(denyPrivateDestinations=True))
        h.pool.minIdlePerHost = 0
        proto, client = h.client()
        request = b"GET http://rebind.test/ HTTP/1.1\r\nHost: rebind.test\r\n\r\n"
        proto.dataReceived(request)
        up, upTransport = h.connect(peer=("93.184.216.34", 80))
        self.assertTrue(upTransport.value().startswith(b"GET / HTTP/1.1"))
        up.dataReceived(OK_RESPONSE)
        client.clear()
        proto.dataReceived(request)
        up2, upTransport2 = h.connect(peer=("169.254.169.254", 80))
        self.assertTrue(client.value().startswith(b"HTTP/1.1 403 "))
        self.assertIn(b"error=destination_ip_prohibited", client.value())
        self.assertEqual(upTransport2.value(), b"")
        self.assertTrue(upTransport2.disconnected)


class TunnelTests(SynchronousTestCase):
    def test_connect(self) -> None:
        """
        CONNECT to port 443: connect, answer 200, then relay bytes both
        ways; bytes sent right after the CONNECT head are forwarded first.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"CONNECT secure.test:443 HTTP/1.1\r\nHost: secure.test:443\r\n\r\n\x16\x03\x01hello"
        )
        [(host, port, _, _)] = h.attempts
        self.assertEqual((host, port), ("secure.test", 443))
        self.assertEqual(client.value(), b"")
        up, upTransport = h.connect(peer=("93.184.216.34", 443))
        self.assertEqual(client.value(), b"HTTP/1.1 200 Connection Established\r\n\r\n")
        self.assertEqual(upTransport.value(), b"\x16\x03\x01hello")
        self.assertIs(client.producer, upTransport)
        self.assertIs(upTransport.producer, client)
        proto.dataReceived(b"more")
        up.dataReceived(b"server bytes")
        self.assertEqual(upTransport.value(), b"\x16\x03\x01hellomore")
        self.assertTrue(client.value().endswith(b"server bytes"))
        self.assertEqual(h.pool.idleCount(), 0)

    def test_connectionLostDefaultReason(self) -> None:
        """
        C{connectionLost()} with C{IProtocol}'s default reason (a clean
        close) ends a tunnel like a clean close: the upstream connection is
        closed, not aborted.  (The default used to be L{None}, which the
        tunnel could not read.)
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"CONNECT secure.test:443 HTTP/1.1\r\nHost: secure.test:443\r\n\r\n")
        up, upTransport = h.connect(peer=("93.184.216.34", 443))
        proto.connectionLost()
        self.assertTrue(upTransport.disconnecting)
        self.assertFalse(upTransport.disconnected)
        self.assertEqual(proto.state, "CLOSED")

    def test_connectPortNotAllowed(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"CONNECT mail.test:25 HTTP/1.1\r\nHost: mail.test:25\r\n\r\n")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 403 "))
        self.assertIn(b"error=destination_ip_prohibited", client.value())
        self.assertEqual(h.attempts, [])

    def test_connectFails(self) -> None:
        """
        A CONNECT whose connection fails gets a normal error response, and
        the connection closes (what follows may be TLS, not HTTP).
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"CONNECT down.test:443 HTTP/1.1\r\nHost: down.test:443\r\n\r\n\x16\x03")
        h.fail(ierror.ConnectionRefusedError())
        self.assertTrue(client.value().startswith(b"HTTP/1.1 502 "))
        self.assertIn(b"error=connection_refused", client.value())
        self.assertTrue(client.disconnecting)

    def test_connectIdleTimeout(self) -> None:
        h = Harness(tunnelIdleTimeout=300)
        proto, client = h.client()
        proto.dataReceived(b"CONNECT secure.test:443 HTTP/1.1\r\nHost: secure.test:443\r\n\r\n")
        up, upTransport = h.connect(peer=("93.184.216.34", 443))
        h.clock.advance(299)
        proto.dataReceived(b"x")
        h.clock.advance(299)
        self.assertFalse(client.disconnecting)
        h.clock.advance(2)
        self.assertTrue(client.disconnecting)
        self.assertTrue(upTransport.disconnecting)

    def test_upgrade(self) -> None:
        """
        A WebSocket upgrade is forwarded with its Upgrade/Connection fields;
        a 101 turns the connection into a tunnel.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"GET http://ws.test/chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        up, upTransport = h.connect()
        sent = upTransport.value()
        self.assertIn(b"Connection: upgrade\r\n", sent)
        self.assertIn(b"Upgrade: websocket\r\n", sent)
        up.dataReceived(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x02hi"
        )
        reply = client.value()
        self.assertTrue(reply.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"))
        self.assertIn(b"Upgrade: websocket\r\n", reply)
        self.assertTrue(reply.endswith(b"\r\n\r\n\x81\x02hi"))
        upTransport.clear()
        proto.dataReceived(b"\x81\x82ab")
        self.assertEqual(upTransport.value(), b"\x81\x82ab")
        up.dataReceived(b"\x81\x03bye")
        self.assertTrue(client.value().endswith(b"\x81\x03bye"))
        self.assertEqual(h.pool.idleCount(), 0)

    def test_upgradeRefused(self) -> None:
        """
        If the origin answers an upgrade request normally, the response is
        relayed and the connection goes on as HTTP.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"GET http://ws.test/ HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\nGET http://ws.test/next HTTP/1.1\r\nHost: ws.test\r\n\r\n"
        )
        up, upTransport = h.connect()
        up.dataReceived(OK_RESPONSE)
        self.assertTrue(client.value().endswith(b"hello"))
        self.assertIn(b"GET /next HTTP/1.1", upTransport.value())

    def test_unrequested101(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://ws.test/ HTTP/1.1\r\nHost: ws.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"
        )
        self.assertTrue(client.value().startswith(b"HTTP/1.1 502 "))
        self.assertIn(b"error=http_protocol_error", client.value())

    def test_halfCloseAfterRequest(self) -> None:
        """
        A client that half-closes after sending its request still gets the
        response; then the connection closes.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        proto.readConnectionLost()
        up, upTransport = h.connect()
        up.dataReceived(OK_RESPONSE)
        self.assertTrue(client.value().endswith(b"hello"))
        self.assertTrue(client.disconnecting)


class ParentProxyTests(SynchronousTestCase):
    def harness(self, bypass=()):
        from twisted_proxy.proxy.parent import ParentProxy
        from twisted_proxy.proxy.policy import HostPatterns

        return Harness(
            parent=ParentProxy.fromURL("http://user:pa%3Ass@parent.test:3128"),
            parentBypass=HostPatterns("no-upstream-proxy-for", bypass),
        )

    def test_plainRequestInAbsoluteForm(self) -> None:
        h = self.harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/x?y HTTP/1.1\r\nHost: a.test\r\n\r\n")
        [(host, port, _, _)] = h.attempts
        self.assertEqual((host, port), ("parent.test", 3128))
        up, upTransport = h.connect(peer=("10.1.1.1", 3128))
        lines = headLines(upTransport.value())
        self.assertEqual(lines[0], b"GET http://a.test/x?y HTTP/1.1")
        self.assertIn(b"Proxy-Authorization: Basic dXNlcjpwYTpzcw==", lines)
        up.dataReceived(OK_RESPONSE)
        self.assertTrue(client.value().endswith(b"hello"))

    def test_bypass(self) -> None:
        h = self.harness(bypass=["*.internal.test"])
        proto, client = h.client()
        proto.dataReceived(
            b"GET http://wiki.internal.test/ HTTP/1.1\r\nHost: wiki.internal.test\r\n\r\n"
        )
        [(host, port, _, _)] = h.attempts
        self.assertEqual((host, port), ("wiki.internal.test", 80))

    def test_connectChained(self) -> None:
        """
        CONNECT goes to the parent as CONNECT; once it answers 2xx the tunnel
        starts, with the bytes the parent sent after its head.
        """
        h = self.harness()
        proto, client = h.client()
        proto.dataReceived(b"CONNECT s.test:443 HTTP/1.1\r\nHost: s.test:443\r\n\r\n\x16\x03")
        up, upTransport = h.connect(peer=("10.1.1.1", 3128))
        lines = headLines(upTransport.value())
        self.assertEqual(lines[0], b"CONNECT s.test:443 HTTP/1.1")
        self.assertIn(b"Proxy-Authorization: Basic dXNlcjpwYTpzcw==", lines)
        self.assertEqual(client.value(), b"")
        upTransport.clear()
        up.dataReceived(b"HTTP/1.1 200 Connection established\r\n\r\nbanner")
        self.assertEqual(client.value(), b"HTTP/1.1 200 Connection Established\r\n\r\nbanner")
        self.assertEqual(upTransport.value(), b"\x16\x03")

    def test_connectRefusedByParent(self) -> None:
        h = self.harness()
        proto, client = h.client()
        proto.dataReceived(b"CONNECT s.test:443 HTTP/1.1\r\nHost: s.test:443\r\n\r\n")
        up, upTransport = h.connect(peer=("10.1.1.1", 3128))
        up.dataReceived(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 502 "))
        self.assertIn(b"parent proxy refused the tunnel: 407", client.value())
        self.assertTrue(client.disconnecting)

    def test_parentUnreachable(self) -> None:
        h = self.harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        h.fail(ierror.ConnectionRefusedError())
        self.assertIn(b"Parent proxy: The destination parent.test:3128 refused", client.value())

    def test_badURL(self) -> None:
        from twisted_proxy.proxy.parent import ParentProxy

        for url in ("https://p:1", "p:3128", "http://p:99999", "http://p:1/path"):
            self.assertRaises(ValueError, ParentProxy.fromURL, url)


class TransactionRecordTests(SynchronousTestCase):
    """
    Each transaction is one structured event carrying its record; the
    timings come from the injected clock, so they are exact.
    """

    def setUp(self) -> None:

        self.events = logEvents(self)

    def Harness(self, **kwargs) -> Harness:
        return Harness(transactionDetail=True, **kwargs)

    def records(self) -> list[dict]:
        return [e["transaction"] for e in self.events if "transaction" in e]

    def test_connectStartAtTheConnectCall(self) -> None:
        """
        C{upstreamConnect} starts when Twisted makes the connect() call for
        a new connection, on the reactor's next pass after the request (the
        SYN goes out then), not when the request asked for it; a pooled
        connection has no C{connectStart}.
        """
        h = self.Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        # Time spent in the same pass (logging, other connections) is not
        # connecting.
        h.clock.advance(0.002)
        h.clock.advance(0.25)
        up, _ = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        new, pooled = self.records()
        self.assertEqual(new["offsets"]["connectStart"], 2.0)
        self.assertEqual(new["durations"]["upstreamConnect"], 250.0)
        self.assertIsNone(pooled["offsets"]["connectStart"])
        self.assertEqual(pooled["durations"]["upstreamConnect"], 0.0)

    def test_connectStartWhenConnectedAtOnce(self) -> None:
        """
        A connection made (or failed) at once was asked for at once.
        """
        h = self.Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        ex = proto._exchange
        assert ex is not None
        self.assertFalse(ex.record.marked("connectStart"))
        made: Deferred[None] = Deferred()
        made.callback(None)
        ex._markConnectStart(made)
        self.assertTrue(ex.record.marked("connectStart"))

    def test_success(self) -> None:
        h = self.Harness()
        h.clock.advance(1000)
        proto, client = h.client()
        h.clock.advance(0.5)
        proto.dataReceived(
            b"POST http://a.test/up HTTP/1.1\r\n"
            b"Host: a.test\r\nCookie: k=v\r\nContent-Length: 3\r\n\r\nabc"
        )
        # The reactor's next pass: Twisted calls connect() (connectStart).
        h.clock.advance(0)
        h.clock.advance(0.25)
        up, upTransport = h.connect()
        h.clock.advance(0.125)
        up.dataReceived(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n")
        h.clock.advance(1)
        up.dataReceived(b"ok")
        [record] = self.records()
        self.assertEqual(record["kind"], "http")
        self.assertEqual(record["method"], "POST")
        self.assertEqual(record["target"], "http://a.test/up")
        self.assertEqual((record["status"], record["reason"]), (201, "Created"))
        self.assertEqual((record["destHost"], record["destPort"]), ("a.test", 80))
        self.assertEqual((record["peerHost"], record["peerPort"]), ("93.184.216.34", 80))
        self.assertIs(record["connectionReused"], False)
        self.assertEqual(
            record["durations"],
            {
                "upstreamConnect": 250.0,
                "send": 0.0,
                "wait": 125.0,
                "receive": 1000.0,
                "total": 1375.0,
            },
        )
        self.assertEqual(record["times"]["accepted"], "1970-01-01T00:16:40.000000Z")
        self.assertEqual(record["times"]["requestHead"], "1970-01-01T00:16:40.500000Z")
        self.assertIn(["Cookie", "<redacted>"], record["requestHeaders"])
        self.assertEqual(record["bytesToUpstream"], len(upTransport.value()))
        self.assertEqual(record["bytesToClient"], len(client.value()))
        self.assertEqual(
            record["bytesFromUpstream"], len(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
        )
        self.assertFalse(record["aborted"])

    def test_upstreamFailure(self) -> None:
        h = self.Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        h.fail(ierror.DNSLookupError("a.test"))
        [record] = self.records()
        self.assertEqual(record["status"], 502)
        self.assertEqual(record["proxyError"], "dns_error")
        self.assertIn("could not be resolved", record["errorDetail"])

    def test_clientAbort(self) -> None:
        h = self.Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        up, upTransport = h.connect()
        up.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        proto.connectionLost(Failure(ierror.ConnectionLost()))
        [record] = self.records()
        self.assertTrue(record["aborted"])
        self.assertEqual(record["status"], 200)
        self.assertEqual(record["errorDetail"], "the client closed the connection")

    def test_refused(self) -> None:
        h = self.Harness()
        proto, client = h.client()
        proto.dataReceived(b"GET http://127.0.0.1:8080/ HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
        [record] = self.records()
        self.assertEqual((record["kind"], record["status"]), ("refused", 508))
        self.assertEqual(record["proxyError"], "proxy_loop_detected")

    def test_tunnel(self) -> None:
        h = self.Harness()
        proto, client = h.client()
        proto.dataReceived(b"CONNECT s.test:443 HTTP/1.1\r\nHost: s.test:443\r\n\r\nhello")
        up, upTransport = h.connect(peer=("93.184.216.34", 443))
        up.dataReceived(b"0123456789")
        h.clock.advance(2)
        proto.connectionLost(Failure(ierror.ConnectionDone()))
        up.connectionLost(Failure(ierror.ConnectionDone()))
        [record] = self.records()
        self.assertEqual((record["kind"], record["status"]), ("tunnel", 200))
        self.assertEqual(record["target"], "s.test:443")
        self.assertEqual(record["bytesToUpstream"], 5)
        self.assertEqual(record["bytesFromUpstream"], 10)
        self.assertEqual(record["durations"]["total"], 2000.0)

    def test_historyHeadersAll(self) -> None:
        h = self.Harness(redactHistory=False)
        proto, client = h.client()
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nCookie: k=v\r\n\r\n")
        h.fail(ierror.ConnectionRefusedError())
        [record] = self.records()
        self.assertIn(["Cookie", "k=v"], record["requestHeaders"])


class SlowVerificationTests(SynchronousTestCase):
    """
    Checking a password hash runs off the reactor; the request waits.
    """

    def test_verifiedInThread(self) -> None:
        from twisted_proxy.proxy.policy import Policy

        path = writeHtpasswd(self)
        h = Harness(policy=Policy.fromOptions(authFile=path))
        calls: list = []
        pending: list[Deferred] = []

        def runInThread(f: Callable[..., object], *args: object) -> Deferred[None]:
            calls.append((f, args))
            d: Deferred[None] = Deferred()
            pending.append(d)
            return d

        h.factory.runInThread = runInThread
        proto, client = h.client()
        request = (
            b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n"
            b"Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\r\n"
        )
        proto.dataReceived(request)
        # The hash is checked "in a thread"; nothing happens meanwhile.
        self.assertEqual(len(calls), 1)
        self.assertEqual(h.attempts, [])
        self.assertEqual(client.producerState, "paused")
        f, args = calls[0]
        f(*args)
        pending[0].callback(None)
        self.assertEqual(len(h.attempts), 1)
        up, upTransport = h.connect()
        up.dataReceived(OK_RESPONSE)
        # The second request is answered from the cache, without a thread.
        proto.dataReceived(request)
        self.assertEqual(len(calls), 1)
        self.assertEqual(h.pool.reused, 1)
        self.assertEqual(client.producerState, "producing")

    def test_clientGoneWhileVerifying(self) -> None:
        from twisted_proxy.proxy.policy import Policy

        path = writeHtpasswd(self)
        h = Harness(policy=Policy.fromOptions(authFile=path))
        pending: list[Deferred] = []

        def runInThread(f: Callable[..., object], *args: object) -> Deferred[None]:
            pending.append(Deferred())
            return pending[-1]

        h.factory.runInThread = runInThread
        proto, client = h.client()
        proto.dataReceived(
            b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n"
            b"Proxy-Authorization: Basic YWxpY2U6d3Jvbmc=\r\n\r\n"
        )
        proto.connectionLost(Failure(ierror.ConnectionLost()))
        pending[0].callback(None)
        self.assertEqual(h.attempts, [])


class MaxForwardsTests(SynchronousTestCase):
    """
    RFC 9110 7.6.2: Max-Forwards on TRACE and OPTIONS.
    """

    def test_traceZeroAnsweredHere(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"TRACE http://a.test/x HTTP/1.1\r\nHost: a.test\r\nMax-Forwards: 0\r\n"
            b"Cookie: secret=1\r\n\r\n"
        )
        self.assertEqual(h.attempts, [])
        data = client.value()
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data)
        self.assertIn(b"Content-Type: message/http\r\n", data)
        self.assertIn(b"TRACE http://a.test/x HTTP/1.1\r\nHost: a.test\r\n", data)
        self.assertNotIn(b"secret=1", data)
        self.assertFalse(client.disconnecting)

    def test_optionsZeroAnsweredHere(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"OPTIONS http://a.test/ HTTP/1.1\r\nHost: a.test\r\nMax-Forwards: 0\r\n\r\n"
        )
        self.assertEqual(h.attempts, [])
        self.assertTrue(client.value().startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertIn(b"Content-Length: 0\r\n", client.value())

    def test_decremented(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"OPTIONS http://a.test/ HTTP/1.1\r\nHost: a.test\r\nMax-Forwards: 5\r\n\r\n"
        )
        up, upTransport = h.connect()
        self.assertIn(b"Max-Forwards: 4\r\n", upTransport.value())
        self.assertNotIn(b"Max-Forwards: 5", upTransport.value())

    def test_otherMethodsUntouched(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nMax-Forwards: 0\r\n\r\n"
        )
        up, upTransport = h.connect()
        self.assertIn(b"Max-Forwards: 0\r\n", upTransport.value())

    def test_invalidIsBadRequest(self) -> None:
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(
            b"TRACE http://a.test/ HTTP/1.1\r\nHost: a.test\r\nMax-Forwards: -1\r\n\r\n"
        )
        self.assertTrue(client.value().startswith(b"HTTP/1.1 400 "))

    def test_optionsWithEmptyPathIsAsterisk(self) -> None:
        """
        RFC 9112 3.2.4: OPTIONS for a whole server, in absolute-form with an
        empty path, is OPTIONS * at the origin.
        """
        h = Harness()
        proto, client = h.client()
        proto.dataReceived(b"OPTIONS http://a.test:8001 HTTP/1.1\r\nHost: a.test:8001\r\n\r\n")
        up, upTransport = h.connect()
        self.assertTrue(
            upTransport.value().startswith(b"OPTIONS * HTTP/1.1\r\nHost: a.test:8001\r\n")
        )

    def test_optionsAsteriskToParent(self) -> None:
        from twisted_proxy.proxy.parent import ParentProxy
        from twisted_proxy.proxy.policy import HostPatterns

        h = Harness(
            parent=ParentProxy.fromURL("http://parent.test:3128"),
            parentBypass=HostPatterns("no-upstream-proxy-for", []),
        )
        proto, client = h.client()
        proto.dataReceived(b"OPTIONS * HTTP/1.1\r\nHost: a.test:8001\r\n\r\n")
        up, upTransport = h.connect(peer=("10.1.1.1", 3128))
        self.assertTrue(upTransport.value().startswith(b"OPTIONS http://a.test:8001 HTTP/1.1\r\n"))


class UnixSocketClientTests(SynchronousTestCase):
    def test_unixClientAllowed(self) -> None:
        """
        A client on a unix socket (--listen unix:PATH) has no IP address;
        the socket's file permissions decide who may connect, so the
        network rules do not refuse it.
        """
        from twisted.internet.address import UNIXAddress

        h = Harness()
        proto = h.factory.buildProtocol(UNIXAddress(None))
        client = StringTransport(peerAddress=UNIXAddress(None))
        proto.makeConnection(client)
        proto.dataReceived(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(len(h.attempts), 1)
        self.assertEqual(client.value(), b"")

    def test_unixClientLogged(self) -> None:
        from twisted.internet.address import UNIXAddress
        from twisted.logger import formatEvent

        events = logEvents(self)
        h = Harness()
        proto = h.factory.buildProtocol(UNIXAddress(None))
        proto.makeConnection(
            StringTransport(peerAddress=UNIXAddress(None), hostAddress=UNIXAddress(b"/run/p.sock"))
        )
        self.assertTrue(
            any(
                formatEvent(e).startswith("Connection has been accepted from: unix:/run/p.sock")
                for e in events
            )
        )
