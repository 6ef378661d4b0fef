"""ReLU backward, in place, from the saved forward output.

Shapes
    out    (B, N) the forward output relu(z) (float32 or float64)
    dout   (B, N) gradient w.r.t. the output; overwritten with the gradient w.r.t. z

Math: relu(z) = max(z, 0), so d relu / dz = [z > 0] = [relu(z) > 0]. The saved
output carries the same information as z, which lets the forward pass keep only
one buffer per layer.

Order: plain-NumPy reference, CPU kernel (Numba), CUDA kernel (Numba CUDA).
"""

import numba
import numpy as np
from numba import cuda


def relu_backward_reference(out, dout):
    """Plain NumPy: returns the gradient w.r.t. z; inputs untouched.

    A multiply by the 0/1 mask (so a NaN or inf in ``dout`` stays visible even
    where the unit is off, and the CPU loop vectorises, which a branch does not)."""
    return dout * (np.asarray(out) > 0).astype(np.asarray(dout).dtype)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _relu_backward_cpu(out, dout):
    rows, cols = out.shape
    # 1/0 of dout's dtype: a bare (o > 0) would make Numba multiply in float64
    one, zero = dout.dtype.type(1), dout.dtype.type(0)
    for i in range(rows):
        o, d = out[i], dout[i]
        for j in range(cols):
            d[j] = d[j] * (one if o[j] > 0 else zero)


@cuda.jit(cache=True)
def _relu_backward_cuda(out, dout):
    k = cuda.grid(1)
    cols = out.shape[1]
    if k < out.shape[0] * cols:
        i = k // cols
        j = k - i * cols
        if not out[i, j] > 0:
            dout[i, j] *= dout.dtype.type(0)  # 0, or NaN for a NaN/inf gradient, like the reference


def relu_backward_cpu(out, dout):
    """In place on NumPy arrays: dout <- dout * [out > 0]."""
    _relu_backward_cpu(out, dout)
