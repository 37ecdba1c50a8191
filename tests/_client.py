"""
Test doubles for the C{proxyclient} tests (C{tests/test_client_*.py}): a
netifaces-like interface table, an L{Environment} with captured streams,
fake proxies, and L{Network}, which joins every connection the client opens
to a fake proxy in memory with L{twisted.test.iosim}.
"""

from __future__ import annotations

import datetime
import functools
import io
import re
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError, DNSLookupError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import PrivateCertificate
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.test.iosim import FakeTransport, IOPump, connect

from tests._typing import TestCaseMixin
from twisted_proxy.client.config import Environment
from twisted_proxy.client.main import runClient
from twisted_proxy.proxy.tcp import IStreamTransport

# --- The interface table ----------------------------------------------------------

AF_INET, AF_INET6, AF_LINK = 2, 10, 17


class FakeInterfaces:
    """
    A netifaces-like interface table.
    """

    AF_INET = AF_INET
    AF_INET6 = AF_INET6
    AF_LINK = AF_LINK

    def __init__(
        self,
        table: dict[str, dict[int, list[dict[str, str]]]],
        gateways: dict[Any, Any],
    ) -> None:
        self._table = table
        self._gateways = gateways

    def interfaces(self) -> list[str]:
        return list(self._table)

    def ifaddresses(self, name: str) -> dict[int, list[dict[str, str]]]:
        return self._table[name]

    def gateways(self) -> dict[Any, Any]:
        return self._gateways


