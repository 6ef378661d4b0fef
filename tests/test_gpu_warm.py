"""gpu_check's warm step: its plan covers every kernel the training step, the GEMM
variants and evaluation launch, in both dtypes. Needs no GPU: the plan runs the
real Trainer and TrainStep on a stand-in backend that records the launches."""

import sys
from pathlib import Path

import pytest
from numba import config, float32, float64

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ is imported from the checkout, as python -m does
from benchmarks import gpu_check, gpu_warm  # noqa: E402

pytestmark = pytest.mark.skipif(bool(config.ENABLE_CUDASIM), reason="plans for the real CUDA target")


@pytest.fixture(scope="module")
def planned():
    return gpu_warm.plan()


def test_every_cuda_kernel_is_planned_in_both_dtypes(planned):
    kernels = gpu_warm.cuda_dispatchers()
    assert len(kernels) >= 20 and set(kernels) == set(planned.specs)
    for key, sigs in planned.specs.items():
        if key[1] == "_advance_cuda":  # int64 state only
            continue
        floats = {t.dtype for sig in sigs for t in sig if hasattr(t, "dtype") and t.dtype in (float32, float64)}
        assert floats == {float32, float64}, key


def _step_specs(sizes, dtype, x, **trainer):
    """(kernel, types) of the launches of the TrainStep a Trainer builds, read from the
    step's own call list (TrainStep.calls) through the CUDA launchers, by a fresh planner."""
    import numpy as np

    import fastmlp

    p = gpu_warm.Planner()
    model = fastmlp.MLP(sizes, dtype=dtype, device=p.backend)
    t = fastmlp.Trainer(model, progress=False, log=None, **trainer)
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (300, sizes[0]), dtype=np.uint8) if x == "uint8" else rng.random((300, sizes[0]))
    step = p.step_calls(model, t, X, rng.integers(0, sizes[-1], 300))
    ops = {fn.__name__ for calls in step.calls.values() for fn, _ in calls}
    assert {"gather_batch", "linear_forward", "linear_backward", "backward_input", "advance"} <= ops
    model.logits(X)  # evaluation
    return {(key, sig) for key, sigs in p.specs.items() for sig in sigs}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_recorded_steps_of_the_later_steps_are_all_planned(planned, dtype):
    have = {(key, sig) for key, sigs in planned.specs.items() for sig in sigs}
    # the epoch benchmark's recipe (epoch, capture, scaling, tta, parity: 784-128-64-10, batch 128)
    epoch = _step_specs((784, 128, 64, 10), dtype, "uint8", optimizer="momentum", batch_size=128, dropout=0.0)
    assert epoch <= have, sorted(epoch - have)[:3]
    others = _step_specs((20, 16, 16, 4), dtype, "float", optimizer="adam", batch_size=64, dropout=0.2,
                         label_smoothing=0.1, track_weight_sq=True)
    assert others <= have, sorted(others - have)[:3]


def test_every_planned_specialisation_is_one_the_ptx_test_compiles(planned):
    """test_kernels_ptx compiles each (kernel, types) of its table to PTX for sm_90: the
    plan's types are the same objects, so each warm compile is one the CPU suite proves."""
    from test_kernels_ptx import _signatures

    table = {(k.py_func.__name__, tuple(sig)) for t in (float32, float64) for k, sig in _signatures(t).values()}
    for (module, name), sigs in planned.specs.items():
        for sig in sigs:
            assert (name, sig) in table, f"{name}{gpu_warm.signature_text(sig)} is not compiled by test_kernels_ptx"


def test_warm_comes_before_anything_timed_and_the_order_is_capture_epoch_parity_tests():
    names = [s.name for s in gpu_check.STEPS]
    assert names[:8] == ["setup", "environment", "warm", "capture", "epoch", "parity", "pytest", "micro"]
    assert names[-1] == "pytest-rest" and gpu_check.BUDGET == {False: 420, True: 200}
    warm = next(s for s in gpu_check.STEPS if s.name == "warm")
    ctx = gpu_check.Context(out=ROOT, data_dir=ROOT)
    assert warm.gpu and warm.command(ctx)[1:3] == ["-m", "benchmarks.gpu_warm"]


def test_list_shows_the_order_and_the_budgets(capsys):
    assert gpu_check.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "budget: full run 420 s, --quick 200 s" in out
    rows = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
    assert rows == [s.name for s in gpu_check.STEPS]
