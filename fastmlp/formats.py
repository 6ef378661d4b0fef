"""The file formats of MNIST-style data: IDX (raw or gzipped) and Kaggle-style CSV.

Everything that can go wrong with a file raises
:class:`~fastmlp.errors.DataError` with a one-line message that names the
file, says what is wrong and what to do about it.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pathlib
import zlib

import numpy as np

from .csvrows import read_rows
from .errors import DataError, one_line
from .files import atomic_write, open_regular

__all__ = ["read_idx", "write_idx", "read_csv", "csv_header"]

_REFETCH = "re-download it or delete it so fastmlp fetches a fresh copy"

# --------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------

# IDX type code -> dtype as stored (big-endian).
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {(dt.kind, dt.itemsize): code for code, dt in _IDX_DTYPES.items()}
_IDX_MAX_NDIM = 4
_GZIP_MAGIC = b"\x1f\x8b"


# Far above MNIST's largest file (47 MB of images), far below what would strain
# memory: a header that claims more is refused before anything is allocated.
MAX_IDX_BYTES = 256 << 20
# Deflate expands data at most about 1032 times, so a gzip file of n bytes can
# hold at most this many times n bytes.
_GZIP_MAX_RATIO = 1032
# How many trailing bytes are counted (and thrown away) before giving up counting.
_TRAILING_COUNT_LIMIT = 16 << 20


def read_idx(path, max_bytes: int = MAX_IDX_BYTES, digest=None) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into a native-endian array.

    Gzip is recognised by the file's first two bytes, not by its name. The
    result has the shape stored in the header, e.g. ``(60000, 28, 28)`` uint8
    for MNIST images or ``(60000,)`` uint8 for labels. Raises ``DataError`` if
    the file is missing, not a regular file, not IDX, truncated or has trailing
    bytes.

    The header is checked before the body is read: its size must fit the file
    (for gzip, what the compressed size can hold) and ``max_bytes``; only then is
    the array allocated, and the body is read into it in chunks. So memory never
    exceeds what a genuine file of that header needs, whatever the file holds.

    ``digest`` (a ``hashlib`` object), if given, is updated with the file's
    content as read (after decompression), so a gzipped and a raw copy of the
    same file hash alike.
    """
    path = pathlib.Path(path)
    with open_regular(path, "file") as f:
        size = os.fstat(f.fileno()).st_size
        is_gzip = f.read(2) == _GZIP_MAGIC
        f.seek(0)
        if not is_gzip:
            return _read_idx_stream(f, path, size, max_bytes, digest, raw_size=size)
        try:
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                return _read_idx_stream(gz, path, size * _GZIP_MAX_RATIO, max_bytes, digest)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt gzip data ({one_line(e)}); {_REFETCH}") from None


