"""Tanh backward, in place, from the saved forward output.

Shapes
    out    (B, N) the forward output y = tanh(z) (float32 or float64)
    dout   (B, N) gradient w.r.t. the output; overwritten with the gradient w.r.t. z

Math: d tanh / dz = 1 - y**2.

Order: plain-NumPy reference, CPU kernel (Numba), CUDA kernel (Numba CUDA).
"""

import numba
import numpy as np
from numba import cuda


def tanh_backward_reference(out, dout):
    """Plain NumPy: returns the gradient w.r.t. z; inputs untouched."""
    y = np.asarray(out)
    return dout * (1 - y * y)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _tanh_backward_cpu(out, dout):
    rows, cols = out.shape
    for i in range(rows):
        for j in range(cols):
            y = out[i, j]
            dout[i, j] -= dout[i, j] * y * y  # d (1 - y^2) without an int - float32 (float64) term


@cuda.jit(cache=True)
def _tanh_backward_cuda(out, dout):
    k = cuda.grid(1)
    cols = out.shape[1]
    if k < out.shape[0] * cols:
        i = k // cols
        j = k - i * cols
        y = out[i, j]
        dout[i, j] -= dout[i, j] * y * y


def tanh_backward_cpu(out, dout):
    """In place on NumPy arrays: dout <- dout * (1 - out**2)."""
    _tanh_backward_cpu(out, dout)
