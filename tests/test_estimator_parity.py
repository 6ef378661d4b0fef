"""fastmlp.MLPClassifier against scikit-learn's, number for number, in float64.

Six scikit-learn datasets and generators of different shapes (binary and
multi-class, 2 to 64 features, 150 to 700 rows, none a multiple of the batch
size except iris's single full batch), under scikit-learn's defaults (adam,
epsilon=1e-8, alpha=1e-4, batch_size="auto"), every sgd momentum form with
every learning_rate schedule, early stopping on and off, and sample weights.
Every fitted number must agree to 1e-9 relative; the measured differences are
around 1e-13 (rounding, from sums taken in a different order).
"""

import functools

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn is not installed: pip install -e '.[dev]'")

from sklearn.datasets import load_breast_cancer, load_digits, load_iris, make_classification, make_moons  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from fastmlp import MLPClassifier  # noqa: E402
from parity_helpers import RTOL, assert_same, fit_counting_warnings  # noqa: E402


@functools.lru_cache(maxsize=None)
def _dataset(name):
    if name == "iris":  # 150 x 4, 3 classes: one full batch of 150
        X, y = load_iris(return_X_y=True)
    elif name == "digits":  # 700 x 64, 10 classes: batches of 200, the last of 100
        X, y = load_digits(return_X_y=True)
        X, y = X[:700], y[:700]
    elif name == "cancer":  # 569 x 30, binary
        X, y = load_breast_cancer(return_X_y=True)
    elif name == "moons":  # 301 x 2, binary
        X, y = make_moons(n_samples=301, noise=0.25, random_state=0)
    elif name == "blobs3":  # 437 x 12, 3 classes
        X, y = make_classification(n_samples=437, n_features=12, n_informative=6, n_classes=3, random_state=1)
    else:  # "blobs2": 389 x 20, binary, string labels
        X, y = make_classification(n_samples=389, n_features=20, n_informative=5, n_classes=2, random_state=2)
        y = np.array(["no", "yes"])[y]
    return StandardScaler().fit_transform(X), y


def dataset(name):
    X, y = _dataset(name)
    return X.copy(), y.copy()


def assert_fits_match(ours, theirs, X):
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    assert ours.n_outputs_ == theirs.n_outputs_ and ours.out_activation_ == theirs.out_activation_
    assert_same(ours.loss_curve_, theirs.loss_curve_, "loss_curve_")
    assert_same(ours.loss_, theirs.loss_, "loss_")
    if theirs.best_loss_ is None:
        assert ours.best_loss_ is None
    else:
        assert_same(ours.best_loss_, theirs.best_loss_, "best_loss_")
    if theirs.validation_scores_ is None:
        assert ours.validation_scores_ is None
    else:
        assert_same(ours.validation_scores_, theirs.validation_scores_, "validation_scores_")
        assert_same(ours.best_validation_score_, theirs.best_validation_score_, "best_validation_score_")
    for i, (a, b) in enumerate(zip(ours.coefs_, theirs.coefs_, strict=True)):
        assert_same(a, b, f"coefs_[{i}]")
    for i, (a, b) in enumerate(zip(ours.intercepts_, theirs.intercepts_, strict=True)):
        assert_same(a, b, f"intercepts_[{i}]")
    assert_same(ours.predict_proba(X), theirs.predict_proba(X), "predict_proba")
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    # scikit-learn's is log(predict_proba), good to about 1e-16 / p absolute (a two-class
    # 1 - p near 0 comes from a rounded p), so compared where p > 3e-7, with atol for log(p ~ 1)
    log_ours, log_theirs = ours.predict_log_proba(X), theirs.predict_log_proba(X)
    exact = log_theirs > -15
    assert exact.mean() > 0.5
    np.testing.assert_allclose(log_ours[exact], log_theirs[exact], rtol=RTOL, atol=1e-15)


def check_parity(data, params, sample_weight=None):
    X, y = dataset(data)
    fit_kw = {} if sample_weight is None else {"sample_weight": sample_weight(len(y))}
    theirs, warned_theirs = fit_counting_warnings(SkMLPClassifier, X, y, params, **fit_kw)
    ours, warned_ours = fit_counting_warnings(MLPClassifier, X, y, {**params, "dtype": "float64"}, **fit_kw)
    assert warned_ours == warned_theirs
    assert_fits_match(ours, theirs, X)
    return ours


