"""Inputs and comparisons shared by the CPU and CUDA kernel tests.

Both devices' kernels are checked against the same plain-NumPy references in
``fastmlp.kernels``; a mismatch reports the first few indices, not just "not close".
"""

import os

import numpy as np

# The CUDA kernel test files. Without a GPU, conftest.py leaves them out of the
# main run, and test_cuda_simulator.py runs them in a child process under
# Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM must be set before Numba loads).
CUDA_TEST_FILES = ("test_kernels_cuda.py", "test_kernels_linear_cuda.py", "test_step_cuda.py")


def simulator_on_one_core():
    """Keep this process (and the threads it starts later) on one core.

    The simulator runs each GPU thread of a block as a Python thread, and they hand
    the GIL to each other at every barrier. Spread over several cores, each handover
    waits for the OS to wake a thread on another core, one the other test worker may
    keep busy; on one core the simulator runs two to three times faster. xdist
    worker gwN takes the N-th core, so two simulator runs side by side do not share
    one."""
    if not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    os.sched_setaffinity(0, {cores[index % len(cores)]})


DTYPES = (np.float32, np.float64)
# atol, rtol per dtype: the references compute in the same dtype, so the
# differences are a few ulps from a different order of operations.
TOL = {np.float32: (2e-6, 2e-5), np.float64: (1e-13, 1e-12)}


def assert_close(actual, expected, dtype, what, scale=None):
    """Fail with the first mismatching indices if |a - e| > atol + rtol s anywhere (NaN must match NaN).

    s is |e|, or ``scale`` where given: a sum computed in another order is off by
    a few ulps of the sum of its terms' magnitudes (|a| @ |W| for a product),
    which can be far larger than the sum itself."""
    atol, rtol = TOL[np.dtype(dtype).type]
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    s = np.abs(expected) if scale is None else np.maximum(np.abs(expected), scale)
    both_nan = np.isnan(actual) & np.isnan(expected)
    bad = ~both_nan & ~(np.abs(actual - expected) <= atol + rtol * s)
    if bad.any():
        idx = np.argwhere(bad)[:5]
        lines = [f"  at {tuple(int(i) for i in ix)}: got {actual[tuple(ix)]!r}, expected {expected[tuple(ix)]!r}" for ix in idx]
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} entries differ\n" + "\n".join(lines))


def check_loss_kernel(run, reference, cases, dtype, scale=None):
    """Compare a fused loss kernel with its reference on every case. ``run(z, y)`` calls
    the kernel on copies (on its device) and returns (row_loss, dlogits) as NumPy.
    ``scale(z, y)``, where given, returns (loss scale, gradient scale) for assert_close:
    for a loss whose terms cancel, the size of the terms."""
    for name, z, y in cases:
        want_loss, want_grad = reference(z, y)
        loss, dlogits = run(z, y)
        loss_scale, grad_scale = (None, None) if scale is None else scale(z, y)
        assert np.isfinite(loss).all(), f"{name}: non-finite loss {loss}"
        assert_close(loss, want_loss, dtype, f"{name} loss", loss_scale)
        assert_close(dlogits, want_grad, dtype, f"{name} dlogits", grad_scale)


def on_cpu(kernel):
    """``run`` for check_loss_kernel: a CPU kernel on copies."""

    def run(z, y):
        dlogits, loss = z.copy(), np.empty(len(y), dtype=z.dtype)
        kernel(dlogits, y, loss)
        return loss, dlogits

    return run


def on_cuda(kernel):
    """``run`` for check_loss_kernel: a CUDA launcher on device copies, results on the host."""
    from numba import cuda

    def run(z, y):
        d_z, d_loss = cuda.to_device(z), cuda.to_device(np.zeros(len(y), dtype=z.dtype))
        kernel(d_z, cuda.to_device(y), d_loss)
        return d_loss.copy_to_host(), d_z.copy_to_host()

    return run


