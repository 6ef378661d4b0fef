"""Which BLAS does the CPU's matrix multiplies, with which kernels and how many threads.

Most of a CPU epoch is BLAS time, so its kernels decide the speed: on an AVX-512
CPU, OpenBLAS's Haswell (AVX2) kernels are much slower than its SkylakeX ones.
OpenBLAS picks the kernels for the CPU it finds, unless ``OPENBLAS_CORETYPE``
says otherwise. fastmlp never changes that setting; it says so in one line when
the setting holds the kernels below what the CPU supports (:func:`notice`).

The library, version, kernel family and threads come from threadpoolctl, which
reads them from the libraries loaded in this process.
"""

from __future__ import annotations

import os
from pathlib import Path

# OpenBLAS kernel families (threadpoolctl's "architecture", lower case) by the
# widest vector instructions they use; a family not listed is not judged.
_KERNEL_ISA = {
    "sapphirerapids": "avx512", "cooperlake": "avx512", "skylakex": "avx512",
    "zen": "avx2", "haswell": "avx2",
    "sandybridge": "avx",
    "nehalem": "sse", "core2": "sse", "penryn": "sse", "dunnington": "sse", "prescott": "sse", "atom": "sse",
}
_RANK = {"sse": 0, "avx": 1, "avx2": 2, "avx512": 3}
_BEST_KERNELS = {"avx512": "SkylakeX", "avx2": "Haswell", "avx": "Sandybridge", "sse": "Nehalem"}
# the OpenBLAS kernels need all of these to count as supported
_ISA_FLAGS = {"avx512": ("avx512f", "avx512bw", "avx512dq", "avx512vl"), "avx2": ("avx2", "fma"), "avx": ("avx",)}


def libraries():
    """One dict per BLAS loaded in this process: library, version, kernels, threads."""
    from threadpoolctl import threadpool_info

    return [
        {"library": lib.get("internal_api"), "version": lib.get("version"), "kernels": lib.get("architecture"),
         "threads": lib.get("num_threads"), "threading": lib.get("threading_layer"), "path": lib.get("filepath")}
        for lib in threadpool_info()
        if lib.get("user_api") == "blas"
    ]


def describe(libs=None):
    """'openblas 0.3.31 (SkylakeX kernels, 2 threads)' for each BLAS, joined by '; '."""
    libs = libraries() if libs is None else libs
    parts = [f"{lib['library']} {lib['version']} ({lib['kernels']} kernels, {lib['threads']} threads)" for lib in libs]
    return "; ".join(parts) or "none loaded"


def cpu_isa(flags=None):
    """The widest of avx512 / avx2 / avx / sse whose instructions this CPU has
    (from /proc/cpuinfo; None where that cannot be read)."""
    if flags is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
        line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
        flags = set(line.partition(":")[2].split())
    for isa in ("avx512", "avx2", "avx"):
        if all(f in flags for f in _ISA_FLAGS[isa]):
            return isa
    return "sse"


def notice(libs=None, env=None, isa=None):
    """One line when ``OPENBLAS_CORETYPE`` holds OpenBLAS below the CPU's kernels, else None."""
    env = os.environ if env is None else env
    chosen = env.get("OPENBLAS_CORETYPE")
    if not chosen:
        return None
    isa = cpu_isa() if isa is None else isa
    for lib in libraries() if libs is None else libs:
        used = _KERNEL_ISA.get(str(lib.get("kernels")).lower())
        if lib.get("library") == "openblas" and used and isa and _RANK[used] < _RANK[isa]:
            return (f"note: OPENBLAS_CORETYPE={chosen} makes OpenBLAS use its {lib['kernels']} ({used}) kernels, but "
                    f"this CPU supports {isa} ({_BEST_KERNELS[isa]} kernels): unset OPENBLAS_CORETYPE or set it to "
                    f"{_BEST_KERNELS[isa]} for faster matrix multiplies (fastmlp leaves it as it is)")
    return None
