# -*- test-case-name: tests.test_history_units -*-
"""
Units in option values: L{parseSize} reads sizes such as C{10M} (for
C{--history-rotate-size}, C{--max-body}).
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["parseSize"]

_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?", re.ASCII)


def parseSize(text: str) -> int:
    """
    Parse a size in octets: a plain number, or a number followed by C{k},
    C{M}, C{G} or C{T} (powers of 1024; case does not matter, and a trailing
    C{B} or C{iB} is allowed): C{"10M"} is 10485760, C{"512k"} 524288,
    C{"1.5G"} 1610612736.  A fraction of a byte is dropped, computed
    exactly (C{"0.1k"} is 102).

    @raise ValueError: with a message saying what is expected.
    """
    match = _SIZE.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(
            f"invalid size {text!r}: expected a number of bytes, optionally followed"
            " by k, M, G or T (powers of 1024), e.g. 10M"
        )
    number, unit = match.groups()
    multiplier = _SIZE_UNITS[unit or ""]
    return int(Fraction(number) * multiplier)
