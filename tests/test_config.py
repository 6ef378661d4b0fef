"""TrainConfig: one settings object from the command line through the library, the
checkpoint and the sweep; resuming a run to more epochs; the times a run reports."""

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from robust_helpers import assert_one_line_error, interrupted_run, run_main

import fastmlp
from fastmlp import ConfigError, TrainConfig, presets
from fastmlp.checkpoint import NAME, load_checkpoint
from fastmlp.data import load_dataset
from fastmlp.train import build_parser, config_from_args, main, parse_args

PACKAGE = Path(fastmlp.__file__).parent
SMALL = ["--epochs", "2", "--batch-size", "32", "--sizes", "784,8,10", "--no-plots"]


def _params(path):
    return fastmlp.load(path).params


# ---------------------------------------------------------------- one object, one default


def test_the_cli_with_default_flags_and_the_library_call_train_the_same_parameters(tiny_dir, tmp_path, capsys):
    # every default but the epochs (kept small here, the same on both sides)
    assert main(["--data-dir", str(tiny_dir), "--epochs", "2", "--out", str(tmp_path / "cli"), "--no-plots"]) == 0
    config = TrainConfig(data_dir=str(tiny_dir), epochs=2, out=str(tmp_path / "lib"), plots=False)
    result = fastmlp.run(config)
    assert result.out == tmp_path / "lib" and result.config.sizes == (784, 256, 128, 10)
    assert np.array_equal(_params(tmp_path / "cli" / "model.npz"), result.model.params)
    assert np.array_equal(_params(tmp_path / "cli" / "model.npz"), _params(tmp_path / "lib" / "model.npz"))
    cli_metrics = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert cli_metrics["settings"] == {**config.as_dict(), "out": str(tmp_path / "cli"), "sizes": [784, 256, 128, 10]}
    assert result.history["train_loss"] == [e["train_loss"] for e in cli_metrics["epochs"]]


def test_the_parser_defaults_are_the_config_defaults_and_the_default_preset():
    args = parse_args(build_parser(), [])
    assert config_from_args(args) == TrainConfig() == TrainConfig.from_preset("default")
    assert {k: getattr(TrainConfig(), k) for k in presets.DEFAULT} == presets.DEFAULT


def test_trainer_defaults_are_the_default_presets():
    defaults = {k: p.default for k, p in inspect.signature(fastmlp.Trainer).parameters.items()}
    assert {k: defaults[k] for k in presets.TRAINER_ARGS if k in presets.DEFAULT} == \
        {k: v for k, v in presets.DEFAULT.items() if k in presets.TRAINER_ARGS}
    assert defaults["target_accuracy"] is None and defaults["eval_every"] is None


def test_a_trainer_at_its_defaults_trains_what_fastmlp_train_does(tiny_dir, tmp_path):
    assert main(["--data-dir", str(tiny_dir), "--epochs", "2", "--out", str(tmp_path / "cli"), "--no-plots",
                 "--quiet"]) == 0
    ds = load_dataset("mnist", data_dir=tiny_dir, normalize=False)
    model = fastmlp.MLP((784, 256, 128, 10))
    fastmlp.Trainer(model, progress=False, log=None).fit(ds.x_train, ds.y_train, 2)
    assert np.array_equal(model.params, _params(tmp_path / "cli" / "model.npz"))


def test_fit_validation_split_is_the_clis_val_split(tiny_dir, tmp_path):
    assert main(["--data-dir", str(tiny_dir), *SMALL, "--val-split", "0.25", "--out", str(tmp_path / "cli"),
                 "--quiet"]) == 0
    ds = load_dataset("mnist", data_dir=tiny_dir, normalize=False)
    model = fastmlp.MLP((784, 8, 10))
    h = fastmlp.Trainer(model, batch_size=32, progress=False, log=None).fit(ds.x_train, ds.y_train, 2,
                                                                            validation_split=0.25)
    assert np.array_equal(model.params, _params(tmp_path / "cli" / "model.npz"))
    metrics = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert h["val_acc"] == [e["val_acc"] for e in metrics["epochs"]]
    with pytest.raises(ConfigError, match="validation_split or X_val"):
        fastmlp.Trainer(model, progress=False, log=None).fit(ds.x_train, ds.y_train, 1, validation_split=0.1,
                                                             X_val=ds.x_test, y_val=ds.y_test)
    with pytest.raises(ConfigError, match="validation_split"):
        fastmlp.Trainer(model, progress=False, log=None).fit(ds.x_train, ds.y_train, 1, validation_split=1.5)


