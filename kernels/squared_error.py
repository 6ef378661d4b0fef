"""Half squared error on identity outputs: regression, loss and output delta in one pass.

Shapes
    out       (B, k) float32 or float64, C-contiguous: the last layer's pre-activation z,
              which is the prediction (identity output); overwritten with dz
    targets   (B, k) same float dtype as out: t
    row_loss  (B,)   same float dtype; receives each row's loss

Math, for row i (d = z - t):
    row_loss_i  = 0.5 mean_j d_ij^2  =  sum_j d_ij^2 / (2 k)
    dz_ij       = d_ij / B

This is scikit-learn's MLPRegressor with loss="squared_error": squared_loss is
0.5 times the mean over the rows AND the k outputs (so the batch mean of
row_loss), and the output delta is y_pred - y. That delta is not divided by k:
for k > 1 outputs dz is k times the gradient of the loss reported, so the
gradient and the loss disagree by that factor, exactly as they do in
scikit-learn. Keeping both as scikit-learn has them makes fastmlp agree with it
number for number: the SGD and Adam steps, and under L-BFGS (which takes the
reported loss and the gradient as they come) the line search as well. For
k = 1 the two agree.

A NaN in z or t gives a NaN loss (no fastmath), so the trainer's divergence
check reports it.

Order: plain-NumPy reference, CPU kernel (Numba), CUDA kernel (Numba CUDA).
"""

import numba
import numpy as np
from numba import cuda


def squared_error_reference(out, targets):
    """Plain NumPy, any float dtype: returns (row_loss (B,), dz (B, k)); inputs untouched."""
    z = np.asarray(out)
    d = z - np.asarray(targets)
    b = z.shape[0]
    row_loss = ((d * d).mean(axis=1) / 2).astype(z.dtype)
    return row_loss, (d / b).astype(z.dtype)


# No fastmath: NaN must reach the loss for the divergence check. Constants take
# the arrays' dtype (f(1), not 1.0): a Python float would turn float32 math into float64.
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _squared_error_cpu(out, targets, row_loss):
    b, k = out.shape
    f = out.dtype.type
    inv_b = f(1) / f(b)
    inv_2k = f(1) / (f(2) * f(k))
    for i in range(b):
        s = f(0)
        for j in range(k):
            d = out[i, j] - targets[i, j]
            s += d * d
            out[i, j] = d * inv_b
        row_loss[i] = s * inv_2k


@cuda.jit(cache=True)
def _squared_error_cuda(out, targets, row_loss):
    # One thread per row: it sums its row's loss itself, no reduction.
    i = cuda.grid(1)
    b = out.shape[0]
    if i < b:
        f = out.dtype.type
        k = out.shape[1]
        inv_b = f(1) / f(b)
        s = f(0)
        for j in range(k):
            d = out[i, j] - targets[i, j]
            s += d * d
            out[i, j] = d * inv_b
        row_loss[i] = s * (f(1) / (f(2) * f(k)))


def squared_error_cpu(out, targets, row_loss):
    """In place on NumPy arrays: out (B, k) z -> dz, row_loss <- per-row loss."""
    _squared_error_cpu(out, targets, row_loss)
