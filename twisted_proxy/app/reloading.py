# -*- test-case-name: tests.test_config_file -*-
"""
A reload (SIGHUP): L{reloadInto} re-reads the settings of a service (one
process, or the parent of workers), applies them, and says in one line what
changed (L{describeChanges}) and what takes a restart (L{restartNotes}); an
invalid new configuration is refused, with the reason, and the previous one
kept.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from .listening import Listener, ListenError
from .ports import bindAll, listenerChanges
from .recordfiles import RecordFiles
from .runtime import StartupError
from .settings import BY_NAME, SETTINGS, Built, SettingError, Settings

__all__ = ["describeChanges", "reloadInto", "restartNotes"]

_log = Logger()


def describeChanges(old: Settings, new: Settings) -> list[str]:
    """
    The settings that differ, in words: C{connect-timeout 10 -> 5}.
    """
    changes = []
    for name in old.changed(new):
        setting = BY_NAME[name]
        if setting.kind.repeatable:
            before, after = old.itemsOf(name), new.itemsOf(name)
            if len(before) + len(after) <= 6:
                changes.append(f"{name} {setting.shown(before)} -> {setting.shown(after)}")
            else:
                changes.append(f"{name} ({len(before)} -> {len(after)} items)")
        else:
            changes.append(f"{name} {setting.shown(old[name])} -> {setting.shown(new[name])}")
    return changes


def restartNotes(initial: Settings, new: Settings) -> list[str]:
    """
    The settings of C{new} that a reload cannot apply (L{Setting.restart})
    and that differ from what the process started with, in words.
    """
    return [
        f"{s.name} takes a restart to change (still {s.shown(initial[s.name])})"
        for s in SETTINGS
        if s.restart and s.inFile and initial[s.name] != new[s.name]
    ]


def openForReload(
    listeners: list[Listener], records: RecordFiles, new: Built
) -> tuple[list[Listener], list[Listener], RecordFiles | None]:
    """
    What a reload must open before it changes anything: the sockets of
    new C{--listen} values and the record files of changed settings.  If
    one cannot be opened, what was opened is closed again and nothing
    changes.

    @return: C{(added, removed, records)}: the listeners opened, those to
        close, and the new record files (L{None} if they did not change).
    @raise StartupError: if a socket or a file cannot be opened.
    """
    added, removed = listenerChanges(listeners, new.listeners)
    try:
        added = bindAll(added, new.config.maxConnections)
        replaced = records.replace(new.settings)
    except (ListenError, SettingError) as e:
        for listener in added:
            listener.close()
        raise StartupError(str(e)) from None
    return added, removed, replaced


def reloadInto(service: Any) -> None:
    """
    Re-read the settings of C{service} (a L{ProxyService} or a worker
    supervisor) and apply them, saying what changed; an invalid new
    configuration is refused and the previous one kept.
    """
    old: Built = service.built
    settings = old.settings
    if service.source is None or (
        settings.configFile is None
        and settings["auth-file"] is None
        and not any(
            item.startswith("@") for s in SETTINGS if s.kind.repeatable for item in settings[s.name]
        )
    ):
        _log.info(
            "SIGHUP: nothing to reload (no --config file, no --auth-file, no included "
            "files); the proxy carries on as it is."
        )
        return
    try:
        new = service.source.read()
    except SettingError as e:
        _log.error(
            "Configuration not reloaded: {error}.  The previous configuration stays in force.",
            error=str(e).rstrip("."),
        )
        return
    try:
        changes = service.applyBuilt(new)
    except (SettingError, StartupError) as e:
        _log.error(
            "Configuration not reloaded: {error}.  The previous configuration stays in force.",
            error=str(e).rstrip("."),
        )
        return
    words = describeChanges(old.settings, new.settings) + changes
    if new.settings["auth-file"] is not None:
        words.append(f"password file {new.settings['auth-file']} re-read")
    _log.info(
        "Configuration reloaded{source}: {changes}.",
        source="" if new.settings.configFile is None else f" from {new.settings.configFile}",
        changes="; ".join(words) if words else "nothing changed",
    )
