# -*- test-case-name: tests.test_client_main -*-
"""
A validated invocation: the outside world (L{Environment}) and what the
command line and environment ask for (L{Config}, built by L{configure}),
including the request head that will be sent.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.python import usage

from twisted_proxy.http.framing import serializeRequestHead
from twisted_proxy.http.target import Target

from .address import (
    DEFAULT_PROXY,
    TargetError,
    authorityForm,
    formatHostPort,
    parseProxyAddress,
)
from .mac import netifacesTable
from .options import USER_AGENT, Options

__all__ = ["Environment", "Config", "buildRequest", "makeTLSCreator", "configure"]


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
    @ivar environ: for C{http_proxy}/C{HTTP_PROXY}.
    @ivar clock: for timeouts (L{IReactorTime}); the reactor by default.
    @ivar monotonic: the clock that times the phases, in seconds.
    @ivar wallClock: the clock for the local timestamps, in seconds since
        the epoch.
    @ivar endpointFactory: C{(host, port, timeout) -> IStreamClientEndpoint}
        for the connection to the proxy; a L{HostnameEndpoint} by default.
    @ivar interfaceTable: returns a netifaces-like object (see
        L{findMacAddress}); the netifaces module by default.
    @ivar interactive: whether the prompt asks again after a bad address;
        by default, whether C{stdin} is a terminal.
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
    interfaceTable: Callable[[], Any] = netifacesTable
    interactive: bool | None = None

    def __post_init__(self) -> None:
        if self.clock is None:
            self.clock = self.reactor
        if self.endpointFactory is None:
            reactor = self.reactor

            def hostnameEndpoint(
                host: str, port: int, timeout: float
            ) -> IStreamClientEndpoint:
                return HostnameEndpoint(reactor, host, port, timeout=timeout)

            self.endpointFactory = hostnameEndpoint
        if self.interactive is None:
            isatty = getattr(self.stdin, "isatty", None)
            self.interactive = bool(isatty and isatty())


@dataclass
class Config:
    """
    A validated command line.
    """

    target: Target
    proxyHost: str
    proxyPort: int
    method: str
    requestHead: bytes
    requestBody: bytes
    count: int
    newConnection: bool
    timeout: float
    timing: bool
    json: bool
    showBody: bool
    output: str | None
    tlsCreator: object = None

    @property
    def proxy(self) -> str:
        return formatHostPort(self.proxyHost, self.proxyPort)

    def tunnelHead(self) -> bytes:
        authority = authorityForm(self.target).encode("ascii")
        return serializeRequestHead(
            b"CONNECT",
            authority,
            [(b"Host", authority), (b"User-Agent", USER_AGENT.encode("ascii"))],
        )



def buildRequest(
    options: Options, target: Target, body: bytes, hasBody: bool
) -> tuple[str, bytes]:
    """
    The method and the request head.
    """
    if options["head"]:
        method = "HEAD"
    elif options["request"]:
        method = options["request"]
    else:
        method = "POST" if hasBody else "GET"
    if target.scheme == "https" or options["origin-form"]:
        requestTarget = target.path
    else:
        requestTarget = target.url.encode("ascii")
    fields: list[tuple[str, str]] = [
        ("Host", target.authority.decode("ascii")),
        ("User-Agent", USER_AGENT),
        ("Accept", "*/*"),
    ]
    if hasBody:
        contentType = (
            "application/x-www-form-urlencoded"
            if options["data"] is not None
            else "application/octet-stream"
        )
        fields.append(("Content-Type", contentType))
    if hasBody or method in ("POST", "PUT", "PATCH"):
        fields.append(("Content-Length", str(len(body))))
    for name, value in options["headers"]:
        lower = name.lower()
        if lower in ("content-length", "transfer-encoding"):
            raise usage.UsageError(
                "--header {}: the client sets it itself".format(name)
            )
        fields = [(n, v) for n, v in fields if n.lower() != lower]
        if value:
            fields.append((name, value))
    head = serializeRequestHead(
        method.encode("ascii"),
        requestTarget,
        [(n.encode("latin-1"), v.encode("utf-8")) for n, v in fields],
    )
    return method, head


def makeTLSCreator(options: Options, host: str) -> object:
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
        raise usage.UsageError(
            "--cacert {}: {}".format(path, e.strerror or e)
        ) from None
    blocks = re.findall(
        rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.DOTALL
    )
    try:
        certificates = [Certificate.loadPEM(block) for block in blocks]
    except Exception:
        certificates = []
    if not certificates:
        raise usage.UsageError("--cacert {}: no PEM certificate found".format(path))
    return optionsForClientTLS(host, trustRoot=trustRootFromCertificates(certificates))


def configure(options: Options, env: Environment, target: Target) -> Config:
    """
    Everything but the target from the command line and environment.

    @raise usage.UsageError: for an unusable value.
    """
    proxyText = options["proxy"]
    source = "--proxy"
    if proxyText is None:
        for name in ("http_proxy", "HTTP_PROXY"):
            if env.environ.get(name):
                proxyText, source = env.environ[name], "$" + name
                break
    if proxyText is None:
        proxyHost, proxyPort = DEFAULT_PROXY
    else:
        try:
            proxyHost, proxyPort = parseProxyAddress(proxyText)
        except TargetError as e:
            raise usage.UsageError("{}: {}".format(source, e)) from None
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
    method, head = buildRequest(options, target, body, hasBody)
    return Config(
        target=target,
        proxyHost=proxyHost,
        proxyPort=proxyPort,
        method=method,
        requestHead=head,
        requestBody=body,
        count=options["count"],
        newConnection=options["new-connection"],
        timeout=options["timeout"],
        timing=options["timing"],
        json=options["json"],
        showBody=options["show-body"],
        output=options["output"],
        tlsCreator=makeTLSCreator(options, target.host)
        if target.scheme == "https"
        else None,
    )
