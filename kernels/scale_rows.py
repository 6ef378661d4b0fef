"""Scale each row's loss and gradient by a per-row weight of the epoch: weighted samples.

Shapes
    dlogits    (k, C) float32 or float64, C-contiguous: the loss kernel's output for
               the step's k <= B rows (a row slice of the batch buffer)
    row_loss   (k,)   same dtype: each row's loss
    row_scale  (n,)   same dtype: one factor per row of the epoch, in batch order
               (entry s B + i belongs to row i of step s), written once per epoch
    state      (2,)   int64: state[0] = step within the epoch
    batch      int    the full batch size B

Math: with s = state[0] and r_i = row_scale[s B + i] for i < k,
    dlogits[i, :] *= r_i;   row_loss[i] *= r_i

The loss kernels give each row the gradient of the batch mean (their dlogits
carry 1 / k); scaling row i by r_i = w_i k / sum_j w_j turns that into the
gradient, and the summed loss into k times the loss, of the weighted mean
sum_i w_i l_i / sum_j w_j (scikit-learn's sample_weight). The factors are
device data read at state[0], like the gather's permutation, so a captured
CUDA graph scales every step with that step's weights.

Order: plain-NumPy reference, CPU kernel (Numba), CUDA kernel (Numba CUDA).
"""

import numba
import numpy as np
from numba import cuda


def scale_rows_reference(dlogits, row_loss, row_scale, step, batch):
    """Plain NumPy: (dlogits, row_loss) of step ``step`` scaled; inputs untouched."""
    k = np.shape(dlogits)[0]
    r = np.asarray(row_scale)[step * batch : step * batch + k]
    return np.asarray(dlogits) * r[:, None], np.asarray(row_loss) * r


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _scale_rows_cpu(dlogits, row_loss, row_scale, state, batch):
    k, c = dlogits.shape
    start = state[0] * batch
    for i in range(k):
        r = row_scale[start + i]
        row_loss[i] *= r
        for j in range(c):
            dlogits[i, j] *= r


@cuda.jit(cache=True)
def _scale_rows_cuda(dlogits, row_loss, row_scale, state, batch):
    # one thread per entry of dlogits (k C of them); the thread of column 0 also
    # scales the row's loss
    idx = cuda.grid(1)
    k, c = dlogits.shape
    if idx >= k * c:
        return
    i = idx // c
    j = idx - i * c
    r = row_scale[state[0] * batch + i]
    dlogits[i, j] *= r
    if j == 0:
        row_loss[i] *= r


def scale_rows_cpu(dlogits, row_loss, row_scale, state, batch):
    """In place on NumPy arrays."""
    _scale_rows_cpu(dlogits, row_loss, row_scale, state, batch)
