"""Tests for fastmlp.data: IDX/CSV parsing, look-up order, downloading, real data.

Real MNIST / Fashion-MNIST are only used when FASTMLP_DATA_DIR points at a
folder holding ``mnist/`` and ``fashion-mnist/``; downloads are tested
against a local HTTP server, never the real mirrors.
"""

import functools
import gzip
import hashlib
import http.server
import os
import pathlib
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from fastmlp import data
from fastmlp.data import DATASETS, DataError

# Captured before the autouse fixture below hides the variable from the code under test.
REAL_DATA_DIR = os.environ.get("FASTMLP_DATA_DIR")
needs_real_data = pytest.mark.skipif(
    not REAL_DATA_DIR, reason="FASTMLP_DATA_DIR is not set (it should point at a folder with mnist/ and fashion-mnist/)"
)

IDX_NAMES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]
DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
IDX_CODES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    """No test sees the user's data folder, cache or system folders."""
    monkeypatch.delenv("FASTMLP_DATA_DIR", raising=False)
    monkeypatch.setenv("FASTMLP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    for spec in DATASETS.values():
        monkeypatch.setitem(spec, "system_dirs", ())


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def idx_bytes(arr):
    """Reference IDX encoding, written independently of write_idx."""
    arr = np.asarray(arr)
    code = {np.dtype(v).newbyteorder("="): k for k, v in IDX_CODES.items()}[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.dtype(IDX_CODES[code])).tobytes()


def reference_parse(raw):
    """The array a well-formed (uncompressed) IDX byte string encodes, or None."""
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_CODES or not 1 <= raw[3] <= 4:
        return None
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        return None
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(IDX_CODES[raw[2]])
    count = int(np.prod(dims, dtype=object))
    if len(raw) - 4 - 4 * ndim != count * dtype.itemsize:
        return None
    return np.frombuffer(raw, dtype, count, 4 + 4 * ndim).reshape(dims)


def same_array(got, expected):
    """Equal shape, native dtype and bytes (NaN-safe)."""
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected.dtype.newbyteorder("=")
    assert got.dtype.isnative
    assert got.shape == expected.shape
    assert got.astype(expected.dtype).tobytes() == expected.tobytes()


def assert_one_line_error(excinfo, *fragments):
    msg = str(excinfo.value)
    assert "\n" not in msg
    for frag in fragments:
        assert str(frag) in msg, (frag, msg)


def make_images(n, rng, side=28):
    return rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)


def make_labels(n, rng, n_classes=10):
    # Every class appears at least once (given n >= n_classes).
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    return y.astype(np.uint8)


