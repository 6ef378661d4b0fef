"""Adam update of a flat parameter buffer, one fused pass.

Shapes
    params, grads, m, v   (P,) float32 or float64, all weights first
                          (params[:n_decay]), then biases
    rates                 (S, 2) same dtype: (learning rate, weight decay) of each
                          step of the epoch
    state                 (2,) int64 on the device: state[0] = step within the
                          epoch (selects rates[state[0]]), state[1] = steps done
                          before this one, so t = state[1] + 1

Math, with (lr, wd) = rates[state[0]], g = grads + wd * params on the weights
(L2, not the biases), bias corrections c1 = 1 - beta1**t, c2 = 1 - beta2**t:
    m <- beta1 m + (1 - beta1) g
    v <- beta2 v + (1 - beta2) g**2
    torch form (default):  p <- p - (lr / c1) m / (sqrt(v / c2) + eps)
    sklearn form:          p <- p - (lr sqrt(c2) / c1) m / (sqrt(v) + eps)
The two differ only in where eps enters (scikit-learn adds it to sqrt(v), not to
the bias-corrected sqrt(v / c2)); ``sklearn_eps`` picks the second.

t and the bias corrections are computed in the kernel from the device counter,
so a replayed CUDA graph needs nothing from the host. c = 1 - beta**t is
computed as -expm1(t log1p(-(1 - beta))) from the exact (1 - beta) passed in:
in float32, 1 - float32(0.999) alone would be off by 1e-5 relative.

Order: plain-NumPy reference, CPU kernel (Numba), CUDA kernel (Numba CUDA).
"""

import math

import numba
import numpy as np
from numba import cuda


def adam_update_reference(params, grads, m, v, lr, beta1, beta2, eps, t, weight_decay, n_decay, sklearn_eps=False):
    """Plain NumPy with scalar lr and t: returns (new params, new m, new v); inputs untouched."""
    p = np.array(params, copy=True)
    g = np.array(grads, copy=True)
    g[:n_decay] += weight_decay * p[:n_decay]
    m = beta1 * np.asarray(m) + (1 - beta1) * g
    v = beta2 * np.asarray(v) + (1 - beta2) * g * g
    c1, c2 = 1 - beta1**t, 1 - beta2**t
    if sklearn_eps:
        p -= (lr * np.sqrt(c2) / c1) * m / (np.sqrt(v) + eps)
    else:
        p -= (lr / c1) * m / (np.sqrt(v / c2) + eps)
    return p, m, v


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _step(p, m, v, i, g, step, b1, b2, one_b1, one_b2, scale, eps):
    mi = b1 * m[i] + one_b1 * g
    vi = b2 * v[i] + one_b2 * g * g
    m[i] = mi
    v[i] = vi
    p[i] -= step * mi / (math.sqrt(vi) * scale + eps)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _adam_update_cpu(params, grads, m, v, rates, state, beta1, beta2, one_b1, one_b2, eps, n_decay, sklearn_eps):
    # every scalar arrives in the arrays' dtype (the caller casts): written here as
    # 1 - beta1, Numba would type int - float32 as float64 and run the loop in float64
    lr, weight_decay = rates[state[0], 0], rates[state[0], 1]
    f = params.dtype.type
    t = f(state[1] + 1)
    c1 = -math.expm1(t * math.log1p(-one_b1))
    c2 = -math.expm1(t * math.log1p(-one_b2))
    if sklearn_eps:
        step, scale = lr * math.sqrt(c2) / c1, f(1)
    else:
        step, scale = lr / c1, f(1) / math.sqrt(c2)
    for i in range(n_decay):
        _step(params, m, v, i, grads[i] + weight_decay * params[i], step, beta1, beta2, one_b1, one_b2, scale, eps)
    for i in range(n_decay, params.size):
        _step(params, m, v, i, grads[i], step, beta1, beta2, one_b1, one_b2, scale, eps)


@cuda.jit(cache=True)
def _adam_update_cuda(params, grads, m, v, rates, state, beta1, beta2, one_b1, one_b2, eps, n_decay, sklearn_eps):
    i = cuda.grid(1)
    if i >= params.size:
        return
    lr = rates[state[0], 0]
    f = params.dtype.type
    t = f(state[1] + 1)
    c1 = -math.expm1(t * math.log1p(-one_b1))
    c2 = -math.expm1(t * math.log1p(-one_b2))
    if sklearn_eps:
        step = lr * math.sqrt(c2) / c1
        scale = f(1)
    else:
        step = lr / c1
        scale = f(1) / math.sqrt(c2)
    g = grads[i]
    if i < n_decay:
        g += rates[state[0], 1] * params[i]
    mi = beta1 * m[i] + one_b1 * g
    vi = beta2 * v[i] + one_b2 * g * g
    m[i] = mi
    v[i] = vi
    params[i] -= step * mi / (math.sqrt(vi) * scale + eps)


def adam_scalars(dtype, beta1, beta2, eps):
    """(beta1, beta2, 1 - beta1, 1 - beta2, eps) in ``dtype``; 1 - beta is formed in
    float64 first, so it is exact to the dtype's precision."""
    f = np.dtype(dtype).type
    return f(beta1), f(beta2), f(1 - beta1), f(1 - beta2), f(eps)


def adam_update_cpu(params, grads, m, v, rates, state, beta1, beta2, eps, n_decay, sklearn_eps=False):
    """In place on NumPy arrays."""
    _adam_update_cpu(params, grads, m, v, rates, state, *adam_scalars(params.dtype, beta1, beta2, eps), n_decay,
                     bool(sklearn_eps))
