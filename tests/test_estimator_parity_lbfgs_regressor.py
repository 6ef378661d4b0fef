"""fastmlp.MLPRegressor (sgd, adam, lbfgs; squared error and Poisson) and
fastmlp.MLPClassifier with lbfgs against scikit-learn's, number for number, in float64.

Regression on four data sets of different shapes (make_regression with one and
with three outputs, diabetes, make_friedman1), Poisson regression on counts with
one and with two outputs, and lbfgs classification of two classes, ten classes
and four labels (an indicator matrix). Features are standardised (targets too,
for squared error), the data are float64 and fastmlp's ``dtype`` is left at its
default, so these tests also check the default dtype rule; the last test checks
it directly for float32, float64 and integer input.

Every fitted number must agree to 1e-9 relative (``parity_helpers.max_rel`` says where it does
not), ``n_iter_`` and ``t_`` exactly, and fastmlp must raise a ConvergenceWarning
exactly where scikit-learn does.

lbfgs runs are kept to 25-30 iterations (or stop sooner on their own). L-BFGS
amplifies rounding: with scikit-learn against itself, one input number moved by
one ulp moves its coefs_ by up to 1e-9 after 40 iterations and by 1e-8 to 1e-6
after 60 to 80, so agreement to 1e-9 over 50-100 iterations would take
bit-identical arithmetic. Up to 30 iterations the runs here agree to about 1e-11.
"""

import functools

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn is not installed: pip install -e '.[dev]'")

from sklearn.datasets import (  # noqa: E402
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_iris,
    make_friedman1,
    make_multilabel_classification,
    make_regression,
)
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from fastmlp import MLPClassifier, MLPRegressor  # noqa: E402
from parity_helpers import assert_same, fit_counting_warnings  # noqa: E402


def _standardised(y):
    return StandardScaler().fit_transform(y.reshape(len(y), -1)).reshape(y.shape)


