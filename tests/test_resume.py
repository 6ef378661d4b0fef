"""Checkpoints: kill-and-resume gives the uninterrupted result, bad files are never used."""

import os
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
from conftest import make_idx_dataset

import fastmlp
from fastmlp.checkpoint import NAME, load_checkpoint, save_checkpoint
from fastmlp.train import main

ARGS = ["--epochs", "3", "--batch-size", "2", "--sizes", "784,32,10", "--no-plots", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 20000 rows in batches of 2: 10000 steps, ~1 s per epoch here, so a kill 0.1 s after
    # the first checkpoint appears lands well inside epoch 2
    return make_idx_dataset(tmp_path_factory.mktemp("data") / "d", n_train=20000, n_test=200)


def _params(path):
    return fastmlp.load(path).params


def test_killed_run_resumes_to_the_uninterrupted_result(data, tmp_path):
    reference = tmp_path / "reference"
    assert main(["--data-dir", str(data), "--out", str(reference), *ARGS]) == 0

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "fastmlp.train", "--data-dir", str(data), "--out", str(out), *ARGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out / NAME).exists():  # the checkpoint of epoch 1
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.01)
        time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    _, ck, _ = load_checkpoint(out / NAME)
    assert ck["epochs_done"] == 1, "the kill was meant to land in epoch 2"
    assert not (out / "model.npz").exists()
    (out / f".{NAME}.junk.tmp").write_bytes(b"a half-written checkpoint from a kill during a write")

    assert main(["--data-dir", str(data), "--resume", str(out), "--quiet", "--no-plots"]) == 0
    assert np.array_equal(_params(out / "model.npz"), _params(reference / "model.npz"))  # bit-identical on the CPU
    assert load_checkpoint(out / NAME)[1]["epochs_done"] == 3


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["--resume", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint.npz" in err[0] and "no such checkpoint" in err[0]


def test_a_model_file_is_not_a_checkpoint(tmp_path):
    fastmlp.save(fastmlp.MLP((4, 3)), tmp_path / NAME)
    with pytest.raises(fastmlp.DataError, match="not a training checkpoint"):
        load_checkpoint(tmp_path / NAME)


def _trained(epochs=1, lr=0.05):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = fastmlp.MLP((8, 6, 2), seed=0)
    trainer = fastmlp.Trainer(model, lr=lr, batch_size=20, progress=False, log=None)
    trainer.fit(x, y, epochs)
    return trainer, x, y


def test_checkpoint_round_trip_restores_optimiser_and_counters(tmp_path):
    from fastmlp.checkpoint import restore

    trainer, x, y = _trained(2)
    save_checkpoint(tmp_path / NAME, trainer, {"k": 1})
    model, ck, opt = load_checkpoint(tmp_path / NAME)
    other = fastmlp.Trainer(model, lr=0.05, batch_size=20, progress=False, log=None)
    restore(other, ck, opt)
    assert other.epochs_done == 2 and other.step_count == trainer.step_count and ck["settings"] == {"k": 1}
    assert np.array_equal(other.optimizer.velocity, trainer.optimizer.velocity)
    # one more epoch from the restored state == one more epoch of the original
    trainer.fit(x, y, 1, total_epochs=3)
    other.fit(x, y, 1, total_epochs=3)
    assert np.array_equal(model.params, trainer.model.params)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    trainer, x, y = _trained(1)
    save_checkpoint(tmp_path / NAME, trainer)
    before = (tmp_path / NAME).read_bytes()
    trainer.fit(x, y, 1)

    def disk_full(f, **arrays):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(fastmlp.FastMLPError, match="No space left on device"):
        save_checkpoint(tmp_path / NAME, trainer)
    assert (tmp_path / NAME).read_bytes() == before
    assert os.listdir(tmp_path) == [NAME]


def test_divergence_leaves_the_last_checkpoint_intact(tmp_path):
    trainer, x, y = _trained(1)
    save_checkpoint(tmp_path / NAME, trainer)
    before = (tmp_path / NAME).read_bytes()
    x_bad = x.copy()
    x_bad[3] = 1e30
    with pytest.raises(fastmlp.DivergenceError, match="epoch 2, step"), np.errstate(all="ignore"):
        trainer.fit(x_bad, y, 1, on_epoch=lambda tr: save_checkpoint(tmp_path / NAME, tr))
    assert (tmp_path / NAME).read_bytes() == before


def test_cpu_memory_stays_flat_across_epochs():
    trainer, x, y = _trained(1)
    xd, yd = trainer.prepare(x, y)
    trainer.train_epoch(xd, yd, 0.05)
    tracemalloc.start()
    try:
        trainer.train_epoch(xd, yd, 0.05)
        after_one, _ = tracemalloc.get_traced_memory()
        for _ in range(3):
            trainer.train_epoch(xd, yd, 0.05)
        after_four, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after_four - after_one < 4096, f"{after_four - after_one} bytes more after 3 more epochs"


def test_ctrl_c_exits_130_and_says_how_to_resume(data, tmp_path):
    out = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "fastmlp.train", "--data-dir", str(data), "--out", str(out), *ARGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / NAME).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    epoch = load_checkpoint(out / NAME)[1]["epochs_done"]
    assert f"the checkpoint of epoch {epoch} is in {out}" in stderr and f"--resume {out}" in stderr
    assert "Traceback" not in stderr
