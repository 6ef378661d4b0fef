"""The float32 CPU kernels do no float64 arithmetic: their Numba types, their LLVM IR
and the NumPy calls around them say so.

The CPU twin of test_kernels_ptx.py. A Python float constant, ``-np.inf``, an
``int - float32`` expression or a float64 scalar argument silently turns a
Numba loop into float64 math; a float64 operand or ``dtype=`` does the same to
a NumPy call. Every op of the CPU KernelSet is called through its public
launcher on float32 arrays (so the scalars are typed the way the launcher
passes them), and:

- each Numba kernel it runs (the op itself, or the epilogue of a NumPy GEMM) is
  compiled again here for the float32 signature the launcher compiled, to read
  its typed IR (no variable is float64 except a constant loaded and cast at
  once, ``f(np.nan)``, which LLVM folds away) and its LLVM IR (the kernel itself,
  not the CPython wrapper that unboxes Python floats: no ``double`` anywhere);
- every NumPy call the kernel modules make (the GEMMs, the gather's take, the
  loss sum) is watched: no float64 array goes in or comes out.
"""

import re

import numba
import numpy as np
import pytest

from fastmlp import kernels
from fastmlp.kernels import (
    adam_update,
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

F = np.float32
ACTIVATION_EPILOGUES = (relu_backward._relu_backward_cpu, sigmoid_backward._sigmoid_backward_cpu,
                        tanh_backward._tanh_backward_cpu)
# the modules whose launchers call NumPy (np.matmul, np.take, np.sum, np.dot); advance_cpu
# only adds 1 to the int64 counter in place
NUMPY_MODULES = (gather_batch, sum_into, linear_forward, linear_backward, backward_input)


def _calls():
    """op -> (the Numba kernels it runs, a call of its CPU launcher on float32 arrays)."""
    cpu = kernels.CPU_KERNELS
    z, y2, y, v = np.ones((4, 3), F), np.array([0, 1, 0, 1]), np.array([0, 1, 2, 0]), np.ones(5, F)
    z1, X, perm = np.ones((4, 1), F), np.ones((9, 3), F), np.arange(9)
    a, W, b, delta = np.ones((4, 6), F), np.ones((6, 3), F), np.ones(3, F), np.ones((4, 3), F)
    rates, state = np.full((3, 2), 0.1, F), np.array([1, 4])
    codes = (kernels.IDENTITY, kernels.RELU, kernels.SIGMOID, kernels.TANH)

    def each_code(fn):
        return lambda: [fn(code) for code in codes]

    return {
        "gather_batch": ((gather_batch._gather_batch_cpu,),
                         lambda: [cpu.gather_batch(X, perm % 3, perm, state, 4, np.zeros((4, 3), F),
                                                   np.zeros(4, np.int64)),
                                  cpu.gather_batch(X.astype(np.uint8), perm % 3, perm, state, 4, np.zeros((4, 3), F),
                                                   np.zeros(4, np.int64), 1 / 255),  # uint8 pixels, scaled
                                  cpu.gather_batch(X, X, perm, state, 4, np.zeros((4, 3), F), np.zeros((4, 3), F)),
                                  cpu.gather_batch(X.astype(np.uint8), X, perm, state, 4, np.zeros((4, 3), F),
                                                   np.zeros((4, 3), F), 1 / 255)]),  # float32 targets (n, c)
        "dropout": ((dropout._dropout_cpu,), lambda: cpu.dropout(a, a.copy(), state, 3, 1, 0.25)),
        "linear_forward": ((bias_act_forward._bias_act_forward_cpu,),
                           each_code(lambda code: cpu.linear_forward(a, W, b, np.zeros((4, 3), F), code))),
        "softmax_xent": ((softmax_xent._softmax_xent_cpu,),
                         lambda: [cpu.softmax_xent(z.copy(), y, np.ones(4, F), eps) for eps in (0.0, 0.1)]),
        "logistic_xent": ((logistic_xent._logistic_xent_cpu,),
                          lambda: cpu.logistic_xent(z1.copy(), y2, np.ones(4, F))),
        "scale_rows": ((scale_rows._scale_rows_cpu,),
                       lambda: cpu.scale_rows(z.copy(), np.ones(4, F), np.ones(9, F), state, 4)),
        "sum_into": ((), lambda: [cpu.sum_into(v, np.zeros(3, F), state, sq) for sq in (False, True)]),
        "linear_backward": ((), lambda: cpu.linear_backward(a, delta, np.zeros((6, 3), F), np.zeros(3, F))),
        "backward_input": (ACTIVATION_EPILOGUES,
                           each_code(lambda code: cpu.backward_input(delta, W, a, np.zeros((4, 6), F), code))),
        "sgd_update": ((sgd_update._sgd_update_cpu,),
                       lambda: [cpu.sgd_update(v.copy(), v, vel, rates, state, 0.9, nesterov, 3)
                                for vel, nesterov in ((v.copy(), True), (v.copy(), False), (v[:0].copy(), False))]),
        "adam_update": ((adam_update._adam_update_cpu,),
                        lambda: [cpu.adam_update(v.copy(), v, v.copy(), v.copy(), rates, state, 0.9, 0.999, 1e-8, 3,
                                                 sklearn) for sklearn in (False, True)]),
        "advance": ((), lambda: cpu.advance(state.copy())),
        "bias_act_forward": ((bias_act_forward._bias_act_forward_cpu,),
                             lambda: cpu.bias_act_forward(z.copy(), np.ones(3, F), kernels.SIGMOID)),
        "relu_backward": ((relu_backward._relu_backward_cpu,), lambda: cpu.relu_backward(z, z.copy())),
        "sigmoid_backward": ((sigmoid_backward._sigmoid_backward_cpu,), lambda: cpu.sigmoid_backward(z, z.copy())),
        "tanh_backward": ((tanh_backward._tanh_backward_cpu,), lambda: cpu.tanh_backward(z, z.copy())),
        "multilabel_xent": ((multilabel_xent._multilabel_xent_cpu,),
                            lambda: cpu.multilabel_xent(z.copy(), z * 0.5, np.ones(4, F))),
        "squared_error": ((squared_error._squared_error_cpu,), lambda: cpu.squared_error(z.copy(), z * 0.5, np.ones(4, F))),
        "poisson_deviance": ((poisson_deviance._poisson_deviance_cpu,),
                             lambda: cpu.poisson_deviance(z.copy(), z * 0.5, np.ones(4, F))),
        # a CSR matrix of 9 rows with 2 entries each (columns 0 and 2), float32 data
        "gather_csr": ((gather_csr._gather_csr_cpu,),
                       lambda: [cpu.gather_csr(np.ones(18, F), np.tile(np.array([0, 2], np.int32), 9),
                                               np.arange(0, 19, 2, dtype=np.int32), t, perm, state, 4,
                                               np.zeros((4, 3), F), yb)
                                for t, yb in ((perm % 3, np.zeros(4, np.int64)), (X, np.zeros((4, 3), F)))]),
    }


def test_every_cpu_kernel_is_checked():
    assert set(_calls()) == set(kernels.KernelSet._fields)


def float64_in(dispatcher, signature):
    """(float64 variables of the typed IR that are not constants, LLVM lines of the kernel
    that mention double) for ``dispatcher`` compiled afresh for ``signature``."""
    options = {k: v for k, v in dispatcher.targetoptions.items() if k != "nopython"}
    fresh = numba.njit(**options)(dispatcher.py_func)  # not from the on-disk cache: it keeps no IR
    fresh.compile(signature)
    cres = fresh.overloads[signature]
    variables = sorted(
        f"{name}: {ty}"
        for name, ty in cres.type_annotation.typemap.items()
        if "float64" in str(ty) and not re.search(r"load_attr|load_global|const", name)
    )
    llvm = cres.library.get_llvm_str()
    body = re.search(r"^define [^\n]*@\"?" + re.escape(cres.fndesc.mangled_name) + r"\"?\(.*?^}", llvm, re.M | re.S)
    assert body, "the kernel's function is missing from its LLVM IR"
    return variables, [line.strip() for line in body.group(0).splitlines()[1:] if "double" in line]


class NumpyWatch:
    """Stands in for ``numpy`` in a kernel module and writes down the dtype of every
    array that goes into or comes out of a NumPy call (``out=`` included)."""

    def __init__(self, seen):
        self._seen = seen

    def __getattr__(self, name):
        attr = getattr(np, name)
        if not callable(attr) or isinstance(attr, type):
            return attr

        def call(*args, **kwargs):
            result = attr(*args, **kwargs)
            for value in (*args, *kwargs.values(), result):
                if isinstance(value, (np.ndarray, np.generic)):
                    self._seen.append((name, value.dtype))
            if kwargs.get("dtype") is not None:
                self._seen.append((name, np.dtype(kwargs["dtype"])))
            return result

        return call


def _numpy_dtypes(call, monkeypatch):
    seen = []
    for module in NUMPY_MODULES:
        monkeypatch.setattr(module, "np", NumpyWatch(seen))
    call()
    return seen


@pytest.mark.parametrize("name", list(_calls()))
def test_float32_cpu_kernels_do_no_float64_math(name, monkeypatch):
    numba_kernels, call = _calls()[name]
    seen = _numpy_dtypes(call, monkeypatch)
    f64 = sorted({fn for fn, dtype in seen if dtype == np.float64})
    assert not f64, f"{name}: NumPy calls with float64 arrays in a float32 step: {f64}"
    for kernel in numba_kernels:
        signatures = [s for s in kernel.signatures if any(getattr(t, "dtype", None) == numba.float32 for t in s)]
        assert signatures, f"{name}: the launcher did not compile a float32 signature of {kernel}: {kernel.signatures}"
        for signature in signatures:
            variables, lines = float64_in(kernel, signature)
            where = f"{name} ({kernel.py_func.__name__}{signature})"
            assert not variables, f"{where}: float64 variables in the float32 kernel: {variables[:5]}"
            assert not lines, f"{where}: float64 in the LLVM IR of the float32 kernel, e.g. {lines[:3]}"


def test_the_checks_find_float64_math(monkeypatch):
    # They must be able to fail: a float32 sum started from 0.0 runs in float64 ...
    @numba.njit
    def total(a):
        s = 0.0
        for x in a:
            s += x
        return s

    total(np.ones(3, F))
    variables, lines = float64_in(total, total.signatures[0])
    assert any(v.startswith("s") for v in variables) and any("fadd double" in line for line in lines)
    # ... and so does a NumPy sum asked for float64
    seen = _numpy_dtypes(lambda: sum_into.np.sum(np.ones(3, F), dtype=np.float64), monkeypatch)
    assert ("sum", np.float64) in seen