@pytest.mark.parametrize("change, needle", [
    (dict(batch_size=0), "batch_size must be > 0, got 0"),
    (dict(lr=float("nan")), "lr must be > 0"),
    (dict(lr="0.1"), "lr expected a positive float"),
    (dict(epochs=True), "epochs expected a positive int"),
    (dict(dropout=1.0), "dropout must be in [0, 1)"),
    (dict(optimizer="adamw"), "optimizer invalid choice: 'adamw'"),
    (dict(sizes=(784,)), "sizes need at least two positive sizes"),
    (dict(hidden=(128, 0)), "hidden sizes must be positive"),
    (dict(target_accuracy=98), "target_accuracy is a fraction in (0, 1]"),
])
def test_a_bad_setting_is_a_config_error_naming_it(change, needle):
    with pytest.raises(ConfigError) as exc:
        TrainConfig(**change)
    assert needle in str(exc.value)


def test_config_converts_and_replace_checks_again():
    import dataclasses

    config = TrainConfig(hidden=[64, np.int64(32)], lr=np.float32(0.5), seed=np.int64(3))
    assert config.hidden == (64, 32) and type(config.lr) is float and type(config.seed) is int
    with pytest.raises(ConfigError, match="momentum"):
        dataclasses.replace(config, momentum=1.0)
    assert TrainConfig.from_preset("fast", lr=0.3).batch_size == presets.PRESETS["fast"]["batch_size"]


