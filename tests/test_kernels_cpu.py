"""CPU (numba.njit) kernels against the plain-NumPy references."""

import numpy as np
import pytest
from kernel_cases import SGD_SETTINGS, DTYPES, assert_close, elementwise_cases, logits_cases, update_cases

from fastmlp import kernels


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_matches_reference(dtype):
    rng = np.random.default_rng(0)
    for name, z, y in logits_cases(rng, dtype):
        want_loss, want_grad = kernels.softmax_xent_reference(z, y)
        got = z.copy()
        loss = np.empty(len(y), dtype=dtype)
        kernels.CPU_KERNELS.softmax_xent(got, y, loss)
        assert np.isfinite(loss).all(), f"{name}: non-finite loss {loss}"
        assert_close(loss, want_loss, dtype, f"{name} loss")
        assert_close(got, want_grad, dtype, f"{name} dlogits")


def test_softmax_xent_extreme_values_are_exact_where_known():
    z = np.array([[1e4, -1e4, 0.0], [3.0, 3.0, 3.0]], dtype=np.float32)
    y = np.array([1, 2])
    loss = np.empty(2, dtype=np.float32)
    kernels.CPU_KERNELS.softmax_xent(z, y, loss)
    # -log softmax picks up the full gap of 2e4 without overflowing; equal logits give log(3).
    np.testing.assert_allclose(loss, [2e4, np.log(3)], rtol=1e-6)
    # each gradient row sums to zero: softmax sums to 1, the one-hot too.
    np.testing.assert_allclose(z.sum(axis=1), 0, atol=1e-7)


def test_softmax_xent_out_of_range_label_gives_nan_not_a_crash():
    z = np.zeros((3, 4), dtype=np.float32)
    loss = np.zeros(3, dtype=np.float32)
    kernels.CPU_KERNELS.softmax_xent(z, np.array([0, 4, -1]), loss)
    assert np.isfinite(loss[0]) and np.isnan(loss[1:]).all()
    assert np.isnan(z[1:]).all() and np.isfinite(z[0]).all()


def test_softmax_xent_propagates_nan_logits():
    z = np.array([[0.0, np.nan, 1.0]], dtype=np.float32)
    loss = np.zeros(1, dtype=np.float32)
    kernels.CPU_KERNELS.softmax_xent(z, np.array([0]), loss)
    assert np.isnan(loss[0])


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_backward_matches_reference(activation, dtype):
    rng = np.random.default_rng(1)
    reference = getattr(kernels, f"{activation}_backward_reference")
    kernel = getattr(kernels.CPU_KERNELS, f"{activation}_backward")
    for name, out, dout in elementwise_cases(rng, dtype, activation):
        want = reference(out, dout)
        got = dout.copy()
        kernel(out, got)
        assert_close(got, want, dtype, f"{activation} {name}")


def test_kernels_work_on_row_slices_of_a_larger_buffer():
    # The trainer passes buf[:n] views for the last, shorter batch.
    rng = np.random.default_rng(2)
    buf = rng.standard_normal((16, 10)).astype(np.float32)
    y = rng.integers(0, 10, 5)
    want_loss, want_grad = kernels.softmax_xent_reference(buf[:5], y)
    loss = np.empty(16, dtype=np.float32)
    kernels.CPU_KERNELS.softmax_xent(buf[:5], y, loss[:5])
    assert_close(buf[:5], want_grad, np.float32, "slice dlogits")
    assert_close(loss[:5], want_loss, np.float32, "slice loss")


@pytest.mark.parametrize("momentum, nesterov, wd", SGD_SETTINGS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_update_matches_reference(dtype, momentum, nesterov, wd):
    rng = np.random.default_rng(3)
    for name, p, g, (v, _), n_decay in update_cases(rng, dtype):
        if not momentum:
            v = v[:0]
        want_p, want_v = kernels.sgd_update_reference(p, g, v, 0.05, momentum, nesterov, wd, n_decay)
        got_p, got_v, g_before = p.copy(), v.copy(), g.copy()
        kernels.CPU_KERNELS.sgd_update(got_p, g, got_v, 0.05, momentum, nesterov, wd, n_decay)
        assert_close(got_p, want_p, dtype, f"sgd {name} params")
        if momentum:
            assert_close(got_v, want_v, dtype, f"sgd {name} velocity")
        assert np.array_equal(g, g_before), "the update must not modify the gradient"


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_matches_reference(dtype):
    rng = np.random.default_rng(4)
    for t in (1, 7):
        for name, p, g, (m, v), n_decay in update_cases(rng, dtype):
            want = kernels.adam_update_reference(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, t, 1e-2, n_decay)
            got = p.copy(), m.copy(), v.copy()
            kernels.CPU_KERNELS.adam_update(*got[:1], g, *got[1:], 1e-3, 0.9, 0.999, 1e-8, t, 1e-2, n_decay)
            for what, a, b in zip(("params", "m", "v"), got, want):
                assert_close(a, b, dtype, f"adam t={t} {name} {what}")


@pytest.mark.parametrize("code", [kernels.IDENTITY, kernels.RELU, kernels.SIGMOID, kernels.TANH])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_act_forward_matches_reference(dtype, code):
    rng = np.random.default_rng(5)
    for shape in ((1, 1), (7, 5), (128, 129)):
        z = (rng.standard_normal(shape) * 30).astype(dtype)  # reaches sigmoid's exp overflow
        z[0, 0] = 0.0
        b = rng.standard_normal(shape[1]).astype(dtype)
        want = kernels.bias_act_forward_reference(z, b, code)
        got = z.copy()
        kernels.CPU_KERNELS.bias_act_forward(got, b, code)
        assert_close(got, want, dtype, f"code {code} {shape}")


def test_bias_relu_keeps_nan():
    z = np.array([[np.nan, -1.0, 2.0]], dtype=np.float32)
    kernels.CPU_KERNELS.bias_act_forward(z, np.zeros(3, np.float32), kernels.RELU)
    assert np.isnan(z[0, 0]) and z[0, 1] == 0 and z[0, 2] == 2
