"""The error types fastmlp raises for problems a user can fix.

Every message is one line that says what is wrong and what to do about it.
The CLI prints these without a traceback; anything else is a bug.
"""


class FastMLPError(Exception):
    """Base class: an expected, user-fixable problem."""


class DataError(FastMLPError, ValueError):
    """A data file or folder is missing, truncated, corrupt or of the wrong kind."""


class DeviceError(FastMLPError, RuntimeError):
    """The requested device is unknown or not usable on this machine."""


class ConfigError(FastMLPError, ValueError):
    """A training setting is out of range or inconsistent with the data."""


class DivergenceError(FastMLPError, FloatingPointError):
    """The loss became NaN or infinite during training."""


def one_line(obj) -> str:
    """``str(obj)`` squeezed onto one line (messages must be one line)."""
    return " ".join(str(obj).split())
