"""--resume: the data the run recorded, its own settings, and a finished run left alone."""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import make_idx_dataset
from robust_helpers import TINY, assert_one_line_error, interrupted_run, run_main
from test_data import csv_arrays, write_csv
from test_robust_checkpoint import EDITS

import fastmlp
from fastmlp.checkpoint import NAME, load_checkpoint


@pytest.fixture
def env(tmp_path, monkeypatch):
    """FASTMLP_DATA_DIR and the cache point at *other* data (another tiny set), as a
    user's environment might when they resume."""
    other = make_idx_dataset(tmp_path / "other", seed=7)
    monkeypatch.setenv("FASTMLP_DATA_DIR", str(other))
    monkeypatch.setenv("FASTMLP_CACHE_DIR", str(tmp_path / "cache"))
    make_idx_dataset(tmp_path / "cache" / "mnist", seed=8)
    return other


def _half_done(data, out):
    """A run of 2 epochs on ``data`` stopped by Ctrl-C after the checkpoint of epoch 1."""
    code, _ = interrupted_run("--data-dir", data, "--out", out, *TINY)
    assert code == 130 and load_checkpoint(out / NAME)[1]["epochs_done"] == 1
    return out


def _csv_dir(folder):
    folder.mkdir()
    y, x = csv_arrays(120)
    write_csv(folder / "train.csv", y, x)
    return folder


@pytest.mark.parametrize("kind", ["idx", "csv"])
def test_resume_uses_the_data_the_run_recorded(tmp_path, env, kind, capsys):
    data = make_idx_dataset(tmp_path / "mine") if kind == "idx" else _csv_dir(tmp_path / "mine")
    out = _half_done(data, tmp_path / "run")
    code, stdout, err = run_main(capsys, "--resume", out, "--quiet")
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["location"] == str(data.resolve()) and len(metrics["epochs"]) == 2
    assert f"data {data}" in stdout


def test_resume_refuses_data_that_changed(tmp_path, env, capsys):
    data = make_idx_dataset(tmp_path / "mine")
    out = _half_done(data, tmp_path / "run")
    make_idx_dataset(data, seed=3)  # the same files, other content
    code, _, err = run_main(capsys, "--resume", out)
    assert_one_line_error(code, err, f"is not the data the run in {out} trained on", "train-images-idx3-ubyte.gz",
                          "--allow-other-data")
    assert not (out / "model.npz").exists()
    assert run_main(capsys, "--resume", out, "--allow-other-data", "--quiet")[0] == 0


def test_resume_from_a_copy_of_the_data_elsewhere(tmp_path, env, capsys):
    data = make_idx_dataset(tmp_path / "mine")
    out = _half_done(data, tmp_path / "run")
    moved = tmp_path / "moved"
    shutil.move(data, moved)
    code, _, err = run_main(capsys, "--resume", out)
    assert_one_line_error(code, err, str(data))
    code, _, err = run_main(capsys, "--resume", out, "--data-dir", env)  # other data: refused
    assert_one_line_error(code, err, "is not the data")
    assert run_main(capsys, "--resume", out, "--data-dir", moved, "--quiet")[0] == 0


def test_flags_that_differ_from_the_run_are_an_error_naming_them(tmp_path, env, capsys):
    data = make_idx_dataset(tmp_path / "mine")
    out = _half_done(data, tmp_path / "run")
    before = (out / NAME).read_bytes()
    code, _, err = run_main(capsys, "--resume", out, "--epochs", "10", "--lr", "0.5", "--optimizer", "adam")
    assert_one_line_error(code, err, "--optimizer adam, --lr 0.5: ", "--optimizer momentum, --lr 0.1, and a resumed",
                          "keeps its settings", "only --epochs may change")
    code, _, err = run_main(capsys, "--resume", out, "--out", tmp_path / "elsewhere")
    assert_one_line_error(code, err, "--out cannot be used with --resume")
    assert (out / NAME).read_bytes() == before
    # flags equal to the run's settings are fine
    assert run_main(capsys, "--resume", out, "--epochs", "2", "--sizes", "784,8,10", "--quiet")[0] == 0


def test_a_finished_run_is_reported_and_nothing_is_rewritten(tmp_path, env, capsys):
    data = make_idx_dataset(tmp_path / "mine")
    out = tmp_path / "run"
    assert run_main(capsys, "--data-dir", data, "--out", out, *TINY, "--quiet")[0] == 0
    stamps = {name: ((out / name).read_bytes(), os.stat(out / name).st_mtime_ns) for name in os.listdir(out)}
    accuracy = json.loads((out / "metrics.json").read_text())["test_accuracy"]
    for extra in ([], ["--data-dir", env]):
        code, stdout, err = run_main(capsys, "--resume", out, *extra)
        assert code == 0, err
        assert f"finished all 2 epochs (test accuracy {100 * accuracy:.2f}%); nothing to do, nothing rewritten" in stdout
    assert {name: ((out / name).read_bytes(), os.stat(out / name).st_mtime_ns) for name in os.listdir(out)} == stamps


def test_a_run_stopped_after_its_last_checkpoint_writes_its_results(tmp_path, env, capsys):
    data = make_idx_dataset(tmp_path / "mine")
    out = tmp_path / "run"
    assert run_main(capsys, "--data-dir", data, "--out", out, *TINY, "--quiet")[0] == 0
    reference = fastmlp.load(out / "model.npz").params
    for name in ("model.npz", "metrics.json"):
        (out / name).unlink()
    assert run_main(capsys, "--resume", out, "--quiet")[0] == 0
    assert np.array_equal(fastmlp.load(out / "model.npz").params, reference)
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) == 2


