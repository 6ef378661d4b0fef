"""gather_csr: the CPU kernel against its reference and scipy.sparse, the CUDA kernel
under Numba's simulator (in a child process, as test_cuda_simulator.py does; the
checks are tests/csr_sim_check.py) and compiled to PTX for sm_90.

The kernels and the reference add a row's repeated columns in storage order, as
scipy's toarray does, so they agree bit for bit; scipy is compared within a few
ulps of the summed magnitudes, so the tests do not hang on how scipy orders a sum.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_cases import assert_close
from numba import config, cuda, float32, float64, int32, int64

# the PTX tests' compiler fixture and resource line, so both files compile the same way
from test_kernels_ptx import _resources, compile_ptx  # noqa: F401

from fastmlp.kernels import gather_csr
from fastmlp.kernels.gather_csr import gather_csr_cpu, gather_csr_launches, gather_csr_reference

HERE = Path(__file__).parent


def csr_arrays(rows, dtype, index_dtype=np.int32, indptr_dtype=None):
    """(data, indices, indptr) from rows given as lists of (column, value), kept as listed."""
    indptr = np.cumsum([0] + [len(r) for r in rows]).astype(indptr_dtype or index_dtype)
    indices = np.array([c for r in rows for c, _ in r], dtype=index_dtype)
    data = np.array([v for r in rows for _, v in r], dtype=dtype)
    return data, indices, indptr


def run_cpu(data, indices, indptr, y, perm, step, batch, k, d, dtype=None):
    """The CPU kernel on buffers of garbage (NaN, -1), so an entry it skips shows."""
    dtype = np.dtype(dtype or data.dtype)
    xb = np.full((k, d), np.nan, dtype=dtype)
    yb = np.full((k,) + y.shape[1:], -1, dtype=y.dtype)
    gather_csr_cpu(data, indices, indptr, y, perm, np.array([step, 99]), batch, xb, yb)
    return xb, yb


def check_step(data, indices, indptr, y, perm, step, batch, d, what):
    """One step of the CPU kernel: bit for bit the reference, and scipy's X[rows].toarray()."""
    n = len(indptr) - 1
    k = min(batch, n - step * batch)
    xb, yb = run_cpu(data, indices, indptr, y, perm, step, batch, k, d)
    want_x, want_y = gather_csr_reference(data, indices, indptr, y, perm, step, batch, k, d)
    assert xb.dtype == want_x.dtype and yb.dtype == want_y.dtype, what
    np.testing.assert_array_equal(xb, want_x, err_msg=f"{what}: xb")
    np.testing.assert_array_equal(yb, want_y, err_msg=f"{what}: yb")
    # copies: scipy may take the arrays over, or narrow their index dtype
    X = sp.csr_matrix((data.copy(), indices.copy(), indptr.copy()), shape=(n, d))
    rows = perm[step * batch : step * batch + k]
    magnitude = abs(X)[rows].toarray()  # the scale of a sum's rounding, where repeats cancel
    assert_close(xb, X[rows].toarray(), data.dtype, f"{what}: against scipy", magnitude)
    return xb


