"""Where a CPU training epoch spends its time.

    python -m benchmarks.profile_epoch --data-dir ../shared/data [--label cpu-2core]

Trains the default net (784-128-64-10 ReLU, batch 128, SGD momentum 0.9) on
MNIST with fastmlp's own Trainer.train_epoch, under cProfile, and groups the
time by what the functions do. NumPy's matmul calls do not show up as functions
of their own, so they are counted in the forward and backward passes; the last
line times the same matrix multiplies (same shapes, same order, same threads)
on their own, which is the floor an epoch cannot go below with this BLAS.

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


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_epoch", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="folder holding mnist/ (default: fastmlp's look-up)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    p.add_argument("--label", default=None, help="results file suffix (default: host name)")
    args = p.parse_args(argv)

    ds = fastmlp.load_mnist(data_dir=args.data_dir, normalize=False)  # uint8, as the CLI trains on it
    model = MLP((784, 128, 64, 10), activation="relu", seed=0, device="cpu")
    trainer = Trainer(model, optimizer="momentum", lr=0.05, momentum=0.9, batch_size=128, progress=False, log=None)
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

    epoch_s = statistics.median(plain)
    rows = [{"what": g, "seconds_per_epoch": s / args.epochs, "share": s / total}
            for g, s in sorted(groups.items(), key=lambda kv: -kv[1])]
    print(f"epoch {epoch_s:.3f} s without the profiler (median of {args.epochs}); "
          f"{total / args.epochs:.3f} s with it. Share of the profiled time:")
    for r in rows:
        print(f"  {100 * r['share']:5.1f} %  {r['seconds_per_epoch']:.3f} s  {r['what']}")
    print(f"the same matrix multiplies alone: {gemm:.3f} s per epoch ({100 * gemm / epoch_s:.0f} % of the epoch)")

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
    }
    out = bench.save(result, f"profile-epoch-{args.label or result['machine']['host']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
