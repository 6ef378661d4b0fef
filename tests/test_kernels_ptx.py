"""Every CUDA kernel compiles to PTX for an H100 (sm_90), without a GPU.

This catches what the simulator cannot: code the CUDA target does not support,
and float64 creeping into float32 kernels (a Python float constant, an
int - float32 expression), which costs up to 64x on consumer GPUs. Needs
NVVM, which the dev extra installs (numba-cuda[cu13]).
"""

import pytest
from numba import boolean, config, float32, float64, int64

from fastmlp.kernels import (
    adam_update,
    bias_act_forward,
    relu_backward,
    sgd_update,
    sigmoid_backward,
    softmax_xent,
    tanh_backward,
)

pytestmark = pytest.mark.skipif(bool(config.ENABLE_CUDASIM), reason="the simulator cannot compile PTX")


def _signatures(t):
    mat, vec = t[:, ::1], t[::1]
    return {
        "softmax_xent": (softmax_xent._softmax_xent_cuda, (mat, int64[::1], vec)),
        "bias_act_forward": (bias_act_forward._bias_act_forward_cuda, (mat, vec, int64)),
        "relu_backward": (relu_backward._relu_backward_cuda, (mat, mat)),
        "sigmoid_backward": (sigmoid_backward._sigmoid_backward_cuda, (mat, mat)),
        "tanh_backward": (tanh_backward._tanh_backward_cuda, (mat, mat)),
        # scalars arrive in the arrays' dtype: the launchers in kernels/__init__.py cast them
        "sgd_update": (sgd_update._sgd_update_cuda, (vec, vec, vec, t, t, boolean, t, int64)),
        "adam_update": (adam_update._adam_update_cuda, (vec,) * 4 + (t,) * 8 + (int64,)),
    }


@pytest.fixture(scope="module")
def compile_ptx():
    from numba import cuda

    try:
        cuda.compile_ptx(lambda a: None, (float32[::1],), cc=(9, 0))
    except Exception as exc:  # no NVVM / NVRTC library
        pytest.skip(f"cannot compile PTX here ({type(exc).__name__}); pip install 'numba-cuda[cu13]'")
    return cuda.compile_ptx


@pytest.mark.parametrize("name", list(_signatures(float32)))
def test_float32_kernels_compile_without_float64_math(compile_ptx, name):
    kernel, sig = _signatures(float32)[name]
    ptx, _ = compile_ptx(kernel.py_func, sig, cc=(9, 0))
    f64 = [line.strip() for line in ptx.splitlines() if ".f64" in line]
    assert not f64, f"{name}: float64 instructions in the float32 kernel, e.g. {f64[:3]}"


@pytest.mark.parametrize("name", list(_signatures(float64)))
def test_float64_kernels_compile(compile_ptx, name):
    kernel, sig = _signatures(float64)[name]
    ptx, _ = compile_ptx(kernel.py_func, sig, cc=(9, 0))
    assert ".entry" in ptx
