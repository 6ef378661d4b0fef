"""Tests for fastmlp.plots: real PNGs, atomic writes, input checking."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from fastmlp import plots
from fastmlp.plots import confusion_matrix, plot_confusion, plot_history, plot_samples

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DIGITS = [str(i) for i in range(10)]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def assert_png(path, min_side=200):
    """A real, readable PNG of non-trivial size, and nothing else in its folder."""
    path = pathlib.Path(path)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5000
    import matplotlib.image

    img = matplotlib.image.imread(str(path))
    assert img.ndim == 3 and img.shape[0] >= min_side and img.shape[1] >= min_side
    # Not a blank canvas.
    assert float(img[..., :3].std()) > 0.01
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def make_history(epochs=3, steps=20, val=True, seed=0):
    rng = np.random.default_rng(seed)
    n = epochs * steps
    x = np.arange(n)
    loss = (0.05 + 2.2 * np.exp(-x / max(n / 5, 1))) * np.exp(rng.normal(0, 0.3, n))
    h = {
        "iter_loss": loss.tolist(),
        "steps_per_epoch": steps,
        "epoch": list(range(1, epochs + 1)),
        "train_loss": [float(loss[i * steps:(i + 1) * steps].mean()) for i in range(epochs)],
        "train_acc": list(np.linspace(0.90, 0.99, epochs)),
        "test_acc": list(np.linspace(0.89, 0.97, epochs)),
    }
    if val:
        h["val_acc"] = list(np.linspace(0.88, 0.975, epochs))
        h["val_loss"] = list(np.linspace(0.5, 0.1, epochs))
    return h


def labels(n=500, k=10, acc=0.85, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < acc, y, rng.integers(0, k, n))
    return y, pred


# ---------------------------------------------------------------------------
# confusion_matrix
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 7, 10])
def test_confusion_matrix_matches_hand_loop(k):
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, 1000)
    p = rng.integers(0, k, 1000)
    expected = np.zeros((k, k), dtype=np.int64)
    for a, b in zip(y, p):
        expected[a, b] += 1
    cm = confusion_matrix(y, p, k)
    assert cm.dtype == np.int64 and cm.shape == (k, k)
    np.testing.assert_array_equal(cm, expected)
    assert cm.sum() == 1000


def test_confusion_matrix_rows_are_true_labels():
    cm = confusion_matrix([0, 0, 1], [1, 1, 1], 2)
    np.testing.assert_array_equal(cm, [[0, 2], [0, 1]])


def test_confusion_matrix_accepts_lists_int32_and_whole_floats():
    ref = confusion_matrix([0, 1, 2], [2, 1, 0], 3)
    np.testing.assert_array_equal(
        confusion_matrix(np.array([0, 1, 2], np.int32), np.array([2.0, 1.0, 0.0]), 3), ref
    )
    assert confusion_matrix(np.array([0, 1, 2], np.uint8), [2, 1, 0], np.int64(3)).sum() == 3


def test_confusion_matrix_empty_is_zero():
    cm = confusion_matrix([], [], 4)
    assert cm.shape == (4, 4) and cm.dtype == np.int64 and cm.sum() == 0


@pytest.mark.parametrize(
    "y, p, k, match",
    [
        ([0, 1], [0], 2, "different lengths"),
        ([0, 2], [0, 1], 2, "outside"),
        ([0, -1], [0, 1], 2, "outside"),
        ([[0, 1]], [[0, 1]], 2, "1-D"),
        ([0.5, 1.0], [0, 1], 2, "whole-number"),
        ([True, False], [0, 1], 2, "integer"),
        (["a", "b"], [0, 1], 2, "integer"),
        ([0, 1], [0, 1], 0, "at least 1"),
        ([0, 1], [0, 1], True, "int"),
        ([0, 1], [0, 1], 2.0, "int"),
    ],
)
def test_confusion_matrix_bad_input(y, p, k, match):
    with pytest.raises(ValueError, match=match):
        confusion_matrix(y, p, k)


# ---------------------------------------------------------------------------
# plot_confusion
# ---------------------------------------------------------------------------

def test_plot_confusion_writes_png_and_returns_matrix(tmp_path):
    y, p = labels()
    out = tmp_path / "cm.png"
    cm = plot_confusion(y, p, DIGITS, out)
    np.testing.assert_array_equal(cm, confusion_matrix(y, p, 10))
    assert cm.dtype == np.int64
    assert_png(out)


def test_plot_confusion_long_names_and_title(tmp_path):
    y, p = labels(seed=3)
    out = tmp_path / "fashion.png"
    cm = plot_confusion(y.tolist(), p.tolist(), FASHION, str(out), title="Fashion-MNIST test")
    assert cm.shape == (10, 10)
    assert_png(out)


def test_plot_confusion_many_classes_and_missing_class(tmp_path):
    # 42 classes: cell text is dropped; class 41 never occurs (zero row).
    y, p = labels(n=2000, k=41, seed=5)
    out = tmp_path / "big.png"
    cm = plot_confusion(y, p, [f"c{i}" for i in range(42)], out)
    assert cm.shape == (42, 42) and cm[41].sum() == 0
    assert_png(out)


@pytest.mark.parametrize(
    "y, p, names, match",
    [
        ([], [], DIGITS, "empty"),
        ([0, 1, 2], [0, 1], DIGITS, "different lengths"),
        ([0, 1, 10], [0, 1, 2], DIGITS, "outside"),
        ([0, 1], [0, 1], [], "class_names"),
        ([0, 1], [0, 1], "01", "class_names"),
    ],
)
def test_plot_confusion_bad_input(tmp_path, y, p, names, match):
    with pytest.raises(ValueError, match=match):
        plot_confusion(y, p, names, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_plot_confusion_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        plot_confusion([0, 1], [0, 1], ["a", "b"], tmp_path / "nope" / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_plot_confusion_path_is_folder(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        plot_confusion([0, 1], [0, 1], ["a", "b"], tmp_path)


# ---------------------------------------------------------------------------
# plot_history
# ---------------------------------------------------------------------------

def test_plot_history_with_validation(tmp_path):
    out = tmp_path / "h.png"
    plot_history(make_history(epochs=4, steps=50, val=True), out, title="run 1")
    assert_png(out)


def test_plot_history_one_epoch(tmp_path):
    out = tmp_path / "h.png"
    plot_history(make_history(epochs=1, steps=100), out)
    assert_png(out)


def test_plot_history_one_iteration(tmp_path):
    out = tmp_path / "h.png"
    h = {"iter_loss": [2.3], "steps_per_epoch": 1, "epoch": [1],
         "train_loss": [2.3], "train_acc": [0.11], "test_acc": [0.1]}
    plot_history(h, out)
    assert_png(out)


def test_plot_history_none_nan_and_numpy_values(tmp_path):
    h = make_history(epochs=120, steps=3)
    h["val_acc"] = [None] + list(np.linspace(0.9, 0.96, 119))
    h["val_loss"] = [None] * 120        # all None: treated as absent
    h["iter_loss"] = np.asarray(h["iter_loss"], dtype=np.float32)
    h["test_acc"] = np.asarray(h["test_acc"])
    h["iter_loss"][3] = np.nan          # a NaN iteration must not break the plot
    out = tmp_path / "h.png"
    plot_history(h, out)
    assert_png(out)


def test_plot_history_minimal_keys_flat_loss(tmp_path):
    # No val, no train_loss, no steps_per_epoch (inferred from the lengths);
    # a loss spanning less than 1.5 decades gets a linear axis.
    h = make_history(epochs=2, steps=30, val=False)
    del h["train_loss"], h["steps_per_epoch"]
    h["iter_loss"] = list(np.linspace(0.5, 0.4, 60))
    out = tmp_path / "h.png"
    plot_history(h, out)
    assert_png(out)


def _broken(**changes):
    h = make_history(epochs=3, steps=5)
    for key, value in changes.items():
        if value is KeyError:
            del h[key]
        else:
            h[key] = value
    return h


@pytest.mark.parametrize(
    "history, match",
    [
        ([1, 2, 3], "dict"),
        (_broken(iter_loss=KeyError), "iter_loss"),
        (_broken(test_acc=KeyError), "test_acc"),
        (_broken(train_acc=[0.9, 0.95]), "train_acc"),
        (_broken(val_acc=[0.9]), "val_acc"),
        (_broken(test_acc=[90.0, 95.0, 97.0]), "above 1"),
        (_broken(steps_per_epoch=0), "steps_per_epoch"),
        (_broken(iter_loss=["x"] * 15), "numbers"),
        ({"iter_loss": [], "epoch": [], "train_acc": [], "test_acc": []}, "empty"),
    ],
)
def test_plot_history_bad_input(tmp_path, history, match):
    with pytest.raises(ValueError, match=match):
        plot_history(history, tmp_path / "h.png")
    assert list(tmp_path.iterdir()) == []


def test_plot_history_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        plot_history(make_history(), tmp_path / "missing" / "h.png")


# ---------------------------------------------------------------------------
# plot_samples
# ---------------------------------------------------------------------------

def test_plot_samples_flat_uint8(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (100, 784), dtype=np.uint8)
    y, p = labels(n=100)
    out = tmp_path / "s.png"
    plot_samples(imgs, y, p, DIGITS, out)
    assert_png(out)


def test_plot_samples_3d_float_long_names(tmp_path):
    rng = np.random.default_rng(1)
    imgs = rng.random((50, 28, 28), dtype=np.float32)
    y, p = labels(n=50, seed=2)
    out = tmp_path / "s.png"
    plot_samples(imgs, y, p, FASHION, out, n=16, title="Fashion")
    assert_png(out)


def test_plot_samples_fewer_images_than_n_and_all_correct(tmp_path):
    imgs = np.zeros((3, 28, 28, 1))
    imgs[:, 10:18, 10:18] = 1.0
    out = tmp_path / "s.png"
    plot_samples(imgs, [1, 2, 3], [1, 2, 3], DIGITS, out)
    assert_png(out, min_side=100)


def test_plot_samples_non_square_features_drawn_as_strips(tmp_path):
    rng = np.random.default_rng(2)
    out = tmp_path / "s.png"
    plot_samples(rng.normal(size=(20, 10)), *labels(n=20, seed=4), DIGITS, out, n=9)
    assert_png(out, min_side=100)


def test_pick_samples_puts_mistakes_first_up_to_half():
    t = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    p = np.array([0, 0, 2, 0, 4, 0, 6, 0, 8, 0])   # odd indices wrong
    np.testing.assert_array_equal(plots._pick_samples(t, p, 4), [1, 3, 0, 2])
    np.testing.assert_array_equal(plots._pick_samples(t, p, 1), [1])
    # Too few correct ones: mistakes fill the rest.
    p2 = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(plots._pick_samples(t, p2, 4), [1, 2, 3, 0])
    # No mistakes: first n in order.
    np.testing.assert_array_equal(plots._pick_samples(t, t, 3), [0, 1, 2])
    # n larger than the data: everything, each once.
    assert sorted(plots._pick_samples(t, p, 50).tolist()) == list(range(10))


@pytest.mark.parametrize(
    "imgs, y, p, n, match",
    [
        (np.zeros((0, 784)), [], [], 36, "empty"),
        (np.zeros(784), [1], [1], 36, "shape"),
        (np.zeros((2, 784)), [1, 2, 3], [1, 2, 3], 36, "samples"),
        (np.zeros((2, 784)), [1, 2], [1], 36, "different lengths"),
        (np.zeros((2, 784)), [1, 12], [1, 2], 36, "outside"),
        (np.zeros((2, 784)), [1, 2], [1, 2], 0, "positive int"),
        (np.array([["a"] * 4] * 2), [1, 2], [1, 2], 36, "numeric"),
    ],
)
def test_plot_samples_bad_input(tmp_path, imgs, y, p, n, match):
    with pytest.raises(ValueError, match=match):
        plot_samples(imgs, y, p, DIGITS, tmp_path / "s.png", n=n)
    assert list(tmp_path.iterdir()) == []


def test_plot_samples_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        plot_samples(np.zeros((2, 784)), [1, 2], [1, 2], DIGITS, tmp_path / "a" / "s.png")


# ---------------------------------------------------------------------------
# Atomic writing
# ---------------------------------------------------------------------------

def test_overwrites_existing_file_with_normal_permissions(tmp_path):
    out = tmp_path / "cm.png"
    out.write_bytes(b"old")
    plot_confusion([0, 1, 1], [0, 1, 0], ["a", "b"], out)
    assert_png(out, min_side=100)
    ref = tmp_path / "ref"
    ref.write_bytes(b"")  # a file created the ordinary way, under the same umask
    assert (out.stat().st_mode & 0o777) == (ref.stat().st_mode & 0o777)


def test_failed_save_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    out = tmp_path / "cm.png"
    out.write_bytes(b"old")

    def boom(self, *args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Figure, "savefig", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        plot_confusion([0, 1], [0, 1], ["a", "b"], out)
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]


def test_matplotlib_imported_lazily():
    code = (
        "import sys\n"
        "import fastmlp.plots\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'\n"
    )
    env = dict(os.environ)
    root = str(pathlib.Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr


def test_pyplot_never_imported(tmp_path):
    if "matplotlib.pyplot" in sys.modules:
        pytest.skip("another test already imported pyplot")
    # All three plot functions build their figure through plots._new_figure.
    plot_samples(np.zeros((2, 4)), [0, 1], [0, 0], ["a", "b"], tmp_path / "s.png")
    assert "matplotlib.pyplot" not in sys.modules
