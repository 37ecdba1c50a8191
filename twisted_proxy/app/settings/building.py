# -*- test-case-name: tests.test_config_file -*-
"""
What the settings build (L{build}): the L{ProxyConfig
<twisted_proxy.proxy.config.ProxyConfig>} and the listeners, as L{Built};
and L{CommandLine}, the options given, kept to read the settings again on
a reload.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .kinds import Expected
from .resolution import Settings, resolve
from .sources import COMMAND_LINE, DEFAULT, SettingError
from .table import BY_NAME, configFields, reverseHosts

if TYPE_CHECKING:
    from ...proxy.config import ProxyConfig
    from ...proxy.parent import ParentProxy
    from ...proxy.policy import HostPatterns, Policy
    from ..listening import Listener

__all__ = ["Built", "CommandLine", "build"]


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
    from ...proxy.config import ConfigError, ProxyConfig, ReverseOrigin
    from ...proxy.parent import ParentProxy
    from ...proxy.policy import ConfigurationError, HostPatterns, HtpasswdError, Policy
    from ..listening import Listener

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
        field.name: settings[name] for name, field in configFields().items() if name != "pseudonym"
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
            return SettingError(f"{source}: {name} {message[match.end() :]}")
        return SettingError(message)
    return SettingError(message)


def _hostname() -> str:
    return socket.gethostname()


def _firstPort(listeners: Iterable[Listener]) -> str:
    for listener in listeners:
        if listener.port is not None:
            return str(listener.port)
    return "0"
