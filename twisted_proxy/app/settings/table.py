# -*- test-case-name: tests.test_config_file -*-
"""
The table of settings, L{SETTINGS}: each setting's name, kind, help,
default and group, and the checks that borrow the proxy's own parsers.

Where a setting is a field of L{ProxyConfig
<twisted_proxy.proxy.config.ProxyConfig>} (its metadata names the option),
the default is that field's default (L{FROM_CONFIG}): the configuration
value keeps its own defaults, and this table only says how to spell them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .kinds import (
    Choice,
    Count,
    Directory,
    Endpoint,
    Expected,
    Flag,
    Kind,
    Path,
    Repeated,
    Seconds,
    Size,
    Text,
    Workers,
)

__all__ = [
    "BY_NAME",
    "FROM_CONFIG",
    "SETTINGS",
    "Setting",
    "configFields",
    "defaultOf",
    "reverseHosts",
]


def _stripOption(message: str) -> str:
    """
    The part of a proxy-layer error message after its C{--option 'value': }
    prefix: what is expected.
    """
    match = re.match(r"--[a-z0-9-]+ (?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\S+): ", message)
    return message[match.end() :] if match else message


def _networkItem(action: str) -> Callable[[str], None]:
    def validate(item: str) -> None:
        from ...proxy.policy import ClientACL, ConfigurationError

        try:
            ClientACL([(action, item)])
        except ConfigurationError as e:
            raise ValueError(_stripOption(str(e))) from None

    return validate


def _hostPatternItem(option: str) -> Callable[[str], None]:
    def validate(item: str) -> None:
        from ...proxy.policy import ConfigurationError, HostPatterns

        try:
            HostPatterns(option, [item])
        except ConfigurationError as e:
            raise ValueError(_stripOption(str(e))) from None

    return validate


def _listenItem(item: str) -> None:
    from ..listening import Listener

    Listener.parse(item)


def _connectPorts(text: str) -> None:
    from ...proxy.policy import ConfigurationError, parseConnectPorts

    try:
        parseConnectPorts(text)
    except ConfigurationError as e:
        raise ValueError(_stripOption(str(e))) from None


def _pseudonym(text: str) -> None:
    if not text or not all(c.isascii() and (c.isalnum() or c in "-._:~") for c in text):
        raise Expected("letters, digits and - . _ : ~ only")


def _realm(text: str) -> None:
    if not text or any(not " " <= c <= "~" for c in text):
        raise Expected("printable ASCII characters only")


def _reverseURL(text: str) -> None:
    from ...proxy.config import ReverseOrigin

    ReverseOrigin.fromURL(text)


def _reverseHost(item: str) -> None:
    from ...proxy.config import ReverseOrigin

    name, sep, url = item.partition("=")
    if not sep or not name.strip():
        raise Expected("NAME=http://host[:port], e.g. www.example.com=http://127.0.0.1:8000")
    ReverseOrigin.fromURL(url.strip())


def reverseHosts(items: Iterable[str]) -> tuple[tuple[str, Any], ...]:
    """
    The C{--reverse-host} items (C{NAME=URL}, checked) as L{ProxyConfig}
    wants them: C{(name, ReverseOrigin)}, the name lower-cased and without
    a trailing dot.
    """
    from ...proxy.config import ReverseOrigin

    pairs = []
    for item in items:
        name, _, url = item.partition("=")
        pairs.append((name.strip().lower().rstrip("."), ReverseOrigin.fromURL(url.strip())))
    return tuple(pairs)


def _metricsEndpoint(text: str) -> str:
    from ..listening import Listener, metricsEndpoint

    try:
        endpoint = metricsEndpoint(text)
        Listener.parse(endpoint)
    except ValueError as e:
        raise ValueError(
            f"not a valid endpoint ({e}); e.g. 9100 or tcp:9100:interface=127.0.0.1"
        ) from None
    return endpoint


def _parentURL(text: str) -> None:
    from ...proxy.parent import ParentProxy

    ParentProxy.fromURL(text)


@dataclass(frozen=True)
class Setting:
    """
    One setting.

    @ivar name: the option without its dashes, and the file key.
    @ivar kind: how values are read and checked.
    @ivar help: one line for C{--help} and the example file.
    @ivar default: the value when neither the command line nor the file
        sets it (L{None}: none, e.g. no history file); for L{ProxyConfig}
        fields, taken from the field (see L{_fieldDefaults}).
    @ivar group: the heading it is listed under in the example file.
    @ivar inFile: it has a key in a configuration file (not so for
        C{--config} itself and C{--check-config}).
    @ivar defaultText: how C{--help} and the example file describe a
        default that is computed or absent.
    @ivar restart: a change takes a restart to apply (the rest apply on
        SIGHUP).
    @ivar secret: its value may hold a password, hidden when the value is
        shown (L{shown}).
    """

    name: str
    kind: Kind
    help: str
    default: Any = None
    group: str = ""
    inFile: bool = True
    defaultText: str | None = None
    restart: bool = False
    secret: bool = False

    def shown(self, value: Any) -> str:
        """
        C{value} as TOML, for a person: a password in a URL is replaced by
        C{***}.
        """
        if value is None:
            return "(not set)"
        return self.kind.toToml(self.hidden(value))

    def hidden(self, value: Any) -> Any:
        """
        C{value}, with a password in a URL replaced by C{***} if the setting
        is secret.
        """
        if self.secret and isinstance(value, str):
            return re.sub(r"^([a-z][a-z0-9+.-]*://[^:@/]*):[^@/]*@", r"\1:***@", value)
        return value


_LISTEN = "Listening and processes"
_CLIENTS = "Clients"
_UPSTREAM = "Upstream"
_ACCESS = "Access rules"
_CACHE = "Cache"
_REVERSE = "Reverse proxy"
_RECORDS = "Records and logs"
_OPERATIONS = "Operations"

# The setting each ProxyConfig field comes from is named in the field's
# metadata; defaults come from the fields.  (FROM_CONFIG marks them.)
FROM_CONFIG = object()

SETTINGS: tuple[Setting, ...] = (
    # Listening and processes.
    Setting(
        "listen",
        Repeated(
            "endpoints (tcp:PORT[:interface=ADDRESS][:backlog=N], tcp6:PORT, unix:PATH, "
            "ssl:..., haproxy:tcp:..., systemd:..., or a bare port)",
            _listenItem,
        ),
        "Listen on this endpoint (repeatable).  A bare port (8080) listens on IPv4 and "
        "IPv6; tcp: is IPv4 only, tcp6: IPv6 only.  Unless the endpoint sets backlog=, the "
        "listen backlog is --max-connections, capped by the kernel's somaxconn.",
        default=["8080"],
        defaultText='["8080"] (IPv4 and IPv6, port 8080)',
        group=_LISTEN,
    ),
    Setting(
        "workers",
        Workers(),
        "Serve with this many worker processes sharing the listening sockets (1: serve in "
        "this process; auto: one per CPU).",
        default=1,
        group=_LISTEN,
        restart=True,
    ),
    Setting(
        "pseudonym",
        Text("letters, digits and - . _ : ~ only", _pseudonym),
        "This proxy's name in Via and Proxy-Status; must be unique among chained proxies.",
        default=FROM_CONFIG,
        defaultText="HOSTNAME:PORT of the first listening port",
        group=_LISTEN,
    ),
    Setting(
        "max-connections",
        Count(1),
        "Client connections served at once; more are refused with 503.",
        FROM_CONFIG,
        _LISTEN,
    ),
    Setting(
        "max-connections-per-client",
        Count(1),
        "Client connections from one address at once; more are refused with 503.",
        FROM_CONFIG,
        _LISTEN,
        defaultText="no limit per address, as in Squid; --max-connections still applies",
    ),
    # Clients.
    Setting(
        "idle-timeout",
        Seconds(),
        "Seconds an idle client connection is kept open.",
        FROM_CONFIG,
        _CLIENTS,
    ),
    Setting(
        "header-timeout",
        Seconds(),
        "Seconds a client has to send a complete request head (then 408).",
        FROM_CONFIG,
        _CLIENTS,
    ),
    Setting(
        "body-timeout",
        Seconds(),
        "Seconds a request body may stall (no bytes) before 408; also how long the "
        "origin may stop reading it (then 504).",
        FROM_CONFIG,
        _CLIENTS,
    ),
    Setting(
        "max-body",
        Size(zero=False),
        "Largest request body accepted (k, M, G); larger gets 413.",
        FROM_CONFIG,
        _CLIENTS,
        defaultText="no limit",
    ),
    Setting(
        "discard-body-max",
        Size(),
        "When a response comes before the request body is complete, read and drop at "
        "most this much of the rest to keep the connection (k, M, G); a longer rest "
        "closes it after a lingering close.",
        FROM_CONFIG,
        _CLIENTS,
    ),
    Setting(
        "linger-timeout",
        Seconds(),
        "Seconds a lingering close keeps reading and dropping what a client still sends "
        "after its last response, so that it reads the response instead of a reset.",
        FROM_CONFIG,
        _CLIENTS,
    ),
    Setting(
        "max-target-length", Count(1), "Longest request-target (then 414).", FROM_CONFIG, _CLIENTS
    ),
    Setting(
        "max-header-size",
        Count(1),
        "Largest request header section in bytes (then 431).",
        FROM_CONFIG,
        _CLIENTS,
    ),
    Setting(
        "max-header-count",
        Count(1),
        "Most request header fields (then 431).",
        FROM_CONFIG,
        _CLIENTS,
    ),
    # Upstream.
    Setting(
        "connect-timeout",
        Seconds(),
        "Seconds to connect to a destination (then 504).",
        FROM_CONFIG,
        _UPSTREAM,
    ),
    Setting(
        "response-timeout",
        Seconds(),
        "Seconds to wait for a response head once the request was sent (then 504).",
        FROM_CONFIG,
        _UPSTREAM,
    ),
    Setting(
        "response-body-timeout",
        Seconds(),
        "Seconds a response body may stall before both connections are aborted.",
        FROM_CONFIG,
        _UPSTREAM,
    ),
    Setting(
        "tunnel-idle-timeout",
        Seconds(),
        "Seconds a CONNECT or upgraded tunnel may carry no bytes before it is closed.",
        FROM_CONFIG,
        _UPSTREAM,
    ),
    Setting(
        "max-response-header-size",
        Count(1),
        "Largest response header section from an origin (then 502).",
        FROM_CONFIG,
        _UPSTREAM,
    ),
    Setting(
        "pool-min-idle-per-host",
        Count(0),
        "Idle upstream connections kept per destination at least; more while its "
        "recent peak concurrency needs them (0 disables reuse).",
        FROM_CONFIG,
        _UPSTREAM,
    ),
    Setting(
        "pool-idle-timeout",
        Seconds(),
        "Seconds an idle upstream connection is kept.",
        FROM_CONFIG,
        _UPSTREAM,
    ),
    Setting(
        "dns-cache-ttl",
        Seconds(zero=True),
        "Seconds a resolved name is reused (failures: 5 s at most; 0 disables the cache).",
        FROM_CONFIG,
        _UPSTREAM,
    ),
    Setting(
        "forwarded",
        Choice("off", "xff", "rfc7239"),
        "Tell the origin who the client is: off, xff (X-Forwarded-For) or rfc7239 (Forwarded).",
        FROM_CONFIG,
        _UPSTREAM,
    ),
    Setting(
        "upstream-proxy",
        Text("an http:// URL such as http://proxy.example:3128", _parentURL),
        "Send requests through this parent proxy: http://[user:password@]host:port "
        "(plain requests in absolute-form, tunnels with CONNECT).",
        None,
        _UPSTREAM,
        defaultText="connect directly",
        secret=True,
    ),
    Setting(
        "no-upstream-proxy-for",
        Repeated("host patterns", _hostPatternItem("no-upstream-proxy-for"), includes=True),
        "Go direct, not through --upstream-proxy, for destinations matching this "
        "pattern (repeatable; same patterns as --allow-host).",
        [],
        _UPSTREAM,
        defaultText="none: every destination through the parent",
    ),
    # Access rules.
    Setting(
        "allow",
        Repeated(
            "networks (10.0.0.0/8, fd00::/8, 192.0.2.7)", _networkItem("allow"), includes=True
        ),
        "Clients from this network may use the proxy (repeatable).  On the command line "
        "--allow and --deny are checked in the order given, first match wins; in a file, "
        "deny before allow.",
        [],
        _ACCESS,
        defaultText="loopback and private networks only",
    ),
    Setting(
        "deny",
        Repeated("networks (10.0.0.0/8, fd00::/8, 192.0.2.7)", _networkItem("deny"), includes=True),
        "Clients from this network may not use the proxy (repeatable).",
        [],
        _ACCESS,
        defaultText="none",
    ),
    Setting(
        "allow-host",
        Repeated(
            "host patterns (example.com, *.example.com, .example.com, re:REGEX)",
            _hostPatternItem("allow-host"),
            includes=True,
        ),
        "Only destinations matching a pattern are allowed (repeatable; exact host, "
        "*.example.com, .example.com, or re:REGEX).",
        [],
        _ACCESS,
        defaultText="any destination",
    ),
    Setting(
        "deny-host",
        Repeated(
            "host patterns (example.com, *.example.com, .example.com, re:REGEX)",
            _hostPatternItem("deny-host"),
            includes=True,
        ),
        "Destinations matching this pattern are refused (repeatable).",
        [],
        _ACCESS,
        defaultText="none",
    ),
    Setting(
        "connect-ports",
        Text("port numbers separated by commas (443,8443), or * for any", _connectPorts),
        "Ports CONNECT may reach: a list like 443,8443, or *.",
        "443",
        _ACCESS,
    ),
    Setting(
        "deny-private-destinations",
        Flag(),
        "Refuse destinations that resolve to loopback, private, link-local or other "
        "special-purpose addresses (checked on the address actually connected to).",
        False,
        _ACCESS,
    ),
    Setting(
        "auth-file",
        Path(),
        "Require proxy authentication against this htpasswd file (bcrypt, SHA-crypt, "
        "apr1, {SHA}; plain text refused); SIGHUP re-reads it.",
        None,
        _ACCESS,
        defaultText="no authentication",
    ),
    Setting(
        "auth-realm",
        Text("printable ASCII characters", _realm),
        "The realm of the Proxy-Authenticate challenge.",
        "twisted-proxy",
        _ACCESS,
    ),
    # Cache.
    Setting(
        "cache-size",
        Size(),
        "Memory for the HTTP cache (RFC 9111; k, M, G); 0 turns the cache off.",
        FROM_CONFIG,
        _CACHE,
    ),
    Setting(
        "cache-max-object",
        Size(),
        "Largest response body the cache stores (k, M, G).",
        FROM_CONFIG,
        _CACHE,
    ),
    Setting(
        "cache-dir",
        Directory(),
        "Keep the cache on disk in this directory instead of in memory (it survives "
        "restarts; one process per directory: workers use DIR/worker-N).",
        FROM_CONFIG,
        _CACHE,
        defaultText="the cache is in memory",
        restart=True,
    ),
    Setting(
        "cache-disk-size", Size(), "Disk space for --cache-dir (k, M, G).", FROM_CONFIG, _CACHE
    ),
    Setting(
        "cache-heuristic-max",
        Seconds(),
        "Longest heuristic freshness, in seconds, for responses with Last-Modified but no "
        "explicit lifetime (10% of their age, at most this).",
        FROM_CONFIG,
        _CACHE,
    ),
    Setting(
        "cache-collapse-timeout",
        Seconds(),
        "Seconds a request waits for an identical one in flight before it goes to the "
        "origin itself.",
        FROM_CONFIG,
        _CACHE,
    ),
    # Reverse proxy.
    Setting(
        "reverse",
        Text("an http:// URL such as http://127.0.0.1:8000", _reverseURL),
        "Reverse-proxy (accelerator) mode: send origin-form requests to this origin, "
        "http://host[:port]; the client's Host is kept.",
        None,
        _REVERSE,
        defaultText="off: a forward proxy",
    ),
    Setting(
        "reverse-host",
        Repeated("NAME=http://host[:port] mappings", _reverseHost),
        "Reverse-proxy mode for one site (repeatable): NAME=http://host[:port] sends "
        "origin-form requests whose Host is NAME to that origin.",
        [],
        _REVERSE,
        defaultText="none",
    ),
    Setting(
        "reverse-rewrite-host",
        Flag(),
        "In reverse-proxy mode, send the origin's own host:port as Host instead of the client's.",
        FROM_CONFIG,
        _REVERSE,
    ),
    # Records and logs.
    Setting(
        "history",
        Path(writable=True),
        "Write one JSON record per transaction to this file (JSON Lines, written within "
        "50 ms, and at every clean stop).",
        None,
        _RECORDS,
        defaultText="none",
    ),
    Setting(
        "history-rotate-size",
        Size(),
        "Also rotate the history file at this size (k, M, G), deleting the oldest beyond "
        "--history-keep; 0: never (rotate it with logrotate and SIGUSR1).",
        "0",
        _RECORDS,
    ),
    Setting(
        "history-keep",
        Count(1),
        "Rotated history files to keep with --history-rotate-size.",
        10,
        _RECORDS,
    ),
    Setting(
        "history-headers",
        Choice("redacted", "all"),
        "Header values in history and logs: redacted (Authorization, "
        "Proxy-Authorization, Cookie, Set-Cookie hidden) or all.",
        "redacted",
        _RECORDS,
    ),
    Setting(
        "access-log",
        Path(writable=True),
        "Write one access-log line per transaction to this file.",
        None,
        _RECORDS,
        defaultText="none",
    ),
    Setting(
        "access-log-format",
        Choice("squid", "common", "combined"),
        "Access log format: squid, common or combined.",
        "squid",
        _RECORDS,
    ),
    Setting(
        "log-level",
        Choice("debug", "info", "warn", "error"),
        "What the console (twistd's log) shows: debug, everything; info, each "
        "connection and request and what an operator should know; warn or error, "
        "problems only.",
        "info",
        _RECORDS,
    ),
    # Operations.
    Setting(
        "metrics",
        Endpoint("an endpoint such as 9100 or tcp:9100:interface=127.0.0.1", _metricsEndpoint),
        "Serve Prometheus metrics (/metrics), a status page (/) and a health check "
        "(/healthz) on this endpoint, e.g. tcp:9100:interface=127.0.0.1; a bare port "
        "listens on 127.0.0.1 only.",
        None,
        _OPERATIONS,
        defaultText="off",
        restart=True,
    ),
    Setting(
        "shutdown-timeout",
        Seconds(zero=True),
        "On SIGTERM or SIGINT, seconds to let transactions and tunnels in progress "
        "finish before they are cut (a second signal cuts them at once).",
        30.0,
        _OPERATIONS,
    ),
    Setting(
        "config",
        Path(),
        "Read settings from this TOML file (keys named as these options; the command "
        "line wins).  SIGHUP re-reads it.",
        None,
        _OPERATIONS,
        inFile=False,
        defaultText="none",
    ),
    Setting(
        "check-config",
        Flag(),
        "Check the settings (the file and the command line), print the effective "
        "configuration, and exit.",
        False,
        _OPERATIONS,
        inFile=False,
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

# ProxyConfig fields that are not one setting each.
_DERIVED_FIELDS = {
    "policy",
    "redactHistory",
    "parent",
    "parentBypass",
    "abortTimeout",
    "reverse",
    "reverseHosts",
}


def configFields() -> dict[str, dataclasses.Field[Any]]:
    """
    The L{ProxyConfig} fields set by a setting: setting name to field.
    """
    from ...proxy.config import ProxyConfig

    return {
        f.metadata["option"]: f
        for f in dataclasses.fields(ProxyConfig)
        if "option" in f.metadata and f.name not in _DERIVED_FIELDS
    }


def defaultOf(setting: Setting) -> Any:
    """
    The default value of C{setting}, as a setting value (sizes in bytes,
    durations in seconds).
    """
    if setting.default is FROM_CONFIG:
        if setting.name == "pseudonym":
            return None
        field = configFields()[setting.name]
        return field.default
    if isinstance(setting.default, list):
        return list(setting.default)
    if isinstance(setting.kind, (Size,)) and isinstance(setting.default, str):
        return setting.kind.fromText(setting.default)
    return setting.default
