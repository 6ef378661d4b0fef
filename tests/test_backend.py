"""The xp shim: device selection, clear errors, no CuPy import on the CPU path."""

import subprocess
import sys
import threading
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
    _fake_gpu(monkeypatch)
    monkeypatch.setattr("numba.cuda.compile_ptx", _no_nvvm)
    with pytest.raises(DeviceError) as err:
        get_backend("cuda")
    text = str(err.value)
    assert "\n" not in text and "cannot compile CUDA kernels (NvvmSupportError: libNVVM cannot be found" in text
    assert "numba-cuda[cu13]" in text and "CUDA_HOME" in text


def _fake_gpu(monkeypatch):
    """Stand-ins for a machine where CuPy and Numba's driver see one GPU (none is used)."""
    fake_cupy = SimpleNamespace(cuda=SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=lambda: 1),
                                                     Device=lambda i: SimpleNamespace(use=lambda: None)))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setattr("fastmlp.backend._cache", {})
    monkeypatch.setattr("numba.cuda.is_available", lambda: True)
    monkeypatch.setattr("numba.cuda.select_device", lambda i: None)


VERSIONS = {"driver_cuda": "13.0", "nvvm": "2.0, nvidia-nvvm 13.5.37", "nvvm_ptx_isa": "9.5", "nvjitlink": "13.5"}


def test_a_toolchain_that_cannot_launch_is_one_line_naming_the_versions(monkeypatch):
    # NVVM compiles (PTX), but the kernel cannot be linked or loaded: what the launch check is for
    _fake_gpu(monkeypatch)
    from fastmlp import backend

    problem = "CudaAPIError: [CUDA_ERROR_UNSUPPORTED_PTX_VERSION] Call to cuModuleLoadDataEx results in it"
    monkeypatch.setattr(backend, "cuda_toolchain_problem", lambda: problem)
    monkeypatch.setattr(backend, "numba_compiler_problem", lambda: None)
    monkeypatch.setattr(backend, "toolchain_versions", lambda: VERSIONS)
    with pytest.raises(DeviceError) as err:
        get_backend("cuda")
    text = str(err.value)
    assert "\n" not in text and text.startswith("Numba cannot run a CUDA kernel on cuda:0 (CudaAPIError: [CUDA_ERROR_")
    assert "driver CUDA 13.0, NVVM 2.0, nvidia-nvvm 13.5.37 writing PTX ISA 9.5, nvJitLink 13.5;" in text
    assert "no newer than the driver's CUDA 13.0: pip install 'numba-cuda[cu13]' 'cuda-toolkit[nvvm]==13.0.*' " \
           "'nvidia-nvjitlink==13.0.*'" in text and "FASTMLP_DEVICE=cpu" in text


def test_the_toolchain_hint_follows_the_driver():
    from fastmlp.backend import toolchain_error, toolchain_hint

    assert "'nvidia-cuda-nvcc-cu12==12.4.*' 'nvidia-nvjitlink-cu12==12.4.*'" in toolchain_hint({"driver_cuda": "12.4"})
    assert "nvidia-smi" in toolchain_hint({"driver_cuda": None})
    text = str(toolchain_error(1, "LinkerError: x", {"driver_cuda": "12.8"}))
    assert "cuda:1 (LinkerError: x); driver CUDA 12.8, NVVM unknown writing PTX ISA unknown, nvJitLink unknown;" in text


class _Probe:
    """Stand-ins for numba.cuda's jit / to_device: ``fail`` raises at the launch, else the
    'kernel' does nothing (so it computes exp wrongly)."""

    def __init__(self, fail=None):
        self.fail = fail

    def jit(self, fn):
        probe = self

        class Kernel:
            def __getitem__(self, config):
                def launch(dev):
                    if probe.fail:
                        raise probe.fail
                return launch

        return Kernel()

    def to_device(self, host):
        return SimpleNamespace(copy_to_host=lambda: host.copy())


def test_the_launch_check_names_a_failed_link_or_a_wrong_result(monkeypatch):
    from numba.cuda.cudadrv.driver import LinkerError

    from fastmlp.backend import cuda_toolchain_problem

    probe = _Probe(LinkerError("libcudadev.a: nvJitLink version 13.5 is newer than the driver\nmore detail"))
    monkeypatch.setattr("numba.cuda.jit", probe.jit)
    monkeypatch.setattr("numba.cuda.to_device", probe.to_device)
    assert cuda_toolchain_problem() == "LinkerError: libcudadev.a: nvJitLink version 13.5 is newer than the driver"
    probe.fail = None
    assert cuda_toolchain_problem().startswith("the probe kernel ran but computed exp wrongly (largest error ")


def test_toolchain_versions_are_read_without_a_gpu():
    from fastmlp.backend import toolchain_versions

    v = toolchain_versions()
    assert set(v) == {"driver_cuda", "nvvm", "nvvm_ptx_isa", "nvjitlink"}
    assert v["nvvm"] and v["nvvm_ptx_isa"].replace(".", "").isdigit()  # the dev extra's NVVM
    assert v["driver_cuda"] is None or v["driver_cuda"].replace(".", "").isdigit()