def _counts(n_samples, n_features, n_outputs, seed):
    """Poisson counts whose log-mean is linear in standard normal features, plus a bend."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    W = rng.uniform(-0.4, 0.4, (n_features, n_outputs))
    log_mean = 0.7 + X @ W + 0.2 * np.tanh(X[:, :1])
    y = rng.poisson(np.exp(log_mean)).astype(np.float64)
    return X, (y[:, 0] if n_outputs == 1 else y)


@functools.lru_cache(maxsize=None)
def _dataset(name):
    if name == "linear":  # 233 x 8, one output
        X, y = make_regression(n_samples=233, n_features=8, n_informative=5, noise=10.0, random_state=0)
        y = _standardised(y)
    elif name == "multi":  # 517 x 20, three outputs
        X, y = make_regression(n_samples=517, n_features=20, n_informative=8, n_targets=3, noise=5.0,
                               random_state=1)
        y = _standardised(y)
    elif name == "diabetes":  # 442 x 10
        X, y = load_diabetes(return_X_y=True)
        y = _standardised(y)
    elif name == "friedman1":  # 347 x 7, nonlinear
        X, y = make_friedman1(n_samples=347, n_features=7, noise=1.0, random_state=2)
        y = _standardised(y)
    elif name == "counts":  # 301 x 6, Poisson counts
        X, y = _counts(301, 6, 1, seed=3)
    elif name == "counts2":  # 157 x 3, two columns of Poisson counts
        X, y = _counts(157, 3, 2, seed=4)
    elif name == "cancer":  # 569 x 30, two classes
        X, y = load_breast_cancer(return_X_y=True)
    elif name == "digits":  # 700 x 64, ten classes
        X, y = load_digits(return_X_y=True)
        X, y = X[:700], y[:700]
    elif name == "iris":  # 150 x 4, three classes as strings
        X, y = load_iris(return_X_y=True)
        y = np.array(["setosa", "versicolor", "virginica"])[y]
    else:  # "multilabel": 263 x 15, four labels (an indicator matrix)
        X, y = make_multilabel_classification(n_samples=263, n_features=15, n_classes=4, n_labels=2,
                                              return_indicator=True, random_state=5)
    return StandardScaler().fit_transform(X), y


def dataset(name):
    X, y = _dataset(name)
    return X.copy(), y.copy()


STOCHASTIC_ONLY = ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_")


def assert_fits_match(ours, theirs, X):
    assert np.isfinite(theirs.loss_)  # a data set on which scikit-learn itself diverged would prove nothing
    assert (ours.n_iter_, ours.t_) == (theirs.n_iter_, theirs.t_)
    assert ours.n_outputs_ == theirs.n_outputs_ and ours.out_activation_ == theirs.out_activation_
    assert ours.n_layers_ == theirs.n_layers_ and ours.n_features_in_ == theirs.n_features_in_
    for name in STOCHASTIC_ONLY:  # set by sgd and adam, absent after lbfgs
        assert hasattr(ours, name) == hasattr(theirs, name), name
    if hasattr(theirs, "loss_curve_"):
        assert len(ours.loss_curve_) == len(theirs.loss_curve_)
        assert_same(ours.loss_curve_, theirs.loss_curve_, "loss_curve_")
    assert_same(ours.loss_, theirs.loss_, "loss_")
    if hasattr(theirs, "best_loss_"):
        if theirs.best_loss_ is None:
            assert ours.best_loss_ is None
        else:
            assert_same(ours.best_loss_, theirs.best_loss_, "best_loss_")
    if hasattr(theirs, "validation_scores_"):
        if theirs.validation_scores_ is None:
            assert ours.validation_scores_ is None and ours.best_validation_score_ is None
        else:
            assert_same(ours.validation_scores_, theirs.validation_scores_, "validation_scores_")
            assert_same(ours.best_validation_score_, theirs.best_validation_score_, "best_validation_score_")
    assert len(ours.coefs_) == len(theirs.coefs_) and len(ours.intercepts_) == len(theirs.intercepts_)
    for i, (a, b) in enumerate(zip(ours.coefs_, theirs.coefs_)):
        assert_same(a, b, f"coefs_[{i}]")
    for i, (a, b) in enumerate(zip(ours.intercepts_, theirs.intercepts_)):
        assert_same(a, b, f"intercepts_[{i}]")
    if hasattr(theirs, "classes_"):
        np.testing.assert_array_equal(ours.classes_, theirs.classes_)
        assert_same(ours.predict_proba(X), theirs.predict_proba(X), "predict_proba")
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    else:
        assert_same(ours.predict(X), theirs.predict(X), "predict")


def check_parity(ours_cls, theirs_cls, data, params, sample_weight=None):
    """Fit both on the same float64 data (fastmlp's dtype left at its default); compare everything."""
    X, y = dataset(data)
    assert X.dtype == np.float64
    fit_kw = {} if sample_weight is None else {"sample_weight": WEIGHTS[sample_weight](len(y))}
    theirs, warned_theirs = fit_counting_warnings(theirs_cls, X, y, params, **fit_kw)
    ours, warned_ours = fit_counting_warnings(ours_cls, X, y, params, **fit_kw)
    assert warned_ours == warned_theirs, (f"fastmlp raised {warned_ours} ConvergenceWarning(s), "
                                          f"scikit-learn {warned_theirs}")
    assert_fits_match(ours, theirs, X)
    return theirs, warned_theirs


def check_regressor(data, params, sample_weight=None):
    return check_parity(MLPRegressor, SkMLPRegressor, data, params, sample_weight)


def check_classifier(data, params, sample_weight=None):
    return check_parity(MLPClassifier, SkMLPClassifier, data, params, sample_weight)


WEIGHTS = {
    "positive": lambda n: np.random.default_rng(1).uniform(0.2, 3.0, n),
    "integers-with-zeros": lambda n: np.random.default_rng(2).integers(0, 4, n).astype(np.float64),
}

REGRESSION = ["linear", "multi", "diabetes", "friedman1"]
COUNTS = ["counts", "counts2"]
CLASSIFICATION = ["cancer", "digits", "iris", "multilabel"]
BASE = dict(hidden_layer_sizes=(7,), random_state=0)


# ---------------------------------------------------------------- MLPRegressor, squared error


@pytest.mark.parametrize("sample_weight", [None, "positive"], ids=["", "weighted"])
@pytest.mark.parametrize("early_stopping", [False, True], ids=["", "early-stopping"])
@pytest.mark.parametrize("data", REGRESSION)
def test_regressor_adam_defaults_match(data, early_stopping, sample_weight):
    # scikit-learn's defaults (adam, batch_size="auto", alpha=1e-4, tol=1e-4): what a user who swaps the import gets
    params = {**BASE, "max_iter": 20}
    if early_stopping:  # a larger step, or the validation score creeps up for hundreds of epochs
        params.update(early_stopping=True, learning_rate_init=0.03, n_iter_no_change=3, tol=3e-3, max_iter=60)
    theirs, warned = check_regressor(data, params, sample_weight)
    if early_stopping:  # stopped by the validation score: no warning
        assert theirs.n_iter_ < params["max_iter"] and warned == 0
    else:
        assert theirs.n_iter_ == params["max_iter"] and warned == 1


SGD = {
    "plain-constant": dict(momentum=0.0, learning_rate="constant", learning_rate_init=0.02),
    "momentum-invscaling": dict(nesterovs_momentum=False, learning_rate="invscaling", learning_rate_init=0.05,
                                power_t=0.25),
    # tol is rarely met: the rate is divided by 5 every 2 epochs without improvement, then it stops
    "nesterov-adaptive": dict(learning_rate="adaptive", learning_rate_init=0.02, tol=0.05, n_iter_no_change=2),
}


@pytest.mark.parametrize("form", list(SGD))
@pytest.mark.parametrize("data", REGRESSION)
def test_regressor_sgd_matches(data, form):
    params = {**BASE, "solver": "sgd", "batch_size": 64, "max_iter": 30, **SGD[form]}
    theirs, warned = check_regressor(data, params)
    if form == "nesterov-adaptive":
        assert theirs.n_iter_ < params["max_iter"] and warned == 0


@pytest.mark.parametrize("data", REGRESSION)
def test_regressor_sgd_early_stopping_with_sample_weight_matches(data):
    # zero weights, and the validation split with its weights (a weighted R^2)
    params = {**BASE, "solver": "sgd", "learning_rate_init": 0.02, "batch_size": 50, "early_stopping": True,
              "validation_fraction": 0.2, "n_iter_no_change": 3, "tol": 1e-3, "max_iter": 40}
    check_regressor(data, params, "integers-with-zeros")


@pytest.mark.parametrize("sample_weight", [None, "positive"], ids=["", "weighted"])
@pytest.mark.parametrize("data", REGRESSION)
def test_regressor_lbfgs_matches(data, sample_weight):
    activation = {"linear": "tanh", "multi": "relu", "diabetes": "logistic", "friedman1": "tanh"}[data]
    layers = (6, 4) if data == "friedman1" else (7,)
    params = {**BASE, "solver": "lbfgs", "activation": activation, "hidden_layer_sizes": layers, "max_iter": 30}
    theirs, warned = check_regressor(data, params, sample_weight)
    assert theirs.n_iter_ == params["max_iter"] and warned == 1


def test_regressor_lbfgs_that_converges_matches():
    # a linear net on a linear problem: lbfgs meets tol before max_iter, so no ConvergenceWarning
    params = {**BASE, "solver": "lbfgs", "activation": "identity", "hidden_layer_sizes": (3,), "max_iter": 100,
              "tol": 1e-3}
    theirs, warned = check_regressor("linear", params)
    assert theirs.n_iter_ < params["max_iter"] and warned == 0


# ---------------------------------------------------------------- MLPRegressor, Poisson


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("data", COUNTS)
def test_poisson_regressor_matches(data, solver):
    X, y = dataset(data)
    assert (y >= 0).all() and (y == np.round(y)).all()
    params = {**BASE, "loss": "poisson", "solver": solver}
    params.update({"sgd": dict(learning_rate_init=0.01, batch_size=32, max_iter=25),
                   "adam": dict(max_iter=40),
                   "lbfgs": dict(max_iter=30)}[solver])
    theirs, _ = check_regressor(data, params)
    assert theirs.out_activation_ == "exp"


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_poisson_regressor_early_stopping_with_sample_weight_matches(solver):
    params = {**BASE, "loss": "poisson", "solver": solver, "early_stopping": True, "n_iter_no_change": 3,
              "tol": 1e-3, "batch_size": 40, "max_iter": 50}
    if solver == "sgd":
        params["learning_rate_init"] = 0.01
    check_regressor("counts", params, "positive")
    check_regressor("counts2", params, "integers-with-zeros")


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_poisson_regressor_with_sample_weight_matches(solver):
    params = {**BASE, "loss": "poisson", "solver": solver, "max_iter": 30}
    if solver == "sgd":
        params.update(learning_rate_init=0.01, batch_size=32)
    check_regressor("counts", params, "positive")


# ---------------------------------------------------------------- MLPClassifier, lbfgs


@pytest.mark.parametrize("sample_weight", [None, "integers-with-zeros"], ids=["", "weighted"])
@pytest.mark.parametrize("data", CLASSIFICATION)
def test_classifier_lbfgs_matches(data, sample_weight):
    activation = {"cancer": "relu", "digits": "relu", "iris": "tanh", "multilabel": "relu"}[data]
    params = {**BASE, "solver": "lbfgs", "activation": activation, "max_iter": 25}
    if data == "multilabel":
        params["hidden_layer_sizes"] = (8, 5)
    theirs, _ = check_classifier(data, params, sample_weight)
    expected = {"cancer": "logistic", "digits": "softmax", "iris": "softmax", "multilabel": "logistic"}[data]
    assert theirs.out_activation_ == expected
    assert not hasattr(theirs, "loss_curve_")


def test_classifier_lbfgs_that_converges_matches():
    # lbfgs stops on its own after 32 iterations, so no ConvergenceWarning. Some logits fall below
    # -709.78, where scikit-learn's logistic (scipy's expit: 1 / (1 + exp(-z))) gives exactly 0.0
    params = {**BASE, "solver": "lbfgs", "max_iter": 100}
    theirs, warned = check_classifier("cancer", params)
    assert theirs.n_iter_ < params["max_iter"] and warned == 0


# ---------------------------------------------------------------- the default dtype rule


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_default_dtype_follows_the_input(kind, solver):
    # dtype=None: float32 input trains in float32; float64 and integer input in float64. (scikit-learn
    # itself differs for lbfgs: scipy's L-BFGS-B works in float64 and its float64 result becomes coefs_.)
    X, y = dataset("linear" if kind == "regressor" else "iris")
    cls = MLPRegressor if kind == "regressor" else MLPClassifier
    params = {**BASE, "solver": solver, "max_iter": 5}
    inputs = {np.float32: X.astype(np.float32), np.float64: X, "integer": np.rint(3 * X).astype(np.int64)}
    for given, X_in in inputs.items():
        expected = np.float64 if given == "integer" else given
        est, _ = fit_counting_warnings(cls, X_in, y, params)
        for i, (coef, intercept) in enumerate(zip(est.coefs_, est.intercepts_)):
            assert coef.dtype == expected and intercept.dtype == expected, (given, i, coef.dtype, intercept.dtype)
        out = est.predict(X_in) if kind == "regressor" else est.predict_proba(X_in)
        assert out.dtype == expected, (given, out.dtype)
