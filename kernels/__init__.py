"""Numba kernels: every operation of a training step, for the CPU and for CUDA.

Installed as ``fastmlp.kernels``. Each module holds one operation: a docstring
with the math and shapes, a plain-NumPy reference, the CPU kernel
(``numba.njit``, or NumPy's BLAS plus Numba epilogues for the GEMMs) and the
CUDA kernel (``numba.cuda.jit``). The tests compare both with the same reference.

A training step is only these calls, on preallocated buffers, all in place:

    gather_batch(X, y, perm, state, batch, xb, yb, scale)
                                                     the step's rows, by perm and state[0], times
                                                     scale (1/255 for uint8 pixels); y: labels (n,)
                                                     or float targets (n, c)
      or gather_csr(data, indices, indptr, y, perm, state, batch, xb, yb)
                                                     the same from a CSR matrix: only the
                                                     step's rows are densified
    linear_forward(a, W, b, out, code)               out = act(a @ W + b)
    dropout(x, out, state, seed, layer, p)           only with dropout: out = x * keep / (1 - p), the
                                                     mask a hash of (seed, state[1], layer, element);
                                                     after each hidden layer's forward and backward
    softmax_xent(logits, labels, row_loss, smoothing)
                                                     logits -> dlogits, row_loss <- loss per row
      or logistic_xent(logits, labels, row_loss)     the same for one logistic output, logits (B, 1)
      or multilabel_xent(out, targets, row_loss)     k logistic outputs, float 0/1 targets (B, k)
      or squared_error(out, targets, row_loss)       k identity outputs, half squared error
      or poisson_deviance(out, targets, row_loss)    k exp outputs (log link), half Poisson deviance
    scale_rows(dlogits, row_loss, row_scale, state, batch)
                                                     only for weighted rows: row i of both times
                                                     row_scale[state[0] * batch + i]
    sum_into(row_loss, step_loss, state, squared)    step_loss[state[0]] = sum(row_loss) (or of squares)
    linear_backward(a, delta, dW, db)                dW = a.T @ delta, db = delta summed over rows
    backward_input(delta, W, out_prev, d_prev, code) d_prev = (delta @ W.T) * act'(out_prev)
    sgd_update(params, grads, velocity, rates, state, momentum, nesterov, n_decay)
    adam_update(params, grads, m, v, rates, state, beta1, beta2, eps, n_decay, sklearn_eps)
                                                     one pass over the flat parameter buffer,
                                                     (lr, weight decay) = rates[state[0]],
                                                     t = state[1] + 1
    advance(state)                                   state += 1: the next step

``state`` (int64 (2,): step within the epoch, steps done) and ``rates`` (the
learning rate and weight decay of every step of the epoch) live on the device, so on a GPU the
whole step can be captured once as a CUDA graph and replayed: nothing per step
comes from the host. Also here, for evaluation and the fused epilogues:

    bias_act_forward(z, b, code)             z <- act(z + b), code: IDENTITY/RELU/SIGMOID/TANH
    relu_backward(out, dout)                 dout *= relu'(z), from out = relu(z)
    sigmoid_backward(out, dout)              dout *= s (1 - s), from out = s
    tanh_backward(out, dout)                 dout *= 1 - y**2, from out = y
"""

import functools
from typing import Callable, NamedTuple

