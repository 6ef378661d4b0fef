"""Where a CPU training epoch spends its time.

    python -m benchmarks.profile_epoch --data-dir DATA_DIR [--label cpu-2core]

Trains the default net (784-128-64-10 ReLU, batch 128, SGD momentum 0.9) on
MNIST with fastmlp's own Trainer.train_epoch, under cProfile, and groups the
time by what the functions do. NumPy's matmul calls do not show up as functions
of their own, so they are counted in the forward and backward passes; the last
line times the same matrix multiplies (same shapes, same order, same threads)
on their own, which is the floor an epoch cannot go below with this BLAS. Then
each call of a step is timed alone and within running epochs (``per_call``).

CPU only: on a GPU the host-side profile says little (the work is asynchronous);
use Nsight Compute there.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time

import numpy as np

import fastmlp
from fastmlp.model import MLP
from fastmlp.trainer import Trainer

from . import common as bench

# (group, substring of "file:function" in the profile); the first match wins
GROUPS = [
    ("forward pass (matmul + bias/activation kernel)", "linear_forward"),
    ("forward pass (matmul + bias/activation kernel)", "bias_act_forward"),
    ("backward pass (matmul + activation backward)", "linear_backward"),
    ("backward pass (matmul + activation backward)", "backward_input"),
    ("backward pass (matmul + activation backward)", "_backward"),
    ("dropout kernel", "dropout"),
    ("softmax cross-entropy kernel", "softmax_xent"),
    ("step loss sum", "sum_into"),
    ("optimiser update kernel", "sgd_update"),
    ("batch gather (take)", "gather_batch"),
    ("batch gather (take)", "take"),
]


def _grouped(profile):
    stats = pstats.Stats(profile).stats
    total = sum(tt for (_, _, tt, _, _) in stats.values())
    out = {}
    for (path, line, func), (_, _, tt, _, _) in stats.items():
        key = f"{path.rsplit('/', 1)[-1]}:{func}"
        group = next((g for g, needle in GROUPS if needle in key), "Python and everything else")
        out[group] = out.get(group, 0.0) + tt
    return total, out


def per_call(step, repeats=200):
    """Microseconds of each call of one full training step, timed two ways: alone
    (the same call ``repeats`` times in a row, so its data stays in cache and the
    BLAS threads stay warm) and within running epochs (each call's share of the
    whole steps, in order). Calls that cost far more in the epoch than alone lose
    their time to cache misses and thread hand-overs, not to their own work."""
    calls = step.calls[step.batch]
    keep = [a.copy() for a in (step.model.params, *step.optimizer.buffers())]
    saved = step.state.copy()
    step.state[0] = 0  # after an epoch it points past the last step: the kernels do not check bounds
    state = step.state.copy()
    names = [getattr(fn, "__name__", str(fn)).removesuffix("_cpu") for fn, _ in calls]
    alone = []
    for name, (fn, args) in zip(names, calls):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn(*args)
                if name == "advance":  # the one call that moves the state (its time includes this reset)
                    step.state[...] = state
            best = min(best, time.perf_counter() - t0)
        step.state[...] = state
        alone.append(best / repeats * 1e6)
    in_epoch = [0.0] * len(calls)
    clock, full = time.perf_counter, step.steps - (step.rows[-1] != step.batch)
    step.state[...] = 0
    for _ in range(full):
        for i, (fn, args) in enumerate(calls):
            t0 = clock()
            fn(*args)
            in_epoch[i] += clock() - t0
    for a, b in zip((step.model.params, *step.optimizer.buffers()), keep):
        a[...] = b
    step.state[...] = saved
    return [{"call": n, "alone_us": a, "in_epoch_us": e / full * 1e6} for n, a, e in zip(names, alone, in_epoch)]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_epoch", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="folder holding mnist/ (default: fastmlp's look-up)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    p.add_argument("--label", default=None, help="results file suffix (default: host name)")
    args = p.parse_args(argv)

    ds = fastmlp.load_mnist(data_dir=args.data_dir, normalize=False)  # uint8, as the CLI trains on it
    model = MLP((784, 128, 64, 10), activation="relu", seed=0, device="cpu")
    trainer = Trainer(model, optimizer="momentum", lr=0.05, momentum=0.9, batch_size=128, progress=False, log=None,
                      weight_decay=0.0, warmup=0.0, dropout=0.0)
    X, y = trainer.prepare(ds.x_train, ds.y_train)
    trainer.train_epoch(X, y, 0.05)  # warm-up: compile, BLAS threads

    plain = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        trainer.train_epoch(X, y, 0.05)
        plain.append(time.perf_counter() - t0)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(args.epochs):
        trainer.train_epoch(X, y, 0.05)
    profile.disable()
    total, groups = _grouped(profile)
    step = trainer.prepare_step(X, y)
    gemm = statistics.median(bench.gemm_only_epoch(model, step.ws, step.steps, step.batch) for _ in range(args.epochs))

    calls = per_call(step)
    epoch_s = statistics.median(plain)
    rows = [{"what": g, "seconds_per_epoch": s / args.epochs, "share": s / total}
            for g, s in sorted(groups.items(), key=lambda kv: -kv[1])]
    print(f"epoch {epoch_s:.3f} s without the profiler (median of {args.epochs}); "
          f"{total / args.epochs:.3f} s with it. Share of the profiled time:")
    for r in rows:
        print(f"  {100 * r['share']:5.1f} %  {r['seconds_per_epoch']:.3f} s  {r['what']}")
    print(f"the same matrix multiplies alone: {gemm:.3f} s per epoch ({100 * gemm / epoch_s:.0f} % of the epoch)")
    print("each call of a full step, in microseconds: alone (repeated in a row) / within the epoch")
    for c in calls:
        print(f"  {c['alone_us']:8.1f} {c['in_epoch_us']:8.1f}  {c['call']}")
    print(f"  {sum(c['alone_us'] for c in calls):8.1f} {sum(c['in_epoch_us'] for c in calls):8.1f}  all of them")

    result = {
        "benchmark": "profile_epoch",
        "when": bench.stamp(),
        "machine": bench.machine(["cpu"]),
        "settings": {"dataset": "mnist", "sizes": [784, 128, 64, 10], "batch_size": 128, "optimizer": "momentum",
                     "epochs": args.epochs, "input": str(X.dtype)},
        "epoch_s": epoch_s,
        "profiled_epoch_s": total / args.epochs,
        "groups": rows,
        "gemm_only_epoch_s": gemm,
        "per_call": calls,
    }
    out = bench.save(result, f"profile-epoch-{args.label or result['machine']['host']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
