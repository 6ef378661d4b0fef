"""Fused sigmoid + binary log-loss: one logistic output unit, loss and gradient in one pass.

Shapes
    logits   (B, 1) float32 or float64, C-contiguous; overwritten with dlogits
    labels   (B,)   integer label of each row, 0 or 1
    row_loss (B,)   same float dtype as logits; receives each row's loss

Math, for row i with logit z and label t (p = sigmoid(z) is the probability
of class 1, e = exp(-|z|) never overflows):
    p            = 1 / (1 + e)          for z >= 0,   e / (1 + e)   for z < 0
    loss_i       = -t log p - (1 - t) log(1 - p)
                 = max(u, 0) + log1p(e),   u = -z if t = 1 else z
                                           (softplus(z) - t z, without z - z)
    dlogits_i    = (p - t) / B

This is the two-class model of scikit-learn's MLPClassifier: one output unit
with a logistic activation, not two softmax columns. Two softmax columns
(z0, z1) give the same probabilities with z = z1 - z0, but their gradients are
equal and opposite, so a step moves z twice as far as the one-unit model's
step does. As with softmax, the sigmoid's derivative p (1 - p) and that of the
log-loss cancel to p - t, which is why the two are fused.

The loss is the exact softplus form. scikit-learn clips p to [eps, 1 - eps]
before the log; the two differ only on rows whose loss is below 1e-16 or
above -log(eps) = 36 (a logit beyond +-36 on the wrong side).

A label other than 0 or 1 cannot be scored: its row gets loss NaN (and a NaN
gradient), so the trainer's divergence check reports it.

Order: plain-NumPy reference, CPU kernel (Numba), CUDA kernel (Numba CUDA).
"""

import math

import numba
import numpy as np
from numba import cuda


def logistic_xent_reference(logits, labels):
    """Plain NumPy, any float dtype: returns (row_loss (B,), dlogits (B, 1)); inputs untouched."""
    z = np.asarray(logits)[:, 0]
    t = np.asarray(labels).astype(np.int64)
    b = z.shape[0]
    e = np.exp(-np.abs(z))
    p = np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype)
    row_loss = (np.maximum(np.where(t == 1, -z, z), 0) + np.log1p(e)).astype(z.dtype)
    dlogits = ((p - t) / b).astype(z.dtype)
    bad = (t != 0) & (t != 1)
    row_loss[bad] = np.nan
    dlogits[bad] = np.nan
    return row_loss, dlogits[:, None]


# No fastmath: it would let LLVM assume there is no NaN, and NaN logits must
# come out as a NaN loss for the divergence check. Constants take the logits'
# dtype (f(1), not 1.0): a Python float would turn float32 math into float64.
@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _loss_and_p_minus_t(z, t, zero, one):
    """(loss, p - t) of one row, logit z and label t (0 or 1); zero and one in z's dtype.
    Both kernels call it: the CPU loop per row, the CUDA kernel as a device function."""
    e = math.exp(-abs(z))
    p = one / (one + e) if z >= zero else e / (one + e)
    return max(-z if t == 1 else z, zero) + math.log1p(e), (p - one if t == 1 else p)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _logistic_xent_cpu(logits, labels, row_loss):
    b = logits.shape[0]
    f = logits.dtype.type
    zero, one = f(0), f(1)
    inv_b = one / f(b)
    for i in range(b):
        t = labels[i]
        if t != 0 and t != 1:
            row_loss[i] = logits[i, 0] = f(math.nan)
            continue
        row_loss[i], g = _loss_and_p_minus_t(logits[i, 0], t, zero, one)
        logits[i, 0] = g * inv_b


@cuda.jit(cache=True)
def _logistic_xent_cuda(logits, labels, row_loss):
    # One thread per row.
    i = cuda.grid(1)
    b = logits.shape[0]
    if i < b:
        f = logits.dtype.type
        t = labels[i]
        if t != 0 and t != 1:
            row_loss[i] = logits[i, 0] = f(math.nan)
        else:
            loss, g = _loss_and_p_minus_t(logits[i, 0], t, f(0), f(1))
            row_loss[i] = loss
            logits[i, 0] = g * (f(1) / f(b))


def logistic_xent_cpu(logits, labels, row_loss):
    """In place on NumPy arrays: logits (B, 1) -> dlogits, row_loss <- per-row loss."""
    _logistic_xent_cpu(logits, labels, row_loss)
