# -*- test-case-name: tests.test_client -*-
"""
C{proxyclient}: send an HTTP request through an HTTP proxy, time it, and
report the MAC address of the interface that carried it.

The brief's client, on Twisted::

    Enter the website's IP: 93.184.216.34
    Request has been sent: GET http://93.184.216.34/ HTTP/1.1\\r\\n...  [12:34:56.123]
    Response has been received: HTTP/1.1 200 OK\\r\\n...  [12:34:56.357]
    Round-trip time: 0.234 seconds
    Physical MAC Address: aa:bb:cc:dd:ee:ff (eth0)

The pieces, from the bottom up:

  - L{parseTarget} and L{parseProxyAddress} turn what a user types into a
    L{Target} or a C{(host, port)} pair, or raise L{TargetError} with a
    one-line explanation.
  - L{findMacAddress} picks the MAC address of the interface that holds the
    socket's local address, from a netifaces-like interface table.
  - L{_HTTPLayer} is the protocol that sends requests and frames responses
    (with L{twisted_proxy.http.framing.ResponseParser}); L{_ProxyWire} is the TCP
    connection to the proxy, which for C{https://} targets first opens a
    C{CONNECT} tunnel and then runs TLS
    (L{twisted.protocols.tls.TLSMemoryBIOProtocol}) over it.
  - L{_Session} runs the requests, times each phase with an injected
    monotonic clock, and tells a reporter (text or JSON) what happened.
  - L{runClient} is the whole program with everything injected
    (L{Environment}); L{main} is what L{twisted.internet.task.react} runs, and
    L{run} is the C{proxyclient} console script.

This module must not import C{server} or C{tap}, and touches the global
reactor only inside L{run}.
"""

from __future__ import annotations

import codecs
import getopt
import ipaddress
import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO
from urllib.parse import quote, urlsplit

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import error as ierror
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.interfaces import IHandshakeListener, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_proxy import __version__
from twisted_proxy.http.errors import ProxyError
from twisted_proxy.http.framing import (
    Body,
    EndOfMessage,
    ResponseHead,
    ResponseParser,
    serializeRequestHead,
)

__all__ = [
    "PROMPT",
    "Target",
    "TargetError",
    "parseTarget",
    "parseProxyAddress",
    "MacAddress",
    "findMacAddress",
    "percentile",
    "summarize",
    "Options",
    "Environment",
    "runClient",
    "main",
    "run",
]

PROMPT = "Enter the website's IP: "
DEFAULT_PROXY = ("127.0.0.1", 8080)
USER_AGENT = "proxyclient/" + __version__

EXIT_OK = 0
EXIT_HTTP_ERROR = 1
EXIT_USAGE = 2
EXIT_NETWORK = 3

_DEFAULT_PORTS = {"http": 80, "https": 443}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
# Characters left as they are in a request-target; everything else is
# percent-encoded (RFC 3986 pchar, "/" and "?" plus "%" of existing escapes).
_PATH_SAFE = "/?%:@!$&'()*+,;=-._~"


# --- What the user typed -----------------------------------------------------


class TargetError(ValueError):
    """
    An address the user gave that cannot be requested.  C{str()} is a
    one-line explanation for a human.
    """


@dataclass(frozen=True)
class Target:
    """
    A place to send the request to.

    @ivar scheme: C{"http"} or C{"https"}.
    @ivar host: an IPv4 address, an IPv6 address (without brackets) or a
        lower-case ASCII host name.
    @ivar port: the port.
    @ivar path: the origin-form request-target (path and query, ASCII).
    """

    scheme: str
    host: str
    port: int
    path: str = "/"

    @property
    def hostForURL(self) -> str:
        """
        The host as it appears in a URL or C{Host} field (IPv6 in brackets).
        """
        return "[" + self.host + "]" if ":" in self.host else self.host

    @property
    def authority(self) -> str:
        """
        C{host[:port]}, without the port when it is the scheme's default:
        the C{Host} field value.
        """
        if self.port == _DEFAULT_PORTS[self.scheme]:
            return self.hostForURL
        return "{}:{}".format(self.hostForURL, self.port)

    @property
    def hostAndPort(self) -> str:
        """
        C{host:port} always: the authority-form of a C{CONNECT}.
        """
        return "{}:{}".format(self.hostForURL, self.port)

    @property
    def url(self) -> str:
        """
        The absolute URL, as sent in an absolute-form request-target.
        """
        return "{}://{}{}".format(self.scheme, self.authority, self.path)


def _checkHost(host: str, original: str) -> str:
    """
    Validate and normalise a host from a URL.

    @param host: the host, without brackets.
    @param original: what the user typed, for the error message.
    @return: a normalised IP address or ASCII host name.
    @raise TargetError: if C{host} is neither.
    """
    if ":" in host:
        if "%" in host:
            raise TargetError(
                "{!r}: IPv6 zone identifiers (%...) are not supported".format(original)
            )
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            raise TargetError("{!r} is not a valid IPv6 address".format(host)) from None
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    try:
        ascii = name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise TargetError(
            "{!r} is not a valid IP address or host name".format(original)
        ) from None
    labels = ascii.split(".")
    if len(ascii) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise TargetError(
            "{!r} is not a valid IP address or host name".format(original)
        )
    if labels[-1].isdigit():
        raise TargetError("{!r} is not a valid IPv4 address".format(host))
    return ascii


def parseTarget(text: str) -> Target:
    """
    Parse what a user typed at the prompt or on the command line.

    Accepted: an IPv4 address (C{93.184.216.34}), an IPv6 address
    (C{2001:db8::1} or C{[2001:db8::1]:8080}), a host name
    (C{example.com:8080/path}), or an C{http://} or C{https://} URL with
    optional port, path and query.  A fragment is dropped; non-ASCII in the
    path is percent-encoded and a non-ASCII host name IDNA-encoded.

    @raise TargetError: with a one-line explanation.
    """
    text = text.strip()
    if not text:
        raise TargetError(
            "no address given: type an IP address, a host name or a URL, "
            "e.g. 93.184.216.34 or http://example.com/"
        )
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        raise TargetError("{!r} is not an address: it contains spaces".format(text))
    if "://" in text:
        scheme, _, rest = text.partition("://")
        scheme = scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise TargetError(
                "{}:// addresses are not supported: use http:// or https://".format(
                    scheme
                )
            )
    else:
        try:
            bare = ipaddress.IPv6Address(text)
        except ValueError:
            scheme, rest = "http", text
        else:
            return Target("http", bare.compressed, 80, "/")
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if not netloc:
        raise TargetError("{!r} has no host".format(text))
    if "@" in netloc:
        raise TargetError(
            "{!r}: user names and passwords in the address are not supported".format(
                text
            )
        )
    if netloc.count(":") > 1 and not netloc.startswith("["):
        raise TargetError(
            "{!r}: put an IPv6 address with a port or path in brackets, "
            "e.g. [2001:db8::1]:8080".format(text)
        )
    try:
        parts = urlsplit(scheme + "://" + rest)
        port = parts.port
    except ValueError:
        raise TargetError(
            "{!r} has an invalid host or port "
            "(a port is a number from 1 to 65535)".format(text)
        ) from None
    if port == 0:
        raise TargetError("{!r}: port 0 cannot be connected to".format(text))
    rawHost = parts.hostname
    if not rawHost:
        raise TargetError("{!r} has no host".format(text))
    host = _checkHost(rawHost, text)
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_PATH_SAFE)
    return Target(scheme, host, port or _DEFAULT_PORTS[scheme], path)


