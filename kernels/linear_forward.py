"""Dense layer forward: the product, the bias and the activation, in place.

Shapes (float32 or float64, one dtype per call; n may be 1, and the row
arrays may be row slices buf[:n] of larger C-contiguous buffers)
    a     (n, K)  the layer's input
    W     (K, N)  weights
    b     (N,)    bias
    out   (n, N)  receives act(a @ W + b)
    code  int     IDENTITY, RELU, SIGMOID or TANH (bias_act_forward.py)

Math: out_ij = act(sum_k a_ik W_kj + b_j).

CPU: BLAS for the product straight into ``out``, then bias_act_forward's
Numba epilogue: the same two calls the model made before this op existed.

CUDA: one tiled NN GEMM (gemm_tiles.py; a is read along k, W along j, both
coalesced) whose epilogue adds the bias and applies the activation. With a
split-K (a deep K and few output tiles: the first MNIST layer), the blocks
write raw partial sums and ``_linear_forward_reduce_cuda`` adds them in a
fixed order and applies the same epilogue. Launched by linear_ops.CudaLinearOps.

Order: plain-NumPy reference, CPU op, CUDA kernels.
"""

import numpy as np
from numba import cuda

from .bias_act_forward import bias_act_forward_cpu, bias_act_forward_reference
from .gemm_tiles import TILES_KEY, OWNED, RED_COLS, RED_ROWS, activate, owned, split_sum, store_partial, tile_product


def linear_forward_reference(a, W, b, code):
    """Plain NumPy: returns act(a @ W + b); inputs untouched."""
    return bias_act_forward_reference(np.asarray(a) @ np.asarray(W), b, code)


def linear_forward_cpu(a, W, b, out, code):
    """In place on NumPy arrays: out <- act(a @ W + b)."""
    np.matmul(a, W, out=out)
    bias_act_forward_cpu(out, b, code)


def _cuda_kernels(tiles_key):
    """The CUDA kernels, closures over ``tiles_key`` (gemm_tiles.TILES_KEY): Numba's
    on-disk cache keys a closure's kernels on its cell contents too, so a change of the
    tile constants or code in gemm_tiles.py (or of bias_act_forward's codes) compiles
    afresh instead of loading a kernel built for other tiles."""

    @cuda.jit(cache=True)
    def _linear_forward_cuda(a, W, b, out, code, part, k_chunk):
        """Grid (tiles of N, tiles of n, split). Split 1: out <- act(a @ W + b);
        otherwise slice z of part (split, n, N) <- this chunk's partial a @ W."""
        tiles_key  # noqa: B018 (in the closure: part of Numba's cache key)
        n, N = out.shape
        acc = cuda.local.array(OWNED, out.dtype)
        tile_product(acc, a, RED_COLS, n, out.dtype.type(0), W, RED_ROWS, N, W.shape[0], k_chunk)
        if cuda.gridDim.z > 1:
            store_partial(acc, part, n, N)
            return
        for q in range(OWNED):
            i, j = owned(q)
            if i < n and j < N:
                out[i, j] = activate(acc[q] + b[j], code)

    @cuda.jit(cache=True)
    def _linear_forward_reduce_cuda(part, split, b, out, code):
        """One thread per output: out <- act(sum of the split slices of part + b)."""
        tiles_key  # noqa: B018 (in the closure: part of Numba's cache key)
        n, N = out.shape
        e = cuda.grid(1)
        if e < n * N:
            i = e // N
            j = e - i * N
            out[i, j] = activate(split_sum(part, split, n * N, e) + b[j], code)

    return _linear_forward_cuda, _linear_forward_reduce_cuda


_linear_forward_cuda, _linear_forward_reduce_cuda = _cuda_kernels(TILES_KEY)