def logits_cases(rng, dtype, classes=10, small=False):
    """(name, logits (B, C), labels (B,)) covering ordinary and extreme inputs.

    ``small`` keeps the batches small enough for Numba's CUDA simulator, which runs
    every GPU thread in Python (still more than one block, with a partial last one)."""
    cases = []
    for b in (1, 7, 129) if small else (1, 7, 128, 1001):
        cases.append((f"randn b={b}", rng.standard_normal((b, classes)) * 3, rng.integers(0, classes, b)))
    b = 33
    big = rng.choice([-1e4, 1e4], size=(b, classes))
    cases.append(("+-1e4", big, rng.integers(0, classes, b)))
    cases.append(("all equal", np.full((b, classes), 5.0), rng.integers(0, classes, b)))
    sharp = np.full((b, classes), -50.0)
    labels = rng.integers(0, classes, b)
    sharp[np.arange(b), labels] = 50.0
    cases.append(("one-hot sharp, right", sharp, labels))
    cases.append(("one-hot sharp, wrong", sharp, (labels + 1) % classes))
    cases.append(("wide C=1000", rng.standard_normal((9, 1000)) * 10, rng.integers(0, 1000, 9)))
    cases.append(("C=1", rng.standard_normal((5, 1)), np.zeros(5, dtype=np.int64)))
    return [(name, z.astype(dtype), y.astype(np.int64)) for name, z, y in cases]


def binary_logit_cases(rng, dtype, small=False):
    """(name, logits (B, 1), labels (B,) of 0/1) for the logistic loss: ordinary,
    huge (exp would overflow without the -|z| form), zero, +-inf on the right side,
    sharp right and wrong."""
    cases = []
    for b in (1, 7, 129) if small else (1, 7, 128, 1001):
        cases.append((f"randn b={b}", rng.standard_normal((b, 1)) * 4, rng.integers(0, 2, b)))
    b = 33
    cases.append(("+-1e4", rng.choice([-1e4, 1e4], size=(b, 1)), rng.integers(0, 2, b)))
    cases.append(("+-100", rng.choice([-100.0, 100.0], size=(b, 1)), rng.integers(0, 2, b)))
    cases.append(("zeros", np.zeros((b, 1)), rng.integers(0, 2, b)))
    inf = rng.choice([-np.inf, np.inf], size=(b, 1))
    cases.append(("+-inf, right", inf, (inf[:, 0] > 0).astype(np.int64)))  # loss 0 (inf on the wrong side)
    labels = rng.integers(0, 2, b)
    sharp = np.where(labels == 1, 30.0, -30.0)[:, None]
    cases.append(("sharp, right", sharp, labels))
    cases.append(("sharp, wrong", sharp, 1 - labels))
    return [(name, z.astype(dtype), y.astype(np.int64)) for name, z, y in cases]


