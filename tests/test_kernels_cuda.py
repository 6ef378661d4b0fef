"""CUDA (numba.cuda.jit) kernels against the same references as the CPU kernels.

Runs on a real GPU, or on Numba's CUDA simulator: ``test_cuda_simulator.py``
runs this file in a child process with ``NUMBA_ENABLE_CUDASIM=1`` on every CI
run, so indexing and bounds bugs are caught without hardware.
"""

import numpy as np
import pytest
from kernel_cases import (
    DTYPES,
    SGD_SETTINGS,
    assert_close,
    binary_logit_cases,
    check_loss_kernel,
    elementwise_cases,
    logits_cases,
    on_cuda,
    poisson_scale,
    rates_state,
    row_slice,
    scale_rows_cases,
    target_cases,
    update_cases,
)
from numba import config, cuda

from fastmlp import kernels

SMALL = bool(config.ENABLE_CUDASIM)  # the simulator runs each GPU thread in Python

pytestmark = pytest.mark.skipif(
    not cuda.is_available(), reason="no CUDA GPU and NUMBA_ENABLE_CUDASIM is not set (test_cuda_simulator.py runs these under the simulator)"
)


@pytest.fixture(scope="module")
def launch():
    return kernels.cuda_kernels()


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_matches_reference(launch, dtype):
    cases = logits_cases(np.random.default_rng(0), dtype, small=SMALL)
    check_loss_kernel(on_cuda(launch.softmax_xent), kernels.softmax_xent_reference, cases, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_with_label_smoothing_matches_reference(launch, dtype):
    rng = np.random.default_rng(10)
    for name, z, y in logits_cases(rng, dtype, small=SMALL):
        want_loss, want_grad = kernels.softmax_xent_reference(z, y, 0.1)
        d_z, d_loss = cuda.to_device(z), cuda.to_device(np.zeros(len(y), dtype=dtype))
        launch.softmax_xent(d_z, cuda.to_device(y), d_loss, 0.1)
        assert_close(d_loss.copy_to_host(), want_loss, dtype, f"{name} smoothed loss", np.abs(z).max(axis=1))
        assert_close(d_z.copy_to_host(), want_grad, dtype, f"{name} smoothed dlogits")


def test_softmax_xent_out_of_range_label_gives_nan(launch):
    d_z = cuda.to_device(np.zeros((3, 4), dtype=np.float32))
    d_loss = cuda.to_device(np.zeros(3, dtype=np.float32))
    launch.softmax_xent(d_z, cuda.to_device(np.array([0, 4, -1])), d_loss)
    loss = d_loss.copy_to_host()
    assert np.isfinite(loss[0]) and np.isnan(loss[1:]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_logistic_xent_matches_reference(launch, dtype):
    cases = binary_logit_cases(np.random.default_rng(6), dtype, small=SMALL)
    check_loss_kernel(on_cuda(launch.logistic_xent), kernels.logistic_xent_reference, cases, dtype)


def test_logistic_xent_bad_label_or_nan_logit_gives_nan(launch):
    d_z = cuda.to_device(np.array([[0.5], [0.5], [0.5], [np.nan]], dtype=np.float32))
    d_loss = cuda.to_device(np.zeros(4, dtype=np.float32))
    launch.logistic_xent(d_z, cuda.to_device(np.array([1, 2, -1, 0])), d_loss)
    loss, z = d_loss.copy_to_host(), d_z.copy_to_host()
    assert np.isfinite(loss[0]) and np.isnan(loss[1:]).all()
    assert np.isfinite(z[0]).all() and np.isnan(z[1:]).all()


@pytest.mark.parametrize("op, cases, scale", [("multilabel_xent", "multilabel", None), ("squared_error", "squared", None),
                                               ("poisson_deviance", "poisson", poisson_scale)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_target_losses_match_reference(launch, dtype, op, cases, scale):
    rng = np.random.default_rng(13)
    run, reference = on_cuda(getattr(launch, op)), getattr(kernels, f"{op}_reference")
    check_loss_kernel(run, reference, target_cases(rng, dtype, cases, small=SMALL), dtype, scale)


@pytest.mark.parametrize("op", ["multilabel_xent", "squared_error", "poisson_deviance"])
def test_target_losses_propagate_nan(launch, op):
    z = np.array([[0.5, np.nan], [0.5, 0.5], [0.5, 0.5]], dtype=np.float32)
    t = np.array([[1.0, 0.0], [np.nan, 1.0], [0.0, 1.0]], dtype=np.float32)
    d_z, d_loss = cuda.to_device(z), cuda.to_device(np.zeros(3, dtype=np.float32))
    getattr(launch, op)(d_z, cuda.to_device(t), d_loss)
    loss, dz = d_loss.copy_to_host(), d_z.copy_to_host()
    assert np.isnan(loss[:2]).all() and np.isfinite(loss[2]), loss
    assert np.isnan(dz[0, 1]) and np.isnan(dz[1, 0]) and np.isfinite(dz[2]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_scale_rows_scales_the_rows_of_the_current_step(launch, dtype):
    for name, dlogits, row_loss, row_scale, step, batch in scale_rows_cases(np.random.default_rng(8), dtype, small=SMALL):
        want_d, want_l = kernels.scale_rows_reference(dlogits, row_loss, row_scale, step, batch)
        k = dlogits.shape[0]
        d_buf, l_buf = cuda.to_device(row_slice(dlogits, 3).base), cuda.to_device(row_slice(row_loss, 3).base)
        launch.scale_rows(d_buf[:k], l_buf[:k], cuda.to_device(row_scale), cuda.to_device(np.array([step, 99])), batch)
        d, l = d_buf.copy_to_host(), l_buf.copy_to_host()
        assert_close(d[:k], want_d, dtype, f"{name} dlogits")
        assert_close(l[:k], want_l, dtype, f"{name} row_loss")
        assert np.isnan(d[k:]).all() and np.isnan(l[k:]).all(), f"{name}: rows past the slice were written"


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_backward_matches_reference(launch, activation, dtype):
    rng = np.random.default_rng(1)
    reference = getattr(kernels, f"{activation}_backward_reference")
    kernel = getattr(launch, f"{activation}_backward")
    for name, out, dout in elementwise_cases(rng, dtype, activation, small=SMALL):
        want = reference(out, dout)
        d_out, d_dout = cuda.to_device(out), cuda.to_device(dout)
        kernel(d_out, d_dout)
        assert_close(d_dout.copy_to_host(), want, dtype, f"{activation} {name}")


@pytest.mark.parametrize("momentum, nesterov, wd", SGD_SETTINGS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_update_matches_reference(launch, dtype, momentum, nesterov, wd):
    rng = np.random.default_rng(3)
    for name, p, g, (v, _), n_decay in update_cases(rng, dtype, small=SMALL):
        if not momentum:
            v = v[:0]
        want_p, want_v = kernels.sgd_update_reference(p, g, v, 0.05, momentum, nesterov, wd, n_decay)
        d_p, d_g, d_v = cuda.to_device(p), cuda.to_device(g), cuda.to_device(v)
        d_rates, d_state = (cuda.to_device(a) for a in rates_state(dtype, 0.05, wd))
        launch.sgd_update(d_p, d_g, d_v, d_rates, d_state, momentum, nesterov, n_decay)
        assert_close(d_p.copy_to_host(), want_p, dtype, f"sgd {name} params")
        if momentum:
            assert_close(d_v.copy_to_host(), want_v, dtype, f"sgd {name} velocity")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sklearn_eps", [False, True])
def test_adam_update_matches_reference(launch, dtype, sklearn_eps):
    rng = np.random.default_rng(4)
    for t in (1, 3000):
        for name, p, g, (m, v), n_decay in update_cases(rng, dtype, small=SMALL):
            want = kernels.adam_update_reference(p, g, m, v, 1e-3, 0.9, 0.999, 1e-3, t, 1e-2, n_decay, sklearn_eps)
            d = [cuda.to_device(a) for a in (p, g, m, v)]
            d_rates, d_state = (cuda.to_device(a) for a in rates_state(dtype, 1e-3, 1e-2, t_done=t - 1))
            launch.adam_update(*d, d_rates, d_state, 0.9, 0.999, 1e-3, n_decay, sklearn_eps)
            for what, a, b in zip(("params", "m", "v"), (d[0], d[2], d[3]), want):
                assert_close(a.copy_to_host(), b, dtype, f"adam t={t} {name} {what}")


@pytest.mark.parametrize("code", [kernels.IDENTITY, kernels.RELU, kernels.SIGMOID, kernels.TANH])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_act_forward_matches_reference(launch, dtype, code):
    rng = np.random.default_rng(5)
    for shape in ((1, 1), (7, 5), (9, 31) if SMALL else (128, 129)):
        z = (rng.standard_normal(shape) * 30).astype(dtype)
        b = rng.standard_normal(shape[1]).astype(dtype)
        want = kernels.bias_act_forward_reference(z, b, code)
        d_z = cuda.to_device(z)
        launch.bias_act_forward(d_z, cuda.to_device(b), code)
        assert_close(d_z.copy_to_host(), want, dtype, f"code {code} {shape}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_batch_takes_the_rows_of_the_current_step(launch, dtype):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((11, 130 if not SMALL else 5)).astype(dtype)  # > one block of columns on a GPU
    y = rng.integers(0, 3, 11)
    perm = rng.permutation(11)
    d_X, d_y, d_perm = cuda.to_device(X), cuda.to_device(y), cuda.to_device(perm)
    for step, k in ((0, 4), (2, 3), (10, 1)):
        batch = 1 if k == 1 else 4
        d_xb = cuda.to_device(np.full((k, X.shape[1]), np.nan, dtype=dtype))
        d_yb = cuda.to_device(np.full(k, -1))
        launch.gather_batch(d_X, d_y, d_perm, cuda.to_device(np.array([step, 99])), batch, d_xb, d_yb)
        want_x, want_y = kernels.gather_batch_reference(X, y, perm, step, batch, k)
        assert np.array_equal(d_xb.copy_to_host(), want_x), f"rows of step {step}"
        assert np.array_equal(d_yb.copy_to_host(), want_y), f"labels of step {step}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_batch_scales_uint8_pixels(launch, dtype):
    rng = np.random.default_rng(6)
    X = rng.integers(0, 256, (11, 130 if not SMALL else 5)).astype(np.uint8)
    y, perm = rng.integers(0, 3, 11), rng.permutation(11)
    d_X, d_y, d_perm = cuda.to_device(X), cuda.to_device(y), cuda.to_device(perm)
    for step, k in ((0, 4), (2, 3)):
        d_xb = cuda.to_device(np.full((k, X.shape[1]), np.nan, dtype=dtype))
        d_yb = cuda.to_device(np.full(k, -1))
        launch.gather_batch(d_X, d_y, d_perm, cuda.to_device(np.array([step, 0])), 4, d_xb, d_yb, 1 / 255)
        want_x, want_y = kernels.gather_batch_reference(X, y, perm, step, 4, k, 1 / 255, dtype)
        assert np.array_equal(d_xb.copy_to_host(), want_x), f"rows of step {step}"
        assert np.array_equal(d_yb.copy_to_host(), want_y), f"labels of step {step}"


@pytest.mark.parametrize("scaled", [False, True], ids=["float", "uint8"])
def test_gather_batch_takes_2d_float_targets(launch, scaled):
    # more target columns than feature columns, and fewer, each past one block of 128 threads:
    # the blocks cover both
    rng = np.random.default_rng(9)
    for d, c in ((130, 3), (5, 130)):
        X = rng.integers(0, 256, (11, d)).astype(np.uint8 if scaled else np.float32)
        y = rng.standard_normal((11, c)).astype(np.float32)
        perm = rng.permutation(11)
        scale = 1 / 255 if scaled else 1.0
        d_X, d_y, d_perm = cuda.to_device(X), cuda.to_device(y), cuda.to_device(perm)
        for step, k in ((0, 4), (2, 3)):
            d_xb = cuda.to_device(np.full((k, d), np.nan, dtype=np.float32))
            d_yb = cuda.to_device(np.full((k, c), np.nan, dtype=np.float32))
            launch.gather_batch(d_X, d_y, d_perm, cuda.to_device(np.array([step, 0])), 4, d_xb, d_yb, scale)
            want_x, want_y = kernels.gather_batch_reference(X, y, perm, step, 4, k, scale, np.float32)
            assert np.array_equal(d_xb.copy_to_host(), want_x), f"d={d} c={c}: rows of step {step}"
            assert np.array_equal(d_yb.copy_to_host(), want_y), f"d={d} c={c}: targets of step {step}"


def test_gather_batch_launches_batches_past_65535_rows(launch):
    # the batch rows are blocks along x (up to 2**31 - 1), not y (up to 65,535)
    k, n = 70000, 70003
    X = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    y, perm, state = np.arange(n), np.arange(n)[::-1].copy(), np.array([0, 0])
    xb, yb = np.zeros((k, 2), np.float32), np.zeros(k, np.int64)
    if SMALL:  # 70000 blocks are too many threads for the simulator: check the launch it would make
        bound = launch.gather_batch.bind(*(cuda.to_device(a) for a in (X, y, perm, state)), k,
                                         cuda.to_device(xb), cuda.to_device(yb))
        ((_, (grid, threads, _), args),) = bound.args[0]
        assert grid == (k, 1) and threads == 128 and args[1].shape == (n, 1) and args[6].shape == (k, 1)
        return
    d_xb, d_yb = cuda.to_device(xb), cuda.to_device(yb)
    launch.gather_batch(*(cuda.to_device(a) for a in (X, y, perm, state)), k, d_xb, d_yb)
    want_x, want_y = kernels.gather_batch_reference(X, y, perm, 0, k, k)
    assert np.array_equal(d_xb.copy_to_host(), want_x) and np.array_equal(d_yb.copy_to_host(), want_y)


# the simulator runs the hash in Python on NumPy scalars, which warn where the GPU just wraps
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("p", [0.0, 0.5])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_matches_reference_and_the_cpu_mask(launch, dtype, p):
    # the mask is a hash of (seed, step, layer, element): the very same bits on both devices
    rng = np.random.default_rng(12)
    for shape in ((1, 1), (7, 5), (9, 31)) if SMALL else ((1, 1), (7, 5), (128, 129)):
        x = rng.standard_normal(shape).astype(dtype)
        want = kernels.dropout_reference(x, 7, 41, 2, p)
        d_x, d_out = cuda.to_device(x), cuda.to_device(np.full_like(x, np.nan))
        d_state = cuda.to_device(np.array([3, 41]))
        launch.dropout(d_x, d_out, d_state, 7, 2, p)
        assert_close(d_out.copy_to_host(), want, dtype, f"dropout p={p} {shape}")
        cpu = np.empty_like(x)
        kernels.CPU_KERNELS.dropout(x, cpu, np.array([3, 41]), 7, 2, p)
        assert np.array_equal(d_out.copy_to_host() == 0, cpu == 0), "CPU and CUDA masks differ"
        launch.dropout(d_x, d_x, d_state, 7, 2, p)  # in place
        assert np.array_equal(d_x.copy_to_host(), d_out.copy_to_host())


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_into_writes_the_current_steps_slot(launch, dtype, squared):
    rng = np.random.default_rng(7)
    for size in (1, 300) if SMALL else (1, 300, 100000):
        values = rng.standard_normal(size).astype(dtype)
        d_out = cuda.to_device(np.full(4, np.nan, dtype=dtype))
        launch.sum_into(cuda.to_device(values), d_out, cuda.to_device(np.array([2, 0])), squared)
        out = d_out.copy_to_host()
        # another summation order than NumPy's: allow rounding that grows with the length
        want = kernels.sum_into_reference(values.astype(np.float64), squared)
        atol = size * (1e-6 if dtype == np.float32 else 1e-14) * float(np.abs(values).max()) ** (2 if squared else 1)
        np.testing.assert_allclose(out[2], want, rtol=1e-6, atol=atol, err_msg=f"sum of {size}")
        assert np.isnan(out[[0, 1, 3]]).all(), "only the current step's slot is written"


def test_advance_moves_both_counters(launch):
    d_state = cuda.to_device(np.array([3, 40], dtype=np.int64))
    launch.advance(d_state)
    assert d_state.copy_to_host().tolist() == [4, 41]
