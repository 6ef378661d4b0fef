"""``python -m fastmlp.train``: outputs, exit codes and one-line errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp.train import main


def _cli(*args, env=None):
    """Run the CLI in a child process: (exit code, stdout, stderr)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "fastmlp.train", *args], capture_output=True, text=True, env=full_env, timeout=300
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_trains_and_writes_model_metrics_and_plots(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["--data-dir", str(tiny_dir), "--epochs", "3", "--batch-size", "32", "--out", str(out), "--quiet"])
    assert code == 0
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "confusion.png", "history.png", "metrics.json", "model.npz", "samples.png"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 3 and metrics["sizes"] == [784, *fastmlp.presets.DEFAULT["hidden"], 10]
    assert metrics["test_accuracy"] > 0.9  # the tiny set is easy: one bright bar per class
    for png in ("history.png", "confusion.png", "samples.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = fastmlp.load(out / "model.npz")
    ds = fastmlp.load_mnist(data_dir=tiny_dir)
    assert (model.predict(ds.x_test) == ds.y_test).mean() == pytest.approx(metrics["test_accuracy"])
    assert "test accuracy" in capsys.readouterr().out


def test_no_plots_and_per_epoch_lines(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--data-dir", str(tiny_dir), "--epochs", "2", "--sizes", "784,16,10", "--val-split", "0.2"]
    assert main([*args, "--no-plots", "--optimizer", "adam", "--lr", "0.01", "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "metrics.json", "model.npz"]
    text = capsys.readouterr().out
    assert "epoch   2" in text and "val acc" in text and "samples/s" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch-size", "0"], "--batch-size: must be > 0"),
        (["--batch-size", "-5"], "--batch-size: must be > 0"),
        (["--epochs", "0"], "--epochs: must be > 0"),
        (["--lr", "0"], "--lr: must be > 0"),
        (["--lr", "-0.1"], "--lr: must be > 0"),
        (["--sizes", "784"], "at least two"),
        (["--activation", "swish"], "invalid choice"),
        (["--preset", "fastest"], "invalid choice"),
        (["--schedule", "linear"], "invalid choice"),
        (["--dropout", "1"], "--dropout: must be in [0, 1)"),
        (["--label-smoothing", "-0.1"], "--label-smoothing: must be a finite number >= 0"),
        (["--target-accuracy", "98"], "fraction in (0, 1]"),
        (["--eval-every", "0"], "--eval-every: must be > 0"),
        (["--hidden", "128,0"], "hidden sizes must be positive"),
    ],
)
def test_usage_errors_exit_2(args, message):
    code, _, err = _cli(*args)
    assert code == 2 and message in err


def test_preset_flags_come_first_and_go_to_metrics_and_given_flags_win(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--data-dir", str(tiny_dir), "--preset", "fast", "--epochs", "2", "--batch-size", "32", "--hidden", "32",
            "--dropout", "0.1", "--label-smoothing", "0.1", "--schedule", "onecycle", "--out", str(out), "--no-plots"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    flags = fastmlp.presets.as_flags(fastmlp.presets.PRESETS["fast"])
    assert lines[0] == f"preset fast: {flags}"
    assert lines[1] == "changed from the preset: --hidden 32 --schedule onecycle --batch-size 32 --epochs 2 " \
                       "--dropout 0.1 --label-smoothing 0.1"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["preset"] == {"name": "fast", "flags": flags}
    assert metrics["sizes"] == [784, 32, 10] and len(metrics["epochs"]) == 2
    s = metrics["settings"]
    fast = fastmlp.presets.PRESETS["fast"]  # what was not given comes from the preset
    assert (s["dropout"], s["label_smoothing"], s["schedule"]) == (0.1, 0.1, "onecycle")
    assert (s["lr"], s["warmup"], s["weight_decay"]) == (fast["lr"], fast["warmup"], fast["weight_decay"])


def test_target_accuracy_stops_the_run_and_verbose_names_the_blas(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--data-dir", str(tiny_dir), "--epochs", "5", "--batch-size", "16", "--target-accuracy", "0.5",
            "--eval-every", "3", "--out", str(out), "--no-plots", "--verbose"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "BLAS: " in text and " kernels, " in text and " threads)" in text
    target = json.loads((out / "metrics.json").read_text())["target"]
    assert target["reached"] and target["split"] == "test" and target["step"] < 5 * 15
    assert "reached" in text and "stopping" in text


def _assert_one_line_error(code, err, *needles):
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


def test_missing_data_dir(tmp_path):
    code, _, err = _cli("--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, "nowhere")


def test_truncated_idx_file(tiny_dir, tmp_path):
    f = tiny_dir / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:100])
    code, _, err = _cli("--data-dir", str(tiny_dir), "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, "train-images-idx3-ubyte.gz")


def test_wrong_device_env(tiny_dir, tmp_path):
    code, _, err = _cli("--data-dir", str(tiny_dir), env={"FASTMLP_DEVICE": "quantum"})
    _assert_one_line_error(code, err, "quantum", "FASTMLP_DEVICE")


def test_sizes_must_match_the_data(tiny_dir, tmp_path):
    code, _, err = _cli("--data-dir", str(tiny_dir), "--sizes", "100,32,10", "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, "784")
    code, _, err = _cli("--data-dir", str(tiny_dir), "--sizes", "784,32,7", "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, "10 classes")


def test_debug_shows_the_traceback(tmp_path):
    code, _, err = _cli("--data-dir", str(tmp_path / "nowhere"), "--debug")
    assert code == 1 and "Traceback" in err


@pytest.mark.slow
def test_real_mnist_one_epoch(data_root, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = _cli(
        "--data-dir", str(data_root / "mnist"), "--epochs", "1", "--sizes", "784,64,10", "--out", str(out), "--no-plots"
    )
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.93, stdout
    assert np.isfinite(metrics["epochs"][0]["train_loss"])


def test_cuda_graph_flag(tiny_dir, tmp_path):
    """--cuda-graph is recorded in metrics.json; 'on' without a GPU is one line, exit 1."""
    out = tmp_path / "run"
    code = main(["--data-dir", str(tiny_dir), "--epochs", "1", "--sizes", "784,16,10", "--out", str(out), "--no-plots",
                 "--quiet", "--cuda-graph", "off"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cuda_graph"]["mode"] == "eager" and metrics["settings"]["cuda_graph"] == "off"
    code, _, err = _cli("--data-dir", str(tiny_dir), "--epochs", "1", "--out", str(tmp_path / "on"), "--no-plots",
                        "--cuda-graph", "on", env={"FASTMLP_DEVICE": "cpu"})
    assert code == 1 and "needs a CUDA device" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
