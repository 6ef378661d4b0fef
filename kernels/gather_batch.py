"""Gather one mini-batch by a device-resident permutation and step counter.

Shapes
    X      (n, d)  training features on the device, float32 or float64
    y      (n,)    integer labels
    perm   (n,)    int64, this epoch's order of the rows (refilled in place each epoch)
    state  (2,)    int64: state[0] = step within the epoch
    batch  int     the full batch size B (the last batch of an epoch may be shorter)
    xb     (k, d)  k <= B rows out, same dtype as X
    yb     (k,)    labels out

Math: with s = state[0] and r_i = perm[s B + i] for i < k,
    xb[i, :] = X[r_i, :];  yb[i] = y[r_i]

The step reads which rows it takes from device memory, so a captured CUDA graph
takes the next batch every time it is replayed. Indices come from a permutation
of range(n), so they are in range and not checked.

Order: plain-NumPy reference, CPU kernel, CUDA kernel (Numba CUDA).
"""

import numpy as np
from numba import cuda


def gather_batch_reference(X, y, perm, step, batch, k):
    """Plain NumPy: (xb (k, d), yb (k,)) of step ``step``."""
    idx = np.asarray(perm)[step * batch : step * batch + k]
    return np.asarray(X)[idx], np.asarray(y)[idx]


def gather_batch_cpu(X, y, perm, state, batch, xb, yb):
    """In place on NumPy arrays; NumPy's take into the preallocated buffers."""
    start = int(state[0]) * batch
    idx = perm[start : start + xb.shape[0]]
    # mode="clip" skips NumPy's bounds-check buffering; the indices come from a permutation.
    np.take(X, idx, axis=0, out=xb, mode="clip")
    np.take(y, idx, axis=0, out=yb, mode="clip")


@cuda.jit(cache=True)
def _gather_batch_cuda(X, y, perm, state, batch, xb, yb):
    # grid (ceil(d / threads), k): one block row per batch row, consecutive threads
    # copy consecutive columns (coalesced reads and writes)
    i = cuda.blockIdx.y
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    r = perm[state[0] * batch + i]
    if j < xb.shape[1]:
        xb[i, j] = X[r, j]
    if j == 0:
        yb[i] = y[r]
