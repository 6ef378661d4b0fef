"""A scikit-learn compatible ``MLPClassifier`` on fastmlp's model, trainer and kernels.

    >>> from fastmlp import MLPClassifier          # instead of sklearn.neural_network
    >>> clf = MLPClassifier((128, 64), solver="sgd", learning_rate_init=0.05,
    ...                     batch_size=128, max_iter=5, random_state=0)
    >>> clf.fit(X_train, y_train).score(X_test, y_test)

The arguments, their defaults and what they do are those of
:class:`sklearn.neural_network.MLPClassifier` (sgd and adam solvers), plus
``device`` and ``dtype``; ``fit`` and ``partial_fit`` take ``sample_weight``
as scikit-learn 1.7+ does. Training is fastmlp's: an
:class:`~fastmlp.model.MLP` on the chosen device, trained one epoch at a time
by :meth:`fastmlp.Trainer.train_epoch` with fastmlp's optimisers. This module
only adds scikit-learn's logic around the epochs: Glorot-uniform
initialisation from ``random_state``, the batch order (the same
``random_state`` stream scikit-learn uses, so with the same seed both shuffle
the same way), the L2 penalty (``alpha`` divided by the rows, or the summed
sample weights, of each batch), sample weights as per-row loss weights,
learning-rate schedules, ``tol`` / ``n_iter_no_change`` stopping, early
stopping on a validation split with the best weights restored, and the fitted
attributes.

In float64 it computes what scikit-learn computes: two-class
problems have one logistic output unit (fastmlp's fused sigmoid + log-loss
kernel), Adam adds ``epsilon`` where scikit-learn does (``Adam(eps_form=
"sklearn")``), and a shorter last batch gets scikit-learn's L2 term. The
fitted numbers agree to 1e-12 relative or better (tests/test_estimator_parity.py).

Where it differs from scikit-learn's estimator:

- ``dtype`` (default ``"float32"``) is the precision of the weights and of
  training; ``predict_proba`` returns that dtype. Use ``"float64"`` to match
  scikit-learn's precision.
- ``validation_loss_curve_``: the mean (unweighted) cross-entropy on the
  validation split after each epoch, when ``early_stopping=True``.
- Not supported, each a ``ValueError`` at ``fit``: ``solver="lbfgs"``,
  multilabel or multi-output ``y``, ``momentum=1``. ``max_fun`` is accepted
  and, as in scikit-learn with the sgd and adam solvers, not used.
- A batch whose sample weights sum to zero is a ``ValueError`` (scikit-learn
  raises ``ZeroDivisionError``).
- The training loss is the exact log-loss; scikit-learn clips probabilities
  to ``[eps, 1 - eps]`` first, which changes only rows whose loss is below
  1e-16 or above 36 (a logit past 36 on the wrong side).
- ``predict_log_proba`` is a log-softmax of the logits, without the underflow
  of ``log(predict_proba)`` to ``-inf``.

scikit-learn is only needed for this module; ``import fastmlp`` does not
import it.
"""

from __future__ import annotations

import math
import numbers
import sys
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils import shuffle as sk_shuffle
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f"fastmlp.MLPClassifier needs scikit-learn ({exc}); install it with pip install 'fastmlp[sklearn]'"
    ) from exc

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sk_validate_data
except ImportError:  # pragma: no cover - older scikit-learn

    def _sk_validate_data(estimator, X="no_validation", y="no_validation", **kw):
        return estimator._validate_data(X, y, **kw)


from .backend import get_backend, parse_device
from .errors import DeviceError, DivergenceError
from .model import MLP, two_class_proba
from .optim import SGD, Adam
from .trainer import Trainer, evaluate

ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
SOLVERS = ("sgd", "adam")
LEARNING_RATES = ("constant", "invscaling", "adaptive")
DTYPES = ("float32", "float64")


def _is_cupy(a):
    """True for a CuPy array, without importing CuPy."""
    return type(a).__module__.split(".")[0] == "cupy"


def _host(a):
    """``a`` copied to the host if it is a CuPy array, else ``a`` itself."""
    return a.get() if _is_cupy(a) else a


