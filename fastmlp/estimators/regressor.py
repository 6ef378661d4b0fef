"""``MLPRegressor``: scikit-learn's multi-layer perceptron regressor on fastmlp.

``loss="squared_error"`` trains identity outputs on half the squared error,
``loss="poisson"`` exponential outputs (a log link) on half the Poisson
deviance, each with one output per column of ``y``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin, _fit_context
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if

from .base import BaseMLP, host


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multi-layer perceptron regressor with scikit-learn's interface, trained by fastmlp.

    Parameters, defaults and fitted attributes are those of
    :class:`sklearn.neural_network.MLPRegressor` (``loss`` "squared_error" or
    "poisson"; solvers ``"lbfgs"``, ``"sgd"``, ``"adam"``; one or several
    outputs), plus ``device``, ``dtype`` and ``cuda_graph`` as in
    :class:`fastmlp.MLPClassifier`. ``predict`` returns NumPy in the model's dtype.
    """

    _parameter_constraints: dict = {
        **BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, device=None, dtype=None,
                 cuda_graph="auto"):
        self._store_params(locals())

    _y_numeric = True

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to X (n_samples, n_features) and y (n_samples,) or
        (n_samples, n_outputs); rows weighted by ``sample_weight``. Returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est.solver != "lbfgs")
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over X, y (rows weighted by ``sample_weight``). Returns self."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predictions (n_samples,) or (n_samples, n_outputs), as NumPy."""
        return self._predict(X)

    # ------------------------------------------------------------------ for BaseMLP

    def _model_loss(self):
        return "poisson" if self.loss == "poisson" else "squared_error"

    def _out_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _encode_targets(self, y, incremental):
        if self.loss == "poisson" and np.any(np.asarray(y) < 0):
            raise ValueError("loss='poisson' needs non-negative targets y (counts or rates); y has negative values")
        Y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        return Y, y, Y.shape[1]

    def _stratify(self, targets):
        return None

    def _predict(self, X, check_input=True):
        out = host(self._outputs(X, check_input)[0])
        return out.ravel() if out.shape[1] == 1 else out

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, r2_score)
