# -*- test-case-name: tests.test_tap -*-
"""
The twistd plugin's L{Options}: every command-line option, validated once.
"""

from __future__ import annotations

import os
import socket
import sys

from typing import TYPE_CHECKING

from twisted.python import usage

from .. import __version__

if TYPE_CHECKING:
    from ..proxy.config import ProxyConfig

__all__ = ["Options"]


def _positive(kind: type = float):
    def convert(text: str):
        value = kind(text)
        if value <= 0:
            raise ValueError("must be positive")
        return value

    convert.coerceDoc = "Must be a positive number."  # type: ignore[attr-defined]
    return convert


def _nonNegativeInt(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "A streaming, standards-correct HTTP/1.1 forward proxy.  Clients send "
        "absolute-form requests (GET http://host/path) or origin-form requests "
        "with a Host header; the proxy relays each to its destination and "
        "logs every connection and transaction."
    )

    optParameters = [
        ["pseudonym", None, None,
         "This proxy's name in Via and Proxy-Status (default: HOSTNAME:PORT of the first "
         "listening port; must be unique among chained proxies)."],
        ["connect-timeout", None, 10.0, "Seconds to connect to a destination (then 504).",
         _positive()],
        ["response-timeout", None, 30.0,
         "Seconds to wait for a response head once the request was sent (then 504).",
         _positive()],
        ["idle-timeout", None, 60.0, "Seconds an idle client connection is kept open.",
         _positive()],
        ["header-timeout", None, 10.0,
         "Seconds a client has to send a complete request head (then 408).", _positive()],
        ["tunnel-idle-timeout", None, 300.0,
         "Seconds a CONNECT or upgraded tunnel may carry no bytes before it is closed.",
         _positive()],
        ["body-timeout", None, 60.0,
         "Seconds a request body may stall (no bytes) before 408; also how long the "
         "origin may stop reading it (then 504).", _positive()],
        ["response-body-timeout", None, 60.0,
         "Seconds a response body may stall before both connections are aborted.",
         _positive()],
        ["max-body", None, None,
         "Largest request body accepted (k, M, G; default unlimited); larger gets 413."],
        ["max-connections", None, 4096,
         "Client connections served at once; more are refused with 503.", _positive(int)],
        ["max-connections-per-client", None, None,
         "Client connections from one address at once; more are refused with 503 "
         "(default: no limit per address, as Squid; --max-connections still applies).",
         _positive(int)],
        ["discard-body-max", None, "64M",
         "When a response comes before the request body is complete, read and drop at most "
         "this much of the rest of the body to keep the connection (k, M, G); a longer rest "
         "closes the connection after a lingering close."],
        ["linger-timeout", None, 2.0,
         "Seconds a lingering close keeps reading and dropping what a client still sends "
         "after its last response, so that it reads the response instead of a reset.",
         _positive()],
        ["max-target-length", None, 8192, "Longest request-target (then 414).", _positive(int)],
        ["max-header-size", None, 32768,
         "Largest request header section in bytes (then 431).", _positive(int)],
        ["max-header-count", None, 100, "Most request header fields (then 431).",
         _positive(int)],
        ["max-response-header-size", None, 65536,
         "Largest response header section from an origin (then 502).", _positive(int)],
        ["pool-min-idle-per-host", None, 8,
         "Idle upstream connections kept per destination at least; more while its recent "
         "peak concurrency needs them (0 disables reuse).", _nonNegativeInt],
        ["pool-idle-timeout", None, 60.0, "Seconds an idle upstream connection is kept.",
         _positive()],
        ["dns-cache-ttl", None, 60.0,
         "Seconds a resolved name is reused (failures: 5 s; 0 disables the cache).",
         float],
        ["forwarded", None, "off",
         "Tell the origin who the client is: off, xff (X-Forwarded-For) or rfc7239 "
         "(Forwarded)."],
        ["auth-file", None, None,
         "Require proxy authentication against this htpasswd file (bcrypt, SHA-crypt, "
         "apr1, {SHA}; plain text refused)."],
        ["auth-realm", None, "twisted-proxy", "The realm of the Proxy-Authenticate challenge."],
        ["connect-ports", None, "443", "Ports CONNECT may reach: a list like 443,8443, or *."],
        ["history", None, None,
         "Write one JSON record per transaction to this file (JSON Lines, written within "
         "50 ms, and at every clean stop)."],
        ["history-rotate-size", None, "0",
         "Also rotate the history file at this size (k, M, G), deleting the oldest beyond "
         "--history-keep; 0: never (rotate it with logrotate and SIGUSR1)."],
        ["history-keep", None, 10,
         "Rotated history files to keep with --history-rotate-size.", _positive(int)],
        ["history-headers", None, "redacted",
         "Header values in history and logs: redacted (Authorization, Proxy-Authorization, "
         "Cookie, Set-Cookie hidden) or all."],
        ["access-log", None, None, "Write one access-log line per transaction to this file."],
        ["access-log-format", None, "squid", "Access log format: squid, common or combined."],
        ["cache-size", None, "64M",
         "Memory for the HTTP cache (RFC 9111; k, M, G); 0 turns the cache off."],
        ["cache-max-object", None, "8M", "Largest response body the cache stores (k, M, G)."],
        ["cache-dir", None, None,
         "Keep the cache on disk in this directory instead of in memory (it survives "
         "restarts; one process per directory: workers use DIR/worker-N)."],
        ["cache-disk-size", None, "1G", "Disk space for --cache-dir (k, M, G)."],
        ["cache-heuristic-max", None, 86400.0,
         "Longest heuristic freshness, in seconds, for responses with Last-Modified but no "
         "explicit lifetime (10% of their age, at most this).", _positive()],
        ["cache-collapse-timeout", None, 10.0,
         "Seconds a request waits for an identical one in flight before it goes to the "
         "origin itself.", _positive()],
        ["reverse", None, None,
         "Reverse-proxy (accelerator) mode: send origin-form requests to this origin, "
         "http://host[:port]; the client's Host is kept."],
        ["metrics", None, None,
         "Serve Prometheus metrics (/metrics), a status page (/) and a health check "
         "(/healthz) on this endpoint, e.g. tcp:9100:interface=127.0.0.1; a bare port "
         "listens on 127.0.0.1 only (default: off)."],
        ["upstream-proxy", None, None,
         "Send requests through this parent proxy: http://[user:password@]host:port "
         "(plain requests in absolute-form, tunnels with CONNECT)."],
    ]

    optFlags = [
        ["reverse-rewrite-host", None,
         "In reverse-proxy mode, send the origin's own host:port as Host instead of the "
         "client's."],
        ["deny-private-destinations", None,
         "Refuse destinations that resolve to loopback, private, link-local or other "
         "special-purpose addresses (checked on the address actually connected to)."],
    ]

    compData = usage.Completions(
        optActions={
            "forwarded": usage.CompleteList(["off", "xff", "rfc7239"]),
            "history-headers": usage.CompleteList(["redacted", "all"]),
            "access-log-format": usage.CompleteList(["squid", "common", "combined"]),
            "history": usage.CompleteFiles(),
            "access-log": usage.CompleteFiles(),
            "auth-file": usage.CompleteFiles(),
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self.argv: list[str] = []
        self["ports"] = []
        self["workers"] = 1
        self["clientRules"] = []
        self["allowHosts"] = []
        self["denyHosts"] = []
        self["noUpstreamFor"] = []
        self["reverseHosts"] = []

    def parseOptions(self, options=None) -> None:
        # Remembered so that --workers can start each worker with the same
        # arguments.
        self.argv = list(sys.argv[1:] if options is None else options)
        super().parseOptions(options)

    def opt_workers(self, count: str) -> None:
        """Serve with this many worker processes sharing the listening sockets (default 1: serve in this process; auto: one per CPU)."""
        if count == "auto":
            self["workers"] = os.cpu_count() or 1
            return
        try:
            self["workers"] = int(count)
        except ValueError:
            raise usage.UsageError("--workers takes a number or auto") from None
        if self["workers"] < 1:
            raise usage.UsageError("--workers must be at least 1")

    def opt_allow(self, cidr: str) -> None:
        """Clients from this network may use the proxy (repeatable, IPv4 or IPv6; --allow and --deny rules are checked in order, first match wins). Default: loopback and private networks only."""
        self["clientRules"].append(("allow", cidr))

    def opt_deny(self, cidr: str) -> None:
        """Clients from this network may not use the proxy (repeatable)."""
        self["clientRules"].append(("deny", cidr))

    def opt_allow_host(self, pattern: str) -> None:
        """Only destinations matching a pattern are allowed (repeatable; exact host, *.example.com, .example.com, or re:REGEX)."""
        self["allowHosts"].append(pattern)

    def opt_no_upstream_proxy_for(self, pattern: str) -> None:
        """Go direct, not through --upstream-proxy, for destinations matching this pattern (repeatable; same patterns as --allow-host)."""
        self["noUpstreamFor"].append(pattern)

    def opt_deny_host(self, pattern: str) -> None:
        """Destinations matching this pattern are refused (repeatable)."""
        self["denyHosts"].append(pattern)

    def opt_pool_max_idle_per_host(self, count: str) -> None:
        """The former name of --pool-min-idle-per-host (it is a floor, not a cap)."""
        try:
            self["pool-min-idle-per-host"] = _nonNegativeInt(count)
        except ValueError:
            raise usage.UsageError(
                "--pool-max-idle-per-host {}: must be a whole number, 0 or more".format(count)
            ) from None

    def opt_reverse_host(self, mapping: str) -> None:
        """Reverse-proxy mode for one site (repeatable): NAME=http://host[:port] sends origin-form requests whose Host is NAME to that origin."""
        name, sep, url = mapping.partition("=")
        if not sep or not name:
            raise usage.UsageError(
                "--reverse-host {}: expected NAME=http://host[:port], e.g. "
                "www.example.com=http://127.0.0.1:8000".format(mapping)
            )
        self["reverseHosts"].append((name.strip().lower().rstrip("."), url.strip()))

    def opt_listen(self, port: str) -> None:
        """Listen on this endpoint (repeatable; any Twisted endpoint string, e.g. tcp:3128:interface=127.0.0.1, tcp6:8080, unix:/run/proxy.sock). Default: tcp:8080."""
        self["ports"].append(port)

    def opt_version(self) -> None:
        """Print the version and exit."""
        print("twisted-proxy", __version__)
        raise SystemExit(0)

    def postOptions(self) -> None:
        if not self["ports"]:
            self["ports"] = ["tcp:8080"]
        from twisted.internet.endpoints import serverFromString

        for description in self["ports"]:
            try:
                # Parsing needs no reactor; listening happens at start.
                serverFromString(None, description)
            except Exception as e:
                raise usage.UsageError(
                    "--listen {!r} is not a valid endpoint ({}); e.g. tcp:8080, "
                    "tcp:3128:interface=127.0.0.1, tcp6:8080, unix:/run/proxy.sock".format(
                        description, e
                    )
                ) from None
        for option in ("history", "access-log"):
            path = self[option]
            if path is not None:
                directory = os.path.dirname(os.path.abspath(path))
                if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
                    raise usage.UsageError(
                        "--{} {}: cannot write there (is {} an existing, writable "
                        "directory?)".format(option, path, directory)
                    )
        if self["forwarded"] not in ("off", "xff", "rfc7239"):
            raise usage.UsageError("--forwarded must be one of: off, xff, rfc7239")
        if self["history-headers"] not in ("redacted", "all"):
            raise usage.UsageError("--history-headers must be redacted or all")
        if self["access-log-format"] not in ("squid", "common", "combined"):
            raise usage.UsageError("--access-log-format must be one of: squid, common, combined")
        from ..records.units import parseSize

        try:
            self["history-rotate-size"] = parseSize(str(self["history-rotate-size"]))
        except ValueError as e:
            raise usage.UsageError("--history-rotate-size: {}".format(e)) from None
        for option in ("max-body", "discard-body-max", "cache-size", "cache-max-object",
                       "cache-disk-size"):
            if self[option] is not None:
                try:
                    self[option] = parseSize(str(self[option]))
                except ValueError as e:
                    raise usage.UsageError("--{}: {}".format(option, e)) from None
        if self["metrics"] is not None:
            from .metrics import metricsEndpoint

            try:
                self["metrics"] = metricsEndpoint(self["metrics"])
            except ValueError as e:
                raise usage.UsageError(
                    "--metrics {!r} is not a valid endpoint ({}); e.g. 9100 or "
                    "tcp:9100:interface=127.0.0.1".format(self["metrics"], e)
                ) from None
        if self["pseudonym"] is None:
            self["pseudonym"] = "{}:{}".format(socket.gethostname(), _firstPort(self["ports"]))
        elif not all(c.isalnum() or c in "-._:~" for c in self["pseudonym"]):
            raise usage.UsageError(
                "--pseudonym may hold letters, digits and - . _ : ~ only"
            )
        from ..proxy.policy import ConfigurationError, Policy

        try:
            self["policy"] = Policy.fromOptions(
                clientRules=self["clientRules"],
                authFile=self["auth-file"],
                realm=self["auth-realm"],
                allowHosts=self["allowHosts"],
                denyHosts=self["denyHosts"],
                connectPorts=self["connect-ports"],
                denyPrivateDestinations=bool(self["deny-private-destinations"]),
            )
            from ..proxy.policy import HostPatterns

            self["parentBypass"] = HostPatterns("no-upstream-proxy-for", self["noUpstreamFor"])
        except ConfigurationError as e:
            raise usage.UsageError(str(e)) from None
        self["parent"] = None
        if self["upstream-proxy"] is not None:
            from ..proxy.parent import ParentProxy

            try:
                self["parent"] = ParentProxy.fromURL(self["upstream-proxy"])
            except ValueError as e:
                raise usage.UsageError("--upstream-proxy: {}".format(e)) from None
        from ..proxy.config import ReverseOrigin

        try:
            self["reverseOrigin"] = (
                None if self["reverse"] is None else ReverseOrigin.fromURL(self["reverse"])
            )
        except ValueError as e:
            raise usage.UsageError("--reverse {}: {}".format(self["reverse"], e)) from None
        reverseHosts = []
        for name, url in self["reverseHosts"]:
            try:
                reverseHosts.append((name, ReverseOrigin.fromURL(url)))
            except ValueError as e:
                raise usage.UsageError("--reverse-host {}={}: {}".format(name, url, e)) from None
        self["reverseHosts"] = reverseHosts
        if self["cache-dir"] is not None:
            directory = os.path.abspath(self["cache-dir"])
            parent = directory if os.path.isdir(directory) else os.path.dirname(directory)
            if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
                raise usage.UsageError(
                    "--cache-dir {}: cannot create or write it (is {} an existing, writable "
                    "directory?)".format(self["cache-dir"], parent)
                )
        from ..proxy.config import ConfigError

        try:
            self["config"] = proxyConfig(self)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def proxyConfig(options: usage.Options) -> ProxyConfig:
    """
    The L{ProxyConfig} the parsed C{options} describe.

    @raise ConfigError: if a value is out of range.
    """
    from ..proxy.config import ProxyConfig

    return ProxyConfig(
        pseudonym=options["pseudonym"],
        idleTimeout=options["idle-timeout"],
        headerTimeout=options["header-timeout"],
        bodyTimeout=options["body-timeout"],
        maxBody=options["max-body"],
        discardBodyMax=options["discard-body-max"],
        lingerTimeout=options["linger-timeout"],
        maxConnections=options["max-connections"],
        maxConnectionsPerClient=options["max-connections-per-client"],
        maxTargetLength=options["max-target-length"],
        maxHeaderBytes=options["max-header-size"],
        maxHeaderCount=options["max-header-count"],
        connectTimeout=options["connect-timeout"],
        responseTimeout=options["response-timeout"],
        responseBodyTimeout=options["response-body-timeout"],
        tunnelIdleTimeout=options["tunnel-idle-timeout"],
        maxResponseHeaderBytes=options["max-response-header-size"],
        poolMinIdlePerHost=options["pool-min-idle-per-host"],
        poolIdleTimeout=options["pool-idle-timeout"],
        dnsCacheTtl=options["dns-cache-ttl"],
        forwarded=options["forwarded"],
        parent=options["parent"],
        parentBypass=options["parentBypass"],
        policy=options["policy"],
        redactHistory=options["history-headers"] != "all",
        cacheSize=options["cache-size"],
        cacheMaxObject=options["cache-max-object"],
        cacheDir=options["cache-dir"],
        cacheDiskSize=options["cache-disk-size"],
        cacheHeuristicMax=options["cache-heuristic-max"],
        cacheCollapseTimeout=options["cache-collapse-timeout"],
        reverse=options["reverseOrigin"],
        reverseHosts=tuple(options["reverseHosts"]),
        reverseRewriteHost=bool(options["reverse-rewrite-host"]),
    )


def _firstPort(ports: list[str]) -> str:
    """
    The port number of the first listening endpoint, for the default
    pseudonym (C{"tcp:8080:interface=..."} gives C{"8080"}).
    """
    parts = ports[0].split(":")
    for part in parts[1:]:
        if part.isdigit():
            return part
    return "0"
