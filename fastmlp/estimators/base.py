"""What scikit-learn's two MLP estimators share, on fastmlp's model and kernels.

:class:`BaseMLP` holds the parameters (scikit-learn's, plus ``device``,
``dtype`` and ``cuda_graph``, validated by scikit-learn's own parameter
validation), the input checks, the first initialisation, the fitted
attributes and the forward pass used by ``predict``. The two solvers live
apart: :mod:`.stochastic` (sgd, adam) and :mod:`.lbfgs`.

The network lives in one :class:`~fastmlp.model.MLP` on the chosen device.
``coefs_`` and ``intercepts_`` are plain lists whose arrays are views of the
model's flat parameter buffer (NumPy on the CPU, CuPy on a GPU), so editing
them in place edits the model; an array assigned in their place (or a new
list) is copied into the model before the next ``predict``, ``fit`` or
``partial_fit`` (:meth:`BaseMLP._network`).
"""

from __future__ import annotations

import sys
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, InvalidParameterError, Options, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d, validate_data

from ..backend import parse_device
from ..errors import DeviceError
from ..model import MLP

# scikit-learn's message; its first sentence starts every such error, for code that matches on it
NONFINITE_START = "Solver produced non-finite parameter weights."
NONFINITE = NONFINITE_START + " The input data may contain large values and need to be preprocessed."
CHUNK_ROWS = 8192  # rows per forward pass in prediction and in L-BFGS's whole-data loss


def nonfinite_error(model, first_loss, after=None):
    """scikit-learn's ValueError for non-finite weights, its first sentence kept, then the
    likely cause from what was observed: ``first_loss`` (the loss before this fit's
    first update; None if unknown) not finite, or far above ln(classes) where a fresh
    network starts -> the inputs need scaling (scikit-learn's second sentence);
    otherwise ``after`` says what blew up with a sane start (the learning rate)."""
    import math

    fresh = None if model.value_targets else math.log(model.n_classes)
    if first_loss is None or after is None:
        return ValueError(NONFINITE)
    if not math.isfinite(first_loss) or (fresh is not None and first_loss > 100 * fresh):
        near = "" if fresh is None else f" (a fresh network starts near {fresh:.2g})"
        return ValueError(f"{NONFINITE} The loss before the first update was already {first_loss:.3g}{near}: scale "
                          "the features, e.g. with sklearn.preprocessing.StandardScaler.")
    return ValueError(f"{NONFINITE_START} The loss before the first update was a sane {first_loss:.3g}, so {after}")


def is_cupy(a):
    """True for a CuPy array (dense or sparse), without importing CuPy."""
    return type(a).__module__.split(".")[0] in ("cupy", "cupyx")


def host(a):
    """``a`` copied to the host if it is a CuPy array, else ``a`` itself."""
    return a.get() if is_cupy(a) else a


def row_chunks(n, size=CHUNK_ROWS):
    """(start, stop) of consecutive chunks of at most ``size`` rows covering range(n)."""
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def dense_rows(X, start, stop):
    """Rows start:stop of X as a dense array (a sparse X is densified one chunk at a time)."""
    part = X[start:stop]
    return part.toarray() if hasattr(part, "toarray") else part


