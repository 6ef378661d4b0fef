"""The xp shim: device selection, clear errors, no CuPy import on the CPU path."""

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from fastmlp import DeviceError, get_backend
from fastmlp.backend import namespace_of, parse_device


def test_default_is_cpu_and_env_var_is_read(monkeypatch):
    monkeypatch.delenv("FASTMLP_DEVICE", raising=False)
    bk = get_backend()
    assert bk.name == "cpu" and bk.xp is np and not bk.is_gpu
    monkeypatch.setenv("FASTMLP_DEVICE", "cpu")
    assert get_backend() is bk
    assert get_backend(bk) is bk


@pytest.mark.parametrize("value", ["tpu", "cuda:x", "", "cuda:-1", "gpu0"])
def test_unknown_device_is_a_one_line_error(monkeypatch, value):
    if value == "":
        # an empty FASTMLP_DEVICE means "unset"
        monkeypatch.setenv("FASTMLP_DEVICE", value)
        assert get_backend().name == "cpu"
        return
    with pytest.raises(DeviceError) as err:
        get_backend(value)
    assert "\n" not in str(err.value) and "cpu" in str(err.value)


def test_env_var_with_unknown_device_is_an_error(monkeypatch):
    monkeypatch.setenv("FASTMLP_DEVICE", "metal")
    with pytest.raises(DeviceError, match="FASTMLP_DEVICE"):
        get_backend()


def test_cuda_without_cupy_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes "import cupy" fail
    monkeypatch.setattr("fastmlp.backend._cache", {})
    with pytest.raises(DeviceError, match=r"pip install 'fastmlp\[cuda12\]'"):
        get_backend("cuda")


def _no_nvvm(*args, **kwargs):
    from numba.cuda.cudadrv.error import NvvmSupportError

    raise NvvmSupportError("libNVVM cannot be found. Do `conda install cudatoolkit`:\nlibrary nvvm not found")


def test_numba_compiler_is_found_where_the_dev_extra_installed_it():
    # numba-cuda[cu13] (the dev extra) brings NVVM; on a GPU machine this says whether Numba finds one
    from fastmlp.backend import numba_compiler_problem

    assert numba_compiler_problem() is None


def test_a_missing_nvvm_is_named_in_one_line(monkeypatch):
    from fastmlp.backend import numba_compiler_problem

    monkeypatch.setattr("numba.cuda.compile_ptx", _no_nvvm)
    assert numba_compiler_problem() == "NvvmSupportError: libNVVM cannot be found. Do `conda install cudatoolkit`"


def test_cuda_where_numba_cannot_compile_says_how_to_get_the_compiler(monkeypatch):
    # a GPU that CuPy and Numba's driver see, but no NVVM: the error comes before any kernel is built
    fake_cupy = SimpleNamespace(cuda=SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=lambda: 1)))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setattr("fastmlp.backend._cache", {})
    monkeypatch.setattr("numba.cuda.is_available", lambda: True)
    monkeypatch.setattr("numba.cuda.compile_ptx", _no_nvvm)
    with pytest.raises(DeviceError) as err:
        get_backend("cuda")
    text = str(err.value)
    assert "\n" not in text and "cannot compile CUDA kernels (NvvmSupportError: libNVVM cannot be found" in text
    assert "numba-cuda[cu13]" in text and "CUDA_HOME" in text


def test_parse_device():
    assert parse_device("CPU") == ("cpu", None)
    assert parse_device("cuda") == ("cuda", 0)
    assert parse_device("cuda:3") == ("cuda", 3)


def test_permutation_on_cpu():
    bk = get_backend("cpu")
    perm = bk.permutation(bk.rng(0), 50)
    assert np.array_equal(np.sort(perm), np.arange(50))
    assert np.array_equal(perm, bk.permutation(bk.rng(0), 50))


def test_namespace_of_numpy_arrays():
    assert namespace_of(np.zeros(2), np.ones(3)) is np


def test_importing_fastmlp_does_not_import_cupy():
    code = "import sys, fastmlp, fastmlp.train; fastmlp.MLP((4, 2)); print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
