"""CPU (numba.njit) kernels against the plain-NumPy references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from kernel_cases import (
    DTYPES,
    SGD_SETTINGS,
    assert_close,
    binary_logit_cases,
    check_loss_kernel,
    elementwise_cases,
    linear_inputs,
    logits_cases,
    on_cpu,
    poisson_scale,
    rates_state,
    row_slice,
    scale_rows_cases,
    target_cases,
    update_cases,
)

from fastmlp import kernels


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_matches_reference(dtype):
    cases = logits_cases(np.random.default_rng(0), dtype)
    check_loss_kernel(on_cpu(kernels.CPU_KERNELS.softmax_xent), kernels.softmax_xent_reference, cases, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_with_label_smoothing_matches_reference(dtype):
    rng = np.random.default_rng(10)
    for name, z, y in logits_cases(rng, dtype):
        want_loss, want_grad = kernels.softmax_xent_reference(z, y, 0.1)
        got, loss = z.copy(), np.empty(len(y), dtype=dtype)
        kernels.CPU_KERNELS.softmax_xent(got, y, loss, 0.1)
        assert_close(loss, want_loss, dtype, f"{name} smoothed loss", np.abs(z).max(axis=1))
        assert_close(got, want_grad, dtype, f"{name} smoothed dlogits")
        # the target still sums to 1, so every gradient row still sums to 0
        assert_close(got.sum(axis=1), np.zeros(len(y)), dtype, f"{name} row sums", np.abs(got).sum(axis=1))


def test_softmax_xent_smoothing_zero_is_the_plain_loss_bit_for_bit():
    z = np.random.default_rng(11).standard_normal((9, 10)).astype(np.float32)
    y = np.arange(9)
    a, b = z.copy(), z.copy()
    la, lb = np.empty(9, np.float32), np.empty(9, np.float32)
    kernels.CPU_KERNELS.softmax_xent(a, y, la)
    kernels.CPU_KERNELS.softmax_xent(b, y, lb, 0.0)
    assert np.array_equal(a, b) and np.array_equal(la, lb)


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


@pytest.mark.parametrize("op, classes", [("softmax_xent", 10), ("logistic_xent", 2)])
def test_kernels_work_on_row_slices_of_a_larger_buffer(op, classes):
    # The trainer passes buf[:n] views for the last, shorter batch.
    rng = np.random.default_rng(2)
    buf = rng.standard_normal((16, classes if classes > 2 else 1)).astype(np.float32)
    y = rng.integers(0, classes, 5)
    want_loss, want_grad = getattr(kernels, f"{op}_reference")(buf[:5], y)
    before = buf[5:].copy()
    loss = np.zeros(16, dtype=np.float32)
    getattr(kernels.CPU_KERNELS, op)(buf[:5], y, loss[:5])
    assert_close(buf[:5], want_grad, np.float32, "slice dlogits")
    assert_close(loss[:5], want_loss, np.float32, "slice loss")
    assert np.array_equal(buf[5:], before) and not loss[5:].any(), "rows past the slice were written"


@pytest.mark.parametrize("dtype", DTYPES)
def test_logistic_xent_matches_reference(dtype):
    cases = binary_logit_cases(np.random.default_rng(6), dtype)
    check_loss_kernel(on_cpu(kernels.CPU_KERNELS.logistic_xent), kernels.logistic_xent_reference, cases, dtype)


def test_logistic_xent_is_softmax_over_the_logits_zero_and_z():
    # One logistic unit z is the two-class softmax over (0, z): the same loss, and
    # its gradient is that softmax's gradient for the second column.
    rng = np.random.default_rng(7)
    z = rng.standard_normal((50, 1)) * 5
    y = rng.integers(0, 2, 50)
    two = np.hstack([np.zeros_like(z), z])
    want = np.empty(50)
    kernels.CPU_KERNELS.softmax_xent(two, y, want)
    got = np.empty(50)
    kernels.CPU_KERNELS.logistic_xent(z, y, got)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)  # softmax: log(s) with s near 1
    np.testing.assert_allclose(z[:, 0], two[:, 1], rtol=1e-13, atol=1e-17)


def test_logistic_xent_extreme_values_are_exact_where_known():
    z = np.array([[1e4], [1e4], [-1e4], [0.0], [-np.inf]], dtype=np.float32)
    y = np.array([0, 1, 0, 1, 1])
    loss = np.empty(5, dtype=np.float32)
    kernels.CPU_KERNELS.logistic_xent(z, y, loss)
    # the full margin of a wrong answer, 0 for a sure right one, log 2 at z = 0, inf (not NaN) at -inf
    np.testing.assert_allclose(loss, [1e4, 0, 0, np.log(2), np.inf], rtol=1e-6)
    np.testing.assert_allclose(z[:, 0], np.array([1, 0, 0, -0.5, -1]) / 5, rtol=1e-6)


def test_logistic_xent_bad_label_or_nan_logit_gives_nan_not_a_crash():
    z = np.array([[0.5], [0.5], [0.5], [np.nan]], dtype=np.float32)
    loss = np.zeros(4, dtype=np.float32)
    kernels.CPU_KERNELS.logistic_xent(z, np.array([1, 2, -1, 0]), loss)
    assert np.isfinite(loss[0]) and np.isnan(loss[1:]).all()
    assert np.isfinite(z[0]).all() and np.isnan(z[1:]).all()


# the float-target losses: (op, target_cases loss, check_loss_kernel scale)
TARGET_LOSSES = [("multilabel_xent", "multilabel", None), ("squared_error", "squared", None),
                 ("poisson_deviance", "poisson", poisson_scale)]


@pytest.mark.parametrize("op, cases, scale", TARGET_LOSSES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_target_losses_match_reference(dtype, op, cases, scale):
    rng = np.random.default_rng(13)
    run, reference = on_cpu(getattr(kernels.CPU_KERNELS, op)), getattr(kernels, f"{op}_reference")
    check_loss_kernel(run, reference, target_cases(rng, dtype, cases), dtype, scale)


@pytest.mark.parametrize("op", [op for op, _, _ in TARGET_LOSSES])
def test_target_losses_work_on_row_slices_and_leave_the_targets_alone(op):
    rng = np.random.default_rng(14)
    buf = rng.standard_normal((16, 3)).astype(np.float32)
    t = rng.integers(0, 2, (16, 3)).astype(np.float32)
    t_before, rest = t.copy(), buf[5:].copy()
    want_loss, want_grad = getattr(kernels, f"{op}_reference")(buf[:5], t[:5])
    loss = np.zeros(16, dtype=np.float32)
    getattr(kernels.CPU_KERNELS, op)(buf[:5], t[:5], loss[:5])
    assert_close(buf[:5], want_grad, np.float32, f"{op} slice dz")
    assert_close(loss[:5], want_loss, np.float32, f"{op} slice loss")
    assert np.array_equal(buf[5:], rest) and not loss[5:].any(), "rows past the slice were written"
    assert np.array_equal(t, t_before), "the targets were modified"


def _numeric_gradient(kernel, z, t):
    """Central differences of the batch-mean loss, float64: d mean(row_loss) / dz."""

    def mean_loss(x):
        loss = np.empty(len(x))
        kernel(x.copy(), t, loss)
        return loss.mean()

    grad = np.empty_like(z)
    for idx in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        h = 1e-6 * max(1.0, abs(z[idx]))
        up[idx] += h
        down[idx] -= h
        grad[idx] = (mean_loss(up) - mean_loss(down)) / (up[idx] - down[idx])
    return grad


def _kernel_gradient(kernel, z, t):
    dz = z.copy()
    kernel(dz, t, np.empty(len(z)))
    return dz


@pytest.mark.parametrize("op", ["multilabel_xent", "poisson_deviance"])
def test_target_loss_gradient_is_the_derivative_of_the_batch_mean_loss(op):
    rng = np.random.default_rng(15)
    z = rng.standard_normal((5, 3)) * 2
    if op == "multilabel_xent":
        t = rng.choice([0.0, 1.0, 0.3, 0.75], (5, 3))
    else:
        t = rng.choice([0.0, 1.0, 3.0, 0.4], (5, 3))
    kernel = getattr(kernels.CPU_KERNELS, op)
    np.testing.assert_allclose(_kernel_gradient(kernel, z, t), _numeric_gradient(kernel, z, t), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("k", [1, 3])
def test_squared_error_gradient_is_k_times_the_derivative_of_the_loss_it_reports(k):
    # scikit-learn's delta y_pred - y is not divided by the k outputs its loss averages over
    rng = np.random.default_rng(16)
    z, t = rng.standard_normal((5, k)) * 2, rng.standard_normal((5, k))
    kernel = kernels.CPU_KERNELS.squared_error
    numeric = _numeric_gradient(kernel, z, t)
    np.testing.assert_allclose(_kernel_gradient(kernel, z, t), k * numeric, rtol=1e-6, atol=1e-9)


def test_target_losses_are_scikit_learns():
    # The batch mean of row_loss is scikit-learn's loss for the same outputs, and B dz its
    # output delta activations[-1] - y (logits within +-10: its clipping of p does not act).
    base = pytest.importorskip("sklearn.neural_network._base")
    rng = np.random.default_rng(17)
    z, b = rng.standard_normal((40, 4)) * 3, 40
    for op, act, loss_name, t in [
        ("multilabel_xent", lambda z: 1 / (1 + np.exp(-z)), "binary_log_loss", rng.integers(0, 2, (b, 4)) * 1.0),
        ("squared_error", lambda z: z, "squared_error", rng.standard_normal((b, 4))),
        ("poisson_deviance", np.exp, "poisson", rng.poisson(2.0, (b, 4)) * 1.0),
    ]:
        dz, row_loss = z.copy(), np.empty(b)
        getattr(kernels.CPU_KERNELS, op)(dz, t, row_loss)
        np.testing.assert_allclose(row_loss.mean(), base.LOSS_FUNCTIONS[loss_name](t, act(z)), rtol=1e-12,
                                   err_msg=op)
        np.testing.assert_allclose(dz * b, act(z) - t, rtol=1e-12, atol=1e-14, err_msg=op)


def test_multilabel_xent_extreme_values_are_exact_where_known():
    t_near = np.float32(0.9999)
    z = np.array([[1e4, -1e4, 0.0, 0.0, 1e4, np.inf, -np.inf, 2.5]], dtype=np.float32)
    t = np.array([[0.0, 0.0, 0.5, 1.0, t_near, 1.0, 1.0, 0.0]], dtype=np.float32)
    for j in range(z.shape[1]):  # one entry per row, so each row's loss is one term
        loss = np.empty(1, np.float32)
        dz = z[:, j : j + 1].copy()
        kernels.CPU_KERNELS.multilabel_xent(dz, t[:, j : j + 1], loss)
        # a wrong answer's full margin, 0 for a sure right one, log 2 at z = 0, (1 - t) z for
        # t near 1 (no cancellation: t z alone rounds by up to 5e-4 of it in float32),
        # 0 (not NaN) for inf on the right side, inf for -inf on the wrong one
        want = [1e4, 0.0, np.log(2), np.log(2), (1 - np.float64(t_near)) * 1e4, 0.0, np.inf,
                2.5 + np.log1p(np.exp(-2.5))][j]
        np.testing.assert_allclose(loss[0], want, rtol=1e-6, err_msg=f"entry {j}")
        want_dz = [1.0, 0.0, 0.0, -0.5, 1 - np.float64(t_near), 0.0, -1.0, 1 / (1 + np.exp(-2.5))][j]
        np.testing.assert_allclose(dz[0, 0], want_dz, rtol=1e-5, atol=1e-7, err_msg=f"entry {j}")


@settings(max_examples=300, deadline=None)
@given(z=hnp.arrays(np.float32, (4, 3), elements=st.floats(-1e4, 1e4, width=32)),
       t=hnp.arrays(np.float32, (4, 3), elements=st.floats(0, 1, width=32)))
def test_multilabel_xent_float32_is_accurate_for_any_logit_and_target(z, t):
    # Each term is two terms >= 0, so the float32 loss is within a few ulps of the exact one
    # (the float64 reference on the same inputs), however near 1 t is and however large z.
    loss, dz = np.empty(4, np.float32), z.copy()
    kernels.CPU_KERNELS.multilabel_xent(dz, t, loss)
    exact_loss, exact_dz = kernels.multilabel_xent_reference(z.astype(np.float64), t.astype(np.float64))
    assert (loss >= 0).all()
    np.testing.assert_allclose(loss, exact_loss, rtol=8 * np.finfo(np.float32).eps, atol=1e-30)
    np.testing.assert_allclose(dz, exact_dz, rtol=0, atol=np.finfo(np.float32).eps)


def test_poisson_deviance_extreme_values():
    z = np.array([[2.0, -1e4, -1e4, np.log(7.0), 1000.0, 1000.0, 0.5]])
    t = np.array([[0.0, 0.0, 3.0, 7.0, 0.0, 2.0, 0.25]])
    want = [np.exp(2.0), 0.0, 3.0 * (np.log(3.0) + 1e4) - 3.0, 0.0, np.inf, np.inf,
            0.25 * np.log(0.25 / np.exp(0.5)) - 0.25 + np.exp(0.5)]
    want_dz = [np.exp(2.0), 0.0, -3.0, 0.0, np.inf, np.inf, np.exp(0.5) - 0.25]
    for j in range(z.shape[1]):
        loss, dz = np.empty(1), z[:, j : j + 1].copy()
        kernels.CPU_KERNELS.poisson_deviance(dz, t[:, j : j + 1], loss)
        # t = 0: xlogy(0, .) = 0, the loss is mu; a perfect fit (t = 7) is 0 up to a few ulps
        # of t; mu overflowing is an infinite loss and gradient, not NaN
        np.testing.assert_allclose(loss[0], want[j], rtol=1e-12, atol=1e-13, err_msg=f"entry {j}")
        np.testing.assert_allclose(dz[0, 0], want_dz[j], rtol=1e-12, atol=1e-13, err_msg=f"entry {j}")


def test_squared_error_averages_the_outputs_and_halves():
    z = np.array([[3.0, 1.0], [0.0, -2.0]], dtype=np.float32)
    t = np.array([[1.0, 1.0], [0.0, 2.0]], dtype=np.float32)
    loss = np.empty(2, np.float32)
    kernels.CPU_KERNELS.squared_error(z, t, loss)
    assert loss.tolist() == [1.0, 4.0]  # 0.5 mean(4, 0), 0.5 mean(0, 16)
    assert z.tolist() == [[1.0, 0.0], [0.0, -2.0]]  # (z - t) / 2


@pytest.mark.parametrize("op", [op for op, _, _ in TARGET_LOSSES])
@pytest.mark.parametrize("dtype", DTYPES)
def test_target_losses_propagate_nan(op, dtype):
    z = np.array([[0.5, np.nan], [0.5, 0.5], [0.5, 0.5]], dtype=dtype)
    t = np.array([[1.0, 0.0], [np.nan, 1.0], [0.0, 1.0]], dtype=dtype)
    loss = np.zeros(3, dtype=dtype)
    getattr(kernels.CPU_KERNELS, op)(z, t, loss)
    assert np.isnan(loss[:2]).all() and np.isfinite(loss[2]), loss
    assert np.isnan(z[0, 1]) and np.isnan(z[1, 0]) and np.isfinite(z[2]).all()


def test_poisson_deviance_negative_target_gives_nan():
    z, loss = np.zeros((2, 1)), np.empty(2)
    kernels.CPU_KERNELS.poisson_deviance(z, np.array([[-1.0], [1.0]]), loss)
    assert np.isnan(loss[0]) and loss[1] == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_scale_rows_scales_the_rows_of_the_current_step(dtype):
    for name, dlogits, row_loss, row_scale, step, batch in scale_rows_cases(np.random.default_rng(8), dtype):
        want_d, want_l = kernels.scale_rows_reference(dlogits, row_loss, row_scale, step, batch)
        k = dlogits.shape[0]
        d, l = row_slice(dlogits, 3), row_slice(row_loss, 3)  # views of larger buffers, as the step passes
        kernels.CPU_KERNELS.scale_rows(d, l, row_scale, np.array([step, 99]), batch)
        assert_close(d, want_d, dtype, f"{name} dlogits")
        assert_close(l, want_l, dtype, f"{name} row_loss")
        assert np.isnan(d.base[k:]).all() and np.isnan(l.base[k:]).all(), f"{name}: rows past the slice were written"


@pytest.mark.parametrize("momentum, nesterov, wd", SGD_SETTINGS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_update_matches_reference(dtype, momentum, nesterov, wd):
    rng = np.random.default_rng(3)
    for name, p, g, (v, _), n_decay in update_cases(rng, dtype):
        if not momentum:
            v = v[:0]
        want_p, want_v = kernels.sgd_update_reference(p, g, v, 0.05, momentum, nesterov, wd, n_decay)
        got_p, got_v, g_before = p.copy(), v.copy(), g.copy()
        rates, state = rates_state(dtype, 0.05, wd)
        kernels.CPU_KERNELS.sgd_update(got_p, g, got_v, rates, state, momentum, nesterov, n_decay)
        assert_close(got_p, want_p, dtype, f"sgd {name} params")
        if momentum:
            assert_close(got_v, want_v, dtype, f"sgd {name} velocity")
        assert np.array_equal(g, g_before), "the update must not modify the gradient"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sklearn_eps", [False, True])
def test_adam_update_matches_reference(dtype, sklearn_eps):
    rng = np.random.default_rng(4)
    for t in (1, 7, 3000):
        for name, p, g, (m, v), n_decay in update_cases(rng, dtype):
            want = kernels.adam_update_reference(p, g, m, v, 1e-3, 0.9, 0.999, 1e-3, t, 1e-2, n_decay, sklearn_eps)
            got = p.copy(), m.copy(), v.copy()
            rates, state = rates_state(dtype, 1e-3, 1e-2, t_done=t - 1)
            kernels.CPU_KERNELS.adam_update(*got[:1], g, *got[1:], rates, state, 0.9, 0.999, 1e-3, n_decay, sklearn_eps)
            for what, a, b in zip(("params", "m", "v"), got, want):
                assert_close(a, b, dtype, f"adam t={t} {name} {what}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_batch_takes_the_rows_of_the_current_step(dtype):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((11, 5)).astype(dtype)
    y = rng.integers(0, 3, 11)
    perm = rng.permutation(11)
    for step, k in ((0, 4), (1, 4), (2, 3)):  # batch 4: two full batches, then 3 rows
        xb, yb = np.full((4, 5), np.nan, dtype=dtype), np.full(4, -1)
        kernels.CPU_KERNELS.gather_batch(X, y, perm, np.array([step, 99]), 4, xb[:k], yb[:k])
        want_x, want_y = kernels.gather_batch_reference(X, y, perm, step, 4, k)
        assert np.array_equal(xb[:k], want_x) and np.array_equal(yb[:k], want_y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_batch_scales_uint8_pixels_like_the_float_data(dtype):
    rng = np.random.default_rng(6)
    X = rng.integers(0, 256, (11, 784)).astype(np.uint8)
    X[0, :3] = (0, 255, 128)
    y, perm = rng.integers(0, 3, 11), rng.permutation(11)
    normalized = np.divide(X, np.float32(255.0), dtype=np.float32)  # what load_mnist(normalize=True) gives
    for step, k in ((0, 4), (2, 3)):
        xb, yb = np.full((4, 784), np.nan, dtype=dtype), np.full(4, -1)
        kernels.CPU_KERNELS.gather_batch(X, y, perm, np.array([step, 0]), 4, xb[:k], yb[:k], 1 / 255)
        want_x, want_y = kernels.gather_batch_reference(X, y, perm, step, 4, k, 1 / 255, dtype)
        assert np.array_equal(xb[:k], want_x) and np.array_equal(yb[:k], want_y)
        assert_close(xb[:k], normalized[perm[step * 4 : step * 4 + k]].astype(dtype), np.float32, "vs x / 255")


@pytest.mark.parametrize("scaled", [False, True], ids=["take", "numba"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_batch_takes_2d_float_targets(dtype, scaled):
    # NumPy's take for float X, the Numba loop for uint8 X scaled; targets are copied as they are
    rng = np.random.default_rng(9)
    X = rng.integers(0, 256, (11, 5)).astype(np.uint8 if scaled else dtype)
    y = rng.standard_normal((11, 3)).astype(dtype)
    perm = rng.permutation(11)
    scale = 1 / 255 if scaled else 1.0
    for step, k in ((0, 4), (1, 4), (2, 3)):
        xb, yb = np.full((4, 5), np.nan, dtype=dtype), np.full((4, 3), np.nan, dtype=dtype)
        kernels.CPU_KERNELS.gather_batch(X, y, perm, np.array([step, 99]), 4, xb[:k], yb[:k], scale)
        want_x, want_y = kernels.gather_batch_reference(X, y, perm, step, 4, k, scale, dtype)
        assert want_y.shape == (k, 3)
        assert np.array_equal(xb[:k], want_x) and np.array_equal(yb[:k], want_y), f"step {step}"
        assert np.isnan(yb[k:]).all(), "rows past the batch were written"


DROPOUT_SHAPES = ((1, 1), (7, 5), (128, 129))


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_matches_reference(dtype, p):
    rng = np.random.default_rng(12)
    for shape in DROPOUT_SHAPES:
        x = rng.standard_normal(shape).astype(dtype)
        want = kernels.dropout_reference(x, 7, 41, 2, p)
        out = np.full_like(x, np.nan)
        kernels.CPU_KERNELS.dropout(x, out, np.array([3, 41]), 7, 2, p)
        assert_close(out, want, dtype, f"dropout p={p} {shape}")
        kernels.CPU_KERNELS.dropout(x, x, np.array([3, 41]), 7, 2, p)  # in place, as the backward pass does
        assert np.array_equal(x, out), "in place must give the same values"


def test_dropout_masks_are_fresh_per_step_layer_and_seed_and_keep_1_minus_p():
    def mask(seed, step, layer):
        return kernels.dropout_mask_reference((256, 128), seed, step, layer, 0.3)

    base = mask(0, 5, 1)
    assert abs(base.mean() - 0.7) < 0.01
    for other in (mask(1, 5, 1), mask(0, 6, 1), mask(0, 5, 2)):
        assert 0.35 < (other == base).mean() < 0.75, "masks must be independent, not shifted copies"
    assert np.array_equal(mask(0, 5, 1), base), "the same counters give the same mask"
    # each element and its neighbours are uncorrelated
    flat = base.reshape(-1).astype(float)
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.02
    assert kernels.dropout_mask_reference((4, 4), 0, 0, 1, 0.0).all()


def test_dropout_multiplies_so_nan_stays_visible():
    x = np.full((64, 64), np.nan, dtype=np.float32)
    kernels.CPU_KERNELS.dropout(x, x, np.array([0, 0]), 0, 1, 0.5)
    assert np.isnan(x).all()


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_into_writes_the_current_steps_slot(dtype, squared):
    rng = np.random.default_rng(7)
    for size in (1, 300, 5000):
        values = rng.standard_normal(size).astype(dtype)
        out = np.full(4, np.nan, dtype=dtype)
        kernels.CPU_KERNELS.sum_into(values, out, np.array([2, 0]), squared)
        assert_close(out[2:3], [kernels.sum_into_reference(values, squared)], dtype, f"sum of {size}")
        assert np.isnan(out[[0, 1, 3]]).all(), "only the current step's slot is written"


def test_advance_moves_both_counters():
    state = np.array([3, 40], dtype=np.int64)
    kernels.CPU_KERNELS.advance(state)
    assert state.tolist() == [4, 41]


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


CODES = [kernels.IDENTITY, kernels.RELU, kernels.SIGMOID, kernels.TANH]
# (n, K, N): n = 1, sizes that are multiples of nothing, K below and above a
# 32-wide GEMM tile, and MNIST's layers; each also as row slices of bigger buffers
LINEAR_SHAPES = [(1, 1, 1), (1, 7, 3), (7, 5, 3), (37, 100, 13), (128, 784, 128), (129, 64, 10)]


def _linear_cases(dtype, code):
    rng = np.random.default_rng(6)
    for n, K, N in LINEAR_SHAPES:
        for spare in (0, 3):
            yield f"n={n} K={K} N={N} spare={spare}", n, linear_inputs(rng, n, K, N, dtype, code, spare)


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_forward_matches_reference(dtype, code):
    for name, n, x in _linear_cases(dtype, code):
        want = kernels.linear_forward_reference(x["a"], x["W"], x["b"], code)
        out = row_slice(np.full(want.shape, np.nan, dtype=dtype), 2)
        kernels.linear_forward_cpu(x["a"], x["W"], x["b"], out, code)
        scale = np.abs(x["a"]) @ np.abs(x["W"]) + np.abs(x["b"])
        assert_close(out, want, dtype, f"linear_forward code {code} {name}", scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_backward_matches_reference(dtype):
    for name, n, x in _linear_cases(dtype, kernels.IDENTITY):
        want_dW, want_db = kernels.linear_backward_reference(x["a"], x["delta"])
        dW, db = np.full_like(want_dW, np.nan), np.full_like(want_db, np.nan)
        kernels.linear_backward_cpu(x["a"], x["delta"], dW, db)
        assert_close(dW, want_dW, dtype, f"dW {name}", np.abs(x["a"]).T @ np.abs(x["delta"]))
        assert_close(db, want_db, dtype, f"db {name}", np.abs(x["delta"]).sum(axis=0))


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_input_matches_reference(dtype, code):
    for name, n, x in _linear_cases(dtype, code):
        want = kernels.backward_input_reference(x["delta"], x["W"], x["out_prev"], code)
        d_prev = row_slice(np.full(want.shape, np.nan, dtype=dtype), 2)
        kernels.backward_input_cpu(x["delta"], x["W"], x["out_prev"], d_prev, code)
        scale = np.abs(x["delta"]) @ np.abs(x["W"]).T
        assert_close(d_prev, want, dtype, f"backward_input code {code} {name}", scale)


def test_linear_ops_leave_their_inputs_alone():
    rng = np.random.default_rng(7)
    x = linear_inputs(rng, 9, 12, 5, np.float32, kernels.TANH, spare=2)
    before = {k: v.copy() for k, v in x.items()}
    kernels.linear_forward_cpu(x["a"], x["W"], x["b"], np.empty((9, 5), np.float32), kernels.TANH)
    kernels.linear_backward_cpu(x["a"], x["delta"], np.empty((12, 5), np.float32), np.empty(5, np.float32))
    kernels.backward_input_cpu(x["delta"], x["W"], x["out_prev"], np.empty((9, 12), np.float32), kernels.TANH)
    for k, v in x.items():
        assert np.array_equal(v, before[k]), f"{k} was modified"


def test_linear_backward_bias_sums_grow_their_ones_vector_once():
    # db is ones @ delta with a cached ones vector: a larger batch must grow it,
    # a smaller one must reuse it (no allocation per call once warm).
    from fastmlp.kernels import linear_backward as module

    rng = np.random.default_rng(8)
    for n in (3, 2000, 5):
        delta = rng.standard_normal((n, 4))
        db = np.empty(4)
        kernels.linear_backward_cpu(np.ones((n, 2)), delta, np.empty((2, 4)), db)
        assert_close(db, delta.sum(axis=0), np.float64, f"db n={n}", np.abs(delta).sum(axis=0))
        if n == 2000:
            grown = module._ONES[np.dtype(np.float64)]
    assert module._ONES[np.dtype(np.float64)] is grown and grown.shape[0] >= 2000
