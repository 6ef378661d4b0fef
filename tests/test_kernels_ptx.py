"""Every CUDA kernel compiles to PTX for an H100 (sm_90), without a GPU.

This catches what the simulator cannot: code the CUDA target does not support,
and float64 creeping into float32 kernels (a Python float constant, an
int - float32 expression), which costs up to 64x on consumer GPUs. Needs
NVVM, which the dev extra installs (numba-cuda[cu13]).

Each kernel's registers and shared memory are printed (``pytest -s``): from
``ptxas -v`` where ptxas is on PATH, otherwise the shared bytes declared in
the PTX (registers are only known after ptxas). The line says which. Where
ptxas runs (a machine with the CUDA toolkit, such as the GPU machine), a
kernel that spills registers to local memory fails the test.
"""

import re
import shutil
import subprocess
from types import SimpleNamespace

import pytest
from numba import boolean, config, float32, float64, int64, uint8, uint64

from fastmlp.kernels import (
    adam_update,
    advance,
    backward_input,
    bias_act_forward,
    dropout,
    gather_batch,
    gather_csr,
    linear_backward,
    linear_forward,
    logistic_xent,
    multilabel_xent,
    poisson_deviance,
    relu_backward,
    scale_rows,
    sgd_update,
    sigmoid_backward,
    softmax_xent,
    squared_error,
    sum_into,
    tanh_backward,
)

pytestmark = pytest.mark.skipif(bool(config.ENABLE_CUDASIM), reason="the simulator cannot compile PTX")


def _signatures(t):
    mat, vec, ivec, imat = t[:, ::1], t[::1], int64[::1], int64[:, ::1]
    return {
        # the launcher passes labels (n,) as (n, 1) views: y and yb are always 2-D
        "gather_batch": (gather_batch._gather_batch_cuda, (mat, imat, ivec, ivec, int64, mat, imat, t)),
        "gather_batch_uint8": (gather_batch._gather_batch_cuda, (uint8[:, ::1], imat, ivec, ivec, int64, mat, imat, t)),
        "gather_batch_targets": (gather_batch._gather_batch_cuda, (mat, mat, ivec, ivec, int64, mat, mat, t)),
        # CSR rows (data, indices, indptr) densified into the batch; labels as (n, 1) again
        "gather_csr": (gather_csr._gather_csr_cuda, (vec, ivec, ivec, imat, ivec, ivec, int64, mat, imat)),
        "dropout": (dropout._dropout_cuda, (mat, mat, ivec, uint64, uint64, uint64, t)),
        "sum_into": (sum_into._sum_into_cuda, (vec, vec, ivec, boolean)),
        "advance": (advance._advance_cuda, (ivec,)),
        "scale_rows": (scale_rows._scale_rows_cuda, (mat, vec, vec, ivec, int64)),
        "softmax_xent": (softmax_xent._softmax_xent_cuda, (mat, int64[::1], vec, t)),
        "logistic_xent": (logistic_xent._logistic_xent_cuda, (mat, int64[::1], vec)),
        "multilabel_xent": (multilabel_xent._multilabel_xent_cuda, (mat, mat, vec)),
        "squared_error": (squared_error._squared_error_cuda, (mat, mat, vec)),
        "poisson_deviance": (poisson_deviance._poisson_deviance_cuda, (mat, mat, vec)),
        "bias_act_forward": (bias_act_forward._bias_act_forward_cuda, (mat, vec, int64)),
        "relu_backward": (relu_backward._relu_backward_cuda, (mat, mat)),
        "sigmoid_backward": (sigmoid_backward._sigmoid_backward_cuda, (mat, mat)),
        "tanh_backward": (tanh_backward._tanh_backward_cuda, (mat, mat)),
        # scalars arrive in the arrays' dtype: the launchers in kernels/__init__.py cast them
        "sgd_update": (sgd_update._sgd_update_cuda, (vec, vec, vec, mat, ivec, t, boolean, int64)),
        "adam_update": (adam_update._adam_update_cuda, (vec,) * 4 + (mat, ivec) + (t,) * 5 + (int64, boolean)),
        # the GEMMs: ..., part (the flat split-K scratch), k_chunk; their reduce kernels: part, split, ...
        "linear_forward": (linear_forward._linear_forward_cuda, (mat, mat, vec, mat, int64, vec, int64)),
        "linear_forward_reduce": (linear_forward._linear_forward_reduce_cuda, (vec, int64, vec, mat, int64)),
        "linear_backward": (linear_backward._linear_backward_cuda, (mat, mat, mat, vec, vec, int64)),
        "linear_backward_reduce": (linear_backward._linear_backward_reduce_cuda, (vec, int64, mat, vec)),
        "backward_input": (backward_input._backward_input_cuda, (mat, mat, mat, mat, int64, vec, int64)),
        "backward_input_reduce": (backward_input._backward_input_reduce_cuda, (vec, int64, mat, mat, int64)),
    }