def write_tiny_idx(folder, gz=True, n_train=50, n_test=20, seed=0):
    """Write a tiny MNIST-like IDX set into ``folder``; return its arrays."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": make_images(n_train, rng),
        "train-labels-idx1-ubyte.gz": make_labels(n_train, rng),
        "t10k-images-idx3-ubyte.gz": make_images(n_test, rng),
        "t10k-labels-idx1-ubyte.gz": make_labels(n_test, rng),
    }
    for name, arr in arrays.items():
        data.write_idx(folder / (name if gz else name[:-3]), arr)
    return arrays


def write_csv(path, labels, pixels, header=None):
    n_pix = pixels.shape[1] if pixels.ndim == 2 else 0
    header = header or "label," + ",".join(f"pixel{i}" for i in range(n_pix))
    lines = [header] + [",".join(map(str, [lab, *row])) for lab, row in zip(labels, pixels)]
    pathlib.Path(path).write_text("\n".join(lines) + "\n")


def sha256_of(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------
# IDX round trip
# --------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_idx_round_trip(tmp_path, dtype, ndim, gz):
    rng = np.random.default_rng(ndim)
    shape = (5, 3, 2)[:ndim]
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(dtype)
    arr = rng.uniform(-100, 100, size=shape).astype(dtype)
    arr.flat[0] = info.max
    arr.flat[-1] = info.min
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    data.write_idx(path, arr)

    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == gz
    assert (gzip.decompress(raw) if gz else raw) == idx_bytes(arr)
    got = data.read_idx(path)
    same_array(got, arr)
    got[...] = 0  # writable
    assert os.listdir(tmp_path) == [path.name]  # no temp files left behind


def test_gzip_detected_by_content_not_name(tmp_path):
    arr = np.arange(12, dtype=np.int16).reshape(3, 4)
    gz_named_raw = tmp_path / "raw.gz"
    gz_named_raw.write_bytes(idx_bytes(arr))
    raw_named_gz = tmp_path / "compressed.idx"
    raw_named_gz.write_bytes(gzip.compress(idx_bytes(arr)))
    same_array(data.read_idx(gz_named_raw), arr)
    same_array(data.read_idx(raw_named_gz), arr)


def test_write_idx_rejects_unsupported(tmp_path):
    with pytest.raises(TypeError):
        data.write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError):
        data.write_idx(tmp_path / "x", np.zeros((1,) * 5, dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_write_idx_replaces_existing_file(tmp_path):
    path = tmp_path / "a.gz"
    data.write_idx(path, np.zeros(4, np.uint8))
    data.write_idx(path, np.ones(2, np.uint8))
    same_array(data.read_idx(path), np.ones(2, np.uint8))


# --------------------------------------------------------------------------
# IDX corruption
# --------------------------------------------------------------------------

GOOD = idx_bytes(np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4))  # 16-byte header + 24 bytes
GOOD_I32 = idx_bytes(np.arange(6, dtype=np.int32))  # 8-byte header + 24 bytes

CORRUPTIONS = {
    "wrong-magic": (b"\x01\x00" + GOOD[2:], "not an IDX file"),
    "wrong-magic-2": (b"\x00\x07" + GOOD[2:], "not an IDX file"),
    "unknown-dtype": (GOOD[:2] + b"\x0a" + GOOD[3:], "unknown IDX data type"),
    "ndim-0": (GOOD[:3] + b"\x00" + GOOD[4:], "dimension count 0"),
    "ndim-5": (GOOD[:3] + b"\x05" + GOOD[4:], "dimension count 5"),
    "empty": (b"", "truncated IDX header"),
    "header-3-bytes": (GOOD[:3], "truncated IDX header"),
    "header-partial-dims": (GOOD[:10], "truncated IDX header"),
    "header-no-data": (GOOD[:16], "truncated IDX file"),
    "data-1-short": (GOOD[:-1], "truncated IDX file"),
    "data-half": (GOOD[:28], "truncated IDX file"),
    "data-17": (GOOD[:17], "truncated IDX file"),
    "int32-partial-item": (GOOD_I32[:-2], "truncated IDX file"),
    "trailing-1": (GOOD + b"\0", "1 trailing bytes"),
    "trailing-many": (GOOD + bytes(100), "100 trailing bytes"),
    "huge-dims": (b"\0\0\x08\x03" + b"\xff\xff\xff\xff" * 3 + bytes(10), "truncated IDX file"),
    "huge-dims-float64": (b"\0\0\x0e\x04" + b"\xff\xff\xff\xff" * 4, "truncated IDX file"),
}


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corrupt_idx(tmp_path, case, gz):
    raw, fragment = CORRUPTIONS[case]
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataError) as excinfo:
        data.read_idx(path)
    assert_one_line_error(excinfo, path, fragment)


def test_truncated_message_counts(tmp_path):
    path = tmp_path / "t.idx"
    path.write_bytes(GOOD[:20])
    with pytest.raises(DataError, match="header says 24 bytes of data.*found 4"):
        data.read_idx(path)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[: len(b) // 2],  # stream cut short
        lambda b: b[:-4],  # trailer incomplete
        lambda b: b[:10] + bytes(len(b) - 10),  # deflate data zeroed
        lambda b: b[:-8] + b"\xde\xad\xbe\xef" + b[-4:],  # CRC mismatch
        lambda b: b + b"garbage",  # junk after the stream
        lambda b: b[:2],  # only the magic
    ],
    ids=["cut", "trailer", "zeroed", "crc", "junk", "magic-only"],
)
def test_corrupt_gzip(tmp_path, mangle):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(mangle(gzip.compress(GOOD)))
    with pytest.raises(DataError) as excinfo:
        data.read_idx(path)
    assert_one_line_error(excinfo, path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "t10k-images-idx3-ubyte.gz"
    with pytest.raises(DataError) as excinfo:
        data.read_idx(path)
    assert_one_line_error(excinfo, path, "no such file")


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(DataError) as excinfo:
        data.read_idx(tmp_path)
    assert_one_line_error(excinfo, tmp_path)


# --------------------------------------------------------------------------
# IDX properties: arbitrary input parses correctly or raises DataError
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("hypothesis") / "f.idx"


idx_like = st.builds(
    lambda code, ndim, dims, payload: bytes([0, 0, code, ndim])
    + b"".join(d.to_bytes(4, "big") for d in dims[:ndim])
    + payload,
    st.sampled_from([*IDX_CODES, 0x00, 0x0A, 0xFF]),
    st.integers(0, 5),
    st.lists(st.integers(0, 4), min_size=5, max_size=5),
    st.binary(max_size=80),
)


@settings(max_examples=200, deadline=None)
@given(raw=st.one_of(st.binary(max_size=64), idx_like), compress=st.booleans())
def test_arbitrary_bytes_parse_or_dataerror(scratch, raw, compress):
    scratch.write_bytes(gzip.compress(raw) if compress else raw)
    expected = reference_parse(raw)
    if expected is None:
        with pytest.raises(DataError):
            data.read_idx(scratch)
    else:
        same_array(data.read_idx(scratch), expected)


@settings(max_examples=200, deadline=None)
@given(
    arr=hnp.arrays(
        st.sampled_from(DTYPES),
        hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4),
    ),
    compress=st.booleans(),
    cut=st.floats(0, 1),
    extra=st.binary(max_size=8),
)
def test_truncated_or_extended_valid_file(scratch, arr, compress, cut, extra):
    full = idx_bytes(arr)
    stored = gzip.compress(full) if compress else full
    # Cutting the file as stored: for gzip that cuts the compressed stream.
    n = int(cut * len(stored))
    scratch.write_bytes(stored[:n])
    if n == len(stored):
        same_array(data.read_idx(scratch), arr)
    else:
        with pytest.raises(DataError):
            data.read_idx(scratch)
    # Extra bytes after the data (inside the gzip stream when compressed).
    scratch.write_bytes(gzip.compress(full + extra) if compress else full + extra)
    if extra:
        with pytest.raises(DataError, match="trailing bytes"):
            data.read_idx(scratch)
    else:
        same_array(data.read_idx(scratch), arr)


# --------------------------------------------------------------------------
# load_dataset on tiny synthetic IDX data
# --------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_load_tiny_idx_defaults(tmp_path, gz):
    arrays = write_tiny_idx(tmp_path, gz=gz)
    ds = data.load_dataset("mnist", data_dir=tmp_path, download=False)
    assert ds.name == "mnist"
    assert ds.source == str(tmp_path)
    assert ds.x_train.shape == (50, 784) and ds.x_test.shape == (20, 784)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.y_train.shape == (50,) and ds.y_test.shape == (20,)
    assert ds.n_features == 784 and ds.n_classes == 10
    assert ds.class_names == tuple("0123456789")
    np.testing.assert_array_equal(
        ds.x_train, arrays["train-images-idx3-ubyte.gz"].reshape(50, -1).astype(np.float32) / np.float32(255)
    )
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte.gz"])
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("flatten", [True, False])
@pytest.mark.parametrize("one_hot", [True, False])
def test_load_options(tmp_path, normalize, flatten, one_hot):
    arrays = write_tiny_idx(tmp_path)
    ds = data.load_mnist(normalize=normalize, flatten=flatten, one_hot=one_hot, data_dir=tmp_path)
    assert ds.x_train.shape == ((50, 784) if flatten else (50, 28, 28))
    assert ds.x_test.shape == ((20, 784) if flatten else (20, 28, 28))
    assert ds.x_train.dtype == (np.float32 if normalize else np.uint8)
    assert ds.n_features == 784
    images = arrays["train-images-idx3-ubyte.gz"]
    if not normalize:
        np.testing.assert_array_equal(ds.x_train.reshape(images.shape), images)
    labels = arrays["train-labels-idx1-ubyte.gz"]
    if one_hot:
        assert ds.y_train.shape == (50, 10) and ds.y_train.dtype == np.float32
        np.testing.assert_array_equal(ds.y_train.argmax(1), labels)
        np.testing.assert_array_equal(ds.y_train.sum(1), 1)
    else:
        assert ds.y_train.shape == (50,) and ds.y_train.dtype == np.int64
        np.testing.assert_array_equal(ds.y_train, labels)
    for arr in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert arr.flags.c_contiguous


def test_mixed_gz_and_raw_files(tmp_path):
    write_tiny_idx(tmp_path, gz=True)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    data.write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((20, 28, 28), np.uint8))
    ds = data.load_dataset("mnist", data_dir=tmp_path)
    assert ds.x_test.shape == (20, 784) and ds.x_test.max() == 0


def test_fashion_class_names(tmp_path):
    write_tiny_idx(tmp_path)
    ds = data.load_fashion_mnist(data_dir=tmp_path)
    assert ds.name == "fashion-mnist"
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[-1] == "Ankle boot"
    assert ds.n_classes == 10


def test_env_parent_folder(tmp_path, monkeypatch):
    write_tiny_idx(tmp_path / "mnist", seed=1)
    write_tiny_idx(tmp_path / "fashion-mnist", n_train=30, seed=2)
    monkeypatch.setenv("FASTMLP_DATA_DIR", str(tmp_path))
    assert data.find_data_dir("mnist") == tmp_path / "mnist"
    mnist = data.load_dataset("mnist", download=False)
    fashion = data.load_dataset("fashion-mnist", download=False)
    assert mnist.source == str(tmp_path / "mnist") and len(mnist.x_train) == 50
    assert fashion.source == str(tmp_path / "fashion-mnist") and len(fashion.x_train) == 30


def test_env_folder_itself(tmp_path, monkeypatch):
    write_tiny_idx(tmp_path)
    monkeypatch.setenv("FASTMLP_DATA_DIR", str(tmp_path))
    assert data.find_data_dir("mnist") == tmp_path


def test_explicit_dir_beats_env(tmp_path, monkeypatch):
    write_tiny_idx(tmp_path / "a", n_train=40)
    write_tiny_idx(tmp_path / "b", n_train=30)
    monkeypatch.setenv("FASTMLP_DATA_DIR", str(tmp_path / "b"))
    assert len(data.load_mnist(data_dir=tmp_path / "a").x_train) == 40


@pytest.mark.parametrize("how", ["argument", "env"])
def test_pointed_at_empty_folder_is_an_error(tmp_path, monkeypatch, how):
    (tmp_path / "empty").mkdir()
    kwargs = {}
    if how == "env":
        monkeypatch.setenv("FASTMLP_DATA_DIR", str(tmp_path / "empty"))
    else:
        kwargs["data_dir"] = tmp_path / "empty"
    # download=True: pointing at a folder must not fall back to downloading.
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("mnist", download=True, **kwargs)
    assert_one_line_error(excinfo, tmp_path / "empty", "train-images-idx3-ubyte")
    assert not any(data.cache_dir().iterdir())


def test_pointed_at_missing_folder(tmp_path):
    with pytest.raises(DataError) as excinfo:
        data.find_data_dir("mnist", tmp_path / "nope")
    assert_one_line_error(excinfo, tmp_path / "nope", "does not exist")


def test_incomplete_folder_is_an_error(tmp_path):
    write_tiny_idx(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as excinfo:
        data.load_mnist(data_dir=tmp_path)
    assert_one_line_error(excinfo, tmp_path, "missing t10k-labels-idx1-ubyte.gz")


def test_nothing_anywhere_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTMLP_CACHE_DIR", str(tmp_path / "cache"))
    assert data.find_data_dir("mnist") is None
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("mnist", download=False)
    assert_one_line_error(excinfo, tmp_path / "cache" / "mnist", "FASTMLP_DATA_DIR", "--data-dir")


def test_system_dir_then_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTMLP_CACHE_DIR", str(tmp_path / "cache"))
    write_tiny_idx(tmp_path / "cache" / "mnist", n_train=30)
    assert data.find_data_dir("mnist") == tmp_path / "cache" / "mnist"
    assert len(data.load_mnist(download=False).x_train) == 30
    write_tiny_idx(tmp_path / "system", n_train=40)
    monkeypatch.setitem(DATASETS["mnist"], "system_dirs", (str(tmp_path / "system"),))
    assert len(data.load_mnist(download=False).x_train) == 40


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTMLP_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("FASTMLP_CACHE_DIR")
    assert data.cache_dir() == tmp_path / "xdg" / "fastmlp"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "fastmlp"


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="unknown dataset"):
        data.load_dataset("cifar10")


def test_image_label_count_mismatch(tmp_path):
    write_tiny_idx(tmp_path)
    data.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(49, np.uint8))
    with pytest.raises(DataError) as excinfo:
        data.load_mnist(data_dir=tmp_path)
    assert_one_line_error(excinfo, "train-labels-idx1-ubyte.gz", "49 labels", "50 images")


def test_label_out_of_range(tmp_path):
    write_tiny_idx(tmp_path)
    data.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(20, 10, np.uint8))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz.*0..9"):
        data.load_mnist(data_dir=tmp_path)


def test_swapped_images_and_labels(tmp_path):
    write_tiny_idx(tmp_path)
    os.replace(tmp_path / "train-labels-idx1-ubyte.gz", tmp_path / "tmp")
    os.replace(tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "train-labels-idx1-ubyte.gz")
    os.replace(tmp_path / "tmp", tmp_path / "train-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        data.load_mnist(data_dir=tmp_path)


# --------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------


def csv_arrays(n, n_pix=784, seed=0, n_classes=10):
    rng = np.random.default_rng(seed)
    return make_labels(n, rng, n_classes).astype(np.int64), rng.integers(0, 256, (n, n_pix), dtype=np.uint8)


def test_read_csv(tmp_path):
    y, x = csv_arrays(7, n_pix=5)
    write_csv(tmp_path / "train.csv", y, x)
    got_x, got_y = data.read_csv(tmp_path / "train.csv")
    assert got_x.dtype == np.uint8 and got_y.dtype == np.int64
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)


def test_read_csv_label_not_first(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('"a","label","b"\r\n1,7,2\r\n\r\n3,8,4\r\n')
    x, y = data.read_csv(path)
    np.testing.assert_array_equal(x, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(y, [7, 8])


def test_csv_with_test_file(tmp_path):
    y, x = csv_arrays(30)
    yt, xt = csv_arrays(12, seed=1)
    write_csv(tmp_path / "train.csv", y, x)
    write_csv(tmp_path / "test.csv", yt, xt)
    for name in ("csv", "mnist"):
        ds = data.load_dataset(name, data_dir=tmp_path)
        assert ds.name == "csv"
        assert ds.x_train.shape == (30, 784) and ds.x_test.shape == (12, 784)
        assert ds.class_names == tuple("0123456789")
        np.testing.assert_array_equal(ds.y_test, yt)
        np.testing.assert_array_equal(ds.x_test, xt / np.float32(255))
        assert "test.csv" in ds.source


@pytest.mark.parametrize("test_csv", ["absent", "unlabelled"])
def test_csv_held_out_split(tmp_path, test_csv):
    y, x = csv_arrays(30)
    write_csv(tmp_path / "train.csv", y, x)
    if test_csv == "unlabelled":  # Kaggle's test.csv: pixels only
        (tmp_path / "test.csv").write_text(
            ",".join(f"pixel{i}" for i in range(784)) + "\n" + ",".join(["0"] * 784) + "\n"
        )
    ds = data.load_dataset("csv", data_dir=tmp_path, normalize=False, flatten=False)
    assert ds.x_train.shape == (25, 28, 28) and ds.x_test.shape == (5, 28, 28)
    assert "held-out" in ds.source and "train.csv" in ds.source
    # Together the two parts are exactly the rows of train.csv.
    rows = {r.tobytes() + bytes([lab]) for r, lab in zip(x, y)}
    got = {r.tobytes() + bytes([lab]) for r, lab in zip(ds.x_train.reshape(25, -1), ds.y_train)}
    got |= {r.tobytes() + bytes([lab]) for r, lab in zip(ds.x_test.reshape(5, -1), ds.y_test)}
    assert got == rows
    again = data.load_dataset("csv", data_dir=tmp_path, normalize=False, flatten=False)
    np.testing.assert_array_equal(again.y_test, ds.y_test)


def test_csv_file_path_and_label_recoding(tmp_path):
    y, x = csv_arrays(12, n_pix=9, n_classes=2)
    y = np.where(y == 0, 3, 7)
    write_csv(tmp_path / "digits.csv", y, x)
    ds = data.load_dataset("csv", data_dir=tmp_path / "digits.csv", one_hot=True, flatten=False)
    assert ds.class_names == ("3", "7") and ds.n_classes == 2
    assert ds.y_train.shape == (10, 2) and ds.x_train.shape == (10, 3, 3)
    assert ds.n_features == 9


def test_csv_not_square(tmp_path):
    y, x = csv_arrays(12, n_pix=10)
    write_csv(tmp_path / "train.csv", y, x)
    assert data.load_dataset("csv", data_dir=tmp_path).x_train.shape == (10, 10)
    with pytest.raises(DataError, match="square"):
        data.load_dataset("csv", data_dir=tmp_path, flatten=False)


def test_csv_needs_a_folder():
    with pytest.raises(DataError, match="train.csv"):
        data.load_dataset("csv")


BAD_CSV = {
    "empty": ("", "empty CSV"),
    "blank-first-line": ("\n1,2\n", "empty CSV"),
    "header-only": ("label,p0,p1\n", "no data rows"),
    "no-label-column": ("digit,p0,p1\n1,2,3\n", "no 'label' column"),
    "two-label-columns": ("label,label,p0\n1,2,3\n", "more than one"),
    "label-only": ("label\n1\n", "no pixel columns"),
    "short-row": ("label,p0,p1\n1,2,3\n1,2\n", "line 3 has 2 values"),
    "long-row": ("label,p0,p1\n1,2,3,4\n", "line 2 has 4 values"),
    "all-rows-short": ("label,p0,p1\n1,2\n3,4\n", "line 2 has 2 values"),
    "non-numeric": ("label,p0,p1\n1,2,3\n1,x,3\n", "line 3, column 'p0'"),
    "empty-cell": ("label,p0,p1\n1,,3\n", "not an integer"),
    "float-cell": ("label,p0,p1\n1,2.5,3\n", "not an integer"),
    "pixel-256": ("label,p0,p1\n1,2,3\n1,2,256\n", "line 3, column 'p1': pixel value 256"),
    "pixel-negative": ("label,p0,p1\n1,-1,3\n", "pixel value -1"),
    "pixel-overflow": ("label,p0,p1\n1,99999999999,3\n", "pixel value 99999999999"),
    "label-negative": ("label,p0,p1\n-2,1,3\n", "negative label"),
}


@pytest.mark.parametrize("case", BAD_CSV)
def test_malformed_csv(tmp_path, case):
    text, fragment = BAD_CSV[case]
    path = tmp_path / "train.csv"
    path.write_text(text)
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("csv", data_dir=tmp_path)
    assert_one_line_error(excinfo, path, fragment)


def test_malformed_test_csv(tmp_path):
    y, x = csv_arrays(6, n_pix=4)
    write_csv(tmp_path / "train.csv", y, x)
    write_csv(tmp_path / "test.csv", y, x[:, :3])
    with pytest.raises(DataError, match="test.csv"):
        data.load_dataset("csv", data_dir=tmp_path)


# --------------------------------------------------------------------------
# download, against a local HTTP server
# --------------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serve tmp_path/www over HTTP; yields (root folder, base URL)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def mirrors(server):
    """Folders good/, wrong/, html/, missing/ on the server; returns (URLs, checksums)."""
    root, url = server
    arrays = write_tiny_idx(root / "good")
    checksums = {name: sha256_of(root / "good" / name) for name in IDX_NAMES}
    for kind in ("wrong", "html", "missing"):
        (root / kind).mkdir()
    for name, arr in arrays.items():
        data.write_idx(root / "wrong" / name, np.zeros_like(arr))  # valid gzip, wrong hash
        (root / "html" / name).write_text("<!DOCTYPE html><html>Not here</html>")
    urls = {kind: f"{url}{kind}/" for kind in ("good", "wrong", "html", "missing")}
    urls["dead"] = "http://127.0.0.1:1/"  # nothing listens on port 1
    return urls, checksums


@pytest.mark.parametrize("first", ["wrong", "html", "missing", "dead"])
def test_download_falls_back_to_second_mirror(tmp_path, mirrors, first, capsys):
    urls, checksums = mirrors
    dest = tmp_path / "dest"
    got = data.download("mnist", dest, mirrors=[urls[first], urls["good"]], timeout=5, checksums=checksums)
    assert got == dest
    assert sorted(os.listdir(dest)) == sorted(IDX_NAMES)
    for name in IDX_NAMES:
        assert sha256_of(dest / name) == checksums[name]
    assert len(capsys.readouterr().err.strip().splitlines()) == 4


@pytest.mark.parametrize(
    "kinds, fragments",
    [
        (["wrong", "html", "missing"], ["sha256 mismatch", "HTML page", "HTTP 404"]),
        (["dead"], ["127.0.0.1:1"]),
        ([], ["no mirrors"]),
    ],
)
def test_download_all_mirrors_bad(tmp_path, mirrors, kinds, fragments):
    urls, checksums = mirrors
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as excinfo:
        data.download("mnist", dest, mirrors=[urls[k] for k in kinds], timeout=5, checksums=checksums)
    assert_one_line_error(
        excinfo, "train-images-idx3-ubyte.gz", checksums["train-images-idx3-ubyte.gz"], "FASTMLP_DATA_DIR", *fragments
    )
    assert list(dest.iterdir()) == []


def test_download_keeps_existing_files(tmp_path, mirrors):
    urls, checksums = mirrors
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / IDX_NAMES[0]).write_bytes(b"already here")
    data.download("mnist", dest, mirrors=[urls["good"]], checksums=checksums)
    assert (dest / IDX_NAMES[0]).read_bytes() == b"already here"
    assert sorted(os.listdir(dest)) == sorted(IDX_NAMES)


def test_load_dataset_downloads_into_cache(tmp_path, mirrors, monkeypatch):
    urls, checksums = mirrors
    monkeypatch.setenv("FASTMLP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(DATASETS["mnist"], "mirrors", [urls["html"], urls["good"]])
    monkeypatch.setitem(DATASETS["mnist"], "sha256", checksums)
    ds = data.load_mnist()
    assert ds.source == str(tmp_path / "cache" / "mnist")
    assert ds.x_train.shape == (50, 784)
    assert sorted(os.listdir(tmp_path / "cache" / "mnist")) == sorted(IDX_NAMES)
    # Second time: found in the cache, no download needed.
    monkeypatch.setitem(DATASETS["mnist"], "mirrors", [])
    assert data.load_mnist(download=False).x_test.shape == (20, 784)


# --------------------------------------------------------------------------
# real data (only with FASTMLP_DATA_DIR)
# --------------------------------------------------------------------------


@needs_real_data
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_data(name):
    ds = data.load_dataset(name, data_dir=REAL_DATA_DIR, download=False)
    assert ds.name == name
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.x_train.dtype == np.float32
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    for y in (ds.y_train, ds.y_test):
        assert y.dtype == np.int64
        np.testing.assert_array_equal(np.unique(y), np.arange(10))


@needs_real_data
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_checksums(name):
    folder = data.find_data_dir(name, REAL_DATA_DIR)
    for filename, expected in DATASETS[name]["sha256"].items():
        assert sha256_of(folder / filename) == expected, filename
