"""Every reader of model and checkpoint members is bounded (issue 23, families 4 and 5):
JSON depth, size and number ranges; the zip directory; declared sizes and compression
ratios checked against a memory budget before anything is decompressed."""

import io
import json
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from robust_helpers import TINY, assert_one_line_error, run_main

import fastmlp
from fastmlp import DataError, jsonlimits
from fastmlp.checkpoint import NAME, load_checkpoint, save_checkpoint
from fastmlp.io import NpzFile, model_arrays
from fastmlp.zipbudget import FREE_BYTES, INFLATE_RATIO, MAX_MEMBERS

MiB = 1 << 20
FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _meta_text(sizes_literal="[3, 2]", extra=""):
    """The meta JSON of a 3-2 model, with the sizes written as ``sizes_literal`` and
    ``extra`` (``, "key": value``) added, as text: the literals reach the parser as written."""
    meta = json.loads(str(model_arrays(fastmlp.MLP((3, 2)))["meta"]))
    meta["sizes"] = "@SIZES@"
    return json.dumps(meta).replace('"@SIZES@"', sizes_literal)[:-1] + extra + "}"


def _model_file(path, meta_text):
    W, b = fastmlp.MLP((3, 2)).get_layers()[0]
    np.savez(path, meta=np.array(meta_text), W0=W, b0=b)
    return path


def _one_data_error(fn, path, *needles):
    """fn() raises one DataError: one line, naming ``path`` and each needle."""
    with pytest.raises(DataError) as excinfo:
        fn()
    msg = str(excinfo.value)
    assert "\n" not in msg and str(path) in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


def _peak(fn):
    """(fn(), the most bytes traced as allocated while it ran; NumPy's arrays included)."""
    tracemalloc.start()
    try:
        return fn(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------------
# JSON: depth, size, number literals
# --------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet="ab[]{}\"\\,:", max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet="k[{\"", max_size=3), inner, max_size=4),
    max_leaves=20,
)


def _true_depth(value):
    if isinstance(value, list):
        return 1 + max(map(_true_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_true_depth, value.values()), default=0)
    return 0


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_bounded_json_parses_what_json_parses_and_measures_its_depth(value):
    text = json.dumps(value)
    assert jsonlimits.depth(text) == _true_depth(value)  # brackets inside strings do not count
    assert jsonlimits.loads(text) == json.loads(text)


def _nested(depth, kinds):
    """A JSON value nested ``depth`` deep, level i an array or an object as ``kinds`` says."""
    kinds = [kinds(i) for i in range(depth)]
    return "".join("[" if k == "[" else '{"a":' for k in kinds) + "1" + "".join("]" if k == "[" else "}" for k in reversed(kinds))


@FAST
@given(depth=st.sampled_from([jsonlimits.MAX_DEPTH, 100, 5000, 200_000]),
       kinds=st.sampled_from([lambda i: "[", lambda i: "{", lambda i: "[{"[i % 2]]))
def test_deeply_nested_meta_is_one_data_error(tmp_path, depth, kinds):
    path = _model_file(tmp_path / "m.npz", _meta_text(extra=f', "x": {_nested(depth, kinds)}'))
    _one_data_error(lambda: fastmlp.load(path), path, "nested", "levels deep")


@FAST
@given(depth=st.integers(0, jsonlimits.MAX_DEPTH - 1))
def test_meta_nested_within_the_limit_loads(tmp_path, depth):
    # the meta object itself is one level
    path = _model_file(tmp_path / "m.npz", _meta_text(extra=f', "x": {_nested(depth, lambda i: "[{"[i % 2])}'))
    assert fastmlp.load(path).sizes == (3, 2)


def test_meta_longer_than_the_json_limit_is_one_data_error(tmp_path):
    path = _model_file(tmp_path / "m.npz", _meta_text(extra=f', "x": "{"a" * jsonlimits.MAX_CHARS}"'))
    _one_data_error(lambda: fastmlp.load(path), path, "member 'meta' has", "more than the")
    with pytest.raises(jsonlimits.JSONLimitError, match="characters of JSON"):
        jsonlimits.loads(" " * (jsonlimits.MAX_CHARS + 1))


huge_literals = st.one_of(
    st.sampled_from(["1e400", "-1e400", "1" + "0" * 400, "1e999999999", "2.5e308"]),
    st.integers(41, 4000).map(lambda n: "9" * n),  # longer than any number fastmlp writes
    st.integers(309, 10**6).map(lambda e: f"1e{e}"),  # beyond a float
)
# Numbers a float or int holds, but no layer can have.
bad_sizes = st.one_of(st.sampled_from(["1e300", "5.5", "2.0", "0", "-3", "true", "2147483648", "10000000000000000000"]),
                      st.integers(2**31, 2**63).map(str), st.integers(-2**63, 0).map(str),
                      st.floats(allow_nan=False, allow_infinity=False).map(repr))


