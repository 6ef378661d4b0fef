"""Every benchmark command runs end to end on a tiny dataset and writes its JSON.

These tests check that the benchmarks work (arguments, missing devices and peers
reported as skipped rows, results files and plots, the report), not how fast
anything is: timing lives in the committed results, never in a test. Each runs
as ``python -m benchmarks.<name>`` from the repository root, as the documentation says,
with its results sent to a temporary folder.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def test_sklearn_fit_parses_max_iter_per_data_and_solver(monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.syspath_prepend(str(ROOT))  # importable under a plain `pytest` too
    from benchmarks.sklearn_fit import parse_max_iter

    assert parse_max_iter(None, ["mnist", "digits"], ["adam", "lbfgs"]) == {
        "mnist": {"adam": 5, "lbfgs": 30}, "digits": {"adam": 50, "lbfgs": 100}}
    assert parse_max_iter(["7", "lbfgs=3", "digits:adam=2"], ["mnist", "digits"], ["adam", "lbfgs"]) == {
        "mnist": {"adam": 7, "lbfgs": 3}, "digits": {"adam": 2, "lbfgs": 3}}
    for bad in ("0", "x", "lbfgs=", "newton=3", "cifar:adam=3"):
        with pytest.raises(SystemExit, match="--max-iter"):
            parse_max_iter([bad], ["digits"], ["adam"])


def test_sklearn_fit_runs_both_estimators_on_every_selected_case(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    monkeypatch.syspath_prepend(str(ROOT))  # importable under a plain `pytest` too
    from benchmarks import common, sklearn_fit

    monkeypatch.setattr(common, "RESULTS", tmp_path)  # what FASTMLP_BENCH_RESULTS does for a new process
    solvers, cases = ["adam", "lbfgs", "sgd"], ["drop-in", "float32", "forced-float32"]
    assert sklearn_fit.main(["--data", "digits", "--solvers", *solvers, "--cases", *cases, "--max-iter", "2",
                             "lbfgs=3", "--repeats", "1", "--device", "cpu", "--label", "t"]) == 0
    r = json.loads((tmp_path / "sklearn-fit-t.json").read_text())
    assert r["benchmark"] == "sklearn_fit" and r["machine"]["cores"] >= 1 and r["machine"]["scikit-learn"]
    s = r["settings"]
    assert s["data"]["digits"]["n_train"] + s["data"]["digits"]["n_test"] == 1797
    assert s["data"]["digits"]["n_features"] == 64 and s["data"]["digits"]["hidden_layer_sizes"] == [64]
    assert s["max_iter"] == {"digits": {"adam": 2, "lbfgs": 3, "sgd": 2}} and s["repeats"] == 1
    assert list(s["solvers"]) == solvers and list(s["cases"]) == cases and s["device"] == "cpu"
    # one row per estimator x solver x case, each with one timed fit of both estimators
    keys = [(row["estimator"], row["solver"], row["case"]) for row in r["results"]]
    assert sorted(keys) == sorted((e, so, c) for e in ("classifier", "regressor") for so in solvers for c in cases)
    for row in r["results"]:
        assert row["data"] == "digits" and row["params"]["max_iter"] == s["max_iter"]["digits"][row["solver"]]
        assert row["X_dtype"] == ("float32" if row["case"] == "float32" else "float64")
        for who in ("sklearn", "fastmlp"):
            fit = row[who]
            assert len(fit["fit_s"]) == 1 and fit["median_fit_s"] == fit["fit_s"][0] > 0
            assert fit["n_iter"] == [row["params"]["max_iter"]] and len(fit["scores"]) == 1
            if row["estimator"] == "classifier":
                assert row["score_name"] == "accuracy" and 0 <= fit["score"] <= 1
            else:
                assert row["score_name"] == "r2" and math.isfinite(fit["score"]) and fit["score"] <= 1
        assert row["fastmlp"]["trained_dtype"] == ["float64" if row["case"] == "drop-in" else "float32"]
        if row["solver"] != "lbfgs":  # scikit-learn's lbfgs keeps SciPy's float64 parameters
            assert row["sklearn"]["trained_dtype"] == [row["X_dtype"]]
        # the BLAS floor of fastmlp's fit: its products, its dtype, its epochs or evaluations
        floor = row["blas_floor"]
        assert floor["dtype"] == row["fastmlp"]["trained_dtype"][0] and floor["layer_sizes"] == [64, 64, 10 if
                                                                                                row["estimator"] == "classifier" else 1]
        if row["solver"] == "lbfgs":
            assert floor["unit"] == "evaluations" and floor["count"] == row["fastmlp"]["nfev"][-1] >= 3
        else:
            assert floor["unit"] == "epochs" and floor["count"] == 2
        assert 0 < floor["floor_s"] and row["floor_ratio"] == floor["floor_s"] / row["sklearn"]["median_fit_s"]
        assert row["time_ratio"] == pytest.approx(row["fastmlp"]["median_fit_s"] / row["sklearn"]["median_fit_s"])
        assert len(row["speed_probe_us"]) == 2 and row["fastmlp_params"]["device"] == "cpu"
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("digits ")]
    assert len(table) == len(r["results"])
    report = run("report", "--label", "t", results=tmp_path)  # the report renders the same rows
    assert sum(line.startswith("| digits | ") for line in report.splitlines()) == len(r["results"])


def test_profile_and_report(tiny, tmp_path):
    run("profile_epoch", "--data-dir", tiny, "--epochs", 1, "--label", "t", results=tmp_path)
    p = json.loads((tmp_path / "profile-epoch-t.json").read_text())
    assert abs(sum(g["share"] for g in p["groups"]) - 1) < 1e-9 and p["gemm_only_epoch_s"] > 0
    calls = [c["call"] for c in p["per_call"]]
    assert calls[0] == "gather_batch" and calls[-1] == "advance" and "sgd_update" in calls
    assert all(c["alone_us"] > 0 and c["in_epoch_us"] > 0 for c in p["per_call"])
    report = run("report", "--label", "t", results=tmp_path)
    assert "(no epoch-t.json)" in report  # a missing results file is named, not a crash


def test_sweep_benchmark(tiny, tmp_path):
    pytest.importorskip("distributed")
    run("sweep", "--data-dir", tiny, "--sizes", "784,16,10", "--lr", "0.1", "--seeds", 2, "--epochs", 1,
        "--batch-size", 32, "--val-split", 0.2, "--workers", 1, "--repeats", 1, "--label", "t", results=tmp_path)
    r = json.loads((tmp_path / "sweep-t.json").read_text())
    assert r["settings"]["trials"] == 2 and r["plain"]["per_trial_s"] > 0 and r["plain"]["cli_process_per_trial_s"] > 0
    assert [s["workers"] for s in r["sweeps"]] == [1]
    assert all(s["trials_per_min"] > 0 and s["cluster_start_stop_s"] > 0 for s in r["sweeps"])
    assert "overhead_per_trial_s" in r and "overhead_per_trial_without_cluster_start_s" in r


def test_optuna_sweep_benchmark(tiny, tmp_path):
    pytest.importorskip("distributed")
    pytest.importorskip("optuna")
    run("optuna_sweep", "--data-dir", tiny, "--sizes", "784,8,10", "784,16,10", "--lr", "0.05,0.2", "--epochs", 2,
        "--batch-size", 32, "--val-split", 0.2, "--workers", 1, "--seeds", 0, "--label", "t", results=tmp_path)
    r = json.loads((tmp_path / "optuna-sweep-t.json").read_text())
    assert r["settings"]["grid_trials"] == 4 and r["grid"]["trials"] == 4 and r["grid"]["seconds"] > 0
    (tpe,) = r["tpe"]
    assert tpe["seed"] == 0 and tpe["seconds"] > 0 and sum(tpe["trials"].values()) >= 4
    assert tpe["trained"] == 4  # the default budget, the grid's size: repeats do not count, so every point
    assert tpe["reached"] == (tpe["seconds_to_target"] is not None)
    assert r["summary"]["seeds"] == 1 and "machine" in r


def test_blas_floor_times_the_products_of_each_batch(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import blas_floor

    assert blas_floor.epoch_rows(450, 200) == [200, 200, 50] and blas_floor.epoch_rows(400, 200) == [200, 200]
    shapes = []
    real = np.matmul

    def recording(a, b, out):
        shapes.append((a.shape, b.shape))
        return real(a, b, out=out)

    monkeypatch.setattr(blas_floor.np, "matmul", recording)
    blas_floor.unit_seconds([5, 4, 3], [7, 2], np.float64, repeats=1)
    # forward a @ W per layer, a.T @ delta per layer, delta @ W.T above the first: 5 products per batch,
    # for the untimed warm pass of each size and then the timed pass
    per_pass = lambda r: [((r, 5), (5, 4)), ((r, 4), (4, 3)), ((5, r), (r, 4)), ((4, r), (r, 3)), ((r, 3), (3, 4))]
    assert shapes == per_pass(2) + per_pass(7) + per_pass(7) + per_pass(2)
    assert blas_floor.floor_seconds([5, 4, 3], 9, np.float32, "adam", 0) == 0
