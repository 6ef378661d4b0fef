"""Gather one mini-batch of rows of a CSR sparse matrix into a dense batch buffer.

Shapes
    data     (nnz,)     the nonzero values, float32 / float64 (converted to xb's dtype one by one)
    indices  (nnz,)     int32 / int64, the column of each value
    indptr   (n + 1,)   int32 / int64, row r's values are data[indptr[r] : indptr[r + 1]]
    y        (n,)       int64 labels, or (n, c) float targets
    perm     (n,)       int64, this epoch's order of the rows (refilled in place each epoch)
    state    (2,)       int64: state[0] = step within the epoch
    batch    int        the full batch size B (the last batch of an epoch may be shorter)
    xb       (k, d)     k <= B dense rows out, float32 or float64; every entry is written
    yb       (k,)       labels out, or (k, c) targets out, like y

Math: with s = state[0] and r_i = perm[s B + i] for i < k,
    xb[i, j] = sum of data[p] over indptr[r_i] <= p < indptr[r_i + 1] with indices[p] = j
               (0 where there is none),  summed in the order of p;   yb[i] = y[r_i]

This is scipy.sparse's ``X[rows].toarray()`` for the arrays of a ``csr_matrix``
X as they come: canonical or not, so the columns of a row may be unsorted and
repeat, and repeats are summed, in storage order, as scipy's toarray sums them
(both kernels give the same bits as the reference, and as scipy for data
already in xb's dtype). The training set stays sparse on the device and each
step densifies only its k rows. As in gather_batch.py, the step reads which
rows it takes from device memory, so a captured CUDA graph takes the next batch
every time it is replayed. perm is a permutation of range(n) and scipy checks
that indices lie in range(d), so neither is checked here.

Order: plain-NumPy reference, CPU kernel, CUDA kernel (Numba CUDA).
"""

import numba
import numpy as np
from numba import cuda, int64

THREADS = 128  # threads per block of the CUDA kernel: one block densifies one row


def gather_csr_reference(data, indices, indptr, y, perm, step, batch, k, n_features, dtype=None):
    """Plain NumPy: (xb (k, n_features), yb) of step ``step``; xb in ``dtype`` (default data's).
    Values are converted to ``dtype`` first, then repeats summed in storage order (np.add.at)."""
    data, indices, indptr = np.asarray(data), np.asarray(indices), np.asarray(indptr)
    dtype = np.dtype(dtype or data.dtype)
    rows = np.asarray(perm)[step * batch : step * batch + k]
    xb = np.zeros((len(rows), n_features), dtype=dtype)
    for i, r in enumerate(rows):
        lo, hi = indptr[r], indptr[r + 1]
        np.add.at(xb[i], indices[lo:hi], data[lo:hi].astype(dtype))
    return xb, np.asarray(y)[rows]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _gather_csr_cpu(data, indices, indptr, y, perm, start, xb, yb):
    # y and yb are 2-D: (n, 1) views of 1-D labels, so one compiled loop serves both kinds.
    f = xb.dtype.type
    for i in range(xb.shape[0]):
        r = perm[start + i]
        out = xb[i]
        out[:] = 0
        for p in range(indptr[r], indptr[r + 1]):
            out[indices[p]] += f(data[p])
        yb[i, :] = y[r, :]


def gather_csr_cpu(data, indices, indptr, y, perm, state, batch, xb, yb):
    """In place on NumPy arrays (see the module docstring); y and yb both 1-D or both 2-D."""
    # [:, None] is always a view, so the kernel's writes land in yb whatever its strides.
    y2 = y if y.ndim == 2 else y[:, None]
    yb2 = yb if yb.ndim == 2 else yb[:, None]
    _gather_csr_cpu(data, indices, indptr, y2, perm, int(state[0]) * batch, xb, yb2)


@cuda.jit(cache=True)
def _gather_csr_cuda(data, indices, indptr, y, perm, state, batch, xb, yb):
    # Grid (k,), exactly THREADS threads (cols and the strides assume it): block i
    # densifies batch row i. blockIdx.x, since a grid's y dimension stops at 65,535
    # rows. y and yb are 2-D, as in the CPU kernel.
    #
    # Repeated columns are summed deterministically, in storage order, with no atomics:
    # the row's nonzeros go in chunks of THREADS, one per thread. Within a chunk, the
    # first thread holding a column (its leader) adds, in order, every value of that
    # column in the chunk to what earlier chunks left in xb; a barrier separates chunks.
    # Finding leaders costs a scan of the chunk's columns in shared memory, which a chunk
    # whose columns strictly increase (every chunk of a canonical scipy matrix) skips:
    # there each column appears once, so each thread adds its own value.
    # Float atomics would need no scan, but would add three or more repeats of a column
    # in a varying order (two commute exactly), so results could change between runs.
    cols = cuda.shared.array(THREADS, int64)
    i = cuda.blockIdx.x
    t = cuda.threadIdx.x
    f = xb.dtype.type
    r = perm[state[0] * batch + i]
    row = xb[i]
    for j in range(t, row.shape[0], THREADS):  # consecutive threads, consecutive columns: coalesced
        row[j] = 0
    for j in range(t, yb.shape[1], THREADS):
        yb[i, j] = y[r, j]
    start = indptr[r]
    end = indptr[r + 1]
    cuda.syncthreads()  # the zeros are visible to the threads that add into them
    for base in range(start, end, THREADS):  # the same trip count in every thread: barriers are safe
        n = min(THREADS, end - base)
        c = int64(-1)
        increasing = 1
        if t < n:
            c = int64(indices[base + t])
            cols[t] = c
            if t > 0 and indices[base + t - 1] >= c:
                increasing = 0
        # a barrier too: cols is complete below
        if cuda.syncthreads_and(increasing):
            if t < n:
                row[c] += f(data[base + t])
        elif t < n:
            leader = True
            for s in range(t):
                if cols[s] == c:
                    leader = False
                    break
            if leader:
                x = row[c] + f(data[base + t])
                for s in range(t + 1, n):
                    if cols[s] == c:
                        x += f(data[base + s])
                row[c] = x
        cuda.syncthreads()  # this chunk's sums are in xb, and cols is free, before the next chunk


def gather_csr_launches(view, stream, data, indices, indptr, y, perm, state, batch, xb, yb):
    """The launches of gather_csr, [(kernel, (grid, threads, stream), args)], as
    ``cuda_kernels()`` in kernels/__init__.py builds them; ``view`` wraps each array
    (CuPy arrays into Numba device arrays). 1-D y and yb go as (n, 1) and (k, 1)
    views (no copy: the buffers are contiguous), so nothing is allocated per launch."""
    y, yb = view(y), view(yb)
    if y.ndim == 1:
        y = y.reshape(y.shape[0], 1)
    if yb.ndim == 1:
        yb = yb.reshape(yb.shape[0], 1)
    if xb.shape[0] == 0:  # an empty grid is a launch error; there is nothing to gather
        return []
    args = (view(data), view(indices), view(indptr), y, view(perm), view(state), batch, view(xb), yb)
    return [(_gather_csr_cuda, (xb.shape[0], THREADS, stream), args)]
