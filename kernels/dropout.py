"""Inverted dropout with a counter-based mask: no mask is stored, none is drawn on the host.

Shapes
    x      (k, N) float32 or float64: a hidden layer's output (forward), or the
           gradient w.r.t. its pre-activation (backward)
    out    (k, N) same dtype; may be x itself (in place)
    state  (2,)   int64 on the device: state[1] = steps done before this one
    seed   int    the run's seed
    layer  int    which hidden layer (1 .. L-1): each gets its own mask
    p      float  drop probability, 0 <= p < 1

Math, for element e = i N + j of the step t = state[1]:
    u_e    = top 24 bits of mix(mix(seed, t, layer) + e)          (uniform on 0 .. 2**24 - 1)
    keep_e = [u_e >= round(p 2**24)]
    out_e  = x_e * keep_e / (1 - p)

``mix`` is SplitMix64's finaliser, a bijection on 64-bit integers whose output
bits all depend on all input bits, so the bits of consecutive counters are
independent for this purpose. The mask is a pure function of (seed, step,
layer, element): the same on the CPU and on CUDA, the same when an epoch is
replayed or a run resumed, and recomputed instead of stored. The forward pass
applies it to the layer's output; the backward pass applies the same call to
the gradient (d/dx of x keep / (1 - p) is keep / (1 - p)), and the activation's
derivative still comes from the undropped output. Because the step counter is
read on the device, a captured CUDA graph draws a new mask every step.

Dropped elements are multiplied by 0 rather than set to 0, so a NaN or inf
stays visible to the divergence check.

Order: plain-NumPy reference, CPU kernel (Numba), CUDA kernel (Numba CUDA).
"""

import numba
import numpy as np
from numba import cuda

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)
BITS = 24  # resolution of the keep test: p is rounded to a multiple of 2**-24


def threshold(p):
    """The integer a 24-bit draw must reach to be kept."""
    return np.uint64(round(float(p) * 2**BITS))


def _compile(jit):
    """(mix, key) compiled by ``jit``: one definition for NumPy, the CPU and CUDA."""

    @jit
    def mix(z):
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        return z ^ (z >> _S31)

    @jit
    def key(seed, step, layer):
        # every input is a uint64: mixing uint64 with int64 would make Numba use float64
        return mix(mix(seed * _GOLDEN + step) + layer * _GOLDEN)

    return mix, key


_mix, _key = _compile(lambda f: f)
_mix_cpu, _key_cpu = _compile(numba.njit(inline="always"))
_mix_cuda, _key_cuda = _compile(cuda.jit(device=True))


def dropout_mask_reference(shape, seed, step, layer, p):
    """Plain NumPy: the keep mask (bool, ``shape``) of (seed, step, layer)."""
    with np.errstate(over="ignore"):
        key = _key(np.uint64(seed), np.uint64(step), np.uint64(layer))
        e = np.arange(int(np.prod(shape)), dtype=np.uint64).reshape(shape)
        return (_mix(key + e) >> _S40) >= threshold(p)


def dropout_reference(x, seed, step, layer, p):
    """Plain NumPy: x * keep / (1 - p) in x's dtype; x untouched."""
    x = np.asarray(x)
    keep = dropout_mask_reference(x.shape, seed, step, layer, p)
    return x * (keep * x.dtype.type(1 / (1 - p))).astype(x.dtype)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _dropout_cpu(x, out, state, seed, layer, thr, scale):
    rows, cols = x.shape
    key = _key_cpu(np.uint64(seed), np.uint64(state[1]), np.uint64(layer))
    zero = x.dtype.type(0)
    for i in range(rows):
        xi, oi = x[i], out[i]
        base = np.uint64(i * cols)
        for j in range(cols):
            u = _mix_cpu(key + base + np.uint64(j)) >> _S40
            oi[j] = xi[j] * (scale if u >= thr else zero)


@cuda.jit(cache=True)
def _dropout_cuda(x, out, state, seed, layer, thr, scale):
    e = cuda.grid(1)
    cols = x.shape[1]
    if e >= x.shape[0] * cols:
        return
    i = e // cols
    j = e - i * cols
    key = _key_cuda(seed, np.uint64(state[1]), layer)
    u = _mix_cuda(key + np.uint64(e)) >> _S40
    out[i, j] = x[i, j] * (scale if u >= thr else x.dtype.type(0))


def dropout_args(dtype, seed, layer, p):
    """(seed, layer, threshold, 1 / (1 - p)) as the kernels take them: unsigned
    integers, and the scale in the arrays' dtype (no float64 math on the GPU)."""
    return np.uint64(int(seed) % 2**64), np.uint64(layer), threshold(p), np.dtype(dtype).type(1 / (1 - p))


def dropout_cpu(x, out, state, seed, layer, p):
    """On NumPy arrays: out <- x * keep / (1 - p) (out may be x)."""
    _dropout_cpu(x, out, state, *dropout_args(x.dtype, seed, layer, p))
