# -*- test-case-name: tests.test_config_file -*-
"""
Where a value comes from -- the command line, a configuration file (and the
files it includes), or the default -- and how an error says where the user
wrote it: C{--connect-timeout -5: ...}, C{proxy.toml: connect-timeout = -5:
...}.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any

from .kinds import Expected, Flag, Path, Repeated, tomlString
from .table import BY_NAME, SETTINGS, Setting

__all__ = [
    "COMMAND_LINE",
    "DEFAULT",
    "SettingError",
    "readConfigFile",
    "readInclude",
    "relativeTo",
    "settingError",
    "whereWritten",
]


class SettingError(Exception):
    """
    A setting the proxy cannot run with.  C{str()} is one line that names
    the option (or the file and key), the value, and what is expected.
    """


# The source of a value: COMMAND_LINE, DEFAULT, or a configuration file's
# path.
COMMAND_LINE = "command line"
DEFAULT = "default"


def _valueText(setting: Setting, value: Any, source: str) -> str:
    if source in (COMMAND_LINE, DEFAULT):
        if isinstance(value, list):
            return " ".join(str(v) for v in value)
        return "" if isinstance(setting.kind, Flag) else str(value)
    if isinstance(value, str):
        return tomlString(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_valueText(setting, v, source) for v in value) + "]"
    return str(value)


def whereWritten(setting: Setting, value: Any, source: str, item: bool = False) -> str:
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


def settingError(
    setting: Setting, value: Any, source: str, problem: ValueError | str, item: bool = False
) -> SettingError:
    """
    The one-line error for C{value} of C{setting} from C{source}:
    C{--connect-timeout -5: expected a positive number of seconds}.
    """
    text = str(problem)
    if isinstance(problem, Expected):
        text = "expected " + text
    return SettingError(f"{whereWritten(setting, value, source, item)}: {text}")


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
                value = relativeTo(path, value)
        except ValueError as e:
            raise settingError(setting, raw, path, e) from None
        values[key] = value
    return values


def relativeTo(configPath: str, name: str) -> str:
    """
    C{name}, written in the file C{configPath}: relative to its directory.
    """
    name = os.path.expanduser(name)
    if os.path.isabs(name):
        return name
    return os.path.join(os.path.dirname(os.path.abspath(configPath)), name)


def readInclude(setting: Setting, path: str, citedBy: str) -> list[str]:
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
