"""The measurements behind benchmarks.gpu_check, each run as its own child process.

    python -m benchmarks.gpu_probes {setup,environment,micro,capture,parity,gemm,ncu,ncu-target} --out DIR

Each probe writes DIR/<probe>.json holding "status" ("ok" or "failed"), with
a "reason" when it failed, a one-line "note" for gpu_check's table, and its
measurements; it exits non-zero when it failed. Inside a probe every part is
tried on its own, so one exception costs that part only and its text is
recorded. Only the standard library is imported at the top: fastmlp, CuPy,
Numba and PyTorch are imported by the probes that use them.

The network and recipe are those of benchmarks.epoch: 784-128-64-10 ReLU,
batch 128, SGD with momentum 0.9, lr 0.05.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import io
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES, BATCH, LR, MOMENTUM = (784, 128, 64, 10), 128, 0.05, 0.9
FIX = "python3 -m pip install --no-deps --no-build-isolation -e ."
OK, FAILED = "ok", "failed"


def _error(exc):
    return f"{type(exc).__name__}: {exc}".strip()[:500]


def _run(argv, timeout=60, env=None):
    """(exit status, stdout + stderr) of a short command; (None, why) if it cannot run."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, _error(exc)
    return proc.returncode, proc.stdout + proc.stderr


# --------------------------------------------------------------------------
# setup: is fastmlp (with fastmlp.kernels) importable from this checkout?
# --------------------------------------------------------------------------

IMPORT_CHECK = "import json, fastmlp, fastmlp.kernels; print(json.dumps([fastmlp.__file__, fastmlp.kernels.__file__]))"


def _import_check(python):
    rc, out = _run([*python, "-c", IMPORT_CHECK], timeout=120)
    if rc != 0:
        lines = [ln for ln in out.splitlines() if ln.strip()]
        return None, lines[-1] if lines else out
    files = json.loads(out.strip().splitlines()[-1])
    outside = [f for f in files if not Path(f).resolve().is_relative_to(ROOT)]
    if outside:
        return None, f"fastmlp imports from {outside[0]}, not from this checkout ({ROOT})"
    return files, ""


HOOK_MODULE = "fastmlp_checkout_hook"
HOOK = '''"""Written by python -m benchmarks.gpu_probes setup, because pip install -e failed:
imports fastmlp from {root}/fastmlp and fastmlp.kernels from {root}/kernels,
as the editable install would. Delete this file and {module}.pth to undo."""
import importlib.abc
import importlib.util
import sys

PACKAGES = {{"fastmlp": {root!r} + "/fastmlp", "fastmlp.kernels": {root!r} + "/kernels"}}


class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        where = PACKAGES.get(name)
        if where is None:
            return None
        return importlib.util.spec_from_file_location(name, where + "/__init__.py", submodule_search_locations=[where])


if not any(isinstance(f, Finder) for f in sys.meta_path):
    sys.meta_path.insert(0, Finder())
'''


def write_import_hook(folder):
    """The fallback when pip cannot install (say, an old setuptools): a module and a
    .pth file in ``folder`` (site-packages) that every Python started later runs."""
    folder = Path(folder)
    (folder / f"{HOOK_MODULE}.py").write_text(HOOK.format(root=str(ROOT), module=HOOK_MODULE))
    (folder / f"{HOOK_MODULE}.pth").write_text(f"import {HOOK_MODULE}\n")
    return folder / f"{HOOK_MODULE}.py"


