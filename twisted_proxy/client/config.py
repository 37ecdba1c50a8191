# -*- test-case-name: tests.test_client_main -*-
"""
A validated invocation: the outside world (L{Environment}) and what the
command line and environment ask for (L{Config}, built by L{configure}),
including the request head that will be sent.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO, TypeAlias

from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLContextFactory,
    IStreamClientEndpoint,
)
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.python import usage

from twisted_proxy.http.fields import redactHeaders
from twisted_proxy.http.framing import serializeRequestHead
from twisted_proxy.http.target import Target

from .address import TargetError, authorityForm
from .mac import netifacesTable
from .network import ThreadResolver, addressEndpoint
from .options import USER_AGENT, Options
from .proxies import Route, chooseRoute, parseProxyUser

__all__ = [
    "Environment",
    "OutputFile",
    "Config",
    "buildRequest",
    "makeTLSCreator",
    "configure",
]

TLSCreator: TypeAlias = IOpenSSLClientConnectionCreator | IOpenSSLContextFactory
"""
The client's TLS settings, as L{TLSMemoryBIOFactory
<twisted.protocols.tls.TLSMemoryBIOFactory>} takes them: the options of
C{optionsForClientTLS}, or C{CertificateOptions(verify=False)} for
C{--insecure}.
"""


@dataclass
class Environment:
    """
    Everything the client uses from the outside world, so tests can replace
    it.

    @ivar reactor: for TCP connections (L{IReactorTCP}) and, unless C{clock}
        is given, timeouts.
    @ivar stdin: where the prompt reads the address.
    @ivar stdout: normal output.
    @ivar stderr: error messages.
    @ivar environ: for the proxy settings (C{http_proxy}, C{no_proxy}, ...).
    @ivar clock: for timeouts (L{IReactorTime}); the reactor by default.
    @ivar monotonic: the clock that times the phases, in seconds.
    @ivar wallClock: the clock for the local timestamps, in seconds since
        the epoch.
    @ivar endpointFactory: C{(address, port, timeout) -> IStreamClientEndpoint}
        for the connection to the proxy's (or the origin's) IP address; a
        L{TCP4ClientEndpoint} or L{TCP6ClientEndpoint} by default.
    @ivar resolver: resolves a proxy given by name, before the connection
        (C{resolve(host, port)} fires with a list of addresses;
        C{prepare()} readies it before the clock starts); a
        L{ThreadResolver} by default.
    @ivar interfaceTable: returns a netifaces-like object (see
        L{findMacAddress}); the netifaces module by default.
    @ivar interactive: whether stdin is a terminal (by default, whether it
        says so): the prompt then asks again after a bad address, and a
        missing proxy password is asked for.
    @ivar getpass: asks for a password on the terminal, without echo.
    @ivar quietCollector: whether the session may steer Python's garbage
        collector for the process (collect and freeze before the clock, no
        collection during an exchange); only the real process does.
    @ivar interrupts: installs a handler for Ctrl-C (SIGINT) while the
        requests run: given a callable, returns the callable that removes
        it.  L{None}: Ctrl-C is not handled.
    """

    reactor: Any
    stdin: TextIO
    stdout: TextIO
    stderr: TextIO
    environ: Mapping[str, str] = field(default_factory=dict)
    clock: Any = None
    monotonic: Callable[[], float] = time.monotonic
    wallClock: Callable[[], float] = time.time
    endpointFactory: Callable[[str, int, float], IStreamClientEndpoint] | None = None
    resolver: Any = None
    interfaceTable: Callable[[], Any] = netifacesTable
    interactive: bool | None = None
    getpass: Callable[[str], str] = getpass.getpass
    interrupts: Callable[[Callable[[], None]], Callable[[], None]] | None = None
    quietCollector: bool = False

    def __post_init__(self) -> None:
        if self.clock is None:
            self.clock = self.reactor
        if self.endpointFactory is None:
            self.endpointFactory = addressEndpoint(self.reactor, self.monotonic)
        if self.resolver is None:
            self.resolver = ThreadResolver(self.reactor)
        if self.interactive is None:
            isatty = getattr(self.stdin, "isatty", None)
            self.interactive = bool(isatty and isatty())


class OutputFile:
    """
    The file C{--output} names, opened before anything is sent, so that a
    path that cannot be written is a usage error, not a failure after the
    request.  It is truncated only when a response body starts (an
    existing file survives a failed run) and removed again if this program
    created it and no response came.

    @ivar path: the path, as given.
    """

    def __init__(self, path: str) -> None:
        """
        @raise OSError: if C{path} cannot be opened for writing.
        """
        self.path = path
        existed = os.path.lexists(path)
        self._file: BinaryIO = open(path, "ab")  # closed by close()
        self._created = not existed
        self._started = False

    def start(self) -> None:
        """
        A response body starts: empty the file.
        """
        self._file.seek(0)
        self._file.truncate()
        self._started = True

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def close(self) -> None:
        """
        Close the file; remove it if it was created here and never started.
        """
        if self._file.closed:
            return
        self._file.close()
        if self._created and not self._started:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


@dataclass
class Config:
    """
    A validated command line.

    @ivar route: the proxy (or, for a C{no_proxy} match, the origin) and
        the credentials.
    @ivar requestHead: the request head as sent.
    @ivar shownHead: the same, as shown and recorded: credentials and
        cookies redacted (L{twisted_proxy.http.fields.redactHeaders}).
    @ivar output: the C{--output} file, if any.
    @ivar tlsCreator: the TLS client options, for C{https://} targets.
    """

    target: Target
    route: Route
    method: str
    requestHead: bytes
    shownHead: bytes
    requestBody: bytes
    count: int
    newConnection: bool
    timeout: float
    timing: bool
    json: bool
    showBody: bool
    output: OutputFile | None = None
    tlsCreator: TLSCreator | None = None

    @property
    def proxy(self) -> str | None:
        """
        The proxy's C{HOST:PORT}, or L{None} for a direct connection.
        """
        return self.route.proxy

    @property
    def https(self) -> bool:
        return self.target.scheme == "https"

    def tunnelHead(self) -> bytes | None:
        """
        The C{CONNECT} request that opens the tunnel of an C{https://}
        target through a proxy, with the proxy credentials if any; L{None}
        when there is no tunnel.
        """
        if not self.https or self.route.direct:
            return None
        authority = authorityForm(self.target).encode("ascii")
        fields = [(b"Host", authority), (b"User-Agent", USER_AGENT.encode("ascii"))]
        if self.route.credentials is not None:
            fields.append((b"Proxy-Authorization", self.route.credentials.authorization()))
        return serializeRequestHead(b"CONNECT", authority, fields)


def buildRequest(
    options: Options, target: Target, route: Route, body: bytes, hasBody: bool
) -> tuple[str, bytes, bytes]:
    """
    The method and the request head, as sent and as shown.

    The request-target is the absolute-form to a proxy (unless
    C{--origin-form}), the origin-form inside a tunnel and to an origin
    directly.  The proxy credentials go on requests to a proxy only.
    """
    if options["head"]:
        method = "HEAD"
    elif options["request"]:
        method = options["request"]
    else:
        method = "POST" if hasBody else "GET"
    if target.scheme == "https" or route.direct or options["origin-form"]:
        requestTarget = target.path
    else:
        requestTarget = target.url.encode("ascii")
    fields: list[tuple[str, bytes]] = [
        ("Host", target.authority),
        ("User-Agent", USER_AGENT.encode("ascii")),
        ("Accept", b"*/*"),
    ]
    if route.credentials is not None and not route.direct and target.scheme == "http":
        fields.append(("Proxy-Authorization", route.credentials.authorization()))
    if hasBody:
        contentType = (
            b"application/x-www-form-urlencoded"
            if options["data"] is not None
            else b"application/octet-stream"
        )
        fields.append(("Content-Type", contentType))
    if hasBody or method in ("POST", "PUT", "PATCH"):
        fields.append(("Content-Length", str(len(body)).encode("ascii")))
    for name, value in options["headers"]:
        lower = name.lower()
        if lower in ("content-length", "transfer-encoding"):
            raise usage.UsageError("--header {}: the client sets it itself".format(name))
        fields = [(n, v) for n, v in fields if n.lower() != lower]
        if value:
            fields.append((name, value.encode("utf-8")))
    encoded = [(n.encode("latin-1"), v) for n, v in fields]
    head = serializeRequestHead(method.encode("ascii"), requestTarget, encoded)
    shown = serializeRequestHead(
        method.encode("ascii"),
        requestTarget,
        [(n.encode("latin-1"), v.encode("latin-1")) for n, v in redactHeaders(encoded)],
    )
    return method, head, shown


def makeTLSCreator(options: Options, host: str) -> TLSCreator:
    """
    The TLS client options: verification of the certificate and host name
    (service_identity) against the system's CAs or C{--cacert}, or none
    with C{--insecure}.

    @raise usage.UsageError: if C{--cacert} cannot be read.
    """
    if options["insecure"]:
        return CertificateOptions(verify=False)
    path = options["cacert"]
    if path is None:
        return optionsForClientTLS(host)
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as e:
        raise usage.UsageError("--cacert {}: {}".format(path, e.strerror or e)) from None
    blocks = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.DOTALL)
    try:
        certificates = [Certificate.loadPEM(block) for block in blocks]
    except Exception:
        certificates = []
    if not certificates:
        raise usage.UsageError("--cacert {}: no PEM certificate found".format(path))
    return optionsForClientTLS(host, trustRoot=trustRootFromCertificates(certificates))


def _proxyUser(options: Options, env: Environment) -> tuple[str, str] | None:
    """
    C{--proxy-user USER[:PASSWORD]}, asking for a missing password on the
    terminal.

    @raise usage.UsageError: if it is unusable, or the password is missing
        and stdin is not a terminal to ask on.
    """
    text = options["proxy-user"]
    if text is None:
        return None
    try:
        user, password = parseProxyUser(text)
    except TargetError as e:
        raise usage.UsageError(str(e)) from None
    if password is None:
        if not env.interactive:
            raise usage.UsageError(
                "--proxy-user {}: no password given, and stdin is not a terminal to "
                "ask for one; write --proxy-user {}:PASSWORD".format(user, user)
            )
        password = env.getpass("Enter proxy password for user '{}': ".format(user))
    return user, password


def configure(options: Options, env: Environment, target: Target) -> Config:
    """
    Everything but the target from the command line and environment.

    @raise usage.UsageError: for an unusable value, before anything is sent.
    """
    try:
        route = chooseRoute(
            target.scheme,
            target.host,
            target.port,
            env.environ,
            proxyOption=options["proxy"],
            noProxyOption=options["noproxy"],
            proxyUser=_proxyUser(options, env),
        )
    except TargetError as e:
        raise usage.UsageError(str(e)) from None
    body = b""
    hasBody = False
    if options["data"] is not None:
        body, hasBody = options["data"].encode("utf-8"), True
    elif options["data-file"] is not None:
        try:
            with open(options["data-file"], "rb") as f:
                body = f.read()
        except OSError as e:
            raise usage.UsageError(
                "--data-file {}: {}".format(options["data-file"], e.strerror or e)
            ) from None
        hasBody = True
    method, head, shown = buildRequest(options, target, route, body, hasBody)
    tlsCreator = makeTLSCreator(options, target.host) if target.scheme == "https" else None
    output = None
    if options["output"] is not None:
        try:
            output = OutputFile(options["output"])
        except OSError as e:
            raise usage.UsageError(
                "--output {}: {}".format(options["output"], e.strerror or e)
            ) from None
    return Config(
        target=target,
        route=route,
        method=method,
        requestHead=head,
        shownHead=shown,
        requestBody=body,
        count=options["count"],
        newConnection=options["new-connection"],
        timeout=options["timeout"],
        timing=options["timing"],
        json=options["json"],
        showBody=options["show-body"],
        output=output,
        tlsCreator=tlsCreator,
    )