@pytest.fixture(scope="module")
def compile_ptx():
    from numba import cuda
    from numba.cuda import dispatcher

    try:
        cuda.compile_ptx(lambda a: None, (float32[::1],), cc=(9, 0))
    except Exception as exc:  # no NVVM / NVRTC library
        pytest.skip(f"cannot compile PTX here ({type(exc).__name__}); pip install 'numba-cuda[cu13]'")
    with pytest.MonkeyPatch.context() as mp:
        if not cuda.is_available():
            # compile_ptx needs no GPU, but a kernel that calls a device function
            # (the GEMMs' gemm_tiles) asks the current device for its compute
            # capability; without one, answer sm_90, the target compiled for here
            mp.setattr(dispatcher, "get_current_device", lambda: SimpleNamespace(compute_capability=(9, 0)))
        yield cuda.compile_ptx


def _resources(name, ptx, options=()):
    """One line with the kernel's registers and shared memory, saying where they come from."""
    ptxas = shutil.which("ptxas")
    if ptxas:
        note = ""
        for _ in range(2):
            proc = subprocess.run([ptxas, "-v", "--gpu-name", "sm_90", *options, "-o", "/dev/null", "-"], input=ptx,
                                  capture_output=True, text=True)
            # an older ptxas than the NVVM that wrote the PTX refuses its .version; retry at the one it names
            older = re.search(r"Unsupported \.version \S+; current version is '([\d.]+)'", proc.stderr)
            if proc.returncode == 0 or not older:
                break
            ptx = re.sub(r"^\.version \S+", f".version {older.group(1)}", ptx, count=1, flags=re.M)
            note = f" (PTX .version lowered to {older.group(1)} for this ptxas)"
        assert proc.returncode == 0, f"{name}: ptxas rejects the PTX:\n{proc.stderr}"
        used = re.search(r"Used .*", proc.stderr)
        spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", proc.stderr)
        # a spill puts a thread's registers in local memory: each step of a GEMM's loop would go to DRAM
        assert not spills or spills.group(1) == spills.group(2) == "0", f"{name}: register spills: {spills.group(0)}"
        return f"{name}: ptxas -v sm_90: {used.group(0) if used else proc.stderr.strip()}, no spills{note}"
    smem = sum(int(n) for n in re.findall(r"\.shared \.align \d+ \.b8 \S+\[(\d+)\]", ptx))
    return f"{name}: no ptxas on PATH; from the PTX: {smem} bytes of static shared memory, registers unknown"


@pytest.mark.parametrize("name", list(_signatures(float32)))
def test_float32_kernels_compile_without_float64_math(compile_ptx, name):
    kernel, sig = _signatures(float32)[name]
    ptx, _ = compile_ptx(kernel.py_func, sig, cc=(9, 0))
    f64 = [line.strip() for line in ptx.splitlines() if ".f64" in line]
    assert not f64, f"{name}: float64 instructions in the float32 kernel, e.g. {f64[:3]}"
    print(_resources(f"{name} float32", ptx))


@pytest.mark.parametrize("name", list(_signatures(float64)))
def test_float64_kernels_compile(compile_ptx, name):
    kernel, sig = _signatures(float64)[name]
    ptx, _ = compile_ptx(kernel.py_func, sig, cc=(9, 0))
    assert ".entry" in ptx
    print(_resources(f"{name} float64", ptx))


def test_a_kernel_that_spills_registers_fails_the_check(compile_ptx):
    # the forward GEMM held to 24 registers (it needs 80) must spill, and the check must say so
    if not shutil.which("ptxas"):
        pytest.skip("no ptxas on PATH (it comes with the CUDA toolkit): spills are checked where it is")
    kernel, sig = _signatures(float32)["linear_forward"]
    ptx, _ = compile_ptx(kernel.py_func, sig, cc=(9, 0))
    with pytest.raises(AssertionError, match="register spills"):
        _resources("linear_forward float32", ptx, options=("--maxrregcount", "24"))
