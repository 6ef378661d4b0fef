"""Compile every CUDA kernel specialisation that gpu_check's later steps launch, before anything is timed.

    python -m benchmarks.gpu_warm --out DIR [--workers N]
    python -m benchmarks.gpu_warm --list        # the plan; needs no GPU

On a cold machine each specialisation (a kernel for one set of argument types,
about 50 of them over both dtypes) is JIT-compiled at its first launch, one
after another, inside whichever step meets it first, a timed one included.
This compiles them all first, in parallel processes, into Numba's on-disk
cache (every CUDA kernel is ``cache=True``), from which every later step loads
them. One process per kernel, holding all its specialisations: two processes
never write one kernel's cache index at the same time.

Then, in this process, one small training run with evaluation per dtype on the
device (through the backend, whose start-up launches a probe kernel: the
toolchain check) loads them back. Each specialisation it still compiles is
counted and named (``missed``): the plan lacks it, or the cache did not keep
it. That run also has CuPy compile its own kernels into CuPy's cache.

The plan (:func:`plan`) runs the real code (fastmlp.Trainer, its TrainStep,
evaluation and prediction) for each configuration of :data:`CONFIGS`, in both
dtypes, on a stand-in backend whose kernels only record what the CUDA
launchers would launch, with the argument types Numba derives from them; the
GEMMs are also recorded with split-K forced, for their reduce kernels (the
``gemm`` step times every split). It needs no GPU, so a CPU test checks that
it covers every kernel the recorded training step calls.

Writes DIR/warm.json: "status", "note", "plan" (kernel, argument types) and,
per kernel, what each process did.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DTYPES = ("float32", "float64")

# The configurations the later steps train and evaluate: the epoch benchmark's recipe
# (uint8 pixels, SGD with momentum, no dropout, every graph mode: the same kernels),
# the Trainer's defaults (dropout, weight decay), and the other losses, optimiser and
# inputs the device tests train with. The shapes are small: only the types matter.
CONFIGS = [
    {"name": "pixels-momentum", "sizes": (784, 16, 8, 10), "x": "uint8", "trainer": {"optimizer": "momentum", "dropout": 0.0}},
    {"name": "pixels-defaults", "sizes": (784, 16, 10), "x": "uint8", "trainer": {}},
    {"name": "float-adam-tanh", "sizes": (12, 8, 3), "x": "float", "activation": "tanh",
     "trainer": {"optimizer": "adam", "label_smoothing": 0.1, "track_weight_sq": True}, "row_scale": True},
    {"name": "float-sgd-sigmoid", "sizes": (12, 8, 3), "x": "float", "activation": "sigmoid",
     "trainer": {"optimizer": "sgd", "dropout": 0.0}},
    {"name": "logistic", "sizes": (12, 8, 1), "x": "float", "loss": "logistic", "trainer": {}},
    {"name": "multilabel", "sizes": (12, 8, 3), "x": "float", "loss": "multilabel", "trainer": {}},
    {"name": "squared-error", "sizes": (12, 8, 2), "x": "float", "loss": "squared_error", "trainer": {"optimizer": "adam"}},
    {"name": "poisson", "sizes": (12, 8, 2), "x": "float", "loss": "poisson", "trainer": {}},
    {"name": "sparse", "sizes": (12, 8, 3), "x": "csr", "trainer": {}},
]
ROWS, BATCH = 40, 16  # a short last batch too


def _host_scratch(size, dtype):
    import numpy as np

    return np.zeros(size, dtype=dtype)


class Planner:
    """Records (kernel, argument types) of every launch the CUDA launchers would make."""

    def __init__(self):
        import numpy as np

        from fastmlp.backend import Backend
        from fastmlp.kernels import KernelSet, cuda_kernels

        self.launchers = cuda_kernels(0, alloc=_host_scratch)
        self.specs = {}  # (module, name) -> {signature: None}, in the order first seen
        self.kernels = {}  # (module, name) -> the dispatcher
        recording = KernelSet(**{op: self._recording(fn) for op, fn in self.launchers._asdict().items()})
        self.backend = Backend("cuda-plan", np, recording)

    def _recording(self, launcher):
        def record(*args):
            for kernel, _config, kargs in launcher.launches(*args):
                self.add(kernel, kargs)

        record.__name__ = launcher.__name__
        return record

    def add(self, kernel, args):
        from numba import typeof

        key = (kernel.py_func.__module__, kernel.py_func.__name__)
        self.kernels[key] = kernel
        self.specs.setdefault(key, {})[tuple(typeof(a) for a in args)] = None

    def step_calls(self, model, trainer, X, y):
        """Record the launches of the TrainStep the trainer builds for X, y (without running it)."""
        from fastmlp.step import TrainStep

        X, y = trainer.prepare(X, y)
        step = TrainStep(model, trainer.optimizer, X, y, trainer.batch_size, track_weight_sq=trainer.track_weight_sq,
                         dropout=trainer.dropout, label_smoothing=trainer.label_smoothing, seed=trainer.seed)
        for calls in step.calls.values():
            for fn, args in calls:
                fn(*args)
        return step

    def run(self, config, dtype):
        """One configuration: a short fit with evaluation, a weighted epoch, predictions."""
        import numpy as np

        import fastmlp

        rng = np.random.default_rng(0)
        sizes, loss = config["sizes"], config.get("loss", "softmax")
        model = fastmlp.MLP(sizes, activation=config.get("activation", "relu"), dtype=dtype, device=self.backend,
                            loss=loss)
        d, out = sizes[0], sizes[-1]
        if config["x"] == "uint8":
            X = rng.integers(0, 256, (ROWS, d), dtype=np.uint8)
        else:
            X = rng.random((ROWS, d))
            if config["x"] == "csr":
                import scipy.sparse

                X = scipy.sparse.csr_matrix(np.where(X > 0.7, X, 0.0))
        if loss in ("multilabel",):
            y = (rng.random((ROWS, out)) > 0.5).astype(np.float64)
        elif loss in ("squared_error", "poisson"):
            y = rng.random((ROWS, out))
        else:
            y = rng.integers(0, max(out, 2), ROWS)
        trainer = fastmlp.Trainer(model, batch_size=BATCH, progress=False, log=None, **config["trainer"])
        if model.value_targets or config["x"] == "csr":  # as the estimators train them: epochs, no accuracy
            trainer.train_epoch(*trainer.prepare(X, y), 0.01)
        else:
            trainer.fit(X, y, 1, X_test=X, y_test=y)  # with evaluation
        self.step_calls(model, trainer, X, y)
        if config.get("row_scale"):
            Xd, yd = trainer.prepare(X, y)
            trainer.train_epoch(Xd, yd, 0.01, row_scale=np.ones(ROWS))
        model.outputs(X if config["x"] != "csr" else X.toarray())
        if not model.value_targets:
            model.predict(X if config["x"] != "csr" else X.toarray())

    def elementwise(self, dtype):
        """The stand-alone bias/activation kernels (the GEMMs fuse them into the step;
        the device tests launch them on their own), for every activation code."""
        import numpy as np

        z, b = np.zeros((8, 5), dtype), np.zeros(5, dtype)
        k = self.backend.kernels
        k.bias_act_forward(z, b, 1)
        for op in ("relu_backward", "sigmoid_backward", "tanh_backward"):
            getattr(k, op)(z, z.copy())

    def gemm_variants(self, dtype):
        """Every GEMM kernel with split-K forced (their reduce kernels), as the gemm step runs them."""
        import numpy as np

        from fastmlp.kernels import CudaLinearOps

        ops = CudaLinearOps(0, split=2, alloc=_host_scratch)
        n, k, m = 70, 96, 40  # reductions of 3 BK steps and more: a split of 2 holds
        a, W, b = np.zeros((n, k), dtype), np.zeros((k, m), dtype), np.zeros(m, dtype)
        out, delta, dW, db, d_prev = (np.zeros((n, m), dtype), np.zeros((n, m), dtype), np.zeros((k, m), dtype),
                                      np.zeros(m, dtype), np.zeros((n, k), dtype))
        for launches in (ops.linear_forward_launches(a, W, b, out, 1), ops.linear_backward_launches(a, delta, dW, db),
                         ops.backward_input_launches(delta, W, a, d_prev, 1)):
            for kernel, _config, kargs in launches:
                self.add(kernel, kargs)


def plan(configs=None, dtypes=DTYPES):
    """The planner after every configuration in both dtypes and the GEMM variants."""
    p = Planner()
    for dtype in dtypes:
        for config in CONFIGS if configs is None else configs:
            p.run(config, dtype)
        p.gemm_variants(dtype)
        p.elementwise(dtype)
    return p


def signature_text(sig):
    return "(" + ", ".join(str(t) for t in sig) + ")"


def cuda_dispatchers():
    """{(module, name): dispatcher} of every CUDA kernel in fastmlp.kernels."""
    import importlib
    import pkgutil

    import fastmlp.kernels as pkg

    found = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"{pkg.__name__}.{info.name}")
        for obj in vars(module).values():
            if (type(obj).__name__ == "CUDADispatcher" and obj.py_func.__module__ == module.__name__
                    and not obj.targetoptions.get("device")):  # kernels, not device functions
                found[(module.__name__, obj.py_func.__name__)] = obj
    return found


def _error(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def compile_kernel(module, name, signatures):
    """In a worker process: compile (or load from the cache) each signature of one kernel."""
    import importlib

    kernel = getattr(importlib.import_module(module), name)
    done = []
    for sig in signatures:
        t0 = time.perf_counter()
        hits = sum(getattr(kernel, "_cache_hits", {}).values())
        try:
            kernel.compile(sig)
            how = "loaded" if sum(getattr(kernel, "_cache_hits", {}).values()) > hits else "compiled"
        except Exception as exc:  # recorded per specialisation; the others go on
            how = f"failed: {_error(exc)}"
        done.append({"signature": signature_text(sig), "result": how, "seconds": round(time.perf_counter() - t0, 2)})
    return {"kernel": f"{module}.{name}", "specialisations": done}


def check_run(dtype):
    """A small fit with evaluation on the device: every planned kernel should come from the cache."""
    import numpy as np

    import fastmlp

    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, (300, 784), dtype=np.uint8), rng.integers(0, 10, 300)
    model = fastmlp.MLP((784, 32, 10), dtype=dtype, device="cuda")
    trainer = fastmlp.Trainer(model, optimizer="momentum", batch_size=128, dropout=0.0, progress=False, log=None)
    trainer.fit(X, y, 1, X_test=X[:100], y_test=y[:100])
    model.predict_proba(X[:50])


def misses():
    """The specialisations this process compiled (cache misses), of every CUDA kernel."""
    return [f"{m}.{n}{signature_text(sig)}" for (m, n), k in cuda_dispatchers().items()
            for sig, count in getattr(k, "_cache_misses", {}).items() if count]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_warm", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("."))
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per kernel, at most the cores)")
    p.add_argument("--list", action="store_true", help="print the plan and exit (needs no GPU)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    planner = plan()
    specs = {key: list(sigs) for key, sigs in planner.specs.items()}
    count = sum(map(len, specs.values()))
    if args.list:
        for (module, name), sigs in specs.items():
            for sig in sigs:
                print(f"{module}.{name}{signature_text(sig)}")
        print(f"{count} specialisations of {len(specs)} kernels")
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    result = {"plan": {f"{m}.{n}": [signature_text(s) for s in sigs] for (m, n), sigs in specs.items()}, "kernels": []}

    def write(status, note, **extra):
        result.update(status=status, note=note, **extra)
        tmp = args.out / "warm.json.tmp"
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, args.out / "warm.json")

    try:
        from numba import cuda

        if not cuda.is_available():
            write("skipped", "", reason="Numba sees no CUDA GPU: nothing to compile for")
            return 0
    except Exception as exc:
        write("failed", "", reason=f"numba-cuda does not import: {_error(exc)}")
        return 1
    import concurrent.futures
    import multiprocessing

    workers = args.workers or max(1, min(len(specs), os.cpu_count() or 1))
    print(f"[warm] {count} specialisations of {len(specs)} kernels in {workers} processes", flush=True)
    ctx = multiprocessing.get_context("spawn")  # no CUDA state inherited
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        jobs = [pool.submit(compile_kernel, m, n, sigs) for (m, n), sigs in specs.items()]
        for job in concurrent.futures.as_completed(jobs):
            try:
                done = job.result()
            except Exception as exc:  # a crashed worker: its kernel is compiled at first launch instead
                done = {"kernel": "?", "specialisations": [{"result": f"failed: {_error(exc)}"}]}
            result["kernels"].append(done)
            print(f"[warm] {done['kernel']}: " + ", ".join(s["result"] for s in done["specialisations"]), flush=True)
    results = [s["result"] for k in result["kernels"] for s in k["specialisations"]]
    failed = [r for r in results if r.startswith("failed")]
    compile_s = round(time.perf_counter() - t0, 1)
    note = (f"{count} specialisations of {len(specs)} kernels in {workers} processes: "
            f"{results.count('compiled')} compiled, {results.count('loaded')} already cached, {len(failed)} failed")
    write("failed" if failed else "ok", note, seconds_compile=compile_s)
    try:
        for dtype in DTYPES:
            check_run(dtype)
        missed = misses()
        result["missed"] = missed
        note += ("; the check run loaded every planned kernel from the cache" if not missed else
                 f"; the check run still compiled {len(missed)}: {missed[0]}")
    except Exception as exc:
        result["check_run"] = _error(exc)
        note += f"; the check run failed: {_error(exc)}"
    write("failed" if failed or "check_run" in result else "ok", note,
          reason=(failed[0] if failed else result.get("check_run", "")))
    print(f"[warm] {note}", flush=True)
    return 1 if result["status"] == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
