"""CUDA (numba.cuda.jit) kernels against the same references as the CPU kernels.

Runs on a real GPU, or on Numba's CUDA simulator: ``test_cuda_simulator.py``
runs this file in a child process with ``NUMBA_ENABLE_CUDASIM=1`` on every CI
run, so indexing and bounds bugs are caught without hardware.
"""

import numpy as np
import pytest
from kernel_cases import DTYPES, assert_close, elementwise_cases, logits_cases
from numba import config, cuda

from fastmlp import kernels

SMALL = bool(config.ENABLE_CUDASIM)  # the simulator runs each GPU thread in Python

pytestmark = pytest.mark.skipif(
    not cuda.is_available(), reason="no CUDA GPU and NUMBA_ENABLE_CUDASIM is not set (test_cuda_simulator.py runs these under the simulator)"
)


@pytest.fixture(scope="module")
def launch():
    return kernels.cuda_kernels()


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_matches_reference(launch, dtype):
    rng = np.random.default_rng(0)
    for name, z, y in logits_cases(rng, dtype, small=SMALL):
        want_loss, want_grad = kernels.softmax_xent_reference(z, y)
        d_z, d_y = cuda.to_device(z), cuda.to_device(y)
        d_loss = cuda.to_device(np.zeros(len(y), dtype=dtype))
        launch.softmax_xent(d_z, d_y, d_loss)
        assert_close(d_loss.copy_to_host(), want_loss, dtype, f"{name} loss")
        assert_close(d_z.copy_to_host(), want_grad, dtype, f"{name} dlogits")


def test_softmax_xent_out_of_range_label_gives_nan(launch):
    d_z = cuda.to_device(np.zeros((3, 4), dtype=np.float32))
    d_loss = cuda.to_device(np.zeros(3, dtype=np.float32))
    launch.softmax_xent(d_z, cuda.to_device(np.array([0, 4, -1])), d_loss)
    loss = d_loss.copy_to_host()
    assert np.isfinite(loss[0]) and np.isnan(loss[1:]).all()


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_backward_matches_reference(launch, activation, dtype):
    rng = np.random.default_rng(1)
    reference = getattr(kernels, f"{activation}_backward_reference")
    kernel = getattr(launch, f"{activation}_backward")
    for name, out, dout in elementwise_cases(rng, dtype, activation, small=SMALL):
        want = reference(out, dout)
        d_out, d_dout = cuda.to_device(out), cuda.to_device(dout)
        kernel(d_out, d_dout)
        assert_close(d_dout.copy_to_host(), want, dtype, f"{activation} {name}")
