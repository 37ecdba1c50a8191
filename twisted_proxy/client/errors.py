# -*- test-case-name: tests.test_client_wire -*-
"""
What ends a run of C{proxyclient}, as one line for a human, and the exit
codes.

Exit codes (C{proxyclient --help} lists them for users):

  - L{EXIT_OK}: the response status was 2xx or 3xx.
  - L{EXIT_HTTP_ERROR}: the response status was 4xx or 5xx.
  - L{EXIT_USAGE}: a bad option, address or file.
  - L{EXIT_NETWORK}: the proxy could not be reached, failed, or refused
    (missing or wrong credentials included).
  - L{EXIT_INTERRUPTED}: Ctrl-C (128 + SIGINT, as shells report it).
  - L{EXIT_OUTPUT_CLOSED}: the standard output was closed early (128 +
    SIGPIPE); the console script then ends by SIGPIPE itself, silently,
    as coreutils do.
"""

from __future__ import annotations

import re

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import error as ierror
from twisted.python.failure import Failure

from twisted_proxy.http.errors import ProxyError
from twisted_proxy.http.framing import ResponseHead

__all__ = [
    "EXIT_OK",
    "EXIT_HTTP_ERROR",
    "EXIT_USAGE",
    "EXIT_NETWORK",
    "EXIT_INTERRUPTED",
    "EXIT_OUTPUT_CLOSED",
    "ClientError",
    "parseChallenges",
    "authenticationError",
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
EXIT_INTERRUPTED = 130
EXIT_OUTPUT_CLOSED = 141


class ClientError(Exception):
    """
    What ends a run: a one-line message and the exit code.

    @ivar message: one line for a human: what failed and what to do.
    @ivar exitCode: L{EXIT_NETWORK}, or L{EXIT_USAGE} for a local mistake.
    @ivar proxyStatus: the proxy's C{Proxy-Status} field, if it sent one.
    @ivar status: the status of the proxy's refusal of a C{CONNECT}, if any.
    @ivar head: the head of that refusal, if any.
    @ivar quiet: whether nothing should be printed (the output is gone).
    """

    def __init__(
        self,
        message: str,
        exitCode: int = EXIT_NETWORK,
        proxyStatus: str | None = None,
        status: int | None = None,
        head: ResponseHead | None = None,
        quiet: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exitCode = exitCode
        self.proxyStatus = proxyStatus
        self.status = status
        self.head = head
        self.quiet = quiet


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
            "The response is not valid HTTP/1.1 ({}).".format(printable(match.group(1)))
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
    value = reason.value
    if isinstance(value, SSL.Error):
        errors = value.args[0] if value.args else []
        texts = [e[2] for e in errors if isinstance(e, tuple) and len(e) == 3]
        detail = "; ".join(texts) or detail
        if "certificate verify failed" in detail:
            return ClientError("TLS verification of {} failed: {}. {}".format(host, detail, advice))
        return ClientError("The TLS handshake with {} failed: {}.".format(host, detail))
    return ClientError(
        "The connection closed during the TLS handshake with {}{}.".format(host, lossDetail(reason))
    )


def connectFailure(reason: Failure, where: str, direct: bool = False) -> ClientError:
    """
    The error for a connection that could not be made.

    @param where: what was connected to: C{"the proxy at HOST:PORT"}, or
        C{"HOST:PORT"} for a direct connection.
    @param direct: whether it was the origin (a C{no_proxy} match).
    """
    prefix = "Could not connect to {}: ".format(where)
    if reason.check(ierror.ConnectionRefusedError):
        if direct:
            return ClientError(prefix + "connection refused.")
        return ClientError(
            prefix + "connection refused. Is `twistd -n proxyserver` running there? "
            "(--proxy HOST:PORT chooses another proxy.)"
        )
    if reason.check(ierror.DNSLookupError):
        check = "the address" if direct else "--proxy or http_proxy"
        return ClientError(prefix + "the name could not be resolved. Check {}.".format(check))
    if reason.check(ierror.TimeoutError):
        return ClientError(prefix + "timed out. Is the address right, and reachable?")
    return ClientError(prefix + reason.getErrorMessage().rstrip(".") + ".")


_CHALLENGE_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED_STRING = r'"(?:[^"\\]|\\.)*"'
_PARAM = re.compile(r"\s*({})\s*=\s*({}|[^\s,]*)\s*\Z".format(_CHALLENGE_TOKEN, _QUOTED_STRING))
_SCHEME = re.compile(r"\s*({})(?:\s+(.*))?\Z".format(_CHALLENGE_TOKEN), re.DOTALL)


def _splitOutsideQuotes(value: str) -> list[str]:
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for c in value:
        if escaped:
            escaped = False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == "," and not quoted:
            items.append("".join(current))
            current = []
            continue
        current.append(c)
    items.append("".join(current))
    return items


def parseChallenges(values: list[bytes]) -> list[tuple[str, dict[str, str]]]:
    """
    The challenges in C{Proxy-Authenticate} fields (RFC 9110 11.6.1):
    C{[(scheme, params)]}, the scheme lower-cased, parameter names
    lower-cased and quoted values unquoted.  What cannot be read is
    skipped.
    """
    challenges: list[tuple[str, dict[str, str]]] = []
    for value in values:
        for item in _splitOutsideQuotes(value.decode("latin-1")):
            if not item.strip():
                continue
            param = _PARAM.match(item)
            if param is not None and challenges:
                name, raw = param.groups()
                if raw.startswith('"'):
                    raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                challenges[-1][1][name.lower()] = raw
                continue
            scheme = _SCHEME.match(item)
            if scheme is None:
                continue
            params: dict[str, str] = {}
            challenges.append((scheme.group(1).lower(), params))
            rest = scheme.group(2)
            if rest:
                param = _PARAM.match(rest)
                if param is not None:
                    name, raw = param.groups()
                    if raw.startswith('"'):
                        raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                    params[name.lower()] = raw
    return challenges


def authenticationError(head: ResponseHead, where: str, user: str | None) -> ClientError:
    """
    The error for a 407 from the proxy: which realm asked, and whether the
    credentials were missing or refused.

    @param where: C{"the proxy at HOST:PORT"}.
    @param user: the user name that was sent, or L{None} if none was.
    """
    challenges = parseChallenges([v for n, v in head.headers if n.lower() == b"proxy-authenticate"])
    basic = [params for scheme, params in challenges if scheme == "basic"]
    if basic:
        realm = basic[0].get("realm")
        asked = "Basic realm {}".format(
            '"{}"'.format(printable(realm)) if realm is not None else "(none given)"
        )
    elif challenges:
        scheme, params = challenges[0]
        realm = params.get("realm")
        return ClientError(
            "{} asks for {} authentication{}, which proxyclient does not support "
            "(it sends Basic credentials) (407).".format(
                where[0].upper() + where[1:],
                printable(scheme.capitalize()),
                ' (realm "{}")'.format(printable(realm)) if realm is not None else "",
            ),
            status=407,
            head=head,
        )
    else:
        asked = "no Proxy-Authenticate challenge"
    if user is None:
        message = (
            "{} requires credentials ({}) and none were sent (407). Give them "
            "with --proxy-user USER or --proxy http://USER:PASSWORD@HOST:PORT.".format(
                where[0].upper() + where[1:], asked
            )
        )
    else:
        message = (
            "{} refused the credentials of user '{}' ({}) (407). Check the user "
            "name and password.".format(where[0].upper() + where[1:], printable(user), asked)
        )
    return ClientError(message, status=407, head=head)


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