def _bad(name, allowed, value):
    return ValueError(f"MLPClassifier: {name} must be {allowed}; got {value!r}")


def _real(name, value, low, high=math.inf, low_open=False, high_open=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise _bad(name, f"a number in {lo}{low}, {high}{hi}", value)
    return float(value)


def _int(name, value, low=1):
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low):
        raise _bad(name, f"an integer >= {low}", value)
    return int(value)


def _bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise _bad(name, "True or False", value)
    return bool(value)


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """Multi-layer perceptron classifier with scikit-learn's interface, trained by fastmlp.

    Parameters are those of :class:`sklearn.neural_network.MLPClassifier` (same
    names, defaults and meaning; ``solver`` is ``"sgd"`` or ``"adam"``), plus:

    device : {"cpu", "cuda", "cuda:N"} or None, default=None
        Where to train and predict. None: ``$FASTMLP_DEVICE``, else the CPU.
        Asking for CUDA where it cannot run raises :class:`fastmlp.DeviceError`
        at ``fit``. With a CUDA device, ``X`` may be a NumPy or a CuPy array;
        ``predict_proba`` / ``predict_log_proba`` return CuPy for CuPy input and
        NumPy for anything else; ``predict`` always returns NumPy labels.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the weights and of training.

    Fitted attributes are scikit-learn's (``classes_``, ``coefs_``,
    ``intercepts_``, ``loss_``, ``loss_curve_``, ``best_loss_``,
    ``validation_scores_``, ``best_validation_score_``, ``t_``, ``n_iter_``,
    ``n_layers_``, ``n_outputs_``, ``out_activation_``, ``n_features_in_``,
    ``feature_names_in_``), plus ``validation_loss_curve_`` (per-epoch mean
    cross-entropy on the validation split with ``early_stopping=True``, else
    None) and ``device_`` (the device the model lives on, e.g. ``"cpu"``).
    ``coefs_`` and ``intercepts_`` are NumPy copies read from the model on
    each access. See the module docstring for the few differences from
    scikit-learn.
    """

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        device=None,
        dtype="float32",
        cuda_graph="auto",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.device = device
        self.dtype = dtype
        self.cuda_graph = cuda_graph

    # ------------------------------------------------------------------ public API

    def fit(self, X, y, sample_weight=None):
        """Fit the model to X (n_samples, n_features) and class labels y (n_samples,),
        each row's loss weighted by ``sample_weight`` (n_samples,) as in scikit-learn.

        Returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est.solver != "lbfgs")
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over X, y (rows weighted by ``sample_weight``). ``classes`` (all
        labels that will ever be seen) is required on the first call and may be
        omitted afterwards. Returns self."""
        if classes is not None:
            classes = unique_labels(classes)
            if getattr(self, "classes_", None) is None:
                self.classes_ = classes
            elif not np.array_equal(self.classes_, classes):
                raise ValueError(
                    f"classes={classes!r} is not the same as on the last call to partial_fit, was {self.classes_!r}"
                )
        elif getattr(self, "classes_", None) is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, sample_weight, incremental=True)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes_``."""
        check_is_fitted(self)
        z, on_device = self._logits(X)
        p = self._proba(z)
        return p if on_device else self._model.backend.to_host(p)

    def _proba(self, z):
        """Probabilities from logits z, in place where it can: scikit-learn's
        [1 - p, p] with p = sigmoid(z) for two classes, else the softmax of z."""
        xp = self._model.xp
        if self._binary:
            return two_class_proba(xp, z)
        z -= z.max(axis=1, keepdims=True)
        xp.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def predict_log_proba(self, X):
        """Log of the class probabilities, computed as a log-softmax of the logits
        (equal to ``log(predict_proba(X))`` without its underflow to -inf)."""
        check_is_fitted(self)
        z, on_device = self._logits(X)
        xp = self._model.xp
        if self._binary:  # log-softmax over (0, z)
            z = xp.hstack([xp.zeros_like(z), z])
        z -= z.max(axis=1, keepdims=True)
        z -= xp.log(xp.exp(z).sum(axis=1, keepdims=True))
        return z if on_device else self._model.backend.to_host(z)

    def predict(self, X):
        """Predicted class labels (n_samples,), as a NumPy array of ``classes_``' type."""
        proba = self.predict_proba(X)
        return self.classes_[_host(proba.argmax(axis=1))]

    def __sklearn_is_fitted__(self):
        return getattr(self, "_model", None) is not None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # densified: the model works on dense rows
        return tags

    # --------------------------------------------------- parameters read from the model

    def _layers(self):
        """[(W, b), ...] as NumPy copies."""
        model = getattr(self, "_model", None)
        if model is None:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute 'coefs_'; call fit first")
        return model.get_layers()

    @property
    def coefs_(self):
        """Weight matrices, ``coefs_[i]`` of shape (units in layer i, units in layer i+1)."""
        return [W for W, _ in self._layers()]

    @coefs_.setter
    def coefs_(self, coefs):
        self._set_layers(coefs, [b for _, b in self._layers()])

    @property
    def intercepts_(self):
        """Bias vectors, ``intercepts_[i]`` of shape (units in layer i+1,)."""
        return [b for _, b in self._layers()]

    @intercepts_.setter
    def intercepts_(self, intercepts):
        self._set_layers([W for W, _ in self._layers()], intercepts)

    def _set_layers(self, coefs, intercepts):
        model = self._model
        host = np.empty(model.n_params, dtype=model.dtype)
        views = model.views(host)
        if len(coefs) != len(views) or len(intercepts) != len(views):
            raise ValueError(f"expected {len(views)} weight matrices and bias vectors")
        for i, (view, W, b) in enumerate(zip(views, coefs, intercepts)):
            W, b = np.asarray(W), np.asarray(b)
            if W.shape != view.W.shape or b.shape != view.b.shape:
                raise ValueError(f"layer {i}: got shapes {W.shape}, {b.shape}; expected {view.W.shape}, {view.b.shape}")
            view.W[...], view.b[...] = W, b
        model.set_flat_params(host)

    # ------------------------------------------------------------------ pickling

    def __getstate__(self):
        state = dict(super().__getstate__())
        model = state.pop("_model", None)
        state.pop("_trainer", None)
        opt = state.pop("_optimizer", None)
        if model is not None:
            state["_params_host"] = np.array(model.backend.to_host(model.params), copy=True)
        if opt is not None:
            saved = {k: (np.array(model.backend.to_host(v), copy=True) if hasattr(v, "shape") else v)
                     for k, v in opt.state().items()}
            state["_optimizer_state"] = (self._optimizer_config, saved)
        return state

    def __setstate__(self, state):
        params = state.pop("_params_host", None)
        super().__setstate__(state)
        self._trainer = self._optimizer = None
        self._model = None
        if params is not None:
            self._model = self._build_model(self._sizes, self.device_, restoring=True)
            self._model.set_flat_params(params)
            self.device_ = self._model.backend.name

    # ------------------------------------------------------------------ internals

    def _check_params(self):
        """The arguments checked and normalised, or a ValueError naming what is allowed."""
        sizes = self.hidden_layer_sizes
        if not hasattr(sizes, "__iter__"):
            sizes = [sizes]
        sizes = list(sizes)
        if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in sizes):
            raise _bad("hidden_layer_sizes", "an int or a sequence of ints > 0", self.hidden_layer_sizes)
        if any(s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        activation = {"sigmoid": "logistic"}.get(self.activation, self.activation)
        if activation not in ACTIVATIONS:
            raise _bad("activation", f"one of {ACTIVATIONS}", self.activation)
        if self.solver == "lbfgs":
            raise ValueError(
                "MLPClassifier: solver='lbfgs' is not supported by fastmlp (it trains with mini-batches only); "
                f"use one of {SOLVERS}, or sklearn.neural_network.MLPClassifier for L-BFGS"
            )
        if self.solver not in SOLVERS:
            raise _bad("solver", f"one of {SOLVERS}", self.solver)
        if self.learning_rate not in LEARNING_RATES:
            raise _bad("learning_rate", f"one of {LEARNING_RATES}", self.learning_rate)
        if not (self.batch_size == "auto" if isinstance(self.batch_size, str) else True):
            raise _bad("batch_size", "'auto' or an integer >= 1", self.batch_size)
        if not isinstance(self.batch_size, str):
            _int("batch_size", self.batch_size)
        _real("alpha", self.alpha, 0)
        _real("learning_rate_init", self.learning_rate_init, 0, low_open=True)
        _real("power_t", self.power_t, 0)
        _int("max_iter", self.max_iter)
        _real("tol", self.tol, 0)
        _real("momentum", self.momentum, 0, 1)
        if self.momentum == 1:
            raise ValueError("MLPClassifier: momentum=1 is not supported by fastmlp; use a momentum in [0, 1)")
        _real("validation_fraction", self.validation_fraction, 0, 1, high_open=True)
        _real("beta_1", self.beta_1, 0, 1, high_open=True)
        _real("beta_2", self.beta_2, 0, 1, high_open=True)
        _real("epsilon", self.epsilon, 0, low_open=True)
        if self.n_iter_no_change != np.inf:
            _int("n_iter_no_change", self.n_iter_no_change)
        _int("max_fun", self.max_fun)
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            _bool(name, getattr(self, name))
        if not isinstance(self.verbose, (bool, np.bool_, numbers.Integral)):
            raise _bad("verbose", "a bool or an int", self.verbose)
        if self.device is not None:
            if not isinstance(self.device, str):
                raise _bad("device", "None, 'cpu', 'cuda' or 'cuda:N'", self.device)
            try:
                parse_device(self.device)
            except DeviceError as exc:
                raise ValueError(f"MLPClassifier: {exc}") from None
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype is None or dtype.name not in DTYPES:
            raise _bad("dtype", f"one of {DTYPES}", self.dtype)
        return sizes, activation, dtype

    def _build_model(self, sizes, device, restoring=False):
        act = "sigmoid" if self._activation == "logistic" else self._activation
        # two classes: one logistic output unit, as in scikit-learn
        loss = "logistic" if self._binary else "softmax"
        try:
            return MLP(sizes, activation=act, dtype=self._dtype, device=device, loss=loss)
        except DeviceError as exc:
            if not restoring:
                raise
            warnings.warn(
                f"this MLPClassifier was fitted on {device}, which is not usable here ({exc}); "
                "it is loaded on the CPU",
                UserWarning,
                stacklevel=3,
            )
            return MLP(sizes, activation=act, dtype=self._dtype, device="cpu", loss=loss)

    def _validate_X(self, X, reset, dtype):
        """X as a 2-D array of ``dtype``: NumPy after scikit-learn's checks, or a CuPy
        array (checked here) when one is given. Returns (X, is_cupy)."""
        if _is_cupy(X):
            if X.ndim != 2:
                raise ValueError(f"Expected a 2D array, got a CuPy array of shape {X.shape}")
            if X.shape[0] < 1 or X.shape[1] < 1:
                raise ValueError(f"Found array with shape {X.shape}; at least one sample and one feature are required")
            if reset:
                self.n_features_in_ = X.shape[1]
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
            elif X.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input."
                )
            X = X.astype(dtype, copy=False)
            if not bool(sys.modules["cupy"].isfinite(X).all()):
                raise ValueError("Input X contains NaN or infinity.")
            return X, True
        X = _sk_validate_data(self, X, reset=reset, accept_sparse=["csr", "csc"], dtype=dtype, order="C")
        if hasattr(X, "toarray"):
            X = np.ascontiguousarray(X.toarray())
        return X, False

    def _validate_Xy(self, X, y, reset, dtype):
        if _is_cupy(y):
            y = y.get()
        if _is_cupy(X):
            y = np.asarray(y)
            if y.ndim == 2 and y.shape[1] == 1:
                y = column_or_1d(y, warn=True)
            if y.shape[:1] != X.shape[:1]:
                raise ValueError(f"Found input variables with inconsistent numbers of samples: {[X.shape[0], len(y)]}")
            X, on_device = self._validate_X(X, reset, dtype)
        else:
            X, y = _sk_validate_data(
                self, X, y, reset=reset, accept_sparse=["csr", "csc"], dtype=dtype, order="C", multi_output=True
            )
            if hasattr(X, "toarray"):
                X = np.ascontiguousarray(X.toarray())
            on_device = False
            if y.ndim == 2 and y.shape[1] == 1:
                y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        kind = type_of_target(y)
        if y.ndim != 1 or kind in ("multilabel-indicator", "multiclass-multioutput"):
            raise ValueError(
                f"fastmlp's MLPClassifier takes one label per sample (y of shape (n_samples,)); got y of shape "
                f"{y.shape} ({kind}). Multilabel and multi-output targets are not supported: use "
                "sklearn.neural_network.MLPClassifier, or sklearn.multioutput.MultiOutputClassifier around this one"
            )
        return X, y, on_device

    def _logits(self, X):
        """Logits of X on the model's device, and whether X came as a device (CuPy) array."""
        model = self._model
        X, is_cupy = self._validate_X(X, reset=False, dtype=model.dtype)
        on_device = is_cupy and model.backend.is_gpu
        if is_cupy and not model.backend.is_gpu:
            X = X.get()
        return model.logits(X), on_device

    def _init_params(self, rs, n_features, hidden, n_classes):
        """scikit-learn's initialisation, drawn from ``rs`` in its order: for each layer,
        weights then biases, uniform in +-sqrt(factor / (fan_in + fan_out)) with factor
        6 (2 for logistic)."""
        units = [n_features, *hidden, 1 if n_classes == 2 else n_classes]
        factor = 2.0 if self._activation == "logistic" else 6.0
        model = self._model
        host = np.empty(model.n_params, dtype=model.dtype)
        for i, view in enumerate(model.views(host)):
            fan_in, fan_out = units[i], units[i + 1]
            bound = np.sqrt(factor / (fan_in + fan_out))
            W = rs.uniform(-bound, bound, (fan_in, fan_out))
            b = rs.uniform(-bound, bound, fan_out)
            view.W[...], view.b[...] = W, b
        model.set_flat_params(host)

    def _new_optimizer(self, model):
        if self.solver == "adam":  # epsilon where scikit-learn adds it
            config = ("adam", {"beta1": float(self.beta_1), "beta2": float(self.beta_2), "eps": float(self.epsilon),
                               "eps_form": "sklearn"})
        else:
            config = ("sgd", {"momentum": float(self.momentum), "nesterov": bool(self.nesterovs_momentum)
                              and self.momentum > 0})
        self._optimizer_config = config
        return self._make_optimizer(config, model)

    @staticmethod
    def _make_optimizer(config, model):
        kind, kwargs = config
        return (Adam if kind == "adam" else SGD)(model.backend, model.params, model.n_weights, **kwargs)

    def _fit(self, X, y, sample_weight, incremental):
        hidden, activation, dtype = self._check_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        model = getattr(self, "_model", None)
        first_pass = model is None or (not self.warm_start and not incremental)
        if not first_pass:
            if (tuple(hidden), activation, dtype) != (tuple(self._sizes[1:-1]), self._activation, self._dtype):
                raise ValueError(
                    "warm_start and partial_fit continue the fitted model, so hidden_layer_sizes, activation and "
                    f"dtype must stay {tuple(self._sizes[1:-1])}, {self._activation!r}, {self._dtype.name!r}; "
                    "set warm_start=False (or refit) to change them"
                )
            dtype = self._dtype
        X, y, on_device = self._validate_Xy(X, y, reset=first_pass, dtype=dtype)
        sw = None
        if sample_weight is not None:
            sw = _check_sample_weight(_host(sample_weight), np.empty((len(y), 0)), dtype=np.float64)

        # classes_, as scikit-learn sets or checks them
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self.classes_ = unique_labels(y)
        else:
            seen = unique_labels(y)
            if self.warm_start and not incremental:
                if set(seen) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the previous call to "
                        f"fit. Previously got {self.classes_}, `y` has {seen}"
                    )
            elif len(np.setdiff1d(seen, self.classes_)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {seen}.")
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError(
                f"MLPClassifier needs samples of at least 2 classes in the data, but the data contains only "
                f"1 class: {self.classes_.tolist()[0]!r}"
            )
        y_enc = np.searchsorted(self.classes_, y)

        rs = check_random_state(self.random_state)
        self._random_state = rs
        if first_pass:
            self._activation, self._dtype = activation, dtype
            self._binary = n_classes == 2
            self._sizes = (X.shape[1], *hidden, 1 if self._binary else n_classes)
            self._model = model = self._build_model(self._sizes, self.device)
            self.device_ = model.backend.name
            self._init_params(rs, X.shape[1], hidden, n_classes)
            self._trainer = self._optimizer = None
            self._optimizer_state = None
            self.n_layers_ = len(self._sizes)
            self.n_outputs_ = 1 if self._binary else n_classes
            self.out_activation_ = "logistic" if self._binary else "softmax"
            self.n_iter_ = 0
            self.t_ = 0
            self.loss_curve_ = []
            self._no_improvement_count = 0
            self._best_params = np.array(model.backend.to_host(model.params), copy=True)
            if self.early_stopping:
                self.validation_scores_, self.validation_loss_curve_ = [], []
                self.best_validation_score_, self.best_loss_ = -np.inf, None
            else:
                self.validation_scores_ = self.validation_loss_curve_ = self.best_validation_score_ = None
                self.best_loss_ = np.inf
        elif self.early_stopping and self.validation_scores_ is None:  # warm start that turns early stopping on
            self.validation_scores_, self.validation_loss_curve_, self.best_validation_score_ = [], [], -np.inf
            self._best_params = np.array(model.backend.to_host(model.params), copy=True)
        elif not self.early_stopping and self.best_loss_ is None:
            self.best_loss_ = np.inf

        # a fresh optimiser for fit, the same one across partial_fit calls (as scikit-learn)
        if not incremental or self._optimizer is None:
            saved = self._optimizer_state if incremental else None
            if saved is not None:  # partial_fit after unpickling: the pickled optimiser state
                self._optimizer_config, state = saved
                self._optimizer = self._make_optimizer(self._optimizer_config, model)
                self._optimizer.load_state(state)
            else:
                self._optimizer = self._new_optimizer(model)
                self._lr = float(self.learning_rate_init)
            self._optimizer_state = None

        bk = model.backend
        if on_device and not bk.is_gpu:
            X, on_device = X.get(), False
        val = None
        if self.early_stopping:
            # The split scikit-learn's code makes (1.6 to 1.9), so the same random_state
            # holds out the same rows: stratified for binary problems (by this (n, 1)
            # column), a plain random split for multiclass (its one-hot y counts as
            # multi-output there, although its docs say "stratified").
            stratify = (y_enc == 1)[:, None] if self._binary else None
            idx_train, idx_val = train_test_split(
                np.arange(len(y_enc)), random_state=rs, test_size=self.validation_fraction, stratify=stratify
            )
            if len(idx_val) < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
                )
            take = bk.asarray if on_device else np.asarray  # index a CuPy X with device indices
            val = (X[take(idx_val)], y_enc[idx_val], None if sw is None else sw[idx_val])
            X, y_enc = X[take(idx_train)], y_enc[idx_train]
            sw = None if sw is None else sw[idx_train]
        self._run(X, y_enc, sw, val, rs, incremental)
        return self

    def _trainer_for(self, n):
        """The Trainer (built once per batch size) driving self._optimizer; returns (trainer, batch)."""
        if self.batch_size == "auto":
            batch = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch = min(int(self.batch_size), n)
        trainer = self._trainer
        if trainer is None or trainer.batch_size != batch:
            trainer = Trainer(self._model, optimizer="sgd", lr=self.learning_rate_init, momentum=0.0,
                              batch_size=batch, schedule="constant", seed=0, progress=False, log=None,
                              cuda_graph=self.cuda_graph)
            self._trainer = trainer
        trainer.optimizer = self._optimizer
        return trainer, batch

    def _run(self, Xd, y_enc, sw, val, rs, incremental):
        """scikit-learn's epoch loop around Trainer.train_epoch. ``sw``: the training
        rows' sample weights (host float64) or None; ``val``: (X, y, weights) or None."""
        model = self._model
        trainer, batch = self._trainer_for(Xd.shape[0])
        Xd, yd = trainer.prepare(Xd, y_enc)
        if val is not None:
            val = (*trainer.prepare(val[0], val[1], "validation data"), val[1], val[2])
        n = Xd.shape[0]
        steps = -(-n // batch)
        rows = np.full(steps, batch, dtype=np.float64)
        rows[-1] = n - batch * (steps - 1)
        starts = np.arange(steps) * batch
        alpha = float(self.alpha)
        # scikit-learn's L2 gradient is alpha / (rows, or summed sample weights, of the batch)
        self._optimizer.decay_per_row = alpha
        trainer.track_weight_sq = bool(alpha)
        sample_idx = np.arange(n)
        early_stopping = self.early_stopping
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    sample_idx = sk_shuffle(sample_idx, random_state=rs)
                row_scale = step_weight = None
                l2_scale = np.ones(steps)
                if sw is not None:
                    # The weighted batch loss is sum(w l) / sum(w) over its rows: each row's
                    # loss and gradient (the kernel's l / rows) times w * rows / sum(w).
                    w_perm = sw[sample_idx]
                    step_weight = np.add.reduceat(w_perm, starts)
                    if not np.all(step_weight != 0):
                        raise ValueError(
                            "the sample weights of a batch sum to zero, so its weighted loss is undefined "
                            "(scikit-learn raises ZeroDivisionError here); give those rows weight or use a larger batch"
                        )
                    l2_scale = rows / step_weight
                    row_scale = w_perm * np.repeat(l2_scale, rows.astype(np.int64))
                try:
                    losses = trainer.train_epoch(Xd, yd, lr=self._lr, permutation=sample_idx, row_scale=row_scale,
                                                 step_rows=step_weight)
                except DivergenceError as exc:
                    raise ValueError(
                        f"Solver produced non-finite parameter weights ({exc}). The input data may contain large "
                        "values and need to be preprocessed."
                    ) from None
                # scikit-learn's epoch loss adds each batch's L2 term, 0.5 alpha |W|^2 / sum(w),
                # times the batch's rows, with W as it is before that batch's step: the
                # trainer sums |W|^2 on the device before every update (track_weight_sq).
                sq = (trainer.epoch_weight_sq * l2_scale).sum() if alpha else 0.0
                self.n_iter_ += 1
                self.loss_ = float((losses * rows).sum() + 0.5 * alpha * float(sq)) / n
                self.t_ += n
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                self._update_no_improvement_count(early_stopping, val)
                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    self._lr = float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
                if self._no_improvement_count > self.n_iter_no_change:
                    what = "Validation score" if early_stopping else "Training loss"
                    msg = (f"{what} did not improve more than tol={self.tol:f} for "
                           f"{self.n_iter_no_change} consecutive epochs.")
                    if self.solver == "sgd" and self.learning_rate == "adaptive" and self._lr > 1e-6:
                        self._lr /= 5.0
                        self._no_improvement_count = 0
                        if self.verbose:
                            print(msg + " Setting learning rate to %f" % self._lr)
                    else:
                        if self.verbose:
                            print(msg + (" Learning rate too small." if self.learning_rate == "adaptive" and
                                         self.solver == "sgd" else "") + " Stopping.")
                        break
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        "Stochastic Optimizer: Maximum iterations (%d) reached and the optimization hasn't "
                        "converged yet." % self.max_iter,
                        ConvergenceWarning,
                    )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        if early_stopping:  # restore the best weights
            model.set_flat_params(self._best_params)

    def _update_no_improvement_count(self, early_stopping, val):
        if early_stopping:
            X_val, y_val, y_val_host, w_val = val
            val_loss = evaluate(self._model, X_val, y_val)[0]
            # the score as scikit-learn computes it: accuracy of predict (the most probable class)
            pred = self._proba(self._model.logits(X_val)).argmax(axis=1)
            val_score = float(accuracy_score(y_val_host, _host(pred), sample_weight=w_val))
            self.validation_scores_.append(val_score)
            self.validation_loss_curve_.append(val_loss)
            if self.verbose:
                print("Validation score: %f" % val_score)
            if val_score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if val_score > self.best_validation_score_:
                self.best_validation_score_ = val_score
                self._best_params = np.array(self._model.backend.to_host(self._model.params), copy=True)
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

