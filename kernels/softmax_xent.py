"""Fused softmax + cross-entropy: the loss and its gradient in one pass per row.

Shapes
    logits    (B, C) float32 or float64, C-contiguous rows; overwritten with dlogits
    labels    (B,)   integer class index of each row, 0 <= t < C
    row_loss  (B,)   same float dtype as logits; receives each row's loss
    smoothing float  label smoothing eps in [0, 1): 0 for plain cross-entropy

Math, for row i with label t (m is the row maximum, subtracted so exp never
overflows), and the smoothed target q_j = (1 - eps) [j == t] + eps / C:
    log s_i      = log sum_j exp(z_ij - m_i)
    loss_i       = -sum_j q_j log softmax(z_i)_j
                 = (1 - eps) (m_i - z_it) + eps (m_i - mean_j z_ij) + log s_i
    dlogits_ij   = (softmax(z_i)_j - q_j) / B

The gradient of the *mean* loss over the batch with respect to the logits is
softmax minus the target, divided by the batch size: the softmax Jacobian and
the derivative of -log p cancel to that simple difference (for any target that
sums to 1), which is why the two are fused instead of back-propagating through
a separate softmax. With eps = 0 the target is one-hot and loss_i = -log p_t.

A label outside [0, C) cannot be scored: its row gets loss NaN (and a NaN
gradient), so the trainer's divergence check reports it instead of the kernel
reading out of bounds.

Order: plain-NumPy reference, CPU kernel (Numba), CUDA kernel (Numba CUDA).
"""

import math

import numba
import numpy as np
from numba import cuda


def softmax_xent_reference(logits, labels, smoothing=0.0):
    """Plain NumPy, any float dtype: returns (row_loss (B,), dlogits (B, C)); inputs untouched."""
    z = np.asarray(logits)
    t = np.asarray(labels).astype(np.int64)
    b, c = z.shape
    shifted = z - z.max(axis=1, keepdims=True)
    log_s = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_s
    row_loss = np.full(b, np.nan, dtype=z.dtype)
    dlogits = np.full_like(z, np.nan)
    ok = (t >= 0) & (t < c)
    rows = np.nonzero(ok)[0]
    q = np.full((rows.size, c), smoothing / c)
    q[np.arange(rows.size), t[rows]] += 1.0 - smoothing
    row_loss[rows] = -(q * log_p[rows]).sum(axis=1)
    dlogits[rows] = (np.exp(log_p[rows]) - q) / b
    return row_loss, dlogits


# No fastmath: it lets LLVM assume there is no NaN, and this kernel must pass
# NaN through for the divergence check. Constants take the logits' dtype and the
# row maximum starts from the row's first logit, not from a float64 -inf: float32
# logits are then handled in float32 only (eps arrives in the logits' dtype).
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _softmax_xent_cpu(logits, labels, row_loss, eps):
    b, c = logits.shape
    f = logits.dtype.type
    inv_b = f(1) / f(b)
    off = eps / (f(b) * f(c))  # q_j / B off the label
    for i in range(b):
        t = labels[i]
        if t < 0 or t >= c:
            row_loss[i] = f(np.nan)
            for j in range(c):
                logits[i, j] = f(np.nan)
            continue
        r = logits[i]
        z_t = r[t]
        m = r[0]  # a NaN here stays in m, and reaches the loss through exp
        for j in range(1, c):
            if r[j] > m:
                m = r[j]
        s = f(0)
        z_sum = f(0)
        for j in range(c):
            z_sum += r[j]
            e = math.exp(r[j] - m)
            r[j] = e
            s += e
        # (m - z_t) first: with logits near 1e4 adding log(s) to m would round it away.
        loss = (m - z_t) + math.log(s)
        if eps > f(0):
            loss += eps * ((m - z_sum / f(c)) - (m - z_t))
        row_loss[i] = loss
        scale = inv_b / s
        for j in range(c):
            r[j] = r[j] * scale - off
        r[t] -= inv_b - eps * inv_b


@cuda.jit(cache=True)
def _softmax_xent_cuda(logits, labels, row_loss, eps):
    # One thread per row: with MNIST's 10 classes a row is 10 loads, so a
    # thread per row keeps every thread busy without any reduction. Constants
    # take the logits' dtype: a Python float would make float32 math float64
    # (eps arrives in it from the launcher).
    i = cuda.grid(1)
    b = logits.shape[0]
    c = logits.shape[1]
    if i >= b:
        return
    f = logits.dtype.type
    t = labels[i]
    if t < 0 or t >= c:
        row_loss[i] = f(math.nan)
        for j in range(c):
            logits[i, j] = f(math.nan)
        return
    m = logits[i, 0]
    for j in range(1, c):
        m = max(m, logits[i, j])
    s = f(0)
    z_sum = f(0)
    for j in range(c):
        s += math.exp(logits[i, j] - m)
        z_sum += logits[i, j]
    loss = (m - logits[i, t]) + math.log(s)
    if eps > f(0):
        loss += eps * ((m - z_sum / f(c)) - (m - logits[i, t]))
    row_loss[i] = loss
    scale = f(1) / (s * f(b))
    off = eps / (f(b) * f(c))
    for j in range(c):
        logits[i, j] = math.exp(logits[i, j] - m) * scale - off
    logits[i, t] -= (f(1) - eps) / f(b)


def softmax_xent_cpu(logits, labels, row_loss, smoothing=0.0):
    """In place on NumPy arrays: logits -> dlogits, row_loss <- per-row loss."""
    _softmax_xent_cpu(logits, labels, row_loss, logits.dtype.type(smoothing))
