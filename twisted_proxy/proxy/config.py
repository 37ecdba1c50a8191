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
from dataclasses import dataclass, field
from typing import Any

from .policy import HostPatterns, Policy
from .upstream import ParentProxy

__all__ = ["ProxyConfig", "ConfigError"]


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
    maxConnectionsPerClient: int | None = _option(
        "max-connections-per-client", None
    )
    maxTargetLength: int = _option("max-target-length", 8192)
    maxHeaderBytes: int = _option("max-header-size", 32768)
    maxHeaderCount: int = _option("max-header-count", 100)

    # The upstream side.
    connectTimeout: float = _option("connect-timeout", 10.0)
    responseTimeout: float = _option("response-timeout", 30.0)
    responseBodyTimeout: float | None = _option(
        "response-body-timeout", 60.0
    )
    tunnelIdleTimeout: float | None = _option(
        "tunnel-idle-timeout", 300.0
    )
    maxResponseHeaderBytes: int = _option(
        "max-response-header-size", 65536
    )
    poolMinIdlePerHost: int = _option("pool-min-idle-per-host", 8)
    poolIdleTimeout: float = _option("pool-idle-timeout", 60.0)
    dnsCacheTtl: float = _option("dns-cache-ttl", 60.0)
    forwarded: str = _option("forwarded", "off")
    parent: ParentProxy | None = _option("upstream-proxy", None)
    parentBypass: HostPatterns | None = _option(
        "no-upstream-proxy-for", None
    )

    # Access policy.
    policy: Policy = field(default_factory=Policy.fromOptions)

    # Records.
    redactHistory: bool = True

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("float", "float | None") and value is not None:
                # A DNS cache TTL of 0 turns the cache off.
                if not value > 0 and not (f.name == "dnsCacheTtl" and value == 0):
                    self._invalid(f.name, "must be a positive number of seconds")
            elif f.type in ("int", "int | None") and value is not None:
                if not isinstance(value, int) or value < 0:
                    self._invalid(f.name, "must be a whole number, 0 or more")
        for name in ("maxConnections", "maxTargetLength", "maxHeaderBytes", "maxHeaderCount",
                     "maxResponseHeaderBytes"):
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

    @property
    def pseudonymBytes(self) -> bytes:
        return self.pseudonym.encode("ascii")

    def replace(self, **changes: object) -> ProxyConfig:
        """
        A copy with C{changes} (checked like any new configuration).
        """
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
