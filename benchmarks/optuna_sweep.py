"""TPE with pruning against the full grid: how soon it finds the grid's best.

    python -m benchmarks.optuna_sweep --data-dir DATA_DIR --label cpu-2core

One space (``--sizes`` x ``--lr``, each trial ``--epochs`` epochs on MNIST with
a ``--val-split`` validation split) is swept on the same embedded Dask cluster
(``--workers`` worker processes) two ways, each a ``fastmlp sweep`` command run
in this process into a fresh folder:

- the full grid (``--search grid --prune none``, the default): its time is the
  command's, start to end (cluster start, trials, table, plots, test accuracy
  of the best); its best validation accuracy is the target;
- ``--search tpe --prune PRUNE --trials N`` (N = the grid's size unless
  ``--trials``: a repeated point is not trained and does not count, so TPE may
  end up training every point, pruning most; the clock stops at the target
  anyway) for each seed in ``--seeds``: its time to the target is the
  seconds from the command's start to the end of the first trial whose
  validation accuracy is within ``--tolerance`` (0.1 point) of the grid's best
  (Optuna's record of when each trial completed); a seed that never gets there
  is reported as not reached, with its full time.

The ratio is (TPE's time to the target) / (the grid's time); the goal is 0.4 or
less. The 1-minute load average before and after is recorded: the machine may
be shared. Writes benchmarks/results/optuna-sweep-<label>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as _dt
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastmlp import sweep
from fastmlp.cluster import cores

from . import common


def _quietly(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()) as text:
        code = fn(*args)
    return code, text.getvalue()


def _rows(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _study_trials(out):
    import optuna

    from fastmlp.search import STUDY_NAME, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=STUDY_NAME, storage=open_storage(out / "study.journal"))
    return study.get_trials(deepcopy=False)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.optuna_sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="folder holding mnist/, or the IDX files (default: fastmlp's look-up)")
    p.add_argument("--sizes", nargs="+", default=["784,32,10", "784,64,10", "784,128,10", "784,256,10"],
                   help="the space's --sizes")
    p.add_argument("--lr", default="0.003,0.01,0.03,0.06,0.1,0.2,0.4,0.8", help="the space's --lr values")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--val-split", type=float, default=0.1)
    p.add_argument("--workers", type=int, default=2, help="worker processes of the embedded cluster")
    p.add_argument("--prune", default="median", choices=sweep.PRUNERS[1:], help="TPE's pruner")
    p.add_argument("--trials", type=int, default=None, help="TPE's trials (default: the grid's size)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="TPE's sampler seeds")
    p.add_argument("--tolerance", type=float, default=0.001, help="within this of the grid's best (0.001 = 0.1 point)")
    p.add_argument("--label", default=None, help="results file suffix (default: host name)")
    args = p.parse_args(argv)

    data_dir = args.data_dir
    if data_dir and (Path(data_dir) / "mnist").is_dir():
        data_dir = str(Path(data_dir) / "mnist")
    lrs = args.lr.split(",")
    n_grid = len(args.sizes) * len(lrs)
    n_tpe = args.trials or n_grid
    # the recipe of the other sweep benchmark (no warm-up, dropout or label smoothing)
    space = ["--sizes", *args.sizes, "--lr", args.lr, "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
             "--val-split", str(args.val_split), "--warmup", "0", "--dropout", "0", "--label-smoothing", "0",
             "--workers", str(args.workers), *(["--data-dir", data_dir] if data_dir else [])]
    result = {"benchmark": "optuna_sweep", "when": common.stamp(), "machine": common.machine(),
              "load_average_before": os.getloadavg(),
              "settings": {"dataset": "mnist", "data_dir": data_dir, "sizes": args.sizes, "lr": lrs,
                           "epochs": args.epochs, "batch_size": args.batch_size, "val_split": args.val_split,
                           "workers": args.workers, "cores": cores(), "grid_trials": n_grid, "tpe_trials": n_tpe,
                           "prune": args.prune, "seeds": args.seeds, "tolerance": args.tolerance,
                           "cluster": "embedded LocalCluster, one per command"},
              "goal": "TPE with pruning reaches the grid's best validation accuracy (within tolerance) in at most "
                      "0.4x the full grid's time"}
    print(f"space: sizes {' '.join(args.sizes)} x lr {args.lr} = {n_grid} points, {args.epochs} epochs each, "
          f"batch {args.batch_size}; {args.workers} workers on {cores()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        out = tmp / "grid"
        t0 = time.perf_counter()
        code, _ = _quietly(sweep.main, [*space, "--out", str(out)])
        grid_s = time.perf_counter() - t0
        assert code == 0, f"the grid sweep exited with {code}"
        rows = [r for r in _rows(out) if r["status"] == "ok"]
        best = max(rows, key=lambda r: float(r["val_acc"]))
        target = float(best["val_acc"]) - args.tolerance
        result["grid"] = {"seconds": grid_s, "trials": len(rows), "best_val_acc": float(best["val_acc"]),
                          "best": {"sizes": best["sizes"], "lr": best["lr"]},
                          "train_seconds_sum": sum(float(r["train_seconds"]) for r in rows),
                          "startup_seconds_sum": sum(float(r["startup_seconds"] or 0) for r in rows)}
        print(f"grid: {len(rows)} trials in {grid_s:.1f} s, best validation accuracy "
              f"{100 * float(best['val_acc']):.2f}% (sizes {best['sizes']}, lr {best['lr']})")
        runs = []
        for seed in args.seeds:
            out = tmp / f"tpe-{seed}"
            started = _dt.datetime.now()
            t0 = time.perf_counter()
            code, _ = _quietly(sweep.main, [*space, "--search", "tpe", "--prune", args.prune, "--trials", str(n_tpe),
                                            "--random-seed", str(seed), "--out", str(out)])
            seconds = time.perf_counter() - t0
            assert code == 0, f"the TPE sweep (seed {seed}) exited with {code}"
            trials = _study_trials(out)
            done = sorted((t for t in trials if t.state.name == "COMPLETE" and "duplicate_of" not in t.user_attrs),
                          key=lambda t: t.datetime_complete)
            hit = next((t for t in done if t.value >= target), None)
            reach = (hit.datetime_complete - started).total_seconds() if hit else None
            rows = _rows(out)
            run = {"seed": seed, "seconds": seconds, "reached": hit is not None, "seconds_to_target": reach,
                   "ratio_to_grid": (reach / grid_s) if hit else None, "total_ratio_to_grid": seconds / grid_s,
                   "best_val_acc": max((t.value for t in done), default=None),
                   "trials": {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")},
                   "duplicates": sum("duplicate_of" in t.user_attrs for t in trials),
                   "trained": len(rows), "epochs_trained": sum(int(r["epochs_done"] or 0) for r in rows),
                   "trial_reaching": hit.number if hit else None}
            runs.append(run)
            print(f"tpe seed {seed}: {seconds:.1f} s in all ({run['trials']}, {run['duplicates']} repeats not trained); "
                  + (f"the grid's best within {100 * args.tolerance:g} point after {reach:.1f} s = "
                     f"{run['ratio_to_grid']:.2f}x the grid" if hit else
                     f"never within {100 * args.tolerance:g} point of the grid's best (best "
                     f"{100 * (run['best_val_acc'] or 0):.2f}%)"))
    result["tpe"] = runs
    ratios = [r["ratio_to_grid"] for r in runs if r["reached"]]
    result["summary"] = {"seeds_reached": len(ratios), "seeds": len(runs),
                         "ratio_median": statistics.median(ratios) if ratios else None,
                         "ratio_max": max(ratios) if ratios else None,
                         "goal_met_median": len(ratios) == len(runs) and statistics.median(ratios) <= 0.4,
                         "goal_met_all_seeds": len(ratios) == len(runs) and max(ratios) <= 0.4}
    print(f"reached in {len(ratios)} of {len(runs)} seeds"
          + (f"; ratio to the grid's time: median {statistics.median(ratios):.2f}, worst {max(ratios):.2f} "
             f"(goal <= 0.4)" if ratios else ""))
    result["load_average_after"] = os.getloadavg()
    path = common.save(result, f"optuna-sweep-{args.label or result['machine']['host']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
