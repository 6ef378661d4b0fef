"""A CSR matrix kept on the model's device: sparse training data that stays sparse.

scikit-learn's estimators take SciPy sparse matrices. fastmlp keeps such a
training set as its three CSR arrays on the device (CuPy on a GPU), and each
training step densifies only its own rows (``gather_csr`` in
``kernels/gather_csr.py``), so memory grows with the non-zeros, not with
rows x features.
"""

from __future__ import annotations

import numpy as np


class DeviceCSR:
    """data (nnz,) in the model's dtype, indices (nnz,) and indptr (n + 1,) int64, all
    on ``backend``'s device; ``shape`` (n, d). Rows are taken with ``rows(start, stop)``
    (a dense device array), which evaluation uses chunk by chunk."""

    ndim = 2

    def __init__(self, backend, X, dtype):
        X = X.tocsr()
        self.backend = backend
        self.shape = tuple(X.shape)
        self.dtype = np.dtype(dtype)
        self.data = backend.asarray(X.data, dtype=self.dtype)
        self.indices = backend.asarray(X.indices, dtype=np.int64)
        self.indptr = backend.asarray(X.indptr, dtype=np.int64)
        self._host = X

    @staticmethod
    def is_sparse(X):
        """True for a SciPy (or CuPy) sparse matrix or array."""
        return hasattr(X, "tocsr") and hasattr(X, "nnz")

    def all_finite(self):
        return bool(self.backend.xp.isfinite(self.data).all())

    def rows(self, start, stop):
        """Rows start:stop as a dense device array of the model's dtype."""
        return self.backend.asarray(self._host[start:stop].toarray(), dtype=self.dtype)
