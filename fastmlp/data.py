"""Finding, reading, checking and downloading MNIST-style data sets.

Three on-disk layouts are understood:

* the four IDX files of MNIST / Fashion-MNIST, gzipped (``*.gz``) or raw;
* a Kaggle-style CSV folder: ``train.csv`` (a ``label`` column plus one
  column per pixel) and optionally ``test.csv``;
* nothing at all, in which case the IDX files are downloaded into the cache
  folder and verified against their SHA-256 before being used.

Everything that can go wrong with a file the user supplied raises
:class:`~fastmlp.errors.DataError` with a one-line message that names the
file, says what is wrong and what to do about it.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import pathlib
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import DataError

__all__ = [
    "DATASETS",
    "Dataset",
    "read_idx",
    "write_idx",
    "read_csv",
    "cache_dir",
    "find_data_dir",
    "download",
    "load_dataset",
    "load_mnist",
    "load_fashion_mnist",
]

# Roles of the four IDX files, in the order they are downloaded and read.
_ROLES = ("train_images", "train_labels", "test_images", "test_labels")

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

#: Known data sets. Each entry holds:
#:
#: ``files``        role -> file name of the gzipped IDX file
#: ``sha256``       file name -> SHA-256 (hex) of the ``.gz`` file
#: ``mirrors``      base URLs tried in order by :func:`download`
#: ``class_names``  one name per label value, in label order
#: ``system_dirs``  folders where a distribution package may have put the files
DATASETS: dict[str, dict] = {
    "mnist": {
        "files": dict(_IDX_FILES),
        "sha256": {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        "mirrors": [
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ],
        "class_names": tuple(str(i) for i in range(10)),
        "system_dirs": ("/usr/share/datasets/mnist",),
    },
    "fashion-mnist": {
        "files": dict(_IDX_FILES),
        "sha256": {
            "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
            "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
            "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
            "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
        },
        "mirrors": [
            # An S3 *website* endpoint: it only speaks plain http.
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ],
        "class_names": (
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
        "system_dirs": ("/usr/share/datasets/fashion-mnist",),
    },
}

# Name used for data read from a Kaggle-style CSV folder.
_CSV_NAME = "csv"

_REFETCH = "re-download it or delete it so fastmlp fetches a fresh copy"


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test split ready for training.

    Images are ``(n, n_features)`` when flattened, else ``(n, h, w)``;
    ``float32`` in ``[0, 1]`` when normalised, else ``uint8``. Labels are
    ``int64`` of shape ``(n,)`` holding class indices, or ``float32`` of shape
    ``(n, n_classes)`` when one-hot encoded.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple
    source: str

    @property
    def n_features(self) -> int:
        """Number of input values per example (784 for MNIST)."""
        return int(math.prod(self.x_train.shape[1:]))

    @property
    def n_classes(self) -> int:
        """Number of classes (the width of a one-hot label)."""
        return len(self.class_names)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, x_train={self.x_train.shape} {self.x_train.dtype}, "
            f"x_test={self.x_test.shape} {self.x_test.dtype}, n_classes={self.n_classes}, "
            f"source={self.source!r})"
        )


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


def _read_payload(path: pathlib.Path) -> bytearray:
    """Return the file's bytes, decompressed if they start with the gzip magic.

    A ``bytearray`` is returned so that arrays built on it are writable
    without another copy.
    """
    try:
        with open(path, "rb") as f:
            is_gzip = f.read(2) == _GZIP_MAGIC
            f.seek(0)
            if not is_gzip:
                buf = bytearray(os.fstat(f.fileno()).st_size)
                n = f.readinto(buf)
                del buf[n:]
                return buf
            buf = bytearray()
            try:
                with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                    while chunk := gz.read(1 << 20):
                        buf += chunk
            except (OSError, EOFError, zlib.error) as e:
                raise DataError(
                    f"{path}: corrupt gzip data ({_one_line(e)}); {_REFETCH}"
                ) from None
            return buf
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; check the path or let fastmlp download the data") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected an IDX file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied; make the file readable") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read file ({_one_line(e)})") from None


def read_idx(path) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into a native-endian array.

    Gzip is recognised by the file's first two bytes, not by its name. The
    result has the shape stored in the header, e.g. ``(60000, 28, 28)`` uint8
    for MNIST images or ``(60000,)`` uint8 for labels. Raises ``DataError`` if
    the file is missing, not IDX, truncated or has trailing bytes.
    """
    path = pathlib.Path(path)
    buf = _read_payload(path)
    size = len(buf)
    if size < 4:
        raise DataError(
            f"{path}: truncated IDX header ({size} bytes, need at least 4); {_REFETCH}"
        )
    if buf[0] != 0 or buf[1] != 0:
        raise DataError(
            f"{path}: not an IDX file (magic bytes are {bytes(buf[:2]).hex()}, expected 0000); "
            "check that this is the right file"
        )
    code, ndim = buf[2], buf[3]
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
    if size < header:
        raise DataError(
            f"{path}: truncated IDX header ({size} bytes, need {header} for {ndim} dimensions); "
            f"{_REFETCH}"
        )
    dims = tuple(int.from_bytes(buf[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    # Python ints cannot overflow, so an absurd header is caught here, before
    # anything of that size is allocated.
    count = math.prod(dims)
    expected = count * dtype.itemsize
    found = size - header
    if found < expected:
        shape = "x".join(map(str, dims))
        raise DataError(
            f"{path}: truncated IDX file: header says {expected} bytes of data "
            f"(shape {shape}, {dtype.itemsize}-byte items), found {found}; {_REFETCH}"
        )
    if found > expected:
        raise DataError(
            f"{path}: IDX file has {found - expected} trailing bytes after the "
            f"{expected} bytes its header describes; {_REFETCH}"
        )
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=header)
    # For single-byte types this is a no-copy view of the (writable) buffer.
    arr = arr.astype(dtype.newbyteorder("="), copy=False)
    return arr.reshape(dims)


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

    tmp = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=path.name + ".", suffix=".tmp", delete=False
        ) as f:
            tmp = f.name
            if path.name.endswith(".gz"):
                # filename="" and mtime=0 make the output reproducible.
                with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
                    gz.write(header)
                    gz.write(body)
            else:
                f.write(header)
                f.write(body)
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            os.unlink(tmp)


# --------------------------------------------------------------------------
# Kaggle-style CSV
# --------------------------------------------------------------------------


def _csv_header(path: pathlib.Path) -> list[str]:
    """Return the column names of a CSV file's first line (lower-cased)."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            line = f.readline()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read CSV file ({_one_line(e)})") from None
    if not line.strip():
        raise DataError(f"{path}: empty CSV file; expected a header row with a 'label' column")
    return [c.strip().strip('"').strip().lower() for c in line.split(",")]


def read_csv(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a Kaggle-style CSV: a header row, then one image per row.

    One column must be called ``label``; every other column is a pixel value
    in 0..255. Returns ``(x, y)`` with ``x`` uint8 of shape
    ``(n, n_pixel_columns)`` and ``y`` int64 of shape ``(n,)`` (labels as
    written, which must be non-negative integers).
    """
    path = pathlib.Path(path)
    names = _csv_header(path)
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
        with open(path, encoding="utf-8-sig") as f:
            f.readline()
            with warnings.catch_warnings():
                # Header-only files are reported below in our own words.
                warnings.simplefilter("ignore", UserWarning)
                table = np.loadtxt(f, delimiter=",", dtype=np.int32, ndmin=2)
    except (ValueError, OverflowError) as e:
        _diagnose_csv(path, names)
        raise DataError(f"{path}: malformed CSV ({_one_line(e)})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read CSV file ({_one_line(e)})") from None

    if table.shape[0] == 0:
        raise DataError(f"{path}: CSV file has a header but no data rows")
    if table.shape[1] != len(names):
        _diagnose_csv(path, names)
        raise DataError(f"{path}: rows have {table.shape[1]} values but the header has {len(names)} columns")
    labels = table[:, label_col]
    pixels = np.delete(table, label_col, axis=1)
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0:
        _diagnose_csv(path, names)
        raise DataError(f"{path}: pixel values must be in 0..255 and labels non-negative")
    return pixels.astype(np.uint8), labels.astype(np.int64)


def _diagnose_csv(path: pathlib.Path, names: list[str]) -> None:
    """Find the first bad cell or row of a CSV and raise a precise DataError.

    Slow (pure Python), so only used once the fast parse has failed.
    Returns normally if it finds nothing wrong.
    """
    label_col = names.index("label")
    with open(path, encoding="utf-8-sig") as f:
        f.readline()
        for lineno, line in enumerate(f, start=2):
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


# --------------------------------------------------------------------------
# Locating data
# --------------------------------------------------------------------------


def cache_dir() -> pathlib.Path:
    """Folder where downloads go: ``$FASTMLP_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/fastmlp``, else ``~/.cache/fastmlp``."""
    env = os.environ.get("FASTMLP_CACHE_DIR")
    if env:
        return pathlib.Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return pathlib.Path(xdg).expanduser() / "fastmlp"
    return pathlib.Path.home() / ".cache" / "fastmlp"


def _check_name(name: str) -> None:
    if name not in DATASETS and name != _CSV_NAME:
        known = ", ".join([*DATASETS, _CSV_NAME])
        raise DataError(f"unknown dataset {name!r}; choose one of: {known}")


def _idx_files(folder: pathlib.Path) -> dict[str, pathlib.Path] | None:
    """Role -> path of the four IDX files in ``folder`` (gzipped preferred
    over raw, independently per file), or None if any is missing."""
    found = {}
    for role, gz_name in _IDX_FILES.items():
        for candidate in (folder / gz_name, folder / gz_name[: -len(".gz")]):
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            return None
    return found


def _has_dataset(place: pathlib.Path, name: str) -> bool:
    """Whether ``place`` (a folder, or a CSV file) holds data for ``name``."""
    if place.is_file():
        return place.suffix.lower() == ".csv"
    if not place.is_dir():
        return False
    if name != _CSV_NAME and _idx_files(place) is not None:
        return True
    return (place / "train.csv").is_file()


def _looked_for(name: str) -> str:
    csv = "train.csv (+ optional test.csv)"
    if name == _CSV_NAME:
        return csv
    names = ", ".join(f"{f}[.gz]" for f in (n[: -len(".gz")] for n in _IDX_FILES.values()))
    return f"{names}, or {csv}"


def _search_pointed(root: pathlib.Path, name: str, what: str) -> pathlib.Path:
    """Resolve a place the user pointed at: ``root/name`` first, then ``root``."""
    root = root.expanduser()
    if not root.exists():
        raise DataError(f"{what} {root} does not exist; point it at the folder that holds the {name} files")
    for place in (root / name, root):
        if _has_dataset(place, name):
            return place
    for place in (root / name, root):
        present = [f for f in _IDX_FILES.values() if (place / f).is_file() or (place / f[:-3]).is_file()]
        if present and name != _CSV_NAME:
            missing = [f for f in _IDX_FILES.values() if f not in present]
            raise DataError(
                f"{what} {root}: {place} holds only part of the {name} IDX files "
                f"(missing {', '.join(missing)}, gzipped or raw); copy the missing files there"
            )
    raise DataError(
        f"{what} {root}: no {name} data in it or in {root / name} "
        f"(looked for {_looked_for(name)}); point it at the folder that holds them"
    )


def find_data_dir(name: str, data_dir=None) -> pathlib.Path | None:
    """Return the first place holding data set ``name``, or None.

    Look-up order: ``data_dir``; ``$FASTMLP_DATA_DIR``; the data set's system
    folders (``/usr/share/datasets/<name>``); ``cache_dir()/<name>``. For the
    first two, ``<dir>/<name>`` is tried before ``<dir>`` itself, so they may
    point at a parent folder holding ``mnist/`` and ``fashion-mnist/``; a
    ``.csv`` file is also accepted. If ``data_dir`` or ``$FASTMLP_DATA_DIR``
    is given but holds no data, ``DataError`` is raised rather than looking
    elsewhere. None means "not found anywhere, download it".
    """
    _check_name(name)
    if data_dir is not None:
        return _search_pointed(pathlib.Path(data_dir), name, "data folder")
    env = os.environ.get("FASTMLP_DATA_DIR")
    if env:
        return _search_pointed(pathlib.Path(env), name, "FASTMLP_DATA_DIR")
    if name == _CSV_NAME:
        return None
    for folder in (*map(pathlib.Path, DATASETS[name].get("system_dirs", ())), cache_dir() / name):
        if _has_dataset(folder, name):
            return folder
    return None


# --------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------

# Far above the largest file (~26 MB); stops a misbehaving server early.
_MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024


def download(name: str, dest_dir, mirrors: Sequence[str] | None = None, timeout: float = 30.0,
             checksums: Mapping[str, str] | None = None) -> pathlib.Path:
    """Download the gzipped IDX files of ``name`` into ``dest_dir``.

    ``checksums`` maps file name -> expected SHA-256 (hex) and says which
    files to fetch; by default ``DATASETS[name]["sha256"]``. ``mirrors`` is a
    list of base URLs tried in order (the file name is appended); by default
    ``DATASETS[name]["mirrors"]``. Passing both lets tests (or other data
    sets) use this function with any server.

    Files already in ``dest_dir`` are kept as they are. Each missing file is
    streamed to a ``.part`` temp file in ``dest_dir``, hashed on the way, and
    moved to its final name only if the hash matches; otherwise the next
    mirror is tried. Nothing partial is ever left behind. Returns
    ``dest_dir`` as a Path; raises ``DataError`` if every mirror fails for a
    file.
    """
    if checksums is None or mirrors is None:
        if name not in DATASETS:
            raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
        spec = DATASETS[name]
        checksums = spec["sha256"] if checksums is None else checksums
        mirrors = spec["mirrors"] if mirrors is None else mirrors
    dest = pathlib.Path(dest_dir).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create download folder {dest} ({_one_line(e)}); set FASTMLP_CACHE_DIR to a "
            "writable folder, or pass --data-dir / set FASTMLP_DATA_DIR to a folder with the files"
        ) from None
    for filename, sha256 in checksums.items():
        final = dest / filename
        if final.exists():
            continue
        print(f"fastmlp: downloading {name} {filename} to {dest}", file=sys.stderr, flush=True)
        reasons = []
        for base in mirrors:
            url = (base if base.endswith("/") else base + "/") + filename
            reason = _fetch(url, sha256.lower(), final, timeout)
            if reason is None:
                break
            reasons.append(f"{url}: {reason}")
        else:
            raise DataError(
                f"could not download {filename} (expected sha256 {sha256}): "
                + ("; ".join(reasons) or "no mirrors given")
                + ". On a machine without internet, copy the files into a folder and pass "
                "--data-dir or set FASTMLP_DATA_DIR"
            )
    return dest


