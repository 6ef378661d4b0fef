"""Dense layer backward, input side: the gradient handed to the previous layer.

Shapes (float32 or float64, one dtype per call; n may be 1, and the row
arrays may be row slices buf[:n] of larger C-contiguous buffers)
    delta     (n, N)  gradient w.r.t. this layer's pre-activation
    W         (K, N)  this layer's weights
    out_prev  (n, K)  the previous layer's forward output act(z_prev)
    d_prev    (n, K)  receives the gradient w.r.t. z_prev
    code      int     the previous layer's activation: IDENTITY, RELU, SIGMOID or TANH

Math: d_prev = (delta @ W.T) * act'(z_prev), where act' comes from the saved
output exactly as relu_backward / sigmoid_backward / tanh_backward compute it
([out > 0], s - s*s, d - d*y*y); identity has factor 1.

CPU: BLAS for the product straight into ``d_prev``, then the activation's
Numba backward kernel in place: the calls the model made before this op existed.

CUDA: one tiled NT GEMM (gemm_tiles.py; the reduction runs over N, which is
the contiguous index of both delta and W, so both are read along it) whose
epilogue multiplies by act'. With a split-K, ``_backward_input_reduce_cuda``
adds the partial slices in order and applies the same epilogue. Launched by
linear_ops.CudaLinearOps.

Order: plain-NumPy reference, CPU op, CUDA kernels.
"""

import numpy as np
from numba import cuda

from .bias_act_forward import RELU, SIGMOID, TANH
from .gemm_tiles import TILES_KEY, OWNED, RED_COLS, activation_backward, owned, split_sum, store_partial, tile_product
from .relu_backward import relu_backward_cpu, relu_backward_reference
from .sigmoid_backward import sigmoid_backward_cpu, sigmoid_backward_reference
from .tanh_backward import tanh_backward_cpu, tanh_backward_reference

_REFERENCE = {RELU: relu_backward_reference, SIGMOID: sigmoid_backward_reference, TANH: tanh_backward_reference}
_CPU = {RELU: relu_backward_cpu, SIGMOID: sigmoid_backward_cpu, TANH: tanh_backward_cpu}


def backward_input_reference(delta, W, out_prev, code):
    """Plain NumPy: returns (delta @ W.T) * act'(z_prev), (n, K); inputs untouched."""
    d = np.asarray(delta) @ np.asarray(W).T
    return _REFERENCE[code](out_prev, d) if code in _REFERENCE else d


def backward_input_cpu(delta, W, out_prev, d_prev, code):
    """In place on NumPy arrays: d_prev <- (delta @ W.T) * act'(z_prev)."""
    np.matmul(delta, W.T, out=d_prev)
    if code in _CPU:
        _CPU[code](out_prev, d_prev)


def _cuda_kernels(tiles_key):
    """The CUDA kernels, closures over ``tiles_key`` (gemm_tiles.TILES_KEY): Numba's
    on-disk cache keys a closure's kernels on its cell contents too, so a change of the
    tile constants or code in gemm_tiles.py (or of bias_act_forward's codes) compiles
    afresh instead of loading a kernel built for other tiles."""

    @cuda.jit(cache=True)
    def _backward_input_cuda(delta, W, out_prev, d_prev, code, part, k_chunk):
        """Grid (tiles of K, tiles of n, split). Split 1: d_prev <- (delta @ W.T) * act';
        otherwise slice z of part (split, n, K) <- this chunk's partial delta @ W.T."""
        tiles_key  # noqa: B018 (in the closure: part of Numba's cache key)
        n, K = d_prev.shape
        acc = cuda.local.array(OWNED, d_prev.dtype)
        tile_product(acc, delta, RED_COLS, n, d_prev.dtype.type(0), W, RED_COLS, K, W.shape[1], k_chunk)
        if cuda.gridDim.z > 1:
            store_partial(acc, part, n, K)
            return
        for q in range(OWNED):
            i, j = owned(q)
            if i < n and j < K:
                d_prev[i, j] = activation_backward(acc[q], out_prev[i, j], code)

    @cuda.jit(cache=True)
    def _backward_input_reduce_cuda(part, split, out_prev, d_prev, code):
        """One thread per output: d_prev <- (sum of the split slices of part) * act'."""
        tiles_key  # noqa: B018 (in the closure: part of Numba's cache key)
        n, K = d_prev.shape
        e = cuda.grid(1)
        if e < n * K:
            i = e // K
            j = e - i * K
            d_prev[i, j] = activation_backward(split_sum(part, split, n * K, e), out_prev[i, j], code)

    return _backward_input_cuda, _backward_input_reduce_cuda


_backward_input_cuda, _backward_input_reduce_cuda = _cuda_kernels(TILES_KEY)
