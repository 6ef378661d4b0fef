"""benchmarks/gpu_gemm.py without a GPU: which GEMMs and split factors it times,
and how it tells what to retune. The timers are stand-ins; no timing is asserted."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ is imported from the checkout, as python -m does
from benchmarks import gpu_gemm, gpu_probes  # noqa: E402
from fastmlp.kernels.gemm_tiles import choose_split, split_chunks  # noqa: E402


def test_the_step_of_the_benchmark_net_has_eight_products():
    cases = gpu_gemm.gemm_cases((784, 128, 64, 10), 128)
    assert [c[0] for c in cases] == ["linear_forward 1", "linear_backward 1", "linear_forward 2", "linear_backward 2",
                                     "backward_input 2", "linear_forward 3", "linear_backward 3", "backward_input 3"]
    products = {name: product for name, _, _, product in cases}
    assert products["linear_forward 1"] == (128, 128, 784)  # (rows, cols, depth) of C
    assert products["linear_backward 1"] == (785, 128, 128)  # [dW; db]: one more row
    assert products["backward_input 3"] == (128, 64, 10)


def test_split_candidates_are_the_distinct_factors_split_chunks_keeps():
    assert gpu_gemm.split_candidates(784) == [1, 2, 4, 7, 13]  # 25 steps of 32
    assert gpu_gemm.split_candidates(64) == [1, 2]
    assert gpu_gemm.split_candidates(10) == [1]


def test_table_finds_the_best_split_and_how_far_the_heuristic_is():
    cases = gpu_gemm.gemm_cases((784, 128, 64, 10), 128)
    timed = []

    def time_split(case, split):
        timed.append((case[0], split))
        if case[0] == "linear_forward 2" and split == 2:
            raise RuntimeError("launch failed")
        return 100 / split + 10 * split  # fastest near split 3

    rows = {r["name"]: r for r in gpu_gemm.gemm_table(cases, time_split, lambda case: 20.0)}
    first = rows["linear_forward 1"]
    assert first["auto"] == split_chunks(784, choose_split(128, 128, 784))[1] == 7
    assert set(first["us"]) == {1, 2, 4, 7, 13} and first["best"] == 4 and first["best_us"] == 65.0
    assert first["auto_over_best"] == pytest.approx((100 / 7 + 70) / 65)
    assert first["best_over_cublas"] == pytest.approx(65 / 20)
    assert rows["linear_forward 2"]["errors"] == {2: "RuntimeError: launch failed"} and rows["linear_forward 2"]["us"]
    assert len(timed) == len(set(timed))  # each (case, split) timed once
    summary = gpu_gemm.summarize(list(rows.values()))
    assert summary["per_step_us"]["cublas_us"] == 20.0 * len(rows)
    assert any(r.startswith("linear_forward 1: 4 (picked 7") for r in summary["retune"])
    assert "better split for" in summary["note"]


def test_a_split_the_candidates_miss_is_timed_when_the_heuristic_picks_it():
    # a (128, 224) output (28 tiles) with depth 1024 (32 steps): choose_split asks for 5, not among 1, 2, 4, 8, 16
    case = ("wide", "linear_forward", (1024, 224), (128, 224, 1024))
    auto = split_chunks(1024, choose_split(128, 224, 1024))[1]
    assert auto == 5 and auto not in gpu_gemm.split_candidates(1024)
    rows = gpu_gemm.gemm_table([case], lambda c, s: 1.0 + s, lambda c: 1.0)
    assert set(rows[0]["us"]) == {1, 2, 4, 8, 16, 5} and rows[0]["auto_us"] == 6.0


def test_cublas_failing_is_noted_and_every_split_failing_is_none_timed():
    case = ("f", "linear_forward", (64, 10), (128, 10, 64))

    def fail(*args):
        raise OSError("no torch")

    rows = gpu_gemm.gemm_table([case], fail, fail)
    assert rows[0]["us"] == {} and "best" not in rows[0] and rows[0]["errors"]["cublas"] == "OSError: no torch"
    assert "none timed" in gpu_gemm.summarize(rows)["note"]


def test_the_probe_without_cupy_fails_in_its_json(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert gpu_probes.main(["gemm", "--out", str(tmp_path), "--quick"]) == 1
    result = json.loads((tmp_path / "gemm.json").read_text())
    assert result["status"] == "failed" and "cupy" in result["reason"]
