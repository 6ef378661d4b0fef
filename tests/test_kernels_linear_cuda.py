"""The dense layer's CUDA GEMM kernels (kernels/linear_ops.py) against the references.

Runs on a real GPU, or under Numba's CUDA simulator, where
``test_cuda_simulator.py`` runs it in a child process. The simulator runs
every GPU thread in Python (about 0.3 s per block per BK step here), so the
shapes are a few blocks each, chosen to cover: n = 1, a reduction shorter
than one BK step and longer than two, a last row tile of 1 row, a last column
tile of 1 column, split-K 1 and > 1, and row slices of larger buffers. Every
output is poisoned with NaN first (the split-K scratch too), so an element
that is not written fails.
"""

import numpy as np
import pytest
from kernel_cases import DTYPES, assert_close, linear_inputs, row_slice
from numba import cuda

from fastmlp import kernels
from fastmlp.kernels import gemm_tiles
from fastmlp.kernels.linear_ops import CudaLinearOps

pytestmark = [
    pytest.mark.skipif(
        not cuda.is_available(),
        reason="no CUDA GPU and NUMBA_ENABLE_CUDASIM is not set (test_cuda_simulator.py runs these under the simulator)",
    ),
    # the simulator's math.exp returns a Python float; casting exp(88+) back to float32 warns (and gives inf, as the GPU)
    pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),
]

IDENTITY, RELU, SIGMOID, TANH = kernels.IDENTITY, kernels.RELU, kernels.SIGMOID, kernels.TANH

# (rows n, depth, width, code, split, spare rows); split None = the heuristic (1 here).
# For linear_forward (n, K, N), backward_input (n, N, K), linear_backward (n, K, N):
# "depth" is the reduction of the first two, and linear_backward reduces over n.
CASES = [
    (1, 5, 3, IDENTITY, None, 0),  # n = 1, one short BK step
    (33, 40, 7, RELU, 1, 0),  # last row tile of 1 row, 2 steps in one block
    (2, 70, 5, SIGMOID, 3, 3),  # 3 chunks (the last of 6); row slices of larger buffers
    (1, 40, 33, TANH, 2, 0),  # last column tile of 1 column, 2 chunks (the last of 8)
]
# linear_backward's reduction runs over n, and its output [dW; db] has K + 1 rows
BACKWARD_CASES = [
    (1, 3, 5, None, 0),  # n = 1
    (33, 7, 4, 1, 0),  # 2 steps, the last of 1 row
    (40, 5, 33, 2, 3),  # last column tile of 1 column, 2 chunks; row slices
    (40, 32, 3, 2, 0),  # db alone in the second row tile
]


def _rotate(code, dtype):
    # float64 runs each case with the code two further on, so that across the two
    # dtypes every code meets both the split-1 epilogue and the reduce epilogue
    return (code + 2 * (np.dtype(dtype) == np.float64)) % 4


def _ops(split, dtype):
    """A launcher forced to ``split``, its scratch poisoned with NaN."""
    ops = CudaLinearOps(0, split=split)
    scratch = ops._part(dtype, 4096)  # covers every case's (split, rows, cols)
    scratch.copy_to_device(np.full(scratch.shape, np.nan, dtype=dtype))
    return ops


def _poisoned(shape, dtype, spare=0):
    return cuda.to_device(row_slice(np.full(shape, np.nan, dtype=dtype), spare))


def _device(x, spare):
    """A device copy of x: the first rows of a device buffer with ``spare`` more rows."""
    if not spare:
        return cuda.to_device(x)
    return cuda.to_device(row_slice(np.ascontiguousarray(x), spare))[: x.shape[0]]


def _linear_forward(ops, x, code, spare, dtype):
    n, N = x["a"].shape[0], x["W"].shape[1]
    out = _poisoned((n, N), dtype, 1)[:n]
    ops.linear_forward(_device(x["a"], spare), cuda.to_device(x["W"]), cuda.to_device(x["b"]), out, code)
    return out.copy_to_host()


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_forward_matches_reference(dtype, case):
    n, K, N, code, split, spare = case
    code = _rotate(code, dtype)
    x = linear_inputs(np.random.default_rng(n * K), n, K, N, dtype, code)
    want = kernels.linear_forward_reference(x["a"], x["W"], x["b"], code)
    got = _linear_forward(_ops(split, dtype), x, code, spare, dtype)
    scale = np.abs(x["a"]) @ np.abs(x["W"]) + np.abs(x["b"])
    assert_close(got, want, dtype, f"linear_forward code {code} split {split}", scale)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_input_matches_reference(dtype, case):
    n, N, K, code, split, spare = case
    code = _rotate(code, dtype)
    x = linear_inputs(np.random.default_rng(n * N), n, K, N, dtype, code)
    want = kernels.backward_input_reference(x["delta"], x["W"], x["out_prev"], code)
    d_prev = _poisoned((n, K), dtype, 1)[:n]
    _ops(split, dtype).backward_input(
        _device(x["delta"], spare), cuda.to_device(x["W"]), _device(x["out_prev"], spare), d_prev, code
    )
    scale = np.abs(x["delta"]) @ np.abs(x["W"]).T
    assert_close(d_prev.copy_to_host(), want, dtype, f"backward_input code {code} split {split}", scale)


