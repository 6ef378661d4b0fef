"""Half Poisson deviance on exponential outputs (log link): count regression, loss and delta in one pass.

Shapes
    out       (B, k) float32 or float64, C-contiguous: the last layer's pre-activation z,
              the log of the predicted mean; overwritten with dz
    targets   (B, k) same float dtype as out: t >= 0, counts or rates
    row_loss  (B,)   same float dtype; receives each row's loss

Math, for entry (i, j) with mu = exp(z) the predicted mean:
    loss_ij     = xlogy(t, t / mu) - t + mu         (xlogy(0, .) = 0)
                = (mu - t) + t (log t - z)          for t > 0
                = mu                                for t = 0
    row_loss_i  = sum_j loss_ij
    dz_ij       = (mu_ij - t_ij) / B

The exponential output's derivative mu and the deviance's derivative 1 - t / mu
cancel to mu - t, which is why the two are fused. t log(t / mu) is computed as
t (log t - z): t / mu would overflow or round to 0 long before log t - z loses
anything, and mu - t, the gradient, is shared with the loss. Near mu = t the
loss is a difference of two terms of size t |log t - z| (t d^2 / 2 for
z = log t + d), so, as in scikit-learn's formula, it is exact to a few ulps of
t + mu, not of itself. A z whose exp overflows gives an infinite loss and
gradient, not NaN.

This is scikit-learn's MLPRegressor with loss="poisson": an "exp" output
activation and poisson_loss, the sum over the k outputs of the mean over the
rows (so the batch mean of row_loss), with the output delta y_pred - y.

A NaN in z or t gives a NaN loss (no fastmath), so the trainer's divergence
check reports it; so does a negative target, which has no Poisson likelihood
(log t is NaN, as in scikit-learn's xlogy).

Order: plain-NumPy reference, CPU kernel (Numba), CUDA kernel (Numba CUDA).
"""

import math

import numba
import numpy as np
from numba import cuda


def poisson_deviance_reference(out, targets):
    """Plain NumPy, any float dtype: returns (row_loss (B,), dz (B, k)); inputs untouched."""
    z = np.asarray(out)
    t = np.asarray(targets)
    b = z.shape[0]
    g = np.exp(z) - t
    with np.errstate(divide="ignore", invalid="ignore"):  # log 0 and 0 * inf, replaced by 0
        xlogy = np.where(t == 0, 0, t * (np.log(t) - z))
    row_loss = (g + xlogy).sum(axis=1).astype(z.dtype)
    return row_loss, (g / b).astype(z.dtype)


# No fastmath: NaN must reach the loss for the divergence check. Constants take
# the arrays' dtype (f(0), not 0.0): a Python float would turn float32 math into float64.
@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _loss_and_mu_minus_t(z, t, zero):
    """(loss, mu - t) of one entry, log-mean z and target t; zero in z's dtype.
    Both kernels call it: the CPU loop per entry, the CUDA kernel as a device function."""
    g = math.exp(z) - t
    if t == zero:
        return g, g
    return g + t * (math.log(t) - z), g


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _poisson_deviance_cpu(out, targets, row_loss):
    b, k = out.shape
    f = out.dtype.type
    zero = f(0)
    inv_b = f(1) / f(b)
    for i in range(b):
        s = zero
        for j in range(k):
            loss, g = _loss_and_mu_minus_t(out[i, j], targets[i, j], zero)
            s += loss
            out[i, j] = g * inv_b
        row_loss[i] = s


@cuda.jit(cache=True)
def _poisson_deviance_cuda(out, targets, row_loss):
    # One thread per row: it sums its row's loss itself, no reduction.
    i = cuda.grid(1)
    b = out.shape[0]
    if i < b:
        f = out.dtype.type
        zero = f(0)
        inv_b = f(1) / f(b)
        s = zero
        for j in range(out.shape[1]):
            loss, g = _loss_and_mu_minus_t(out[i, j], targets[i, j], zero)
            s += loss
            out[i, j] = g * inv_b
        row_loss[i] = s


def poisson_deviance_cpu(out, targets, row_loss):
    """In place on NumPy arrays: out (B, k) z -> dz, row_loss <- per-row loss."""
    _poisson_deviance_cpu(out, targets, row_loss)