def test_the_sweep_and_trial_modules_do_not_import_the_cli_module():
    code = ("import sys, fastmlp.sweep, fastmlp.sweep_study, fastmlp.sweep_report, fastmlp.trial, fastmlp.cluster, "
            "fastmlp.training; "
            "print(sorted(m for m in ('fastmlp.train', 'fastmlp.cli') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    for name in ("sweep.py", "sweep_study.py", "sweep_report.py", "trial.py", "cluster.py", "training.py", "config.py"):
        tree = ast.parse((PACKAGE / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = {a.name for a in node.names}
                assert not (node.module in ("train", "fastmlp.train", "cli", "fastmlp.cli")
                            or node.module in (None, "fastmlp") and names & {"train", "cli"}), (name, node.lineno)
            elif isinstance(node, ast.Import):
                assert not {a.name for a in node.names} & {"fastmlp.train", "fastmlp.cli"}, (name, node.lineno)


# ---------------------------------------------------------------- continuing a run to more epochs


def _run(capsys, data, out, *extra):
    code, stdout, err = run_main(capsys, "--data-dir", data, "--out", out, *SMALL, "--quiet", *extra)
    assert code == 0, err
    return stdout


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


def test_a_finished_constant_run_continued_equals_the_longer_run(tiny_dir, tmp_path, capsys):
    _run(capsys, tiny_dir, tmp_path / "long", "--epochs", "4", "--schedule", "constant")
    out = tmp_path / "run"
    _run(capsys, tiny_dir, out, "--schedule", "constant")
    code, stdout, err = run_main(capsys, "--resume", out, "--epochs", "4", "--quiet")
    assert code == 0, err
    assert f"continuing the run in {out} from epoch 2 to 4 epochs (it was set to 2)" in stdout
    assert "does not depend on the run's length, so the result is that of a 4-epoch run from the start" in stdout
    assert np.array_equal(_params(out / "model.npz"), _params(tmp_path / "long" / "model.npz"))  # bit for bit
    assert load_checkpoint(out / NAME)[1]["settings"]["epochs"] == 4
    assert _metrics(out)["settings"]["epochs"] == 4 and len(_metrics(out)["epochs"]) == 4
    code, stdout, _ = run_main(capsys, "--resume", out)
    assert code == 0 and "finished all 4 epochs" in stdout and "nothing to do" in stdout


def test_an_interrupted_constant_run_continued_equals_the_longer_run(tiny_dir, tmp_path, capsys):
    _run(capsys, tiny_dir, tmp_path / "long", "--epochs", "5", "--schedule", "constant")
    out = tmp_path / "run"
    code, _ = interrupted_run("--data-dir", tiny_dir, "--out", out, *SMALL, "--epochs", "3", "--schedule", "constant")
    assert code == 130 and load_checkpoint(out / NAME)[1]["epochs_done"] == 1
    code, stdout, err = run_main(capsys, "--resume", out, "--epochs", "5", "--quiet")
    assert code == 0, err
    assert "from epoch 1 to 5 epochs (it was set to 3)" in stdout
    assert np.array_equal(_params(out / "model.npz"), _params(tmp_path / "long" / "model.npz"))


@pytest.mark.parametrize("interrupted", [False, True], ids=["finished", "interrupted"])
def test_a_cosine_run_continued_is_re_planned_for_the_new_length(tiny_dir, tmp_path, capsys, interrupted):
    long = tmp_path / "long"
    _run(capsys, tiny_dir, long, "--epochs", "4", "--warmup", "0")
    out = tmp_path / "run"
    if interrupted:
        code, _ = interrupted_run("--data-dir", tiny_dir, "--out", out, *SMALL, "--epochs", "3", "--warmup", "0")
        assert code == 130
    else:
        _run(capsys, tiny_dir, out, "--warmup", "0")
    done = load_checkpoint(out / NAME)[1]["epochs_done"]
    code, stdout, err = run_main(capsys, "--resume", out, "--epochs", "4", "--quiet")
    assert code == 0, err
    assert f"the cosine schedule is re-planned for 4 epochs and goes on from epoch {done}" in stdout
    assert "so the result differs from a 4-epoch run from the start" in stdout
    ours, theirs = _metrics(out)["epochs"], _metrics(long)["epochs"]
    assert len(ours) == 4
    # the added epochs follow the 4-epoch schedule; the ones before kept the rates they had
    assert [e["lr_end"] for e in ours[done:]] == [e["lr_end"] for e in theirs[done:]]
    assert not np.array_equal(_params(out / "model.npz"), _params(long / "model.npz"))


def test_a_cosine_run_continued_within_its_warm_up_equals_the_longer_run(tiny_dir, tmp_path, capsys):
    # interrupted after epoch 1 of 3, all of it the default preset's one-epoch warm-up,
    # which does not depend on the run's length
    _run(capsys, tiny_dir, tmp_path / "long", "--epochs", "4")
    out = tmp_path / "run"
    code, _ = interrupted_run("--data-dir", tiny_dir, "--out", out, *SMALL, "--epochs", "3")
    assert code == 130 and load_checkpoint(out / NAME)[1]["epochs_done"] == 1
    code, stdout, err = run_main(capsys, "--resume", out, "--epochs", "4", "--quiet")
    assert code == 0, err
    assert "had the rates of that plan too, so the result is that of a 4-epoch run from the start" in stdout
    assert np.array_equal(_params(out / "model.npz"), _params(tmp_path / "long" / "model.npz"))


def test_epochs_below_those_done_is_one_line(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    _run(capsys, tiny_dir, out)
    code, _, err = run_main(capsys, "--resume", out, "--epochs", "1")
    assert_one_line_error(code, err, "has trained 2 epochs", "give at least 2")


def test_the_library_resumes_and_extends_too(tiny_dir, tmp_path):
    config = TrainConfig(data_dir=str(tiny_dir), sizes=(784, 8, 10), epochs=1, batch_size=32, schedule="constant",
                         out=str(tmp_path / "run"), plots=False, quiet=True)
    fastmlp.run(config, log=lambda line: None)
    result = fastmlp.resume(tmp_path / "run", epochs=2, log=lambda line: None)
    again = fastmlp.run(TrainConfig(**{**config.as_dict(), "epochs": 2, "out": str(tmp_path / "two"),
                                         "sizes": (784, 8, 10), "hidden": tuple(config.hidden)}), log=lambda line: None)
    assert result.config.epochs == 2 and np.array_equal(result.model.params, again.model.params)
    with pytest.raises(ConfigError, match="keeps its settings"):
        fastmlp.resume(tmp_path / "run", expect={"lr": 0.5}, log=lambda line: None)


# ---------------------------------------------------------------- times and metrics.json


def test_times_are_named_and_count_the_whole_run_across_a_resume(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code, _ = interrupted_run("--data-dir", tiny_dir, "--out", out, *SMALL, "--epochs", "3")
    assert code == 130
    code, stdout, err = run_main(capsys, "--resume", out)
    assert code == 0, err
    metrics = _metrics(out)
    times, epochs = metrics["times"], metrics["epochs"]
    assert times["training_s"] == metrics["train_seconds"] == pytest.approx(sum(e["epoch_time"] for e in epochs))
    assert times["training_before_s"] == pytest.approx(epochs[0]["epoch_time"])
    assert times["total_s"] == pytest.approx(times["startup_s"] + (times["training_s"] - times["training_before_s"])
                                             + times["other_s"])
    assert times["startup_s"] >= times["data_s"] + times["compile_s"]
    line = next(line for line in stdout.splitlines() if line.startswith("time: "))
    assert f"training {times['training_s']:.1f} s (the sum of 3 epochs; " in line
    assert "in the 1 epoch before this command" in line and "start-up" in line and "compilation" in line
    assert "total" in line and "(this command)" in line and "times_note" in metrics


def test_metrics_name_the_learning_rate_they_record(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    _run(capsys, tiny_dir, out, "--epochs", "3")  # the default preset: one epoch of warm-up to lr 0.1, then cosine
    metrics = _metrics(out)
    assert metrics["epoch_columns"]["lr_end"] == "the learning rate of the epoch's last step"
    assert all("lr" not in e for e in metrics["epochs"])
    assert metrics["epochs"][0]["lr_end"] == pytest.approx(0.1)  # the warm-up epoch ends at the peak
    assert metrics["epochs"][-1]["lr_end"] == pytest.approx(0.0, abs=1e-3)


def test_the_progress_bar_shows_the_running_loss_and_the_last_accuracy(monkeypatch):
    from fastmlp import trainer as trainer_module

    class Bar:
        disable = False

        def __init__(self):
            self.postfix, self.steps = None, 0

        def update(self, n):
            self.steps += n

        def set_postfix(self, postfix, refresh=True):
            self.postfix = postfix

    monkeypatch.setattr(trainer_module._BarStep, "EVERY_S", 0.0)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((100, 6)).astype(np.float32), rng.integers(0, 3, 100)
    trainer = fastmlp.Trainer(fastmlp.MLP((6, 5, 3)), batch_size=10, progress=False, log=None)
    trainer.history["train_acc"].append(0.5)
    bar = Bar()
    bar.last_accuracy = ("train acc", 0.5)
    xd, yd = trainer.prepare(x, y)
    losses = trainer.train_epoch(xd, yd, 0.1, bar=bar)
    assert bar.steps == 10
    assert bar.postfix == {"loss": f"{losses.mean():.4f}", "train acc (last epoch)": "50.00%"}


def test_a_checkpoint_with_the_first_step_lr_per_epoch_resumes(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code, _ = interrupted_run("--data-dir", tiny_dir, "--out", out, *SMALL, "--epochs", "3")
    assert code == 130
    with np.load(out / NAME) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    history = meta["checkpoint"]["history"]
    history["lr"] = [0.0002] * len(history.pop("lr_end"))  # a history keyed 'lr' (each epoch's first step)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(out / NAME, **arrays)
    code, _, err = run_main(capsys, "--resume", out, "--quiet")
    assert code == 0, err
    assert [e["lr_end"] for e in _metrics(out)["epochs"]][:1] == [None]
    assert load_checkpoint(out / NAME)[1]["epochs_done"] == 3
