# -*- test-case-name: tests.test_tap -*-
"""
The twistd plugin's L{Options}: the command line of C{twistd proxyserver}.

Every option is a setting of L{twisted_proxy.app.settings.SETTINGS}; this
module only turns that table into a L{usage.Options} and reports errors the
way a person can act on them.  After parsing, the options hold the
effective L{Settings} (the command line over the C{--config} file over the
defaults) in C{options["settings"]} and what they build (the
L{ProxyConfig}, the listeners) in C{options["built"]}; each setting's
effective value is also C{options[name]}.

Errors: twistd prints a usage error after the whole help text and exits 1.
When twistd runs it, L{Options} reports its own errors instead, as one line
naming the option (or the file and key), the value and what is expected,
and exits 2, as command-line tools do.  Parsed on its own (in tests), it
raises L{usage.UsageError} like any L{usage.Options}.
"""

from __future__ import annotations

import difflib
import re
import sys
from typing import Any

from twisted.python import usage

from .. import __version__
from .console import prepare as prepareConsole
from .settings import (
    COMMAND_LINE,
    SETTINGS,
    CommandLine,
    Flag,
    SettingError,
    defaultOf,
    formatSettings,
    settingError,
)

__all__ = ["Options", "OptionError", "reportError"]


class OptionError(usage.UsageError):
    """
    An option (or the configuration file) is invalid.  C{str()} is one line.
    """


def reportError(message: str, hint: bool = True, stream: Any = None) -> None:
    """
    Write a start-up error as twisted-proxy reports them: one line, and for
    an option, where to look for help.
    """
    stream = sys.stderr if stream is None else stream
    more = "; see twistd proxyserver --help" if hint else ""
    stream.write(f"twistd proxyserver: {message}{more}\n")
    stream.flush()


def _help(setting: Any) -> str:
    """
    The help line of a setting, with its default.
    """
    text = setting.help
    if setting.defaultText is not None:
        return f"{text} (default: {setting.defaultText})"
    if isinstance(setting.kind, Flag) or setting.kind.repeatable:
        return text
    default = defaultOf(setting)
    if default is None:
        return text
    shown = setting.kind.toToml(default).strip('"')
    return f"{text} (default: {shown})"


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "A streaming, standards-correct HTTP/1.1 forward proxy.  Clients send "
        "absolute-form requests (GET http://host/path) or origin-form requests "
        "with a Host header; the proxy relays each to its destination and "
        "logs every connection and transaction.  Every option can also be "
        "set in a TOML file (--config), under a key of the same name.  "
        "Signals: SIGHUP reloads the configuration and the password file; "
        "SIGUSR1 reopens the log files; SIGTERM and SIGINT stop gracefully."
    )

    optParameters = [
        [s.name, None, None, _help(s)]
        for s in SETTINGS
        if not s.kind.repeatable and not isinstance(s.kind, Flag)
    ]
    optFlags = [[s.name, None, _help(s)] for s in SETTINGS if isinstance(s.kind, Flag)]

    compData = usage.Completions(
        optActions={
            "forwarded": usage.CompleteList(["off", "xff", "rfc7239"]),
            "history-headers": usage.CompleteList(["redacted", "all"]),
            "access-log-format": usage.CompleteList(["squid", "common", "combined"]),
            "log-level": usage.CompleteList(["debug", "info", "warn", "error"]),
            "history": usage.CompleteFiles(),
            "access-log": usage.CompleteFiles(),
            "auth-file": usage.CompleteFiles(),
            "cache-dir": usage.CompleteDirs(),
            "config": usage.CompleteFiles("*.toml"),
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self._repeated: dict[str, list[str]] = {}
        self._clientOrder: list[tuple[str, str]] = []

    @property
    def runByTwistd(self) -> bool:
        """
        Whether twistd is parsing these options (as its subcommand).
        """
        return self.parent is not None

    def parseOptions(self, options: list[str] | None = None) -> None:
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            message = _rephrase(str(e))
            if self.runByTwistd:
                reportError(message)
                raise SystemExit(2) from None
            raise OptionError(message) from None

    def parseArgs(self, *args: str) -> None:
        if args:
            raise usage.UsageError(
                f"unexpected argument {args[0]!r}: every setting is an option (--name value)"
            )

    def opt_version(self) -> None:
        """Print the version and exit."""
        print("twisted-proxy", __version__)
        raise SystemExit(0)

    def opt_help(self) -> None:
        """Display this help and exit."""
        super().opt_help()

    opt_h = opt_help

    def opt_pool_max_idle_per_host(self, count: str) -> None:
        """The former name of --pool-min-idle-per-host (it is a floor, not a cap)."""
        self["pool-min-idle-per-host"] = count

    def _repeat(self, name: str, value: str) -> None:
        self._repeated.setdefault(name, []).append(value)
        if name in ("allow", "deny"):
            self._clientOrder.append((name, value))

    def postOptions(self) -> None:
        commandLine: dict[str, Any] = {}
        for setting in SETTINGS:
            name = setting.name
            if setting.kind.repeatable:
                if name in self._repeated:
                    commandLine[name] = self._repeated[name]
                continue
            raw = self[name]
            if isinstance(setting.kind, Flag):
                if raw:
                    commandLine[name] = True
                continue
            if raw is None:
                continue
            try:
                commandLine[name] = setting.kind.fromText(raw)
            except ValueError as e:
                raise OptionError(str(settingError(setting, raw, COMMAND_LINE, e))) from None
        source = CommandLine(commandLine, tuple(self._clientOrder))
        try:
            built = source.read()
        except SettingError as e:
            raise OptionError(str(e)) from None
        settings = built.settings
        for setting in SETTINGS:
            self[setting.name] = settings[setting.name]
        self["settings"] = settings
        self["built"] = built
        self["source"] = source
        self["proxyConfig"] = built.config
        if settings["check-config"]:
            sys.stdout.write(formatSettings(built))
            sys.stdout.flush()
            raise SystemExit(0)
        parent = self.parent  # set when run by twistd
        if parent is not None and parent.get("logger") is None:
            # twistd starts logging after parsing its options and before
            # making the service; the console is ours (see console.py).
            parent["logger"] = prepareConsole(parent, settings["log-level"])


def _addRepeatable(setting: Any) -> None:
    def opt(self: Options, value: str) -> None:
        self._repeat(setting.name, value)

    opt.__doc__ = _help(setting)
    opt.__name__ = "opt_" + setting.name.replace("-", "_")
    setattr(Options, opt.__name__, opt)


for _setting in SETTINGS:
    if _setting.kind.repeatable:
        _addRepeatable(_setting)


_OPTION_NAMES = ["--" + s.name for s in SETTINGS] + [
    "--version",
    "--help",
    "--pool-max-idle-per-host",
]


def _rephrase(message: str) -> str:
    """
    getopt's messages, said the way the rest are.
    """
    match = re.fullmatch(r"option (--?[^ ]+) not recognized|No such option '([^']+)'", message)
    if match:
        option = match.group(1) or "--" + match.group(2)
        close = difflib.get_close_matches(option, _OPTION_NAMES, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"unknown option {option}{hint}"
    match = re.fullmatch(r"option (--?[^ ]+) requires argument", message)
    if match:
        return f"{match.group(1)} needs a value"
    match = re.fullmatch(r"option (--?[^ ]+) must not have an argument", message)
    if match:
        return f"{match.group(1)} takes no value"
    return message