def target_cases(rng, dtype, loss, small=False):
    """(name, out (B, k), targets (B, k)) for the float-target losses ("multilabel",
    "squared", "poisson"): ordinary batches of several widths, then each loss's
    extremes, all with a finite loss (a NaN or infinite one is tested on its own).

    multilabel: 0/1 and fractional targets, +-1e4 and +-100 (exp(z) would overflow
    without the -|z| form), zeros, +-inf on the right side (loss 0), targets near 1
    at large logits (where max(z, 0) - t z would cancel). squared: +-1e4, a perfect
    fit. poisson: counts with many zeros, all-zero targets, a perfect fit z = log t
    (the loss cancels to 0), mu underflowing to 0, mu near the float32 maximum,
    fractional rates."""
    cases = []
    shapes = ((1, 1), (7, 3), (129, 2)) if small else ((1, 1), (7, 3), (128, 10), (1001, 4))
    for b, k in shapes:
        if loss == "multilabel":
            z, t = rng.standard_normal((b, k)) * 4, rng.integers(0, 2, (b, k))
            cases.append((f"randn b={b} k={k}, 0/1", z, t))
            cases.append((f"randn b={b} k={k}, fractional", z, rng.random((b, k))))
        elif loss == "squared":
            cases.append((f"randn b={b} k={k}", rng.standard_normal((b, k)) * 3, rng.standard_normal((b, k)) * 3))
        else:
            z = rng.standard_normal((b, k))
            cases.append((f"randn b={b} k={k}, counts", z, rng.poisson(np.exp(z + 0.5 * rng.standard_normal((b, k))))))
    b, k = 33, 3
    if loss == "multilabel":
        for size in (1e4, 100.0):
            cases.append((f"+-{size:g}", rng.choice([-size, size], (b, k)), rng.integers(0, 2, (b, k))))
            cases.append((f"+-{size:g}, fractional", rng.choice([-size, size], (b, k)), rng.random((b, k))))
        cases.append(("zeros", np.zeros((b, k)), rng.choice([0.0, 0.5, 1.0], (b, k))))
        inf = rng.choice([-np.inf, np.inf], (b, k))
        cases.append(("+-inf, right", inf, (inf > 0).astype(float)))
        labels = rng.integers(0, 2, (b, k))
        sharp = np.where(labels == 1, 30.0, -30.0)
        cases.append(("sharp, right", sharp, labels))
        cases.append(("sharp, wrong", sharp, 1 - labels))
        near = rng.choice([0.9999, 0.999, 1 - 2.0**-20], (b, k))
        cases.append(("t near 1, z large", rng.uniform(100, 1e4, (b, k)), near))
        cases.append(("t near 0, z very negative", -rng.uniform(100, 1e4, (b, k)), 1 - near))
    elif loss == "squared":
        cases.append(("+-1e4", rng.choice([-1e4, 1e4], (b, k)), rng.choice([-1e4, 1e4], (b, k))))
        t = rng.standard_normal((b, k))
        cases.append(("perfect fit", t.copy(), t))
        cases.append(("zeros", np.zeros((b, k)), np.zeros((b, k))))
    else:
        cases.append(("all targets 0", rng.standard_normal((b, k)) * 3, np.zeros((b, k))))
        t = rng.integers(1, 1000, (b, k)).astype(float)
        cases.append(("perfect fit, z = log t", np.log(t), t))
        cases.append(("near fit", np.log(t) + rng.standard_normal((b, k)) * 1e-3, t))
        cases.append(("mu underflows to 0", np.full((b, k), -1e4), rng.choice([0.0, 1.0, 5.0], (b, k))))
        cases.append(("mu near float32 max", rng.uniform(80, 86, (b, k)), rng.integers(0, 10, (b, k))))
        cases.append(("fractional rates", rng.standard_normal((b, k)) * 2, rng.random((b, k)) * 3))
    return [(name, z.astype(dtype), np.asarray(t).astype(dtype)) for name, z, t in cases]


