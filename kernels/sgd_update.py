"""SGD / momentum / Nesterov update of a flat parameter buffer, one fused pass.

Shapes
    params, grads, velocity   (P,) float32 or float64, the same layout: all
                              weights first (params[:n_decay]), then biases
    velocity                  (P,) for momentum, or an empty array for plain SGD
    rates                     (S, 2) same dtype: (learning rate, weight decay) of
                              every step of the epoch, filled once per epoch
    state                     (2,) int64 on the device: state[0] = step within the
                              epoch (selects rates[state[0]]), state[1] = steps done

Math, with (lr, wd) = rates[state[0]] and g = grads + wd * params on the
weights (L2, not the biases):
    plain:     p <- p - lr g
    momentum:  v <- mu v - lr g;  p <- p + v
    nesterov:  v <- mu v - lr g;  p <- p + mu v - lr g

The rates are read from device memory, not passed as numbers, so a
captured CUDA graph replays every step with that step's rate and the host sends
nothing per step. One pass instead of the five or six whole-buffer NumPy/CuPy
operations the same update takes otherwise; ``grads`` is left untouched.

Order: plain-NumPy reference, CPU kernel (Numba), CUDA kernel (Numba CUDA).
"""

import numba
import numpy as np
from numba import cuda


def sgd_update_reference(params, grads, velocity, lr, momentum, nesterov, weight_decay, n_decay):
    """Plain NumPy with a scalar lr: returns (new params, new velocity or None); inputs untouched."""
    p = np.array(params, copy=True)
    g = np.array(grads, copy=True)
    g[:n_decay] += weight_decay * p[:n_decay]
    if velocity is None or np.size(velocity) == 0:
        return p - lr * g, None
    v = momentum * np.asarray(velocity) - lr * g
    return (p + momentum * v - lr * g if nesterov else p + v), v


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _step(p, g, v, i, lr, mu, nesterov, use_v):
    if use_v:
        vi = mu * v[i] - lr * g
        v[i] = vi
        if nesterov:
            p[i] += mu * vi - lr * g
        else:
            p[i] += vi
    else:
        p[i] -= lr * g


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _sgd_update_cpu(params, grads, velocity, rates, state, mu, nesterov, n_decay):
    # mu arrives in the arrays' dtype (sgd_update_cpu casts it) and the rates are
    # stored in it: no float64 math
    use_v = velocity.size > 0
    lr, wd = rates[state[0], 0], rates[state[0], 1]
    # Two loops rather than a branch on i < n_decay, so each one vectorises.
    for i in range(n_decay):
        _step(params, grads[i] + wd * params[i], velocity, i, lr, mu, nesterov, use_v)
    for i in range(n_decay, params.size):
        _step(params, grads[i], velocity, i, lr, mu, nesterov, use_v)


@cuda.jit(cache=True)
def _sgd_update_cuda(params, grads, velocity, rates, state, momentum, nesterov, n_decay):
    i = cuda.grid(1)
    if i >= params.size:
        return
    lr = rates[state[0], 0]
    g = grads[i]
    if i < n_decay:
        g += rates[state[0], 1] * params[i]
    if velocity.size > 0:
        v = momentum * velocity[i] - lr * g
        velocity[i] = v
        if nesterov:
            params[i] += momentum * v - lr * g
        else:
            params[i] += v
    else:
        params[i] -= lr * g


def sgd_update_cpu(params, grads, velocity, rates, state, momentum, nesterov, n_decay):
    """In place on NumPy arrays (``velocity`` empty for plain SGD)."""
    _sgd_update_cpu(params, grads, velocity, rates, state, params.dtype.type(momentum), bool(nesterov), n_decay)
