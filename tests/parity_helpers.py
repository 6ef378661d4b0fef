"""What the float64 parity tests against scikit-learn share: the tolerance, the
comparison that names where two arrays differ most, and a fit that counts its
ConvergenceWarnings."""

import warnings

import numpy as np

RTOL = 1e-9  # every fitted number; the measured differences are around 1e-13


def max_rel(a, b):
    """(largest relative difference of a from b, the index where it is); 0 where they are equal."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shapes {a.shape} != {b.shape}"
    if not a.size:
        return 0.0, None
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    with np.errstate(invalid="ignore"):
        rel = np.abs(a - b) / np.maximum(np.abs(b), np.finfo(np.float64).tiny)
    rel[(a == b) | (np.isnan(a) & np.isnan(b))] = 0.0
    rel[np.isnan(rel)] = np.inf  # a NaN on one side only
    where = tuple(int(i) for i in np.unravel_index(np.argmax(rel), rel.shape))
    return float(rel[where]), where


def assert_same(ours, theirs, what):
    """ours (fastmlp's) equals theirs (scikit-learn's) to RTOL relative, or an error naming where not."""
    err, where = max_rel(ours, theirs)
    if err > RTOL:
        a, b = np.atleast_1d(np.asarray(ours, dtype=np.float64)), np.atleast_1d(np.asarray(theirs, dtype=np.float64))
        raise AssertionError(f"{what}: max relative difference {err:.3g} > {RTOL:g} at index {where} "
                             f"of shape {b.shape}: fastmlp {float(a[where])!r}, scikit-learn {float(b[where])!r}")


def fit_counting_warnings(cls, X, y, params, **fit_kw):
    """(fitted estimator, number of ConvergenceWarnings), the warnings counted rather than shown."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        est = cls(**params).fit(X, y, **fit_kw)
    return est, sum(issubclass(w.category, ConvergenceWarning) for w in caught)