def setup(install=True, python=(sys.executable,)):
    """fastmlp importable from ROOT? If not importable at all (a bare machine) and
    ``install``: the offline editable install, and if pip fails, an import hook in
    site-packages; the check again after each. A fastmlp from another checkout is
    reported, never replaced."""
    files, why = _import_check(python)
    result = {"python": list(python), "installed": None, "fix": FIX}
    if files is None and install and "not from this checkout" not in why:
        rc, out = _run([*python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(ROOT)],
                       timeout=100)
        result["pip"] = out[-3000:]
        files, why = _import_check(python)
        result["installed"] = "pip install -e ." if files else None
        if files is None:
            rc, site = _run([*python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
            try:
                result["hook"] = str(write_import_hook(site.strip()))
            except OSError as exc:
                result["hook"] = _error(exc)
            files, why = _import_check(python)
            result["installed"] = "import hook in site-packages" if files else None
    if files is None:
        return {**result, "status": FAILED, "reason": f"fastmlp is not usable: {why}; fix: {FIX}"}
    how = f"after {result['installed']}" if result["installed"] else "already"
    return {**result, "status": OK, "files": files, "note": f"fastmlp importable from {Path(files[0]).parent} ({how})"}


# --------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------

PACKAGES = ("numpy", "numba", "numba-cuda", "llvmlite", "cupy-cuda13x", "cupy-cuda12x", "torch", "pytest",
            "scikit-learn", "fastmlp")
TOOLS = ("nvidia-smi", "compute-sanitizer", "ncu", "nvcc")
SMI_FIELDS = "name,driver_version,memory.total,compute_cap,clocks.max.sm,power.limit"


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cupy_info():
    import cupy

    rt = cupy.cuda.runtime
    info = {"version": cupy.__version__, "devices": rt.getDeviceCount()}
    info.update(runtime=rt.runtimeGetVersion(), driver=rt.driverGetVersion())
    if info["devices"]:
        p = rt.getDeviceProperties(0)
        name = p["name"]
        info.update(name=name.decode() if isinstance(name, bytes) else name, cc=f"{p['major']}.{p['minor']}",
                    memory_gib=round(p["totalGlobalMem"] / 2**30, 1), sms=p["multiProcessorCount"])
    return info


def _torch_info():
    import torch

    info = {"version": torch.__version__, "cuda": torch.version.cuda, "available": torch.cuda.is_available()}
    info["devices"] = torch.cuda.device_count() if info["available"] else 0
    if info["devices"]:
        info["name"] = torch.cuda.get_device_name(0)
    return info


def _numba_info():
    from numba import cuda

    info = {"available": bool(cuda.is_available())}
    if info["available"]:
        dev = cuda.get_current_device()
        name = dev.name
        info.update(name=name.decode() if isinstance(name, bytes) else name, cc=".".join(map(str, dev.compute_capability)))
        try:
            info["driver"] = ".".join(map(str, cuda.cudadrv.driver.driver.get_version()))
        except Exception as exc:  # an internal API: its absence must not hide the device found above
            info["driver"] = _error(exc)
    return info


# In a child process, so that a failed NVVM look-up is not remembered for the next try.
_COMPILE_CHECK = (
    "import json\n"
    "from fastmlp.backend import numba_compiler_problem\n"
    "found = {'problem': numba_compiler_problem()}\n"
    "from fastmlp.backend import cuda_toolchain_problem, toolchain_versions\n"
    "found['versions'] = toolchain_versions()\n"
    "try:\n"
    "    from numba import cuda\n"
    "    gpu = cuda.is_available()\n"
    "except Exception:\n"
    "    gpu = False\n"
    "if gpu and found['problem'] is None:  # compile, link, load and launch, as the backend's start-up does\n"
    "    found['launch'] = cuda_toolchain_problem()\n"
    "    if found['launch']:\n"
    "        found['problem'] = 'compiles, but the probe kernel does not run: ' + found['launch']\n"
    "try:\n"
    "    from numba.cuda.cuda_paths import get_cuda_paths\n"
    "    found['nvvm'] = str(get_cuda_paths()['nvvm'])\n"
    "except Exception as exc:\n"
    "    found['nvvm'] = f'{type(exc).__name__}: {exc}'[:300]\n"
    "print(json.dumps(found))\n"
)


def driver_cuda_version():
    """(major, minor) of the CUDA version the NVIDIA driver supports, from libcuda's
    cuDriverGetVersion (no CUDA initialisation), or None."""
    import ctypes

    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        v = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(v)) == 0 and v.value:
            return v.value // 1000, v.value % 1000 // 10
    return None


def _folder_version(folder):
    import re

    m = re.search(r"cuda-(\d+)\.(\d+)", Path(folder).name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def order_toolkits(folders, driver):
    """Versioned toolkit folders (cuda-X.Y) in the order to try: those no newer than the
    driver's CUDA first, newest first (NVVM's PTX and nvJitLink must not be newer than
    the driver), then the newer ones, oldest first; unknown versions last."""
    known = [(v, f) for f in folders if (v := _folder_version(f))]
    fits = sorted((vf for vf in known if driver is None or vf[0] <= tuple(driver)), reverse=True)
    newer = sorted(vf for vf in known if driver is not None and vf[0] > tuple(driver))
    return [f for _, f in fits + newer] + [f for f in folders if not _folder_version(f)]


def toolkit_roots(candidates=None, driver=None):
    """CUDA toolkit folders that hold NVVM (nvvm/lib64/libnvvm.so*), in the order tried:
    $CUDA_HOME, $CUDA_PATH, nvcc's toolkit, /usr/local/cuda, then /usr/local/cuda-* by
    :func:`order_toolkits` (no newer than the driver first)."""
    if candidates is None:
        nvcc = shutil.which("nvcc")
        candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
                      str(Path(nvcc).resolve().parents[1]) if nvcc else None, "/usr/local/cuda",
                      *order_toolkits([str(p) for p in Path("/usr/local").glob("cuda-*")],
                                      driver or driver_cuda_version())]
    roots = []
    for root in candidates:
        if root and root not in roots and any(Path(root).glob("nvvm/lib64/libnvvm.so*")):
            roots.append(root)
    return roots


def _compile_check(env):
    rc, text = _run([sys.executable, "-c", _COMPILE_CHECK], timeout=120, env=env)
    for line in reversed(text.strip().splitlines()):  # warnings on stderr may follow the answer
        try:
            found = json.loads(line)
        except ValueError:
            continue
        if isinstance(found, dict) and "problem" in found:
            return found
    return {"problem": f"the check itself failed (exit {rc}): {text.strip()[-300:]}"}


def numba_compiler(roots=None):
    """Can Numba compile a CUDA kernel here (NVVM and libdevice found)? If not, the
    first toolkit folder with which it can, as CUDA_HOME for the steps after this one."""
    info = {"as_is": _compile_check(dict(os.environ))}
    if info["as_is"]["problem"]:
        info["tried"] = {}
        for root in toolkit_roots() if roots is None else roots:
            found = info["tried"][root] = _compile_check({**os.environ, "CUDA_HOME": root})
            if not found["problem"]:
                info["cuda_home"] = root
                break
    return info


def _fastmlp_info():
    import fastmlp

    try:
        return {"cuda_backend": fastmlp.get_backend("cuda").name}
    except fastmlp.DeviceError as exc:
        return {"cuda_backend": None, "error": str(exc)}


def _machine():
    from benchmarks import common

    return common.machine()


def environment(out):
    info = {"python": platform.python_version(), "executable": sys.executable, "platform": platform.platform(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "versions": {p: _version(p) for p in PACKAGES}, "tools": {t: shutil.which(t) for t in TOOLS}}
    info["tool_versions"] = {}
    for tool, path in info["tools"].items():
        if path:
            rc, text = _run([path, "--version"], timeout=30)
            info["tool_versions"][tool] = [ln for ln in text.splitlines() if ln.strip()][-1:] if text else None
    smi = info["tools"]["nvidia-smi"]
    if smi:
        rc, text = _run([smi], timeout=30)
        (out / "nvidia-smi.txt").write_text(text)
        rc, text = _run([smi, f"--query-gpu={SMI_FIELDS}", "--format=csv,noheader"], timeout=30)
        info["nvidia_smi"] = ([dict(zip(SMI_FIELDS.split(","), (v.strip() for v in line.split(","))))
                               for line in text.strip().splitlines()] if rc == 0 else {"error": text.strip()[-300:]})
    for key, probe in (("cupy", _cupy_info), ("torch", _torch_info), ("numba_cuda", _numba_info),
                       ("numba_compiler", numba_compiler), ("fastmlp", _fastmlp_info), ("machine", _machine)):
        try:
            info[key] = probe()
        except Exception as exc:  # ImportError, or CUDA errors without a driver: each recorded, none fatal
            info[key] = {"error": _error(exc)}
    seen = {"CuPy": info["cupy"].get("name"), "PyTorch": info["torch"].get("name"), "Numba": info["numba_cuda"].get("name")}
    info["gpu"] = next((name for name in seen.values() if name), None)
    if info["gpu"] is None:
        why = [f"CuPy: {info['cupy'].get('error') or 'no device'}",
               f"PyTorch: {info['torch'].get('error') or 'torch.cuda.is_available() is False'}",
               f"Numba: {info['numba_cuda'].get('error') or 'cuda.is_available() is False'}"]
        if isinstance(info.get("nvidia_smi"), list) and info["nvidia_smi"]:
            why.append(f"nvidia-smi lists {info['nvidia_smi'][0].get('name')} but no CUDA library sees it "
                       f"(CUDA_VISIBLE_DEVICES={info['cuda_visible_devices']!r})")
        info["gpu_reason"] = "; ".join(why)
    v = info["versions"]
    libs = ", ".join(f"{name} {v[pkg] or 'not installed'}" for name, pkg in (
        ("CuPy", "cupy-cuda13x" if v["cupy-cuda13x"] else "cupy-cuda12x"), ("Numba", "numba"),
        ("numba-cuda", "numba-cuda"), ("PyTorch", "torch")))
    compiler = info["numba_compiler"]
    info["toolchain"] = (compiler.get("as_is") or {}).get("versions") or {}
    tc = info["toolchain"]
    if tc:
        libs += (f"; driver CUDA {tc.get('driver_cuda') or 'unknown'}, NVVM {tc.get('nvvm') or 'not found'} "
                 f"(PTX ISA {tc.get('nvvm_ptx_isa') or '?'}), nvJitLink {tc.get('nvjitlink') or 'not found'}")
    if compiler.get("cuda_home"):
        libs += f"; Numba compiles only with CUDA_HOME={compiler['cuda_home']}, set for the next steps"
    elif "as_is" in compiler and compiler["as_is"]["problem"]:
        libs += f"; Numba cannot compile CUDA kernels: {compiler['as_is']['problem']}"
    if info["gpu"]:
        smi = info.get("nvidia_smi")
        drv = smi[0].get("driver_version") if isinstance(smi, list) and smi else None
        info["note"] = f"{info['gpu']}, driver {drv}, CUDA runtime {info['cupy'].get('runtime')}; {libs}"
    else:
        info["note"] = f"no CUDA GPU; {libs}"
    info["status"] = OK
    return info


# --------------------------------------------------------------------------
# micro: host cost per call
# --------------------------------------------------------------------------

RAW_RELU_BACKWARD = r"""
extern "C" __global__ void relu_backward(const float* out, float* dout, int n) {
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    if (i < n && !(out[i] > 0.0f)) dout[i] *= 0.0f;
}
"""


def per_call_us(fn, sync, calls, repeats, warmup=20):
    """Median microseconds per call over ``repeats`` runs of ``calls`` calls, synchronised
    before and after each run: 'enqueue' stops the clock when the last call returns
    (the host's cost while the GPU keeps up), 'wall' after the GPU has finished too."""
    for _ in range(warmup):
        fn()
    enqueue, wall = [], []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        t1 = time.perf_counter()
        sync()
        t2 = time.perf_counter()
        enqueue.append((t1 - t0) / calls * 1e6)
        wall.append((t2 - t0) / calls * 1e6)
    return {"enqueue_us": statistics.median(enqueue), "wall_us": statistics.median(wall), "min_enqueue_us": min(enqueue),
            "calls": calls, "repeats": repeats}


def micro(quick=False):
    """Host cost per call of one small launch in each of the ways fastmlp could make it.
    The Numba kernel is the probe's own copy of relu_backward, so this does not
    depend on how fastmlp's kernels are laid out; fastmlp's launcher is one more row."""
    import cupy
    import numpy as np
    from numba import cuda

    calls, repeats = (300, 5) if quick else (1000, 15)
    results = {}
    device_sync = cupy.cuda.Device().synchronize

    def measure(name, build, sync=device_sync):
        """build() returns the call to time; its own failure is this row's error."""
        try:
            results[name] = per_call_us(build(), sync, calls, repeats)
        except Exception as exc:
            results[name] = {"error": _error(exc)}

    @cuda.jit
    def relu_backward(out, dout):
        k = cuda.grid(1)
        cols = out.shape[1]
        if k < out.shape[0] * cols and not out[k // cols, k % cols] > 0:
            dout[k // cols, k % cols] *= dout.dtype.type(0)

    T = 128
    rng = cupy.random.default_rng(0)
    a, b = rng.standard_normal((BATCH, 128), dtype=cupy.float32), cupy.ones((BATCH, 128), dtype=cupy.float32)
    c = cupy.empty_like(b)
    blocks = -(-a.size // T)
    ptr = cupy.cuda.get_current_stream().ptr
    stream = cuda.external_stream(ptr) if ptr else cuda.default_stream()
    da, db = cuda.as_cuda_array(a, sync=False), cuda.as_cuda_array(b, sync=False)

    def wrap_per_call():
        return lambda: relu_backward[blocks, T, stream](cuda.as_cuda_array(a, sync=False), cuda.as_cuda_array(b, sync=False))

    def fastmlp_launcher():
        from fastmlp.kernels import cuda_kernels

        launch = cuda_kernels(stream).relu_backward
        return lambda: launch(a, b)

    def configured():
        launch = relu_backward[blocks, T, stream]
        return lambda: launch(da, db)

    def raw_kernel():
        raw, n = cupy.RawKernel(RAW_RELU_BACKWARD, "relu_backward"), np.int32(a.size)
        return lambda: raw((blocks,), (T,), (a, b, n))

    def cupy_matmul():
        x, w = rng.standard_normal((BATCH, 784), dtype=cupy.float32), rng.standard_normal((784, 128), dtype=cupy.float32)
        o = cupy.empty((BATCH, 128), dtype=cupy.float32)
        return lambda: cupy.matmul(x, w, out=o)

    measure("numba launch, as_cuda_array per call", wrap_per_call)
    measure("numba launch, pre-wrapped arrays", lambda: lambda: relu_backward[blocks, T, stream](da, db))
    measure("numba launch, pre-configured, pre-wrapped", configured)
    measure("fastmlp launcher (relu_backward)", fastmlp_launcher)
    measure("cupy RawKernel", raw_kernel)
    measure("cupy ufunc (multiply, out=)", lambda: lambda: cupy.multiply(a, b, out=c))
    measure("cupy.matmul 128x784x128 (out=)", cupy_matmul)
    try:
        import torch

        tx, tw = torch.randn(BATCH, 784, device="cuda"), torch.randn(784, 128, device="cuda")
        to = torch.empty(BATCH, 128, device="cuda")
        measure("torch.mm 128x784x128 (out=)", lambda: lambda: torch.mm(tx, tw, out=to), sync=torch.cuda.synchronize)
    except Exception as exc:
        results["torch.mm 128x784x128 (out=)"] = {"error": _error(exc)}

    errors = {k: v["error"] for k, v in results.items() if "error" in v}
    note = ", ".join(f"{k.split(' (')[0]} {v['enqueue_us']:.1f}" for k, v in results.items() if "error" not in v)
    out = {"unit": "microseconds per call (median)", "array": [BATCH, 128], "results": results,
           "note": f"enqueue µs/call: {note}" + (f"; {len(errors)} failed" if errors else "")}
    if errors:
        out.update(status=FAILED, reason="; ".join(f"{k}: {v}" for k, v in errors.items())[:500])
    else:
        out["status"] = OK
    return out


# --------------------------------------------------------------------------
# capture: Numba kernels inside a CuPy stream capture
# --------------------------------------------------------------------------


def capture(replays=50):
    """Launch Numba kernels on a CuPy stream while it captures, replay the graph
    ``replays`` times and check the result. Each variant is its own try."""
    import cupy
    import numpy as np
    from numba import cuda

    from fastmlp import kernels

    @cuda.jit
    def increment(a):
        i = cuda.grid(1)
        if i < a.size:
            a[i] += 1

    n, T = 1000, 128
    blocks = -(-n // T)

    def counting(per_launch_wrap):
        """a += 1 (Numba), then b += a (CuPy) in the same graph: after N replays
        a == N and b == N (N + 1) / 2, unless a launch ran outside the capture."""

        def variant(ns, s):
            a, b = cupy.zeros(n, dtype=cupy.float32), cupy.zeros(n, dtype=cupy.float32)
            da = cuda.as_cuda_array(a, sync=False)

            def body():
                increment[blocks, T, ns](cuda.as_cuda_array(a, sync=False) if per_launch_wrap else da)
                cupy.add(b, a, out=b)

            def check():
                return (bool((a == replays).all()) and bool((b == replays * (replays + 1) / 2).all()),
                        f"a[0] = {float(a[0])}, b[0] = {float(b[0])}; want {replays} and {replays * (replays + 1) / 2}")

            return body, (a, b), check, None

        return variant

    def fastmlp_sgd(ns, s):
        """fastmlp's own launcher (sgd_update with momentum, float64) replayed N times
        against N steps of the NumPy reference."""
        rng = np.random.default_rng(0)
        p0, g, v0 = (rng.standard_normal(n) for _ in range(3))
        p, dg, v = cupy.asarray(p0), cupy.asarray(g), cupy.asarray(v0)
        launch = kernels.cuda_kernels(ns).sgd_update
        rates = cupy.asarray(np.array([[0.01, 1e-3]]))  # (lr, weight decay) of step 0
        state = cupy.zeros(2, dtype=np.int64)  # no advance kernel here: every replay is step 0

        def body():
            launch(p, dg, v, rates, state, 0.9, False, n // 2)

        def check():
            want_p, want_v = p0, v0
            for _ in range(replays):
                want_p, want_v = kernels.sgd_update_reference(want_p, g, want_v, 0.01, 0.9, False, 1e-3, n // 2)
            err = float(np.max(np.abs(p.get() - want_p) / (np.abs(want_p) + 1e-12)))
            return err < 1e-10, f"worst relative difference from the reference {err:.3g}"

        return body, (p, v), check, (p0, v0)

    results = {}
    variants = {"Numba kernel, pre-wrapped array, + CuPy op": counting(False),
                "Numba kernel, as_cuda_array(sync=False) per launch, + CuPy op": counting(True),
                "fastmlp launcher (sgd_update)": fastmlp_sgd}
    for name, make in variants.items():
        try:
            results[name] = _capture_variant(cupy, cuda, make, replays)
        except Exception as exc:
            results[name] = {"ok": False, "error": _error(exc)}
    bad = [k for k, v in results.items() if not v.get("ok")]
    out = {"replays": replays, "results": results,
           "note": "; ".join(f"{k}: {'ok' if v.get('ok') else 'FAILED'}" for k, v in results.items())}
    if bad:
        out.update(status=FAILED, reason="; ".join(f"{k}: {results[k].get('error') or results[k].get('detail')}" for k in bad))
    else:
        out["status"] = OK
    return out


def _capture_variant(cupy, cuda, make, replays):
    s = cupy.cuda.Stream(non_blocking=True)
    ns = cuda.external_stream(s.ptr)
    body, arrays, check, initial = make(ns, s)  # initial: the arrays' starting values (None: zeros)
    with s:
        body()  # compile and load the kernels before capturing
        for arr, start in zip(arrays, initial or [None] * len(arrays)):
            arr[...] = 0 if start is None else cupy.asarray(start)
        s.synchronize()
        before = [arr.copy() for arr in arrays]
        s.begin_capture()
        try:
            body()
        finally:
            graph = s.end_capture()
        s.synchronize()
        ran_eagerly = any(bool((arr != old).any()) for arr, old in zip(arrays, before))
        for _ in range(replays):
            graph.launch(s)
        s.synchronize()
        ok, detail = check()
    return {"ok": ok and not ran_eagerly, "ran_during_capture": ran_eagerly, "detail": detail}


# --------------------------------------------------------------------------
# parity: one epoch on the CPU and on the GPU, same batch order
# --------------------------------------------------------------------------

PARITY_TOL = {"float32": (1e-3, 1e-4), "float64": (1e-10, 0.0)}  # (rtol, atol): |gpu - cpu| <= atol + rtol |cpu|
REL_FLOOR = 1e-6  # max_rel divides by max(|cpu|, REL_FLOOR), so a parameter near 0 does not blow it up


def compare_params(cpu, gpu, dtype):
    import numpy as np

    cpu, gpu = np.asarray(cpu, dtype=np.float64), np.asarray(gpu, dtype=np.float64)
    d = np.abs(gpu - cpu)
    rtol, atol = PARITY_TOL[dtype]
    bad = d > atol + rtol * np.maximum(np.abs(cpu), REL_FLOOR if dtype == "float64" else 0)
    rel = d / np.maximum(np.abs(cpu), REL_FLOOR)
    return {"max_abs": float(d.max()), "max_rel": float(rel.max()), "worst_index": int(rel.argmax()),
            "norm_rel": float(np.linalg.norm(d) / np.linalg.norm(cpu)), "outside_tolerance": int(bad.sum()),
            "rtol": rtol, "atol": atol, "ok": not bad.any()}


def _one_epoch(device, dtype, ds, perm, mode):
    import fastmlp
    from benchmarks import peers

    model = fastmlp.MLP(SIZES, dtype=dtype, device=device, seed=0)
    trainer = peers.make_trainer(model, mode, lr=LR, momentum=MOMENTUM, batch_size=BATCH, schedule="constant",
                                 progress=False, log=None)
    h = trainer.fit(ds.x_train, ds.y_train, 1, permutations=[perm])
    return model.backend.to_host(model.params), h["iter_loss"], getattr(trainer, "graph_info", None)


def parity(data_dir):
    import numpy as np

    import fastmlp
    from benchmarks import peers

    ds = fastmlp.load_mnist(data_dir=data_dir, download=False)
    perm = np.random.default_rng(0).permutation(len(ds.x_train))
    out = {"sizes": list(SIZES), "batch_size": BATCH, "lr": LR, "momentum": MOMENTUM, "rows": len(ds.x_train),
           "tolerance": {k: {"rtol": r, "atol": a} for k, (r, a) in PARITY_TOL.items()}, "rel_floor": REL_FLOOR,
           "results": {}}
    for dtype in ("float32", "float64"):
        try:
            cpu_p, cpu_loss, _ = _one_epoch("cpu", dtype, ds, perm, None)
        except Exception as exc:
            out["results"][dtype] = {"cpu": {"status": FAILED, "reason": _error(exc)}}
            continue
        rows = out["results"][dtype] = {}
        for mode in (None, *peers.GRAPH_MODES):
            key = mode or "default"
            try:
                gpu_p, gpu_loss, info = _one_epoch("cuda", dtype, ds, perm, mode)
            except peers.Unavailable as exc:
                rows[key] = {"status": "unsupported", "reason": str(exc)}
                continue
            except Exception as exc:
                rows[key] = {"status": FAILED, "reason": _error(exc)}
                continue
            cmp = compare_params(cpu_p, gpu_p, dtype)
            loss_rel = float(np.max(np.abs(np.subtract(gpu_loss, cpu_loss)) / np.abs(cpu_loss)))
            rows[key] = {"status": OK if cmp["ok"] else FAILED, "params": cmp, "max_rel_step_loss": loss_rel,
                         "graph_info": info}
            if not cmp["ok"]:
                rows[key]["reason"] = f"{cmp['outside_tolerance']} parameters outside tolerance"
    failed = [f"{dt} {mode}: {r.get('reason')}" for dt, rows in out["results"].items() for mode, r in rows.items()
              if r["status"] == FAILED]
    notes = []
    for dt, rows in out["results"].items():
        ran = {m: r for m, r in rows.items() if "params" in r}
        if ran:
            worst = max(r["params"]["max_rel"] for r in ran.values())
            notes.append(f"{dt}: worst rel {worst:.2g} over {', '.join(ran)}")
        other = [m for m, r in rows.items() if "params" not in r]
        if other:
            notes.append(f"{dt} not run: {', '.join(other)}")
    out["note"] = "; ".join(notes)
    out.update(status=FAILED, reason="; ".join(failed)[:500]) if failed else out.update(status=OK)
    return out


def gemm(quick=False):
    """Each GEMM of the step, per split-K factor, beside cuBLAS: benchmarks/gpu_gemm.py."""
    from benchmarks import gpu_gemm

    return gpu_gemm.gemm(SIZES, BATCH, quick)


# --------------------------------------------------------------------------
# ncu: kernel times of a few training steps, and a CUPTI timeline for the gaps
# --------------------------------------------------------------------------

NCU_METRICS = "gpu__time_duration.sum,launch__registers_per_thread"
TIME_UNITS = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "second": 1e6}  # -> microseconds


def _window(steps):
    """A trainer (eager if the Trainer has modes) and `steps` batches of random data on
    the GPU, after one warm-up epoch (compile, capture). Returns (trainer, x, y, mode)."""
    import numpy as np

    import fastmlp
    from benchmarks import peers

    model = fastmlp.MLP(SIZES, device="cuda", seed=0)
    kwargs = dict(lr=LR, momentum=MOMENTUM, batch_size=BATCH, schedule="constant", progress=False, log=None)
    try:
        trainer, mode = peers.make_trainer(model, "eager", **kwargs), "eager"
    except peers.Unavailable:
        trainer, mode = peers.make_trainer(model, None, **kwargs), "default"
    rng = np.random.default_rng(0)
    x, y = trainer.prepare(rng.random((steps * BATCH, SIZES[0]), dtype=np.float32), rng.integers(0, 10, steps * BATCH))
    trainer.train_epoch(x, y, LR)
    return trainer, x, y, mode


def _profiler(which):
    """cudaProfilerStart / Stop, which ncu --profile-from-start off waits for."""
    import cupy

    try:
        getattr(cupy.cuda.runtime, f"profiler{which.capitalize()}")()
    except AttributeError:
        from numba import cuda

        getattr(cuda, f"profile_{which}")()


def ncu_target(steps):
    """The program ncu profiles: one epoch of ``steps`` steps between profiler start and stop."""
    import cupy

    trainer, x, y, mode = _window(steps)
    cupy.cuda.Device().synchronize()
    _profiler("start")
    trainer.train_epoch(x, y, LR)
    cupy.cuda.Device().synchronize()
    _profiler("stop")
    return {"status": OK, "steps": steps, "mode": mode, "note": f"{steps} steps profiled ({mode})"}


def timeline(steps, out, repeats=20):
    """Without ncu: the window's wall time per epoch (CUDA events) and, from PyTorch's
    profiler (CUPTI sees every kernel of the process, CuPy's and Numba's too), the
    kernels' start and end times, hence the gaps between them."""
    import cupy
    import torch
    from torch.profiler import ProfilerActivity, profile

    trainer, x, y, mode = _window(steps)
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    for _ in range(repeats):
        trainer.train_epoch(x, y, LR)
    end.record()
    end.synchronize()
    result = {"mode": mode, "steps": steps, "epoch_window_us": cupy.cuda.get_elapsed_time(start, end) * 1e3 / repeats}
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        trainer.train_epoch(x, y, LR)
        torch.cuda.synchronize()
    trace = out / "timeline-trace.json.tmp"
    prof.export_chrome_trace(str(trace))
    events = json.loads(trace.read_text())["traceEvents"]
    trace.unlink()
    return {**result, **gpu_gaps(events)}


def gpu_gaps(events):
    """The GPU's kernels, copies and sets from a Chrome trace (PyTorch's profiler), in
    order, each with the idle time before it, and the totals: span, busy, gaps (µs)."""
    gpu = sorted((e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")),
                 key=lambda e: e["ts"])
    rows, gaps = [], []
    for prev, e in zip([None, *gpu], gpu):
        gap = e["ts"] - (prev["ts"] + prev["dur"]) if prev else 0.0
        gaps += [gap] if prev else []
        rows.append({"name": e["name"][:120], "cat": e["cat"], "dur_us": e["dur"], "gap_before_us": gap})
    result = {"events": rows}
    if gpu:
        span = gpu[-1]["ts"] + gpu[-1]["dur"] - gpu[0]["ts"]
        busy = sum(e["dur"] for e in gpu)
        result.update(span_us=span, busy_us=busy, busy_fraction=busy / span if span else None,
                      gap_median_us=statistics.median(gaps) if gaps else 0.0, gap_max_us=max(gaps, default=0.0),
                      gap_sum_us=sum(gaps))
    return result


def parse_ncu_csv(text):
    """Launches from ``ncu --csv`` (details page, one row per metric): a list of
    {"id", "name", "grid", "block", "time_us", "registers"} in launch order."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith('"ID"')), None)
    if start is None:
        return []
    launches = {}
    for row in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        if not (row.get("ID") or "").strip().isdigit():
            continue
        k = launches.setdefault(int(row["ID"]), {"id": int(row["ID"]), "name": row.get("Kernel Name", ""),
                                                 "grid": row.get("Grid Size"), "block": row.get("Block Size")})
        value = (row.get("Metric Value") or "").replace(",", "")
        try:
            value = float(value)
        except ValueError:
            continue
        if row.get("Metric Name") == "gpu__time_duration.sum":
            k["time_us"] = value * TIME_UNITS.get(row.get("Metric Unit", "nsecond"), 1e-3)
        elif row.get("Metric Name") == "launch__registers_per_thread":
            k["registers"] = int(value)
    return [launches[i] for i in sorted(launches)]


def ncu_summary(launches, tl, command, steps):
    """Plain-text summary: per kernel, the launches in order, and the timeline's gaps."""
    lines = [f"$ {command}", "", f"{len(launches)} kernel launches in one epoch of {steps} training steps "
             f"(batch {BATCH}, {'-'.join(map(str, SIZES))}), profiled by ncu (--clock-control none)", ""]
    per = {}
    for k in launches:
        per.setdefault(k["name"], []).append(k.get("time_us", math.nan))
    total = sum(t for ts in per.values() for t in ts if t == t)
    lines.append(f"{'kernel':<70} {'launches':>8} {'total us':>10} {'mean us':>9} {'share':>6}")
    for name, ts in sorted(per.items(), key=lambda kv: -sum(t for t in kv[1] if t == t)):
        s = sum(t for t in ts if t == t)
        lines.append(f"{name[:70]:<70} {len(ts):>8} {s:>10.2f} {s / len(ts):>9.2f} {s / total if total else 0:>6.1%}")
    lines += ["", f"sum of kernel times: {total:.2f} us", "", "launch order:"]
    lines += [f"{k['id']:>4} {k.get('time_us', math.nan):>9.2f} us  grid {k['grid']} block {k['block']}  {k['name'][:90]}"
              for k in launches]
    lines += ["", "timeline of the same window without ncu (PyTorch profiler / CUPTI):"]
    if "error" in tl:
        lines.append(f"  not available: {tl['error']}")
    elif "span_us" in tl:
        lines.append(f"  epoch window {tl['epoch_window_us']:.1f} us (CUDA events, mean of 20); GPU events "
                     f"{len(tl['events'])}, span {tl['span_us']:.1f} us, busy {tl['busy_us']:.1f} us "
                     f"({tl['busy_fraction']:.0%}); gaps: median {tl['gap_median_us']:.2f} us, max "
                     f"{tl['gap_max_us']:.2f} us, sum {tl['gap_sum_us']:.1f} us")
        lines += [f"  {e['gap_before_us']:>8.2f} gap  {e['dur_us']:>8.2f} us  {e['name'][:90]}" for e in tl["events"]]
    else:
        lines.append(f"  the profiler saw no GPU events; epoch window {tl.get('epoch_window_us', math.nan):.1f} us")
    return "\n".join(lines) + "\n"


def ncu(out, ncu_path, steps, timeout):
    try:
        tl = timeline(steps, out)
    except Exception as exc:
        tl = {"error": _error(exc)}
    argv = [ncu_path, "--target-processes", "all", "--profile-from-start", "off", "--clock-control", "none",
            "--kernel-name-base", "demangled", "--print-units", "base", "--csv", "--metrics", NCU_METRICS,
            "--log-file", str(out / "ncu.csv"), sys.executable, "-m", "benchmarks.gpu_probes", "ncu-target",
            "--out", str(out), "--steps", str(steps)]
    command = " ".join(argv)
    rc, text = _run(argv, timeout=timeout)
    csv_path = out / "ncu.csv"
    launches = parse_ncu_csv(csv_path.read_text(errors="replace")) if csv_path.exists() else []
    (out / "ncu-summary.txt").write_text(ncu_summary(launches, tl, command, steps))
    result = {"command": command, "returncode": rc, "output_tail": text[-2000:], "launches": launches,
              "timeline": {k: v for k, v in tl.items() if k != "events"}, "summary": "ncu-summary.txt"}
    if launches:
        result.update(status=OK, note=f"{len(launches)} launches, {sum(k.get('time_us', 0) for k in launches):.1f} us "
                                      f"of kernels over {steps} steps; see ncu-summary.txt")
    else:
        result.update(status=FAILED, reason=f"ncu profiled no kernels (exit status {rc}): {text.strip()[-300:]}")
    return result


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_probes", description=__doc__.split("\n\n")[0])
    p.add_argument("probe", choices=["setup", "environment", "micro", "capture", "parity", "gemm", "ncu", "ncu-target"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-install", action="store_true")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--ncu", default="ncu")
    p.add_argument("--steps", type=int, default=3, help="training steps in the profiled window (ncu)")
    p.add_argument("--ncu-timeout", type=int, default=100)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    run = {
        "setup": lambda: setup(install=not args.no_install),
        "environment": lambda: environment(args.out),
        "micro": lambda: micro(args.quick),
        "capture": capture,
        "parity": lambda: parity(args.data_dir),
        "gemm": lambda: gemm(args.quick),
        "ncu": lambda: ncu(args.out, args.ncu, args.steps, args.ncu_timeout),
        "ncu-target": lambda: ncu_target(args.steps),
    }[args.probe]
    path = args.out / f"{args.probe}.json"
    try:
        result = run()
    except Exception as exc:  # the probe's own failure (say, CuPy missing) is its result
        result = {"status": FAILED, "reason": _error(exc)}
    path.write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({k: result.get(k) for k in ("status", "reason", "note") if result.get(k)}), flush=True)
    return 0 if result.get("status") == OK else 1


if __name__ == "__main__":
    sys.exit(main())
