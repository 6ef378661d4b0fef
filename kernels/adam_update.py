"""Adam update of a flat parameter buffer, one fused pass.

Shapes
    params, grads, m, v   (P,) float32 or float64, all weights first
                          (params[:n_decay]), then biases

Math, with g = grads + weight_decay * params on the weights (L2, not the biases)
and t the 1-based step count (bias corrections c1 = 1 - beta1**t, c2 = 1 - beta2**t):
    m <- beta1 m + (1 - beta1) g
    v <- beta2 v + (1 - beta2) g**2
    p <- p - (lr / c1) m / (sqrt(v / c2) + eps)

Order: plain-NumPy reference, CPU kernel (Numba), CUDA kernel (Numba CUDA).
"""

import math

import numba
import numpy as np
from numba import cuda


def adam_update_reference(params, grads, m, v, lr, beta1, beta2, eps, t, weight_decay, n_decay):
    """Plain NumPy: returns (new params, new m, new v); inputs untouched."""
    p = np.array(params, copy=True)
    g = np.array(grads, copy=True)
    g[:n_decay] += weight_decay * p[:n_decay]
    m = beta1 * np.asarray(m) + (1 - beta1) * g
    v = beta2 * np.asarray(v) + (1 - beta2) * g * g
    p -= (lr / (1 - beta1**t)) * m / (np.sqrt(v / (1 - beta2**t)) + eps)
    return p, m, v


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _step(p, m, v, i, g, step, b1, b2, one_b1, one_b2, inv_sqrt_c2, eps):
    # (1 - b1) is passed in: written here, Numba types int - float32 as float64,
    # and the whole loop would run in float64.
    mi = b1 * m[i] + one_b1 * g
    vi = b2 * v[i] + one_b2 * g * g
    m[i] = mi
    v[i] = vi
    p[i] -= step * mi / (math.sqrt(vi) * inv_sqrt_c2 + eps)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _adam_update_cpu(params, grads, m, v, lr, beta1, beta2, eps, t, weight_decay, n_decay):
    f = params.dtype.type
    step = f(lr / (1 - beta1**t))
    inv_sqrt_c2 = f(1 / math.sqrt(1 - beta2**t))
    b1, b2, e, wd = f(beta1), f(beta2), f(eps), f(weight_decay)
    one_b1, one_b2 = f(1 - beta1), f(1 - beta2)
    for i in range(n_decay):
        _step(params, m, v, i, grads[i] + wd * params[i], step, b1, b2, one_b1, one_b2, inv_sqrt_c2, e)
    for i in range(n_decay, params.size):
        _step(params, m, v, i, grads[i], step, b1, b2, one_b1, one_b2, inv_sqrt_c2, e)


@cuda.jit(cache=True)
def _adam_update_cuda(params, grads, m, v, step, beta1, beta2, one_b1, one_b2, inv_sqrt_c2, eps, weight_decay, n_decay):
    # step = lr / c1, inv_sqrt_c2 = 1 / sqrt(c2) and the 1 - beta come from the
    # launcher as scalars of the array's dtype, so nothing is promoted to float64.
    i = cuda.grid(1)
    if i >= params.size:
        return
    g = grads[i]
    if i < n_decay:
        g += weight_decay * params[i]
    mi = beta1 * m[i] + one_b1 * g
    vi = beta2 * v[i] + one_b2 * g * g
    m[i] = mi
    v[i] = vi
    params[i] -= step * mi / (math.sqrt(vi) * inv_sqrt_c2 + eps)


def adam_update_cpu(params, grads, m, v, lr, beta1, beta2, eps, t, weight_decay, n_decay):
    """In place on NumPy arrays."""
    _adam_update_cpu(params, grads, m, v, lr, beta1, beta2, eps, t, weight_decay, n_decay)
