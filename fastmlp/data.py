"""MNIST-style data sets: which ones are known, where they are found, and
loading them into a :class:`Dataset`.

The file formats live in :mod:`fastmlp.formats`, downloading in
:mod:`fastmlp.download`. Three on-disk layouts are understood:

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

import math
import os
import pathlib
from collections.abc import Mapping, Sequence
import hashlib
from dataclasses import dataclass, field

import numpy as np

from .download import fetch_files
from .errors import DataError
from .files import FolderBusy, lock_folder, remove_stale_temps, sha256_file
from .formats import csv_header, read_csv, read_idx, write_idx

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
#: ``content_sha256`` file name (without ``.gz``) -> SHA-256 of the IDX content,
#:                  so that local copies, gzipped or raw, are recognised
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
        "content_sha256": {
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
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
        "content_sha256": {
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
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


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test split ready for training.

    Images are ``(n, n_features)`` when flattened, else ``(n, h, w)``;
    ``float32`` in ``[0, 1]`` when normalised, else ``uint8``. Labels are
    ``int64`` of shape ``(n,)`` holding class indices, or ``float32`` of shape
    ``(n, n_classes)`` when one-hot encoded.

    ``location`` is where the files were found (an absolute path to pass as
    ``data_dir`` to find them again) and ``files`` maps each file read to the
    SHA-256 of its content (decompressed for IDX): a fingerprint of the data.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple
    source: str
    location: str | None = None
    files: Mapping[str, str] = field(default_factory=dict)

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


def download(name: str, dest_dir, mirrors: Sequence[str] | None = None, timeout: float = 30.0,
             checksums: Mapping[str, str] | None = None, deadline: float = 600.0) -> pathlib.Path:
    """Download the gzipped IDX files of ``name`` into ``dest_dir`` (see
    :func:`fastmlp.download.fetch_files`).

    ``checksums`` maps file name -> expected SHA-256 (hex) and says which
    files to fetch; by default ``DATASETS[name]["sha256"]``. ``mirrors`` is a
    list of base URLs tried in order (the file name is appended); by default
    ``DATASETS[name]["mirrors"]``. Passing both lets tests (or other data
    sets) use this function with any server. ``timeout`` bounds each network
    operation, ``deadline`` the download of one file (seconds).
    """
    if checksums is None or mirrors is None:
        if name not in DATASETS:
            raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
        spec = DATASETS[name]
        checksums = spec["sha256"] if checksums is None else checksums
        mirrors = spec["mirrors"] if mirrors is None else mirrors
    return fetch_files(name, dest_dir, mirrors, checksums, timeout, deadline)


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
    elif place == cache_dir() / name:
        _tidy_cache(place, DATASETS[name]["sha256"])

    idx = None if place.is_file() or name == _CSV_NAME else _idx_files(place)
    if idx is not None:
        class_names = tuple(DATASETS[name]["class_names"])
        files = {}
        x_train, y_train = _read_idx_pair(idx["train_images"], idx["train_labels"], len(class_names), files)
        x_test, y_test = _read_idx_pair(idx["test_images"], idx["test_labels"], len(class_names), files)
        _check_identity(name, idx, files)
        if x_train.shape[1:] != x_test.shape[1:]:
            raise DataError(
                f"{place}: train images are {x_train.shape[1:]} but test images are "
                f"{x_test.shape[1:]}; the files come from different data sets"
            )
        ds_name, source = name, str(place)
    else:
        x_train, y_train, x_test, y_test, class_names, source, files = _load_csv_split(place)
        ds_name = _CSV_NAME

    n_classes = len(class_names)
    x_train, y_train = _convert(x_train, y_train, n_classes, normalize, flatten, one_hot, source)
    x_test, y_test = _convert(x_test, y_test, n_classes, normalize, flatten, one_hot, source)
    return Dataset(ds_name, x_train, y_train, x_test, y_test, tuple(class_names), source,
                   str(place.resolve()), files)


def _tidy_cache(folder: pathlib.Path, names) -> None:
    """Remove the temp files that killed downloads left in a cache folder, unless a
    download into it is running (it holds the folder's lock)."""
    try:
        lock = lock_folder(folder)
    except (FolderBusy, OSError):
        return
    try:
        remove_stale_temps(folder, list(names))
    finally:
        if lock is not None:
            os.close(lock)


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


def _read_idx_pair(images_path, labels_path, n_classes: int, files: dict) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check an images file ``(n, h, w)`` uint8 and a labels
    file ``(n,)``; returns (uint8 images, int64 labels) and puts the SHA-256 of
    each file's content into ``files`` (file name -> hex)."""
    x, y = (_read_idx_hashed(p, files) for p in (images_path, labels_path))
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
    if x.size == 0:
        raise DataError(
            f"{images_path}: holds no pixels (shape {'x'.join(map(str, x.shape))}); "
            "a training or test set needs at least one image; check that this is the right file"
        )
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(
            f"{labels_path}: labels range from {y.min()} to {y.max()}, expected 0..{n_classes - 1}"
        )
    return x, y.astype(np.int64)


def _read_idx_hashed(path: pathlib.Path, files: dict) -> np.ndarray:
    digest = hashlib.sha256()
    arr = read_idx(path, digest=digest)
    files[path.name] = digest.hexdigest()
    return arr


def _check_identity(name: str, idx: dict, files: dict) -> None:
    """A DataError if a file's content is a known file of another data set, or of
    another role (test images standing as train images)."""
    known = {sha: (other, stem) for other, spec in DATASETS.items()
             for stem, sha in spec.get("content_sha256", {}).items()}
    for role, path in idx.items():
        if files[path.name] not in known:
            continue
        other, stem = known[files[path.name]]
        wanted = _IDX_FILES[role][: -len(".gz")]
        if other != name:
            raise DataError(
                f"{path} is {other}'s {stem} (its content matches the published SHA-256), but {name} was asked for; "
                f"ask for {other} (--dataset {other}) or point --data-dir at the {name} files"
            )
        if stem != wanted:
            raise DataError(
                f"{path} is {name}'s {stem} (its content matches the published SHA-256), not {wanted}; "
                "put each file under its own name"
            )


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
        if not test_csv.is_file() or "label" not in csv_header(test_csv):
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
    files = {p.name: sha256_file(p) for p in (train_csv, test_csv) if p is not None}
    return x_train, y_train, x_test, y_test, class_names, source, files


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