DATASETS = ["iris", "digits", "cancer", "moons", "blobs3", "blobs2"]
BASE = dict(hidden_layer_sizes=(7,), random_state=0)


@pytest.mark.parametrize("early_stopping", [False, True], ids=["", "early-stopping"])
@pytest.mark.parametrize("data", DATASETS)
def test_sklearn_defaults_match(data, early_stopping):
    # adam with epsilon=1e-8, alpha=1e-4, batch_size="auto": what a user who swaps the import gets
    params = {**BASE, "max_iter": 15}
    if early_stopping:
        params.update(early_stopping=True, n_iter_no_change=3, max_iter=40)
    ours = check_parity(data, params)
    if early_stopping:
        assert ours.n_iter_ < params["max_iter"]  # stopped by the validation score, not by max_iter


SGD_FORMS = {"sgd": dict(momentum=0.0), "momentum": dict(nesterovs_momentum=False), "nesterov": {}}


@pytest.mark.parametrize("schedule", ["constant", "invscaling", "adaptive"])
@pytest.mark.parametrize("form", list(SGD_FORMS))
@pytest.mark.parametrize("data", ["cancer", "blobs3"])
def test_sgd_forms_and_schedules_match(data, form, schedule):
    params = {**BASE, **SGD_FORMS[form], "solver": "sgd", "learning_rate": schedule, "learning_rate_init": 0.1,
              "batch_size": 64, "max_iter": 12}
    if schedule == "adaptive":  # tol is never met: lr / 5 every 2 epochs until it is <= 1e-6, then stop
        params.update(tol=10.0, n_iter_no_change=1, max_iter=30)
    ours = check_parity(data, params)
    if schedule == "adaptive":
        assert ours.n_iter_ < params["max_iter"]


def test_tol_stop_on_a_binary_problem_matches():
    params = {**BASE, "solver": "sgd", "learning_rate_init": 0.1, "tol": 3e-3, "n_iter_no_change": 2,
              "max_iter": 300}
    assert check_parity("moons", params).n_iter_ < params["max_iter"]


def _positive_weights(n):
    return np.random.default_rng(1).uniform(0.2, 3.0, n)


def _integer_weights_with_zeros(n):
    return np.random.default_rng(1).integers(0, 4, n).astype(np.float64)


@pytest.mark.parametrize("data", ["moons", "blobs3", "digits"])
def test_sample_weight_matches(data):
    check_parity(data, {**BASE, "max_iter": 10, "batch_size": 50}, _positive_weights)
    # zero weights, and the validation split with its weights (a weighted validation score)
    params = {**BASE, "solver": "sgd", "learning_rate_init": 0.1, "batch_size": 50, "early_stopping": True,
              "n_iter_no_change": 3, "max_iter": 20}
    check_parity(data, params, _integer_weights_with_zeros)


def test_partial_fit_with_sample_weight_matches():
    X, y = dataset("cancer")
    w = _positive_weights(len(y))
    params = {**BASE, "solver": "sgd", "learning_rate_init": 0.05, "batch_size": 100}
    ours, theirs = MLPClassifier(dtype="float64", **params), SkMLPClassifier(**params)
    for start in (0, 200, 400):
        rows = slice(start, start + 250)
        for est in (ours, theirs):
            est.partial_fit(X[rows], y[rows], sample_weight=w[rows], classes=np.unique(y))
    assert_fits_match(ours, theirs, X)


def test_a_batch_whose_weights_sum_to_zero_is_a_value_error():
    X, y = dataset("moons")
    w = np.ones(len(y))
    w[50:100] = 0.0  # the second batch: scikit-learn raises ZeroDivisionError from np.average there
    with pytest.raises(ValueError, match="sample weights of a batch sum to zero"):
        MLPClassifier(batch_size=50, shuffle=False, max_iter=2).fit(X, y, sample_weight=w)
    with pytest.raises(ZeroDivisionError):
        SkMLPClassifier(batch_size=50, shuffle=False, max_iter=2).fit(X, y, sample_weight=w)


def test_sample_weight_of_the_wrong_shape_is_sklearns_value_error():
    X, y = dataset("moons")
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(300,\), expected \(301,\)"):
        MLPClassifier(max_iter=2).fit(X, y, sample_weight=np.ones(300))
    with pytest.raises(ValueError, match=r"Sample weights must be 1D"):
        MLPClassifier(max_iter=2).fit(X, y, sample_weight=np.ones((301, 1)))
