"""Central-difference gradient checks (float64) for the kernels and whole models.

    numeric_i = (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)

eps = 1e-5 balances truncation (O(eps**2)) against rounding (O(1e-16 / eps)):
at 1e-6 the rounding of a loss near 1 already costs ~1e-10 absolute, which is
1e-6 relative on a gradient entry of 1e-4.

The relative error of an analytic gradient ``a`` against the numeric ``n`` is
``|a - n| / max(|a| + |n|, floor)`` element-wise, maximised; the floor keeps
entries that are zero in both from dividing by zero.
"""

from __future__ import annotations

import numpy as np

from .backend import get_backend
from .errors import ConfigError


def numerical_gradient(f, x, eps=1e-6, indices=None):
    """Central differences of the scalar function ``f()`` w.r.t. the host array ``x``,
    which is perturbed in place and restored. ``indices`` (flat) limits the entries
    checked; the others are left 0."""
    flat = x.reshape(-1)
    grad = np.zeros(flat.size, dtype=np.float64)
    for i in range(flat.size) if indices is None else indices:
        orig = flat[i]
        flat[i] = orig + eps
        plus = f()
        flat[i] = orig - eps
        minus = f()
        flat[i] = orig
        grad[i] = (plus - minus) / (2 * eps)
    return grad.reshape(x.shape)


def relative_error(analytic, numeric, floor=1e-10):
    """max |a - n| / max(|a| + |n|, floor) over all entries."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    return float(np.max(np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), floor)))


def model_loss(model, x, y):
    """Mean cross-entropy of ``model`` on host x (n, d0), y (n,), computed with the
    plain-NumPy reference loss (float64 if the model is)."""
    from .kernels import softmax_xent_reference

    bk = model.backend
    ws = model.workspace(x.shape[0])
    logits = bk.to_host(model.forward(bk.asarray(x, dtype=model.dtype), ws))
    row_loss, _ = softmax_xent_reference(logits, y)
    return float(row_loss.mean())


def gradcheck(model, x, y, eps=1e-5, max_per_layer=None, seed=0):
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
