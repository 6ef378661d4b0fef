"""Launchers for the dense layer's CUDA GEMM kernels, bound to one stream.

    ops = CudaLinearOps(stream)                      # a Numba stream, or 0
    ops.linear_forward(a, W, b, out, code)           # out <- act(a @ W + b)
    ops.linear_backward(a, delta, dW, db)            # dW <- a.T @ delta, db <- delta.sum(0)
    ops.backward_input(delta, W, out_prev, d_prev, code)   # d_prev <- (delta @ W.T) * act'

The arrays are Numba device arrays (real or simulator ones; wrap CuPy arrays
with ``cuda.as_cuda_array(x, sync=False)`` first), one float dtype per call.
Shapes and math: linear_forward.py, linear_backward.py, backward_input.py.

Every launch goes on ``stream``; the grid comes from the shapes. The split-K
factor comes from ``gemm_tiles.choose_split`` unless ``split`` (constructor
argument or attribute) forces one for every op; it is clamped to the number of
BK steps of the reduction.

Split-K scratch (warm-up): the first call that needs scratch of a dtype and at
least a given size allocates it with ``cuda.device_array``; later calls reuse
it. A larger need allocates a larger buffer, and the old one is kept alive in
``self._retired`` (a captured CUDA graph may still point at it): nothing is
ever freed while this object lives, so keep it alive as long as any graph
captured from its launches. So run each shape once before capturing a graph;
after that, launches allocate nothing. Launches on one stream run in order, so
the ops can share one scratch buffer per dtype; two streams need two objects.
"""

import numpy as np
from numba import cuda

from .backward_input import _backward_input_cuda, _backward_input_reduce_cuda
from .gemm_tiles import REDUCE_THREADS, THREADS, choose_split, split_chunks, tiles
from .linear_backward import _linear_backward_cuda, _linear_backward_reduce_cuda
from .linear_forward import _linear_forward_cuda, _linear_forward_reduce_cuda


def run_launches(launches):
    """Make each launch of a list of (kernel, launch configuration, arguments), in
    order; a configuration of None: the kernel is configured already (see bind_launches)."""
    for kernel, config, args in launches:
        (kernel if config is None else kernel[config])(*args)


def bind_launches(launches):
    """The same launches with each kernel configured once, where Numba allows it:
    numba-cuda's ``kernel[config]`` is a new object to keep, while the simulator's
    sets the configuration on the kernel itself, so there it is set again per launch."""
    out = []
    for kernel, config, args in launches:
        configured = kernel[config]
        out.append((kernel, config, args) if configured is kernel else (configured, None, args))
    return out


def _check(op, dtype, *named):
    """ValueError naming the first (name, array, shape) whose shape or dtype is not
    as expected: a kernel would read or write out of bounds, or compile for mixed dtypes."""
    for name, x, shape in named:
        if tuple(x.shape) != shape or x.dtype != dtype:
            raise ValueError(f"{op}: {name} is {x.dtype}{tuple(x.shape)}, expected {dtype}{shape}")


class CudaLinearOps:
    """The three GEMM ops of a dense layer on one stream (see the module docstring).

    ``split``: None picks the split-K factor from the shapes; an int forces it
    (1 = never split), for tests and tuning. ``alloc(size, dtype)``: how the
    split-K scratch is made (default ``cuda.device_array``).
    """

    def __init__(self, stream=0, split=None, alloc=None):
        self.stream = stream
        self.split = split
        self._alloc = alloc or (lambda size, dtype: cuda.device_array(size, dtype=dtype))  # the split-K scratch
        self._scratch = {}  # dtype -> the flat scratch buffer in use
        self._retired = []  # outgrown scratch buffers, kept alive for captured graphs

    def linear_forward(self, a, W, b, out, code):
        """out (n, N) <- act(a (n, K) @ W (K, N) + b (N,))."""
        run_launches(self.linear_forward_launches(a, W, b, out, code))

    def linear_backward(self, a, delta, dW, db):
        """dW (K, N) <- a (n, K).T @ delta (n, N);  db (N,) <- delta.sum(axis=0)."""
        run_launches(self.linear_backward_launches(a, delta, dW, db))

    def backward_input(self, delta, W, out_prev, d_prev, code):
        """d_prev (n, K) <- (delta (n, N) @ W (K, N).T) * act'(out_prev (n, K))."""
        run_launches(self.backward_input_launches(delta, W, out_prev, d_prev, code))

    # The same ops as lists of (kernel, launch configuration, arguments): what a launch
    # would do, worked out once (checks, grid, split, scratch) for a caller that repeats it.

    def linear_forward_launches(self, a, W, b, out, code):
        (n, K), N = a.shape, W.shape[1]
        _check("linear_forward", a.dtype, ("W", W, (K, N)), ("b", b, (N,)), ("out", out, (n, N)))
        if not n:
            return []
        return self._gemm(_linear_forward_cuda, _linear_forward_reduce_cuda, n, N, K, (a, W, b, out, code), (b, out, code))

    def linear_backward_launches(self, a, delta, dW, db):
        (n, K), N = a.shape, delta.shape[1]
        _check("linear_backward", a.dtype, ("delta", delta, (n, N)), ("dW", dW, (K, N)), ("db", db, (N,)))
        # [dW; db] is one (K + 1, N) product: the kernel reads a with an extra column of ones
        return self._gemm(_linear_backward_cuda, _linear_backward_reduce_cuda, K + 1, N, n, (a, delta, dW, db), (dW, db))

    def backward_input_launches(self, delta, W, out_prev, d_prev, code):
        (n, N), K = delta.shape, W.shape[0]
        _check("backward_input", delta.dtype, ("W", W, (K, N)), ("out_prev", out_prev, (n, K)), ("d_prev", d_prev, (n, K)))
        if not n:
            return []
        return self._gemm(
            _backward_input_cuda, _backward_input_reduce_cuda, n, K, N, (delta, W, out_prev, d_prev, code), (out_prev, d_prev, code)
        )

    def _gemm(self, kernel, reduce, rows, cols, depth, args, reduce_args):
        """The launches of a product C (rows, cols) with reduction depth ``depth``, split-K when it pays."""
        split = choose_split(rows, cols, depth) if self.split is None else self.split
        k_chunk, split = split_chunks(depth, split)
        part = self._part(args[0].dtype, split * rows * cols if split > 1 else 0)
        launches = [(kernel, ((tiles(cols), tiles(rows), split), THREADS, self.stream), (*args, part, k_chunk))]
        if split > 1:
            blocks = -(-rows * cols // REDUCE_THREADS)
            launches.append((reduce, (blocks, REDUCE_THREADS, self.stream), (part, split, *reduce_args)))
        return launches

    def _part(self, dtype, size):
        """Flat scratch of at least ``size`` elements (the kernels need an array
        even when they do not split); allocates only when it must grow."""
        buf = self._scratch.get(np.dtype(dtype))
        if buf is None or buf.shape[0] < size:
            if buf is not None:
                self._retired.append(buf)
            buf = self._scratch[np.dtype(dtype)] = self._alloc(max(size, 1), dtype)
        return buf
