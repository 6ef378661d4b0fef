"""Hostile data files: memory stays bounded by what the header may claim, and every
failure is one DataError line. Files that claim to be huge are sparse or compress
well, so these tests stay small and fast."""

import gzip
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from test_data import isolated_env  # noqa: F401  (fixture)

from fastmlp import data
from fastmlp.data import DataError
from fastmlp.formats import MAX_IDX_BYTES

MiB = 1 << 20
_ZEROS_MEMBER = gzip.compress(bytes(64 * MiB), compresslevel=1)  # ~64 KB that inflate to 64 MiB


def idx_header(dims, code=0x08):
    return bytes([0, 0, code, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)


def gzip_bomb(path, dims, members):
    """A gzip file whose first member holds an IDX header for ``dims`` and whose next
    ``members`` members each inflate to 64 MiB of zeros."""
    path.write_bytes(gzip.compress(idx_header(dims)) + _ZEROS_MEMBER * members)
    return path


def peak_bytes(fn):
    """(exception raised by fn(), peak bytes traced while it ran)."""
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as excinfo:
            fn()
        return excinfo.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_gzip_bomb_behind_a_valid_header_stops_at_what_the_header_claims(tmp_path):
    path = gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", (10, 28, 28), members=4)  # 256 MiB inflated
    err, peak = peak_bytes(lambda: data.read_idx(path))
    assert "trailing bytes" in str(err) and str(path) in str(err)
    assert peak < 8 * MiB, f"{peak / MiB:.0f} MiB held while reading a file whose header claims 7840 bytes"


def test_gzip_header_claiming_more_than_the_limit_is_refused_before_reading(tmp_path):
    n = MAX_IDX_BYTES // 784 + 1
    path = gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", (n, 28, 28), members=5)  # can hold 320 MiB
    err, peak = peak_bytes(lambda: data.read_idx(path))
    assert f"more than the {MAX_IDX_BYTES >> 20} MiB" in str(err)
    assert peak < 8 * MiB


def test_gzip_header_claiming_more_than_the_file_can_hold(tmp_path):
    path = gzip_bomb(tmp_path / "x.gz", (60000, 28, 28), members=0)
    err, peak = peak_bytes(lambda: data.read_idx(path))
    assert "truncated IDX file" in str(err) and "gzip file can hold" in str(err)
    assert peak < MiB


@pytest.mark.parametrize("size", [300 * MiB, 40 * 10**9], ids=["300MiB", "40GB"])
def test_sparse_raw_file_claiming_huge_sizes_is_refused_before_allocating(tmp_path, size):
    path = tmp_path / "train-images-idx3-ubyte"
    n = (size - 16) // 784
    with open(path, "wb") as f:
        f.write(idx_header((n, 28, 28)))
        f.truncate(16 + n * 784)  # sparse: no disk space used
    err, peak = peak_bytes(lambda: data.read_idx(path))
    assert "more than the" in str(err) and "MiB fastmlp reads" in str(err)
    assert peak < MiB


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "train-images-idx3-ubyte.gz"
    os.mkfifo(fifo)
    code = f"from fastmlp import data\ntry:\n data.read_idx({str(fifo)!r})\nexcept data.DataError as e:\n print(e)"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("read_idx blocked on a FIFO")
    assert "FIFO" in out.stdout and "not a regular file" in out.stdout, out


@pytest.mark.parametrize("split", ["train", "t10k"])
def test_zero_item_idx_files_are_a_data_error(tmp_path, split):
    from test_data import write_tiny_idx

    write_tiny_idx(tmp_path)
    data.write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", np.zeros((0, 28, 28), np.uint8))
    data.write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.zeros(0, np.uint8))
    with pytest.raises(DataError, match=f"{split}-images-idx3-ubyte.gz: holds no pixels"):
        data.load_mnist(data_dir=tmp_path)


def test_csv_with_a_non_utf8_byte_after_8kb_names_the_line(tmp_path):
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    rows = [",".join(["1"] + ["0"] * 784)] * 20  # ~31 KB before the bad byte
    (tmp_path / "train.csv").write_bytes(("\n".join([header, *rows]) + "\n").encode() + b"2,\xff" + b",0" * 783 + b"\n")
    with pytest.raises(DataError, match=r"train.csv: line 22 is not UTF-8 text \(byte 0xff"):
        data.load_dataset("csv", data_dir=tmp_path)


def test_csv_whose_first_line_never_ends(tmp_path):
    (tmp_path / "train.csv").write_bytes(b"label," + b"p" * (2 * MiB))
    with pytest.raises(DataError, match="first line is longer than 1 MiB"):
        data.load_dataset("csv", data_dir=tmp_path)


# --------------------------------------------------------------------------
# which data set a folder really holds
# --------------------------------------------------------------------------


def _content_hashes(folder):
    import hashlib

    return {p.name[:-3]: hashlib.sha256(gzip.decompress(p.read_bytes())).hexdigest() for p in folder.glob("*.gz")}


def test_files_of_the_other_known_dataset_are_an_error_naming_both(tmp_path, monkeypatch):
    from test_data import write_tiny_idx

    write_tiny_idx(tmp_path)
    monkeypatch.setitem(data.DATASETS["fashion-mnist"], "content_sha256", _content_hashes(tmp_path))
    with pytest.raises(DataError) as excinfo:
        data.load_mnist(data_dir=tmp_path)
    msg = str(excinfo.value)
    assert "is fashion-mnist's train-images-idx3-ubyte" in msg and "but mnist was asked for" in msg
    assert data.load_fashion_mnist(data_dir=tmp_path).x_train.shape == (50, 784)


def test_a_known_file_under_another_files_name_is_an_error(tmp_path, monkeypatch):
    from test_data import write_tiny_idx

    write_tiny_idx(tmp_path, n_train=20, n_test=20)
    monkeypatch.setitem(data.DATASETS["mnist"], "content_sha256", _content_hashes(tmp_path))
    train, test = tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "t10k-images-idx3-ubyte.gz"
    train_bytes = train.read_bytes()
    train.write_bytes(test.read_bytes())
    test.write_bytes(train_bytes)
    with pytest.raises(DataError, match="is mnist's t10k-images-idx3-ubyte .* not train-images-idx3-ubyte"):
        data.load_mnist(data_dir=tmp_path)


def test_the_dataset_records_where_it_came_from_and_a_fingerprint(tmp_path):
    from test_data import write_tiny_idx

    write_tiny_idx(tmp_path / "gz")
    write_tiny_idx(tmp_path / "raw", gz=False)
    gz = data.load_mnist(data_dir=tmp_path / "gz")
    raw = data.load_mnist(data_dir=tmp_path / "raw")
    assert gz.location == str((tmp_path / "gz").resolve())
    assert sorted(gz.files) == sorted(p.name for p in (tmp_path / "gz").iterdir())
    assert sorted(gz.files.values()) == sorted(raw.files.values())  # the content, not the compression


@pytest.mark.skipif(not os.environ.get("FASTMLP_DATA_DIR"), reason="FASTMLP_DATA_DIR is not set")
def test_real_fashion_files_asked_for_as_mnist(tmp_path):
    import test_data

    real = os.path.join(test_data.REAL_DATA_DIR, "fashion-mnist")
    for name in os.listdir(real):
        os.symlink(os.path.join(real, name), tmp_path / name)
    with pytest.raises(DataError, match="is fashion-mnist's train-images-idx3-ubyte .* but mnist was asked for"):
        data.load_mnist(data_dir=tmp_path)
