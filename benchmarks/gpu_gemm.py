"""gemm: the GPU time of each GEMM of the benchmark's training step, for each split-K factor.

    python -m benchmarks.gpu_probes gemm --out DIR [--quick]      (gpu_check's 'gemm' step)

The step of 784-128-64-10 at batch 128 makes eight products: each layer's
forward (``linear_forward``), weight gradient (``linear_backward``) and, for
all but the first layer, input gradient (``backward_input``). Each is timed
for every split-K factor that ``gemm_tiles.split_chunks`` keeps distinct,
and for the factor ``choose_split`` picks, with float32 data. So that only
the GPU's time is measured, not Numba's host cost per launch (the training
step is replayed as a CUDA graph too), each timing captures ``reps`` copies of
the op's launches in one graph and times its replays between CUDA events.
Beside them, the same product through cuBLAS (``torch.mm`` / ``torch.addmm``,
captured in a PyTorch CUDA graph the same way), without the fused epilogue.

What it is for: ``choose_split``'s factors have not been measured on a GPU. The table says
which factor is fastest for each shape, how far the heuristic's choice is
from it, and how far the kernels are from cuBLAS: the data to tune it with.
The structure (``gemm_cases``, ``split_candidates``, ``gemm_table``) is plain
Python, tested without a GPU; ``gemm`` adds the CuPy and PyTorch timers.
"""

from __future__ import annotations

import statistics

SPLITS = (1, 2, 4, 8, 16)


def gemm_cases(sizes, batch):
    """[(name, op, (fan_in, fan_out), product (rows, cols, depth))] of one training step."""
    cases = []
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:]), 1):
        cases.append((f"linear_forward {i}", "linear_forward", (k, n), (batch, n, k)))
        cases.append((f"linear_backward {i}", "linear_backward", (k, n), (k + 1, n, batch)))
        if i > 1:  # the first layer's input needs no gradient
            cases.append((f"backward_input {i}", "backward_input", (k, n), (batch, k, n)))
    return cases


def split_candidates(depth, splits=SPLITS):
    """The distinct split-K factors among ``splits`` after split_chunks clamps them to depth."""
    from fastmlp.kernels.gemm_tiles import split_chunks

    seen = []
    for s in splits:
        actual = split_chunks(depth, s)[1]
        if actual not in seen:
            seen.append(actual)
    return seen


def gemm_table(cases, time_split, time_cublas):
    """One row per case: microseconds per op for each split factor, the best one,
    choose_split's pick and how much slower it is than the best, and cuBLAS.

    time_split(case, split) and time_cublas(case) return microseconds or raise;
    an exception is that entry's recorded error, never the table's."""
    from fastmlp.kernels.gemm_tiles import choose_split, split_chunks

    rows = []
    for case in cases:
        name, op, layer, (m, nc, r) = case
        row = {"name": name, "op": op, "layer": list(layer), "product": [m, nc, r], "gflop": 2 * m * nc * r / 1e9,
               "us": {}, "errors": {}}
        row["auto"] = split_chunks(r, choose_split(m, nc, r))[1]
        candidates = split_candidates(r)
        for s in candidates + [row["auto"]] * (row["auto"] not in candidates):
            try:
                row["us"][s] = float(time_split(case, s))
            except Exception as exc:  # CUDA, CuPy and Numba each raise their own types
                row["errors"][s] = f"{type(exc).__name__}: {exc}"[:300]
        if row["us"]:
            best = min(row["us"], key=row["us"].get)
            row["best"], row["best_us"] = best, row["us"][best]
            row["tflops_best"] = row["gflop"] / row["best_us"] * 1e-3
            if row["auto"] in row["us"]:
                row["auto_us"] = row["us"][row["auto"]]
                row["auto_over_best"] = row["auto_us"] / row["best_us"]
        try:
            row["cublas_us"] = float(time_cublas(case))
        except Exception as exc:
            row["errors"]["cublas"] = f"{type(exc).__name__}: {exc}"[:300]
        if "best_us" in row and "cublas_us" in row:
            row["best_over_cublas"] = row["best_us"] / row["cublas_us"]
        rows.append(row)
    return rows


def summarize(rows):
    """The table's totals per training step and a one-line note."""
    step = {key: sum(r[key] for r in rows) if all(key in r for r in rows) else None
            for key in ("auto_us", "best_us", "cublas_us")}
    retune = [f"{r['name']}: {r['best']} (picked {r['auto']}, {r['auto_over_best']:.2f}x)" for r in rows
              if r.get("auto_over_best", 1) > 1.1]
    parts = [f"{label} {step[key]:.1f}" for label, key in
             (("choose_split", "auto_us"), ("best split", "best_us"), ("cuBLAS", "cublas_us")) if step[key] is not None]
    note = f"GEMM µs per step: {', '.join(parts) or 'none timed'}"
    note += f"; better split for {'; '.join(retune)}" if retune else "; choose_split within 10 % of the best everywhere"
    return {"per_step_us": step, "retune": retune, "note": note}


