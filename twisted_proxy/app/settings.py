# -*- test-case-name: tests.test_config_file -*-
"""
Every setting of C{twistd proxyserver}, in one table: L{SETTINGS}.

A setting has one name, which is both its command-line option
(C{--connect-timeout}) and its configuration-file key
(C{connect-timeout = 10}); one default; one help text; and one L{Kind}
that reads and checks a value, whether it was typed on the command line or
written in a TOML file.  The command-line L{Options
<twisted_proxy.app.options.Options>}, the configuration file
(L{readConfigFile}), C{--check-config} (L{formatSettings}) and the
repository's C{proxyserver.example.toml} (L{exampleFile}) are all made from
this table, so they cannot disagree.

Where a setting is a field of L{ProxyConfig
<twisted_proxy.proxy.config.ProxyConfig>} (its metadata names the option),
the default is that field's default: the configuration value keeps its own
defaults, and this table only says how to spell them.

L{resolve} merges the command line over the file over the defaults into
L{Settings}, a plain, JSON-able mapping that remembers where each value came
from, so that an error names the option or the file and key the user wrote.
L{build} turns L{Settings} into what the proxy runs with (L{Built}).

To add a setting: add a L{Setting} to L{SETTINGS} (and, if the proxy reads
it per request, a field to L{ProxyConfig} whose metadata names it).
C{tests/test_config_file.py} checks that the example file lists it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import __version__

if TYPE_CHECKING:
    from ..proxy.config import ProxyConfig
    from ..proxy.policy import HostPatterns, Policy
    from ..proxy.parent import ParentProxy
    from .listening import Listener

__all__ = [
    "SETTINGS",
    "SettingError",
    "Setting",
    "Settings",
    "Built",
    "build",
    "exampleFile",
    "formatSettings",
    "readConfigFile",
    "resolve",
]


class SettingError(Exception):
    """
    A setting the proxy cannot run with.  C{str()} is one line that names
    the option (or the file and key), the value, and what is expected.
    """


class Expected(ValueError):
    """
    A value is invalid; the message says what a valid one is ("a positive
    number of seconds"), and messages put "expected" before it.  (A plain
    L{ValueError} from a check describes the problem instead, and is shown
    as it is.)
    """


# The source of a value: COMMAND_LINE, DEFAULT, or a configuration file's
# path.
COMMAND_LINE = "command line"
DEFAULT = "default"


# -- kinds: how a value is read, checked and written ------------------------


class Kind:
    """
    How a setting's values are read from the command line (text) and from a
    TOML file (TOML values), checked, and written back as TOML.

    @cvar expected: what a valid value is, in words ("a positive number of
        seconds"); error messages end with it.
    @cvar repeatable: the option may be given more than once (a list).
    """

    expected = "a value"
    repeatable = False

    def fromText(self, text: str) -> Any:
        """
        @raise ValueError: if C{text} is not a valid value.
        """
        return self.check(text)

    def fromToml(self, value: Any) -> Any:
        """
        @raise ValueError: if C{value} is not a valid value (of the wrong
            TOML type, or out of range).
        """
        if not isinstance(value, str):
            raise Expected(self.expected)
        return self.fromText(value)

    def check(self, value: Any) -> Any:
        return value

    def toToml(self, value: Any) -> str:
        return _tomlString(str(value))


def _tomlString(text: str) -> str:
    # A TOML basic string is a JSON string (for what we write: no control
    # characters other than those JSON escapes the same way).
    import json

    return json.dumps(text, ensure_ascii=False)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Seconds(Kind):
    """
    A duration in seconds: positive, or with C{zero}, 0 or more.
    """


    def __init__(self, zero: bool = False) -> None:
        self.zero = zero
        self.expected = (
            "a number of seconds, 0 or more" if zero else "a positive number of seconds"
        )

    def fromText(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise Expected(self.expected) from None
        return self.check(value)

    def fromToml(self, value: Any) -> float:
        if not _number(value):
            raise Expected(self.expected)
        return self.check(float(value))

    def check(self, value: float) -> float:
        if not math.isfinite(value) or value < 0 or (value == 0 and not self.zero):
            raise Expected(self.expected)
        return value

    def toToml(self, value: float) -> str:
        return _formatNumber(value)


def _formatNumber(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Count(Kind):
    """
    A whole number, at least C{minimum}.
    """


    def __init__(self, minimum: int = 1) -> None:
        self.minimum = minimum
        self.expected = (
            "a whole number, 0 or more" if minimum == 0 else f"a whole number, at least {minimum}"
        )

    def fromText(self, text: str) -> int:
        if not re.fullmatch(r"\s*[+-]?\d+\s*", text):
            raise Expected(self.expected)
        return self.check(int(text))

    def fromToml(self, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise Expected(self.expected)
        return self.check(value)

    def check(self, value: int) -> int:
        if value < self.minimum:
            raise Expected(self.expected)
        return value

    def toToml(self, value: int) -> str:
        return str(value)


_SIZE_SUFFIXES = [(1 << 40, "T"), (1 << 30, "G"), (1 << 20, "M"), (1 << 10, "k")]


def formatSize(size: int) -> str:
    """
    C{size} in the largest unit that divides it: C{67108864} is C{"64M"}.
    """
    for multiplier, suffix in _SIZE_SUFFIXES:
        if size and size % multiplier == 0:
            return f"{size // multiplier}{suffix}"
    return str(size)


class Size(Kind):
    """
    A size in bytes: a number, optionally followed by k, M, G or T (powers
    of 1024).  In a file, an integer (bytes) or a string such as C{"64M"}.
    """


    def __init__(self, zero: bool = True) -> None:
        self.zero = zero
        self.expected = (
            "a size in bytes, optionally followed by k, M or G (e.g. 64M)"
            + ("" if zero else ", more than 0")
        )

    def fromText(self, text: str) -> int:
        from ..records.units import parseSize

        try:
            value = parseSize(text)
        except ValueError:
            raise Expected(self.expected) from None
        return self.check(value)

    def fromToml(self, value: Any) -> int:
        if isinstance(value, str):
            return self.fromText(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise Expected(self.expected)
        return self.check(value)

    def check(self, value: int) -> int:
        if value < 0 or (value == 0 and not self.zero):
            raise Expected(self.expected)
        return value

    def toToml(self, value: int) -> str:
        text = formatSize(value)
        return text if text.isdigit() else _tomlString(text)


class Choice(Kind):
    """
    One of a few words.
    """

    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.expected = "one of " + ", ".join(choices)

    def check(self, value: str) -> str:
        if value not in self.choices:
            raise Expected(self.expected)
        return value


class Text(Kind):
    """
    A string, checked by C{validate} (which raises L{ValueError} with what
    is expected, or returns the value to use).
    """

    def __init__(
        self,
        expected: str,
        validate: Callable[[str], Any] | None = None,
    ) -> None:
        self.expected = expected
        self._validate = validate

    def check(self, value: str) -> Any:
        if self._validate is not None:
            made = self._validate(value)
            if made is not None:
                return made
        return value


class Endpoint(Text):
    """
    A listening endpoint given as a string, or in a file also as a bare port
    number (C{metrics = 9100}).
    """

    def fromToml(self, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return super().fromToml(value)


class Path(Kind):
    """
    A file name.  In a configuration file, a relative name is relative to
    the file's directory (see L{_relativeTo}).

    @ivar writable: the proxy writes this file: its directory must exist
        and be writable, and it must not be a directory.
    """


    def __init__(self, writable: bool = False) -> None:
        self.writable = writable
        self.expected = "a file name"

    def check(self, value: str) -> str:
        if not value:
            raise Expected(self.expected)
        return value

    def checkFile(self, value: str) -> None:
        """
        Check the file the (absolute, or relative to the current directory)
        name C{value} names, once it is known where the name was written.

        @raise ValueError: if the proxy could not write it.
        """
        if self.writable:
            _checkWritable(value)


class Directory(Path):
    """
    A directory the proxy creates if need be and writes in: it, or the
    directory it would be made in, must exist and be writable.
    """

    def __init__(self) -> None:
        super().__init__(writable=True)
        self.expected = "a directory name"

    def checkFile(self, value: str) -> None:
        directory = os.path.abspath(value)
        parent = directory if os.path.isdir(directory) else os.path.dirname(directory)
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
            raise ValueError(
                f"cannot create or write it (is {parent} an existing, writable directory?)"
            )


def _checkWritable(path: str) -> None:
    """
    @raise ValueError: saying why the proxy could not write C{path}.
    """
    if os.path.isdir(path):
        raise ValueError("is a directory; expected a file name in a writable directory")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"cannot write there: the directory {directory} does not exist")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise ValueError("cannot write there: permission denied")
    elif not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write there: the directory {directory} is not writable")


class Flag(Kind):
    """
    On or off: a command-line flag without a value, C{true}/C{false} in a
    file.
    """

    expected = "true or false"

    def fromText(self, text: str) -> bool:
        return True

    def fromToml(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise Expected(self.expected)
        return value

    def toToml(self, value: bool) -> str:
        return "true" if value else "false"


class Workers(Kind):
    """
    How many worker processes: a whole number, at least 1, or C{auto} (one
    per CPU).
    """

    expected = "a whole number, at least 1, or auto (one per CPU)"

    def fromText(self, text: str) -> int | str:
        if text.strip() == "auto":
            return "auto"
        if not re.fullmatch(r"\s*\d+\s*", text) or int(text) < 1:
            raise Expected(self.expected)
        return int(text)

    def fromToml(self, value: Any) -> int | str:
        if value == "auto":
            return "auto"
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise Expected(self.expected)
        return value

    def toToml(self, value: int | str) -> str:
        return _tomlString(value) if value == "auto" else str(value)


class Repeated(Kind):
    """
    A list of strings: a repeatable option, an array of strings in a file
    (a single string is a list of one).  Each item is checked by
    C{validate}.  With C{includes}, an item C{@PATH} stands for the lines of
    the file PATH (one item a line; blank lines and C{#} comments ignored),
    read at start and on every reload.
    """

    repeatable = True

    def __init__(
        self,
        expected: str,
        validate: Callable[[str], Any] | None = None,
        includes: bool = False,
    ) -> None:
        self.expected = "a list of " + expected
        self.itemExpected = expected
        self._validate = validate
        self.includes = includes

    def fromText(self, text: str) -> list[str]:
        return [text]

    def fromToml(self, value: Any) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Expected(self.expected)
        return list(value)

    def checkItem(self, item: str) -> None:
        """
        @raise ValueError: saying what is wrong with C{item}.
        """
        if self._validate is not None:
            self._validate(item)

    def toToml(self, value: list[str]) -> str:
        return "[" + ", ".join(_tomlString(v) for v in value) + "]"


# -- validators that borrow the proxy's own parsers ---------------------------


def _stripOption(message: str) -> str:
    """
    The part of a proxy-layer error message after its C{--option 'value': }
    prefix: what is expected.
    """
    match = re.match(r"--[a-z0-9-]+ (?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\S+): ", message)
    return message[match.end():] if match else message


def _networkItem(action: str) -> Callable[[str], None]:
    def validate(item: str) -> None:
        from ..proxy.policy import ClientACL, ConfigurationError

        try:
            ClientACL([(action, item)])
        except ConfigurationError as e:
            raise ValueError(_stripOption(str(e))) from None

    return validate


def _hostPatternItem(option: str) -> Callable[[str], None]:
    def validate(item: str) -> None:
        from ..proxy.policy import ConfigurationError, HostPatterns

        try:
            HostPatterns(option, [item])
        except ConfigurationError as e:
            raise ValueError(_stripOption(str(e))) from None

    return validate


def _listenItem(item: str) -> None:
    from .listening import Listener

    Listener.parse(item)


def _connectPorts(text: str) -> None:
    from ..proxy.policy import ConfigurationError, parseConnectPorts

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
    from ..proxy.config import ReverseOrigin

    ReverseOrigin.fromURL(text)


def _reverseHost(item: str) -> None:
    from ..proxy.config import ReverseOrigin

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
    from ..proxy.config import ReverseOrigin

    pairs = []
    for item in items:
        name, _, url = item.partition("=")
        pairs.append((name.strip().lower().rstrip("."), ReverseOrigin.fromURL(url.strip())))
    return tuple(pairs)


def _metricsEndpoint(text: str) -> str:
    from .listening import Listener
    from .metrics import metricsEndpoint

    try:
        endpoint = metricsEndpoint(text)
        Listener.parse(endpoint)
    except ValueError as e:
        raise ValueError(
            f"not a valid endpoint ({e}); e.g. 9100 or tcp:9100:interface=127.0.0.1"
        ) from None
    return endpoint


def _parentURL(text: str) -> None:
    from ..proxy.parent import ParentProxy

    ParentProxy.fromURL(text)


# -- the table -----------------------------------------------------------------


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
    Setting("idle-timeout", Seconds(), "Seconds an idle client connection is kept open.",
            FROM_CONFIG, _CLIENTS),
    Setting("header-timeout", Seconds(),
            "Seconds a client has to send a complete request head (then 408).",
            FROM_CONFIG, _CLIENTS),
    Setting("body-timeout", Seconds(),
            "Seconds a request body may stall (no bytes) before 408; also how long the "
            "origin may stop reading it (then 504).", FROM_CONFIG, _CLIENTS),
    Setting("max-body", Size(zero=False),
            "Largest request body accepted (k, M, G); larger gets 413.", FROM_CONFIG,
            _CLIENTS, defaultText="no limit"),
    Setting("discard-body-max", Size(),
            "When a response comes before the request body is complete, read and drop at "
            "most this much of the rest to keep the connection (k, M, G); a longer rest "
            "closes it after a lingering close.", FROM_CONFIG, _CLIENTS),
    Setting("linger-timeout", Seconds(),
            "Seconds a lingering close keeps reading and dropping what a client still sends "
            "after its last response, so that it reads the response instead of a reset.",
            FROM_CONFIG, _CLIENTS),
    Setting("max-target-length", Count(1), "Longest request-target (then 414).",
            FROM_CONFIG, _CLIENTS),
    Setting("max-header-size", Count(1),
            "Largest request header section in bytes (then 431).", FROM_CONFIG, _CLIENTS),
    Setting("max-header-count", Count(1), "Most request header fields (then 431).",
            FROM_CONFIG, _CLIENTS),
    # Upstream.
    Setting("connect-timeout", Seconds(), "Seconds to connect to a destination (then 504).",
            FROM_CONFIG, _UPSTREAM),
    Setting("response-timeout", Seconds(),
            "Seconds to wait for a response head once the request was sent (then 504).",
            FROM_CONFIG, _UPSTREAM),
    Setting("response-body-timeout", Seconds(),
            "Seconds a response body may stall before both connections are aborted.",
            FROM_CONFIG, _UPSTREAM),
    Setting("tunnel-idle-timeout", Seconds(),
            "Seconds a CONNECT or upgraded tunnel may carry no bytes before it is closed.",
            FROM_CONFIG, _UPSTREAM),
    Setting("max-response-header-size", Count(1),
            "Largest response header section from an origin (then 502).", FROM_CONFIG,
            _UPSTREAM),
    Setting("pool-min-idle-per-host", Count(0),
            "Idle upstream connections kept per destination at least; more while its "
            "recent peak concurrency needs them (0 disables reuse).", FROM_CONFIG, _UPSTREAM),
    Setting("pool-idle-timeout", Seconds(), "Seconds an idle upstream connection is kept.",
            FROM_CONFIG, _UPSTREAM),
    Setting("dns-cache-ttl", Seconds(zero=True),
            "Seconds a resolved name is reused (failures: 5 s at most; 0 disables the "
            "cache).", FROM_CONFIG, _UPSTREAM),
    Setting("forwarded", Choice("off", "xff", "rfc7239"),
            "Tell the origin who the client is: off, xff (X-Forwarded-For) or rfc7239 "
            "(Forwarded).", FROM_CONFIG, _UPSTREAM),
    Setting("upstream-proxy",
            Text("an http:// URL such as http://proxy.example:3128", _parentURL),
            "Send requests through this parent proxy: http://[user:password@]host:port "
            "(plain requests in absolute-form, tunnels with CONNECT).", None,
            _UPSTREAM, defaultText="connect directly", secret=True),
    Setting("no-upstream-proxy-for",
            Repeated("host patterns", _hostPatternItem("no-upstream-proxy-for"),
                     includes=True),
            "Go direct, not through --upstream-proxy, for destinations matching this "
            "pattern (repeatable; same patterns as --allow-host).", [], _UPSTREAM,
            defaultText="none: every destination through the parent"),
    # Access rules.
    Setting("allow",
            Repeated("networks (10.0.0.0/8, fd00::/8, 192.0.2.7)", _networkItem("allow"), includes=True),
            "Clients from this network may use the proxy (repeatable).  On the command line "
            "--allow and --deny are checked in the order given, first match wins; in a file, "
            "deny before allow.", [], _ACCESS,
            defaultText="loopback and private networks only"),
    Setting("deny",
            Repeated("networks (10.0.0.0/8, fd00::/8, 192.0.2.7)", _networkItem("deny"), includes=True),
            "Clients from this network may not use the proxy (repeatable).", [], _ACCESS,
            defaultText="none"),
    Setting("allow-host",
            Repeated("host patterns (example.com, *.example.com, .example.com, re:REGEX)",
                     _hostPatternItem("allow-host"), includes=True),
            "Only destinations matching a pattern are allowed (repeatable; exact host, "
            "*.example.com, .example.com, or re:REGEX).", [], _ACCESS,
            defaultText="any destination"),
    Setting("deny-host",
            Repeated("host patterns (example.com, *.example.com, .example.com, re:REGEX)",
                     _hostPatternItem("deny-host"), includes=True),
            "Destinations matching this pattern are refused (repeatable).", [], _ACCESS,
            defaultText="none"),
    Setting("connect-ports",
            Text("port numbers separated by commas (443,8443), or * for any", _connectPorts),
            "Ports CONNECT may reach: a list like 443,8443, or *.", "443", _ACCESS),
    Setting("deny-private-destinations", Flag(),
            "Refuse destinations that resolve to loopback, private, link-local or other "
            "special-purpose addresses (checked on the address actually connected to).",
            False, _ACCESS),
    Setting("auth-file", Path(),
            "Require proxy authentication against this htpasswd file (bcrypt, SHA-crypt, "
            "apr1, {SHA}; plain text refused); SIGHUP re-reads it.", None, _ACCESS,
            defaultText="no authentication"),
    Setting("auth-realm", Text("printable ASCII characters", _realm),
            "The realm of the Proxy-Authenticate challenge.", "twisted-proxy", _ACCESS),
    # Cache.
    Setting("cache-size", Size(),
            "Memory for the HTTP cache (RFC 9111; k, M, G); 0 turns the cache off.",
            FROM_CONFIG, _CACHE),
    Setting("cache-max-object", Size(), "Largest response body the cache stores (k, M, G).",
            FROM_CONFIG, _CACHE),
    Setting("cache-dir", Directory(),
            "Keep the cache on disk in this directory instead of in memory (it survives "
            "restarts; one process per directory: workers use DIR/worker-N).", FROM_CONFIG,
            _CACHE, defaultText="the cache is in memory", restart=True),
    Setting("cache-disk-size", Size(), "Disk space for --cache-dir (k, M, G).", FROM_CONFIG,
            _CACHE),
    Setting("cache-heuristic-max", Seconds(),
            "Longest heuristic freshness, in seconds, for responses with Last-Modified but no "
            "explicit lifetime (10% of their age, at most this).", FROM_CONFIG, _CACHE),
    Setting("cache-collapse-timeout", Seconds(),
            "Seconds a request waits for an identical one in flight before it goes to the "
            "origin itself.", FROM_CONFIG, _CACHE),
    # Reverse proxy.
    Setting("reverse", Text("an http:// URL such as http://127.0.0.1:8000", _reverseURL),
            "Reverse-proxy (accelerator) mode: send origin-form requests to this origin, "
            "http://host[:port]; the client's Host is kept.", None, _REVERSE,
            defaultText="off: a forward proxy"),
    Setting("reverse-host",
            Repeated("NAME=http://host[:port] mappings", _reverseHost),
            "Reverse-proxy mode for one site (repeatable): NAME=http://host[:port] sends "
            "origin-form requests whose Host is NAME to that origin.", [], _REVERSE,
            defaultText="none"),
    Setting("reverse-rewrite-host", Flag(),
            "In reverse-proxy mode, send the origin's own host:port as Host instead of the "
            "client's.", FROM_CONFIG, _REVERSE),
    # Records and logs.
    Setting("history", Path(writable=True),
            "Write one JSON record per transaction to this file (JSON Lines, written within "
            "50 ms, and at every clean stop).", None, _RECORDS, defaultText="none"),
    Setting("history-rotate-size", Size(),
            "Also rotate the history file at this size (k, M, G), deleting the oldest beyond "
            "--history-keep; 0: never (rotate it with logrotate and SIGUSR1).", "0",
            _RECORDS),
    Setting("history-keep", Count(1),
            "Rotated history files to keep with --history-rotate-size.", 10, _RECORDS),
    Setting("history-headers", Choice("redacted", "all"),
            "Header values in history and logs: redacted (Authorization, "
            "Proxy-Authorization, Cookie, Set-Cookie hidden) or all.", "redacted", _RECORDS),
    Setting("access-log", Path(writable=True),
            "Write one access-log line per transaction to this file.", None, _RECORDS,
            defaultText="none"),
    Setting("access-log-format", Choice("squid", "common", "combined"),
            "Access log format: squid, common or combined.", "squid", _RECORDS),
    Setting("log-level", Choice("debug", "info", "warn", "error"),
            "What the console (twistd's log) shows: debug, everything; info, each "
            "connection and request and what an operator should know; warn or error, "
            "problems only.", "info", _RECORDS),
    # Operations.
    Setting("metrics",
            Endpoint("an endpoint such as 9100 or tcp:9100:interface=127.0.0.1",
                     _metricsEndpoint),
            "Serve Prometheus metrics (/metrics), a status page (/) and a health check "
            "(/healthz) on this endpoint, e.g. tcp:9100:interface=127.0.0.1; a bare port "
            "listens on 127.0.0.1 only.", None, _OPERATIONS, defaultText="off",
            restart=True),
    Setting("shutdown-timeout", Seconds(zero=True),
            "On SIGTERM or SIGINT, seconds to let transactions and tunnels in progress "
            "finish before they are cut (a second signal cuts them at once).", 30.0,
            _OPERATIONS),
    Setting("config", Path(),
            "Read settings from this TOML file (keys named as these options; the command "
            "line wins).  SIGHUP re-reads it.", None, _OPERATIONS, inFile=False,
            defaultText="none"),
    Setting("check-config", Flag(),
            "Check the settings (the file and the command line), print the effective "
            "configuration, and exit.", False, _OPERATIONS, inFile=False),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

# ProxyConfig fields that are not one setting each.
_DERIVED_FIELDS = {
    "policy", "redactHistory", "parent", "parentBypass", "abortTimeout", "reverse", "reverseHosts",
}


def _configFields() -> dict[str, dataclasses.Field[Any]]:
    """
    The L{ProxyConfig} fields set by a setting: setting name to field.
    """
    from ..proxy.config import ProxyConfig

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
        field = _configFields()[setting.name]
        return field.default
    if isinstance(setting.default, list):
        return list(setting.default)
    if isinstance(setting.kind, (Size,)) and isinstance(setting.default, str):
        return setting.kind.fromText(setting.default)
    return setting.default


# -- where a value came from, in messages -----------------------------------


def _valueText(setting: Setting, value: Any, source: str) -> str:
    if source in (COMMAND_LINE, DEFAULT):
        if isinstance(value, list):
            return " ".join(str(v) for v in value)
        return "" if isinstance(setting.kind, Flag) else str(value)
    if isinstance(value, str):
        return _tomlString(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_valueText(setting, v, source) for v in value) + "]"
    return str(value)


def _where(setting: Setting, value: Any, source: str, item: bool = False) -> str:
    """
    How the user wrote C{value}: C{--connect-timeout -5}, or
    C{proxy.toml: connect-timeout = -5} (for one item of a list in a file,
    C{proxy.toml: allow-host item "x y"}).
    """
    text = _valueText(setting, setting.hidden(value), source)
    if source in (COMMAND_LINE, DEFAULT):
        return f"--{setting.name} {text}".rstrip()
    if item:
        return f"{source}: {setting.name} item {text}"
    return f"{source}: {setting.name} = {text}"


def _error(
    setting: Setting, value: Any, source: str, problem: ValueError | str, item: bool = False
) -> SettingError:
    """
    The one-line error for C{value} of C{setting} from C{source}:
    C{--connect-timeout -5: expected a positive number of seconds}.
    """
    text = str(problem)
    if isinstance(problem, Expected):
        text = "expected " + text
    return SettingError(f"{_where(setting, value, source, item)}: {text}")


# -- the configuration file ----------------------------------------------------


def readConfigFile(path: str) -> dict[str, Any]:
    """
    Read a TOML configuration file: every key must be a setting, every value
    valid for it.  Relative file names in it are made relative to the
    file's directory.

    @return: setting name to value.
    @raise SettingError: naming the file, the key and what is expected.
    """
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SettingError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise SettingError(f"--config {path}: is a directory; expected a TOML file") from None
    except OSError as e:
        raise SettingError(f"--config {path}: cannot read it ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise SettingError(f"{path}: not valid TOML: not UTF-8 text") from None
    values: dict[str, Any] = {}
    fileKeys = [s.name for s in SETTINGS if s.inFile]
    for key, raw in data.items():
        setting = BY_NAME.get(key)
        if setting is None or not setting.inFile:
            if setting is not None:
                hint = " (it is a command-line option only)"
            elif isinstance(raw, dict):
                hint = " (write every key at the top level, without [tables])"
            else:
                close = difflib.get_close_matches(key, fileKeys, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
            raise SettingError(f"{path}: unknown key {key!r}{hint}")
        try:
            value = setting.kind.fromToml(raw)
            if isinstance(setting.kind, Path):
                value = _relativeTo(path, value)
        except ValueError as e:
            raise _error(setting, raw, path, e) from None
        values[key] = value
    return values


def _relativeTo(configPath: str, name: str) -> str:
    """
    C{name}, written in the file C{configPath}: relative to its directory.
    """
    name = os.path.expanduser(name)
    if os.path.isabs(name):
        return name
    return os.path.join(os.path.dirname(os.path.abspath(configPath)), name)


def _readInclude(setting: Setting, path: str, citedBy: str) -> list[str]:
    """
    The items of an include file (C{@PATH}): one a line, blank lines and
    C{#} comments ignored, each checked.

    @param citedBy: how the include was written, for messages.
    @raise SettingError: naming the file and line.
    """
    kind = setting.kind
    assert isinstance(kind, Repeated)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise SettingError(f"{citedBy}: cannot read {path} ({e.strerror})") from None
    except UnicodeDecodeError:
        raise SettingError(f"{citedBy}: {path} is not UTF-8 text") from None
    items = []
    for number, line in enumerate(lines, 1):
        item = re.sub(r"(^|\s)#.*$", "", line).strip()
        if not item:
            continue
        if item.startswith("@"):
            raise SettingError(f"{path} line {number}: an included file cannot include another")
        try:
            kind.checkItem(item)
        except ValueError as e:
            text = ("expected " if isinstance(e, Expected) else "") + str(e)
            raise SettingError(f"{path} line {number}: {setting.name} {item!r}: {text}") from None
        items.append(item)
    return items


# -- resolution --------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """
    The effective settings: every setting's value (JSON-able: numbers,
    strings, lists, booleans, L{None}), where it came from, and the
    configuration file they were read with.

    @ivar values: setting name to value, for every setting, as written
        (a list may hold C{@PATH} includes).
    @ivar sources: setting name to L{COMMAND_LINE}, L{DEFAULT} or the
        configuration file's path.
    @ivar expanded: repeatable setting name to its items with every
        C{@PATH} include replaced by the file's lines.
    @ivar clientRules: the client network rules, C{("allow" | "deny",
        network)}, in the order they are checked: on the command line, the
        order given (first match wins); from a file, deny before allow.
    @ivar configFile: the C{--config} file, or L{None}.
    """

    values: Mapping[str, Any]
    sources: Mapping[str, str]
    expanded: Mapping[str, list[str]]
    clientRules: list[tuple[str, str]]
    configFile: str | None = None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def itemsOf(self, name: str) -> list[str]:
        """
        The items of repeatable setting C{name}, includes expanded.
        """
        return self.expanded[name]

    def where(self, name: str) -> str:
        """
        How the user wrote setting C{name}, for messages.
        """
        return _where(BY_NAME[name], self.values[name], self.sources[name])

    def error(self, name: str, problem: ValueError | str, value: Any = None) -> SettingError:
        """
        A L{SettingError} about setting C{name} (or one C{value} of it).
        """
        setting = BY_NAME[name]
        item = value is not None and setting.kind.repeatable
        return _error(
            setting,
            self.values[name] if value is None else value,
            self.sources[name],
            problem,
            item,
        )

    def toJSON(self) -> dict[str, Any]:
        """
        The settings as JSON-able data (for a worker process).
        """
        return {
            "values": dict(self.values),
            "sources": dict(self.sources),
            "expanded": dict(self.expanded),
            "clientRules": [list(rule) for rule in self.clientRules],
            "configFile": self.configFile,
        }

    @classmethod
    def fromJSON(cls, data: Mapping[str, Any]) -> Settings:
        """
        The settings L{toJSON} described, includes already expanded.
        """
        return cls(
            dict(data["values"]),
            dict(data["sources"]),
            {k: list(v) for k, v in data["expanded"].items()},
            [(action, network) for action, network in data["clientRules"]],
            data["configFile"],
        )

    def changed(self, other: Settings) -> list[str]:
        """
        The names of the settings whose effective value differs in
        C{other}.
        """
        names = []
        for setting in SETTINGS:
            name = setting.name
            if not setting.inFile:
                continue
            if setting.kind.repeatable:
                if self.expanded[name] != other.expanded[name]:
                    names.append(name)
            elif self.values[name] != other.values[name]:
                names.append(name)
        if self.clientRules != other.clientRules and "allow" not in names:
            names.append("allow")
        return names


def resolve(
    commandLine: Mapping[str, Any],
    configFile: str | None = None,
    clientOrder: Iterable[tuple[str, str]] = (),
) -> Settings:
    """
    The effective settings: each setting from the command line if given
    there, else from the configuration file if it has the key, else the
    default.  Repeatable settings given on the command line replace the
    file's list; C{--allow} and C{--deny} replace both of the file's.

    @param commandLine: setting name to value, already read by the setting's
        kind (L{Kind.fromText}), for the options given on the command line
        only.
    @param configFile: the C{--config} file, or L{None}.
    @param clientOrder: C{--allow} and C{--deny} values in command-line
        order, as C{("allow" | "deny", value)}.
    @raise SettingError: naming the option, or the file and key.
    """
    fromFile = readConfigFile(configFile) if configFile is not None else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        name = setting.name
        if name in commandLine:
            values[name], sources[name] = commandLine[name], COMMAND_LINE
        elif name in fromFile:
            assert configFile is not None
            values[name], sources[name] = fromFile[name], configFile
        else:
            values[name], sources[name] = defaultOf(setting), DEFAULT
    clientOrder = list(clientOrder)
    if clientOrder or "allow" in commandLine or "deny" in commandLine:
        for name in ("allow", "deny"):
            if name not in commandLine:
                values[name], sources[name] = [], COMMAND_LINE
    if values["workers"] == "auto":
        values["workers"] = os.cpu_count() or 1

    def expand(name: str, item: str) -> list[str]:
        setting = BY_NAME[name]
        kind = setting.kind
        assert isinstance(kind, Repeated)
        source = sources[name]
        if kind.includes and item.startswith("@"):
            path = item[1:]
            if source not in (COMMAND_LINE, DEFAULT):
                path = _relativeTo(source, path)
            return _readInclude(setting, path, _where(setting, item, source, item=True))
        try:
            kind.checkItem(item)
        except ValueError as e:
            raise _error(setting, item, source, e, item=True) from None
        return [item]

    expanded: dict[str, list[str]] = {}
    for setting in SETTINGS:
        if setting.kind.repeatable:
            name = setting.name
            expanded[name] = [x for item in values[name] for x in expand(name, item)]
    if clientOrder:
        rules = [(action, x) for action, item in clientOrder for x in expand(action, item)]
    else:
        rules = [("deny", x) for x in expanded["deny"]] + [
            ("allow", x) for x in expanded["allow"]
        ]
    for setting in SETTINGS:
        name = setting.name
        value = values[name]
        if isinstance(setting.kind, Path) and value is not None:
            try:
                setting.kind.checkFile(value)
            except ValueError as e:
                raise _error(setting, value, sources[name], e) from None
    return Settings(values, sources, expanded, rules, configFile)


@dataclass(frozen=True)
class CommandLine:
    """
    The options given on the command line, kept to read the settings
    again (SIGHUP): the command line over the (re-read) file over the
    defaults.

    @ivar values: setting name to value, as L{resolve} takes them.
    @ivar clientOrder: C{--allow} and C{--deny} in the order given.
    """

    values: Mapping[str, Any]
    clientOrder: tuple[tuple[str, str], ...] = ()

    def read(self) -> Built:
        """
        @raise SettingError: if the settings are now invalid.
        """
        return build(resolve(self.values, self.values.get("config"), self.clientOrder))


# -- what the proxy runs with ------------------------------------------------


@dataclass
class Built:
    """
    What L{Settings} make: the values the proxy's parts are built from.

    @ivar settings: the settings these were built from.
    @ivar config: the L{ProxyConfig}.
    @ivar listeners: one L{Listener} per listening socket (a bare port
        makes two), not yet bound.
    """

    settings: Settings
    config: ProxyConfig
    listeners: list[Listener]

    @property
    def policy(self) -> Policy:
        return self.config.policy

    @property
    def parent(self) -> ParentProxy | None:
        return self.config.parent

    @property
    def parentBypass(self) -> HostPatterns | None:
        return self.config.parentBypass


def build(settings: Settings) -> Built:
    """
    Build what the proxy runs with from C{settings}: the L{ProxyConfig}
    (reading the htpasswd file) and the listeners (parsed, not bound).

    @raise SettingError: naming the option, or the file and key.
    """
    from ..proxy.config import ConfigError, ProxyConfig, ReverseOrigin
    from ..proxy.parent import ParentProxy
    from ..proxy.policy import ConfigurationError, HostPatterns, HtpasswdError, Policy
    from .listening import Listener

    listeners: list[Listener] = []
    for description in settings.itemsOf("listen"):
        try:
            listeners.extend(Listener.parse(description))
        except ValueError as e:
            raise settings.error("listen", e, description) from None
    if not listeners:
        raise settings.error("listen", Expected("at least one endpoint"))
    try:
        policy = Policy.fromOptions(
            clientRules=settings.clientRules,
            authFile=settings["auth-file"],
            realm=settings["auth-realm"],
            allowHosts=settings.itemsOf("allow-host"),
            denyHosts=settings.itemsOf("deny-host"),
            connectPorts=settings["connect-ports"],
            denyPrivateDestinations=bool(settings["deny-private-destinations"]),
        )
    except HtpasswdError as e:
        # "/etc/proxy/htpasswd, line 3: ..." names the file already.
        source = settings.sources["auth-file"]
        where = "--auth-file" if source in (COMMAND_LINE, DEFAULT) else f"{source}: auth-file ="
        raise SettingError(f"{where} {e}") from None
    except ConfigurationError as e:
        raise _policyError(settings, str(e)) from None
    bypass = HostPatterns("no-upstream-proxy-for", settings.itemsOf("no-upstream-proxy-for"))
    parent = None
    if settings["upstream-proxy"] is not None:
        try:
            parent = ParentProxy.fromURL(settings["upstream-proxy"])
        except ValueError as e:
            raise settings.error("upstream-proxy", e) from None
    pseudonym = settings["pseudonym"]
    if pseudonym is None:
        pseudonym = "{}:{}".format(_hostname(), _firstPort(listeners))
    fields = {
        field.name: settings[name] for name, field in _configFields().items()
        if name != "pseudonym"
    }
    reverse = None
    if settings["reverse"] is not None:
        try:
            reverse = ReverseOrigin.fromURL(settings["reverse"])
        except ValueError as e:
            raise settings.error("reverse", e) from None
    try:
        config = ProxyConfig(
            pseudonym=pseudonym,
            parent=parent,
            parentBypass=bypass,
            policy=policy,
            redactHistory=settings["history-headers"] != "all",
            reverse=reverse,
            reverseHosts=reverseHosts(settings.itemsOf("reverse-host")),
            **fields,
        )
    except ConfigError as e:
        name = e.option.lstrip("-")
        if name in BY_NAME:
            raise settings.error(name, e.expected, e.value) from None
        raise SettingError(str(e)) from None
    return Built(settings, config, listeners)


def _policyError(settings: Settings, message: str) -> SettingError:
    """
    A policy error (which names a command-line option) said the way the
    user wrote the setting.
    """
    match = re.match(r"--([a-z0-9-]+) ", message)
    if match and match.group(1) in BY_NAME:
        name = match.group(1)
        source = settings.sources[name]
        if source not in (COMMAND_LINE, DEFAULT):
            return SettingError(f"{source}: {name} {message[match.end():]}")
        return SettingError(message)
    return SettingError(message)


def _hostname() -> str:
    return socket.gethostname()


def _firstPort(listeners: Iterable[Listener]) -> str:
    for listener in listeners:
        if listener.port is not None:
            return str(listener.port)
    return "0"


# -- writing settings back ---------------------------------------------------


def formatSettings(built: Built) -> str:
    """
    The effective configuration as a TOML file that would reproduce it,
    each value not a default marked with where it came from.
    """
    settings = built.settings
    lines = [
        "# The effective configuration of twisted-proxy {}, from {}.".format(
            __version__,
            f"{settings.configFile} and the command line" if settings.configFile
            else "the command line and the defaults",
        ),
    ]
    group = None
    for setting in SETTINGS:
        if not setting.inFile:
            continue
        if setting.group != group:
            group = setting.group
            lines += ["", f"# {group}"]
        name = setting.name
        value = settings.values[name]
        source = settings.sources[name]
        notes = []
        if source == COMMAND_LINE:
            notes.append("from the command line")
        elif source != DEFAULT:
            notes.append("from the file")
        if setting.kind.repeatable and settings.expanded[name] != value:
            notes.append("{} items with the included files".format(len(settings.expanded[name])))
        if name == "pseudonym" and value is None:
            value = built.config.pseudonym
            notes.append("default: " + (setting.defaultText or ""))
        if name == "listen":
            notes.append(
                "listening on " + ", ".join(listener.describe() for listener in built.listeners)
            )
        elif value == [] and setting.defaultText:
            notes.append("empty: " + setting.defaultText)
        if setting.secret and value is not None and setting.shown(value) != setting.kind.toToml(value):
            notes.append("password hidden")
        note = ("  # " + "; ".join(notes)) if notes else ""
        if value is None:
            lines.append(f"# {name} is not set: {setting.defaultText or 'none'}{note}")
        else:
            lines.append(f"{name} = {setting.shown(value)}{note}")
    return "\n".join(lines) + "\n"


def exampleFile() -> str:
    """
    The text of C{proxyserver.example.toml}: every key, with its help and
    its default.
    """
    import textwrap

    out = [
        "# twisted-proxy configuration: twistd -n proxyserver --config proxyserver.toml",
        "#",
        "# Every key is a command-line option of the same name (twistd proxyserver --help);",
        "# an option given on the command line wins over the file.  Relative file names are",
        "# relative to this file's directory.  SIGHUP re-reads this file (and the auth file)",
        "# and applies every change to new requests, without dropping a connection, except",
        "# {} (they take a restart); an invalid file is refused with".format(
            ", ".join(s.name for s in SETTINGS if s.restart and s.inFile)
        ),
        "# the reason logged.  Check a file with",
        "#     twistd -n proxyserver --check-config --config proxyserver.toml",
        "#",
        "# Lists of networks and host patterns may name files of them: an item \"@PATH\"",
        "# stands for the lines of PATH (one item a line, # comments), as Squid's ACL files.",
        "#",
        "# Each key below is shown with its default value, commented out.",
    ]
    group = None
    for setting in SETTINGS:
        if not setting.inFile:
            continue
        if setting.group != group:
            group = setting.group
            out += ["", "", "# " + "-" * 4 + " " + group + " " + "-" * (70 - len(group))]
        out.append("")
        out += ["# " + line for line in textwrap.wrap(setting.help, 86, break_on_hyphens=False)]
        value = defaultOf(setting)
        if setting.defaultText is not None and (value is None or value == []):
            out.append(f"# Default: {'not set' if value is None else 'empty'} "
                       f"({setting.defaultText}).  For example:")
            out.append(f"#{setting.name} = {_exampleValue(setting)}")
        else:
            if setting.defaultText is not None:
                out.append(f"# Default: {setting.defaultText}.")
            out.append(f"#{setting.name} = {setting.kind.toToml(value)}")
    return "\n".join(out) + "\n"


_EXAMPLES = {
    "pseudonym": '"proxy1.example.net:8080"',
    "max-connections-per-client": "256",
    "max-body": '"100M"',
    "upstream-proxy": '"http://parent.example.net:3128"',
    "no-upstream-proxy-for": '[".internal.example.net"]',
    "allow": '["10.0.0.0/8", "2001:db8::/32", "@/etc/twisted-proxy/clients.txt"]',
    "deny": '["10.66.0.0/16"]',
    "allow-host": '["*.example.com", "@/etc/twisted-proxy/allowed-hosts.txt"]',
    "deny-host": '["ads.example.net", "re:^tracker[0-9]+\\\\.example\\\\.org$"]',
    "auth-file": '"/etc/twisted-proxy/htpasswd"',
    "history": '"/var/log/twisted-proxy/history.jsonl"',
    "access-log": '"/var/log/twisted-proxy/access.log"',
    "cache-dir": '"/var/cache/twisted-proxy"',
    "reverse": '"http://127.0.0.1:8000"',
    "reverse-host": '["www.example.com=http://127.0.0.1:8000"]',
    "metrics": '"tcp:9100:interface=127.0.0.1"',
}


def _exampleValue(setting: Setting) -> str:
    if setting.name in _EXAMPLES:
        return _EXAMPLES[setting.name]
    return setting.kind.toToml(defaultOf(setting))
