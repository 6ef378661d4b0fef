"""The ``xp`` shim: one object that knows where the arrays live.

A :class:`Backend` bundles the array module (NumPy or CuPy), the device name,
host<->device copies, synchronisation, the random generator for shuffling and
the device's Numba kernels. The device is chosen once, at the entry point
(argument, then ``FASTMLP_DEVICE``, then ``cpu``), and the backend object is
passed down; nothing below re-reads the environment.

CuPy is only imported when ``cuda`` is asked for, never to test a type.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys

import numpy as np

from .errors import DeviceError, one_line

ENV_VAR = "FASTMLP_DEVICE"

_CUDA_INSTALL_HINT = (
    "install CuPy and numba-cuda for your CUDA version, e.g. pip install 'fastmlp[cuda12]' "
    "or 'fastmlp[cuda13]' (see nvidia-smi), or use FASTMLP_DEVICE=cpu"
)

# Numba compiles its CUDA kernels with NVVM (and libdevice for math), which
# numba-cuda's [cu12]/[cu13] extras install, or which a CUDA toolkit provides.
_COMPILER_HINT = (
    "install the compiler with pip install 'numba-cuda[cu13]' (or [cu12], as your driver's CUDA major "
    "version), or set CUDA_HOME to a CUDA toolkit that has nvvm/, or use FASTMLP_DEVICE=cpu"
)


def numba_compiler_problem():
    """None if Numba can compile a CUDA kernel (NVVM and libdevice found), else
    why not, in one line. Needs no GPU: it only compiles to PTX."""
    import math

    from numba import cuda, float32

    def probe(a):
        a[0] = math.exp(a[0])

    try:
        # an explicit target, so no device is asked for one; sm_75 is the oldest NVVM 13 still takes
        cuda.compile_ptx(probe, (float32[::1],), cc=(7, 5))
    except Exception as exc:  # NvvmSupportError, pathfinder's DynamicLibNotFoundError, OSError, ...
        return _error_line(exc)
    return None


def _error_line(exc):
    """'Type: first line of the message', at most 300 characters."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")[:300]


def cuda_toolchain_problem():
    """None if Numba can compile, link, load and launch a CUDA kernel on the current
    device and the kernel computes the right values; else why not, in one line.

    Compiling to PTX (:func:`numba_compiler_problem`) proves NVVM only: a PTX ISA
    newer than the driver loads, or an nvJitLink of another CUDA version links,
    only at the first launch. This builds a fresh (never cached) kernel that calls
    libdevice's exp, so every stage runs now. Needs a GPU."""
    import math

    from numba import cuda

    def probe(a):
        i = cuda.grid(1)
        if i < a.shape[0]:
            a[i] = math.exp(a[i])

    host = np.linspace(-1, 1, 64, dtype=np.float32)
    try:
        kernel = cuda.jit(probe)  # a new dispatcher every call: nothing comes from a cache
        dev = cuda.to_device(host)
        kernel[1, 64](dev)
        got = dev.copy_to_host()
    except Exception as exc:  # LinkerError, CudaAPIError (PTX JIT, unsupported toolchain), NvvmError, ...
        return _error_line(exc)
    err = float(np.max(np.abs(got.astype(np.float64) - np.exp(host.astype(np.float64)))))
    if not err <= 1e-5:
        return f"the probe kernel ran but computed exp wrongly (largest error {err:.3g})"
    return None


def _driver_cuda_version():
    """(major, minor) of the CUDA version the NVIDIA driver supports, or None. Reads
    cuDriverGetVersion from libcuda directly: no CUDA initialisation, no GPU needed."""
    import ctypes

    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        v = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(v)) == 0 and v.value:
            return v.value // 1000, v.value % 1000 // 10
    return None


