"""Lines to the console that cannot fail on what they hold.

A path that is not valid UTF-8 (a folder named with byte 0xff) comes into
Python as a string with a lone surrogate (``os.fsdecode``: byte 0xff is
``'\\udcff'``), which a strict stream (``PYTHONIOENCODING=utf-8``, the usual
``en_US.UTF-8`` locale) refuses to encode: printing it raises
``UnicodeEncodeError``. :func:`printable` writes such bytes as ``\\xff`` and
anything else the stream cannot encode as a backslash escape, so
:func:`write_line` never fails on the text, only (``OSError``) on the stream.
"""

from __future__ import annotations

import re
import sys

__all__ = ["printable", "write_line"]

# The surrogates os.fsdecode uses for the bytes 0x80..0xff that are not UTF-8.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def printable(text: str, encoding: str | None) -> str:
    """``text`` as ``encoding`` can encode it: undecodable bytes of a path as ``\\xNN``,
    other characters the encoding lacks as backslash escapes."""
    encoding = encoding or "utf-8"
    try:
        text.encode(encoding)
        return text
    except (UnicodeEncodeError, LookupError):
        pass
    text = _ESCAPED_BYTE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", text)
    try:
        return text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:
        return text.encode("ascii", "backslashreplace").decode("ascii")


def write_line(text, stream=None) -> None:
    """Print ``text`` and a newline to ``stream`` (default: stdout) and flush."""
    stream = sys.stdout if stream is None else stream
    print(printable(str(text), getattr(stream, "encoding", None)), file=stream, flush=True)
