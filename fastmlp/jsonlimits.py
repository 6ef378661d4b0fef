"""JSON from files that may be crafted, parsed within limits.

``json.loads`` recurses once per nesting level (a deeply nested document is a
``RecursionError``), turns ``1e400`` into ``inf`` and reads integers of any
length, which later overflow wherever they meet a C integer or a float. Here
the text's length and nesting depth are checked before it is parsed, and every
number literal while it is parsed, so a crafted document is a
:class:`JSONLimitError` (a ``ValueError``) and the parsed values are ordinary
numbers. :func:`count` checks a parsed value is a whole number in range.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

__all__ = ["JSONLimitError", "MAX_CHARS", "MAX_DEPTH", "MAX_COUNT", "loads", "depth", "count"]

# fastmlp's own documents (a checkpoint's meta) nest 5 deep and hold a few
# hundred kilobytes even after thousands of epochs.
MAX_CHARS = 4 << 20
MAX_DEPTH = 32
# Longest number literal: an int64 has 19 digits, a float's shortest repr under 25 chars.
MAX_NUMBER_CHARS = 40
# Counters (steps, epochs, optimiser steps) and layer sizes stay below this:
# exactly representable as float64 and as int64.
MAX_COUNT = 2**53

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


class JSONLimitError(ValueError):
    """The JSON text is beyond what fastmlp parses (too long, too deep, a number out of range)."""


def depth(text: str) -> int:
    """How deeply arrays and objects nest in ``text`` (brackets inside strings do not count)."""
    codes = np.frombuffer(_STRING.sub("", text).encode("utf-8", "surrogatepass"), dtype=np.uint8)
    if codes.size == 0:
        return 0
    step = np.isin(codes, (ord("["), ord("{"))).astype(np.int32) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(step).max())


def _number(text, convert):
    if len(text) > MAX_NUMBER_CHARS:
        raise JSONLimitError(f"a number of {len(text)} characters ({text[:12]}...), more than {MAX_NUMBER_CHARS}")
    value = convert(text)
    if isinstance(value, float) and math.isinf(value):
        raise JSONLimitError(f"the number {text}, beyond the range of a float")
    return value


def loads(text: str):
    """``json.loads(text)``, or a JSONLimitError saying which limit ``text`` is beyond."""
    if len(text) > MAX_CHARS:
        raise JSONLimitError(f"{len(text):,} characters of JSON, more than the {MAX_CHARS:,} fastmlp parses")
    nesting = depth(text)
    if nesting > MAX_DEPTH:
        raise JSONLimitError(f"JSON nested {nesting:,} levels deep, more than the {MAX_DEPTH} fastmlp parses")
    return json.loads(text, parse_int=lambda s: _number(s, int), parse_float=lambda s: _number(s, float))


def count(value, limit: int = MAX_COUNT, low: int = 0) -> bool:
    """Whether ``value`` is an int (not a bool) in ``low..limit``."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= limit