def poisson_scale(z, t):
    """(loss scale, gradient scale) for check_loss_kernel: the sizes of the terms of the
    half Poisson deviance, sum_j (mu + t + |t (log t - z)|), and of mu - t, (mu + t) / B."""
    z, t = z.astype(np.float64), t.astype(np.float64)
    mu = np.exp(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        xlogy = np.where(t == 0, 0, np.abs(t * (np.log(t) - z)))
    return (mu + t + xlogy).sum(axis=1), (mu + t) / len(z)


def scale_rows_cases(rng, dtype, small=False):
    """(name, dlogits (k, C), row_loss (k,), row_scale (n,), step, batch): a full and
    a short last batch, one column (a logistic output) and many, zero and negative
    factors (a zero weight, and a decoy that a wrong index would pick up)."""
    cases = []
    for n, batch, classes in ((9, 4, 3), (9, 4, 1), (300, 128, 10)) if small else \
            ((9, 4, 3), (9, 4, 1), (1001, 128, 10), (257, 256, 1)):
        steps = -(-n // batch)
        scale = rng.uniform(0.1, 3.0, n)
        scale[rng.random(n) < 0.1] = 0.0
        scale[-1] = -7.0
        for step in (0, steps - 1):
            k = min(batch, n - step * batch)
            name = f"n={n} B={batch} C={classes} step {step} of {steps}, {k} rows"
            cases.append((name, rng.standard_normal((k, classes)), rng.random(k), scale, step, batch))
    return [(name, d.astype(dtype), l.astype(dtype), r.astype(dtype), s, b) for name, d, l, r, s, b in cases]


def elementwise_cases(rng, dtype, activation, small=False):
    """(name, out (B, N), dout (B, N)) with ``out`` a valid forward output of the activation."""
    cases = []
    for shape in ((1, 1), (7, 5), (9, 31)) if small else ((1, 1), (1, 13), (7, 5), (128, 64), (301, 129)):
        z = rng.standard_normal(shape) * 3
        if activation == "relu":
            z[rng.random(shape) < 0.1] = 0.0  # exact zeros: relu' is 0 there
            out = np.maximum(z, 0)
        elif activation == "sigmoid":
            out = 1 / (1 + np.exp(-z))
        else:
            out = np.tanh(z)
        cases.append((f"{shape}", out.astype(dtype), rng.standard_normal(shape).astype(dtype)))
    return cases


def update_cases(rng, dtype, small=False):
    """(name, params, grads, state, n_decay) for the optimiser kernels: sizes around a
    block boundary, decay on none / part / all of the buffer."""
    cases = []
    for size in (1, 129) if small else (1, 129, 109386):
        for n_decay in sorted({0, size // 2, size}):
            p = rng.standard_normal(size).astype(dtype)
            g = rng.standard_normal(size).astype(dtype)
            s1 = (rng.standard_normal(size) * 0.1).astype(dtype)
            s2 = np.abs(rng.standard_normal(size)).astype(dtype)
            cases.append((f"P={size} decay={n_decay}", p, g, (s1, s2), n_decay))
    return cases


SGD_SETTINGS = [  # (momentum, nesterov, weight_decay)
    (0.0, False, 0.0),
    (0.0, False, 1e-2),
    (0.9, False, 1e-2),
    (0.9, True, 1e-2),
]


def row_slice(x, spare):
    """x as the first rows of a C-contiguous buffer with ``spare`` more rows (NaN),
    the way the trainer passes buf[:n] for the last, shorter batch."""
    buf = np.full((x.shape[0] + spare,) + x.shape[1:], np.nan, dtype=x.dtype)
    buf[: x.shape[0]] = x
    return buf[: x.shape[0]]


def linear_inputs(rng, n, K, N, dtype, code, spare=0):
    """Inputs of the dense-layer ops for sizes (n, K, N) and activation ``code``:
    a (n, K), W (K, N), b (N,), delta (n, N) and out_prev (n, K), a valid forward
    output of the activation (relu: about half exact zeros; the 3x scale reaches
    the flat ends of sigmoid and tanh). The per-row arrays are row slices of
    larger buffers when ``spare`` > 0."""
    from fastmlp.kernels import bias_act_forward_reference

    a = (rng.standard_normal((n, K)) * 3).astype(dtype)
    out_prev = bias_act_forward_reference(a, np.zeros(K, dtype=dtype), code)
    return dict(
        a=row_slice(a, spare),
        W=rng.standard_normal((K, N)).astype(dtype),
        b=rng.standard_normal(N).astype(dtype),
        delta=row_slice(rng.standard_normal((n, N)).astype(dtype), spare),
        out_prev=row_slice(out_prev, spare),
    )

def rates_state(dtype, lr, weight_decay, t_done=0, step=2):
    """(rates, state) as the optimiser kernels read them: (lr, weight_decay) at row
    ``step`` among decoy rows (so reading the wrong step fails), state = (step, t_done)."""
    rates = np.array([[9.0, 0.5], [7.0, 0.7], [5.0, 0.9], [3.0, 0.3]], dtype=dtype)
    rates[step] = lr, weight_decay
    return rates, np.array([step, t_done], dtype=np.int64)
