"""Every benchmark command runs end to end on a tiny dataset and writes its JSON.

These tests check that the benchmarks work (arguments, missing devices and peers
reported as skipped rows, results files and plots, the report), not how fast
anything is: timing lives in the committed results, never in a test. Each runs
as ``python -m benchmarks.<name>`` from the repository root, as the README says,
with its results sent to a temporary folder.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_idx_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_idx_dataset(tmp_path_factory.mktemp("bench") / "mnist", n_train=300, n_test=100)


def run(module, *args, results):
    env = {**os.environ, "FASTMLP_BENCH_RESULTS": str(results), "MPLBACKEND": "Agg", "FASTMLP_DEVICE": "cpu"}
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_epoch_benchmark_table_json_plot_and_skipped_rows(tiny, tmp_path):
    out = run("epoch", "--device", "cpu", "cuda", "--data-dir", tiny, "--sizes", "784,16,10", "--batch-size", 32,
              "--epochs", 2, "--label", "t", results=tmp_path)
    r = json.loads((tmp_path / "epoch-t.json").read_text())
    assert (tmp_path / "epoch-t.png").stat().st_size > 1000
    systems = {(row["key"], row["device"]) for row in r["results"]}
    assert ("fastmlp", "cpu") in systems and ("numpy", "cpu") in systems
    for row in r["results"]:
        assert row["median_epoch_s"] > 0 and row["ratio_to_fastmlp"] > 0
        assert row["test_accuracy"] is None if row["key"] == "gemm" else 0 <= row["test_accuracy"] <= 1
    assert ("gemm", "cpu") in systems, "the GEMM-only floor runs beside the systems"
    assert r["machine"]["blas_runtime"] and r["settings"]["fastmlp_input"].startswith("uint8")
    assert next(row for row in r["results"] if row["key"] == "fastmlp")["ratio_to_fastmlp"] == 1.0
    # every system asked for is a row or a skipped entry with its reason, on every device
    for key in ("fastmlp", "numpy", "torch", "sklearn"):
        for device in ("cpu", "cuda"):
            assert (key, device) in systems or any(k.endswith(f"({device})") for k in r["skipped"]), (key, device)
    assert all(why for why in r["skipped"].values())
    assert "skipped:" in out or not r["skipped"]
    assert r["machine"]["cores"] >= 1 and r["cpu_sgemm_peak_gflops"] > 0


def test_scaling_and_time_to_accuracy(tiny, tmp_path):
    run("scaling", "--device", "cpu", "cuda", "--data-dir", tiny, "--batch-sizes", "32,64", "--widths", "16,32",
        "--width-samples", 64, "--label", "t", results=tmp_path)
    s = json.loads((tmp_path / "scaling-t.json").read_text())
    assert [p["batch_size"] for p in s["batch"]["cpu"]] == [32, 64]
    assert len(s["width"]["cpu"]) == 2 and all(p["samples_per_s"] > 0 for p in s["width"]["cpu"])
    assert (tmp_path / "scaling-t.png").exists()
    run("time_to_accuracy", "--device", "cpu", "cuda", "--data-dir", tiny, "--target", 0.5, "--presets", "fast",
        "--seeds", 0, 1, "--eval-every", 2, "--max-epochs", 5, "--label", "t", results=tmp_path)
    t = json.loads((tmp_path / "time-to-accuracy-t.json").read_text())
    preset_rows = [row for row in t["results"] if row["recipe"] == "--preset fast"]
    assert [row["seed"] for row in preset_rows] == [0, 1]
    for row in preset_rows:  # stopped at a check: every 2 steps, or the end of an epoch (3 steps of 128)
        assert row["device"] == "cpu" and row["reached"] and row["seconds"] > 0 and row["accuracy"] >= 0.5
        assert row["steps"] % 2 == 0 or row["steps"] % 3 == 0 and row["epochs"] == row["steps"] / 3
    same = {row["key"]: row for row in t["results"] if row["recipe"].startswith("same")}
    assert "fastmlp" in same and "numpy" in same and ("torch" in same or "torch (cpu)" in t["skipped"])
    assert all(1 <= row["epochs"] <= 5 and len(row["curve"]) == row["epochs"] for row in same.values())
    assert "fastmlp (cuda)" in t["skipped"] or any(row["device"].startswith("cuda") for row in t["results"])


def test_recipes_runs_each_change_of_a_preset_over_the_seeds(tiny, tmp_path):
    log = tmp_path / "recipes.log"
    out = run("recipes", "--preset", "fast", "--try", "epochs=1 batch_size=32", "epochs=2 batch_size=32 hidden=16",
              "--seeds", 0, 1, "--data-dir", tiny.parent, "--label", "t", "--log", log, results=tmp_path)
    r = json.loads((tmp_path / "recipes-t.json").read_text())
    assert [x["changes"] for x in r["recipes"]] == ["epochs=1 batch_size=32", "epochs=2 batch_size=32 hidden=16"]
    assert "--hidden 16" in r["recipes"][1]["flags"] and r["machine"]["blas_runtime"]
    res = r["recipes"][1]["results"]["mnist"]
    assert [row["seed"] for row in res["runs"]] == [0, 1] and len(res["runs"][0]["test_acc_per_epoch"]) == 2
    assert res["min_test_accuracy"] <= res["mean_test_accuracy"] and res["mean_train_seconds"] > 0
    assert len(res["speed_probe_us"]) == 2 and all(us > 0 for us in res["speed_probe_us"])
    assert log.read_text().splitlines()[-1] == out.strip().splitlines()[-1]


def test_sklearn_fit_profile_and_report(tiny, tmp_path):
    pytest.importorskip("sklearn")
    run("sklearn_fit", "--data-dir", tiny.parent, "--epochs", 1, "--repeats", 1, "--setups", "float32",
        "--label", "t", results=tmp_path)
    (row,) = json.loads((tmp_path / "sklearn-fit-t.json").read_text())["results"]
    assert row["setup"] == "float32" and row["time_ratio"] > 0
    assert row["sklearn"]["n_iter"] == row["fastmlp"]["n_iter"] == 1
    run("profile_epoch", "--data-dir", tiny, "--epochs", 1, "--label", "t", results=tmp_path)
    p = json.loads((tmp_path / "profile-epoch-t.json").read_text())
    assert abs(sum(g["share"] for g in p["groups"]) - 1) < 1e-9 and p["gemm_only_epoch_s"] > 0
    calls = [c["call"] for c in p["per_call"]]
    assert calls[0] == "gather_batch" and calls[-1] == "advance" and "sgd_update" in calls
    assert all(c["alone_us"] > 0 and c["in_epoch_us"] > 0 for c in p["per_call"])
    report = run("report", "--label", "t", results=tmp_path)
    assert "(no epoch-t.json)" in report  # a missing results file is named, not a crash
    assert "| float32 | float32 |" in report


def test_sweep_benchmark(tiny, tmp_path):
    pytest.importorskip("distributed")
    run("sweep", "--data-dir", tiny, "--sizes", "784,16,10", "--lr", "0.1", "--seeds", 2, "--epochs", 1,
        "--batch-size", 32, "--val-split", 0.2, "--workers", 1, "--repeats", 1, "--label", "t", results=tmp_path)
    r = json.loads((tmp_path / "sweep-t.json").read_text())
    assert r["settings"]["trials"] == 2 and r["plain"]["per_trial_s"] > 0 and r["plain"]["cli_process_per_trial_s"] > 0
    assert [s["workers"] for s in r["sweeps"]] == [1]
    assert all(s["trials_per_min"] > 0 and s["cluster_start_stop_s"] > 0 for s in r["sweeps"])
    assert "overhead_per_trial_s" in r and "overhead_per_trial_without_cluster_start_s" in r