LOOPBACK = {
    AF_LINK: [{"addr": "00:00:00:00:00:00", "peer": "00:00:00:00:00:00"}],
    AF_INET: [{"addr": "127.0.0.1", "netmask": "255.0.0.0"}],
    AF_INET6: [{"addr": "::1", "netmask": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"}],
}


def ethernet(mac: str, *addresses: str) -> dict[int, list[dict[str, str]]]:
    table: dict[int, list[dict[str, str]]] = {
        AF_LINK: [{"addr": mac, "broadcast": "ff:ff:ff:ff:ff:ff"}]
    }
    for address in addresses:
        family = AF_INET6 if ":" in address else AF_INET
        table.setdefault(family, []).append({"addr": address})
    return table


def machine() -> FakeInterfaces:
    """
    Loopback, eth0 (default route) and wlan0.
    """
    return FakeInterfaces(
        {
            "lo": LOOPBACK,
            "eth0": ethernet("02:00:00:00:00:01", "192.0.2.2", "fe80::1%eth0"),
            "wlan0": ethernet("02:00:00:00:00:02", "198.51.100.7", "2001:db8::7"),
        },
        {
            "default": {AF_INET: ("192.0.2.1", "eth0")},
            AF_INET: [("192.0.2.1", "eth0", True)],
        },
    )


MACHINE_MAC_LINE = (
    "Physical MAC Address: 02:00:00:00:00:01 (eth0, default route; the proxy is on loopback)"
)

# --- The environment --------------------------------------------------------------


class FakeMonotonic:
    """
    A monotonic clock that moves only when told to.
    """

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


WALL_TIME = datetime.datetime(2024, 5, 6, 12, 34, 56, 123000).timestamp()


def makeEnv(
    stdin: str = "", interactive: bool = False, **kwargs: Any
) -> tuple[Environment, io.StringIO, io.StringIO]:
    """
    An L{Environment} reading C{stdin} and writing to two L{io.StringIO}s,
    with the L{machine} interface table, a fixed wall clock, and (unless
    given) a L{Clock} for timeouts and a reactor that must not be used.
    """
    out, err = kwargs.pop("stdout", io.StringIO()), io.StringIO()
    kwargs.setdefault("interfaceTable", machine)
    kwargs.setdefault("wallClock", lambda: WALL_TIME)
    kwargs.setdefault("clock", Clock())
    kwargs.setdefault("resolver", FakeResolver())
    env = Environment(
        reactor=kwargs.pop("reactor", None),
        stdin=io.StringIO(stdin),
        stdout=out,
        stderr=err,
        interactive=interactive,
        **kwargs,
    )
    return env, out, err


class FakeResolver:
    """
    A resolver from a table (C{localhost} is 127.0.0.1); other names fail
    with L{DNSLookupError}.  Nothing is ever resolved for real.

    @ivar lookups: the names looked up, in order.
    @ivar prepared: how many times L{prepare} was called.
    @ivar pending: if set, lookups wait on new Deferreds kept here.
    """

    def __init__(self, table: dict[str, list[str]] | None = None, pending: bool = False) -> None:
        self.table = {"localhost": ["127.0.0.1"]}
        self.table.update(table or {})
        self.lookups: list[str] = []
        self.prepared = 0
        self.pending: list[defer.Deferred[list[str]]] | None = [] if pending else None

    def prepare(self) -> defer.Deferred[None]:
        self.prepared += 1
        return defer.succeed(None)

    def resolve(self, host: str, port: int) -> defer.Deferred[list[str]]:
        self.lookups.append(host)
        if self.pending is not None:
            d: defer.Deferred[list[str]] = defer.Deferred()
            self.pending.append(d)
            return d
        if host in self.table:
            return defer.succeed(list(self.table[host]))
        return defer.fail(DNSLookupError(host))


class RefusingEndpoint:
    """
    An endpoint factory whose connection attempts are refused at once; it
    records where it was asked to connect.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int, timeout: float) -> RefusingEndpoint:
        self.calls.append((host, port))
        return self

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        return defer.fail(ConnectionRefusedError())


# --- Fake proxies -----------------------------------------------------------------


Responder = Callable[["FakeProxyProtocol", bytes, bytes], None]


class FakeProxyProtocol(Protocol):
    """
    Reads requests (head and Content-Length body) and lets the factory's
    C{respond} answer each.  With a C{tls} factory, a C{CONNECT} is
    answered 200 and the connection becomes a TLS server whose requests
    C{respond} answers in the same way (a proxy and origin in one).
    """

    transport: IStreamTransport

    upper: Protocol | None = None

    def connectionMade(self) -> None:
        self.buffer = b""
        self.factory.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        if self.upper is not None:
            self.upper.dataReceived(data)
            return
        self.buffer += data
        while b"\r\n\r\n" in self.buffer and self.upper is None:
            head, rest = self.buffer.split(b"\r\n\r\n", 1)
            head += b"\r\n\r\n"
            if head.startswith(b"CONNECT ") and self.factory.tls is not None:
                self.buffer = b""
                self.factory.tunnels.append(head)
                self._connect(head, rest)
                return
            match = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
            length = int(match.group(1)) if match else 0
            if len(rest) < length:
                return
            body, self.buffer = rest[:length], rest[length:]
            self.factory.requests.append((head, body))
            self.factory.respond(self, head, body)

    def _connect(self, head: bytes, rest: bytes) -> None:
        if self.factory.refuse is not None:
            self.transport.write(self.factory.refuse)
            return
        self.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        inner = FakeProxyFactory(self.factory.respond)
        inner.requests = self.factory.requests
        tls = tlsServer(inner, self.factory.tls).buildProtocol(self.transport.getPeer())
        self.upper = tls
        tls.makeConnection(self.transport)
        if rest:
            tls.dataReceived(rest)

    def connectionLost(self, reason: Any = None) -> None:
        if self.upper is not None:
            self.upper.connectionLost(reason)
        self.factory.lost.append(reason)
        for d in self.factory.waiting:
            if not d.called:
                d.callback(None)


class FakeProxyFactory(Factory):
    """
    Builds L{FakeProxyProtocol}s and records what they saw.

    @ivar requests: C{(head, body)} of each request, in order (inside TLS
        tunnels too).
    @ivar tunnels: the head of each C{CONNECT}.
    @ivar tls: server TLS options, to answer C{CONNECT} as a TLS origin.
    @ivar refuse: bytes to answer a C{CONNECT} with instead.
    """

    protocol = FakeProxyProtocol

    def __init__(self, respond: Responder, tls: Any = None, refuse: bytes | None = None) -> None:
        self.respond = respond
        self.tls = tls
        self.refuse = refuse
        self.connections: list[FakeProxyProtocol] = []
        self.requests: list[tuple[bytes, bytes]] = []
        self.tunnels: list[bytes] = []
        self.lost: list[Any] = []
        self.waiting: list[defer.Deferred[None]] = []

    async def allClosed(self, reactor: Any) -> None:
        """
        Wait (on a real reactor) until every connection this proxy accepted
        is closed; abort those still open after 5 seconds.
        """
        while len(self.lost) < len(self.connections):
            d: defer.Deferred[None] = defer.Deferred()
            self.waiting.append(d)
            timeout = reactor.callLater(5, d.callback, None)
            await d
            if timeout.active():
                timeout.cancel()
            else:
                for p in self.connections:
                    p.transport.abortConnection()


def ok(
    body: bytes = b"<html>\n<body>hello</body>\n</html>\n",
    contentType: bytes = b"text/html",
) -> Responder:
    """
    A responder that answers 200 with C{body}.
    """

    def respond(proto: FakeProxyProtocol, head: bytes, requestBody: bytes) -> None:
        proto.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (contentType, len(body), b"" if head.startswith(b"HEAD ") else body)
        )

    return respond


# --- An in-memory network ---------------------------------------------------------


class _NetworkEndpoint:
    def __init__(self, network: Network, host: str, port: int) -> None:
        self._network = network
        self._host = host
        self._port = port

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        return self._network.connect(self._host, self._port, factory)


class Network:
    """
    Every connection the client opens (through L{endpointFactory}) is
    joined, with L{twisted.test.iosim}, to a new protocol from
    C{serverFactory}; L{flush} moves bytes until nothing moves.

    @ivar clock: the clock for the client's timeouts.
    @ivar connects: C{(host, port)} of each connection attempt.
    @ivar pumps: one L{IOPump} per connection.
    @ivar localHost: the client's local address on every connection.
    """

    localHost = "127.0.0.1"

    def __init__(self, serverFactory: Factory[Any], clock: Clock | None = None) -> None:
        self.serverFactory = serverFactory
        self.clock = clock if clock is not None else Clock()
        self.connects: list[tuple[str, int]] = []
        self.pumps: list[IOPump] = []
        self._localPort = 40000

    def endpointFactory(self, host: str, port: int, timeout: float) -> _NetworkEndpoint:
        return _NetworkEndpoint(self, host, port)

    def connect(self, host: str, port: int, factory: Any) -> defer.Deferred[Any]:
        self.connects.append((host, port))
        self._localPort += 1
        local = IPv4Address("TCP", self.localHost, self._localPort)
        remote = IPv4Address("TCP", host, port)
        server = self.serverFactory.buildProtocol(local)
        client = factory.buildProtocol(remote)
        pump = connect(
            server,
            FakeTransport(server, True, hostAddress=remote, peerAddress=local),
            client,
            FakeTransport(client, False, hostAddress=local, peerAddress=remote),
            greet=False,
            clock=self.clock,
        )
        self.pumps.append(pump)
        return defer.succeed(client)

    def flush(self) -> None:
        """
        Move bytes (and connection closes) on every connection, new ones
        included, until nothing moves.
        """
        moved = True
        while moved:
            moved = False
            for pump in list(self.pumps):
                if pump.pump(advanceClock=False):
                    moved = True

    def advance(self, seconds: float) -> None:
        """
        Move the clock on, then the bytes that moving it made.
        """
        self.clock.advance(seconds)
        self.flush()

    def start(
        self, argv: list[str], **kwargs: Any
    ) -> tuple[defer.Deferred[int], io.StringIO, io.StringIO]:
        """
        Start the client over this network and move the bytes there are.

        @return: the exit code's L{Deferred}, stdout and stderr.
        """
        kwargs.setdefault("endpointFactory", self.endpointFactory)
        kwargs.setdefault("clock", self.clock)
        env, out, err = makeEnv(**kwargs)
        d = defer.ensureDeferred(runClient(env, argv))
        self.flush()
        return d, out, err

    def run(self, test: Any, argv: list[str], **kwargs: Any) -> tuple[int, str, str]:
        """
        Run the client to the end over this network.

        @return: the exit code, stdout and stderr.
        """
        d, out, err = self.start(argv, **kwargs)
        code = test.successResultOf(d)
        return code, out.getvalue(), err.getvalue()


# --- TLS ----------------------------------------------------------------------------


@functools.cache
def certificates() -> tuple[bytes, bytes]:
    """
    A test CA, and a server certificate and key for "localhost" signed by
    it: C{(caPEM, serverKeyAndCertPEM)}.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxyclient test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(caName)
        .issuer_name(caName)
        .public_key(caKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(caKey.public_key()),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(caName)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(caKey.public_key()),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    keyPEM = key.private_bytes(
        pem,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return ca.public_bytes(pem), keyPEM + leaf.public_bytes(pem)


def tlsServer(factory: Factory, options: Any = None) -> TLSMemoryBIOFactory:
    """
    C{factory} behind a server TLS layer (L{serverTLS} by default), which
    writes as soon as it is written to (Twisted's BufferingTLSTransport would
    wait for the global reactor).
    """
    tls = TLSMemoryBIOFactory(options if options is not None else serverTLS(), False, factory)
    tls.protocol = TLSMemoryBIOProtocol
    return tls


def serverTLS() -> Any:
    """
    Server TLS options with the L{certificates} "localhost" certificate.
    """
    return PrivateCertificate.loadPEM(certificates()[1]).options()


def writeCA(directory: str) -> str:
    """
    Write the test CA to C{directory}/ca.pem and return its path.
    """
    import os

    path = os.path.join(directory, "ca.pem")
    with open(path, "wb") as f:
        f.write(certificates()[0])
    return path


# --- Test cases over a Network ------------------------------------------------------


PROXY_PORT = 3128


class NetworkTestsMixin(TestCaseMixin):
    """
    Run the client against one fake proxy factory over a L{Network}.
    """

    net: Network

    def startProxy(self, respond: Responder, **kwargs: Any) -> tuple[FakeProxyFactory, int]:
        factory = FakeProxyFactory(respond, **kwargs)
        self.net = Network(factory)
        return factory, PROXY_PORT

    def runAgainst(self, port: int, *argv: str, **kwargs: Any) -> tuple[int, str, str]:
        return self.net.run(self, ["--proxy", "127.0.0.1:%d" % (port,), *argv], **kwargs)

    def start(
        self, port: int, *argv: str, **kwargs: Any
    ) -> tuple[defer.Deferred[int], io.StringIO, io.StringIO]:
        """
        Start the client and move the bytes there are; the test moves the
        clock on (L{Network.advance}).
        """
        return self.net.start(["--proxy", "127.0.0.1:%d" % (port,), *argv], **kwargs)