def _fetch(url: str, sha256: str, final: pathlib.Path, timeout: float) -> str | None:
    """Download ``url`` to ``final`` if its SHA-256 matches.

    Returns None on success, else a short reason why this mirror failed.
    """
    tmp = None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            with tempfile.NamedTemporaryFile(
                dir=final.parent, prefix=final.name + ".", suffix=".part", delete=False
            ) as f:
                tmp = f.name
                digest = hashlib.sha256()
                # BufferedReader.read(2) blocks until 2 bytes or end of body.
                head = resp.read(2)
                if head != _GZIP_MAGIC:
                    if not head:
                        return "empty response"
                    if head.lstrip()[:1] == b"<":
                        return "got an HTML page, not a gzip file"
                    return f"not a gzip file (starts with {head.hex()})"
                digest.update(head)
                f.write(head)
                total = len(head)
                while chunk := resp.read(1 << 20):
                    total += len(chunk)
                    if total > _MAX_DOWNLOAD_BYTES:
                        return f"response larger than {_MAX_DOWNLOAD_BYTES} bytes"
                    digest.update(chunk)
                    f.write(chunk)
        got = digest.hexdigest()
        if got != sha256:
            return f"sha256 mismatch (got {got[:16]}...)"
        os.replace(tmp, final)
        tmp = None
        return None
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code} {e.reason}"
    except urllib.error.URLError as e:
        return _one_line(e.reason)
    except TimeoutError:
        return f"timed out after {timeout:g} s"
    except (OSError, ValueError, http.client.HTTPException) as e:
        return f"{type(e).__name__}: {_one_line(e)}"
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def load_dataset(name: str = "mnist", data_dir=None, normalize: bool = True, flatten: bool = True,
                 one_hot: bool = False, download: bool = True) -> Dataset:
    """Find (or download) data set ``name`` and return it as a :class:`Dataset`.

    ``name`` is ``"mnist"``, ``"fashion-mnist"`` or ``"csv"`` (the latter
    requires ``data_dir`` or ``$FASTMLP_DATA_DIR`` to point at a Kaggle-style
    CSV folder or file). See :func:`find_data_dir` for where it looks. A
    folder holding ``train.csv`` instead of IDX files is also accepted for
    the named data sets; the result is then named ``"csv"``.

    normalize: float32 pixels in [0, 1] (``x / 255``) instead of uint8.
    flatten: images as ``(n, 784)`` instead of ``(n, 28, 28)``.
    one_hot: labels as float32 ``(n, n_classes)`` instead of int64 ``(n,)``.
    download: fetch into ``cache_dir()/name`` if found nowhere, instead of
    raising ``DataError``.
    """
    place = find_data_dir(name, data_dir)
    if place is None:
        if name == _CSV_NAME:
            raise DataError(
                "the csv dataset needs a folder with train.csv: pass --data-dir or set FASTMLP_DATA_DIR"
            )
        target = cache_dir() / name
        if not download:
            places = [*DATASETS[name].get("system_dirs", ()), str(target)]
            raise DataError(
                f"{name} data not found (looked in {', '.join(places)}); pass --data-dir or set "
                "FASTMLP_DATA_DIR to a folder holding the four IDX files, or allow downloading"
            )
        place = _download(name, target)

    idx = None if place.is_file() or name == _CSV_NAME else _idx_files(place)
    if idx is not None:
        class_names = tuple(DATASETS[name]["class_names"])
        x_train, y_train = _read_idx_pair(idx["train_images"], idx["train_labels"], len(class_names))
        x_test, y_test = _read_idx_pair(idx["test_images"], idx["test_labels"], len(class_names))
        if x_train.shape[1:] != x_test.shape[1:]:
            raise DataError(
                f"{place}: train images are {x_train.shape[1:]} but test images are "
                f"{x_test.shape[1:]}; the files come from different data sets"
            )
        ds_name, source = name, str(place)
    else:
        x_train, y_train, x_test, y_test, class_names, source = _load_csv_split(place)
        ds_name = _CSV_NAME

    n_classes = len(class_names)
    x_train, y_train = _convert(x_train, y_train, n_classes, normalize, flatten, one_hot, source)
    x_test, y_test = _convert(x_test, y_test, n_classes, normalize, flatten, one_hot, source)
    return Dataset(ds_name, x_train, y_train, x_test, y_test, tuple(class_names), source)


