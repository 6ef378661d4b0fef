"""Trials per minute of ``fastmlp sweep`` with 1 and 2 workers, against the same trainings as plain ``train`` runs.

    python -m benchmarks.sweep --data-dir DATA_DIR --label cpu-2core

One grid of trials (``--sizes`` x ``--lr`` x ``--seeds`` seeds, each ``--epochs``
epochs with a ``--val-split`` validation split) is trained three ways:

- plain: ``fastmlp.train.main`` once per trial, one after another, in this
  process (BLAS on every core; no interpreter start-up, the kernels already
  compiled after a warm-up run). Also one ``fastmlp train`` command in a fresh
  process, for the per-process start a shell loop would pay on every trial;
- ``fastmlp sweep --workers N`` for each ``--workers`` N: the embedded
  LocalCluster, N worker processes with cores / N BLAS threads each; the clock
  runs from the command's start to its end (data split, cluster start, trials,
  results table, plot, best model and its test accuracy).

The three take turns for ``--repeats`` rounds; the best round of each is
reported, with the median and every round's numbers in the JSON. The overhead per trial is (sweep
seconds with 1 worker) / trials - plain seconds per trial; the cluster's start and stop, timed on their own, are also
given, and each run's mean seconds inside Trainer.fit (metrics.json's
``train_seconds``), which separate slower training (cores shared) from the
time around it. The 1-minute load average before and after is recorded: the
machine may be shared. Writes benchmarks/results/sweep-<label>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastmlp import sweep, train
from fastmlp.cluster import cores, open_client

from . import common


def _quietly(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _median(runs, key):
    return statistics.median(run[key] for run in runs)


def _train_seconds(metrics_files):
    """Mean seconds inside Trainer.fit (train's metrics.json ``train_seconds``) over the trials."""
    seconds = [json.loads(Path(f).read_text())["train_seconds"] for f in metrics_files]
    return sum(seconds) / len(seconds)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="folder holding mnist/, or the IDX files (default: fastmlp's look-up)")
    p.add_argument("--sizes", nargs="+", default=["784,64,10", "784,128,10"], help="the grid's --sizes values")
    p.add_argument("--lr", default="0.05,0.1", help="the grid's --lr values")
    p.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 in the grid")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--val-split", type=float, default=0.1)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts of the sweeps")
    p.add_argument("--repeats", type=int, default=5, help="rounds of the three ways, taking turns; the best round of each is reported")
    p.add_argument("--label", default=None, help="results file suffix (default: host name)")
    args = p.parse_args(argv)

    data_dir = args.data_dir
    if data_dir and (Path(data_dir) / "mnist").is_dir():
        data_dir = str(Path(data_dir) / "mnist")
    # the recipe of the committed results (no warm-up, dropout or label smoothing), whatever
    # the default preset is: train and sweep both take these flags
    common_flags = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--val-split",
                    str(args.val_split), "--warmup", "0", "--dropout", "0", "--label-smoothing", "0",
                    *(["--data-dir", data_dir] if data_dir else [])]
    seeds = [str(s) for s in range(args.seeds)]
    grid = list(itertools.product(args.sizes, args.lr.split(","), seeds))
    sweep_flags = ["--sizes", *args.sizes, "--lr", args.lr, "--seed", ",".join(seeds), *common_flags]
    n = len(grid)
    # the machine is shared: the load before and after says how much of it these runs had
    result = {"benchmark": "sweep", "when": common.stamp(), "machine": common.machine(), "load_average_before": os.getloadavg(),
              "settings": {"dataset": "mnist", "data_dir": data_dir, "trials": n, "sizes": args.sizes,
                           "lr": args.lr, "seeds": args.seeds, "epochs": args.epochs,
                           "batch_size": args.batch_size, "val_split": args.val_split, "cores": cores(),
                           "repeats": args.repeats}}
    print(f"{n} trials: sizes {' '.join(args.sizes)} x lr {args.lr} x {args.seeds} seeds, {args.epochs} epochs, "
          f"batch {args.batch_size}, val-split {args.val_split}, on {cores()} cores")

    train_argv = [[*common_flags, "--sizes", s, "--lr", lr, "--seed", seed, "--no-plots", "--quiet"]
                  for s, lr, seed in grid]
    plain_runs, cli_runs, sweep_runs = [], [], {w: [] for w in args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _quietly(train.main, [*train_argv[0], "--epochs", "1", "--out", str(tmp / "warm-up")])
        # the three ways take turns, round after round, so that a burst of load from
        # elsewhere on a shared machine falls on all of them
        for r in range(args.repeats):
            t0 = time.perf_counter()
            for i, a in enumerate(train_argv):
                assert _quietly(train.main, [*a, "--out", str(tmp / f"plain{r}-{i}")]) == 0
            plain_runs.append({"seconds": time.perf_counter() - t0,
                               "mean_fit_s": _train_seconds(tmp.glob(f"plain{r}-*/metrics.json"))})
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "fastmlp", "train", *train_argv[0], "--out", str(tmp / f"cli{r}")],
                           check=True, capture_output=True)
            cli_runs.append(time.perf_counter() - t0)
            for workers in args.workers:
                t0 = time.perf_counter()
                with open_client(workers=workers):
                    pass
                start_stop = time.perf_counter() - t0
                out = tmp / f"sweep{r}-{workers}"
                t0 = time.perf_counter()
                code = _quietly(sweep.main, [*sweep_flags, "--workers", str(workers), "--out", str(out)])
                assert code == 0, f"fastmlp sweep --workers {workers} exited with {code}"
                sweep_runs[workers].append({"seconds": time.perf_counter() - t0, "cluster_start_stop_s": start_stop,
                                            "mean_fit_s": _train_seconds(out.glob("trials/*/metrics.json"))})
            print(f"round {r + 1}: plain {plain_runs[-1]['seconds']:.1f} s, "
                  + ", ".join(f"sweep x{w} {runs[-1]['seconds']:.1f} s" for w, runs in sweep_runs.items()))

    # The best round of each: the others were slowed by whatever else ran on the machine
    # (two BLAS threads suffer most, when another process holds one of the two cores).
    best = min(plain_runs, key=lambda run: run["seconds"])
    plain = best["seconds"]
    result["plain"] = {"seconds": plain, "per_trial_s": plain / n, "trials_per_min": 60 * n / plain,
                       "mean_fit_s": best["mean_fit_s"], "median_seconds": _median(plain_runs, "seconds"),
                       "cli_process_per_trial_s": min(cli_runs), "rounds": plain_runs, "cli_rounds": cli_runs}
    print(f"best of {args.repeats} rounds, and the median:")
    print(f"plain train, one after another in one process: {plain:.1f} s (median {result['plain']['median_seconds']:.1f}), "
          f"{plain / n:.2f} s a trial ({best['mean_fit_s']:.2f} s of it in fit), {60 * n / plain:.1f} trials/min; "
          f"as a fresh 'fastmlp train' process: {min(cli_runs):.2f} s a trial")
    result["sweeps"] = []
    for workers, runs in sweep_runs.items():
        best = min(runs, key=lambda run: run["seconds"])
        seconds = best["seconds"]
        row = {"workers": workers, "blas_threads_per_worker": max(1, cores() // workers), "seconds": seconds,
               "median_seconds": _median(runs, "seconds"), "trials_per_min": 60 * n / seconds,
               "per_trial_s": seconds / n, "cluster_start_stop_s": best["cluster_start_stop_s"],
               "speedup_vs_plain": plain / seconds, "mean_fit_s": best["mean_fit_s"], "rounds": runs}
        result["sweeps"].append(row)
        print(f"sweep, {workers} worker(s) x {row['blas_threads_per_worker']} BLAS thread(s): {seconds:.1f} s "
              f"(median {row['median_seconds']:.1f}), {row['trials_per_min']:.1f} trials/min "
              f"({row['speedup_vs_plain']:.2f}x plain), {best['mean_fit_s']:.2f} s a trial in fit; "
              f"cluster start + stop {best['cluster_start_stop_s']:.1f} s")
    one = next((r for r in result["sweeps"] if r["workers"] == 1), None)
    if one:
        result["overhead_per_trial_s"] = one["per_trial_s"] - result["plain"]["per_trial_s"]
        result["overhead_per_trial_without_cluster_start_s"] = (
            (one["seconds"] - one["cluster_start_stop_s"]) / n - result["plain"]["per_trial_s"])
        print(f"overhead per trial with 1 worker: {result['overhead_per_trial_s']:.2f} s "
              f"({result['overhead_per_trial_without_cluster_start_s']:.2f} s without the cluster's start and stop)")
    result["load_average_after"] = os.getloadavg()
    path = common.save(result, f"sweep-{args.label or result['machine']['host']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
