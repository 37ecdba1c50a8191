# -*- test-case-name: tests.test_server -*-
"""
The brief's log lines: "Connection has been accepted from: ...", "Request
has been received: ...", each ending with the local time to the
microsecond, emitted as structured events with C{log_system="proxy"}.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.logger import Logger

from ..http.fields import redactHeaders
from ..records.emit import emitEvent

__all__ = ["headText", "say"]


class _ClockText:
    """
    Local time to the microsecond, as the brief prints it (C{12:34:56.123456});
    the hours, minutes and seconds are formatted once per second.
    """

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, when: float) -> str:
        second = int(when)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%H:%M:%S", time.localtime(second))
        return "%s.%06d" % (self._text, int((when - second) * 1000000))


_clockText = _ClockText()

# A module-level logger: a Logger as a class attribute is a descriptor that
# builds a new Logger on every access, which the hot path cannot afford.
_briefLog = Logger(namespace="twisted_proxy.proxy.server.ProxyServerProtocol")


def headText(line: bytes, headers: list[tuple[bytes, bytes]]) -> str:
    """
    A message head as the brief prints it (C{\\r\\n} shown escaped),
    credentials and cookies redacted.
    """
    parts = [line.decode("latin-1")]
    parts.extend([n + ": " + v for n, v in redactHeaders(headers)])
    return "\\r\\n".join(parts) + "\\r\\n\\r\\n"


def say(source: Any, text: str, when: float, fields: dict[str, Any]) -> None:
    """
    Log one of the brief's lines, ending with the local time C{when} to the
    microsecond.  The text is rendered here, once, so that formatting the
    event (for the console or a log file) is nearly free; the structured
    C{fields} (a new dict, which becomes the event) ride along for other
    observers.
    """
    # log_system: twistd's text observer prints it as is, instead of
    # formatting the namespace and level for every line.
    fields["log_system"] = "proxy"
    emitEvent(
        _briefLog,
        text.replace("{", "{{").replace("}", "}}") + "  [" + _clockText(when) + "]",
        fields,
        source,
    )
