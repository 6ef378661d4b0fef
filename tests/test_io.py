"""Model files: round trip, atomic writes, and refusing anything that needs pickle."""

import os

import numpy as np
import pytest

import fastmlp
from fastmlp import MLP, DataError, FastMLPError
from fastmlp.io import atomic_write


def test_round_trip_keeps_parameters_predictions_and_class_names(tmp_path):
    model = MLP((6, 5, 3), activation="tanh", dtype="float64", seed=4)
    path = tmp_path / "m.npz"
    fastmlp.save(model, path, class_names=["a", "b", "c"])
    back = fastmlp.load(path)
    assert back.sizes == (6, 5, 3) and back.activation.name == "tanh" and back.dtype == np.float64
    assert np.array_equal(back.params, model.params)
    assert back.class_names == ["a", "b", "c"]
    x = np.random.default_rng(0).random((9, 6))
    assert np.array_equal(back.predict(x), model.predict(x))
    assert [f for f in os.listdir(tmp_path)] == ["m.npz"]


def test_round_trip_keeps_a_logistic_output(tmp_path):
    model = MLP((6, 4, 1), dtype="float64", seed=2, loss="logistic")
    model.params[-1] = 0.3  # the output bias, so class 1 and class 0 both occur
    fastmlp.save(model, tmp_path / "m.npz")
    back = fastmlp.load(tmp_path / "m.npz")
    assert back.loss == "logistic" and back.sizes == (6, 4, 1)
    x = np.random.default_rng(1).standard_normal((20, 6))
    np.testing.assert_array_equal(back.predict_proba(x), model.predict_proba(x))
    assert back.predict_proba(x).shape == (20, 2)


def test_pickled_object_arrays_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, meta=np.array([{"a": 1}], dtype=object), W0=np.zeros((2, 2)))
    with pytest.raises(DataError, match="pickle"):
        fastmlp.load(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a zip file at all", b"PK\x03\x04truncated"],
)
def test_garbage_files_are_data_errors(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match="bad.npz"):
        fastmlp.load(path)


def test_missing_file_and_foreign_npz_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="no such model file"):
        fastmlp.load(tmp_path / "nope.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DataError, match="not a fastmlp model file"):
        fastmlp.load(tmp_path / "other.npz")


def test_wrong_shapes_are_refused(tmp_path):
    model = MLP((6, 5, 3))
    path = tmp_path / "m.npz"
    fastmlp.save(model, path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["W1"] = np.zeros((5, 4), dtype=np.float32)
    np.savez(path, **arrays)
    with pytest.raises(DataError, match="W1"):
        fastmlp.load(path)


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(b"previous")

    def half_then_fail(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(FastMLPError, match="No space left"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["m.npz"]


def test_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FastMLPError, match="cannot write"):
        fastmlp.save(MLP((3, 2)), blocker / "sub" / "m.npz")


def test_written_files_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        fastmlp.save(MLP((3, 2)), tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o644
