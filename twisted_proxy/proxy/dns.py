# -*- test-case-name: tests.test_upstream -*-
"""
Reaching a destination by name: the endpoint factory the pool connects
with (L{hostnameEndpointFactory}: IP literals directly, names through
L{HostnameEndpoint}), and L{CachingResolver}, which remembers answers.

DNS failures are tested by injecting an endpoint factory or a resolver,
never by resolving a real name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IReactorPluggableNameResolver,
    IReactorTCP,
    IReactorTime,
    IResolutionReceiver,
    IStreamClientEndpoint,
)
from zope.interface import implementer

__all__ = ["CachingResolver", "EndpointFactory", "hostnameEndpointFactory"]

EndpointFactory = Callable[[str, int], IStreamClientEndpoint]

# A cache key: (lower-cased name, transport semantics, address types asked for).
_Key = tuple[str, str, frozenset[type[IAddress]] | None]
# A remembered answer: the address class and host of each address.
_Answer = list[tuple[type[IPv4Address] | type[IPv6Address], str]]


def hostnameEndpointFactory(
    reactor: object, connectTimeout: float, resolver: IHostnameResolver | None = None
) -> EndpointFactory:
    """
    The default endpoint factory: L{HostnameEndpoint} (dual stack, happy
    eyeballs, connect timeout), resolving names with C{resolver} (e.g. a
    L{CachingResolver}) instead of the reactor's own resolver if given.
    """
    resolving = reactor if resolver is None else _ResolvingReactor(reactor, resolver)

    def factory(host: str, port: int) -> IStreamClientEndpoint:
        # An IP literal needs neither a lookup nor happy eyeballs (whose
        # attempt delay made a refused connection take 0.3 s to report).
        if isIPAddress(host):
            return TCP4ClientEndpoint(reactor, host, port, timeout=connectTimeout)
        if isIPv6Address(host):
            return TCP6ClientEndpoint(reactor, host, port, timeout=connectTimeout)
        return HostnameEndpoint(resolving, host, port, timeout=connectTimeout)

    return factory


@implementer(IReactorTCP, IReactorTime, IReactorPluggableNameResolver)
class _ResolvingReactor:
    """
    The reactor, with another name resolver: what L{HostnameEndpoint} asks
    for names (it reads C{nameResolver} at connect time).
    """

    def __init__(self, reactor: object, resolver: IHostnameResolver) -> None:
        self._reactor = reactor
        self.nameResolver = resolver

    def installNameResolver(self, resolver: IHostnameResolver) -> IHostnameResolver:
        previous, self.nameResolver = self.nameResolver, resolver
        return previous

    def __getattr__(self, name: str) -> object:
        return getattr(self._reactor, name)


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        pass


@implementer(IResolutionReceiver)
class _Recorder:
    """
    Passes a resolution through to the real receiver, and remembers it.
    """

    def __init__(self, cache: CachingResolver, key: _Key, receiver: IResolutionReceiver) -> None:
        self._cache = cache
        self._key = key
        self._receiver = receiver
        self._addresses: _Answer = []

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        self._receiver.resolutionBegan(resolution)

    def addressResolved(self, address: IAddress) -> None:
        # Name resolvers give IP addresses; anything else is passed on but
        # not remembered (the cache could not rebuild it).
        if isinstance(address, (IPv4Address, IPv6Address)):
            self._addresses.append((type(address), address.host))
        self._receiver.addressResolved(address)

    def resolutionComplete(self) -> None:
        self._cache._store(self._key, self._addresses)
        self._receiver.resolutionComplete()


@implementer(IHostnameResolver)
class CachingResolver:
    """
    A name resolver that remembers answers for C{ttl} seconds and failures
    for C{negativeTtl} seconds (the system resolver gives no TTLs; this is
    the same trade-off Squid's C{positive_dns_ttl} makes), and answers IP
    literals at once without asking anyone.
    """

    def __init__(
        self,
        resolver: IHostnameResolver,
        clock: IReactorTime,
        ttl: float = 60.0,
        negativeTtl: float = 5.0,
        maxEntries: int = 10000,
    ) -> None:
        self._resolver = resolver
        self._clock = clock
        self.ttl = ttl
        self.negativeTtl = negativeTtl
        self.maxEntries = maxEntries
        self._cache: dict[_Key, tuple[float, _Answer]] = {}

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        resolution = _Resolution(hostName)
        if isIPAddress(hostName) or isIPv6Address(hostName):
            kind: type[IPv4Address] | type[IPv6Address]
            kind = IPv6Address if ":" in hostName else IPv4Address
            self._deliver(
                resolution, resolutionReceiver, [(kind, hostName)], portNumber, transportSemantics
            )
            return resolution
        key: _Key = (
            hostName.lower(),
            transportSemantics,
            None if addressTypes is None else frozenset(addressTypes),
        )
        entry = self._cache.get(key)
        if entry is not None:
            expires, addresses = entry
            if expires > self._clock.seconds():
                self._deliver(
                    resolution, resolutionReceiver, addresses, portNumber, transportSemantics
                )
                return resolution
            del self._cache[key]
        return self._resolver.resolveHostName(
            _Recorder(self, key, resolutionReceiver),
            hostName,
            portNumber,
            addressTypes,
            transportSemantics,
        )

    def _deliver(
        self,
        resolution: IHostResolution,
        receiver: IResolutionReceiver,
        addresses: _Answer,
        port: int,
        semantics: str,
    ) -> None:
        receiver.resolutionBegan(resolution)
        for kind, host in addresses:
            receiver.addressResolved(kind("UDP" if semantics == "UDP" else "TCP", host, port))
        receiver.resolutionComplete()

    def _store(self, key: _Key, addresses: _Answer) -> None:
        ttl = self.ttl if addresses else self.negativeTtl
        if ttl <= 0:
            return
        if len(self._cache) >= self.maxEntries:
            # Drop the oldest entry (dicts keep insertion order).
            del self._cache[next(iter(self._cache))]
        self._cache[key] = (self._clock.seconds() + ttl, addresses)