class BaseMLP(BaseEstimator):
    """Base of :class:`MLPClassifier` and :class:`MLPRegressor`; not for direct use."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "device": [None, str],
        "dtype": [None, StrOptions({"float32", "float64"}), Options(type, {np.float32, np.float64})],
        "cuda_graph": [StrOptions({"auto", "on", "off"})],
    }

    def _store_params(self, arguments):
        """What scikit-learn's estimators do in ``__init__``: each argument stored under
        its own name, unchanged (``arguments``: the ``__init__``'s ``locals()``)."""
        for name, value in arguments.items():
            if name != "self" and not name.startswith("__"):
                setattr(self, name, value)

    # ------------------------------------------------------------------ checks

    def _validate_params(self):
        super()._validate_params()
        if self.device is not None:
            try:
                parse_device(self.device)
            except DeviceError as exc:
                raise InvalidParameterError(
                    f"The 'device' parameter of {type(self).__name__} must be None, 'cpu', 'cuda' or 'cuda:N'. "
                    f"Got {self.device!r} instead ({exc})."
                ) from None

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if not all(isinstance(s, Integral) and not isinstance(s, bool) for s in sizes) or any(s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        return [int(s) for s in sizes]

    def _input_dtype(self):
        """The dtype X is validated to: scikit-learn's rule (float32 stays, anything else
        becomes float64) unless ``dtype`` forces one; a fitted model keeps its own."""
        model = getattr(self, "_model", None)
        if model is not None and hasattr(self, "coefs_"):
            return model.dtype.type
        if self.dtype is None:
            return (np.float64, np.float32)
        return np.dtype(self.dtype).type

    def _validate_X(self, X, reset, dtype):
        """X as a 2-D float array: NumPy or a SciPy CSR matrix after scikit-learn's
        checks, or a CuPy array (checked here). Returns (X, is_cupy)."""
        if is_cupy(X):
            if X.ndim != 2:
                raise ValueError(f"Expected a 2D array, got a CuPy array of shape {X.shape}")
            if X.shape[0] < 1 or X.shape[1] < 1:
                raise ValueError(f"Found array with shape {X.shape}; at least one sample and one feature are required")
            if reset:
                self.n_features_in_ = X.shape[1]
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
            elif X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                                 f"{self.n_features_in_} features as input.")
            if X.dtype.kind != "f" or X.dtype not in (np.float32, np.float64):
                X = X.astype(np.float64)
            if not isinstance(dtype, tuple):
                X = X.astype(dtype, copy=False)
            if not bool(sys.modules["cupy"].isfinite(X).all()):
                raise ValueError("Input X contains NaN or infinity.")
            return X, True
        X = validate_data(self, X, reset=reset, accept_sparse=["csr", "csc"], dtype=dtype)
        return (X.tocsr() if hasattr(X, "tocsr") else np.ascontiguousarray(X)), False

    def _validate_Xy(self, X, y, reset, y_numeric=False):
        """(X, y, X is CuPy) after scikit-learn's checks; y on the host, a column
        (n, 1) turned into (n,) with scikit-learn's warning."""
        dtype = self._input_dtype()
        if is_cupy(y):
            y = y.get()
        if is_cupy(X):
            y = np.asarray(y)
            if y.shape[:1] != X.shape[:1]:
                raise ValueError(f"Found input variables with inconsistent numbers of samples: {[X.shape[0], len(y)]}")
            X, on_device = self._validate_X(X, reset, dtype)
            if y_numeric and y.dtype.kind == "O":
                y = y.astype(np.float64)
        else:
            X, y = validate_data(self, X, y, reset=reset, accept_sparse=["csr", "csc"], multi_output=True,
                                 y_numeric=y_numeric, dtype=dtype)
            X = X.tocsr() if hasattr(X, "tocsr") else np.ascontiguousarray(X)
            on_device = False
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y, on_device

    # ------------------------------------------------------------------ fitting

    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden = self._hidden_sizes()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        if first_pass:
            self._model = None
            self.__dict__.pop("device_", None)  # the device parameter decides again
        X, y, on_device = self._validate_Xy(X, y, reset=first_pass, y_numeric=self._y_numeric)
        targets, y_score, n_outputs = self._encode_targets(y, incremental)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(host(sample_weight), np.empty((X.shape[0], 0)), dtype=np.float64)
        self.n_outputs_ = n_outputs
        units = [X.shape[1], *hidden, n_outputs]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(units, X.dtype)
        else:
            have = [tuple(np.shape(W)) for W in self.coefs_]
            if have != list(zip(units[:-1], units[1:])):
                raise ValueError(
                    f"warm_start and partial_fit continue the fitted network of layer sizes "
                    f"{[have[0][0], *(s[1] for s in have)]}, so hidden_layer_sizes and the outputs must stay as they "
                    f"were; set warm_start=False (or refit) to change them"
                )
        model = self._network()
        if on_device and not model.backend.is_gpu:
            X, on_device = X.get(), False
        if self.solver == "lbfgs":
            from .lbfgs import fit_lbfgs

            fit_lbfgs(self, model, X, targets, sample_weight)
        else:
            from .stochastic import fit_stochastic

            fit_stochastic(self, model, X, targets, y_score, sample_weight, incremental, on_device)
        if not bool(model.xp.isfinite(model.params).all()):
            raise ValueError(NONFINITE)
        return self

    def _loss_grad_lbfgs(self, packed_coef_inter, X, y, sample_weight, *work):
        """scikit-learn's hook: (loss, flat gradient) at the flat parameters
        ``packed_coef_inter`` (which the network then holds) over X and y encoded as
        the estimator trains on it (scikit-learn's binarised labels, or the targets).
        ``work`` (scikit-learn's scratch lists) is not needed here."""
        from .lbfgs import FullBatchLoss

        model = self._network()
        Y = np.asarray(y)
        if model.loss == "softmax":
            Y = Y.argmax(axis=1)
        elif model.loss == "logistic":
            Y = Y.reshape(len(Y), -1)[:, 0].astype(np.int64)
        return FullBatchLoss(model, X, Y, sample_weight, self.alpha)(packed_coef_inter)

    def _initialize(self, units, dtype):
        """scikit-learn's first initialisation: counters, the output activation, and
        Glorot-uniform weights drawn from ``self._random_state`` in its order (per
        layer, weights then biases, bound sqrt(factor / (fan_in + fan_out)), factor 6,
        2 for logistic), in X's dtype unless ``dtype`` says otherwise."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(units)
        self.out_activation_ = self._out_activation()
        dtype = np.dtype(self.dtype) if self.dtype is not None else np.dtype(dtype)
        factor = 2.0 if self.activation == "logistic" else 6.0
        coefs, intercepts = [], []
        for fan_in, fan_out in zip(units[:-1], units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coefs.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype, copy=False))
            intercepts.append(self._random_state.uniform(-bound, bound, fan_out).astype(dtype, copy=False))
        self.coefs_, self.intercepts_ = coefs, intercepts
        self._optimizer = None
        self._best_params = None  # early stopping's best weights: the first ones until a score beats them
        if self.solver != "lbfgs":
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_, self.validation_loss_curve_ = [], []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = self.validation_loss_curve_ = None
                self.best_validation_score_ = None

    def _network(self):
        """The device model holding ``coefs_`` / ``intercepts_``: built from them when
        there is none (a fresh fit, an unpickled estimator, or lists set by hand);
        arrays that are not the model's own views are copied into it (in its dtype)
        and the lists then hold the views."""
        coefs, intercepts = list(self.coefs_), list(self.intercepts_)
        model = getattr(self, "_model", None)
        if model is None:
            if len(coefs) != len(intercepts) or not coefs:
                raise ValueError(f"coefs_ and intercepts_ must be lists of the same length >= 1; got {len(coefs)} "
                                 f"and {len(intercepts)}")
            sizes = (np.shape(coefs[0])[0], *(np.shape(W)[1] for W in coefs))
            dtype = np.result_type(*(getattr(W, "dtype", np.float64) for W in coefs))
            dtype = dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)
            model = self._model = self._build_model(sizes, dtype, getattr(self, "device_", self.device),
                                                    self._model_loss())
            self.device_ = model.backend.name
            if getattr(self, "_optimizer", None) is not None:
                self._optimizer = self._optimizer.unbound()
        elif len(coefs) != model.n_layers or len(intercepts) != model.n_layers:
            raise ValueError(f"coefs_ and intercepts_ must each hold {model.n_layers} arrays, one per layer; got "
                             f"{len(coefs)} and {len(intercepts)}")
        for i, view in enumerate(model.layers):
            for arrays, mine, name in ((coefs, view.W, "coefs_"), (intercepts, view.b, "intercepts_")):
                given = arrays[i]
                if given is mine:
                    continue
                shape = np.shape(given)
                if shape != mine.shape:
                    raise ValueError(f"{name}[{i}] has shape {shape}; the network needs {mine.shape}")
                mine[...] = model.backend.asarray(given if model.backend.is_gpu else host(given), dtype=model.dtype)
                arrays[i] = mine
        self.coefs_, self.intercepts_ = coefs, intercepts
        return model

    def _build_model(self, sizes, dtype, device, loss):
        act = "sigmoid" if self.activation == "logistic" else self.activation
        return MLP(sizes, activation=act, dtype=dtype, device=device, loss=loss, init="normal")

    # ------------------------------------------------------------------ prediction

    def _outputs(self, X, check_input=True):
        """Output activations (n, n_outputs) for X, and whether X came as a CuPy array
        on a GPU model (then the outputs stay on the device)."""
        check_is_fitted(self)
        model = self._network()
        if check_input:
            X, is_cp = self._validate_X(X, reset=False, dtype=model.dtype.type)
        else:
            is_cp = is_cupy(X)
        on_device = is_cp and model.backend.is_gpu
        if is_cp and not model.backend.is_gpu:
            X = X.get()
        with model.backend.activate():
            if hasattr(X, "toarray") and not is_cupy(X):
                parts = [model.outputs(dense_rows(X, a, b)) for a, b in row_chunks(X.shape[0])]
                out = model.xp.concatenate(parts) if len(parts) > 1 else parts[0]
            else:
                out = model.outputs(X)
        return out, on_device

    def _score_with_function(self, X, y, sample_weight, score_function):
        """scikit-learn's: the score of ``predict``, NaN when the predictions are not finite."""
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return score_function(y, y_pred, sample_weight=sample_weight)

    def __sklearn_is_fitted__(self):
        return hasattr(self, "coefs_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # ------------------------------------------------------------------ pickling

    def __getstate__(self):
        state = dict(super().__getstate__())
        model = state.pop("_model", None)
        if model is not None:  # host copies, so a model fitted on a GPU loads anywhere
            state["coefs_"] = [np.array(host(W), copy=True) for W in self.coefs_]
            state["intercepts_"] = [np.array(host(b), copy=True) for b in self.intercepts_]
        if state.get("_optimizer") is not None:
            state["_optimizer"] = state["_optimizer"].unbound()
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._model = None
        device = getattr(self, "device_", None)
        if device is not None and device != "cpu":
            try:
                parse_device(device)
                from ..backend import get_backend

                get_backend(device)
            except DeviceError as exc:
                warnings.warn(f"this {type(self).__name__} was fitted on {device}, which is not usable here ({exc}); "
                              "it is loaded on the CPU", UserWarning, stacklevel=2)
                self.device_ = "cpu"