@FAST
@given(literal=st.one_of(huge_literals, bad_sizes))
def test_layer_sizes_out_of_range_are_one_data_error(tmp_path, literal):
    path = _model_file(tmp_path / "m.npz", _meta_text(f"[3, {literal}, 2]"))
    _one_data_error(lambda: fastmlp.load(path), path)


@FAST
@given(literal=huge_literals)
def test_huge_number_literals_anywhere_in_the_meta_are_one_data_error(tmp_path, literal):
    path = _model_file(tmp_path / "m.npz", _meta_text(extra=f', "note": {{"n": [{literal}]}}'))
    _one_data_error(lambda: fastmlp.load(path), path, "member 'meta'")


# --------------------------------------------------------------------------
# checkpoint counters
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_parts(tmp_path_factory):
    """(meta text, arrays) of a valid Adam checkpoint."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6)).astype(np.float32)
    trainer = fastmlp.Trainer(fastmlp.MLP((6, 5, 2), seed=0), optimizer="adam", lr=0.01, batch_size=10,
                              progress=False, log=None)
    trainer.fit(x, (x[:, 0] > 0).astype(np.int64), 1)
    path = tmp_path_factory.mktemp("ck") / NAME
    save_checkpoint(path, trainer)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    return str(arrays.pop("meta")), arrays


def _with_counter(meta_text, literal):
    meta = json.loads(meta_text)
    meta["checkpoint"]["optimizer_counters"]["t"] = "@T@"
    return json.dumps(meta).replace('"@T@"', literal)


@FAST
@given(literal=st.one_of(huge_literals, st.sampled_from(["1e300", "-1e300", "Infinity", "NaN", "-1", "true", "\"7\""]),
                         st.integers(2**53 + 1, 2**64).map(str), st.floats(2.0**53 * 1.01, 1e308).map(repr)))
def test_an_optimiser_counter_out_of_range_is_one_data_error(tmp_path, checkpoint_parts, literal):
    meta_text, arrays = checkpoint_parts
    path = tmp_path / NAME
    np.savez(path, meta=np.array(_with_counter(meta_text, literal)), **arrays)
    _one_data_error(lambda: load_checkpoint(path), path)


@pytest.mark.parametrize("literal", ["1e300", "1e400", "1" + "0" * 400])
def test_crafted_numbers_through_resume_are_one_line_not_a_bug(tmp_path, tiny_dir, capsys, literal):
    out = tmp_path / "run"
    code, _, err = run_main(capsys, "--data-dir", tiny_dir, "--out", out, *TINY, "--quiet")
    assert code == 0, err
    with np.load(out / NAME) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays.pop("meta")))
    sized = dict(meta, sizes="@S@")
    for text in (_with_counter(json.dumps(meta), literal), json.dumps(sized).replace('"@S@"', f"[784, {literal}, 10]")):
        np.savez(out / NAME, meta=np.array(text), **arrays)
        code, _, err = run_main(capsys, "--resume", out)
        assert_one_line_error(code, err, NAME)
        assert "bug" not in err


# --------------------------------------------------------------------------
# the zip directory and member sizes, before anything is decompressed
# --------------------------------------------------------------------------


def _npy_header(shape, dtype="<f4"):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _bomb(path, hidden, dtype="float32", zero_members=("W0",)):
    """A deflated model file of sizes (784, hidden, 10) whose members are zeros: tiny on
    disk, ``hidden`` * 794 * itemsize bytes inflated."""
    meta = json.loads(str(model_arrays(fastmlp.MLP((784, 2, 10)))["meta"]))
    meta.update(sizes=[784, hidden, 10], dtype=dtype)
    item = np.dtype(dtype).itemsize
    chunk = bytes(16 * MiB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        buf = io.BytesIO()
        np.save(buf, np.array(json.dumps(meta)))
        z.writestr("meta.npy", buf.getvalue())
        for name, shape in (("W0", (784, hidden)), ("b0", (hidden,)), ("W1", (hidden, 10)), ("b1", (10,))):
            with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                f.write(_npy_header(shape, np.dtype(dtype).str))
                left = int(np.prod(shape)) * item
                while left > 0:
                    f.write(chunk[:min(left, len(chunk))])
                    left -= len(chunk)
    return path


def test_the_deflate_bomb_of_the_issue_is_refused_before_inflating(tmp_path):
    """0.31 MB on disk, 318 MB inflated: fastmlp.load peaked at 1.1 GB; now nothing is inflated."""
    path = _bomb(tmp_path / "bomb.npz", 100_000)
    assert path.stat().st_size < 0.5 * MiB
    _, peak = _peak(lambda: _one_data_error(lambda: fastmlp.load(path), path, "compression bomb"))
    assert peak < 2 * MiB, f"{peak / MiB:.1f} MiB traced"


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(over=st.floats(1.01, 3), dtype=st.sampled_from(["float32", "float64"]))
def test_deflated_members_beyond_the_budget_are_refused_before_allocating(tmp_path, over, dtype):
    hidden = int(over * FREE_BYTES / (794 * np.dtype(dtype).itemsize))
    need = hidden * 794 * np.dtype(dtype).itemsize
    path = _bomb(tmp_path / "bomb.npz", hidden, dtype)
    _, peak = _peak(lambda: _one_data_error(lambda: fastmlp.load(path), path, "compression bomb"))
    assert peak < 2 * MiB, f"{peak / MiB:.1f} MiB traced for {need / MiB:.0f} MiB declared"


def test_a_small_deflated_model_within_the_free_allowance_loads(tmp_path):
    path = _bomb(tmp_path / "small.npz", 1000)
    model = fastmlp.load(path)
    assert model.sizes == (784, 1000, 10) and not model.params.any()


def test_an_uncompressed_file_of_any_size_is_within_its_budget(tmp_path):
    model = fastmlp.MLP((784, 12000, 10), seed=1)  # 38 MB: beyond the free allowance, stored as fastmlp writes
    fastmlp.save(model, tmp_path / "m.npz")
    assert np.array_equal(fastmlp.load(tmp_path / "m.npz").params, model.params)


def _zip_of(members, compression=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return bytearray(buf.getvalue())


def test_a_zip_directory_of_too_many_members_is_refused_before_parsing(tmp_path):
    members = {f"junk{i}.npy": b"" for i in range(MAX_MEMBERS + 1)}
    path = tmp_path / "m.npz"
    path.write_bytes(bytes(_zip_of(members)))
    _one_data_error(lambda: fastmlp.load(path), path, "zip directory lists")


def _patch_sizes(raw, name, compressed=None, inflated=None):
    """Set the compressed / inflated sizes of ``name`` in the central directory."""
    at = raw.find(b"PK\x01\x02")
    while at != -1:
        n = struct.unpack_from("<H", raw, at + 28)[0]
        if raw[at + 46: at + 46 + n] == name.encode():
            if compressed is not None:
                struct.pack_into("<I", raw, at + 20, compressed)
            if inflated is not None:
                struct.pack_into("<I", raw, at + 24, inflated)
            return raw
        at = raw.find(b"PK\x01\x02", at + 4)
    raise AssertionError(name)


@FAST
@given(case=st.sampled_from(["beyond-the-file", "stored-grows", "beyond-deflate"]), factor=st.integers(2, 1000))
def test_member_sizes_that_cannot_be_true_are_refused(tmp_path, case, factor):
    W, b = fastmlp.MLP((30, 20)).get_layers()[0]
    members = {}
    for name, arr in (("meta", np.array(_meta_text("[30, 20]"))), ("W0", W), ("b0", b)):
        buf = io.BytesIO()
        np.save(buf, arr)
        members[f"{name}.npy"] = buf.getvalue()
    compression = zipfile.ZIP_DEFLATED if case == "beyond-deflate" else zipfile.ZIP_STORED
    raw = _zip_of(members, compression)
    info = zipfile.ZipFile(io.BytesIO(bytes(raw))).getinfo("W0.npy")
    if case == "beyond-the-file":
        raw = _patch_sizes(raw, "W0.npy", compressed=len(raw) * factor, inflated=len(raw) * factor)
    elif case == "stored-grows":
        raw = _patch_sizes(raw, "W0.npy", inflated=info.file_size * factor)
    else:
        raw = _patch_sizes(raw, "W0.npy", inflated=info.compress_size * 1100 * factor)
    path = tmp_path / "m.npz"
    path.write_bytes(bytes(raw))
    _one_data_error(lambda: fastmlp.load(path), path, "W0")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 6), mib=st.integers(1, 24))
def test_what_one_archive_inflates_in_all_stays_within_its_budget(tmp_path, n, mib):
    """Members that each fit, read one after another: the total is what is bounded."""
    path = tmp_path / "a.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(n):
            with z.open(f"m{i}.npy", "w") as f:
                f.write(_npy_header((mib * MiB,), "|u1"))
                f.write(bytes(mib * MiB))
    with NpzFile(path) as npz:
        limit, got = npz.budget.limit, 0
        assert limit == max(FREE_BYTES, INFLATE_RATIO * path.stat().st_size)
        for i in range(n):
            try:
                got += npz.read(f"m{i}").nbytes
            except DataError as exc:
                assert "compression bomb" in str(exc) and npz.budget.used + mib * MiB + 4096 > limit
                break
        assert got <= limit and npz.budget.used <= limit
