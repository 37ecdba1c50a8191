# -*- test-case-name: tests.test_client_wire -*-
"""
What ends a run of C{proxyclient}, as one line for a human, and the exit
codes.

Exit codes (C{proxyclient --help} lists them for users):

  - L{EXIT_OK}: the response status was 2xx or 3xx.
  - L{EXIT_HTTP_ERROR}: the response status was 4xx or 5xx.
  - L{EXIT_USAGE}: a bad option, address or file.
  - L{EXIT_NETWORK}: the proxy could not be reached, failed, or refused.
"""

from __future__ import annotations

import re

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import error as ierror
from twisted.python.failure import Failure

from twisted_proxy.http.errors import ProxyError

__all__ = [
    "EXIT_OK",
    "EXIT_HTTP_ERROR",
    "EXIT_USAGE",
    "EXIT_NETWORK",
    "ClientError",
    "lossDetail",
    "framingError",
    "tlsFailure",
    "connectFailure",
    "printable",
    "proxyErrorOf",
]

EXIT_OK = 0
EXIT_HTTP_ERROR = 1
EXIT_USAGE = 2
EXIT_NETWORK = 3


class ClientError(Exception):
    """
    What ends a run: a one-line message and the exit code.

    @ivar message: one line for a human: what failed and what to do.
    @ivar exitCode: L{EXIT_NETWORK}, or L{EXIT_USAGE} for a local mistake.
    @ivar proxyStatus: the proxy's C{Proxy-Status} field, if it sent one.
    @ivar status: the status of the proxy's refusal of a C{CONNECT}, if any.
    """

    def __init__(
        self,
        message: str,
        exitCode: int = EXIT_NETWORK,
        proxyStatus: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exitCode = exitCode
        self.proxyStatus = proxyStatus
        self.status = status


def printable(text: str) -> str:
    """
    C{text} without control characters (a server must not drive the
    terminal).
    """
    return "".join(c if c == "\t" or (" " <= c and c != "\x7f") else "?" for c in text)


def lossDetail(reason: Failure) -> str:
    """
    How a connection ended, for a message: C{""} for a clean close.
    """
    if reason.check(ierror.ConnectionDone):
        return ""
    return " ({})".format(reason.getErrorMessage().rstrip("."))


def framingError(error: ProxyError) -> ClientError:
    """
    The error for a response that cannot be framed (the parser's detail
    speaks of "the origin"; here it is whoever answered us).
    """
    match = re.search(r"not valid HTTP/1\.1 \((.*)\)\.?\Z", error.detail)
    if match:
        return ClientError(
            "The response is not valid HTTP/1.1 ({}).".format(
                printable(match.group(1))
            )
        )
    return ClientError("The response cannot be read: {}".format(error.detail))


def tlsFailure(reason: Failure, host: str) -> ClientError:
    """
    The error for a TLS handshake that did not complete.
    """
    advice = "Use --cacert FILE to trust its CA, or --insecure to skip verification."
    detail = reason.getErrorMessage()
    if reason.check(VerificationError):
        return ClientError(
            "The TLS certificate of {} does not match that name ({}). {}".format(
                host, detail, advice
            )
        )
    if reason.check(SSL.Error):
        errors = reason.value.args[0] if reason.value.args else []
        texts = [e[2] for e in errors if isinstance(e, tuple) and len(e) == 3]
        detail = "; ".join(texts) or detail
        if "certificate verify failed" in detail:
            return ClientError(
                "TLS verification of {} failed: {}. {}".format(host, detail, advice)
            )
        return ClientError("The TLS handshake with {} failed: {}.".format(host, detail))
    return ClientError(
        "The connection closed during the TLS handshake with {}{}.".format(
            host, lossDetail(reason)
        )
    )


def connectFailure(reason: Failure, proxy: str) -> ClientError:
    """
    The error for a connection to the proxy that could not be made.
    """
    prefix = "Could not connect to the proxy at {}: ".format(proxy)
    if reason.check(ierror.ConnectionRefusedError):
        return ClientError(
            prefix + "connection refused. Is `twistd -n proxyserver` running there? "
            "(--proxy HOST:PORT chooses another proxy.)"
        )
    if reason.check(ierror.DNSLookupError):
        return ClientError(
            prefix + "the name could not be resolved. Check --proxy or http_proxy."
        )
    if reason.check(ierror.TimeoutError):
        return ClientError(prefix + "timed out. Is the address right, and reachable?")
    return ClientError(prefix + reason.getErrorMessage().rstrip(".") + ".")


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def proxyErrorOf(proxyStatus: str | None) -> str | None:
    """
    The RFC 9209 error type in a C{Proxy-Status} value (C{"dns_error"}),
    or L{None} if no member carries an C{error} parameter.
    """
    if not proxyStatus:
        return None
    unquoted = _QUOTED.sub('""', proxyStatus)
    match = re.search(r";\s*error\s*=\s*([A-Za-z0-9_.*:%/+-]+)", unquoted)
    return match.group(1) if match else None
