"""scikit-learn compatible estimators: ``MLPClassifier`` and ``MLPRegressor``.

    >>> from fastmlp import MLPClassifier          # instead of sklearn.neural_network
    >>> clf = MLPClassifier((128, 64), solver="adam", max_iter=20, random_state=0)
    >>> clf.fit(X_train, y_train).score(X_test, y_test)

Parameters, defaults and fitted attributes are scikit-learn's, and in float64
the fitted numbers are scikit-learn's (to rounding). The modules: ``base``
(what the two share: parameters, checks, initialisation, the network behind
``coefs_``), ``classifier`` and ``regressor`` (targets and outputs), and one
module per solver, ``stochastic`` (sgd, adam) and ``lbfgs``.

scikit-learn is needed only here; ``import fastmlp`` does not import it.
"""

try:
    import sklearn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f"fastmlp's MLPClassifier and MLPRegressor need scikit-learn ({exc}); install it with "
        "pip install 'fastmlp[sklearn]'"
    ) from exc

from .classifier import MLPClassifier
from .regressor import MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