# ``load_dataset`` has a parameter called ``download``, which hides the function.
_download = download


def load_mnist(normalize: bool = True, flatten: bool = True, one_hot: bool = False, data_dir=None,
               download: bool = True) -> Dataset:
    """MNIST handwritten digits; see :func:`load_dataset`."""
    return load_dataset("mnist", data_dir, normalize, flatten, one_hot, download)


def load_fashion_mnist(normalize: bool = True, flatten: bool = True, one_hot: bool = False,
                       data_dir=None, download: bool = True) -> Dataset:
    """Fashion-MNIST clothing images; see :func:`load_dataset`."""
    return load_dataset("fashion-mnist", data_dir, normalize, flatten, one_hot, download)


def _read_idx_pair(images_path, labels_path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check an images file ``(n, h, w)`` uint8 and a labels
    file ``(n,)``; returns (uint8 images, int64 labels)."""
    x = read_idx(images_path)
    y = read_idx(labels_path)
    if x.dtype != np.uint8 or x.ndim not in (2, 3):
        raise DataError(
            f"{images_path}: expected uint8 images of shape (n, h, w), found {x.dtype} "
            f"{x.shape}; check that this is an images file"
        )
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(
            f"{labels_path}: expected integer labels of shape (n,), found {y.dtype} {y.shape}; "
            "check that this is a labels file"
        )
    if len(x) != len(y):
        raise DataError(
            f"{labels_path}: holds {len(y)} labels but {images_path} holds {len(x)} images; "
            "the files do not belong together"
        )
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(
            f"{labels_path}: labels range from {y.min()} to {y.max()}, expected 0..{n_classes - 1}"
        )
    return x, y.astype(np.int64)


def _load_csv_split(place: pathlib.Path):
    """Read a CSV folder (or a single CSV file) into a train/test split.

    Labels are re-coded to 0..k-1 in the order of their sorted values; the
    original values become the class names.
    """
    if place.is_file():
        train_csv, test_csv = place, None
    else:
        train_csv, test_csv = place / "train.csv", place / "test.csv"
        # Kaggle's own test.csv has no labels, so it cannot be a test set.
        if not test_csv.is_file() or "label" not in _csv_header(test_csv):
            test_csv = None

    x, y = read_csv(train_csv)
    if test_csv is not None:
        x_test, y_test = read_csv(test_csv)
        if x_test.shape[1] != x.shape[1]:
            raise DataError(
                f"{test_csv}: has {x_test.shape[1]} pixel columns but {train_csv} has {x.shape[1]}"
            )
        x_train, y_train = x, y
        source = f"{train_csv} + {test_csv.name}"
    else:
        n = len(y)
        if n < 2:
            raise DataError(f"{train_csv}: needs at least 2 rows to hold some out as a test set")
        n_test = max(1, n // 6)
        order = np.random.default_rng(0).permutation(n)
        # Sorting keeps both parts in file order, which makes them easy to inspect.
        train_rows, test_rows = np.sort(order[: n - n_test]), np.sort(order[n - n_test:])
        x_train, y_train = x[train_rows], y[train_rows]
        x_test, y_test = x[test_rows], y[test_rows]
        source = f"{train_csv} (test = 1/6 held-out rows)"

    values = np.union1d(y_train, y_test)
    class_names = tuple(str(v) for v in values)
    y_train = np.searchsorted(values, y_train).astype(np.int64)
    y_test = np.searchsorted(values, y_test).astype(np.int64)
    return x_train, y_train, x_test, y_test, class_names, source


def _convert(x: np.ndarray, y: np.ndarray, n_classes: int, normalize: bool, flatten: bool,
             one_hot: bool, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Apply the normalize/flatten/one_hot options to uint8 images ``x`` of
    shape ``(n, h, w)`` or ``(n, f)`` and int64 class indices ``y``."""
    n = len(x)
    if flatten:
        x = x.reshape(n, -1)
    elif x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise DataError(
                f"{source}: {x.shape[1]} pixels per row is not a square image; use flatten=True"
            )
        x = x.reshape(n, side, side)
    if normalize:
        x = np.divide(x, np.float32(255.0), dtype=np.float32)
    if one_hot:
        y = np.eye(n_classes, dtype=np.float32)[y]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _one_line(obj) -> str:
    """``str(obj)`` squeezed onto one line (messages must be one line)."""
    return " ".join(str(obj).split())


def _preview(names: list[str], limit: int = 4) -> str:
    shown = ",".join(names[:limit])
    return shown + (",..." if len(names) > limit else "")
