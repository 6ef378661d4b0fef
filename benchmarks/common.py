"""What every benchmark shares: the machine description, the GEMM peak, saving results."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

import fastmlp
from fastmlp.io import atomic_write

# Where results are written and read: benchmarks/results/, or $FASTMLP_BENCH_RESULTS
# (the tests point it at a temporary folder so they never touch the committed files).
RESULTS = Path(os.environ.get("FASTMLP_BENCH_RESULTS") or Path(__file__).parent / "results")


def machine(devices=()):
    """CPU model, core count, GPU names and library versions, for a results file."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numba

    info = {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "fastmlp": fastmlp.__version__,
        "platform": platform.platform(),
    }
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except (TypeError, KeyError):  # older NumPy without mode="dicts"
        pass
    from fastmlp import blas

    # what runs the CPU's matrix multiplies now: library, kernel family, threads (threadpoolctl)
    info["blas_runtime"] = blas.describe()
    info["blas_libraries"] = blas.libraries()
    info["blas_notice"] = blas.notice()
    for name in ("torch", "sklearn", "cupy"):
        try:
            mod = __import__(name)
            info[name] = mod.__version__
        except ImportError:
            pass
    if "torch" in info:
        info["torch_threads"] = __import__("torch").get_num_threads()
    for device in devices:
        if str(device).startswith("cuda"):
            try:
                bk = fastmlp.get_backend(device)
            except fastmlp.DeviceError:
                continue
            import cupy

            props = cupy.cuda.runtime.getDeviceProperties(bk.device_id)
            name = props["name"]
            info.setdefault("gpus", {})[bk.name] = name.decode() if isinstance(name, bytes) else name
            info["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    return info


def load_pixels_and_floats(name, data_dir=None):
    """(uint8 dataset, the same as float32 in [0, 1]): fastmlp trains on the first, as
    its CLI does; the peers on the second, as load_dataset(normalize=True) gives it."""
    raw = fastmlp.load_dataset(name, data_dir=data_dir, normalize=False)

    def floats(x):  # what load_dataset(normalize=True) computes
        return np.divide(x, np.float32(255.0), dtype=np.float32)

    return raw, dataclasses.replace(raw, x_train=floats(raw.x_train), x_test=floats(raw.x_test))


def sgemm_peak(n=2048, repeats=5):
    """GFLOP/s of a large float32 matrix multiply on the CPU: the practical peak
    that epoch throughput is compared with."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, a, out=out)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, a, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def speed_probe(repeats=300):
    """Microseconds per float32 (128 x 784) @ (784 x 128) matrix multiply (median of
    five timings): a reading of how fast this shared machine runs right now, kept
    beside timings so that a row taken while the host was slow can be told apart."""
    rng = np.random.default_rng(0)
    a, b = rng.random((128, 784), dtype=np.float32), rng.random((784, 128), dtype=np.float32)
    out = np.empty((128, 128), dtype=np.float32)
    for _ in range(repeats // 3):
        np.matmul(a, b, out=out)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeats):
            np.matmul(a, b, out=out)
        times.append((time.perf_counter() - t0) / repeats * 1e6)
    return sorted(times)[2]


def gemm_only_epoch(model, ws, steps, batch):
    """The epoch's matrix multiplies alone, in the trainer's order, into its buffers."""
    layers, acts, dacts = model.layers, ws.acts, ws.dacts
    ones = np.ones(batch, dtype=model.dtype)
    grads = model.views(np.empty_like(model.params))
    x = ws.x[:batch]
    t0 = time.perf_counter()
    for _ in range(steps):
        a = x
        for l, layer in enumerate(layers):
            np.matmul(a, layer.W, out=acts[l + 1][:batch])
            a = acts[l + 1][:batch]
        delta = acts[-1][:batch]
        for l in range(len(layers) - 1, -1, -1):
            a_in = x if l == 0 else acts[l][:batch]
            np.matmul(a_in.T, delta, out=grads[l].W)
            np.matmul(ones[:batch], delta, out=grads[l].b)
            if l > 0:
                np.matmul(delta, layers[l].W.T, out=dacts[l][:batch])
                delta = dacts[l][:batch]
    return time.perf_counter() - t0


def gemm_flops_per_sample(sizes):
    """Multiply-add FLOPs of one training sample: forward x @ W, backward dW and
    dX (no dX for the input layer, which fastmlp skips and so do the peers)."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    fwd = sum(2 * a * b for a, b in pairs)
    dx = sum(2 * a * b for a, b in pairs[1:])
    return 2 * fwd + dx


def save(result, name):
    """Write ``result`` as JSON to benchmarks/results/<name>.json (atomically); returns the path."""
    path = RESULTS / f"{name}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(json.dumps(result, indent=1).encode()))
    return path


def stamp():
    return time.strftime("%Y-%m-%dT%H:%M:%S")