def _read_exact(stream, n: int) -> bytes:
    """Up to ``n`` bytes: fewer only at the end of the stream."""
    parts, got = [], 0
    while got < n and (chunk := stream.read(min(n - got, 1 << 20))):
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _read_idx_stream(stream, path: pathlib.Path, can_hold: int, max_bytes: int, digest, raw_size=None) -> np.ndarray:
    """Parse the IDX stream (decompressed if need be) whose payload can be at most
    ``can_hold`` bytes; ``raw_size`` is the exact size of an uncompressed file."""
    head = _read_exact(stream, 4)
    if len(head) < 4:
        raise DataError(f"{path}: truncated IDX header ({len(head)} bytes, need at least 4); {_REFETCH}")
    if head[0] != 0 or head[1] != 0:
        raise DataError(
            f"{path}: not an IDX file (magic bytes are {head[:2].hex()}, expected 0000); "
            "check that this is the right file"
        )
    code, ndim = head[2], head[3]
    if code not in _IDX_DTYPES:
        raise DataError(
            f"{path}: unknown IDX data type code 0x{code:02x} "
            "(expected one of 08, 09, 0b, 0c, 0d, 0e); check that this is the right file"
        )
    if not 1 <= ndim <= _IDX_MAX_NDIM:
        raise DataError(
            f"{path}: unsupported IDX dimension count {ndim} (expected 1 to {_IDX_MAX_NDIM}); "
            "check that this is the right file"
        )
    header = 4 + 4 * ndim
    raw_dims = _read_exact(stream, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(
            f"{path}: truncated IDX header ({4 + len(raw_dims)} bytes, need {header} for {ndim} dimensions); "
            f"{_REFETCH}"
        )
    dims = tuple(int.from_bytes(raw_dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    # Python ints cannot overflow, so an absurd header is caught here, before
    # anything of that size is allocated.
    count = math.prod(dims)
    expected = count * dtype.itemsize
    shape = "x".join(map(str, dims))

    def truncated(found):
        return DataError(
            f"{path}: truncated IDX file: header says {expected} bytes of data "
            f"(shape {shape}, {dtype.itemsize}-byte items), found {found}; {_REFETCH}"
        )

    def trailing(n):
        return DataError(
            f"{path}: IDX file has {n} trailing bytes after the {expected} bytes its header describes; {_REFETCH}"
        )

    if raw_size is not None:
        found = raw_size - header
        if found < expected:
            raise truncated(found)
        if found > expected:
            raise trailing(found - expected)
    elif expected > can_hold - header:
        raise DataError(
            f"{path}: truncated IDX file: header says {expected} bytes of data (shape {shape}), "
            f"more than a {can_hold // _GZIP_MAX_RATIO}-byte gzip file can hold; {_REFETCH}"
        )
    if expected > max_bytes:
        raise DataError(
            f"{path}: IDX header says {expected} bytes of data (shape {shape}), more than the "
            f"{max_bytes >> 20} MiB fastmlp reads from one file; check that this is the right file"
        )
    arr = np.empty(dims, dtype=dtype)
    body = memoryview(arr.reshape(-1).view(np.uint8))
    got = 0
    while got < expected and (chunk := stream.read(min(expected - got, 1 << 20))):
        body[got: got + len(chunk)] = chunk
        got += len(chunk)
    if got < expected:
        raise truncated(got)
    extra = 0
    while extra <= _TRAILING_COUNT_LIMIT and (chunk := stream.read(1 << 20)):
        extra += len(chunk)
    if extra > _TRAILING_COUNT_LIMIT:
        raise trailing(f"more than {_TRAILING_COUNT_LIMIT}")
    if extra:
        raise trailing(extra)
    if digest is not None:
        for part in (head, raw_dims, body):
            digest.update(part)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path, array) -> None:
    """Write ``array`` as an IDX file; gzipped if ``path`` ends with ``.gz``.

    Supported dtypes: uint8, int8, int16, int32, float32, float64, with 1 to
    4 dimensions. The file is written to a temporary name next to ``path``
    and moved into place, so readers never see a half-written file.
    """
    path = pathlib.Path(path)
    arr = np.asarray(array)
    code = _IDX_CODES.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None or arr.dtype.kind == "b":
        raise TypeError(f"write_idx: IDX cannot store dtype {arr.dtype}")
    if not 1 <= arr.ndim <= _IDX_MAX_NDIM:
        raise ValueError(f"write_idx: IDX needs 1 to {_IDX_MAX_NDIM} dimensions, got {arr.ndim}")
    if any(d >= 2**32 for d in arr.shape):
        raise ValueError(f"write_idx: dimension too large for IDX: {arr.shape}")
    header = bytes([0, 0, code, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    body = np.ascontiguousarray(arr, dtype=_IDX_DTYPES[code]).tobytes()


    def write(f):
        if path.name.endswith(".gz"):
            # filename="" and mtime=0 make the output reproducible.
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
                gz.write(header)
                gz.write(body)
        else:
            f.write(header)
            f.write(body)

    atomic_write(path, write)


# --------------------------------------------------------------------------
# Kaggle-style CSV
# --------------------------------------------------------------------------


# Kaggle's MNIST train.csv is 76 MB; its header line 4 KB.
MAX_CSV_BYTES = 1 << 30
_MAX_CSV_HEADER = 1 << 20


def _open_csv(path: pathlib.Path) -> io.TextIOWrapper:
    """The CSV file as text, if it is a regular file of at most MAX_CSV_BYTES."""
    f = open_regular(path, "CSV file")
    size = os.fstat(f.fileno()).st_size
    if size > MAX_CSV_BYTES:
        f.close()
        raise DataError(
            f"{path}: {size} bytes, more than the {MAX_CSV_BYTES >> 20} MiB fastmlp reads from a CSV file; "
            "convert it to IDX files"
        )
    return io.TextIOWrapper(f, encoding="utf-8-sig")


def _not_utf8(path, lineno, e: UnicodeDecodeError) -> DataError:
    return DataError(
        f"{path}: line {lineno} is not UTF-8 text (byte 0x{e.object[e.start]:02x}: {e.reason}); save the file as UTF-8"
    )


def csv_header(path: pathlib.Path) -> list[str]:
    """Return the column names of a CSV file's first line (lower-cased)."""
    with _open_csv(path) as f:
        try:
            line = f.readline(_MAX_CSV_HEADER + 1)
        except UnicodeDecodeError as e:
            raise _not_utf8(path, 1, e) from None
        except OSError as e:
            raise DataError(f"{path}: cannot read CSV file ({one_line(e)})") from None
    if len(line) > _MAX_CSV_HEADER:
        raise DataError(f"{path}: the first line is longer than {_MAX_CSV_HEADER >> 20} MiB; expected a CSV header row")
    if not line.strip():
        raise DataError(f"{path}: empty CSV file; expected a header row with a 'label' column")
    return [c.strip().strip('"').strip().lower() for c in line.split(",")]


def read_csv(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a Kaggle-style CSV: a header row, then one image per row.

    One column must be called ``label``; every other column is a pixel value
    in 0..255. Returns ``(x, y)`` with ``x`` uint8 of shape
    ``(n, n_pixel_columns)`` and ``y`` int64 of shape ``(n,)`` (labels as
    written, which must be non-negative integers).

    Rows are parsed in blocks into the result (:mod:`fastmlp.csvrows`), so memory
    peaks at about the arrays returned, whatever the file's size.
    """
    path = pathlib.Path(path)
    names = csv_header(path)
    if "label" not in names:
        raise DataError(
            f"{path}: CSV header has no 'label' column (found {_preview(names)}); "
            "expected the Kaggle layout: label,pixel0,...,pixel783"
        )
    if names.count("label") > 1:
        raise DataError(f"{path}: CSV header has more than one 'label' column")
    if len(names) < 2:
        raise DataError(f"{path}: CSV header has a 'label' column but no pixel columns")
    label_col = names.index("label")

    try:
        with _open_csv(path) as f:
            size = os.fstat(f.fileno()).st_size
            f.readline()
            pixels, labels = read_rows(f, size, path, names, label_col, lambda: _diagnose_csv(path, names))
    except DataError:
        raise
    except (ValueError, OverflowError) as e:  # UnicodeDecodeError included
        _diagnose_csv(path, names)
        raise DataError(f"{path}: malformed CSV ({one_line(e)})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read CSV file ({one_line(e)})") from None

    if labels.shape[0] == 0:
        raise DataError(f"{path}: CSV file has a header but no data rows")
    return pixels, labels


def _diagnose_csv(path: pathlib.Path, names: list[str]) -> None:
    """Find the first bad cell or row of a CSV and raise a precise DataError.

    Slow (pure Python), so only used once the fast parse has failed.
    Returns normally if it finds nothing wrong.
    """
    label_col = names.index("label")
    with open_regular(path, "CSV file") as f:  # bytes, so that a line that is not UTF-8 can be named
        f.readline()
        for lineno, raw in enumerate(f, start=2):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _not_utf8(path, lineno, e) from None
            if not line.strip():
                continue
            cells = line.rstrip("\r\n").split(",")
            if len(cells) != len(names):
                raise DataError(
                    f"{path}: line {lineno} has {len(cells)} values but the header has "
                    f"{len(names)} columns; every row needs one value per column"
                )
            for col, cell in enumerate(cells):
                text = cell.strip()
                try:
                    value = int(text)
                except ValueError:
                    raise DataError(
                        f"{path}: line {lineno}, column '{names[col]}': {text[:20]!r} is not an integer"
                    ) from None
                if col == label_col and value < 0:
                    raise DataError(f"{path}: line {lineno}: negative label {value}")
                if col != label_col and not 0 <= value <= 255:
                    raise DataError(
                        f"{path}: line {lineno}, column '{names[col]}': pixel value {value} "
                        "is outside 0..255"
                    )



def _preview(names: list[str], limit: int = 4) -> str:
    shown = ",".join(names[:limit])
    return shown + (",..." if len(names) > limit else "")
