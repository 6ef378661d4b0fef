"""``MLPClassifier``: scikit-learn's multi-layer perceptron classifier on fastmlp.

Targets are encoded as scikit-learn encodes them (a ``LabelBinarizer``), and
the output layer follows from them: two classes (or one) train one logistic
output on 0/1 labels, more classes a softmax over integer labels, and a
multi-label indicator matrix one logistic output per label on the 0/1 matrix.
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted

from ..model import two_class_proba
from .base import BaseMLP, host, is_cupy


class MLPClassifier(ClassifierMixin, BaseMLP):
    """Multi-layer perceptron classifier with scikit-learn's interface, trained by fastmlp.

    Parameters, defaults and fitted attributes are those of
    :class:`sklearn.neural_network.MLPClassifier` (solvers ``"lbfgs"``, ``"sgd"``,
    ``"adam"``; two-class, multi-class and multi-label targets), plus:

    device : {"cpu", "cuda", "cuda:N"} or None, default=None
        Where to train and predict. None: ``$FASTMLP_DEVICE``, else the CPU.
        With a CUDA device, ``X`` may be a NumPy, SciPy sparse or CuPy array;
        ``predict_proba`` / ``predict_log_proba`` return CuPy for CuPy input.
    dtype : {None, "float32", "float64"}, default=None
        Precision of the weights, of training and of the outputs. None follows
        scikit-learn: float32 ``X`` trains in float32, anything else in float64.
        "float32" trains in float32 whatever ``X`` is: about twice as fast on
        large data, and what a GPU is fastest at; the fitted numbers then differ
        from scikit-learn's by float32 rounding.
    cuda_graph : {"auto", "on", "off"}, default="auto"
        On a GPU, replay each training step as a CUDA graph ('auto': when it
        can be captured).

    Also fitted: ``device_``, the device the model lives on (e.g. ``"cpu"``).
    ``coefs_`` and ``intercepts_`` are lists of the model's own arrays (NumPy,
    or CuPy on a GPU): edit them in place, or assign new arrays, and the next
    ``predict`` / ``partial_fit`` uses them.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, device=None, dtype=None, cuda_graph="auto"):
        self._store_params(locals())

    _y_numeric = False
    loss = "log_loss"  # scikit-learn's name for what every output layer here minimises

    # ------------------------------------------------------------------ public API

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to X (n_samples, n_features) and y: labels (n_samples,) or a
        multi-label indicator matrix (n_samples, n_classes); rows weighted by
        ``sample_weight`` (n_samples,). Returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est.solver != "lbfgs")
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over X, y. ``classes`` (every label that will ever be seen) is
        required on the first call and may be omitted afterwards. Returns self."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predicted labels (n_samples,), or an indicator matrix for multi-label, as NumPy."""
        return self._predict(X)

    def predict_proba(self, X):
        """Probabilities (n_samples, n_classes), columns in the order of ``classes_``
        (for multi-label, each label's own probability)."""
        check_is_fitted(self)
        if self.n_outputs_ == 1:  # [1 - p, p], each from the logit (no 1 - p cancellation)
            z, on_device = self._logits(X)
            out = two_class_proba(self._model.xp, z)
        else:
            out, on_device = self._outputs(X)
        return out if on_device else host(out)

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``, as scikit-learn computes it (a probability that
        rounds to 0 gives -inf)."""
        p = self.predict_proba(X)
        return (sys.modules["cupy"] if is_cupy(p) else np).log(p)

    # ------------------------------------------------------------------ for BaseMLP

    def _model_loss(self):
        kind = self._label_binarizer.y_type_
        if kind == "multiclass":
            return "softmax"
        return "multilabel" if kind.startswith("multilabel") else "logistic"

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _encode_targets(self, y, incremental):
        """(what the model trains on, y as scored, outputs): 0/1 labels (n,) for one
        logistic output, class indices (n,) for softmax, or the 0/1 matrix (n, k)."""
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as in the previous "
                                     f"call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        Y = self._label_binarizer.transform(y)
        loss = self._model_loss()
        if loss == "softmax":
            return Y.argmax(axis=1), y, Y.shape[1]
        if loss == "logistic":
            return Y[:, 0].astype(np.int64), y, 1
        return Y.astype(np.float64), y, Y.shape[1]

    def _stratify(self, targets):
        """What scikit-learn stratifies the early-stopping split by: the binarised
        column of a one-output problem (bools), nothing otherwise."""
        return (targets == 1)[:, None] if self.n_outputs_ == 1 else None

    def _logits(self, X):
        check_is_fitted(self)
        model = self._network()
        X, is_cp = self._validate_X(X, reset=False, dtype=model.dtype.type)
        on_device = is_cp and model.backend.is_gpu
        if is_cp and not model.backend.is_gpu:
            X = X.get()
        if hasattr(X, "toarray") and not is_cupy(X):
            X = X.toarray()
        return model.logits(X), on_device

    def _predict(self, X, check_input=True):
        out = host(self._outputs(X, check_input)[0])
        return self._label_binarizer.inverse_transform(out.ravel() if self.n_outputs_ == 1 else out)

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, accuracy_score)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
