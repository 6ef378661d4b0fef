"""Every file fastmlp writes follows the umask, and killed writes leave nothing that is read."""

import os
import stat

import numpy as np
import pytest
from test_data import IDX_NAMES, isolated_env, mirrors, server  # noqa: F401  (fixtures)

import fastmlp
from fastmlp import data, plots
from fastmlp.checkpoint import save_checkpoint
from fastmlp.files import remove_stale_temps
from fastmlp.train import main


@pytest.fixture(params=[0o022, 0o027, 0o002], ids=lambda m: f"umask{m:03o}")
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _trainer():
    model = fastmlp.MLP((4, 3, 2), seed=0)
    trainer = fastmlp.Trainer(model, batch_size=4, progress=False, log=None)
    rng = np.random.default_rng(0)
    trainer.fit(rng.random((8, 4)), rng.integers(0, 2, 8), 1)
    return trainer


def test_every_writer_follows_the_umask(tmp_path, umask):
    expected = 0o666 & ~umask
    fastmlp.save(fastmlp.MLP((3, 2)), tmp_path / "model.npz")
    save_checkpoint(tmp_path / "checkpoint.npz", _trainer())
    data.write_idx(tmp_path / "a-idx1-ubyte.gz", np.zeros(3, np.uint8))
    data.write_idx(tmp_path / "a-idx1-ubyte", np.zeros(3, np.uint8))
    plots.plot_confusion([0, 1], [0, 1], ["a", "b"], tmp_path / "confusion.png")
    for name in os.listdir(tmp_path):
        assert _mode(tmp_path / name) == expected, name


def test_downloaded_files_follow_the_umask(tmp_path, mirrors, umask):  # noqa: F811
    urls, checksums = mirrors
    data.download("mnist", tmp_path / "dest", mirrors=[urls["good"]], timeout=5, checksums=checksums)
    for name in IDX_NAMES:
        assert _mode(tmp_path / "dest" / name) == 0o666 & ~umask, name


def test_cli_outputs_follow_the_umask(tiny_dir, tmp_path, umask):
    out = tmp_path / "run"
    assert main(["--data-dir", str(tiny_dir), "--epochs", "1", "--sizes", "784,8,10", "--out", str(out), "--quiet"]) == 0
    for name in os.listdir(out):
        assert _mode(out / name) == 0o666 & ~umask, name


def test_stale_temps_of_our_own_files_are_removed_and_nothing_else(tmp_path):
    stale = [".checkpoint.npz.k3j_x9a1.tmp", ".model.npz.0123456789abcdef.tmp", ".history.png.deadbeef.tmp.png",
             "train-images-idx3-ubyte.gz.abc123.part", "train-images-idx3-ubyte.gz.abc123.tmp"]
    kept = ["checkpoint.npz", "notes.tmp", ".other.npz.1234.tmp", "model.npz.bak", ".checkpoint.npz"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    names = ["checkpoint.npz", "model.npz", "history.png", "train-images-idx3-ubyte.gz"]
    assert remove_stale_temps(tmp_path, names) == sorted(stale)
    assert sorted(os.listdir(tmp_path)) == sorted(kept)
