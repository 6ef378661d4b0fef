"""Fused sigmoid + binary log-loss on k independent outputs: multi-label classification.

Shapes
    out       (B, k) float32 or float64, C-contiguous: the last layer's pre-activation z;
              overwritten with dz, the gradient of the batch-mean loss
    targets   (B, k) same float dtype as out: t, 0 or 1 for a label matrix (any t in [0, 1] is scored)
    row_loss  (B,)   same float dtype; receives each row's loss

Math, for entry (i, j) with logit z and target t (p = sigmoid(z) is the
probability of label j, e = exp(-|z|) never overflows):
    p           = 1 / (1 + e)          for z >= 0,   e / (1 + e)   for z < 0
    loss_ij     = -t log p - (1 - t) log(1 - p)
                = softplus(z) - t z  =  max(z, 0) + log1p(e) - t z
                = c |z| + log1p(e),    c = 1 - t for z >= 0,  t for z < 0
    row_loss_i  = sum_j loss_ij
    dz_ij       = (p_ij - t_ij) / B

The last form is the one computed: for t in [0, 1] both of its terms are >= 0,
so nothing cancels. max(z, 0) - t z subtracts two numbers near z when t is near
1 (t = 0.9999 and z = 1e4 leave about 1 of 1e4, and in float32 rounding t z alone
can be off by 5e-4), while 1 - t is exact there (Sterbenz: t >= 1/2). For t = 0 or 1 it is the
logistic_xent loss, term for term. A term with c = 0 is 0, also for an infinite
z on the right side (where c |z| would be 0 * inf = NaN).

This is scikit-learn's MLPClassifier on a label-indicator y (multi-label): one
logistic output unit per column, binary_log_loss (the sum over the columns of
the mean over the rows, so the batch mean of row_loss), and the output delta
p - y. As in logistic_xent, the sigmoid's derivative and the log-loss's cancel
to p - t, which is why the two are fused. scikit-learn clips p to
[eps, 1 - eps] before the log; the two differ only for logits beyond
+-log(1 / eps) (36 in float64, 16 in float32).

A NaN logit or target gives a NaN loss (no fastmath), so the trainer's
divergence check reports it. A target outside [0, 1] gets the same formula
(the cross-entropy extended linearly in t, as scikit-learn computes it too),
which can then be negative.

Order: plain-NumPy reference, CPU kernel (Numba), CUDA kernel (Numba CUDA).
"""

import math

import numba
import numpy as np
from numba import cuda


def multilabel_xent_reference(out, targets):
    """Plain NumPy, any float dtype: returns (row_loss (B,), dz (B, k)); inputs untouched."""
    z = np.asarray(out)
    t = np.asarray(targets)
    b = z.shape[0]
    e = np.exp(-np.abs(z))
    right = z >= 0
    p = np.where(right, 1 / (1 + e), e / (1 + e)).astype(z.dtype)
    c = np.where(right, 1 - t, t)
    with np.errstate(invalid="ignore"):  # 0 * inf, replaced by 0
        linear = np.where(c != 0, c * np.abs(z), 0)
    row_loss = (linear + np.log1p(e)).sum(axis=1).astype(z.dtype)
    dz = ((p - t) / b).astype(z.dtype)
    return row_loss, dz


# No fastmath: it would let LLVM assume there is no NaN, and NaN logits must
# come out as a NaN loss for the divergence check. Constants take the logits'
# dtype (f(1), not 1.0): a Python float would turn float32 math into float64.
@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _loss_and_p_minus_t(z, t, zero, one):
    """(loss, p - t) of one entry, logit z and target t; zero and one in z's dtype.
    Both kernels call it: the CPU loop per entry, the CUDA kernel as a device function."""
    e = math.exp(-abs(z))
    if z >= zero:
        p = one / (one + e)
        c = one - t
    else:  # also a NaN z, which reaches the loss and p through e
        p = e / (one + e)
        c = t
    linear = c * abs(z) if c != zero else zero
    return linear + math.log1p(e), p - t


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _multilabel_xent_cpu(out, targets, row_loss):
    b, k = out.shape
    f = out.dtype.type
    zero, one = f(0), f(1)
    inv_b = one / f(b)
    for i in range(b):
        s = zero
        for j in range(k):
            loss, g = _loss_and_p_minus_t(out[i, j], targets[i, j], zero, one)
            s += loss
            out[i, j] = g * inv_b
        row_loss[i] = s


@cuda.jit(cache=True)
def _multilabel_xent_cuda(out, targets, row_loss):
    # One thread per row: it sums its row's loss itself, no reduction (k is a
    # handful of labels, as softmax_xent's C is a handful of classes).
    i = cuda.grid(1)
    b = out.shape[0]
    if i < b:
        f = out.dtype.type
        zero, one = f(0), f(1)
        inv_b = one / f(b)
        s = zero
        for j in range(out.shape[1]):
            loss, g = _loss_and_p_minus_t(out[i, j], targets[i, j], zero, one)
            s += loss
            out[i, j] = g * inv_b
        row_loss[i] = s


def multilabel_xent_cpu(out, targets, row_loss):
    """In place on NumPy arrays: out (B, k) z -> dz, row_loss <- per-row loss."""
    _multilabel_xent_cpu(out, targets, row_loss)
