"""The ``"lbfgs"`` solver: SciPy's L-BFGS-B over the flat parameters, as scikit-learn does it.

SciPy drives the iterations on the host; each evaluation of the loss and its
gradient is a pass of fastmlp's forward, loss and backward kernels over the
whole data set, in chunks of rows, on the model's device. Only the flat
parameter and gradient vectors cross between host and device.

The parameter vector is the model's flat buffer: all weight matrices, then all
bias vectors, each row-major, which is the order of scikit-learn's ``_pack``.
The L2 term is scikit-learn's: ``0.5 alpha |W|^2 / sum(w)`` in the loss and
``alpha W / sum(w)`` in the gradient (``sum(w)``: the rows, or the summed
sample weights).
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
from sklearn.utils.optimize import _check_optimize_result

from .base import dense_rows, host, is_cupy, nonfinite_error, row_chunks

try:  # scikit-learn >= 1.6 passes iprint only where SciPy still takes it
    from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
except ImportError:  # pragma: no cover - older scikit-learn
    def _get_additional_lbfgs_options_dict(key, value):
        return {key: value}


class FullBatchLoss:
    """``loss, grad = f(theta)``: the regularised mean loss of the whole data set and
    its gradient (host float64) at flat parameters ``theta``.

    X (n, d) dense (NumPy or CuPy; copied to the device once) or a SciPy sparse
    matrix (each chunk densified on its way); ``targets``: labels (n,) or a float
    matrix (n, k); ``sw``: sample weights (n,) or None."""

    def __init__(self, model, X, targets, sw, alpha):
        bk, xp = model.backend, model.xp
        self.model, self.alpha = model, float(alpha)
        self.n = n = X.shape[0]
        self.chunks = row_chunks(n)
        self.sparse = hasattr(X, "toarray") and not is_cupy(X)
        self.X = X if self.sparse else bk.asarray(X, dtype=model.dtype)
        if model.value_targets:
            self.T = bk.asarray(np.asarray(host(targets)).reshape(n, -1), dtype=model.dtype)
        else:
            self.T = bk.asarray(targets, dtype=np.int64)
        self.sw_sum = float(n if sw is None else np.sum(sw))
        # weighted rows: row i of a chunk of k rows times w_i k / sum(w), which makes the
        # chunk's gradient (the kernels' mean over its rows) its share of the weighted mean
        self.scales = None
        if sw is not None:
            self.scales = [bk.asarray(np.asarray(sw[a:b], dtype=np.float64) * ((b - a) / self.sw_sum),
                                      dtype=model.dtype) for a, b in self.chunks]
        self.ws = model.workspace(self.chunks[0][1])
        self.grads = xp.zeros_like(model.params)
        self.grad_layers = model.views(self.grads)
        self.total = xp.zeros_like(model.params)
        self.calls = 0
        self.first_loss = None  # the loss at the parameters of the first call (the start)

    def __call__(self, theta):
        model, xp = self.model, self.model.xp
        self.calls += 1
        with model.backend.activate():
            model.set_flat_params(theta)
            self.total[...] = 0
            loss = xp.zeros((), dtype=np.float64)
            for i, (a, b) in enumerate(self.chunks):
                x = model.backend.asarray(dense_rows(self.X, a, b), dtype=model.dtype) if self.sparse else self.X[a:b]
                scale = None if self.scales is None else self.scales[i]
                row_loss = model.loss_and_grad(x, self.T[a:b], self.ws, self.grad_layers, scale)
                if scale is None:  # the chunk's mean, weighted by its share of the rows
                    self.total += self.grads * model.dtype.type((b - a) / self.n)
                    loss += row_loss.sum(dtype=np.float64) / self.n
                else:
                    self.total += self.grads
                    loss += row_loss.sum(dtype=np.float64) / (b - a)
            W = model.params[: model.n_weights]
            if self.alpha:
                loss += 0.5 * self.alpha * xp.dot(W, W).astype(np.float64) / self.sw_sum
                self.total[: model.n_weights] += model.dtype.type(self.alpha / self.sw_sum) * W
            loss = float(loss)
            if self.first_loss is None:
                self.first_loss = loss
            return loss, np.asarray(host(self.total), dtype=np.float64)


def fit_lbfgs(est, model, X, targets, sw):
    """Minimise est's loss over ``model``'s parameters with L-BFGS-B: at most ``max_iter``
    iterations and ``max_fun`` evaluations, stopping when the projected gradient is
    below ``tol``; sets ``n_iter_`` and ``loss_``, warns as scikit-learn does."""
    fun = FullBatchLoss(model, X, targets, sw, est.alpha)
    iprint = 1 if (est.verbose is True or est.verbose >= 1) else -1
    result = scipy.optimize.minimize(
        fun, np.asarray(host(model.params), dtype=np.float64), method="L-BFGS-B", jac=True,
        options={"maxfun": est.max_fun, "maxiter": est.max_iter, "gtol": est.tol,
                 **_get_additional_lbfgs_options_dict("iprint", iprint)},
    )
    est.n_iter_ = _check_optimize_result("lbfgs", result, est.max_iter)
    est.loss_ = result.fun
    model.set_flat_params(result.x)
    if not np.isfinite(result.x).all():  # SciPy's result, on the host already
        raise nonfinite_error(model, fun.first_loss, (
            f"L-BFGS-B's line search reached NaN or inf weights (its last loss {result.fun:.3g}); scale the features, "
            f"e.g. with sklearn.preprocessing.StandardScaler, or raise alpha (now {float(est.alpha):g})."))
