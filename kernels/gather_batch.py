"""Gather one mini-batch by a device-resident permutation and step counter.

Shapes
    X      (n, d)  training features on the device: float32 / float64, or uint8 pixels
    y      (n,)    integer labels, or (n, c) targets (float, for the regression and
                   multi-label losses), copied as they are
    perm   (n,)    int64, this epoch's order of the rows (refilled in place each epoch)
    state  (2,)    int64: state[0] = step within the epoch
    batch  int     the full batch size B (the last batch of an epoch may be shorter)
    xb     (k, d)  k <= B rows out, float32 or float64
    yb     (k,)    labels out, or (k, c) targets out (y's shape and dtype)
    scale  float   multiplies every feature (1/255 for uint8 pixels, 1 for float X)

Math: with s = state[0] and r_i = perm[s B + i] for i < k,
    xb[i, :] = X[r_i, :] * scale   (X converted to xb's dtype, then multiplied in it)
    yb[i]    = y[r_i]              (a label, or a row of c targets)

The step reads which rows it takes from device memory, so a captured CUDA graph
takes the next batch every time it is replayed. Indices come from a permutation
of range(n), so they are in range and not checked. Keeping MNIST as uint8 on the
device and scaling here reads a quarter of the bytes a float32 copy would, and
needs no float copy of the training set at all. The Numba kernels take y and yb
as 2-D views, a (n,) array as (n, 1), so one kernel copies labels and target rows.

Order: plain-NumPy reference, CPU kernel, CUDA kernel (Numba CUDA).
"""

import numba
import numpy as np
from numba import cuda


def gather_batch_reference(X, y, perm, step, batch, k, scale=1.0, dtype=None):
    """Plain NumPy: (xb (k, d), yb (k,) or (k, c)) of step ``step``; xb in ``dtype`` (default X's)."""
    idx = np.asarray(perm)[step * batch : step * batch + k]
    dtype = np.dtype(dtype or np.asarray(X).dtype)
    return np.asarray(X)[idx].astype(dtype) * dtype.type(scale), np.asarray(y)[idx]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _gather_batch_cpu(X, y, perm, start, scale, xb, yb):
    f = xb.dtype.type  # convert first: Numba would multiply uint8 by float32 in float64
    s = f(scale)
    for i in range(xb.shape[0]):
        r = perm[start + i]
        row, out = X[r], xb[i]
        for j in range(out.shape[0]):
            out[j] = f(row[j]) * s
        for j in range(yb.shape[1]):
            yb[i, j] = y[r, j]


def gather_batch_cpu(X, y, perm, state, batch, xb, yb, scale=1.0):
    """In place on NumPy arrays: NumPy's take for an unscaled copy (a little faster
    than the Numba loop there), else one Numba pass that converts and scales."""
    start = int(state[0]) * batch
    if scale == 1 and X.dtype == xb.dtype:
        idx = perm[start : start + xb.shape[0]]
        # mode="clip" skips NumPy's bounds-check buffering; the indices come from a permutation.
        np.take(X, idx, axis=0, out=xb, mode="clip")
        np.take(y, idx, axis=0, out=yb, mode="clip")
    else:
        _gather_batch_cpu(X, _as_2d(y), perm, start, xb.dtype.type(scale), xb, _as_2d(yb))


def _as_2d(a):
    """A 2-D view: a (n,) array as (n, 1) (adding an axis never copies, so writes reach ``a``)."""
    return a if a.ndim == 2 else a[:, None]


@cuda.jit(cache=True)
def _gather_batch_cuda(X, y, perm, state, batch, xb, yb, scale):
    # grid (k, ceil(max(d, c) / threads)): blockIdx.x is the batch row (gridDim.x
    # takes 2**31 - 1 blocks, gridDim.y only 65,535), consecutive threads copy
    # consecutive columns (coalesced reads and writes). y and yb are 2-D (the
    # launcher views labels (n,) as (n, 1)). scale is xb's dtype.
    i = cuda.blockIdx.x
    j = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x
    r = perm[state[0] * batch + i]
    if j < xb.shape[1]:
        xb[i, j] = xb.dtype.type(X[r, j]) * scale
    if j < yb.shape[1]:
        yb[i, j] = y[r, j]
