"""A Kaggle-style CSV is read in bounded memory (issue 23, family 5): parsed in blocks
straight into the arrays it produces, never more than about twice those arrays."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fastmlp import DataError, csvrows
from fastmlp.formats import read_csv

MiB = 1 << 20


def _write(path, names, rows, newline="\n", blank_every=0, trailing_newline=True):
    lines = [",".join(names)]
    for i, row in enumerate(rows):
        if blank_every and i % blank_every == 0:
            lines.append("")
        lines.append(",".join(map(str, row)))
    path.write_text(newline.join(lines) + (newline if trailing_newline else ""))
    return path


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 40), pixels=st.integers(1, 12), label_at=st.integers(0, 12), block=st.integers(1, 64),
       newline=st.sampled_from(["\n", "\r\n"]), blank_every=st.integers(0, 5), trailing=st.booleans(),
       seed=st.integers(0, 2**16))
def test_block_parse_gives_exactly_the_rows_of_the_file(tmp_path, monkeypatch, n, pixels, label_at, block, newline,
                                                       blank_every, trailing, seed):
    """Whatever the shape, line endings, blank lines and block size: every row, in order."""
    monkeypatch.setattr(csvrows, "BLOCK_VALUES", block)
    rng = np.random.default_rng(seed)
    label_at = min(label_at, pixels)
    x = rng.integers(0, 256, (n, pixels))
    y = rng.integers(0, 10**9, n)
    table = np.insert(x, label_at, y, axis=1)
    names = [f"p{i}" for i in range(pixels)]
    names.insert(label_at, "label")
    path = _write(tmp_path / "t.csv", names, table, newline, blank_every, trailing)
    got_x, got_y = read_csv(path)
    assert got_x.dtype == np.uint8 and got_y.dtype == np.int64
    assert np.array_equal(got_x, x) and np.array_equal(got_y, y)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad_row=st.integers(0, 30), kind=st.sampled_from(["pixel-256", "negative-label", "short", "text"]),
       block=st.integers(1, 200))
def test_a_bad_row_in_any_block_names_its_line(tmp_path, monkeypatch, bad_row, kind, block):
    monkeypatch.setattr(csvrows, "BLOCK_VALUES", block)
    rows = [[1, 2, 3]] * 31
    rows[bad_row] = {"pixel-256": [1, 2, 256], "negative-label": [-1, 2, 3], "short": [1, 2], "text": [1, "x", 3]}[kind]
    path = _write(tmp_path / "t.csv", ["label", "a", "b"], rows)
    with pytest.raises(DataError, match=rf"line {bad_row + 2}\b") as excinfo:
        read_csv(path)
    assert "\n" not in str(excinfo.value)


def test_an_endless_data_line_is_refused_before_it_is_read_whole(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"label,a,b\n1,2,3\n" + b"4" * (64 * MiB))  # one 64 MB "row" of three columns

    def read():
        with pytest.raises(DataError, match="line 3 is longer than"):
            read_csv(path)

    tracemalloc.start()
    try:
        read()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB, f"{peak / MiB:.1f} MiB traced"


@pytest.mark.parametrize("values", ["digits", "bytes"])
def test_a_dense_csv_peaks_at_most_twice_the_arrays_it_produces(tmp_path, values):
    """The issue's case, smaller: a dense train.csv (every pixel a value) peaked at 15 times the file."""
    rng = np.random.default_rng(0)
    low, high = (0, 10) if values == "digits" else (100, 256)
    rows = 6000 if values == "digits" else 3000
    table = rng.integers(low, high, (rows, 785))
    path = tmp_path / "train.csv"
    with open(path, "w") as f:
        f.write("label," + ",".join(f"pixel{i}" for i in range(784)) + "\n")
        np.savetxt(f, table, fmt="%d", delimiter=",")
    tracemalloc.start()
    try:
        x, y = read_csv(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    produced = x.nbytes + y.nbytes
    assert np.array_equal(x, table[:, 1:]) and np.array_equal(y, table[:, 0])
    allowed = 2 * produced + 16 * csvrows.BLOCK_VALUES  # twice the arrays, and one block of parsing
    assert peak <= allowed, f"{peak / MiB:.1f} MiB traced for {produced / MiB:.1f} MiB of arrays " \
                            f"from a {path.stat().st_size / MiB:.1f} MiB file"
