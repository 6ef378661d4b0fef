"""Numba kernels for the steps that NumPy/CuPy would otherwise do in several passes.

Installed as ``fastmlp.kernels``. Each module holds one operation: a docstring
with the math and shapes, a plain-NumPy reference, the CPU kernel
(``numba.njit``) and the CUDA kernel (``numba.cuda.jit``). The tests compare both
kernels with the same reference.

All kernels work in place on preallocated buffers:

    softmax_xent(logits, labels, row_loss)   logits -> dlogits, row_loss <- loss per row
    relu_backward(out, dout)                 dout *= relu'(z), from out = relu(z)
    sigmoid_backward(out, dout)              dout *= s (1 - s), from out = s
    tanh_backward(out, dout)                 dout *= 1 - y**2, from out = y
"""

from typing import Callable, NamedTuple

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
    "softmax_xent_reference",
    "relu_backward_reference",
    "sigmoid_backward_reference",
    "tanh_backward_reference",
]


class KernelSet(NamedTuple):
    """The kernels of one device, called the same way on either."""

    softmax_xent: Callable
    relu_backward: Callable
    sigmoid_backward: Callable
    tanh_backward: Callable


CPU_KERNELS = KernelSet(
    softmax_xent=softmax_xent_cpu,
    relu_backward=relu_backward_cpu,
    sigmoid_backward=sigmoid_backward_cpu,
    tanh_backward=tanh_backward_cpu,
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

    def elementwise(kernel):
        def launch(out, dout):
            kernel[blocks(out.size), THREADS_PER_BLOCK, stream](view(out), view(dout))

        return launch

    return KernelSet(
        softmax_xent=softmax_xent,
        relu_backward=elementwise(_relu_backward_cuda),
        sigmoid_backward=elementwise(_sigmoid_backward_cuda),
        tanh_backward=elementwise(_tanh_backward_cuda),
    )
