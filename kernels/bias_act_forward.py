"""Bias add + activation, fused, in place: the forward epilogue of a dense layer.

Shapes
    z     (B, N) float32 or float64: x @ W on entry, act(x @ W + b) on return
    b     (N,)   bias, same dtype
    code  int    which activation: IDENTITY, RELU, SIGMOID or TANH below

Math: z_ij <- act(z_ij + b_j) with
    identity  a = u
    relu      a = max(u, 0)
    sigmoid   a = 1 / (1 + exp(-u))      (exp overflows to inf for u < -88 in
                                          float32, which gives exactly 0: no NaN)
    tanh      a = tanh(u)

One pass over z instead of two (``z += b``, then the activation); the backward
kernels only need the output this writes.

Order: plain-NumPy reference, CPU kernel (Numba), CUDA kernel (Numba CUDA).
"""

import math

import numba
import numpy as np
from numba import cuda

IDENTITY, RELU, SIGMOID, TANH = 0, 1, 2, 3


def bias_act_forward_reference(z, b, code):
    """Plain NumPy: returns act(z + b); inputs untouched."""
    u = np.asarray(z) + np.asarray(b)
    if code == RELU:
        return np.maximum(u, 0)
    if code == SIGMOID:
        with np.errstate(over="ignore"):
            return (1 / (1 + np.exp(-u))).astype(u.dtype)
    if code == TANH:
        return np.tanh(u)
    return u


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _bias_act_forward_cpu(z, b, code):
    rows, cols = z.shape
    one, zero = z.dtype.type(1), z.dtype.type(0)
    # The branch on code sits outside the loops, so each inner loop is a plain,
    # vectorisable pass over one row.
    for i in range(rows):
        r = z[i]
        if code == RELU:
            for j in range(cols):
                u = r[j] + b[j]
                r[j] = zero if u < zero else u  # a NaN stays NaN, as in np.maximum
        elif code == SIGMOID:
            for j in range(cols):
                r[j] = one / (one + math.exp(-(r[j] + b[j])))
        elif code == TANH:
            for j in range(cols):
                r[j] = math.tanh(r[j] + b[j])
        else:
            for j in range(cols):
                r[j] += b[j]


@cuda.jit(cache=True)
def _bias_act_forward_cuda(z, b, code):
    k = cuda.grid(1)
    cols = z.shape[1]
    if k >= z.shape[0] * cols:
        return
    i = k // cols
    j = k - i * cols
    # constants of z's dtype: Python's 0.0 / 1.0 would turn float32 math into float64
    zero, one = z.dtype.type(0), z.dtype.type(1)
    u = z[i, j] + b[j]
    if code == RELU:
        if u < zero:  # a NaN stays NaN, as in np.maximum
            u = zero
    elif code == SIGMOID:
        u = one / (one + math.exp(-u))
    elif code == TANH:
        u = math.tanh(u)
    z[i, j] = u


def bias_act_forward_cpu(z, b, code):
    """In place on NumPy arrays: z <- act(z + b)."""
    _bias_act_forward_cpu(z, b, code)
