"""The BLAS line of --verbose and the benchmarks, and the notice about OPENBLAS_CORETYPE."""

import os
import subprocess
import sys

import numpy as np  # noqa: F401  (loads NumPy's BLAS, which threadpoolctl then finds)
import pytest

from fastmlp import blas

OPENBLAS = {"library": "openblas", "version": "0.3.31", "kernels": "Haswell", "threads": 2}


def test_describe_names_library_kernels_and_threads():
    assert blas.describe([OPENBLAS]) == "openblas 0.3.31 (Haswell kernels, 2 threads)"
    libs = blas.libraries()
    assert any(lib["library"] in ("openblas", "mkl", "blis") for lib in libs), libs
    assert all(lib["threads"] >= 1 for lib in libs)


@pytest.mark.parametrize(
    "env, isa, kernels, says",
    [
        ({"OPENBLAS_CORETYPE": "Haswell"}, "avx512", "Haswell", True),  # the setting holds it below the CPU
        ({}, "avx512", "Haswell", False),  # OpenBLAS's own choice: not a setting the user made
        ({"OPENBLAS_CORETYPE": "SkylakeX"}, "avx512", "SkylakeX", False),
        ({"OPENBLAS_CORETYPE": "Haswell"}, "avx2", "Haswell", False),  # all this CPU has
        ({"OPENBLAS_CORETYPE": "Prescott"}, "avx2", "Prescott", True),
    ],
)
def test_notice_only_when_a_setting_selects_kernels_below_the_cpu(env, isa, kernels, says):
    line = blas.notice([{**OPENBLAS, "kernels": kernels}], env, isa)
    assert (line is not None) == says
    if says:
        assert line.count("\n") == 0 and f"OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}" in line and "unset" in line


def test_cpu_isa_from_flags():
    assert blas.cpu_isa({"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl"}) == "avx512"
    assert blas.cpu_isa({"avx", "avx2", "fma", "avx512f"}) == "avx2"  # AVX-512F alone is not what SkylakeX needs
    assert blas.cpu_isa({"sse2"}) == "sse"


@pytest.mark.skipif(blas.cpu_isa() != "avx512", reason="needs an AVX-512 CPU, where Haswell kernels are below it")
def test_a_real_openblas_held_at_haswell_is_noticed_and_left_alone():
    code = "import numpy; from fastmlp import blas; print(blas.describe()); print(blas.notice())"
    env = {**os.environ, "OPENBLAS_CORETYPE": "Haswell"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    if "openblas" not in out:
        pytest.skip(f"NumPy does not use OpenBLAS here: {out}")
    assert "Haswell kernels" in out, "the user's setting must stay in force"
    assert "note: OPENBLAS_CORETYPE=Haswell" in out