def _edit_checkpoint(out, change):
    """Rewrite the checkpoint in ``out`` with ``change(the checkpoint part of its meta)`` applied."""
    with np.load(out / NAME) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    change(meta["checkpoint"])
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(out / NAME, **arrays)


def test_a_checkpoint_without_a_data_record_needs_data_dir(tmp_path, env, capsys):
    data = make_idx_dataset(tmp_path / "mine")
    out = _half_done(data, tmp_path / "run")
    _edit_checkpoint(out, lambda ck: ck.update(data=None))  # a checkpoint without a data record
    code, _, err = run_main(capsys, "--resume", out)
    assert_one_line_error(code, err, "does not record where its data came from", "--data-dir")
    assert run_main(capsys, "--resume", out, "--data-dir", data, "--quiet")[0] == 0


def test_a_resumed_run_keeps_its_preset_and_recipe_flags(tmp_path, env, capsys):
    data = make_idx_dataset(tmp_path / "mine")
    out = tmp_path / "run"
    # a small lr, so that the tiny data set does not reach the target before the interrupt
    recipe = ["--preset", "fast", "--warmup", "0.25", "--dropout", "0.1", "--label-smoothing", "0.05",
              "--target-accuracy", "0.999", "--eval-every", "7", "--lr", "0.001"]
    code, _ = interrupted_run("--data-dir", data, "--out", out, *TINY, *recipe)
    assert code == 130
    code, _, err = run_main(capsys, "--resume", out, "--dropout", "0.3")
    assert_one_line_error(code, err, "--dropout 0.3", "--dropout 0.1", "keeps its settings")
    code, stdout, err = run_main(capsys, "--resume", out)
    assert code == 0, err
    changed = next(line for line in stdout.splitlines() if line.startswith("changed from the preset:"))
    assert "preset fast:" in stdout and all(f in changed for f in ("--warmup 0.25", "--dropout 0.1", "--epochs 2"))
    settings = json.loads((out / "metrics.json").read_text())["settings"]
    assert {k: settings[k] for k in ("preset", "warmup", "dropout", "label_smoothing", "target_accuracy",
                                     "eval_every")} == dict(preset="fast", warmup=0.25, dropout=0.1,
                                                            label_smoothing=0.05, target_accuracy=0.999, eval_every=7)


def test_a_run_that_reached_its_target_is_finished(tmp_path, env, capsys):
    data = make_idx_dataset(tmp_path / "mine")
    out = tmp_path / "run"
    code, stdout, err = run_main(capsys, "--data-dir", data, "--out", out, *TINY, "--target-accuracy", "0.01",
                                 "--checkpoint-every", "5")
    assert code == 0 and "reached" in stdout, err
    assert json.loads((out / "metrics.json").read_text())["target"]["epoch"] == 1
    code, stdout, err = run_main(capsys, "--resume", out)
    assert code == 0, err
    assert "reached its target accuracy after epoch 1" in stdout and "nothing to do" in stdout


def test_a_checkpoint_from_before_the_recipe_flags_resumes_as_the_classic_recipe(tmp_path, env, capsys):
    data = make_idx_dataset(tmp_path / "mine")
    out = _half_done(data, tmp_path / "run")
    recipe = ("preset", "warmup", "dropout", "label_smoothing", "target_accuracy", "eval_every")
    _edit_checkpoint(out, lambda ck: [ck["settings"].pop(key) for key in recipe])  # a checkpoint without them
    code, stdout, err = run_main(capsys, "--resume", out)
    assert code == 0, err
    assert "preset classic:" in stdout
    settings = json.loads((out / "metrics.json").read_text())["settings"]
    assert (settings["warmup"], settings["dropout"], settings["label_smoothing"]) == (0.0, 0.0, 0.0)


SETTING_EDITS = {
    "lr-text": ("lr", "fast"),
    "epochs-negative": ("epochs", -1),
    "epochs-bool": ("epochs", True),
    "sizes-text": ("sizes", "wide"),
    "sizes-one": ("sizes", [784]),
    "settings-optimizer-unknown": ("optimizer", "adamw"),
    "seed-negative": ("seed", -1),
    "weight-decay-inf": ("weight_decay", float("inf")),
    "dataset-unknown": ("dataset", "cifar"),
    "batch-size-dict": ("batch_size", {"a": 1}),
    "preset-unknown": ("preset", "fastest"),
    "dropout-one": ("dropout", 1.0),
}


@pytest.fixture(scope="module")
def half_done_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    data = make_idx_dataset(tmp / "data")
    return _half_done(data, tmp / "run")


@pytest.mark.parametrize("edit", [*EDITS, *SETTING_EDITS])
def test_edited_checkpoints_through_resume_are_one_line(half_done_run, tmp_path, edit, capsys):
    out = tmp_path / "run"
    shutil.copytree(half_done_run, out)
    with np.load(out / NAME) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays.pop("meta")))
    if edit in SETTING_EDITS:
        key, value = SETTING_EDITS[edit]
        meta["checkpoint"]["settings"][key] = value
    else:
        EDITS[edit](meta, arrays)
    np.savez(out / NAME, meta=np.array(json.dumps(meta)), **arrays)
    code, _, err = run_main(capsys, "--resume", out)
    assert_one_line_error(code, err, NAME)