@pytest.mark.parametrize("case", BACKWARD_CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_backward_matches_reference(dtype, case):
    n, K, N, split, spare = case
    x = linear_inputs(np.random.default_rng(n * K), n, K, N, dtype, IDENTITY)
    want_dW, want_db = kernels.linear_backward_reference(x["a"], x["delta"])
    dW, db = _poisoned((K, N), dtype), _poisoned(N, dtype)
    _ops(split, dtype).linear_backward(_device(x["a"], spare), _device(x["delta"], spare), dW, db)
    assert_close(dW.copy_to_host(), want_dW, dtype, f"dW split {split}", np.abs(x["a"]).T @ np.abs(x["delta"]))
    assert_close(db.copy_to_host(), want_db, dtype, f"db split {split}", np.abs(x["delta"]).sum(axis=0))


def test_split_k_results_are_bit_identical_run_to_run():
    # no atomics: the same inputs must give the same bits
    x = linear_inputs(np.random.default_rng(9), 1, 40, 3, np.float32, TANH)
    ops = _ops(2, np.float32)
    first, again = (_linear_forward(ops, x, TANH, 0, np.float32) for _ in range(2))
    assert np.array_equal(first, again), "two runs differ"


def test_scratch_grows_and_keeps_what_it_outgrew():
    ops = CudaLinearOps(0, split=2)
    x = linear_inputs(np.random.default_rng(10), 1, 40, 3, np.float32, IDENTITY)
    _linear_forward(ops, x, IDENTITY, 0, np.float32)  # the warm-up allocates (split, n, N)
    first = ops._scratch[np.dtype(np.float32)]
    assert first.shape[0] >= 2 * 1 * 3 and not ops._retired
    assert ops._part(np.float32, 6) is first, "a call that fits must reuse the scratch"
    bigger = ops._part(np.float32, 10**4)
    # a captured CUDA graph may still hold the old pointer: it must stay alive
    assert bigger.shape[0] >= 10**4 and ops._retired == [first]


def test_mismatched_shapes_are_refused_before_launch():
    ops = CudaLinearOps(0)
    a, W = cuda.to_device(np.zeros((4, 6), np.float32)), cuda.to_device(np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match="W is float32"):
        ops.linear_forward(a, W, cuda.to_device(np.zeros(3, np.float32)), cuda.to_device(np.zeros((4, 3), np.float32)), RELU)
    with pytest.raises(ValueError, match="db is float64"):
        ops.linear_backward(a, cuda.to_device(np.zeros((4, 3), np.float32)), cuda.to_device(np.zeros((6, 3), np.float32)),
                            cuda.to_device(np.zeros(3, np.float64)))


@pytest.mark.parametrize(
    "m, nc, r, split",
    [
        (128, 128, 784, 8),  # MNIST layer 1 forward: 16 tiles, 25 steps
        (128, 64, 128, 1),  # layer 2: 4 steps are too few to split
        (785, 128, 128, 1),  # layer 1 weight gradient: 100 tiles, 4 steps
        (65, 10, 8192, 16),  # layer 3 weight gradient at batch 8192: 3 tiles, 256 steps
        (8192, 128, 784, 1),  # enough tiles already
    ],
)
def test_split_heuristic(m, nc, r, split):
    assert gemm_tiles.choose_split(m, nc, r) == split


@pytest.mark.parametrize("r, split, k_chunk, chunks", [(784, 8, 128, 7), (40, 2, 32, 2), (5, 3, 32, 1), (0, 4, 32, 1)])
def test_split_chunks_are_whole_steps_and_never_empty(r, split, k_chunk, chunks):
    assert gemm_tiles.split_chunks(r, split) == (k_chunk, chunks)
