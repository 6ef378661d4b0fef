"""Sum a vector (or its squares) into one slot of a per-step buffer, on the device.

Shapes
    values  (k,)  float32 or float64: the loss of each row of the batch, or the weights
    out     (S,)  same dtype: one slot per step of the epoch
    state   (2,)  int64: state[0] = step within the epoch
    squared bool  sum values**2 instead (the L2 term scikit-learn adds to its loss)

Math: out[state[0]] = sum_i values[i]   (or sum_i values[i]**2)

The trainer reads ``out`` back once per epoch, so no step waits for the host.
The CUDA kernel is one block that sums in a fixed order (strided partial sums,
then a tree in shared memory): the same inputs give the same bits, which
atomics would not.

Order: plain-NumPy reference, CPU kernel, CUDA kernel (Numba CUDA).
"""

import numpy as np
from numba import cuda

THREADS = 256  # one block; a power of two for the tree


def sum_into_reference(values, squared=False):
    v = np.asarray(values)
    return (v * v).sum() if squared else v.sum()


def sum_into_cpu(values, out, state, squared=False):
    """In place on NumPy arrays."""
    s = int(state[0])
    if squared:
        out[s] = np.dot(values, values)
    else:
        np.sum(values, keepdims=True, out=out[s : s + 1])


@cuda.jit(cache=True)
def _sum_into_cuda(values, out, state, squared):
    partial = cuda.shared.array(THREADS, dtype=values.dtype)
    tid = cuda.threadIdx.x
    acc = values.dtype.type(0)
    for i in range(tid, values.size, THREADS):
        x = values[i]
        acc += x * x if squared else x
    partial[tid] = acc
    cuda.syncthreads()
    width = THREADS // 2
    while width > 0:
        if tid < width:
            partial[tid] += partial[tid + width]
        cuda.syncthreads()
        width //= 2
    if tid == 0:
        out[state[0]] = partial[0]
