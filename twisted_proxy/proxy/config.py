# -*- test-case-name: tests.test_config -*-
"""
L{ProxyConfig}: everything the proxy is told, as one frozen value.

It is built once (from the command line today, from a configuration file
too later), checked once, in L{ProxyConfig.__post_init__}, and handed to
the factory, which reads it by name.  Nothing sets a setting on the
factory from outside; a new configuration is a new value.

Each field that a user sets has the name of its command-line option in its
metadata (C{option}), so an invalid value is reported the way the user
spelled it: C{--connect-timeout -5: must be a positive number of seconds}.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..http.errors import ProxyError
from ..http.target import parseAuthority
from .cache import CacheConfig, DiskStore, HTTPCache, MemoryStore, Store
from .parent import ParentProxy
from .policy import HostPatterns, Policy

__all__ = ["ConfigError", "ProxyConfig", "ReverseOrigin"]


class ReverseOrigin:
    """
    An origin a reverse proxy serves: C{http://host[:port]}.

    @ivar host: its host name or address.
    @ivar port: its port.
    @ivar authority: C{host[:port]} as sent in C{Host}.
    """

    __slots__ = ("host", "port", "authority")

    def __init__(self, host: str, port: int, authority: bytes) -> None:
        self.host = host
        self.port = port
        self.authority = authority

    @classmethod
    def fromURL(cls, url: str) -> ReverseOrigin:
        """
        Parse C{http://host[:port]} (a trailing C{/} allowed).

        @raise ValueError: with a message saying what is wrong.
        """
        if not url.lower().startswith("http://"):
            raise ValueError("must be an http:// URL, e.g. http://127.0.0.1:8000")
        rest = url[len("http://") :].rstrip("/")
        if "/" in rest or "?" in rest or "#" in rest:
            raise ValueError("must be an origin without a path, e.g. http://127.0.0.1:8000")
        try:
            host, port, authority = parseAuthority(rest.encode("ascii"), 80)
        except (ProxyError, UnicodeEncodeError) as e:
            raise ValueError("bad origin {!r}: {}".format(rest, e)) from None
        return cls(host, port, authority)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReverseOrigin):
            return NotImplemented
        return (self.host, self.port) == (other.host, other.port)

    def __hash__(self) -> int:
        return hash((self.host, self.port))

    def __repr__(self) -> str:
        return "http://" + self.authority.decode("ascii")


class ConfigError(ValueError):
    """
    A setting has a value the proxy cannot run with.

    @ivar option: the option's name as the user spells it (C{"--max-body"}).
    @ivar value: the value given.
    @ivar expected: what would be accepted, in words.
    """

    def __init__(self, option: str, value: object, expected: str) -> None:
        super().__init__("{} {}: {}".format(option, value, expected))
        self.option = option
        self.value = value
        self.expected = expected


def _option(name: str, default: Any) -> Any:
    """
    A field set by the command-line option C{--name}.
    """
    return field(default=default, metadata={"option": name})


@dataclass(frozen=True)
class ProxyConfig:
    """
    The proxy's settings.  Durations are in seconds, sizes in bytes; a
    timeout of L{None} means no timeout, a limit of L{None} no limit.
    """

    # Who we are.
    pseudonym: str = _option("pseudonym", "twisted-proxy")

    # The client side.
    idleTimeout: float = _option("idle-timeout", 60.0)
    headerTimeout: float = _option("header-timeout", 10.0)
    bodyTimeout: float | None = _option("body-timeout", 60.0)
    abortTimeout: float = 15.0
    maxBody: int | None = _option("max-body", None)
    discardBodyMax: int = _option("discard-body-max", 64 << 20)
    lingerTimeout: float = _option("linger-timeout", 2.0)
    maxConnections: int = _option("max-connections", 4096)
    maxConnectionsPerClient: int | None = _option("max-connections-per-client", None)
    maxTargetLength: int = _option("max-target-length", 8192)
    maxHeaderBytes: int = _option("max-header-size", 32768)
    maxHeaderCount: int = _option("max-header-count", 100)

    # The upstream side.
    connectTimeout: float = _option("connect-timeout", 10.0)
    responseTimeout: float = _option("response-timeout", 30.0)
    responseBodyTimeout: float | None = _option("response-body-timeout", 60.0)
    tunnelIdleTimeout: float | None = _option("tunnel-idle-timeout", 300.0)
    maxResponseHeaderBytes: int = _option("max-response-header-size", 65536)
    poolMinIdlePerHost: int = _option("pool-min-idle-per-host", 8)
    poolIdleTimeout: float = _option("pool-idle-timeout", 60.0)
    dnsCacheTtl: float = _option("dns-cache-ttl", 60.0)
    forwarded: str = _option("forwarded", "off")
    parent: ParentProxy | None = _option("upstream-proxy", None)
    parentBypass: HostPatterns | None = _option("no-upstream-proxy-for", None)

    # Access policy.
    policy: Policy = field(default_factory=Policy.fromOptions)

    # The cache (RFC 9111): in memory, or on disk with cacheDir.
    cacheSize: int = _option("cache-size", 64 << 20)
    cacheMaxObject: int = _option("cache-max-object", 8 << 20)
    cacheDir: str | None = _option("cache-dir", None)
    cacheDiskSize: int = _option("cache-disk-size", 1 << 30)
    cacheHeuristicMax: float = _option("cache-heuristic-max", 86400.0)
    cacheCollapseTimeout: float = _option("cache-collapse-timeout", 10.0)

    # Reverse-proxy (accelerator) mode: origin-form requests go to these
    # origins, by Host (reverseHosts) or all to one (reverse).
    reverse: ReverseOrigin | None = _option("reverse", None)
    reverseHosts: tuple[tuple[str, ReverseOrigin], ...] = _option("reverse-host", ())
    reverseRewriteHost: bool = _option("reverse-rewrite-host", False)

    # Records.
    redactHistory: bool = True

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("float", "float | None") and value is not None:
                if f.name == "dnsCacheTtl":
                    if not value >= 0:
                        self._invalid(f.name, "must be a number of seconds, 0 or more")
                elif not value > 0:
                    self._invalid(f.name, "must be a positive number of seconds")
            elif f.type in ("int", "int | None") and value is not None:
                if not isinstance(value, int) or value < 0:
                    self._invalid(f.name, "must be a whole number, 0 or more")
        for name in (
            "maxConnections",
            "maxTargetLength",
            "maxHeaderBytes",
            "maxHeaderCount",
            "maxResponseHeaderBytes",
        ):
            if getattr(self, name) < 1:
                self._invalid(name, "must be at least 1")
        if self.maxConnectionsPerClient is not None and self.maxConnectionsPerClient < 1:
            self._invalid("maxConnectionsPerClient", "must be at least 1 (omit it for no limit)")
        if self.forwarded not in ("off", "xff", "rfc7239"):
            self._invalid("forwarded", "must be one of off, xff, rfc7239")
        if not self.pseudonym or not all(c.isalnum() or c in "-._:~" for c in self.pseudonym):
            self._invalid("pseudonym", "may hold letters, digits and - . _ : ~ only")

    def _invalid(self, name: str, expected: str) -> None:
        option = next(f for f in dataclasses.fields(self) if f.name == name).metadata.get(
            "option", name
        )
        raise ConfigError("--" + option, getattr(self, name), expected)

    def newCache(self, now: Callable[[], float]) -> HTTPCache | None:
        """
        The cache these settings describe (on disk with C{cacheDir}, whose
        index the caller rebuilds; else in memory), or L{None} when its size
        is 0.

        @param now: the clock (POSIX seconds).
        @raise CacheDirectoryError: if the cache directory is unusable.
        """
        if self.cacheDir is not None:
            if self.cacheDiskSize <= 0:
                return None
            store: Store = DiskStore(self.cacheDir, self.cacheDiskSize, self.cacheMaxObject)
        elif self.cacheSize <= 0:
            return None
        else:
            store = MemoryStore(self.cacheSize, self.cacheMaxObject)
        return HTTPCache(
            store,
            now,
            CacheConfig(
                name=self.pseudonym,
                heuristicMax=self.cacheHeuristicMax,
                collapseTimeout=self.cacheCollapseTimeout,
            ),
        )

    @property
    def reversing(self) -> bool:
        """
        Whether the proxy is a reverse proxy (an accelerator for origins).
        """
        return self.reverse is not None or bool(self.reverseHosts)

    def replace(self, **changes: Any) -> ProxyConfig:
        """
        A copy with C{changes} (checked like any new configuration).
        """
        return dataclasses.replace(self, **changes)