def _dist_version(*names):
    import importlib.metadata

    for name in names:
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def toolchain_versions():
    """What Numba's CUDA path is built from, each as far as it can be read (else None).

    driver_cuda   the CUDA version the driver supports, "13.0"
    nvvm          NVVM's version and where it came from ("2.0, nvidia-nvvm 13.5.37")
    nvvm_ptx_isa  the PTX ISA NVVM writes, "9.5" (a driver loads PTX only up to its own)
    nvjitlink     nvJitLink's version, "13.5" (numba-cuda links with it where present)
    Needs no GPU."""
    import re

    out = {"driver_cuda": None, "nvvm": None, "nvvm_ptx_isa": None, "nvjitlink": None}
    drv = _driver_cuda_version()
    out["driver_cuda"] = "%d.%d" % drv if drv else None
    try:
        from numba.cuda.cudadrv import nvvm

        major, minor = nvvm.NVVM().get_version()[:2]
        where = _dist_version("nvidia-nvvm", "nvidia-cuda-nvcc-cu12", "nvidia-cuda-nvcc")
        try:
            from numba.cuda.cuda_paths import get_cuda_paths

            found = get_cuda_paths()["nvvm"]
            where = where if getattr(found, "by", "") == "site-packages" else f"{found.info}"
        except Exception:
            pass
        out["nvvm"] = f"{major}.{minor}" + (f", {where}" if where else "")
    except Exception as exc:
        out["nvvm"] = f"not found ({_error_line(exc)[:120]})"
    try:
        from numba import cuda, float32

        ptx, _ = cuda.compile_ptx(lambda a: None, (float32[::1],), cc=(7, 5))
        isa = re.search(r"^\.version\s+(\S+)", ptx, re.M)
        out["nvvm_ptx_isa"] = isa.group(1) if isa else None
    except Exception:
        pass
    try:
        from cuda.bindings import nvjitlink

        out["nvjitlink"] = "%d.%d" % tuple(nvjitlink.version())[:2]
    except Exception:
        pass
    return out


# the pip packages of the CUDA compiler libraries numba-cuda uses, per driver CUDA major version
_TOOLCHAIN_PINS = {
    12: "'numba-cuda[cu12]' 'nvidia-cuda-nvcc-cu12=={v}.*' 'nvidia-nvjitlink-cu12=={v}.*'",
    13: "'numba-cuda[cu13]' 'cuda-toolkit[nvvm]=={v}.*' 'nvidia-nvjitlink=={v}.*'",
}


def toolchain_hint(versions):
    """What to install so that the toolchain matches the driver, from :func:`toolchain_versions`."""
    drv = versions.get("driver_cuda")
    if not drv:
        return "check the NVIDIA driver (nvidia-smi), or use FASTMLP_DEVICE=cpu"
    major = int(drv.split(".")[0])
    pins = _TOOLCHAIN_PINS.get(major)
    if pins is None:
        return (f"install NVVM and nvJitLink of CUDA {drv} or older (the driver's), or update the NVIDIA driver, "
                "or use FASTMLP_DEVICE=cpu")
    return (f"install the CUDA compiler libraries no newer than the driver's CUDA {drv}: pip install "
            f"{pins.format(v=drv)}; or update the NVIDIA driver; or use FASTMLP_DEVICE=cpu")


def toolchain_error(device_id, problem, versions):
    """The one-line DeviceError for a toolchain that cannot run a kernel on cuda:N."""
    v = {k: versions.get(k) or "unknown" for k in ("driver_cuda", "nvvm", "nvvm_ptx_isa", "nvjitlink")}
    return DeviceError(one_line(
        f"Numba cannot run a CUDA kernel on cuda:{device_id} ({problem}); driver CUDA {v['driver_cuda']}, "
        f"NVVM {v['nvvm']} writing PTX ISA {v['nvvm_ptx_isa']}, nvJitLink {v['nvjitlink']}; {toolchain_hint(versions)}"))


_NO_CONTEXT = contextlib.nullcontext()  # reusable and reentrant


class _OnDevice:
    """Backend.activate()'s context on a GPU: in the calling thread, whichever it is,
    the backend's device and stream become CuPy's current ones (both are per
    thread), and the previous ones come back on exit. A new object per call, so
    nesting and threads never share state."""

    __slots__ = ("_bk", "_prev_device", "_prev_stream")

    def __init__(self, backend):
        self._bk = backend

    def __enter__(self):
        bk = self._bk
        cuda = bk.xp.cuda
        self._prev_device = cuda.runtime.getDevice()
        if self._prev_device != bk.device_id:
            cuda.runtime.setDevice(bk.device_id)
        self._prev_stream = cuda.get_current_stream()
        bk.stream.use()
        return bk.stream

    def __exit__(self, *exc):
        cuda = self._bk.xp.cuda
        self._prev_stream.use()
        if self._prev_device != self._bk.device_id:
            cuda.runtime.setDevice(self._prev_device)
        return False


