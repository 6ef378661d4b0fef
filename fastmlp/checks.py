"""Checks of the public API's arguments: a bad value is one ConfigError naming the argument.

NumPy scalars count as the Python numbers they stand for (``lr=np.float32(0.1)``,
``seed=np.int64(3)``); ``True`` and ``False`` do not count as numbers.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import ConfigError


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def positive(name, value):
    """float(value) for a finite number > 0."""
    if not (_is_real(value) and value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def non_negative(name, value):
    """float(value) for a finite number >= 0."""
    if not (_is_real(value) and value >= 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def integer(name, value, low):
    """int(value) for an integer >= low (an integral NumPy scalar too, not a float like 2.0)."""
    if not (isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)) and value >= low):
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def whole_labels(name, y, xp):
    """Refuse labels that are not whole numbers: fractional or non-finite floats, or
    anything that is not a number (strings, objects). ``y`` is a NumPy or CuPy array."""
    kind = y.dtype.kind
    if kind in "iub":
        return
    if kind != "f":
        raise ConfigError(f"{name} must hold integer class labels, got an array of dtype {y.dtype}")
    bad = ~xp.isfinite(y) | (y != xp.floor(y))
    if bool(bad.any()):
        i = int(xp.argmax(bad))
        raise ConfigError(f"{name} must hold integer class labels; {name}[{i}] is {float(y[i])!r}")


def fraction(name, value, upper_ok=False):
    """float(value) for a number in [0, 1) ((0, 1] with ``upper_ok``)."""
    ok = _is_real(value) and (0 < value <= 1 if upper_ok else 0 <= value < 1)
    if not ok:
        raise ConfigError(f"{name} must be a number in {'(0, 1]' if upper_ok else '[0, 1)'}, got {value!r}")
    return float(value)
