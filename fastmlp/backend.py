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
import os
import sys

import numpy as np

from .errors import DeviceError

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
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")[:300]
    return None


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
        """A context in which CuPy queues its work on this backend's stream, the one
        the Numba kernels use (CuPy's current stream is per thread). No-op on the CPU."""
        return self.stream if self.is_gpu else contextlib.nullcontext()

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
        with s:
            s.begin_capture()
            try:
                fn()
            finally:
                graph = s.end_capture()
        return graph

    def rng(self, seed):
        """A random generator that lives on this device (for shuffling)."""
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
    problem = numba_compiler_problem()
    if problem:
        raise DeviceError(f"Numba finds the GPU but cannot compile CUDA kernels ({problem}); {_COMPILER_HINT}")

    from . import kernels

    cupy.cuda.Device(device_id).use()
    numba_cuda.select_device(device_id)
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
