"""Dense layer backward, parameter side: weight and bias gradients.

Shapes (float32 or float64, one dtype per call; n may be 1, and the row
arrays may be row slices buf[:n] of larger C-contiguous buffers)
    a      (n, K)  the layer's input saved by the forward pass
    delta  (n, N)  gradient w.r.t. the layer's pre-activation
    dW     (K, N)  receives a.T @ delta
    db     (N,)    receives delta.sum(axis=0)

Math: dW_kj = sum_i a_ik delta_ij,  db_j = sum_i delta_ij.

CPU: BLAS for both: a.T @ delta into dW, and ones @ delta into db (a
matrix-vector product, three times faster here than a reduction over axis 0).
The ones vector is cached per dtype in this module and only ever grows.

CUDA: one tiled TN GEMM (gemm_tiles.py; the reduction runs over the batch rows,
and both operands are read along their contiguous rows). The bias gradient
rides along as row K of the product: the kernel reads ``a`` as if it had an
extra column of ones, so db = ones.T @ delta comes out of the same loop as dW,
in the same fixed order, without atomics. With a split-K over the batch (large
batches), ``_linear_backward_reduce_cuda`` adds the partial slices in order.
Launched by linear_ops.CudaLinearOps.

Order: plain-NumPy reference, CPU op, CUDA kernels.
"""

import numpy as np
from numba import cuda

from .gemm_tiles import TILES_KEY, OWNED, RED_ROWS, owned, split_sum, store_partial, tile_product

_ONES = {}  # dtype -> ones vector, grown (never shrunk) to the largest batch seen


def linear_backward_reference(a, delta):
    """Plain NumPy: returns (dW (K, N), db (N,)); inputs untouched."""
    a, delta = np.asarray(a), np.asarray(delta)
    return a.T @ delta, delta.sum(axis=0)


def _grow_ones(n, dtype):
    ones = _ONES[dtype] = np.ones(max(n, 1024), dtype=dtype)
    return ones


def linear_backward_cpu(a, delta, dW, db):
    """In place on NumPy arrays: dW <- a.T @ delta, db <- delta.sum(axis=0)."""
    n = delta.shape[0]
    ones = _ONES.get(delta.dtype)
    if ones is None or ones.shape[0] < n:  # inline, not a helper call: this runs every step
        ones = _grow_ones(n, delta.dtype)
    np.matmul(a.T, delta, out=dW)
    np.matmul(ones[:n], delta, out=db)


@cuda.jit(device=True)
def _store(v, dW, db, i, j):
    """Row i of [dW; db] (K + 1, N): rows < K are dW, row K is db."""
    K, N = dW.shape
    if j < N:
        if i < K:
            dW[i, j] = v
        elif i == K:
            db[j] = v


def _cuda_kernels(tiles_key):
    """The CUDA kernels, closures over ``tiles_key`` (gemm_tiles.TILES_KEY): Numba's
    on-disk cache keys a closure's kernels on its cell contents too, so a change of the
    tile constants or code in gemm_tiles.py (or of bias_act_forward's codes) compiles
    afresh instead of loading a kernel built for other tiles."""

    @cuda.jit(cache=True)
    def _linear_backward_cuda(a, delta, dW, db, part, k_chunk):
        """Grid (tiles of N, tiles of K + 1, split). Split 1: [dW; db] <- [a, 1].T @ delta;
        otherwise slice z of part (split, K + 1, N) <- this chunk's partial product."""
        tiles_key  # noqa: B018 (in the closure: part of Numba's cache key)
        K, N = dW.shape
        acc = cuda.local.array(OWNED, dW.dtype)
        tile_product(acc, a, RED_ROWS, K, dW.dtype.type(1), delta, RED_ROWS, N, delta.shape[0], k_chunk)
        if cuda.gridDim.z > 1:
            store_partial(acc, part, K + 1, N)
            return
        for q in range(OWNED):
            i, j = owned(q)
            _store(acc[q], dW, db, i, j)

    @cuda.jit(cache=True)
    def _linear_backward_reduce_cuda(part, split, dW, db):
        """One thread per element of [dW; db]: the sum of the split slices of part."""
        tiles_key  # noqa: B018 (in the closure: part of Numba's cache key)
        K, N = dW.shape
        e = cuda.grid(1)
        if e < (K + 1) * N:
            i = e // N
            _store(split_sum(part, split, (K + 1) * N, e), dW, db, i, e - i * N)

    return _linear_backward_cuda, _linear_backward_reduce_cuda


_linear_backward_cuda, _linear_backward_reduce_cuda = _cuda_kernels(TILES_KEY)
