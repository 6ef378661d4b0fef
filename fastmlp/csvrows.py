"""The rows of a Kaggle-style CSV, read in bounded memory.

``np.loadtxt`` on a whole file holds every value as a Python-parsed int32 table
plus its own buffers: 15 times the file's size at its peak. Here the rows are
parsed a block at a time (about :data:`BLOCK_VALUES` values) straight into the
result. The result is allocated after the first block, for the rows the file's
size and that block's line length promise (plus a tenth), grown in place
(``realloc``, which moves large blocks without copying them) if the file holds
more, and shrunk to the rows found at the end; so memory peaks at about the
arrays returned plus one block. A line longer than any row of that many
columns can be is refused before it is parsed, so one endless line cannot
fill memory either.
"""

from __future__ import annotations

import warnings

import numpy as np

from .errors import DataError

__all__ = ["read_rows", "BLOCK_VALUES", "MAX_CELL_CHARS"]

BLOCK_VALUES = 1 << 18
# A cell is an integer, perhaps padded: far fewer characters than this on average.
MAX_CELL_CHARS = 32


def _line_limit(columns):
    return MAX_CELL_CHARS * columns + 1024


def _estimate(size, lines, columns):
    """The rows to allocate for a CSV of ``size`` bytes whose first block was ``lines``:
    as many as lines of their mean length fill the file, and a tenth more; never more
    than the file can hold (each row has a character and a separator per column)."""
    mean = max(1, sum(map(len, lines)) // len(lines))
    return min(size // mean + size // mean // 10 + len(lines), (size + 1) // (2 * columns) + 1)


def _resize(arr, rows):
    """``arr`` with ``rows`` rows: in place (realloc) where NumPy lets it, else a copy."""
    try:
        arr.resize((rows, *arr.shape[1:]), refcheck=False)
        return arr
    except ValueError:
        out = np.empty((rows, *arr.shape[1:]), dtype=arr.dtype)
        keep = min(rows, len(arr))
        out[:keep] = arr[:keep]
        return out


def read_rows(f, size, path, names, label_col, diagnose):
    """(pixels uint8 (n, columns - 1), labels int64 (n,)) from the text stream ``f``,
    positioned after the header of a CSV of ``size`` bytes at ``path`` with column
    ``names``. ``diagnose()`` raises the precise DataError for the first bad line,
    if it can find one; it is called before any other error is raised."""
    columns = len(names)
    limit = _line_limit(columns)
    x = y = None
    per_block = max(1, BLOCK_VALUES // columns)
    n, lineno = 0, 1
    while True:
        lines = []
        while len(lines) < per_block and (line := f.readline(limit + 1)):
            lineno += 1
            if len(line) > limit:
                raise DataError(f"{path}: line {lineno} is longer than {limit:,} characters, more than a row of "
                                f"{columns} values can be; check that this is a CSV file of images")
            lines.append(line)
        if not lines:
            break
        if x is None:
            rows = _estimate(size, lines, columns)
            x, y = np.empty((rows, columns - 1), dtype=np.uint8), np.empty(rows, dtype=np.int64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a block of blank lines is no error
            table = np.loadtxt(lines, delimiter=",", dtype=np.int32, ndmin=2)
        del lines
        if table.shape[0] == 0:
            continue
        if table.shape[1] != columns:
            diagnose()
            raise DataError(f"{path}: rows have {table.shape[1]} values but the header has {columns} columns")
        labels = table[:, label_col]
        pixels_ok = all(part.size == 0 or (part.min() >= 0 and part.max() <= 255)
                        for part in (table[:, :label_col], table[:, label_col + 1:]))
        if not pixels_ok or labels.min() < 0:
            diagnose()
            raise DataError(f"{path}: pixel values must be in 0..255 and labels non-negative")
        k = table.shape[0]
        if n + k > len(y):  # the first block's lines were longer than the rest
            rows = max(n + k, len(y) + len(y) // 2)
            x, y = _resize(x, rows), _resize(y, rows)
        x[n: n + k, :label_col] = table[:, :label_col]
        x[n: n + k, label_col:] = table[:, label_col + 1:]
        y[n: n + k] = labels
        n += k
    if x is None:
        return np.empty((0, columns - 1), dtype=np.uint8), np.empty(0, dtype=np.int64)
    return _resize(x, n), _resize(y, n)