from .adam_update import (
    _adam_update_cuda,
    adam_scalars,
    adam_update_cpu,
    adam_update_reference,
)
from .advance import _advance_cuda, advance_cpu
from .backward_input import backward_input_cpu, backward_input_reference
from .bias_act_forward import (
    IDENTITY,
    RELU,
    SIGMOID,
    TANH,
    _bias_act_forward_cuda,
    bias_act_forward_cpu,
    bias_act_forward_reference,
)
from .dropout import _dropout_cuda, dropout_args, dropout_cpu, dropout_mask_reference, dropout_reference
from .gather_batch import _gather_batch_cuda, gather_batch_cpu, gather_batch_reference
from .gather_csr import gather_csr_cpu, gather_csr_launches, gather_csr_reference
from .linear_backward import linear_backward_cpu, linear_backward_reference
from .linear_forward import linear_forward_cpu, linear_forward_reference
from .linear_ops import CudaLinearOps, bind_launches, run_launches
from .logistic_xent import _logistic_xent_cuda, logistic_xent_cpu, logistic_xent_reference
from .multilabel_xent import _multilabel_xent_cuda, multilabel_xent_cpu, multilabel_xent_reference
from .poisson_deviance import _poisson_deviance_cuda, poisson_deviance_cpu, poisson_deviance_reference
from .scale_rows import _scale_rows_cuda, scale_rows_cpu, scale_rows_reference
from .sum_into import THREADS as SUM_THREADS
from .sum_into import _sum_into_cuda, sum_into_cpu, sum_into_reference
from .relu_backward import (
    _relu_backward_cuda,
    relu_backward_cpu,
    relu_backward_reference,
)
from .sgd_update import (
    _sgd_update_cuda,
    sgd_update_cpu,
    sgd_update_reference,
)
from .sigmoid_backward import (
    _sigmoid_backward_cuda,
    sigmoid_backward_cpu,
    sigmoid_backward_reference,
)
from .softmax_xent import (
    _softmax_xent_cuda,
    softmax_xent_cpu,
    softmax_xent_reference,
)
from .squared_error import _squared_error_cuda, squared_error_cpu, squared_error_reference
from .tanh_backward import (
    _tanh_backward_cuda,
    tanh_backward_cpu,
    tanh_backward_reference,
)

__all__ = [
    "KernelSet",
    "CPU_KERNELS",
    "cuda_kernels",
    "IDENTITY",
    "RELU",
    "SIGMOID",
    "TANH",
    "bias_act_forward_reference",
    "gather_batch_reference",
    "gather_csr_reference",
    "scale_rows_reference",
    "dropout_reference",
    "dropout_mask_reference",
    "sum_into_reference",
    "softmax_xent_reference",
    "logistic_xent_reference",
    "multilabel_xent_reference",
    "squared_error_reference",
    "poisson_deviance_reference",
    "relu_backward_reference",
    "sigmoid_backward_reference",
    "tanh_backward_reference",
    "sgd_update_reference",
    "adam_update_reference",
    "linear_forward_reference",
    "linear_backward_reference",
    "backward_input_reference",
]


class KernelSet(NamedTuple):
    """The kernels of one device, called the same way on either (see the module docstring)."""

    gather_batch: Callable
    linear_forward: Callable
    dropout: Callable
    softmax_xent: Callable
    logistic_xent: Callable
    scale_rows: Callable
    sum_into: Callable
    linear_backward: Callable
    backward_input: Callable
    sgd_update: Callable
    adam_update: Callable
    advance: Callable
    bias_act_forward: Callable
    relu_backward: Callable
    sigmoid_backward: Callable
    tanh_backward: Callable
    multilabel_xent: Callable
    squared_error: Callable
    poisson_deviance: Callable
    gather_csr: Callable


CPU_KERNELS = KernelSet(
    gather_batch=gather_batch_cpu,
    linear_forward=linear_forward_cpu,
    dropout=dropout_cpu,
    softmax_xent=softmax_xent_cpu,
    logistic_xent=logistic_xent_cpu,
    scale_rows=scale_rows_cpu,
    sum_into=sum_into_cpu,
    linear_backward=linear_backward_cpu,
    backward_input=backward_input_cpu,
    sgd_update=sgd_update_cpu,
    adam_update=adam_update_cpu,
    advance=advance_cpu,
    bias_act_forward=bias_act_forward_cpu,
    relu_backward=relu_backward_cpu,
    sigmoid_backward=sigmoid_backward_cpu,
    tanh_backward=tanh_backward_cpu,
    multilabel_xent=multilabel_xent_cpu,
    squared_error=squared_error_cpu,
    poisson_deviance=poisson_deviance_cpu,
    gather_csr=gather_csr_cpu,
)

