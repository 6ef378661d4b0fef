"""The xp shim: device selection, clear errors, no CuPy import on the CPU path."""

import subprocess
import sys

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