# a hand-made matrix of 7 rows and 5 columns with every awkward kind of row
AWKWARD = [
    [(3, 1.5), (0, -2.0), (3, 0.25), (1, 4.0), (3, 1e-3)],  # three repeats of column 3, unsorted
    [],
    [(4, 7.0)],
    [(0, 1.0), (2, 2.0), (4, 3.0)],  # canonical
    [],
    [(2, 1e8), (2, 1.0), (2, -1e8)],  # storage order matters in float32: (1e8 + 1) - 1e8 = 0
    [(1, -0.5), (1, 0.5)],
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("targets", [0, 2], ids=["labels", "targets"])
def test_every_step_of_an_epoch_gives_the_rows_of_perm(dtype, index_dtype, targets):
    rng = np.random.default_rng(0)
    data, indices, indptr = csr_arrays(AWKWARD, dtype, index_dtype)
    n, d, batch = len(AWKWARD), 5, 3
    y = rng.integers(0, 10, n) if targets == 0 else rng.standard_normal((n, targets)).astype(dtype)
    perm = rng.permutation(n)
    steps = [check_step(data, indices, indptr, y, perm, s, batch, d, f"step {s}") for s in range(3)]
    assert [len(x) for x in steps] == [3, 3, 1]  # the last batch of the epoch is short
    X = sp.csr_matrix((data.copy(), indices.copy(), indptr.copy()), shape=(n, d))
    assert_close(np.concatenate(steps), X[perm].toarray(), dtype, "the epoch", abs(X)[perm].toarray())
    # row 5 sums 1e8 + 1 - 1e8 in storage order: 1 is lost to float32 rounding, as scipy loses it
    assert np.concatenate(steps)[perm.tolist().index(5), 2] == (0 if dtype == np.float32 else 1)


def test_takes_a_scipy_matrix_as_it_comes():
    rng = np.random.default_rng(1)
    X = sp.random(50, 30, density=0.15, format="csr", dtype=np.float32, random_state=2)
    assert X.indices.dtype == np.int32 and X.has_canonical_format
    y, perm = rng.integers(0, 3, 50), rng.permutation(50)
    for step in range(4):  # 16, 16, 16, 2
        check_step(X.data, X.indices, X.indptr, y, perm, step, 16, 30, f"step {step}")


def test_float64_values_into_a_float32_batch_are_converted_then_summed():
    data, indices, indptr = csr_arrays(AWKWARD, np.float64, np.int64)
    y, perm = np.arange(7), np.arange(7)[::-1].copy()
    xb, yb = run_cpu(data, indices, indptr, y, perm, 0, 7, 7, 5, np.float32)
    want_x, want_y = gather_csr_reference(data, indices, indptr, y, perm, 0, 7, 7, 5, np.float32)
    assert xb.dtype == np.float32
    np.testing.assert_array_equal(xb, want_x)
    np.testing.assert_array_equal(yb, want_y)


def test_writes_labels_through_a_strided_view():
    data, indices, indptr = csr_arrays(AWKWARD, np.float32)
    y, perm = np.arange(7) * 10, np.arange(7)
    xb, out = np.empty((3, 5), np.float32), np.full((3, 2), -1)
    gather_csr_cpu(data, indices, indptr, y, perm, np.array([1, 0]), 3, xb, out[:, 1])
    assert out[:, 1].tolist() == [30, 40, 50] and out[:, 0].tolist() == [-1, -1, -1]


@st.composite
def csr_steps(draw):
    """A small random CSR matrix, canonical or not (repeats, unsorted, empty rows), with
    labels or targets, a permutation and one step of an epoch (possibly the short last one)."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    index_dtype, indptr_dtype = draw(st.sampled_from([np.int32, np.int64])), draw(st.sampled_from([np.int32, np.int64]))
    n, d = draw(st.integers(1, 8)), draw(st.integers(1, 6))
    entry = st.tuples(st.integers(0, d - 1), st.floats(-100, 100, width=32))
    rows = draw(st.lists(st.lists(entry, max_size=8), min_size=n, max_size=n))
    if draw(st.booleans()):  # scipy's canonical form: sorted columns, repeats summed
        rows = [sorted({c: sum(v for cc, v in r if cc == c) for c, _ in r}.items()) for r in rows]
    data, indices, indptr = csr_arrays(rows, dtype, index_dtype, indptr_dtype)
    targets = draw(st.integers(0, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n) if targets == 0 else rng.standard_normal((n, targets)).astype(dtype)
    perm = np.array(draw(st.permutations(range(n))), dtype=np.int64)
    batch = draw(st.integers(1, n))
    step = draw(st.integers(0, -(-n // batch) - 1))
    return data, indices, indptr, y, perm, step, batch, d


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csr_steps())
def test_random_sparse_matrices_match_the_reference_and_scipy(case):
    data, indices, indptr, y, perm, step, batch, d = case
    check_step(data, indices, indptr, y, perm, step, batch, d, "random")


def test_launches_one_block_per_row_in_the_x_dimension():
    # blockIdx.y stops at 65,535: a wide batch must still fit in one launch; nothing launches here
    data, indices, indptr = csr_arrays(AWKWARD, np.float32)
    xb, yb = np.empty((100_000, 5), np.float32), np.empty(100_000, np.int64)
    seen = []
    launches = gather_csr_launches(lambda a: seen.append(a) or a, 7, data, indices, indptr, np.arange(7),
                                   np.arange(7), np.zeros(2, np.int64), 3, xb, yb)
    [(kernel, (grid, threads, stream), args)] = launches
    assert kernel is gather_csr._gather_csr_cuda and (grid, threads, stream) == (100_000, 128, 7)
    assert len(seen) == 8  # every array went through view
    assert args[3].shape == (7, 1) and args[8].shape == (100_000, 1)  # 1-D labels as 2-D views
    assert np.shares_memory(args[8], yb)
    assert gather_csr_launches(lambda a: a, 0, data, indices, indptr, np.arange(7), np.arange(7),
                               np.zeros(2, np.int64), 3, xb[:0], yb[:0]) == []


@pytest.mark.skipif(bool(config.ENABLE_CUDASIM), reason="already inside the simulator: see the next test")
def test_cuda_kernel_passes_under_the_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, str(HERE / "csr_sim_check.py")], env=env, capture_output=True,
                          text=True, timeout=120, cwd=HERE.parent)
    out = proc.stdout + proc.stderr
    print(out)
    assert proc.returncode == 0, f"the simulator run failed:\n{out[-4000:]}"
    assert "cases passed on Numba's CUDA simulator" in out, out[-4000:]


@pytest.mark.skipif(not cuda.is_available(), reason="no GPU: the previous test runs these checks under the simulator")
def test_cuda_kernel_in_this_process():
    # on a GPU, or when this whole run is under the simulator
    import csr_sim_check

    assert csr_sim_check.run_checks() > 0


def _signatures(t):
    mat, vec, ivec = t[:, ::1], t[::1], int64[::1]
    labels, targets = int64[:, ::1], t[:, ::1]  # 1-D labels arrive as (n, 1) views
    return {
        f"{name} {it}": (vec, it[::1], it[::1], y, ivec, ivec, int64, mat, y)
        for it in (int32, int64)
        for name, y in (("labels", labels), ("targets", targets))
    }


needs_nvvm = pytest.mark.skipif(bool(config.ENABLE_CUDASIM), reason="the simulator cannot compile PTX")


@needs_nvvm
@pytest.mark.parametrize("name", list(_signatures(float32)))
def test_float32_kernel_compiles_without_float64_math(compile_ptx, name):
    ptx, _ = compile_ptx(gather_csr._gather_csr_cuda.py_func, _signatures(float32)[name], cc=(9, 0))
    f64 = [line.strip() for line in ptx.splitlines() if ".f64" in line]
    assert not f64, f"{name}: float64 instructions in the float32 kernel, e.g. {f64[:3]}"
    print(_resources(f"gather_csr {name} float32", ptx))


@needs_nvvm
@pytest.mark.parametrize("name", list(_signatures(float64)))
def test_float64_kernel_compiles(compile_ptx, name):
    ptx, _ = compile_ptx(gather_csr._gather_csr_cuda.py_func, _signatures(float64)[name], cc=(9, 0))
    assert ".entry" in ptx
    print(_resources(f"gather_csr {name} float64", ptx))