THREADS_PER_BLOCK = 128


def _launcher(launches):
    """A KernelSet function from ``launches(*args)``, which returns the op's launches
    as [(kernel, launch configuration, arguments)]. Calling the function launches them.
    ``function.bind(*args)`` works them out once (array views, scalar dtypes, grids,
    split-K, scratch) and returns a function of no arguments that makes the same
    launches again: what a recorded training step replays outside a CUDA graph."""

    def launch(*args):
        run_launches(launches(*args))

    def bind(*args):
        return functools.partial(run_launches, bind_launches(launches(*args)))

    launch.bind = bind
    launch.launches = launches  # the launches without making them (benchmarks/gpu_warm.py plans from these)
    launch.__name__ = launch.__qualname__ = launches.__name__
    launch.__doc__ = launches.__doc__
    return launch


def cuda_kernels(stream=None, alloc=None):
    """Launchers for the CUDA kernels, bound to one Numba stream.

    The arrays may be Numba device arrays (taken as they are: the trainer wraps
    its buffers once) or CuPy arrays, which are wrapped per call with
    ``sync=False``: by default Numba synchronises on the stream an array reports
    every time a kernel receives it, a host round trip per launch. Ordering
    comes from launching everything, CuPy's work included, on one stream.
    No launcher allocates, so a training step can be captured as a CUDA graph.
    Each launcher also has ``.bind(*args)``: the launch worked out once, to repeat,
    and ``.launches(*args)``: the launches, [(kernel, configuration, arguments)],
    without making them. ``alloc(size, dtype)`` makes the GEMMs' split-K scratch
    (default ``cuda.device_array``; a host allocator lets launches be planned
    without a GPU).
    """
    from numba import cuda

    if stream is None:
        stream = 0  # the default stream; Numba takes 0 for it, the simulator included

    def view(a):
        # Only CuPy arrays need wrapping; Numba's own (and the simulator's) pass through.
        return cuda.as_cuda_array(a, sync=False) if type(a).__module__.startswith("cupy") else a

    def blocks(n):
        return max(1, (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK)

    def one(kernel, grid, threads, *args):
        return [(kernel, (grid, threads, stream), args)]

    # Each op below returns its launches, [(kernel, launch configuration, arguments)], and
    # _launcher turns it into the KernelSet function (see _launcher).

    def as_2d(a):
        # labels (n,) as a (n, 1) view, so one gather kernel copies labels and target rows
        return a if a.ndim == 2 else a.reshape(a.shape[0], 1)

    @_launcher
    def gather_csr(data, indices, indptr, y, perm, state, batch, xb, yb):
        return gather_csr_launches(view, stream, data, indices, indptr, y, perm, state, batch, xb, yb)

    @_launcher
    def gather_batch(X, y, perm, state, batch, xb, yb, scale=1.0):
        y, yb = as_2d(view(y)), as_2d(view(yb))
        # the batch rows in gridDim.x, which takes 2**31 - 1 blocks (gridDim.y: 65,535)
        grid = (xb.shape[0], blocks(max(xb.shape[1], yb.shape[1])))
        return one(_gather_batch_cuda, grid, THREADS_PER_BLOCK,
                   view(X), y, view(perm), view(state), batch, view(xb), yb, xb.dtype.type(scale))

    @_launcher
    def dropout(x, out, state, seed, layer, p):
        return one(_dropout_cuda, blocks(x.size), THREADS_PER_BLOCK,
                   view(x), view(out), view(state), *dropout_args(x.dtype, seed, layer, p))

    @_launcher
    def softmax_xent(logits, labels, row_loss, smoothing=0.0):
        return one(_softmax_xent_cuda, blocks(logits.shape[0]), THREADS_PER_BLOCK,
                   view(logits), view(labels), view(row_loss), logits.dtype.type(smoothing))

    @_launcher
    def logistic_xent(logits, labels, row_loss):
        return one(_logistic_xent_cuda, blocks(logits.shape[0]), THREADS_PER_BLOCK,
                   view(logits), view(labels), view(row_loss))

    def per_row_loss(kernel, name):
        def launches(out, targets, row_loss):
            return one(kernel, blocks(out.shape[0]), THREADS_PER_BLOCK, view(out), view(targets), view(row_loss))

        launches.__name__ = name
        return _launcher(launches)

    @_launcher
    def scale_rows(dlogits, row_loss, row_scale, state, batch):
        return one(_scale_rows_cuda, blocks(dlogits.size), THREADS_PER_BLOCK,
                   view(dlogits), view(row_loss), view(row_scale), view(state), batch)

    @_launcher
    def sum_into(values, out, state, squared=False):
        return one(_sum_into_cuda, 1, SUM_THREADS, view(values), view(out), view(state), bool(squared))

    @_launcher
    def bias_act_forward(z, b, code):
        return one(_bias_act_forward_cuda, blocks(z.size), THREADS_PER_BLOCK, view(z), view(b), code)

    def elementwise(kernel, name):
        def launches(out, dout):
            return one(kernel, blocks(out.size), THREADS_PER_BLOCK, view(out), view(dout))

        launches.__name__ = name
        return _launcher(launches)

    @_launcher
    def sgd_update(params, grads, velocity, rates, state, momentum, nesterov, n_decay):
        f = params.dtype.type  # scalars in the arrays' dtype: no float64 math on the GPU
        return one(_sgd_update_cuda, blocks(params.size), THREADS_PER_BLOCK, view(params), view(grads),
                   view(velocity), view(rates), view(state), f(momentum), bool(nesterov), n_decay)

    @_launcher
    def adam_update(params, grads, m, v, rates, state, beta1, beta2, eps, n_decay, sklearn_eps=False):
        return one(_adam_update_cuda, blocks(params.size), THREADS_PER_BLOCK, view(params), view(grads), view(m),
                   view(v), view(rates), view(state), *adam_scalars(params.dtype, beta1, beta2, eps), n_decay,
                   bool(sklearn_eps))

    @_launcher
    def advance(state):
        return one(_advance_cuda, 1, 1, view(state))

    ops = CudaLinearOps(stream, alloc=alloc)  # keeps its split-K scratch alive as long as these launchers

    @_launcher
    def linear_forward(a, W, b, out, code):
        return ops.linear_forward_launches(view(a), view(W), view(b), view(out), code)

    @_launcher
    def linear_backward(a, delta, dW, db):
        return ops.linear_backward_launches(view(a), view(delta), view(dW), view(db))

    @_launcher
    def backward_input(delta, W, out_prev, d_prev, code):
        return ops.backward_input_launches(view(delta), view(W), view(out_prev), view(d_prev), code)

    return KernelSet(
        gather_batch=gather_batch,
        linear_forward=linear_forward,
        dropout=dropout,
        softmax_xent=softmax_xent,
        logistic_xent=logistic_xent,
        scale_rows=scale_rows,
        sum_into=sum_into,
        linear_backward=linear_backward,
        backward_input=backward_input,
        sgd_update=sgd_update,
        adam_update=adam_update,
        advance=advance,
        bias_act_forward=bias_act_forward,
        relu_backward=elementwise(_relu_backward_cuda, "relu_backward"),
        sigmoid_backward=elementwise(_sigmoid_backward_cuda, "sigmoid_backward"),
        tanh_backward=elementwise(_tanh_backward_cuda, "tanh_backward"),
        multilabel_xent=per_row_loss(_multilabel_xent_cuda, "multilabel_xent"),
        squared_error=per_row_loss(_squared_error_cuda, "squared_error"),
        poisson_deviance=per_row_loss(_poisson_deviance_cuda, "poisson_deviance"),
        gather_csr=gather_csr,
    )