def on_device(method):
    """Decorator for methods of objects with a ``backend``: the method runs inside
    ``self.backend.activate()``, so its CuPy work goes to the backend's stream from
    whatever thread calls it (see :meth:`Backend.activate`)."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self.backend.activate():
            return method(self, *args, **kwargs)

    return run


# splitmix64's constants (Steele, Lea and Flood 2014): the mix is a bijection of 64-bit words
_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1


def _splitmix64(z):
    """splitmix64's finaliser of one Python int (the host-side twin of counter_permutation's)."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def counter_permutation(xp, seed, n):
    """A random permutation of range(n), int64, from ``seed`` alone, counter-based: the
    order that sorts key_i = splitmix64(i * golden + offset(seed)). The keys are
    distinct (both maps are bijections of 64-bit words), so the order is unique
    whatever the sort. No generator state exists: a few elementwise operations and
    one sort, the same permutation with NumPy or CuPy."""
    u = xp.uint64
    key = xp.arange(n, dtype=u)
    key *= u(_GOLDEN)  # wraps modulo 2**64, as intended
    key += u(_splitmix64(int(seed) * _GOLDEN + _MIX1))
    key ^= key >> u(30)
    key *= u(_MIX1)
    key ^= key >> u(27)
    key *= u(_MIX2)
    key ^= key >> u(31)
    return xp.argsort(key).astype(xp.int64, copy=False)


class Backend:
    """Array module, device and kernels for one device.

    Attributes
        name     "cpu" or "cuda:N"
        xp       numpy or cupy
        kernels  fastmlp.kernels.KernelSet for this device
    """

    def __init__(self, name, xp, kernels, device_id=None, stream=None):
        self.name = name
        self.xp = xp
        self.kernels = kernels
        self.device_id = device_id
        self.stream = stream  # CUDA: the one non-blocking CuPy stream all work goes to

    def __repr__(self):
        return f"Backend({self.name!r})"

    @property
    def is_gpu(self):
        return self.device_id is not None

    def asarray(self, a, dtype=None):
        """Copy a host (or same-device) array onto this device, C-contiguous."""
        return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=dtype))

    def to_host(self, a):
        """A NumPy copy (or the array itself if already on the host)."""
        if isinstance(a, np.ndarray) or np.isscalar(a):
            return np.asarray(a)
        return a.get()

    def synchronize(self):
        """Wait for all queued work on this device (no-op on the CPU)."""
        if self.is_gpu:
            self.stream.synchronize()

    def activate(self):
        """A context in which CuPy queues its work on this backend's device and stream,
        the stream the Numba kernels use, in whatever thread enters it (CuPy's current
        device and stream are per thread: a thread that did not build the backend
        would otherwise queue on the legacy default stream, which the kernels'
        non-blocking stream does not wait for). No-op on the CPU."""
        return _OnDevice(self) if self.is_gpu else _NO_CONTEXT

    def kernel_array(self, a):
        """``a`` as the kernels take it fastest: on CUDA a CuPy array becomes a Numba
        device view (``sync=False``), made once instead of at every launch."""
        if self.is_gpu and type(a).__module__.startswith("cupy"):
            from numba import cuda

            return cuda.as_cuda_array(a, sync=False)
        return a

    def capture(self, fn):
        """Run ``fn`` (kernel launches only) under CUDA stream capture and return the
        graph; ``graph.launch(stream=backend.stream)`` replays it. A failure ends the
        capture before it propagates, so the stream stays usable."""
        s = self.stream
        with self.activate():
            s.begin_capture()
            try:
                fn()
            except BaseException as exc:
                # end the capture, but raise what went wrong in fn: an invalidated capture
                # makes end_capture fail too, and its error would hide the cause
                try:
                    s.end_capture()
                except Exception as end_exc:
                    if hasattr(exc, "add_note"):  # Python 3.11+
                        exc.add_note(f"ending the stream capture then failed too: {_error_line(end_exc)}")
                raise
            return s.end_capture()

    def shuffle(self, seed, n):
        """A random permutation of range(n), int64 on this device, from ``seed`` alone.

        CPU: ``numpy.random.default_rng(seed).permutation(n)``. GPU: counter-based
        (:func:`counter_permutation`): no generator is built (CuPy's default one sets
        up some 270,000 curand states each time), a few elementwise kernels and one
        sort; the host computes the same permutation with
        ``counter_permutation(numpy, seed, n)``."""
        if self.is_gpu:
            return counter_permutation(self.xp, seed, n)
        return np.random.default_rng(seed).permutation(n)

    def rng(self, seed):
        """A random generator that lives on this device. Building one on a GPU costs
        milliseconds (curand state set-up): shuffles use :meth:`shuffle`."""
        if self.is_gpu:
            return self.xp.random.default_rng(seed)
        return np.random.default_rng(seed)

    def permutation(self, rng, n):
        """A random permutation of range(n) as a device array of int64."""
        if self.is_gpu:
            # CuPy's Generator has no permutation(); sorting random keys gives one on the device.
            return self.xp.argsort(rng.random(n))
        return rng.permutation(n)