def _graph_us(capture, launch, sync, elapsed_ms, reps, replays):
    """Median GPU microseconds per op from a graph of ``reps`` ops replayed ``replays`` times."""
    graph = capture(reps)
    launch(graph)  # the first replay uploads the graph
    sync()
    return statistics.median(elapsed_ms(lambda: launch(graph)) * 1e3 / reps for _ in range(replays))


def gemm(sizes, batch, quick=False):
    import cupy
    import numpy as np
    from numba import cuda

    from fastmlp.kernels import RELU
    from fastmlp.kernels.linear_ops import CudaLinearOps, bind_launches, run_launches

    reps, replays = (20, 5) if quick else (50, 15)
    s = cupy.cuda.Stream(non_blocking=True)
    ns = cuda.external_stream(s.ptr)
    rng = np.random.default_rng(0)

    def device(*shape):
        return cupy.asarray(rng.standard_normal(shape, dtype=np.float32))

    def operands(case):
        _, op, (k, n), _ = case
        if op == "linear_forward":
            return device(batch, k), device(k, n), device(n), device(batch, n), RELU
        if op == "linear_backward":
            return device(batch, k), device(batch, n), device(k, n), device(n)
        return device(batch, n), device(k, n), device(batch, k), device(batch, k), RELU

    def cupy_elapsed_ms(fn):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record(s)
        fn()
        stop.record(s)
        stop.synchronize()
        return cupy.cuda.get_elapsed_time(start, stop)

    def time_split(case, split):
        ops = CudaLinearOps(ns, split=split)
        views = [cuda.as_cuda_array(a, sync=False) if isinstance(a, cupy.ndarray) else a for a in operands(case)]
        launches = bind_launches(getattr(ops, f"{case[1]}_launches")(*views))
        with s:
            run_launches(launches)  # compiles, allocates the split-K scratch
            s.synchronize()

            def capture(n):
                s.begin_capture()
                try:
                    for _ in range(n):
                        run_launches(launches)
                finally:
                    graph = s.end_capture()
                return graph

            return _graph_us(capture, lambda g: g.launch(s), s.synchronize, cupy_elapsed_ms, reps, replays)

    def time_cublas(case):
        import torch

        _, op, (k, n), _ = case
        dev = torch.device("cuda")
        t = {"a": torch.randn(batch, k, device=dev), "W": torch.randn(k, n, device=dev), "b": torch.randn(n, device=dev),
             "d": torch.randn(batch, n, device=dev)}
        product = {"linear_forward": lambda out: torch.addmm(t["b"], t["a"], t["W"], out=out),
                   "linear_backward": lambda out: torch.mm(t["a"].T, t["d"], out=out),
                   "backward_input": lambda out: torch.mm(t["d"], t["W"].T, out=out)}[op]
        shape = {"linear_forward": (batch, n), "linear_backward": (k, n), "backward_input": (batch, k)}[op]
        out = torch.empty(shape, device=dev)
        side = torch.cuda.Stream()
        with torch.cuda.stream(side):
            for _ in range(3):
                product(out)  # cuBLAS picks its kernel and workspace outside the capture
        torch.cuda.synchronize()

        def capture(n_ops):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for _ in range(n_ops):
                    product(out)
            return graph

        def elapsed_ms(fn):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            return start.elapsed_time(stop)

        return _graph_us(capture, lambda g: g.replay(), torch.cuda.synchronize, elapsed_ms, reps, replays)

    rows = gemm_table(gemm_cases(sizes, batch), time_split, time_cublas)
    out = {"sizes": list(sizes), "batch": batch, "dtype": "float32", "reps_per_graph": reps, "replays": replays,
           "unit": "GPU microseconds per op (median of graph replays)", "rows": rows, **summarize(rows)}
    errors = [f"{r['name']} {k}: {v}" for r in rows for k, v in r["errors"].items()]
    if any(k != "cublas" for r in rows for k in r["errors"]):
        out.update(status="failed", reason="; ".join(errors)[:500])
    else:  # cuBLAS is only the yardstick: its failure is noted, not a failed step
        out["status"] = "ok"
        if errors:
            out["note"] += f"; cuBLAS not timed: {errors[0]}"
    return out
