"""Checks of the CUDA gather_csr kernel against its NumPy reference, on whatever CUDA
Numba has: a GPU, or Numba's simulator when NUMBA_ENABLE_CUDASIM=1 was set before
Numba was imported. test_kernels_csr.py runs this file as a script in a child
process under the simulator (``python tests/csr_sim_check.py``; exit status 0 and
a last line "gather_csr: N cases passed"), and calls ``run_checks()`` in its own
process where a GPU is there.

The cases stay small, since the simulator runs every GPU thread in Python, but
cover what the kernel branches on: empty rows, repeated and unsorted columns,
rows of more than one chunk of THREADS nonzeros (sorted, which skips the leader
scan, and not), rows wider than a block, 1-D labels and 2-D targets, both float
and both index dtypes, float64 values into a float32 batch, and every step of an
epoch, the last one short, replayed from one bound launch by changing state.
"""

import sys
from pathlib import Path

import numpy as np
from numba import config, cuda

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: the repository's fastmlp
    sys.path.insert(0, str(ROOT))

from fastmlp.kernels.gather_csr import THREADS, gather_csr_launches, gather_csr_reference  # noqa: E402
from fastmlp.kernels.linear_ops import bind_launches, run_launches  # noqa: E402


def small_rows():
    """(n_features, rows as lists of (column, value)): empty, repeated, unsorted rows."""
    rows = [
        [(3, 1.5), (0, -2.0), (3, 0.25), (1, 4.0), (3, 1e-3)],  # three repeats of column 3, unsorted
        [],
        [(4, 7.0)],
        [(0, 1.0), (2, 2.0), (4, 3.0)],  # canonical
        [],
        [(2, 1e8), (2, 1.0), (2, -1e8)],  # order matters in float32: ((1e8 + 1) - 1e8)
        [(1, -0.5), (1, 0.5)],
    ]
    return 5, rows


def long_rows(rng):
    """Rows of 2-3 chunks: one sorted (canonical), the others with repeats within and across chunks."""
    d = 300
    sorted_row = [(int(c), float(v)) for c, v in zip(np.sort(rng.choice(d, 2 * THREADS + 7, replace=False)),
                                                      rng.standard_normal(2 * THREADS + 7))]
    repeats = [(int(c), float(v)) for c, v in zip(rng.integers(0, 40, 2 * THREADS + 30),
                                                  rng.standard_normal(2 * THREADS + 30))]
    # sorted in each chunk but the chunks overlap: the fast path, adding onto earlier chunks' sums
    overlap = [(c, 1.0 + c) for c in range(THREADS)] + [(c, 0.5) for c in range(0, 2 * THREADS, 2)]
    return d, [sorted_row, [], repeats, overlap, [(299, 2.0), (0, 1.0)]]


def to_csr(rows, dtype, index_dtype):
    indptr = np.cumsum([0] + [len(r) for r in rows]).astype(index_dtype)
    indices = np.array([c for r in rows for c, _ in r], dtype=index_dtype)
    data = np.array([v for r in rows for _, v in r], dtype=dtype)
    return data, indices, indptr


def check_epoch(name, d, rows, data_dtype, xb_dtype, index_dtype, batch, targets, seed):
    """Every step of one epoch from a single bound launch: only state changes between replays."""
    rng = np.random.default_rng(seed)
    n = len(rows)
    data, indices, indptr = to_csr(rows, data_dtype, index_dtype)
    y = rng.integers(0, 10, n) if targets == 0 else rng.standard_normal((n, targets)).astype(xb_dtype)
    perm = rng.permutation(n).astype(np.int64)
    k_full = min(batch, n)
    d_xb = cuda.to_device(np.full((k_full, d), np.nan, dtype=xb_dtype))
    d_yb = cuda.to_device(np.full((k_full,) + y.shape[1:], -1, dtype=y.dtype))
    d_state = cuda.to_device(np.zeros(2, dtype=np.int64))
    arrays = [cuda.to_device(a) for a in (data, indices, indptr, y, perm)]

    def bound(k):  # the last short batch writes the first k rows of the buffers
        return bind_launches(gather_csr_launches(lambda a: a, 0, *arrays, d_state, batch, d_xb[:k], d_yb[:k]))

    full, steps = bound(k_full), -(-n // batch)
    for step in range(steps):
        k = min(batch, n - step * batch)
        d_xb.copy_to_device(np.full((k_full, d), np.nan, dtype=xb_dtype))  # every entry must be written
        d_state.copy_to_device(np.array([step, 0], dtype=np.int64))
        run_launches(full if k == k_full else bound(k))
        want_x, want_y = gather_csr_reference(data, indices, indptr, y, perm, step, batch, k, d, xb_dtype)
        got_x, got_y = d_xb.copy_to_host()[:k], d_yb.copy_to_host()[:k]
        what = f"{name} {np.dtype(data_dtype).name}->{np.dtype(xb_dtype).name} {np.dtype(index_dtype).name} step {step}"
        assert got_x.dtype == want_x.dtype, what
        np.testing.assert_array_equal(got_x, want_x, err_msg=f"{what}: xb")
        np.testing.assert_array_equal(got_y, want_y, err_msg=f"{what}: yb")
    return steps


def run_checks():
    """Run every case; return the number of steps checked (AssertionError on a mismatch)."""
    small, long = small_rows(), long_rows(np.random.default_rng(0))
    pairs = [(f, i) for f in (np.float32, np.float64) for i in (np.int32, np.int64)]
    checked = 0
    # each dtype pair once, labels and targets alternating: every simulated block costs ~0.1 s
    for seed, (dtype, index_dtype) in enumerate(pairs):
        checked += check_epoch("small", *small, dtype, dtype, index_dtype, 3, 2 * (seed % 2), seed)
    checked += check_epoch("small", *small, np.float64, np.float32, np.int64, 7, 1, 4)
    checked += check_epoch("long rows", *long, np.float32, np.float32, np.int32, 2, 0, 5)
    checked += check_epoch("long rows", *long, np.float64, np.float64, np.int64, 5, 3, 6)
    return checked


if __name__ == "__main__":
    if config.ENABLE_CUDASIM:
        from kernel_cases import simulator_on_one_core

        simulator_on_one_core()
    where = "Numba's CUDA simulator" if config.ENABLE_CUDASIM else "the GPU"
    print(f"gather_csr: {run_checks()} cases passed on {where}")
