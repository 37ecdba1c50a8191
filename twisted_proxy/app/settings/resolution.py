# -*- test-case-name: tests.test_config_file -*-
"""
The effective settings, L{Settings}: the command line over the
configuration file over the defaults (L{resolve}), each value remembering
where it came from.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .kinds import Path, Repeated
from .sources import (
    COMMAND_LINE,
    DEFAULT,
    SettingError,
    readConfigFile,
    readInclude,
    relativeTo,
    settingError,
    whereWritten,
)
from .table import BY_NAME, SETTINGS, defaultOf

__all__ = ["Settings", "resolve"]


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
        return whereWritten(BY_NAME[name], self.values[name], self.sources[name])

    def error(self, name: str, problem: ValueError | str, value: Any = None) -> SettingError:
        """
        A L{SettingError} about setting C{name} (or one C{value} of it).
        """
        setting = BY_NAME[name]
        item = value is not None and setting.kind.repeatable
        return settingError(
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
                path = relativeTo(source, path)
            return readInclude(setting, path, whereWritten(setting, item, source, item=True))
        try:
            kind.checkItem(item)
        except ValueError as e:
            raise settingError(setting, item, source, e, item=True) from None
        return [item]

    expanded: dict[str, list[str]] = {}
    for setting in SETTINGS:
        if setting.kind.repeatable:
            name = setting.name
            expanded[name] = [x for item in values[name] for x in expand(name, item)]
    if clientOrder:
        rules = [(action, x) for action, item in clientOrder for x in expand(action, item)]
    else:
        rules = [("deny", x) for x in expanded["deny"]] + [("allow", x) for x in expanded["allow"]]
    for setting in SETTINGS:
        name = setting.name
        value = values[name]
        if isinstance(setting.kind, Path) and value is not None:
            try:
                setting.kind.checkFile(value)
            except ValueError as e:
                raise settingError(setting, value, sources[name], e) from None
    return Settings(values, sources, expanded, rules, configFile)
