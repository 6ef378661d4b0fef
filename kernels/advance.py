"""Move the device step counter on by one step: the last launch of every step.

Shapes
    state  (2,) int64: state[0] = step within the epoch, state[1] = steps done

Math: state[0] += 1; state[1] += 1

A launch of its own because every kernel of the step reads the counter: it may
change only after the last of them (the optimiser) has finished.

Order: CPU kernel, CUDA kernel (Numba CUDA); the reference is the math above.
"""

from numba import cuda


def advance_cpu(state):
    """In place on a NumPy array."""
    state += 1


@cuda.jit(cache=True)
def _advance_cuda(state):
    if cuda.grid(1) == 0:
        state[0] += 1
        state[1] += 1