def parseProxyAddress(text: str) -> tuple[str, int]:
    """
    Parse a proxy address: C{HOST:PORT}, C{[IPv6]:PORT}, C{HOST} (port
    8080), or an C{http://HOST:PORT/} URL as found in C{http_proxy}.

    @raise TargetError: with a one-line explanation.
    """
    raw = text.strip()
    if not raw:
        raise TargetError("the proxy address is empty")
    if "://" in raw:
        scheme, _, raw = raw.partition("://")
        if scheme.lower() != "http":
            raise TargetError(
                "{!r}: only http:// proxies are supported".format(text.strip())
            )
    raw = raw.split("/", 1)[0]
    if "@" in raw:
        raise TargetError(
            "{!r}: proxy user names and passwords are not supported".format(
                text.strip()
            )
        )
    if raw.count(":") > 1 and not raw.startswith("["):
        try:
            return ipaddress.IPv6Address(raw).compressed, DEFAULT_PROXY[1]
        except ValueError:
            raise TargetError(
                "{!r}: write an IPv6 proxy address as [ADDRESS]:PORT".format(
                    text.strip()
                )
            ) from None
    try:
        parts = urlsplit("//" + raw)
        port = parts.port
    except ValueError:
        raise TargetError(
            "{!r} is not HOST:PORT (a port is a number from 1 to 65535)".format(
                text.strip()
            )
        ) from None
    if not parts.hostname or port == 0:
        raise TargetError("{!r} is not HOST:PORT".format(text.strip()))
    return _checkHost(parts.hostname, text.strip()), port or DEFAULT_PROXY[1]


def _formatHostPort(host: str, port: int) -> str:
    return "[{}]:{}".format(host, port) if ":" in host else "{}:{}".format(host, port)


# --- The MAC address ---------------------------------------------------------


@dataclass(frozen=True)
class MacAddress:
    """
    The result of L{findMacAddress}.

    @ivar address: C{"aa:bb:cc:dd:ee:ff"}, or L{None} if none was found.
    @ivar interface: the interface it belongs to, or L{None}.
    @ivar note: why it is not the interface holding the connection's local
        address (e.g. C{"default route; the proxy is on loopback"}), or
        L{None} if it is.
    @ivar reason: when C{address} is L{None}, why.
    """

    address: str | None
    interface: str | None = None
    note: str | None = None
    reason: str | None = None

    def describe(self) -> str:
        """
        The text after C{Physical MAC Address: }.
        """
        if self.address is None:
            return "not found ({})".format(self.reason)
        where = self.interface or "?"
        if self.note:
            where += ", " + self.note
        return "{} ({})".format(self.address, where)

    def asJSON(self) -> dict[str, str | None]:
        return {
            "address": self.address,
            "interface": self.interface,
            "note": self.note,
            "reason": self.reason,
        }