class _FakeStream:
    """A CuPy stream stand-in: use() makes it the current stream of the calling thread."""

    def __init__(self, name, tls, end_error=None):
        self.name, self.tls, self.end_error, self.capturing = name, tls, end_error, False

    def use(self):
        self.tls.stream = self

    def begin_capture(self):
        self.capturing = True

    def end_capture(self):
        self.capturing = False
        if self.end_error:
            raise self.end_error
        return "graph"

    def __repr__(self):
        return self.name


def _fake_cuda_backend(device_id=0, end_error=None):
    """A Backend on a stand-in CuPy whose current device and stream are per thread, as CuPy's are."""
    from fastmlp.backend import Backend

    tls = threading.local()
    legacy = _FakeStream("legacy", tls)
    runtime = SimpleNamespace(getDevice=lambda: getattr(tls, "device", 0),
                              setDevice=lambda d: setattr(tls, "device", d))
    xp = SimpleNamespace(cuda=SimpleNamespace(runtime=runtime, get_current_stream=lambda: getattr(tls, "stream", legacy)))
    stream = _FakeStream("fastmlp", tls, end_error)
    return Backend(f"cuda:{device_id}", xp, None, device_id=device_id, stream=stream), legacy


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join(30)
    return out[0]


def test_activate_sets_the_stream_and_device_in_whatever_thread_enters(monkeypatch):
    bk, legacy = _fake_cuda_backend(device_id=1)
    cuda = bk.xp.cuda

    def seen():
        before = (cuda.get_current_stream(), cuda.runtime.getDevice())
        with bk.activate():
            inside = (cuda.get_current_stream(), cuda.runtime.getDevice())
            with bk.activate():  # nested: still ours, and still ours after the inner exit
                pass
            inner_exit = cuda.get_current_stream()
        return before, inside, inner_exit, (cuda.get_current_stream(), cuda.runtime.getDevice())

    before, inside, inner_exit, after = _in_thread(seen)
    assert before == (legacy, 0) and inside == (bk.stream, 1) and inner_exit is bk.stream and after == (legacy, 0)


def test_model_methods_run_inside_activate_from_another_thread():
    import fastmlp

    model = fastmlp.MLP((4, 3, 2), device="cpu")
    entered = []

    class Recording:  # the CPU backend, but activate() says which thread entered it
        def __getattr__(self, name):
            return getattr(get_backend("cpu"), name)

        def activate(self):
            entered.append(threading.get_ident())
            return get_backend("cpu").activate()

    model.backend = Recording()
    x = np.random.default_rng(0).random((5, 4)).astype(np.float32)
    ident = _in_thread(lambda: (model.predict(x), model.predict_proba(x), model.get_layers(),
                                threading.get_ident())[-1])
    assert entered and set(entered) == {ident}


def test_a_failed_capture_raises_its_own_error_not_end_captures(monkeypatch):
    bk, _ = _fake_cuda_backend(end_error=RuntimeError("cudaErrorStreamCaptureInvalidated"))

    def fn():
        raise ValueError("a kernel launch failed in the capture")

    with pytest.raises(ValueError, match="a kernel launch failed") as err:
        bk.capture(fn)
    assert not bk.stream.capturing
    if sys.version_info >= (3, 11):
        assert "ending the stream capture then failed too: RuntimeError: cudaErrorStreamCaptureInvalidated" in \
            err.value.__notes__[0]
    with pytest.raises(RuntimeError, match="Invalidated"):  # fn ran, end_capture failed: that error
        bk.capture(lambda: None)
    bk.stream.end_error = None
    assert bk.capture(lambda: None) == "graph"


def test_shuffle_on_the_cpu_is_numpys_generator_as_before():
    bk = get_backend("cpu")
    assert np.array_equal(bk.shuffle(7, 50), np.random.default_rng(7).permutation(50))


def test_gpu_shuffle_is_counter_based_and_the_host_can_reproduce_it():
    from fastmlp.backend import _GOLDEN, _MIX1, _splitmix64, counter_permutation

    assert _splitmix64(_GOLDEN) == 0xE220A8397B1DCDAF  # splitmix64's first output from state 0
    perm = counter_permutation(np, 12345, 1000)
    assert perm.dtype == np.int64 and np.array_equal(np.sort(perm), np.arange(1000))
    offset = _splitmix64(12345 * _GOLDEN + _MIX1)
    keys = [_splitmix64(i * _GOLDEN + offset) for i in range(1000)]
    assert np.array_equal(perm, np.argsort(np.array(keys, dtype=np.uint64)))
    assert not np.array_equal(perm, counter_permutation(np, 12346, 1000))
    bk, _ = _fake_cuda_backend()
    bk.xp = np  # the GPU branch, with NumPy standing in for CuPy: no generator is built
    bk.rng = None
    assert np.array_equal(bk.shuffle(12345, 1000), perm)


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
