"""Sigmoid backward, in place, from the saved forward output.

Shapes
    out    (B, N) the forward output s = sigmoid(z) (float32 or float64)
    dout   (B, N) gradient w.r.t. the output; overwritten with the gradient w.r.t. z

Math: d sigmoid / dz = s * (1 - s), a function of the output alone, so the
forward pass need not keep z.

Order: plain-NumPy reference, CPU kernel (Numba), CUDA kernel (Numba CUDA).
"""

import numba
import numpy as np
from numba import cuda


def sigmoid_backward_reference(out, dout):
    """Plain NumPy: returns the gradient w.r.t. z; inputs untouched."""
    s = np.asarray(out)
    return dout * (s * (1 - s))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _sigmoid_backward_cpu(out, dout):
    rows, cols = out.shape
    for i in range(rows):
        for j in range(cols):
            s = out[i, j]
            dout[i, j] *= s - s * s  # not s * (1 - s): int - float32 is float64 in Numba


@cuda.jit(cache=True)
def _sigmoid_backward_cuda(out, dout):
    k = cuda.grid(1)
    cols = out.shape[1]
    if k < out.shape[0] * cols:
        i = k // cols
        j = k - i * cols
        s = out[i, j]
        dout[i, j] *= s - s * s


def sigmoid_backward_cpu(out, dout):
    """In place on NumPy arrays: dout <- dout * out * (1 - out)."""
    _sigmoid_backward_cpu(out, dout)
