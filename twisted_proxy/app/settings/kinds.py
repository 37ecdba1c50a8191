# -*- test-case-name: tests.test_config_file -*-
"""
Kinds of setting: how a value is read from the command line (text) and from
a TOML file (TOML values), checked, and written back as TOML.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "Choice",
    "Count",
    "Directory",
    "Endpoint",
    "Expected",
    "Flag",
    "Kind",
    "Path",
    "Repeated",
    "Seconds",
    "Size",
    "Text",
    "Workers",
    "formatSize",
    "tomlString",
]


class Expected(ValueError):
    """
    A value is invalid; the message says what a valid one is ("a positive
    number of seconds"), and messages put "expected" before it.  (A plain
    L{ValueError} from a check describes the problem instead, and is shown
    as it is.)
    """


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
        return tomlString(str(value))


def tomlString(text: str) -> str:
    # A TOML basic string is a JSON string (for what we write: no control
    # characters other than those JSON escapes the same way).
    return json.dumps(text, ensure_ascii=False)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Seconds(Kind):
    """
    A duration in seconds: positive, or with C{zero}, 0 or more.
    """

    def __init__(self, zero: bool = False) -> None:
        self.zero = zero
        self.expected = "a number of seconds, 0 or more" if zero else "a positive number of seconds"

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
        self.expected = "a size in bytes, optionally followed by k, M or G (e.g. 64M)" + (
            "" if zero else ", more than 0"
        )

    def fromText(self, text: str) -> int:
        from ...records.units import parseSize

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
        return text if text.isdigit() else tomlString(text)


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
    the file's directory (see L{relativeTo}).

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
        return tomlString(value) if value == "auto" else str(value)


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
        return "[" + ", ".join(tomlString(v) for v in value) + "]"