def _ipAddress(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """
    Parse an address as netifaces or a socket reports it: strip a C{%scope}
    and map C{::ffff:a.b.c.d} to IPv4.
    """
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _linkAddress(table: Any, interface: str) -> str | None:
    """
    The interface's MAC address, or L{None} if it has none (or only zeros,
    as the loopback does).
    """
    for entry in table.ifaddresses(interface).get(table.AF_LINK, []):
        mac = (entry.get("addr") or "").lower()
        octets = mac.split(":")
        if len(octets) == 6 and all(re.fullmatch(r"[0-9a-f]{1,2}", o) for o in octets):
            if any(int(o, 16) for o in octets):
                return ":".join(o.zfill(2) for o in octets)
    return None


def findMacAddress(localAddress: str | None, table: Any) -> MacAddress:
    """
    Find the MAC address of the interface that carried a connection.

    The interface is the one holding the socket's local address (IPv4 or
    IPv6).  If that is the loopback (the proxy runs on this machine), has no
    MAC address (a VPN tunnel, say) or cannot be found, the interface of the
    default route is reported instead, with a note saying so.  Nothing is
    ever made up: if no MAC address can be found, the result says why.

    @param localAddress: the local address of the connection to the proxy
        (C{transport.getHost().host}), or L{None} if there was none.
    @param table: a netifaces-like object: C{interfaces()},
        C{ifaddresses(name)}, C{gateways()}, C{AF_LINK}, C{AF_INET},
        C{AF_INET6}.
    """
    local = _ipAddress(localAddress) if localAddress else None
    owner = None
    if local is not None:
        for name in table.interfaces():
            addresses = table.ifaddresses(name)
            for family in (table.AF_INET, table.AF_INET6):
                for entry in addresses.get(family, []):
                    if _ipAddress(entry.get("addr", "")) == local:
                        owner = name
                        break
                if owner:
                    break
            if owner:
                break

    if local is not None and owner is not None and not local.is_loopback:
        mac = _linkAddress(table, owner)
        if mac is not None:
            return MacAddress(mac, owner)
        why = "{}, which carries the connection, has no MAC address".format(owner)
    elif local is None:
        why = "no connection was made"
    elif local.is_loopback:
        why = "the proxy is on loopback"
    else:
        why = "no interface holds the local address {}".format(local)

    defaults = table.gateways().get("default", {})
    families = [table.AF_INET, table.AF_INET6]
    if isinstance(local, ipaddress.IPv6Address) and not local.is_loopback:
        families.reverse()
    for family in families:
        route = defaults.get(family)
        if route:
            interface = route[1]
            mac = _linkAddress(table, interface)
            if mac is not None:
                return MacAddress(mac, interface, "default route; " + why)
            return MacAddress(
                None,
                reason="{}; {}, the default-route interface, has no MAC address".format(
                    why, interface
                ),
            )
    return MacAddress(None, reason=why + " and there is no default route")


def _netifacesTable() -> Any:
    """
    The real interface table: the netifaces module.
    """
    import netifaces

    return netifaces


def _lookUpMac(
    localAddress: str | None, tableProvider: Callable[[], Any]
) -> MacAddress:
    """
    L{findMacAddress}, turning a missing or failing netifaces into a reason.
    """
    try:
        table = tableProvider()
    except ImportError:
        return MacAddress(None, reason="the netifaces module is not installed")
    try:
        return findMacAddress(localAddress, table)
    except (OSError, ValueError) as e:
        return MacAddress(
            None, reason="the interface table could not be read: {}".format(e)
        )


# --- Statistics --------------------------------------------------------------


def percentile(values: Sequence[float], percent: float) -> float:
    """
    The C{percent}th percentile by the nearest-rank method: the smallest
    value such that at least C{percent}% of the values are less than or
    equal to it (the C{ceil(percent/100 * n)}th smallest, counting from 1).
    """
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(values: Sequence[float]) -> dict[str, float]:
    """
    C{min}, C{mean}, C{median} (the middle value, or the mean of the two
    middle values), C{p90} (nearest rank) and C{max}.
    """
    return {
        "min": min(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "p90": percentile(values, 90),
        "max": max(values),
    }


# --- Options -----------------------------------------------------------------


_HELP = """
TARGET is an IPv4 or IPv6 address, a host name, or an http:// or https://
URL with optional port and path. Without TARGET, proxyclient asks for it:

    Enter the website's IP:

Output: the request that was sent (absolute-form, "GET http://host/ HTTP/1.1",
unless --origin-form), the response head and the first lines of a text body,
the round-trip time (from the start of the connection to the last byte of the
response), and the MAC address of the network interface that holds the local
end of the connection to the proxy. If that is the loopback (the proxy runs on
this machine), the interface of the default route is shown and the line says
so. If no MAC address can be found, the line says why; none is ever made up.

Proxy: --proxy HOST:PORT, else $http_proxy or $HTTP_PROXY (http://HOST:PORT/),
else 127.0.0.1:8080.

https:// targets go through a CONNECT tunnel; TLS then verifies the
certificate and the host name against the system's CAs (or --cacert).

Timing (-v): each phase in milliseconds, with the matching curl -w variable
(seconds from the start, cumulative):
  proxy connect        TCP connection to the proxy     time_connect
  CONNECT established  tunnel opened (https)           (no curl variable)
  TLS handshake        (https)                         time_appconnect
  request sent         request written                 time_pretransfer,
                                                       time_posttransfer
  first response byte  waiting for the response        time_starttransfer
  response complete    rest of the response            time_total
and http_code, size_download, size_header, size_request, speed_download
(bytes per second over time_total) and num_connects.

Repeats (--count N): N requests on one kept-alive connection (a new one only
when the proxy closes it), or one connection each with --new-connection; then
min, mean, median, p90 and max for each phase. The median is the middle value
(the mean of the two middle ones for an even N); p90 is by nearest rank (the
ceil(0.9 N)-th smallest value).

JSON (--json): one object per line: {"type": "run", ...} for each run, and
after --count runs {"type": "summary", ...}.

Exit codes:
  0  the response status was 2xx or 3xx
  1  the response status was 4xx or 5xx (an error from the server)
  2  usage error: bad option, address or file
  3  network or proxy failure: no connection to the proxy, timeout, a
     closed or invalid response, a TLS failure, a refused CONNECT, or an
     error response generated by the proxy itself (Proxy-Status: ...;
     error=...), whose Proxy-Status is shown

Examples:
  proxyclient                                    # asks for the address
  proxyclient 93.184.216.34
  proxyclient http://example.com:8000/index.html --proxy 10.0.0.1:3128
  proxyclient https://example.com/ -v            # CONNECT + TLS, timings
  proxyclient --count 20 --json example.com      # 20 runs, JSON lines
  proxyclient -X PUT -d 'a=1' -H 'X-Trace: 1' http://127.0.0.1:8000/form
  proxyclient --head '[2001:db8::1]:8080'
  proxyclient http://example.com/big.iso --output big.iso
  http_proxy=http://10.0.0.1:3128/ proxyclient example.com
"""


class _Exit(Exception):
    """
    Leave the program with C{code} after writing C{text} to stdout.
    """

    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text


class Options(usage.Options):
    """
    The command line of C{proxyclient}.
    """

    synopsis = "Usage: proxyclient [options] [TARGET]"

    optFlags = [
        [
            "timing",
            "v",
            "Show the timing of each phase (milliseconds, and curl -w variables), "
            "the status, sizes and transfer speed.",
        ],
        ["head", "I", "Send HEAD instead of GET."],
        [
            "json",
            None,
            "Print one JSON object per run (and a summary after --count runs).",
        ],
        [
            "new-connection",
            None,
            "With --count: a new connection for every run instead of one kept alive.",
        ],
        [
            "origin-form",
            None,
            "Send 'GET /path HTTP/1.1' with Host (the brief's form) instead of "
            "the absolute-form 'GET http://host/path HTTP/1.1' every proxy accepts.",
        ],
        [
            "show-body",
            None,
            "Print the whole response body "
            "(by default: the first lines of a text body).",
        ],
        [
            "insecure",
            "k",
            "https: do not verify the server's certificate and host name.",
        ],
    ]

    optParameters = [
        [
            "proxy",
            "x",
            None,
            "The proxy, HOST:PORT ([ADDRESS]:PORT for IPv6). "
            "Default: $http_proxy, $HTTP_PROXY, else 127.0.0.1:8080.",
        ],
        [
            "request",
            "X",
            None,
            "The request method (default: GET, or POST with --data/--data-file).",
        ],
        ["data", "d", None, "Send DATA as the request body (implies POST)."],
        [
            "data-file",
            None,
            None,
            "Send the contents of this file as the request body (implies POST).",
        ],
        ["output", "o", None, "Write the response body to this file as it arrives."],
        ["count", "n", "1", "Send the request N times and print statistics."],
        [
            "timeout",
            "t",
            "30",
            "Give up on a run after this many seconds (connect, tunnel, TLS and "
            "response together).",
        ],
        [
            "cacert",
            None,
            None,
            "https: trust the CA certificates in this PEM file "
            "instead of the system's.",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["headers"] = []
        self["target"] = None

    def opt_header(self, value: str) -> None:
        # The help text is the docstring, set below on one line.
        name, colon, fieldValue = value.partition(":")
        name = name.strip()
        fieldValue = fieldValue.strip()
        if not colon or not _TOKEN.match(name):
            raise usage.UsageError(
                "--header {!r}: write a header as 'Name: value'".format(value)
            )
        if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in fieldValue):
            raise usage.UsageError(
                "--header {!r}: the value contains control characters".format(value)
            )
        self["headers"].append((name, fieldValue))

    opt_header.__doc__ = (
        "Add a request header field, 'Name: value' (repeatable). It replaces "
        "a default field of that name; 'Name:' removes it."
    )
    opt_H = opt_header

    def opt_help(self) -> None:
        """
        Display this help and exit.
        """
        raise _Exit(EXIT_OK, str(self))

    def opt_version(self) -> None:
        """
        Display the version and exit.
        """
        raise _Exit(EXIT_OK, USER_AGENT + "\n")

    def getUsage(self, width: int | None = None) -> str:
        return super().getUsage(width) + _HELP

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse like curl: options may come after the target too (GNU style;
        L{usage.Options} alone stops at the first argument).
        """
        if options is None:
            options = sys.argv[1:]
        try:
            opts, args = getopt.gnu_getopt(list(options), self.shortOpt, self.longOpt)
        except getopt.error as e:
            raise usage.UsageError(str(e)) from None
        ordered: list[str] = []
        for opt, value in opts:
            if opt.startswith("--"):
                if opt[2:] + "=" in self.longOpt:
                    ordered.append(opt + "=" + value)
                else:
                    ordered.append(opt)
            elif opt[1] + ":" in self.shortOpt:
                ordered.extend([opt, value])
            else:
                ordered.append(opt)
        super().parseOptions(ordered + ["--"] + args)

    def parseArgs(self, target: str | None = None) -> None:
        self["target"] = target

    def postOptions(self) -> None:
        try:
            count = int(self["count"])
        except ValueError:
            count = 0
        if count < 1:
            raise usage.UsageError(
                "--count must be a positive whole number, not {!r}".format(
                    self["count"]
                )
            )
        self["count"] = count
        try:
            timeout = float(self["timeout"])
        except ValueError:
            timeout = 0.0
        if not 0 < timeout < 1e7:
            raise usage.UsageError(
                "--timeout must be a positive number of seconds, not {!r}".format(
                    self["timeout"]
                )
            )
        self["timeout"] = timeout
        if self["data"] is not None and self["data-file"] is not None:
            raise usage.UsageError("give --data or --data-file, not both")
        method = self["request"]
        if method is not None and not _TOKEN.match(method):
            raise usage.UsageError("--request {!r} is not a method name".format(method))
        if self["head"]:
            if method not in (None, "HEAD"):
                raise usage.UsageError(
                    "--head and --request {} contradict".format(method)
                )
            if self["data"] is not None or self["data-file"] is not None:
                raise usage.UsageError("a HEAD request cannot send --data")
        if method == "CONNECT":
            raise usage.UsageError(
                "--request CONNECT is not supported: https:// targets open a tunnel"
            )


# --- Protocols ---------------------------------------------------------------


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


def _lossDetail(reason: Failure) -> str:
    """
    How a connection ended, for a message: C{""} for a clean close.
    """
    if reason.check(ierror.ConnectionDone):
        return ""
    return " ({})".format(reason.getErrorMessage().rstrip("."))


def _framingError(error: ProxyError) -> ClientError:
    """
    The error for a response that cannot be framed (the parser's detail
    speaks of "the origin"; here it is whoever answered us).
    """
    match = re.search(r"not valid HTTP/1\.1 \((.*)\)\.?\Z", error.detail)
    if match:
        return ClientError(
            "The response is not valid HTTP/1.1 ({}).".format(
                _printable(match.group(1))
            )
        )
    return ClientError("The response cannot be read: {}".format(error.detail))


def _tlsFailure(reason: Failure, host: str) -> ClientError:
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
            host, _lossDetail(reason)
        )
    )


class _RunListener:
    """
    What the protocols report, as it happens, for one run.  L{_Recorder} is
    the real one; this base ignores everything.
    """

    def connected(self) -> None:
        pass

    def tunnelOpened(self, head: ResponseHead) -> None:
        pass

    def tlsEstablished(self, version: str | None) -> None:
        pass

    def requestSent(self) -> None:
        pass

    def firstByte(self) -> None:
        pass

    def interimHead(self, head: ResponseHead) -> None:
        pass

    def responseHead(self, head: ResponseHead) -> None:
        pass

    def bodyReceived(self, data: bytes) -> None:
        pass

    def responseComplete(self) -> None:
        pass


@implementer(IHandshakeListener)
class _HTTPLayer(Protocol):
    """
    Requests and responses, one at a time, on a connection to the proxy
    (plain) or, inside a C{CONNECT} tunnel, over TLS to the origin.

    @ivar ready: fires when a request can be sent (the connection is up, or
        for TLS the handshake is done); fails with L{ClientError} otherwise.
    @ivar reusable: whether another request may be sent now.
    @ivar tlsVersion: the TLS version, once the handshake is done.
    @ivar _state: C{"connecting"} until ready; C{"idle"} between exchanges;
        C{"waiting"} from sending a request to the first byte of the
        response; C{"receiving"} until the end of the response; C{"closed"}.
    @ivar _tlsHost: the host TLS verifies, or L{None} for a plain connection.
    @ivar _parser: frames the responses on this connection.
    @ivar _listener: gets the events of the current exchange.
    @ivar _done: fires when the current exchange ends.
    @ivar _bodyBytes: body bytes of the current response so far.
    @ivar _headSeen: whether the final head of the current response arrived.
    """

    reusable = False
    tlsVersion: str | None = None
    _state = "connecting"
    _done: Deferred[None] | None = None
    _bodyBytes = 0
    _headSeen = False

    def __init__(self, listener: _RunListener, tlsHost: str | None = None) -> None:
        self._tlsHost = tlsHost
        self.ready: Deferred[None] = Deferred()
        self._parser = ResponseParser()
        self._listener = listener

    def connectionMade(self) -> None:
        if self._tlsHost is None:
            self._becomeReady()

    def handshakeCompleted(self) -> None:
        handle = self.transport.getHandle()
        self.tlsVersion = handle.get_protocol_version_name()
        self._listener.tlsEstablished(self.tlsVersion)
        self._becomeReady()

    def _becomeReady(self) -> None:
        self._state = "idle"
        self.reusable = True
        self.ready.callback(None)

    def failBeforeReady(self, error: ClientError) -> None:
        """
        The connection will never be ready (the tunnel was refused).
        """
        if self._state == "connecting":
            self._state = "closed"
            self.ready.errback(error)

    def request(
        self, method: bytes, data: bytes, listener: _RunListener
    ) -> Deferred[None]:
        """
        Send a request and read its response.

        @param method: the method (it changes how the response is framed).
        @param data: the request head and body.
        @param listener: gets the events of this exchange.
        @return: fires when the response is complete, or fails with
            L{ClientError}.
        """
        assert self._state == "idle", self._state
        self._parser.expect(method)
        self._listener = listener
        self._bodyBytes = 0
        self._headSeen = False
        self._state = "waiting"
        self.reusable = False
        self._done = done = Deferred()
        self.transport.write(data)
        listener.requestSent()
        return done

    def dataReceived(self, data: bytes) -> None:
        if self._state == "waiting":
            self._state = "receiving"
            self._listener.firstByte()
        elif self._state != "receiving":
            # Bytes nobody asked for: this connection cannot be trusted.
            self.reusable = False
            self.transport.loseConnection()
            return
        try:
            events = self._parser.feed(data)
        except ProxyError as e:
            self._fail(_framingError(e))
            self.transport.abortConnection()
            return
        self._handle(events)

    def _handle(self, events: list[object]) -> None:
        listener = self._listener
        for event in events:
            if self._state != "receiving":
                return
            try:
                if isinstance(event, ResponseHead):
                    if event.status < 200:
                        listener.interimHead(event)
                    else:
                        self._headSeen = True
                        listener.responseHead(event)
                elif isinstance(event, Body):
                    self._bodyBytes += len(event.data)
                    listener.bodyReceived(event.data)
                elif isinstance(event, EndOfMessage):
                    self.reusable = self._parser.keepAlive
                    self._state = "idle"
                    done, self._done = self._done, None
                    listener.responseComplete()
                    assert done is not None
                    done.callback(None)
            except ClientError as e:
                self._fail(e)
                self.transport.abortConnection()
                return

    def _fail(self, error: ClientError) -> None:
        self.reusable = False
        self._state = "closed"
        done, self._done = self._done, None
        if done is not None:
            done.errback(error)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        state = self._state
        self.reusable = False
        if state == "connecting":
            self._state = "closed"
            assert self._tlsHost is not None
            self.ready.errback(_tlsFailure(reason, self._tlsHost))
            return
        if state not in ("waiting", "receiving"):
            self._state = "closed"
            return
        try:
            events = self._parser.feedEOF()
        except ProxyError:
            events = []
        if events:
            self._state = "receiving"
            self._handle(events)
        if self._done is None:
            self._state = "closed"
            return
        how = _lossDetail(reason)
        if state == "waiting":
            message = (
                "The proxy closed the connection{} without sending a response.".format(
                    how
                )
            )
        elif not self._headSeen:
            message = (
                "The connection closed{} in the middle of the response head.".format(
                    how
                )
            )
        else:
            message = (
                "The connection closed{} after {} body bytes, before the end of "
                "the response: the body is incomplete.".format(how, self._bodyBytes)
            )
        self._fail(ClientError(message))


class _Only(Factory):
    """
    A factory that "builds" one protocol that already exists (to put an
    existing protocol under L{TLSMemoryBIOFactory}).
    """

    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: object) -> Protocol:
        return self._protocol


class _ProxyWire(Protocol):
    """
    The TCP connection to the proxy.

    For a plain target the bytes go straight to the L{_HTTPLayer}.  For an
    C{https://} target, a C{CONNECT} is sent first; after a 2xx answer, TLS
    (L{TLSMemoryBIOFactory}, client side) runs over the same transport with
    the L{_HTTPLayer} on top, and any bytes that arrived after the answer's
    head are the first TLS bytes.

    @ivar listener: gets the connection's events for the current run.
    @ivar localAddress: the socket's local address, once connected.
    @ivar closed: fires when the TCP connection is gone.
    @ivar tunnelHead: the answer to the C{CONNECT}, if one was sent.
    @ivar _state: C{"connecting"}; C{"tunnelling"} (C{CONNECT} sent);
        C{"refused"} (a non-2xx answer is being read); C{"open"} (bytes go to
        C{_upper}); C{"closed"}.
    @ivar _upper: the protocol the bytes go to: the L{_HTTPLayer} or the TLS
        layer wrapping it.
    @ivar _refusal: the start of the body of a refused C{CONNECT}.
    """

    localAddress: str | None = None
    tunnelHead: ResponseHead | None = None
    _state = "connecting"
    _upper: Protocol | None = None

    def __init__(
        self,
        http: _HTTPLayer,
        listener: _RunListener,
        tunnelHead: bytes | None = None,
        tunnelTarget: str = "",
        tlsCreator: object = None,
    ) -> None:
        self._http = http
        self.listener = listener
        self._tunnelRequest = tunnelHead
        self._tunnelTarget = tunnelTarget
        self._tlsCreator = tlsCreator
        self._refusal = b""
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.localAddress = getattr(self.transport.getHost(), "host", None)
        self.listener.connected()
        if self._tunnelRequest is None:
            self._open(self._http)
            return
        self._state = "tunnelling"
        self._parser = ResponseParser()
        self._parser.expect(b"CONNECT")
        self.transport.write(self._tunnelRequest)

    def _open(self, upper: Protocol) -> None:
        self._state = "open"
        self._upper = upper
        upper.makeConnection(self.transport)

    def dataReceived(self, data: bytes) -> None:
        if self._state == "open":
            assert self._upper is not None
            self._upper.dataReceived(data)
            return
        if self._state not in ("tunnelling", "refused"):
            return
        try:
            events = self._parser.feed(data)
        except ProxyError as e:
            error = _framingError(e)
            error.message = "The proxy's answer to CONNECT: " + error.message
            self._refuse(error)
            return
        for event in events:
            if isinstance(event, ResponseHead):
                if event.status < 200:
                    continue
                self.tunnelHead = event
                if 200 <= event.status < 300:
                    self._startTLS()
                    return
                self._state = "refused"
            elif isinstance(event, Body):
                self._refusal = (self._refusal + event.data)[:1024]
            elif isinstance(event, EndOfMessage):
                self._refuse(self._refusalError())
                return

    def _startTLS(self) -> None:
        assert self.tunnelHead is not None
        self.listener.tunnelOpened(self.tunnelHead)
        tls = TLSMemoryBIOFactory(
            self._tlsCreator, True, _Only(self._http)
        ).buildProtocol(self.transport.getPeer())
        self._open(tls)
        if self._parser.trailingData:
            tls.dataReceived(self._parser.trailingData)

    def _refusalError(self) -> ClientError:
        head = self.tunnelHead
        assert head is not None
        proxyStatus = head.get(b"proxy-status")
        message = "The proxy refused to open a tunnel to {}: {} {}".format(
            self._tunnelTarget, head.status, _printable(head.reason.decode("latin-1"))
        )
        if proxyStatus:
            message += " (Proxy-Status: {})".format(
                _printable(proxyStatus.decode("latin-1"))
            )
        firstLine = self._refusal.decode("utf-8", "replace").strip().split("\n")[0]
        if firstLine:
            message += ": " + _printable(firstLine)
        return ClientError(
            message,
            proxyStatus=proxyStatus.decode("latin-1") if proxyStatus else None,
            status=head.status,
        )

    def _refuse(self, error: ClientError) -> None:
        self._state = "closed"
        self._http.failBeforeReady(error)
        self.transport.loseConnection()

    def close(self) -> None:
        """
        Close the connection (with a TLS close_notify if TLS is running).
        """
        if self._state == "open" and self._upper is not self._http:
            self._upper.loseConnection()  # type: ignore[union-attr]
        elif self._state != "closed":
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        state, self._state = self._state, "closed"
        if state == "open":
            assert self._upper is not None
            self._upper.connectionLost(reason)
        elif state == "refused":
            self._http.failBeforeReady(self._refusalError())
        elif state == "tunnelling":
            self._http.failBeforeReady(
                ClientError(
                    "The proxy closed the connection{} before answering the CONNECT "
                    "request for {}.".format(_lossDetail(reason), self._tunnelTarget)
                )
            )
        self.closed.callback(None)


def _printable(text: str) -> str:
    """
    C{text} without control characters (a server must not drive the
    terminal).
    """
    return "".join(c if c == "\t" or (" " <= c and c != "\x7f") else "?" for c in text)


def _escapeHead(head: bytes) -> str:
    """
    A message head on one line, as the brief shows it: CR and LF as C{\\r}
    and C{\\n}, other control bytes as C{\\xNN}.
    """
    out = []
    for c in head.decode("latin-1"):
        if c == "\r":
            out.append("\\r")
        elif c == "\n":
            out.append("\\n")
        elif c < " " or "\x7f" <= c < "\xa0":
            out.append("\\x{:02x}".format(ord(c)))
        else:
            out.append(c)
    return "".join(out)


def _responseHeadBytes(head: ResponseHead) -> bytes:
    """
    The head as it came (re-serialised: names and values as received).
    """
    return b"".join(
        [b"HTTP/", head.version, b" %d " % (head.status,), head.reason, b"\r\n"]
        + [n + b": " + v + b"\r\n" for n, v in head.headers]
        + [b"\r\n"]
    )


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


# --- The program -------------------------------------------------------------


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
    interfaceTable: Callable[[], Any] = _netifacesTable
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
class _Config:
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
        return _formatHostPort(self.proxyHost, self.proxyPort)

    def tunnelHead(self) -> bytes:
        authority = self.target.hostAndPort.encode("ascii")
        return serializeRequestHead(
            b"CONNECT",
            authority,
            [(b"Host", authority), (b"User-Agent", USER_AGENT.encode("ascii"))],
        )


@dataclass
class _Run:
    """
    One request and its response, as measured.

    @ivar marks: monotonic times: C{start}, C{connected}, C{tunnel}, C{tls},
        C{sent}, C{firstByte}, C{end}.
    @ivar wall: wall-clock times: C{start}, C{sent}, C{received} (the head).
    @ivar phase: what the run is waiting for (for a timeout's message).
    """

    number: int
    https: bool = False
    marks: dict[str, float] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)
    phase: str = "connect"
    newConnection: bool = False
    connectionNumber: int = 0
    localAddress: str | None = None
    tunnelHead: ResponseHead | None = None
    tlsVersion: str | None = None
    interim: list[ResponseHead] = field(default_factory=list)
    head: ResponseHead | None = None
    bodyBytes: int = 0
    preview: bytes = b""
    error: ClientError | None = None

    @property
    def complete(self) -> bool:
        return "end" in self.marks and self.error is None

    def phasesMs(self) -> dict[str, float | None]:
        """
        Each phase's duration in milliseconds: C{connect}, C{tunnel} and
        C{tls} (L{None} for a plain target), C{send}, C{wait}, C{receive} and
        C{total}.  On a reused connection the first three are 0.  A phase the
        run did not reach is L{None}.
        """
        m = self.marks

        def span(a: str, b: str) -> float | None:
            if a not in m or b not in m:
                return None
            return round((m[b] - m[a]) * 1000, 3)

        if self.newConnection:
            connect = span("start", "connected")
            tunnel = span("connected", "tunnel") if self.https else None
            tls = span("tunnel", "tls") if self.https else None
        else:
            connect = 0.0
            tunnel = tls = 0.0 if self.https else None
        if not self.newConnection:
            ready = "start"
        elif self.https:
            ready = "tls"
        else:
            ready = "connected"
        return {
            "connect": connect,
            "tunnel": tunnel,
            "tls": tls,
            "send": span(ready, "sent"),
            "wait": span("sent", "firstByte"),
            "receive": span("firstByte", "end"),
            "total": span("start", "end"),
        }

    def curlVariables(self) -> dict[str, float | int | None]:
        """
        curl's C{-w} variables: times in seconds from the start.
        """
        m = self.marks
        start = m["start"]

        def since(name: str, default: float | None = None) -> float | None:
            value = m.get(name, default)
            return None if value is None else round(value - start, 6)

        ready = m.get("tls", m.get("connected", start))
        total = since("end")
        headerBytes = len(_responseHeadBytes(self.head)) if self.head else 0
        headerBytes += sum(len(_responseHeadBytes(h)) for h in self.interim)
        return {
            "time_connect": since("connected", start),
            "time_appconnect": since("tls", start),
            "time_pretransfer": round(ready - start, 6) if "sent" in m else None,
            "time_posttransfer": since("sent"),
            "time_starttransfer": since("firstByte"),
            "time_total": total,
            "http_code": self.head.status if self.head else 0,
            "size_download": self.bodyBytes,
            "size_header": headerBytes,
            "speed_download": round(self.bodyBytes / total) if total else 0,
            "num_connects": 1 if self.newConnection else 0,
        }


_PHASES = [
    ("connect", "proxy connect"),
    ("tunnel", "CONNECT established"),
    ("tls", "TLS handshake"),
    ("send", "request sent"),
    ("wait", "first response byte"),
    ("receive", "response complete"),
    ("total", "total"),
]

_WAITING_FOR = {
    "connect": "the connection to the proxy at {proxy}",
    "tunnel": "the proxy to open a tunnel to {target}",
    "tls": "the TLS handshake with {host}",
    "waiting": "the response",
    "receiving": "the rest of the response",
}


def _runExitCode(run: _Run) -> int:
    if run.error is not None:
        return run.error.exitCode
    assert run.head is not None
    if proxyErrorOf(_proxyStatus(run.head)):
        return EXIT_NETWORK
    return EXIT_OK if 200 <= run.head.status < 400 else EXIT_HTTP_ERROR


def _proxyStatus(head: ResponseHead | None) -> str | None:
    if head is None:
        return None
    value = head.get(b"proxy-status")
    return None if value is None else value.decode("latin-1")


class _Recorder(_RunListener):
    """
    Records one run's events with the session's clocks, writes the body
    where it goes, and tells the reporter.
    """

    def __init__(self, session: _Session, run: _Run) -> None:
        self._session = session
        self._run = run
        self._output: Any = None

    def _mark(self, name: str) -> None:
        self._run.marks[name] = self._session.env.monotonic()

    def connected(self) -> None:
        self._mark("connected")
        self._run.phase = (
            "tunnel" if self._session.config.target.scheme == "https" else "waiting"
        )

    def tunnelOpened(self, head: ResponseHead) -> None:
        self._mark("tunnel")
        self._run.tunnelHead = head
        self._run.phase = "tls"
        self._session.reporter.tunnelOpened(self._run, self._session.env.wallClock())

    def tlsEstablished(self, version: str | None) -> None:
        self._mark("tls")
        self._run.tlsVersion = version
        self._run.phase = "waiting"

    def requestSent(self) -> None:
        self._mark("sent")
        self._run.phase = "waiting"
        self._run.wall["sent"] = self._session.env.wallClock()
        self._session.reporter.requestSent(self._run)

    def firstByte(self) -> None:
        self._mark("firstByte")
        self._run.phase = "receiving"

    def interimHead(self, head: ResponseHead) -> None:
        self._run.interim.append(head)

    def responseHead(self, head: ResponseHead) -> None:
        run = self._run
        run.head = head
        run.wall["received"] = self._session.env.wallClock()
        self._session.reporter.responseHead(run)
        path = self._session.config.output
        if path is not None and not head.noBody:
            try:
                self._output = open(path, "wb")
            except OSError as e:
                raise ClientError(
                    "Cannot write the body to {}: {}.".format(path, e.strerror or e),
                    exitCode=EXIT_USAGE,
                ) from None

    def bodyReceived(self, data: bytes) -> None:
        run = self._run
        run.bodyBytes += len(data)
        if len(run.preview) < _PREVIEW_BYTES:
            run.preview += data[: _PREVIEW_BYTES - len(run.preview)]
        if self._output is not None:
            try:
                self._output.write(data)
            except OSError as e:
                raise ClientError(
                    "Cannot write the body to {}: {}.".format(
                        self._session.config.output, e.strerror or e
                    ),
                    exitCode=EXIT_USAGE,
                ) from None
        self._session.reporter.bodyReceived(run, data)

    def responseComplete(self) -> None:
        self._mark("end")
        self.closeOutput()

    def closeOutput(self) -> None:
        if self._output is not None:
            self._output.close()
            self._output = None


_PREVIEW_BYTES = 4096
_PREVIEW_LINES = 10


class _Session:
    """
    Runs the requests of one invocation and measures them.

    @ivar config: the validated command line.
    @ivar env: the outside world.
    @ivar reporter: gets told what happens.
    @ivar mac: the MAC address, looked up once the first connection is made.
    @ivar connections: how many connections were opened.
    @ivar _wire: the current connection, if any.
    @ivar _http: its HTTP layer.
    @ivar _connecting: the pending connection attempt, if any.
    @ivar _timedOut: whether the current run's timer fired.
    """

    mac: MacAddress | None = None
    connections = 0
    _wire: _ProxyWire | None = None
    _http: _HTTPLayer | None = None
    _connecting: Deferred[Any] | None = None
    _timedOut = False

    def __init__(self, config: _Config, env: Environment, reporter: _Reporter) -> None:
        self.config = config
        self.env = env
        self.reporter = reporter

    async def run(self) -> list[_Run]:
        """
        Run the requests; stop at the first one that fails.
        """
        runs: list[_Run] = []
        try:
            for number in range(1, self.config.count + 1):
                run = _Run(number, https=self.config.target.scheme == "https")
                runs.append(run)
                await self._runOnce(run)
                self.reporter.runFinished(run)
                if run.error is not None:
                    break
        finally:
            await self._close()
        return runs

    async def _runOnce(self, run: _Run) -> None:
        env = self.env
        run.marks["start"] = env.monotonic()
        run.wall["start"] = env.wallClock()
        self._timedOut = False
        timer = env.clock.callLater(self.config.timeout, self._timeOut)
        recorder = _Recorder(self, run)
        try:
            if (
                self._http is None
                or not self._http.reusable
                or self.config.newConnection
            ):
                await self._close()
                await self._connect(run, recorder)
            else:
                run.phase = "waiting"
                run.connectionNumber = self.connections
                run.localAddress = self._wire.localAddress if self._wire else None
                run.tlsVersion = self._http.tlsVersion
            assert self._http is not None
            method = self.config.method.encode("ascii")
            await self._http.request(
                method, self.config.requestHead + self.config.requestBody, recorder
            )
        except ClientError as e:
            run.error = self._timeoutError(run) if self._timedOut else e
        except CancelledError:
            if not self._timedOut:
                raise
            run.error = self._timeoutError(run)
        finally:
            recorder.closeOutput()
            if timer.active():
                timer.cancel()
        if run.error is not None and self._wire is not None:
            if self._wire.transport is not None:
                self._wire.transport.abortConnection()

    async def _connect(self, run: _Run, recorder: _Recorder) -> None:
        config = self.config
        target = config.target
        https = target.scheme == "https"
        http = _HTTPLayer(recorder, tlsHost=target.host if https else None)
        wire = _ProxyWire(
            http,
            recorder,
            tunnelHead=config.tunnelHead() if https else None,
            tunnelTarget=target.hostAndPort,
            tlsCreator=config.tlsCreator,
        )
        run.newConnection = True
        run.phase = "connect"
        assert self.env.endpointFactory is not None
        endpoint = self.env.endpointFactory(
            config.proxyHost, config.proxyPort, config.timeout
        )
        self._connecting = connectProtocol(endpoint, wire)
        try:
            await self._connecting
        except CancelledError:
            raise
        except Exception:
            if self._timedOut:
                raise CancelledError() from None
            raise _connectFailure(Failure(), config.proxy) from None
        finally:
            self._connecting = None
        self._wire, self._http = wire, http
        self.connections += 1
        run.connectionNumber = self.connections
        run.localAddress = wire.localAddress
        if self.mac is None:
            self.mac = _lookUpMac(wire.localAddress, self.env.interfaceTable)
        await http.ready

    def _timeOut(self) -> None:
        self._timedOut = True
        if self._connecting is not None:
            self._connecting.cancel()
        elif self._wire is not None and self._wire.transport is not None:
            self._wire.transport.abortConnection()

    def _timeoutError(self, run: _Run) -> ClientError:
        what = _WAITING_FOR.get(run.phase, "the response").format(
            proxy=self.config.proxy,
            target=self.config.target.hostAndPort,
            host=self.config.target.host,
        )
        seconds = "{:g}".format(self.config.timeout)
        return ClientError(
            "Timed out after {} second{} waiting for {}. Use --timeout SECONDS to "
            "wait longer.".format(seconds, "" if seconds == "1" else "s", what)
        )

    async def _close(self) -> None:
        """
        Close the current connection, if any, and wait until it is gone.
        """
        wire, self._wire, self._http = self._wire, None, None
        if wire is None or wire.closed.called:
            return
        wire.close()
        fallback = self.env.clock.callLater(2.0, _abort, wire)
        try:
            await wire.closed
        finally:
            if fallback.active():
                fallback.cancel()


def _abort(wire: _ProxyWire) -> None:
    if wire.transport is not None:
        wire.transport.abortConnection()


def _connectFailure(reason: Failure, proxy: str) -> ClientError:
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


# --- Output ------------------------------------------------------------------


def _clockTime(seconds: float) -> str:
    """
    A local time of day with milliseconds: C{12:34:56.123}.
    """
    moment = datetime.fromtimestamp(seconds)
    return moment.strftime("%H:%M:%S.") + "{:03d}".format(moment.microsecond // 1000)


def _isoTime(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return (
        datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="milliseconds")
    )


_TEXT_TYPES = (
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
)


def bodyPreview(
    head: ResponseHead, data: bytes, total: int, maxLines: int = _PREVIEW_LINES
) -> list[str]:
    """
    The lines that show a body by default: the first C{maxLines} lines of a
    text body, or a note for a binary one.

    @param data: the start of the body.
    @param total: the body's full length.
    """
    if total == 0:
        return []
    contentType = (head.get(b"content-type") or b"").decode("latin-1").lower()
    mime, _, params = contentType.partition(";")
    mime = mime.strip()
    charset = "utf-8"
    match = re.search(r"charset\s*=\s*\"?([A-Za-z0-9._:-]+)", params)
    if match:
        charset = match.group(1)
    encoded = (head.get(b"content-encoding") or b"identity").strip().lower()
    textual = encoded == b"identity" and (
        mime.startswith("text/")
        or mime in _TEXT_TYPES
        or mime.endswith(("+json", "+xml"))
    )
    if encoded == b"identity" and not mime:
        try:
            data.decode("utf-8")
            textual = True
        except UnicodeDecodeError as e:
            # A character cut at the end of the preview is still text.
            textual = e.start >= len(data) - 3 and len(data) == _PREVIEW_BYTES
    if not textual:
        kind = mime or "unknown type"
        if encoded != b"identity":
            kind += ", " + encoded.decode("latin-1") + "-encoded"
        return [
            "[{} bytes of {}: not shown; --output FILE saves the body]".format(
                total, kind
            )
        ]
    try:
        text = data.decode(charset, "replace")
    except LookupError:
        text = data.decode("utf-8", "replace")
    lines = text.splitlines()
    shown = ["  " + _printable(line) for line in lines[:maxLines]]
    if len(lines) > maxLines or total > len(data):
        shown.append(
            "  [... {} bytes in all; --show-body prints the whole body]".format(total)
        )
    return shown


class _Reporter:
    """
    Turns what happens into output.  The base writes nothing.
    """

    def tunnelOpened(self, run: _Run, wallTime: float) -> None:
        pass

    def requestSent(self, run: _Run) -> None:
        pass

    def responseHead(self, run: _Run) -> None:
        pass

    def bodyReceived(self, run: _Run, data: bytes) -> None:
        pass

    def runFinished(self, run: _Run) -> None:
        pass

    def finished(
        self, runs: list[_Run], mac: MacAddress | None, connections: int
    ) -> None:
        pass


class _TextReporter(_Reporter):
    """
    The brief's output, for people.  With C{--count}, one line per run and a
    statistics table instead of the full exchange.
    """

    def __init__(self, config: _Config, out: TextIO, err: TextIO) -> None:
        self._config = config
        self._out = out
        self._err = err
        self._single = config.count == 1
        self._decoder: Any = None
        self._endsLine = True

    def _write(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()

    def tunnelOpened(self, run: _Run, wallTime: float) -> None:
        if run.number != 1:
            return
        head = run.tunnelHead
        assert head is not None
        self._write(
            "Tunnel has been opened: CONNECT {} HTTP/1.1 -> HTTP/{} {} {}  [{}]".format(
                self._config.target.hostAndPort,
                head.version.decode(),
                head.status,
                _printable(head.reason.decode("latin-1")),
                _clockTime(wallTime),
            )
        )

    def requestSent(self, run: _Run) -> None:
        if run.number != 1:
            return
        line = "Request has been sent: " + _escapeHead(self._config.requestHead)
        if self._config.requestBody:
            line += " + {}-byte body".format(len(self._config.requestBody))
        self._write(line + "  [{}]".format(_clockTime(run.wall["sent"])))

    def responseHead(self, run: _Run) -> None:
        if not self._single:
            return
        head = run.head
        assert head is not None
        self._write(
            "Response has been received: {}  [{}]".format(
                _escapeHead(_responseHeadBytes(head)), _clockTime(run.wall["received"])
            )
        )
        proxyStatus = _proxyStatus(head)
        if proxyStatus is not None:
            self._write("Proxy-Status: " + _printable(proxyStatus))
        if self._config.showBody:
            charset = "utf-8"
            match = re.search(
                rb"charset\s*=\s*\"?([A-Za-z0-9._:-]+)",
                head.get(b"content-type") or b"",
            )
            if match:
                charset = match.group(1).decode("ascii")
            try:
                self._decoder = codecs.getincrementaldecoder(charset)("replace")
            except LookupError:
                self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def bodyReceived(self, run: _Run, data: bytes) -> None:
        if self._single and self._decoder is not None:
            self._writeBody(self._decoder.decode(data))

    def _writeBody(self, text: str) -> None:
        if text:
            self._out.write(text)
            self._out.flush()
            self._endsLine = text.endswith("\n")

    def runFinished(self, run: _Run) -> None:
        if self._single:
            self._finishSingle(run)
        else:
            self._finishOne(run)
        self._reportProblem(run)

    def _finishSingle(self, run: _Run) -> None:
        if self._decoder is not None:
            self._writeBody(self._decoder.decode(b"", True))
            if not self._endsLine:
                self._write("")
            self._decoder = None
        elif run.head is not None:
            for line in bodyPreview(run.head, run.preview, run.bodyBytes):
                self._write(line)
        if run.complete:
            total = run.marks["end"] - run.marks["start"]
            self._write("Round-trip time: {:.3f} seconds".format(total))
            if self._config.timing:
                self._writeTiming(run)

    def _writeTiming(self, run: _Run) -> None:
        phases = run.phasesMs()
        curl = run.curlVariables()
        curlFor = {
            "connect": ["time_connect"],
            "tls": ["time_appconnect"],
            "send": ["time_pretransfer", "time_posttransfer"],
            "wait": ["time_starttransfer"],
            "receive": ["time_total"],
        }
        self._write("Timing:")
        for key, label in _PHASES:
            value = phases[key]
            if value is None:
                continue
            names = curlFor.get(key, [])
            variables = " ".join("{}={:.6f}".format(n, curl[n]) for n in names)
            self._write(
                "  {:<20} {:>10.3f} ms  {}".format(label, value, variables).rstrip()
            )
        self._write(
            "  http_code={http_code} size_download={size_download} "
            "size_header={size_header} size_request={size_request} "
            "speed_download={speed_download} num_connects={num_connects}".format(
                size_request=len(self._config.requestHead)
                + len(self._config.requestBody),
                **curl,
            )
        )

    def _finishOne(self, run: _Run) -> None:
        count = self._config.count
        if run.head is None:
            self._write("Run {}/{}: failed".format(run.number, count))
            return
        state = "complete" if run.complete else "incomplete"
        line = "Run {}/{}: {} {}, {} body bytes, ".format(
            run.number,
            count,
            run.head.status,
            _printable(run.head.reason.decode("latin-1")),
            run.bodyBytes,
        )
        if run.complete:
            line += "{:.3f} ms".format(run.phasesMs()["total"])
        else:
            line += state
        line += ", " + ("new connection" if run.newConnection else "reused connection")
        self._write(line)
        if self._config.timing and run.complete:
            phases = run.phasesMs()
            self._write(
                "  "
                + "  ".join(
                    "{} {:.3f}".format(key, phases[key])
                    for key, _ in _PHASES
                    if phases[key] is not None
                )
                + " (ms)"
            )

    def _reportProblem(self, run: _Run) -> None:
        if run.error is not None:
            self._err.write("proxyclient: {}\n".format(run.error.message))
            self._err.flush()
            return
        error = proxyErrorOf(_proxyStatus(run.head))
        if error is not None and run.head is not None:
            self._err.write(
                "proxyclient: the proxy could not complete the request: {} {} "
                "(Proxy-Status: {})\n".format(
                    run.head.status,
                    _printable(run.head.reason.decode("latin-1")),
                    _printable(_proxyStatus(run.head) or ""),
                )
            )
            self._err.flush()

    def finished(
        self, runs: list[_Run], mac: MacAddress | None, connections: int
    ) -> None:
        if not self._single:
            self._writeStatistics(runs, connections)
        if mac is not None:
            self._write("Physical MAC Address: " + mac.describe())

    def _writeStatistics(self, runs: list[_Run], connections: int) -> None:
        complete = [r for r in runs if r.complete]
        self._write(
            "Statistics over {} of {} runs on {} connection{} "
            "(median: middle value; p90: nearest rank):".format(
                len(complete),
                self._config.count,
                connections,
                "" if connections == 1 else "s",
            )
        )
        if not complete:
            self._write("  no run completed")
            return
        self._write(
            "  {:<20} {:>10} {:>10} {:>10} {:>10} {:>10}".format(
                "phase (ms)", "min", "mean", "median", "p90", "max"
            )
        )
        for key, values in _phaseValues(complete).items():
            s = summarize(values)
            label = dict(_PHASES)[key]
            self._write(
                "  {:<20} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f}".format(
                    label, s["min"], s["mean"], s["median"], s["p90"], s["max"]
                )
            )
        statuses = _statusCounts(complete)
        bodyBytes = sum(r.bodyBytes for r in complete)
        self._write(
            "  status {}; {} body bytes in all".format(
                ", ".join("{} x{}".format(k, v) for k, v in statuses.items()), bodyBytes
            )
        )


def _phaseValues(runs: list[_Run]) -> dict[str, list[float]]:
    """
    Each phase's durations over C{runs} (phases that did not happen left
    out), in the order of L{_PHASES}.
    """
    values: dict[str, list[float]] = {}
    for key, _ in _PHASES:
        got = [v for v in (r.phasesMs()[key] for r in runs) if v is not None]
        if got:
            values[key] = got
    return values


def _statusCounts(runs: list[_Run]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in runs:
        if r.head is not None:
            key = str(r.head.status)
            counts[key] = counts.get(key, 0) + 1
    return counts


class _JSONReporter(_Reporter):
    """
    One JSON object per line: one per run, then a summary after C{--count}
    runs.
    """

    def __init__(
        self, config: _Config, out: TextIO, err: TextIO, session: _Session
    ) -> None:
        self._config = config
        self._out = out
        self._err = err
        self._session = session

    def _emit(self, obj: dict[str, Any]) -> None:
        self._out.write(json.dumps(obj) + "\n")
        self._out.flush()

    def runFinished(self, run: _Run) -> None:
        config = self._config
        head = run.head
        mac = self._session.mac
        error = run.error
        if error is not None:
            self._err.write("proxyclient: {}\n".format(error.message))
            self._err.flush()
        self._emit(
            {
                "type": "run",
                "run": run.number,
                "of": config.count,
                "url": config.target.url,
                "proxy": config.proxy,
                "method": config.method,
                "request": config.requestHead.decode("latin-1"),
                "request_body_bytes": len(config.requestBody),
                "new_connection": run.newConnection,
                "connection": run.connectionNumber,
                "local_address": run.localAddress,
                "tunnel_status": run.tunnelHead.status if run.tunnelHead else None,
                "tls_version": run.tlsVersion,
                "status": head.status if head else None,
                "reason": head.reason.decode("latin-1") if head else None,
                "http_version": head.version.decode() if head else None,
                "headers": [
                    [n.decode("latin-1"), v.decode("latin-1")] for n, v in head.headers
                ]
                if head
                else None,
                "proxy_status": _proxyStatus(head)
                or (error.proxyStatus if error else None),
                "started_at": _isoTime(run.wall.get("start")),
                "sent_at": _isoTime(run.wall.get("sent")),
                "received_at": _isoTime(run.wall.get("received")),
                "timings_ms": run.phasesMs(),
                "curl": dict(
                    run.curlVariables(),
                    size_request=len(config.requestHead) + len(config.requestBody),
                ),
                "body_bytes": run.bodyBytes,
                "complete": run.complete,
                "output": config.output,
                "mac": mac.asJSON() if mac else None,
                "exit_code": _runExitCode(run),
                "error": error.message if error else None,
            }
        )

    def finished(
        self, runs: list[_Run], mac: MacAddress | None, connections: int
    ) -> None:
        if self._config.count == 1:
            return
        complete = [r for r in runs if r.complete]
        self._emit(
            {
                "type": "summary",
                "url": self._config.target.url,
                "proxy": self._config.proxy,
                "runs": self._config.count,
                "completed": len(complete),
                "connections": connections,
                "statuses": _statusCounts(complete),
                "percentile_method": "nearest-rank",
                "phases_ms": {
                    key: {k: round(v, 3) for k, v in summarize(values).items()}
                    for key, values in _phaseValues(complete).items()
                },
                "body_bytes": sum(r.bodyBytes for r in complete),
                "mac": mac.asJSON() if mac else None,
                "exit_code": _exitCode(runs),
            }
        )


def _exitCode(runs: list[_Run]) -> int:
    """
    The worst exit code of the runs.
    """
    codes = [_runExitCode(r) for r in runs]
    for code in (EXIT_USAGE, EXIT_NETWORK, EXIT_HTTP_ERROR):
        if code in codes:
            return code
    return EXIT_OK


# --- Putting it together -----------------------------------------------------


def _prompt(env: Environment, out: TextIO) -> Target | None:
    """
    Ask for the target until a valid one is typed (interactive) or once
    (input from a pipe or file); L{None} at the end of input or on a bad
    address that cannot be asked again.
    """
    while True:
        out.write(PROMPT)
        out.flush()
        line = env.stdin.readline()
        if not line:
            out.write("\n")
            env.stderr.write("proxyclient: no address given.\n")
            return None
        if not env.interactive:
            out.write(line if line.endswith("\n") else line + "\n")
        try:
            return parseTarget(line)
        except TargetError as e:
            env.stderr.write("proxyclient: {}\n".format(e))
            env.stderr.flush()
            if not env.interactive:
                return None


def _buildRequest(
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
        requestTarget = target.url
    fields: list[tuple[str, str]] = [
        ("Host", target.authority),
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
        requestTarget.encode("ascii"),
        [(n.encode("latin-1"), v.encode("utf-8")) for n, v in fields],
    )
    return method, head


def _tlsCreator(options: Options, host: str) -> object:
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


def _configure(options: Options, env: Environment, target: Target) -> _Config:
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
    method, head = _buildRequest(options, target, body, hasBody)
    return _Config(
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
        tlsCreator=_tlsCreator(options, target.host)
        if target.scheme == "https"
        else None,
    )


async def runClient(env: Environment, argv: Sequence[str]) -> int:
    """
    The whole program, with the outside world in C{env}.

    @param argv: the arguments, without the program name.
    @return: the exit code.
    """
    options = Options()
    try:
        options.parseOptions(list(argv))
    except _Exit as e:
        env.stdout.write(e.text)
        return e.code
    except usage.UsageError as e:
        env.stderr.write("proxyclient: {}\nTry 'proxyclient --help'.\n".format(e))
        return EXIT_USAGE
    if options["target"] is None:
        try:
            target = _prompt(env, env.stderr if options["json"] else env.stdout)
        except KeyboardInterrupt:
            env.stdout.write("\n")
            return 130
        if target is None:
            return EXIT_USAGE
    else:
        try:
            target = parseTarget(options["target"])
        except TargetError as e:
            env.stderr.write("proxyclient: {}\n".format(e))
            return EXIT_USAGE
    try:
        config = _configure(options, env, target)
    except usage.UsageError as e:
        env.stderr.write("proxyclient: {}\n".format(e))
        return EXIT_USAGE

    reporter: _Reporter = _Reporter()
    session = _Session(config, env, reporter)
    if config.json:
        session.reporter = _JSONReporter(config, env.stdout, env.stderr, session)
    else:
        session.reporter = _TextReporter(config, env.stdout, env.stderr)
    runs = await session.run()
    session.reporter.finished(runs, session.mac, session.connections)
    return _exitCode(runs)


def main(reactor: Any, *argv: str) -> Deferred[None]:
    """
    The C{main} that L{twisted.internet.task.react} runs: L{runClient} on
    the real standard streams and environment.  A non-zero exit code ends
    the program through L{SystemExit}.
    """
    env = Environment(
        reactor=reactor,
        stdin=sys.stdin,
        stdout=sys.stdout,
        stderr=sys.stderr,
        environ=os.environ,
    )

    def exit(code: int) -> None:
        if code:
            raise SystemExit(code)

    return ensureDeferred(runClient(env, argv)).addCallback(exit)


def run() -> None:
    """
    The C{proxyclient} console script.
    """
    from twisted.internet.task import react  # it runs the global reactor

    react(main, sys.argv[1:])


if __name__ == "__main__":
    run()
