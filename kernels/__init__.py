"""Numba kernels for the steps that NumPy/CuPy would otherwise do in several passes.

Installed as ``fastmlp.kernels``. Each module holds one operation: a docstring
with the math and shapes, a plain-NumPy reference, the CPU kernel
(``numba.njit``) and the CUDA kernel (``numba.cuda.jit``). The tests compare both
kernels with the same reference.

All kernels work in place on preallocated buffers:

    softmax_xent(logits, labels, row_loss)   logits -> dlogits, row_loss <- loss per row
    bias_act_forward(z, b, code)             z <- act(z + b), code: IDENTITY/RELU/SIGMOID/TANH
    relu_backward(out, dout)                 dout *= relu'(z), from out = relu(z)
    sigmoid_backward(out, dout)              dout *= s (1 - s), from out = s
    tanh_backward(out, dout)                 dout *= 1 - y**2, from out = y
    sgd_update(params, grads, velocity, lr, momentum, nesterov, weight_decay, n_decay)
    adam_update(params, grads, m, v, lr, beta1, beta2, eps, t, weight_decay, n_decay)
                                             one pass over the flat parameter buffer

The dense layer's GEMMs, with their epilogues fused (the CUDA launchers are
``linear_ops.CudaLinearOps``; n = batch rows):
    linear_forward(a, W, b, out, code)       out <- act(a @ W + b)
    linear_backward(a, delta, dW, db)        dW <- a.T @ delta, db <- delta.sum(axis=0)
    backward_input(delta, W, out_prev, d_prev, code)
                                             d_prev <- (delta @ W.T) * act'(out_prev)
"""

import math
from typing import Callable, NamedTuple

from .adam_update import (
    _adam_update_cuda,
    adam_update_cpu,
    adam_update_reference,
)
from .backward_input import (
    backward_input_cpu,
    backward_input_reference,
)
from .bias_act_forward import (
    IDENTITY,
    RELU,
    SIGMOID,
    TANH,
    _bias_act_forward_cuda,
    bias_act_forward_cpu,
    bias_act_forward_reference,
)
from .linear_backward import (
    linear_backward_cpu,
    linear_backward_reference,
)
from .linear_forward import (
    linear_forward_cpu,
    linear_forward_reference,
)
from .relu_backward import (
    _relu_backward_cuda,
    relu_backward_cpu,
    relu_backward_reference,
)
from .sigmoid_backward import (
    _sigmoid_backward_cuda,
    sigmoid_backward_cpu,
    sigmoid_backward_reference,
)
from .sgd_update import (
    _sgd_update_cuda,
    sgd_update_cpu,
    sgd_update_reference,
)
from .softmax_xent import (
    _softmax_xent_cuda,
    softmax_xent_cpu,
    softmax_xent_reference,
)
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
    "softmax_xent_reference",
    "relu_backward_reference",
    "sigmoid_backward_reference",
    "tanh_backward_reference",
    "sgd_update_reference",
    "adam_update_reference",
    "linear_forward_reference",
    "linear_backward_reference",
    "backward_input_reference",
    "linear_forward_cpu",
    "linear_backward_cpu",
    "backward_input_cpu",
]


class KernelSet(NamedTuple):
    """The kernels of one device, called the same way on either."""

    softmax_xent: Callable
    bias_act_forward: Callable
    relu_backward: Callable
    sigmoid_backward: Callable
    tanh_backward: Callable
    sgd_update: Callable
    adam_update: Callable


CPU_KERNELS = KernelSet(
    softmax_xent=softmax_xent_cpu,
    bias_act_forward=bias_act_forward_cpu,
    relu_backward=relu_backward_cpu,
    sigmoid_backward=sigmoid_backward_cpu,
    tanh_backward=tanh_backward_cpu,
    sgd_update=sgd_update_cpu,
    adam_update=adam_update_cpu,
)

THREADS_PER_BLOCK = 128


def cuda_kernels(stream=None):
    """Launchers for the CUDA kernels, bound to a Numba stream.

    The arrays may be CuPy arrays (or anything with ``__cuda_array_interface__``).
    They are wrapped with ``sync=False``: by default Numba synchronises on the
    stream an array reports every time a kernel receives it, a host round trip
    per launch. Ordering comes from launching on the same stream that CuPy
    uses for its matmuls instead.
    """
    from numba import cuda

    if stream is None:
        stream = 0  # the default stream; Numba takes 0 for it, the simulator included

    if hasattr(cuda, "as_cuda_array"):

        def view(a):
            return cuda.as_cuda_array(a, sync=False)

    else:  # Numba's CUDA simulator has no as_cuda_array; it takes its own device arrays as they are.

        def view(a):
            return a

    def blocks(n):
        return max(1, (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK)

    def softmax_xent(logits, labels, row_loss):
        _softmax_xent_cuda[blocks(logits.shape[0]), THREADS_PER_BLOCK, stream](
            view(logits), view(labels), view(row_loss)
        )

    def bias_act_forward(z, b, code):
        _bias_act_forward_cuda[blocks(z.size), THREADS_PER_BLOCK, stream](view(z), view(b), code)

    def elementwise(kernel):
        def launch(out, dout):
            kernel[blocks(out.size), THREADS_PER_BLOCK, stream](view(out), view(dout))

        return launch

    def sgd_update(params, grads, velocity, lr, momentum, nesterov, weight_decay, n_decay):
        f = params.dtype.type  # scalars in the arrays' dtype: no float64 math on the GPU
        _sgd_update_cuda[blocks(params.size), THREADS_PER_BLOCK, stream](
            view(params), view(grads), view(velocity), f(lr), f(momentum), bool(nesterov), f(weight_decay), n_decay
        )

    def adam_update(params, grads, m, v, lr, beta1, beta2, eps, t, weight_decay, n_decay):
        f = params.dtype.type
        step = f(lr / (1 - beta1**t))
        inv_sqrt_c2 = f(1 / math.sqrt(1 - beta2**t))
        _adam_update_cuda[blocks(params.size), THREADS_PER_BLOCK, stream](
            view(params), view(grads), view(m), view(v), step, f(beta1), f(beta2), f(1 - beta1), f(1 - beta2),
            inv_sqrt_c2, f(eps), f(weight_decay), n_decay,
        )

    return KernelSet(
        softmax_xent=softmax_xent,
        bias_act_forward=bias_act_forward,
        relu_backward=elementwise(_relu_backward_cuda),
        sigmoid_backward=elementwise(_sigmoid_backward_cuda),
        tanh_backward=elementwise(_tanh_backward_cuda),
        sgd_update=sgd_update,
        adam_update=adam_update,
    )
