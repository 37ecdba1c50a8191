# -*- test-case-name: tests.test_config_file -*-
"""
The history and access-log files the settings name (L{RecordFiles}):
observers of the transaction events, written in batches on the reactor's
timer, reopened on SIGUSR1, replaced when a reload names other files.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger, globalLogPublisher

from .settings import Settings

__all__ = ["RecordFiles"]

_log = Logger()


class RecordFiles:
    """
    The history and access-log files: log observers on the global log
    publisher while started.
    """

    def __init__(self, settings: Settings, clock: Any = None) -> None:
        """
        Open the files C{settings} name.

        @param clock: the writers' timer (they write within 50 ms, in
            batches), or L{None} to write every record at once.
        @raise SettingError: naming the option, if a file cannot be opened.
        """
        self.settings = settings
        self.clock = clock
        self.observers = _openRecordFiles(settings, clock)
        self._started = False

    def __bool__(self) -> bool:
        return bool(self.observers)

    def start(self) -> None:
        for observer in self.observers:
            globalLogPublisher.addObserver(observer)
        self._started = True

    def reopen(self) -> None:
        """
        Reopen the files by name (SIGUSR1, after logrotate moved them).
        """
        for observer in self.observers:
            try:
                observer.reopen()
            except OSError as e:
                _log.error(
                    "Could not reopen {path} ({error}); still writing to the old file.",
                    path=observer.path,
                    error=e.strerror or e,
                )

    def replace(self, settings: Settings) -> RecordFiles | None:
        """
        The files C{settings} name, if they differ from these: opened (not
        started); else L{None}.

        @raise SettingError: if a file cannot be opened.
        """
        if _recordKey(settings) == _recordKey(self.settings):
            return None
        return RecordFiles(settings, self.clock)

    def close(self) -> None:
        for observer in self.observers:
            if self._started:
                globalLogPublisher.removeObserver(observer)
            observer.close()
        self.observers = []
        self._started = False


_RECORD_SETTINGS = (
    "history",
    "history-rotate-size",
    "history-keep",
    "access-log",
    "access-log-format",
)


def _recordKey(settings: Settings) -> tuple[Any, ...]:
    return tuple(settings[name] for name in _RECORD_SETTINGS)


def _openRecordFiles(settings: Settings, clock: Any) -> list[Any]:
    """
    The observers writing the files C{settings} name.

    @raise SettingError: naming the option, if a file cannot be opened (the
        others are closed again).
    """
    from ..records.logfiles import accessLogObserver, historyObserver

    opening = []
    if settings["history"]:
        opening.append(
            (
                "history",
                lambda: historyObserver(
                    settings["history"],
                    settings["history-rotate-size"],
                    settings["history-keep"],
                    clock,
                ),
            )
        )
    if settings["access-log"]:
        opening.append(
            (
                "access-log",
                lambda: accessLogObserver(
                    settings["access-log"], settings["access-log-format"], clock
                ),
            )
        )
    observers: list[Any] = []
    for name, open_ in opening:
        try:
            observers.append(open_())
        except OSError as e:
            for observer in observers:
                observer.close()
            raise settings.error(name, f"cannot open it ({e.strerror or e})") from None
    return observers
