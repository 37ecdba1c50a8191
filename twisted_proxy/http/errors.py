# -*- test-case-name: tests.test_errors -*-
"""
Errors the proxy answers with, and how each becomes a response.

Policy, framing and upstream code raise (or return) a L{ProxyError}; only
the server protocol turns it into bytes.  Every generated response says why
three times (RFC 9209): in the status line, in a C{Proxy-Status} field, and
in a one-line plain-text body.

Pure: no I/O, no Twisted imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .framing import RequestEvent

__all__ = [
    "ProxyError",
    "BadRequest",
    "Forbidden",
    "ProxyAuthenticationRequired",
    "PayloadTooLarge",
    "URITooLong",
    "HeaderFieldsTooLarge",
    "BadGateway",
    "ServiceUnavailable",
    "GatewayTimeout",
    "VersionNotSupported",
    "LoopDetected",
    "reasonPhrase",
    "proxyStatusValue",
]


def reasonPhrase(status: int) -> str:
    """
    The standard reason phrase for C{status}, or C{""} if there is none.
    """
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _quote(text: str) -> str:
    """
    Render C{text} as an RFC 8941 sf-string (printable ASCII only).
    """
    clean = "".join(c if " " <= c <= "~" else "?" for c in text)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def proxyStatusValue(proxyName: str, error: str | None, details: str = "") -> str:
    """
    Build a C{Proxy-Status} field value (RFC 9209 section 2).

    @param proxyName: the proxy's name, an sf-token (our C{Via} pseudonym).
    @param error: an RFC 9209 error type such as C{"dns_error"}, or L{None}.
    @param details: optional human-readable detail.
    """
    value = proxyName
    if error:
        value += "; error=" + error
    if details:
        value += "; details=" + _quote(details)
    return value


class ProxyError(Exception):
    """
    A condition that the proxy answers with a generated response.

    @cvar status: the HTTP status to answer with.
    @cvar proxyStatus: the RFC 9209 error type, or L{None}.
    @cvar closeConnection: whether the client connection must be closed after
        the response (framing errors: what follows cannot be trusted).

    @ivar detail: one line for a human: what went wrong, and what to do.
    @ivar headers: extra response header fields, as C{(name, value)} strings
        (e.g. C{Proxy-Authenticate}).
    @ivar events: for a framing error, the events of the complete messages
        that came before the bad bytes in the same input (to be handled
        before the error is answered).
    """

    status = 500
    proxyStatus: str | None = "proxy_internal_error"
    closeConnection = False
    events: Sequence[RequestEvent] = ()

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        proxyStatus: str | None = None,
        closeConnection: bool | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if proxyStatus is not None:
            self.proxyStatus = proxyStatus
        if closeConnection is not None:
            self.closeConnection = closeConnection
        self.headers = headers

    def __repr__(self) -> str:
        return "<{} {} {}: {!r}>".format(
            type(self).__name__, self.status, self.proxyStatus, self.detail
        )

    @property
    def reason(self) -> str:
        return reasonPhrase(self.status) or "Error"

    def render(self, proxyName: str) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """
        The response for this error: C{(status, reason, headers, body)}.

        The body is one line of text, the headers include C{Proxy-Status},
        C{Content-Type} and C{Content-Length} (and C{Connection: close} when
        the connection will be closed).
        """
        body = "{} {}: {}\n".format(self.status, self.reason, self.detail).encode(
            "utf-8", "replace"
        )
        headers = [
            ("Proxy-Status", proxyStatusValue(proxyName, self.proxyStatus, self.detail)),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
        headers.extend(self.headers)
        if self.closeConnection:
            headers.append(("Connection", "close"))
        return self.status, self.reason, headers, body


class BadRequest(ProxyError):
    """
    A malformed or ambiguous request: 400, and the connection is closed.
    """

    status = 400
    proxyStatus = "http_request_error"
    closeConnection = True


class Forbidden(ProxyError):
    """
    Refused by policy.
    """

    status = 403
    proxyStatus = "http_request_denied"


class ProxyAuthenticationRequired(ProxyError):
    """
    Missing or wrong proxy credentials.
    """

    status = 407
    proxyStatus = "http_request_denied"


class PayloadTooLarge(ProxyError):
    status = 413
    proxyStatus = "http_request_error"
    closeConnection = True


class URITooLong(ProxyError):
    status = 414
    proxyStatus = "http_request_error"
    closeConnection = True


class HeaderFieldsTooLarge(ProxyError):
    status = 431
    proxyStatus = "http_request_error"
    closeConnection = True


class VersionNotSupported(ProxyError):
    status = 505
    proxyStatus = "http_request_error"
    closeConnection = True


class BadGateway(ProxyError):
    """
    The origin could not be reached, or answered with something we cannot
    relay.  C{proxyStatus} names which (C{dns_error},
    C{connection_refused}, C{http_protocol_error}, ...).
    """

    status = 502
    proxyStatus = "proxy_internal_error"


class ServiceUnavailable(ProxyError):
    status = 503
    proxyStatus = "connection_limit_reached"
    closeConnection = True


class GatewayTimeout(ProxyError):
    status = 504
    proxyStatus = "connection_timeout"


class LoopDetected(ProxyError):
    """
    The request would come back to this proxy (RFC 9209 C{proxy_loop_detected};
    status 508 as Squid and others answer).
    """

    status = 508
    proxyStatus = "proxy_loop_detected"
    closeConnection = True
