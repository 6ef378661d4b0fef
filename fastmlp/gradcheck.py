"""Central-difference gradient checks (float64) for the kernels and whole models.

    numeric_i = (f(x - 2h e_i) - 8 f(x - h e_i) + 8 f(x + h e_i) - f(x + 2h e_i)) / 12h

The plain two-point difference was not enough: its O(h**2) truncation forces a
small h, and at h = 1e-6 the rounding of a loss near 1 costs ~1e-10 absolute,
which is already 1e-5 relative on the first-layer gradients of a deep sigmoid
net. The five-point stencil is O(h**4), so h = 1e-4 keeps both terms small.

The relative error of an analytic gradient ``a`` against the numeric ``n`` is
``|a - n| / max(|a| + |n|, floor)`` element-wise, maximised. The floor (1e-6)
is the resolution of the differences: an exactly-zero gradient (a dead ReLU)
comes out numerically as one rounding step of the loss over 12h, about 5e-13,
and must not count as a 100 % error. So entries below the floor are judged by
absolute error (< 1e-12 for a relative error < 1e-6).
"""

from __future__ import annotations

import numpy as np

from .backend import get_backend
from .errors import ConfigError


def numerical_gradient(f, x, eps=1e-4, indices=None):
    """Central differences of the scalar function ``f()`` w.r.t. the host array ``x``,
    which is perturbed in place and restored. ``indices`` (flat) limits the entries
    checked; the others are left 0.

    Uses the five-point stencil (f(-2h) - 8 f(-h) + 8 f(h) - f(2h)) / 12h, whose
    truncation error is O(h**4): h can then be large enough that rounding in f
    (about 1e-16 / h) stays far below the tiny gradients of deep sigmoid nets."""
    flat = x.reshape(-1)
    grad = np.zeros(flat.size, dtype=np.float64)
    for i in range(flat.size) if indices is None else indices:
        orig = flat[i]
        values = []
        for k in (-2, -1, 1, 2):
            flat[i] = orig + k * eps
            values.append(f())
        flat[i] = orig
        grad[i] = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * eps)
    return grad.reshape(x.shape)


def relative_error(analytic, numeric, floor=1e-6):
    """max |a - n| / max(|a| + |n|, floor) over all entries."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    return float(np.max(np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), floor)))


def model_loss(model, x, y):
    """Mean cross-entropy of ``model`` on host x (n, d0), y (n,), computed with the
    plain-NumPy reference of its loss (float64 if the model is)."""
    from . import kernels

    bk = model.backend
    ws = model.workspace(x.shape[0])
    logits = bk.to_host(model.forward(bk.asarray(x, dtype=model.dtype), ws))
    reference = kernels.logistic_xent_reference if model.loss == "logistic" else kernels.softmax_xent_reference
    row_loss, _ = reference(logits, y)
    return float(row_loss.mean())


def gradcheck(model, x, y, eps=1e-4, max_per_layer=None, seed=0):
    """Max relative error between ``model``'s hand-written gradient (backward + fused
    loss kernel) and central differences, over every W and b of every layer.

    The model must be float64 and on the CPU (perturbing entries one by one on a GPU
    would be all launch overhead). ``max_per_layer`` samples that many entries of
    each W and b at random instead of all of them. Returns a dict:
    ``{"max": float, "layers": [(err_W, err_b), ...]}``.
    """
    if model.dtype != np.float64:
        raise ConfigError("gradcheck needs a float64 model (MLP(..., dtype='float64')): float32 differences are noise")
    if model.backend.is_gpu:
        model = model.to("cpu")
    bk = get_backend("cpu")
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    grads = np.zeros_like(model.params)
    grad_layers = model.views(grads)
    model.loss_and_grad(x.copy(), y, model.workspace(x.shape[0]), grad_layers)

    rng = np.random.default_rng(seed)
    out = []
    for layer, glayer in zip(model.layers, grad_layers):
        errs = []
        for p, g in ((layer.W, glayer.W), (layer.b, glayer.b)):
            idx = None
            if max_per_layer is not None and p.size > max_per_layer:
                idx = rng.choice(p.size, size=max_per_layer, replace=False)
            num = numerical_gradient(lambda: model_loss(model, x, y), p, eps, idx)
            ana = bk.to_host(g).reshape(-1)
            if idx is not None:
                errs.append(relative_error(ana[idx], num.reshape(-1)[idx]))
            else:
                errs.append(relative_error(ana, num.reshape(-1)))
        out.append(tuple(errs))
    return {"max": max(max(e) for e in out), "layers": out}