def _cpu_backend():
    from . import kernels

    return Backend("cpu", np, kernels.CPU_KERNELS)


def _cuda_backend(device_id):
    try:
        import cupy
    except ImportError as exc:
        raise DeviceError(f"device 'cuda' needs CuPy, which is not importable ({exc}); {_CUDA_INSTALL_HINT}") from None
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CuPy raises its own CUDARuntimeError without a driver or GPU
        raise DeviceError(f"device 'cuda' asked for, but CUDA reports no usable GPU ({exc}); use FASTMLP_DEVICE=cpu") from None
    if n == 0:
        raise DeviceError("device 'cuda' asked for, but this machine has no CUDA GPU; use FASTMLP_DEVICE=cpu")
    if not 0 <= device_id < n:
        raise DeviceError(f"device 'cuda:{device_id}' does not exist: this machine has {n} GPU(s), cuda:0..cuda:{n - 1}")
    try:
        from numba import cuda as numba_cuda
    except ImportError as exc:
        raise DeviceError(f"device 'cuda' needs numba-cuda ({exc}); {_CUDA_INSTALL_HINT}") from None
    if not numba_cuda.is_available():
        raise DeviceError(f"Numba cannot use the GPU although CuPy can; {_CUDA_INSTALL_HINT}")

    from . import kernels

    cupy.cuda.Device(device_id).use()
    numba_cuda.select_device(device_id)
    # Prove the whole toolchain now (compile, link, load, launch), not at the first
    # training step: a PTX ISA or an nvJitLink newer than the driver fails only there.
    problem = cuda_toolchain_problem()
    if problem:
        compiler = numba_compiler_problem()  # no PTX at all: NVVM or libdevice is missing
        if compiler:
            raise DeviceError(f"Numba finds the GPU but cannot compile CUDA kernels ({compiler}); {_COMPILER_HINT}")
        raise toolchain_error(device_id, problem, toolchain_versions())
    # One non-blocking stream for everything: CUDA graphs cannot be captured on the
    # legacy default stream, and CuPy and Numba must queue on the same stream to be
    # ordered. CuPy's current stream is per thread; Backend.activate() sets it.
    stream = cupy.cuda.Stream(non_blocking=True)
    stream.use()
    launch_stream = numba_cuda.external_stream(stream.ptr)
    return Backend(f"cuda:{device_id}", cupy, kernels.cuda_kernels(launch_stream), device_id=device_id, stream=stream)


def parse_device(device):
    """'cpu' | 'cuda' | 'cuda:N' -> ('cpu', None) | ('cuda', N); anything else is a DeviceError."""
    text = str(device).strip().lower()
    if text == "cpu":
        return "cpu", None
    if text in ("cuda", "gpu"):
        return "cuda", 0
    if text.startswith("cuda:") and text[5:].isdigit():
        return "cuda", int(text[5:])
    raise DeviceError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N' (set with --device or {ENV_VAR})")


_cache: dict = {}


def get_backend(device=None):
    """The backend for ``device``, or ``$FASTMLP_DEVICE``, or the CPU.

    A Backend is returned unchanged; asking for CUDA where it cannot run is a
    :class:`DeviceError`, never a quiet fall back to the CPU.
    """
    if isinstance(device, Backend):
        return device
    if device is None:
        device = os.environ.get(ENV_VAR) or "cpu"
    kind, idx = parse_device(device)
    key = (kind, idx)
    if key not in _cache:
        _cache[key] = _cpu_backend() if kind == "cpu" else _cuda_backend(idx)
    return _cache[key]


def namespace_of(*arrays):
    """numpy or cupy, from the arrays themselves; mixing the two is a TypeError naming both."""
    mods = set()
    for a in arrays:
        mod = type(a).__module__.split(".")[0]
        if mod == "cupy" and "cupy" in sys.modules:
            mods.add("cupy")
        else:
            mods.add("numpy")
    if len(mods) > 1:
        raise TypeError(f"arrays from different backends mixed: {sorted(mods)}; move them to one device first")
    return sys.modules["cupy"] if mods == {"cupy"} else np
